"""The requests of the HTTP contract (docs/http-api.md), built once for the sync and asyncio clients."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Set, Tuple, Type

from ._errors import Error, LockNotHeld, SessionNotFound
from ._lease import Expiry, Keepalive, Lease, SessionState
from ._retry import Safety
from ._transport import Answer, Budget, Request, Settings
from ._wait import (
    call_time,
    client_id_value,
    fence_token_value,
    grant_value,
    limit_value,
    lock_delay_secs,
    mode_value,
    resource_value,
    timeout_secs,
    wait_secs,
)


def create_session(client_id: str, timeout: int, lock_delay: int) -> Tuple[Request, int]:
    """``POST /sessions``: never repeated once it may have reached the cluster. Returns the lock-delay too."""
    body: Dict[str, Any] = {"client_id": client_id_value(client_id), "timeout": timeout_secs(timeout)}
    delay = lock_delay_secs(lock_delay)
    # Sent only when asked for, so a server without lock-delays still takes the default.
    if delay > 0:
        body["lock_delay"] = delay
    return Request("POST", ["sessions"], Safety.AT_MOST_ONCE, body=body), delay


def keepalive(session_id: str) -> Request:
    """``POST /sessions/{id}/keepalive``."""
    return Request("POST", ["sessions", session_id, "keepalive"], Safety.REPEATABLE)


def delete_session(session_id: str) -> Request:
    """``DELETE /sessions/{id}``; if an earlier attempt may have been applied, SESSION_NOT_FOUND means done."""
    return Request("DELETE", ["sessions", session_id], Safety.REPEATABLE)


@dataclass(frozen=True)
class LockOptions:
    """What an acquire asks for besides the wait: the mode, a shared lock's limit, the grant's value."""

    mode: str = "exclusive"
    limit: Optional[int] = None
    value: Optional[str] = None

    @staticmethod
    def check(mode: Any, limit: Any, value: Any) -> LockOptions:
        """The options, checked before anything is sent (``InvalidRequest`` naming the field)."""
        mode = mode_value(mode)
        return LockOptions(mode, limit_value(limit, mode), grant_value(value))

    def body(self) -> Optional[Dict[str, Any]]:
        """The acquire's body: only what differs from the defaults, so that a plain lock sends none."""
        body: Dict[str, Any] = {}
        if self.mode != "exclusive":
            body["mode"] = self.mode
        if self.limit is not None:
            body["limit"] = self.limit
        if self.value is not None:
            body["value"] = self.value
        return body or None


EXCLUSIVE = LockOptions()


def acquire(session_id: str, resource: str, options: LockOptions = EXCLUSIVE) -> Request:
    """``POST /sessions/{id}/locks/{resource}``: a try-lock, safe to repeat (a repeat answers 200 with the same token)."""
    return Request("POST", ["sessions", session_id, "locks", resource_value(resource)], Safety.REPEATABLE,
                   body=options.body())


def acquire_wait(session_id: str, resource: str, wait: int, settings: Settings,
                 options: LockOptions = EXCLUSIVE) -> Tuple[Request, Budget]:
    """An acquire that waits up to ``wait`` seconds in the queue, with the budget of the whole call.

    A broken connection or a 503 is followed at once by the same request with the time left,
    which the cluster takes as the same waiter in the same place; once the time is over, one more
    try-lock (``wait`` 0) tells whether the grant came first.
    """
    start = time.monotonic()
    request = acquire(session_id, resource, options)
    request.wait_until = start + wait
    budget = Budget(start + call_time(wait, settings.request_timeout, settings.retry_budget), 1 << 30)
    return request, budget


def release(session_id: str, resource: str, fence_token: int) -> Request:
    """``DELETE /sessions/{id}/locks/{resource}?fence_token=N``; after a maybe-applied attempt LOCK_NOT_HELD means done."""
    return Request("DELETE", ["sessions", session_id, "locks", resource_value(resource)], Safety.REPEATABLE,
                   query={"fence_token": str(fence_token)})


def lock_status(resource: str) -> Request:
    """``GET /admin/locks/{resource}``."""
    return Request("GET", ["admin", "locks", resource_value(resource)], Safety.REPEATABLE)


def fence_check(resource: str, fence_token: int) -> Request:
    """``POST /fence/check``: a linearizable read, safe to repeat."""
    return Request("POST", ["fence", "check"], Safety.REPEATABLE,
                   body={"resource": resource_value(resource), "fence_token": fence_token_value(fence_token)})


def stats() -> Request:
    """``GET /admin/stats``."""
    return Request("GET", ["admin", "stats"], Safety.REPEATABLE)


def status() -> Request:
    """``GET /cluster/status``."""
    return Request("GET", ["cluster", "status"], Safety.REPEATABLE)


def cleanup() -> Request:
    """``POST /admin/cleanup``."""
    return Request("POST", ["admin", "cleanup"], Safety.REPEATABLE)


def removal(answer: Answer, gone: Type[Error]) -> None:
    """A removal's answer: an error that says "already removed" after a maybe-applied attempt is success."""
    try:
        answer.ok()
    except Error as e:
        if not (answer.after_maybe_applied and isinstance(e, gone)):
            raise


RELEASE_GONE = LockNotHeld
DELETE_GONE = SessionNotFound


def check_wait(wait: Optional[int]) -> int:
    """``wait`` as whole seconds (None is 0, a try-lock)."""
    return 0 if wait is None else wait_secs(wait)


#: After a cancelled or unanswered wait: how long the cluster keeps the waiter's place, plus a
#: margin, then how long to look for a late grant before leaving it to the session's end.
CANCEL_SETTLES = 2.5
SETTLE_LIMIT = 30.0


class Held:
    """The resources a session's live lock objects hold, so that two never share one grant. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set: Set[str] = set()

    def reserve(self, resource: str) -> bool:
        """Marks ``resource`` taken; false if a live lock object already has it."""
        with self._lock:
            if resource in self._set:
                return False
            self._set.add(resource)
            return True

    def forget(self, resource: str) -> None:
        """The lock object of ``resource`` is done."""
        with self._lock:
            self._set.discard(resource)


class LeaseKeeper:
    """The lease of a session and what follows from its changes: ``lost``, ``on_lost``. Shared by both APIs."""

    def __init__(self, session_id: str, created: float, timeout: float, interval: float,
                 on_lost: Optional[Callable[[Expiry], None]]) -> None:
        self._lease_lock = threading.Lock()
        self._lease = Lease(created, timeout, interval)
        self._on_lost = on_lost
        self._lost_fired = False
        self._session_id = session_id

    def _set_lost(self) -> None:
        raise NotImplementedError

    def _publish(self, state: SessionState, expiry: Optional[Expiry]) -> None:
        if not self._session_id or state is not SessionState.EXPIRED or expiry is Expiry.CLOSED:
            return
        with self._lease_lock:
            if self._lost_fired:
                return
            self._lost_fired = True
        self._set_lost()
        if self._on_lost is not None:
            try:
                self._on_lost(expiry or Expiry.TIMED_OUT)
            except Exception:
                import logging
                logging.getLogger("lockio").exception("on_lost callback of session %s raised", self._session_id)

    def _now_state(self) -> Tuple[SessionState, Optional[Expiry]]:
        with self._lease_lock:
            state = self._lease.at(time.monotonic())
            expiry = self._lease.expiry
        self._publish(state, expiry)
        return state, expiry

    def _record(self, outcome: Keepalive, sent_at: float) -> SessionState:
        with self._lease_lock:
            state = self._lease.record(outcome, time.monotonic(), sent_at)
            expiry = self._lease.expiry
        self._publish(state, expiry)
        return state

    def _next_keepalive(self) -> float:
        with self._lease_lock:
            return self._lease.next_keepalive(time.monotonic())

    def _attempt_deadline(self, sent_at: float, cap: float) -> Optional[float]:
        """The deadline of a keepalive sent now, or None when the session is already expired."""
        with self._lease_lock:
            state = self._lease.at(sent_at)
            expiry = self._lease.expiry
            deadline = None if state is SessionState.EXPIRED else self._lease.attempt_deadline(sent_at, cap)
        self._publish(state, expiry)
        return deadline

    def _close_lease(self) -> None:
        with self._lease_lock:
            self._lease.close()

    @property
    def state(self) -> SessionState:
        """The state now: expired as soon as the timeout has passed since the last acknowledged keepalive was sent.

        That holds even if the keepalive thread has not run yet (say, the process was stopped).
        """
        return self._now_state()[0]

    @property
    def expiry(self) -> Optional[Expiry]:
        """Why the session is over (None while it is not)."""
        return self._now_state()[1]

    @property
    def deadline(self) -> float:
        """The ``time.monotonic()`` instant past which the session must be assumed expired."""
        with self._lease_lock:
            return self._lease.deadline()

    @property
    def is_lost(self) -> bool:
        """Whether the session ended other than by this client closing it: its locks must be assumed gone."""
        state, expiry = self._now_state()
        return state is SessionState.EXPIRED and expiry is not Expiry.CLOSED

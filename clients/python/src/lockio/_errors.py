"""The exception hierarchy, and the one place that turns a server's error JSON into it.

Every error answer of the HTTP contract (docs/http-api.md, "Errors") has a ``code``; each code
maps to one class below, carrying ``code``, the HTTP ``status`` and the body's fields.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Dict, List, Mapping, Optional, Tuple, Type

if TYPE_CHECKING:
    from ._types import EventId


def _format_time(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Error(Exception):
    """Base of every error this package raises.

    ``code`` is the server's stable UPPER_SNAKE code (or the client's own, for errors that are
    decided before anything is sent), ``status`` the HTTP status (``None`` when no node answered),
    ``body`` the whole error body, and ``message`` one sentence a person can act on.
    """

    #: The code this class stands for in the HTTP contract.
    CODE: ClassVar[str] = ""

    def __init__(self, message: str, *, code: Optional[str] = None, status: Optional[int] = None,
                 body: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code: str = code if code is not None else self.CODE
        self.status = status
        self.body: Dict[str, Any] = dict(body or {})

    @classmethod
    def _from_body(cls, status: int, body: Mapping[str, Any], retry_after: Optional[float]) -> Error:
        return cls(str(body.get("error") or cls.CODE), status=status, body=body)


class InvalidRequest(Error):
    """A value was refused, by this client before sending or by the server (400 ``INVALID_REQUEST``).

    ``field`` names it: ``client_id``, ``timeout``, ``lock_delay``, ``resource``, ``wait``,
    ``fence_token``, ``endpoints``, ...
    """

    CODE = "INVALID_REQUEST"

    def __init__(self, field: str, reason: str, *, status: Optional[int] = None,
                 body: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(f"invalid {field}: {reason}", status=status, body=body)
        self.field = field
        self.reason = reason

    @classmethod
    def _from_body(cls, status: int, body: Mapping[str, Any], retry_after: Optional[float]) -> Error:
        return cls(str(body.get("field") or "request"), str(body.get("error") or ""), status=status, body=body)


class UnsupportedMediaType(Error):
    """415 ``UNSUPPORTED_MEDIA_TYPE``: a body was sent without ``Content-Type: application/json``."""

    CODE = "UNSUPPORTED_MEDIA_TYPE"


class PayloadTooLarge(Error):
    """413 ``PAYLOAD_TOO_LARGE``: a request body over 64 KiB."""

    CODE = "PAYLOAD_TOO_LARGE"


class NotFound(Error):
    """404 ``NOT_FOUND``: no such route (a client and server of different versions)."""

    CODE = "NOT_FOUND"


class MethodNotAllowed(Error):
    """405 ``METHOD_NOT_ALLOWED``: a known route with the wrong method."""

    CODE = "METHOD_NOT_ALLOWED"


class InternalError(Error):
    """500 ``INTERNAL``: a bug in the server; its log has the details."""

    CODE = "INTERNAL"


class SessionError(Error):
    """Base of the errors about a session that is over: ``session_id`` names it."""

    def __init__(self, message: str, session_id: str, *, status: Optional[int] = None,
                 body: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(message, status=status, body=body)
        self.session_id = session_id


class SessionExpired(SessionError):
    """The session expired (410 ``SESSION_EXPIRED``, or this client's own conclusion): its locks are released.

    Stop the work they protected and open a new session. Raised too when leaving a lock's
    ``with`` block after the session was lost during it: the work in the block may have overlapped
    with the next holder's.
    """

    CODE = "SESSION_EXPIRED"

    def __init__(self, session_id: str, *, message: Optional[str] = None, status: Optional[int] = None,
                 body: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(message or f"session {session_id} has expired and its locks were released", session_id,
                         status=status, body=body)

    @classmethod
    def _from_body(cls, status: int, body: Mapping[str, Any], retry_after: Optional[float]) -> Error:
        return cls(_req_str(body, "session_id"), status=status, body=body)


class SessionNotFound(SessionError):
    """404 ``SESSION_NOT_FOUND``: never created, deleted, or cleaned up after it expired."""

    CODE = "SESSION_NOT_FOUND"

    def __init__(self, session_id: str, *, status: Optional[int] = None,
                 body: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(f"session {session_id} does not exist", session_id, status=status, body=body)

    @classmethod
    def _from_body(cls, status: int, body: Mapping[str, Any], retry_after: Optional[float]) -> Error:
        return cls(_req_str(body, "session_id"), status=status, body=body)


class LockNotAcquired(Error):
    """Base of the reasons an acquire did not get the lock: held, delayed, queue full, wait timed out.

    ``resource`` names the lock, ``queue_length`` counts the sessions waiting for it.
    """

    def __init__(self, message: str, resource: str, queue_length: int, *, status: Optional[int] = None,
                 body: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(message, status=status, body=body)
        self.resource = resource
        self.queue_length = queue_length


class LockHeld(LockNotAcquired):
    """409 ``LOCK_HELD``: another session holds the lock (a try-lock, or a wait whose time ran out).

    ``holder_client_id``, ``holder_fence_token`` and ``held_since`` (Unix seconds) name the holder;
    ``waited`` is how long the server kept a wait in the queue (``None`` for a try-lock).
    """

    CODE = "LOCK_HELD"

    def __init__(self, resource: str, holder_client_id: str, holder_fence_token: int, held_since: float,
                 queue_length: int = 0, waited: Optional[float] = None, holders_count: int = 1, *,
                 status: Optional[int] = None, body: Optional[Mapping[str, Any]] = None) -> None:
        text = (f"{resource} is held by client {holder_client_id} since {_format_time(held_since)} "
                f"with fence token {holder_fence_token}")
        if waited is not None:
            text += f"; gave up after waiting {waited:.1f}s"
        if queue_length == 1:
            text += "; 1 session is waiting for it"
        elif queue_length > 1:
            text += f"; {queue_length} sessions are waiting for it"
        super().__init__(text, resource, queue_length, status=status, body=body)
        self.holder_client_id = holder_client_id
        self.holder_fence_token = holder_fence_token
        self.held_since = held_since
        self.waited = waited
        self.holders_count = holders_count

    @classmethod
    def _from_body(cls, status: int, body: Mapping[str, Any], retry_after: Optional[float]) -> Error:
        return cls(_req_str(body, "resource"), _req_str(body, "holder_client_id"), _req_int(body, "holder_fence_token"),
                   _req_num(body, "held_since"), _count(body, "queue_length"), _opt_num(body, "waited"),
                   _count(body, "holders_count", 1), status=status, body=body)


class LockDelayed(LockNotAcquired):
    """409 ``LOCK_DELAYED``: the lock is free, but its last holder's session expired and its lock-delay lasts.

    ``available_at`` (Unix seconds) says when it may be taken; ``retry_after`` is the server's
    ``Retry-After`` in seconds, if it sent one.
    """

    CODE = "LOCK_DELAYED"

    def __init__(self, resource: str, available_at: float, queue_length: int = 0, retry_after: Optional[float] = None,
                 *, status: Optional[int] = None, body: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(f"{resource} is unavailable until {_format_time(available_at)} "
                         "(lock-delay after its holder's session expired)", resource, queue_length,
                         status=status, body=body)
        self.available_at = available_at
        self.retry_after = retry_after

    @classmethod
    def _from_body(cls, status: int, body: Mapping[str, Any], retry_after: Optional[float]) -> Error:
        return cls(_req_str(body, "resource"), _req_num(body, "available_at"), _count(body, "queue_length"),
                   retry_after, status=status, body=body)


class QueueFull(LockNotAcquired):
    """409 ``QUEUE_FULL``: 10,000 sessions already wait for the lock; this wait was not queued."""

    CODE = "QUEUE_FULL"

    def __init__(self, resource: str, queue_length: int, *, status: Optional[int] = None,
                 body: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(f"{resource} has {queue_length} sessions waiting, as many as its queue takes", resource,
                         queue_length, status=status, body=body)

    @classmethod
    def _from_body(cls, status: int, body: Mapping[str, Any], retry_after: Optional[float]) -> Error:
        return cls(_req_str(body, "resource"), _req_int(body, "queue_length"), status=status, body=body)


class ModeConflict(LockNotAcquired):
    """409 ``MODE_CONFLICT``: the session holds or waits for the lock in the other mode (``mode``).

    There is no upgrade or downgrade: release first, then ask in the other mode.
    """

    CODE = "MODE_CONFLICT"

    def __init__(self, resource: str, mode: str, *, status: Optional[int] = None,
                 body: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(f"this session has {resource} in mode {mode}; it cannot ask in the other mode", resource, 0,
                         status=status, body=body)
        self.mode = mode

    @classmethod
    def _from_body(cls, status: int, body: Mapping[str, Any], retry_after: Optional[float]) -> Error:
        return cls(_req_str(body, "resource"), _req_str(body, "mode"), status=status, body=body)


class LimitMismatch(LockNotAcquired):
    """409 ``LIMIT_MISMATCH``: a shared request named another ``limit`` than the lock's (``None``: no limit)."""

    CODE = "LIMIT_MISMATCH"

    def __init__(self, resource: str, limit: Optional[int], *, status: Optional[int] = None,
                 body: Optional[Mapping[str, Any]] = None) -> None:
        current = "no limit" if limit is None else f"a limit of {limit}"
        super().__init__(f"{resource} is shared with {current}", resource, 0, status=status, body=body)
        self.limit = limit

    @classmethod
    def _from_body(cls, status: int, body: Mapping[str, Any], retry_after: Optional[float]) -> Error:
        limit = body.get("limit")
        return cls(_req_str(body, "resource"), limit if isinstance(limit, int) else None, status=status, body=body)


class WaitTimeout(LockNotAcquired):
    """409 ``WAIT_TIMEOUT``: a wait reached its deadline just as the lock became free; asking again may get it."""

    CODE = "WAIT_TIMEOUT"

    def __init__(self, resource: str, waited: Optional[float] = None, *, status: Optional[int] = None,
                 body: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(f"the wait for {resource} reached its deadline just as it became free; asking again may get it",
                         resource, 0, status=status, body=body)
        self.waited = waited

    @classmethod
    def _from_body(cls, status: int, body: Mapping[str, Any], retry_after: Optional[float]) -> Error:
        return cls(str(body.get("resource") or ""), _opt_num(body, "waited"), status=status, body=body)


class LockNotHeld(Error):
    """404 ``LOCK_NOT_HELD``: a release of a lock this session does not hold (any more)."""

    CODE = "LOCK_NOT_HELD"

    def __init__(self, session_id: str, resource: str, *, status: Optional[int] = None,
                 body: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(f"session {session_id} does not hold {resource}", status=status, body=body)
        self.session_id = session_id
        self.resource = resource

    @classmethod
    def _from_body(cls, status: int, body: Mapping[str, Any], retry_after: Optional[float]) -> Error:
        return cls(_req_str(body, "session_id"), _req_str(body, "resource"), status=status, body=body)


class NotWaiting(Error):
    """409 ``NOT_WAITING``: the session is not waiting for the resource."""

    CODE = "NOT_WAITING"


class FenceTokenMismatch(Error):
    """409 ``FENCE_TOKEN_MISMATCH``: a release with another token than the one the session holds the lock under."""

    CODE = "FENCE_TOKEN_MISMATCH"

    def __init__(self, session_id: str, resource: str, held_fence_token: int, fence_token: int, *,
                 status: Optional[int] = None, body: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(f"session {session_id} holds {resource} under fence token {held_fence_token}, not {fence_token}",
                         status=status, body=body)
        self.session_id = session_id
        self.resource = resource
        self.held_fence_token = held_fence_token
        self.fence_token = fence_token

    @classmethod
    def _from_body(cls, status: int, body: Mapping[str, Any], retry_after: Optional[float]) -> Error:
        return cls(_req_str(body, "session_id"), _req_str(body, "resource"), _req_int(body, "held_fence_token"),
                   _req_int(body, "fence_token"), status=status, body=body)


class AlreadyLocked(Error):
    """This session already holds the resource through another live lock object of this client.

    Leaving either block would release the lock under the other, so the second is refused.
    """

    CODE = "ALREADY_LOCKED"

    def __init__(self, resource: str) -> None:
        super().__init__(f"this session already holds {resource} through another lock")
        self.resource = resource


class Compacted(Error):
    """A watch needs changes the node no longer holds: some were missed (``GET /events`` sent ``compacted``).

    ``requested`` is where the watch stood, ``oldest`` the oldest point the node can resume from,
    ``current`` the newest it has reached (``EventId`` values). Re-read the state you care about,
    then go on iterating: the watch resumes from ``current``.
    """

    CODE = "COMPACTED"

    def __init__(self, requested: EventId, oldest: EventId, current: EventId, *,
                 body: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(f"the events after {requested} are no longer held (the oldest is {oldest}); "
                         f"re-read the state, the watch resumes from {current}", body=body)
        self.requested = requested
        self.oldest = oldest
        self.current = current


class Unavailable(Error):
    """No endpoint gave a usable answer in time: unreachable nodes, or 503 ``UNAVAILABLE`` (no leader, no quorum).

    ``tried`` lists ``(endpoint, failure)`` for each endpoint tried. When ``outcome_unknown``, a
    write may still have taken effect (and a session create was therefore not sent again).
    """

    CODE = "UNAVAILABLE"

    def __init__(self, tried: List[Tuple[str, str]], outcome_unknown: bool, *, status: Optional[int] = None,
                 body: Optional[Mapping[str, Any]] = None, retry_after: Optional[float] = None) -> None:
        if tried:
            text = "lock.io cluster unavailable: tried " + ", ".join(f"{e} ({f})" for e, f in tried)
        else:
            text = "lock.io cluster unavailable: no endpoint could be tried in time"
        if outcome_unknown:
            text += "; the operation may or may not have taken effect"
        super().__init__(text, status=status, body=body)
        self.tried = list(tried)
        self.outcome_unknown = outcome_unknown
        self.retry_after = retry_after

    @classmethod
    def _from_body(cls, status: int, body: Mapping[str, Any], retry_after: Optional[float]) -> Error:
        return cls([], body.get("outcome") != "not_applied", status=status, body=body, retry_after=retry_after)


class UnexpectedResponse(Error):
    """The server answered something this client does not understand: a bug or a version mismatch.

    ``code`` is the body's code if it had one (an unknown code, or a known one without its fields).
    """

    CODE = "UNEXPECTED"

    def __init__(self, endpoint: str, detail: str, *, code: Optional[str] = None, status: Optional[int] = None,
                 body: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(f"unexpected answer from {endpoint}: {detail}", code=code, status=status, body=body)
        self.endpoint = endpoint
        self.detail = detail


#: Every code of the HTTP contract, with the class it is raised as.
ERRORS_BY_CODE: Dict[str, Type[Error]] = {
    cls.CODE: cls
    for cls in (InvalidRequest, UnsupportedMediaType, PayloadTooLarge, NotFound, MethodNotAllowed, InternalError,
                SessionExpired, SessionNotFound, LockHeld, LockDelayed, QueueFull, ModeConflict, LimitMismatch,
                WaitTimeout, LockNotHeld,
                NotWaiting, FenceTokenMismatch, Unavailable)
}


class _MissingField(Exception):
    pass


def _req_str(body: Mapping[str, Any], key: str) -> str:
    v = body.get(key)
    if not isinstance(v, str):
        raise _MissingField(f"{key} is not a string")
    return v


def _req_int(body: Mapping[str, Any], key: str) -> int:
    v = body.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise _MissingField(f"{key} is not a non-negative integer")
    return v


def _req_num(body: Mapping[str, Any], key: str) -> float:
    v = body.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise _MissingField(f"{key} is not a number")
    return float(v)


def _opt_num(body: Mapping[str, Any], key: str) -> Optional[float]:
    return None if body.get(key) is None else _req_num(body, key)


def _count(body: Mapping[str, Any], key: str, default: int = 0) -> int:
    """A count the contract added later: ``default`` when absent, as from a server that predates it."""
    return default if body.get(key) is None else _req_int(body, key)


def from_answer(endpoint: str, status: int, body: Any, retry_after: Optional[float] = None) -> Error:
    """The error a node's error answer means; ``endpoint`` is who answered."""
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        return UnexpectedResponse(endpoint, f"status {status} without a lock.io error body", status=status,
                                  body=body if isinstance(body, dict) else None)
    code: str = body["code"]
    cls = ERRORS_BY_CODE.get(code)
    if cls is not None:
        try:
            return cls._from_body(status, body, retry_after)
        except _MissingField:
            pass  # A known code with a body missing its fields is not trusted.
    return UnexpectedResponse(endpoint, f"{status} {code}: {body.get('error') or ''}", code=code, status=status,
                              body=body)

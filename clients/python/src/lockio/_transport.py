"""Sending one request to the cluster, copied from the Rust client (crates/client/src/transport.rs).

The endpoints in turn (the preferred one first), a retry on the next one when that is safe,
bounded backoff between rounds, and learning which node is the leader; a long poll (a wait in a
lock's queue) asks each time for what is left of its wait. The rules live once, in ``_plan``, a
generator that yields the I/O it wants done; ``SyncTransport`` and ``AsyncTransport`` run it
with httpx's blocking and asyncio clients. The only module that does HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generator, List, Optional, Tuple, TypeVar, Union
from urllib.parse import quote

import httpx

from ._endpoints import Endpoint, Endpoints, leader_http
from ._errors import Error, Unavailable, UnexpectedResponse, from_answer
from ._retry import Failure, FailureKind, Safety, backoff, may_retry
from ._types import BodyError, Fields
from ._wait import RETRY_PAUSE_CAP, ask_for

log = logging.getLogger("lockio")
T = TypeVar("T")

#: How often to look for the leader again while the preferred endpoint keeps answering.
REDISCOVER = 5.0


@dataclass
class Request:
    """One call of the HTTP contract."""

    method: str
    #: Path segments, percent-encoded on the way out: ``["sessions", id, "locks", resource]``.
    path: List[str]
    safety: Safety
    body: Optional[Dict[str, Any]] = None
    query: Dict[str, str] = field(default_factory=dict)
    #: For a long poll: when (monotonic) the caller's wait ends. Each attempt's body gets
    #: ``"wait"``, the whole seconds left; its HTTP timeout grows by as much, and rounds follow
    #: each other without a long pause.
    wait_until: Optional[float] = None

    def maybe_applied(self, failure: Failure) -> bool:
        """Whether this request may have changed something despite ``failure``: never a read."""
        return self.method != "GET" and failure.maybe_applied()


@dataclass
class Answer:
    """A node's answer that was not a 503."""

    status: int
    body: Any
    endpoint: str
    #: An earlier attempt of this call may have taken effect, so this answer may describe the
    #: state after it: a release that answers LOCK_NOT_HELD was probably already applied.
    after_maybe_applied: bool = False
    retry_after: Optional[float] = None

    def ok(self) -> Answer:
        """This answer, or the error it means."""
        if 200 <= self.status < 300:
            return self
        raise from_answer(self.endpoint, self.status, self.body, self.retry_after)

    def read(self, parse: Callable[[Fields], T]) -> T:
        """A success body read by ``parse``; a body it cannot read is ``UnexpectedResponse``."""
        try:
            return parse(Fields(self.body))
        except BodyError as e:
            raise UnexpectedResponse(self.endpoint, f"{e} in {self.body!r}", status=self.status) from None


@dataclass(frozen=True)
class Budget:
    """How long one call may keep trying (``deadline``, monotonic) and how many rounds over all endpoints."""

    deadline: float
    rounds: int


@dataclass(frozen=True)
class Settings:
    """How the transport behaves; see ``Client`` for what each knob means."""

    request_timeout: float = 10.0
    connect_timeout: float = 2.0
    retry_budget: float = 20.0
    rounds: int = 4


@dataclass(frozen=True)
class _Attempt:
    index: int
    wait: Optional[int]
    timeout: float


@dataclass(frozen=True)
class _Sleep:
    seconds: float


#: What one attempt came to: an answer (status, body, retry-after) or a failure (and a 503's retry-after).
AttemptResult = Union[Tuple[int, Any, Optional[float]], Tuple[Failure, Optional[float]]]
_Plan = Generator[Union[_Attempt, _Sleep], Optional[AttemptResult], Tuple[Answer, bool]]


def _plan(endpoints: Endpoints, settings: Settings, request: Request, budget: Budget) -> _Plan:
    """The rules of one call. Yields the attempts and pauses to make; returns the answer and whether the preference moved."""
    tried: List[Tuple[str, str]] = []
    maybe_applied = False
    last_retry_after: Optional[float] = None
    for round_ in range(budget.rounds):
        retry_after: Optional[float] = None
        for index in endpoints.round():
            now = time.monotonic()
            if now >= budget.deadline:
                raise Unavailable(tried, maybe_applied, retry_after=last_retry_after)
            wait = None if request.wait_until is None else ask_for(request.wait_until - now)
            timeout = min(settings.request_timeout + (wait or 0), budget.deadline - now)
            authority = endpoints.list[index].authority
            result = yield _Attempt(index, wait, timeout)
            assert result is not None
            if not isinstance(result[0], Failure):
                status, body, answer_retry_after = result
                moved = endpoints.answered(index)
                return Answer(status, body, authority, maybe_applied, answer_retry_after), moved
            failure, asked = result[0], result[1]
            log.debug("lock.io call to %s failed: %s", authority, failure.reason)
            endpoints.failed(index)
            if asked is not None:
                retry_after = max(retry_after or 0.0, asked)
                last_retry_after = retry_after
            maybe_applied = maybe_applied or request.maybe_applied(failure)
            tried = [t for t in tried if t[0] != authority] + [(authority, failure.reason)]
            if not may_retry(request.safety, failure):
                raise Unavailable(tried, True, retry_after=last_retry_after)
        pause = backoff(round_, retry_after)
        if request.wait_until is not None:
            # The server keeps a waiter's place for 2 s after its connection broke.
            pause = min(pause, RETRY_PAUSE_CAP)
        if round_ + 1 == budget.rounds or time.monotonic() + pause >= budget.deadline:
            break
        yield _Sleep(pause)
    raise Unavailable(tried, maybe_applied, retry_after=last_retry_after)


def _url(endpoint: Endpoint, request: Request) -> str:
    return endpoint.base + "/" + "/".join(quote(seg, safe="") for seg in request.path)


def _body(request: Request, wait: Optional[int]) -> Optional[Dict[str, Any]]:
    if wait is None:
        return request.body
    body = dict(request.body or {})
    body["wait"] = wait
    return body


def _failure(e: Exception, timeout: float) -> Failure:
    """What an httpx error means for a retry: a connection that never opened means the request was not sent."""
    if isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return Failure(FailureKind.NOT_SENT, str(e) or type(e).__name__)
    if isinstance(e, (httpx.TimeoutException, asyncio.TimeoutError)):
        return Failure(FailureKind.LOST, f"no answer within {timeout:.1f}s")
    return Failure(FailureKind.LOST, str(e) or type(e).__name__)


def _result(response: httpx.Response) -> AttemptResult:
    """A 503 is a failure (with its Retry-After); every other answer is the node's word."""
    retry_after: Optional[float] = None
    try:
        retry_after = float(response.headers.get("retry-after", "").strip())
    except ValueError:
        pass
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 503:
        error = body.get("error") if isinstance(body, dict) else None
        reason = f"503: {error}" if isinstance(error, str) else "503"
        # Only an explicit "not_applied" proves nothing happened.
        outcome_unknown = not (isinstance(body, dict) and body.get("outcome") == "not_applied")
        return Failure(FailureKind.UNAVAILABLE, reason, outcome_unknown), retry_after
    return response.status_code, body, retry_after


class _Discovery:
    """Whether to start a leader lookup: one at a time, at most one per ``REDISCOVER`` unless the preference moved."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = False
        self._last: Optional[float] = None

    def start(self, moved: bool) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._running or (not moved and self._last is not None and now < self._last + REDISCOVER):
                return False
            self._running, self._last = True, now
            return True

    def done(self) -> None:
        with self._lock:
            self._running = False


def _tls(ca_cert: Optional[str]) -> Union[bool, ssl.SSLContext]:
    return ssl.create_default_context(cafile=ca_cert) if ca_cert else True


def _headers(token: Optional[str]) -> Dict[str, str]:
    headers = {"User-Agent": "lockio-python/0.1.0"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


class SyncTransport:
    """The plan run with a blocking httpx client; safe to use from several threads."""

    def __init__(self, endpoints: Endpoints, settings: Settings, token: Optional[str], ca_cert: Optional[str]) -> None:
        self.endpoints = endpoints
        self.settings = settings
        # A lock service is reached directly: no proxy from the environment.
        self.http = httpx.Client(trust_env=False, verify=_tls(ca_cert), headers=_headers(token))
        self._discovery = _Discovery()
        self.closed = False

    def budget(self) -> Budget:
        """The default budget of a call: ``retry_budget`` from now."""
        return Budget(time.monotonic() + self.settings.retry_budget, self.settings.rounds)

    def send(self, request: Request, budget: Optional[Budget] = None) -> Answer:
        """Sends ``request`` until a node answers (anything but 503), the budget runs out, or a retry is unsafe."""
        plan = _plan(self.endpoints, self.settings, request, budget or self.budget())
        result: Optional[AttemptResult] = None
        try:
            while True:
                step = plan.send(result)
                if isinstance(step, _Sleep):
                    time.sleep(step.seconds)
                    result = None
                else:
                    result = self._attempt(self.endpoints.list[step.index], request, step.wait, step.timeout)
        except StopIteration as stop:
            answer, moved = stop.value
            if moved or not self.endpoints.leader_known():
                self._find_leader_in_background(moved)
            return answer  # type: ignore[no-any-return,unused-ignore]

    def _attempt(self, endpoint: Endpoint, request: Request, wait: Optional[int], timeout: float) -> AttemptResult:
        timeout = max(timeout, 0.001)
        try:
            response = self.http.request(
                request.method, _url(endpoint, request), params=request.query or None, json=_body(request, wait),
                timeout=httpx.Timeout(timeout, connect=min(self.settings.connect_timeout, timeout)))
        except (httpx.TransportError, OSError) as e:
            return _failure(e, timeout), None
        return _result(response)

    def _find_leader_in_background(self, moved: bool) -> None:
        if self.closed or not self._discovery.start(moved):
            return
        threading.Thread(target=self._find_leader, name="lockio-leader-lookup", daemon=True).start()

    def _find_leader(self) -> None:
        try:
            request = Request("GET", ["cluster", "status"], Safety.REPEATABLE)
            for index in self.endpoints.round():
                result = self._attempt(self.endpoints.list[index], request, None, 2.0)
                if not isinstance(result[0], Failure) and result[0] == 200:
                    leader = leader_http(result[1])
                    if leader is not None:
                        self.endpoints.leader_is(leader)
                    break
        except Exception:  # pragma: no cover - the client closed under the lookup
            log.debug("leader lookup failed", exc_info=True)
        finally:
            self._discovery.done()

    def close(self) -> None:
        """Closes the connections."""
        self.closed = True
        self.http.close()


class AsyncTransport:
    """The plan run with httpx's asyncio client, on one event loop."""

    def __init__(self, endpoints: Endpoints, settings: Settings, token: Optional[str], ca_cert: Optional[str]) -> None:
        self.endpoints = endpoints
        self.settings = settings
        self.http = httpx.AsyncClient(trust_env=False, verify=_tls(ca_cert), headers=_headers(token))
        self._discovery = _Discovery()
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    def budget(self) -> Budget:
        """The default budget of a call: ``retry_budget`` from now."""
        return Budget(time.monotonic() + self.settings.retry_budget, self.settings.rounds)

    async def send(self, request: Request, budget: Optional[Budget] = None) -> Answer:
        """Sends ``request`` until a node answers (anything but 503), the budget runs out, or a retry is unsafe."""
        plan = _plan(self.endpoints, self.settings, request, budget or self.budget())
        result: Optional[AttemptResult] = None
        try:
            while True:
                step = plan.send(result)
                if isinstance(step, _Sleep):
                    await asyncio.sleep(step.seconds)
                    result = None
                else:
                    result = await self._attempt(self.endpoints.list[step.index], request, step.wait, step.timeout)
        except StopIteration as stop:
            answer, moved = stop.value
            if moved or not self.endpoints.leader_known():
                self._find_leader_in_background(moved)
            return answer  # type: ignore[no-any-return,unused-ignore]

    async def _attempt(self, endpoint: Endpoint, request: Request, wait: Optional[int],
                       timeout: float) -> AttemptResult:
        timeout = max(timeout, 0.001)
        try:
            # httpx's timeouts are per operation; the whole attempt is bounded here.
            response = await asyncio.wait_for(self.http.request(
                request.method, _url(endpoint, request), params=request.query or None, json=_body(request, wait),
                timeout=httpx.Timeout(timeout, connect=min(self.settings.connect_timeout, timeout))), timeout)
        except (httpx.TransportError, OSError, asyncio.TimeoutError) as e:
            return _failure(e, timeout), None
        return _result(response)

    def _find_leader_in_background(self, moved: bool) -> None:
        if self.closed or not self._discovery.start(moved):
            return
        task = asyncio.get_running_loop().create_task(self._find_leader())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _find_leader(self) -> None:
        try:
            request = Request("GET", ["cluster", "status"], Safety.REPEATABLE)
            for index in self.endpoints.round():
                result = await self._attempt(self.endpoints.list[index], request, None, 2.0)
                if not isinstance(result[0], Failure) and result[0] == 200:
                    leader = leader_http(result[1])
                    if leader is not None:
                        self.endpoints.leader_is(leader)
                    break
        except Exception:  # pragma: no cover - the client closed under the lookup
            log.debug("leader lookup failed", exc_info=True)
        finally:
            self._discovery.done()

    async def close(self) -> None:
        """Stops the lookups and closes the connections."""
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        await self.http.aclose()


__all__ = ["Answer", "AsyncTransport", "Budget", "Error", "Request", "Settings", "SyncTransport"]

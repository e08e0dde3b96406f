"""The asyncio API: ``AsyncClient``, ``AsyncSession`` (a keepalive task), ``AsyncLock`` and ``AsyncElection``.

The same shape as the blocking API: ``async with client.session(...) as session`` and
``async with session.lock(...) as lock``; both can also be awaited (``session = await
client.session(...)``, ``lock = await session.lock(...)``) and closed or released explicitly.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from types import TracebackType
from typing import Any, Awaitable, Callable, Generator, Iterable, List, Optional, Set, Type, TypeVar, Union

from . import _calls as calls
from ._endpoints import Endpoints
from ._errors import AlreadyLocked, Error, InvalidRequest, LockHeld, SessionExpired, SessionNotFound, Unavailable, WaitTimeout
from ._lease import Expiry, Keepalive, SessionState
from ._transport import AsyncTransport, Budget, Settings
from ._types import EventId, FenceCheck, Grant, LockStatus, NodeStatus, SessionCreated, Stats
from ._wait import MAX_WAIT_SECS, ask_for, prefix_value, resource_value
from ._watch import AsyncWatch

log = logging.getLogger("lockio")
T = TypeVar("T")


class AsyncClient:
    """A lock.io cluster for asyncio code; the same rules as ``lockio.Client``. Use it on one event loop.

    ``async with lockio.AsyncClient(endpoints) as client:`` closes its connections on exit.
    """

    def __init__(self, endpoints: Union[str, Iterable[str]], token: Optional[str] = None,
                 ca_cert: Optional[str] = None, *, request_timeout: float = 10.0, connect_timeout: float = 2.0,
                 retry_budget: float = 20.0, rounds: int = 4) -> None:
        settings = Settings(request_timeout, connect_timeout, retry_budget, max(1, rounds))
        self._transport = AsyncTransport(Endpoints(endpoints), settings, token, ca_cert)
        self._tasks: Set[asyncio.Task[None]] = set()

    @property
    def endpoints(self) -> List[str]:
        """The endpoints as ``host:port``, in the order given."""
        return [e.authority for e in self._transport.endpoints.list]

    def session(self, client_id: str, timeout: int = 30, lock_delay: int = 0,
                on_lost: Optional[Callable[[Expiry], None]] = None) -> AsyncSession:
        """A session kept alive by a background task: ``async with`` it, or ``await`` it to open it.

        The arguments are those of ``lockio.Client.session``; ``on_lost`` is called on the event
        loop. Values are checked here, before anything is sent.
        """
        calls.create_session(client_id, timeout, lock_delay)
        return AsyncSession(self, client_id, timeout, lock_delay, on_lost)

    async def status(self) -> NodeStatus:
        """``GET /cluster/status`` from whichever endpoint answers first."""
        return (await self._transport.send(calls.status())).ok().read(NodeStatus.read)

    async def stats(self) -> Stats:
        """``GET /admin/stats``: sessions, locks, waiters and the fence counter."""
        return (await self._transport.send(calls.stats())).ok().read(Stats.read)

    async def lock_status(self, resource: str) -> LockStatus:
        """``GET /admin/locks/{resource}``: who holds it, if anyone, and who waits for it."""
        return (await self._transport.send(calls.lock_status(resource))).ok().read(LockStatus.read)

    async def cleanup(self) -> int:
        """``POST /admin/cleanup``: removes expired sessions now; returns how many."""
        return (await self._transport.send(calls.cleanup())).ok().read(lambda f: f.integer("count"))

    async def fence_check(self, resource: str, fence_token: int) -> FenceCheck:
        """``POST /fence/check``: whether a current holder of ``resource`` holds it under exactly ``fence_token``.

        See ``lockio.Client.fence_check``.
        """
        return (await self._transport.send(calls.fence_check(resource, fence_token))).ok().read(FenceCheck.read)

    def watch(self, prefix: str = "", after: Union[str, EventId, None] = None) -> AsyncWatch:
        """``GET /events``: ``async for event in client.watch(prefix):``; see ``lockio.Client.watch``.

        The stream is opened on the first ``__anext__``; ``await watch.close()`` (or ``async
        with``) ends it.
        """
        start = None if after is None else EventId.parse(after)
        return AsyncWatch(self._transport, prefix_value(prefix), start)

    async def close(self) -> None:
        """Closes the connections and stops background tasks. Sessions of this client should be closed first."""
        for task in list(self._tasks):
            task.cancel()
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, et: Optional[Type[BaseException]], e: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        await self.close()

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _release(self, session_id: str, resource: str, fence_token: int) -> None:
        answer = await self._transport.send(calls.release(session_id, resource, fence_token))
        calls.removal(answer, calls.RELEASE_GONE)

    async def _acquire(self, session_id: str, resource: str, wait: int,
                       options: calls.LockOptions = calls.EXCLUSIVE) -> Grant:
        if wait == 0:
            answer = await self._transport.send(calls.acquire(session_id, resource, options))
        else:
            request, budget = calls.acquire_wait(session_id, resource, wait, self._transport.settings, options)
            answer = await self._transport.send(request, budget)
        answer.ok()
        return answer.read(lambda f: Grant.read(f, answer.status))

    async def _settle(self, session_id: str, resource: str, held: calls.Held) -> None:
        """After a wait whose outcome was not seen: release the lock if the cluster granted it after all."""
        try:
            await asyncio.sleep(calls.CANCEL_SETTLES)
            limit = time.monotonic() + calls.SETTLE_LIMIT
            while time.monotonic() < limit:
                try:
                    status = await self.lock_status(resource)
                    mine = status.holder_of(session_id)
                    if mine is not None:
                        await self._release(session_id, resource, mine.fence_token)
                        return
                    if not any(w.session_id == session_id for w in status.waiters):
                        return
                except Error as e:
                    log.debug("settling a cancelled wait for %s: %s", resource, e)
                await asyncio.sleep(0.5)
        finally:
            held.forget(resource)


class AsyncSession(calls.LeaseKeeper):
    """A session for asyncio code, kept alive by a task; the same rules as ``lockio.Session``.

    ``lost`` is an ``asyncio.Event`` (``await session.lost.wait()``), set when the session ends
    other than by ``close()``; ``wait_lost()`` also wakes at the session's deadline.
    """

    def __init__(self, client: AsyncClient, client_id: str, timeout: int, lock_delay: int,
                 on_lost: Optional[Callable[[Expiry], None]]) -> None:
        # Not opened yet: a lease that never runs out, and no id (so nothing is published).
        super().__init__("", math.inf, float(timeout), float(timeout // 3), on_lost)
        self.client = client
        self.client_id = client_id
        self.timeout = timeout
        self.lock_delay = lock_delay
        self.keepalive_interval = timeout // 3
        #: The session's id, minted by the cluster (empty until opened).
        self.id = ""
        self.lost = asyncio.Event()
        self._held = calls.Held()
        self._task: Optional[asyncio.Task[None]] = None
        self._closed = False

    def __repr__(self) -> str:
        return f"AsyncSession(id={self.id!r}, client_id={self.client_id!r})"

    async def open(self) -> AsyncSession:
        """Creates the session in the cluster and starts its keepalive task (once)."""
        if self.id:
            return self
        request, delay = calls.create_session(self.client_id, self.timeout, self.lock_delay)
        sent_at = time.monotonic()
        answer = (await self.client._transport.send(request)).ok()
        created = answer.read(lambda f: SessionCreated.read(f, delay))
        interval = max(float(created.keepalive_interval), 0.1)
        calls.LeaseKeeper.__init__(self, created.session_id, sent_at, float(created.timeout), interval,
                                   self._on_lost)
        self.id, self.client_id, self.timeout = created.session_id, created.client_id, created.timeout
        self.keepalive_interval, self.lock_delay = created.keepalive_interval, created.lock_delay
        self.lost = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._keep_alive())
        return self

    def __await__(self) -> Generator[Any, None, AsyncSession]:
        return self.open().__await__()

    def _set_lost(self) -> None:
        self.lost.set()

    async def _keep_alive(self) -> None:
        cap = self.client._transport.settings.request_timeout
        while True:
            await asyncio.sleep(max(0.0, self._next_keepalive() - time.monotonic()))
            sent_at = time.monotonic()
            deadline = self._attempt_deadline(sent_at, cap)
            if deadline is None:
                return
            try:
                answer = await self.client._transport.send(calls.keepalive(self.id), Budget(deadline, 1))
                answer.ok()
                outcome = Keepalive.ACKED
            except (SessionExpired, SessionNotFound):
                outcome = Keepalive.GONE
            except Exception as e:
                log.debug("keepalive of session %s failed: %s", self.id, e)
                outcome = Keepalive.FAILED
            if self._record(outcome, sent_at) is SessionState.EXPIRED:
                return

    async def wait_lost(self) -> Expiry:
        """Returns when the session is lost (with why), waking at its deadline even if no keepalive ran."""
        while not self.is_lost:
            if self._closed:
                return Expiry.CLOSED
            try:
                await asyncio.wait_for(self.lost.wait(), max(0.001, min(self.deadline - time.monotonic() + 0.001, 1.0)))
            except asyncio.TimeoutError:
                pass
        return self.expiry or Expiry.TIMED_OUT

    def lock(self, resource: str, wait: Optional[int] = None, mode: str = "exclusive", limit: Optional[int] = None,
             value: Optional[str] = None) -> AsyncLock:
        """The lock on ``resource``: ``async with`` it (or ``await`` it) to take it; raises rather than enter without it.

        The rules and arguments of ``lockio.Session.lock`` (shared locks, limits, values).
        Cancelling a wait gives the place in the queue up; if the cluster granted the lock just
        before, it is released in the background.
        """
        wait_s = calls.check_wait(wait)
        return AsyncLock(self, resource_value(resource), wait_s, calls.LockOptions.check(mode, limit, value))

    def semaphore(self, resource: str, limit: int, wait: Optional[int] = None) -> AsyncLock:
        """One of ``limit`` permits of the semaphore ``resource``: ``async with`` it; see ``lockio.Session.semaphore``."""
        if limit is None:
            raise InvalidRequest("limit", "a semaphore needs a limit from 1 to 10,000")
        return self.lock(resource, wait=wait, mode="shared", limit=limit)

    def election(self, resource: str, value: str) -> AsyncElection:
        """A candidate named by ``value`` in the leader election on ``resource``; see ``lockio.AsyncElection``."""
        return AsyncElection(self, resource_value(resource), calls.LockOptions.check("exclusive", None, value))

    async def _take(self, resource: str, wait: int, options: calls.LockOptions = calls.EXCLUSIVE) -> Grant:
        if self.state is SessionState.EXPIRED:
            raise SessionExpired(self.id)
        if not self._held.reserve(resource):
            raise AlreadyLocked(resource)
        if wait == 0:
            try:
                return await self.client._acquire(self.id, resource, 0, options)
            except BaseException:
                self._held.forget(resource)
                raise
        acquire = asyncio.ensure_future(self.client._acquire(self.id, resource, wait, options))
        lost = asyncio.ensure_future(self.wait_lost())
        settled = False
        try:
            await asyncio.wait({acquire, lost}, return_when=asyncio.FIRST_COMPLETED)
            if acquire.done():
                error = acquire.exception()
                if error is None:
                    settled = True
                    return acquire.result()
                if not isinstance(error, Unavailable):
                    settled = True
                    self._held.forget(resource)
                raise error
            # The session is over: the cluster ends its waits and releases its locks itself.
            settled = True
            self._held.forget(resource)
            raise SessionExpired(self.id)
        finally:
            lost.cancel()
            if not acquire.done():
                acquire.cancel()  # closes the connection, which cancels the wait
            if not settled:
                # The cluster may have granted it meanwhile: look, and release it then.
                self.client._spawn(self.client._settle(self.id, resource, self._held))

    async def close(self) -> None:
        """Stops the keepalives and deletes the session, which releases its locks."""
        if self._closed or not self.id:
            self._closed = True
            return
        self._closed = True
        self._close_lease()
        if self._task is not None:
            self._task.cancel()
        try:
            answer = await self.client._transport.send(calls.delete_session(self.id))
            calls.removal(answer, calls.DELETE_GONE)
        except SessionNotFound:
            pass

    @property
    def closed(self) -> bool:
        """Whether ``close()`` ran."""
        return self._closed

    async def __aenter__(self) -> AsyncSession:
        return await self.open()

    async def __aexit__(self, et: Optional[Type[BaseException]], e: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        try:
            await self.close()
        except Error:
            if et is None:
                raise
            log.debug("closing session %s failed", self.id, exc_info=True)


class AsyncLock:
    """A lock for asyncio code, taken on ``async with`` (or ``await``), released on exit; see ``lockio.Lock``."""

    def __init__(self, session: AsyncSession, resource: str, wait: int,
                 options: calls.LockOptions = calls.EXCLUSIVE) -> None:
        self.session = session
        self.resource = resource
        #: ``"exclusive"`` or ``"shared"``.
        self.mode = options.mode
        #: The limit asked for (a semaphore's permits); None when none was named.
        self.limit = options.limit
        #: The value stored with the grant (None: none).
        self.value = options.value
        self._options = options
        self._wait = wait
        self._grant: Optional[Grant] = None
        self._released = False

    def __repr__(self) -> str:
        return f"AsyncLock(resource={self.resource!r}, mode={self.mode}, fence_token={self._grant and self._grant.fence_token})"

    async def acquire(self) -> AsyncLock:
        """Takes the lock (once), or raises ``LockHeld``, ``LockDelayed``, ``SessionExpired``, ..."""
        if self._grant is None:
            self._grant = await self.session._take(self.resource, self._wait, self._options)
        return self

    def __await__(self) -> Generator[Any, None, AsyncLock]:
        return self.acquire().__await__()

    def _granted(self) -> Grant:
        if self._grant is None:
            raise Error(f"the lock on {self.resource} has not been acquired")
        return self._grant

    @property
    def fence_token(self) -> int:
        """This grant's token: higher than every earlier grant's, on any resource."""
        return self._granted().fence_token

    @property
    def newly_granted(self) -> bool:
        """False when the session already held the lock before (the cluster answered 200)."""
        return self._granted().newly_granted

    @property
    def waited(self) -> float:
        """Seconds the grant waited in the lock's queue."""
        return self._granted().waited

    @property
    def lost(self) -> asyncio.Event:
        """The session's ``lost`` event."""
        return self.session.lost

    @property
    def held(self) -> bool:
        """Whether the lock is still held as far as this client can tell."""
        return self._grant is not None and not self._released and self.session.state is not SessionState.EXPIRED

    def check(self) -> None:
        """Raises ``SessionExpired`` if the session was lost (its locks must be assumed released)."""
        if self.session.is_lost:
            raise SessionExpired(self.session.id, message=f"lost the lock on {self.resource}: session "
                                 f"{self.session.id} expired ({(self.session.expiry or Expiry.TIMED_OUT).describe()})")

    async def release(self) -> None:
        """Releases the lock. ``SessionExpired``/``SessionNotFound``: it was already gone with the session."""
        grant = self._granted()
        if self._released:
            return
        self._released = True
        try:
            await self.session.client._release(self.session.id, self.resource, grant.fence_token)
        finally:
            self.session._held.forget(self.resource)

    async def _release_quietly(self) -> None:
        try:
            await self.release()
        except Exception as e:
            log.debug("releasing %s after the session was lost: %s", self.resource, e)

    async def __aenter__(self) -> AsyncLock:
        return await self.acquire()

    async def __aexit__(self, et: Optional[Type[BaseException]], e: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        lost = self.session.is_lost
        try:
            if self.session.closed:
                self._released = True
                self.session._held.forget(self.resource)
            elif lost:
                # The cluster releases it with the session; only tried in the background.
                self.session.client._spawn(self._release_quietly())
            else:
                await self.release()
        except Error:
            if et is None and not lost:
                raise
            log.debug("releasing %s failed", self.resource, exc_info=True)
        if lost and et is None:
            self.check()


class AsyncElection:
    """Leader election for asyncio code: ``session.election(resource, value)``; the rules of ``lockio.Election``.

    ::

        election = session.election("scheduler", "10.0.0.1:8080")
        async with await election.campaign() as lead:
            await run_scheduler(fence_token=lead.fence_token)
    """

    def __init__(self, session: AsyncSession, resource: str, options: calls.LockOptions) -> None:
        self.session = session
        self.resource = resource
        #: This candidate's value, stored with the lock while it leads.
        self.value = options.value
        self._options = options
        self._lock: Optional[AsyncLock] = None

    def __repr__(self) -> str:
        return f"AsyncElection(resource={self.resource!r}, value={self.value!r}, leading={self.leading})"

    @property
    def lost(self) -> asyncio.Event:
        """The session's ``lost`` event: set when the session, and so the leadership, is lost."""
        return self.session.lost

    async def campaign(self, timeout: Optional[float] = None) -> AsyncLock:
        """Waits until this session leads and returns its lock (``async with`` it to resign on exit).

        ``timeout`` (seconds; None: as long as it takes) ends the campaign with ``LockHeld``;
        a lost session with ``SessionExpired``. Cancelling it gives the place in the queue up.
        """
        if self._lock is not None and self._lock.held:
            return self._lock
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = MAX_WAIT_SECS if end is None else min(ask_for(end - time.monotonic()), MAX_WAIT_SECS)
            try:
                self._lock = await self.session.lock(self.resource, wait=wait, value=self.value)
                return self._lock
            except (LockHeld, WaitTimeout):
                if end is not None and time.monotonic() >= end:
                    raise

    @property
    def leading(self) -> bool:
        """Whether this session leads, as far as this client can tell: it holds the lock and the session is not lost."""
        return self._lock is not None and self._lock.held

    @property
    def fence_token(self) -> Optional[int]:
        """The fence token of this session's leadership while it leads."""
        return self._lock.fence_token if self.leading and self._lock is not None else None

    async def leader(self) -> Optional[str]:
        """The current leader's value, read from the lock's status; None while nobody leads (or it has no value)."""
        holder = (await self.session.client.lock_status(self.resource)).holder
        return None if holder is None else holder.value

    async def resign(self) -> None:
        """Gives the leadership up (releases the lock), so that the next candidate in the queue leads."""
        lock, self._lock = self._lock, None
        if lock is not None and lock.held:
            await lock.release()

    async def run(self, func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Campaigns, then awaits ``func(*args, **kwargs)`` as the leader and resigns when it returns."""
        async with await self.campaign():
            return await func(*args, **kwargs)

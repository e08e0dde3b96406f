"""The blocking API: ``Client``, ``Session`` (a keepalive thread), ``Lock`` and ``Election``."""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Any, Callable, Iterable, List, Optional, Type, TypeVar, Union

from . import _calls as calls
from ._endpoints import Endpoints
from ._errors import AlreadyLocked, Error, InvalidRequest, LockHeld, SessionExpired, SessionNotFound, Unavailable, WaitTimeout
from ._lease import Expiry, Keepalive, SessionState
from ._transport import Budget, Settings, SyncTransport
from ._types import EventId, FenceCheck, Grant, LockStatus, NodeStatus, SessionCreated, Stats
from ._wait import MAX_WAIT_SECS, ask_for, prefix_value, resource_value
from ._watch import Watch

log = logging.getLogger("lockio")
T = TypeVar("T")


class Client:
    """A lock.io cluster, reached through any of its endpoints; safe to share between threads.

    ``endpoints`` is a list of ``host:port`` or ``http://host:port`` (or one comma-separated
    string). Every call tries the preferred endpoint first (the leader, once known, else the last
    one that answered), then the others; calls that are safe to repeat are retried on 503 and
    connection errors, with backoff doubling from 250 ms to 2 s, for at most ``rounds`` rounds and
    ``retry_budget`` seconds. A session create is never repeated once it may have reached the
    cluster (a repeat would be a second session): it raises ``Unavailable`` with
    ``outcome_unknown`` instead.

    ``token`` is sent as ``Authorization: Bearer``, and ``ca_cert`` (a PEM file) verifies
    ``https://`` endpoints; the server takes neither yet (they arrive with its security issue).

    >>> client = lockio.Client(["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"])  # doctest: +SKIP
    """

    def __init__(self, endpoints: Union[str, Iterable[str]], token: Optional[str] = None,
                 ca_cert: Optional[str] = None, *, request_timeout: float = 10.0, connect_timeout: float = 2.0,
                 retry_budget: float = 20.0, rounds: int = 4) -> None:
        settings = Settings(request_timeout, connect_timeout, retry_budget, max(1, rounds))
        self._transport = SyncTransport(Endpoints(endpoints), settings, token, ca_cert)

    @property
    def endpoints(self) -> List[str]:
        """The endpoints as ``host:port``, in the order given."""
        return [e.authority for e in self._transport.endpoints.list]

    def session(self, client_id: str, timeout: int = 30, lock_delay: int = 0,
                on_lost: Optional[Callable[[Expiry], None]] = None) -> Session:
        """Opens a session kept alive by a background thread; use it as a context manager to close it.

        ``timeout`` (whole seconds, 5 to 3600) is how long the cluster keeps the session and its
        locks without hearing a keepalive. ``lock_delay`` (0 to 60 s) keeps each lock the session
        held unavailable to others for that long if the session *expires* (not on release or
        close). ``on_lost`` is called once, from the keepalive thread, when the session is lost.
        """
        request, delay = calls.create_session(client_id, timeout, lock_delay)
        sent_at = time.monotonic()
        created = self._transport.send(request).ok().read(lambda f: SessionCreated.read(f, delay))
        return Session(self, created, sent_at, on_lost)

    def status(self) -> NodeStatus:
        """``GET /cluster/status`` from whichever endpoint answers first: that node's view of the cluster."""
        return self._transport.send(calls.status()).ok().read(NodeStatus.read)

    def stats(self) -> Stats:
        """``GET /admin/stats``: sessions, locks, waiters and the fence counter."""
        return self._transport.send(calls.stats()).ok().read(Stats.read)

    def lock_status(self, resource: str) -> LockStatus:
        """``GET /admin/locks/{resource}``: who holds it, if anyone, and who waits for it."""
        return self._transport.send(calls.lock_status(resource)).ok().read(LockStatus.read)

    def cleanup(self) -> int:
        """``POST /admin/cleanup``: removes expired sessions now; returns how many."""
        return self._transport.send(calls.cleanup()).ok().read(lambda f: f.integer("count"))

    def fence_check(self, resource: str, fence_token: int) -> FenceCheck:
        """``POST /fence/check``: whether a current holder of ``resource`` holds it under exactly ``fence_token``.

        For a service that cannot keep its own highest-token record (Chubby's CheckSequencer):
        ask before acting on a request that carries a token. A linearizable read; the result's
        ``valid`` (also its truth value) answers, and ``holders`` lists the current holders.
        """
        return self._transport.send(calls.fence_check(resource, fence_token)).ok().read(FenceCheck.read)

    def watch(self, prefix: str = "", after: Union[str, EventId, None] = None) -> Watch:
        """``GET /events``: an iterator of the changes about resources whose names start with ``prefix``.

        An empty ``prefix`` watches every change. ``after`` (an id a watch delivered, its
        ``position``, or a ``Compacted``'s ``current``) starts after that change; without it the
        node's recent history comes first. The stream is opened on the first ``next()`` and
        reopened, after the last change delivered, when it breaks; see ``lockio.Watch``.
        """
        start = None if after is None else EventId.parse(after)
        return Watch(self._transport, prefix_value(prefix), start)

    def close(self) -> None:
        """Closes the connections. Sessions of this client should be closed first."""
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, et: Optional[Type[BaseException]], e: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    # The single calls the session and locks make.

    def _keepalive(self, session_id: str, budget: Budget) -> None:
        self._transport.send(calls.keepalive(session_id), budget).ok()

    def _delete_session(self, session_id: str) -> None:
        calls.removal(self._transport.send(calls.delete_session(session_id)), calls.DELETE_GONE)

    def _acquire(self, session_id: str, resource: str, wait: int, options: calls.LockOptions = calls.EXCLUSIVE) -> Grant:
        if wait == 0:
            answer = self._transport.send(calls.acquire(session_id, resource, options))
        else:
            request, budget = calls.acquire_wait(session_id, resource, wait, self._transport.settings, options)
            answer = self._transport.send(request, budget)
        answer.ok()
        return answer.read(lambda f: Grant.read(f, answer.status))

    def _release(self, session_id: str, resource: str, fence_token: int) -> None:
        calls.removal(self._transport.send(calls.release(session_id, resource, fence_token)), calls.RELEASE_GONE)

    def _settle(self, session_id: str, resource: str, held: calls.Held) -> None:
        """After a wait whose outcome was not seen: release the lock if the cluster granted it after all."""
        def run() -> None:
            try:
                time.sleep(calls.CANCEL_SETTLES)
                limit = time.monotonic() + calls.SETTLE_LIMIT
                while time.monotonic() < limit:
                    try:
                        status = self.lock_status(resource)
                        mine = status.holder_of(session_id)
                        if mine is not None:
                            self._release(session_id, resource, mine.fence_token)
                            return
                        if not any(w.session_id == session_id for w in status.waiters):
                            return
                    except Error as e:
                        log.debug("settling a cancelled wait for %s: %s", resource, e)
                    time.sleep(0.5)
            except Exception:  # pragma: no cover - the client closed meanwhile
                log.debug("settling a cancelled wait failed", exc_info=True)
            finally:
                held.forget(resource)
        threading.Thread(target=run, name="lockio-settle", daemon=True).start()


class Session(calls.LeaseKeeper):
    """An open session, kept alive by a background thread until closed.

    ``state`` is ``SessionState.ALIVE``, ``IN_JEOPARDY`` (keepalives failing, the timeout not yet
    passed: locks still held, but do not start work that cannot be cut short) or ``EXPIRED``
    (its locks are, or must be assumed, released; ``expiry`` says why). The client's deadline is
    the send time of the last acknowledged keepalive plus the timeout, never later than the
    cluster's. ``lost`` (a ``threading.Event``) is set, and ``on_lost`` called, when the session
    ends other than by ``close()``.

    Used as a context manager, it is closed (deleted, its locks released) on exit.
    """

    def __init__(self, client: Client, created: SessionCreated, sent_at: float,
                 on_lost: Optional[Callable[[Expiry], None]]) -> None:
        interval = max(float(created.keepalive_interval), 0.1)
        super().__init__(created.session_id, sent_at, float(created.timeout), interval, on_lost)
        self.client = client
        #: The session's id, minted by the cluster.
        self.id = created.session_id
        self.client_id = created.client_id
        self.timeout = created.timeout
        self.keepalive_interval = created.keepalive_interval
        self.lock_delay = created.lock_delay
        #: Set when the session is lost (expired, confirmed or assumed), never on ``close()``.
        self.lost = threading.Event()
        self._held = calls.Held()
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._keep_alive, name=f"lockio-keepalive-{self.id[:8]}", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"Session(id={self.id!r}, client_id={self.client_id!r}, state={self.state.value})"

    def _set_lost(self) -> None:
        self.lost.set()

    def _keep_alive(self) -> None:
        """Sends a keepalive when the lease says so and records what came of it, until expired or closed."""
        cap = self.client._transport.settings.request_timeout
        while True:
            if self._stop.wait(max(0.0, self._next_keepalive() - time.monotonic())):
                return
            sent_at = time.monotonic()
            deadline = self._attempt_deadline(sent_at, cap)
            if deadline is None:
                return
            try:
                self.client._keepalive(self.id, Budget(deadline, 1))
                outcome = Keepalive.ACKED
            except (SessionExpired, SessionNotFound):
                outcome = Keepalive.GONE
            except Exception as e:
                log.debug("keepalive of session %s failed: %s", self.id, e)
                outcome = Keepalive.FAILED
            if self._stop.is_set():
                return
            if self._record(outcome, sent_at) is SessionState.EXPIRED:
                return

    def wait_lost(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the session is lost or ``timeout`` seconds passed; true if lost.

        Wakes at the session's deadline even when the keepalive thread cannot run on time.
        """
        end = None if timeout is None else time.monotonic() + timeout
        while not self.is_lost:
            now = time.monotonic()
            if self._closed or (end is not None and now >= end):
                return self.is_lost
            step = self.deadline - now + 0.001
            if end is not None:
                step = min(step, end - now)
            self.lost.wait(max(0.001, min(step, 1.0)))
        return True

    def lock(self, resource: str, wait: Optional[int] = None, mode: str = "exclusive", limit: Optional[int] = None,
             value: Optional[str] = None) -> Lock:
        """Takes the lock on ``resource``, or raises; use the result as a context manager to release it.

        Without ``wait`` (or with 0) this is a try-lock: ``LockHeld`` names the holder,
        ``LockDelayed`` says until when a lock-delay keeps it. With ``wait`` (whole seconds, up to
        300) the session waits in the resource's queue, in arrival order, until the grant or the
        time is over (``LockHeld`` with ``waited``). A broken connection or a leader change
        meanwhile is retried at once with the time left, keeping the place in the queue. The wait
        ends early with ``SessionExpired`` if the session is lost meanwhile.

        ``mode="shared"`` takes a reader's lock: any number of sessions hold it together (at most
        ``limit``, 1 to 10,000, when given: a semaphore; see ``semaphore()``), while an exclusive
        lock excludes every other holder. Readers queue behind a waiting writer, so writers never
        starve. Asking in the other mode than the session holds or waits for the resource in is
        ``ModeConflict``; a ``limit`` other than the resource's current one is ``LimitMismatch``.
        ``value`` (a string of up to 1,024 bytes) is stored with the grant and shown to everyone
        in ``lock_status(resource).holders``: a leader's address, say (see ``election()``). Every
        grant, shared or not, has its own fence token.

        The block is never entered without the lock: every failure raises before it.
        """
        wait_s = calls.check_wait(wait)
        options = calls.LockOptions.check(mode, limit, value)
        if self.state is SessionState.EXPIRED:
            raise SessionExpired(self.id)
        resource = resource_value(resource)
        if not self._held.reserve(resource):
            raise AlreadyLocked(resource)
        try:
            grant = self._acquire(resource, wait_s, options)
        except BaseException as e:
            if not (wait_s and isinstance(e, Unavailable)):
                self._held.forget(resource)
            raise
        return Lock(self, grant, options)

    def semaphore(self, resource: str, limit: int, wait: Optional[int] = None) -> Lock:
        """Takes one of ``limit`` permits of the semaphore ``resource``, or raises; a context manager that gives it back.

        A shared lock with a ``limit`` (1 to 10,000): at most ``limit`` sessions hold it at once.
        Every user of one semaphore must name the same ``limit`` while any holds or waits for it
        (``LimitMismatch`` otherwise). A full semaphore is ``LockHeld`` (with ``holders_count``),
        or, with ``wait``, a place in the queue until a permit is given back.
        """
        if limit is None:
            raise InvalidRequest("limit", "a semaphore needs a limit from 1 to 10,000")
        return self.lock(resource, wait=wait, mode="shared", limit=limit)

    def election(self, resource: str, value: str) -> Election:
        """A candidate, named by ``value`` (its address, say), in the leader election on ``resource``.

        The leader is the holder of the exclusive lock on ``resource``, carrying ``value``; see
        ``lockio.Election``. Nothing is sent until ``campaign()``.
        """
        return Election(self, resource_value(resource), calls.LockOptions.check("exclusive", None, value))

    def _acquire(self, resource: str, wait: int, options: calls.LockOptions = calls.EXCLUSIVE) -> Grant:
        if wait == 0:
            return self.client._acquire(self.id, resource, 0, options)
        # The wait runs on a helper thread, so that the caller learns of a lost session at once.
        done = threading.Event()
        outcome: List[Union[Grant, BaseException]] = []
        abandoned = threading.Event()

        def run() -> None:
            try:
                outcome.append(self.client._acquire(self.id, resource, wait, options))
            except BaseException as e:
                outcome.append(e)
            done.set()
            if abandoned.is_set() and isinstance(outcome[0], Grant):
                try:
                    self.client._release(self.id, resource, outcome[0].fence_token)
                except Error as e:
                    log.debug("releasing the lock of an abandoned wait failed: %s", e)

        threading.Thread(target=run, name="lockio-wait", daemon=True).start()
        try:
            while not done.wait(0.05):
                if self.is_lost:
                    raise SessionExpired(self.id)
        except BaseException:
            abandoned.set()
            raise
        result = outcome[0]
        if isinstance(result, Grant):
            return result
        if isinstance(result, Unavailable):
            # The cluster may have granted it after the last answer: look, and release it then; the
            # resource stays reserved until that is known.
            self.client._settle(self.id, resource, self._held)
        raise result

    def close(self) -> None:
        """Stops the keepalives and deletes the session, which releases its locks.

        A session the cluster no longer has counts as deleted. Raises ``Unavailable`` if the
        cluster could not be reached (the session then expires after its timeout).
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._close_lease()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=self.client._transport.settings.request_timeout + 1)
        try:
            self.client._delete_session(self.id)
        except SessionNotFound:
            pass

    @property
    def closed(self) -> bool:
        """Whether ``close()`` ran."""
        return self._closed

    def __enter__(self) -> Session:
        return self

    def __exit__(self, et: Optional[Type[BaseException]], e: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        try:
            self.close()
        except Error:
            if et is None:
                raise
            log.debug("closing session %s failed", self.id, exc_info=True)


class Lock:
    """A lock held by a session, with its fence token; a context manager that releases it on exit.

    Pass ``fence_token`` to whatever the lock protects, and have it refuse any token lower than
    the highest it has seen: a holder that stalled past its session's timeout then cannot
    overwrite the work of the next holder. ``lost`` is the session's event: check it (or call
    ``check()``) between steps of long work. Leaving the block after the session was lost raises
    ``SessionExpired``, since the work in it may have overlapped with the next holder's.

    ``mode`` is ``"exclusive"`` or ``"shared"`` (a reader's lock, or a semaphore's permit with
    ``limit``); ``value`` is what was stored with the grant.
    """

    def __init__(self, session: Session, grant: Grant, options: calls.LockOptions = calls.EXCLUSIVE) -> None:
        self.session = session
        self.resource = grant.resource
        #: ``"exclusive"`` or ``"shared"``.
        self.mode = options.mode
        #: The limit asked for (a semaphore's permits); None when none was named.
        self.limit = options.limit
        #: The value stored with the grant (None: none).
        self.value = options.value
        #: This grant's token: higher than every earlier grant's, on any resource.
        self.fence_token = grant.fence_token
        #: False when the session already held the lock before (the cluster answered 200).
        self.newly_granted = grant.newly_granted
        #: Seconds the grant waited in the lock's queue.
        self.waited = grant.waited
        #: The session's ``lost`` event.
        self.lost = session.lost
        self._released = False

    def __repr__(self) -> str:
        return f"Lock(resource={self.resource!r}, mode={self.mode}, fence_token={self.fence_token}, held={self.held})"

    @property
    def held(self) -> bool:
        """Whether the lock is still held as far as this client can tell: not released, session not expired."""
        return not self._released and self.session.state is not SessionState.EXPIRED

    def check(self) -> None:
        """Raises ``SessionExpired`` if the session was lost (its locks must be assumed released)."""
        if self.session.is_lost:
            raise SessionExpired(self.session.id, message=f"lost the lock on {self.resource}: session "
                                 f"{self.session.id} expired ({(self.session.expiry or Expiry.TIMED_OUT).describe()})")

    def release(self) -> None:
        """Releases the lock. ``SessionExpired``/``SessionNotFound``: it was already gone with the session."""
        if self._released:
            return
        self._released = True
        try:
            self.session.client._release(self.session.id, self.resource, self.fence_token)
        finally:
            self.session._held.forget(self.resource)

    def _release_quietly(self) -> None:
        try:
            self.release()
        except Exception as e:
            log.debug("releasing %s after the session was lost: %s", self.resource, e)

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, et: Optional[Type[BaseException]], e: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        lost = self.session.is_lost
        try:
            if self.session.closed:
                # Closing the session released the lock.
                self._released = True
                self.session._held.forget(self.resource)
            elif lost:
                # The cluster releases it with the session; a release is only tried in the
                # background, so that leaving the block does not wait on an unreachable cluster.
                threading.Thread(target=self._release_quietly, name="lockio-release", daemon=True).start()
            else:
                self.release()
        except Error:
            if et is None and not lost:
                raise
            log.debug("releasing %s failed", self.resource, exc_info=True)
        if lost and et is None:
            self.check()


class Election:
    """Leader election on one resource, as kazoo's ``Election`` recipe: ``session.election(resource, value)``.

    The leader is the session holding the exclusive lock on ``resource``, with this candidate's
    ``value`` stored in the grant. ``campaign()`` waits in the resource's queue, in arrival
    order, until this session leads and returns the ``Lock``: use it as a context manager to
    resign on exit, and pass its ``fence_token`` with the leader's writes, so that a deposed
    leader's late writes are refused. Leadership ends with the lock: ``resign()``, closing the
    session, or losing it (``lost`` is set, ``leading`` turns false; check it between steps).
    ``leader()`` reads the current leader's value, for candidates and onlookers alike.

    ::

        with client.session("node-1") as session:
            election = session.election("scheduler", "10.0.0.1:8080")
            with election.campaign() as lead:
                run_scheduler(fence_token=lead.fence_token)
    """

    def __init__(self, session: Session, resource: str, options: calls.LockOptions) -> None:
        self.session = session
        self.resource = resource
        #: This candidate's value, stored with the lock while it leads.
        self.value = options.value
        #: The session's ``lost`` event: set when the session, and so the leadership, is lost.
        self.lost = session.lost
        self._options = options
        self._lock: Optional[Lock] = None

    def __repr__(self) -> str:
        return f"Election(resource={self.resource!r}, value={self.value!r}, leading={self.leading})"

    def campaign(self, timeout: Optional[float] = None) -> Lock:
        """Waits until this session leads and returns its lock (a context manager that resigns on exit).

        ``timeout`` (seconds; None waits for as long as it takes) ends the campaign with
        ``LockHeld`` naming the leader. A session that is lost meanwhile ends it with
        ``SessionExpired``. Each wait in the queue lasts at most 300 s, then joins it again.
        Already leading: the same lock.
        """
        if self._lock is not None and self._lock.held:
            return self._lock
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = MAX_WAIT_SECS if end is None else min(ask_for(end - time.monotonic()), MAX_WAIT_SECS)
            try:
                self._lock = self.session.lock(self.resource, wait=wait, value=self.value)
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

    def leader(self) -> Optional[str]:
        """The current leader's value, read from the lock's status; None while nobody leads (or it has no value)."""
        holder = self.session.client.lock_status(self.resource).holder
        return None if holder is None else holder.value

    def resign(self) -> None:
        """Gives the leadership up (releases the lock), so that the next candidate in the queue leads."""
        lock, self._lock = self._lock, None
        if lock is not None and lock.held:
            lock.release()

    def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Campaigns, then calls ``func(*args, **kwargs)`` as the leader and resigns when it returns (kazoo's ``run``)."""
        with self.campaign():
            return func(*args, **kwargs)

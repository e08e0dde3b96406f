"""The values the client returns, read from the contract's JSON bodies field by field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union

from ._errors import InvalidRequest

T = TypeVar("T")


class BodyError(Exception):
    """A success body missing a field or with one of the wrong type (turned into ``UnexpectedResponse``)."""


class Fields:
    """A JSON object, read field by field; a missing or malformed field raises ``BodyError`` naming it."""

    def __init__(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise BodyError("the body is not a JSON object")
        self.body: Dict[str, Any] = body

    def text(self, key: str) -> str:
        v = self.body.get(key)
        if not isinstance(v, str):
            raise BodyError(f"{key} is not a string")
        return v

    def opt_text(self, key: str) -> Optional[str]:
        return None if self.body.get(key) is None else self.text(key)

    def integer(self, key: str) -> int:
        v = self.body.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise BodyError(f"{key} is not a non-negative integer")
        return v

    def opt_integer(self, key: str) -> Optional[int]:
        return None if self.body.get(key) is None else self.integer(key)

    def count(self, key: str) -> int:
        """A count the contract added later: 0 when absent, as from a server that predates it."""
        return self.opt_integer(key) or 0

    def flag(self, key: str) -> bool:
        v = self.body.get(key)
        if not isinstance(v, bool):
            raise BodyError(f"{key} is not a boolean")
        return v

    def number(self, key: str) -> float:
        v = self.body.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise BodyError(f"{key} is not a number")
        return float(v)

    def opt_number(self, key: str) -> Optional[float]:
        return None if self.body.get(key) is None else self.number(key)

    def items(self, key: str, item: Callable[[Fields], T]) -> List[T]:
        """A list of objects, each read by ``item``; empty when absent."""
        v = self.body.get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            raise BodyError(f"{key} is not a list")
        return [item(Fields(x)) for x in v]

    def texts(self, key: str) -> List[str]:
        v = self.body.get(key)
        if v is None:
            return []
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise BodyError(f"{key} is not a list of strings")
        return list(v)


@dataclass(frozen=True)
class Grant:
    """A lock granted to a session: its fence token, and whether it is new and how long it waited."""

    session_id: str
    resource: str
    fence_token: int
    #: False when the session already held the lock (the cluster answered 200, not 201).
    newly_granted: bool
    #: Seconds the request waited in the lock's queue; 0 for a grant without waiting.
    waited: float

    @staticmethod
    def read(f: Fields, status: int) -> Grant:
        """From an acquire's success body."""
        return Grant(f.text("session_id"), f.text("resource"), f.integer("fence_token"), status == 201,
                     f.opt_number("waited") or 0.0)


@dataclass(frozen=True)
class SessionCreated:
    """A session the cluster just created."""

    session_id: str
    client_id: str
    timeout: int
    keepalive_interval: int
    lock_delay: int

    @staticmethod
    def read(f: Fields, lock_delay: int) -> SessionCreated:
        """From a create's success body; the answer need not repeat the lock-delay asked for."""
        ld = f.opt_integer("lock_delay")
        return SessionCreated(f.text("session_id"), f.text("client_id"), f.integer("timeout"), f.integer("keepalive_interval"),
                              lock_delay if ld is None else ld)


@dataclass(frozen=True)
class Stats:
    """``GET /admin/stats``: counts over the whole cluster."""

    active_sessions: int
    expired_sessions: int
    total_sessions: int
    total_locks: int
    fence_counter: int
    #: Sessions waiting in lock queues, over all resources.
    waiters: int

    @staticmethod
    def read(f: Fields) -> Stats:
        """From a stats body."""
        total = f.opt_integer("total_sessions")
        return Stats(f.integer("active_sessions"), f.integer("expired_sessions"),
                     total if total is not None else f.count("total_session"), f.integer("total_locks"),
                     f.integer("fence_counter"), f.count("waiters"))


@dataclass(frozen=True)
class Member:
    """A member of the cluster as one node lists it."""

    id: int
    raft: str
    #: Its advertised HTTP address (``host:port``); None until the cluster learned it.
    http: Optional[str]
    #: Only in the leader's view: the last log index known to be on the member, and its lag.
    matched_index: Optional[int] = None
    lag: Optional[int] = None

    @staticmethod
    def read(f: Fields) -> Member:
        """From one item of ``members``."""
        return Member(f.integer("id"), f.text("raft"), f.opt_text("http"), f.opt_integer("matched_index"), f.opt_integer("lag"))


@dataclass(frozen=True)
class NodeStatus:
    """``GET /cluster/status``: one node's view of the Raft cluster."""

    node_id: int
    #: ``LEADER``, ``FOLLOWER``, ``CANDIDATE`` or ``LEARNER``.
    state: str
    leader_id: Optional[int]
    term: int
    has_quorum: bool
    is_ready: bool
    commit_index: int
    applied_index: int
    uptime: int
    members: List[Member]
    stats: Optional[Stats]

    @staticmethod
    def read(f: Fields) -> NodeStatus:
        """From a cluster status body."""
        stats = f.body.get("stats")
        return NodeStatus(f.integer("node_id"), f.text("state"), f.opt_integer("leader_id"), f.integer("term"),
                          bool(f.body.get("has_quorum", False)), f.flag("is_ready"), f.integer("commit_index"),
                          f.integer("applied_index"), f.integer("uptime"), f.items("members", Member.read),
                          Stats.read(Fields(stats)) if isinstance(stats, dict) else None)

    @property
    def leader(self) -> Optional[Member]:
        """The member this node names as leader, if it knows one."""
        return next((m for m in self.members if m.id == self.leader_id), None)


@dataclass(frozen=True)
class LockHolder:
    """One holder of a lock: its session, grant (fence token, since when) and the grant's ``value``."""

    session_id: str
    client_id: Optional[str]
    fence_token: int
    acquired_at: float
    #: The value stored with the grant (``session.lock(..., value=...)``), e.g. a leader's address.
    value: Optional[str] = None

    @staticmethod
    def read(f: Fields) -> LockHolder:
        """From one item of ``holders``."""
        return LockHolder(f.text("session_id"), f.opt_text("client_id"), f.integer("fence_token"),
                          f.number("acquired_at"), f.opt_text("value"))


@dataclass(frozen=True)
class Waiter:
    """A session in a lock's queue."""

    session_id: str
    client_id: str
    #: When it joined the queue, and when its wait ends without the lock (Unix seconds, leader time).
    since: float
    deadline: float
    #: ``"exclusive"`` or ``"shared"``, and a shared waiter's ``limit``.
    mode: str = "exclusive"
    limit: Optional[int] = None

    @staticmethod
    def read(f: Fields) -> Waiter:
        """From one item of ``waiters``."""
        return Waiter(f.text("session_id"), f.text("client_id"), f.number("since"), f.number("deadline"),
                      f.opt_text("mode") or "exclusive", f.opt_integer("limit"))


@dataclass(frozen=True)
class LockStatus:
    """``GET /admin/locks/{resource}``: who holds it, if anyone, and who waits for it, head first.

    ``holder`` is the exclusive holder or the oldest shared one; ``holders`` lists every holder
    (oldest first, each with its ``value``), ``mode`` says how they hold it and ``limit`` is a
    semaphore's number of permits.
    """

    resource: str
    holder: Optional[LockHolder]
    queue_length: int
    waiters: List[Waiter] = field(default_factory=list)
    #: While under lock-delay: until when (Unix seconds).
    delayed_until: Optional[float] = None
    #: ``"exclusive"`` or ``"shared"`` while held; None when free.
    mode: Optional[str] = None
    #: A shared lock's limit (None: no limit, or not shared).
    limit: Optional[int] = None
    holders: List[LockHolder] = field(default_factory=list)

    @property
    def holders_count(self) -> int:
        """How many sessions hold it."""
        return len(self.holders)

    @staticmethod
    def read(f: Fields) -> LockStatus:
        """From a lock status body."""
        holders = f.items("holders", LockHolder.read)
        holder = None
        if f.flag("locked"):
            top = LockHolder(f.text("session_id"), f.opt_text("client_id"), f.integer("fence_token"),
                             f.number("acquired_at"))
            holder = next((h for h in holders if h.session_id == top.session_id), top)
            holders = holders or [holder]
        waiters = f.items("waiters", Waiter.read)
        ql = f.opt_integer("queue_length")
        mode = f.opt_text("mode") or ("exclusive" if holder is not None else None)
        return LockStatus(f.text("resource"), holder, len(waiters) if ql is None else ql, waiters,
                          f.opt_number("delayed_until"), mode, f.opt_integer("limit"), holders)

    def holder_of(self, session_id: str) -> Optional[LockHolder]:
        """The grant ``session_id`` holds, if it is one of the holders."""
        return next((h for h in self.holders if h.session_id == session_id), None)


@dataclass(frozen=True)
class FenceCheck:
    """``POST /fence/check``: whether a fence token is a current grant of the resource, and its holders.

    ``valid`` is true iff a current holder holds the resource under exactly ``fence_token``
    (Chubby's CheckSequencer), read linearizably.
    """

    resource: str
    fence_token: int
    valid: bool
    holders: List[LockHolder]

    def __bool__(self) -> bool:
        return self.valid

    @staticmethod
    def read(f: Fields) -> FenceCheck:
        """From a fence check's success body."""
        return FenceCheck(f.text("resource"), f.integer("fence_token"), f.flag("valid"), f.items("holders", LockHolder.read))


#: ``EventId.position`` of a bare ``INDEX``: the end of that log entry, after all its changes.
END_OF_ENTRY = (1 << 32) - 1


@dataclass(frozen=True, order=True)
class EventId:
    """The place of a change in the replicated log, ``INDEX.POSITION``: the same on every node and across restarts.

    Ordered as the log is (compare ids, never their text). A bare ``INDEX`` (as ``oldest`` and
    ``current`` of a ``Compacted`` may be) stands for the end of that entry; ``str()`` gives the
    form the server takes back as ``after``.

    >>> EventId.parse("120.2") < EventId.parse("120") < EventId.parse("121.0")
    True
    """

    index: int
    position: int = END_OF_ENTRY

    @staticmethod
    def parse(raw: Union[str, EventId]) -> EventId:
        """``INDEX.POSITION`` or ``INDEX``; anything else is ``InvalidRequest`` naming ``after``."""
        if isinstance(raw, EventId):
            return raw
        if isinstance(raw, str):
            index, dot, position = raw.partition(".")
            ok = index.isascii() and index.isdigit() and (not dot or (position.isascii() and position.isdigit()))
            if ok and len(index) <= 20 and len(position) <= 10 and (not dot or int(position) < END_OF_ENTRY):
                return EventId(int(index), int(position) if dot else END_OF_ENTRY)
        raise InvalidRequest("after", f"{raw!r} is not an event id (INDEX.POSITION)")

    def __str__(self) -> str:
        return str(self.index) if self.position == END_OF_ENTRY else f"{self.index}.{self.position}"


@dataclass(frozen=True)
class WatchEvent:
    """One change the cluster applied, as a watch delivers it (docs/http-api.md, ``GET /events``).

    ``type`` is ``session_created``, ``session_deleted``, ``session_expired``, ``lock_acquired``,
    ``lock_released``, ``lock_waiting`` or ``lock_wait_ended``; the fields a type does not have are
    None (or empty), and ``data`` is the whole JSON object as the server sent it.
    """

    id: EventId
    type: str
    #: The leader's time stamp of the change (Unix seconds).
    at: float
    resource: Optional[str]
    session_id: Optional[str]
    client_id: Optional[str]
    fence_token: Optional[int]
    #: Lock events: ``"exclusive"`` or ``"shared"``, and the grant's value.
    mode: Optional[str]
    value: Optional[str]
    #: A session's end: the grants it released, as ``(resource, fence_token)``.
    released: List[Tuple[str, int]]
    data: Dict[str, Any]

    @staticmethod
    def read(id: EventId, f: Fields) -> WatchEvent:
        """From a change's JSON."""
        return WatchEvent(id, f.text("type"), f.number("at"), f.opt_text("resource"), f.opt_text("session_id"),
                          f.opt_text("client_id"), f.opt_integer("fence_token"), f.opt_text("mode"), f.opt_text("value"),
                          f.items("released", lambda g: (g.text("resource"), g.integer("fence_token"))), f.body)

"""lock.io client: sessions kept alive in the background, locks with fence tokens, failover across a cluster.

A lock is one ``with`` statement, and the block is never entered without it::

    import lockio

    client = lockio.Client(["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"])
    with client.session("invoice-worker-1", timeout=30) as session:
        with session.lock("invoices", wait=60) as lock:
            send_invoices(fence_token=lock.fence_token)

Shared locks and semaphores (``session.lock(r, mode="shared")``, ``session.semaphore(r, limit)``),
leader elections (``session.election(r, value)``), fence checks (``client.fence_check(r, token)``)
and watches of the cluster's changes (``for event in client.watch(prefix)``) are here too.
``lockio.AsyncClient`` is the same with ``async with``. Errors are one hierarchy under
``lockio.Error``, one class per error code of the HTTP contract.
"""

from ._aio import AsyncClient, AsyncElection, AsyncLock, AsyncSession
from ._client import Client, Election, Lock, Session
from ._errors import (
    ERRORS_BY_CODE,
    AlreadyLocked,
    Compacted,
    Error,
    FenceTokenMismatch,
    InternalError,
    InvalidRequest,
    LimitMismatch,
    LockDelayed,
    LockHeld,
    LockNotAcquired,
    LockNotHeld,
    MethodNotAllowed,
    ModeConflict,
    NotFound,
    NotWaiting,
    PayloadTooLarge,
    QueueFull,
    SessionError,
    SessionExpired,
    SessionNotFound,
    Unavailable,
    UnexpectedResponse,
    UnsupportedMediaType,
    WaitTimeout,
)
from ._lease import Expiry, SessionState
from ._types import EventId, FenceCheck, LockHolder, LockStatus, Member, NodeStatus, Stats, Waiter, WatchEvent
from ._watch import AsyncWatch, Watch

__version__ = "0.1.0"

__all__ = [
    "ERRORS_BY_CODE",
    "AlreadyLocked",
    "AsyncClient",
    "AsyncElection",
    "AsyncLock",
    "AsyncSession",
    "AsyncWatch",
    "Client",
    "Compacted",
    "Election",
    "Error",
    "EventId",
    "Expiry",
    "FenceCheck",
    "FenceTokenMismatch",
    "InternalError",
    "InvalidRequest",
    "LimitMismatch",
    "Lock",
    "LockDelayed",
    "LockHeld",
    "LockHolder",
    "LockNotAcquired",
    "LockNotHeld",
    "LockStatus",
    "Member",
    "MethodNotAllowed",
    "ModeConflict",
    "NodeStatus",
    "NotFound",
    "NotWaiting",
    "PayloadTooLarge",
    "QueueFull",
    "Session",
    "SessionError",
    "SessionExpired",
    "SessionNotFound",
    "SessionState",
    "Stats",
    "Unavailable",
    "UnexpectedResponse",
    "UnsupportedMediaType",
    "WaitTimeout",
    "Waiter",
    "Watch",
    "WatchEvent",
]

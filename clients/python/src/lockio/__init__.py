"""lock.io client: sessions kept alive in the background, locks with fence tokens, failover across a cluster.

A lock is one ``with`` statement, and the block is never entered without it::

    import lockio

    client = lockio.Client(["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"])
    with client.session("invoice-worker-1", timeout=30) as session:
        with session.lock("invoices", wait=60) as lock:
            send_invoices(fence_token=lock.fence_token)

``lockio.AsyncClient`` is the same with ``async with``. Errors are one hierarchy under
``lockio.Error``, one class per error code of the HTTP contract.
"""

from ._aio import AsyncClient, AsyncLock, AsyncSession
from ._client import Client, Lock, Session
from ._errors import (
    ERRORS_BY_CODE,
    AlreadyLocked,
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
from ._types import LockHolder, LockStatus, Member, NodeStatus, Stats, Waiter

__version__ = "0.1.0"

__all__ = [
    "ERRORS_BY_CODE",
    "AlreadyLocked",
    "AsyncClient",
    "AsyncLock",
    "AsyncSession",
    "Client",
    "Error",
    "Expiry",
    "FenceTokenMismatch",
    "InternalError",
    "InvalidRequest",
    "Lock",
    "LockDelayed",
    "LockHeld",
    "LockHolder",
    "LockNotAcquired",
    "LockNotHeld",
    "LockStatus",
    "Member",
    "MethodNotAllowed",
    "NodeStatus",
    "NotFound",
    "NotWaiting",
    "PayloadTooLarge",
    "QueueFull",
    "ModeConflict",
    "LimitMismatch",
    "SessionError",
    "SessionExpired",
    "Session",
    "SessionNotFound",
    "SessionState",
    "Stats",
    "Unavailable",
    "UnexpectedResponse",
    "UnsupportedMediaType",
    "Waiter",
    "WaitTimeout",
]

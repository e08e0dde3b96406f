"""What the client may believe about its session between keepalives: alive, in jeopardy or expired.

Pure, copied from the Rust client (crates/client/src/lease.rs); instants (``time.monotonic()``
seconds) come in as arguments.

The client's deadline is conservative. The cluster starts a session's timeout when a keepalive
*arrives* (or when a new leader takes over, later still), so the newest acknowledged keepalive's
*send* time plus the timeout is never later than the cluster's deadline. Past it, the client must
assume the cluster has expired the session and released its locks, whether or not it can reach
the cluster to ask.
"""

from __future__ import annotations

import enum
from typing import Optional


class SessionState(enum.Enum):
    """A session as its holder should see it."""

    #: The last keepalive was acknowledged and the timeout has not passed since it was sent.
    ALIVE = "alive"
    #: Keepalives are failing, but the timeout has not passed since the last acknowledged one was
    #: sent. Locks are still held; work that cannot be cut short should not start.
    IN_JEOPARDY = "in_jeopardy"
    #: The session is over and its locks are (or must be assumed) released. It never comes back.
    EXPIRED = "expired"


class Expiry(enum.Enum):
    """Why a session is over."""

    #: The cluster said so: a keepalive was answered SESSION_EXPIRED or SESSION_NOT_FOUND.
    CONFIRMED = "confirmed"
    #: No keepalive was acknowledged for the session's timeout; the cluster has expired it or may
    #: at any moment, and the client assumes the worst.
    TIMED_OUT = "timed_out"
    #: This client closed the session.
    CLOSED = "closed"

    def describe(self) -> str:
        """A few words for messages."""
        return {
            Expiry.CONFIRMED: "the cluster expired it",
            Expiry.TIMED_OUT: "no keepalive was acknowledged within its timeout",
            Expiry.CLOSED: "it was closed",
        }[self]


class Keepalive(enum.Enum):
    """What one keepalive came to (the send time of an acknowledged one is passed beside it)."""

    ACKED = "acked"
    GONE = "gone"
    FAILED = "failed"


class Lease:
    """The client's lease on its session. Not thread-safe: the session guards it with a lock."""

    def __init__(self, created_sent_at: float, timeout: float, interval: float) -> None:
        self.timeout = timeout
        self.interval = interval
        self.acked_sent_at = created_sent_at
        self.state = SessionState.ALIVE
        self.expiry: Optional[Expiry] = None

    def deadline(self) -> float:
        """The instant past which the session must be assumed expired."""
        return self.acked_sent_at + self.timeout

    def _expire(self, why: Expiry) -> None:
        self.state, self.expiry = SessionState.EXPIRED, why

    def at(self, now: float) -> SessionState:
        """The state at ``now`` if nothing more is heard: expired once the deadline has passed."""
        if self.state is not SessionState.EXPIRED and now >= self.deadline():
            self._expire(Expiry.TIMED_OUT)
        return self.state

    def record(self, keepalive: Keepalive, now: float, sent_at: float = 0.0) -> SessionState:
        """Take in what a keepalive came to (``sent_at``: when an acknowledged one was sent), observed at ``now``."""
        if self.state is SessionState.EXPIRED:
            return self.state
        if keepalive is Keepalive.GONE:
            self._expire(Expiry.CONFIRMED)
        elif keepalive is Keepalive.ACKED:
            self.acked_sent_at = max(self.acked_sent_at, sent_at)
            self.state = SessionState.ALIVE
        else:
            self.state = SessionState.IN_JEOPARDY
        return self.at(now)

    def close(self) -> None:
        """This client closed the session."""
        if self.state is not SessionState.EXPIRED:
            self._expire(Expiry.CLOSED)

    def next_keepalive(self, now: float) -> float:
        """When to send the next keepalive.

        One interval after the last acknowledged one was sent while alive; soon (a quarter
        interval, 100 ms to 1 s) while in jeopardy; never past the deadline.
        """
        if self.state is SessionState.ALIVE:
            at = self.acked_sent_at + self.interval
        elif self.state is SessionState.IN_JEOPARDY:
            at = now + min(max(self.interval / 4, 0.1), 1.0)
        else:
            return self.deadline()
        return min(at, self.deadline())

    def attempt_deadline(self, now: float, cap: float) -> float:
        """How long one keepalive may try: an interval (at least 1 s, at most ``cap``), never past the deadline."""
        return min(now + min(max(self.interval, 1.0), max(cap, 1.0)), self.deadline())

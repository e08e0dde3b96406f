"""When a failed attempt may be tried again, and how long to wait between rounds.

Pure, copied from the Rust client (crates/client/src/retry.rs): the decisions the transport
makes, as values, so they can be tested as tables.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional


class Safety(enum.Enum):
    """What repeating a request can do."""

    #: Sending it twice has the effect of sending it once: reads, keepalive, acquire (200 with
    #: the same token), release and delete (a repeat answers "already gone", read as done).
    REPEATABLE = "repeatable"
    #: Must not be applied twice: session create (the server mints the id, so a second create is
    #: a second session). Retried only when the first attempt certainly was not applied.
    AT_MOST_ONCE = "at_most_once"


class FailureKind(enum.Enum):
    """Why one attempt at one endpoint gave no answer the caller can use."""

    #: The connection could not be opened: the request never reached the node.
    NOT_SENT = "not_sent"
    #: The node answered 503 UNAVAILABLE.
    UNAVAILABLE = "unavailable"
    #: The request was (or may have been) sent, then the answer never came: a timeout, a reset.
    LOST = "lost"


@dataclass(frozen=True)
class Failure:
    """One failed attempt: its kind, a few words for the error, and for a 503 what its body claims."""

    kind: FailureKind
    reason: str
    outcome_unknown: bool = False

    def maybe_applied(self) -> bool:
        """Whether the operation may have taken effect despite the failure."""
        if self.kind is FailureKind.NOT_SENT:
            return False
        if self.kind is FailureKind.UNAVAILABLE:
            return self.outcome_unknown
        return True


def may_retry(safety: Safety, failure: Failure) -> bool:
    """Whether a request of this safety may be sent again after this failure."""
    return safety is Safety.REPEATABLE or not failure.maybe_applied()


FIRST_BACKOFF = 0.25
BACKOFF_CAP = 2.0


def backoff(round_: int, retry_after: Optional[float]) -> float:
    """Seconds to wait after round ``round_`` (0-based) failed everywhere.

    Doubling from 250 ms, capped at 2 s, and at least what a 503's ``Retry-After`` asked for
    (also capped).
    """
    doubled = FIRST_BACKOFF * (1 << min(round_, 8))
    return min(max(doubled, retry_after or 0.0), BACKOFF_CAP)

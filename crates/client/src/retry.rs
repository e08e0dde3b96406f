//! When a failed attempt may be tried again, on the next endpoint, and how long to wait between
//! rounds. Pure: the decisions the transport makes, as values, so they can be tested as tables.

use std::time::Duration;

/// What repeating a request can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Safety {
    /// Sending it twice has the effect of sending it once: reads, keepalive, acquire (200 with
    /// the same token). Release and delete are here too: a repeat after an applied first attempt
    /// answers LOCK_NOT_HELD / SESSION_NOT_FOUND, which the caller reads as "already done".
    Repeatable,
    /// Must not be applied twice: session create (the server mints the id, so a second create
    /// is a second session). Retried only when the first attempt certainly was not applied.
    AtMostOnce,
}

/// Why one attempt at one endpoint gave no answer the caller can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The connection could not be opened: the request never reached the node.
    NotSent(String),
    /// The node answered 503 UNAVAILABLE; `applied` says what its body claims.
    Unavailable { reason: String, outcome_unknown: bool },
    /// The request was (or may have been) sent, then the answer never came: a timeout, a reset.
    Lost(String),
}

impl Failure {
    /// Whether the operation may have taken effect despite the failure.
    pub fn maybe_applied(&self) -> bool {
        match self {
            Failure::NotSent(_) => false,
            Failure::Unavailable { outcome_unknown, .. } => *outcome_unknown,
            Failure::Lost(_) => true,
        }
    }

    /// A few words for the "tried ..." list of an error.
    pub fn describe(&self) -> &str {
        match self {
            Failure::NotSent(why) | Failure::Lost(why) => why,
            Failure::Unavailable { reason, .. } => reason,
        }
    }
}

/// Whether a request of this safety may be sent again after this failure.
pub(crate) fn may_retry(safety: Safety, failure: &Failure) -> bool {
    match safety {
        Safety::Repeatable => true,
        Safety::AtMostOnce => !failure.maybe_applied(),
    }
}

/// How long to wait after round `round` (0-based) of attempts failed everywhere: doubling from
/// 250 ms, capped at 2 s, and at least what a 503's `Retry-After` asked for (also capped).
pub(crate) fn backoff(round: u32, retry_after: Option<Duration>) -> Duration {
    const FIRST: Duration = Duration::from_millis(250);
    const CAP: Duration = Duration::from_secs(2);
    let doubled = FIRST.saturating_mul(1u32 << round.min(8));
    doubled.max(retry_after.unwrap_or_default()).min(CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_may_be_retried() {
        let not_sent = Failure::NotSent("connection refused".into());
        let not_applied = Failure::Unavailable { reason: "no leader".into(), outcome_unknown: false };
        let unknown = Failure::Unavailable { reason: "no quorum".into(), outcome_unknown: true };
        let lost = Failure::Lost("timed out".into());
        // (safety, failure, may retry)
        let table = [
            (Safety::Repeatable, &not_sent, true),
            (Safety::Repeatable, &not_applied, true),
            (Safety::Repeatable, &unknown, true),
            (Safety::Repeatable, &lost, true),
            (Safety::AtMostOnce, &not_sent, true),
            (Safety::AtMostOnce, &not_applied, true),
            (Safety::AtMostOnce, &unknown, false),
            (Safety::AtMostOnce, &lost, false),
        ];
        for (safety, failure, expected) in table {
            assert_eq!(may_retry(safety, failure), expected, "{safety:?} after {failure:?}");
        }
    }

    #[test]
    fn backoff_is_bounded() {
        let ms = Duration::from_millis;
        let table = [
            (0, None, ms(250)),
            (1, None, ms(500)),
            (2, None, ms(1000)),
            (3, None, ms(2000)),
            (40, None, ms(2000)),
            (0, Some(ms(1000)), ms(1000)),
            (0, Some(Duration::from_secs(3600)), ms(2000)),
        ];
        for (round, retry_after, expected) in table {
            assert_eq!(backoff(round, retry_after), expected, "round {round}, retry-after {retry_after:?}");
        }
    }
}

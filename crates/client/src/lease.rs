//! What the client may believe about its session between keepalives: alive, in jeopardy, or
//! expired, and when to send the next keepalive. Pure: instants come in as arguments.
//!
//! The client's deadline is conservative. The cluster starts a session's timeout when a
//! keepalive *arrives* (or when a new leader takes over, which is later still), so the newest
//! acknowledged keepalive's *send* time plus the timeout is never later than the cluster's
//! deadline. Past it, the client must assume the cluster has expired the session and released
//! its locks, whether or not it can reach the cluster to ask.

use std::time::Duration;

use tokio::time::Instant;

/// A session as its holder should see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// The last keepalive was acknowledged and the timeout has not passed since it was sent.
    Alive,
    /// Keepalives are failing (unreachable, 503, slow), but the timeout has not passed since
    /// the last acknowledged one was sent. Locks are still held; work that cannot be cut short
    /// should not start.
    InJeopardy,
    /// The session is over and its locks are (or must be assumed) released. Stop the work they
    /// protected. It never becomes alive again.
    Expired(Expiry),
}

impl SessionState {
    pub fn is_expired(self) -> bool {
        matches!(self, SessionState::Expired(_))
    }
}

/// Why a session is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The cluster said so: a keepalive was answered `SESSION_EXPIRED` or `SESSION_NOT_FOUND`.
    Confirmed,
    /// No keepalive was acknowledged for the session's timeout, so the cluster has expired it
    /// or may at any moment; the client cannot tell which and assumes the worst.
    TimedOut,
    /// This client closed (or dropped) the session.
    Closed,
}

impl std::fmt::Display for Expiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expiry::Confirmed => "the cluster expired it",
            Expiry::TimedOut => "no keepalive was acknowledged within its timeout",
            Expiry::Closed => "it was closed",
        })
    }
}

/// What one keepalive came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keepalive {
    /// Acknowledged; it was sent at this instant.
    Acked { sent_at: Instant },
    /// The cluster answered that the session expired or does not exist.
    Gone,
    /// No endpoint acknowledged it within its budget.
    Failed,
}

/// The client's lease on its session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease {
    timeout: Duration,
    interval: Duration,
    /// When the newest acknowledged keepalive (at first: the create) was sent.
    acked_sent_at: Instant,
    state: SessionState,
}

impl Lease {
    pub fn new(created_sent_at: Instant, timeout: Duration, interval: Duration) -> Lease {
        Lease { timeout, interval, acked_sent_at: created_sent_at, state: SessionState::Alive }
    }

    /// The instant past which the session must be assumed expired.
    pub fn deadline(&self) -> Instant {
        self.acked_sent_at + self.timeout
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    /// The state at `now` if nothing more is heard: expired once the deadline has passed.
    pub fn at(&mut self, now: Instant) -> SessionState {
        if !self.state.is_expired() && now >= self.deadline() {
            self.state = SessionState::Expired(Expiry::TimedOut);
        }
        self.state
    }

    /// Takes in what a keepalive came to, observed at `now`; returns the new state.
    pub fn record(&mut self, keepalive: Keepalive, now: Instant) -> SessionState {
        if self.state.is_expired() {
            return self.state;
        }
        self.state = match keepalive {
            Keepalive::Gone => SessionState::Expired(Expiry::Confirmed),
            Keepalive::Acked { sent_at } => {
                self.acked_sent_at = self.acked_sent_at.max(sent_at);
                SessionState::Alive
            }
            Keepalive::Failed => SessionState::InJeopardy,
        };
        self.at(now)
    }

    pub fn close(&mut self) {
        if !self.state.is_expired() {
            self.state = SessionState::Expired(Expiry::Closed);
        }
    }

    /// When to send the next keepalive: one interval after the last acknowledged one was sent
    /// while alive; soon (a quarter interval, 100 ms to 1 s) while in jeopardy; never past the
    /// deadline.
    pub fn next_keepalive(&self, now: Instant) -> Instant {
        let at = match self.state {
            SessionState::Alive => self.acked_sent_at + self.interval,
            SessionState::InJeopardy => {
                now + (self.interval / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
            }
            SessionState::Expired(_) => return self.deadline(),
        };
        at.min(self.deadline())
    }

    /// How long one keepalive may try before it counts as failed: an interval (at least 1 s,
    /// at most `cap`), and never past the deadline.
    pub fn attempt_deadline(&self, now: Instant, cap: Duration) -> Instant {
        (now + self.interval.clamp(Duration::from_secs(1), cap.max(Duration::from_secs(1)))).min(self.deadline())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionState::*;

    /// A session with a 6 s timeout and 2 s keepalive interval, created at t=0; each step is
    /// (time in ms, what happened, state after, next keepalive at ms).
    #[test]
    fn a_session_lease_over_time() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        enum E {
            Tick,
            Acked(u64),
            Failed,
            Gone,
            Close,
        }
        let scripts: Vec<Vec<(u64, E, SessionState, u64)>> = vec![
            // Keepalives acknowledged on time: alive, the next one an interval after sending.
            vec![
                (1_000, E::Tick, Alive, 2_000),
                (2_050, E::Acked(2_000), Alive, 4_000),
                (4_100, E::Acked(4_000), Alive, 6_000),
            ],
            // Failures: jeopardy, retried soon, until the deadline (6 s after the create was
            // sent) passes; then expired for good, even if an answer turns up late.
            vec![
                (2_100, E::Failed, InJeopardy, 2_600),
                (3_000, E::Failed, InJeopardy, 3_500),
                (5_900, E::Failed, InJeopardy, 6_000),
                (6_000, E::Tick, Expired(Expiry::TimedOut), 6_000),
                (6_100, E::Acked(5_950), Expired(Expiry::TimedOut), 6_000),
            ],
            // Recovery from jeopardy moves the deadline to 6 s after the acknowledged send.
            vec![
                (2_100, E::Failed, InJeopardy, 2_600),
                (2_700, E::Acked(2_600), Alive, 4_600),
                (8_000, E::Tick, Alive, 4_600),
                (8_600, E::Tick, Expired(Expiry::TimedOut), 8_600),
            ],
            // An acknowledgement that arrives after the deadline of its own send is too late.
            vec![(7_000, E::Acked(500), Expired(Expiry::TimedOut), 6_500)],
            // An older acknowledgement arriving after a newer one does not move the deadline back.
            vec![(4_100, E::Acked(4_000), Alive, 6_000), (4_200, E::Acked(2_000), Alive, 6_000)],
            // The cluster's word ends it at once; nothing revives it.
            vec![
                (2_000, E::Gone, Expired(Expiry::Confirmed), 6_000),
                (2_100, E::Acked(2_050), Expired(Expiry::Confirmed), 6_000),
            ],
            vec![(1_000, E::Close, Expired(Expiry::Closed), 6_000), (1_500, E::Gone, Expired(Expiry::Closed), 6_000)],
        ];
        for (n, script) in scripts.into_iter().enumerate() {
            let mut lease = Lease::new(t0, Duration::from_secs(6), Duration::from_secs(2));
            for (step, (at, event, state, next)) in script.into_iter().enumerate() {
                let now = ms(at);
                let got = match event {
                    E::Tick => lease.at(now),
                    E::Acked(sent) => lease.record(Keepalive::Acked { sent_at: ms(sent) }, now),
                    E::Failed => lease.record(Keepalive::Failed, now),
                    E::Gone => lease.record(Keepalive::Gone, now),
                    E::Close => {
                        lease.close();
                        lease.state()
                    }
                };
                assert_eq!(got, state, "script {n} step {step}");
                assert_eq!(lease.next_keepalive(now), ms(next), "script {n} step {step}: next keepalive");
            }
        }
    }

    #[test]
    fn a_keepalive_attempt_never_outlives_the_deadline() {
        let t0 = Instant::now();
        let lease = Lease::new(t0, Duration::from_secs(6), Duration::from_secs(2));
        let cap = Duration::from_secs(10);
        assert_eq!(lease.attempt_deadline(t0, cap), t0 + Duration::from_secs(2));
        assert_eq!(lease.attempt_deadline(t0 + Duration::from_secs(5), cap), t0 + Duration::from_secs(6));
        let long = Lease::new(t0, Duration::from_secs(3600), Duration::from_secs(1200));
        assert_eq!(long.attempt_deadline(t0, cap), t0 + cap);
    }
}

//! The leader's lease table: when each live session expires, judged on the leader's monotonic
//! clock.
//!
//! Keepalives do not go through the Raft log; they land here. The table belongs to one
//! leadership term: the first access under a new term starts it empty, and a session without
//! an entry gets a full timeout from the moment the leader first looks at it. That is how a
//! new leader gives every live session a full `timeout` from its takeover, and why no session
//! expires because of a leader change.
//!
//! Everything here takes `now` as an argument: the service reads the clock, the table only
//! compares, so it is tested without waiting.

use std::collections::HashMap;
use std::time::Duration;

use lockio_core::{SessionId, Timeout, UnixMillis};
use tokio::time::Instant;

/// One session's lease.
#[derive(Debug, Clone, Copy)]
struct Lease {
    /// When the session expires unless a keepalive arrives first.
    deadline: Instant,
    /// Wall-clock time of the last keepalive this leader accepted, if any.
    last_keepalive: Option<UnixMillis>,
    /// An expiry for this session has been proposed and not yet applied or failed.
    expiring: bool,
}

/// What a keepalive or a lookup found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LeaseStatus {
    /// The session is live until `deadline`.
    Live { deadline: Instant, last_keepalive: Option<UnixMillis> },
    /// The deadline has passed: the session is as good as expired, whether or not the expiry
    /// has been applied yet. Nothing may extend it.
    Overdue,
}

/// The lease table of one leadership term.
#[derive(Debug, Default)]
pub struct LeaseTable {
    /// The term this table belongs to; 0 before the first leadership.
    term: u64,
    leases: HashMap<SessionId, Lease>,
    /// Keepalives taken since they were last written to the log (`RecordKeepalives`).
    unrecorded: HashMap<SessionId, UnixMillis>,
}

impl LeaseTable {
    /// Makes the table belong to `term`, forgetting every lease of an earlier term.
    pub fn enter_term(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.leases.clear();
            self.unrecorded.clear();
        }
    }

    fn lease(&mut self, session_id: SessionId, timeout: Timeout, now: Instant) -> &mut Lease {
        self.leases.entry(session_id).or_insert_with(|| Lease {
            deadline: now + Duration::from_millis(timeout.millis()),
            last_keepalive: None,
            expiring: false,
        })
    }

    /// A keepalive arrived at `now` (`wall` on the wall clock): extend the lease by a full
    /// timeout, unless the deadline has already passed.
    pub fn keepalive(
        &mut self,
        session_id: SessionId,
        timeout: Timeout,
        now: Instant,
        wall: UnixMillis,
    ) -> LeaseStatus {
        let lease = self.lease(session_id, timeout, now);
        if lease.deadline <= now || lease.expiring {
            return LeaseStatus::Overdue;
        }
        lease.deadline = now + Duration::from_millis(timeout.millis());
        lease.last_keepalive = Some(wall);
        let status = LeaseStatus::Live { deadline: lease.deadline, last_keepalive: lease.last_keepalive };
        self.unrecorded.insert(session_id, wall);
        status
    }

    /// The session's lease as of `now`, starting one if this leader had none.
    pub fn status(&mut self, session_id: SessionId, timeout: Timeout, now: Instant) -> LeaseStatus {
        let lease = self.lease(session_id, timeout, now);
        if lease.deadline <= now || lease.expiring {
            LeaseStatus::Overdue
        } else {
            LeaseStatus::Live { deadline: lease.deadline, last_keepalive: lease.last_keepalive }
        }
    }

    /// Given every live session, returns those whose deadline has passed and marks them as
    /// being expired.
    pub fn take_overdue<'a>(
        &mut self,
        live: impl Iterator<Item = (&'a SessionId, Timeout)>,
        now: Instant,
    ) -> Vec<SessionId> {
        let mut overdue = Vec::new();
        for (&session_id, timeout) in live {
            let lease = self.lease(session_id, timeout, now);
            if lease.deadline <= now && !lease.expiring {
                lease.expiring = true;
                overdue.push(session_id);
            }
        }
        overdue
    }

    /// The keepalives taken since the last call, to be written to the log.
    pub fn take_unrecorded(&mut self) -> Vec<(SessionId, UnixMillis)> {
        let mut taken: Vec<_> = self.unrecorded.drain().collect();
        taken.sort();
        taken
    }

    /// How many leases the table holds (live sessions it has seen, and some that since ended).
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// The expiry of these sessions was not applied (the proposal failed): let the next sweep
    /// try again.
    pub fn expiry_failed(&mut self, session_ids: &[SessionId]) {
        for id in session_ids {
            if let Some(lease) = self.leases.get_mut(id) {
                lease.expiring = false;
            }
        }
    }

    /// Forgets the leases of sessions that are no longer live.
    pub fn retain_live(&mut self, is_live: impl Fn(&SessionId) -> bool) {
        self.leases.retain(|id, _| is_live(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> Timeout {
        Timeout::from_secs(secs).unwrap()
    }

    fn sid(n: u128) -> SessionId {
        SessionId(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn a_session_gets_a_full_timeout_from_first_sight_and_each_keepalive() {
        let start = Instant::now();
        let mut table = LeaseTable::default();
        table.enter_term(1);
        let s = sid(1);
        assert!(matches!(table.status(s, t(10), start), LeaseStatus::Live { .. }));
        let at9 = start + Duration::from_secs(9);
        assert!(matches!(table.keepalive(s, t(10), at9, UnixMillis(9)), LeaseStatus::Live { .. }));
        // 18 s after start but only 9 s after the keepalive: still live.
        assert!(table.take_overdue([(&s, t(10))].into_iter(), start + Duration::from_secs(18)).is_empty());
        assert_eq!(table.take_overdue([(&s, t(10))].into_iter(), at9 + Duration::from_secs(10)), vec![s]);
        // Proposed once, not again while the proposal is out.
        assert!(table.take_overdue([(&s, t(10))].into_iter(), at9 + Duration::from_secs(11)).is_empty());
        // The keepalive is handed out once to be written to the log.
        assert_eq!(table.take_unrecorded(), vec![(s, UnixMillis(9))]);
        assert!(table.take_unrecorded().is_empty());
    }

    #[test]
    fn an_overdue_session_cannot_be_kept_alive() {
        let start = Instant::now();
        let mut table = LeaseTable::default();
        table.enter_term(1);
        let s = sid(1);
        table.status(s, t(5), start);
        let late = start + Duration::from_secs(5);
        assert_eq!(table.keepalive(s, t(5), late, UnixMillis(5)), LeaseStatus::Overdue);
        let taken = table.take_overdue([(&s, t(5))].into_iter(), late);
        assert_eq!(taken, vec![s]);
        table.expiry_failed(&taken);
        assert_eq!(table.take_overdue([(&s, t(5))].into_iter(), late), vec![s], "retried after a failed proposal");
    }

    #[test]
    fn a_new_term_starts_every_lease_afresh() {
        let start = Instant::now();
        let mut table = LeaseTable::default();
        table.enter_term(1);
        let s = sid(1);
        table.status(s, t(5), start);
        // Leadership moves away and comes back much later, in a new term.
        let later = start + Duration::from_secs(60);
        table.enter_term(3);
        assert!(table.take_overdue([(&s, t(5))].into_iter(), later).is_empty(), "full timeout from takeover");
        assert_eq!(table.take_overdue([(&s, t(5))].into_iter(), later + Duration::from_secs(5)), vec![s]);
    }

    #[test]
    fn leases_of_ended_sessions_are_dropped() {
        let now = Instant::now();
        let mut table = LeaseTable::default();
        table.status(sid(1), t(5), now);
        table.status(sid(2), t(5), now);
        table.retain_live(|id| *id == sid(2));
        assert_eq!(table.len(), 1);
    }
}

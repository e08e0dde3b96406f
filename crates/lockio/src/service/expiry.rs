//! The leader's periodic work: the expiry sweep (and `POST /admin/cleanup`), the timer that
//! ends waits at their deadline and lock-delays at their end, and writing down the keepalives
//! it took.
//!
//! Both take the sessions whose lease deadline has passed (`LeaseTable::take_overdue`) and
//! propose their expiry as one command, so every replica expires them at the same log position
//! and releases their locks in that same step. A follower, or a deposed leader that has not
//! noticed yet, proposes nothing that can commit: its entry is refused or truncated away.

use std::time::Duration;

use lockio_core::{Applied, Command, SessionId, EXPIRED_RETENTION};
use tokio::time::Instant;

use super::{unexpected, wall_now, Reply, Service, ServiceError};

impl Service {
    /// The sessions overdue now, marked as being expired, and whether expired sessions are due
    /// to be forgotten. `None` unless this node believes it leads.
    fn take_overdue(&self) -> Option<(Vec<SessionId>, bool)> {
        let term = self.leader_term()?;
        if !self.health().healthy {
            // A leader that has not heard from a majority lately (it was paused, or is cut
            // off) may already be deposed: its view of the leases is not worth proposing.
            return None;
        }
        let now = Instant::now();
        let applied = self.inner.view.read();
        let locks = &applied.replica.locks;
        let mut leases = self.leases();
        leases.enter_term(term);
        let live = locks.sessions().filter(|(_, s)| !s.is_expired()).map(|(id, s)| (id, s.timeout));
        let overdue = leases.take_overdue(live, now);
        if leases.len() > locks.stats().active_sessions as usize {
            leases.retain_live(|id| locks.live_session(id).is_ok());
        }
        let forget_due = locks.oldest_expiry().is_some_and(|at| at.0 + EXPIRED_RETENTION <= wall_now().0);
        Some((overdue, forget_due))
    }

    /// One sweep: expire what is overdue, forget what expired over an hour ago.
    async fn sweep(&self) {
        let Some((overdue, forget_due)) = self.take_overdue() else { return };
        if overdue.is_empty() && !forget_due {
            return;
        }
        let command = Command::ExpireSessions { session_ids: overdue.clone(), now: wall_now() };
        let result = tokio::time::timeout(self.inner.config.request_timeout, self.propose_lock(command)).await;
        match result {
            Ok(Ok(Applied::Expired { expired, removed })) => {
                tracing::info!(expired = expired.len(), removed, "sweep applied");
            }
            other => {
                tracing::warn!(?other, "sweep not applied; the next one retries");
                self.leases().expiry_failed(&overdue);
            }
        }
    }

    /// Proposes a `Tick` when a wait's deadline or a lock-delay's end has come (by the applied
    /// state and this leader's clock), so that the waiter hears its timeout and the head of a
    /// delayed queue gets the lock.
    async fn tick(&self) {
        if self.leader_term().is_none() || !self.health().healthy {
            return;
        }
        let now = wall_now();
        let due = self.inner.view.read().replica.locks.next_due();
        if due.is_none_or(|at| at > now) {
            return;
        }
        match tokio::time::timeout(self.inner.config.request_timeout, self.propose_lock(Command::Tick { now })).await {
            Ok(Ok(Applied::Ticked { timed_out, handed_off })) => tracing::debug!(timed_out, handed_off, "tick applied"),
            other => tracing::debug!(?other, "tick not applied; the next one retries"),
        }
    }

    /// Writes the keepalives taken since the last time to the log, so every replica shows them.
    /// Losing one such write loses nothing that matters: expiry goes by the lease table.
    async fn record_keepalives(&self) {
        let Some(term) = self.leader_term() else { return };
        let keepalives = {
            let mut leases = self.leases();
            leases.enter_term(term);
            leases.take_unrecorded()
        };
        if keepalives.is_empty() {
            return;
        }
        let command = Command::RecordKeepalives { keepalives, now: wall_now() };
        if let Ok(Err(e)) | Err(e) = tokio::time::timeout(self.inner.config.request_timeout, self.propose_lock(command))
            .await
            .map_err(|_| ServiceError::Unavailable { reason: "timed out".into(), outcome_unknown: true })
        {
            tracing::debug!(error = %e, "keepalives not recorded");
        }
    }

    /// `POST /admin/cleanup`, as the leader.
    pub(super) async fn cleanup(&self) -> Result<Reply, ServiceError> {
        let (overdue, _) = self.take_overdue().ok_or(ServiceError::NotLeader { leader: None })?;
        let result = self.propose_lock(Command::Cleanup { expire: overdue.clone(), now: wall_now() }).await;
        if result.is_err() {
            self.leases().expiry_failed(&overdue);
        }
        match result? {
            Applied::Expired { removed, .. } => Ok(Reply::CleanedUp { removed }),
            other => Err(unexpected(other)),
        }
    }
}

/// How often the leader writes the keepalives it took to the log.
const RECORD_KEEPALIVES_EVERY: Duration = Duration::from_secs(1);

/// Sweeps and ticks every `interval`, and records keepalives every `RECORD_KEEPALIVES_EVERY`,
/// for as long as the node runs; does nothing on a follower.
pub async fn run_sweeper(service: Service, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_record = Instant::now();
    loop {
        ticks.tick().await;
        service.sweep().await;
        service.tick().await;
        if last_record.elapsed() >= RECORD_KEEPALIVES_EVERY {
            last_record = Instant::now();
            service.record_keepalives().await;
        }
    }
}

//! Answering queries from the applied lock state. On the leader, session times come from its
//! lease table, which knows of keepalives the log does not carry; elsewhere they come from the
//! log alone.

use lockio_core::{ClientId, DomainError, Grant, Limit, LockState, Resource, Session, SessionId, SessionStatus};
use tokio::time::Instant;

use super::leases::LeaseStatus;
use super::request::{Listing, LockRow, LockView};
use super::{wall_now, Query, Reply, Service, ServiceError, SessionView};

fn matches(filter: &Option<String>, fields: &[&str]) -> bool {
    match filter {
        None => true,
        Some(f) => {
            let f = f.to_lowercase();
            fields.iter().any(|field| field.to_lowercase().contains(&f))
        }
    }
}

impl Service {
    pub(super) fn read(&self, query: Query) -> Result<Reply, ServiceError> {
        let applied = self.inner.view.read();
        let locks = &applied.replica.locks;
        match query {
            Query::Stats => Ok(Reply::Stats(locks.stats())),
            Query::Lock(resource) => {
                let (holders, limit) = holders(locks, &resource);
                let waiters = locks.queue(&resource).map(|w| (w.clone(), client_of(locks, &w.session_id))).collect();
                let delayed_until = locks.delayed_until(&resource);
                Ok(Reply::Lock(LockView { resource, holders, limit, waiters, delayed_until }))
            }
            Query::FenceCheck { resource, fence_token } => {
                let (valid, grants) = locks.fence_check(&resource, fence_token);
                let holders = grants.into_iter().map(|g| (g.clone(), client_of(locks, &g.session_id))).collect();
                Ok(Reply::FenceCheck { resource, fence_token, valid, holders })
            }
            Query::SessionLocks(session_id) => {
                let session = locks.session(&session_id).ok_or(not_found(session_id))?;
                Ok(Reply::SessionLocks(session.locks.iter().cloned().collect()))
            }
            Query::Session(session_id) => {
                let session = locks.session(&session_id).ok_or(not_found(session_id))?;
                Ok(Reply::Session(self.session_view(session_id, session)))
            }
            Query::Sessions(Listing { filter, limit }) => {
                let mut kept: Vec<(&SessionId, &Session)> = locks
                    .sessions()
                    .filter(|(id, s)| matches(&filter, &[&id.to_string(), s.client_id.as_str()]))
                    .collect();
                kept.sort_by(|a, b| b.1.created_at.cmp(&a.1.created_at).then(a.0.cmp(b.0)));
                let rows = kept.iter().take(limit).map(|(id, s)| self.session_view(**id, s)).collect();
                let stats = locks.stats();
                let total = (stats.active_sessions + stats.expired_sessions) as usize;
                Ok(Reply::Sessions { total, matched: kept.len(), rows })
            }
            Query::Locks(Listing { filter, limit }) => {
                // Held locks by name, then the free resources under lock-delay by name.
                let held = locks.locks().map(|(resource, _)| resource);
                let delayed = locks.delays().map(|(resource, _)| resource);
                let total = locks.held_resources() + locks.delays().count();
                let row = |resource: &Resource| {
                    let (holders, limit) = holders(locks, resource);
                    LockRow {
                        resource: resource.clone(),
                        holders,
                        limit,
                        queue_length: locks.queue_len(resource) as u64,
                        delayed_until: locks.delayed_until(resource),
                    }
                };
                if filter.is_none() {
                    // No filter: the first rows are the answer, without a pass over every lock.
                    let rows = held.chain(delayed).take(limit).map(row).collect();
                    return Ok(Reply::Locks { total, matched: total, rows });
                }
                let mut matched = 0;
                let mut rows = Vec::new();
                for resource in held.chain(delayed) {
                    let mut fields = vec![resource.to_string()];
                    for holder in locks.lock(resource).into_iter().flat_map(|l| l.holders.keys()) {
                        fields.push(holder.to_string());
                        fields.extend(locks.session(holder).map(|s| s.client_id.to_string()));
                    }
                    if !matches(&filter, &fields.iter().map(String::as_str).collect::<Vec<_>>()) {
                        continue;
                    }
                    matched += 1;
                    if rows.len() < limit {
                        rows.push(row(resource));
                    }
                }
                Ok(Reply::Locks { total, matched, rows })
            }
        }
    }

    /// A session as a client sees it; on the leader with the live lease.
    fn session_view(&self, session_id: SessionId, session: &Session) -> SessionView {
        let mut view = SessionView {
            session_id,
            client_id: session.client_id.clone(),
            timeout: session.timeout,
            created_at: session.created_at,
            last_keepalive: session.last_keepalive,
            locks_held: session.locks.iter().cloned().collect(),
            waiting_for: session.waiting.iter().cloned().collect(),
            lock_delay: session.lock_delay,
            expired_at: None,
            expires_in_ms: 0,
        };
        match session.status {
            SessionStatus::Expired { at } => view.expired_at = Some(at),
            SessionStatus::Live => {
                let from_log = session.last_keepalive.0 + session.timeout.millis();
                view.expires_in_ms = from_log.saturating_sub(wall_now().0);
                if let Some(term) = self.leader_term() {
                    let now = Instant::now();
                    let mut leases = self.leases();
                    leases.enter_term(term);
                    view.expires_in_ms = match leases.status(session_id, session.timeout, now) {
                        LeaseStatus::Live { deadline, last_keepalive } => {
                            view.last_keepalive = last_keepalive.unwrap_or(session.last_keepalive);
                            deadline.saturating_duration_since(now).as_millis() as u64
                        }
                        LeaseStatus::Overdue => 0,
                    };
                }
            }
        }
        view
    }
}

/// The holders of `resource` (oldest first, with their clients) and its limit.
fn holders(locks: &LockState, resource: &Resource) -> (Vec<(Grant, ClientId)>, Option<Limit>) {
    let Some(lock) = locks.lock(resource) else { return (Vec::new(), None) };
    let grants = lock.grants(resource).into_iter().map(|g| {
        let client = client_of(locks, &g.session_id);
        (g, client)
    });
    (grants.collect(), lock.limit)
}

/// A session's client; holders and waiters are live sessions, so the fallback is never shown.
fn client_of(locks: &LockState, session_id: &SessionId) -> ClientId {
    locks
        .session(session_id)
        .map(|s| s.client_id.clone())
        .unwrap_or_else(|| ClientId::new("unknown").expect("valid literal"))
}

fn not_found(session_id: SessionId) -> ServiceError {
    ServiceError::Domain(DomainError::SessionNotFound { session_id })
}

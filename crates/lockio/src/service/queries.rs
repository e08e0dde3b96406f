//! Answering queries from the applied lock state. On the leader, session times come from its
//! lease table, which knows of keepalives the log does not carry; elsewhere they come from the
//! log alone.

use lockio_core::{DomainError, Grant, Resource, Session, SessionId, SessionStatus};
use tokio::time::Instant;

use super::leases::LeaseStatus;
use super::request::{Listing, LockRow};
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
                let grant = locks.lock(&resource).map(|l| grant(&resource, l));
                Ok(Reply::Lock { resource, grant })
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
            Query::Locks(Listing { filter: None, limit }) => {
                // No filter: the first rows are the answer, without a pass over every lock.
                let rows = locks
                    .locks()
                    .take(limit)
                    .filter_map(|(resource, lock)| {
                        let client_id = locks.session(&lock.holder)?.client_id.clone();
                        Some(LockRow { grant: grant(resource, lock), client_id })
                    })
                    .collect();
                let total = locks.stats().total_locks as usize;
                Ok(Reply::Locks { total, matched: total, rows })
            }
            Query::Locks(Listing { filter, limit }) => {
                let mut matched = 0;
                let mut rows = Vec::new();
                for (resource, lock) in locks.locks() {
                    let client = locks.session(&lock.holder).map(|s| s.client_id.clone());
                    let client_str = client.as_ref().map(|c| c.as_str()).unwrap_or("");
                    if !matches(&filter, &[resource.as_str(), &lock.holder.to_string(), client_str]) {
                        continue;
                    }
                    matched += 1;
                    if rows.len() < limit {
                        if let Some(client_id) = client {
                            rows.push(LockRow { grant: grant(resource, lock), client_id });
                        }
                    }
                }
                Ok(Reply::Locks { total: locks.stats().total_locks as usize, matched, rows })
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

fn grant(resource: &Resource, lock: &lockio_core::Lock) -> Grant {
    Grant { resource: resource.clone(), session_id: lock.holder, fence_token: lock.fence_token, acquired_at: lock.acquired_at }
}

fn not_found(session_id: SessionId) -> ServiceError {
    ServiceError::Domain(DomainError::SessionNotFound { session_id })
}

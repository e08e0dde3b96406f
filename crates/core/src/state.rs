//! `LockState`: the replicated maps (sessions, locks, the fence counter), how a `Command`
//! changes them, the reads the service layer needs, and the snapshot encoding.
//!
//! Must never: read a clock, draw randomness, do I/O, iterate a hash map, or panic on a
//! command. Time only moves through `Command::now`, clamped so it never goes backwards.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::command::{Applied, Command, DomainError, ExpiredSession, Grant, Outcome};
use crate::types::{ClientId, FenceToken, Resource, SessionId, Timeout, UnixMillis};

/// How long an expired session stays visible (`is_expired: true`) before a sweep forgets it.
pub const EXPIRED_RETENTION: u64 = 60 * 60 * 1000;

/// Whether a session may still hold and take locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionStatus {
    Live,
    /// Expired by the leader at this time; it holds no locks and never comes back.
    Expired { at: UnixMillis },
}

/// A client's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub client_id: ClientId,
    pub timeout: Timeout,
    pub created_at: UnixMillis,
    /// The last keepalive the log knows of: the creation time, moved forward by the leader's
    /// periodic `RecordKeepalives`. The leader's lease table has the live figure.
    pub last_keepalive: UnixMillis,
    pub status: SessionStatus,
    /// The resources this session holds. Derived from the lock table, so it is not part of
    /// the snapshot; `restore` rebuilds it.
    #[serde(skip)]
    pub locks: BTreeSet<Resource>,
}

impl Session {
    pub fn is_expired(&self) -> bool {
        matches!(self.status, SessionStatus::Expired { .. })
    }
}

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub holder: SessionId,
    pub fence_token: FenceToken,
    pub acquired_at: UnixMillis,
}

/// Counts for `/admin/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub active_sessions: u64,
    pub expired_sessions: u64,
    pub total_locks: u64,
    pub fence_counter: u64,
}

/// A snapshot that cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotError(pub String);

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad lock-state snapshot: {}", self.0)
    }
}

impl std::error::Error for SnapshotError {}

/// The whole replicated lock state of a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockState {
    sessions: BTreeMap<SessionId, Session>,
    locks: BTreeMap<Resource, Lock>,
    /// The last fence token handed out; the next grant gets one more.
    fence_counter: u64,
    /// The highest `now` any command carried: command times are clamped to it, so stored
    /// times never go backwards even if the leader's wall clock does.
    clock: UnixMillis,
    /// Expired sessions by expiry time, for the retention sweep. Derived.
    expired_index: BTreeSet<(UnixMillis, SessionId)>,
}

/// The snapshot's layout. `SNAPSHOT_VERSION` goes first so a later layout can be told apart.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    sessions: &'a BTreeMap<SessionId, Session>,
    locks: &'a BTreeMap<Resource, Lock>,
    fence_counter: u64,
    clock: UnixMillis,
}

#[derive(Deserialize)]
struct SnapshotOwned {
    sessions: BTreeMap<SessionId, Session>,
    locks: BTreeMap<Resource, Lock>,
    fence_counter: u64,
    clock: UnixMillis,
}

const SNAPSHOT_VERSION: u8 = 1;

impl LockState {
    pub fn new() -> LockState {
        LockState::default()
    }

    /// Applies one command. Deterministic: the same state and command give the same result
    /// and the same next state on every replica.
    pub fn apply(&mut self, command: Command) -> Outcome {
        if let Err(invalid) = command.validate() {
            return Err(DomainError::Invalid(invalid));
        }
        // Time never goes backwards; a refused command leaves even the clock alone.
        let now = self.clock.max(command.now());
        let outcome = match command {
            Command::CreateSession { session_id, client_id, timeout, .. } => {
                self.create_session(session_id, client_id, timeout, now)
            }
            Command::DeleteSession { session_id, .. } => self.delete_session(session_id),
            Command::Acquire { session_id, resource, .. } => self.acquire(session_id, resource, now),
            Command::Release { session_id, resource, fence_token, .. } => {
                self.release(session_id, resource, fence_token)
            }
            Command::ExpireSessions { session_ids, .. } => {
                let expired = self.expire_all(&session_ids, now);
                let removed = self.forget_expired_until(UnixMillis(now.0.saturating_sub(EXPIRED_RETENTION)));
                Ok(Applied::Expired { expired, removed })
            }
            Command::Cleanup { expire, .. } => {
                let expired = self.expire_all(&expire, now);
                let removed = self.forget_expired_until(UnixMillis(u64::MAX));
                Ok(Applied::Expired { expired, removed })
            }
            Command::RecordKeepalives { keepalives, .. } => Ok(self.record_keepalives(&keepalives, now)),
        };
        if outcome.is_ok() {
            self.clock = now;
        }
        outcome
    }

    fn create_session(&mut self, session_id: SessionId, client_id: ClientId, timeout: Timeout, now: UnixMillis) -> Outcome {
        if let Some(existing) = self.sessions.get(&session_id) {
            // A retried create carries the id the first attempt minted: answer with the
            // session that attempt made rather than a second one.
            if existing.is_expired() {
                return Err(DomainError::SessionExpired { session_id });
            }
            return Ok(Applied::SessionCreated { session_id, fresh: false });
        }
        let session = Session {
            client_id,
            timeout,
            created_at: now,
            last_keepalive: now,
            status: SessionStatus::Live,
            locks: BTreeSet::new(),
        };
        self.sessions.insert(session_id, session);
        Ok(Applied::SessionCreated { session_id, fresh: true })
    }

    fn delete_session(&mut self, session_id: SessionId) -> Outcome {
        let Some(session) = self.sessions.remove(&session_id) else {
            return Err(DomainError::SessionNotFound { session_id });
        };
        if let SessionStatus::Expired { at } = session.status {
            self.expired_index.remove(&(at, session_id));
        }
        let released = self.release_all(session_id, &session.locks);
        Ok(Applied::SessionDeleted { session_id, released })
    }

    fn acquire(&mut self, session_id: SessionId, resource: Resource, now: UnixMillis) -> Outcome {
        if let Some(refusal) = self.acquire_refusal(&session_id, &resource) {
            return Err(refusal);
        }
        if let Some(lock) = self.locks.get(&resource) {
            // Held by this very session (anyone else was refused above): the same grant again.
            let grant = Grant {
                resource: resource.clone(),
                session_id: lock.holder,
                fence_token: lock.fence_token,
                acquired_at: lock.acquired_at,
            };
            return Ok(Applied::Acquired { grant, fresh: false });
        }
        self.fence_counter += 1;
        let fence_token = FenceToken(self.fence_counter);
        self.locks.insert(resource.clone(), Lock { holder: session_id, fence_token, acquired_at: now });
        if let Some(session) = self.sessions.get_mut(&session_id) {
            session.locks.insert(resource.clone());
        }
        Ok(Applied::Acquired { grant: Grant { resource, session_id, fence_token, acquired_at: now }, fresh: true })
    }

    fn release(&mut self, session_id: SessionId, resource: Resource, presented: FenceToken) -> Outcome {
        self.live_session(&session_id)?;
        let held = match self.locks.get(&resource) {
            Some(lock) if lock.holder == session_id => lock.fence_token,
            _ => return Err(DomainError::LockNotHeld { session_id, resource }),
        };
        if held != presented {
            return Err(DomainError::FenceTokenMismatch { session_id, resource, held, presented });
        }
        let lock = self.locks.remove(&resource).expect("checked above");
        if let Some(session) = self.sessions.get_mut(&session_id) {
            session.locks.remove(&resource);
        }
        Ok(Applied::Released {
            grant: Grant { resource, session_id, fence_token: lock.fence_token, acquired_at: lock.acquired_at },
        })
    }

    /// Expires each listed session that is still live; unknown or already expired ids are
    /// skipped (the sweep that listed them may have raced a delete).
    fn expire_all(&mut self, session_ids: &[SessionId], now: UnixMillis) -> Vec<ExpiredSession> {
        let mut expired = Vec::new();
        for &session_id in session_ids {
            let Some(session) = self.sessions.get_mut(&session_id) else { continue };
            if session.is_expired() {
                continue;
            }
            session.status = SessionStatus::Expired { at: now };
            let held = std::mem::take(&mut session.locks);
            self.expired_index.insert((now, session_id));
            let released = self.release_all(session_id, &held);
            expired.push(ExpiredSession { session_id, released });
        }
        expired
    }

    /// Moves `last_keepalive` of each listed live session forward (never back, never past
    /// `now`); unknown and expired sessions are skipped.
    fn record_keepalives(&mut self, keepalives: &[(SessionId, UnixMillis)], now: UnixMillis) -> Applied {
        let mut updated = 0;
        for (session_id, at) in keepalives {
            if let Some(session) = self.sessions.get_mut(session_id) {
                let at = (*at).min(now);
                if !session.is_expired() && at > session.last_keepalive {
                    session.last_keepalive = at;
                    updated += 1;
                }
            }
        }
        Applied::KeepalivesRecorded { updated }
    }

    /// Removes the expired sessions that expired at or before `cutoff`; returns how many.
    fn forget_expired_until(&mut self, cutoff: UnixMillis) -> u64 {
        let mut removed = 0;
        while let Some(&(at, session_id)) = self.expired_index.first() {
            if at > cutoff {
                break;
            }
            self.expired_index.pop_first();
            self.sessions.remove(&session_id);
            removed += 1;
        }
        removed
    }

    fn release_all(&mut self, session_id: SessionId, held: &BTreeSet<Resource>) -> Vec<Grant> {
        held.iter()
            .filter_map(|resource| {
                let lock = self.locks.remove(resource)?;
                Some(Grant { resource: resource.clone(), session_id, fence_token: lock.fence_token, acquired_at: lock.acquired_at })
            })
            .collect()
    }

    // ---- reads ----

    /// Why `Command::Acquire` of `resource` by `session_id` would be refused if it were applied
    /// now, or `None` if it would grant (or hand back the session's own grant). Changes nothing:
    /// it lets the leader answer a try-lock that must fail from a linearizable read instead of
    /// the log, with exactly the refusal the command would give.
    pub fn acquire_refusal(&self, session_id: &SessionId, resource: &Resource) -> Option<DomainError> {
        if let Err(refusal) = self.live_session(session_id) {
            return Some(refusal);
        }
        let lock = self.locks.get(resource)?;
        if lock.holder == *session_id {
            return None;
        }
        let holder_client = self.sessions.get(&lock.holder).map(|s| s.client_id.clone());
        Some(DomainError::LockHeld {
            resource: resource.clone(),
            holder: lock.holder,
            // The holder is always a live session (see `check_invariants`); the fallback keeps
            // this a value rather than a panic even if that ever broke.
            holder_client: holder_client.unwrap_or_else(|| ClientId::new("unknown").expect("valid literal")),
            fence_token: lock.fence_token,
            since: lock.acquired_at,
        })
    }

    /// The session if it exists and is live; otherwise why not.
    pub fn live_session(&self, session_id: &SessionId) -> Result<&Session, DomainError> {
        match self.sessions.get(session_id) {
            None => Err(DomainError::SessionNotFound { session_id: *session_id }),
            Some(s) if s.is_expired() => Err(DomainError::SessionExpired { session_id: *session_id }),
            Some(s) => Ok(s),
        }
    }

    /// The session, live or expired-but-kept.
    pub fn session(&self, session_id: &SessionId) -> Option<&Session> {
        self.sessions.get(session_id)
    }

    pub fn sessions(&self) -> impl Iterator<Item = (&SessionId, &Session)> {
        self.sessions.iter()
    }

    pub fn lock(&self, resource: &Resource) -> Option<&Lock> {
        self.locks.get(resource)
    }

    pub fn locks(&self) -> impl Iterator<Item = (&Resource, &Lock)> {
        self.locks.iter()
    }

    pub fn fence_counter(&self) -> u64 {
        self.fence_counter
    }

    /// When the oldest kept expired session expired, so the leader can tell when a sweep is
    /// due to forget it.
    pub fn oldest_expiry(&self) -> Option<UnixMillis> {
        self.expired_index.first().map(|(at, _)| *at)
    }

    pub fn stats(&self) -> Stats {
        let expired = self.expired_index.len() as u64;
        Stats {
            active_sessions: self.sessions.len() as u64 - expired,
            expired_sessions: expired,
            total_locks: self.locks.len() as u64,
            fence_counter: self.fence_counter,
        }
    }

    // ---- snapshot ----

    /// The state as bytes; equal states give equal bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let body = SnapshotRef {
            sessions: &self.sessions,
            locks: &self.locks,
            fence_counter: self.fence_counter,
            clock: self.clock,
        };
        let mut out = vec![SNAPSHOT_VERSION];
        // Serializing maps of plain data into a Vec cannot fail.
        out.extend(postcard::to_allocvec(&body).expect("postcard encoding of in-memory maps"));
        out
    }

    /// Rebuilds a state from `snapshot` output, checking that it is consistent.
    pub fn restore(bytes: &[u8]) -> Result<LockState, SnapshotError> {
        let (&version, body) = bytes.split_first().ok_or_else(|| SnapshotError("empty".into()))?;
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError(format!("unknown version {version}")));
        }
        let snap: SnapshotOwned = postcard::from_bytes(body).map_err(|e| SnapshotError(e.to_string()))?;
        let mut state = LockState {
            sessions: snap.sessions,
            locks: snap.locks,
            fence_counter: snap.fence_counter,
            clock: snap.clock,
            expired_index: BTreeSet::new(),
        };
        for (id, session) in &state.sessions {
            if let SessionStatus::Expired { at } = session.status {
                state.expired_index.insert((at, *id));
            }
        }
        for (resource, lock) in &state.locks {
            match state.sessions.get_mut(&lock.holder) {
                Some(session) if !session.is_expired() => {
                    session.locks.insert(resource.clone());
                }
                _ => return Err(SnapshotError(format!("lock {resource} held by a session that is not live"))),
            }
        }
        state.check_invariants().map_err(SnapshotError)?;
        Ok(state)
    }

    /// Checks the invariants the rest of lock.io relies on; used by tests and on restore.
    ///
    /// - every lock is held by a live session that lists it, and every listed lock exists;
    /// - expired sessions hold nothing;
    /// - no fence token exceeds the counter, and no two locks share a token.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut tokens = BTreeSet::new();
        for (resource, lock) in &self.locks {
            let Some(holder) = self.sessions.get(&lock.holder) else {
                return Err(format!("lock {resource} held by unknown session {}", lock.holder));
            };
            if holder.is_expired() {
                return Err(format!("lock {resource} held by expired session {}", lock.holder));
            }
            if !holder.locks.contains(resource) {
                return Err(format!("session {} does not list its lock {resource}", lock.holder));
            }
            if lock.fence_token.0 == 0 || lock.fence_token.0 > self.fence_counter {
                return Err(format!("lock {resource} has token {} beyond counter {}", lock.fence_token, self.fence_counter));
            }
            if !tokens.insert(lock.fence_token) {
                return Err(format!("token {} held twice", lock.fence_token));
            }
        }
        for (id, session) in &self.sessions {
            if session.is_expired() && !session.locks.is_empty() {
                return Err(format!("expired session {id} still lists locks"));
            }
            for resource in &session.locks {
                if self.locks.get(resource).map(|l| l.holder) != Some(*id) {
                    return Err(format!("session {id} lists {resource} but does not hold it"));
                }
            }
        }
        Ok(())
    }
}

//! `LockState`: the replicated maps (sessions, locks, queues of waiters, lock-delays, the fence
//! counter), how a `Command` changes them, the reads the service layer needs, and the snapshot
//! encoding.
//!
//! Must never: read a clock, draw randomness, do I/O, iterate a hash map, or panic on a
//! command. Time only moves through `Command::now`, clamped so it never goes backwards.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::command::{Applied, Command, DomainError, Effect, ExpiredSession, Grant, Outcome, WaitEnd, Waiter};
use crate::types::{ClientId, FenceToken, Limit, LockDelay, LockValue, Mode, Resource, SessionId, Timeout, UnixMillis};

/// How long an expired session stays visible (`is_expired: true`) before a sweep forgets it.
pub const EXPIRED_RETENTION: u64 = 60 * 60 * 1000;

/// The most sessions one resource's queue holds; one more gets `QueueFull`.
pub const MAX_WAITERS: usize = 10_000;

/// Whether a session may still hold and take locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionStatus {
    Live,
    /// Expired by the leader at this time; it holds no locks and never comes back.
    Expired {
        at: UnixMillis,
    },
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
    /// How long its locks stay unavailable if it expires.
    pub lock_delay: LockDelay,
    /// The resources this session holds. Derived from the lock table, so it is not part of
    /// the snapshot; `restore` rebuilds it.
    #[serde(skip)]
    pub locks: BTreeSet<Resource>,
    /// The resources whose queues this session is in. Derived from the queues, like `locks`.
    #[serde(skip)]
    pub waiting: BTreeSet<Resource>,
}

impl Session {
    pub fn is_expired(&self) -> bool {
        matches!(self.status, SessionStatus::Expired { .. })
    }
}

/// One holder's grant of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub fence_token: FenceToken,
    pub acquired_at: UnixMillis,
    pub value: Option<LockValue>,
}

/// A held resource: one exclusive holder, or shared holders (at most `limit` of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub mode: Mode,
    /// Shared only: the most holders at once (`None`: no limit).
    pub limit: Option<Limit>,
    pub holders: BTreeMap<SessionId, Hold>,
}

impl Lock {
    /// One holder's grant.
    pub fn grant(&self, resource: &Resource, session_id: SessionId) -> Option<Grant> {
        let hold = self.holders.get(&session_id)?;
        Some(Grant {
            resource: resource.clone(),
            session_id,
            fence_token: hold.fence_token,
            acquired_at: hold.acquired_at,
            mode: self.mode,
            value: hold.value.clone(),
        })
    }

    /// Every holder's grant, oldest (lowest token) first.
    pub fn grants(&self, resource: &Resource) -> Vec<Grant> {
        let mut grants: Vec<Grant> = self.holders.keys().filter_map(|id| self.grant(resource, *id)).collect();
        grants.sort_by_key(|g| g.fence_token);
        grants
    }

    /// The exclusive holder, or the oldest shared one.
    pub fn oldest(&self) -> Option<(SessionId, &Hold)> {
        self.holders.iter().min_by_key(|(_, h)| h.fence_token).map(|(id, h)| (*id, h))
    }

    /// Whether a new holder in `mode` fits beside the current ones.
    fn admits(&self, mode: Mode) -> bool {
        self.mode == Mode::Shared
            && mode == Mode::Shared
            && self.limit.is_none_or(|limit| (self.holders.len() as u64) < limit.get())
    }
}

/// Counts for `/admin/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub active_sessions: u64,
    pub expired_sessions: u64,
    /// Grants held: one per exclusive lock, one per holder of a shared one.
    pub total_locks: u64,
    pub fence_counter: u64,
    /// Sessions waiting in queues, over all resources.
    pub waiters: u64,
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
    /// Per resource, the sessions waiting for it in arrival (log) order. Only non-empty queues
    /// are kept, and only for a resource that is held or under lock-delay: a lock that becomes
    /// free goes to the head of its queue in the same command.
    queues: BTreeMap<Resource, VecDeque<Waiter>>,
    /// Free resources that stay unavailable until the given time, because their holder's
    /// session expired with a lock-delay. The leader's `Tick` ends them.
    delays: BTreeMap<Resource, UnixMillis>,
    /// The last fence token handed out; the next grant gets one more.
    fence_counter: u64,
    /// The highest `now` any command carried: command times are clamped to it, so stored
    /// times never go backwards even if the leader's wall clock does.
    clock: UnixMillis,
    /// Expired sessions by expiry time, for the retention sweep. Derived.
    expired_index: BTreeSet<(UnixMillis, SessionId)>,
    /// Every waiter by deadline, for `Tick`. Derived.
    deadlines: BTreeSet<(UnixMillis, Resource, SessionId)>,
    /// Every lock-delay by its end, for `Tick`. Derived.
    delay_ends: BTreeSet<(UnixMillis, Resource)>,
}

/// The snapshot's layout. `SNAPSHOT_VERSION` goes first so a later layout can be told apart.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    sessions: &'a BTreeMap<SessionId, Session>,
    locks: &'a BTreeMap<Resource, Lock>,
    fence_counter: u64,
    clock: UnixMillis,
    queues: &'a BTreeMap<Resource, VecDeque<Waiter>>,
    delays: &'a BTreeMap<Resource, UnixMillis>,
}

#[derive(Deserialize)]
struct SnapshotOwned {
    sessions: BTreeMap<SessionId, Session>,
    locks: BTreeMap<Resource, Lock>,
    fence_counter: u64,
    clock: UnixMillis,
    queues: BTreeMap<Resource, VecDeque<Waiter>>,
    delays: BTreeMap<Resource, UnixMillis>,
}

/// Version 1 (before waiting, lock-delay and shared locks): no queues, no delays, sessions
/// without `lock_delay`, one exclusive holder per lock. Still read, so a node upgraded in place
/// restores its old snapshot.
#[derive(Deserialize)]
struct SnapshotV1 {
    sessions: BTreeMap<SessionId, SessionV1>,
    locks: BTreeMap<Resource, LockV1>,
    fence_counter: u64,
    clock: UnixMillis,
}

#[derive(Deserialize)]
struct LockV1 {
    holder: SessionId,
    fence_token: FenceToken,
    acquired_at: UnixMillis,
}

#[derive(Deserialize)]
struct SessionV1 {
    client_id: ClientId,
    timeout: Timeout,
    created_at: UnixMillis,
    last_keepalive: UnixMillis,
    status: SessionStatus,
}

const SNAPSHOT_VERSION: u8 = 2;

fn waited(since: UnixMillis, now: UnixMillis) -> u64 {
    now.0.saturating_sub(since.0)
}

impl LockState {
    pub fn new() -> LockState {
        LockState::default()
    }

    /// Applies one command. Deterministic: the same state and command give the same result
    /// and the same next state on every replica.
    pub fn apply(&mut self, command: Command) -> Outcome {
        self.apply_traced(command, &mut Vec::new())
    }

    /// `apply`, also appending to `effects` what happened, in order (nothing for a refusal).
    pub fn apply_traced(&mut self, command: Command, effects: &mut Vec<Effect>) -> Outcome {
        if let Err(invalid) = command.validate() {
            return Err(DomainError::Invalid(invalid));
        }
        let mark = effects.len();
        // Time never goes backwards; a refused command leaves even the clock alone.
        let now = self.clock.max(command.now());
        let outcome = match command {
            Command::CreateSession { session_id, client_id, timeout, .. } => {
                self.create_session(session_id, client_id, timeout, LockDelay::NONE, now, effects)
            }
            Command::CreateSessionWithLockDelay { session_id, client_id, timeout, lock_delay, .. } => {
                self.create_session(session_id, client_id, timeout, lock_delay, now, effects)
            }
            Command::DeleteSession { session_id, .. } => self.delete_session(session_id, now, effects),
            Command::Acquire { session_id, resource, .. } => {
                self.wait(session_id, resource, Mode::Exclusive, None, None, now, now, effects)
            }
            Command::Wait { session_id, resource, mode, limit, value, deadline, .. } => {
                self.wait(session_id, resource, mode, limit, value, deadline, now, effects)
            }
            Command::CancelWait { session_id, resource, .. } => self.cancel_wait(session_id, resource, now, effects),
            Command::Release { session_id, resource, fence_token, .. } => {
                self.release(session_id, resource, fence_token, now, effects)
            }
            Command::ExpireSessions { session_ids, .. } => {
                let expired = self.expire_all(&session_ids, now, effects);
                let removed = self.forget_expired_until(UnixMillis(now.0.saturating_sub(EXPIRED_RETENTION)));
                Ok(Applied::Expired { expired, removed })
            }
            Command::Cleanup { expire, .. } => {
                let expired = self.expire_all(&expire, now, effects);
                let removed = self.forget_expired_until(UnixMillis(u64::MAX));
                Ok(Applied::Expired { expired, removed })
            }
            Command::RecordKeepalives { keepalives, .. } => Ok(self.record_keepalives(&keepalives, now)),
            Command::Tick { .. } => Ok(self.tick(now, effects)),
        };
        if outcome.is_ok() {
            self.clock = now;
        } else {
            effects.truncate(mark);
        }
        outcome
    }

    fn create_session(
        &mut self,
        session_id: SessionId,
        client_id: ClientId,
        timeout: Timeout,
        lock_delay: LockDelay,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> Outcome {
        if let Some(existing) = self.sessions.get(&session_id) {
            // A retried create carries the id the first attempt minted: answer with the
            // session that attempt made rather than a second one.
            if existing.is_expired() {
                return Err(DomainError::SessionExpired { session_id });
            }
            return Ok(Applied::SessionCreated { session_id, fresh: false });
        }
        let session = Session {
            client_id: client_id.clone(),
            timeout,
            created_at: now,
            last_keepalive: now,
            status: SessionStatus::Live,
            lock_delay,
            locks: BTreeSet::new(),
            waiting: BTreeSet::new(),
        };
        self.sessions.insert(session_id, session);
        effects.push(Effect::SessionCreated { session_id, client_id, timeout, lock_delay });
        Ok(Applied::SessionCreated { session_id, fresh: true })
    }

    fn delete_session(&mut self, session_id: SessionId, now: UnixMillis, effects: &mut Vec<Effect>) -> Outcome {
        let Some(session) = self.sessions.get(&session_id) else {
            return Err(DomainError::SessionNotFound { session_id });
        };
        if let SessionStatus::Expired { at } = session.status {
            self.expired_index.remove(&(at, session_id));
        }
        let client_id = session.client_id.clone();
        self.end_waits(session_id, now, effects);
        let held = self.sessions.get(&session_id).map(|s| s.locks.clone()).unwrap_or_default();
        let freed: Vec<Option<DomainError>> = held.iter().map(|r| self.refusal_of_holders(r)).collect();
        let released = self.release_all(session_id, &held);
        self.sessions.remove(&session_id);
        effects.push(Effect::SessionDeleted { session_id, client_id, released: released.clone() });
        for (grant, freed_from) in released.iter().zip(freed) {
            self.hand_off(&grant.resource, now, freed_from, effects);
        }
        Ok(Applied::SessionDeleted { session_id, released })
    }

    /// Try-lock (`deadline` not after `now`) or acquire-or-queue, in either mode.
    #[allow(clippy::too_many_arguments)]
    fn wait(
        &mut self,
        session_id: SessionId,
        resource: Resource,
        mode: Mode,
        limit: Option<Limit>,
        value: Option<LockValue>,
        deadline: UnixMillis,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> Outcome {
        let session = self.live_session(&session_id)?;
        let client_id = session.client_id.clone();
        if let Some(lock) = self.locks.get(&resource) {
            if let Some(grant) = lock.grant(&resource, session_id) {
                if lock.mode != mode {
                    return Err(DomainError::ModeConflict { session_id, resource, held: lock.mode });
                }
                // Held by this very session: the same grant again (with its first value).
                return Ok(Applied::Acquired { grant, fresh: false });
            }
        }
        if session.waiting.contains(&resource) {
            let queued = self.queue(&resource).find(|w| w.session_id == session_id).map(|w| (w.mode, w.deadline));
            if let Some((held, _)) = queued.filter(|(m, _)| *m != mode) {
                return Err(DomainError::ModeConflict { session_id, resource, held });
            }
            // A try-lock from a queued session is refused like anyone's and leaves its place
            // alone; a wait keeps the place, unless that wait's deadline has passed already
            // (the leader's tick has not removed it yet): that wait is over, and this is a new one.
            match self.unavailable(&resource, now) {
                Some(blocked) if deadline <= now => return Err(blocked),
                _ if queued.is_some_and(|(_, d)| d <= now) => {
                    self.leave_queue(session_id, &resource, WaitEnd::Timeout, now, effects);
                }
                _ => return Ok(self.rejoin(session_id, client_id, resource, deadline, effects)),
            }
        }
        let limit = self.shared_limit(&resource, mode, limit)?;
        let Some(blocked) = self.blocked(&resource, mode, now) else {
            let grant = self.grant(session_id, resource, mode, limit, value, now);
            effects.push(Effect::LockAcquired { grant: grant.clone(), client_id, queued: false, waited_ms: 0 });
            return Ok(Applied::Acquired { grant, fresh: true });
        };
        if deadline <= now {
            return Err(blocked);
        }
        let queue = self.queues.entry(resource.clone()).or_default();
        if queue.len() >= MAX_WAITERS {
            let queue_length = queue.len() as u64;
            return Err(DomainError::QueueFull { resource, queue_length });
        }
        let waiter = Waiter { session_id, mode, limit, value, since: now, deadline };
        queue.push_back(waiter.clone());
        let position = queue.len() as u64;
        self.deadlines.insert((deadline, resource.clone(), session_id));
        if let Some(session) = self.sessions.get_mut(&session_id) {
            session.waiting.insert(resource.clone());
        }
        effects.push(Effect::LockWaiting { resource: resource.clone(), session_id, client_id, waiter, position });
        Ok(Applied::Queued { resource, session_id, position, deadline, fresh: true })
    }

    /// A queued session asking again: same place, the later of the two deadlines.
    fn rejoin(
        &mut self,
        session_id: SessionId,
        client_id: ClientId,
        resource: Resource,
        deadline: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> Applied {
        let found = self.queues.get_mut(&resource).and_then(|q| {
            let index = q.iter().position(|w| w.session_id == session_id)?;
            Some((index, &mut q[index]))
        });
        // `waiting` lists the resource, so its queue has the session (see `check_invariants`).
        let Some((index, waiter)) = found else {
            return Applied::Queued { resource, session_id, position: 0, deadline, fresh: false };
        };
        let position = index as u64 + 1;
        let old = waiter.deadline;
        if deadline > old {
            waiter.deadline = deadline;
            let waiter = waiter.clone();
            self.deadlines.remove(&(old, resource.clone(), session_id));
            self.deadlines.insert((deadline, resource.clone(), session_id));
            effects.push(Effect::LockWaiting { resource: resource.clone(), session_id, client_id, waiter, position });
        }
        Applied::Queued { resource, session_id, position, deadline: deadline.max(old), fresh: false }
    }

    fn cancel_wait(
        &mut self,
        session_id: SessionId,
        resource: Resource,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> Outcome {
        let session = match self.sessions.get(&session_id) {
            None => return Err(DomainError::SessionNotFound { session_id }),
            Some(s) => s,
        };
        if !session.waiting.contains(&resource) {
            return Err(DomainError::NotWaiting { session_id, resource });
        }
        self.leave_queue(session_id, &resource, WaitEnd::Cancelled, now, effects);
        Ok(Applied::WaitCancelled { resource, session_id })
    }

    fn release(
        &mut self,
        session_id: SessionId,
        resource: Resource,
        presented: FenceToken,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> Outcome {
        let client_id = self.live_session(&session_id)?.client_id.clone();
        let Some(grant) = self.locks.get(&resource).and_then(|l| l.grant(&resource, session_id)) else {
            return Err(DomainError::LockNotHeld { session_id, resource });
        };
        if grant.fence_token != presented {
            return Err(DomainError::FenceTokenMismatch { session_id, resource, held: grant.fence_token, presented });
        }
        let freed_from = self.refusal_of_holders(&resource);
        self.release_all(session_id, &BTreeSet::from([resource]));
        effects.push(Effect::LockReleased { grant: grant.clone(), client_id });
        self.hand_off(&grant.resource, now, freed_from, effects);
        Ok(Applied::Released { grant })
    }

    /// Expires each listed session that is still live; unknown or already expired ids are
    /// skipped (the sweep that listed them may have raced a delete). Its waits end, its grants
    /// are released, and each resource goes to the head of its queue now or, with a lock-delay
    /// and no holder left, when the delay ends.
    fn expire_all(
        &mut self,
        session_ids: &[SessionId],
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> Vec<ExpiredSession> {
        let mut expired = Vec::new();
        for &session_id in session_ids {
            let Some(session) = self.sessions.get(&session_id) else { continue };
            if session.is_expired() {
                continue;
            }
            let (client_id, lock_delay) = (session.client_id.clone(), session.lock_delay);
            self.end_waits(session_id, now, effects);
            let Some(session) = self.sessions.get_mut(&session_id) else { continue };
            session.status = SessionStatus::Expired { at: now };
            let held = std::mem::take(&mut session.locks);
            self.expired_index.insert((now, session_id));
            let freed: Vec<Option<DomainError>> = held.iter().map(|r| self.refusal_of_holders(r)).collect();
            let released = self.release_all(session_id, &held);
            effects.push(Effect::SessionExpired { session_id, client_id, released: released.clone() });
            for (grant, freed_from) in released.iter().zip(freed) {
                let resource = &grant.resource;
                if lock_delay == LockDelay::NONE || self.locks.contains_key(resource) {
                    self.hand_off(resource, now, freed_from, effects);
                } else {
                    let until = now.saturating_add_millis(lock_delay.millis());
                    self.delays.insert(resource.clone(), until);
                    self.delay_ends.insert((until, resource.clone()));
                }
            }
            expired.push(ExpiredSession { session_id, released });
        }
        expired
    }

    /// The leader's timer: waits past their deadline end, lock-delays past their end let the
    /// head of the queue in.
    fn tick(&mut self, now: UnixMillis, effects: &mut Vec<Effect>) -> Applied {
        let mut timed_out = 0;
        while let Some((deadline, resource, session_id)) = self.deadlines.first().cloned() {
            if deadline > now {
                break;
            }
            self.leave_queue(session_id, &resource, WaitEnd::Timeout, now, effects);
            timed_out += 1;
        }
        let mut handed_off = 0;
        while let Some((until, resource)) = self.delay_ends.first().cloned() {
            if until > now {
                break;
            }
            self.end_delay(&resource);
            let queue_length = self.queue_len(&resource) as u64;
            let delayed = DomainError::LockDelayed { resource: resource.clone(), until, queue_length };
            handed_off += self.hand_off(&resource, now, Some(delayed), effects);
        }
        Applied::Ticked { timed_out, handed_off }
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

    /// Takes the session's grants of `held` away (a resource with no holder left is free).
    fn release_all(&mut self, session_id: SessionId, held: &BTreeSet<Resource>) -> Vec<Grant> {
        let mut released = Vec::new();
        for resource in held {
            let Some(lock) = self.locks.get_mut(resource) else { continue };
            let Some(grant) = lock.grant(resource, session_id) else { continue };
            lock.holders.remove(&session_id);
            if lock.holders.is_empty() {
                self.locks.remove(resource);
            }
            released.push(grant);
        }
        if let Some(session) = self.sessions.get_mut(&session_id) {
            for resource in held {
                session.locks.remove(resource);
            }
        }
        released
    }

    /// A new grant, with the next fence token, to a live session that may have it now.
    fn grant(
        &mut self,
        session_id: SessionId,
        resource: Resource,
        mode: Mode,
        limit: Option<Limit>,
        value: Option<LockValue>,
        now: UnixMillis,
    ) -> Grant {
        self.end_delay(&resource);
        self.fence_counter += 1;
        let fence_token = FenceToken(self.fence_counter);
        let lock = self.locks.entry(resource.clone()).or_insert_with(|| Lock { mode, limit, holders: BTreeMap::new() });
        lock.holders.insert(session_id, Hold { fence_token, acquired_at: now, value: value.clone() });
        if let Some(session) = self.sessions.get_mut(&session_id) {
            session.locks.insert(resource.clone());
        }
        Grant { resource, session_id, fence_token, acquired_at: now, mode, value }
    }

    /// Lets the head of the queue in while it fits: an exclusive waiter if nobody holds the
    /// resource, and a run of shared waiters while the holders are shared and under the limit.
    /// Waiters past their deadline (or whose session ended) that are in the way leave the queue.
    /// `freed_from` is what held the resource until now, what a waiter that timed out at this
    /// moment was waiting behind. Returns how many were granted. Nothing while under lock-delay.
    fn hand_off(
        &mut self,
        resource: &Resource,
        now: UnixMillis,
        freed_from: Option<DomainError>,
        effects: &mut Vec<Effect>,
    ) -> u64 {
        if self.delays.contains_key(resource) {
            return 0;
        }
        let mark = effects.len();
        let mut granted = 0;
        while let Some(head) = self.queues.get(resource).and_then(VecDeque::front).cloned() {
            let overdue = head.deadline <= now;
            let ended = self.sessions.get(&head.session_id).is_none_or(Session::is_expired);
            let fits = self.locks.get(resource).is_none_or(|lock| lock.admits(head.mode));
            if !overdue && !ended && !fits {
                break;
            }
            if let Some(queue) = self.queues.get_mut(resource) {
                queue.pop_front();
            }
            self.deadlines.remove(&(head.deadline, resource.clone(), head.session_id));
            let client_id = match self.sessions.get_mut(&head.session_id) {
                Some(session) => {
                    session.waiting.remove(resource);
                    session.client_id.clone()
                }
                None => ClientId::new("unknown").expect("valid literal"),
            };
            let waited_ms = waited(head.since, now);
            if overdue || ended {
                let reason = if ended { WaitEnd::SessionEnded } else { WaitEnd::Timeout };
                effects.push(Effect::LockWaitEnded {
                    resource: resource.clone(),
                    session_id: head.session_id,
                    client_id,
                    reason,
                    waited_ms,
                    blocked_by: None,
                });
                continue;
            }
            let grant = self.grant(head.session_id, resource.clone(), head.mode, head.limit, head.value, now);
            effects.push(Effect::LockAcquired { grant, client_id, queued: true, waited_ms });
            granted += 1;
            if head.mode == Mode::Exclusive {
                break;
            }
        }
        if self.queues.get(resource).is_some_and(VecDeque::is_empty) {
            self.queues.remove(resource);
        }
        // A wait that timed out as the resource changed hands waited behind what held it.
        let why = freed_from.or_else(|| self.unavailable(resource, now));
        for effect in &mut effects[mark..] {
            if let Effect::LockWaitEnded { reason: WaitEnd::Timeout, blocked_by, .. } = effect {
                blocked_by.clone_from(&why);
            }
        }
        granted
    }

    /// Takes one session out of one queue, saying why; whoever is then at the head may fit now.
    fn leave_queue(
        &mut self,
        session_id: SessionId,
        resource: &Resource,
        reason: WaitEnd,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
        let Some(queue) = self.queues.get_mut(resource) else { return };
        let Some(index) = queue.iter().position(|w| w.session_id == session_id) else { return };
        let Some(waiter) = queue.remove(index) else { return };
        if queue.is_empty() {
            self.queues.remove(resource);
        }
        self.deadlines.remove(&(waiter.deadline, resource.clone(), session_id));
        let client_id = match self.sessions.get_mut(&session_id) {
            Some(session) => {
                session.waiting.remove(resource);
                session.client_id.clone()
            }
            None => ClientId::new("unknown").expect("valid literal"),
        };
        let blocked_by = match reason {
            WaitEnd::SessionEnded => None,
            // Still held, or under a lock-delay (one that ends in this same tick still stood in
            // the way until now).
            _ => self.unavailable(resource, now).or_else(|| {
                let until = self.delayed_until(resource)?;
                Some(DomainError::LockDelayed {
                    resource: resource.clone(),
                    until,
                    queue_length: self.queue_len(resource) as u64,
                })
            }),
        };
        let waited_ms = waited(waiter.since, now);
        effects.push(Effect::LockWaitEnded {
            resource: resource.clone(),
            session_id,
            client_id,
            reason,
            waited_ms,
            blocked_by,
        });
        // An exclusive waiter that left may have been all that kept shared ones behind it out.
        self.hand_off(resource, now, None, effects);
    }

    /// Ends every wait of a session that is going away.
    fn end_waits(&mut self, session_id: SessionId, now: UnixMillis, effects: &mut Vec<Effect>) {
        let waiting = self.sessions.get(&session_id).map(|s| s.waiting.clone()).unwrap_or_default();
        for resource in &waiting {
            self.leave_queue(session_id, resource, WaitEnd::SessionEnded, now, effects);
        }
    }

    fn end_delay(&mut self, resource: &Resource) {
        if let Some(until) = self.delays.remove(resource) {
            self.delay_ends.remove(&(until, resource.clone()));
        }
    }

    /// The refusal a newcomer gets from the resource's current holders, if it has any.
    fn refusal_of_holders(&self, resource: &Resource) -> Option<DomainError> {
        let lock = self.locks.get(resource)?;
        let (holder, hold) = lock.oldest()?;
        let holder_client = self.sessions.get(&holder).map(|s| s.client_id.clone());
        Some(DomainError::LockHeld {
            resource: resource.clone(),
            holder,
            // Holders are live sessions (see `check_invariants`); the fallback keeps this a
            // value rather than a panic even if that ever broke.
            holder_client: holder_client.unwrap_or_else(|| ClientId::new("unknown").expect("valid literal")),
            fence_token: hold.fence_token,
            since: hold.acquired_at,
            holders_count: lock.holders.len() as u64,
            queue_length: self.queue_len(resource) as u64,
        })
    }

    /// The limit a shared request runs under: the resource's, if it has shared holders or
    /// waiters (a request naming another is refused), else the one it names (or none).
    fn shared_limit(
        &self,
        resource: &Resource,
        mode: Mode,
        asked: Option<Limit>,
    ) -> Result<Option<Limit>, DomainError> {
        if mode != Mode::Shared {
            return Ok(None);
        }
        let holders = self.locks.get(resource).filter(|l| l.mode == Mode::Shared).map(|l| l.limit);
        let current = holders.or_else(|| self.queue(resource).find(|w| w.mode == Mode::Shared).map(|w| w.limit));
        match current {
            None => Ok(asked),
            Some(limit) if asked.is_none() || asked == limit => Ok(limit),
            Some(limit) => Err(DomainError::LimitMismatch { resource: resource.clone(), limit }),
        }
    }

    /// Why a newcomer cannot have `resource` in `mode` at `now`: someone is queued ahead, the
    /// holders do not admit it, or a lock-delay (one that ended counts while waiters are
    /// queued: the leader's next `Tick` lets the head in first).
    fn blocked(&self, resource: &Resource, mode: Mode, now: UnixMillis) -> Option<DomainError> {
        let fits = self.locks.get(resource).is_none_or(|lock| lock.admits(mode));
        let delayed = self.delays.get(resource).is_some_and(|until| *until > now);
        if fits && !delayed && self.queue_len(resource) == 0 {
            return None;
        }
        self.unavailable(resource, now)
    }

    // ---- reads ----

    /// Why `Command::Acquire` of `resource` by `session_id` would be refused if it were applied
    /// with time `now`, or `None` if it would grant (or hand back the session's own grant).
    /// Changes nothing: it lets the leader answer a try-lock that must fail from a
    /// linearizable read instead of the log, with exactly the refusal the command would give.
    pub fn acquire_refusal(&self, session_id: &SessionId, resource: &Resource, now: UnixMillis) -> Option<DomainError> {
        let now = self.clock.max(now);
        let session = match self.live_session(session_id) {
            Err(refusal) => return Some(refusal),
            Ok(session) => session,
        };
        if let Some(lock) = self.locks.get(resource).filter(|l| l.holders.contains_key(session_id)) {
            let conflict =
                DomainError::ModeConflict { session_id: *session_id, resource: resource.clone(), held: lock.mode };
            return (lock.mode != Mode::Exclusive).then_some(conflict);
        }
        if session.waiting.contains(resource) {
            let queued = self.queue(resource).find(|w| w.session_id == *session_id).map(|w| w.mode);
            if let Some(held) = queued.filter(|m| *m != Mode::Exclusive) {
                return Some(DomainError::ModeConflict { session_id: *session_id, resource: resource.clone(), held });
            }
            return self.unavailable(resource, now);
        }
        self.blocked(resource, Mode::Exclusive, now)
    }

    /// What keeps a resource from a newcomer regardless of mode: its holders, or a lock-delay
    /// (one that ended counts while waiters are queued: the leader's next `Tick` lets the head
    /// in first).
    fn unavailable(&self, resource: &Resource, now: UnixMillis) -> Option<DomainError> {
        if let Some(held) = self.refusal_of_holders(resource) {
            return Some(held);
        }
        let queue_length = self.queue_len(resource) as u64;
        let until = *self.delays.get(resource)?;
        (until > now || queue_length > 0).then(|| DomainError::LockDelayed {
            resource: resource.clone(),
            until,
            queue_length,
        })
    }

    /// Whether `fence_token` is the token of a current holder of `resource` (Chubby's
    /// CheckSequencer), and the current holders' grants.
    pub fn fence_check(&self, resource: &Resource, fence_token: FenceToken) -> (bool, Vec<Grant>) {
        let grants = self.locks.get(resource).map(|l| l.grants(resource)).unwrap_or_default();
        (grants.iter().any(|g| g.fence_token == fence_token), grants)
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

    /// How many resources are held (by one holder or several).
    pub fn held_resources(&self) -> usize {
        self.locks.len()
    }

    pub fn fence_counter(&self) -> u64 {
        self.fence_counter
    }

    /// The latest time any applied command carried (command times are clamped to it).
    pub fn clock(&self) -> UnixMillis {
        self.clock
    }

    /// The sessions waiting for `resource`, head first.
    pub fn queue(&self, resource: &Resource) -> impl Iterator<Item = &Waiter> {
        self.queues.get(resource).into_iter().flatten()
    }

    pub fn queue_len(&self, resource: &Resource) -> usize {
        self.queues.get(resource).map_or(0, VecDeque::len)
    }

    /// Until when `resource` is under lock-delay, if it is.
    pub fn delayed_until(&self, resource: &Resource) -> Option<UnixMillis> {
        self.delays.get(resource).copied()
    }

    /// Resources under lock-delay, by name.
    pub fn delays(&self) -> impl Iterator<Item = (&Resource, &UnixMillis)> {
        self.delays.iter()
    }

    /// When the leader next has something to `Tick` for: the earliest wait deadline or
    /// lock-delay end.
    pub fn next_due(&self) -> Option<UnixMillis> {
        let wait = self.deadlines.first().map(|(at, ..)| *at);
        let delay = self.delay_ends.first().map(|(at, _)| *at);
        wait.into_iter().chain(delay).min()
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
            total_locks: self.locks.values().map(|l| l.holders.len() as u64).sum(),
            fence_counter: self.fence_counter,
            waiters: self.deadlines.len() as u64,
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
            queues: &self.queues,
            delays: &self.delays,
        };
        let mut out = vec![SNAPSHOT_VERSION];
        // Serializing maps of plain data into a Vec cannot fail.
        out.extend(postcard::to_allocvec(&body).expect("postcard encoding of in-memory maps"));
        out
    }

    /// Rebuilds a state from `snapshot` output (this version's or version 1's), checking that
    /// it is consistent.
    pub fn restore(bytes: &[u8]) -> Result<LockState, SnapshotError> {
        let (&version, body) = bytes.split_first().ok_or_else(|| SnapshotError("empty".into()))?;
        let bad = |e: postcard::Error| SnapshotError(e.to_string());
        let snap: SnapshotOwned = match version {
            SNAPSHOT_VERSION => postcard::from_bytes(body).map_err(bad)?,
            1 => {
                let v1: SnapshotV1 = postcard::from_bytes(body).map_err(bad)?;
                let sessions = v1
                    .sessions
                    .into_iter()
                    .map(|(id, s)| {
                        let session = Session {
                            client_id: s.client_id,
                            timeout: s.timeout,
                            created_at: s.created_at,
                            last_keepalive: s.last_keepalive,
                            status: s.status,
                            lock_delay: LockDelay::NONE,
                            locks: BTreeSet::new(),
                            waiting: BTreeSet::new(),
                        };
                        (id, session)
                    })
                    .collect();
                let locks = v1
                    .locks
                    .into_iter()
                    .map(|(resource, l)| {
                        let hold = Hold { fence_token: l.fence_token, acquired_at: l.acquired_at, value: None };
                        (
                            resource,
                            Lock { mode: Mode::Exclusive, limit: None, holders: BTreeMap::from([(l.holder, hold)]) },
                        )
                    })
                    .collect();
                SnapshotOwned {
                    sessions,
                    locks,
                    fence_counter: v1.fence_counter,
                    clock: v1.clock,
                    queues: BTreeMap::new(),
                    delays: BTreeMap::new(),
                }
            }
            other => return Err(SnapshotError(format!("unknown version {other}"))),
        };
        let mut state = LockState {
            sessions: snap.sessions,
            locks: snap.locks,
            queues: snap.queues,
            delays: snap.delays,
            fence_counter: snap.fence_counter,
            clock: snap.clock,
            ..LockState::default()
        };
        for (id, session) in &state.sessions {
            if let SessionStatus::Expired { at } = session.status {
                state.expired_index.insert((at, *id));
            }
        }
        for (resource, lock) in &state.locks {
            for holder in lock.holders.keys() {
                match state.sessions.get_mut(holder) {
                    Some(session) if !session.is_expired() => {
                        session.locks.insert(resource.clone());
                    }
                    _ => return Err(SnapshotError(format!("lock {resource} held by a session that is not live"))),
                }
            }
        }
        for (resource, queue) in &state.queues {
            for waiter in queue {
                let listed = match state.sessions.get_mut(&waiter.session_id) {
                    Some(session) if !session.is_expired() => session.waiting.insert(resource.clone()),
                    _ => false,
                };
                if !listed {
                    return Err(SnapshotError(format!("{resource} has a waiter that is not live or waits twice")));
                }
                state.deadlines.insert((waiter.deadline, resource.clone(), waiter.session_id));
            }
        }
        state.delay_ends = state.delays.iter().map(|(r, until)| (*until, r.clone())).collect();
        state.check_invariants().map_err(SnapshotError)?;
        Ok(state)
    }

    /// Checks the invariants the rest of lock.io relies on; used by tests and on restore.
    ///
    /// - every lock has one exclusive holder or shared holders (no more than its limit), each a
    ///   live session that lists it, each with its own token; every listed lock exists;
    /// - expired sessions hold nothing and wait for nothing;
    /// - no fence token exceeds the counter, and no two grants share a token;
    /// - every waiter's session is live and lists the wait, waits at most once per resource and
    ///   does not hold what it waits for; no queue is empty or longer than `MAX_WAITERS`;
    /// - the head of a queue cannot be let in (a freed resource went to it at once): the
    ///   resource is held in a way that does not admit it, or under lock-delay; so a free
    ///   resource has waiters only under lock-delay, and a resource under lock-delay is free;
    /// - the shared holders and shared waiters of a resource agree on one limit;
    /// - the derived indexes (deadlines, delay ends) match the queues and delays.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut tokens = BTreeSet::new();
        for (resource, lock) in &self.locks {
            let count = lock.holders.len() as u64;
            let too_many = match lock.mode {
                Mode::Exclusive => count != 1 || lock.limit.is_some(),
                Mode::Shared => count == 0 || lock.limit.is_some_and(|l| count > l.get()),
            };
            if too_many {
                return Err(format!(
                    "lock {resource} ({}) has {count} holders, limit {:?}",
                    lock.mode.as_str(),
                    lock.limit
                ));
            }
            for (id, hold) in &lock.holders {
                let Some(holder) = self.sessions.get(id) else {
                    return Err(format!("lock {resource} held by unknown session {id}"));
                };
                if holder.is_expired() {
                    return Err(format!("lock {resource} held by expired session {id}"));
                }
                if !holder.locks.contains(resource) {
                    return Err(format!("session {id} does not list its lock {resource}"));
                }
                if hold.fence_token.0 == 0 || hold.fence_token.0 > self.fence_counter {
                    return Err(format!(
                        "lock {resource} has token {} beyond counter {}",
                        hold.fence_token, self.fence_counter
                    ));
                }
                if !tokens.insert(hold.fence_token) {
                    return Err(format!("token {} held twice", hold.fence_token));
                }
            }
        }
        let mut deadlines = BTreeSet::new();
        for (resource, queue) in &self.queues {
            if queue.is_empty() || queue.len() > MAX_WAITERS {
                return Err(format!("queue of {resource} has {} waiters", queue.len()));
            }
            let head_fits = self.locks.get(resource).is_none_or(|lock| lock.admits(queue[0].mode));
            if head_fits && !self.delays.contains_key(resource) {
                return Err(format!("the head of {resource}'s queue could have it but waits"));
            }
            let shared_limits: BTreeSet<Option<Limit>> = queue
                .iter()
                .filter(|w| w.mode == Mode::Shared)
                .map(|w| w.limit)
                .chain(self.locks.get(resource).filter(|l| l.mode == Mode::Shared).map(|l| l.limit))
                .collect();
            if shared_limits.len() > 1 {
                return Err(format!("{resource}'s shared side has several limits: {shared_limits:?}"));
            }
            for waiter in queue {
                let id = waiter.session_id;
                match self.sessions.get(&id) {
                    None => return Err(format!("{resource} has a waiter of unknown session {id}")),
                    Some(s) if s.is_expired() => {
                        return Err(format!("{resource} has a waiter of expired session {id}"))
                    }
                    Some(s) if !s.waiting.contains(resource) => {
                        return Err(format!("session {id} does not list its wait for {resource}"))
                    }
                    Some(s) if s.locks.contains(resource) => {
                        return Err(format!("session {id} both holds and waits for {resource}"))
                    }
                    Some(_) => {}
                }
                if !deadlines.insert((waiter.deadline, resource.clone(), id)) {
                    return Err(format!("session {id} waits twice for {resource}"));
                }
            }
        }
        if deadlines != self.deadlines {
            return Err("the deadline index does not match the queues".into());
        }
        for resource in self.delays.keys() {
            if self.locks.contains_key(resource) {
                return Err(format!("{resource} is held and under lock-delay"));
            }
        }
        let delay_ends: BTreeSet<_> = self.delays.iter().map(|(r, until)| (*until, r.clone())).collect();
        if delay_ends != self.delay_ends {
            return Err("the delay index does not match the delays".into());
        }
        let waits: usize = self.sessions.values().map(|s| s.waiting.len()).sum();
        if waits != self.deadlines.len() {
            return Err(format!("sessions list {waits} waits, the queues hold {}", self.deadlines.len()));
        }
        for (id, session) in &self.sessions {
            if session.is_expired() && (!session.locks.is_empty() || !session.waiting.is_empty()) {
                return Err(format!("expired session {id} still lists locks or waits"));
            }
            for resource in &session.locks {
                if !self.locks.get(resource).is_some_and(|l| l.holders.contains_key(id)) {
                    return Err(format!("session {id} lists {resource} but does not hold it"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-1 snapshot (before waiting and lock-delay), as the earlier release wrote it.
    #[derive(Serialize)]
    struct V1 {
        sessions: BTreeMap<SessionId, (ClientId, Timeout, UnixMillis, UnixMillis, SessionStatus)>,
        locks: BTreeMap<Resource, (SessionId, FenceToken, UnixMillis)>,
        fence_counter: u64,
        clock: UnixMillis,
    }

    #[test]
    fn a_version_1_snapshot_restores_with_no_queues_and_no_lock_delay() {
        let mut state = LockState::new();
        let (a, b) = (SessionId(uuid::Uuid::from_u128(1)), SessionId(uuid::Uuid::from_u128(2)));
        for id in [a, b] {
            let create = Command::CreateSession {
                session_id: id,
                client_id: ClientId::new("c").unwrap(),
                timeout: Timeout::from_secs(10).unwrap(),
                now: UnixMillis(1),
            };
            state.apply(create).unwrap();
        }
        state
            .apply(Command::Acquire { session_id: a, resource: Resource::new("r").unwrap(), now: UnixMillis(2) })
            .unwrap();
        state.apply(Command::ExpireSessions { session_ids: vec![b], now: UnixMillis(3) }).unwrap();
        let sessions = state
            .sessions
            .iter()
            .map(|(id, s)| (*id, (s.client_id.clone(), s.timeout, s.created_at, s.last_keepalive, s.status)))
            .collect();
        let locks = state
            .locks
            .iter()
            .filter_map(|(r, l)| l.oldest().map(|(id, h)| (r.clone(), (id, h.fence_token, h.acquired_at))))
            .collect();
        let v1 = V1 { sessions, locks, fence_counter: state.fence_counter, clock: state.clock };
        let mut bytes = vec![1u8];
        bytes.extend(postcard::to_allocvec(&v1).unwrap());
        let restored = LockState::restore(&bytes).expect("a version-1 snapshot restores");
        assert_eq!(restored, state);
        assert_eq!(restored.session(&a).unwrap().lock_delay, LockDelay::NONE);
        assert_eq!(restored.oldest_expiry(), Some(UnixMillis(3)));
    }
}

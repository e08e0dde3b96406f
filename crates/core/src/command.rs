//! What the log carries (`Command`) and what applying it gives back (`Outcome`).
//!
//! Commands are built by the leader's service layer from validated input, with the time and
//! any new id already stamped in. Outcomes are plain values, refusals included.

use serde::{Deserialize, Serialize};

use crate::types::{
    ClientId, FenceToken, InvalidValue, Limit, LockDelay, LockValue, Mode, Resource, SessionId, Timeout, UnixMillis,
};

/// One replicated change to the lock state. Every variant carries `now`, the leader's
/// wall-clock time when it proposed the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Opens a session under an id minted before replication. Re-applying it with the same
    /// id (a retried create) returns the existing session instead of making a second one.
    CreateSession { session_id: SessionId, client_id: ClientId, timeout: Timeout, now: UnixMillis },
    /// Closes a session, live or expired, and releases every lock it holds in the same step.
    DeleteSession { session_id: SessionId, now: UnixMillis },
    /// Try-lock: grants `resource` to the session with the next fence token if it is free.
    Acquire { session_id: SessionId, resource: Resource, now: UnixMillis },
    /// Releases `resource` if the session holds it under `fence_token`.
    Release { session_id: SessionId, resource: Resource, fence_token: FenceToken, now: UnixMillis },
    /// The leader's sweep: expires the listed sessions (the leader saw no keepalive for their
    /// timeout), releasing their locks, and forgets expired sessions older than the retention.
    ExpireSessions { session_ids: Vec<SessionId>, now: UnixMillis },
    /// `POST /admin/cleanup`: expires the listed sessions like a sweep, then removes every
    /// expired session at once.
    Cleanup { expire: Vec<SessionId>, now: UnixMillis },
    /// The leader writes down, now and then, when it last took a keepalive for each session, so
    /// that every replica shows the same `last_keepalive`. Informational: expiry is decided by
    /// the leader's lease table, not from this.
    RecordKeepalives { keepalives: Vec<(SessionId, UnixMillis)>, now: UnixMillis },
    // The variants below came with waiting and lock-delay. They are appended, never inserted,
    // so that a log written by an earlier release still decodes (postcard numbers variants).
    /// Acquire-or-wait: grants `resource` in `mode` now if nobody is ahead and the holders
    /// allow it (as `Acquire` does for an exclusive lock), otherwise puts the session at the end
    /// of the resource's queue until `deadline` (leader time). The same session asking again
    /// while queued keeps its place; the deadline moves to the later of the two. A `deadline`
    /// that is not after `now` makes it a try-lock. `limit` (shared only) caps the shared
    /// holders; `value` is stored with the grant.
    Wait {
        session_id: SessionId,
        resource: Resource,
        mode: Mode,
        limit: Option<Limit>,
        value: Option<LockValue>,
        deadline: UnixMillis,
        now: UnixMillis,
    },
    /// Takes the session out of the resource's queue (the client went away).
    CancelWait { session_id: SessionId, resource: Resource, now: UnixMillis },
    /// The leader's timer: every waiter whose deadline is at or before `now` leaves its queue,
    /// and every lock-delay that ended by `now` lets the head of its queue in.
    Tick { now: UnixMillis },
    /// `CreateSession` with a lock-delay: when this session expires, each lock it held stays
    /// unavailable for that long.
    CreateSessionWithLockDelay {
        session_id: SessionId,
        client_id: ClientId,
        timeout: Timeout,
        lock_delay: LockDelay,
        now: UnixMillis,
    },
}

impl Command {
    /// The leader's time stamp on this command.
    pub fn now(&self) -> UnixMillis {
        match self {
            Command::CreateSession { now, .. }
            | Command::DeleteSession { now, .. }
            | Command::Acquire { now, .. }
            | Command::Release { now, .. }
            | Command::ExpireSessions { now, .. }
            | Command::Cleanup { now, .. }
            | Command::RecordKeepalives { now, .. }
            | Command::Wait { now, .. }
            | Command::CancelWait { now, .. }
            | Command::Tick { now }
            | Command::CreateSessionWithLockDelay { now, .. } => *now,
        }
    }

    /// A short name of the kind of command, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateSession { .. } => "create_session",
            Command::DeleteSession { .. } => "delete_session",
            Command::Acquire { .. } => "acquire",
            Command::Release { .. } => "release",
            Command::ExpireSessions { .. } => "expire_sessions",
            Command::Cleanup { .. } => "cleanup",
            Command::RecordKeepalives { .. } => "record_keepalives",
            Command::Wait { .. } => "wait",
            Command::CancelWait { .. } => "cancel_wait",
            Command::Tick { .. } => "tick",
            Command::CreateSessionWithLockDelay { .. } => "create_session",
        }
    }

    /// Re-checks the value rules on a command read back from the log. The service layer
    /// validates before proposing, so this only matters for a log written by a faulty or
    /// different build; the answer is a refusal, never a panic.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        match self {
            Command::CreateSession { client_id, timeout, .. } => {
                ClientId::new(client_id.as_str())?;
                Timeout::from_secs(timeout.secs())?;
            }
            Command::CreateSessionWithLockDelay { client_id, timeout, lock_delay, .. } => {
                ClientId::new(client_id.as_str())?;
                Timeout::from_secs(timeout.secs())?;
                LockDelay::from_secs(lock_delay.secs())?;
            }
            Command::Acquire { resource, .. }
            | Command::Wait { resource, .. }
            | Command::CancelWait { resource, .. } => {
                Resource::new(resource.as_str())?;
            }
            Command::Release { resource, fence_token, .. } => {
                Resource::new(resource.as_str())?;
                FenceToken::new(fence_token.0)?;
            }
            Command::DeleteSession { .. }
            | Command::ExpireSessions { .. }
            | Command::Cleanup { .. }
            | Command::RecordKeepalives { .. }
            | Command::Tick { .. } => {}
        }
        Ok(())
    }
}

/// A lock granted to a session (one holder's grant: a shared lock has several).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub resource: Resource,
    pub session_id: SessionId,
    pub fence_token: FenceToken,
    pub acquired_at: UnixMillis,
    pub mode: Mode,
    /// What the holder stored with it.
    pub value: Option<LockValue>,
}

/// A session the command expired, with the grants that ended with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiredSession {
    pub session_id: SessionId,
    pub released: Vec<Grant>,
}

/// What a command did when it was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// `fresh` is false when the session already existed (a retried create).
    SessionCreated {
        session_id: SessionId,
        fresh: bool,
    },
    SessionDeleted {
        session_id: SessionId,
        released: Vec<Grant>,
    },
    /// `fresh` is false when the session already held the lock (idempotent acquire).
    Acquired {
        grant: Grant,
        fresh: bool,
    },
    Released {
        grant: Grant,
    },
    /// From `ExpireSessions` and `Cleanup`: the sessions expired now, and how many expired
    /// sessions were removed for good.
    Expired {
        expired: Vec<ExpiredSession>,
        removed: u64,
    },
    /// From `RecordKeepalives`: how many live sessions it updated.
    KeepalivesRecorded {
        updated: u64,
    },
    /// From `Wait`: the session is in the resource's queue at `position` (1 is the head).
    /// `fresh` is false when it was already queued (a retried wait keeps its place).
    Queued {
        resource: Resource,
        session_id: SessionId,
        position: u64,
        deadline: UnixMillis,
        fresh: bool,
    },
    /// From `CancelWait`.
    WaitCancelled {
        resource: Resource,
        session_id: SessionId,
    },
    /// From `Tick`: how many waits timed out and how many queued sessions got their lock.
    Ticked {
        timed_out: u64,
        handed_off: u64,
    },
}

/// Why a session stopped waiting without the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaitEnd {
    /// Its deadline passed.
    Timeout,
    /// The client went away (`CancelWait`).
    Cancelled,
    /// The session was deleted, expired or cleaned up.
    SessionEnded,
}

impl WaitEnd {
    /// The contract's spelling (`reason` of `lock_wait_ended`).
    pub fn as_str(self) -> &'static str {
        match self {
            WaitEnd::Timeout => "timeout",
            WaitEnd::Cancelled => "cancelled",
            WaitEnd::SessionEnded => "session_ended",
        }
    }
}

/// One thing that happened while a command was applied, in the order it happened. A command
/// can cause several: a release hands the lock to the head of the queue in the same step, an
/// expiry ends the session's waits, releases its locks and hands each one on. Observers (the
/// event stream, the leader's open waits) read these; nothing in the state depends on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    SessionCreated {
        session_id: SessionId,
        client_id: ClientId,
        timeout: Timeout,
        lock_delay: LockDelay,
    },
    SessionDeleted {
        session_id: SessionId,
        client_id: ClientId,
        released: Vec<Grant>,
    },
    SessionExpired {
        session_id: SessionId,
        client_id: ClientId,
        released: Vec<Grant>,
    },
    /// A new grant (its mode and value are in the grant). `queued`: handed over from the queue
    /// (then `waited_ms` is how long the session waited); otherwise granted on request.
    LockAcquired {
        grant: Grant,
        client_id: ClientId,
        queued: bool,
        waited_ms: u64,
    },
    LockReleased {
        grant: Grant,
        client_id: ClientId,
    },
    /// A session joined a queue at `position`, or (a retried wait) moved its deadline.
    LockWaiting {
        resource: Resource,
        session_id: SessionId,
        client_id: ClientId,
        waiter: Waiter,
        position: u64,
    },
    /// A session left a queue without the lock. `blocked_by` is why it could not have the lock
    /// at that moment (for a timeout's answer), if it was held or delayed.
    LockWaitEnded {
        resource: Resource,
        session_id: SessionId,
        client_id: ClientId,
        reason: WaitEnd,
        waited_ms: u64,
        blocked_by: Option<DomainError>,
    },
}

/// A session in a resource's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    pub session_id: SessionId,
    pub mode: Mode,
    /// Shared only: the resource's limit this waiter agreed to (the same for every shared
    /// waiter and holder at a time).
    pub limit: Option<Limit>,
    /// Stored with the grant when it comes.
    pub value: Option<LockValue>,
    /// When it joined the queue.
    pub since: UnixMillis,
    /// When it stops waiting without the lock.
    pub deadline: UnixMillis,
}

/// Why a command was refused. Refusals are deterministic: every replica refuses the same
/// command the same way, and a refused command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainError {
    SessionNotFound {
        session_id: SessionId,
    },
    SessionExpired {
        session_id: SessionId,
    },
    /// Others hold the resource (or a semaphore is full); `holder` is the exclusive holder or
    /// the oldest shared one, `holders_count` how many hold it, `queue_length` how many wait.
    LockHeld {
        resource: Resource,
        holder: SessionId,
        holder_client: ClientId,
        fence_token: FenceToken,
        since: UnixMillis,
        holders_count: u64,
        queue_length: u64,
    },
    /// The session holds or waits for the resource in the other mode (no upgrade or downgrade).
    ModeConflict {
        session_id: SessionId,
        resource: Resource,
        held: Mode,
    },
    /// A shared request named a limit other than the resource's current one (`None`: no limit).
    LimitMismatch {
        resource: Resource,
        limit: Option<Limit>,
    },
    /// The resource is free but under lock-delay (its holder's session expired) until `until`.
    LockDelayed {
        resource: Resource,
        until: UnixMillis,
        queue_length: u64,
    },
    /// The resource's queue already has `MAX_WAITERS` sessions.
    QueueFull {
        resource: Resource,
        queue_length: u64,
    },
    /// `CancelWait` for a session that is not in the resource's queue (granted or gone already).
    NotWaiting {
        session_id: SessionId,
        resource: Resource,
    },
    /// Release of a resource this session does not hold.
    LockNotHeld {
        session_id: SessionId,
        resource: Resource,
    },
    /// Release under a token other than the one this session holds the resource with.
    FenceTokenMismatch {
        session_id: SessionId,
        resource: Resource,
        held: FenceToken,
        presented: FenceToken,
    },
    /// A command whose values break the rules (see `Command::validate`).
    Invalid(InvalidValue),
}

/// The result of applying one command.
pub type Outcome = Result<Applied, DomainError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// postcard numbers enum variants by position: the variants an earlier release wrote to its
    /// log must keep their numbers, or a node upgraded in place cannot read its own log.
    #[test]
    fn the_commands_of_earlier_releases_keep_their_variant_numbers() {
        let s = SessionId(uuid::Uuid::from_u128(7));
        let r = || Resource::new("r").unwrap();
        let now = UnixMillis(5);
        let earlier = [
            Command::CreateSession {
                session_id: s,
                client_id: ClientId::new("c").unwrap(),
                timeout: Timeout::DEFAULT,
                now,
            },
            Command::DeleteSession { session_id: s, now },
            Command::Acquire { session_id: s, resource: r(), now },
            Command::Release { session_id: s, resource: r(), fence_token: FenceToken(1), now },
            Command::ExpireSessions { session_ids: vec![s], now },
            Command::Cleanup { expire: vec![], now },
            Command::RecordKeepalives { keepalives: vec![(s, now)], now },
        ];
        for (number, command) in earlier.iter().enumerate() {
            let bytes = postcard::to_allocvec(command).unwrap();
            assert_eq!(bytes[0] as usize, number, "{} moved", command.name());
            assert_eq!(&postcard::from_bytes::<Command>(&bytes).unwrap(), command);
        }
    }
}

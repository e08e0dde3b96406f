//! What the log carries (`Command`) and what applying it gives back (`Outcome`).
//!
//! Commands are built by the leader's service layer from validated input, with the time and
//! any new id already stamped in. Outcomes are plain values, refusals included.

use serde::{Deserialize, Serialize};

use crate::types::{ClientId, FenceToken, InvalidValue, Resource, SessionId, Timeout, UnixMillis};

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
            | Command::RecordKeepalives { now, .. } => *now,
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
            Command::Acquire { resource, .. } => {
                Resource::new(resource.as_str())?;
            }
            Command::Release { resource, fence_token, .. } => {
                Resource::new(resource.as_str())?;
                FenceToken::new(fence_token.0)?;
            }
            Command::DeleteSession { .. }
            | Command::ExpireSessions { .. }
            | Command::Cleanup { .. }
            | Command::RecordKeepalives { .. } => {}
        }
        Ok(())
    }
}

/// A lock granted to a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub resource: Resource,
    pub session_id: SessionId,
    pub fence_token: FenceToken,
    pub acquired_at: UnixMillis,
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
    SessionCreated { session_id: SessionId, fresh: bool },
    SessionDeleted { session_id: SessionId, released: Vec<Grant> },
    /// `fresh` is false when the session already held the lock (idempotent acquire).
    Acquired { grant: Grant, fresh: bool },
    Released { grant: Grant },
    /// From `ExpireSessions` and `Cleanup`: the sessions expired now, and how many expired
    /// sessions were removed for good.
    Expired { expired: Vec<ExpiredSession>, removed: u64 },
    /// From `RecordKeepalives`: how many live sessions it updated.
    KeepalivesRecorded { updated: u64 },
}

/// Why a command was refused. Refusals are deterministic: every replica refuses the same
/// command the same way, and a refused command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainError {
    SessionNotFound { session_id: SessionId },
    SessionExpired { session_id: SessionId },
    /// Another session holds the resource.
    LockHeld { resource: Resource, holder: SessionId, holder_client: ClientId, fence_token: FenceToken, since: UnixMillis },
    /// Release of a resource this session does not hold.
    LockNotHeld { session_id: SessionId, resource: Resource },
    /// Release under a token other than the one this session holds the resource with.
    FenceTokenMismatch { session_id: SessionId, resource: Resource, held: FenceToken, presented: FenceToken },
    /// A command whose values break the rules (see `Command::validate`).
    Invalid(InvalidValue),
}

/// The result of applying one command.
pub type Outcome = Result<Applied, DomainError>;

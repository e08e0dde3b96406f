//! What a client can ask of the cluster (`Request`), the answers (`Reply`), and why an answer
//! may be missing (`ServiceError`).
//!
//! These are validated domain values, not JSON: the HTTP layer builds them and maps them back.
//! They are also what a follower forwards to the leader over the transport (postcard), so a
//! follower relays the leader's answer unchanged.

use lockio_core::{
    ClientId, DomainError, FenceToken, Grant, Limit, LockDelay, LockValue, Mode, Resource, SessionId, Stats, Timeout,
    UnixMillis, Waiter,
};
use serde::{Deserialize, Serialize};

use crate::raft::NodeId;

/// A client request, already validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// `session_id` is minted by the node that took the HTTP request, so a retry (even on a
    /// new leader) asks for the same session instead of a second one.
    CreateSession {
        session_id: SessionId,
        client_id: ClientId,
        timeout: Timeout,
        lock_delay: LockDelay,
    },
    Keepalive {
        session_id: SessionId,
    },
    DeleteSession {
        session_id: SessionId,
    },
    /// A try-lock (`wait_ms` 0) or a wait of up to `wait_ms` in the resource's queue (at most
    /// `WaitSecs::MAX_SECS`; the HTTP layer validated it).
    Acquire {
        session_id: SessionId,
        resource: Resource,
        mode: Mode,
        limit: Option<Limit>,
        value: Option<LockValue>,
        wait_ms: u64,
    },
    Release {
        session_id: SessionId,
        resource: Resource,
        fence_token: FenceToken,
    },
    Cleanup,
    /// A node telling the cluster where its HTTP API is.
    AdvertiseHttp {
        node_id: NodeId,
        http_addr: String,
    },
    Read(Query),
}

impl Request {
    /// Whether running this request twice has the effect of running it once, so that it may
    /// be retried when the first attempt's outcome is unknown.
    pub fn is_idempotent(&self) -> bool {
        match self {
            Request::CreateSession { .. }
            | Request::Keepalive { .. }
            | Request::Acquire { .. }
            | Request::AdvertiseHttp { .. }
            | Request::Read(_) => true,
            Request::DeleteSession { .. } | Request::Release { .. } | Request::Cleanup => false,
        }
    }

    /// How long the request may wait in a queue on top of the request deadline.
    pub fn wait(&self) -> std::time::Duration {
        match self {
            Request::Acquire { wait_ms, .. } => std::time::Duration::from_millis(*wait_ms),
            _ => std::time::Duration::ZERO,
        }
    }

    /// The request again after `spent` of its wait went by (a retry on another leader): it asks
    /// only for what is left, so its queue entry's deadline does not move later. Once nothing
    /// is left it is a try-lock, which tells whether the grant came in time.
    pub fn wait_left(&self, spent: std::time::Duration) -> Request {
        let mut request = self.clone();
        if let Request::Acquire { wait_ms, .. } = &mut request {
            *wait_ms = wait_ms.saturating_sub(spent.as_millis() as u64);
        }
        request
    }
}

/// A read of the lock state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    Session(SessionId),
    SessionLocks(SessionId),
    Lock(Resource),
    Stats,
    /// Sessions, newest first, live and expired-but-kept.
    Sessions(Listing),
    /// Held locks, by resource name.
    Locks(Listing),
    /// Whether a token is a current holder's (`POST /fence/check`).
    FenceCheck {
        resource: Resource,
        fence_token: FenceToken,
    },
}

/// Which rows of a listing to return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// Keep rows whose session id, client id or resource contains this, ignoring case.
    pub filter: Option<String>,
    /// At most this many rows.
    pub limit: usize,
}

impl Listing {
    pub const DEFAULT_LIMIT: usize = 100;
    pub const MAX_LIMIT: usize = 1000;
}

/// A resource as listings show it: held (its holders, oldest first, with their clients) or
/// free under lock-delay, with the length of its queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockRow {
    pub resource: Resource,
    pub holders: Vec<(Grant, ClientId)>,
    /// Shared only: the most holders at once.
    pub limit: Option<Limit>,
    pub queue_length: u64,
    pub delayed_until: Option<UnixMillis>,
}

/// One resource in full: its holder, its queue (head first, with each waiter's client) and its
/// lock-delay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockView {
    pub resource: Resource,
    /// Oldest first: the exclusive holder, or the shared ones.
    pub holders: Vec<(Grant, ClientId)>,
    pub limit: Option<Limit>,
    pub waiters: Vec<(Waiter, ClientId)>,
    pub delayed_until: Option<UnixMillis>,
}

/// A session as a client sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionView {
    pub session_id: SessionId,
    pub client_id: ClientId,
    pub timeout: Timeout,
    pub created_at: UnixMillis,
    pub last_keepalive: UnixMillis,
    pub locks_held: Vec<Resource>,
    /// The resources whose queues it is in.
    pub waiting_for: Vec<Resource>,
    pub lock_delay: LockDelay,
    /// Set once the session expired.
    pub expired_at: Option<UnixMillis>,
    /// Milliseconds until the session expires without a keepalive (0 once expired).
    pub expires_in_ms: u64,
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    SessionCreated {
        session_id: SessionId,
        client_id: ClientId,
        timeout: Timeout,
    },
    KeptAlive {
        session_id: SessionId,
        timeout: Timeout,
        expires_in_ms: u64,
    },
    SessionDeleted {
        session_id: SessionId,
    },
    /// `fresh`: a new grant (201) rather than the one the session already had (200);
    /// `waited_ms`: how long it waited in the queue.
    Acquired {
        grant: Grant,
        fresh: bool,
        waited_ms: u64,
    },
    Released {
        grant: Grant,
    },
    CleanedUp {
        removed: u64,
    },
    Advertised,
    Session(SessionView),
    SessionLocks(Vec<Resource>),
    Lock(LockView),
    Stats(Stats),
    /// `total`: all rows; `matched`: rows the filter kept (before the limit).
    Sessions {
        total: usize,
        matched: usize,
        rows: Vec<SessionView>,
    },
    Locks {
        total: usize,
        matched: usize,
        rows: Vec<LockRow>,
    },
    FenceCheck {
        resource: Resource,
        fence_token: FenceToken,
        valid: bool,
        holders: Vec<(Grant, ClientId)>,
    },
}

/// Why a request got no reply from the lock state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum ServiceError {
    /// The lock state refused it (unknown session, lock held, ...).
    #[error("refused: {0:?}")]
    Domain(DomainError),
    /// A wait reached its deadline; `blocked_by` is what held the resource then (`None`: it
    /// had just become free).
    #[error("wait timed out")]
    WaitTimedOut { resource: Resource, blocked_by: Option<DomainError>, waited_ms: u64 },
    /// No leader could answer in time. `outcome_unknown`: the request may still take effect.
    #[error("unavailable: {reason}")]
    Unavailable { reason: String, outcome_unknown: bool },
    /// The node asked to act as leader is not the leader; the request was not applied.
    /// Only seen between nodes: the service retries on the new leader.
    #[error("not the leader")]
    NotLeader { leader: Option<NodeId> },
    /// A bug; the text stays in the node's log, never in an answer.
    #[error("internal error")]
    Internal,
}

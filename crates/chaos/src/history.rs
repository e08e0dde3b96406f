//! The recorded history of a run: every operation a client invoked, with when it was invoked
//! and when it completed (seconds since the run started, on the harness's monotonic clock), the
//! node it went to, and how it ended. The checker reads nothing else from the clients.
//!
//! An operation is one HTTP attempt: a client that retries records each try. `Ok` is an
//! acknowledged success, `Fail` a definite refusal (nothing applied), `Unknown` an attempt whose
//! effect cannot be known (a timeout, a lost connection, a 503 saying `"outcome": "unknown"`).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use lockio_core::{FenceToken, Resource, SessionId};
use serde::Serialize;

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    CreateSession,
    DeleteSession,
    Keepalive,
    Acquire,
    Release,
    /// A write to the fenced store, made while the client believed it held the resource
    /// exclusively.
    StoreWrite,
    /// A shared holder's look at the fenced store: read at the start and the end of its hold,
    /// failed if a write came in between (an exclusive grant overlapping the shared one) or if
    /// a later grant's token had already reached the store.
    StoreRead,
}

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::CreateSession => "create_session",
            OpKind::DeleteSession => "delete_session",
            OpKind::Keepalive => "keepalive",
            OpKind::Acquire => "acquire",
            OpKind::Release => "release",
            OpKind::StoreWrite => "store_write",
            OpKind::StoreRead => "store_read",
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Fail,
    Unknown,
}

/// One operation.
#[derive(Debug, Clone, Serialize)]
pub struct Op {
    /// Position in the history, in completion order.
    pub id: usize,
    /// Which workload client made it (`lock-3`, `keeper-3`, `churn-1`, `shared-0`, `probe`).
    pub client: String,
    /// The node it was sent to (1-based); 0 for the fenced store.
    pub node: u8,
    pub kind: OpKind,
    pub session: Option<SessionId>,
    pub resource: Option<Resource>,
    /// Acquire: the token granted. Release and store writes: the token sent.
    pub fence_token: Option<FenceToken>,
    /// Create: the session timeout asked for, in seconds.
    pub timeout_secs: Option<u64>,
    /// Acquire that waits in the resource's queue: the `wait` asked for, in seconds (`None` for
    /// a try-lock).
    pub wait_secs: Option<u64>,
    /// Acquire: asked for a shared grant (`"mode": "shared"`); otherwise exclusive.
    pub shared: bool,
    /// Acquire: the `limit` asked for (a semaphore's).
    pub limit: Option<u64>,
    /// Seconds since the run started.
    pub invoke: f64,
    pub complete: f64,
    pub outcome: Outcome,
    /// HTTP status, if an answer came.
    pub status: Option<u16>,
    /// The error `code` of the answer, or what went wrong on the way.
    pub error: Option<String>,
}

impl Op {
    pub fn ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// Acknowledged or possibly applied.
    pub fn may_have_applied(&self) -> bool {
        self.outcome != Outcome::Fail
    }
}

/// The shared recorder of a run. A std mutex: it is held only to push, never across an await.
#[derive(Clone)]
pub struct History {
    started: Instant,
    /// The Unix time (seconds) at `started`, to place server time stamps on the same axis.
    pub started_unix: f64,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl History {
    pub fn new() -> History {
        let started_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        History { started: Instant::now(), started_unix, ops: Arc::new(Mutex::new(Vec::new())) }
    }

    /// Seconds since the run started.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Records a completed operation, numbering it.
    pub fn record(&self, mut op: Op) {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        op.id = ops.len();
        ops.push(op);
    }

    /// The sessions whose creation was acknowledged so far.
    pub fn created_sessions(&self) -> Vec<SessionId> {
        let ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        ops.iter().filter(|o| o.kind == OpKind::CreateSession && o.ok()).filter_map(|o| o.session).collect()
    }

    /// Takes the whole history out, for the checks: call it once nothing records any more.
    pub fn take_ops(&self) -> Vec<Op> {
        std::mem::take(&mut *self.ops.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// An operation under construction: what it is, invoked now; `History::record` completes it.
pub fn op(client: &str, node: u8, kind: OpKind, invoke: f64) -> Op {
    Op {
        id: 0,
        client: client.to_string(),
        node,
        kind,
        session: None,
        resource: None,
        fence_token: None,
        timeout_secs: None,
        wait_secs: None,
        shared: false,
        limit: None,
        invoke,
        complete: invoke,
        outcome: Outcome::Unknown,
        status: None,
        error: None,
    }
}

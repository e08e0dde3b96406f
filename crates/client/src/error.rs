//! `Error`: everything a lock.io call can fail with, named for what the caller can do about it,
//! and the one place that turns the server's error JSON (http-api.md, "Errors") into it.

use std::fmt;
use std::time::{Duration, SystemTime};

use lockio_core::{ClientId, FenceToken, Mode, Resource, SessionId};
use serde_json::Value;

use crate::body::Fields;
use crate::time::format_time;
use crate::watch::EventId;

/// Why a call failed.
///
/// Every variant displays as one sentence a person can act on, e.g.
/// `orders is held by client billing-7 since 2026-11-26T23:38:25Z with fence token 41`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another session holds the lock: a try-lock found it held, or a wait's deadline passed
    /// first (`waited` is then how long the server kept the request in the queue; the waiter has
    /// left the queue). `queue_length` counts the sessions still waiting for it. Try again later.
    #[error("{}", lock_held(resource, holder_client_id, *.holder_fence_token, *.held_since, *.queue_length, *.waited))]
    LockHeld {
        resource: Resource,
        holder_client_id: ClientId,
        holder_fence_token: FenceToken,
        held_since: SystemTime,
        /// Sessions waiting for the lock (0 from a server without wait queues).
        queue_length: u64,
        /// `Some` when this was a wait that timed out.
        waited: Option<Duration>,
    },

    /// Nobody holds the lock, but its last holder's session expired and the session's
    /// lock-delay keeps it unavailable until `available_at` (a try-lock only; a wait simply
    /// goes on). Try again then, or wait for it.
    #[error("{resource} is unavailable until {} (lock-delay after its holder's session expired)", format_time(*.available_at))]
    LockDelayed { resource: Resource, available_at: SystemTime, queue_length: u64 },

    /// The lock's queue is full (10,000 waiters): this wait was not queued. Try again later.
    #[error("{resource} has {queue_length} sessions waiting, as many as its queue takes")]
    QueueFull { resource: Resource, queue_length: u64 },

    /// This session holds, or waits for, the resource in `mode`, and asked for it in the other
    /// mode: there is no upgrade or downgrade. Release it (or let the wait end) first.
    #[error("this session holds or waits for {resource} in {} mode; it cannot ask for it in the other mode", .mode.as_str())]
    ModeConflict { resource: Resource, mode: Mode },

    /// A shared request named another limit than the resource's current one (`None`: it has
    /// no limit), which holds while it has shared holders or waiters. Ask with that limit or
    /// none.
    #[error("{}", limit_mismatch(resource, *.limit))]
    LimitMismatch { resource: Resource, limit: Option<u64> },

    /// A wait reached its deadline at the very moment the lock became free (rare): not
    /// granted, but asking again may get it.
    #[error("the wait ended at its deadline just as the lock became free; asking again may get it")]
    WaitTimeout { waited: Option<Duration> },

    /// The session expired: the cluster released its locks. Stop the work they protected and
    /// open a new session.
    #[error("session {session_id} has expired and its locks were released")]
    SessionExpired { session_id: SessionId },

    /// No such session: never created, deleted, or cleaned up after it expired.
    #[error("session {session_id} does not exist")]
    SessionNotFound { session_id: SessionId },

    /// Release: this session does not hold the resource (any more).
    #[error("session {session_id} does not hold {resource}")]
    LockNotHeld { session_id: SessionId, resource: Resource },

    /// Release: this session holds the resource under another token than the one presented.
    #[error("session {session_id} holds {resource} under fence token {held}, not {presented}")]
    FenceTokenMismatch { session_id: SessionId, resource: Resource, held: FenceToken, presented: FenceToken },

    /// `Session::lock` on a resource a live `LockGuard` of the same session already holds:
    /// dropping either guard would release the lock under the other.
    #[error("this session already holds {resource} through another LockGuard")]
    AlreadyLocked { resource: Resource },

    /// A value was refused, by this client before sending or by the server (400); `field`
    /// names it (`client_id`, `timeout`, `lock_delay`, `resource`, `wait`, `fence_token`,
    /// `session_id`, `endpoints`).
    #[error("invalid {field}: {reason}")]
    InvalidInput { field: String, reason: String },

    /// No endpoint gave a usable answer within the retry budget: unreachable, or 503 because
    /// the cluster has no leader or no quorum. `tried` lists each endpoint with its last
    /// failure. When `outcome_unknown`, a write may still have taken effect (the client does
    /// not retry a session create in that case).
    #[error("{}", unavailable(tried, *.outcome_unknown))]
    Unavailable { tried: Vec<Attempt>, outcome_unknown: bool },

    /// A watch needs changes the node no longer holds: everything after `requested` (it keeps
    /// only its recent history, from `oldest` on, and a node restarted from a snapshot has
    /// nothing before it). Changes may have been missed: re-read the state you care about, then
    /// watch from `current` (a [`Watch`](crate::Watch) does so if called again).
    #[error("the changes after {requested} are no longer held (the oldest point to resume from is {oldest}); re-read the state, then watch from {current}")]
    Compacted { requested: EventId, oldest: EventId, current: EventId },

    /// The server answered something this client does not understand: a bug or a version
    /// mismatch between client and server.
    #[error("unexpected answer from {endpoint}: {detail}")]
    Unexpected { endpoint: String, detail: String },
}

/// One endpoint's last failure, as listed by [`Error::Unavailable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// `host:port`.
    pub endpoint: String,
    /// What went wrong there, e.g. `connection refused`.
    pub failure: String,
}

/// A value the core's constructors refused, before anything was sent.
impl From<lockio_core::InvalidValue> for Error {
    fn from(v: lockio_core::InvalidValue) -> Error {
        Error::InvalidInput { field: v.field, reason: v.reason }
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.endpoint, self.failure)
    }
}

fn lock_held(
    resource: &Resource,
    holder: &ClientId,
    token: FenceToken,
    since: SystemTime,
    queue_length: u64,
    waited: Option<Duration>,
) -> String {
    let mut text =
        format!("{resource} is held by client {holder} since {} with fence token {token}", format_time(since));
    if let Some(waited) = waited {
        text.push_str(&format!("; gave up after waiting {:.1}s", waited.as_secs_f64()));
    }
    match queue_length {
        0 => {}
        1 => text.push_str("; 1 session is waiting for it"),
        n => text.push_str(&format!("; {n} sessions are waiting for it")),
    }
    text
}

fn limit_mismatch(resource: &Resource, limit: Option<u64>) -> String {
    match limit {
        Some(n) => format!("{resource} is shared with a limit of {n}; ask with that limit or none"),
        None => format!("{resource} is shared with no limit; ask without one"),
    }
}

fn unavailable(tried: &[Attempt], outcome_unknown: bool) -> String {
    let mut text = if tried.is_empty() {
        "lock.io cluster unavailable: no endpoint could be tried in time".to_string()
    } else {
        let list = tried.iter().map(Attempt::to_string).collect::<Vec<_>>().join(", ");
        format!("lock.io cluster unavailable: tried {list}")
    };
    if outcome_unknown {
        text.push_str("; the operation may or may not have taken effect");
    }
    text
}

/// The error a server's error answer means. `endpoint` is who answered, for `Unexpected`.
pub(crate) fn from_answer(endpoint: &str, status: u16, body: &Value) -> Error {
    let code = body["code"].as_str().unwrap_or("");
    let message = body["error"].as_str().unwrap_or("");
    let f = Fields(body);
    let parsed = match code {
        "LOCK_HELD" => (|| {
            Ok::<_, String>(Error::LockHeld {
                resource: f.resource("resource")?,
                holder_client_id: f.client_id("holder_client_id")?,
                holder_fence_token: f.token("holder_fence_token")?,
                held_since: f.time("held_since")?,
                queue_length: f.count("queue_length")?,
                waited: f.opt_secs("waited")?,
            })
        })()
        .ok(),
        "LOCK_DELAYED" => (|| {
            Ok::<_, String>(Error::LockDelayed {
                resource: f.resource("resource")?,
                available_at: f.time("available_at")?,
                queue_length: f.count("queue_length")?,
            })
        })()
        .ok(),
        "QUEUE_FULL" => (|| {
            Ok::<_, String>(Error::QueueFull {
                resource: f.resource("resource")?,
                queue_length: f.u64("queue_length")?,
            })
        })()
        .ok(),
        "MODE_CONFLICT" => (|| {
            Ok::<_, String>(Error::ModeConflict {
                resource: f.resource("resource")?,
                mode: Mode::parse(f.str("mode")?).map_err(|e| e.to_string())?,
            })
        })()
        .ok(),
        "LIMIT_MISMATCH" => (|| {
            Ok::<_, String>(Error::LimitMismatch { resource: f.resource("resource")?, limit: f.opt_u64("limit")? })
        })()
        .ok(),
        "WAIT_TIMEOUT" => f.opt_secs("waited").ok().map(|waited| Error::WaitTimeout { waited }),
        "SESSION_EXPIRED" => f.session_id("session_id").ok().map(|session_id| Error::SessionExpired { session_id }),
        "SESSION_NOT_FOUND" => f.session_id("session_id").ok().map(|session_id| Error::SessionNotFound { session_id }),
        "LOCK_NOT_HELD" => (|| {
            Ok::<_, String>(Error::LockNotHeld {
                session_id: f.session_id("session_id")?,
                resource: f.resource("resource")?,
            })
        })()
        .ok(),
        "FENCE_TOKEN_MISMATCH" => (|| {
            Ok::<_, String>(Error::FenceTokenMismatch {
                session_id: f.session_id("session_id")?,
                resource: f.resource("resource")?,
                held: f.token("held_fence_token")?,
                presented: f.token("fence_token")?,
            })
        })()
        .ok(),
        "INVALID_REQUEST" => Some(Error::InvalidInput {
            field: body["field"].as_str().unwrap_or("request").to_string(),
            reason: message.to_string(),
        }),
        _ => None,
    };
    parsed.unwrap_or_else(|| {
        let detail = if code.is_empty() {
            format!("status {status} without a lock.io error body")
        } else {
            format!("{status} {code}: {message}")
        };
        Error::Unexpected { endpoint: endpoint.to_string(), detail }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const S: &str = "b8cfa9e0-7e3c-4546-a0e6-b4a6b9d6652d";

    /// Every error answer of http-api.md this client gives meaning to, and its one-line text.
    #[test]
    fn error_answers_map_to_errors() {
        let table = [
            (
                409,
                json!({"acquired": false, "code": "LOCK_HELD", "error": "…", "held_since": 1795736305.768,
                       "holder_client_id": "test-client-1", "holder_fence_token": 1, "resource": "resource-1"}),
                "resource-1 is held by client test-client-1 since 2026-11-26T23:38:25Z with fence token 1",
            ),
            (
                409,
                json!({"acquired": false, "code": "LOCK_HELD", "error": "…", "held_since": 1795736305.768, "holders_count": 1,
                       "holder_client_id": "billing-7", "holder_fence_token": 41, "resource": "orders", "queue_length": 2, "waited": 30.04}),
                "orders is held by client billing-7 since 2026-11-26T23:38:25Z with fence token 41; gave up after waiting 30.0s; 2 sessions are waiting for it",
            ),
            (
                409,
                json!({"acquired": false, "code": "LOCK_DELAYED", "error": "…", "available_at": 1795736305.5, "resource": "orders", "queue_length": 0}),
                "orders is unavailable until 2026-11-26T23:38:25Z (lock-delay after its holder's session expired)",
            ),
            (
                409,
                json!({"acquired": false, "code": "QUEUE_FULL", "error": "…", "resource": "orders", "queue_length": 10000}),
                "orders has 10000 sessions waiting, as many as its queue takes",
            ),
            (
                409,
                json!({"acquired": false, "code": "MODE_CONFLICT", "error": "…", "mode": "shared", "resource": "report", "session_id": S}),
                "this session holds or waits for report in shared mode; it cannot ask for it in the other mode",
            ),
            (
                409,
                json!({"acquired": false, "code": "LIMIT_MISMATCH", "error": "…", "limit": 3, "resource": "pool"}),
                "pool is shared with a limit of 3; ask with that limit or none",
            ),
            (
                409,
                json!({"acquired": false, "code": "LIMIT_MISMATCH", "error": "…", "limit": null, "resource": "pool"}),
                "pool is shared with no limit; ask without one",
            ),
            (
                409,
                json!({"acquired": false, "code": "WAIT_TIMEOUT", "error": "…", "waited": 30.0}),
                "the wait ended at its deadline just as the lock became free; asking again may get it",
            ),
            (410, json!({"acquired": false, "code": "SESSION_EXPIRED", "error": "…", "session_id": S}), "session b8cfa9e0-7e3c-4546-a0e6-b4a6b9d6652d has expired and its locks were released"),
            (410, json!({"code": "SESSION_EXPIRED", "error": "…", "session_id": S}), "session b8cfa9e0-7e3c-4546-a0e6-b4a6b9d6652d has expired and its locks were released"),
            (404, json!({"code": "SESSION_NOT_FOUND", "error": "…", "session_id": S}), "session b8cfa9e0-7e3c-4546-a0e6-b4a6b9d6652d does not exist"),
            (
                404,
                json!({"code": "LOCK_NOT_HELD", "error": "…", "released": false, "resource": "r", "session_id": S}),
                "session b8cfa9e0-7e3c-4546-a0e6-b4a6b9d6652d does not hold r",
            ),
            (
                409,
                json!({"code": "FENCE_TOKEN_MISMATCH", "error": "…", "fence_token": 2, "held_fence_token": 3, "resource": "r", "session_id": S}),
                "session b8cfa9e0-7e3c-4546-a0e6-b4a6b9d6652d holds r under fence token 3, not 2",
            ),
            (
                400,
                json!({"code": "INVALID_REQUEST", "error": "timeout must be an integer from 5 to 3600 (seconds)", "field": "timeout"}),
                "invalid timeout: timeout must be an integer from 5 to 3600 (seconds)",
            ),
            (500, json!({"code": "INTERNAL", "error": "Internal error"}), "unexpected answer from n:1: 500 INTERNAL: Internal error"),
            (404, json!({"code": "NOT_FOUND", "error": "No such route"}), "unexpected answer from n:1: 404 NOT_FOUND: No such route"),
            (502, Value::Null, "unexpected answer from n:1: status 502 without a lock.io error body"),
            // A known code with a body missing its fields is not trusted.
            (409, json!({"code": "LOCK_HELD", "error": "held"}), "unexpected answer from n:1: 409 LOCK_HELD: held"),
        ];
        for (status, body, text) in table {
            let error = from_answer("n:1", status, &body);
            assert_eq!(error.to_string(), text, "{body}");
        }
    }

    #[test]
    fn unavailable_names_every_endpoint_tried() {
        let tried = vec![
            Attempt { endpoint: "127.0.0.1:5000".into(), failure: "connection refused".into() },
            Attempt { endpoint: "127.0.0.1:5001".into(), failure: "503: no leader is known".into() },
        ];
        let e = Error::Unavailable { tried: tried.clone(), outcome_unknown: false };
        assert_eq!(
            e.to_string(),
            "lock.io cluster unavailable: tried 127.0.0.1:5000 (connection refused), 127.0.0.1:5001 (503: no leader is known)"
        );
        let e = Error::Unavailable { tried, outcome_unknown: true };
        assert!(e.to_string().ends_with("; the operation may or may not have taken effect"));
    }
}

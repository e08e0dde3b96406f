//! `ApiError`: every error answer of the HTTP API, in one place — status, stable `code`, a
//! sentence for people and the ids it is about, always as JSON.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lockio_core::DomainError;
use serde_json::{json, Map, Value};

use crate::service::ServiceError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Further fields of the body: `field`, `session_id`, `resource`, ...
    extra: Map<String, Value>,
    /// The `Retry-After` header, in seconds, if not the 503's default.
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), extra: Map::new(), retry_after: None }
    }

    /// Sets `Retry-After` to the whole seconds from now until `until` (at least 1).
    fn retry_after_until(mut self, until: lockio_core::UnixMillis) -> ApiError {
        let left = until.0.saturating_sub(crate::service::wall_now().0);
        self.retry_after = Some(left.div_ceil(1000).max(1));
        self
    }

    /// Adds a field to the body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// 400 `INVALID_REQUEST` about one request field.
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message).with("field", field)
    }

    pub fn session_not_found(session_id: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "SESSION_NOT_FOUND", format!("Session {session_id} does not exist"))
            .with("session_id", session_id)
    }

    pub fn route_not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "No such route; see the lock.io HTTP API")
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "This route does not take that method")
    }

    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("The request body is larger than {} KiB", limit / 1024),
        )
    }

    pub fn unsupported_media_type() -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "The request body must be JSON, sent with Content-Type: application/json",
        )
    }

    pub fn internal() -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "Internal error; the node's log has the details")
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        match e {
            ServiceError::Domain(d) => domain(d),
            ServiceError::WaitTimedOut { resource, blocked_by, waited_ms } => {
                let waited = waited_ms as f64 / 1000.0;
                match blocked_by {
                    Some(d) => domain(d).with("waited", waited),
                    None => ApiError::new(
                        StatusCode::CONFLICT,
                        "WAIT_TIMEOUT",
                        format!("The wait for {resource} reached its deadline just as it became free; asking again may get it"),
                    )
                    .with("acquired", false)
                    .with("resource", resource.as_str())
                    .with("waited", waited),
                }
            }
            ServiceError::Unavailable { reason, outcome_unknown } => unavailable(&reason, outcome_unknown),
            ServiceError::NotLeader { .. } => unavailable("no leader is known", false),
            ServiceError::Internal => ApiError::internal(),
        }
    }
}

fn unavailable(reason: &str, outcome_unknown: bool) -> ApiError {
    let (message, outcome) = if outcome_unknown {
        (
            format!(
                "The cluster could not confirm the operation in time ({reason}); it may or may not have been applied"
            ),
            "unknown",
        )
    } else {
        (format!("The cluster is unavailable ({reason}); the operation was not applied"), "not_applied")
    };
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message).with("outcome", outcome)
}

fn domain(e: DomainError) -> ApiError {
    match e {
        DomainError::SessionNotFound { session_id } => ApiError::session_not_found(&session_id.to_string()),
        DomainError::SessionExpired { session_id } => ApiError::new(
            StatusCode::GONE,
            "SESSION_EXPIRED",
            format!("Session {session_id} has expired and its locks were released"),
        )
        .with("session_id", session_id.to_string()),
        DomainError::LockHeld { resource, holder: _, holder_client, fence_token, since, holders_count, queue_length } => {
            ApiError::new(
                StatusCode::CONFLICT,
                "LOCK_HELD",
                format!(
                    "Resource {resource} is held by client {holder_client} since {} with fence token {fence_token}",
                    since.as_secs_f64()
                ),
            )
            .with("acquired", false)
            .with("resource", resource.as_str())
            .with("holder_client_id", holder_client.as_str())
            .with("holder_fence_token", fence_token.0)
            .with("held_since", since.as_secs_f64())
            .with("holders_count", holders_count)
            .with("queue_length", queue_length)
        }
        DomainError::LockDelayed { resource, until, queue_length } => ApiError::new(
            StatusCode::CONFLICT,
            "LOCK_DELAYED",
            format!(
                "Resource {resource} is free but unavailable until {} (lock-delay: its holder's session expired)",
                until.as_secs_f64()
            ),
        )
        .with("acquired", false)
        .with("resource", resource.as_str())
        .with("available_at", until.as_secs_f64())
        .with("queue_length", queue_length)
        .retry_after_until(until),
        DomainError::QueueFull { resource, queue_length } => ApiError::new(
            StatusCode::CONFLICT,
            "QUEUE_FULL",
            format!("Resource {resource} already has {queue_length} sessions waiting, the most it queues"),
        )
        .with("acquired", false)
        .with("resource", resource.as_str())
        .with("queue_length", queue_length),
        DomainError::ModeConflict { session_id, resource, held } => ApiError::new(
            StatusCode::CONFLICT,
            "MODE_CONFLICT",
            format!(
                "Session {session_id} holds or waits for resource {resource} in mode {}; it cannot ask in the other mode",
                held.as_str()
            ),
        )
        .with("acquired", false)
        .with("session_id", session_id.to_string())
        .with("resource", resource.as_str())
        .with("mode", held.as_str()),
        DomainError::LimitMismatch { resource, limit } => ApiError::new(
            StatusCode::CONFLICT,
            "LIMIT_MISMATCH",
            match limit {
                Some(l) => format!("Resource {resource} is shared with a limit of {}; ask with that limit or none", l.get()),
                None => format!("Resource {resource} is shared with no limit; ask without one"),
            },
        )
        .with("acquired", false)
        .with("resource", resource.as_str())
        .with("limit", limit.map(|l| l.get())),
        DomainError::NotWaiting { session_id, resource } => ApiError::new(
            StatusCode::CONFLICT,
            "NOT_WAITING",
            format!("Session {session_id} is not waiting for resource {resource}"),
        )
        .with("session_id", session_id.to_string())
        .with("resource", resource.as_str()),
        DomainError::LockNotHeld { session_id, resource } => ApiError::new(
            StatusCode::NOT_FOUND,
            "LOCK_NOT_HELD",
            format!("Session {session_id} does not hold resource {resource}"),
        )
        .with("released", false)
        .with("session_id", session_id.to_string())
        .with("resource", resource.as_str()),
        DomainError::FenceTokenMismatch { session_id, resource, held, presented } => ApiError::new(
            StatusCode::CONFLICT,
            "FENCE_TOKEN_MISMATCH",
            format!("Session {session_id} holds resource {resource} under fence token {held}, not {presented}"),
        )
        .with("released", false)
        .with("session_id", session_id.to_string())
        .with("resource", resource.as_str())
        .with("fence_token", presented.0)
        .with("held_fence_token", held.0),
        DomainError::Invalid(v) => ApiError::invalid(&v.field, format!("{} {}", v.field, v.reason)),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("error".into(), json!(self.message));
        body.insert("code".into(), json!(self.code));
        body.extend(self.extra);
        let mut response = (self.status, Json(Value::Object(body))).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        } else if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

//! Reading a request: body, path parameters and query, turned into domain values or a 400/413/415.
//!
//! The JSON type rules of http-api.md ("Validation") are here: an integer field takes only a
//! JSON integer (not `1.0`, `true` or `"1"`). The value rules (ranges, lengths) belong to the
//! core's constructors, which this module calls.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use lockio_core::{
    ClientId, FenceToken, InvalidValue, Limit, LockDelay, LockValue, Mode, Resource, SessionId, Timeout, WaitSecs,
};
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::service::Listing;

/// The largest request body the API takes.
pub const MAX_BODY: usize = 64 * 1024;

impl From<InvalidValue> for ApiError {
    fn from(v: InvalidValue) -> ApiError {
        ApiError::invalid(&v.field, format!("{} {}", v.field, v.reason))
    }
}

/// A request body, read up to `MAX_BODY`, with its content type.
pub struct Body {
    bytes: Bytes,
    is_json: bool,
}

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Body, ApiError> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        let bytes =
            axum::body::to_bytes(req.into_body(), MAX_BODY).await.map_err(|_| ApiError::payload_too_large(MAX_BODY))?;
        Ok(Body { bytes, is_json })
    }
}

impl Body {
    /// The body as a JSON object. `required`: a missing body is an error rather than `None`.
    pub fn object(&self, required: bool) -> Result<Option<Map<String, Value>>, ApiError> {
        if self.bytes.iter().all(u8::is_ascii_whitespace) && !required {
            return Ok(None);
        }
        if !self.is_json {
            return Err(ApiError::unsupported_media_type());
        }
        match serde_json::from_slice::<Value>(&self.bytes) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            Ok(_) => Err(ApiError::invalid("body", "The request body must be a JSON object")),
            Err(e) if self.bytes.iter().all(u8::is_ascii_whitespace) => {
                Err(ApiError::invalid("body", format!("The request body must be a JSON object ({e})")))
            }
            Err(e) => Err(ApiError::invalid("body", format!("Malformed JSON: {e}"))),
        }
    }
}

/// Path parameters, percent-decoded.
pub struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Params, ApiError> {
        match Path::<HashMap<String, String>>::from_request_parts(parts, state).await {
            Ok(Path(map)) => Ok(Params(map)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let field = match e.kind() {
                    axum::extract::path::ErrorKind::InvalidUtf8InPathParam { key } => key.clone(),
                    _ => "path".to_string(),
                };
                Err(ApiError::invalid(&field, format!("{field} must be valid UTF-8 after percent-decoding")))
            }
            Err(_) => Err(ApiError::invalid("path", "Unreadable path parameters")),
        }
    }
}

impl Params {
    /// The session id; one that cannot be a session id names no session (404).
    pub fn session_id(&self) -> Result<SessionId, ApiError> {
        let raw = self.0.get("session_id").map(String::as_str).unwrap_or_default();
        SessionId::parse(raw).ok_or_else(|| ApiError::session_not_found(raw))
    }

    pub fn resource(&self) -> Result<Resource, ApiError> {
        Ok(Resource::new(self.0.get("resource").map(String::as_str).unwrap_or_default())?)
    }
}

/// The query string's parameters.
pub struct QueryParams(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<QueryParams, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|_| ApiError::invalid("query", "Malformed query string"))?;
        Ok(QueryParams(pairs.into_iter().collect()))
    }
}

impl QueryParams {
    /// `?stale=true`: answer from this node's state without asking the leader.
    pub fn stale(&self) -> Result<bool, ApiError> {
        match self.0.get("stale").map(String::as_str) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") | Some("") => Ok(true),
            Some(_) => Err(ApiError::invalid("stale", "stale must be true or false")),
        }
    }

    /// `?filter=TEXT&limit=N` of a listing.
    pub fn listing(&self) -> Result<Listing, ApiError> {
        let filter = self.0.get("filter").map(|f| f.trim().to_string()).filter(|f| !f.is_empty());
        let limit = match self.0.get("limit") {
            None => Listing::DEFAULT_LIMIT,
            Some(raw) => {
                raw.parse::<usize>().ok().filter(|n| (1..=Listing::MAX_LIMIT).contains(n)).ok_or_else(|| {
                    ApiError::invalid("limit", format!("limit must be an integer from 1 to {}", Listing::MAX_LIMIT))
                })?
            }
        };
        Ok(Listing { filter, limit })
    }

    /// A query parameter, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `?fence_token=N`, if given.
    pub fn fence_token(&self) -> Result<Option<FenceToken>, ApiError> {
        let Some(raw) = self.0.get("fence_token") else { return Ok(None) };
        let bad = || ApiError::invalid("fence_token", "fence_token must be an integer of at least 1");
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = raw.parse().map_err(|_| bad())?;
        Ok(Some(FenceToken::new(n).map_err(|_| bad())?))
    }
}

/// A JSON integer field, as u64; `Ok(None)` when absent.
fn integer(body: &Map<String, Value>, field: &str, rule: &str) -> Result<Option<u64>, ApiError> {
    match body.get(field) {
        None => Ok(None),
        Some(Value::Number(n)) if n.is_u64() => Ok(n.as_u64()),
        Some(_) => Err(ApiError::invalid(field, format!("{field} {rule}"))),
    }
}

/// `client_id`: a JSON string, required.
pub fn client_id(body: &Map<String, Value>) -> Result<ClientId, ApiError> {
    match body.get("client_id") {
        Some(Value::String(s)) => Ok(ClientId::new(s)?),
        None => Err(ApiError::invalid("client_id", "client_id is required")),
        Some(_) => Err(ApiError::invalid("client_id", "client_id must be a string")),
    }
}

/// `timeout`: a JSON integer of seconds, 5 to 3600; 60 when absent.
pub fn timeout(body: &Map<String, Value>) -> Result<Timeout, ApiError> {
    let rule = format!("must be an integer from {} to {} (seconds)", Timeout::MIN_SECS, Timeout::MAX_SECS);
    match integer(body, "timeout", &rule)? {
        None => Ok(Timeout::DEFAULT),
        Some(secs) => Ok(Timeout::from_secs(secs)?),
    }
}

/// `fence_token` in a body: a JSON integer of at least 1; `None` when absent.
pub fn fence_token(body: &Map<String, Value>) -> Result<Option<FenceToken>, ApiError> {
    match integer(body, "fence_token", "must be an integer of at least 1")? {
        None => Ok(None),
        Some(n) => Ok(Some(FenceToken::new(n)?)),
    }
}

/// `lock_delay`: a JSON integer of seconds, 0 to 60; 0 when absent.
pub fn lock_delay(body: &Map<String, Value>) -> Result<LockDelay, ApiError> {
    let rule = format!("must be an integer from 0 to {} (seconds)", LockDelay::MAX_SECS);
    match integer(body, "lock_delay", &rule)? {
        None => Ok(LockDelay::NONE),
        Some(secs) => Ok(LockDelay::from_secs(secs)?),
    }
}

/// What an acquire asks for besides the resource (coordination.md, "Acquire, extended").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireOptions {
    pub wait: WaitSecs,
    pub mode: Mode,
    /// Shared only: the most holders at once.
    pub limit: Option<Limit>,
    pub value: Option<LockValue>,
}

/// A whole number from a query parameter, or the error `bad` makes.
fn digits(t: &str, bad: impl Fn() -> ApiError) -> Result<u64, ApiError> {
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    t.parse().map_err(|_| bad())
}

/// One option of an acquire, from the JSON body (typed) and the query (text). Given in both, it
/// must be the same value.
fn option<T: PartialEq>(
    body: Option<&Map<String, Value>>,
    query: &QueryParams,
    field: &str,
    from_json: impl Fn(&Value) -> Result<T, ApiError>,
    from_text: impl Fn(&str) -> Result<T, ApiError>,
) -> Result<Option<T>, ApiError> {
    let in_body = body.and_then(|b| b.get(field)).map(from_json).transpose()?;
    let in_query = query.get(field).map(from_text).transpose()?;
    match (in_body, in_query) {
        (Some(b), Some(q)) if b != q => {
            Err(ApiError::invalid(field, format!("{field} differs between the body and the query")))
        }
        (Some(v), _) | (None, Some(v)) => Ok(Some(v)),
        (None, None) => Ok(None),
    }
}

/// `wait`, `mode`, `limit` and `value` of an acquire, from its optional JSON body and its query
/// string.
pub fn acquire_options(body: Option<&Map<String, Value>>, query: &QueryParams) -> Result<AcquireOptions, ApiError> {
    let wait_rule = format!("wait must be an integer from 0 to {} (seconds)", WaitSecs::MAX_SECS);
    let wait_bad = || ApiError::invalid("wait", wait_rule.clone());
    let wait = option(
        body,
        query,
        "wait",
        |v| v.as_u64().filter(|_| v.is_u64()).ok_or_else(wait_bad).and_then(|n| Ok(WaitSecs::from_secs(n)?)),
        |t| Ok(WaitSecs::from_secs(digits(t, wait_bad)?)?),
    )?;
    let mode_bad = || ApiError::invalid("mode", "mode must be \"exclusive\" or \"shared\"");
    let mode = option(
        body,
        query,
        "mode",
        |v| v.as_str().ok_or_else(mode_bad).and_then(|m| Ok(Mode::parse(m)?)),
        |t| Ok(Mode::parse(t)?),
    )?;
    let limit_rule = format!("limit must be an integer from 1 to {}", Limit::MAX);
    let limit_bad = || ApiError::invalid("limit", limit_rule.clone());
    let limit = option(
        body,
        query,
        "limit",
        |v| v.as_u64().filter(|_| v.is_u64()).ok_or_else(limit_bad).and_then(|n| Ok(Limit::new(n)?)),
        |t| Ok(Limit::new(digits(t, limit_bad)?)?),
    )?;
    let value_bad = || ApiError::invalid("value", "value must be a string");
    let value = option(
        body,
        query,
        "value",
        |v| v.as_str().ok_or_else(value_bad).and_then(|s| Ok(LockValue::new(s)?)),
        |t| Ok(LockValue::new(t)?),
    )?;
    let mode = mode.unwrap_or_default();
    if limit.is_some() && mode != Mode::Shared {
        return Err(ApiError::invalid("limit", "limit is only for mode \"shared\" (a semaphore)"));
    }
    Ok(AcquireOptions { wait: wait.unwrap_or(WaitSecs::NONE), mode, limit, value })
}

/// `POST /fence/check`'s body: `resource` and `fence_token`, both required.
pub fn fence_check(body: &Map<String, Value>) -> Result<(Resource, FenceToken), ApiError> {
    let resource = match body.get("resource") {
        Some(Value::String(s)) => Resource::new(s)?,
        None => return Err(ApiError::invalid("resource", "resource is required")),
        Some(_) => return Err(ApiError::invalid("resource", "resource must be a string")),
    };
    let token = fence_token(body)?.ok_or_else(|| ApiError::invalid("fence_token", "fence_token is required"))?;
    Ok((resource, token))
}

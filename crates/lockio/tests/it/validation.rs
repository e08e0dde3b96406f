//! Bad input, table-driven (http-api.md, "Validation" and "Errors"): every row is answered with
//! the documented status and `code` (and `field` where the contract says the body names it),
//! as a JSON body with an `error` sentence, never a 5xx; and none of them changes any state.

use serde_json::{json, Value};

use crate::support::http::raw;
use crate::support::{call, create_session, Cluster, Resp};

/// What a row sends as its body.
enum Body {
    /// No body and no content type.
    Empty,
    /// This JSON, as `application/json`.
    Json(Value),
    /// Exactly these bytes, with this content type (if any).
    Raw(Option<&'static str>, Vec<u8>),
}

fn json_bytes(text: &str) -> Body {
    Body::Raw(Some("application/json"), text.as_bytes().to_vec())
}

struct Row {
    what: String,
    method: &'static str,
    path: String,
    body: Body,
    status: u16,
    code: &'static str,
    /// The `field` the body must name, for a 400.
    field: Option<&'static str>,
    /// Further `key: value` pairs the body must have (the ids it is about).
    also: Vec<(&'static str, Value)>,
}

fn row(
    what: impl Into<String>,
    method: &'static str,
    path: impl Into<String>,
    body: Body,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Row {
    Row { what: what.into(), method, path: path.into(), body, status, code, field, also: Vec::new() }
}

impl Row {
    fn with(mut self, key: &'static str, value: impl Into<Value>) -> Row {
        self.also.push((key, value.into()));
        self
    }
}

const INVALID: &str = "INVALID_REQUEST";
const MEDIA: &str = "UNSUPPORTED_MEDIA_TYPE";
const TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
const NO_SESSION: &str = "SESSION_NOT_FOUND";
const NO_ROUTE: &str = "NOT_FOUND";
const NO_METHOD: &str = "METHOD_NOT_ALLOWED";

/// One byte over the 64 KiB limit, otherwise a fine JSON object.
fn oversized(key: &str, value: Value) -> Body {
    let mut bytes = format!(r#"{{"{key}": {value}, "pad": ""#).into_bytes();
    bytes.resize(64 * 1024 + 1 - 2, b'x');
    bytes.extend_from_slice(b"\"}");
    Body::Raw(Some("application/json"), bytes)
}

/// Everything wrong with one answer, if anything.
fn check(row: &Row, r: &Resp) -> Vec<String> {
    let mut wrong = Vec::new();
    if r.status >= 500 {
        wrong.push(format!("a client mistake answered {}", r.status));
    }
    if r.status != row.status {
        wrong.push(format!("status {} (want {})", r.status, row.status));
    }
    if !r.content_type().starts_with("application/json") {
        wrong.push(format!("content type {:?}", r.content_type()));
    }
    if !r.body.is_object() {
        wrong.push("body is not a JSON object".into());
    }
    if r.body["error"].as_str().is_none_or(|e| e.trim().is_empty()) {
        wrong.push("no `error` sentence".into());
    }
    if r.body["code"] != row.code {
        wrong.push(format!("code {} (want {:?})", r.body["code"], row.code));
    }
    if let Some(field) = row.field {
        if r.body["field"] != field {
            wrong.push(format!("field {} (want {field:?})", r.body["field"]));
        }
    }
    for (key, value) in &row.also {
        if &r.body[*key] != value {
            wrong.push(format!("{key} {} (want {value})", r.body[*key]));
        }
    }
    // coordination.md: every error of acquire says `"acquired": false`, of release
    // `"released": false`, of a session delete `"deleted": false`.
    if let Some(flag) = outcome_flag(row) {
        if r.body[flag] != false {
            wrong.push(format!("{flag} {} (want false)", r.body[flag]));
        }
    }
    wrong
}

/// The `false` flag an error of this row's route carries, if the route has one.
fn outcome_flag(row: &Row) -> Option<&'static str> {
    if row.code == NO_ROUTE || row.code == NO_METHOD || !row.path.starts_with("/sessions/") {
        return None;
    }
    match (row.method, row.path.contains("/locks/")) {
        ("POST", true) => Some("acquired"),
        ("DELETE", true) => Some("released"),
        ("DELETE", false) if !row.path.ends_with("/locks") => Some("deleted"),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_with_the_documented_error_and_changes_nothing() {
    let cluster = Cluster::start(1).await;
    let base = cluster.base(1);
    // One live session holding one lock: the target of the acquire and release rows.
    let live = create_session(&base, "validation", 3600).await;
    let r = call("POST", &format!("{base}/sessions/{live}/locks/held"), None).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let t = r.body["fence_token"].as_u64().unwrap();
    let stats_before = call("GET", &format!("{base}/admin/stats"), None).await;
    assert_eq!(stats_before.status, 200);

    let s = "/sessions";
    let held = format!("/sessions/{live}/locks/held");
    let locks = format!("/sessions/{live}/locks");
    let cid = |v: Value| Body::Json(json!({"client_id": v}));
    let timeout = |v: Value| Body::Json(json!({"client_id": "c", "timeout": v}));
    let token = |v: Value| Body::Json(json!({"fence_token": v}));
    let (cf, tf, ff, bf, rf, sf) =
        (Some("client_id"), Some("timeout"), Some("fence_token"), Some("body"), Some("resource"), Some("stale"));
    let not_uuid = "not-a-uuid".to_string();
    let random = uuid::Uuid::new_v4().to_string();
    let nil = uuid::Uuid::nil().to_string();
    let a256 = "a".repeat(256);
    let e128 = "%C3%A9".repeat(128); // 128 characters, 256 bytes

    let mut rows = vec![
        // POST /sessions: client_id.
        row("client_id missing", "POST", s, Body::Json(json!({"timeout": 60})), 400, INVALID, cf),
        row("empty object", "POST", s, Body::Json(json!({})), 400, INVALID, cf),
        row("client_id a number", "POST", s, cid(json!(5)), 400, INVALID, cf),
        row("client_id null", "POST", s, cid(json!(null)), 400, INVALID, cf),
        row("client_id true", "POST", s, cid(json!(true)), 400, INVALID, cf),
        row("client_id an array", "POST", s, cid(json!(["x"])), 400, INVALID, cf),
        row("client_id an object", "POST", s, cid(json!({"id": "x"})), 400, INVALID, cf),
        row("client_id empty", "POST", s, cid(json!("")), 400, INVALID, cf),
        row("client_id spaces", "POST", s, cid(json!("   ")), 400, INVALID, cf),
        row("client_id whitespace", "POST", s, cid(json!("\t\n \r")), 400, INVALID, cf),
        row("client_id 256 chars", "POST", s, cid(json!("a".repeat(256))), 400, INVALID, cf),
        row("client_id 256 two-byte chars", "POST", s, cid(json!("é".repeat(256))), 400, INVALID, cf),
        row(
            "client_id 256 chars after trim",
            "POST",
            s,
            cid(json!(format!(" {} ", "a".repeat(256)))),
            400,
            INVALID,
            cf,
        ),
        // POST /sessions: timeout.
        row("timeout 4", "POST", s, timeout(json!(4)), 400, INVALID, tf),
        row("timeout 3601", "POST", s, timeout(json!(3601)), 400, INVALID, tf),
        row("timeout 0", "POST", s, timeout(json!(0)), 400, INVALID, tf),
        row("timeout -5", "POST", s, timeout(json!(-5)), 400, INVALID, tf),
        row("timeout 5.0", "POST", s, timeout(json!(5.0)), 400, INVALID, tf),
        row("timeout 60.5", "POST", s, timeout(json!(60.5)), 400, INVALID, tf),
        row("timeout true", "POST", s, timeout(json!(true)), 400, INVALID, tf),
        row("timeout \"60\"", "POST", s, timeout(json!("60")), 400, INVALID, tf),
        row("timeout null", "POST", s, timeout(json!(null)), 400, INVALID, tf),
        row("timeout []", "POST", s, timeout(json!([60])), 400, INVALID, tf),
        row("timeout 1e3", "POST", s, json_bytes(r#"{"client_id": "c", "timeout": 1e3}"#), 400, INVALID, tf),
        row("timeout -0", "POST", s, json_bytes(r#"{"client_id": "c", "timeout": -0}"#), 400, INVALID, tf),
        row("timeout 2^32+5", "POST", s, timeout(json!(4_294_967_301u64)), 400, INVALID, tf),
        row("timeout u64::MAX", "POST", s, timeout(json!(u64::MAX)), 400, INVALID, tf),
        row(
            "timeout huge",
            "POST",
            s,
            json_bytes(r#"{"client_id": "c", "timeout": 99999999999999999999999}"#),
            400,
            INVALID,
            tf,
        ),
        // POST /sessions: the body itself.
        row("body []", "POST", s, json_bytes("[]"), 400, INVALID, bf),
        row("body a string", "POST", s, json_bytes(r#""x""#), 400, INVALID, bf),
        row("body a number", "POST", s, json_bytes("1"), 400, INVALID, bf),
        row("body null", "POST", s, json_bytes("null"), 400, INVALID, bf),
        row("malformed JSON (cut short)", "POST", s, json_bytes(r#"{"client_id": "x""#), 400, INVALID, bf),
        row("malformed JSON (bare key)", "POST", s, json_bytes(r#"{client_id: "x"}"#), 400, INVALID, bf),
        row("malformed JSON (trailing data)", "POST", s, json_bytes(r#"{"client_id": "x"} {}"#), 400, INVALID, bf),
        row(
            "invalid UTF-8 in JSON",
            "POST",
            s,
            Body::Raw(Some("application/json"), b"{\"client_id\": \"\xff\"}".to_vec()),
            400,
            INVALID,
            bf,
        ),
        row("empty body, JSON content type", "POST", s, json_bytes(""), 400, INVALID, bf),
        row("blank body, JSON content type", "POST", s, json_bytes("  \n"), 400, INVALID, bf),
        // POST /sessions: not JSON.
        row(
            "text/plain",
            "POST",
            s,
            Body::Raw(Some("text/plain"), br#"{"client_id": "x"}"#.to_vec()),
            415,
            MEDIA,
            None,
        ),
        row("no content type", "POST", s, Body::Raw(None, br#"{"client_id": "x"}"#.to_vec()), 415, MEDIA, None),
        row(
            "form encoded",
            "POST",
            s,
            Body::Raw(Some("application/x-www-form-urlencoded"), b"client_id=x".to_vec()),
            415,
            MEDIA,
            None,
        ),
        row("text/json", "POST", s, Body::Raw(Some("text/json"), br#"{"client_id": "x"}"#.to_vec()), 415, MEDIA, None),
        row("no body at all", "POST", s, Body::Empty, 415, MEDIA, None),
        row("oversized create", "POST", s, oversized("client_id", json!("x")), 413, TOO_LARGE, None),
        // Release: fence_token.
        row("fence_token missing", "DELETE", held.clone(), Body::Empty, 400, INVALID, ff),
        row("fence_token missing from {}", "DELETE", held.clone(), Body::Json(json!({})), 400, INVALID, ff),
        row("fence_token 0", "DELETE", held.clone(), token(json!(0)), 400, INVALID, ff),
        row("fence_token -1", "DELETE", held.clone(), token(json!(-1)), 400, INVALID, ff),
        row("fence_token 1.0", "DELETE", held.clone(), token(json!(1.0)), 400, INVALID, ff),
        row("fence_token true", "DELETE", held.clone(), token(json!(true)), 400, INVALID, ff),
        row("fence_token \"1\"", "DELETE", held.clone(), token(json!("1")), 400, INVALID, ff),
        row("fence_token null", "DELETE", held.clone(), token(json!(null)), 400, INVALID, ff),
        row("fence_token huge", "DELETE", held.clone(), json_bytes(r#"{"fence_token": 1e30}"#), 400, INVALID, ff),
        row("?fence_token=abc", "DELETE", format!("{held}?fence_token=abc"), Body::Empty, 400, INVALID, ff),
        row("?fence_token=1.0", "DELETE", format!("{held}?fence_token=1.0"), Body::Empty, 400, INVALID, ff),
        row("?fence_token=0", "DELETE", format!("{held}?fence_token=0"), Body::Empty, 400, INVALID, ff),
        row("?fence_token=-1", "DELETE", format!("{held}?fence_token=-1"), Body::Empty, 400, INVALID, ff),
        row("?fence_token= (empty)", "DELETE", format!("{held}?fence_token="), Body::Empty, 400, INVALID, ff),
        row(
            "?fence_token=2^64",
            "DELETE",
            format!("{held}?fence_token=18446744073709551616"),
            Body::Empty,
            400,
            INVALID,
            ff,
        ),
        row(
            "body and query disagree",
            "DELETE",
            format!("{held}?fence_token={}", t + 1),
            token(json!(t)),
            400,
            INVALID,
            ff,
        ),
        row("release body []", "DELETE", held.clone(), json_bytes("[]"), 400, INVALID, bf),
        row("release body malformed", "DELETE", held.clone(), json_bytes(r#"{"fence_token": "#), 400, INVALID, bf),
        row(
            "release body text/plain",
            "DELETE",
            held.clone(),
            Body::Raw(Some("text/plain"), format!(r#"{{"fence_token": {t}}}"#).into_bytes()),
            415,
            MEDIA,
            None,
        ),
        row("oversized release", "DELETE", held.clone(), oversized("fence_token", json!(t)), 413, TOO_LARGE, None),
        // Release: well-formed, but not this session's grant.
        row("fence_token u64::MAX", "DELETE", held.clone(), token(json!(u64::MAX)), 409, "FENCE_TOKEN_MISMATCH", None)
            .with("resource", "held"),
        row(
            "wrong fence_token",
            "DELETE",
            format!("{held}?fence_token={}", t + 1),
            Body::Empty,
            409,
            "FENCE_TOKEN_MISMATCH",
            None,
        )
        .with("resource", "held")
        .with("session_id", live.clone()),
        row(
            "release a free resource",
            "DELETE",
            format!("{locks}/free?fence_token=1"),
            Body::Empty,
            404,
            "LOCK_NOT_HELD",
            None,
        )
        .with("resource", "free")
        .with("session_id", live.clone()),
        // Acquire options (coordination.md, "Acquire, extended").
        row("wait -1", "POST", held.clone(), Body::Json(json!({"wait": -1})), 400, INVALID, Some("wait")),
        row("wait 301", "POST", held.clone(), Body::Json(json!({"wait": 301})), 400, INVALID, Some("wait")),
        row("wait 1.5", "POST", held.clone(), Body::Json(json!({"wait": 1.5})), 400, INVALID, Some("wait")),
        row("wait \"5\"", "POST", held.clone(), Body::Json(json!({"wait": "5"})), 400, INVALID, Some("wait")),
        row("wait true", "POST", held.clone(), Body::Json(json!({"wait": true})), 400, INVALID, Some("wait")),
        row("wait null", "POST", held.clone(), Body::Json(json!({"wait": null})), 400, INVALID, Some("wait")),
        row("wait u64::MAX", "POST", held.clone(), Body::Json(json!({"wait": u64::MAX})), 400, INVALID, Some("wait")),
        row("?wait=abc", "POST", format!("{held}?wait=abc"), Body::Empty, 400, INVALID, Some("wait")),
        row("?wait=301", "POST", format!("{held}?wait=301"), Body::Empty, 400, INVALID, Some("wait")),
        row("?wait=-1", "POST", format!("{held}?wait=-1"), Body::Empty, 400, INVALID, Some("wait")),
        row("?wait=1.5", "POST", format!("{held}?wait=1.5"), Body::Empty, 400, INVALID, Some("wait")),
        row("?wait= (empty)", "POST", format!("{held}?wait="), Body::Empty, 400, INVALID, Some("wait")),
        row(
            "wait: body and query disagree",
            "POST",
            format!("{held}?wait=2"),
            Body::Json(json!({"wait": 3})),
            400,
            INVALID,
            Some("wait"),
        ),
        row("mode \"writer\"", "POST", held.clone(), Body::Json(json!({"mode": "writer"})), 400, INVALID, Some("mode")),
        row("mode 1", "POST", held.clone(), Body::Json(json!({"mode": 1})), 400, INVALID, Some("mode")),
        row(
            "mode \"EXCLUSIVE\"",
            "POST",
            held.clone(),
            Body::Json(json!({"mode": "EXCLUSIVE"})),
            400,
            INVALID,
            Some("mode"),
        ),
        row("?mode=nope", "POST", format!("{held}?mode=nope"), Body::Empty, 400, INVALID, Some("mode")),
        row("acquire body []", "POST", held.clone(), json_bytes("[]"), 400, INVALID, bf),
        row("acquire body malformed", "POST", held.clone(), json_bytes(r#"{"wait": "#), 400, INVALID, bf),
        row(
            "acquire body text/plain",
            "POST",
            held.clone(),
            Body::Raw(Some("text/plain"), br#"{"wait": 1}"#.to_vec()),
            415,
            MEDIA,
            None,
        ),
        row("oversized acquire", "POST", held.clone(), oversized("wait", json!(1)), 413, TOO_LARGE, None),
        // Lock-delay of a new session.
        row(
            "lock_delay 61",
            "POST",
            s,
            Body::Json(json!({"client_id": "c", "lock_delay": 61})),
            400,
            INVALID,
            Some("lock_delay"),
        ),
        row(
            "lock_delay -1",
            "POST",
            s,
            Body::Json(json!({"client_id": "c", "lock_delay": -1})),
            400,
            INVALID,
            Some("lock_delay"),
        ),
        row(
            "lock_delay 1.5",
            "POST",
            s,
            Body::Json(json!({"client_id": "c", "lock_delay": 1.5})),
            400,
            INVALID,
            Some("lock_delay"),
        ),
        row(
            "lock_delay \"5\"",
            "POST",
            s,
            Body::Json(json!({"client_id": "c", "lock_delay": "5"})),
            400,
            INVALID,
            Some("lock_delay"),
        ),
        row(
            "lock_delay null",
            "POST",
            s,
            Body::Json(json!({"client_id": "c", "lock_delay": null})),
            400,
            INVALID,
            Some("lock_delay"),
        ),
        // Resource names.
        row("resource 256 bytes", "POST", format!("{locks}/{a256}"), Body::Empty, 400, INVALID, rf),
        row("resource 128 chars, 256 bytes", "POST", format!("{locks}/{e128}"), Body::Empty, 400, INVALID, rf),
        row("resource leading space", "POST", format!("{locks}/%20x"), Body::Empty, 400, INVALID, rf),
        row("resource trailing space", "POST", format!("{locks}/x%20"), Body::Empty, 400, INVALID, rf),
        row("resource leading tab", "POST", format!("{locks}/%09x"), Body::Empty, 400, INVALID, rf),
        row("resource BEL", "POST", format!("{locks}/a%07b"), Body::Empty, 400, INVALID, rf),
        row("resource newline", "POST", format!("{locks}/a%0Ab"), Body::Empty, 400, INVALID, rf),
        row("resource NUL", "POST", format!("{locks}/a%00b"), Body::Empty, 400, INVALID, rf),
        row("resource DEL", "POST", format!("{locks}/a%7Fb"), Body::Empty, 400, INVALID, rf),
        row("resource U+0085 (C1 control)", "POST", format!("{locks}/a%C2%85b"), Body::Empty, 400, INVALID, rf),
        row("resource invalid UTF-8", "POST", format!("{locks}/%FF"), Body::Empty, 400, INVALID, rf),
        row("resource truncated UTF-8", "POST", format!("{locks}/a%C3"), Body::Empty, 400, INVALID, rf),
        row("resource empty (acquire)", "POST", format!("{locks}/"), Body::Empty, 400, INVALID, rf),
        row("resource empty (release)", "DELETE", format!("{locks}/?fence_token={t}"), Body::Empty, 400, INVALID, rf),
        row(
            "release resource leading space",
            "DELETE",
            format!("{locks}/%20held?fence_token={t}"),
            Body::Empty,
            400,
            INVALID,
            rf,
        ),
        row(
            "release resource invalid UTF-8",
            "DELETE",
            format!("{locks}/%FF?fence_token={t}"),
            Body::Empty,
            400,
            INVALID,
            rf,
        ),
        row(
            "release resource 256 bytes",
            "DELETE",
            format!("{locks}/{a256}?fence_token={t}"),
            Body::Empty,
            400,
            INVALID,
            rf,
        ),
        row("admin lock empty", "GET", "/admin/locks/", Body::Empty, 400, INVALID, rf),
        row("admin lock invalid UTF-8", "GET", "/admin/locks/%FF", Body::Empty, 400, INVALID, rf),
        row("admin lock trailing space", "GET", "/admin/locks/held%20", Body::Empty, 400, INVALID, rf),
        row("admin lock control char", "GET", "/admin/locks/a%0Db", Body::Empty, 400, INVALID, rf),
        row("admin lock 256 bytes", "GET", format!("/admin/locks/{a256}"), Body::Empty, 400, INVALID, rf),
        // ?stale= takes true or false only.
        row("stats ?stale=maybe", "GET", "/admin/stats?stale=maybe", Body::Empty, 400, INVALID, sf),
        row("session ?stale=maybe", "GET", format!("/sessions/{live}?stale=maybe"), Body::Empty, 400, INVALID, sf),
        row("session locks ?stale=yes", "GET", format!("{locks}?stale=yes"), Body::Empty, 400, INVALID, sf),
        row("admin lock ?stale=2", "GET", "/admin/locks/held?stale=2", Body::Empty, 400, INVALID, sf),
        // Other bodies that are too large.
        row(
            "oversized keepalive",
            "POST",
            format!("/sessions/{live}/keepalive"),
            oversized("x", json!(1)),
            413,
            TOO_LARGE,
            None,
        ),
        row("oversized cleanup", "POST", "/admin/cleanup", oversized("x", json!(1)), 413, TOO_LARGE, None),
        // Wrong methods on known routes.
        row("PUT /sessions", "PUT", s, Body::Empty, 405, NO_METHOD, None),
        row("GET /sessions", "GET", s, Body::Empty, 405, NO_METHOD, None),
        row("DELETE /sessions", "DELETE", s, Body::Empty, 405, NO_METHOD, None),
        row("PATCH session", "PATCH", format!("/sessions/{live}"), Body::Empty, 405, NO_METHOD, None),
        row("POST session", "POST", format!("/sessions/{live}"), Body::Empty, 405, NO_METHOD, None),
        row("GET keepalive", "GET", format!("/sessions/{live}/keepalive"), Body::Empty, 405, NO_METHOD, None),
        row("DELETE session locks", "DELETE", locks.clone(), Body::Empty, 405, NO_METHOD, None),
        row("PUT lock", "PUT", held.clone(), Body::Empty, 405, NO_METHOD, None),
        row("GET lock of a session", "GET", held.clone(), Body::Empty, 405, NO_METHOD, None),
        row("GET /admin/cleanup", "GET", "/admin/cleanup", Body::Empty, 405, NO_METHOD, None),
        row("POST /admin/stats", "POST", "/admin/stats", Body::Empty, 405, NO_METHOD, None),
        row("DELETE admin lock", "DELETE", "/admin/locks/held", Body::Empty, 405, NO_METHOD, None),
        row("POST /health", "POST", "/health", Body::Empty, 405, NO_METHOD, None),
        row("DELETE /cluster/status", "DELETE", "/cluster/status", Body::Empty, 405, NO_METHOD, None),
        row("POST /", "POST", "/", Body::Empty, 405, NO_METHOD, None),
        // Unknown routes.
        row("GET /nope", "GET", "/nope", Body::Empty, 404, NO_ROUTE, None),
        row("GET /health/", "GET", "/health/", Body::Empty, 404, NO_ROUTE, None),
        row("POST /sessions/", "POST", "/sessions/", Body::Json(json!({"client_id": "x"})), 404, NO_ROUTE, None),
        row("session sub-route", "GET", format!("/sessions/{live}/bogus"), Body::Empty, 404, NO_ROUTE, None),
        row("resource with a slash", "POST", format!("{locks}/a/b"), Body::Empty, 404, NO_ROUTE, None),
        row("GET /admin", "GET", "/admin", Body::Empty, 404, NO_ROUTE, None),
        row("admin lock with a slash", "GET", "/admin/locks/a/b", Body::Empty, 404, NO_ROUTE, None),
        row("versioned path", "POST", "/v1/sessions", Body::Json(json!({"client_id": "x"})), 404, NO_ROUTE, None),
    ];
    // Unknown sessions on every session route: 404 naming the id.
    for (kind, id) in [("not a UUID", &not_uuid), ("random UUID", &random), ("nil UUID", &nil)] {
        let session_routes = [
            ("GET", format!("/sessions/{id}"), Body::Empty),
            ("DELETE", format!("/sessions/{id}"), Body::Empty),
            ("POST", format!("/sessions/{id}/keepalive"), Body::Empty),
            ("GET", format!("/sessions/{id}/locks"), Body::Empty),
            ("POST", format!("/sessions/{id}/locks/held"), Body::Empty),
            ("DELETE", format!("/sessions/{id}/locks/held"), token(json!(t))),
            ("DELETE", format!("/sessions/{id}/locks/held?fence_token={t}"), Body::Empty),
        ];
        for (method, path, body) in session_routes {
            let what = format!("{kind}: {method} {path}");
            rows.push(row(what, method, path, body, 404, NO_SESSION, None).with("session_id", id.clone()));
        }
    }

    let mut failures = Vec::new();
    for row in &rows {
        let url = format!("{base}{}", row.path);
        let r = match &row.body {
            Body::Empty => raw(row.method, &url, None, Vec::new()).await,
            Body::Json(v) => call(row.method, &url, Some(v.clone())).await,
            Body::Raw(ct, bytes) => raw(row.method, &url, *ct, bytes.clone()).await,
        };
        let wrong = check(row, &r);
        if !wrong.is_empty() {
            let shown: String = r.text.chars().take(300).collect();
            failures.push(format!(
                "{} ({} {}): {}\n    got: {shown}",
                row.what,
                row.method,
                row.path,
                wrong.join("; ")
            ));
        }
    }
    assert!(rows.len() >= 45, "{} rows", rows.len());
    assert!(
        failures.is_empty(),
        "{} of {} rows answered wrongly:\n  {}",
        failures.len(),
        rows.len(),
        failures.join("\n  ")
    );

    // Nothing of that changed any state.
    let stats_after = call("GET", &format!("{base}/admin/stats"), None).await;
    assert_eq!(stats_after.text, stats_before.text, "bad input changed the state");
    let lock = call("GET", &format!("{base}/admin/locks/held"), None).await;
    assert_eq!(
        (lock.body["session_id"].clone(), lock.body["fence_token"].clone()),
        (json!(live), json!(t)),
        "{}",
        lock.text
    );
    let session = call("GET", &format!("{base}/sessions/{live}"), None).await;
    assert_eq!(session.body["locks_held"], json!(["held"]), "{}", session.text);
}

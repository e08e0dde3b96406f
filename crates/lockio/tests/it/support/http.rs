//! A small HTTP client for tests: every answer as status, headers and JSON body.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

/// One answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as JSON; `Value::Null` if it was not JSON (tests assert on that too).
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn content_type(&self) -> &str {
        self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// `body[key]` as a string.
    pub fn str(&self, key: &str) -> String {
        self.body[key].as_str().unwrap_or_else(|| panic!("no string {key:?} in {}", self.text)).to_string()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).no_proxy().build().unwrap()
}

/// Sends a request; `body` is sent as JSON with `Content-Type: application/json`.
pub async fn call(method: &str, url: &str, body: Option<Value>) -> Resp {
    match body {
        Some(b) => raw(method, url, Some("application/json"), serde_json::to_vec(&b).unwrap()).await,
        None => raw(method, url, None, Vec::new()).await,
    }
}

/// Sends a request with exactly this content type (if any) and body bytes.
pub async fn raw(method: &str, url: &str, content_type: Option<&str>, body: Vec<u8>) -> Resp {
    let mut req = client().request(Method::from_bytes(method.as_bytes()).unwrap(), url);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if !body.is_empty() {
        req = req.body(body);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, headers, body, text }
}

/// Sends a request, or `None` if the node could not be reached at all.
pub async fn try_call(method: &str, url: &str) -> Option<Resp> {
    let req = client().request(Method::from_bytes(method.as_bytes()).unwrap(), url).timeout(Duration::from_secs(2));
    let resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.ok()?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Some(Resp { status, headers, body, text })
}

/// Creates a session through `base` and returns its id.
pub async fn create_session(base: &str, client_id: &str, timeout: u64) -> String {
    let r = call("POST", &format!("{base}/sessions"), Some(json!({"client_id": client_id, "timeout": timeout}))).await;
    assert_eq!(r.status, 201, "create session: {}", r.text);
    r.str("session_id")
}

/// `POST /sessions/{session}/locks/{resource}` through `base`.
pub async fn acquire(base: &str, session: &str, resource: &str) -> Resp {
    call("POST", &format!("{base}/sessions/{session}/locks/{resource}"), None).await
}

/// `GET /cluster/status` of the node at `base`, or `None` if it does not answer.
pub async fn status(base: &str) -> Option<Value> {
    try_call("GET", &format!("{base}/cluster/status")).await.map(|r| r.body)
}

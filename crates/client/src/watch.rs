//! `Watch`: following the cluster's changes (`GET /events`), optionally only those about
//! resources with a given prefix. Each change has an [`EventId`], its place in the replicated
//! log, the same on every node; after a broken connection the watch reconnects (to the same or
//! another endpoint) and resumes after the last id it delivered, so nothing is repeated or
//! skipped. When the node no longer holds the events the watch needs, the caller gets
//! [`Error::Compacted`] and decides what to do.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lockio_core::{ClientId, FenceToken, Resource, SessionId};
use reqwest::Method;
use serde_json::Value;
use tokio::time::Instant;

use crate::body::Fields;
use crate::error::Attempt;
use crate::retry::{backoff, Safety};
use crate::transport::{Request, Transport};
use crate::Error;

/// A stream that sends nothing (not even its keep-alive comments, every 15 s) for this long is
/// taken for dead and reconnected.
const SILENCE: Duration = Duration::from_secs(35);

/// The place of a change in the replicated log: the entry's `index` and the change's `position`
/// among that entry's changes. Ordered as the log is; the same on every node and across
/// restarts. Written `INDEX.POSITION`; a bare `INDEX` (as a server may give for `current` or
/// `oldest`) stands for the end of that entry.
///
/// ```
/// use lockio_client::EventId;
///
/// let id: EventId = "120.2".parse().unwrap();
/// assert!(id < "121.0".parse().unwrap() && id < "120".parse().unwrap());
/// assert_eq!(id.to_string(), "120.2");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub index: u64,
    /// `u32::MAX` for "the end of the entry".
    pub position: u32,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.position == u32::MAX {
            write!(f, "{}", self.index)
        } else {
            write!(f, "{}.{}", self.index, self.position)
        }
    }
}

impl std::str::FromStr for EventId {
    type Err = Error;

    fn from_str(raw: &str) -> Result<EventId, Error> {
        let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        let parsed = match raw.split_once('.') {
            Some((i, p)) if digits(i) && digits(p) => i.parse().ok().zip(p.parse().ok()),
            None if digits(raw) => raw.parse().ok().map(|i| (i, u32::MAX)),
            _ => None,
        };
        parsed.map(|(index, position)| EventId { index, position }).ok_or_else(|| Error::InvalidInput {
            field: "after".into(),
            reason: format!("`{raw}` is not an event id (INDEX.POSITION)"),
        })
    }
}

/// One change, as the cluster applied it.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    pub id: EventId,
    /// `session_created`, `session_deleted`, `session_expired`, `lock_acquired`,
    /// `lock_released`, `lock_waiting`, `lock_wait_ended` (http-api.md, `GET /events`).
    pub kind: String,
    /// The leader's time stamp of the change.
    pub at: SystemTime,
    /// Lock events: the resource.
    pub resource: Option<Resource>,
    pub session_id: Option<SessionId>,
    pub client_id: Option<ClientId>,
    /// Lock acquired or released: the grant's token.
    pub fence_token: Option<FenceToken>,
    /// A session's end: the grants it released.
    pub released: Vec<(Resource, FenceToken)>,
    /// The event's JSON as the server sent it, with every field of its kind.
    pub data: Value,
}

/// A live `GET /events` response and what was read of it.
struct Open {
    response: reqwest::Response,
    buf: Vec<u8>,
    endpoint: usize,
}

/// A stream of the cluster's changes; see [`Client::watch`](crate::Client::watch).
pub struct Watch {
    transport: Arc<Transport>,
    prefix: Option<String>,
    /// Everything up to here was delivered (or did not match): where a reconnect resumes.
    resume: Option<EventId>,
    open: Option<Open>,
    /// The endpoint to try first on the next connect.
    next_endpoint: Option<usize>,
    ready: VecDeque<Result<WatchEvent, Error>>,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").field("prefix", &self.prefix).field("resume", &self.resume).finish()
    }
}

impl Watch {
    pub(crate) fn new(transport: Arc<Transport>, prefix: Option<String>, after: Option<EventId>) -> Watch {
        Watch { transport, prefix, resume: after, open: None, next_endpoint: None, ready: VecDeque::new() }
    }

    /// Where the watch stands: it has delivered everything up to this id (the next connection
    /// asks for what follows). `None` before anything was read from a watch started without
    /// `after`.
    pub fn position(&self) -> Option<EventId> {
        self.resume
    }

    /// The endpoint (`host:port`) the watch is connected to now, if it is.
    pub fn endpoint(&self) -> Option<&str> {
        self.open.as_ref().map(|o| self.transport.endpoints.get(o.endpoint).authority.as_str())
    }

    /// The next change. Reconnects as needed (to the endpoints in turn, within the client's
    /// retry budget, then [`Error::Unavailable`]; calling again tries again) and resumes after
    /// the last change delivered.
    ///
    /// [`Error::Compacted`]: the node no longer holds the changes after the last one delivered
    /// (it was restarted from a snapshot, or this watch fell too far behind). Re-read the state
    /// you care about; the next call continues from the error's `current`.
    pub async fn next(&mut self) -> Result<WatchEvent, Error> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return item;
            }
            let Some(open) = self.open.as_mut() else {
                self.open = Some(self.connect().await?);
                continue;
            };
            match tokio::time::timeout(SILENCE, open.response.chunk()).await {
                Ok(Ok(Some(bytes))) => {
                    open.buf.extend_from_slice(&bytes);
                    for frame in take_frames(&mut open.buf) {
                        self.take(frame);
                    }
                }
                // Ended, broken or silent: another endpoint first (ids are the same on every
                // node), then the others.
                _ => {
                    let endpoint = open.endpoint;
                    tracing::debug!(endpoint = %self.transport.endpoints.get(endpoint).authority, "event stream ended");
                    self.open = None;
                    self.next_endpoint = Some((endpoint + 1) % self.transport.endpoints.all().len());
                }
            }
        }
    }

    /// Handles one event of the stream.
    fn take(&mut self, data: Value) {
        let id = |key: &str| data[key].as_str().and_then(|s| s.parse::<EventId>().ok());
        match data["type"].as_str() {
            Some("compacted") => {
                let (Some(requested), Some(oldest), Some(current)) = (id("requested"), id("oldest"), id("current"))
                else {
                    return self.unexpected(&data);
                };
                self.resume = Some(current);
                self.open = None;
                self.ready.push_back(Err(Error::Compacted { requested, oldest, current }));
            }
            Some("progress") => {
                if let Some(current) = id("current") {
                    self.resume = self.resume.max(Some(current));
                }
            }
            _ => {
                // Leader changes and reachability are this node's own view: not changes.
                let Some(event_id) = id("id") else { return };
                if self.resume.is_some_and(|r| event_id <= r) {
                    return;
                }
                match event(event_id, &data) {
                    Ok(event) => {
                        self.resume = Some(event_id);
                        self.ready.push_back(Ok(event));
                    }
                    Err(_) => self.unexpected(&data),
                }
            }
        }
    }

    fn unexpected(&mut self, data: &Value) {
        let endpoint = self.endpoint().unwrap_or("?").to_string();
        self.ready.push_back(Err(Error::Unexpected { endpoint, detail: format!("event {data}") }));
    }

    /// Opens the stream at the endpoints in turn until one answers.
    async fn connect(&mut self) -> Result<Open, Error> {
        let mut request = Request::new(Method::GET, &["events"], Safety::Repeatable);
        if let Some(prefix) = &self.prefix {
            request.query.push(("resource", prefix.clone()));
        }
        let deadline = Instant::now() + self.transport.settings.retry_budget;
        let mut tried: Vec<Attempt> = Vec::new();
        for round in 0.. {
            let mut order = self.transport.endpoints.round();
            if let Some(first) = self.next_endpoint.take() {
                order.retain(|i| *i != first);
                order.insert(0, first);
            }
            for index in order {
                let endpoint = self.transport.endpoints.get(index);
                match self.transport.open_stream(endpoint, &request, self.resume.map(|r| r.to_string())).await {
                    Ok(Ok(response)) => return Ok(Open { response, buf: Vec::new(), endpoint: index }),
                    Ok(Err(refused)) => return Err(refused),
                    Err(failure) => {
                        self.transport.endpoints.failed(index);
                        let line = Attempt { endpoint: endpoint.authority.clone(), failure: failure.describe().into() };
                        tried.retain(|a| a.endpoint != line.endpoint);
                        tried.push(line);
                    }
                }
            }
            let pause = backoff(round, None);
            if Instant::now() + pause >= deadline {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        Err(Error::Unavailable { tried, outcome_unknown: false })
    }
}

/// A change's JSON as a `WatchEvent`.
fn event(id: EventId, data: &Value) -> Result<WatchEvent, String> {
    let f = Fields(data);
    let opt = |key: &str| !data[key].is_null();
    Ok(WatchEvent {
        id,
        kind: f.str("type")?.to_string(),
        at: f.time("at")?,
        resource: if opt("resource") { Some(f.resource("resource")?) } else { None },
        session_id: if opt("session_id") { Some(f.session_id("session_id")?) } else { None },
        client_id: if opt("client_id") { Some(f.client_id("client_id")?) } else { None },
        fence_token: if opt("fence_token") { Some(f.token("fence_token")?) } else { None },
        released: f.list("released", |g| Ok((g.resource("resource")?, g.token("fence_token")?)))?,
        data: data.clone(),
    })
}

/// Splits the complete server-sent events off the front of `buf` and returns their `data` as
/// JSON (comments, and events without JSON data, are left out).
pub(crate) fn take_frames(buf: &mut Vec<u8>) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let end = buf.windows(2).position(|w| w == b"\n\n").map(|at| (at, 2));
        let end_crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|at| (at, 4));
        let Some((at, len)) = [end, end_crlf].into_iter().flatten().min() else { break };
        let frame: Vec<u8> = buf.drain(..at + len).collect();
        let text = String::from_utf8_lossy(&frame);
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d).trim_end_matches('\r'))
            .collect();
        if let Ok(v) = serde_json::from_str(&data.join("\n")) {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_parse_order_and_print() {
        let id = |s: &str| s.parse::<EventId>().unwrap();
        assert!(id("9.5") < id("9") && id("9") < id("10.0") && id("10.0") < id("10.1"));
        for s in ["0", "12.0", "12.3"] {
            assert_eq!(id(s).to_string(), s);
        }
        for bad in ["", "a", "1.", "1.2.3", "-1", "1.4294967296", "1-2"] {
            let e = bad.parse::<EventId>().unwrap_err();
            assert!(e.to_string().starts_with("invalid after: "), "{e}");
        }
    }

    #[test]
    fn frames_are_split_across_chunks_and_comments_skipped() {
        let mut buf = b"id: 4.0\ndata: {\"type\":\"lock_rel".to_vec();
        assert!(take_frames(&mut buf).is_empty());
        buf.extend_from_slice(b"eased\",\"id\":\"4.0\"}\n\n:\n\ndata: {\"type\":\"progress\",\"current\":\"9\"}\n\n");
        let frames = take_frames(&mut buf);
        assert!(buf.is_empty());
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0]["type"], "lock_released");
        assert_eq!(frames[1]["current"], "9");
    }

    #[test]
    fn a_change_reads_into_a_watch_event() {
        let data = serde_json::json!({"type": "session_expired", "id": "7.1", "index": 7, "position": 1, "at": 1795736305.5,
            "session_id": "b8cfa9e0-7e3c-4546-a0e6-b4a6b9d6652d", "client_id": "c",
            "released": [{"resource": "orders", "fence_token": 4}]});
        let e = event("7.1".parse().unwrap(), &data).unwrap();
        assert_eq!(e.kind, "session_expired");
        assert_eq!(e.released, vec![(Resource::new("orders").unwrap(), FenceToken(4))]);
        assert_eq!(e.resource, None);
    }
}

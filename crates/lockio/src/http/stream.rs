//! `GET /events`: the node's event log as server-sent events. A new subscriber first gets the
//! recent history, then live events; `after=ID` or `Last-Event-ID` resumes after an event (its
//! id is its place in the log, the same on every node); `resource=PREFIX` keeps the events about
//! those resources. A subscriber that needs events the node no longer holds gets one
//! `compacted` event and the stream ends; a quiet one gets `progress` now and then.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde_json::json;
use tokio::time::Instant;

use super::error::ApiError;
use super::input::QueryParams;
use super::reply;
use crate::events::{Compacted, Event, EventId, EventLog, Subscription};
use crate::service::Service;

/// How many events one read of the log takes.
const BATCH: usize = 256;

/// The longest `resource` prefix: a resource name's limit.
const MAX_PREFIX: usize = 255;

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn sse(event: &Event) -> SseEvent {
    let mut body = reply::event(event);
    match event.id {
        Some(id) => {
            body["id"] = json!(id.to_string());
            SseEvent::default().id(id.to_string()).data(body.to_string())
        }
        None => SseEvent::default().data(body.to_string()),
    }
}

fn compacted(c: &Compacted) -> SseEvent {
    let body = json!({
        "type": "compacted",
        "requested": c.requested.to_string(),
        "oldest": c.oldest.to_string(),
        "current": c.current.to_string(),
        "at": now(),
    });
    SseEvent::default().data(body.to_string())
}

fn progress(current: EventId) -> SseEvent {
    SseEvent::default().data(json!({"type": "progress", "current": current.to_string(), "at": now()}).to_string())
}

fn bad_id(field: &str) -> ApiError {
    ApiError::invalid(field, format!("{field} must be an event id: INDEX.POSITION (an event's id) or INDEX"))
}

/// Where to resume: `Last-Event-ID` (what a reconnecting browser sends, newer than the `after`
/// of the URL it reconnects to; empty is none), else `after`; `None` for the recent history.
fn resume_after(headers: &HeaderMap, query: &QueryParams) -> Result<Option<EventId>, ApiError> {
    const HEADER: &str = "Last-Event-ID";
    if let Some(header) = headers.get(HEADER).filter(|h| !h.is_empty()) {
        let raw = header.to_str().map_err(|_| bad_id(HEADER))?;
        return EventId::parse(raw.trim()).map(Some).ok_or_else(|| bad_id(HEADER));
    }
    query.get("after").map(|raw| EventId::parse(raw.trim()).ok_or_else(|| bad_id("after"))).transpose()
}

fn prefix(query: &QueryParams) -> Result<Option<String>, ApiError> {
    let Some(raw) = query.get("resource") else { return Ok(None) };
    let problem = if raw.is_empty() {
        "resource must not be empty (leave it out for every event)".to_string()
    } else if raw.len() > MAX_PREFIX {
        format!("resource must be at most {MAX_PREFIX} bytes")
    } else if raw.chars().any(char::is_control) {
        "resource must not contain control characters".to_string()
    } else {
        return Ok(Some(raw.to_string()));
    };
    Err(ApiError::invalid("resource", problem))
}

/// One stream's state between two items.
struct Follow {
    log: EventLog,
    sub: Subscription,
    ready: VecDeque<SseEvent>,
    /// When the stream last sent something, for `progress`.
    last_sent: Instant,
    /// A `compacted` was queued: end after it.
    ending: bool,
}

impl Follow {
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Follow)> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some((Ok(event), self));
            }
            if self.ending {
                return None;
            }
            match self.log.read(&mut self.sub, BATCH) {
                Err(gone) => {
                    self.ready.push_back(compacted(&gone));
                    self.ending = true;
                }
                Ok(events) if !events.is_empty() => {
                    self.ready.extend(events.iter().map(sse));
                    self.last_sent = Instant::now();
                }
                Ok(_) => {
                    let due = self.last_sent + self.log.progress_interval();
                    tokio::select! {
                        () = self.sub.changed() => {}
                        () = tokio::time::sleep_until(due) => {
                            self.ready.push_back(progress(self.sub.seen()));
                            self.last_sent = Instant::now();
                        }
                    }
                }
            }
        }
    }
}

pub async fn events(
    State(service): State<Service>,
    headers: HeaderMap,
    query: Result<QueryParams, ApiError>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let query = query?;
    let after = resume_after(&headers, &query)?;
    let prefix = prefix(&query)?;
    let log = service.events().clone();
    let sub = log.subscribe(after, prefix);
    let follow = Follow { log, sub, ready: VecDeque::new(), last_sent: Instant::now(), ending: false };
    Ok(Sse::new(stream::unfold(follow, Follow::next)).keep_alive(KeepAlive::default()))
}

//! `GET /events`: the node's event log as server-sent events. A new subscriber first gets the
//! recent history, then live events; `Last-Event-ID` (sent by a reconnecting browser) skips
//! what it already has.

use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use super::reply;
use crate::events::Event;
use crate::service::Service;

/// Identifies this process's run, so that ids from before a restart are not taken for ours.
fn boot() -> u64 {
    static BOOT: OnceLock<u64> = OnceLock::new();
    *BOOT.get_or_init(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}

fn sse(event: &Event) -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default().id(format!("{}-{}", boot(), event.id)).data(reply::event(event).to_string()))
}

/// The sequence number after which a reconnecting subscriber wants events.
fn resume_after(headers: &HeaderMap) -> u64 {
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    match last.split_once('-') {
        Some((b, seq)) if b.parse() == Ok(boot()) => seq.parse().unwrap_or(0),
        _ => 0,
    }
}

pub async fn events(
    State(service): State<Service>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (history, live) = service.events().subscribe(resume_after(&headers));
    let live = stream::unfold(live, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(event) => return Some((event, rx)),
                // A subscriber too slow to keep up skips ahead rather than stalling the node.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let all = stream::iter(history).chain(live).map(|e| sse(&e));
    Sse::new(all).keep_alive(KeepAlive::default())
}

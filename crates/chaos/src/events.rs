//! Collecting the service's replicated history from `GET /events` on every node.
//!
//! Every node applies the same log, so an applied event (one with a log `index`) seen from any
//! node is the same replicated fact. The collector follows all three nodes from the start of
//! the run and reconnects whenever a stream ends (a node was killed and restarted), so together
//! the streams cover every applied change even though each node keeps only its last 10,000
//! events for a new subscriber (a stream that falls further behind gets `compacted` and is
//! closed, never silently skips), and even though a restarted node re-emits what it replays.
//! Events are deduplicated by (index, position), which is also their SSE id
//! (`INDEX.POSITION`): one entry carries a batch of commands, and `position` orders its changes
//! the same way on every node. `compacted` and `progress` are not changes and are ignored. The
//! same key reported differently by two nodes is a disagreement between replicas, kept for the
//! checker.
//!
//! Observing only: nothing the collector sees steers the workload or the nemesis.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lockio_core::{FenceToken, Resource, SessionId};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cluster::{Endpoint, NodeId};

/// The kind of an applied change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    SessionCreated,
    SessionDeleted,
    SessionExpired,
    LockAcquired,
    LockReleased,
    /// A session joined a resource's queue, or a retry moved its deadline.
    LockWaiting,
    /// A waiter left the queue without the lock.
    LockWaitEnded,
}

/// Why a waiter left the queue without the lock (`lock_wait_ended`'s `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitEnd {
    Timeout,
    Cancelled,
    SessionEnded,
}

impl WaitEnd {
    fn parse(reason: &str) -> Option<WaitEnd> {
        match reason {
            "timeout" => Some(WaitEnd::Timeout),
            "cancelled" => Some(WaitEnd::Cancelled),
            "session_ended" => Some(WaitEnd::SessionEnded),
            _ => None,
        }
    }
}

/// One applied change of the replicated history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    /// The Raft log index of the entry that made the change.
    pub index: u64,
    /// The change's place among those of its entry.
    pub position: u32,
    pub change: Change,
    /// The leader's time stamp of the command, Unix seconds.
    pub at: f64,
    pub session: Option<SessionId>,
    pub resource: Option<Resource>,
    pub fence_token: Option<FenceToken>,
    /// Session created: its timeout in seconds.
    pub timeout_secs: Option<u64>,
    /// Session deleted or expired: the grants released with it.
    pub released: Vec<(Resource, FenceToken)>,
    /// Lock acquired: handed to the head of the resource's queue (`"queued": true`), in the
    /// entry that freed the lock.
    pub queued: bool,
    /// Lock acquired or waiting: the mode (`"exclusive"` or `"shared"`).
    pub mode: Option<String>,
    /// Lock acquired: the value stored with the grant.
    pub value: Option<String>,
    /// Lock waiting: a shared waiter's `limit` (a semaphore's).
    pub limit: Option<u64>,
    /// Lock acquired or wait ended: how long the session waited, seconds.
    pub waited: Option<f64>,
    /// Lock waiting: when the wait began and its deadline, leader time (Unix seconds).
    pub since: Option<f64>,
    pub deadline: Option<f64>,
    /// Lock waiting: the waiter's 1-based place in the queue (the event's `queue_length`).
    pub place: Option<u64>,
    /// Wait ended: why.
    pub reason: Option<WaitEnd>,
}

/// Deduplication key and order: an entry can make several changes, so the index alone is not
/// enough.
pub type Key = (u64, u32);

impl Applied {
    pub fn key(&self) -> Key {
        (self.index, self.position)
    }
}

/// A node-local event (leader changes, reachability), for the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub node: NodeId,
    /// Unix seconds, the node's clock.
    pub at: f64,
    pub what: String,
}

/// What an event's JSON is.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // short-lived: parsed, then moved into `Seen`
pub enum Parsed {
    Applied(Applied),
    Note { at: f64, what: String },
}

fn session(v: &Value) -> Option<SessionId> {
    v["session_id"].as_str().and_then(SessionId::parse)
}

fn resource(v: &Value) -> Option<Resource> {
    v.as_str().and_then(|r| Resource::new(r).ok())
}

/// Parses one event of `GET /events`; `None` for an event this harness does not know.
pub fn parse(v: &Value) -> Option<Parsed> {
    let at = v["at"].as_f64()?;
    let kind = v["type"].as_str()?;
    let change = match kind {
        "session_created" => Change::SessionCreated,
        "session_deleted" => Change::SessionDeleted,
        "session_expired" => Change::SessionExpired,
        "lock_acquired" => Change::LockAcquired,
        "lock_released" => Change::LockReleased,
        "lock_waiting" => Change::LockWaiting,
        "lock_wait_ended" => Change::LockWaitEnded,
        "leader_changed" => {
            let what = format!("leader_changed: leader {} term {}", v["leader_id"], v["term"]);
            return Some(Parsed::Note { at, what });
        }
        "node_unreachable" | "node_reachable" => {
            return Some(Parsed::Note { at, what: format!("{kind}: node {}", v["node_id"]) });
        }
        _ => return None,
    };
    let released = v["released"]
        .as_array()
        .map(|grants| {
            grants
                .iter()
                .filter_map(|g| Some((resource(&g["resource"])?, FenceToken(g["fence_token"].as_u64()?))))
                .collect()
        })
        .unwrap_or_default();
    Some(Parsed::Applied(Applied {
        index: v["index"].as_u64()?,
        position: v["position"].as_u64().unwrap_or(0) as u32,
        change,
        at,
        session: session(v),
        resource: resource(&v["resource"]),
        fence_token: v["fence_token"].as_u64().map(FenceToken),
        timeout_secs: v["timeout"].as_u64(),
        released,
        queued: v["queued"].as_bool().unwrap_or(false),
        mode: v["mode"].as_str().map(str::to_string),
        value: v["value"].as_str().map(str::to_string),
        limit: v["limit"].as_u64(),
        waited: v["waited"].as_f64(),
        since: v["since"].as_f64(),
        deadline: v["deadline"].as_f64(),
        place: v["queue_length"].as_u64().filter(|_| change == Change::LockWaiting),
        reason: v["reason"].as_str().and_then(WaitEnd::parse),
    }))
}

/// Everything collected so far.
#[derive(Default)]
struct Seen {
    applied: BTreeMap<Key, Applied>,
    reported_by: BTreeMap<Key, BTreeSet<NodeId>>,
    /// The same key reported with different contents.
    disagreements: Vec<String>,
    notes: Vec<Note>,
    /// Which nodes' streams have delivered each session's creation (for the final barrier).
    created_on: HashMap<SessionId, BTreeSet<NodeId>>,
    /// Stream (re)connections per node.
    connections: BTreeMap<NodeId, u64>,
}

impl Seen {
    fn add(&mut self, node: NodeId, parsed: Parsed) {
        match parsed {
            Parsed::Note { at, what } => self.notes.push(Note { node, at, what }),
            Parsed::Applied(event) => {
                let key = event.key();
                if event.change == Change::SessionCreated {
                    if let Some(s) = event.session {
                        self.created_on.entry(s).or_default().insert(node);
                    }
                }
                match self.applied.get(&key) {
                    Some(known) if *known != event => self
                        .disagreements
                        .push(format!("node {node} reported {event:?} where another node reported {known:?}")),
                    Some(_) => {}
                    None => {
                        self.applied.insert(key, event);
                    }
                }
                self.reported_by.entry(key).or_default().insert(node);
            }
        }
    }
}

/// The replicated history as collected: applied changes in log order, and what disagreed.
#[derive(Debug, Clone, Default)]
pub struct Replicated {
    pub events: Vec<Applied>,
    pub disagreements: Vec<String>,
    pub notes: Vec<Note>,
    /// How many distinct applied events each node's stream delivered.
    pub per_node: BTreeMap<NodeId, usize>,
    pub connections: BTreeMap<NodeId, u64>,
}

/// Follows every node's event stream until stopped.
pub struct Collector {
    seen: Arc<Mutex<Seen>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Collector {
    pub fn start(nodes: &[Endpoint]) -> Collector {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop, _) = watch::channel(false);
        // No overall timeout: a stream lives as long as its node.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .no_proxy()
            .build()
            .expect("a plain HTTP client builds");
        let tasks = nodes
            .iter()
            .map(|n| tokio::spawn(follow(n.id, n.http_base(), http.clone(), seen.clone(), stop.subscribe())))
            .collect();
        Collector { seen, stop, tasks }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the streams of all `nodes` have delivered the creation of `session`: since a
    /// node applies and publishes in log order, everything before it has been delivered too.
    pub async fn wait_for_creation(&self, session: SessionId, nodes: &[NodeId], within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let done = self.seen().created_on.get(&session).is_some_and(|on| nodes.iter().all(|n| on.contains(n)));
            if done {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops following and returns what was collected.
    pub async fn finish(self) -> Replicated {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let seen = std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()));
        let mut per_node: BTreeMap<NodeId, usize> = BTreeMap::new();
        for nodes in seen.reported_by.values() {
            for n in nodes {
                *per_node.entry(*n).or_default() += 1;
            }
        }
        Replicated {
            events: seen.applied.into_values().collect(),
            disagreements: seen.disagreements,
            notes: seen.notes,
            per_node,
            connections: seen.connections,
        }
    }
}

/// Splits complete server-sent events off the front of `buf` and returns their `data` JSON.
pub fn take_sse_data(buf: &mut Vec<u8>) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
        let block: Vec<u8> = buf.drain(..end + 2).collect();
        let text = String::from_utf8_lossy(&block);
        let data: String = text.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.trim_start()).collect();
        if let Ok(v) = serde_json::from_str(&data) {
            out.push(v);
        }
    }
    out
}

async fn follow(
    node: NodeId,
    base: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Seen>>,
    mut stop: watch::Receiver<bool>,
) {
    let url = format!("{base}/events");
    loop {
        if *stop.borrow() {
            return;
        }
        let response = tokio::select! {
            r = http.get(&url).send() => r,
            _ = stop.changed() => return,
        };
        if let Ok(response) = response {
            *seen.lock().unwrap_or_else(|p| p.into_inner()).connections.entry(node).or_default() += 1;
            let mut body = response.bytes_stream();
            let mut buf = Vec::new();
            loop {
                let chunk = tokio::select! {
                    c = body.next() => c,
                    _ = stop.changed() => return,
                };
                let Some(Ok(bytes)) = chunk else { break };
                buf.extend_from_slice(&bytes);
                let parsed: Vec<Parsed> = take_sse_data(&mut buf).iter().filter_map(parse).collect();
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                for p in parsed {
                    seen.add(node, p);
                }
            }
        }
        // The node is down or restarting: try again shortly.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_sent_events_are_split_and_parsed_across_chunks() {
        let sid = "916ef6ea-9040-43ce-a3d2-ca0e086986ab";
        let first =
            format!("id: 1-1\ndata: {{\"type\":\"lock_acquired\",\"index\":7,\"at\":1.5,\"session_id\":\"{sid}\",");
        let second = "\"resource\":\"r\",\"fence_token\":3,\"client_id\":\"c\"}\n\n:\n\nid: 1-2\ndata: {\"type\":\"leader_changed\",\"leader_id\":2,\"term\":4,\"at\":2.0}\n\n";
        let mut buf = first.into_bytes();
        assert!(take_sse_data(&mut buf).is_empty(), "an incomplete event waits for the rest");
        buf.extend_from_slice(second.as_bytes());
        let data = take_sse_data(&mut buf);
        assert!(buf.is_empty());
        assert_eq!(data.len(), 2, "the keep-alive comment carries no data");
        match parse(&data[0]) {
            Some(Parsed::Applied(a)) => {
                assert_eq!((a.index, a.change, a.fence_token), (7, Change::LockAcquired, Some(FenceToken(3))));
                assert_eq!(a.session.map(|s| s.to_string()).as_deref(), Some(sid));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse(&data[1]), Some(Parsed::Note { .. })));
        let expired = json!({"type": "session_expired", "index": 9, "at": 3.0, "session_id": sid,
            "released": [{"resource": "r", "fence_token": 3}]});
        match parse(&expired) {
            Some(Parsed::Applied(a)) => assert_eq!(a.released, vec![(Resource::new("r").unwrap(), FenceToken(3))]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_events_of_waiting_are_parsed() {
        let sid = "916ef6ea-9040-43ce-a3d2-ca0e086986ab";
        let applied = |v: Value| match parse(&v) {
            Some(Parsed::Applied(a)) => a,
            other => panic!("{other:?}"),
        };
        let waiting = applied(json!({"type": "lock_waiting", "index": 11, "position": 2, "at": 5.0, "resource": "r",
            "session_id": sid, "client_id": "c", "mode": "exclusive", "since": 5.0, "deadline": 8.0, "queue_length": 3}));
        assert_eq!(
            (waiting.change, waiting.key(), waiting.since, waiting.deadline, waiting.place),
            (Change::LockWaiting, (11, 2), Some(5.0), Some(8.0), Some(3))
        );
        assert_eq!(waiting.mode.as_deref(), Some("exclusive"));
        let ended = applied(json!({"type": "lock_wait_ended", "index": 12, "position": 0, "at": 8.1, "resource": "r",
            "session_id": sid, "client_id": "c", "reason": "session_ended", "waited": 3.1}));
        assert_eq!(
            (ended.change, ended.reason, ended.waited, ended.place),
            (Change::LockWaitEnded, Some(WaitEnd::SessionEnded), Some(3.1), None)
        );
        let handed = applied(json!({"type": "lock_acquired", "index": 13, "position": 1, "at": 8.2, "resource": "r",
            "session_id": sid, "client_id": "c", "fence_token": 9, "mode": "exclusive", "value": null, "waited": 3.2, "queued": true}));
        assert!(handed.queued);
        assert_eq!((handed.fence_token, handed.waited), (Some(FenceToken(9)), Some(3.2)));
        let direct = applied(
            json!({"type": "lock_acquired", "index": 14, "at": 9.0, "resource": "r", "session_id": sid, "fence_token": 10}),
        );
        assert!(!direct.queued, "a grant without the new fields is a direct one");
        let reader =
            applied(json!({"type": "lock_waiting", "index": 15, "at": 9.5, "resource": "s", "session_id": sid,
            "client_id": "c", "mode": "shared", "limit": 2, "since": 9.5, "deadline": 10.5, "queue_length": 1}));
        assert_eq!((reader.mode.as_deref(), reader.limit), (Some("shared"), Some(2)));
        let permit =
            applied(json!({"type": "lock_acquired", "index": 16, "at": 9.6, "resource": "s", "session_id": sid,
            "fence_token": 11, "mode": "shared", "value": "10.0.0.7:80", "queued": false}));
        assert_eq!((permit.mode.as_deref(), permit.value.as_deref()), (Some("shared"), Some("10.0.0.7:80")));
    }

    #[test]
    fn a_replayed_event_is_one_fact_and_a_different_one_is_a_disagreement() {
        let mut seen = Seen::default();
        let event = |token| Applied {
            index: 5,
            position: 0,
            change: Change::LockAcquired,
            at: 1.0,
            session: SessionId::parse("916ef6ea-9040-43ce-a3d2-ca0e086986ab"),
            resource: Resource::new("r").ok(),
            fence_token: Some(FenceToken(token)),
            timeout_secs: None,
            released: vec![],
            queued: false,
            mode: None,
            value: None,
            limit: None,
            waited: None,
            since: None,
            deadline: None,
            place: None,
            reason: None,
        };
        seen.add(1, Parsed::Applied(event(1)));
        seen.add(2, Parsed::Applied(event(1)));
        seen.add(1, Parsed::Applied(event(1)));
        assert_eq!(seen.applied.len(), 1);
        assert!(seen.disagreements.is_empty());
        seen.add(3, Parsed::Applied(event(2)));
        assert_eq!(seen.disagreements.len(), 1);
    }
}

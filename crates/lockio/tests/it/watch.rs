//! Watches (`GET /events?resource=PREFIX&after=ID`) against real clusters: the prefix filter,
//! resuming with `after` and `Last-Event-ID` across a restart of the node streamed from and on
//! another node (ids are log positions, the same everywhere), `compacted` for history a node no
//! longer holds (a small `--event-history`, a restart from a snapshot), `progress` on a quiet
//! stream, the client library's `Watch` across a reconnect, and `lockio lock watch`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use lockio_client::{Error, EventId};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::support::cluster::lockio_bin;
use crate::support::{acquire, call, create_session, eventually, status, Cluster};

/// One server-sent event: its `id:` line, if any, and its JSON data.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    id: Option<String>,
    data: Value,
}

impl Frame {
    fn kind(&self) -> &str {
        self.data["type"].as_str().unwrap_or("")
    }
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// An open `GET /events`.
struct Events {
    body: Body,
    text: String,
}

/// Opens `url` with `Last-Event-ID` if given; panics unless it answers 200 with an event stream.
async fn open(url: &str, last_event_id: Option<&str>) -> Events {
    let mut request = reqwest::Client::new().get(url);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status(), 200, "GET {url}");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    Events { body: Box::pin(response.bytes_stream()), text: String::new() }
}

impl Events {
    /// The next event, or `None` when the stream ended; panics at `deadline`.
    async fn next(&mut self, deadline: Instant) -> Option<Frame> {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let id = block.lines().find_map(|l| l.strip_prefix("id: ")).map(str::to_string);
                let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
                return Some(Frame { id, data: serde_json::from_str(data).unwrap() });
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await.expect("the next event in time") {
                Some(Ok(chunk)) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// Every event up to and including the first that `last` accepts.
    async fn until(&mut self, within: Duration, last: impl Fn(&Frame) -> bool) -> Vec<Frame> {
        let deadline = Instant::now() + within;
        let mut frames = Vec::new();
        loop {
            let frame = self.next(deadline).await.unwrap_or_else(|| panic!("stream ended after {frames:#?}"));
            let done = last(&frame);
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }
}

fn id(raw: &str) -> EventId {
    raw.parse().unwrap_or_else(|_| panic!("not an event id: {raw}"))
}

async fn next(watch: &mut lockio_client::Watch) -> Result<lockio_client::WatchEvent, Error> {
    tokio::time::timeout(Duration::from_secs(30), watch.next()).await.expect("the next change in time")
}

/// A change's frames carry their id twice (SSE and JSON); changes come in log order, once.
fn assert_in_order(frames: &[Frame]) {
    let mut last: Option<EventId> = None;
    for f in frames.iter().filter(|f| f.id.is_some()) {
        assert_eq!(f.data["id"].as_str(), f.id.as_deref(), "{f:?}");
        let this = id(f.id.as_deref().unwrap());
        assert_eq!(
            this,
            EventId { index: f.data["index"].as_u64().unwrap(), position: f.data["position"].as_u64().unwrap() as u32 }
        );
        assert!(last < Some(this), "{last:?} then {this}: {frames:#?}");
        last = Some(this);
    }
}

fn acquired(resource: &str) -> impl Fn(&Frame) -> bool + '_ {
    move |f| f.kind() == "lock_acquired" && f.data["resource"] == resource
}

/// The changes (frames with an id) after `after`.
fn changes_after(frames: &[Frame], after: EventId) -> Vec<Frame> {
    frames.iter().filter(|f| f.id.as_deref().is_some_and(|i| id(i) > after)).cloned().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_keeps_to_its_prefix() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let base = cluster.base(leader);
    let a = create_session(&base, "watch-a", 60).await;
    let b = create_session(&base, "watch-b", 60).await;
    let mut tokens = Vec::new();
    for r in ["orders-1", "orders-2", "billing-1"] {
        tokens.push(acquire(&base, &a, r).await.body["fence_token"].as_u64().unwrap());
    }
    // A wait that times out: lock_waiting, then lock_wait_ended.
    let waited = call("POST", &format!("{base}/sessions/{b}/locks/orders-1?wait=1"), None).await;
    assert_eq!(waited.status, 409, "{}", waited.text);
    let released = call("DELETE", &format!("{base}/sessions/{a}/locks/orders-1?fence_token={}", tokens[0]), None).await;
    assert_eq!(released.status, 200);
    assert_eq!(call("DELETE", &format!("{base}/sessions/{a}"), None).await.status, 200);
    assert_eq!(acquire(&base, &b, "orders-zz").await.status, 201);

    let follower = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    let mut events = open(&cluster.url(follower, "/events?resource=orders-"), None).await;
    let frames = events.until(Duration::from_secs(10), acquired("orders-zz")).await;
    assert_in_order(&frames);
    let kinds: BTreeSet<&str> = frames.iter().map(Frame::kind).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["lock_acquired", "lock_released", "lock_waiting", "lock_wait_ended", "session_deleted"]),
        "{frames:#?}"
    );
    for f in &frames {
        assert!(f.id.is_some(), "only changes: {f:?}");
        let about_orders = f.data["resource"].as_str().is_some_and(|r| r.starts_with("orders-"))
            || f.data["released"].as_array().is_some_and(|l| l.iter().any(|g| g["resource"] == "orders-2"));
        assert!(about_orders, "{f:?}");
    }
    let deleted = frames.iter().find(|f| f.kind() == "session_deleted").unwrap();
    assert_eq!(deleted.data["session_id"], a.as_str());
    assert!(frames.iter().any(|f| f.kind() == "lock_wait_ended" && f.data["reason"] == "timeout"));

    // Bad parameters are 400s that name them.
    for (query, field) in [("?after=abc", "after"), ("?after=1.x", "after"), ("?resource=", "resource")] {
        let r = call("GET", &cluster.url(follower, &format!("/events{query}")), None).await;
        assert_eq!((r.status, r.body["field"].as_str()), (400, Some(field)), "{query}: {}", r.text);
    }
    let r = reqwest::Client::new()
        .get(cluster.url(follower, "/events"))
        .header("last-event-id", "1796205155-12")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "Last-Event-ID");
}

#[tokio::test(flavor = "multi_thread")]
async fn resuming_across_a_restart_has_no_gap_and_no_repeat_on_any_node() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let streamed = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    let other = cluster.running().into_iter().find(|id| *id != leader && *id != streamed).unwrap();
    let base = cluster.base(leader);
    let s = create_session(&base, "resume", 60).await;
    for r in ["resume-1", "resume-2", "mark-1"] {
        assert_eq!(acquire(&base, &s, r).await.status, 201);
    }
    let mut before = open(&cluster.url(streamed, "/events"), None).await;
    let seen = before.until(Duration::from_secs(10), acquired("mark-1")).await;
    let last = seen.iter().rev().find_map(|f| f.id.clone()).unwrap();
    drop(before);

    cluster.kill(streamed);
    let leader_base = cluster.base(cluster.wait_for_leader().await);
    let t = create_session(&leader_base, "resume-2", 60).await;
    for r in ["resume-3", "resume-4"] {
        assert_eq!(acquire(&leader_base, &t, r).await.status, 201);
    }
    assert_eq!(call("DELETE", &format!("{leader_base}/sessions/{s}"), None).await.status, 200);
    cluster.restart(streamed).await;
    assert_eq!(acquire(&leader_base, &t, "mark-2").await.status, 201);

    let within = Duration::from_secs(20);
    let reference = open(&cluster.url(other, "/events"), None).await.until(within, acquired("mark-2")).await;
    let expected = changes_after(&reference, id(&last));
    let kinds: Vec<&str> = expected.iter().map(Frame::kind).collect();
    let all = ["session_created", "lock_acquired", "lock_acquired", "session_deleted", "lock_acquired"];
    assert_eq!(kinds, all, "the changes after the kill: {expected:#?}");
    let url = cluster.url(streamed, &format!("/events?after={last}"));
    let by_after = open(&url, None).await.until(within, acquired("mark-2")).await;
    let by_header = open(&cluster.url(streamed, "/events"), Some(&last)).await.until(within, acquired("mark-2")).await;
    let url = cluster.url(other, &format!("/events?after={last}"));
    let elsewhere = open(&url, None).await.until(within, acquired("mark-2")).await;
    for (how, got) in [("after", &by_after), ("Last-Event-ID", &by_header), ("another node", &elsewhere)] {
        assert_in_order(got);
        let changes: Vec<Frame> = got.iter().filter(|f| f.id.is_some()).cloned().collect();
        assert_eq!(changes, expected, "resumed with {how}");
        assert!(got.iter().all(|f| f.id.is_some()), "a resumed stream gets no node events from before: {got:#?}");
    }
}

/// Polls the node's `/cluster/status` until it reports a snapshot; returns its index.
async fn snapshot_index(base: &str) -> u64 {
    let base = base.to_string();
    eventually(Duration::from_secs(20), "a snapshot", || {
        let base = base.clone();
        async move { status(&base).await?["snapshot_index"].as_u64() }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn history_a_node_no_longer_holds_is_compacted() {
    // A node keeps its last 20 events.
    let cluster = Cluster::start_with(1, &["--event-history", "20"]).await;
    let base = cluster.base(1);
    let s = create_session(&base, "compact", 60).await;
    for i in 0..30 {
        assert_eq!(acquire(&base, &s, &format!("compact-{i}")).await.status, 201);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut old = open(&cluster.url(1, "/events?after=1.0"), None).await;
    let compacted = old.next(deadline).await.expect("one event");
    assert_eq!((compacted.kind(), &compacted.id), ("compacted", &None), "{compacted:?}");
    assert_eq!(compacted.data["requested"], "1.0");
    let (oldest, current) =
        (id(compacted.data["oldest"].as_str().unwrap()), id(compacted.data["current"].as_str().unwrap()));
    assert!(id("1.0") < oldest && oldest < current, "{compacted:?}");
    assert_eq!(old.next(deadline).await, None, "the stream ends after compacted");
    // From the oldest point it still holds, the 20 events come; from current, what is new.
    let url = cluster.url(1, &format!("/events?after={oldest}"));
    let held = open(&url, None).await.until(Duration::from_secs(5), acquired("compact-29")).await;
    assert_eq!(held.len(), 20, "{held:#?}");
    let mut now = open(&cluster.url(1, &format!("/events?after={current}")), None).await;
    assert_eq!(acquire(&base, &s, "compact-new").await.status, 201);
    let new = now.until(Duration::from_secs(5), acquired("compact-new")).await;
    assert_eq!(new.len(), 1, "{new:#?}");

    // The client library surfaces it as an error to act on.
    let client = lockio_client::Client::new([base.as_str()]).unwrap();
    let mut watch = client.watch("", Some(id("1.0"))).unwrap();
    match watch.next().await {
        Err(Error::Compacted { requested, current: c, .. }) => assert_eq!((requested, c >= current), (id("1.0"), true)),
        other => panic!("{other:?}"),
    }
    // Called again, it goes on from `current`.
    let next = tokio::time::timeout(Duration::from_secs(5), async {
        assert_eq!(acquire(&base, &s, "compact-after").await.status, 201);
        watch.next().await
    });
    let next = next.await.expect("in time").unwrap();
    assert_eq!(
        (next.kind.as_str(), next.resource.map(|r| r.to_string())),
        ("lock_acquired", Some("compact-after".into()))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_restarted_from_a_snapshot_holds_only_what_came_after_it() {
    let mut cluster = Cluster::start_with(3, &["--snapshot-every", "30"]).await;
    let leader = cluster.wait_for_leader().await;
    let base = cluster.base(leader);
    let s = create_session(&base, "snap", 60).await;
    for i in 0..40 {
        assert_eq!(acquire(&base, &s, &format!("snap-{i}")).await.status, 201);
    }
    let restarted = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    let kept = cluster.running().into_iter().find(|id| *id != leader && *id != restarted).unwrap();
    snapshot_index(&cluster.base(restarted)).await;
    cluster.stop(restarted);
    cluster.restart(restarted).await;
    let snapshot = snapshot_index(&cluster.base(restarted)).await;
    assert_eq!(acquire(&base, &s, "snap-end").await.status, 201);

    let within = Duration::from_secs(10);
    // A node that never restarted holds everything since the start.
    let all = open(&cluster.url(kept, "/events?after=0"), None).await.until(within, acquired("snap-end")).await;
    assert_eq!(all[0].kind(), "session_created", "{:?}", all[0]);
    assert_eq!(all.iter().filter(|f| f.kind() == "lock_acquired").count(), 41);
    // The restarted one has the events after its snapshot only.
    let mut old = open(&cluster.url(restarted, "/events?after=0"), None).await;
    let compacted = old.next(Instant::now() + within).await.unwrap();
    assert_eq!(
        (compacted.kind(), compacted.data["oldest"].as_str()),
        ("compacted", Some(snapshot.to_string().as_str()))
    );
    let fresh = open(&cluster.url(restarted, "/events"), None).await.until(within, acquired("snap-end")).await;
    assert_in_order(&fresh);
    let first = fresh.iter().find_map(|f| f.id.as_deref()).map(id).unwrap();
    assert!(first.index > snapshot, "{first} after the snapshot at {snapshot}");
    let url = cluster.url(restarted, &format!("/events?after={snapshot}"));
    let from_snapshot = open(&url, None).await.until(within, acquired("snap-end")).await;
    assert_eq!(from_snapshot, changes_after(&all, EventId { index: snapshot, position: u32::MAX }));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_stream_gets_progress_without_an_id() {
    let cluster = Cluster::start_with(1, &["--progress-interval", "300ms"]).await;
    let base = cluster.base(1);
    let mut quiet = open(&cluster.url(1, "/events?resource=nothing-"), None).await;
    let mut all = open(&cluster.url(1, "/events"), None).await;
    let s = create_session(&base, "quiet", 60).await;
    let created = all.until(Duration::from_secs(5), |f| f.data["session_id"] == s.as_str()).await;
    let created = id(created.last().unwrap().id.as_deref().unwrap());
    let frames = quiet
        .until(Duration::from_secs(5), |f| f.kind() == "progress" && id(f.data["current"].as_str().unwrap()) >= created)
        .await;
    for f in &frames {
        assert_eq!((f.kind(), &f.id), ("progress", &None), "{frames:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_watch_resumes_across_a_reconnect() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client();
    let session = client.open_session("watcher", Duration::from_secs(60)).await.unwrap();
    let mut watch = client.watch("jobs-", None).unwrap();
    let first = session.lock("jobs-1").await.unwrap();
    let mut got = Vec::new();
    got.push(next(&mut watch).await.unwrap());
    assert_eq!((got[0].kind.as_str(), got[0].fence_token), ("lock_acquired", Some(first.fence_token())));

    let endpoint = watch.endpoint().expect("connected").to_string();
    let streamed = cluster.running().into_iter().find(|id| cluster.base(*id).ends_with(&endpoint)).unwrap();
    cluster.kill(streamed);
    let second = session.lock("jobs-2").await.unwrap();
    first.release().await.unwrap();
    let third = session.lock("jobs-3").await.unwrap();
    while got.last().unwrap().resource.as_ref().map(|r| r.as_str()) != Some("jobs-3") {
        got.push(next(&mut watch).await.unwrap());
    }
    assert_ne!(watch.endpoint(), Some(endpoint.as_str()), "reconnected elsewhere");
    let kinds: Vec<(String, String)> =
        got.iter().map(|e| (e.kind.clone(), e.resource.as_ref().unwrap().to_string())).collect();
    let expected = [
        ("lock_acquired", "jobs-1"),
        ("lock_acquired", "jobs-2"),
        ("lock_released", "jobs-1"),
        ("lock_acquired", "jobs-3"),
    ];
    assert_eq!(kinds, expected.map(|(k, r)| (k.to_string(), r.to_string())));
    assert_eq!(got[1].fence_token, Some(second.fence_token()));
    assert_eq!(got[3].fence_token, Some(third.fence_token()));
    let ids: Vec<EventId> = got.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(watch.position(), Some(ids[3]));
}

#[tokio::test(flavor = "multi_thread")]
async fn lockio_lock_watch_prints_a_line_per_change() {
    let cluster = Cluster::start(1).await;
    let base = cluster.base(1);
    let spawn = |json: bool| {
        let mut command = Command::new(lockio_bin());
        command.args(["--endpoints", &base, "lock", "watch", "cli-"]).env_remove("LOCKIO_ENDPOINTS");
        if json {
            command.arg("--json");
        }
        let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        (child, rx)
    };
    let (mut lines_child, lines) = spawn(false);
    let (mut json_child, json_lines) = spawn(true);
    let s = create_session(&base, "cli-watcher", 60).await;
    let token = acquire(&base, &s, "cli-x").await.body["fence_token"].as_u64().unwrap();
    assert_eq!(acquire(&base, &s, "other").await.status, 201);
    let r = call("DELETE", &format!("{base}/sessions/{s}/locks/cli-x"), Some(json!({"fence_token": token}))).await;
    assert_eq!(r.status, 200);

    let take = |rx: &std::sync::mpsc::Receiver<String>| {
        (0..2).map(|_| rx.recv_timeout(Duration::from_secs(10)).expect("a line in time")).collect::<Vec<_>>()
    };
    let printed = take(&lines);
    let pattern = |kind: &str| format!(" {kind} cli-x client=cli-watcher session={s} fence_token={token}");
    assert!(printed[0].ends_with(&pattern("lock_acquired")), "{printed:?}");
    assert!(printed[1].ends_with(&pattern("lock_released")), "{printed:?}");
    let first_id = id(printed[0].split(' ').next().unwrap());
    assert!(first_id < id(printed[1].split(' ').next().unwrap()));
    let printed: Vec<Value> = take(&json_lines).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        (printed[0]["type"].as_str(), printed[0]["id"].as_str()),
        (Some("lock_acquired"), Some(first_id.to_string().as_str()))
    );
    assert_eq!((printed[1]["type"].as_str(), printed[1]["resource"].as_str()), (Some("lock_released"), Some("cli-x")));
    for child in [&mut lines_child, &mut json_child] {
        assert!(child.try_wait().unwrap().is_none(), "a watch runs until interrupted");
        let _ = child.kill();
        let _ = child.wait();
    }
    // A bad --after is one line and status 1.
    let out =
        Command::new(lockio_bin()).args(["--endpoints", &base, "lock", "watch", "--after", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "lockio: invalid after: `x` is not an event id (INDEX.POSITION)"
    );
}

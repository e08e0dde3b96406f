//! The workload: clients that use lock.io the way a careful application would, and record
//! every attempt in the history.
//!
//! - Lock clients each open a session kept alive in the background (`keeper`: a keepalive
//!   every `keepalive_every`, to a random node, moving to the next node at once when one fails),
//!   then loop: acquire one of a few hot resources, write to the fenced store twice while they
//!   believe they hold it, and release it (or, now and then, delete the whole session instead,
//!   and open a new one). Now and then a client *stalls* while holding the lock, as a process
//!   in a long GC pause would: its keepalives stop, its session expires, and when it wakes it
//!   writes with its old token, which the fenced store must refuse if anyone took the lock
//!   since. Then it opens a new session.
//!   One hold in `LONG_HOLD_ODDS` lasts a second or two, long enough for waiters to run into
//!   their deadlines.
//! - The first `waiting_clients` lock clients wait in the resource's queue (`{"wait": W}`, W
//!   from 1 s to `max_wait`) instead of trying and polling. One wait in `CANCEL_ODDS` is
//!   abandoned early by dropping the connection, which cancels it.
//! - Churn clients open short sessions without keepalives, sometimes take a lock, and delete
//!   them, or now and then leave one that holds nothing to expire.
//! - Queue clients, with sessions without keepalives too, mostly play a queue of two on their
//!   own resource (`queue_scenario`): one session holds it, another waits for it, and the
//!   holder lets go (release or delete) at a random moment while the waiter waits, has given
//!   up, or has run into its deadline, or the waiter's session is deleted first; so the
//!   hand-off, the cancel, the timeout and the session end each happen, and race, without a
//!   hot lock being held for seconds. Now and then one waits for a hot resource and deletes
//!   its session while the wait may still be open (`wait_and_end`).
//!
//! - Shared clients (`shared_client`), with kept-alive sessions too, each round write `rw-0`
//!   (exclusive, fenced writes as above), read it (a shared grant: the reader reads the fenced
//!   store at the start and the end of its hold and must see no write in between; its token
//!   raises the store's fence, so no older holder writes after it), or take one of the
//!   `semaphore_limit` permits of `sem-0` (shared with a `limit`), by a try-lock or by waiting.
//!   So readers are granted together, in batches from the queue, writers queue behind readers
//!   and readers behind writers, and the semaphore fills up.
//!
//! A client retries an attempt whose outcome it cannot know until it gets a definite answer
//! (acquire is idempotent, a retried wait keeps its place, release answers `LOCK_NOT_HELD` once
//! done), so it always knows what it holds. After a wait it abandoned, or one that ran out of
//! time without a definite answer, it waits until its session no longer waits for the resource
//! and then asks with a try-lock, which tells whether the wait was granted (`resolve`). Every
//! loop ends when the run tells it to stop; requests have client time-outs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockio_core::{FenceToken, Resource, SessionId};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cluster::NodeId;
use crate::history::{op, History, Op, OpKind, Outcome};
use crate::rng::Rng;

/// A write waits longer than the server's request deadline (5 s), so it usually hears the
/// server's own answer rather than timing out.
const WRITE_TIMEOUT: Duration = Duration::from_secs(6);
/// A keepalive gives up sooner, to try another node while the session has time left.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// One hold in this many ends by deleting the session instead of releasing: rare, so that
/// most sessions live long enough to see several faults.
const SESSION_END_ODDS: u64 = 300;
/// One hold in this many stalls past the session's timeout (see the module docs).
const STALL_ODDS: u64 = 2000;
/// One churn session in this many, if it holds no lock, is left to expire instead of being
/// deleted.
const ABANDON_ODDS: u64 = 10;
/// Pause between retries of an attempt whose outcome was not definite.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// One hold in this many lasts `LONG_HOLD`, so that waiters behind it reach their deadlines.
const LONG_HOLD_ODDS: u64 = 40;
const LONG_HOLD: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(2));
/// One wait in this many is abandoned by dropping the connection before its deadline.
const CANCEL_ODDS: u64 = 6;
/// One round of a queue client in this many is a `wait_and_end` on a hot resource; the others
/// are `queue_scenario`s on its own resource.
const WAIT_AND_END_ODDS: u64 = 3;
/// How long past a wait's deadline `resolve` lets the service take the session out of the
/// queue (the cancel comes 2 s after the disconnect; a fault may delay it) before it gives up
/// and deletes the session.
const RESOLVE_SLACK: Duration = Duration::from_secs(10);

/// What the workload does; see the module docs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seed: u64,
    pub lock_clients: usize,
    pub churn_clients: usize,
    /// Clients that play `queue_scenario`s and `wait_and_end`s.
    pub queue_clients: usize,
    pub resources: Vec<Resource>,
    /// How many of the lock clients wait in the queue instead of polling.
    pub waiting_clients: usize,
    /// The longest wait asked for, seconds.
    pub max_wait: u64,
    /// Clients that read (shared) and write (exclusive) `RW_RESOURCE` and take permits of
    /// `SEMAPHORE`.
    pub shared_clients: usize,
    /// The number of permits of `SEMAPHORE`.
    pub semaphore_limit: u64,
    /// Session timeout, seconds.
    pub session_timeout: u64,
    pub keepalive_every: Duration,
}

impl Settings {
    /// The resource of queue client `k`'s `queue_scenario`.
    pub fn queue_resource(k: usize) -> Resource {
        Resource::new(&format!("queue-{k}")).expect("a valid name")
    }

    /// The readers-writer resource of the shared clients.
    pub fn rw_resource() -> Resource {
        Resource::new(RW_RESOURCE).expect("a valid name")
    }

    /// The semaphore of the shared clients.
    pub fn semaphore() -> Resource {
        Resource::new(SEMAPHORE).expect("a valid name")
    }

    /// The semaphores the workload uses, with their limits (what the checker holds them to).
    pub fn semaphores(&self) -> std::collections::BTreeMap<Resource, u64> {
        if self.shared_clients == 0 {
            return Default::default();
        }
        [(Settings::semaphore(), self.semaphore_limit)].into_iter().collect()
    }

    /// Every resource the workload uses: the hot ones, the queue clients' own, and the shared
    /// clients' two.
    pub fn all_resources(&self) -> Vec<Resource> {
        let shared =
            if self.shared_clients > 0 { vec![Settings::rw_resource(), Settings::semaphore()] } else { vec![] };
        self.resources
            .iter()
            .cloned()
            .chain((0..self.queue_clients).map(Settings::queue_resource))
            .chain(shared)
            .collect()
    }
}

/// The shared clients' readers-writer resource and semaphore.
const RW_RESOURCE: &str = "rw-0";
const SEMAPHORE: &str = "sem-0";

/// The mode an acquire asks for: exclusive (the seed's plain acquire, no body), or shared, with
/// a semaphore's `limit`; a shared grant stores the client's name as its `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub shared: bool,
    pub limit: Option<u64>,
}

impl Want {
    pub const EXCLUSIVE: Want = Want { shared: false, limit: None };
    pub const SHARED: Want = Want { shared: true, limit: None };

    pub fn permit(limit: u64) -> Want {
        Want { shared: true, limit: Some(limit) }
    }

    /// The acquire's fields besides `wait`.
    fn body(self, client: &str) -> serde_json::Map<String, Value> {
        let mut body = serde_json::Map::new();
        if self.shared {
            body.insert("mode".into(), json!("shared"));
            body.insert("value".into(), json!(client));
            if let Some(limit) = self.limit {
                body.insert("limit".into(), json!(limit));
            }
        }
        body
    }

    fn record(self, o: &mut Op) {
        o.shared = self.shared;
        o.limit = self.limit;
    }
}

/// One answer, classified.
#[derive(Debug, Clone)]
pub struct Answer {
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub body: Value,
    pub error: Option<String>,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

/// The HTTP client of the workload: sends one attempt to one node and records it.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    /// Base URL of node `id` at `id - 1`.
    bases: Vec<String>,
    pub history: History,
}

impl Api {
    pub fn new(bases: Vec<String>, history: History) -> Api {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .no_proxy()
            .build()
            .expect("a plain HTTP client builds");
        Api { http, bases, history }
    }

    pub fn nodes(&self) -> u8 {
        self.bases.len() as u8
    }

    /// Sends one request and classifies the answer: 2xx is `Ok`; 4xx, a 503 not marked
    /// `"outcome": "unknown"`, any other non-2xx answer whose body is not JSON, and a refused
    /// connection are `Fail`; anything else is `Unknown`.
    async fn send(
        &self,
        node: NodeId,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Answer {
        let url = format!("{}{path}", self.bases[node as usize - 1]);
        let mut request = self.http.request(method, &url).timeout(timeout);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let outcome = if e.is_connect() { Outcome::Fail } else { Outcome::Unknown };
                let what = if e.is_timeout() { "timeout".to_string() } else { format!("transport: {e}") };
                return Answer { outcome, status: None, body: Value::Null, error: Some(what) };
            }
        };
        let status = response.status().as_u16();
        let body = match response.json::<Value>().await {
            Ok(b) => b,
            Err(_) => {
                let outcome = if (200..300).contains(&status) { Outcome::Unknown } else { Outcome::Fail };
                return Answer {
                    outcome,
                    status: Some(status),
                    body: Value::Null,
                    error: Some("unreadable body".into()),
                };
            }
        };
        let outcome = match status {
            200..=299 => Outcome::Ok,
            503 if body["outcome"] == "unknown" => Outcome::Unknown,
            400..=499 | 503 => Outcome::Fail,
            _ => Outcome::Unknown,
        };
        let error = body["code"].as_str().map(str::to_string);
        Answer { outcome, status: Some(status), body, error }
    }

    /// Sends an attempt described by `op` and records it, completed.
    async fn attempt(
        &self,
        op: Op,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Answer {
        let answer = self.send(op.node, method, path, body, timeout).await;
        self.complete(op, answer)
    }

    /// Records `op`, completed now with `answer`.
    fn complete(&self, mut op: Op, answer: Answer) -> Answer {
        op.complete = self.history.now();
        op.outcome = answer.outcome;
        op.status = answer.status;
        op.error = answer.error.clone();
        if answer.outcome == Outcome::Ok {
            match op.kind {
                OpKind::CreateSession => op.session = answer.body["session_id"].as_str().and_then(SessionId::parse),
                OpKind::Acquire => op.fence_token = answer.body["fence_token"].as_u64().map(FenceToken),
                _ => {}
            }
        }
        self.history.record(op);
        answer
    }

    /// Creates a session for `client` through `node`: its id if acknowledged.
    pub async fn create_session(&self, client: &str, node: NodeId, timeout_secs: u64) -> Option<SessionId> {
        let mut o = op(client, node, OpKind::CreateSession, self.history.now());
        o.timeout_secs = Some(timeout_secs);
        let body = json!({"client_id": client, "timeout": timeout_secs});
        let answer = self.attempt(o, reqwest::Method::POST, "/sessions", Some(body), WRITE_TIMEOUT).await;
        answer.body["session_id"].as_str().and_then(SessionId::parse).filter(|_| answer.outcome == Outcome::Ok)
    }

    /// Creates a session for `client` through the nodes in turn, pausing `pause` after each
    /// failure, until one acknowledges or `within` runs out: the session, the node that made it,
    /// and how long it took.
    pub async fn create_anywhere(
        &self,
        client: &str,
        timeout_secs: u64,
        within: Duration,
        pause: Duration,
    ) -> Option<(SessionId, NodeId, Duration)> {
        let started = Instant::now();
        let mut node: NodeId = 1;
        while started.elapsed() < within {
            if let Some(session) = self.create_session(client, node, timeout_secs).await {
                return Some((session, node, started.elapsed()));
            }
            node = node % self.nodes() + 1;
            tokio::time::sleep(pause).await;
        }
        None
    }

    pub async fn delete_session(&self, client: &str, node: NodeId, session: SessionId, timeout: Duration) -> Answer {
        let mut o = op(client, node, OpKind::DeleteSession, self.history.now());
        o.session = Some(session);
        self.attempt(o, reqwest::Method::DELETE, &format!("/sessions/{session}"), None, timeout).await
    }

    pub async fn keepalive(&self, client: &str, node: NodeId, session: SessionId) -> Answer {
        let mut o = op(client, node, OpKind::Keepalive, self.history.now());
        o.session = Some(session);
        let path = format!("/sessions/{session}/keepalive");
        self.attempt(o, reqwest::Method::POST, &path, None, KEEPALIVE_TIMEOUT).await
    }

    /// A try-lock. An exclusive one is the seed's plain acquire, without a body.
    pub async fn acquire(
        &self,
        client: &str,
        node: NodeId,
        session: SessionId,
        resource: &Resource,
        want: Want,
    ) -> Answer {
        let mut o = op(client, node, OpKind::Acquire, self.history.now());
        o.session = Some(session);
        o.resource = Some(resource.clone());
        want.record(&mut o);
        let path = format!("/sessions/{session}/locks/{resource}");
        let body = want.shared.then(|| Value::Object(want.body(client)));
        self.attempt(o, reqwest::Method::POST, &path, body, WRITE_TIMEOUT).await
    }

    /// An acquire that waits up to `wait_secs` in the resource's queue. With `cancel_after`,
    /// the client gives up that soon and drops the connection, which cancels the wait; the
    /// attempt is then unknown (`cancelled`): the grant may have come first.
    #[allow(clippy::too_many_arguments)]
    pub async fn acquire_wait(
        &self,
        client: &str,
        node: NodeId,
        session: SessionId,
        resource: &Resource,
        want: Want,
        wait_secs: u64,
        cancel_after: Option<Duration>,
    ) -> Answer {
        let mut o = op(client, node, OpKind::Acquire, self.history.now());
        o.session = Some(session);
        o.resource = Some(resource.clone());
        o.wait_secs = Some(wait_secs);
        want.record(&mut o);
        let path = format!("/sessions/{session}/locks/{resource}");
        let mut fields = want.body(client);
        fields.insert("wait".into(), json!(wait_secs));
        let body = Some(Value::Object(fields));
        // The server answers by the deadline, or with 503 within its request deadline after.
        let send = self.send(node, reqwest::Method::POST, &path, body, WRITE_TIMEOUT + Duration::from_secs(wait_secs));
        let answer = match cancel_after {
            None => send.await,
            Some(after) => tokio::time::timeout(after, send).await.unwrap_or_else(|_| Answer {
                outcome: Outcome::Unknown,
                status: None,
                body: Value::Null,
                error: Some("cancelled".into()),
            }),
        };
        self.complete(o, answer)
    }

    pub async fn release(
        &self,
        client: &str,
        node: NodeId,
        session: SessionId,
        resource: &Resource,
        token: FenceToken,
    ) -> Answer {
        let mut o = op(client, node, OpKind::Release, self.history.now());
        o.session = Some(session);
        o.resource = Some(resource.clone());
        o.fence_token = Some(token);
        let path = format!("/sessions/{session}/locks/{resource}");
        self.attempt(o, reqwest::Method::DELETE, &path, Some(json!({"fence_token": token.0})), WRITE_TIMEOUT).await
    }

    /// A GET whose answer is returned as JSON, not recorded (final-state reads, status).
    pub async fn get(&self, node: NodeId, path: &str, timeout: Duration) -> Option<(u16, Value)> {
        let answer = self.send(node, reqwest::Method::GET, path, None, timeout).await;
        Some((answer.status?, answer.body))
    }

    /// Writes through the cluster until one succeeds or `within` runs out: a session created
    /// and deleted, each attempt recorded under `probe`. Returns how long it took.
    pub async fn probe_write(&self, within: Duration) -> Option<Duration> {
        let (session, node, took) = self.create_anywhere("probe", 5, within, Duration::from_millis(50)).await?;
        self.delete_session("probe", node, session, Duration::from_secs(2)).await;
        Some(took)
    }
}

/// The fenced store: per resource, accepts a write only with a token at least as high as the
/// highest it has seen, from a write or a read. It is what a lock protects in a real
/// application. Exclusive holders write; shared holders only read (`read`), and a read with
/// a token older than the latest accepted write is refused: that write's grant came after the
/// reader's, so the reader's grant had ended.
pub struct FencedStore {
    /// A std mutex: held only to compare and store, never across an await.
    state: Mutex<HashMap<Resource, Fenced>>,
    history: History,
}

/// One resource's record in the fenced store.
#[derive(Clone, Copy)]
struct Fenced {
    /// The highest token a write or a read presented (a write needs at least this).
    highest: FenceToken,
    /// The token of the latest accepted write (a read needs at least this).
    written: FenceToken,
    /// Accepted writes so far: what a reader sees.
    version: u64,
}

/// What a shared holder read from the fenced store (`FencedStore::begin_read`).
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    version: u64,
    invoke: f64,
}

impl FencedStore {
    pub fn new(history: History) -> FencedStore {
        FencedStore { state: Mutex::new(HashMap::new()), history }
    }

    fn with<T>(&self, resource: &Resource, f: impl FnOnce(&mut Fenced) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(state.entry(resource.clone()).or_insert(Fenced {
            highest: FenceToken(0),
            written: FenceToken(0),
            version: 0,
        }))
    }

    /// A shared holder starts reading under `token`: `None` (recorded as a refused read) if a
    /// write under a later token was accepted already. Nothing is recorded until `end_read`.
    pub fn begin_read(
        &self,
        client: &str,
        session: SessionId,
        resource: &Resource,
        token: FenceToken,
    ) -> Option<Reading> {
        let invoke = self.history.now();
        let version = self.with(resource, |f| {
            let fresh = token >= f.written;
            if fresh {
                f.highest = f.highest.max(token);
            }
            fresh.then_some(f.version)
        });
        if version.is_none() {
            let mut o = op(client, 0, OpKind::StoreRead, invoke);
            o.session = Some(session);
            o.resource = Some(resource.clone());
            o.fence_token = Some(token);
            o.complete = invoke;
            o.outcome = Outcome::Fail;
            o.error = Some("STALE_FENCE_TOKEN".into());
            self.history.record(o);
        }
        Some(Reading { version: version?, invoke })
    }

    /// The shared holder reads again at the end of its hold and records the read: failed
    /// (`WRITTEN_DURING_SHARED_HOLD`) if a write was accepted since `begin_read`.
    pub fn end_read(&self, client: &str, session: SessionId, resource: &Resource, token: FenceToken, began: Reading) {
        let version = self.with(resource, |f| f.version);
        let mut o = op(client, 0, OpKind::StoreRead, began.invoke);
        o.session = Some(session);
        o.resource = Some(resource.clone());
        o.fence_token = Some(token);
        o.complete = self.history.now();
        if version == began.version {
            o.outcome = Outcome::Ok;
        } else {
            o.outcome = Outcome::Fail;
            o.error = Some("WRITTEN_DURING_SHARED_HOLD".into());
        }
        self.history.record(o);
    }

    /// Writes under `token`; records the attempt; true if accepted.
    pub fn write(&self, client: &str, resource: &Resource, token: FenceToken) -> bool {
        let mut o = op(client, 0, OpKind::StoreWrite, self.history.now());
        o.resource = Some(resource.clone());
        o.fence_token = Some(token);
        let accepted = self.with(resource, |f| {
            let accepted = token >= f.highest;
            if accepted {
                (f.highest, f.written) = (token, token);
                f.version += 1;
            }
            accepted
        });
        o.complete = self.history.now();
        o.outcome = if accepted { Outcome::Ok } else { Outcome::Fail };
        if !accepted {
            o.error = Some("STALE_FENCE_TOKEN".into());
        }
        self.history.record(o);
        accepted
    }
}

/// Flags the run flips to stop the workload, in two steps.
#[derive(Default)]
struct Stops {
    /// Lock and churn clients finish their current step and stop.
    clients: AtomicBool,
    /// Keepers stop (after the final state was read, so held locks are still held).
    keepers: AtomicBool,
}

/// The running workload.
pub struct Workload {
    stops: Arc<Stops>,
    clients: Vec<JoinHandle<()>>,
    keepers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

struct Ctx {
    api: Api,
    store: Arc<FencedStore>,
    settings: Settings,
    stops: Arc<Stops>,
    keepers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Workload {
    pub fn start(api: Api, store: Arc<FencedStore>, settings: Settings) -> Workload {
        let stops = Arc::new(Stops::default());
        let keepers = Arc::new(Mutex::new(Vec::new()));
        let ctx =
            Arc::new(Ctx { api, store, settings: settings.clone(), stops: stops.clone(), keepers: keepers.clone() });
        let mut clients = Vec::new();
        for k in 0..settings.lock_clients {
            clients.push(tokio::spawn(lock_client(ctx.clone(), k)));
        }
        for k in 0..settings.churn_clients {
            clients.push(tokio::spawn(churn_client(ctx.clone(), k)));
        }
        for k in 0..settings.queue_clients {
            clients.push(tokio::spawn(queue_client(ctx.clone(), k)));
        }
        for k in 0..settings.shared_clients {
            clients.push(tokio::spawn(shared_client(ctx.clone(), k)));
        }
        Workload { stops, clients, keepers }
    }

    /// Stops the lock and churn clients and waits for their last attempts to complete.
    pub async fn stop_clients(&mut self) {
        self.stops.clients.store(true, Ordering::Relaxed);
        for c in self.clients.drain(..) {
            let _ = c.await;
        }
    }

    /// Stops the keepers and waits for them.
    pub async fn stop_keepers(&mut self) {
        self.stops.keepers.store(true, Ordering::Relaxed);
        let keepers: Vec<_> = self.keepers.lock().unwrap_or_else(|p| p.into_inner()).drain(..).collect();
        for k in keepers {
            let _ = k.await;
        }
    }
}

impl Ctx {
    fn stopping(&self) -> bool {
        self.stops.clients.load(Ordering::Relaxed)
    }

    fn random_node(&self, rng: &mut Rng) -> NodeId {
        rng.below(self.api.nodes() as u64) as NodeId + 1
    }
}

/// A session a lock client owns; `alive` goes false when the keeper learns it is gone or the
/// client deletes it.
struct Owned {
    id: SessionId,
    alive: Arc<AtomicBool>,
}

enum Acquired {
    Held(FenceToken),
    Busy,
    SessionGone,
    Stopped,
}

/// Opens a session, retrying until one is acknowledged; `None` if the run stops first.
async fn open_session(ctx: &Ctx, client: &str, rng: &mut Rng) -> Option<SessionId> {
    while !ctx.stopping() {
        let id = ctx.api.create_session(client, ctx.random_node(rng), ctx.settings.session_timeout).await;
        if id.is_some() {
            return id;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    None
}

async fn acquire(
    ctx: &Ctx,
    client: &str,
    session: SessionId,
    resource: &Resource,
    want: Want,
    rng: &mut Rng,
) -> Acquired {
    loop {
        let answer = ctx.api.acquire(client, ctx.random_node(rng), session, resource, want).await;
        // Not applied, or unknown: acquire is idempotent, so asking again tells.
        if let Some(acquired) = definite(&answer) {
            return acquired;
        }
        if ctx.stopping() {
            return Acquired::Stopped;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// What an acquire's answer says for certain: a grant, a refusal (409: held, the wait's
/// deadline, a full queue, a lock-delay, a mode or limit conflict), or the session gone; `None`
/// when it was not applied or its outcome is unknown.
fn definite(answer: &Answer) -> Option<Acquired> {
    match (answer.outcome, answer.status) {
        (Outcome::Ok, _) => Some(match answer.body["fence_token"].as_u64() {
            Some(t) => Acquired::Held(FenceToken(t)),
            None => Acquired::SessionGone,
        }),
        (Outcome::Fail, Some(409)) => Some(Acquired::Busy),
        (Outcome::Fail, Some(404 | 410)) => Some(Acquired::SessionGone),
        _ => None,
    }
}

/// Waits for `resource` in its queue for 1 s to `max_wait`, retrying an attempt without a
/// definite answer while the wait has time left (the retry keeps the place); one wait in
/// `CANCEL_ODDS` is abandoned early. When the client cannot know whether it was granted, it
/// finds out with `resolve`.
async fn wait_for(
    ctx: &Ctx,
    client: &str,
    session: SessionId,
    resource: &Resource,
    want: Want,
    rng: &mut Rng,
) -> Acquired {
    let wait = Duration::from_secs(1 + rng.below(ctx.settings.max_wait.max(1)));
    let cancel_at = rng.one_in(CANCEL_ODDS).then(|| Duration::from_millis(100 + rng.below(wait.as_millis() as u64)));
    let started = Instant::now();
    loop {
        let left = wait.saturating_sub(started.elapsed());
        let cancel_after = cancel_at.map(|at| at.saturating_sub(started.elapsed()));
        if cancel_after.is_some_and(|after| after.is_zero()) {
            // A retry went past the point where this wait is abandoned.
            return resolve(ctx, client, session, resource, want, wait, rng).await;
        }
        let wait_secs = left.as_secs_f64().ceil().max(1.0) as u64;
        let node = ctx.random_node(rng);
        let answer = ctx.api.acquire_wait(client, node, session, resource, want, wait_secs, cancel_after).await;
        if let Some(acquired) = definite(&answer) {
            return acquired;
        }
        if ctx.stopping() {
            return Acquired::Stopped;
        }
        if answer.error.as_deref() == Some("cancelled") || started.elapsed() >= wait {
            return resolve(ctx, client, session, resource, want, wait, rng).await;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// After a wait whose outcome the client does not know: waits until its session no longer
/// waits for `resource` (the cancel or the deadline took it out of the queue, or it was
/// granted), then asks with a try-lock, which answers 200 with the token if the wait was
/// granted. If the session still waits after `wait` and `RESOLVE_SLACK`, deletes it: a grant
/// the client did not know of would keep a hot lock for good.
async fn resolve(
    ctx: &Ctx,
    client: &str,
    session: SessionId,
    resource: &Resource,
    want: Want,
    wait: Duration,
    rng: &mut Rng,
) -> Acquired {
    let until = Instant::now() + wait + RESOLVE_SLACK;
    loop {
        if ctx.stopping() {
            return Acquired::Stopped;
        }
        if Instant::now() >= until {
            delete(ctx, client, session, rng).await;
            return Acquired::SessionGone;
        }
        match ctx.api.get(ctx.random_node(rng), &format!("/sessions/{session}"), KEEPALIVE_TIMEOUT).await {
            Some((404 | 410, _)) => return Acquired::SessionGone,
            Some((200, body)) if body["is_expired"] == true => return Acquired::SessionGone,
            Some((200, body)) => {
                let waiting = body["waiting_for"]
                    .as_array()
                    .is_some_and(|rs| rs.iter().any(|r| r.as_str() == Some(resource.as_str())));
                if !waiting {
                    break;
                }
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    acquire(ctx, client, session, resource, want, rng).await
}

/// Releases until the answer is definite. Returns false if the session turned out to be gone.
async fn release(
    ctx: &Ctx,
    client: &str,
    session: SessionId,
    resource: &Resource,
    token: FenceToken,
    rng: &mut Rng,
) -> bool {
    loop {
        let answer = ctx.api.release(client, ctx.random_node(rng), session, resource, token).await;
        match (answer.outcome, answer.status, answer.code()) {
            (Outcome::Ok, _, _) => return true,
            // An earlier attempt whose answer was lost did it.
            (Outcome::Fail, Some(404), "LOCK_NOT_HELD") | (Outcome::Fail, Some(409), _) => return true,
            (Outcome::Fail, Some(404 | 410), _) => return false,
            _ => {}
        }
        if ctx.stopping() {
            return true;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Deletes until the answer is definite (200, or 404 once an earlier attempt did it).
async fn delete(ctx: &Ctx, client: &str, session: SessionId, rng: &mut Rng) {
    loop {
        let answer = ctx.api.delete_session(client, ctx.random_node(rng), session, WRITE_TIMEOUT).await;
        if answer.outcome == Outcome::Ok || answer.status == Some(404) || ctx.stopping() {
            return;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Keeps `session` alive until it is gone or the run stops the keepers.
async fn keeper(ctx: Arc<Ctx>, name: String, session: SessionId, alive: Arc<AtomicBool>, mut rng: Rng) {
    let mut node = ctx.random_node(&mut rng);
    let mut next = Instant::now() + ctx.settings.keepalive_every;
    loop {
        while Instant::now() < next {
            if !alive.load(Ordering::Relaxed) || ctx.stops.keepers.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep((next - Instant::now()).min(Duration::from_millis(100))).await;
        }
        if !alive.load(Ordering::Relaxed) || ctx.stops.keepers.load(Ordering::Relaxed) {
            return;
        }
        let sent = Instant::now();
        let answer = ctx.api.keepalive(&name, node, session).await;
        match (answer.outcome, answer.status) {
            (Outcome::Ok, _) => next = sent + ctx.settings.keepalive_every,
            (Outcome::Fail, Some(404 | 410)) => {
                alive.store(false, Ordering::Relaxed);
                return;
            }
            _ => {
                node = node % ctx.api.nodes() + 1;
                next = Instant::now() + RETRY_PAUSE;
            }
        }
    }
}

/// The session in `owned` if it is alive, else a new one with a keeper of its own (`None` if
/// the run stops first).
async fn kept_session(
    ctx: &Arc<Ctx>,
    client: &str,
    keeper_name: &str,
    owned: &mut Option<Owned>,
    rng: &mut Rng,
) -> Option<SessionId> {
    if let Some(o) = owned.as_ref().filter(|o| o.alive.load(Ordering::Relaxed)) {
        return Some(o.id);
    }
    let id = open_session(ctx, client, rng).await?;
    let alive = Arc::new(AtomicBool::new(true));
    let keeper_rng = Rng::derive(ctx.settings.seed, 1000 + rng.next() % 1_000_000);
    let task = tokio::spawn(keeper(ctx.clone(), keeper_name.to_string(), id, alive.clone(), keeper_rng));
    ctx.keepers.lock().unwrap_or_else(|p| p.into_inner()).push(task);
    *owned = Some(Owned { id, alive });
    Some(id)
}

async fn lock_client(ctx: Arc<Ctx>, k: usize) {
    let name = format!("lock-{k}");
    let waits = k < ctx.settings.waiting_clients;
    let mut rng = Rng::derive(ctx.settings.seed, 100 + k as u64);
    let mut owned: Option<Owned> = None;
    while !ctx.stopping() {
        let Some(session) = kept_session(&ctx, &name, &format!("keeper-{k}"), &mut owned, &mut rng).await else {
            break;
        };
        let resource = rng.pick(&ctx.settings.resources).clone();
        let acquired = if waits {
            wait_for(&ctx, &name, session, &resource, Want::EXCLUSIVE, &mut rng).await
        } else {
            acquire(&ctx, &name, session, &resource, Want::EXCLUSIVE, &mut rng).await
        };
        match acquired {
            Acquired::Held(token) => {
                ctx.store.write(&name, &resource, token);
                let hold = if rng.one_in(LONG_HOLD_ODDS) {
                    LONG_HOLD.0 + Duration::from_millis(rng.below((LONG_HOLD.1 - LONG_HOLD.0).as_millis() as u64))
                } else {
                    Duration::from_millis(5 + rng.below(20))
                };
                tokio::time::sleep(hold).await;
                ctx.store.write(&name, &resource, token);
                if rng.one_in(STALL_ODDS) {
                    if let Some(o) = owned.take() {
                        o.alive.store(false, Ordering::Relaxed);
                        let wake = Instant::now() + Duration::from_secs(ctx.settings.session_timeout + 2);
                        while Instant::now() < wake && !ctx.stopping() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        // The zombie write: fenced off if the lock has been granted again.
                        ctx.store.write(&name, &resource, token);
                    }
                } else if rng.one_in(SESSION_END_ODDS) {
                    // End the session while holding the lock: the delete releases it.
                    if let Some(o) = owned.take() {
                        o.alive.store(false, Ordering::Relaxed);
                        delete(&ctx, &name, o.id, &mut rng).await;
                    }
                } else if !release(&ctx, &name, session, &resource, token, &mut rng).await {
                    if let Some(o) = &owned {
                        o.alive.store(false, Ordering::Relaxed);
                    }
                }
            }
            Acquired::Busy => tokio::time::sleep(Duration::from_millis(5 + rng.below(25))).await,
            Acquired::SessionGone => {
                if let Some(o) = &owned {
                    o.alive.store(false, Ordering::Relaxed);
                }
            }
            Acquired::Stopped => break,
        }
    }
}

/// What a shared client does in one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// An exclusive grant of `RW_RESOURCE`: writes the fenced store twice, as lock clients do.
    Writer,
    /// A shared grant of `RW_RESOURCE`: reads the fenced store at the start and the end of the
    /// hold, which must see no write in between.
    Reader,
    /// A permit of `SEMAPHORE` (shared, with its limit): held for a while.
    Permit,
}

/// One in this many rounds of a shared client writes; of the others, about half read and
/// half take a permit.
const WRITER_ODDS: u64 = 4;

/// A client of shared locks, with a kept-alive session like a lock client's: each round it
/// writes `RW_RESOURCE` (exclusive), reads it (shared), or takes a permit of `SEMAPHORE`
/// (shared, `semaphore_limit`), by a try-lock or, one round in two, by waiting in the queue (with
/// the same cancels and `resolve` as waiting lock clients). Readers and permits hold for
/// 20-220 ms, so that several hold at once and writers queue behind them; one hold in
/// `LONG_HOLD_ODDS` lasts a second or two. Then it releases, or now and then deletes its session.
async fn shared_client(ctx: Arc<Ctx>, k: usize) {
    let name = format!("shared-{k}");
    let mut rng = Rng::derive(ctx.settings.seed, 900 + k as u64);
    let mut owned: Option<Owned> = None;
    let (rw, semaphore) = (Settings::rw_resource(), Settings::semaphore());
    while !ctx.stopping() {
        let Some(session) = kept_session(&ctx, &name, &format!("keeper-s{k}"), &mut owned, &mut rng).await else {
            break;
        };
        let role = if rng.one_in(WRITER_ODDS) {
            Role::Writer
        } else if rng.one_in(2) {
            Role::Reader
        } else {
            Role::Permit
        };
        let (resource, want) = match role {
            Role::Writer => (&rw, Want::EXCLUSIVE),
            Role::Reader => (&rw, Want::SHARED),
            Role::Permit => (&semaphore, Want::permit(ctx.settings.semaphore_limit)),
        };
        let acquired = if rng.one_in(2) {
            wait_for(&ctx, &name, session, resource, want, &mut rng).await
        } else {
            acquire(&ctx, &name, session, resource, want, &mut rng).await
        };
        match acquired {
            Acquired::Held(token) => {
                let hold = if rng.one_in(LONG_HOLD_ODDS) {
                    LONG_HOLD.0 + Duration::from_millis(rng.below((LONG_HOLD.1 - LONG_HOLD.0).as_millis() as u64))
                } else if role == Role::Writer {
                    Duration::from_millis(5 + rng.below(20))
                } else {
                    Duration::from_millis(20 + rng.below(200))
                };
                match role {
                    Role::Writer => {
                        ctx.store.write(&name, resource, token);
                        tokio::time::sleep(hold).await;
                        ctx.store.write(&name, resource, token);
                    }
                    Role::Reader => {
                        let began = ctx.store.begin_read(&name, session, resource, token);
                        tokio::time::sleep(hold).await;
                        if let Some(began) = began {
                            ctx.store.end_read(&name, session, resource, token, began);
                        }
                    }
                    Role::Permit => tokio::time::sleep(hold).await,
                }
                if rng.one_in(SESSION_END_ODDS) {
                    if let Some(o) = owned.take() {
                        o.alive.store(false, Ordering::Relaxed);
                        delete(&ctx, &name, o.id, &mut rng).await;
                    }
                } else if !release(&ctx, &name, session, resource, token, &mut rng).await {
                    if let Some(o) = &owned {
                        o.alive.store(false, Ordering::Relaxed);
                    }
                }
            }
            Acquired::Busy => tokio::time::sleep(Duration::from_millis(5 + rng.below(25))).await,
            Acquired::SessionGone => {
                if let Some(o) = &owned {
                    o.alive.store(false, Ordering::Relaxed);
                }
            }
            Acquired::Stopped => break,
        }
    }
}

/// A queue of two on `resource`, which nobody else uses: session `holder` takes it, session
/// `waiter` waits 3 s to `max_wait` for it (abandoning it within a second, one time in two), and
/// at a random moment up to 3 s past the waiter's deadline the holder releases it or is
/// deleted, or the waiter is deleted and then the holder releases. Then the waiter finds out
/// what it got and both sessions are deleted.
async fn queue_scenario(ctx: &Ctx, client: &str, resource: &Resource, rng: &mut Rng) {
    let timeout = ctx.settings.session_timeout;
    let Some(holder) = ctx.api.create_session(client, ctx.random_node(rng), timeout).await else { return };
    let Some(waiter) = ctx.api.create_session(client, ctx.random_node(rng), timeout).await else {
        delete(ctx, client, holder, rng).await;
        return;
    };
    if let Acquired::Held(token) = acquire(ctx, client, holder, resource, Want::EXCLUSIVE, rng).await {
        ctx.store.write(client, resource, token);
        let wait = 3 + rng.below(ctx.settings.max_wait.max(3) - 2);
        // Early, so that the cancel (2 s after the disconnect) usually comes before the deadline.
        let cancel_after = rng.one_in(2).then(|| Duration::from_millis(100 + rng.below(900)));
        let (api, name, node, r) = (ctx.api.clone(), client.to_string(), ctx.random_node(rng), resource.clone());
        let waiting = tokio::spawn(async move {
            api.acquire_wait(&name, node, waiter, &r, Want::EXCLUSIVE, wait, cancel_after).await
        });
        // Up to 3 s past the deadline: long enough for a cancel (2 s after the disconnect) too.
        tokio::time::sleep(Duration::from_millis(200 + rng.below(wait * 1000 + 3000))).await;
        match rng.below(4) {
            0 => delete(ctx, client, holder, rng).await,
            1 => {
                // The waiter's session ends first: its wait with it.
                delete(ctx, client, waiter, rng).await;
                release(ctx, client, holder, resource, token, rng).await;
            }
            _ => {
                release(ctx, client, holder, resource, token, rng).await;
            }
        }
        let answer = waiting.await.ok();
        let granted = match answer {
            Some(a) if a.outcome == Outcome::Ok => a.body["fence_token"].as_u64().map(FenceToken),
            Some(a) if a.outcome == Outcome::Fail => None,
            // Abandoned or lost: did the grant come first?
            _ => match resolve(ctx, client, waiter, resource, Want::EXCLUSIVE, Duration::from_secs(wait), rng).await {
                Acquired::Held(token) => Some(token),
                _ => None,
            },
        };
        if let Some(token) = granted {
            ctx.store.write(client, resource, token);
        }
    }
    delete(ctx, client, waiter, rng).await;
    delete(ctx, client, holder, rng).await;
}

async fn churn_client(ctx: Arc<Ctx>, k: usize) {
    let name = format!("churn-{k}");
    let mut rng = Rng::derive(ctx.settings.seed, 500 + k as u64);
    while !ctx.stopping() {
        let created = ctx.api.create_session(&name, ctx.random_node(&mut rng), ctx.settings.session_timeout).await;
        if let Some(session) = created {
            let mut may_hold = false;
            if rng.one_in(2) {
                let resource = rng.pick(&ctx.settings.resources).clone();
                let node = ctx.random_node(&mut rng);
                let answer = ctx.api.acquire(&name, node, session, &resource, Want::EXCLUSIVE).await;
                may_hold = answer.outcome != Outcome::Fail;
                if let (Outcome::Ok, Some(t)) = (answer.outcome, answer.body["fence_token"].as_u64()) {
                    ctx.store.write(&name, &resource, FenceToken(t));
                }
            }
            // Only a session that holds nothing is left to expire: a hot lock stuck for a whole
            // timeout is what stalled lock clients already do, and more of it starves the run.
            if may_hold || !rng.one_in(ABANDON_ODDS) {
                delete(&ctx, &name, session, &mut rng).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(50 + rng.below(150))).await;
    }
}

/// Waits for a hot resource with a session of its own, and deletes the session while the wait
/// may still be open: the session's end must take it out of the queue. A grant that came first
/// is not used; the delete releases it.
async fn wait_and_end(ctx: &Ctx, client: &str, rng: &mut Rng) {
    let Some(session) = ctx.api.create_session(client, ctx.random_node(rng), ctx.settings.session_timeout).await else {
        return;
    };
    let resource = rng.pick(&ctx.settings.resources).clone();
    let wait = 1 + rng.below(ctx.settings.max_wait.max(1));
    let (api, name, node) = (ctx.api.clone(), client.to_string(), ctx.random_node(rng));
    let waiting =
        tokio::spawn(
            async move { api.acquire_wait(&name, node, session, &resource, Want::EXCLUSIVE, wait, None).await },
        );
    tokio::time::sleep(Duration::from_millis(100 + rng.below(wait * 1000))).await;
    delete(ctx, client, session, rng).await;
    let _ = waiting.await;
}

async fn queue_client(ctx: Arc<Ctx>, k: usize) {
    let name = format!("queue-{k}");
    let own = Settings::queue_resource(k);
    let mut rng = Rng::derive(ctx.settings.seed, 700 + k as u64);
    while !ctx.stopping() {
        if rng.one_in(WAIT_AND_END_ODDS) {
            wait_and_end(&ctx, &name, &mut rng).await;
        } else {
            queue_scenario(&ctx, &name, &own, &mut rng).await;
        }
        tokio::time::sleep(Duration::from_millis(50 + rng.below(150))).await;
    }
}

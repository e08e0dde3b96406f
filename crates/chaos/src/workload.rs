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
//! - Churn clients open short sessions without keepalives, sometimes take a lock, and delete
//!   them, or now and then leave one that holds nothing to expire.
//!
//! A client retries an attempt whose outcome it cannot know until it gets a definite answer
//! (acquire is idempotent, release answers `LOCK_NOT_HELD` once done), so it always knows what
//! it holds. Every loop ends when the run tells it to stop; requests have client time-outs.

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

/// What the workload does; see the module docs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seed: u64,
    pub lock_clients: usize,
    pub churn_clients: usize,
    pub resources: Vec<Resource>,
    /// Session timeout, seconds.
    pub session_timeout: u64,
    pub keepalive_every: Duration,
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
    async fn send(&self, node: NodeId, method: reqwest::Method, path: &str, body: Option<Value>, timeout: Duration) -> Answer {
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
                return Answer { outcome, status: Some(status), body: Value::Null, error: Some("unreadable body".into()) };
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
    async fn attempt(&self, mut op: Op, method: reqwest::Method, path: &str, body: Option<Value>, timeout: Duration) -> Answer {
        let answer = self.send(op.node, method, path, body, timeout).await;
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
    pub async fn create_anywhere(&self, client: &str, timeout_secs: u64, within: Duration, pause: Duration) -> Option<(SessionId, NodeId, Duration)> {
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

    pub async fn acquire(&self, client: &str, node: NodeId, session: SessionId, resource: &Resource) -> Answer {
        let mut o = op(client, node, OpKind::Acquire, self.history.now());
        o.session = Some(session);
        o.resource = Some(resource.clone());
        let path = format!("/sessions/{session}/locks/{resource}");
        self.attempt(o, reqwest::Method::POST, &path, None, WRITE_TIMEOUT).await
    }

    pub async fn release(&self, client: &str, node: NodeId, session: SessionId, resource: &Resource, token: FenceToken) -> Answer {
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
/// highest it has accepted. It is what a lock protects in a real application.
pub struct FencedStore {
    /// A std mutex: held only to compare and store, never across an await.
    highest: Mutex<HashMap<Resource, FenceToken>>,
    history: History,
}

impl FencedStore {
    pub fn new(history: History) -> FencedStore {
        FencedStore { highest: Mutex::new(HashMap::new()), history }
    }

    /// Writes under `token`; records the attempt; true if accepted.
    pub fn write(&self, client: &str, resource: &Resource, token: FenceToken) -> bool {
        let mut o = op(client, 0, OpKind::StoreWrite, self.history.now());
        o.resource = Some(resource.clone());
        o.fence_token = Some(token);
        let accepted = {
            let mut highest = self.highest.lock().unwrap_or_else(|p| p.into_inner());
            let top = highest.entry(resource.clone()).or_insert(FenceToken(0));
            let accepted = token >= *top;
            if accepted {
                *top = token;
            }
            accepted
        };
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
        let ctx = Arc::new(Ctx { api, store, settings: settings.clone(), stops: stops.clone(), keepers: keepers.clone() });
        let mut clients = Vec::new();
        for k in 0..settings.lock_clients {
            clients.push(tokio::spawn(lock_client(ctx.clone(), k)));
        }
        for k in 0..settings.churn_clients {
            clients.push(tokio::spawn(churn_client(ctx.clone(), k)));
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

async fn acquire(ctx: &Ctx, client: &str, session: SessionId, resource: &Resource, rng: &mut Rng) -> Acquired {
    loop {
        let answer = ctx.api.acquire(client, ctx.random_node(rng), session, resource).await;
        match (answer.outcome, answer.status) {
            (Outcome::Ok, _) => match answer.body["fence_token"].as_u64() {
                Some(t) => return Acquired::Held(FenceToken(t)),
                None => return Acquired::SessionGone,
            },
            (Outcome::Fail, Some(409)) => return Acquired::Busy,
            (Outcome::Fail, Some(404 | 410)) => return Acquired::SessionGone,
            // Not applied, or unknown: acquire is idempotent, so asking again tells.
            _ => {}
        }
        if ctx.stopping() {
            return Acquired::Stopped;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Releases until the answer is definite. Returns false if the session turned out to be gone.
async fn release(ctx: &Ctx, client: &str, session: SessionId, resource: &Resource, token: FenceToken, rng: &mut Rng) -> bool {
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

async fn lock_client(ctx: Arc<Ctx>, k: usize) {
    let name = format!("lock-{k}");
    let mut rng = Rng::derive(ctx.settings.seed, 100 + k as u64);
    let mut owned: Option<Owned> = None;
    while !ctx.stopping() {
        let session = match &owned {
            Some(o) if o.alive.load(Ordering::Relaxed) => o.id,
            _ => {
                let Some(id) = open_session(&ctx, &name, &mut rng).await else { break };
                let alive = Arc::new(AtomicBool::new(true));
                let keeper_rng = Rng::derive(ctx.settings.seed, 1000 + rng.next() % 1_000_000);
                let task = tokio::spawn(keeper(ctx.clone(), format!("keeper-{k}"), id, alive.clone(), keeper_rng));
                ctx.keepers.lock().unwrap_or_else(|p| p.into_inner()).push(task);
                owned = Some(Owned { id, alive });
                id
            }
        };
        let resource = rng.pick(&ctx.settings.resources).clone();
        match acquire(&ctx, &name, session, &resource, &mut rng).await {
            Acquired::Held(token) => {
                ctx.store.write(&name, &resource, token);
                tokio::time::sleep(Duration::from_millis(5 + rng.below(20))).await;
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

async fn churn_client(ctx: Arc<Ctx>, k: usize) {
    let name = format!("churn-{k}");
    let mut rng = Rng::derive(ctx.settings.seed, 500 + k as u64);
    while !ctx.stopping() {
        let created = ctx.api.create_session(&name, ctx.random_node(&mut rng), ctx.settings.session_timeout).await;
        if let Some(session) = created {
            let mut may_hold = false;
            if rng.one_in(2) {
                let resource = rng.pick(&ctx.settings.resources).clone();
                let answer = ctx.api.acquire(&name, ctx.random_node(&mut rng), session, &resource).await;
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

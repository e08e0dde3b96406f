//! `Client`: a handle on a cluster given as a list of endpoints, with one method per route of
//! the HTTP contract (http-api.md), each returning domain values or an `Error`. Sessions with
//! background keepalives are in `session`; this module makes single calls.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use lockio_core::{ClientId, FenceToken, Limit, LockValue, Mode, Resource, SessionId, Stats, Timeout};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::body::Fields;
use crate::endpoints::{Endpoint, Endpoints};
use crate::retry::Safety;
use crate::session::Session;
use crate::transport::{Answer, Budget, Request, Settings, Transport};
use crate::wait::{call_time, lock_delay_secs, wait_secs};
use crate::watch::{EventId, Watch};
use crate::Error;

/// A lock.io cluster, reached through any of its endpoints.
///
/// Cheap to clone (an `Arc`); clones share connections and what they learned about the leader.
/// Those connections belong to the tokio runtime that opened them, so give each runtime its
/// own `Client`: a clone used from a second runtime can hang on a connection whose first
/// runtime is blocked or gone.
/// Every call tries the preferred endpoint first (the leader, once known, else the last one
/// that answered), then the others; calls that are safe to repeat are retried on 503 and
/// connection errors with bounded backoff. A session create is never repeated when its outcome
/// is unknown.
///
/// ```no_run
/// # async fn demo() -> Result<(), lockio_client::Error> {
/// use lockio_client::Client;
///
/// let client = Client::new(["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"])?;
/// let stats = client.stats().await?;
/// println!("{} active sessions, {} locks held", stats.active_sessions, stats.total_locks);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    transport: Arc<Transport>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("endpoints", &self.endpoints()).finish()
    }
}

/// Builds a [`Client`] with other than the default timeouts.
///
/// ```
/// use std::time::Duration;
/// use lockio_client::Client;
///
/// let client = Client::builder(["127.0.0.1:5000", "127.0.0.1:5001"])
///     .retry_budget(Duration::from_secs(5))
///     .build()
///     .unwrap();
/// assert_eq!(client.endpoints(), ["127.0.0.1:5000", "127.0.0.1:5001"]);
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    endpoints: Vec<String>,
    settings: Settings,
}

impl ClientBuilder {
    /// How long one HTTP request may take. Default 10 s: longer than a node's own request
    /// deadline (5 s by default), so that a node without a quorum answers 503 before the
    /// client gives up on it.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.settings.request_timeout = timeout;
        self
    }

    /// How long opening a connection may take before the next endpoint is tried. Default 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// How long one call may keep retrying across endpoints before it fails with
    /// [`Error::Unavailable`]. Default 20 s.
    pub fn retry_budget(mut self, budget: Duration) -> Self {
        self.settings.retry_budget = budget;
        self
    }

    /// How many rounds over all endpoints one call may make (backing off 250 ms, 500 ms, 1 s,
    /// 2 s, 2 s, ... between rounds). Default 4; at least 1.
    pub fn rounds(mut self, rounds: u32) -> Self {
        self.settings.rounds = rounds.max(1);
        self
    }

    /// Checks the endpoints (`host:port` or `http://host:port`) and makes the client. Makes no
    /// request.
    pub fn build(self) -> Result<Client, Error> {
        let endpoints = Endpoints::parse(&self.endpoints)?;
        Ok(Client { transport: Arc::new(Transport::new(endpoints, self.settings)?) })
    }
}

impl Client {
    /// A client with the default timeouts; see [`ClientBuilder`].
    pub fn new<I, S>(endpoints: I) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Client::builder(endpoints).build()
    }

    pub fn builder<I, S>(endpoints: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        ClientBuilder {
            endpoints: endpoints.into_iter().map(|s| s.as_ref().to_string()).collect(),
            settings: Settings {
                request_timeout: Duration::from_secs(10),
                connect_timeout: Duration::from_secs(2),
                retry_budget: Duration::from_secs(20),
                rounds: 4,
            },
        }
    }

    /// The endpoints as `host:port`, in the order given.
    pub fn endpoints(&self) -> Vec<String> {
        self.transport.endpoints.all().iter().map(|e| e.authority.clone()).collect()
    }

    /// Opens a session that keeps itself alive in the background; see [`Session`].
    ///
    /// `timeout` is whole seconds from 5 to 3600: how long the cluster keeps the session (and
    /// its locks) without hearing a keepalive.
    pub async fn open_session(&self, client_id: &str, timeout: Duration) -> Result<Session, Error> {
        Session::open(self.clone(), client_id, timeout, Duration::ZERO).await
    }

    /// [`open_session`](Client::open_session) with a lock-delay: whole seconds from 0 to 60
    /// for which each lock the session holds stays unavailable to others if the session
    /// **expires** (not when it is closed or a lock is released), so that a holder that is cut
    /// off but still working has time to notice before the next holder starts.
    pub async fn open_session_with_lock_delay(
        &self,
        client_id: &str,
        timeout: Duration,
        lock_delay: Duration,
    ) -> Result<Session, Error> {
        Session::open(self.clone(), client_id, timeout, lock_delay).await
    }

    pub(crate) fn transport(&self) -> &Arc<Transport> {
        &self.transport
    }

    async fn send(&self, request: Request) -> Result<Answer, Error> {
        self.send_within(request, self.transport.budget()).await
    }

    /// Sends a removal (delete a session, release a lock). If an earlier attempt may have been
    /// applied and the cluster then answers with an error that `gone` says means "already
    /// removed", that is the state asked for, so it is `Ok`.
    async fn send_removal(&self, request: Request, gone: fn(&Error) -> bool) -> Result<(), Error> {
        let answer = self.transport.send(&request, self.transport.budget()).await?;
        let repeated = answer.after_maybe_applied;
        match answer.into_result() {
            Err(e) if !(repeated && gone(&e)) => Err(e),
            _ => Ok(()),
        }
    }

    pub(crate) async fn send_within(&self, request: Request, budget: Budget) -> Result<Answer, Error> {
        self.transport.send(&request, budget).await?.into_result()
    }

    /// `POST /sessions`: creates a session, with no keepalives sent for it. Never repeated once
    /// it may have reached the cluster (a repeat would create a second session).
    pub async fn create_session(&self, client_id: &str, timeout: Duration) -> Result<SessionCreated, Error> {
        self.create_session_with_lock_delay(client_id, timeout, Duration::ZERO).await
    }

    /// [`create_session`](Client::create_session) with a lock-delay (whole seconds, 0 to 60);
    /// see [`open_session_with_lock_delay`](Client::open_session_with_lock_delay).
    pub async fn create_session_with_lock_delay(
        &self,
        client_id: &str,
        timeout: Duration,
        lock_delay: Duration,
    ) -> Result<SessionCreated, Error> {
        let client_id = ClientId::new(client_id)?;
        let timeout = timeout_secs(timeout)?;
        let lock_delay = lock_delay_secs(lock_delay)?;
        let mut request = Request::new(Method::POST, &["sessions"], Safety::AtMostOnce);
        let mut body = json!({"client_id": client_id.as_str(), "timeout": timeout.secs()});
        // Sent only when asked for, so a server without lock-delays still takes the default.
        if lock_delay > 0 {
            body["lock_delay"] = lock_delay.into();
        }
        request.body = Some(body);
        let answer = self.send(request).await?;
        read(&answer, |f| {
            Ok(SessionCreated {
                session_id: f.session_id("session_id")?,
                client_id: f.client_id("client_id")?,
                timeout: Duration::from_secs(f.u64("timeout")?),
                keepalive_interval: Duration::from_secs(f.u64("keepalive_interval")?),
                // The create answer need not repeat it; the server took what was asked.
                lock_delay: match f.0["lock_delay"].as_u64() {
                    Some(secs) => Duration::from_secs(secs),
                    None => Duration::from_secs(lock_delay),
                },
            })
        })
    }

    /// `GET /sessions/{id}`.
    pub async fn session_info(&self, session_id: SessionId) -> Result<SessionInfo, Error> {
        let answer =
            self.send(Request::new(Method::GET, &["sessions", &session_id.to_string()], Safety::Repeatable)).await?;
        read(&answer, |f| {
            Ok(SessionInfo {
                session_id: f.session_id("session_id")?,
                client_id: f.client_id("client_id")?,
                created_at: f.time("created_at")?,
                last_keepalive: f.time("last_keepalive")?,
                timeout: Duration::from_secs(f.u64("timeout")?),
                keepalive_interval: Duration::from_secs(f.u64("keepalive_interval")?),
                locks_held: f.resources("locks_held")?,
                expires_in: f.secs("expires_in")?,
                expired_at: f.opt_time("expired_at")?,
                lock_delay: Duration::from_secs(f.count("lock_delay")?),
                waiting_for: f.list("waiting_for", |r| {
                    Resource::new(r.0.as_str().unwrap_or_default()).map_err(|e| e.to_string())
                })?,
            })
        })
    }

    /// `POST /sessions/{id}/keepalive`: one keepalive (a [`Session`] sends them by itself).
    pub async fn keepalive(&self, session_id: SessionId) -> Result<KeepaliveAck, Error> {
        self.keepalive_within(session_id, self.transport.budget()).await
    }

    pub(crate) async fn keepalive_within(&self, session_id: SessionId, budget: Budget) -> Result<KeepaliveAck, Error> {
        let request =
            Request::new(Method::POST, &["sessions", &session_id.to_string(), "keepalive"], Safety::Repeatable);
        let answer = self.send_within(request, budget).await?;
        read(&answer, |f| {
            Ok(KeepaliveAck {
                session_id: f.session_id("session_id")?,
                timeout: Duration::from_secs(f.u64("timeout")?),
                expires_in: f.secs("expires_in")?,
            })
        })
    }

    /// `DELETE /sessions/{id}`: ends the session and releases its locks. If an earlier attempt
    /// may have been applied and the cluster then says the session does not exist, that is the
    /// state asked for, so it is `Ok`.
    pub async fn delete_session(&self, session_id: SessionId) -> Result<(), Error> {
        let request = Request::new(Method::DELETE, &["sessions", &session_id.to_string()], Safety::Repeatable);
        self.send_removal(request, |e| matches!(e, Error::SessionNotFound { .. })).await
    }

    /// `GET /sessions/{id}/locks`: the resources the session holds.
    pub async fn session_locks(&self, session_id: SessionId) -> Result<Vec<Resource>, Error> {
        let request = Request::new(Method::GET, &["sessions", &session_id.to_string(), "locks"], Safety::Repeatable);
        let answer = self.send(request).await?;
        read(&answer, |f| f.resources("locks"))
    }

    /// `POST /sessions/{id}/locks/{resource}`: try-lock. `Ok` with the grant (a new one, or the
    /// one this session already has); [`Error::LockHeld`] names the holder,
    /// [`Error::LockDelayed`] says until when a lock-delay keeps it. Safe to repeat.
    pub async fn acquire(&self, session_id: SessionId, resource: &str) -> Result<Grant, Error> {
        self.acquire_with(session_id, resource, &LockOptions::default()).await
    }

    /// `POST /sessions/{id}/locks/{resource}` with `{"wait": S}`: waits in the resource's queue,
    /// in arrival order, until the lock is granted (`Ok`, with how long it took in
    /// [`Grant::waited`]) or `wait` has passed ([`Error::LockHeld`], with `waited`). `wait` is
    /// whole seconds from 0 to 300; 0 is a try-lock.
    ///
    /// The request stays open while it waits, with an HTTP timeout of `wait` plus the request
    /// timeout. A broken connection or a 503 (a leader change, a node going away) is followed at
    /// once by the same request with the time that is left, which the cluster takes as the same
    /// waiter in the same place; the call never gives its place up while time remains. Once
    /// the time is over, one more try-lock tells whether the grant came first.
    ///
    /// Dropping the returned future closes the connection, which cancels the wait (the cluster
    /// removes the waiter unless the same request arrives within 2 s). If the grant happened
    /// just before, this session holds the lock; [`Session::lock_wait`] cleans that up itself,
    /// a caller of this method has to release it.
    pub async fn acquire_wait(&self, session_id: SessionId, resource: &str, wait: Duration) -> Result<Grant, Error> {
        self.acquire_with(session_id, resource, &LockOptions::default().wait(wait)).await
    }

    /// `POST /sessions/{id}/locks/{resource}` with the [`LockOptions`]: a mode (shared, with a
    /// semaphore's `limit`, or exclusive), a `value` stored with the grant, and a `wait` in the
    /// queue as in [`acquire_wait`](Client::acquire_wait). Besides the errors of `acquire`:
    /// [`Error::ModeConflict`] when this session holds or waits for the resource in the other
    /// mode, [`Error::LimitMismatch`] when a shared request names another limit than the
    /// resource's. Values are checked before anything is sent.
    pub async fn acquire_with(
        &self,
        session_id: SessionId,
        resource: &str,
        options: &LockOptions,
    ) -> Result<Grant, Error> {
        let resource = Resource::new(resource)?;
        let body = options.body()?;
        let wait = wait_secs(options.wait)?;
        let mut request = acquire_request(session_id, &resource);
        // Only what differs from a plain exclusive try-lock is sent, so a plain acquire stays
        // the seed's bodiless request.
        if body.as_object().is_some_and(|b| !b.is_empty()) {
            request.body = Some(body);
        }
        if wait == 0 {
            let answer = self.send(request).await?;
            return grant(&answer, options);
        }
        let start = Instant::now();
        request.wait_until = Some(start + options.wait);
        let settings = self.transport.settings;
        let budget = Budget {
            deadline: start + call_time(options.wait, settings.request_timeout, settings.retry_budget),
            rounds: u32::MAX,
        };
        let answer = self.send_within(request, budget).await?;
        grant(&answer, options)
    }

    /// `DELETE /sessions/{id}/locks/{resource}` with the grant's token. If an earlier attempt
    /// may have been applied and the cluster then says the lock is not held, it is `Ok`.
    pub async fn release(&self, session_id: SessionId, resource: &str, fence_token: FenceToken) -> Result<(), Error> {
        let resource = Resource::new(resource)?;
        let mut request = Request::new(
            Method::DELETE,
            &["sessions", &session_id.to_string(), "locks", resource.as_str()],
            Safety::Repeatable,
        );
        request.query.push(("fence_token", fence_token.0.to_string()));
        self.send_removal(request, |e| matches!(e, Error::LockNotHeld { .. })).await
    }

    /// `GET /admin/locks/{resource}`: who holds it (every holder of a shared lock, with its
    /// value), in which mode, and who waits for it.
    pub async fn lock_status(&self, resource: &str) -> Result<LockStatus, Error> {
        let resource = Resource::new(resource)?;
        let answer =
            self.send(Request::new(Method::GET, &["admin", "locks", resource.as_str()], Safety::Repeatable)).await?;
        read(&answer, |f| {
            let locked = f.bool("locked")?;
            let mut holders = f.list("holders", holder)?;
            // A server without shared locks names its one holder only at the top level.
            if locked && holders.is_empty() {
                holders.push(holder(f)?);
            }
            let waiters = f.list("waiters", |w| {
                Ok(Waiter {
                    session_id: w.session_id("session_id")?,
                    client_id: w.client_id("client_id")?,
                    mode: opt_mode(w)?.unwrap_or_default(),
                    limit: w.opt_u64("limit")?,
                    since: w.time("since")?,
                    deadline: w.time("deadline")?,
                })
            })?;
            Ok(LockStatus {
                resource: f.resource("resource")?,
                holder: if locked { holders.first().cloned() } else { None },
                mode: if locked { Some(opt_mode(f)?.unwrap_or_default()) } else { None },
                limit: f.opt_u64("limit")?,
                holders_count: if f.0["holders_count"].is_null() {
                    holders.len() as u64
                } else {
                    f.u64("holders_count")?
                },
                holders,
                queue_length: if f.0["queue_length"].is_null() { waiters.len() as u64 } else { f.u64("queue_length")? },
                waiters,
                delayed_until: f.opt_time("delayed_until")?,
            })
        })
    }

    /// `POST /fence/check`: whether `fence_token` is the token of a current holder of
    /// `resource` (a linearizable read), for a service that is handed a token and cannot keep
    /// its own record of the highest one. `Ok` either way; [`FenceCheck::valid`] says which.
    pub async fn fence_check(&self, resource: &str, fence_token: FenceToken) -> Result<FenceCheck, Error> {
        let resource = Resource::new(resource)?;
        let mut request = Request::new(Method::POST, &["fence", "check"], Safety::Repeatable);
        request.body = Some(json!({"resource": resource.as_str(), "fence_token": fence_token.0}));
        let answer = self.send(request).await?;
        read(&answer, |f| {
            Ok(FenceCheck {
                resource: f.resource("resource")?,
                fence_token: f.token("fence_token")?,
                valid: f.bool("valid")?,
                holders: f.list("holders", holder)?,
            })
        })
    }

    /// The leader of an election on `resource` (see [`Session::campaign`]): its exclusive
    /// holder, whose [`value`](LockHolder::value) is what the leader published (its address).
    /// `None` while nobody holds it, or while it is held in shared mode (not an election).
    pub async fn leader(&self, resource: &str) -> Result<Option<LockHolder>, Error> {
        let status = self.lock_status(resource).await?;
        Ok(match status.mode {
            Some(Mode::Exclusive) => status.holder,
            _ => None,
        })
    }

    /// `GET /admin/stats`.
    pub async fn stats(&self) -> Result<Stats, Error> {
        let answer = self.send(Request::new(Method::GET, &["admin", "stats"], Safety::Repeatable)).await?;
        read(&answer, |f| {
            Ok(Stats {
                active_sessions: f.u64("active_sessions")?,
                expired_sessions: f.u64("expired_sessions")?,
                total_locks: f.u64("total_locks")?,
                fence_counter: f.u64("fence_counter")?,
                // Absent from a server without wait queues.
                waiters: f.count("waiters")?,
            })
        })
    }

    /// `POST /admin/cleanup`: removes expired sessions now; returns how many.
    pub async fn cleanup(&self) -> Result<u64, Error> {
        let answer = self.send(Request::new(Method::POST, &["admin", "cleanup"], Safety::Repeatable)).await?;
        read(&answer, |f| f.u64("count"))
    }

    /// `GET /cluster/status` from whichever endpoint answers first.
    pub async fn cluster_status(&self) -> Result<NodeStatus, Error> {
        let answer = self.send(Request::new(Method::GET, &["cluster", "status"], Safety::Repeatable)).await?;
        read(&answer, node_status)
    }

    /// `GET /cluster/status` from the node at `address` (`host:port`, need not be one of the
    /// endpoints): one attempt, no retry, so a dead node shows up as [`Error::Unavailable`].
    pub async fn node_status(&self, address: &str) -> Result<NodeStatus, Error> {
        let endpoint = Endpoint::parse(address)?;
        let answer = self
            .transport
            .send_once(&endpoint, &Request::new(Method::GET, &["cluster", "status"], Safety::Repeatable))
            .await?;
        read(&answer.into_result()?, node_status)
    }
}

impl Client {
    /// `GET /events`: a [`Watch`] of the changes about resources that start with `prefix`
    /// (every change when empty), after `after` (an id a watch delivered before, or an
    /// [`Error::Compacted`]'s `current`), or from the recent history the node keeps when `None`.
    /// Connects on the first [`Watch::next`].
    pub fn watch(&self, prefix: &str, after: Option<EventId>) -> Result<Watch, Error> {
        let prefix = match prefix {
            "" => None,
            p if p.len() > Resource::MAX_BYTES || p.chars().any(char::is_control) => {
                return Err(Error::InvalidInput {
                    field: "resource".into(),
                    reason: format!("a prefix is at most {} bytes, without control characters", Resource::MAX_BYTES),
                })
            }
            p => Some(p.to_string()),
        };
        Ok(Watch::new(Arc::clone(&self.transport), prefix, after))
    }
}

/// An acquire of `resource` for `session_id`, without a body: a try-lock unless the transport
/// adds a wait.
fn acquire_request(session_id: SessionId, resource: &Resource) -> Request {
    Request::new(Method::POST, &["sessions", &session_id.to_string(), "locks", resource.as_str()], Safety::Repeatable)
}

/// The grant an acquire's success answer (201 new, 200 already held) carries, for a request
/// made with `options` (the answer does not repeat the mode and value).
fn grant(answer: &Answer, options: &LockOptions) -> Result<Grant, Error> {
    let newly_granted = answer.status == StatusCode::CREATED;
    read(answer, |f| {
        Ok(Grant {
            session_id: f.session_id("session_id")?,
            resource: f.resource("resource")?,
            fence_token: f.token("fence_token")?,
            newly_granted,
            waited: f.opt_secs("waited")?.unwrap_or_default(),
            mode: options.mode,
            value: options.value.clone(),
        })
    })
}

/// One holder in a lock status or a fence check (also the top-level fields of an old server).
fn holder(h: Fields<'_>) -> Result<LockHolder, String> {
    Ok(LockHolder {
        session_id: h.session_id("session_id")?,
        fence_token: h.token("fence_token")?,
        acquired_at: h.time("acquired_at")?,
        client_id: if h.0["client_id"].is_null() { None } else { Some(h.client_id("client_id")?) },
        value: h.opt_str("value")?.map(str::to_string),
    })
}

/// A `mode` field, if present.
fn opt_mode(f: Fields<'_>) -> Result<Option<Mode>, String> {
    f.opt_str("mode")?.map(|m| Mode::parse(m).map_err(|e| e.to_string())).transpose()
}

fn node_status(f: Fields<'_>) -> Result<NodeStatus, String> {
    let members = f.0["members"].as_array().ok_or("members is not a list")?;
    let members = members
        .iter()
        .map(|m| {
            let m = Fields(m);
            Ok(Member {
                id: m.u64("id")?,
                raft: m.str("raft")?.to_string(),
                http: m.0["http"].as_str().map(str::to_string),
                matched_index: m.0["matched_index"].as_u64(),
                lag: m.0["lag"].as_u64(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(NodeStatus {
        node_id: f.u64("node_id")?,
        state: f.str("state")?.to_string(),
        leader_id: f.0["leader_id"].as_u64(),
        term: f.u64("term")?,
        is_ready: f.bool("is_ready")?,
        commit_index: f.u64("commit_index")?,
        applied_index: f.u64("applied_index")?,
        uptime: Duration::from_secs(f.u64("uptime")?),
        members,
    })
}

/// A session the cluster just created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCreated {
    pub session_id: SessionId,
    pub client_id: ClientId,
    pub timeout: Duration,
    /// How often to send a keepalive: a third of the timeout.
    pub keepalive_interval: Duration,
    /// How long its locks stay unavailable after it expires; zero for none.
    pub lock_delay: Duration,
}

/// A session as the cluster sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    pub session_id: SessionId,
    pub client_id: ClientId,
    pub created_at: SystemTime,
    pub last_keepalive: SystemTime,
    pub timeout: Duration,
    pub keepalive_interval: Duration,
    pub locks_held: Vec<Resource>,
    /// Time left before the session expires without a keepalive (zero once expired).
    pub expires_in: Duration,
    /// When it expired; `None` while it is alive.
    pub expired_at: Option<SystemTime>,
    /// How long its locks stay unavailable if it expires; zero for none.
    pub lock_delay: Duration,
    /// The resources it waits for now, in a lock's queue.
    pub waiting_for: Vec<Resource>,
}

impl SessionInfo {
    pub fn is_expired(&self) -> bool {
        self.expired_at.is_some()
    }
}

/// A keepalive's acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub struct KeepaliveAck {
    pub session_id: SessionId,
    pub timeout: Duration,
    pub expires_in: Duration,
}

/// A lock held by a session, with its fence token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub session_id: SessionId,
    pub resource: Resource,
    pub fence_token: FenceToken,
    /// `false` when the session already held the lock (the cluster answered 200, not 201).
    pub newly_granted: bool,
    /// How long the request waited in the lock's queue; zero for a grant without waiting.
    pub waited: Duration,
    /// The mode asked for (and granted).
    pub mode: Mode,
    /// The value asked for. A re-acquire (`newly_granted` false) keeps the grant's first value,
    /// which [`Client::lock_status`] shows.
    pub value: Option<String>,
}

/// How to take a lock: [`Client::acquire_with`], [`Session::lock_with`]. The default is an
/// exclusive try-lock without a value.
///
/// ```
/// use std::time::Duration;
/// use lockio_client::{LockOptions, Mode};
///
/// // A permit of a 3-permit semaphore, waiting up to a minute for one.
/// let options = LockOptions::shared().limit(3).wait(Duration::from_secs(60));
/// assert_eq!((options.mode, options.limit), (Mode::Shared, Some(3)));
/// // The leader of an election publishes its address.
/// let options = LockOptions::exclusive().value("10.0.0.7:8080");
/// assert_eq!(options.value.as_deref(), Some("10.0.0.7:8080"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockOptions {
    /// Exclusive (one holder; the default) or shared (any number, or up to `limit`).
    pub mode: Mode,
    /// Shared only: at most this many holders at once (1 to 10,000), a counting semaphore.
    /// The first shared request sets it for as long as the resource has shared holders or
    /// waiters; `None` takes the resource's.
    pub limit: Option<u64>,
    /// Stored with the grant (at most 1,024 bytes), shown to everyone with the holders.
    pub value: Option<String>,
    /// How long to wait in the queue: whole seconds, 0 (a try-lock, the default) to 300.
    pub wait: Duration,
}

impl LockOptions {
    /// An exclusive lock (a writer, or a leader).
    pub fn exclusive() -> LockOptions {
        LockOptions::default()
    }

    /// A shared lock (a reader, or a semaphore's permit with [`limit`](LockOptions::limit)).
    pub fn shared() -> LockOptions {
        LockOptions { mode: Mode::Shared, ..LockOptions::default() }
    }

    pub fn limit(mut self, limit: u64) -> LockOptions {
        self.limit = Some(limit);
        self
    }

    pub fn value(mut self, value: impl Into<String>) -> LockOptions {
        self.value = Some(value.into());
        self
    }

    pub fn wait(mut self, wait: Duration) -> LockOptions {
        self.wait = wait;
        self
    }

    /// The acquire body's `mode`, `limit` and `value`, checked by the core's rules; `wait` is
    /// the transport's.
    fn body(&self) -> Result<serde_json::Value, Error> {
        let mut body = json!({});
        if self.mode == Mode::Shared {
            body["mode"] = self.mode.as_str().into();
        }
        if let Some(limit) = self.limit {
            if self.mode != Mode::Shared {
                return Err(Error::InvalidInput {
                    field: "limit".into(),
                    reason: "a limit is only for a shared lock".into(),
                });
            }
            body["limit"] = Limit::new(limit)?.get().into();
        }
        if let Some(value) = &self.value {
            body["value"] = LockValue::new(value)?.as_str().into();
        }
        Ok(body)
    }
}

/// The answer of [`Client::fence_check`].
#[derive(Debug, Clone, PartialEq)]
pub struct FenceCheck {
    pub resource: Resource,
    pub fence_token: FenceToken,
    /// Whether a current holder of `resource` holds it under exactly `fence_token`.
    pub valid: bool,
    /// The current holders, oldest first.
    pub holders: Vec<LockHolder>,
}

/// Who holds a resource, if anyone, and who waits for it.
#[derive(Debug, Clone, PartialEq)]
pub struct LockStatus {
    pub resource: Resource,
    /// The exclusive holder, or the oldest shared one (the seed's top-level fields).
    pub holder: Option<LockHolder>,
    /// `None` while nobody holds it.
    pub mode: Option<Mode>,
    /// A semaphore's limit (shared mode only).
    pub limit: Option<u64>,
    /// Every holder, oldest first, each with its own token and value.
    pub holders: Vec<LockHolder>,
    pub holders_count: u64,
    /// How many sessions wait for it.
    pub queue_length: u64,
    /// The sessions waiting for it, in queue order: the first is granted the lock next.
    pub waiters: Vec<Waiter>,
    /// While nobody holds it because its last holder's session expired: until when the
    /// lock-delay keeps it unavailable.
    pub delayed_until: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LockHolder {
    pub session_id: SessionId,
    pub fence_token: FenceToken,
    pub acquired_at: SystemTime,
    /// The holder's client id (`None` from a server that does not say it).
    pub client_id: Option<ClientId>,
    /// The value stored with its grant (a leader's address), if any.
    pub value: Option<String>,
}

/// A session in a lock's queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiter {
    pub session_id: SessionId,
    pub client_id: ClientId,
    /// The mode it asks for, and a shared request's limit.
    pub mode: Mode,
    pub limit: Option<u64>,
    /// When it joined the queue.
    pub since: SystemTime,
    /// When its wait ends without the lock, in the leader's time.
    pub deadline: SystemTime,
}

/// One node's view of the cluster (`GET /cluster/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: u64,
    /// `LEADER`, `FOLLOWER`, `CANDIDATE` or `LEARNER`.
    pub state: String,
    pub leader_id: Option<u64>,
    pub term: u64,
    /// A follower that hears from the leader, or a leader that hears from a majority.
    pub is_ready: bool,
    pub commit_index: u64,
    pub applied_index: u64,
    pub uptime: Duration,
    pub members: Vec<Member>,
}

/// A member of the cluster as one node lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub raft: String,
    /// Its advertised HTTP address (`host:port`); `None` until the cluster learned it.
    pub http: Option<String>,
    /// Only in the leader's view: the last log index known to be on the member, and how far
    /// behind the leader it is.
    pub matched_index: Option<u64>,
    pub lag: Option<u64>,
}

fn timeout_secs(timeout: Duration) -> Result<Timeout, Error> {
    if timeout.subsec_nanos() != 0 {
        return Err(Error::InvalidInput { field: "timeout".into(), reason: "must be whole seconds".into() });
    }
    Ok(Timeout::from_secs(timeout.as_secs())?)
}

/// Reads a success answer's body with `parse`.
fn read<T>(answer: &Answer, parse: impl FnOnce(Fields<'_>) -> Result<T, String>) -> Result<T, Error> {
    parse(Fields(&answer.body)).map_err(|detail| Error::Unexpected {
        endpoint: answer.endpoint.clone(),
        detail: format!("{detail} in {}", answer.body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_timeouts_are_checked_before_sending() {
        let table = [(5, true), (3600, true), (4, false), (3601, false)];
        for (s, ok) in table {
            assert_eq!(timeout_secs(Duration::from_secs(s)).is_ok(), ok, "{s}");
        }
        let e = timeout_secs(Duration::from_millis(5500)).unwrap_err();
        assert_eq!(e.to_string(), "invalid timeout: must be whole seconds");
    }
}

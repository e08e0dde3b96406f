//! The service layer: what a client request means, on whichever node it arrives.
//!
//! `Service::handle` is the one entry point for requests that need the leader. On the leader it
//! stamps the time, proposes a `Command` through openraft and maps the outcome; keepalives and
//! linearizable reads go through the read barrier instead of the log. On a follower it forwards
//! the request to the leader over the transport and relays the answer unchanged. If leadership
//! moves mid-request it retries on the new leader, but only when that cannot apply a request
//! twice: the request was certainly not applied (`NotLeader`, peer unreachable), or it is
//! idempotent (a create carries the session id minted on the first attempt).
//!
//! Session expiry (`expiry`) and the lease table (`leases`) live here too: only the leader
//! decides that a session expired, on its monotonic clock, and proposes the expiry as a command.
//! So do waits: an acquire with `wait` joins the resource's replicated queue with one command,
//! then stays open until the applied log says how its entry ended (`waits`); the leader's timer
//! (`expiry`) proposes the `Tick` that ends waits at their deadline and lock-delays at their end.

mod batching;
mod cluster;
mod expiry;
mod forwarder;
mod leases;
mod members;
mod proposer;
mod queries;
mod read_index;
mod request;
mod waits;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockio_core::{
    Applied, Command, DomainError, Limit, LockDelay, LockValue, Mode, Resource, SessionId, UnixMillis, WaitEnd,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

pub use cluster::{ClusterStatus, Health, Signals};
pub use expiry::run_sweeper;
pub use leases::{LeaseStatus, LeaseTable};
pub use members::{run_leader_watch, run_member_probes};
pub use read_index::ReadBarrier;
pub use request::{Listing, LockRow, LockView, Query, Reply, Request, ServiceError, SessionView};
pub use waits::Waits;

use crate::events::EventLog;
use crate::raft::state_machine::AppliedView;
use crate::raft::{LogCommand, LogOutcome, NodeId, Raft};
use crate::transport::PeerClient;

/// The leader's wall clock, for stamping commands. Only the service reads it.
pub fn wall_now() -> UnixMillis {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    UnixMillis(since.as_millis() as u64)
}

/// Settings of the service layer.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub node_id: NodeId,
    /// How long a request may wait for a leader and a quorum before it answers 503.
    pub request_timeout: Duration,
    /// Raft's election timeout (upper bound): how long without the leader's (or, on the
    /// leader, a majority's) contact before this node calls itself degraded.
    pub election_timeout: Duration,
}

/// A request a follower hands to the leader.
#[derive(Debug, Serialize, Deserialize)]
pub struct Forwarded {
    pub request: Request,
    /// How long the original caller will still wait, in milliseconds.
    pub budget_ms: u64,
}

/// A cheap handle on the node's service layer.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServiceConfig,
    raft: Raft,
    view: AppliedView,
    barrier: ReadBarrier,
    proposer: proposer::Proposer,
    forwarder: forwarder::Forwarder,
    peers: PeerClient,
    signals: Signals,
    /// The leader's lease table. A std mutex: it is held only for map updates, never across
    /// an `.await`.
    leases: Mutex<LeaseTable>,
    /// The leader this node knows of, updated only when it changes (openraft's metrics change
    /// with every entry, too often to wait on per request).
    leader: watch::Sender<Option<NodeId>>,
    /// What this node last heard from each other member (see `members`).
    members: Mutex<BTreeMap<NodeId, members::Seen>>,
    events: EventLog,
    /// The long-poll acquires open on this node.
    waits: Waits,
}

impl Service {
    pub fn new(
        config: ServiceConfig,
        raft: Raft,
        view: AppliedView,
        peers: PeerClient,
        signals: Signals,
        events: EventLog,
        waits: Waits,
    ) -> Service {
        let barrier = ReadBarrier::start(raft.clone(), config.request_timeout);
        let proposer = proposer::Proposer::start(raft.clone());
        let forwarder = forwarder::Forwarder::new(peers.clone());
        let inner = Inner {
            config,
            raft,
            view,
            barrier,
            proposer,
            forwarder,
            peers,
            signals,
            leases: Mutex::new(LeaseTable::default()),
            leader: watch::channel(None).0,
            members: Mutex::new(BTreeMap::new()),
            events,
            waits,
        };
        Service { inner: Arc::new(inner) }
    }

    pub fn events(&self) -> &EventLog {
        &self.inner.events
    }

    pub fn waits(&self) -> &Waits {
        &self.inner.waits
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.config.node_id
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    pub fn view(&self) -> &AppliedView {
        &self.inner.view
    }

    pub fn signals(&self) -> &Signals {
        &self.inner.signals
    }

    fn leases(&self) -> MutexGuard<'_, LeaseTable> {
        self.inner.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves a request that needs the leader, from any node, within the request deadline
    /// (extended by the time a wait may take).
    pub async fn handle(&self, request: Request) -> Result<Reply, ServiceError> {
        let started = Instant::now();
        let deadline = started + self.inner.config.request_timeout + request.wait();
        let mut outcome_unknown = false;
        let mut reason = "no leader is known".to_string();
        let mut backoff = Duration::from_millis(10);
        loop {
            // A wait tried again asks only for what is left of it.
            let request = request.wait_left(started.elapsed());
            let attempt = match self.leader() {
                Some((id, _)) if id == self.node_id() => self.lead(request.clone(), deadline).await,
                Some((id, addr)) => self.forward(id, &addr, request.clone(), deadline).await,
                None => Err(ServiceError::NotLeader { leader: None }),
            };
            match attempt {
                // Not applied: safe to try again wherever the leader is now.
                Err(ServiceError::NotLeader { .. }) => {}
                Err(ServiceError::Unavailable { reason: why, outcome_unknown: unknown }) => {
                    outcome_unknown |= unknown;
                    reason = why;
                    if unknown && !request.is_idempotent() {
                        return Err(ServiceError::Unavailable { reason, outcome_unknown });
                    }
                }
                answer => return answer,
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ServiceError::Unavailable { reason, outcome_unknown });
            }
            tokio::time::sleep(backoff.min(deadline - now)).await;
            backoff = (backoff * 2).min(Duration::from_millis(100));
        }
    }

    /// Serves a read from this node's applied state, without asking the leader (`?stale=true`).
    pub fn read_stale(&self, query: Query) -> Result<Reply, ServiceError> {
        self.read(query)
    }

    /// Serves a request another node forwarded, if this node is the leader.
    pub async fn handle_forwarded(&self, forwarded: Forwarded) -> Result<Reply, ServiceError> {
        match self.leader() {
            Some((id, _)) if id == self.node_id() => {
                // Answer a little before the forwarding node gives up, so it gets our answer.
                let budget = Duration::from_millis(forwarded.budget_ms).saturating_sub(Duration::from_millis(50));
                let deadline =
                    Instant::now() + budget.min(self.inner.config.request_timeout + forwarded.request.wait());
                self.lead(forwarded.request, deadline).await
            }
            other => Err(ServiceError::NotLeader { leader: other.map(|(id, _)| id) }),
        }
    }

    /// The current leader's id and Raft address, as this node knows it.
    fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        let id = metrics.current_leader?;
        let node = metrics.membership_config.membership().get_node(&id)?;
        Some((id, node.addr.clone()))
    }

    /// The term this node leads, if it believes it is the leader.
    fn leader_term(&self) -> Option<u64> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        (metrics.current_leader == Some(self.node_id()) && metrics.state.is_leader()).then_some(metrics.current_term)
    }

    async fn forward(
        &self,
        leader: NodeId,
        addr: &str,
        request: Request,
        deadline: Instant,
    ) -> Result<Reply, ServiceError> {
        let budget = deadline.saturating_duration_since(Instant::now());
        let proposes = proposes(&request);
        let waits = !request.wait().is_zero();
        let forwarded = Forwarded { request, budget_ms: budget.as_millis() as u64 };
        let mut leader_changes = self.inner.leader.subscribe();
        let answer = async {
            if waits {
                // A wait goes on a call of its own: in a batch it would hold up the others'
                // answers, and dropping this call (the client went away) closes its connection,
                // which the leader takes as the cancel.
                self.inner.forwarder.forward_alone(addr, forwarded, proposes).await
            } else {
                self.inner.forwarder.forward(addr, forwarded, proposes).await
            }
        };
        tokio::select! {
            answer = answer => answer,
            // A leader that stalls (paused, partitioned) is replaced by an election; stop
            // waiting for it then instead of when the deadline runs out.
            _ = leader_changes.wait_for(|l| l.is_some_and(|l| l != leader)) => Err(ServiceError::Unavailable {
                reason: format!("leader {leader} was replaced while it had the request"),
                outcome_unknown: proposes,
            }),
        }
    }

    /// Runs a request as the leader, within `deadline`.
    async fn lead(&self, request: Request, deadline: Instant) -> Result<Reply, ServiceError> {
        let proposes = proposes(&request);
        match tokio::time::timeout_at(deadline, self.lead_unbounded(request)).await {
            Ok(answer) => answer,
            Err(_) => Err(ServiceError::Unavailable {
                reason: "no quorum answered within the request deadline".into(),
                outcome_unknown: proposes,
            }),
        }
    }

    async fn lead_unbounded(&self, request: Request) -> Result<Reply, ServiceError> {
        match request {
            Request::CreateSession { session_id, client_id, timeout, lock_delay } => {
                let (client, now) = (client_id.clone(), wall_now());
                let command = if lock_delay == LockDelay::NONE {
                    Command::CreateSession { session_id, client_id: client, timeout, now }
                } else {
                    Command::CreateSessionWithLockDelay { session_id, client_id: client, timeout, lock_delay, now }
                };
                match self.propose_lock(command).await? {
                    Applied::SessionCreated { session_id, .. } => {
                        Ok(Reply::SessionCreated { session_id, client_id, timeout })
                    }
                    other => Err(unexpected(other)),
                }
            }
            Request::Keepalive { session_id } => self.keepalive(session_id).await,
            Request::DeleteSession { session_id } => {
                match self.propose_lock(Command::DeleteSession { session_id, now: wall_now() }).await? {
                    Applied::SessionDeleted { session_id, .. } => Ok(Reply::SessionDeleted { session_id }),
                    other => Err(unexpected(other)),
                }
            }
            Request::Acquire { session_id, resource, mode, limit, value, wait_ms } => {
                // A session past its deadline is as good as expired, even if the expiry is not
                // applied yet: never grant it a lock.
                self.refuse_if_overdue(session_id)?;
                if wait_ms > 0 || mode != Mode::Exclusive || value.is_some() {
                    // A wait, or a try-lock of another kind than the seed's: one `Wait` command
                    // (with no time to wait, a try-lock).
                    return self.wait(session_id, resource, (mode, limit, value), wait_ms).await;
                }
                // A try-lock that must fail changes nothing: answer it from a linearizable read
                // (the read barrier) rather than a log write. It only looks likely to fail
                // here; after the barrier the state is current and the answer exact.
                if self.acquire_refusal(&session_id, &resource).is_some() {
                    self.inner.barrier.confirm().await?;
                    if let Some(refusal) = self.acquire_refusal(&session_id, &resource) {
                        return Err(ServiceError::Domain(refusal));
                    }
                }
                match self.propose_lock(Command::Acquire { session_id, resource, now: wall_now() }).await? {
                    Applied::Acquired { grant, fresh } => Ok(Reply::Acquired { grant, fresh, waited_ms: 0 }),
                    other => Err(unexpected(other)),
                }
            }
            Request::Release { session_id, resource, fence_token } => {
                match self.propose_lock(Command::Release { session_id, resource, fence_token, now: wall_now() }).await?
                {
                    Applied::Released { grant } => Ok(Reply::Released { grant }),
                    other => Err(unexpected(other)),
                }
            }
            Request::Cleanup => self.cleanup().await,
            Request::AdvertiseHttp { node_id, http_addr } => {
                self.propose(LogCommand::AdvertiseHttp { node_id, http_addr }).await?;
                Ok(Reply::Advertised)
            }
            Request::Read(query) => {
                self.inner.barrier.confirm().await?;
                self.read(query)
            }
        }
    }

    async fn keepalive(&self, session_id: SessionId) -> Result<Reply, ServiceError> {
        // Arrival time: the lease is extended from here, and only if leadership is confirmed
        // by a round that starts after it.
        let arrived = Instant::now();
        let wall = wall_now();
        self.inner.barrier.confirm().await?;
        let term = self.leader_term().ok_or(ServiceError::NotLeader { leader: None })?;
        let timeout = {
            let applied = self.inner.view.read();
            applied.replica.locks.live_session(&session_id).map_err(ServiceError::Domain)?.timeout
        };
        let mut leases = self.leases();
        leases.enter_term(term);
        match leases.keepalive(session_id, timeout, arrived, wall) {
            LeaseStatus::Live { .. } => {
                crate::metrics::keepalive("ok");
                Ok(Reply::KeptAlive { session_id, timeout, expires_in_ms: timeout.millis() })
            }
            LeaseStatus::Overdue => {
                crate::metrics::keepalive("overdue");
                Err(ServiceError::Domain(DomainError::SessionExpired { session_id }))
            }
        }
    }

    fn acquire_refusal(&self, session_id: &SessionId, resource: &Resource) -> Option<DomainError> {
        self.inner.view.read().replica.locks.acquire_refusal(session_id, resource, wall_now())
    }

    /// An acquire that may wait: joins the queue (or is granted at once) with one command, then
    /// stays open until the applied log says how the entry ended, or this node stops leading
    /// (the caller retries on the new leader, and the retry finds its place in the queue).
    async fn wait(
        &self,
        session_id: SessionId,
        resource: Resource,
        (mode, limit, value): (Mode, Option<Limit>, Option<LockValue>),
        wait_ms: u64,
    ) -> Result<Reply, ServiceError> {
        // Registered before the command, so that an outcome applied right after it is not missed.
        let mut registration = self.inner.waits.register(session_id, resource.clone());
        let now = wall_now();
        let deadline = now.saturating_add_millis(wait_ms);
        let command = Command::Wait { session_id, resource: resource.clone(), mode, limit, value, deadline, now };
        let (applied, place) = self.propose_lock_at(command).await?;
        match applied {
            Applied::Acquired { grant, fresh } => return Ok(Reply::Acquired { grant, fresh, waited_ms: 0 }),
            Applied::Queued { .. } => {}
            other => return Err(unexpected(other)),
        }
        // From here on, a client that goes away cancels its wait, unless it asks again in time.
        let service = self.clone();
        let cancelled = resource.clone();
        registration.on_drop(move || {
            tokio::spawn(async move { service.cancel_abandoned(session_id, cancelled).await });
        });
        let mut leader = self.inner.leader.subscribe();
        let me = self.node_id();
        let deposed = async move {
            let _ = leader.wait_for(|l| l.is_some_and(|l| l != me)).await;
        };
        let outcome = tokio::select! {
            outcome = registration.outcome_after(place) => outcome,
            () = deposed => {
                registration.disarm();
                return Err(ServiceError::NotLeader { leader: None });
            }
        };
        registration.disarm();
        match outcome {
            waits::WaitResult::Granted { grant, waited_ms } => Ok(Reply::Acquired { grant, fresh: true, waited_ms }),
            waits::WaitResult::Ended { reason: WaitEnd::SessionEnded, .. } => {
                let applied = self.inner.view.read();
                let refusal = applied.replica.locks.live_session(&session_id).err();
                Err(ServiceError::Domain(refusal.unwrap_or(DomainError::SessionNotFound { session_id })))
            }
            waits::WaitResult::Ended { blocked_by, waited_ms, .. } => {
                Err(ServiceError::WaitTimedOut { resource, blocked_by, waited_ms })
            }
        }
    }

    /// Cancels a wait whose request went away, unless the same request came back within the
    /// grace period (a retry keeps the place). Only the leader proposes it.
    async fn cancel_abandoned(&self, session_id: SessionId, resource: Resource) {
        tokio::time::sleep(waits::CANCEL_GRACE).await;
        if self.inner.waits.is_open(session_id, &resource) || self.leader_term().is_none() {
            return;
        }
        let command = Command::CancelWait { session_id, resource, now: wall_now() };
        match tokio::time::timeout(self.inner.config.request_timeout, self.propose_lock(command)).await {
            Ok(Ok(_)) => tracing::debug!(%session_id, "abandoned wait cancelled"),
            // Granted or gone meanwhile: the session asking again learns which.
            Ok(Err(ServiceError::Domain(_))) => {}
            other => tracing::debug!(?other, "abandoned wait not cancelled; its deadline ends it"),
        }
    }

    fn refuse_if_overdue(&self, session_id: SessionId) -> Result<(), ServiceError> {
        let Some(term) = self.leader_term() else { return Ok(()) };
        let applied = self.inner.view.read();
        let Ok(session) = applied.replica.locks.live_session(&session_id) else {
            // Unknown or expired: the command itself gives the authoritative refusal.
            return Ok(());
        };
        let mut leases = self.leases();
        leases.enter_term(term);
        match leases.status(session_id, session.timeout, Instant::now()) {
            LeaseStatus::Live { .. } => Ok(()),
            LeaseStatus::Overdue => Err(ServiceError::Domain(DomainError::SessionExpired { session_id })),
        }
    }

    /// Proposes a lock command (batched with concurrent ones) and returns what it did, or why it
    /// was refused.
    async fn propose_lock(&self, command: Command) -> Result<Applied, ServiceError> {
        self.propose_lock_at(command).await.map(|(applied, _)| applied)
    }

    /// `propose_lock`, also returning where in the log the command was applied.
    async fn propose_lock_at(&self, command: Command) -> Result<(Applied, proposer::LogPlace), ServiceError> {
        let kind = command.name();
        let started = Instant::now();
        let result = self.inner.proposer.propose(command).await;
        let label = match &result {
            Ok((Ok(_), _)) => "applied",
            Ok((Err(_), _)) => "refused",
            Err(ServiceError::NotLeader { .. }) => "not_leader",
            Err(_) => "failed",
        };
        crate::metrics::proposal(kind, label, started.elapsed());
        let (outcome, index) = result?;
        Ok((outcome.map_err(ServiceError::Domain)?, index))
    }

    /// Appends a command of its own to the log and waits until it is applied here.
    async fn propose(&self, command: LogCommand) -> Result<LogOutcome, ServiceError> {
        self.inner.raft.client_write(command).await.map(|r| r.data).map_err(proposer::write_error)
    }
}

/// Whether a request goes through the log (so a lost answer leaves its outcome unknown).
fn proposes(request: &Request) -> bool {
    !matches!(request, Request::Keepalive { .. } | Request::Read(_))
}

fn unexpected(applied: Applied) -> ServiceError {
    tracing::error!(?applied, "a command applied with an outcome of another command");
    ServiceError::Internal
}

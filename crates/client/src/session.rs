//! `Session`: a session that keeps itself alive from a background task, publishes its state
//! (alive, in jeopardy, expired) the moment it changes, hands out `LockGuard`s (at once or after
//! waiting in a lock's queue, cleaning up after a cancelled wait), and is deleted when closed or
//! dropped. The rules for the state are in `lease`; this module runs them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockio_core::{ClientId, Resource, SessionId};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{LockOptions, SessionCreated};
use crate::lease::{Expiry, Keepalive, Lease, SessionState};
use crate::lock::{Held, LockGuard};
use crate::transport::Budget;
use crate::wait::wait_secs;
use crate::{Client, Error};

/// An open session, kept alive by a background task until it is closed or dropped.
///
/// Watch [`state`](Session::state) (or await [`expired`](Session::expired)) and stop the
/// protected work when the session is [`Expired`](SessionState::Expired): from then on the
/// cluster may have given its locks to someone else. Dropping the session stops the keepalives
/// and deletes it in the background (if a tokio runtime is still running); call
/// [`close`](Session::close) to know that the delete happened.
///
/// ```no_run
/// # async fn demo() -> Result<(), lockio_client::Error> {
/// use std::time::Duration;
/// use lockio_client::{Client, SessionState};
///
/// let client = Client::new(["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"])?;
/// let session = client.open_session("report-builder", Duration::from_secs(15)).await?;
/// assert_eq!(session.state(), SessionState::Alive);
/// let guard = session.lock("nightly-report").await?;
/// tokio::select! {
///     _ = build_report(guard.fence_token().0) => guard.release().await?,
///     why = session.expired() => eprintln!("lost the lock: {why}; stopped the report"),
/// }
/// session.close().await?;
/// # Ok(()) }
/// # async fn build_report(_token: u64) {}
/// ```
pub struct Session {
    client: Client,
    id: SessionId,
    client_id: ClientId,
    timeout: Duration,
    keepalive_interval: Duration,
    lock_delay: Duration,
    /// Shared with the keepalive task, which owns the updates; `close` and `drop` mark the
    /// lease closed after stopping the task. A std mutex: never held across an await.
    lease: Arc<Mutex<Lease>>,
    /// Publishes every change of state; a watch, because readers want the latest state, not
    /// every step, and may subscribe at any time.
    state: Arc<watch::Sender<SessionState>>,
    keepalive: JoinHandle<()>,
    /// The resources this session's live `LockGuard`s hold.
    held: Held,
    /// `close` ran; `drop` has nothing left to do.
    closed: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("state", &self.state())
            .finish()
    }
}

impl Session {
    pub(crate) async fn open(
        client: Client,
        client_id: &str,
        timeout: Duration,
        lock_delay: Duration,
    ) -> Result<Session, Error> {
        let sent_at = Instant::now();
        let created = client.create_session_with_lock_delay(client_id, timeout, lock_delay).await?;
        Ok(Session::start(client, created, sent_at))
    }

    /// Starts keeping alive a session the cluster created, whose create was sent at `sent_at`.
    pub(crate) fn start(client: Client, created: SessionCreated, sent_at: Instant) -> Session {
        let interval = created.keepalive_interval.max(Duration::from_millis(100));
        let lease = Arc::new(Mutex::new(Lease::new(sent_at, created.timeout, interval)));
        let (state, _) = watch::channel(SessionState::Alive);
        let state = Arc::new(state);
        let keepalive =
            tokio::spawn(keep_alive(client.clone(), created.session_id, Arc::clone(&lease), Arc::clone(&state)));
        Session {
            client,
            id: created.session_id,
            client_id: created.client_id,
            timeout: created.timeout,
            keepalive_interval: interval,
            lock_delay: created.lock_delay,
            lease,
            state,
            keepalive,
            held: Held::default(),
            closed: false,
        }
    }

    pub fn id(&self) -> SessionId {
        self.id
    }

    pub fn client_id(&self) -> &ClientId {
        &self.client_id
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn keepalive_interval(&self) -> Duration {
        self.keepalive_interval
    }

    /// How long its locks stay unavailable to others if it expires; zero for none.
    pub fn lock_delay(&self) -> Duration {
        self.lock_delay
    }

    /// The state now. Expired as soon as the timeout has passed since the last acknowledged
    /// keepalive was sent, even if the keepalive task has not run yet (say, the process was
    /// stopped).
    pub fn state(&self) -> SessionState {
        let state = lock(&self.lease).at(Instant::now());
        publish(&self.state, state);
        state
    }

    /// A receiver that sees every change of state, to `select!` on next to the work.
    pub fn watch(&self) -> watch::Receiver<SessionState> {
        self.state.subscribe()
    }

    /// Resolves when the session is expired, with why.
    pub async fn expired(&self) -> Expiry {
        let mut watch = self.watch();
        loop {
            if let SessionState::Expired(why) = self.state() {
                return why;
            }
            if watch.changed().await.is_err() {
                // Cannot happen while `self` holds the sender; wait on the deadline instead.
                let deadline = lock(&self.lease).deadline();
                tokio::time::sleep_until(deadline).await;
            }
        }
    }

    /// Try-lock: a guard holding the fence token, or why not ([`Error::LockHeld`] names the
    /// holder). Releases the lock when dropped; see [`LockGuard`].
    pub async fn lock(&self, resource: &str) -> Result<LockGuard, Error> {
        self.lock_with(resource, LockOptions::default()).await
    }

    /// Waits up to `wait` (whole seconds, 0 to 300) in the lock's queue: a guard once the lock is
    /// granted, in arrival order ([`LockGuard::waited`] says how long it took), or
    /// [`Error::LockHeld`] when `wait` has passed first (with `waited` set). A `wait` of zero is
    /// [`lock`](Session::lock).
    ///
    /// The wait happens in the cluster, as one long request that is sent again at once, with
    /// the time left, after a broken connection or a 503 (a leader change): the cluster takes
    /// it as the same waiter, in the same place. It never gives its place up while time remains.
    /// It ends early with [`Error::SessionExpired`] if this session expires meanwhile.
    ///
    /// Dropping the future cancels the wait. If the cluster granted the lock just before, the
    /// lock is released in the background (if a tokio runtime is still running); until that is
    /// settled, a new `lock` or `lock_wait` of the same resource answers
    /// [`Error::AlreadyLocked`].
    ///
    /// ```no_run
    /// # async fn demo(session: lockio_client::Session) -> Result<(), lockio_client::Error> {
    /// use std::time::Duration;
    ///
    /// // Queue behind the current holder for up to a minute.
    /// let guard = session.lock_wait("nightly-report", Duration::from_secs(60)).await?;
    /// println!("got it after {:?} with fence token {}", guard.waited(), guard.fence_token());
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn lock_wait(&self, resource: &str, wait: Duration) -> Result<LockGuard, Error> {
        self.lock_with(resource, LockOptions::default().wait(wait)).await
    }

    /// A lock taken with [`LockOptions`]: shared (a reader) or a semaphore's permit
    /// (`limit`), a `value` stored with the grant, and a `wait` in the queue (as in
    /// [`lock_wait`](Session::lock_wait); zero is a try-lock). Every grant, shared or not, has
    /// its own fence token. [`Error::ModeConflict`] if this session holds or waits for the
    /// resource in the other mode, [`Error::LimitMismatch`] if the resource's limit is another.
    ///
    /// ```no_run
    /// # async fn demo(session: lockio_client::Session) -> Result<(), lockio_client::Error> {
    /// use std::time::Duration;
    /// use lockio_client::LockOptions;
    ///
    /// // One of at most 4 concurrent exports; wait up to 30 s for a permit.
    /// let permit = session.lock_with("exports", LockOptions::shared().limit(4).wait(Duration::from_secs(30))).await?;
    /// println!("permit with fence token {}", permit.fence_token());
    /// permit.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn lock_with(&self, resource: &str, options: LockOptions) -> Result<LockGuard, Error> {
        if self.state().is_expired() {
            return Err(Error::SessionExpired { session_id: self.id });
        }
        let resource = Resource::new(resource)?;
        wait_secs(options.wait)?;
        if !self.held.reserve(&resource) {
            return Err(Error::AlreadyLocked { resource });
        }
        if options.wait.is_zero() {
            return match self.client.acquire_with(self.id, resource.as_str(), &options).await {
                Ok(grant) => Ok(LockGuard::new(self.client.clone(), grant, self.held.clone())),
                Err(e) => {
                    self.held.forget(&resource);
                    Err(e)
                }
            };
        }
        // From here, a drop of this future leaves the outcome to `Pending`.
        let mut pending = Pending {
            client: self.client.clone(),
            session_id: self.id,
            resource: resource.clone(),
            held: self.held.clone(),
            settled: false,
        };
        let result = tokio::select! {
            result = self.client.acquire_with(self.id, resource.as_str(), &options) => result,
            // The cluster answers SESSION_EXPIRED too, if it can be reached; this is sooner.
            _ = self.expired() => Err(Error::SessionExpired { session_id: self.id }),
        };
        match result {
            Ok(grant) => {
                pending.settled = true;
                Ok(LockGuard::new(self.client.clone(), grant, self.held.clone()))
            }
            // The cluster may have granted it after the last answer: `Pending` looks.
            Err(e @ Error::Unavailable { .. }) => Err(e),
            Err(e) => {
                pending.settled = true;
                self.held.forget(&resource);
                Err(e)
            }
        }
    }

    /// Campaigns in a leader election on `resource`: waits up to `wait` (whole seconds, 0 to
    /// 300) for its exclusive lock, with `value` (say, this instance's address) stored with
    /// the grant. The guard means this session leads, until it is released or the session
    /// expires; [`Client::leader`] tells everyone else who leads. When `wait` passes first it
    /// is [`Error::LockHeld`], naming the leader: campaign again to stay in the running.
    ///
    /// ```no_run
    /// # async fn demo(client: lockio_client::Client) -> Result<(), lockio_client::Error> {
    /// use std::time::Duration;
    /// use lockio_client::Error;
    ///
    /// let session = client.open_session("scheduler-2", Duration::from_secs(15)).await?;
    /// let leadership = loop {
    ///     match session.campaign("scheduler", "10.0.0.7:8080", Duration::from_secs(300)).await {
    ///         Ok(guard) => break guard,
    ///         Err(Error::LockHeld { .. }) => continue, // someone else still leads
    ///         Err(e) => return Err(e),
    ///     }
    /// };
    /// println!("leading with fence token {}", leadership.fence_token());
    /// tokio::select! {
    ///     _ = lead(leadership.fence_token().0) => leadership.release().await?,
    ///     why = session.expired() => eprintln!("no longer the leader: {why}"),
    /// }
    /// // Elsewhere: who leads?
    /// if let Some(leader) = client.leader("scheduler").await? {
    ///     println!("leader: {} (fence token {})", leader.value.unwrap_or_default(), leader.fence_token);
    /// }
    /// # Ok(()) }
    /// # async fn lead(_token: u64) {}
    /// ```
    pub async fn campaign(&self, resource: &str, value: &str, wait: Duration) -> Result<LockGuard, Error> {
        self.lock_with(resource, LockOptions::exclusive().value(value).wait(wait)).await
    }

    /// Stops the keepalives and deletes the session, which releases its locks. A session the
    /// cluster no longer has counts as deleted.
    pub async fn close(mut self) -> Result<(), Error> {
        self.stop();
        match self.client.delete_session(self.id).await {
            Ok(()) | Err(Error::SessionNotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn stop(&mut self) {
        self.closed = true;
        self.keepalive.abort();
        let state = {
            let mut lease = lock(&self.lease);
            lease.close();
            lease.state()
        };
        publish(&self.state, state);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        self.stop();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (client, id) = (self.client.clone(), self.id);
            runtime.spawn(async move {
                if let Err(e) = client.delete_session(id).await {
                    tracing::debug!(session_id = %id, error = %e, "deleting a dropped session failed");
                }
            });
        }
    }
}

/// A wait of `Session::lock_wait` whose outcome the caller did not see: the future was dropped
/// (the connection closed, which cancels the wait), or the cluster could not be reached. Unless
/// `settled`, on drop it finds out in the background whether the cluster granted the lock after
/// all, and releases it then; the resource stays reserved in `held` until that is known.
struct Pending {
    client: Client,
    session_id: SessionId,
    resource: Resource,
    held: Held,
    settled: bool,
}

/// How long the cluster keeps the place of a waiter whose connection closed, and a margin: after
/// this, the waiter is cancelled or granted.
const CANCEL_SETTLES: Duration = Duration::from_millis(2500);

/// How long `Pending` keeps looking before it leaves the rest to the session's end.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

impl Drop for Pending {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (client, id, resource, held) =
            (self.client.clone(), self.session_id, self.resource.clone(), self.held.clone());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime: a lock granted anyway stays held until the session ends.
            held.forget(&resource);
            return;
        };
        runtime.spawn(async move {
            tokio::time::sleep(CANCEL_SETTLES).await;
            let limit = Instant::now() + SETTLE_LIMIT;
            while Instant::now() < limit {
                match client.lock_status(resource.as_str()).await {
                    Ok(status) => {
                        if let Some(holder) = status.holders.iter().find(|h| h.session_id == id) {
                            if let Err(e) = client.release(id, resource.as_str(), holder.fence_token).await {
                                tracing::debug!(session_id = %id, %resource, error = %e, "releasing the lock of a cancelled wait failed");
                            }
                            break;
                        }
                        if !status.waiters.iter().any(|w| w.session_id == id) {
                            break;
                        }
                    }
                    Err(e) => tracing::debug!(session_id = %id, %resource, error = %e, "looking up a cancelled wait failed"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            held.forget(&resource);
        });
    }
}

fn lock(lease: &Mutex<Lease>) -> std::sync::MutexGuard<'_, Lease> {
    lease.lock().unwrap_or_else(|p| p.into_inner())
}

fn publish(sender: &watch::Sender<SessionState>, state: SessionState) {
    sender.send_if_modified(|current| {
        let changed = *current != state;
        *current = state;
        changed
    });
}

/// The keepalive task: sends a keepalive when the lease says so, records what came of it and
/// publishes the state, until the session is expired.
async fn keep_alive(client: Client, id: SessionId, lease: Arc<Mutex<Lease>>, state: Arc<watch::Sender<SessionState>>) {
    let cap = client.transport().settings.request_timeout;
    loop {
        let wake = lock(&lease).next_keepalive(Instant::now());
        tokio::time::sleep_until(wake).await;
        let sent_at = Instant::now();
        let attempt = {
            let mut lease = lock(&lease);
            let now_state = lease.at(sent_at);
            publish(&state, now_state);
            if now_state.is_expired() {
                return;
            }
            lease.attempt_deadline(sent_at, cap)
        };
        let result = client.keepalive_within(id, Budget { deadline: attempt, rounds: 1 }).await;
        let keepalive = match result {
            Ok(_) => Keepalive::Acked { sent_at },
            Err(Error::SessionExpired { .. } | Error::SessionNotFound { .. }) => Keepalive::Gone,
            Err(e) => {
                tracing::debug!(session_id = %id, error = %e, "keepalive failed");
                Keepalive::Failed
            }
        };
        let now_state = lock(&lease).record(keepalive, Instant::now());
        publish(&state, now_state);
        if now_state.is_expired() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With every endpoint refusing connections, a session goes from alive to in jeopardy at the
    /// first failed keepalive, and to expired exactly when its timeout has passed since the
    /// create was sent. A real unreachable endpoint, no server needed.
    #[tokio::test]
    async fn an_unreachable_cluster_puts_the_session_in_jeopardy_then_expires_it() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = Client::new([format!("127.0.0.1:{port}")]).unwrap();
        let created = SessionCreated {
            session_id: SessionId::parse("b8cfa9e0-7e3c-4546-a0e6-b4a6b9d6652d").unwrap(),
            client_id: ClientId::new("test").unwrap(),
            timeout: Duration::from_millis(800),
            keepalive_interval: Duration::from_millis(200),
            lock_delay: Duration::ZERO,
        };
        let start = Instant::now();
        let session = Session::start(client, created, start);
        let mut watch = session.watch();
        let mut seen = vec![*watch.borrow()];
        let deadline = start + Duration::from_secs(5);
        while !seen.last().unwrap().is_expired() {
            tokio::time::timeout_at(deadline, watch.changed()).await.expect("state changes").unwrap();
            seen.push(*watch.borrow_and_update());
        }
        let elapsed = start.elapsed();
        assert_eq!(seen, [SessionState::Alive, SessionState::InJeopardy, SessionState::Expired(Expiry::TimedOut)]);
        assert!(elapsed >= Duration::from_millis(800) && elapsed < Duration::from_millis(1500), "{elapsed:?}");
        assert_eq!(session.expired().await, Expiry::TimedOut);
        assert!(matches!(session.lock("r").await, Err(Error::SessionExpired { .. })));
    }
}

//! `Session`: a session that keeps itself alive from a background task, publishes its state
//! (alive, in jeopardy, expired) the moment it changes, hands out `LockGuard`s, and is deleted
//! when closed or dropped. The rules for the state are in `lease`; this module runs them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockio_core::{ClientId, Resource, SessionId};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::SessionCreated;
use crate::lease::{Expiry, Keepalive, Lease, SessionState};
use crate::lock::{Held, LockGuard};
use crate::transport::Budget;
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
        f.debug_struct("Session").field("id", &self.id).field("client_id", &self.client_id).field("state", &self.state()).finish()
    }
}

impl Session {
    pub(crate) async fn open(client: Client, client_id: &str, timeout: Duration) -> Result<Session, Error> {
        let sent_at = Instant::now();
        let created = client.create_session(client_id, timeout).await?;
        Ok(Session::start(client, created, sent_at))
    }

    /// Starts keeping alive a session the cluster created, whose create was sent at `sent_at`.
    pub(crate) fn start(client: Client, created: SessionCreated, sent_at: Instant) -> Session {
        let interval = created.keepalive_interval.max(Duration::from_millis(100));
        let lease = Arc::new(Mutex::new(Lease::new(sent_at, created.timeout, interval)));
        let (state, _) = watch::channel(SessionState::Alive);
        let state = Arc::new(state);
        let keepalive = tokio::spawn(keep_alive(client.clone(), created.session_id, Arc::clone(&lease), Arc::clone(&state)));
        Session {
            client,
            id: created.session_id,
            client_id: created.client_id,
            timeout: created.timeout,
            keepalive_interval: interval,
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
        if self.state().is_expired() {
            return Err(Error::SessionExpired { session_id: self.id });
        }
        let resource = Resource::new(resource)?;
        if !self.held.reserve(&resource) {
            return Err(Error::AlreadyLocked { resource });
        }
        match self.client.acquire(self.id, resource.as_str()).await {
            Ok(grant) => Ok(LockGuard::new(self.client.clone(), grant, self.held.clone())),
            Err(e) => {
                self.held.forget(&resource);
                Err(e)
            }
        }
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

//! `Waits`: the open long-poll acquires on this node, and how they learn their outcome.
//!
//! The queue itself is replicated state (`lockio_core::LockState`); this is only the list of
//! HTTP requests that are waiting to hear how their queue entry ends. The state machine hands
//! every applied effect to `Waits::deliver`, which passes a grant or the end of a wait to the
//! requests registered for that session and resource, tagged with where in the log it happened
//! (the entry's index and the command's place in it): a request ignores what happened before
//! its own `Wait` command, even earlier in the same entry.
//!
//! A request whose client went away (its future was dropped while queued) cancels the wait,
//! unless the same request arrives again within `CANCEL_GRACE`: a client whose connection broke
//! retries without losing its place.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lockio_core::{DomainError, Effect, Grant, Resource, SessionId, WaitEnd};
use tokio::sync::mpsc;

/// How long a dropped wait keeps its place for a retry of the same request.
pub const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// How a queue entry ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitResult {
    Granted { grant: Grant, waited_ms: u64 },
    Ended { reason: WaitEnd, waited_ms: u64, blocked_by: Option<DomainError> },
}

type Key = (SessionId, Resource);
/// Where in the log: (entry index, the command's place in the entry).
pub type Place = (u64, usize);
type Sender = mpsc::UnboundedSender<(Place, WaitResult)>;

/// A cheap handle on the node's open waits.
#[derive(Clone, Default)]
pub struct Waits {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    open: Mutex<HashMap<Key, Vec<(u64, Sender)>>>,
    /// How many requests are registered, so that applying an entry costs nothing when none is.
    count: AtomicUsize,
    next_id: AtomicU64,
}

impl Waits {
    fn open(&self) -> MutexGuard<'_, HashMap<Key, Vec<(u64, Sender)>>> {
        self.inner.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a request waiting for `session_id`'s entry in `resource`'s queue. Register
    /// before proposing the `Wait`, so that no outcome applied after it can be missed.
    pub fn register(&self, session_id: SessionId, resource: Resource) -> Registration {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let key = (session_id, resource);
        self.open().entry(key.clone()).or_default().push((id, tx));
        self.inner.count.fetch_add(1, Ordering::Relaxed);
        Registration { waits: self.clone(), key, id, rx, on_drop: None }
    }

    /// Whether any request is registered for this entry.
    pub fn is_open(&self, session_id: SessionId, resource: &Resource) -> bool {
        self.open().contains_key(&(session_id, resource.clone()))
    }

    /// How many long-poll requests are open on this node.
    pub fn len(&self) -> usize {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// Passes an applied effect (of the command at `place` in the log) to the requests it
    /// concerns.
    pub fn deliver(&self, place: Place, effect: &Effect) {
        if self.inner.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let (key, result) = match effect {
            Effect::LockAcquired { grant, waited_ms, .. } => (
                (grant.session_id, grant.resource.clone()),
                WaitResult::Granted { grant: grant.clone(), waited_ms: *waited_ms },
            ),
            Effect::LockWaitEnded { resource, session_id, reason, waited_ms, blocked_by, .. } => (
                (*session_id, resource.clone()),
                WaitResult::Ended { reason: *reason, waited_ms: *waited_ms, blocked_by: blocked_by.clone() },
            ),
            _ => return,
        };
        if let Some(senders) = self.open().get(&key) {
            for (_, tx) in senders {
                let _ = tx.send((place, result.clone()));
            }
        }
    }

    fn unregister(&self, key: &Key, id: u64) {
        let mut open = self.open();
        if let Some(senders) = open.get_mut(key) {
            senders.retain(|(i, _)| *i != id);
            if senders.is_empty() {
                open.remove(key);
            }
        }
        self.inner.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One open request's interest in one queue entry; unregisters when dropped, and then runs
/// the action set with `on_drop` (the cancel), if any.
pub struct Registration {
    waits: Waits,
    key: Key,
    id: u64,
    rx: mpsc::UnboundedReceiver<(Place, WaitResult)>,
    on_drop: Option<Box<dyn FnOnce() + Send>>,
}

impl Registration {
    /// The entry's outcome applied after `after` (where the request's own `Wait` was applied).
    pub async fn outcome_after(&mut self, after: Place) -> WaitResult {
        loop {
            match self.rx.recv().await {
                Some((place, result)) if place > after => return result,
                Some(_) => {}
                // The sender lives in the map for as long as this registration: unreachable,
                // but waiting forever is the honest answer (the caller's deadline ends it).
                None => std::future::pending().await,
            }
        }
    }

    /// Runs `action` if this registration is dropped before `disarm`.
    pub fn on_drop(&mut self, action: impl FnOnce() + Send + 'static) {
        self.on_drop = Some(Box::new(action));
    }

    pub fn disarm(&mut self) {
        self.on_drop = None;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.waits.unregister(&self.key, self.id);
        if let Some(action) = self.on_drop.take() {
            action();
        }
    }
}

#[cfg(test)]
mod tests {
    use lockio_core::{ClientId, FenceToken, Mode, UnixMillis};

    use super::*;

    fn grant(session_id: SessionId, resource: &Resource, token: u64) -> Effect {
        Effect::LockAcquired {
            grant: Grant {
                resource: resource.clone(),
                session_id,
                fence_token: FenceToken(token),
                acquired_at: UnixMillis(5),
                mode: Mode::Exclusive,
                value: None,
            },
            client_id: ClientId::new("c").unwrap(),
            queued: true,
            waited_ms: 7,
        }
    }

    #[tokio::test]
    async fn a_request_hears_only_what_its_own_entry_got_after_its_wait() {
        let waits = Waits::default();
        let (s, other) = (SessionId(uuid::Uuid::from_u128(1)), SessionId(uuid::Uuid::from_u128(2)));
        let r = Resource::new("r").unwrap();
        let mut a = waits.register(s, r.clone());
        let mut b = waits.register(s, r.clone());
        assert_eq!(waits.len(), 2);
        waits.deliver((3, 0), &grant(s, &r, 1)); // before the wait: ignored
        waits.deliver((4, 1), &grant(s, &r, 4)); // earlier in the wait's own entry: ignored
        waits.deliver((4, 3), &grant(other, &r, 2)); // another session: not delivered
        waits.deliver((4, 3), &grant(s, &r, 3)); // later in the wait's own entry
        for reg in [&mut a, &mut b] {
            match reg.outcome_after((4, 2)).await {
                WaitResult::Granted { grant, waited_ms } => {
                    assert_eq!((grant.fence_token, waited_ms), (FenceToken(3), 7))
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(waits.is_open(s, &r));
        let cancelled = Arc::new(AtomicUsize::new(0));
        let seen = cancelled.clone();
        a.on_drop(move || {
            seen.fetch_add(1, Ordering::Relaxed);
        });
        b.disarm();
        drop(a);
        drop(b);
        assert_eq!(cancelled.load(Ordering::Relaxed), 1, "only the armed registration runs its action");
        assert!(!waits.is_open(s, &r));
        assert_eq!(waits.len(), 0);
    }
}

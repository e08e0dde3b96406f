//! `LockGuard`: one held lock and its fence token, released explicitly or when dropped; and
//! `Held`, the set of resources a session's live guards hold, so that two guards never share
//! one grant.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use lockio_core::{FenceToken, Mode, Resource, SessionId};

use crate::client::Grant;
use crate::{Client, Error};

/// A lock held by a [`Session`](crate::Session).
///
/// Pass [`fence_token`](LockGuard::fence_token) to whatever the lock protects, and have it
/// refuse any token lower than the highest it has seen: a holder that stalled past its
/// session's timeout then cannot overwrite the work of the next holder.
///
/// Dropping the guard releases the lock in the background (if a tokio runtime is running);
/// [`release`](LockGuard::release) tells you how it went.
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard {
    client: Client,
    grant: Grant,
    held: Held,
    released: bool,
}

impl LockGuard {
    pub(crate) fn new(client: Client, grant: Grant, held: Held) -> LockGuard {
        LockGuard { client, grant, held, released: false }
    }

    /// This grant's token: higher than every earlier grant's, on any resource.
    pub fn fence_token(&self) -> FenceToken {
        self.grant.fence_token
    }

    pub fn resource(&self) -> &Resource {
        &self.grant.resource
    }

    pub fn session_id(&self) -> SessionId {
        self.grant.session_id
    }

    /// `false` when the session already held the lock before this call (say, a raw
    /// [`Client::acquire`] did), in which case the token is the earlier grant's.
    pub fn newly_granted(&self) -> bool {
        self.grant.newly_granted
    }

    /// Exclusive, or shared (a reader, or a semaphore's permit).
    pub fn mode(&self) -> Mode {
        self.grant.mode
    }

    /// The value asked for with the grant (a leader's address), if any. A re-acquire of a
    /// lock the session already held keeps the first grant's value.
    pub fn value(&self) -> Option<&str> {
        self.grant.value.as_deref()
    }

    /// How long the grant waited in the lock's queue; zero for a grant without waiting.
    pub fn waited(&self) -> std::time::Duration {
        self.grant.waited
    }

    /// Releases the lock. An error other than [`Error::Unavailable`] means the lock was
    /// already gone (the session expired or was deleted): the protected work may have overlapped
    /// with the next holder's.
    pub async fn release(mut self) -> Result<(), Error> {
        self.released = true;
        let result =
            self.client.release(self.grant.session_id, self.grant.resource.as_str(), self.grant.fence_token).await;
        self.held.forget(&self.grant.resource);
        result
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (client, grant, held) = (self.client.clone(), self.grant.clone(), self.held.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = client.release(grant.session_id, grant.resource.as_str(), grant.fence_token).await {
                        tracing::debug!(session_id = %grant.session_id, resource = %grant.resource, error = %e, "releasing a dropped lock failed");
                    }
                    // Only now: a `lock` of the same resource before the release landed would
                    // get the old grant back and then lose it to this release.
                    held.forget(&grant.resource);
                });
            }
            // No runtime: the lock stays held until the session ends.
            Err(_) => held.forget(&grant.resource),
        }
    }
}

/// The resources held through a session's live guards. A std mutex: a set insert or remove,
/// never held across an await.
#[derive(Debug, Clone, Default)]
pub(crate) struct Held(Arc<Mutex<BTreeSet<Resource>>>);

impl Held {
    /// Marks `resource` as taken by a guard being made; false if a guard already has it.
    pub fn reserve(&self, resource: &Resource) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(resource.clone())
    }

    pub fn forget(&self, resource: &Resource) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(resource);
    }
}

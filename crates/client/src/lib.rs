//! The lock.io client: sessions kept alive in the background, locks with fence tokens (at once,
//! or after waiting in the lock's queue), and failover across a cluster's endpoints, over the
//! HTTP API (docs/http-api.md).
//!
//! This crate compiles none of the server: no openraft, axum or redb in its dependency tree
//! (`.ci/run` checks). It shares only `lockio-core`'s value types (`SessionId`, `Resource`,
//! `FenceToken`, `ClientId`) and their validation rules, so that a bad value is refused before
//! it is sent.
//!
//! - [`Client`]: the cluster, as a list of endpoints. One method per route; the leader's
//!   endpoint is preferred once known; calls that are safe to repeat are retried on 503 and
//!   connection errors with bounded backoff, and a session create never is when its outcome is
//!   unknown.
//! - [`Session`]: a session that sends its own keepalives and says whether it is
//!   [alive, in jeopardy or expired](SessionState); closed, or dropped, it is deleted.
//!   [`lock`](Session::lock) is a try-lock; [`lock_wait`](Session::lock_wait) waits in the
//!   lock's queue, kept by the cluster in arrival order, and gets the lock the moment the
//!   sessions ahead are done with it. [`lock_with`](Session::lock_with) takes [`LockOptions`]:
//!   shared locks (readers), counting semaphores (`limit`), a `value` stored with the grant;
//!   [`campaign`](Session::campaign) is a leader election.
//! - [`LockGuard`]: a held lock and its [`FenceToken`]; released explicitly or on drop.
//! - [`Error`]: why a call failed, one variant per thing the caller can do about it.
//!
//! ```no_run
//! use std::time::Duration;
//! use lockio_client::{Client, Error};
//!
//! # async fn demo() -> Result<(), Error> {
//! let client = Client::new(["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"])?;
//! let session = client.open_session("invoice-worker-1", Duration::from_secs(30)).await?;
//! match session.lock("invoices").await {
//!     Ok(guard) => {
//!         // Hand the token to what the lock protects; it refuses lower tokens.
//!         println!("holding invoices with fence token {}", guard.fence_token());
//!         guard.release().await?;
//!     }
//!     Err(Error::LockHeld { holder_client_id, holder_fence_token, .. }) => {
//!         println!("{holder_client_id} has it (token {holder_fence_token}); try later");
//!     }
//!     Err(e) => return Err(e),
//! }
//! session.close().await
//! # }
//! ```
//!
//! Waiting instead of trying once: the cluster queues the session behind the holder (and anyone
//! already waiting) and answers when the lock is granted, or with [`Error::LockHeld`] once the
//! wait is over. A connection that breaks meanwhile (a leader change) is retried at once, keeping
//! the place in the queue; dropping the future gives the place up.
//!
//! ```no_run
//! use std::time::Duration;
//! use lockio_client::{Client, Error};
//!
//! # async fn demo() -> Result<(), Error> {
//! let client = Client::new(["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"])?;
//! let session = client.open_session("invoice-worker-2", Duration::from_secs(30)).await?;
//! match session.lock_wait("invoices", Duration::from_secs(120)).await {
//!     Ok(guard) => {
//!         println!("waited {:?} for invoices; fence token {}", guard.waited(), guard.fence_token());
//!         guard.release().await?;
//!     }
//!     Err(Error::LockHeld { holder_client_id, queue_length, .. }) => {
//!         println!("{holder_client_id} kept it for two minutes; {queue_length} still waiting");
//!     }
//!     Err(e) => return Err(e),
//! }
//! session.close().await
//! # }
//! ```
//!
//! Every error reads as one sentence a person can act on:
//!
//! ```
//! use lockio_client::Client;
//!
//! let e = Client::new(["https://lock-1:5000"]).unwrap_err();
//! assert_eq!(e.to_string(), "invalid endpoints: `https://lock-1:5000` must be http:// (lock.io has no TLS)");
//! ```
//!
//! Watching what happens to some resources: every change, in log order, resumed after a
//! reconnect without a gap or a repeat. [`Error::Compacted`] says changes were missed (the node
//! no longer holds them): re-read what you need, and the watch goes on from there.
//!
//! ```no_run
//! use lockio_client::{Client, Error};
//!
//! # async fn demo() -> Result<(), Error> {
//! let client = Client::new(["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"])?;
//! let mut watch = client.watch("orders/", None)?;
//! loop {
//!     match watch.next().await {
//!         Ok(e) => println!("{} {} {:?} (token {:?})", e.id, e.kind, e.resource, e.fence_token),
//!         Err(Error::Compacted { current, .. }) => {
//!             println!("missed changes; re-reading the locks, then on from {current}");
//!         }
//!         Err(e) => return Err(e),
//!     }
//! }
//! # }
//! ```
//!
//! Readers and writers, semaphores: a shared lock is held by any number of sessions at once
//! (or at most `limit`, a counting semaphore), each grant with its own fence token; an exclusive
//! request waits for all of them, and shared requests after it wait behind it.
//!
//! ```no_run
//! use std::time::Duration;
//! use lockio_client::{Client, Error, LockOptions, Mode};
//!
//! # async fn demo() -> Result<(), Error> {
//! let client = Client::new(["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"])?;
//! let session = client.open_session("report-reader-1", Duration::from_secs(30)).await?;
//! let read = session.lock_with("report", LockOptions::shared().wait(Duration::from_secs(10))).await?;
//! assert_eq!(read.mode(), Mode::Shared);
//! let status = client.lock_status("report").await?;
//! println!("{} readers: {:?}", status.holders_count, status.holders.iter().map(|h| h.fence_token).collect::<Vec<_>>());
//! match session.lock_with("pool", LockOptions::shared().limit(2)).await {
//!     Ok(permit) => permit.release().await?,
//!     Err(Error::LockHeld { .. }) => println!("both permits are taken"),
//!     Err(Error::LimitMismatch { limit, .. }) => println!("pool's limit is {limit:?}, not 2"),
//!     Err(e) => return Err(e),
//! }
//! read.release().await?;
//! session.close().await
//! # }
//! ```
//!
//! A leader election: [`Session::campaign`] waits for the exclusive lock with a value (the
//! leader's address), [`Client::leader`] reads who leads, and [`Client::fence_check`] lets a
//! downstream service ask whether a token it was handed is still a current holder's:
//!
//! ```no_run
//! use std::time::Duration;
//! use lockio_client::{Client, Error};
//!
//! # async fn demo() -> Result<(), Error> {
//! let client = Client::new(["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"])?;
//! let session = client.open_session("scheduler-a", Duration::from_secs(15)).await?;
//! let leading = session.campaign("scheduler", "10.0.0.7:8080", Duration::from_secs(300)).await?;
//! let leader = client.leader("scheduler").await?.expect("someone leads");
//! assert_eq!(leader.value.as_deref(), Some("10.0.0.7:8080"));
//! let check = client.fence_check("scheduler", leading.fence_token()).await?;
//! assert!(check.valid);
//! leading.release().await?;
//! assert!(!client.fence_check("scheduler", leader.fence_token).await?.valid);
//! session.close().await
//! # }
//! ```
//!
//! Left out for now: TLS and authentication.

mod body;
mod client;
mod endpoints;
mod error;
mod lease;
mod lock;
mod retry;
mod session;
mod time;
mod transport;
mod wait;
mod watch;

pub use client::{
    Client, ClientBuilder, FenceCheck, Grant, KeepaliveAck, LockHolder, LockOptions, LockStatus, Member, NodeStatus,
    SessionCreated, SessionInfo, Waiter,
};
pub use error::{Attempt, Error};
pub use lease::{Expiry, SessionState};
pub use lock::LockGuard;
pub use lockio_core::{ClientId, FenceToken, Mode, Resource, SessionId, Stats};
pub use session::Session;
pub use watch::{EventId, Watch, WatchEvent};

//! Test support: real `lockio serve` processes on 127.0.0.1 with temporary data directories,
//! an HTTP helper that returns status and JSON, and polling with a deadline.

pub mod browser;
pub mod cluster;
pub mod http;

use std::future::Future;
use std::time::Duration;

pub use cluster::Cluster;
pub use http::{acquire, call, create_session, status, try_call, Resp};

/// Polls `probe` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

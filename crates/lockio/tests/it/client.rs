//! `lockio-client` against a real cluster: sessions that keep themselves alive (through a leader
//! kill too), typed errors, guards that release on drop, and a session that learns it is gone.

use std::time::{Duration, Instant};

use lockio_client::{Client, Error, Expiry, SessionState};

use crate::support::{eventually, Cluster};


#[tokio::test(flavor = "multi_thread")]
async fn locks_are_typed_and_guards_release() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let alice = client.open_session("alice", Duration::from_secs(30)).await.unwrap();
    let bob = client.open_session("bob", Duration::from_secs(30)).await.unwrap();

    let guard = alice.lock("ledger").await.unwrap();
    assert!(guard.newly_granted());
    assert_eq!(guard.session_id(), alice.id());
    assert!(matches!(alice.lock("ledger").await, Err(Error::AlreadyLocked { .. })), "one guard per grant");
    match bob.lock("ledger").await {
        Err(Error::LockHeld { resource, holder_client_id, holder_fence_token, .. }) => {
            assert_eq!((resource.as_str(), holder_client_id.as_str(), holder_fence_token), ("ledger", "alice", guard.fence_token()));
        }
        other => panic!("{other:?}"),
    }
    for bad in ["", " padded", &"x".repeat(256)] {
        assert!(matches!(bob.lock(bad).await, Err(Error::InvalidInput { ref field, .. }) if field == "resource"), "{bad:?}");
    }

    // An explicit release frees it at once; the next grant has a higher token.
    let first = guard.fence_token();
    guard.release().await.unwrap();
    let guard = bob.lock("ledger").await.unwrap();
    assert!(guard.fence_token() > first);

    // A dropped guard releases in the background.
    drop(guard);
    eventually(Duration::from_secs(10), "the dropped guard's lock is released", || async {
        client.lock_status("ledger").await.unwrap().holder.is_none().then_some(())
    })
    .await;

    // Closing deletes the session (and would release its locks).
    let kept = alice.lock("kept").await.unwrap();
    let id = alice.id();
    alice.close().await.unwrap();
    assert!(matches!(client.session_info(id).await, Err(Error::SessionNotFound { .. })));
    assert!(client.lock_status("kept").await.unwrap().holder.is_none());
    // Releasing a lock whose session is gone says so.
    assert!(matches!(kept.release().await, Err(Error::SessionNotFound { .. })));
    bob.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_keeps_itself_alive_past_its_timeout_and_across_a_leader_kill() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client();
    let session = client.open_session("steady", Duration::from_secs(5)).await.unwrap();
    let guard = session.lock("beacon").await.unwrap();
    let mut states = session.watch();
    let leader = cluster.wait_for_leader().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.kill(leader);
    // Watch it for longer than its timeout after the kill: it never expires.
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    while let Ok(changed) = tokio::time::timeout_at(until, states.changed()).await {
        changed.unwrap();
        assert!(!states.borrow_and_update().is_expired(), "expired across the failover");
    }
    assert_eq!(session.state(), SessionState::Alive);
    let info = client.session_info(session.id()).await.unwrap();
    assert!(!info.is_expired() && info.locks_held.iter().any(|r| r.as_str() == "beacon"), "{info:?}");
    guard.release().await.unwrap();
    session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_deleted_behind_its_back_is_expired_at_the_next_keepalive() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let session = client.open_session("unlucky", Duration::from_secs(5)).await.unwrap();
    client.delete_session(session.id()).await.unwrap();
    let started = Instant::now();
    let why = tokio::time::timeout(Duration::from_secs(4), session.expired()).await.expect("noticed within a keepalive interval or two");
    assert_eq!(why, Expiry::Confirmed, "after {:?}", started.elapsed());
    assert!(matches!(session.lock("anything").await, Err(Error::SessionExpired { .. })));
    session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_endpoints_are_skipped() {
    let cluster = Cluster::start(3).await;
    let dead = format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let client = Client::new([dead.clone(), cluster.base(1), cluster.base(2)]).unwrap();
    assert_eq!(client.endpoints()[0], dead);
    // The create arrives nowhere at the dead endpoint, so it is safe to send on.
    let session = client.open_session("persistent", Duration::from_secs(10)).await.unwrap();
    let guard = session.lock("r").await.unwrap();
    assert_eq!(client.stats().await.unwrap().total_locks, 1);
    guard.release().await.unwrap();
    session.close().await.unwrap();
}

//! `lockio-client` against a real cluster: sessions that keep themselves alive (through a leader
//! kill too), typed errors, guards that release on drop, a session that learns it is gone, and
//! waits in a lock's queue (granted on release, timed out, given up by dropping the future).

use std::time::{Duration, Instant};

use lockio_client::{Client, Error, Expiry, LockStatus, SessionState};

use crate::support::{eventually, Cluster};

/// Polls `resource`'s status until its queue holds exactly `clients` (client ids, in order).
async fn queue_becomes(client: &Client, resource: &str, clients: &[&str]) -> LockStatus {
    eventually(Duration::from_secs(15), &format!("the queue of {resource} is {clients:?}"), || async {
        let status = client.lock_status(resource).await.ok()?;
        let queue: Vec<&str> = status.waiters.iter().map(|w| w.client_id.as_str()).collect();
        (queue == clients).then_some(status)
    })
    .await
}

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
            assert_eq!(
                (resource.as_str(), holder_client_id.as_str(), holder_fence_token),
                ("ledger", "alice", guard.fence_token())
            );
        }
        other => panic!("{other:?}"),
    }
    for bad in ["", " padded", &"x".repeat(256)] {
        assert!(
            matches!(bob.lock(bad).await, Err(Error::InvalidInput { ref field, .. }) if field == "resource"),
            "{bad:?}"
        );
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
    let why = tokio::time::timeout(Duration::from_secs(4), session.expired())
        .await
        .expect("noticed within a keepalive interval or two");
    assert_eq!(why, Expiry::Confirmed, "after {:?}", started.elapsed());
    assert!(matches!(session.lock("anything").await, Err(Error::SessionExpired { .. })));
    session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_endpoints_are_skipped() {
    let cluster = Cluster::start(3).await;
    let dead =
        format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let client = Client::new([dead.clone(), cluster.base(1), cluster.base(2)]).unwrap();
    assert_eq!(client.endpoints()[0], dead);
    // The create arrives nowhere at the dead endpoint, so it is safe to send on.
    let session = client.open_session("persistent", Duration::from_secs(10)).await.unwrap();
    let guard = session.lock("r").await.unwrap();
    assert_eq!(client.stats().await.unwrap().total_locks, 1);
    guard.release().await.unwrap();
    session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiter_gets_the_lock_when_the_holder_releases() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let alice = client.open_session("alice", Duration::from_secs(30)).await.unwrap();
    let bob =
        client.open_session_with_lock_delay("bob", Duration::from_secs(30), Duration::from_secs(5)).await.unwrap();
    assert_eq!(bob.lock_delay(), Duration::from_secs(5));
    let guard = alice.lock("ledger").await.unwrap();
    let bob_id = bob.id();
    let waiting = tokio::spawn(async move {
        let result = bob.lock_wait("ledger", Duration::from_secs(60)).await;
        (bob, result)
    });

    let status = queue_becomes(&client, "ledger", &["bob"]).await;
    assert_eq!((status.queue_length, status.waiters[0].session_id), (1, bob_id), "{status:?}");
    let holder = status.holder.as_ref().expect("alice holds it");
    assert_eq!((holder.session_id, holder.fence_token), (alice.id(), guard.fence_token()), "{status:?}");
    assert!(status.waiters[0].deadline > status.waiters[0].since, "{status:?}");
    let info = client.session_info(bob_id).await.unwrap();
    assert_eq!((info.waiting_for.len(), info.waiting_for.first().map(|r| r.as_str())), (1, Some("ledger")), "{info:?}");
    assert_eq!(info.lock_delay, Duration::from_secs(5), "{info:?}");
    assert!(!waiting.is_finished(), "bob waits while alice holds it");

    let first = guard.fence_token();
    guard.release().await.unwrap();
    let (bob, granted) =
        tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("granted on release").unwrap();
    let granted = granted.unwrap();
    assert!(granted.fence_token() > first, "{} after {first}", granted.fence_token());
    assert!(granted.newly_granted() && granted.waited() > Duration::ZERO, "{granted:?}");
    let status = client.lock_status("ledger").await.unwrap();
    assert_eq!(status.holder.map(|h| (h.session_id, h.fence_token)), Some((bob_id, granted.fence_token())));
    assert_eq!(status.queue_length, 0);
    assert!(client.session_info(bob_id).await.unwrap().waiting_for.is_empty());
    granted.release().await.unwrap();
    bob.close().await.unwrap();
    alice.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wait_that_runs_out_is_lock_held_and_leaves_the_queue() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let alice = client.open_session("alice", Duration::from_secs(30)).await.unwrap();
    let bob = client.open_session("bob", Duration::from_secs(30)).await.unwrap();
    let guard = alice.lock("ledger").await.unwrap();

    let started = Instant::now();
    let refused = bob.lock_wait("ledger", Duration::from_secs(2)).await;
    let took = started.elapsed();
    match refused {
        Err(Error::LockHeld {
            ref resource, ref holder_client_id, holder_fence_token, queue_length, waited, ..
        }) => {
            assert_eq!(
                (resource.as_str(), holder_client_id.as_str(), holder_fence_token),
                ("ledger", "alice", guard.fence_token())
            );
            assert_eq!(queue_length, 0, "the timed-out waiter is not counted");
            let waited = waited.expect("a wait says how long it waited");
            assert!(waited >= Duration::from_millis(1900) && waited < Duration::from_secs(6), "{waited:?}");
        }
        ref other => panic!("{other:?}"),
    }
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(8), "{took:?}");
    assert!(refused.unwrap_err().to_string().contains("; gave up after waiting "));
    let status = client.lock_status("ledger").await.unwrap();
    assert!(status.waiters.is_empty() && status.queue_length == 0, "{status:?}");

    // Waits the contract does not take are refused before anything is sent.
    for bad in [Duration::from_secs(301), Duration::from_millis(1500)] {
        assert!(
            matches!(bob.lock_wait("ledger", bad).await, Err(Error::InvalidInput { ref field, .. }) if field == "wait"),
            "{bad:?}"
        );
    }
    // Nothing of the timed-out wait is left on this side either: bob waits again.
    let again = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(bob.lock_wait("ledger", Duration::from_secs(30)), async {
            queue_becomes(&client, "ledger", &["bob"]).await;
            guard.release().await.unwrap();
        })
        .0
    })
    .await
    .expect("granted on release");
    again.unwrap().release().await.unwrap();
    bob.close().await.unwrap();
    alice.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_a_wait_gives_up_its_place() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let alice = client.open_session("alice", Duration::from_secs(30)).await.unwrap();
    let bob = client.open_session("bob", Duration::from_secs(30)).await.unwrap();
    let guard = alice.lock("ledger").await.unwrap();
    tokio::select! {
        result = bob.lock_wait("ledger", Duration::from_secs(60)) => panic!("the wait ended: {result:?}"),
        _ = queue_becomes(&client, "ledger", &["bob"]) => {}
    }
    // The wait's future is dropped: its connection closes, and the cluster cancels it.
    queue_becomes(&client, "ledger", &[]).await;
    guard.release().await.unwrap();
    assert!(client.lock_status("ledger").await.unwrap().holder.is_none(), "a cancelled waiter is never granted");
    // Once the client has seen the cancel settle, the resource is bob's to take again.
    let guard =
        eventually(Duration::from_secs(15), "bob can lock ledger again", || async { bob.lock("ledger").await.ok() })
            .await;
    guard.release().await.unwrap();
    bob.close().await.unwrap();
    alice.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wait_keeps_its_place_across_a_leader_kill() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client();
    let alice = client.open_session("alice", Duration::from_secs(30)).await.unwrap();
    let guard = alice.lock("ledger").await.unwrap();
    // bob's client knows the leader, so its wait is open on the node about to die.
    let leader = cluster.wait_for_leader().await;
    let leader_first = std::iter::once(leader).chain(cluster.running().into_iter().filter(|id| *id != leader));
    let bob_client = Client::new(leader_first.map(|id| cluster.base(id))).unwrap();
    let bob = bob_client.open_session("bob", Duration::from_secs(30)).await.unwrap();
    let carol = client.open_session("carol", Duration::from_secs(30)).await.unwrap();
    let bob_waits = tokio::spawn(async move {
        let result = bob.lock_wait("ledger", Duration::from_secs(60)).await;
        (bob, result)
    });
    queue_becomes(&client, "ledger", &["bob"]).await;
    let carol_waits = tokio::spawn(async move {
        let result = carol.lock_wait("ledger", Duration::from_secs(60)).await;
        (carol, result)
    });
    queue_becomes(&client, "ledger", &["bob", "carol"]).await;

    cluster.kill(leader);
    let client = cluster.client();
    // bob's connection broke; its retry joined its own entry, still first.
    queue_becomes(&client, "ledger", &["bob", "carol"]).await;
    assert!(!bob_waits.is_finished(), "bob still waits");
    guard.release().await.unwrap();
    let (bob, granted) =
        tokio::time::timeout(Duration::from_secs(15), bob_waits).await.expect("bob is granted first").unwrap();
    let granted = granted.unwrap();
    assert!(!carol_waits.is_finished(), "carol waits behind bob");
    granted.release().await.unwrap();
    let (carol, granted) =
        tokio::time::timeout(Duration::from_secs(15), carol_waits).await.expect("then carol").unwrap();
    granted.unwrap().release().await.unwrap();
    for session in [bob, carol, alice] {
        session.close().await.unwrap();
    }
}

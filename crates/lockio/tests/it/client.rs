//! `lockio-client` against a real cluster: sessions that keep themselves alive (through a leader
//! kill too), typed errors, guards that release on drop, a session that learns it is gone, and
//! waits in a lock's queue (granted on release, timed out, given up by dropping the future),
//! shared locks and semaphores with values, fence checks and elections.

use std::time::{Duration, Instant};

use lockio_client::{Client, Error, Expiry, LockOptions, LockStatus, Mode, Resource, SessionState};

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

#[tokio::test(flavor = "multi_thread")]
async fn shared_locks_semaphores_values_fence_checks_and_elections() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let alice = client.open_session("alice", Duration::from_secs(30)).await.unwrap();
    let bob = client.open_session("bob", Duration::from_secs(30)).await.unwrap();
    let carol = client.open_session("carol", Duration::from_secs(30)).await.unwrap();

    // Two readers hold one resource together, each with its own token and value.
    let a = alice.lock_with("report", LockOptions::shared().value("reader-a")).await.unwrap();
    let b = bob.lock_with("report", LockOptions::shared().value("reader-b")).await.unwrap();
    assert_eq!((a.mode(), a.value(), b.value()), (Mode::Shared, Some("reader-a"), Some("reader-b")));
    assert!(b.fence_token() > a.fence_token());
    let status = client.lock_status("report").await.unwrap();
    assert_eq!((status.mode, status.limit, status.holders_count), (Some(Mode::Shared), None, 2));
    let holders: Vec<(&str, u64, Option<&str>)> = status
        .holders
        .iter()
        .map(|h| (h.client_id.as_ref().unwrap().as_str(), h.fence_token.0, h.value.as_deref()))
        .collect();
    assert_eq!(
        holders,
        [("alice", a.fence_token().0, Some("reader-a")), ("bob", b.fence_token().0, Some("reader-b"))],
        "{status:?}"
    );
    assert_eq!(status.holder.as_ref().map(|h| h.session_id), Some(alice.id()), "the oldest holder on top");
    // A writer is refused; a reader asking to write is a mode conflict.
    assert!(matches!(carol.lock("report").await, Err(Error::LockHeld { .. })));
    match client.acquire_with(alice.id(), "report", &LockOptions::exclusive()).await {
        Err(Error::ModeConflict { resource, mode }) => assert_eq!((resource.as_str(), mode), ("report", Mode::Shared)),
        other => panic!("{other:?}"),
    }
    assert!(client.leader("report").await.unwrap().is_none(), "a shared lock has no leader");

    // A semaphore of 2: two permits, a third refused, another limit a mismatch.
    let pool = LockOptions::shared().limit(2);
    let p1 = alice.lock_with("pool", pool.clone()).await.unwrap();
    let p2 = bob.lock_with("pool", pool.clone()).await.unwrap();
    assert!(matches!(carol.lock_with("pool", pool.clone()).await, Err(Error::LockHeld { .. })));
    match carol.lock_with("pool", LockOptions::shared().limit(3)).await {
        Err(e @ Error::LimitMismatch { .. }) => {
            assert_eq!(e, Error::LimitMismatch { resource: Resource::new("pool").unwrap(), limit: Some(2) });
            assert_eq!(e.to_string(), "pool is shared with a limit of 2; ask with that limit or none");
        }
        other => panic!("{other:?}"),
    }
    let status = client.lock_status("pool").await.unwrap();
    assert_eq!((status.limit, status.holders_count), (Some(2), 2));
    // A freed permit goes to a waiter asking without a limit (it takes the resource's).
    let waiting = {
        let client = client.clone();
        let id = carol.id();
        tokio::spawn(async move {
            client.acquire_with(id, "pool", &LockOptions::shared().wait(Duration::from_secs(30))).await
        })
    };
    let waiter = eventually(Duration::from_secs(15), "carol waits for a permit", || async {
        client.lock_status("pool").await.ok()?.waiters.first().cloned()
    })
    .await;
    // Asking without a limit, it took the resource's.
    assert_eq!((waiter.client_id.as_str(), waiter.mode, waiter.limit), ("carol", Mode::Shared, Some(2)), "{waiter:?}");
    p1.release().await.unwrap();
    let grant = tokio::time::timeout(Duration::from_secs(15), waiting).await.unwrap().unwrap().unwrap();
    assert!(grant.fence_token > p2.fence_token());
    assert_eq!(client.lock_status("pool").await.unwrap().holders_count, 2);

    // Fence checks: a current holder's token, a wrong one, and one released.
    let check = client.fence_check("report", b.fence_token()).await.unwrap();
    assert!(check.valid, "{check:?}");
    assert_eq!(check.holders.len(), 2);
    assert!(!client.fence_check("report", p2.fence_token()).await.unwrap().valid, "a token of another resource");
    let released = a.fence_token();
    a.release().await.unwrap();
    let check = client.fence_check("report", released).await.unwrap();
    assert!(!check.valid && check.holders.len() == 1, "{check:?}");
    assert!(!client.fence_check("nothing-here", released).await.unwrap().valid);

    // An election: carol campaigns and leads; alice's campaign runs out while carol leads.
    assert!(client.leader("sched").await.unwrap().is_none());
    let leading = carol.campaign("sched", "10.0.0.9:8080", Duration::from_secs(5)).await.unwrap();
    assert_eq!((leading.mode(), leading.value()), (Mode::Exclusive, Some("10.0.0.9:8080")));
    let leader = client.leader("sched").await.unwrap().unwrap();
    assert_eq!((leader.value.as_deref(), leader.fence_token), (Some("10.0.0.9:8080"), leading.fence_token()));
    assert!(matches!(
        alice.campaign("sched", "10.0.0.7:8080", Duration::from_secs(1)).await,
        Err(Error::LockHeld { .. })
    ));
    assert!(matches!(
        alice.lock_with("sched", LockOptions::exclusive().value("x".repeat(1025))).await,
        Err(Error::InvalidInput { ref field, .. }) if field == "value"
    ));
    leading.release().await.unwrap();
    let leading = alice.campaign("sched", "10.0.0.7:8080", Duration::from_secs(5)).await.unwrap();
    let leader = client.leader("sched").await.unwrap().unwrap();
    assert_eq!((leader.value.as_deref(), leader.fence_token), (Some("10.0.0.7:8080"), leading.fence_token()));

    drop((b, p2, leading));
    for session in [alice, bob, carol] {
        session.close().await.unwrap();
    }
}

//! Waiting for a lock (coordination.md, "Waiting" and "Lock-delay") against real clusters: the
//! queue's order, the hand-off on each way a lock is freed, how a wait ends without the lock,
//! a retry keeping its place, a cancel when the client goes away, waits through a follower,
//! lock-delay after an expiry and none after a release or a delete, and the queue's limit.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::support::{call, create_session, eventually, Cluster, Resp};

/// `POST .../locks/{resource}` with `{"wait": secs}`, left open in a task of its own.
fn wait_in_background(base: &str, session: &str, resource: &str, secs: u64) -> JoinHandle<Resp> {
    let url = format!("{base}/sessions/{session}/locks/{resource}");
    tokio::spawn(async move { call("POST", &url, Some(json!({"wait": secs}))).await })
}

async fn lock_status(base: &str, resource: &str) -> Value {
    call("GET", &format!("{base}/admin/locks/{resource}"), None).await.body
}

/// The session ids in `resource`'s queue, head first.
async fn queue(base: &str, resource: &str) -> Vec<String> {
    let status = lock_status(base, resource).await;
    status["waiters"].as_array().unwrap().iter().map(|w| w["session_id"].as_str().unwrap().to_string()).collect()
}

/// Waits until `resource`'s queue is exactly `want`.
async fn queue_becomes(base: &str, resource: &str, want: &[&String]) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    eventually(Duration::from_secs(10), &format!("queue of {resource} to be {want:?}"), || {
        let want = want.clone();
        async move { (queue(base, resource).await == want).then_some(()) }
    })
    .await;
}

async fn release(base: &str, session: &str, resource: &str, token: u64) {
    let r = call("DELETE", &format!("{base}/sessions/{session}/locks/{resource}"), Some(json!({"fence_token": token})))
        .await;
    assert_eq!(r.status, 200, "release: {}", r.text);
}

async fn take(base: &str, session: &str, resource: &str) -> u64 {
    let r = call("POST", &format!("{base}/sessions/{session}/locks/{resource}"), None).await;
    assert_eq!(r.status, 201, "acquire: {}", r.text);
    r.body["fence_token"].as_u64().unwrap()
}

/// A grant answer of a wait: 201, this session, and the token.
fn granted(r: &Resp, session: &str) -> u64 {
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["acquired"], true, "{}", r.text);
    assert_eq!(r.body["session_id"], json!(session), "{}", r.text);
    assert!(r.body["waited"].as_f64().unwrap() > 0.0, "a grant after waiting says how long: {}", r.text);
    r.body["fence_token"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn waiters_get_the_lock_in_arrival_order_through_any_node() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let followers: Vec<u64> = cluster.running().into_iter().filter(|id| *id != leader).collect();
    let (lb, f1, f2) = (cluster.base(leader), cluster.base(followers[0]), cluster.base(followers[1]));
    let holder = create_session(&lb, "holder", 60).await;
    let waiters: Vec<String> =
        futures_util::future::join_all(["w1", "w2", "w3"].map(|c| create_session(&f1, c, 60))).await;
    let token = take(&lb, &holder, "fifo").await;

    // Each joins through a different node, after the one before is queued.
    let mut open = Vec::new();
    for (i, w) in waiters.iter().enumerate() {
        let via = [&f1, &f2, &lb][i];
        open.push(wait_in_background(via, w, "fifo", 30));
        queue_becomes(&f2, "fifo", &waiters.iter().take(i + 1).collect::<Vec<_>>()).await;
    }
    let status = lock_status(&f1, "fifo").await;
    assert_eq!(status["queue_length"], 3, "{status}");
    assert_eq!(status["waiters"][0]["client_id"], "w1", "{status}");
    let session = call("GET", &format!("{lb}/sessions/{}", waiters[0]), None).await;
    assert_eq!(session.body["waiting_for"], json!(["fifo"]), "{}", session.text);

    // Nobody jumps the queue: a try-lock is refused and told how many wait.
    let latecomer = create_session(&lb, "latecomer", 60).await;
    let r = call("POST", &format!("{f2}/sessions/{latecomer}/locks/fifo"), None).await;
    assert_eq!(
        (r.status, r.body["code"].clone(), r.body["queue_length"].clone()),
        (409, json!("LOCK_HELD"), json!(3)),
        "{}",
        r.text
    );

    // Each release hands the lock to the next in line, with the next token.
    let mut last = token;
    for (w, handle) in waiters.iter().zip(open) {
        release(&lb, if last == token { &holder } else { &waiters[(last - token - 1) as usize] }, "fifo", last).await;
        let answer = handle.await.unwrap();
        let t = granted(&answer, w);
        assert_eq!(t, last + 1, "the hand-off takes the next token");
        last = t;
    }
    assert_eq!(queue(&lb, "fifo").await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_freed_lock_goes_to_the_head_of_the_queue_however_it_was_freed() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let base = cluster.base(leader);
    let next = create_session(&base, "next", 60).await;

    // Delete: the holder's session goes, the waiter gets the lock.
    let holder = create_session(&base, "deleted-holder", 60).await;
    let token = take(&base, &holder, "by-delete").await;
    let waiting = wait_in_background(&base, &next, "by-delete", 30);
    queue_becomes(&base, "by-delete", &[&next]).await;
    assert_eq!(call("DELETE", &format!("{base}/sessions/{holder}"), None).await.status, 200);
    assert_eq!(granted(&waiting.await.unwrap(), &next), token + 1);

    // Expiry: the holder stops sending keepalives; the sweep's expiry hands the lock on.
    let holder = create_session(&base, "expiring-holder", 5).await;
    let token = take(&base, &holder, "by-expiry").await;
    let started = Instant::now();
    let waiting = wait_in_background(&base, &next, "by-expiry", 30);
    let answer = waiting.await.unwrap();
    assert_eq!(granted(&answer, &next), token + 1);
    assert!(started.elapsed() >= Duration::from_secs(4), "granted only once the holder expired");
    let expired = call("GET", &format!("{base}/sessions/{holder}"), None).await;
    assert_eq!(expired.body["is_expired"], true, "{}", expired.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_hands_an_overdue_holders_lock_to_the_queue() {
    // No sweep: only `POST /admin/cleanup` expires the overdue holder.
    let cluster = Cluster::start_with(1, &["--sweep-interval", "1h"]).await;
    let base = cluster.base(1);
    let holder = create_session(&base, "overdue-holder", 5).await;
    let next = create_session(&base, "next", 60).await;
    let token = take(&base, &holder, "by-cleanup").await;
    let waiting = wait_in_background(&base, &next, "by-cleanup", 60);
    queue_becomes(&base, "by-cleanup", &[&next]).await;
    eventually(Duration::from_secs(10), "the holder to be overdue", || async {
        let s = call("GET", &format!("{base}/sessions/{holder}"), None).await;
        (s.body["expires_in"].as_f64() == Some(0.0)).then_some(())
    })
    .await;
    assert!(!waiting.is_finished(), "nothing but the cleanup may free the lock here");
    let r = call("POST", &format!("{base}/admin/cleanup"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(granted(&waiting.await.unwrap(), &next), token + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wait_ends_at_its_deadline_or_with_its_session() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    let (lb, fb) = (cluster.base(leader), cluster.base(follower));
    let holder = create_session(&lb, "holder", 60).await;
    let token = take(&lb, &holder, "busy").await;

    // The deadline: 409 LOCK_HELD naming the holder, after about `wait`, and out of the queue.
    let waiter = create_session(&lb, "patient", 60).await;
    let started = Instant::now();
    let r = call("POST", &format!("{fb}/sessions/{waiter}/locks/busy?wait=1"), None).await;
    let took = started.elapsed();
    assert_eq!((r.status, r.body["code"].clone()), (409, json!("LOCK_HELD")), "{}", r.text);
    assert_eq!(r.body["acquired"], false);
    assert_eq!(r.body["holder_client_id"], "holder");
    assert_eq!(r.body["holder_fence_token"], token);
    assert_eq!(r.body["queue_length"], 0, "the waiter no longer counts itself: {}", r.text);
    let waited = r.body["waited"].as_f64().unwrap();
    assert!((1.0..3.0).contains(&waited), "waited {waited}");
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(4), "answered after {took:?}");
    assert_eq!(queue(&lb, "busy").await, Vec::<String>::new());

    // Deleted while waiting: 404 SESSION_NOT_FOUND, and its place is gone.
    let doomed = create_session(&lb, "doomed", 60).await;
    let waiting = wait_in_background(&fb, &doomed, "busy", 30);
    queue_becomes(&lb, "busy", &[&doomed]).await;
    assert_eq!(call("DELETE", &format!("{lb}/sessions/{doomed}"), None).await.status, 200);
    let r = waiting.await.unwrap();
    assert_eq!(
        (r.status, r.body["code"].clone(), r.body["acquired"].clone()),
        (404, json!("SESSION_NOT_FOUND"), json!(false)),
        "{}",
        r.text
    );
    assert_eq!(queue(&lb, "busy").await, Vec::<String>::new());

    // Expired while waiting (a wait is not a keepalive): 410 SESSION_EXPIRED.
    let lapsed = create_session(&lb, "lapsed", 5).await;
    let r = call("POST", &format!("{lb}/sessions/{lapsed}/locks/busy"), Some(json!({"wait": 30}))).await;
    assert_eq!((r.status, r.body["code"].clone()), (410, json!("SESSION_EXPIRED")), "{}", r.text);
    assert_eq!(queue(&lb, "busy").await, Vec::<String>::new());

    // The holder still holds it under its token.
    assert_eq!(lock_status(&fb, "busy").await["fence_token"], token);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_wait_keeps_its_place_and_an_abandoned_one_is_cancelled() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    let (lb, fb) = (cluster.base(leader), cluster.base(follower));
    let holder = create_session(&lb, "holder", 60).await;
    let (first, second) = (create_session(&lb, "first", 60).await, create_session(&lb, "second", 60).await);
    let token = take(&lb, &holder, "spot").await;

    // `first` queues, then `second`; `first`'s connection breaks and it asks again at once.
    let dropped = wait_in_background(&fb, &first, "spot", 30);
    queue_becomes(&lb, "spot", &[&first]).await;
    let second_wait = wait_in_background(&lb, &second, "spot", 30);
    queue_becomes(&lb, "spot", &[&first, &second]).await;
    dropped.abort();
    let retried = wait_in_background(&lb, &first, "spot", 30);
    // Past the 2 s in which an abandoned wait may still be taken up again: the place is kept.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(queue(&lb, "spot").await, vec![first.clone(), second.clone()], "the retry kept its place");

    release(&lb, &holder, "spot", token).await;
    let t1 = granted(&retried.await.unwrap(), &first);
    assert_eq!(t1, token + 1);

    // `second` goes away for good: within a few seconds it is out of the queue.
    second_wait.abort();
    eventually(Duration::from_secs(10), "the abandoned wait to be cancelled", || async {
        queue(&lb, "spot").await.is_empty().then_some(())
    })
    .await;
    let s = call("GET", &format!("{lb}/sessions/{second}"), None).await;
    assert_eq!(s.body["waiting_for"], json!([]), "{}", s.text);
    release(&lb, &first, "spot", t1).await;
    assert_eq!(lock_status(&lb, "spot").await["locked"], false, "nobody was left to hand it to");
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_delay_holds_an_expired_holders_locks_back_but_not_a_released_or_deleted_ones() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let base = cluster.base(leader);
    let create = |client: &str, timeout: u64, delay: u64| {
        let url = format!("{base}/sessions");
        let body = json!({"client_id": client, "timeout": timeout, "lock_delay": delay});
        async move {
            let r = call("POST", &url, Some(body)).await;
            assert_eq!(r.status, 201, "{}", r.text);
            r.str("session_id")
        }
    };
    let holder = create("careless", 5, 3).await;
    let s = call("GET", &format!("{base}/sessions/{holder}"), None).await;
    assert_eq!(s.body["lock_delay"], 3, "{}", s.text);
    let waiter = create("waiter", 60, 0).await;
    let other = create("other", 60, 0).await;
    let token = take(&base, &holder, "delayed").await;
    let waiting = wait_in_background(&base, &waiter, "delayed", 30);
    queue_becomes(&base, "delayed", &[&waiter]).await;

    // The holder expires: the lock is free but unavailable, and the waiter keeps its place.
    let refusal = eventually(Duration::from_secs(15), "a LOCK_DELAYED refusal", || async {
        let r = call("POST", &format!("{base}/sessions/{other}/locks/delayed"), None).await;
        (r.body["code"] == "LOCK_DELAYED").then_some(r)
    })
    .await;
    assert_eq!((refusal.status, refusal.body["acquired"].clone()), (409, json!(false)), "{}", refusal.text);
    assert_eq!(refusal.body["queue_length"], 1, "{}", refusal.text);
    let available_at = refusal.body["available_at"].as_f64().unwrap();
    let retry_after: u64 = refusal.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3).contains(&retry_after), "Retry-After {retry_after}");
    let status = lock_status(&base, "delayed").await;
    assert_eq!(
        (status["locked"].clone(), status["delayed_until"].clone()),
        (json!(false), json!(available_at)),
        "{status}"
    );
    assert_eq!(status["queue_length"], 1, "{status}");

    // When the delay ends, the head of the queue gets the lock.
    let answer = waiting.await.unwrap();
    assert_eq!(granted(&answer, &waiter), token + 1);
    let status = lock_status(&base, "delayed").await;
    assert!(
        status["acquired_at"].as_f64().unwrap() >= available_at,
        "granted no earlier than {available_at}: {status}"
    );

    // A release and a delete free the lock at once, whatever the lock_delay.
    let tidy = create("tidy", 60, 30).await;
    let t = take(&base, &tidy, "released").await;
    release(&base, &tidy, "released", t).await;
    assert_eq!(take(&base, &other, "released").await, t + 1);
    let t = take(&base, &tidy, "deleted").await;
    assert_eq!(call("DELETE", &format!("{base}/sessions/{tidy}"), None).await.status, 200);
    assert_eq!(take(&base, &other, "deleted").await, t + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_takes_ten_thousand_waiters_and_refuses_one_more() {
    let cluster = Cluster::start(1).await;
    let base = cluster.base(1);
    let holder = create_session(&base, "holder", 600).await;
    take(&base, &holder, "crowded").await;
    // 10,000 sessions, created a few hundred at a time.
    let mut sessions = Vec::new();
    for chunk in 0..40 {
        let names: Vec<String> = (0..250).map(|i| format!("crowd-{}", chunk * 250 + i)).collect();
        sessions.extend(futures_util::future::join_all(names.iter().map(|n| create_session(&base, n, 600))).await);
    }
    let extra = create_session(&base, "one-too-many", 600).await;
    // Each waits on a connection of its own; a few hundred join at a time.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).no_proxy().build().unwrap();
    let mut open = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        let request = client.post(format!("{base}/sessions/{s}/locks/crowded?wait=90")).send();
        open.push(tokio::spawn(request));
        if i % 250 == 249 {
            let want = i as u64 + 1;
            eventually(Duration::from_secs(30), &format!("{want} waiters"), || async {
                (lock_status(&base, "crowded").await["queue_length"].as_u64() == Some(want)).then_some(())
            })
            .await;
        }
    }
    let r = call("POST", &format!("{base}/sessions/{extra}/locks/crowded"), Some(json!({"wait": 5}))).await;
    assert_eq!((r.status, r.body["code"].clone()), (409, json!("QUEUE_FULL")), "{}", r.text);
    assert_eq!(
        (r.body["queue_length"].clone(), r.body["acquired"].clone()),
        (json!(10_000), json!(false)),
        "{}",
        r.text
    );
    let s = call("GET", &format!("{base}/sessions/{extra}"), None).await;
    assert_eq!(s.body["waiting_for"], json!([]), "the refused session is not queued: {}", s.text);
    for handle in open {
        handle.abort();
    }
}

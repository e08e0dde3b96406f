//! Shared locks, semaphores, holder values and fence checks (coordination.md, "Shared locks and
//! semaphores", "Status and errors", "Fence check") against a real cluster.

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::support::{call, create_session, eventually, Cluster, Resp};

fn acquire(base: &str, session: &str, resource: &str, body: Value) -> JoinHandle<Resp> {
    let url = format!("{base}/sessions/{session}/locks/{resource}");
    tokio::spawn(async move { call("POST", &url, Some(body)).await })
}

async fn take(base: &str, session: &str, resource: &str, body: Value) -> Resp {
    acquire(base, session, resource, body).await.unwrap()
}

async fn status(base: &str, resource: &str) -> Value {
    call("GET", &format!("{base}/admin/locks/{resource}"), None).await.body
}

async fn release(base: &str, session: &str, resource: &str, token: &Value) -> Resp {
    let r = call("DELETE", &format!("{base}/sessions/{session}/locks/{resource}"), Some(json!({"fence_token": token})))
        .await;
    assert_eq!(r.status, 200, "release: {}", r.text);
    r
}

async fn queue_length_is(base: &str, resource: &str, n: u64) {
    eventually(std::time::Duration::from_secs(10), &format!("{n} waiting for {resource}"), || async move {
        (status(base, resource).await["queue_length"] == n).then_some(())
    })
    .await;
}

async fn fence(base: &str, resource: &str, token: &Value) -> Value {
    let r =
        call("POST", &format!("{base}/fence/check"), Some(json!({"resource": resource, "fence_token": token}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

#[tokio::test(flavor = "multi_thread")]
async fn readers_share_writers_wait_their_turn_and_nobody_starves() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    let (lb, fb) = (cluster.base(leader), cluster.base(follower));
    let [r1, r2, w, late] = ["reader-1", "reader-2", "writer", "late-reader"].map(|c| {
        let lb = lb.clone();
        tokio::spawn(async move { create_session(&lb, c, 60).await })
    });
    let (r1, r2, w, late) = (r1.await.unwrap(), r2.await.unwrap(), w.await.unwrap(), late.await.unwrap());

    // Two readers hold it together, each under its own token, with a value stored.
    let a = take(&lb, &r1, "doc", json!({"mode": "shared", "value": "10.0.0.1:8080"})).await;
    let b = take(&fb, &r2, "doc", json!({"mode": "shared"})).await;
    assert_eq!((a.status, b.status), (201, 201), "{} {}", a.text, b.text);
    assert_ne!(a.body["fence_token"], b.body["fence_token"], "every grant has its own token");
    let s = status(&fb, "doc").await;
    assert_eq!(
        (s["mode"].clone(), s["holders_count"].clone(), s["locked"].clone()),
        (json!("shared"), json!(2), json!(true)),
        "{s}"
    );
    assert_eq!(s["session_id"], json!(r1), "the top-level holder is the oldest: {s}");
    assert_eq!(s["holders"][0]["value"], "10.0.0.1:8080", "{s}");
    assert_eq!(s["holders"][1]["value"], Value::Null, "{s}");
    assert!(s.get("limit").is_none(), "no limit was asked for: {s}");
    // A re-acquire answers 200 with the same grant and keeps the first value.
    let again = take(&lb, &r1, "doc", json!({"mode": "shared", "value": "other"})).await;
    assert_eq!(
        (again.status, again.body["fence_token"].clone()),
        (200, a.body["fence_token"].clone()),
        "{}",
        again.text
    );
    assert_eq!(status(&lb, "doc").await["holders"][0]["value"], "10.0.0.1:8080");

    // The writer is refused while readers hold it, then waits; a reader after it waits behind it.
    let refused = take(&lb, &w, "doc", json!({})).await;
    assert_eq!(
        (refused.status, refused.body["code"].clone(), refused.body["holders_count"].clone()),
        (409, json!("LOCK_HELD"), json!(2))
    );
    let writer = acquire(&fb, &w, "doc", json!({"wait": 30}));
    queue_length_is(&lb, "doc", 1).await;
    let reader = acquire(&lb, &late, "doc", json!({"mode": "shared", "wait": 30}));
    queue_length_is(&lb, "doc", 2).await;
    let s = status(&lb, "doc").await;
    assert_eq!(
        (s["waiters"][0]["mode"].clone(), s["waiters"][1]["mode"].clone()),
        (json!("exclusive"), json!("shared")),
        "{s}"
    );
    // No upgrade or downgrade.
    let conflict = take(&lb, &r1, "doc", json!({})).await;
    assert_eq!(
        (conflict.status, conflict.body["code"].clone(), conflict.body["mode"].clone()),
        (409, json!("MODE_CONFLICT"), json!("shared")),
        "{}",
        conflict.text
    );
    let conflict = take(&lb, &w, "doc", json!({"mode": "shared", "wait": 5})).await;
    assert_eq!((conflict.status, conflict.body["code"].clone()), (409, json!("MODE_CONFLICT")), "{}", conflict.text);

    release(&lb, &r1, "doc", &a.body["fence_token"]).await;
    assert!(!writer.is_finished(), "one reader still holds it");
    release(&fb, &r2, "doc", &b.body["fence_token"]).await;
    let granted = writer.await.unwrap();
    assert_eq!((granted.status, granted.body["acquired"].clone()), (201, json!(true)), "{}", granted.text);
    assert!(!reader.is_finished(), "the late reader waits behind the writer");
    let s = status(&lb, "doc").await;
    assert_eq!((s["mode"].clone(), s["session_id"].clone()), (json!("exclusive"), json!(w)), "{s}");
    release(&lb, &w, "doc", &granted.body["fence_token"]).await;
    let r = reader.await.unwrap();
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.body["fence_token"].as_u64() > granted.body["fence_token"].as_u64());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_semaphore_admits_its_limit_and_lets_waiters_in_as_permits_return() {
    let cluster = Cluster::start(1).await;
    let base = cluster.base(1);
    let mut sessions = Vec::new();
    for i in 0..5 {
        sessions.push(create_session(&base, &format!("worker-{i}"), 60).await);
    }
    let shared = |limit: Option<u64>, wait: u64| match limit {
        Some(l) => json!({"mode": "shared", "limit": l, "wait": wait}),
        None => json!({"mode": "shared", "wait": wait}),
    };
    let a = take(&base, &sessions[0], "pool", shared(Some(2), 0)).await;
    assert_eq!(a.status, 201, "{}", a.text);
    // Another limit is refused while the semaphore is in use; none takes the current one.
    let mismatch = take(&base, &sessions[1], "pool", shared(Some(3), 0)).await;
    assert_eq!(
        (mismatch.status, mismatch.body["code"].clone(), mismatch.body["limit"].clone()),
        (409, json!("LIMIT_MISMATCH"), json!(2)),
        "{}",
        mismatch.text
    );
    let b = take(&base, &sessions[1], "pool", shared(None, 0)).await;
    assert_eq!(b.status, 201, "{}", b.text);
    let s = status(&base, "pool").await;
    assert_eq!((s["limit"].clone(), s["holders_count"].clone()), (json!(2), json!(2)), "{s}");
    // Full: a try-lock is refused, waits queue.
    let full = take(&base, &sessions[2], "pool", shared(Some(2), 0)).await;
    assert_eq!((full.status, full.body["code"].clone()), (409, json!("LOCK_HELD")), "{}", full.text);
    let c = acquire(&base, &sessions[2], "pool", shared(Some(2), 30));
    queue_length_is(&base, "pool", 1).await;
    let d = acquire(&base, &sessions[3], "pool", shared(None, 30));
    queue_length_is(&base, "pool", 2).await;
    // One permit back: exactly one waiter comes in; the other waits.
    release(&base, &sessions[0], "pool", &a.body["fence_token"]).await;
    let c = c.await.unwrap();
    assert_eq!(c.status, 201, "{}", c.text);
    queue_length_is(&base, "pool", 1).await;
    assert!(!d.is_finished(), "the semaphore is full again");
    // A holder whose session goes away returns its permit too.
    assert_eq!(call("DELETE", &format!("{base}/sessions/{}", sessions[1]), None).await.status, 200);
    assert_eq!(d.await.unwrap().status, 201);
    let s = status(&base, "pool").await;
    assert_eq!(s["holders_count"], 2, "{s}");
    // `limit` needs `mode: "shared"`.
    let r = take(&base, &sessions[4], "other", json!({"limit": 2})).await;
    assert_eq!((r.status, r.body["field"].clone()), (400, json!("limit")), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fence_check_is_true_only_for_a_current_holders_token() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    let (lb, fb) = (cluster.base(leader), cluster.base(follower));
    let holder = create_session(&lb, "holder", 60).await;
    let g = take(&lb, &holder, "guarded", json!({"value": "primary"})).await;
    let token = g.body["fence_token"].clone();
    let check = fence(&fb, "guarded", &token).await;
    assert_eq!(check["valid"], true, "{check}");
    assert_eq!((check["resource"].clone(), check["fence_token"].clone()), (json!("guarded"), token.clone()));
    assert_eq!(
        (check["holders"][0]["session_id"].clone(), check["holders"][0]["value"].clone()),
        (json!(holder), json!("primary"))
    );
    let wrong = json!(token.as_u64().unwrap() + 1);
    assert_eq!(fence(&fb, "guarded", &wrong).await["valid"], false);
    assert_eq!(fence(&fb, "elsewhere", &token).await["valid"], false);
    // After a release: false, and no holders.
    release(&lb, &holder, "guarded", &token).await;
    let check = fence(&fb, "guarded", &token).await;
    assert_eq!((check["valid"].clone(), check["holders"].clone()), (json!(false), json!([])), "{check}");
    // After an expiry: false.
    let brief = create_session(&lb, "brief", 5).await;
    let g = take(&lb, &brief, "guarded", json!({})).await;
    let token = g.body["fence_token"].clone();
    assert_eq!(fence(&lb, "guarded", &token).await["valid"], true);
    eventually(std::time::Duration::from_secs(15), "the holder's session to expire", || async {
        (fence(&lb, "guarded", &token).await["valid"] == false).then_some(())
    })
    .await;
    let s = call("GET", &format!("{lb}/sessions/{brief}"), None).await;
    assert_eq!(s.body["is_expired"], true, "{}", s.text);
    // Bad input names the field.
    for (body, field) in [
        (json!({"fence_token": 1}), "resource"),
        (json!({"resource": "r"}), "fence_token"),
        (json!({"resource": "r", "fence_token": 0}), "fence_token"),
        (json!({"resource": "", "fence_token": 1}), "resource"),
        (json!({"resource": 5, "fence_token": 1}), "resource"),
    ] {
        let r = call("POST", &format!("{lb}/fence/check"), Some(body.clone())).await;
        assert_eq!((r.status, r.body["field"].clone()), (400, json!(field)), "{body}: {}", r.text);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readers_queued_behind_a_writer_are_let_in_together_when_it_leaves() {
    let cluster = Cluster::start(1).await;
    let base = cluster.base(1);
    let writer = create_session(&base, "writer", 60).await;
    let mut readers = Vec::new();
    for i in 0..3 {
        readers.push(create_session(&base, &format!("reader-{i}"), 60).await);
    }
    let second_writer = create_session(&base, "second-writer", 60).await;
    let w = take(&base, &writer, "table", json!({})).await;
    assert_eq!(w.status, 201, "{}", w.text);
    // Three readers queue, then a second writer behind them.
    let mut waiting = Vec::new();
    for (i, r) in readers.iter().enumerate() {
        waiting.push(acquire(&base, r, "table", json!({"mode": "shared", "wait": 30})));
        queue_length_is(&base, "table", i as u64 + 1).await;
    }
    let last = acquire(&base, &second_writer, "table", json!({"wait": 30}));
    queue_length_is(&base, "table", 4).await;
    release(&base, &writer, "table", &w.body["fence_token"]).await;
    // The run of readers at the head comes in at once, in one step; the writer behind waits.
    let mut tokens = Vec::new();
    for handle in waiting {
        let r = handle.await.unwrap();
        assert_eq!(r.status, 201, "{}", r.text);
        tokens.push(r.body["fence_token"].as_u64().unwrap());
    }
    assert!(tokens.windows(2).all(|t| t[1] == t[0] + 1), "one token each, in queue order: {tokens:?}");
    let s = status(&base, "table").await;
    assert_eq!(
        (s["mode"].clone(), s["holders_count"].clone(), s["queue_length"].clone()),
        (json!("shared"), json!(3), json!(1)),
        "{s}"
    );
    assert!(!last.is_finished(), "the second writer waits for all three readers");
    for (r, t) in readers.iter().zip(&tokens) {
        release(&base, r, "table", &json!(t)).await;
    }
    let l = last.await.unwrap();
    assert_eq!((l.status, l.body["fence_token"].as_u64()), (201, Some(tokens[2] + 1)), "{}", l.text);
}

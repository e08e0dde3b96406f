//! Sessions expire when keepalives stop, on the leader's clock and without anyone calling
//! cleanup, releasing their locks; sessions kept alive do not.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{call, create_session, eventually, Cluster};

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_session_loses_its_lock_within_seven_seconds() {
    let cluster = Cluster::start(1).await;
    let base = cluster.base(1);
    let created = Instant::now();
    let session = create_session(&base, "silent", 5).await;
    let r = call("POST", &format!("{base}/sessions/{session}/locks/job"), None).await;
    assert_eq!(r.status, 201);

    let lock_url = format!("{base}/admin/locks/job");
    eventually(Duration::from_secs(7), "the lock of a silent session is released", || {
        let url = lock_url.clone();
        async move { (call("GET", &url, None).await.body["locked"] == false).then_some(()) }
    })
    .await;
    let released_after = created.elapsed();
    assert!(released_after >= Duration::from_millis(4900), "expired early, after {released_after:?}");
    assert!(released_after <= Duration::from_secs(7), "released after {released_after:?}");

    let s = call("GET", &format!("{base}/sessions/{session}"), None).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.body["is_expired"], true);
    assert_eq!(s.body["locks_held"], json!([]));
    assert!(s.body["expired_at"].as_f64().unwrap() >= s.body["created_at"].as_f64().unwrap() + 5.0);
    // An expired session stays expired: no keepalive, acquire or release revives it.
    assert_eq!(
        call("POST", &format!("{base}/sessions/{session}/keepalive"), None).await.body["code"],
        "SESSION_EXPIRED"
    );
    let again = call("POST", &format!("{base}/sessions/{session}/locks/job"), None).await;
    assert_eq!((again.status, again.body["code"].clone()), (410, json!("SESSION_EXPIRED")));
    // And the lock is free for someone else, under a higher token.
    let other = create_session(&base, "next", 30).await;
    let r2 = call("POST", &format!("{base}/sessions/{other}/locks/job"), None).await;
    assert_eq!(r2.status, 201);
    assert!(r2.body["fence_token"].as_u64() > r.body["fence_token"].as_u64());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_kept_alive_every_one_and_a_half_seconds_survives_fifteen() {
    let cluster = Cluster::start(1).await;
    let base = cluster.base(1);
    let session = create_session(&base, "diligent", 5).await;
    assert_eq!(call("POST", &format!("{base}/sessions/{session}/locks/job"), None).await.status, 201);
    let start = Instant::now();
    let mut beats = 0;
    while start.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let k = call("POST", &format!("{base}/sessions/{session}/keepalive"), None).await;
        assert_eq!(k.status, 200, "keepalive {beats} after {:?}: {}", start.elapsed(), k.text);
        assert_eq!(k.body["success"], true);
        assert_eq!(k.body["expires_in"], 5.0);
        beats += 1;
    }
    let s = call("GET", &format!("{base}/sessions/{session}"), None).await;
    assert_eq!(s.body["is_expired"], false, "{}", s.text);
    assert_eq!(s.body["locks_held"], json!(["job"]));
    assert!(s.body["expires_in"].as_f64().unwrap() > 3.0, "{}", s.text);
    assert!(s.body["last_keepalive"].as_f64() > s.body["created_at"].as_f64(), "{}", s.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_removes_expired_sessions_at_once() {
    let cluster = Cluster::start(1).await;
    let base = cluster.base(1);
    let gone = create_session(&base, "gone", 5).await;
    let kept = create_session(&base, "kept", 3600).await;
    let url = format!("{base}/sessions/{gone}");
    eventually(Duration::from_secs(7), "the silent session expires", || {
        let url = url.clone();
        async move { (call("GET", &url, None).await.body["is_expired"] == true).then_some(()) }
    })
    .await;
    let stats = call("GET", &format!("{base}/admin/stats"), None).await.body;
    assert_eq!((stats["active_sessions"].clone(), stats["expired_sessions"].clone()), (json!(1), json!(1)));
    let r = call("POST", &format!("{base}/admin/cleanup"), None).await;
    assert_eq!(r.body, json!({"cleanup": "completed", "count": 1}));
    assert_eq!(call("GET", &url, None).await.body["code"], "SESSION_NOT_FOUND");
    assert_eq!(call("GET", &format!("{base}/sessions/{kept}"), None).await.status, 200);
}

//! Nothing acknowledged is lost when a node is SIGKILLed, whether it restarts from the log alone
//! or from a snapshot plus the log after it.

use serde_json::json;

use crate::support::{call, create_session, Cluster};

async fn acquire(base: &str, session: &str, resource: &str) -> u64 {
    let r = call("POST", &format!("{base}/sessions/{session}/locks/{resource}"), None).await;
    assert_eq!(r.status, 201, "acquire {resource}: {}", r.text);
    r.body["fence_token"].as_u64().unwrap()
}

async fn kill_and_restart_keeps_state(extra: &[&str]) {
    let mut cluster = Cluster::start_with(1, extra).await;
    let base = cluster.base(1);
    let keeper = create_session(&base, "keeper", 3600).await;
    let leaver = create_session(&base, "leaver", 3600).await;
    let t1 = acquire(&base, &keeper, "r1").await;
    let t2 = acquire(&base, &leaver, "r2").await;
    let t3 = acquire(&base, &keeper, "r3").await;
    assert!(t1 < t2 && t2 < t3);
    let r = call("DELETE", &format!("{base}/sessions/{keeper}/locks/r3"), Some(json!({"fence_token": t3}))).await;
    assert_eq!(r.status, 200);
    let r = call("DELETE", &format!("{base}/sessions/{leaver}"), None).await;
    assert_eq!(r.status, 200);
    // Enough further writes that a small snapshot policy takes a snapshot and purges the log.
    for i in 0..12 {
        let s = create_session(&base, &format!("filler-{i}"), 3600).await;
        assert_eq!(call("DELETE", &format!("{base}/sessions/{s}"), None).await.status, 200);
    }
    let stats_before = call("GET", &format!("{base}/admin/stats"), None).await.body;

    cluster.kill(1);
    cluster.restart(1).await;
    cluster.wait_for_leader().await;

    let session = call("GET", &format!("{base}/sessions/{keeper}"), None).await;
    assert_eq!(session.status, 200, "{}", session.text);
    assert_eq!(session.body["locks_held"], json!(["r1"]));
    assert_eq!(session.body["client_id"], "keeper");
    assert_eq!(call("GET", &format!("{base}/sessions/{leaver}"), None).await.status, 404);
    let r1 = call("GET", &format!("{base}/admin/locks/r1"), None).await;
    assert_eq!((r1.body["locked"].clone(), r1.body["fence_token"].as_u64()), (json!(true), Some(t1)));
    assert_eq!(call("GET", &format!("{base}/admin/locks/r2"), None).await.body["locked"], false);
    assert_eq!(call("GET", &format!("{base}/admin/locks/r3"), None).await.body["locked"], false);
    assert_eq!(call("GET", &format!("{base}/admin/stats"), None).await.body, stats_before);

    let next = acquire(&base, &keeper, "r4").await;
    assert_eq!(next, t3 + 1, "the fence counter survived the crash");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_loses_nothing_acknowledged() {
    kill_and_restart_keeps_state(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_after_snapshots_and_log_compaction_loses_nothing() {
    kill_and_restart_keeps_state(&["--snapshot-every", "5"]).await;
}

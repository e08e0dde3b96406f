//! What an operator watches: Prometheus metrics that move with the work, and the event stream
//! that every node serves.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use crate::support::{acquire, call, create_session, eventually, Cluster};

/// The value of the sample `name` (with exactly these labels, in the exporter's order) in a
/// Prometheus text page.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn scrape(base: &str) -> String {
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_when_locks_are_taken() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let base = cluster.base(leader);
    let before = scrape(&base).await;
    let acquired_before = sample(&before, "lockio_locks_acquired_total").unwrap_or(0.0);
    let session = create_session(&base, "metered", 60).await;
    for i in 0..3 {
        assert_eq!(acquire(&base, &session, &format!("m{i}")).await.status, 201);
    }
    call("POST", &format!("{base}/sessions/{session}/keepalive"), None).await;
    let after = scrape(&base).await;
    assert_eq!(sample(&after, "lockio_locks_acquired_total"), Some(acquired_before + 3.0), "{after}");
    assert_eq!(sample(&after, "lockio_locks_held"), Some(3.0));
    assert_eq!(sample(&after, "lockio_fence_counter"), Some(3.0));
    assert_eq!(sample(&after, "lockio_sessions_active"), Some(1.0));
    assert_eq!(sample(&after, "lockio_raft_is_leader"), Some(1.0));
    assert!(sample(&after, "lockio_raft_term").unwrap() >= 1.0);
    assert!(
        sample(&after, "lockio_raft_applied_index").unwrap() > sample(&before, "lockio_raft_applied_index").unwrap()
    );
    assert_eq!(sample(&after, r#"lockio_keepalives_total{result="ok"}"#), Some(1.0));
    assert_eq!(
        sample(
            &after,
            r#"lockio_http_requests_total{route="/sessions/{session_id}/locks/{resource}",method="POST",status="201"}"#
        ),
        Some(3.0),
        "{after}"
    );
    assert!(after.contains(r#"lockio_proposal_duration_seconds_bucket{kind="acquire",le="+Inf"} 3"#), "{after}");
    assert!(
        after.contains(r#"lockio_http_request_duration_seconds_count{route="/sessions",method="POST"} 1"#),
        "{after}"
    );

    // Followers apply the same log, so they count the same grants.
    let follower = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    let follower_base = cluster.base(follower);
    eventually(Duration::from_secs(5), "a follower counts the grants too", || {
        let base = follower_base.clone();
        async move {
            (sample(&scrape(&base).await, "lockio_locks_acquired_total") == Some(acquired_before + 3.0)).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_node_streams_what_was_applied() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    let response = reqwest::get(cluster.url(follower, "/events")).await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();

    let session = create_session(&cluster.base(leader), "streamed", 60).await;
    let token =
        acquire(&cluster.base(leader), &session, "streamed-resource").await.body["fence_token"].as_u64().unwrap();

    let mut seen: Vec<Value> = Vec::new();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.iter().any(|e| e["type"] == "lock_acquired") {
        let chunk = tokio::time::timeout_at(deadline, body.next()).await.expect("events in time").unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                seen.push(serde_json::from_str(data).unwrap());
            }
        }
    }
    assert!(seen.iter().any(|e| e["type"] == "leader_changed" && e["leader_id"] == leader), "{seen:?}");
    let created = seen.iter().find(|e| e["type"] == "session_created").expect("session_created");
    assert_eq!(
        (created["session_id"].as_str(), created["client_id"].as_str()),
        (Some(session.as_str()), Some("streamed"))
    );
    let acquired = seen.iter().find(|e| e["type"] == "lock_acquired").unwrap();
    assert_eq!(acquired["resource"], "streamed-resource");
    assert_eq!(acquired["fence_token"].as_u64(), Some(token));
    assert!(acquired["index"].as_u64().unwrap() > created["index"].as_u64().unwrap());
}

//! Three nodes acting as one: any node serves any request, reads are linearizable, and every
//! node knows each object by the same ids, tokens and timestamps.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{acquire, call, create_session, eventually, status, Cluster};

/// Waits until every running node has applied as far as the leader has committed.
pub async fn converged(cluster: &Cluster) {
    let bases: Vec<String> = cluster.running().iter().map(|id| cluster.base(*id)).collect();
    eventually(Duration::from_secs(20), "all nodes applied the same log", || {
        let bases = bases.clone();
        async move {
            let mut applied = Vec::new();
            for base in &bases {
                applied.push(status(base).await?["applied_index"].as_u64()?);
            }
            applied.windows(2).all(|w| w[0] == w[1]).then_some(())
        }
    })
    .await;
}

fn without(mut v: Value, keys: &[&str]) -> Value {
    for k in keys {
        v.as_object_mut().unwrap().remove(*k);
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_on_one_node_is_read_at_once_on_every_other() {
    let cluster = Cluster::start(3).await;
    for writer in 1..=3u64 {
        let session = create_session(&cluster.base(writer), &format!("client-{writer}"), 60).await;
        let resource = format!("res-{writer}");
        let grant = acquire(&cluster.base(writer), &session, &resource).await;
        assert_eq!(grant.status, 201, "{}", grant.text);
        let mut seen = Vec::new();
        for reader in 1..=3u64 {
            // No waiting: a linearizable read that starts after the write finished sees it.
            let s = call("GET", &cluster.url(reader, &format!("/sessions/{session}")), None).await;
            assert_eq!(s.status, 200, "node {reader} does not see session from node {writer}: {}", s.text);
            assert_eq!(s.body["locks_held"], json!([resource]));
            let l = call("GET", &cluster.url(reader, &format!("/admin/locks/{resource}")), None).await;
            assert_eq!(l.body["fence_token"], grant.body["fence_token"]);
            seen.push((without(s.body, &["expires_in"]), l.body));
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "nodes disagree: {seen:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_write_endpoint_works_through_a_follower() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    let base = cluster.base(follower);

    let session = create_session(&base, "via-follower", 30).await;
    let grant = acquire(&base, &session, "doc").await;
    assert_eq!(grant.status, 201);
    let token = grant.body["fence_token"].as_u64().unwrap();
    assert_eq!(acquire(&base, &session, "doc").await.status, 200, "idempotent acquire through a follower");
    let k = call("POST", &format!("{base}/sessions/{session}/keepalive"), None).await;
    assert_eq!((k.status, k.body["success"].clone()), (200, json!(true)));
    let r = call("DELETE", &format!("{base}/sessions/{session}/locks/doc"), Some(json!({"fence_token": token}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Refusals are relayed unchanged.
    let again =
        call("DELETE", &format!("{base}/sessions/{session}/locks/doc"), Some(json!({"fence_token": token}))).await;
    assert_eq!((again.status, again.body["code"].clone()), (404, json!("LOCK_NOT_HELD")));
    assert_eq!(call("POST", &format!("{base}/admin/cleanup"), None).await.body["cleanup"], "completed");
    assert_eq!(call("DELETE", &format!("{base}/sessions/{session}"), None).await.status, 200);
    assert_eq!(call("GET", &format!("{base}/sessions/{session}"), None).await.status, 404);

    // Every node applied the same log: local (stale) reads agree everywhere.
    let other = create_session(&base, "checker", 30).await;
    assert_eq!(acquire(&cluster.base(leader), &other, "doc").await.status, 201);
    converged(&cluster).await;
    let mut views = Vec::new();
    for id in 1..=3u64 {
        let s = call("GET", &cluster.url(id, &format!("/sessions/{other}?stale=true")), None).await.body;
        let l = call("GET", &cluster.url(id, "/admin/locks/doc?stale=true"), None).await.body;
        let stats = call("GET", &cluster.url(id, "/admin/stats?stale=true"), None).await.body;
        views.push((without(s, &["expires_in", "last_keepalive"]), l, stats));
    }
    assert!(views.windows(2).all(|w| w[0] == w[1]), "replicas disagree: {views:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_acquires_grant_exactly_one() {
    let cluster = Cluster::start(3).await;
    let mut sessions = Vec::new();
    for i in 0..20u64 {
        sessions
            .push((cluster.base(i % 3 + 1), create_session(&cluster.base(i % 3 + 1), &format!("racer-{i}"), 60).await));
    }
    let racers = sessions
        .into_iter()
        .map(|(base, session)| tokio::spawn(async move { acquire(&base, &session, "prize").await }));
    let mut granted = 0;
    for racer in racers {
        let r = racer.await.unwrap();
        match r.status {
            201 => granted += 1,
            409 => assert_eq!(r.body["code"], "LOCK_HELD", "{}", r.text),
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    assert_eq!(granted, 1);
}

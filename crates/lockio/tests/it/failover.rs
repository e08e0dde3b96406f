//! A node can die at any moment: the cluster elects a new leader, keeps every acknowledged
//! write, every live session and lock, and never hands out a fence token twice or backwards.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::converged;
use crate::support::{acquire, call, create_session, eventually, status, try_call, Cluster};

async fn fence_counter(cluster: &Cluster) -> u64 {
    for id in cluster.running() {
        let r = call("GET", &cluster.url(id, "/admin/stats"), None).await;
        if r.status == 200 {
            return r.body["fence_counter"].as_u64().unwrap();
        }
    }
    panic!("no node answered /admin/stats");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_through_a_survivor_succeeds_soon_after_the_leader_dies() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let survivor = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    let killed_at = Instant::now();
    cluster.kill(leader);
    let base = cluster.base(survivor);
    let session = create_session(&base, "after-failover", 30).await;
    let elapsed = killed_at.elapsed();
    // One request, retried inside the node until the new leader answers: no 503 needed.
    assert!(elapsed < Duration::from_secs(5), "first write took {elapsed:?}");
    assert_eq!(acquire(&base, &session, "r").await.status, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_alive_session_survives_three_leader_kills_and_restarts() {
    let mut cluster = Cluster::start(3).await;
    let session = create_session(&cluster.base(1), "steadfast", 5).await;
    let grant = acquire(&cluster.base(1), &session, "crown").await;
    assert_eq!(grant.status, 201);
    let token = grant.body["fence_token"].as_u64().unwrap();

    // Keepalives every second, to whichever node answers, retrying on 503 or a dead node.
    let bases: Vec<String> = (1..=3).map(|id| cluster.base(id)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let keeper = {
        let (stop, acked, session) = (stop.clone(), acked.clone(), session.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let url = format!("{}/sessions/{session}/keepalive", bases[i % 3]);
                i += 1;
                match try_call("POST", &url).await {
                    Some(r) if r.status == 200 => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Some(r) if r.status == 503 => {}
                    Some(r) => return Err(format!("keepalive refused: {} {}", r.status, r.text)),
                    None => {}
                }
            }
            Ok(())
        })
    };

    let mut last_counter = fence_counter(&cluster).await;
    for round in 1..=3 {
        let leader = cluster.wait_for_leader().await;
        cluster.kill(leader);
        let new_leader = cluster.wait_for_leader().await;
        assert_ne!(new_leader, leader);
        let lock = call("GET", &cluster.url(new_leader, "/admin/locks/crown"), None).await.body;
        assert_eq!(
            (lock["locked"].clone(), lock["session_id"].clone(), lock["fence_token"].as_u64()),
            (json!(true), json!(session), Some(token)),
            "round {round}: {lock}"
        );
        let counter = fence_counter(&cluster).await;
        assert!(counter >= last_counter, "fence counter went back from {last_counter} to {counter}");
        last_counter = counter;
        // Other work goes on while the node is down.
        let other = create_session(&cluster.base(new_leader), &format!("bystander-{round}"), 30).await;
        assert_eq!(acquire(&cluster.base(new_leader), &other, &format!("side-{round}")).await.status, 201);
        cluster.restart(leader).await;
        converged(&cluster).await;
        let caught_up = call("GET", &cluster.url(leader, &format!("/admin/locks/side-{round}?stale=true")), None).await;
        assert_eq!(caught_up.body["locked"], true, "restarted node {leader} did not catch up");
    }
    // Outlive a full timeout once more after the last failover.
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    keeper.await.unwrap().unwrap();
    assert!(acked.load(Ordering::Relaxed) >= 5);
    let s = call("GET", &cluster.url(cluster.wait_for_leader().await, &format!("/sessions/{session}")), None).await;
    assert_eq!(s.body["is_expired"], false, "{}", s.text);
    assert_eq!(s.body["locks_held"], json!(["crown"]));
    let next = acquire(&cluster.base(1), &session, "orb").await;
    assert!(next.body["fence_token"].as_u64().unwrap() > last_counter);
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_every_node_at_once_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start(3).await;
    let mut sessions = Vec::new();
    for i in 1..=3u64 {
        let s = create_session(&cluster.base(i), &format!("c{i}"), 3600).await;
        assert_eq!(acquire(&cluster.base(i), &s, &format!("r{i}")).await.status, 201);
        sessions.push(s);
    }
    let snapshot = |cluster: &Cluster| {
        let base = cluster.base(1);
        let sessions = sessions.clone();
        async move {
            let mut state: Vec<Value> = vec![call("GET", &format!("{base}/admin/stats"), None).await.body];
            for s in &sessions {
                let mut body = call("GET", &format!("{base}/sessions/{s}"), None).await.body;
                body.as_object_mut().unwrap().remove("expires_in");
                body.as_object_mut().unwrap().remove("last_keepalive");
                state.push(body);
            }
            for r in ["r1", "r2", "r3"] {
                state.push(call("GET", &format!("{base}/admin/locks/{r}"), None).await.body);
            }
            state
        }
    };
    let before = snapshot(&cluster).await;
    for id in 1..=3 {
        cluster.kill(id);
    }
    for id in 1..=3 {
        cluster.restart(id).await;
    }
    cluster.wait_for_leader().await;
    assert_eq!(snapshot(&cluster).await, before);
    let next = acquire(&cluster.base(2), &sessions[0], "r4").await;
    assert_eq!(next.body["fence_token"], 4, "{}", next.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_quorum_writes_answer_503_and_recover_afterwards() {
    let mut cluster = Cluster::start(3).await;
    let session = create_session(&cluster.base(1), "patient", 3600).await;
    let leader = cluster.wait_for_leader().await;
    // Leave one node: the leader in one run, a follower in another, both must answer 503.
    let survivor = leader;
    for id in cluster.running() {
        if id != survivor {
            cluster.kill(id);
        }
    }
    let started = Instant::now();
    let r = call("POST", &format!("{}/sessions/{session}/locks/x", cluster.base(survivor)), None).await;
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!((r.status, r.body["code"].clone()), (503, json!("UNAVAILABLE")), "{}", r.text);
    assert_eq!(r.headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    assert_eq!(r.content_type(), "application/json");
    let h = call("GET", &cluster.url(survivor, "/health"), None).await;
    assert_eq!((h.status, h.body["status"].clone()), (200, json!("degraded")));
    let read = call("GET", &cluster.url(survivor, "/admin/stats"), None).await;
    assert_eq!(read.status, 503, "a linearizable read needs a quorum too");
    assert_eq!(call("GET", &cluster.url(survivor, "/admin/stats?stale=true"), None).await.status, 200);

    for id in 1..=3 {
        if id != survivor {
            cluster.restart(id).await;
        }
    }
    cluster.wait_for_leader().await;
    let base = cluster.base(survivor);
    let url = format!("{base}/sessions/{session}/locks/y");
    eventually(Duration::from_secs(15), "writes succeed again", || {
        let url = url.clone();
        async move { (call("POST", &url, None).await.status == 201).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_cut_off_while_only_a_follower_survives_answers_503() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let survivor = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    for id in cluster.running() {
        if id != survivor {
            cluster.kill(id);
        }
    }
    let started = Instant::now();
    let r = call("POST", &cluster.url(survivor, "/sessions"), Some(json!({"client_id": "lonely"}))).await;
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!((r.status, r.body["code"].clone()), (503, json!("UNAVAILABLE")), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_behind_a_compacted_log_catches_up_through_a_snapshot() {
    let mut cluster = Cluster::start_with(3, &["--snapshot-every", "5"]).await;
    let leader = cluster.wait_for_leader().await;
    let lagger = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    let behind_at = status(&cluster.base(lagger)).await.unwrap()["applied_index"].as_u64().unwrap();
    cluster.kill(lagger);
    let base = cluster.base(leader);
    let mut sessions = Vec::new();
    for i in 0..15 {
        let s = create_session(&base, &format!("while-away-{i}"), 3600).await;
        assert_eq!(acquire(&base, &s, &format!("k{i}")).await.status, 201);
        sessions.push(s);
    }
    // Compaction runs in the background after a snapshot; wait until it passed the follower.
    let purged = eventually(Duration::from_secs(10), "the leader's log is compacted past the follower", || {
        let base = base.clone();
        async move { status(&base).await?["purged_index"].as_u64().filter(|p| *p > behind_at) }
    })
    .await;

    cluster.restart(lagger).await;
    converged(&cluster).await;
    for (i, s) in sessions.iter().enumerate() {
        let l = call("GET", &cluster.url(lagger, &format!("/admin/locks/k{i}?stale=true")), None).await;
        assert_eq!(l.body["session_id"], json!(s), "{}", l.text);
    }
    let lagger_status = status(&cluster.base(lagger)).await.unwrap();
    assert!(lagger_status["snapshot_index"].as_u64().unwrap_or(0) >= purged, "{lagger_status}");
}

/// A disk replaced under a follower: the node comes back with an empty data directory, as
/// itself. The leader must keep leading (openraft's default is to panic the leader when a
/// follower's log goes backwards) and bring the node back up to date.
#[tokio::test(flavor = "multi_thread")]
async fn a_follower_that_lost_its_data_rejoins_and_the_leader_keeps_leading() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let base = cluster.base(leader);
    let term = status(&base).await.unwrap()["term"].as_u64().unwrap();
    let before = create_session(&base, "before-the-wipe", 3600).await;
    assert_eq!(acquire(&base, &before, "kept").await.status, 201);
    let wiped = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    converged(&cluster).await;

    cluster.kill(wiped);
    std::fs::remove_dir_all(&cluster.nodes[(wiped - 1) as usize].data_dir).unwrap();
    cluster.restart(wiped).await;
    // Writes go on through the same leader while, and after, the empty node catches up.
    let after = create_session(&base, "after-the-wipe", 3600).await;
    assert_eq!(acquire(&base, &after, "new").await.status, 201);
    converged(&cluster).await;

    for (resource, holder) in [("kept", &before), ("new", &after)] {
        let l = call("GET", &cluster.url(wiped, &format!("/admin/locks/{resource}?stale=true")), None).await;
        assert_eq!(l.body["session_id"], json!(holder), "{}", l.text);
    }
    let now = status(&base).await.unwrap();
    assert_eq!((now["leader_id"].as_u64(), now["term"].as_u64()), (Some(leader), Some(term)), "{now}");
    assert_eq!(acquire(&cluster.base(wiped), &before, "third").await.status, 201, "the wiped node serves writes");
}

//! Nothing acknowledged is lost when a node is SIGKILLed, whether it restarts from the log alone
//! or from a snapshot plus the log after it, nor when its disk fills up.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::support::cluster::lockio_bin;
use crate::support::{call, create_session, eventually, try_call, Cluster};

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

/// The most a node may write to a file in the disk-full test (RLIMIT_FSIZE): the kernel then
/// answers its writes with EFBIG, as a full disk answers with ENOSPC.
const FILE_SIZE_LIMIT: libc::rlim_t = 192 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_disk_fills_up_exits_and_later_restarts_with_everything_acknowledged() {
    let mut cluster = Cluster::start(1).await;
    assert!(cluster.stop(1).success());
    let mut command = tokio::process::Command::new(lockio_bin());
    command
        .args(cluster.serve_args(1))
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: FILE_SIZE_LIMIT, rlim_max: FILE_SIZE_LIMIT };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Ignored, so that a write past the limit fails instead of killing the process.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut node = command.kill_on_drop(true).spawn().unwrap();
    let base = cluster.base(1);
    let health = format!("{base}/health");
    eventually(Duration::from_secs(20), "the limited node serves", || async {
        try_call("GET", &health).await.filter(|r| r.body["is_leader"] == true)
    })
    .await;

    // Sessions until the node gives up (bounded: the limit is reached long before).
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    let mut acknowledged = Vec::new();
    for i in 0..20_000 {
        let sent = http
            .post(format!("{base}/sessions"))
            .json(&json!({"client_id": format!("filler-{i}"), "timeout": 3600}))
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 201 => acknowledged
                .push(r.json::<serde_json::Value>().await.unwrap()["session_id"].as_str().unwrap().to_string()),
            _ => break,
        }
    }
    let exited = tokio::time::timeout(Duration::from_secs(15), node.wait())
        .await
        .expect("the node exits once its storage fails")
        .unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(node.stderr.as_mut().unwrap(), &mut stderr).await.unwrap();
    assert_eq!(exited.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("lockio: raft stopped: ") && last.contains("exiting so that the node can be restarted"),
        "{stderr}"
    );
    assert!(acknowledged.len() > 100, "only {} sessions before the limit", acknowledged.len());

    // Room again: the node restarts from its directory with every acknowledged session.
    cluster.restart(1).await;
    cluster.wait_for_leader().await;
    let stats = call("GET", &format!("{base}/admin/stats"), None).await;
    assert!(
        stats.body["active_sessions"].as_u64().unwrap() >= acknowledged.len() as u64,
        "{} acknowledged: {}",
        acknowledged.len(),
        stats.text
    );
    for id in [&acknowledged[0], acknowledged.last().unwrap()] {
        assert_eq!(call("GET", &format!("{base}/sessions/{id}"), None).await.status, 200, "session {id}");
    }
    assert_eq!(create_session(&base, "after", 3600).await.len(), 36, "writes again");
}

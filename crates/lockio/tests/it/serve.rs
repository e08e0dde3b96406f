//! `lockio serve` as an operator meets it: one-line errors with a non-zero exit for bad flags,
//! taken ports, unusable data directories and another node's data directory, and a clean
//! exit on SIGTERM.

use std::process::Command;

use crate::support::cluster::lockio_bin;
use crate::support::{call, create_session, Cluster};

/// Runs `lockio ARGS` to completion; returns (exit code, stderr).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(lockio_bin()).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
}

fn serve_args<'a>(http: &'a str, raft: &'a str, peers: &'a str, dir: &'a str) -> Vec<&'a str> {
    vec!["serve", "--id", "1", "--http", http, "--raft", raft, "--peers", peers, "--data-dir", dir]
}

fn assert_one_line_error(code: Option<i32>, stderr: &str, mentions: &str) {
    assert!(matches!(code, Some(c) if c != 0), "exit code {code:?}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{stderr}");
    assert!(lines[0].contains(mentions), "{:?} does not mention {mentions:?}", lines[0]);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_flags_are_one_line_errors() {
    let (code, err) = run(&["serve", "--bogus"]);
    assert_one_line_error(code, &err, "--bogus");
    let (code, err) = run(&["serve", "--id", "1"]);
    assert_one_line_error(code, &err, "required");
    let (code, err) = run(&[
        "serve",
        "--id",
        "0",
        "--http",
        "127.0.0.1:1",
        "--raft",
        "127.0.0.1:2",
        "--peers",
        "1=a:1",
        "--data-dir",
        "x",
    ]);
    assert_one_line_error(code, &err, "--id");
    let (code, err) = run(&[
        "serve",
        "--id",
        "1",
        "--http",
        "nonsense",
        "--raft",
        "127.0.0.1:2",
        "--peers",
        "1=a:1",
        "--data-dir",
        "x",
    ]);
    assert_one_line_error(code, &err, "--http");
    let (code, err) = run(&[
        "serve",
        "--id",
        "1",
        "--http",
        "127.0.0.1:1",
        "--raft",
        "127.0.0.1:2",
        "--peers",
        "1=a",
        "--data-dir",
        "x",
    ]);
    assert_one_line_error(code, &err, "--peers");
    let (code, err) = run(&serve_args("127.0.0.1:0", "127.0.0.1:0", "2=127.0.0.1:9", "x"));
    assert_one_line_error(code, &err, "--id 1 is not one of the --peers");
}

#[test]
fn a_taken_port_is_a_one_line_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let (code, err) = run(&serve_args(&port, "127.0.0.1:0", "1=127.0.0.1:9", data.to_str().unwrap()));
    assert_one_line_error(code, &err, &format!("cannot listen on --http {port}"));
}

#[test]
fn an_unusable_data_dir_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let data = file.join("data");
    let (code, err) = run(&serve_args("127.0.0.1:0", "127.0.0.1:0", "1=127.0.0.1:9", data.to_str().unwrap()));
    assert_one_line_error(code, &err, "cannot create data directory");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_dir_is_refused_to_any_node_but_its_own() {
    let mut cluster = Cluster::start(1).await;
    let base = cluster.base(1);
    let session = create_session(&base, "owner", 3600).await;
    assert!(cluster.stop(1).success());
    let data = cluster.nodes[0].data_dir.to_str().unwrap().to_string();
    let mut args = serve_args("127.0.0.1:0", "127.0.0.1:0", "2=127.0.0.1:9", &data);
    args[2] = "2";
    let (code, err) = run(&args);
    assert_one_line_error(
        code,
        &err,
        &format!("cannot use the data directory {data}: it holds the state of node 1, not of --id 2"),
    );
    // Refusing changed nothing: its own node starts from it as before.
    cluster.restart(1).await;
    cluster.wait_for_leader().await;
    assert_eq!(call("GET", &format!("{base}/sessions/{session}"), None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_node_cleanly_and_it_restarts_with_its_data() {
    let mut cluster = Cluster::start(1).await;
    let base = cluster.base(1);
    let session = create_session(&base, "survivor", 3600).await;
    let status = cluster.stop(1);
    assert!(status.success(), "exit status {status:?}");
    let log = std::fs::read_to_string(&cluster.nodes[0].log).unwrap();
    assert!(log.contains("stopped"), "{log}");
    // The data directory is usable again right away (no lock left behind).
    cluster.restart(1).await;
    cluster.wait_for_leader().await;
    assert_eq!(call("GET", &format!("{base}/sessions/{session}"), None).await.status, 200);
}

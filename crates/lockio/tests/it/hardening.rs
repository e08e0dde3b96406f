//! The listeners against slow, idle and too many clients: a half-sent request head is closed
//! within the header-read timeout on both listeners while others are served; an idle kept-alive
//! connection is closed after the idle timeout, but a long-poll wait outlives it; beyond
//! `--max-connections` a connection waits until one closes. And a node logs a peer going down
//! and coming back once each, not once per failed RPC.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{call, create_session, eventually, Cluster};

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nhost: lockio\r\n\r\n";

/// Waits until the peer closes `stream` (EOF or reset), at most `limit` after `started`;
/// returns how long after `started` it was.
async fn closed_within(stream: &mut TcpStream, started: Instant, limit: Duration) -> Duration {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the connection was still open after {limit:?}"),
        }
    }
}

/// Reads one HTTP/1.1 answer with a `content-length` body from `stream`, within `limit`;
/// `None` if none came in time.
async fn read_answer(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return Some(text);
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("connection closed before a whole answer: {text:?}"),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("read failed: {e}"),
            Err(_) => return None,
        }
    }
}

async fn health_over(stream: &mut TcpStream) {
    stream.write_all(HEALTH).await.unwrap();
    let answer = read_answer(stream, Duration::from_secs(10)).await.expect("an answer to GET /health");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_sent_header_is_closed_within_the_timeout_while_others_are_served() {
    let cluster = Cluster::start_with(1, &["--header-read-timeout", "1s"]).await;
    let http = cluster.base(1).trim_start_matches("http://").to_string();
    let raft = cluster.raft_addr(1);
    // Half a head on each listener, and a client that trickles one byte at a time.
    let mut half_api = TcpStream::connect(&http).await.unwrap();
    half_api.write_all(b"POST /sessions HTTP/1.1\r\nhost: lockio\r\n").await.unwrap();
    let mut half_raft = TcpStream::connect(&raft).await.unwrap();
    half_raft.write_all(b"POST /raft/append HTTP/1.1\r\n").await.unwrap();
    let sent = Instant::now();
    let mut trickle = TcpStream::connect(&http).await.unwrap();
    let trickler = tokio::spawn(async move {
        for byte in HEALTH.iter().cycle() {
            if trickle.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Meanwhile the node keeps answering others.
    let base = cluster.base(1);
    let others = tokio::spawn(async move {
        let started = Instant::now();
        let mut served = 0;
        while started.elapsed() < Duration::from_millis(1_500) {
            assert_eq!(call("GET", &format!("{base}/health"), None).await.status, 200);
            create_session(&base, "meanwhile", 60).await;
            served += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        served
    });
    for (what, stream) in [("API", &mut half_api), ("transport", &mut half_raft)] {
        let took = closed_within(stream, sent, Duration::from_secs(3)).await;
        assert!(took >= Duration::from_millis(700), "the {what} connection was closed too early: {took:?}");
    }
    // The trickler's write fails once the node has closed its connection.
    tokio::time::timeout(Duration::from_secs(5), trickler).await.expect("the trickling client is cut off").unwrap();
    assert!(others.await.unwrap() >= 3, "other clients were served meanwhile");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_closed_after_the_idle_timeout_and_a_busy_one_is_not() {
    let cluster = Cluster::start_with(1, &["--header-read-timeout", "1s", "--idle-timeout", "2s"]).await;
    let http = cluster.base(1).trim_start_matches("http://").to_string();
    // Requests 1.5 s apart keep a connection open past the idle timeout; the header-read
    // timeout, shorter, does not apply between requests.
    let mut busy = TcpStream::connect(&http).await.unwrap();
    for _ in 0..3 {
        health_over(&mut busy).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    health_over(&mut busy).await;
    // Left idle, it is closed after the idle timeout (2 s), not sooner.
    let took = closed_within(&mut busy, Instant::now(), Duration::from_secs(4)).await;
    assert!(took >= Duration::from_millis(1_700), "closed after {took:?}, before the idle timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wait_longer_than_the_timeouts_still_gets_its_grant() {
    let cluster = Cluster::start_with(1, &["--header-read-timeout", "1s", "--idle-timeout", "1s"]).await;
    let base = cluster.base(1);
    let holder = create_session(&base, "holder", 60).await;
    let waiter = create_session(&base, "waiter", 60).await;
    let r = call("POST", &format!("{base}/sessions/{holder}/locks/long"), None).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let url = format!("{base}/sessions/{waiter}/locks/long");
    let wait = tokio::spawn(async move { call("POST", &url, Some(json!({"wait": 10}))).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!wait.is_finished(), "the wait ended before the lock was free");
    assert_eq!(call("DELETE", &format!("{base}/sessions/{holder}"), None).await.status, 200);
    let r = tokio::time::timeout(Duration::from_secs(5), wait).await.expect("the wait is answered").unwrap();
    assert_eq!((r.status, r.body["acquired"].clone()), (201, json!(true)), "{}", r.text);
    assert!(r.body["waited"].as_f64().unwrap() >= 2.5, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_the_connection_cap_a_connection_waits_until_one_closes() {
    let cluster = Cluster::start_with(1, &["--max-connections", "3"]).await;
    let http = cluster.base(1).trim_start_matches("http://").to_string();
    // Three kept-alive connections take the three places (the harness's own connections close
    // when its clients are dropped, so each is served within a moment).
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(&http).await.unwrap();
        health_over(&mut stream).await;
        open.push(stream);
    }
    // A fourth is accepted by the kernel but not served while the three stay open...
    let mut fourth = TcpStream::connect(&http).await.unwrap();
    fourth.write_all(HEALTH).await.unwrap();
    assert!(read_answer(&mut fourth, Duration::from_millis(1_500)).await.is_none(), "the fourth was served");
    // ...and the ones already open are still served.
    health_over(&mut open[0]).await;
    // Once one closes, the fourth is served, and so is everyone after.
    drop(open.pop());
    let answer = read_answer(&mut fourth, Duration::from_secs(5)).await.expect("the fourth is served");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(open);
    drop(fourth);
    let base = cluster.base(1);
    eventually(Duration::from_secs(5), "the node serves new connections", || {
        let base = base.clone();
        async move { crate::support::try_call("GET", &format!("{base}/health")).await.filter(|r| r.status == 200) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_that_is_down_is_logged_once_and_once_when_it_is_back() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let peer = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    let peer_addr = cluster.raft_addr(peer);
    let log = cluster.nodes[(leader - 1) as usize].log.clone();
    let before = std::fs::read_to_string(&log).unwrap().len();
    cluster.kill(peer);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let text = std::fs::read_to_string(&log).unwrap()[before..].to_string();
    let about_peer: Vec<&str> = text.lines().filter(|l| l.contains(&peer_addr)).collect();
    assert!(about_peer.len() <= 2, "{} lines about the down peer in 5 s:\n{text}", about_peer.len());
    assert!(about_peer.iter().any(|l| l.contains("unreachable")), "the peer going down is logged:\n{text}");
    assert!(!text.contains("ERROR"), "{text}");
    cluster.restart(peer).await;
    eventually(Duration::from_secs(10), "the peer coming back is logged", || {
        let text = std::fs::read_to_string(&log).unwrap()[before..].to_string();
        let peer_addr = peer_addr.clone();
        async move { text.lines().any(|l| l.contains(&peer_addr) && l.contains("answers again")).then_some(()) }
    })
    .await;
}

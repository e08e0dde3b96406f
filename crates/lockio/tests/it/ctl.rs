//! The client commands of `lockio` against a real cluster: every command's output for people
//! and for programs, one-line errors, waiting in a lock's queue (`lock acquire --wait`), and
//! `lockio exec` — mutual exclusion between concurrent runs, runs taking turns in arrival order,
//! riding out a leader kill, losing the lock while stopped, signals and exit statuses, and
//! nothing CMD started outliving the lock; shared locks, semaphores and values (`lock acquire
//! --shared --limit --value`, `lock status`), `fence check` and its exit status, and `lockio
//! elect`/`lockio leader` — one leader at a time, the next one taking over when it steps down or
//! loses its session.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::support::cluster::lockio_bin;
use crate::support::{eventually, Cluster};

/// The cluster's HTTP endpoints as `--endpoints` takes them.
fn endpoints(cluster: &Cluster) -> String {
    cluster.running().iter().map(|id| cluster.base(*id)).collect::<Vec<_>>().join(",")
}

/// `lockio --endpoints ENDPOINTS ARGS` (before the command, so that `exec ... -- CMD` keeps
/// its CMD to itself).
fn lockio(endpoints: &str, args: &[&str]) -> Command {
    let mut command = Command::new(lockio_bin());
    command
        .arg("--endpoints")
        .arg(endpoints)
        .args(args)
        .env_remove("LOCKIO_ENDPOINTS")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs `lockio --endpoints ENDPOINTS ARGS` to completion: (exit code, stdout, stderr).
async fn run(endpoints: &str, args: &[&str]) -> (i32, String, String) {
    let out = lockio(endpoints, args).output().await.expect("run lockio");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0]
}

/// Whether every key of `expected` is in `actual` with the same value (`"*"` matches anything
/// but null; a list matches a list as long, item by item).
fn json_has(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (_, Value::String(s)) if s == "*" => !actual.is_null(),
        (Value::Object(a), Value::Object(e)) => e.iter().all(|(k, v)| a.get(k).is_some_and(|av| json_has(av, v))),
        (Value::Array(a), Value::Array(e)) => a.len() == e.len() && a.iter().zip(e).all(|(av, ev)| json_has(av, ev)),
        _ => actual == expected,
    }
}

/// What one command must do: text its stdout (or, with `Json`, a subset of its JSON) must
/// contain with exit status 0, or text its one-line stderr must contain with exit status 1
/// (`Err`, the cluster said no) or 2 (`Usage`, refused before anything was sent).
enum Expect {
    Out(&'static str),
    Json(Value),
    Err(&'static str),
    Usage(&'static str),
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_prints_for_people_and_for_programs() {
    let cluster = Cluster::start(3).await;
    let ep = endpoints(&cluster);
    let (code, alice, err) = run(&ep, &["session", "create", "-q", "--client-id", "alice", "--timeout", "30"]).await;
    assert_eq!(code, 0, "{err}");
    let alice = alice.trim().to_string();
    let (code, bob, err) = run(&ep, &["session", "create", "--json", "--client-id", "bob"]).await;
    assert_eq!(code, 0, "{err}");
    let bob: Value = serde_json::from_str(&bob).unwrap();
    assert!(
        json_has(&bob, &json!({"client_id": "bob", "timeout": 60, "keepalive_interval": 20, "session_id": "*"})),
        "{bob}"
    );
    let bob = bob["session_id"].as_str().unwrap().to_string();

    // (arguments with {A}/{B} for the two sessions, what must happen)
    let script: Vec<(&str, Expect)> = vec![
        ("lock acquire {A} res-1", Expect::Out("acquired res-1 with fence token 1\n")),
        ("lock acquire {A} res-1", Expect::Out("already holds res-1 with fence token 1")),
        ("lock acquire -q {A} res-1", Expect::Out("1\n")),
        ("lock acquire {B} res-1", Expect::Err("lockio: res-1 is held by client alice since ")),
        ("lock acquire {B} res-1", Expect::Err(" with fence token 1")),
        (
            "lock status res-1 --json",
            Expect::Json(
                json!({"locked": true, "client_id": "alice", "session_id": "{A}", "fence_token": 1, "acquired_at": "*"}),
            ),
        ),
        ("lock status res-1", Expect::Out("mode          exclusive\nholders       1\nqueue_length  0\n")),
        ("lock status res-1", Expect::Out("\n1       alice      {A}  1            ")),
        (
            "lock status res-1 --json",
            Expect::Json(
                json!({"mode": "exclusive", "holders_count": 1, "holders": [{"client_id": "alice", "fence_token": 1, "value": null}]}),
            ),
        ),
        ("lock status free-one --json", Expect::Json(json!({"locked": false, "resource": "free-one"}))),
        ("session get {A}", Expect::Out("locks_held          res-1\n")),
        (
            "session get {A} --json",
            Expect::Json(json!({"client_id": "alice", "timeout": 30, "is_expired": false, "locks_held": ["res-1"]})),
        ),
        ("session keepalive {A} --json", Expect::Json(json!({"success": true, "timeout": 30, "session_id": "{A}"}))),
        (
            "lock release {A} res-1 --fence-token 2",
            Expect::Err("lockio: session {A} holds res-1 under fence token 1, not 2"),
        ),
        ("lock release {A} res-1 --fence-token 1", Expect::Out("released res-1 (fence token 1)\n")),
        ("lock release {A} res-1 --fence-token 1", Expect::Err("lockio: session {A} does not hold res-1")),
        (
            "lock acquire {B} res-1 --json",
            Expect::Json(json!({"acquired": true, "fence_token": 2, "newly_granted": true})),
        ),
        (
            "stats --json",
            Expect::Json(
                json!({"active_sessions": 2, "expired_sessions": 0, "total_locks": 1, "fence_counter": 2, "total_session": 2, "total_sessions": 2}),
            ),
        ),
        ("stats", Expect::Out("fence_counter     2\n")),
        ("session delete {B}", Expect::Out("session {B} deleted; its locks were released\n")),
        ("session delete {B}", Expect::Err("lockio: session {B} does not exist")),
        ("lock status res-1 --json", Expect::Json(json!({"locked": false}))),
        ("cleanup --json", Expect::Json(json!({"cleanup": "completed", "count": 0}))),
        ("cleanup", Expect::Out("removed 0 expired sessions\n")),
        ("session get not-a-uuid", Expect::Usage("lockio: invalid value 'not-a-uuid' for '<SESSION_ID>'")),
        (
            "session create --timeout 4",
            Expect::Err("lockio: invalid timeout: must be an integer from 5 to 3600 (seconds)"),
        ),
        ("lock acquire {A} %20padded%20", Expect::Out("acquired %20padded%20 with fence token 3")),
        ("status", Expect::Out("LEADER")),
        ("status --json", Expect::Json(json!({"members": "*"}))),
    ];
    for (line, expect) in script {
        let line = line.replace("{A}", &alice).replace("{B}", &bob);
        let args: Vec<&str> = line.split(' ').collect();
        let (code, out, err) = run(&ep, &args).await;
        match expect {
            Expect::Out(text) => {
                assert_eq!(code, 0, "{line}: {err}");
                assert!(
                    out.contains(&text.replace("{A}", &alice).replace("{B}", &bob)),
                    "{line}: {text:?} not in\n{out}"
                );
            }
            Expect::Json(subset) => {
                assert_eq!(code, 0, "{line}: {err}");
                assert_eq!(out.lines().count(), 1, "{line}: one JSON line\n{out}");
                let value: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{line}: {e}: {out}"));
                let subset: Value = serde_json::from_str(&subset.to_string().replace("{A}", &alice)).unwrap();
                assert!(json_has(&value, &subset), "{line}: {value} lacks {subset}");
            }
            Expect::Err(text) | Expect::Usage(text) => {
                let status = if matches!(expect, Expect::Usage(_)) { 2 } else { 1 };
                assert_eq!(code, status, "{line}: exit status; stdout {out}");
                let text = text.replace("{A}", &alice).replace("{B}", &bob);
                assert!(one_line(&err).contains(&text), "{line}: {text:?} not in {err:?}");
            }
        }
    }

    // The members table: a header and one aligned row per node, one of them the leader.
    let (_, out, _) = run(&ep, &["status"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("ID  HTTP"), "{out}");
    let state_column = lines[0].find("STATE").unwrap();
    assert_eq!(lines.iter().filter(|l| l[state_column..].starts_with("LEADER")).count(), 1, "{out}");
    let (_, out, _) = run(&ep, &["status", "--json"]).await;
    let members: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(members["members"].as_array().unwrap().iter().filter(|m| m["reachable"] == true).count(), 3, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_cluster_is_one_line_naming_every_endpoint_tried() {
    let dead: Vec<String> = (0..2).map(|_| format!("127.0.0.1:{}", closed_port())).collect();
    let ep = dead.join(",");
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let started = Instant::now();
    for args in [vec!["stats"], vec!["exec", "r", "--", "touch", ran.to_str().unwrap()]] {
        let (code, _, err) = run(&ep, &args).await;
        assert_eq!(code, 1, "{args:?}");
        let line = one_line(&err);
        assert!(line.starts_with("lockio: lock.io cluster unavailable: tried "), "{line}");
        for endpoint in &dead {
            assert!(line.contains(&format!("{endpoint} (connection refused)")), "{line}");
        }
    }
    assert!(!ran.exists(), "CMD must not run without the lock");
    assert!(started.elapsed() < Duration::from_secs(10), "gave up after {:?}", started.elapsed());
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A shell script that appends `start TOKEN` to `file`, works for `secs`, appends `end TOKEN`.
fn marked_work(file: &Path, secs: f64) -> String {
    let f = file.display();
    format!(
        r#"test -n "$LOCKIO_SESSION_ID" && test "$LOCKIO_RESOURCE" = shared || exit 9
echo "start $LOCKIO_FENCE_TOKEN $LOCKIO_SESSION_ID" >> {f}; sleep {secs}; echo "end $LOCKIO_FENCE_TOKEN" >> {f}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_execs_never_overlap_and_see_increasing_tokens() {
    let cluster = Cluster::start(3).await;
    let ep = endpoints(&cluster);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("markers");
    let script = marked_work(&file, 0.5);
    let runs: Vec<_> = (0..4).map(|_| exec_sh(&ep, &["--wait", "60"], &script)).collect();
    for run in runs {
        let out =
            tokio::time::timeout(Duration::from_secs(60), run.wait_with_output()).await.expect("exec exits").unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 8, "{text}");
    let mut last_token = 0;
    let mut sessions = std::collections::BTreeSet::new();
    for pair in lines.chunks(2) {
        assert_eq!((pair[0][0], pair[1][0]), ("start", "end"), "runs overlapped:\n{text}");
        assert_eq!(pair[0][1], pair[1][1], "one run's start and end:\n{text}");
        let token: u64 = pair[0][1].parse().unwrap();
        assert!(token > last_token, "tokens must increase:\n{text}");
        last_token = token;
        sessions.insert(pair[0][2]);
    }
    assert_eq!(sessions.len(), 4, "one session per run:\n{text}");
    let (_, out, _) = run(&ep, &["stats", "--json"]).await;
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert!(json_has(&stats, &json!({"active_sessions": 0, "total_locks": 0})), "every run cleaned up: {stats}");
}

/// `lockio exec shared FLAGS -- sh -c SCRIPT`, its stderr captured.
fn exec_sh(endpoints: &str, flags: &[&str], script: &str) -> Child {
    let args: Vec<&str> =
        ["exec", "shared"].into_iter().chain(flags.iter().copied()).chain(["--", "sh", "-c", script]).collect();
    lockio(endpoints, &args).stderr(Stdio::piped()).spawn().unwrap()
}

async fn wait_for_line(file: &Path, prefix: &str) -> String {
    eventually(Duration::from_secs(30), &format!("a line starting {prefix:?} in {}", file.display()), || async {
        let text = std::fs::read_to_string(file).ok()?;
        text.lines().find(|l| l.starts_with(prefix)).map(str::to_string)
    })
    .await
}

async fn finish(child: Child, within: Duration) -> (i32, String) {
    let out = tokio::time::timeout(within, child.wait_with_output()).await.expect("lockio exec exits in time").unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_leader_does_not_interrupt_exec() {
    let mut cluster = Cluster::start(3).await;
    let ep = endpoints(&cluster);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("markers");
    let script = marked_work(&file, 4.0);
    let exec = exec_sh(&ep, &["--timeout", "6"], &script);
    wait_for_line(&file, "start").await;
    let leader = cluster.wait_for_leader().await;
    cluster.kill(leader);
    let (code, err) = finish(exec, Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("lost"), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.lines().nth(1).is_some_and(|l| l.starts_with("end ")), "CMD ran to the end:\n{text}");
    // Released and deleted through the new leader.
    let client = cluster.client();
    assert!(client.lock_status("shared").await.unwrap().holder.is_none());
    assert_eq!(client.stats().await.unwrap().active_sessions, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_exec_loses_the_lock_and_stops_its_command_when_it_resumes() {
    let cluster = Cluster::start(3).await;
    let ep = endpoints(&cluster);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("markers");
    let f = file.display();
    // Works until told to stop (at most 60 s), noting SIGTERM.
    let script = format!(
        r#"trap 'echo "term" >> {f}; exit 0' TERM; echo "start $LOCKIO_FENCE_TOKEN" >> {f}; for i in $(seq 600); do sleep 0.1; done; echo "end" >> {f}"#
    );
    let exec = exec_sh(&ep, &["--timeout", "5", "--grace", "3"], &script);
    let pid = exec.id().unwrap() as libc::pid_t;
    let first: u64 = wait_for_line(&file, "start").await[6..].parse().unwrap();
    unsafe { libc::kill(pid, libc::SIGSTOP) };

    // Another client gets the lock once the stopped one's session has expired.
    let client = cluster.client();
    let thief = client.open_session("thief", Duration::from_secs(30)).await.unwrap();
    let guard = eventually(Duration::from_secs(15), "the lock passes to another client", || async {
        thief.lock("shared").await.ok()
    })
    .await;
    assert!(guard.fence_token().0 > first, "{} after {first}", guard.fence_token());
    assert!(!std::fs::read_to_string(&file).unwrap().contains("term"), "CMD runs on while lockio is stopped");

    unsafe { libc::kill(pid, libc::SIGCONT) };
    let resumed = Instant::now();
    let (code, err) = finish(exec, Duration::from_secs(15)).await;
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("lockio: lost the lock on shared: session ") && err.contains("expired"), "{err}");
    assert!(resumed.elapsed() < Duration::from_secs(5), "stopped CMD {:?} after resuming", resumed.elapsed());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("term") && !text.contains("end"), "CMD got SIGTERM:\n{text}");
    // The stopped process did not disturb the new holder.
    assert_eq!(client.lock_status("shared").await.unwrap().holder.unwrap().fence_token, guard.fence_token());
}

/// (what CMD does, a signal for `lockio exec` once CMD started, the exit status expected)
#[tokio::test(flavor = "multi_thread")]
async fn exec_passes_signals_on_and_exits_with_the_command_status() {
    let cluster = Cluster::start(3).await;
    let ep = endpoints(&cluster);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("markers");
    let f = file.display();
    let trapping = |sig: &str, code: i32| {
        format!(
            r#"trap 'echo "got {sig}" >> {f}; exit {code}' {sig}; echo start >> {f}; for i in $(seq 300); do sleep 0.1; done"#
        )
    };
    let table: Vec<(String, Option<i32>, i32, Option<&str>)> = vec![
        ("exit 3".into(), None, 3, None),
        ("kill -KILL $$".into(), None, 128 + 9, None),
        (trapping("TERM", 7), Some(libc::SIGTERM), 7, Some("got TERM")),
        (trapping("INT", 0), Some(libc::SIGINT), 0, Some("got INT")),
        (trapping("HUP", 4), Some(libc::SIGHUP), 4, Some("got HUP")),
    ];
    for (script, signal, expected, marker) in table {
        let _ = std::fs::remove_file(&file);
        let exec = exec_sh(&ep, &[], &script);
        if let Some(signal) = signal {
            wait_for_line(&file, "start").await;
            unsafe { libc::kill(exec.id().unwrap() as libc::pid_t, signal) };
        }
        let (code, err) = finish(exec, Duration::from_secs(30)).await;
        assert_eq!(code, expected, "{script}: {err}");
        if let Some(marker) = marker {
            assert!(std::fs::read_to_string(&file).unwrap().contains(marker), "{script}");
        }
        let (_, out, _) = run(&ep, &["lock", "status", "shared", "--json"]).await;
        assert!(out.contains(r#""locked":false"#), "{script}: released after: {out}");
    }
    let (code, _, err) = run(&ep, &["exec", "shared", "--", "/no/such/command"]).await;
    assert_eq!(code, 127, "{err}");
    assert!(one_line(&err).starts_with("lockio: cannot run /no/such/command"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_gives_up_when_the_lock_stays_held_past_wait() {
    let cluster = Cluster::start(3).await;
    let ep = endpoints(&cluster);
    let client = cluster.client();
    let holder = client.open_session("holder-7", Duration::from_secs(30)).await.unwrap();
    let guard = holder.lock("shared").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let started = Instant::now();
    let (code, _, err) = run(&ep, &["exec", "shared", "--wait", "1.5", "--", "touch", ran.to_str().unwrap()]).await;
    let waited = started.elapsed();
    assert_eq!(code, 1, "{err}");
    // The queue counts whole seconds: 1.5 s is a wait of 2.
    let expected = format!(" with fence token {}; gave up after waiting 2.", guard.fence_token());
    let line = one_line(&err);
    assert!(line.starts_with("lockio: shared is held by client holder-7 since ") && line.contains(&expected), "{line}");
    assert!(!ran.exists(), "CMD must not run without the lock");
    assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(7), "waited {waited:?}");
    // The waiting run's session is gone.
    assert_eq!(client.stats().await.unwrap().active_sessions, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_deleted_under_exec_stops_its_command_even_one_that_ignores_sigterm() {
    let cluster = Cluster::start(3).await;
    let ep = endpoints(&cluster);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("markers");
    let f = file.display();
    let script = format!(
        r#"trap '' TERM; echo "start $LOCKIO_SESSION_ID" >> {f}; for i in $(seq 600); do sleep 0.1; done; echo end >> {f}"#
    );
    let exec = exec_sh(&ep, &["--timeout", "6", "--grace", "1"], &script);
    let session = wait_for_line(&file, "start").await[6..].to_string();
    // Someone deletes the session (an operator, a cleanup script): the next keepalive hears so.
    let (code, _, err) = run(&ep, &["session", "delete", &session]).await;
    assert_eq!(code, 0, "{err}");
    let deleted = Instant::now();
    let (code, err) = finish(exec, Duration::from_secs(20)).await;
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains(&format!("lockio: lost the lock on shared: session {session} expired (the cluster expired it)")),
        "{err}"
    );
    assert!(err.contains("did not exit within 1s of SIGTERM; sending SIGKILL"), "{err}");
    // Within a keepalive interval (2 s) and the grace period, well before the 6 s timeout
    // would have ended it anyway.
    assert!(deleted.elapsed() < Duration::from_millis(5500), "{:?}", deleted.elapsed());
    assert!(!std::fs::read_to_string(&file).unwrap().contains("end"));
}

/// A background process CMD started, by the pid CMD noted: still running, or gone (a zombie
/// waiting for init to reap it counts as gone).
fn running(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

#[tokio::test(flavor = "multi_thread")]
async fn what_cmd_starts_in_the_background_is_stopped_before_the_lock_goes() {
    let cluster = Cluster::start(3).await;
    let ep = endpoints(&cluster);
    let client = cluster.client();
    let dir = tempfile::tempdir().unwrap();
    // (CMD after starting `sleep 600 &`, whether its session is deleted under it, exit status, stderr)
    let table = [
        ("wait", true, 125, "lockio: lost the lock on shared: session "),
        ("exit 0", false, 0, "lockio: CMD exited, leaving processes in its process group "),
    ];
    for (then, delete, expected, says) in table {
        let file = dir.path().join(format!("started-{expected}"));
        let script = format!(r#"sleep 600 & echo "started $! $LOCKIO_SESSION_ID" >> {}; {then}"#, file.display());
        let exec = exec_sh(&ep, &["--timeout", "6", "--grace", "1"], &script);
        let line = wait_for_line(&file, "started").await;
        let fields: Vec<&str> = line.split(' ').collect();
        let background: libc::pid_t = fields[1].parse().unwrap();
        if delete {
            let (code, _, err) = run(&ep, &["session", "delete", fields[2]]).await;
            assert_eq!(code, 0, "{err}");
        }
        let (code, err) = finish(exec, Duration::from_secs(20)).await;
        assert_eq!(code, expected, "{then}: {err}");
        assert!(err.contains(says), "{then}: {err}");
        assert!(!running(background), "{then}: the background `sleep` (pid {background}) outlived lockio exec: {err}");
        assert!(client.lock_status("shared").await.unwrap().holder.is_none(), "{then}: released");
    }
}

/// `lockio lock status RESOURCE --json`, once it parses.
async fn lock_status_json(endpoints: &str, resource: &str) -> Option<Value> {
    let (code, out, _) = run(endpoints, &["lock", "status", resource, "--json"]).await;
    if code != 0 {
        return None;
    }
    serde_json::from_str(&out).ok()
}

/// The client ids in `resource`'s queue, in order, as `lockio lock status --json` lists them.
async fn queue_becomes(endpoints: &str, resource: &str, clients: &[&str]) -> Value {
    eventually(Duration::from_secs(20), &format!("the queue of {resource} is {clients:?}"), || async {
        let status = lock_status_json(endpoints, resource).await?;
        let queue: Vec<&str> = status["waiters"].as_array()?.iter().filter_map(|w| w["client_id"].as_str()).collect();
        (queue == clients && status["queue_length"] == clients.len()).then_some(status.clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_acquire_waits_in_the_queue() {
    let cluster = Cluster::start(3).await;
    let ep = endpoints(&cluster);
    let (code, alice, err) = run(&ep, &["session", "create", "-q", "--client-id", "alice"]).await;
    assert_eq!(code, 0, "{err}");
    let alice = alice.trim().to_string();
    let (code, bob, err) = run(&ep, &["session", "create", "--json", "--client-id", "bob", "--lock-delay", "5"]).await;
    assert_eq!(code, 0, "{err}");
    let bob: Value = serde_json::from_str(&bob).unwrap();
    assert!(json_has(&bob, &json!({"client_id": "bob", "lock_delay": 5})), "{bob}");
    let bob = bob["session_id"].as_str().unwrap().to_string();
    let (code, out, err) = run(&ep, &["lock", "acquire", &alice, "res"]).await;
    assert_eq!((code, out.as_str()), (0, "acquired res with fence token 1\n"), "{err}");

    // A wait that runs out: one line, exit 1, after the wait.
    let started = Instant::now();
    let (code, _, err) = run(&ep, &["lock", "acquire", "--wait", "1", &bob, "res"]).await;
    assert_eq!(code, 1, "{err}");
    let line = one_line(&err);
    assert!(
        line.starts_with("lockio: res is held by client alice since ")
            && line.contains(" with fence token 1; gave up after waiting "),
        "{line}"
    );
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());

    // A wait that is granted when alice releases.
    let waiting = lockio(&ep, &["lock", "acquire", "--wait", "60", &bob, "res"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = queue_becomes(&ep, "res", &["bob"]).await;
    assert!(
        json_has(
            &status,
            &json!({"locked": true, "client_id": "alice", "session_id": alice, "fence_token": 1, "queue_length": 1})
        ),
        "{status}"
    );
    assert!(json_has(&status["waiters"][0], &json!({"session_id": bob, "since": "*", "deadline": "*"})), "{status}");
    let (_, out, _) = run(&ep, &["lock", "status", "res"]).await;
    assert!(out.contains("queue_length  1\n"), "{out}");
    let row = out
        .lines()
        .skip_while(|l| !l.starts_with("WAITER "))
        .find(|l| l.starts_with("1  "))
        .unwrap_or_else(|| panic!("a row for the first waiter in\n{out}"));
    assert!(row.contains(" bob ") && row.contains(&bob), "{out}");
    let (_, out, _) = run(&ep, &["session", "get", &bob, "--json"]).await;
    let info: Value = serde_json::from_str(&out).unwrap();
    assert!(json_has(&info, &json!({"waiting_for": ["res"], "lock_delay": 5, "locks_held": []})), "{info}");
    let (_, out, _) = run(&ep, &["session", "get", &bob]).await;
    let line_of = |key: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
    };
    assert_eq!(
        (line_of("waiting_for"), line_of("lock_delay")),
        (Some("res".to_string()), Some("5s".to_string())),
        "{out}"
    );

    let (code, _, err) = run(&ep, &["lock", "release", &alice, "res", "--fence-token", "1"]).await;
    assert_eq!(code, 0, "{err}");
    let out = tokio::time::timeout(Duration::from_secs(10), waiting.wait_with_output())
        .await
        .expect("granted on release")
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!((out.status.code(), stdout.as_ref()), (Some(0), "acquired res with fence token 2\n"), "{stderr}");
    let status = lock_status_json(&ep, "res").await.unwrap();
    assert!(
        json_has(
            &status,
            &json!({"locked": true, "session_id": bob, "fence_token": 2, "queue_length": 0, "waiters": []})
        ),
        "{status}"
    );
    let (code, _, err) = run(&ep, &["lock", "acquire", "--wait", "301", &bob, "res"]).await;
    assert_eq!(code, 2, "a wait past the cluster's limit does not parse: {err}");
}

/// A CMD for `exec_sh` that appends `start NAME NANOS TOKEN` to `file`, works a second, and
/// appends `end NAME NANOS` (NANOS: the time in nanoseconds, as `date` prints it).
fn timed_work(file: &Path, name: &str) -> String {
    let f = file.display();
    format!(
        r#"echo "start {name} $(date +%s%N) $LOCKIO_FENCE_TOKEN" >> {f}; sleep 1; echo "end {name} $(date +%s%N)" >> {f}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn two_execs_waiting_take_turns_in_arrival_order() {
    let cluster = Cluster::start(3).await;
    let ep = endpoints(&cluster);
    let client = cluster.client();
    let holder = client.open_session("holder", Duration::from_secs(30)).await.unwrap();
    let guard = holder.lock("shared").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("markers");

    // Both runs queue behind the holder, first "one", then "two" (each seen queued first).
    let one = exec_sh(&ep, &["--wait", "60", "--client-id", "exec-one"], &timed_work(&file, "one"));
    queue_becomes(&ep, "shared", &["exec-one"]).await;
    let two = exec_sh(&ep, &["--wait", "60", "--client-id", "exec-two"], &timed_work(&file, "two"));
    queue_becomes(&ep, "shared", &["exec-one", "exec-two"]).await;
    assert!(!file.exists(), "nobody runs while the holder has the lock");
    let held = guard.fence_token().0;
    guard.release().await.unwrap();

    let (code, err) = finish(one, Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{err}");
    let (code, err) = finish(two, Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    let shape: Vec<(&str, &str)> = lines.iter().map(|l| (l[0], l[1])).collect();
    assert_eq!(
        shape,
        [("start", "one"), ("end", "one"), ("start", "two"), ("end", "two")],
        "in arrival order, one at a time:\n{text}"
    );
    let nanos = |line: &[&str]| line[2].parse::<u128>().unwrap();
    assert!(nanos(&lines[2]) >= nanos(&lines[1]), "two started only after one ended:\n{text}");
    let token = |line: &[&str]| line[3].parse::<u64>().unwrap();
    assert!(token(&lines[0]) > held && token(&lines[2]) > token(&lines[0]), "tokens increase:\n{text}");
    let (_, out, _) = run(&ep, &["stats", "--json"]).await;
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert!(json_has(&stats, &json!({"active_sessions": 1, "total_locks": 0})), "both runs cleaned up: {stats}");
    holder.close().await.unwrap();
}

/// Creates a session with `client_id` through the CLI; returns its id.
async fn cli_session(endpoints: &str, client_id: &str) -> String {
    let (code, out, err) = run(endpoints, &["session", "create", "-q", "--client-id", client_id]).await;
    assert_eq!(code, 0, "{err}");
    out.trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_locks_semaphores_and_fence_checks_from_the_command_line() {
    let cluster = Cluster::start(3).await;
    let ep = endpoints(&cluster);
    let (a, b, c) =
        (cli_session(&ep, "reader-a").await, cli_session(&ep, "reader-b").await, cli_session(&ep, "writer-c").await);

    let (code, out, err) =
        run(&ep, &["lock", "acquire", "--shared", "--limit", "2", "--value", "10.0.0.1:80", &a, "pool"]).await;
    assert_eq!((code, out.as_str()), (0, "acquired pool (shared) with fence token 1\n"), "{err}");
    let (code, out, err) =
        run(&ep, &["lock", "acquire", "--json", "--shared", "--limit", "2", "--value", "10.0.0.2:80", &b, "pool"])
            .await;
    assert_eq!(code, 0, "{err}");
    let grant: Value = serde_json::from_str(&out).unwrap();
    assert!(
        json_has(&grant, &json!({"acquired": true, "fence_token": 2, "mode": "shared", "value": "10.0.0.2:80"})),
        "{grant}"
    );
    // The semaphore is full; another limit is a mismatch; a reader asking to write a conflict.
    let (code, _, err) = run(&ep, &["lock", "acquire", "--shared", "--limit", "2", &c, "pool"]).await;
    assert_eq!(code, 1);
    assert!(one_line(&err).starts_with("lockio: pool is held by client reader-a since "), "{err}");
    let (code, _, err) = run(&ep, &["lock", "acquire", "--shared", "--limit", "3", &c, "pool"]).await;
    assert_eq!((code, one_line(&err)), (1, "lockio: pool is shared with a limit of 2; ask with that limit or none"));
    let (code, _, err) = run(&ep, &["lock", "acquire", &a, "pool"]).await;
    assert_eq!(
        (code, one_line(&err)),
        (1, "lockio: this session holds or waits for pool in shared mode; it cannot ask for it in the other mode")
    );
    let (code, _, err) = run(&ep, &["lock", "acquire", "--limit", "2", &c, "pool"]).await;
    assert_eq!(code, 2, "--limit needs --shared: {err}");

    // Status: the mode, the limit and every holder with its value.
    let (code, out, err) = run(&ep, &["lock", "status", "pool"]).await;
    assert_eq!(code, 0, "{err}");
    for line in ["mode          shared\n", "holders       2\n", "limit         2\n", "queue_length  0\n"] {
        assert!(out.contains(line), "{line:?} not in\n{out}");
    }
    let rows: Vec<Vec<&str>> =
        out.lines().skip_while(|l| !l.starts_with("HOLDER ")).skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    for (row, (client, token, value)) in
        rows.iter().zip([("reader-a", "1", "10.0.0.1:80"), ("reader-b", "2", "10.0.0.2:80")])
    {
        assert_eq!((row[1], row[3], *row.last().unwrap()), (client, token, value), "{out}");
    }
    let status = lock_status_json(&ep, "pool").await.unwrap();
    assert!(
        json_has(
            &status,
            &json!({"locked": true, "mode": "shared", "limit": 2, "holders_count": 2, "client_id": "reader-a", "fence_token": 1,
                    "holders": [{"session_id": a, "client_id": "reader-a", "fence_token": 1, "value": "10.0.0.1:80", "acquired_at": "*"},
                                {"session_id": b, "client_id": "reader-b", "fence_token": 2, "value": "10.0.0.2:80", "acquired_at": "*"}]})
        ),
        "{status}"
    );

    // Fence checks: exit 0 for a current holder's token, 1 otherwise, the holders either way.
    let (code, out, err) = run(&ep, &["fence", "check", "pool", "2"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("valid: fence token 2 is held on pool by client reader-b\n"), "{out}");
    assert!(out.contains("10.0.0.1:80") && out.contains("10.0.0.2:80"), "{out}");
    let (code, out, _) = run(&ep, &["fence", "check", "pool", "7"]).await;
    assert_eq!(code, 1);
    assert!(out.starts_with("invalid: fence token 7 is not held on pool\n"), "{out}");
    let (code, _, err) = run(&ep, &["lock", "release", &a, "pool", "--fence-token", "1"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = run(&ep, &["fence", "check", "--json", "pool", "1"]).await;
    assert_eq!(code, 1, "released: {out}");
    let check: Value = serde_json::from_str(&out).unwrap();
    assert!(
        json_has(
            &check,
            &json!({"resource": "pool", "fence_token": 1, "valid": false, "holders": [{"client_id": "reader-b", "fence_token": 2, "value": "10.0.0.2:80"}]})
        ),
        "{check}"
    );
    let (code, out, _) = run(&ep, &["fence", "check", "nothing", "2"]).await;
    assert_eq!((code, out.as_str()), (1, "invalid: fence token 2 is not held on nothing\nnobody holds nothing\n"));
    let (code, _, err) = run(&ep, &["fence", "check", "pool", "0"]).await;
    assert_eq!(code, 2, "{err}");
}

/// `lockio elect sched --value NAME --client-id NAME -- sh -c SCRIPT`: the script notes
/// `lead NAME TOKEN VALUE RESOURCE SESSION` in `file` and runs until `stop-NAME` appears next to
/// it.
fn candidate(endpoints: &str, file: &Path, name: &str) -> Child {
    let dir = file.parent().unwrap().display();
    let f = file.display();
    let script = format!(
        r#"echo "lead {name} $LOCKIO_FENCE_TOKEN $LOCKIO_LEADER_VALUE $LOCKIO_RESOURCE $LOCKIO_SESSION_ID" >> {f}; while [ ! -e {dir}/stop-{name} ]; do sleep 0.05; done"#
    );
    lockio(
        endpoints,
        &["elect", "sched", "--value", name, "--client-id", name, "--timeout", "10", "--", "sh", "-c", &script],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn elect_makes_one_candidate_leader_and_the_other_takes_over_when_it_exits() {
    let cluster = Cluster::start(3).await;
    let ep = endpoints(&cluster);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("leaders");
    let (code, out, _) = run(&ep, &["leader", "sched"]).await;
    assert_eq!((code, out.as_str()), (1, "nobody leads sched\n"));

    let one = candidate(&ep, &file, "one");
    let two = candidate(&ep, &file, "two");
    let first = wait_for_line(&file, "lead ").await;
    let fields: Vec<&str> = first.split(' ').collect();
    let (leader, token) = (fields[1].to_string(), fields[2].parse::<u64>().unwrap());
    assert_eq!((fields[3], fields[4]), (leader.as_str(), "sched"), "{first}");
    let follower = if leader == "one" { "two" } else { "one" };
    // The other one waits in the queue, and only one leads.
    queue_becomes(&ep, "sched", &[follower]).await;
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 1, "one leader at a time");
    let (code, out, err) = run(&ep, &["leader", "sched"]).await;
    assert_eq!((code, out), (0, format!("leader: {leader} (fence token {token})\n")), "{err}");
    let (code, out, _) = run(&ep, &["leader", "--json", "sched"]).await;
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert!(
        code == 0
            && json_has(
                &shown,
                &json!({"resource": "sched", "leader": {"value": leader, "fence_token": token, "client_id": leader}})
            ),
        "{shown}"
    );
    let (code, _, _) = run(&ep, &["fence", "check", "sched", &token.to_string()]).await;
    assert_eq!(code, 0, "the leader's token is valid");

    // The leader's CMD ends: it steps down with CMD's status, and the other one takes over.
    std::fs::write(dir.path().join(format!("stop-{leader}")), "").unwrap();
    let (first_child, second_child) = if leader == "one" { (one, two) } else { (two, one) };
    let out = tokio::time::timeout(Duration::from_secs(30), first_child.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout, format!("leader: {leader} (fence token {token})\n"));
    let second = eventually(Duration::from_secs(20), "the other candidate leads", || async {
        std::fs::read_to_string(&file).ok()?.lines().nth(1).map(str::to_string)
    })
    .await;
    let fields: Vec<&str> = second.split(' ').collect();
    assert_eq!((fields[1], fields[3]), (follower, follower), "{second}");
    let next_token: u64 = fields[2].parse().unwrap();
    assert!(next_token > token, "{second}");
    let (code, out, _) = run(&ep, &["leader", "sched"]).await;
    assert_eq!((code, out), (0, format!("leader: {follower} (fence token {next_token})\n")));
    let (code, _, _) = run(&ep, &["fence", "check", "sched", &token.to_string()]).await;
    assert_eq!(code, 1, "the old leader's token is no longer valid");

    std::fs::write(dir.path().join(format!("stop-{follower}")), "").unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), second_child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("leader: {follower} (fence token {next_token})\n"));
    let (code, out, _) = run(&ep, &["leader", "sched"]).await;
    assert_eq!((code, out.as_str()), (1, "nobody leads sched\n"));
    let (_, out, _) = run(&ep, &["stats", "--json"]).await;
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert!(json_has(&stats, &json!({"active_sessions": 0, "total_locks": 0})), "both cleaned up: {stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_whose_session_is_lost_stops_its_command_and_the_other_takes_over() {
    let cluster = Cluster::start(3).await;
    let ep = endpoints(&cluster);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("leaders");
    let one = candidate(&ep, &file, "one");
    let first = wait_for_line(&file, "lead one ").await;
    let two = candidate(&ep, &file, "two");
    queue_becomes(&ep, "sched", &["two"]).await;
    let session = first.split(' ').nth(5).unwrap().to_string();
    let started = Instant::now();
    let (code, _, err) = run(&ep, &["session", "delete", &session]).await;
    assert_eq!(code, 0, "{err}");
    // one's CMD is stopped (SIGTERM) as soon as the keepalive finds the session gone: exit 125.
    let out = tokio::time::timeout(Duration::from_secs(30), one.wait_with_output()).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains(&format!("lockio: lost leadership of sched: session {session} expired")), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    let second = wait_for_line(&file, "lead two ").await;
    assert!(
        second.split(' ').nth(2).unwrap().parse::<u64>().unwrap() > first.split(' ').nth(2).unwrap().parse().unwrap()
    );
    std::fs::write(dir.path().join("stop-two"), "").unwrap();
    let (code, err) = finish(two, Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{err}");
}

//! Every example of http-api.md, checked against a one-node cluster the way a user with curl
//! would: status, content type and the exact JSON body.
//!
//! Left out on purpose: 503 `UNAVAILABLE` (needs a node without a leader or quorum) and 500
//! `INTERNAL` (needs a server bug) cannot be produced on one healthy node.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::http::raw;
use crate::support::{call, create_session, eventually, Cluster, Resp};

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// A Unix-seconds JSON float within a minute of now.
fn assert_recent_float(v: &Value, what: &str) -> f64 {
    assert!(v.is_f64(), "{what} is not a JSON float: {v}");
    let t = v.as_f64().unwrap();
    assert!((t - now_secs()).abs() < 60.0, "{what} = {t} is not close to now ({})", now_secs());
    t
}

/// A lower-case hyphenated UUID v4.
fn assert_session_id(id: &str) {
    let uuid = uuid::Uuid::parse_str(id).unwrap_or_else(|e| panic!("session id {id:?} is not a UUID: {e}"));
    assert_eq!(uuid.get_version_num(), 4, "session id {id} is not a UUID v4");
    assert_eq!(id, uuid.hyphenated().to_string(), "session id {id} is not lower-case hyphenated");
}

/// An error answer as the contract describes it: this status, JSON, a sentence in `error` and
/// the stable `code`.
#[track_caller]
fn assert_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "expected {status} {code}, got: {}", r.text);
    assert!(r.content_type().starts_with("application/json"), "content type {:?} of {}", r.content_type(), r.text);
    assert!(r.body.is_object(), "not a JSON object: {:?}", r.text);
    assert!(r.body["error"].as_str().is_some_and(|e| !e.is_empty()), "no `error` sentence: {}", r.text);
    assert_eq!(r.body["code"], code, "{}", r.text);
}

/// A success answer: this status and JSON.
#[track_caller]
fn assert_ok(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "{}", r.text);
    assert!(r.content_type().starts_with("application/json"), "content type {:?} of {}", r.content_type(), r.text);
}

/// `2026-01-23T10:24:57.788813+00:00`: RFC 3339, UTC, microseconds, `+00:00`.
fn assert_health_timestamp(ts: &str) {
    let shape = "dddd-dd-ddTdd:dd:dd.dddddd+00:00";
    let fits = ts.len() == shape.len()
        && ts.bytes().zip(shape.bytes()).all(|(c, s)| if s == b'd' { c.is_ascii_digit() } else { c == s });
    assert!(fits, "timestamp {ts:?} is not shaped like 2026-01-23T10:24:57.788813+00:00");
    let at = humantime::parse_rfc3339(&ts.replace("+00:00", "Z")).unwrap_or_else(|e| panic!("{ts}: {e}"));
    let off = at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() - now_secs();
    assert!(off.abs() < 60.0, "timestamp {ts} is {off} s away from now");
}

/// The body has at least these keys (the contract's fields; additions are allowed).
#[track_caller]
fn assert_has_keys(r: &Resp, keys: &[&str]) {
    let have: BTreeSet<&str> = r.body.as_object().expect("a JSON object").keys().map(String::as_str).collect();
    let missing: Vec<&&str> = keys.iter().filter(|k| !have.contains(**k)).collect();
    assert!(missing.is_empty(), "missing {missing:?} in {}", r.text);
}

fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn health_cluster_status_and_dashboard() {
    let cluster = Cluster::start(1).await;
    let base = cluster.base(1);
    let raft = cluster.raft_addr(1);

    let h = call("GET", &format!("{base}/health"), None).await;
    assert_ok(&h, 200);
    assert_has_keys(
        &h,
        &["is_leader", "is_ready", "leader", "leader_id", "node_id", "service", "status", "timestamp", "version"],
    );
    assert_eq!(h.body["is_leader"], true);
    assert_eq!(h.body["is_ready"], true);
    assert_eq!(h.body["leader"], json!(raft), "`leader` is the leader's Raft address");
    assert_eq!(h.body["leader_id"], 1);
    assert_eq!(h.body["node_id"], 1);
    assert_eq!(h.body["service"], "lock.io");
    assert_eq!(h.body["status"], "healthy");
    assert_eq!(h.body["version"], "0.1.0");
    assert_health_timestamp(&h.str("timestamp"));

    // Members advertise their HTTP address through the log, shortly after the start.
    let status_url = format!("{base}/cluster/status");
    let s = eventually(Duration::from_secs(10), "the member's http address is known", || {
        let url = status_url.clone();
        async move {
            let s = call("GET", &url, None).await;
            (s.status == 200 && s.body["members"][0]["http"].is_string()).then_some(s)
        }
    })
    .await;
    assert_ok(&s, 200);
    let b = &s.body;
    assert_has_keys(
        &s,
        &[
            "node",
            "node_id",
            "state",
            "leader",
            "leader_id",
            "term",
            "has_quorum",
            "is_ready",
            "uptime",
            "commit_index",
            "applied_index",
            "members",
            "stats",
        ],
    );
    assert_eq!(b["node"], json!(raft));
    assert_eq!(b["node_id"], 1);
    assert_eq!(b["state"], "LEADER");
    assert_eq!(b["leader"], json!(raft));
    assert_eq!(b["leader_id"], 1);
    assert!(b["term"].as_u64().is_some_and(|t| t >= 1), "term: {}", s.text);
    assert_eq!(b["has_quorum"], true);
    assert_eq!(b["is_ready"], true);
    assert!(b["uptime"].is_u64(), "uptime is whole seconds: {}", s.text);
    let commit = b["commit_index"].as_u64().expect("commit_index");
    let applied = b["applied_index"].as_u64().expect("applied_index");
    assert!(commit >= 1 && applied <= commit, "{}", s.text);
    let members = b["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{}", s.text);
    let m = &members[0];
    assert_eq!(m["id"], 1);
    assert_eq!(m["raft"], json!(raft));
    assert_eq!(m["http"], json!(format!("127.0.0.1:{}", cluster.nodes[0].http_port)));
    // On the leader: how far each member is.
    let matched = m["matched_index"].as_u64().unwrap_or_else(|| panic!("matched_index on the leader: {}", s.text));
    assert!(matched <= commit, "{}", s.text);
    assert!(m["lag"].is_u64(), "lag on the leader: {}", s.text);
    // `stats` is the same object as /admin/stats.
    let stats = call("GET", &format!("{base}/admin/stats"), None).await;
    assert_eq!(b["stats"], stats.body);
    assert_eq!(
        stats.body,
        json!({"active_sessions": 0, "expired_sessions": 0, "fence_counter": 0, "total_locks": 0,
               "total_session": 0, "total_sessions": 0, "waiters": 0})
    );

    // The dashboard is the one HTML page.
    let page = call("GET", &format!("{base}/"), None).await;
    assert_eq!(page.status, 200);
    assert!(page.content_type().starts_with("text/html"), "content type {:?}", page.content_type());
    assert!(page.text.to_ascii_lowercase().contains("<html"), "{}", page.text);
    assert!(page.body.is_null(), "the dashboard is not JSON");
}

#[tokio::test(flavor = "multi_thread")]
async fn session_lifecycle() {
    let cluster = Cluster::start(1).await;
    let base = cluster.base(1);

    // The README example.
    let r =
        call("POST", &format!("{base}/sessions"), Some(json!({"client_id": "test-client-1", "timeout": 100}))).await;
    assert_ok(&r, 201);
    let id = r.str("session_id");
    assert_session_id(&id);
    assert_eq!(
        r.body,
        json!({"client_id": "test-client-1", "keepalive_interval": 33, "session_id": id, "timeout": 100})
    );

    // Default timeout 60; client_id stored trimmed; keepalive_interval = timeout / 3 rounded down.
    let r = call("POST", &format!("{base}/sessions"), Some(json!({"client_id": "  \t padded client \n"}))).await;
    assert_ok(&r, 201);
    assert_eq!(r.body["client_id"], "padded client");
    assert_eq!(r.body["timeout"], 60);
    assert_eq!(r.body["keepalive_interval"], 20);
    let padded = r.str("session_id");
    assert_session_id(&padded);
    assert_ne!(padded, id, "every session has its own id");
    assert_eq!(call("GET", &format!("{base}/sessions/{padded}"), None).await.body["client_id"], "padded client");
    for (timeout, interval) in [(5, 1), (7, 2), (8, 2), (9, 3), (3600, 1200)] {
        let r = call("POST", &format!("{base}/sessions"), Some(json!({"client_id": "k", "timeout": timeout}))).await;
        assert_ok(&r, 201);
        assert_eq!(
            (r.body["timeout"].clone(), r.body["keepalive_interval"].clone()),
            (json!(timeout), json!(interval))
        );
        call("DELETE", &format!("{base}/sessions/{}", r.str("session_id")), None).await;
    }
    // 255 characters (after trimming) is the longest client_id; characters, not bytes.
    let long = "é".repeat(255);
    let r = call("POST", &format!("{base}/sessions"), Some(json!({"client_id": format!(" {long} ")}))).await;
    assert_ok(&r, 201);
    assert_eq!(r.body["client_id"], json!(long));
    call("DELETE", &format!("{base}/sessions/{}", r.str("session_id")), None).await;
    // `Content-Type: application/json; charset=utf-8` is JSON too.
    let r = raw(
        "POST",
        &format!("{base}/sessions"),
        Some("application/json; charset=utf-8"),
        br#"{"client_id":"cs"}"#.to_vec(),
    )
    .await;
    assert_ok(&r, 201);
    call("DELETE", &format!("{base}/sessions/{}", r.str("session_id")), None).await;

    // GET /sessions/{id}.
    let s = call("GET", &format!("{base}/sessions/{id}"), None).await;
    assert_ok(&s, 200);
    assert_has_keys(
        &s,
        &[
            "client_id",
            "created_at",
            "last_keepalive",
            "locks_held",
            "session_id",
            "timeout",
            "keepalive_interval",
            "is_expired",
            "expires_in",
        ],
    );
    assert!(s.body.get("expired_at").is_none(), "a live session has no expired_at: {}", s.text);
    assert_eq!(s.body["client_id"], "test-client-1");
    assert_eq!(s.body["session_id"], json!(id));
    assert_eq!(s.body["timeout"], 100);
    assert_eq!(s.body["keepalive_interval"], 33);
    assert_eq!(s.body["locks_held"], json!([]));
    assert_eq!(s.body["is_expired"], false);
    let created = assert_recent_float(&s.body["created_at"], "created_at");
    let last = assert_recent_float(&s.body["last_keepalive"], "last_keepalive");
    assert!(last >= created, "{}", s.text);
    assert!(s.body["expires_in"].is_f64(), "expires_in is a float: {}", s.text);
    let expires_in = s.body["expires_in"].as_f64().unwrap();
    assert!(expires_in > 80.0 && expires_in <= 100.0, "{}", s.text);
    // A stale read answers the same session.
    let stale = call("GET", &format!("{base}/sessions/{id}?stale=true"), None).await;
    assert_ok(&stale, 200);
    assert_eq!(
        (stale.body["session_id"].clone(), stale.body["created_at"].clone()),
        (json!(id), s.body["created_at"].clone())
    );

    // Keepalive: no body needed.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let k = call("POST", &format!("{base}/sessions/{id}/keepalive"), None).await;
    assert_ok(&k, 200);
    assert_eq!(
        k.body,
        json!({"session_id": id, "success": true, "updated": true, "timeout": 100, "expires_in": 100.0})
    );
    let s2 = call("GET", &format!("{base}/sessions/{id}"), None).await;
    assert!(s2.body["last_keepalive"].as_f64().unwrap() > last, "keepalive moved last_keepalive: {}", s2.text);
    assert_eq!(s2.body["created_at"], s.body["created_at"]);

    // Locks of a session; DELETE releases them in the same step.
    let l = call("GET", &format!("{base}/sessions/{id}/locks"), None).await;
    assert_ok(&l, 200);
    assert_eq!(l.body, json!({"locks": [], "total_locks": 0}));
    for res in ["resource-1", "resource-2"] {
        assert_ok(&call("POST", &format!("{base}/sessions/{id}/locks/{res}"), None).await, 201);
    }
    let l = call("GET", &format!("{base}/sessions/{id}/locks"), None).await;
    assert_eq!(sorted(&l.body["locks"]), ["resource-1", "resource-2"]);
    assert_eq!(l.body["total_locks"], 2);
    assert_eq!(
        sorted(&call("GET", &format!("{base}/sessions/{id}"), None).await.body["locks_held"]),
        ["resource-1", "resource-2"]
    );
    let d = call("DELETE", &format!("{base}/sessions/{id}"), None).await;
    assert_ok(&d, 200);
    assert_eq!(d.body, json!({"deleted": true, "session_id": id}));
    for res in ["resource-1", "resource-2"] {
        let lock = call("GET", &format!("{base}/admin/locks/{res}"), None).await;
        assert_eq!(lock.body, free_lock(res), "deleting the session released {res}");
    }
    // Afterwards, every route of that session answers 404 SESSION_NOT_FOUND naming it.
    let gone = [
        ("GET", format!("/sessions/{id}"), None),
        ("DELETE", format!("/sessions/{id}"), None),
        ("POST", format!("/sessions/{id}/keepalive"), None),
        ("GET", format!("/sessions/{id}/locks"), None),
        ("POST", format!("/sessions/{id}/locks/resource-1"), None),
        ("DELETE", format!("/sessions/{id}/locks/resource-1"), Some(json!({"fence_token": 1}))),
    ];
    for (method, path, body) in gone {
        let r = call(method, &format!("{base}{path}"), body).await;
        assert_error(&r, 404, "SESSION_NOT_FOUND");
        assert_eq!(r.body["session_id"], json!(id), "{method} {path}: {}", r.text);
    }
    // The resource is free for others, under a higher token.
    let r = call("POST", &format!("{base}/sessions/{padded}/locks/resource-1"), None).await;
    assert_ok(&r, 201);
    assert_eq!(r.body["fence_token"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn locks_acquire_release_and_fence_tokens() {
    let cluster = Cluster::start(1).await;
    let base = cluster.base(1);
    let a = create_session(&base, "alpha", 3600).await;
    let b = create_session(&base, "beta", 3600).await;
    let acquire = |s: &str, res: &str| format!("{base}/sessions/{s}/locks/{res}");

    // New grant: 201; again by the same session: 200 with the same token.
    let r = call("POST", &acquire(&a, "resource-1"), None).await;
    assert_ok(&r, 201);
    let grant = json!({"acquired": true, "fence_token": 1, "resource": "resource-1", "session_id": a, "waited": 0.0});
    assert_eq!(r.body, grant);
    let again = call("POST", &acquire(&a, "resource-1"), None).await;
    assert_ok(&again, 200);
    assert_eq!(again.body, grant, "idempotent re-acquire keeps its token");

    // Another session: 409 LOCK_HELD.
    let held = call("POST", &acquire(&b, "resource-1"), None).await;
    assert_error(&held, 409, "LOCK_HELD");
    assert_eq!((held.body["acquired"].clone(), held.body["resource"].clone()), (json!(false), json!("resource-1")));

    // Unknown session: 404.
    let stranger = uuid::Uuid::new_v4();
    assert_error(&call("POST", &acquire(&stranger.to_string(), "resource-1"), None).await, 404, "SESSION_NOT_FOUND");

    // Who holds what.
    let lock = call("GET", &format!("{base}/admin/locks/resource-1"), None).await;
    assert_ok(&lock, 200);
    assert_recent_float(&lock.body["acquired_at"], "acquired_at");
    let mut without_time = lock.body.clone();
    without_time.as_object_mut().unwrap().remove("acquired_at");
    without_time["holders"][0].as_object_mut().unwrap().remove("acquired_at");
    assert_eq!(
        without_time,
        json!({
            "fence_token": 1, "locked": true, "resource": "resource-1", "session_id": a, "client_id": "alpha",
            "mode": "exclusive", "holders_count": 1, "queue_length": 0, "waiters": [],
            "holders": [{"session_id": a, "client_id": "alpha", "fence_token": 1, "value": null}],
        })
    );
    assert_eq!(call("GET", &format!("{base}/admin/locks/resource-1?stale=true"), None).await.body, lock.body);
    assert_eq!(
        call("GET", &format!("{base}/sessions/{a}/locks"), None).await.body,
        json!({"locks": ["resource-1"], "total_locks": 1})
    );
    assert_eq!(
        call("GET", &format!("{base}/sessions/{b}/locks"), None).await.body,
        json!({"locks": [], "total_locks": 0})
    );
    assert_eq!(
        call("GET", &format!("{base}/sessions/{a}/locks?stale=true"), None).await.body,
        json!({"locks": ["resource-1"], "total_locks": 1})
    );

    // Release: not held by this session → 404; held under another token → 409.
    let r = call("DELETE", &acquire(&b, "resource-1"), Some(json!({"fence_token": 1}))).await;
    assert_error(&r, 404, "LOCK_NOT_HELD");
    assert_eq!((r.body["session_id"].clone(), r.body["resource"].clone()), (json!(b), json!("resource-1")));
    let r = call("DELETE", &acquire(&a, "resource-1"), Some(json!({"fence_token": 2}))).await;
    assert_error(&r, 409, "FENCE_TOKEN_MISMATCH");
    assert_eq!((r.body["session_id"].clone(), r.body["resource"].clone()), (json!(a), json!("resource-1")));
    let r = call("DELETE", &format!("{}?fence_token=7", acquire(&a, "resource-1")), None).await;
    assert_error(&r, 409, "FENCE_TOKEN_MISMATCH");
    // Release with the token in the body.
    let r = call("DELETE", &acquire(&a, "resource-1"), Some(json!({"fence_token": 1}))).await;
    assert_ok(&r, 200);
    assert_eq!(r.body, json!({"released": true, "fence_token": 1, "resource": "resource-1", "session_id": a}));
    assert_error(
        &call("DELETE", &acquire(&a, "resource-1"), Some(json!({"fence_token": 1}))).await,
        404,
        "LOCK_NOT_HELD",
    );
    assert_eq!(call("GET", &format!("{base}/admin/locks/resource-1"), None).await.body, free_lock("resource-1"));
    assert_eq!(call("GET", &format!("{base}/admin/locks/never-locked"), None).await.body, free_lock("never-locked"));

    // Release with ?fence_token=N, and fence tokens strictly increase across releases.
    let r = call("POST", &acquire(&b, "resource-1"), None).await;
    assert_ok(&r, 201);
    assert_eq!(r.body["fence_token"], 2);
    let r = call("DELETE", &format!("{}?fence_token=2", acquire(&b, "resource-1")), None).await;
    assert_ok(&r, 200);
    assert_eq!(r.body, json!({"released": true, "fence_token": 2, "resource": "resource-1", "session_id": b}));
    // Body and query agreeing is fine.
    let r = call("POST", &acquire(&a, "resource-1"), None).await;
    assert_eq!(r.body["fence_token"], 3);
    let r =
        call("DELETE", &format!("{}?fence_token=3", acquire(&a, "resource-1")), Some(json!({"fence_token": 3}))).await;
    assert_ok(&r, 200);
    let mut last = 3;
    for round in 0..3 {
        for (s, res) in [(&a, "resource-1"), (&b, "resource-2"), (&a, "resource-2")] {
            let r = call("POST", &acquire(s, res), None).await;
            assert_ok(&r, 201);
            let t = r.body["fence_token"].as_u64().unwrap();
            assert_eq!(t, last + 1, "round {round}: every new grant raises the counter by one");
            last = t;
            let r = call("DELETE", &format!("{}?fence_token={t}", acquire(s, res)), None).await;
            assert_ok(&r, 200);
        }
    }

    // Percent-encoded resource names round-trip, decoded.
    for (encoded, decoded) in
        [("a%20b", "a b"), ("caf%C3%A9", "café"), ("%E2%9C%93-ok", "✓-ok"), ("x.y~z_1", "x.y~z_1")]
    {
        let r = call("POST", &acquire(&a, encoded), None).await;
        assert_ok(&r, 201);
        assert_eq!(r.body["resource"], decoded, "{encoded}");
        last += 1;
        assert_eq!(r.body["fence_token"], last);
        let lock = call("GET", &format!("{base}/admin/locks/{encoded}"), None).await;
        assert_eq!(
            (lock.body["locked"].clone(), lock.body["resource"].clone()),
            (json!(true), json!(decoded)),
            "{encoded}"
        );
        let mine = call("GET", &format!("{base}/sessions/{a}/locks"), None).await;
        assert!(mine.body["locks"].as_array().unwrap().contains(&json!(decoded)), "{encoded}: {}", mine.text);
        let r = call("DELETE", &format!("{}?fence_token={last}", acquire(&a, encoded)), None).await;
        assert_ok(&r, 200);
        assert_eq!(r.body["resource"], decoded);
    }
    // The longest resource name: 255 bytes.
    let longest = "r".repeat(255);
    let r = call("POST", &acquire(&a, &longest), None).await;
    assert_ok(&r, 201);
    assert_eq!(r.body["resource"], json!(longest));
    last += 1;

    // Stats, both spellings of the total; the stale read agrees on one quiet node.
    let stats = call("GET", &format!("{base}/admin/stats"), None).await;
    assert_ok(&stats, 200);
    assert_eq!(
        stats.body,
        json!({"active_sessions": 2, "expired_sessions": 0, "fence_counter": last, "total_locks": 1,
               "total_session": 2, "total_sessions": 2, "waiters": 0})
    );
    assert_eq!(call("GET", &format!("{base}/admin/stats?stale=true"), None).await.body, stats.body);
    assert_eq!(call("GET", &format!("{base}/cluster/status"), None).await.body["stats"], stats.body);

    // Cleanup with nothing expired removes nothing.
    let c = call("POST", &format!("{base}/admin/cleanup"), None).await;
    assert_ok(&c, 200);
    assert_eq!(c.body, json!({"cleanup": "completed", "count": 0}));
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_sessions_answer_410_until_cleaned_up() {
    let cluster = Cluster::start(1).await;
    let base = cluster.base(1);
    let doomed = create_session(&base, "doomed", 5).await;
    let deletable = create_session(&base, "deletable", 5).await;
    let live = create_session(&base, "live", 3600).await;
    let r = call("POST", &format!("{base}/sessions/{doomed}/locks/job"), None).await;
    assert_ok(&r, 201);
    let token = r.body["fence_token"].as_u64().unwrap();

    let url = format!("{base}/sessions/{doomed}");
    let s = eventually(Duration::from_secs(10), "the silent session expires", || {
        let url = url.clone();
        async move {
            let s = call("GET", &url, None).await;
            (s.body["is_expired"] == true).then_some(s)
        }
    })
    .await;
    // Still visible, expired, without locks.
    assert_ok(&s, 200);
    assert_eq!(s.body["locks_held"], json!([]));
    let expired_at = assert_recent_float(&s.body["expired_at"], "expired_at");
    assert!(expired_at >= s.body["created_at"].as_f64().unwrap() + 5.0, "{}", s.text);
    assert_eq!(s.body["expires_in"], 0.0, "nothing left to live: {}", s.text);
    assert_eq!(call("GET", &format!("{base}/admin/locks/job"), None).await.body["locked"], false);

    // Every write on it answers 410 naming it; a read of its locks still answers.
    let writes = [
        ("POST", format!("/sessions/{doomed}/keepalive"), None),
        ("POST", format!("/sessions/{doomed}/locks/job"), None),
        ("POST", format!("/sessions/{doomed}/locks/other"), None),
        ("DELETE", format!("/sessions/{doomed}/locks/job"), Some(json!({"fence_token": token}))),
    ];
    for (method, path, body) in writes {
        let r = call(method, &format!("{base}{path}"), body).await;
        assert_error(&r, 410, "SESSION_EXPIRED");
        assert_eq!(r.body["session_id"], json!(doomed), "{method} {path}: {}", r.text);
    }
    assert_eq!(
        call("GET", &format!("{base}/sessions/{doomed}/locks"), None).await.body,
        json!({"locks": [], "total_locks": 0})
    );
    // A keepalive did not revive it.
    assert_eq!(call("GET", &url, None).await.body["is_expired"], true);

    // The other silent session has expired too (same timeout, created just after).
    let other = format!("{base}/sessions/{deletable}");
    eventually(Duration::from_secs(5), "the second silent session expires", || {
        let url = other.clone();
        async move { (call("GET", &url, None).await.body["is_expired"] == true).then_some(()) }
    })
    .await;
    let stats = call("GET", &format!("{base}/admin/stats"), None).await.body;
    assert_eq!(
        stats,
        json!({"active_sessions": 1, "expired_sessions": 2, "fence_counter": token, "total_locks": 0,
               "total_session": 3, "total_sessions": 3, "waiters": 0})
    );
    // An expired session can be deleted.
    let d = call("DELETE", &other, None).await;
    assert_ok(&d, 200);
    assert_eq!(d.body, json!({"deleted": true, "session_id": deletable}));
    assert_error(&call("GET", &other, None).await, 404, "SESSION_NOT_FOUND");

    // Cleanup removes the remaining expired one, and nothing live.
    let c = call("POST", &format!("{base}/admin/cleanup"), None).await;
    assert_ok(&c, 200);
    assert_eq!(c.body, json!({"cleanup": "completed", "count": 1}));
    let r = call("GET", &url, None).await;
    assert_error(&r, 404, "SESSION_NOT_FOUND");
    assert_eq!(r.body["session_id"], json!(doomed));
    assert_error(&call("POST", &format!("{base}/sessions/{doomed}/keepalive"), None).await, 404, "SESSION_NOT_FOUND");
    assert_ok(&call("GET", &format!("{base}/sessions/{live}"), None).await, 200);
    let stats = call("GET", &format!("{base}/admin/stats"), None).await.body;
    assert_eq!((stats["active_sessions"].clone(), stats["expired_sessions"].clone()), (json!(1), json!(0)));
    assert_eq!((stats["total_session"].clone(), stats["total_sessions"].clone()), (json!(1), json!(1)));

    // The released lock goes to someone else under a higher token.
    let r = call("POST", &format!("{base}/sessions/{live}/locks/job"), None).await;
    assert_ok(&r, 201);
    assert_eq!(r.body["fence_token"], token + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn protocol_errors_are_json() {
    let cluster = Cluster::start(1).await;
    let base = cluster.base(1);

    // Unknown route.
    for path in ["/nope", "/health/", "/sessions/x/y/z/w", "/admin"] {
        let r = call("GET", &format!("{base}{path}"), None).await;
        assert_error(&r, 404, "NOT_FOUND");
    }
    // Known route, wrong method.
    for (method, path) in
        [("PUT", "/sessions"), ("GET", "/admin/cleanup"), ("POST", "/health"), ("DELETE", "/admin/stats")]
    {
        let r = call(method, &format!("{base}{path}"), None).await;
        assert_error(&r, 405, "METHOD_NOT_ALLOWED");
    }
    // Over 64 KiB.
    let mut big = br#"{"client_id": "big", "pad": ""#.to_vec();
    big.resize(64 * 1024 + 1 - 2, b'x');
    big.extend_from_slice(b"\"}");
    assert_eq!(big.len(), 64 * 1024 + 1);
    let r = raw("POST", &format!("{base}/sessions"), Some("application/json"), big).await;
    assert_error(&r, 413, "PAYLOAD_TOO_LARGE");
    // Exactly 64 KiB is taken.
    let mut edge = br#"{"client_id": "edge""#.to_vec();
    edge.resize(64 * 1024 - 1, b' ');
    edge.push(b'}');
    let r = raw("POST", &format!("{base}/sessions"), Some("application/json"), edge).await;
    assert_ok(&r, 201);
    assert_eq!(r.body["client_id"], "edge");
    // Not JSON.
    let json_body = br#"{"client_id": "typed"}"#.to_vec();
    for ct in [Some("text/plain"), None, Some("application/x-www-form-urlencoded")] {
        let r = raw("POST", &format!("{base}/sessions"), ct, json_body.clone()).await;
        assert_error(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
    }
    // A client mistake is a 400 naming the field.
    let r = call("POST", &format!("{base}/sessions"), Some(json!({"client_id": "x", "timeout": 4}))).await;
    assert_error(&r, 400, "INVALID_REQUEST");
    assert_eq!(r.body["field"], "timeout");

    // Nothing above created a session but the 64 KiB one.
    assert_eq!(call("GET", &format!("{base}/admin/stats"), None).await.body["total_sessions"], 1);
}

/// `GET /admin/locks/{resource}` of a resource nobody holds or waits for.
fn free_lock(resource: &str) -> Value {
    json!({"locked": false, "resource": resource, "holders": [], "waiters": [], "queue_length": 0})
}

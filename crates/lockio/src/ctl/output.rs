//! How the client commands print: aligned tables and `field  value` lines for people, one JSON
//! object (with the HTTP API's field names) for programs. Pure: values in, text out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockio_client::{
    FenceCheck, FenceToken, Grant, KeepaliveAck, LockHolder, LockStatus, Mode, NodeStatus, Resource, SessionCreated,
    SessionId, SessionInfo, Stats, Waiter,
};
use serde_json::{json, Value};

/// What a command prints: `human` without `--json`, `json` with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub human: String,
    pub json: Value,
}

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let all: Vec<Vec<&str>> =
        std::iter::once(header.to_vec()).chain(rows.iter().map(|r| r.iter().map(String::as_str).collect())).collect();
    let columns = all.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| all.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &all {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 < row.len() {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `field  value` lines, values aligned.
pub fn fields(rows: &[(&str, String)]) -> String {
    let rows: Vec<Vec<String>> = rows.iter().map(|(k, v)| vec![k.to_string(), v.clone()]).collect();
    // A table without a header: drop the (empty) first line.
    table(&[], &rows).trim_start_matches('\n').to_string()
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// `2026-11-26T23:38:25Z (3m 12s ago)`, or `(in 27s)` for a time to come.
fn when(t: SystemTime, now: SystemTime) -> String {
    let at = humantime::format_rfc3339_seconds(t);
    match now.duration_since(t) {
        Ok(ago) => format!("{at} ({} ago)", secs_text(ago)),
        Err(e) => format!("{at} (in {})", secs_text(e.duration())),
    }
}

/// Whole seconds, as `3m 12s`; `0s` under a second.
fn secs_text(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// A session's timeout or interval, as the API counts it: `100s`.
fn whole_secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// Seconds with one decimal, as the server's `expires_in`: `59.2s`.
fn tenths(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn list(resources: &[Resource]) -> String {
    if resources.is_empty() {
        "none".to_string()
    } else {
        resources.iter().map(Resource::as_str).collect::<Vec<_>>().join(", ")
    }
}

pub fn session_created(c: &SessionCreated) -> Output {
    Output {
        human: fields(&[
            ("session_id", c.session_id.to_string()),
            ("client_id", c.client_id.to_string()),
            ("timeout", whole_secs(c.timeout)),
            ("keepalive_interval", whole_secs(c.keepalive_interval)),
            ("lock_delay", whole_secs(c.lock_delay)),
        ]),
        json: json!({
            "session_id": c.session_id.to_string(),
            "client_id": c.client_id.as_str(),
            "timeout": c.timeout.as_secs(),
            "keepalive_interval": c.keepalive_interval.as_secs(),
            "lock_delay": c.lock_delay.as_secs(),
        }),
    }
}

pub fn session(s: &SessionInfo, now: SystemTime) -> Output {
    let state = match s.expired_at {
        Some(at) => format!("expired at {}", when(at, now)),
        None => format!("alive, expires in {} without a keepalive", tenths(s.expires_in)),
    };
    let mut json = json!({
        "session_id": s.session_id.to_string(),
        "client_id": s.client_id.as_str(),
        "created_at": unix(s.created_at),
        "last_keepalive": unix(s.last_keepalive),
        "timeout": s.timeout.as_secs(),
        "keepalive_interval": s.keepalive_interval.as_secs(),
        "locks_held": s.locks_held.iter().map(Resource::as_str).collect::<Vec<_>>(),
        "is_expired": s.is_expired(),
        "expires_in": s.expires_in.as_secs_f64(),
        "lock_delay": s.lock_delay.as_secs(),
        "waiting_for": s.waiting_for.iter().map(Resource::as_str).collect::<Vec<_>>(),
    });
    if let Some(at) = s.expired_at {
        json["expired_at"] = json!(unix(at));
    }
    Output {
        human: fields(&[
            ("session_id", s.session_id.to_string()),
            ("client_id", s.client_id.to_string()),
            ("state", state),
            ("created_at", when(s.created_at, now)),
            ("last_keepalive", when(s.last_keepalive, now)),
            ("timeout", whole_secs(s.timeout)),
            ("keepalive_interval", whole_secs(s.keepalive_interval)),
            ("lock_delay", whole_secs(s.lock_delay)),
            ("locks_held", list(&s.locks_held)),
            ("waiting_for", list(&s.waiting_for)),
        ]),
        json,
    }
}

pub fn kept_alive(a: &KeepaliveAck) -> Output {
    Output {
        human: format!(
            "session {} kept alive: expires in {} without another keepalive\n",
            a.session_id,
            tenths(a.expires_in)
        ),
        json: json!({"session_id": a.session_id.to_string(), "success": true, "timeout": a.timeout.as_secs(), "expires_in": a.expires_in.as_secs_f64()}),
    }
}

pub fn deleted(id: SessionId) -> Output {
    Output {
        human: format!("session {id} deleted; its locks were released\n"),
        json: json!({"deleted": true, "session_id": id.to_string()}),
    }
}

pub fn acquired(g: &Grant) -> Output {
    let mode = if g.mode == Mode::Shared { " (shared)" } else { "" };
    let human = if g.newly_granted {
        format!("acquired {}{mode} with fence token {}\n", g.resource, g.fence_token)
    } else {
        format!("session {} already holds {}{mode} with fence token {}\n", g.session_id, g.resource, g.fence_token)
    };
    Output {
        human,
        json: json!({
            "acquired": true,
            "fence_token": g.fence_token.0,
            "resource": g.resource.as_str(),
            "session_id": g.session_id.to_string(),
            "newly_granted": g.newly_granted,
            "waited": g.waited.as_secs_f64(),
            "mode": g.mode.as_str(),
            "value": g.value,
        }),
    }
}

pub fn released(id: SessionId, resource: &str, token: FenceToken) -> Output {
    Output {
        human: format!("released {resource} (fence token {token})\n"),
        json: json!({"released": true, "fence_token": token.0, "resource": resource, "session_id": id.to_string()}),
    }
}

/// People get `field  value` lines (mode, a semaphore's limit, how many hold it), then the
/// holders as a table (`HOLDER` is the place, oldest first) with their values, then the queue
/// (`WAITER` is the place in it); programs get the API's body.
pub fn lock_status(s: &LockStatus, now: SystemTime) -> Output {
    let mut rows = vec![("resource", s.resource.to_string())];
    let mut json = json!({"locked": s.holder.is_some(), "resource": s.resource.as_str()});
    match &s.holder {
        None => rows.push(("locked", "no".into())),
        Some(h) => {
            rows.push(("locked", "yes".into()));
            json["acquired_at"] = json!(unix(h.acquired_at));
            json["fence_token"] = json!(h.fence_token.0);
            json["session_id"] = json!(h.session_id.to_string());
            if let Some(c) = &h.client_id {
                json["client_id"] = json!(c.as_str());
            }
        }
    }
    if let Some(mode) = s.mode {
        rows.push(("mode", mode.as_str().into()));
        json["mode"] = json!(mode.as_str());
        rows.push(("holders", s.holders_count.to_string()));
        json["holders_count"] = json!(s.holders_count);
    }
    if let Some(limit) = s.limit {
        rows.push(("limit", limit.to_string()));
        json["limit"] = json!(limit);
    }
    if let Some(at) = s.delayed_until {
        rows.push(("delayed_until", when(at, now)));
        json["delayed_until"] = json!(unix(at));
    }
    rows.push(("queue_length", s.queue_length.to_string()));
    json["queue_length"] = json!(s.queue_length);
    json["holders"] = s.holders.iter().map(holder_json).collect();
    json["waiters"] = s.waiters.iter().map(waiter_json).collect();
    let mut human = fields(&rows);
    if !s.holders.is_empty() {
        human.push('\n');
        human.push_str(&holders_table(&s.holders, now));
    }
    if !s.waiters.is_empty() {
        let lines: Vec<Vec<String>> = s
            .waiters
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let mode = match w.limit {
                    Some(limit) => format!("{} (limit {limit})", w.mode.as_str()),
                    None => w.mode.as_str().to_string(),
                };
                vec![
                    (i + 1).to_string(),
                    w.client_id.to_string(),
                    w.session_id.to_string(),
                    when(w.since, now),
                    when(w.deadline, now),
                    mode,
                ]
            })
            .collect();
        human.push('\n');
        human.push_str(&table(&["WAITER", "CLIENT_ID", "SESSION_ID", "WAITING_SINCE", "DEADLINE", "MODE"], &lines));
    }
    Output { human, json }
}

/// The holders, oldest first: `HOLDER CLIENT_ID SESSION_ID FENCE_TOKEN ACQUIRED_AT VALUE`
/// (`-` for none).
fn holders_table(holders: &[LockHolder], now: SystemTime) -> String {
    let lines: Vec<Vec<String>> = holders
        .iter()
        .enumerate()
        .map(|(i, h)| {
            vec![
                (i + 1).to_string(),
                h.client_id.as_ref().map_or_else(|| "-".into(), |c| c.to_string()),
                h.session_id.to_string(),
                h.fence_token.to_string(),
                when(h.acquired_at, now),
                h.value.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(&["HOLDER", "CLIENT_ID", "SESSION_ID", "FENCE_TOKEN", "ACQUIRED_AT", "VALUE"], &lines)
}

fn holder_json(h: &LockHolder) -> Value {
    json!({
        "session_id": h.session_id.to_string(),
        "client_id": h.client_id.as_ref().map(|c| c.as_str()),
        "fence_token": h.fence_token.0,
        "acquired_at": unix(h.acquired_at),
        "value": h.value,
    })
}

fn waiter_json(w: &Waiter) -> Value {
    json!({"session_id": w.session_id.to_string(), "client_id": w.client_id.as_str(), "mode": w.mode.as_str(), "limit": w.limit, "since": unix(w.since), "deadline": unix(w.deadline)})
}

/// `valid: fence token N is held on RESOURCE by client C` or `invalid: ...`, then the holders.
pub fn fence_check(c: &FenceCheck, now: SystemTime) -> Output {
    let (token, resource) = (c.fence_token, &c.resource);
    let mut human = match c.holders.iter().find(|h| h.fence_token == token).filter(|_| c.valid) {
        Some(h) => format!(
            "valid: fence token {token} is held on {resource} by client {}\n",
            h.client_id.as_ref().map_or_else(|| "-".into(), |c| c.to_string())
        ),
        None if c.valid => format!("valid: fence token {token} is held on {resource}\n"),
        None => format!("invalid: fence token {token} is not held on {resource}\n"),
    };
    if c.holders.is_empty() {
        human.push_str(&format!("nobody holds {resource}\n"));
    } else {
        human.push('\n');
        human.push_str(&holders_table(&c.holders, now));
    }
    Output {
        human,
        json: json!({
            "resource": resource.as_str(),
            "fence_token": token.0,
            "valid": c.valid,
            "holders": c.holders.iter().map(holder_json).collect::<Vec<_>>(),
        }),
    }
}

/// `leader: VALUE (fence token N)`, or that nobody leads.
pub fn leader(resource: &str, leader: Option<&LockHolder>) -> Output {
    let human = match leader {
        Some(h) => leader_line(h.value.as_deref(), h.fence_token),
        None => format!("nobody leads {resource}\n"),
    };
    Output { human, json: json!({"resource": resource, "leader": leader.map(holder_json)}) }
}

/// `leader: VALUE (fence token N)`; `-` for a holder without a value.
pub fn leader_line(value: Option<&str>, token: FenceToken) -> String {
    format!("leader: {} (fence token {token})\n", value.unwrap_or("-"))
}

pub fn stats(s: &Stats) -> Output {
    Output {
        human: fields(&[
            ("active_sessions", s.active_sessions.to_string()),
            ("expired_sessions", s.expired_sessions.to_string()),
            ("total_locks", s.total_locks.to_string()),
            ("fence_counter", s.fence_counter.to_string()),
        ]),
        json: crate::http::reply::stats_body(s),
    }
}

pub fn cleaned(count: u64) -> Output {
    let noun = if count == 1 { "session" } else { "sessions" };
    Output { human: format!("removed {count} expired {noun}\n"), json: json!({"cleanup": "completed", "count": count}) }
}

/// One member in `lockio status`: as the cluster lists it, and as it reports itself.
#[derive(Debug, Clone)]
pub struct MemberRow {
    pub id: u64,
    pub raft: String,
    pub http: Option<String>,
    /// Its own `/cluster/status`, or why there is none.
    pub report: Result<NodeStatus, String>,
    /// Entries behind the leader, in the leader's view.
    pub lag: Option<u64>,
}

pub fn members(rows: &[MemberRow]) -> Output {
    let dash = || "-".to_string();
    let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(dash);
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|m| {
            let mut line = vec![m.id.to_string(), m.http.clone().unwrap_or_else(dash), m.raft.clone()];
            match &m.report {
                Ok(s) => line.extend([
                    s.state.clone(),
                    s.term.to_string(),
                    opt(s.leader_id),
                    s.commit_index.to_string(),
                    s.applied_index.to_string(),
                    opt(m.lag),
                    if s.is_ready { "yes" } else { "no" }.to_string(),
                ]),
                Err(why) => line.extend([
                    "unreachable".to_string(),
                    dash(),
                    dash(),
                    dash(),
                    dash(),
                    dash(),
                    format!("no ({why})"),
                ]),
            }
            line
        })
        .collect();
    let json_rows: Vec<Value> = rows
        .iter()
        .map(|m| {
            let mut v =
                json!({"id": m.id, "raft": m.raft, "http": m.http, "reachable": m.report.is_ok(), "lag": m.lag});
            match &m.report {
                Ok(s) => {
                    v["state"] = json!(s.state);
                    v["term"] = json!(s.term);
                    v["leader_id"] = json!(s.leader_id);
                    v["commit_index"] = json!(s.commit_index);
                    v["applied_index"] = json!(s.applied_index);
                    v["is_ready"] = json!(s.is_ready);
                    v["uptime"] = json!(s.uptime.as_secs());
                }
                Err(why) => v["error"] = json!(why),
            }
            v
        })
        .collect();
    Output {
        human: table(&["ID", "HTTP", "RAFT", "STATE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAG", "READY"], &lines),
        json: json!({ "members": json_rows }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockio_client::ClientId;

    #[test]
    fn tables_align_and_trim() {
        let rows = vec![
            vec!["1".to_string(), "127.0.0.1:5000".to_string(), "LEADER".to_string()],
            vec!["22".into(), "h:1".into(), "".into()],
        ];
        assert_eq!(
            table(&["ID", "HTTP", "STATE"], &rows),
            "ID  HTTP            STATE\n1   127.0.0.1:5000  LEADER\n22  h:1\n"
        );
        assert_eq!(fields(&[("a", "1".into()), ("longer", "2".into())]), "a       1\nlonger  2\n");
    }

    /// Each renderer's human text and JSON, for a fixed `now`.
    #[test]
    fn renderings() {
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let now = t(1_795_736_405);
        let id = SessionId::parse("916ef6ea-9040-43ce-a3d2-ca0e086986ab").unwrap();
        let resource = Resource::new("resource-1").unwrap();
        let waiter = SessionId::parse("b8cfa9e0-7e3c-4546-a0e6-b4a6b9d6652d").unwrap();
        let holder = LockHolder {
            session_id: id,
            fence_token: FenceToken(3),
            acquired_at: t(1_795_736_305),
            client_id: Some(ClientId::new("test-client-1").unwrap()),
            value: None,
        };
        let reader = LockHolder { fence_token: FenceToken(4), value: Some("10.0.0.7:80".into()), ..holder.clone() };
        let status = LockStatus {
            resource: resource.clone(),
            holder: Some(holder.clone()),
            mode: Some(Mode::Shared),
            limit: Some(2),
            holders: vec![holder.clone(), reader.clone()],
            holders_count: 2,
            queue_length: 1,
            waiters: vec![Waiter {
                session_id: waiter,
                client_id: ClientId::new("bob").unwrap(),
                mode: Mode::Exclusive,
                limit: None,
                since: t(1_795_736_395),
                deadline: t(1_795_736_425),
            }],
            delayed_until: None,
        };
        let delayed = LockStatus {
            resource: resource.clone(),
            holder: None,
            mode: None,
            limit: None,
            holders: vec![],
            holders_count: 0,
            queue_length: 0,
            waiters: vec![],
            delayed_until: Some(t(1_795_736_410)),
        };
        let table: Vec<(Output, &str, Value)> = vec![
            (
                lock_status(&status, now),
                "resource      resource-1\nlocked        yes\nmode          shared\nholders       2\nlimit         2\nqueue_length  1\n\n\
                 HOLDER  CLIENT_ID      SESSION_ID                            FENCE_TOKEN  ACQUIRED_AT                        VALUE\n\
                 1       test-client-1  916ef6ea-9040-43ce-a3d2-ca0e086986ab  3            2026-11-26T23:38:25Z (1m 40s ago)  -\n\
                 2       test-client-1  916ef6ea-9040-43ce-a3d2-ca0e086986ab  4            2026-11-26T23:38:25Z (1m 40s ago)  10.0.0.7:80\n\n\
                 WAITER  CLIENT_ID  SESSION_ID                            WAITING_SINCE                   DEADLINE                       MODE\n\
                 1       bob        b8cfa9e0-7e3c-4546-a0e6-b4a6b9d6652d  2026-11-26T23:39:55Z (10s ago)  2026-11-26T23:40:25Z (in 20s)  exclusive\n",
                json!({"acquired_at": 1795736305.0, "client_id": "test-client-1", "fence_token": 3, "locked": true, "resource": "resource-1", "session_id": id.to_string(),
                       "mode": "shared", "holders_count": 2, "limit": 2,
                       "holders": [{"session_id": id.to_string(), "client_id": "test-client-1", "fence_token": 3, "acquired_at": 1795736305.0, "value": null}, {"session_id": id.to_string(), "client_id": "test-client-1", "fence_token": 4, "acquired_at": 1795736305.0, "value": "10.0.0.7:80"}],
                       "queue_length": 1, "waiters": [{"session_id": waiter.to_string(), "client_id": "bob", "mode": "exclusive", "limit": null, "since": 1795736395.0, "deadline": 1795736425.0}]}),
            ),
            (
                lock_status(&delayed, now),
                "resource       resource-1\nlocked         no\ndelayed_until  2026-11-26T23:40:10Z (in 5s)\nqueue_length   0\n",
                json!({"locked": false, "resource": "resource-1", "delayed_until": 1795736410.0, "queue_length": 0, "holders": [], "waiters": []}),
            ),
            (
                fence_check(&FenceCheck { resource: resource.clone(), fence_token: FenceToken(4), valid: true, holders: vec![reader.clone()] }, now),
                "valid: fence token 4 is held on resource-1 by client test-client-1\n\n\
                 HOLDER  CLIENT_ID      SESSION_ID                            FENCE_TOKEN  ACQUIRED_AT                        VALUE\n\
                 1       test-client-1  916ef6ea-9040-43ce-a3d2-ca0e086986ab  4            2026-11-26T23:38:25Z (1m 40s ago)  10.0.0.7:80\n",
                json!({"resource": "resource-1", "fence_token": 4, "valid": true, "holders": [{"session_id": id.to_string(), "client_id": "test-client-1", "fence_token": 4, "acquired_at": 1795736305.0, "value": "10.0.0.7:80"}]}),
            ),
            (
                fence_check(&FenceCheck { resource: resource.clone(), fence_token: FenceToken(2), valid: false, holders: vec![] }, now),
                "invalid: fence token 2 is not held on resource-1\nnobody holds resource-1\n",
                json!({"resource": "resource-1", "fence_token": 2, "valid": false, "holders": []}),
            ),
            (
                leader("resource-1", Some(&reader)),
                "leader: 10.0.0.7:80 (fence token 4)\n",
                json!({"resource": "resource-1", "leader": {"session_id": id.to_string(), "client_id": "test-client-1", "fence_token": 4, "acquired_at": 1795736305.0, "value": "10.0.0.7:80"}}),
            ),
            (leader("resource-1", None), "nobody leads resource-1\n", json!({"resource": "resource-1", "leader": null})),
            (cleaned(1), "removed 1 expired session\n", json!({"cleanup": "completed", "count": 1})),
            (
                released(id, "resource-1", FenceToken(3)),
                "released resource-1 (fence token 3)\n",
                json!({"released": true, "fence_token": 3, "resource": "resource-1", "session_id": id.to_string()}),
            ),
        ];
        for (output, human, json) in table {
            assert_eq!((output.human.as_str(), &output.json), (human, &json));
        }
    }
}

//! `lockio lock watch [PREFIX]`: one line per change, as `etcdctl watch` prints them, or the
//! event's JSON with `--json`, until interrupted. The client's `Watch` resumes across
//! reconnects; a `compacted` answer (changes were missed) ends the command with status 1 and
//! says where to resume.

use std::io::Write;
use std::time::SystemTime;

use lockio_client::{Client, Error, EventId, WatchEvent};
use serde_json::Value;

/// Runs the watch; returns the exit status (it returns only on an error).
pub async fn run(client: Client, prefix: Option<String>, after: Option<String>, json: bool) -> i32 {
    let after = match after.map(|a| a.trim().parse::<EventId>()).transpose() {
        Ok(a) => a,
        Err(e) => return super::fail(&e),
    };
    let mut watch = match client.watch(prefix.as_deref().unwrap_or(""), after) {
        Ok(w) => w,
        Err(e) => return super::fail(&e),
    };
    let mut stdout = std::io::stdout();
    let mut warned = false;
    loop {
        match watch.next().await {
            Ok(event) => {
                warned = false;
                let text = if json { event.data.to_string() } else { line(&event) };
                // A closed pipe (`| head`) ends the watch quietly.
                if writeln!(stdout, "{text}").and_then(|()| stdout.flush()).is_err() {
                    return 0;
                }
            }
            Err(Error::Compacted { requested, oldest, current }) => {
                return super::fail(&format!(
                    "the changes after {requested} are no longer held (the oldest point to resume from is \
                     {oldest}); re-read the state, then watch again with --after {current}"
                ));
            }
            // The cluster is away: say so once, and keep trying.
            Err(e @ Error::Unavailable { .. }) => {
                if !warned {
                    eprintln!("lockio: {e}; still trying");
                    warned = true;
                }
            }
            Err(e) => return super::fail(&e),
        }
    }
}

/// `ID TYPE RESOURCE key=value ...` (`-` for the resource of a session event).
fn line(e: &WatchEvent) -> String {
    let d = &e.data;
    let mut parts = vec![e.id.to_string(), e.kind.clone(), e.resource.as_ref().map_or("-".into(), |r| r.to_string())];
    let mut field = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            parts.push(format!("{key}={v}"));
        }
    };
    field("client", e.client_id.as_ref().map(|c| c.to_string()));
    field("session", e.session_id.map(|s| s.to_string()));
    field("fence_token", e.fence_token.map(|t| t.to_string()));
    let text = |key: &str| d[key].as_str().map(str::to_string);
    let secs = |key: &str| d[key].as_f64().map(|s| format!("{s:.1}s"));
    match e.kind.as_str() {
        "session_created" => {
            field("timeout", d["timeout"].as_u64().map(|t| format!("{t}s")));
        }
        "session_deleted" | "session_expired" => {
            let released: Vec<String> = e.released.iter().map(|(r, t)| format!("{r}#{t}")).collect();
            field("released", (!released.is_empty()).then(|| released.join(",")));
        }
        "lock_acquired" => {
            field("mode", text("mode").filter(|m| m != "exclusive"));
            if d["queued"] == Value::Bool(true) {
                field("waited", secs("waited"));
            }
        }
        "lock_waiting" => {
            field("mode", text("mode").filter(|m| m != "exclusive"));
            field("place", d["queue_length"].as_u64().map(|p| p.to_string()));
            field("deadline", d["deadline"].as_f64().map(rfc3339));
        }
        "lock_wait_ended" => {
            field("reason", text("reason"));
            field("waited", secs("waited"));
        }
        _ => {}
    }
    parts.join(" ")
}

fn rfc3339(secs: f64) -> String {
    let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs_f64(secs.max(0.0));
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(data: Value) -> WatchEvent {
        let f = |k: &str| data[k].as_str().map(str::to_string);
        WatchEvent {
            id: f("id").unwrap().parse().unwrap(),
            kind: f("type").unwrap(),
            at: SystemTime::UNIX_EPOCH,
            resource: f("resource").map(|r| lockio_client::Resource::new(&r).unwrap()),
            session_id: f("session_id").and_then(|s| lockio_client::SessionId::parse(&s)),
            client_id: f("client_id").map(|c| lockio_client::ClientId::new(&c).unwrap()),
            fence_token: data["fence_token"].as_u64().map(lockio_client::FenceToken),
            released: data["released"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .map(|g| {
                            (
                                lockio_client::Resource::new(g["resource"].as_str().unwrap()).unwrap(),
                                lockio_client::FenceToken(g["fence_token"].as_u64().unwrap()),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            data,
        }
    }

    #[test]
    fn each_change_is_one_line() {
        let s = "b8cfa9e0-7e3c-4546-a0e6-b4a6b9d6652d";
        let table = [
            (
                json!({"id": "12.0", "type": "lock_acquired", "resource": "orders/1", "client_id": "billing-7",
                       "session_id": s, "fence_token": 41, "mode": "exclusive", "queued": false, "waited": 0.0}),
                format!("12.0 lock_acquired orders/1 client=billing-7 session={s} fence_token=41"),
            ),
            (
                json!({"id": "13.1", "type": "lock_acquired", "resource": "orders/1", "client_id": "c",
                       "session_id": s, "fence_token": 42, "mode": "exclusive", "queued": true, "waited": 2.26}),
                format!("13.1 lock_acquired orders/1 client=c session={s} fence_token=42 waited=2.3s"),
            ),
            (
                json!({"id": "14.0", "type": "session_expired", "client_id": "c", "session_id": s,
                       "released": [{"resource": "orders/1", "fence_token": 42}, {"resource": "orders/2", "fence_token": 43}]}),
                format!("14.0 session_expired - client=c session={s} released=orders/1#42,orders/2#43"),
            ),
            (
                json!({"id": "15.0", "type": "lock_wait_ended", "resource": "orders/1", "client_id": "c",
                       "session_id": s, "reason": "timeout", "waited": 1.0}),
                format!("15.0 lock_wait_ended orders/1 client=c session={s} reason=timeout waited=1.0s"),
            ),
            (
                json!({"id": "16.0", "type": "lock_waiting", "resource": "orders/1", "client_id": "c",
                       "session_id": s, "mode": "exclusive", "queue_length": 2, "deadline": 1795736305.0}),
                format!("16.0 lock_waiting orders/1 client=c session={s} place=2 deadline=2026-11-26T23:38:25Z"),
            ),
        ];
        for (data, expected) in table {
            assert_eq!(line(&event(data)), expected);
        }
    }
}

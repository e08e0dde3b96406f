//! How each `Reply` and each status view looks on the wire: status code and JSON body, per
//! http-api.md. The one place that knows the JSON shapes of success answers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lockio_core::{ClientId, Grant, Waiter};
use serde_json::{json, Value};

use crate::events::{Event, What};
use crate::raft::replica::Change;
use crate::service::{ClusterStatus, Health, LockRow, LockView, Reply, SessionView};

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn grant_body(grant: &Grant) -> (String, String, u64) {
    (grant.session_id.to_string(), grant.resource.to_string(), grant.fence_token.0)
}

/// The status and body of a successful answer.
pub fn reply(reply: Reply) -> Response {
    let (status, body) = match reply {
        Reply::SessionCreated { session_id, client_id, timeout } => (
            StatusCode::CREATED,
            json!({
                "client_id": client_id.as_str(),
                "keepalive_interval": timeout.keepalive_interval_secs(),
                "session_id": session_id.to_string(),
                "timeout": timeout.secs(),
            }),
        ),
        Reply::KeptAlive { session_id, timeout, expires_in_ms } => (
            StatusCode::OK,
            json!({
                "session_id": session_id.to_string(),
                "success": true,
                "updated": true,
                "timeout": timeout.secs(),
                "expires_in": secs(expires_in_ms),
            }),
        ),
        Reply::SessionDeleted { session_id } => {
            (StatusCode::OK, json!({"deleted": true, "session_id": session_id.to_string()}))
        }
        Reply::Acquired { grant, fresh, waited_ms } => {
            let (session_id, resource, fence_token) = grant_body(&grant);
            (
                if fresh { StatusCode::CREATED } else { StatusCode::OK },
                json!({
                    "acquired": true,
                    "fence_token": fence_token,
                    "resource": resource,
                    "session_id": session_id,
                    "waited": secs(waited_ms),
                }),
            )
        }
        Reply::Released { grant } => {
            let (session_id, resource, fence_token) = grant_body(&grant);
            (
                StatusCode::OK,
                json!({"released": true, "fence_token": fence_token, "resource": resource, "session_id": session_id}),
            )
        }
        Reply::CleanedUp { removed } => (StatusCode::OK, json!({"cleanup": "completed", "count": removed})),
        Reply::Advertised => (StatusCode::OK, json!({})),
        Reply::Session(s) => (StatusCode::OK, session_body(&s)),
        Reply::SessionLocks(locks) => (
            StatusCode::OK,
            json!({"locks": locks.iter().map(|r| r.as_str()).collect::<Vec<_>>(), "total_locks": locks.len()}),
        ),
        Reply::Lock(view) => (StatusCode::OK, lock_view_body(&view)),
        Reply::FenceCheck { resource, fence_token, valid, holders } => (
            StatusCode::OK,
            json!({
                "resource": resource.as_str(),
                "fence_token": fence_token.0,
                "valid": valid,
                "holders": holders.iter().map(holder_body).collect::<Vec<_>>(),
            }),
        ),
        Reply::Stats(stats) => (StatusCode::OK, stats_body(&stats)),
        Reply::Sessions { total, matched, rows } => (
            StatusCode::OK,
            json!({"total": total, "matched": matched, "sessions": rows.iter().map(session_body).collect::<Vec<_>>()}),
        ),
        Reply::Locks { total, matched, rows } => (
            StatusCode::OK,
            json!({
                "total": total,
                "matched": matched,
                "locks": rows.iter().map(lock_row_body).collect::<Vec<_>>(),
            }),
        ),
    };
    (status, Json(body)).into_response()
}

fn session_body(s: &SessionView) -> Value {
    let mut body = json!({
        "client_id": s.client_id.as_str(),
        "created_at": s.created_at.as_secs_f64(),
        "last_keepalive": s.last_keepalive.as_secs_f64(),
        "locks_held": s.locks_held.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "session_id": s.session_id.to_string(),
        "timeout": s.timeout.secs(),
        "keepalive_interval": s.timeout.keepalive_interval_secs(),
        "is_expired": s.expired_at.is_some(),
        "expires_in": secs(s.expires_in_ms),
        "lock_delay": s.lock_delay.secs(),
        "waiting_for": s.waiting_for.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
    });
    if let Some(at) = s.expired_at {
        body["expired_at"] = json!(at.as_secs_f64());
    }
    body
}

/// A resource's top-level fields: held (the seed's `session_id`, `fence_token` and
/// `acquired_at` of the exclusive holder or the oldest shared one, with its client, the mode, the
/// number of holders and a semaphore's limit) or free, with the length of its queue and its
/// lock-delay.
fn lock_top(
    resource: &lockio_core::Resource,
    holders: &[(Grant, ClientId)],
    limit: Option<lockio_core::Limit>,
    queue_length: u64,
    delayed_until: Option<lockio_core::UnixMillis>,
) -> Value {
    let mut body = match holders.first() {
        Some((grant, client_id)) => json!({
            "acquired_at": grant.acquired_at.as_secs_f64(),
            "client_id": client_id.as_str(),
            "fence_token": grant.fence_token.0,
            "locked": true,
            "mode": grant.mode.as_str(),
            "holders_count": holders.len(),
            "resource": grant.resource.as_str(),
            "session_id": grant.session_id.to_string(),
        }),
        None => json!({"locked": false, "resource": resource.as_str()}),
    };
    if let Some(limit) = limit {
        body["limit"] = json!(limit.get());
    }
    body["queue_length"] = json!(queue_length);
    if let Some(until) = delayed_until {
        body["delayed_until"] = json!(until.as_secs_f64());
    }
    body
}

fn holder_body((grant, client_id): &(Grant, ClientId)) -> Value {
    json!({
        "session_id": grant.session_id.to_string(),
        "client_id": client_id.as_str(),
        "fence_token": grant.fence_token.0,
        "acquired_at": grant.acquired_at.as_secs_f64(),
        "value": grant.value.as_ref().map(|v| v.as_str()),
    })
}

fn lock_row_body(row: &LockRow) -> Value {
    let mut body = lock_top(&row.resource, &row.holders, row.limit, row.queue_length, row.delayed_until);
    if !row.holders.is_empty() {
        body["holders"] = json!(row.holders.iter().map(holder_body).collect::<Vec<_>>());
    }
    body
}

/// `GET /admin/locks/{resource}`: the top-level fields, the holders and the queue in order.
fn lock_view_body(view: &LockView) -> Value {
    let queue_length = view.waiters.len() as u64;
    let mut body = lock_top(&view.resource, &view.holders, view.limit, queue_length, view.delayed_until);
    body["holders"] = json!(view.holders.iter().map(holder_body).collect::<Vec<_>>());
    body["waiters"] = json!(view.waiters.iter().map(|(w, client_id)| waiter_body(w, client_id)).collect::<Vec<_>>());
    body
}

fn waiter_body(w: &Waiter, client_id: &ClientId) -> Value {
    json!({
        "session_id": w.session_id.to_string(),
        "client_id": client_id.as_str(),
        "mode": w.mode.as_str(),
        "limit": w.limit.map(|l| l.get()),
        "since": w.since.as_secs_f64(),
        "deadline": w.deadline.as_secs_f64(),
    })
}

/// The `GET /admin/stats` body (also what `lockio stats --json` prints).
pub(crate) fn stats_body(stats: &lockio_core::Stats) -> Value {
    let total = stats.active_sessions + stats.expired_sessions;
    json!({
        "active_sessions": stats.active_sessions,
        "expired_sessions": stats.expired_sessions,
        "fence_counter": stats.fence_counter,
        "total_locks": stats.total_locks,
        "total_session": total,
        "total_sessions": total,
        "waiters": stats.waiters,
    })
}

/// RFC 3339 UTC with microseconds and an explicit offset, as `/health` shows it.
fn timestamp() -> String {
    let t = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    match t.strip_suffix('Z') {
        Some(base) => format!("{base}+00:00"),
        None => t,
    }
}

pub fn health(h: &Health) -> Value {
    json!({
        "is_leader": h.is_leader,
        "is_ready": h.healthy,
        "leader": h.leader,
        "leader_id": h.leader_id,
        "node_id": h.node_id,
        "service": "lock.io",
        "status": if h.healthy { "healthy" } else { "degraded" },
        "timestamp": timestamp(),
        "version": env!("CARGO_PKG_VERSION"),
    })
}

pub fn cluster_status(s: &ClusterStatus) -> Value {
    let members: Vec<Value> = s
        .members
        .iter()
        .map(|m| {
            let mut member = json!({
                "id": m.id,
                "raft": m.raft,
                "http": m.http,
                "reachable": m.reachable,
                "last_contact_ms": m.last_contact_ms,
            });
            if let Some(r) = &m.report {
                member["state"] = json!(r.role.as_str());
                member["term"] = json!(r.term);
                member["leader_id"] = json!(r.leader_id);
                member["commit_index"] = json!(r.commit_index);
                member["applied_index"] = json!(r.applied_index);
            }
            if let (Some(matched), Some(lag)) = (m.matched_index, m.lag) {
                member["matched_index"] = json!(matched);
                member["lag"] = json!(lag);
            }
            member
        })
        .collect();
    json!({
        "node": s.raft_addr,
        "node_id": s.health.node_id,
        "state": s.state,
        "leader": s.health.leader,
        "leader_id": s.health.leader_id,
        "term": s.term,
        "has_quorum": s.health.healthy,
        "is_ready": s.health.healthy,
        "uptime": s.uptime_secs,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "snapshot_index": s.snapshot_index,
        "purged_index": s.purged_index,
        "members": members,
        "stats": stats_body(&s.stats),
    })
}

fn grants(released: &[Grant]) -> Value {
    json!(released
        .iter()
        .map(|g| json!({"resource": g.resource.as_str(), "fence_token": g.fence_token.0}))
        .collect::<Vec<_>>())
}

/// An event of the stream (`GET /events`) as JSON: `type`, `at`, and what it is about.
pub fn event(e: &Event) -> Value {
    let mut body = match &e.what {
        What::Applied { index, position, change } => {
            let mut body = match change {
                Change::SessionCreated { session_id, client_id, timeout, lock_delay } => json!({
                    "type": "session_created", "session_id": session_id.to_string(),
                    "client_id": client_id.as_str(), "timeout": timeout.secs(), "lock_delay": lock_delay.secs(),
                }),
                Change::SessionDeleted { session_id, client_id, released } => json!({
                    "type": "session_deleted", "session_id": session_id.to_string(),
                    "client_id": client_id.as_str(), "released": grants(released),
                }),
                Change::SessionExpired { session_id, client_id, released } => json!({
                    "type": "session_expired", "session_id": session_id.to_string(),
                    "client_id": client_id.as_str(), "released": grants(released),
                }),
                Change::LockAcquired { grant, client_id, queued, waited_ms } => json!({
                    "type": "lock_acquired", "resource": grant.resource.as_str(),
                    "session_id": grant.session_id.to_string(), "client_id": client_id.as_str(),
                    "fence_token": grant.fence_token.0, "mode": grant.mode.as_str(),
                    "value": grant.value.as_ref().map(|v| v.as_str()),
                    "queued": queued, "waited": secs(*waited_ms),
                }),
                Change::LockReleased { grant, client_id } => json!({
                    "type": "lock_released", "resource": grant.resource.as_str(),
                    "session_id": grant.session_id.to_string(), "client_id": client_id.as_str(),
                    "fence_token": grant.fence_token.0,
                }),
                Change::LockWaiting { resource, session_id, client_id, waiter, position } => {
                    let mut body = waiter_body(waiter, client_id);
                    body["type"] = json!("lock_waiting");
                    body["resource"] = json!(resource.as_str());
                    body["session_id"] = json!(session_id.to_string());
                    body["queue_length"] = json!(position);
                    body
                }
                Change::LockWaitEnded { resource, session_id, client_id, reason, waited_ms, .. } => json!({
                    "type": "lock_wait_ended", "resource": resource.as_str(),
                    "session_id": session_id.to_string(), "client_id": client_id.as_str(),
                    "reason": reason.as_str(), "waited": secs(*waited_ms),
                }),
            };
            body["index"] = json!(index);
            body["position"] = json!(position);
            body
        }
        What::LeaderChanged { leader_id, term } => {
            json!({"type": "leader_changed", "leader_id": leader_id, "term": term})
        }
        What::NodeUnreachable { node_id } => json!({"type": "node_unreachable", "node_id": node_id}),
        What::NodeReachable { node_id } => json!({"type": "node_reachable", "node_id": node_id}),
    };
    body["at"] = json!(e.at.as_secs_f64());
    body
}

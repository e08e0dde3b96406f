//! Prometheus metrics (`GET /metrics`): the recorder, the names, and one function per thing
//! worth counting. Counters and histograms are recorded where things happen; gauges of the
//! cluster and lock state are set from the node's view when a scrape comes in.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::raft::replica::Change;
use crate::service::Service;

/// Latency buckets in seconds: from a fast keepalive to a request waiting out an election.
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How long waits for a lock took, in seconds, up to the longest wait (300 s).
const WAIT_BUCKETS: &[f64] = &[0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// Installs the process-wide recorder; returns the handle `/metrics` renders from.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("lockio_lock_wait_seconds".into()), WAIT_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .install_recorder()?;
    Ok(handle)
}

/// One HTTP request, by route template (not the raw path, so ids do not explode the labels).
pub fn http_request(route: &str, method: &str, status: u16, took: Duration) {
    let labels = [("route", route.to_string()), ("method", method.to_string()), ("status", status.to_string())];
    counter!("lockio_http_requests_total", &labels).increment(1);
    histogram!("lockio_http_request_duration_seconds", "route" => route.to_string(), "method" => method.to_string())
        .record(took.as_secs_f64());
}

/// One proposal to the Raft log: its kind, how it ended, and how long until it was applied.
pub fn proposal(kind: &'static str, result: &'static str, took: Duration) {
    counter!("lockio_proposals_total", "kind" => kind, "result" => result).increment(1);
    histogram!("lockio_proposal_duration_seconds", "kind" => kind).record(took.as_secs_f64());
}

/// One durable commit of the log (one fsync), covering `appends` appends.
pub fn log_flush(appends: usize, took: Duration) {
    counter!("lockio_log_flushes_total").increment(1);
    counter!("lockio_log_appends_total").increment(appends as u64);
    histogram!("lockio_log_flush_duration_seconds").record(took.as_secs_f64());
}

/// One log entry proposed by the leader, carrying `commands` lock commands.
pub fn proposal_batch(commands: usize) {
    counter!("lockio_proposal_entries_total").increment(1);
    counter!("lockio_proposal_commands_total").increment(commands as u64);
}

/// One keepalive the leader handled.
pub fn keepalive(result: &'static str) {
    counter!("lockio_keepalives_total", "result" => result).increment(1);
}

/// This node saw a new leader.
pub fn leader_changed() {
    counter!("lockio_leader_changes_total").increment(1);
}

/// A change applied on this node (every node counts the same ones).
pub fn applied(change: &Change) {
    match change {
        Change::SessionCreated { .. } => counter!("lockio_sessions_created_total").increment(1),
        Change::SessionDeleted { .. } => counter!("lockio_sessions_deleted_total").increment(1),
        Change::SessionExpired { .. } => counter!("lockio_sessions_expired_total").increment(1),
        Change::LockAcquired { queued, waited_ms, .. } => {
            counter!("lockio_locks_acquired_total").increment(1);
            if *queued {
                counter!("lockio_lock_handoffs_total").increment(1);
                counter!("lockio_lock_waits_total", "result" => "granted").increment(1);
                histogram!("lockio_lock_wait_seconds", "result" => "granted").record(*waited_ms as f64 / 1000.0);
            }
        }
        Change::LockReleased { .. } => counter!("lockio_locks_released_total").increment(1),
        Change::LockWaiting { .. } => counter!("lockio_lock_wait_updates_total").increment(1),
        Change::LockWaitEnded { reason, waited_ms, .. } => {
            counter!("lockio_lock_waits_total", "result" => reason.as_str()).increment(1);
            histogram!("lockio_lock_wait_seconds", "result" => reason.as_str()).record(*waited_ms as f64 / 1000.0);
        }
    }
}

/// Sets the gauges from the node's current view and renders every metric.
pub fn render(handle: &PrometheusHandle, service: &Service) -> String {
    let status = service.cluster_status();
    gauge!("lockio_raft_term").set(status.term as f64);
    gauge!("lockio_raft_is_leader").set(if status.health.is_leader { 1.0 } else { 0.0 });
    gauge!("lockio_raft_commit_index").set(status.commit_index as f64);
    gauge!("lockio_raft_applied_index").set(status.applied_index as f64);
    gauge!("lockio_healthy").set(if status.health.healthy { 1.0 } else { 0.0 });
    gauge!("lockio_sessions_active").set(status.stats.active_sessions as f64);
    gauge!("lockio_sessions_expired").set(status.stats.expired_sessions as f64);
    gauge!("lockio_locks_held").set(status.stats.total_locks as f64);
    gauge!("lockio_fence_counter").set(status.stats.fence_counter as f64);
    gauge!("lockio_lock_waiters").set(status.stats.waiters as f64);
    gauge!("lockio_waits_open").set(service.waits().len() as f64);
    for member in &status.members {
        let id = member.id.to_string();
        gauge!("lockio_member_reachable", "member" => id.clone()).set(if member.reachable { 1.0 } else { 0.0 });
        if let Some(lag) = member.lag {
            gauge!("lockio_member_lag_entries", "member" => id).set(lag as f64);
        }
    }
    handle.render()
}

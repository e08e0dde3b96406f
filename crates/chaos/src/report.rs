//! The report of a run: a human summary on stdout and the same facts, with every violation's
//! operations and a timeline, as a JSON file.

use std::collections::BTreeMap;
use std::path::Path;

use lockio_core::Resource;
use serde::Serialize;
use serde_json::{json, Value};

use crate::check::{tally, CheckResult, Evidence, Limits, SessionFinal};
use crate::events::{Change, Replicated};
use crate::history::{Op, OpKind, Outcome};
use crate::nemesis::FaultRecord;

/// At most this many violations per check are written out with their operations.
const VIOLATIONS_SHOWN: usize = 50;

/// The whole run, as reported.
pub struct Report<'a> {
    pub seed: u64,
    pub command: String,
    pub settings: Value,
    pub duration_secs: f64,
    pub evidence: &'a Evidence,
    pub replicated: &'a Replicated,
    pub faults: &'a [FaultRecord],
    pub results: &'a [CheckResult],
    pub limits: Limits,
    /// Seconds since the run started when the last fault was healed.
    pub final_heal: f64,
}

#[derive(Serialize)]
struct TimelineEntry {
    /// Seconds since the run started.
    t: f64,
    what: String,
}

impl Report<'_> {
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.violations.is_empty())
    }

    fn by_outcome(&self) -> BTreeMap<Outcome, usize> {
        let mut out = BTreeMap::new();
        for op in self.evidence.ops.iter().filter(|o| o.kind != OpKind::StoreWrite) {
            *out.entry(op.outcome).or_default() += 1;
        }
        out
    }

    /// Why operations did not succeed: per kind, the error code (or transport failure).
    fn errors(&self) -> BTreeMap<&'static str, BTreeMap<String, usize>> {
        let mut out: BTreeMap<&'static str, BTreeMap<String, usize>> = BTreeMap::new();
        for op in self.evidence.ops.iter().filter(|o| o.outcome != Outcome::Ok) {
            let why = op.error.clone().unwrap_or_else(|| format!("status {:?}", op.status));
            let why = if why.starts_with("transport") { "transport error".to_string() } else { why };
            *out.entry(op.kind.name()).or_default().entry(why).or_default() += 1;
        }
        out
    }

    /// The waiting acquires by how they ended: `granted`, or the error code, or what went wrong.
    fn waits(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for op in self.evidence.ops.iter().filter(|o| o.wait_secs.is_some()) {
            let how = match (op.outcome, &op.error) {
                (Outcome::Ok, _) => "granted".to_string(),
                (_, Some(e)) if e.starts_with("transport") => "transport error".to_string(),
                (_, Some(e)) => e.clone(),
                (_, None) => format!("status {:?}", op.status),
            };
            *out.entry(how).or_default() += 1;
        }
        out
    }

    /// The queue in the replicated history: `lock_waiting` events (those whose `since` is
    /// earlier than their `at` come from a retry that moved the deadline), waits ended by
    /// reason, grants from the queue.
    fn queue_events(&self) -> Value {
        let events = &self.replicated.events;
        let joined = events.iter().filter(|e| e.change == Change::LockWaiting).count();
        let retries = events
            .iter()
            .filter(|e| e.change == Change::LockWaiting && e.since.is_some_and(|since| since < e.at))
            .count();
        let mut ended: BTreeMap<String, usize> = BTreeMap::new();
        for e in events.iter().filter(|e| e.change == Change::LockWaitEnded) {
            let reason = e.reason.map_or("unknown".to_string(), |r| format!("{r:?}"));
            *ended.entry(reason).or_default() += 1;
        }
        let handed = events.iter().filter(|e| e.change == Change::LockAcquired && e.queued).count();
        let waited: Vec<f64> =
            events.iter().filter(|e| e.change == Change::LockAcquired && e.queued).filter_map(|e| e.waited).collect();
        json!({
            "lock_waiting": joined,
            "lock_waiting_retries": retries,
            "wait_ended_by_reason": ended,
            "grants_from_the_queue": handed,
            "longest_wait_granted_secs": waited.iter().copied().fold(0.0, f64::max),
        })
    }

    /// Shared grants in the replicated history: how many (from the queue; in batches, i.e. two
    /// or more handed over in one entry), and per resource the most holders at once (replayed
    /// along the log) against its limit.
    fn shared_events(&self) -> Value {
        let mut events: Vec<_> = self.replicated.events.iter().collect();
        events.sort_by_key(|e| e.key());
        let shared = |e: &&crate::events::Applied| e.mode.as_deref() == Some("shared");
        let grants = events.iter().filter(|e| e.change == Change::LockAcquired && shared(e)).count();
        let queued = events.iter().filter(|e| e.change == Change::LockAcquired && e.queued && shared(e)).count();
        let mut per_entry: BTreeMap<(u64, &str), usize> = BTreeMap::new();
        for e in events.iter().filter(|e| e.change == Change::LockAcquired && e.queued && shared(e)) {
            if let Some(r) = &e.resource {
                *per_entry.entry((e.index, r.as_str())).or_default() += 1;
            }
        }
        let batches = per_entry.values().filter(|n| **n > 1).count();
        let mut holders: BTreeMap<String, Vec<(lockio_core::SessionId, bool)>> = BTreeMap::new();
        let mut peak: BTreeMap<String, usize> = BTreeMap::new();
        for e in &events {
            let Some(session) = e.session else { continue };
            match (e.change, &e.resource) {
                (Change::LockAcquired, Some(r)) => {
                    let held = holders.entry(r.to_string()).or_default();
                    held.push((session, shared(e)));
                    if shared(e) {
                        let p = peak.entry(r.to_string()).or_default();
                        *p = (*p).max(held.len());
                    }
                }
                (Change::LockReleased, Some(r)) => {
                    if let Some(held) = holders.get_mut(r.as_str()) {
                        held.retain(|(s, _)| *s != session);
                    }
                }
                (Change::SessionDeleted | Change::SessionExpired, _) => {
                    for (r, _) in &e.released {
                        if let Some(held) = holders.get_mut(r.as_str()) {
                            held.retain(|(s, _)| *s != session);
                        }
                    }
                }
                _ => {}
            }
        }
        let limits = crate::check::semaphore_limits(self.evidence);
        let peaks: BTreeMap<String, Value> = peak
            .into_iter()
            .map(|(r, n)| {
                let limit = Resource::new(&r).ok().and_then(|res| limits.get(&res).copied());
                (r, json!({"most_shared_holders": n, "limit": limit}))
            })
            .collect();
        json!({
            "shared_grants": grants,
            "shared_grants_from_the_queue": queued,
            "batches_from_the_queue": batches,
            "by_resource": peaks,
        })
    }

    fn faults_by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for f in self.faults {
            *out.entry(f.kind.name()).or_default() += 1;
        }
        out
    }

    fn timeline(&self) -> Vec<TimelineEntry> {
        let mut out = Vec::new();
        for f in self.faults {
            out.push(TimelineEntry { t: f.start, what: format!("fault {}: {}", f.kind.name(), f.what) });
            let recovered = f
                .recovered_after
                .map_or("no write within the bound".to_string(), |s| format!("a write succeeded {s:.2}s later"));
            out.push(TimelineEntry { t: f.healed, what: format!("healed {}; {recovered}", f.kind.name()) });
        }
        out.push(TimelineEntry { t: self.final_heal, what: "final heal: every node running, no cuts".into() });
        // Each node announces a leader change; keep the first announcement of each.
        let mut announced = std::collections::BTreeSet::new();
        for n in &self.replicated.notes {
            if n.what.starts_with("leader_changed") && announced.insert(n.what.clone()) {
                out.push(TimelineEntry {
                    t: n.at - self.evidence.started_unix,
                    what: format!("node {} saw {}", n.node, n.what),
                });
            }
        }
        out.sort_by(|a, b| a.t.total_cmp(&b.t));
        out
    }

    /// Operations completed per second of the run, by outcome (store writes left out).
    fn throughput(&self) -> Vec<Value> {
        let mut seconds: BTreeMap<u64, BTreeMap<Outcome, usize>> = BTreeMap::new();
        for op in self.evidence.ops.iter().filter(|o| o.kind != OpKind::StoreWrite) {
            *seconds.entry(op.complete as u64).or_default().entry(op.outcome).or_default() += 1;
        }
        seconds.into_iter().map(|(s, by)| json!({"second": s, "ok": by.get(&Outcome::Ok).copied().unwrap_or(0), "fail": by.get(&Outcome::Fail).copied().unwrap_or(0), "unknown": by.get(&Outcome::Unknown).copied().unwrap_or(0)})).collect()
    }

    pub fn to_json(&self) -> Value {
        let ops: &[Op] = &self.evidence.ops;
        let by_kind: BTreeMap<&str, BTreeMap<Outcome, usize>> =
            tally(ops).into_iter().map(|(k, v)| (k.name(), v)).collect();
        let fin = &self.evidence.final_state;
        let mut sessions: BTreeMap<SessionFinal, usize> = BTreeMap::new();
        for s in fin.sessions.values() {
            *sessions.entry(*s).or_default() += 1;
        }
        let checks: Vec<Value> = self
            .results
            .iter()
            .map(|r| {
                json!({
                    "number": r.number,
                    "name": r.name,
                    "violations": r.violations.len(),
                    "details": r.violations.iter().take(VIOLATIONS_SHOWN).map(|v| json!({
                        "message": v.message,
                        "log_indexes": v.indexes,
                        "operations": v.ops.iter().filter_map(|id| ops.get(*id)).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let highest_index = self.replicated.events.iter().map(|e| e.index).max();
        let mut by_change: BTreeMap<Change, usize> = BTreeMap::new();
        for e in &self.replicated.events {
            *by_change.entry(e.change).or_default() += 1;
        }
        json!({
            "passed": self.passed(),
            "seed": self.seed,
            "command": self.command,
            "settings": self.settings,
            "limits": self.limits,
            "duration_secs": self.duration_secs,
            "operations": {
                "total": ops.iter().filter(|o| o.kind != OpKind::StoreWrite).count(),
                "by_outcome": self.by_outcome(),
                "by_kind": by_kind,
                "not_ok_by_reason": self.errors(),
                "waits_by_end": self.waits(),
            },
            "faults": {
                "total": self.faults.len(),
                "by_kind": self.faults_by_kind(),
                "max_recovery_secs": self.faults.iter().filter_map(|f| f.recovered_after).fold(0.0, f64::max),
                "injected": self.faults,
            },
            "replicated_history": {
                "events": self.replicated.events.len(),
                "by_type": by_change,
                "highest_index": highest_index,
                "events_per_node": self.replicated.per_node,
                "stream_connections_per_node": self.replicated.connections,
                "queue": self.queue_events(),
                "shared": self.shared_events(),
            },
            "final_state": {
                "fence_counter": fin.fence_counter,
                "locks": fin.locks,
                "sessions": sessions,
                "waiters": fin.waiters,
                "waiting_for": fin.waiting_for,
                "settle_marker_index": fin.settled,
                "liveness_secs": fin.liveness,
            },
            "checks": checks,
            "timeline": self.timeline(),
            "throughput": self.throughput(),
        })
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_vec_pretty(&self.to_json())?)?;
        Ok(())
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let count = |m: &BTreeMap<Outcome, usize>, o| m.get(&o).copied().unwrap_or(0);
        let by = self.by_outcome();
        let total: usize = by.values().sum();
        s += &format!("\n== lock.io chaos run: seed {}, {:.0}s\n", self.seed, self.duration_secs);
        s += &format!(
            "operations: {total} (ok {}, failed {}, unknown {})\n",
            count(&by, Outcome::Ok),
            count(&by, Outcome::Fail),
            count(&by, Outcome::Unknown)
        );
        for (kind, outcomes) in tally(&self.evidence.ops) {
            s += &format!(
                "  {:<15} ok {:>7}  failed {:>6}  unknown {:>5}\n",
                kind.name(),
                count(&outcomes, Outcome::Ok),
                count(&outcomes, Outcome::Fail),
                count(&outcomes, Outcome::Unknown)
            );
        }
        for (kind, reasons) in self.errors() {
            let reasons: Vec<String> = reasons.iter().map(|(why, n)| format!("{why} {n}")).collect();
            s += &format!("    {kind} not ok: {}\n", reasons.join(", "));
        }
        let waits: Vec<String> = self.waits().iter().map(|(how, n)| format!("{how} {n}")).collect();
        let waits_total: usize = self.waits().values().sum();
        s += &format!("  of the acquires, {waits_total} waited in the queue: {}\n", waits.join(", "));
        let kinds: Vec<String> = self.faults_by_kind().iter().map(|(k, n)| format!("{k} {n}")).collect();
        let worst = self.faults.iter().filter_map(|f| f.recovered_after).fold(0.0, f64::max);
        s += &format!(
            "faults: {} ({}); slowest recovery after a heal {worst:.2}s\n",
            self.faults.len(),
            kinds.join(", ")
        );
        let fin = &self.evidence.final_state;
        let expired = self.replicated.events.iter().filter(|e| e.change == Change::SessionExpired).count();
        s += &format!(
            "replicated history: {} events ({expired} session expiries) up to log index {}; final fence counter {}; write after the last heal in {}\n",
            self.replicated.events.len(),
            self.replicated.events.iter().map(|e| e.index).max().unwrap_or(0),
            fin.fence_counter,
            fin.liveness.map_or("(none)".to_string(), |l| format!("{l:.2}s"))
        );
        let queue = self.queue_events();
        s += &format!(
            "queue: {} lock_waiting ({} of them retries), waits ended {}, {} grants from the queue (longest wait {:.2}s)\n",
            queue["lock_waiting"],
            queue["lock_waiting_retries"],
            queue["wait_ended_by_reason"],
            queue["grants_from_the_queue"],
            queue["longest_wait_granted_secs"].as_f64().unwrap_or(0.0)
        );
        let shared = self.shared_events();
        let peaks: Vec<String> = shared["by_resource"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(r, p)| match p["limit"].as_u64() {
                Some(limit) => format!("{r} {}/{limit}", p["most_shared_holders"]),
                None => format!("{r} {}", p["most_shared_holders"]),
            })
            .collect();
        s += &format!(
            "shared: {} shared grants ({} from the queue, {} batches of two or more in one entry); most shared holders at once: {}\n",
            shared["shared_grants"],
            shared["shared_grants_from_the_queue"],
            shared["batches_from_the_queue"],
            if peaks.is_empty() { "-".to_string() } else { peaks.join(", ") }
        );
        s += "checks:\n";
        for r in self.results {
            s += &format!("  {}. {:<45} {} violations\n", r.number, r.name, r.violations.len());
            for v in r.violations.iter().take(5) {
                s += &format!("       - {}\n", v.message);
            }
        }
        s += &format!("result: {}\n", if self.passed() { "PASS (0 violations)" } else { "FAIL" });
        s
    }
}

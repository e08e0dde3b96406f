//! The checker: pure functions from a run's evidence (the client history, the replicated
//! history collected from `/events`, the final state) to violations. Nothing here does I/O or
//! reads a clock, so each check is tested with hand-made histories (`tests` below).
//!
//! Times: client operations carry seconds since the run started (harness monotonic clock);
//! replicated events carry the leader's Unix time stamp, placed on the same axis with
//! `Evidence::started_unix` (all processes run on one machine, so they share its clock).
//!
//! The checks, precisely (1-6 are those of issue 6; 7 is their converse):
//! 1. **Unique tokens.** No fence token acknowledged to clients for two different grants
//!    (session, resource); no token in two `lock_acquired` entries of the replicated history;
//!    and along the log, each granted token is higher than every earlier one.
//! 2. **Real-time order.** Per resource: if an acquire was acknowledged before another acquire
//!    was invoked, and they returned different tokens, the first token is the lower. (A shared
//!    acquire answered 200 is a re-acquire that returns the session's earlier grant, so others
//!    may have been granted since: it is left out.)
//! 3. **Exclusive and shared grants (replicated history).** In log order, per resource, the
//!    holders are the grants (`lock_acquired`, with its `mode`) not yet ended by
//!    `lock_released` or by a `session_deleted`/`session_expired` listing them in `released`:
//!    never an exclusive grant while any other grant is held; never a shared grant while an
//!    exclusive one is held; never more shared holders than the resource's `limit` (the lowest
//!    any shared request on it named: the workload's semaphores, an acquire's `limit`, a shared
//!    `lock_waiting`'s); never a grant to a session that holds the resource already, or under
//!    a token another holder has (every holder its own token); an ending names exactly a grant
//!    that is held; a session ends with no lock left held; no grant goes to a session after it
//!    was deleted or expired; and replicas that reported the same entry agree on it. From the
//!    workload, too: no reader saw a write to the fenced store during its shared hold
//!    (`WRITTEN_DURING_SHARED_HOLD`) unless its session had ended by then.
//! 4. **Nothing acknowledged is lost.** Every acknowledged create, acquire, release and delete
//!    appears in the replicated history and is reflected in the final state (a resource's
//!    holders, all of them for a shared lock): a created session
//!    still exists (live or expired) unless a delete of it was attempted (or it expired and
//!    was forgotten, which happens an hour after the expiry); an acknowledged
//!    delete left no session; an acquired lock is still held by that grant unless a release of
//!    it or a delete of its session was attempted, or the session expired; an acknowledged
//!    release left the grant not held; every lock held at the end comes from a grant in the
//!    history. The final fence counter is at least the highest token ever returned, and every
//!    token up to it appears as a grant in the replicated history (the history is complete).
//! 5. **No false expiry.** A session is expired (at leader time `at`) only if none of its
//!    acknowledged keepalives, nor its acknowledged creation, was invoked later than
//!    `at - timeout + margin`. The leader extends a lease by `timeout` from a keepalive's
//!    arrival, which is after its invocation, and a new leader grants a full `timeout` from its
//!    takeover, so a correct service always expires at least `timeout` after the last
//!    acknowledged keepalive's invocation; the margin absorbs clock reading differences. This
//!    also catches a keepalive acknowledged after the expiry, by a deposed leader say.
//! 6. **Liveness.** After the last fault is healed, a write succeeds within the bound.
//! 7. **Nothing refused takes effect.** Every grant, release and delete in the replicated
//!    history matches a client attempt that was acknowledged or whose outcome is unknown: none
//!    comes from an attempt the service answered with a definite refusal (a 4xx, or a 503 not
//!    marked `"outcome": "unknown"`), and none comes from nowhere.
//!
//! 8-10 are the queue's (issue 12), read from the replicated history by replaying each
//! resource's queue along the log: a `lock_waiting` puts its session at the back of the queue
//! (a repeated one, from a retry, only moves its deadline: the latest one counts); a
//! `lock_wait_ended`, a grant to the waiter, or the end of its session (`session_deleted`,
//! `session_expired`) takes it out. Deadlines and `at` are both leader time.
//! 8. **Grants from the queue go to live waiters in time.** Every `lock_acquired` with
//!    `"queued": true` goes to a session that is in that resource's queue, whose session has
//!    not ended, and whose deadline is not earlier than the grant's `at`.
//! 9. **Waiters are granted in queue order.** No grant of a resource (from the queue or not)
//!    while a waiter that joined earlier than the grantee (or any waiter, if the grantee was
//!    not waiting) is still in the queue with its deadline not yet reached at the grant's `at`:
//!    so no reader is granted ahead of an earlier writer still queued, even beside other
//!    readers; a `lock_wait_ended` ends a wait that is in the queue, and one for a `timeout`
//!    comes no earlier than the waiter's deadline less the margin of check 5. (Every event
//!    carries the time the state machine used for its command.) And no waiter is left at the
//!    head of a queue that admits it: after each log entry, for each resource it changed, the
//!    head of the queue, if its session is live and its deadline later than the entry's time,
//!    does not fit beside the holders (an exclusive waiter fits only a free resource, a shared
//!    one a free one or shared holders under the limit). So a run of shared waiters at the
//!    head is granted together, up to the limit, and an exclusive waiter behind shared
//!    holders waits (check 3 catches it if it does not).
//! 10. **No waiter outlives its session.** No `lock_waiting` for a session after it ended, and
//!    no session ends while still in a queue (its waits end first, in the same entry). At the
//!    end, no resource lists a waiter whose session ended in the history before the final
//!    reads began (the settle marker's creation), or that reads as expired or absent with no
//!    end in the history, and no session that reads as expired still has `waiting_for`; every
//!    resource's `queue_length` is the number of its waiters.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use lockio_core::{FenceToken, Resource, SessionId};
use serde::Serialize;

use crate::events::{Applied, Change, Key, WaitEnd};
use crate::history::{Op, OpKind, Outcome};

/// What became of a session, read at the end of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionFinal {
    Live,
    Expired,
    Absent,
}

/// The cluster's state at the end, read once every fault was healed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FinalState {
    pub fence_counter: u64,
    /// The holders of every resource the workload used (none if free; several if shared).
    pub locks: BTreeMap<Resource, Vec<(SessionId, FenceToken)>>,
    /// Every session a client was told it created, and every session listed as a waiter.
    pub sessions: BTreeMap<SessionId, SessionFinal>,
    /// The waiters of every resource the workload used, in queue order, and the resource's
    /// `queue_length`.
    pub waiters: BTreeMap<Resource, (Vec<SessionId>, u64)>,
    /// The sessions whose `waiting_for` was not empty.
    pub waiting_for: BTreeMap<SessionId, Vec<Resource>>,
    /// The log index of the settle marker's creation: everything up to it was applied before
    /// the final reads began. `None` if there was no marker.
    pub settled: Option<u64>,
    /// Seconds from the last heal until a write succeeded; `None` if none did in time.
    pub liveness: Option<f64>,
}

/// Everything the checks read.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub ops: Vec<Op>,
    /// The replicated history, deduplicated (any order).
    pub events: Vec<Applied>,
    /// Entries two replicas reported differently.
    pub disagreements: Vec<String>,
    pub final_state: FinalState,
    /// Unix time at run time 0.
    pub started_unix: f64,
    /// The workload's semaphores and their limits.
    pub semaphores: BTreeMap<Resource, u64>,
}

/// Tolerances of the checks.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    /// Check 5's margin, seconds; also check 9's for the time stamp of a wait's timeout.
    pub expiry_margin: f64,
    /// Check 6's bound, seconds.
    pub liveness_bound: f64,
}

/// One violation: what, and the operations and log indexes that show it.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub message: String,
    pub ops: Vec<usize>,
    pub indexes: Vec<u64>,
}

fn violation(message: String, ops: Vec<usize>, indexes: Vec<u64>) -> Violation {
    Violation { message, ops, indexes }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub number: u8,
    pub name: &'static str,
    pub violations: Vec<Violation>,
}

/// Runs every check.
pub fn check(ev: &Evidence, limits: Limits) -> Vec<CheckResult> {
    let events = in_log_order(&ev.events);
    let semaphores = semaphore_limits(ev);
    let mut exclusivity = exclusive_grants(&events, &ev.disagreements, &semaphores);
    exclusivity.extend(reads_overlapped(ev, &events, limits.expiry_margin));
    vec![
        CheckResult { number: 1, name: "unique fence tokens", violations: unique_tokens(&ev.ops, &events) },
        CheckResult { number: 2, name: "real-time token order", violations: real_time_order(&ev.ops) },
        CheckResult { number: 3, name: "exclusive and shared grants, limits", violations: exclusivity },
        CheckResult { number: 4, name: "no acknowledged write lost", violations: nothing_lost(ev, &events) },
        CheckResult {
            number: 5,
            name: "no false expiry",
            violations: no_false_expiry(ev, &events, limits.expiry_margin),
        },
        CheckResult {
            number: 6,
            name: "liveness after the last heal",
            violations: liveness(&ev.final_state, limits.liveness_bound),
        },
        CheckResult {
            number: 7,
            name: "nothing refused takes effect",
            violations: nothing_refused_applied(&ev.ops, &events),
        },
        CheckResult { number: 8, name: "queue grants go to live waiters in time", violations: queue_grants(&events) },
        CheckResult {
            number: 9,
            name: "waiters granted in queue order",
            violations: queue_order(&events, &semaphores, limits.expiry_margin),
        },
        CheckResult {
            number: 10,
            name: "no waiter outlives its session",
            violations: no_orphan_waiters(&events, &ev.final_state),
        },
    ]
}

/// Whether an event is about a shared grant or waiter (`"mode": "shared"`); otherwise exclusive.
fn is_shared(e: &Applied) -> bool {
    e.mode.as_deref() == Some("shared")
}

/// The most shared holders each resource may have: the lowest limit any shared request on it
/// named (see check 3). Resources without one have no limit.
pub fn semaphore_limits(ev: &Evidence) -> HashMap<Resource, u64> {
    let mut out: HashMap<Resource, u64> = ev.semaphores.iter().map(|(r, l)| (r.clone(), *l)).collect();
    let named = ev
        .ops
        .iter()
        .filter(|o| o.kind == OpKind::Acquire && o.shared && o.may_have_applied())
        .filter_map(|o| Some((o.resource.as_ref()?, o.limit?)))
        .chain(
            ev.events
                .iter()
                .filter(|e| e.change == Change::LockWaiting && is_shared(e))
                .filter_map(|e| Some((e.resource.as_ref()?, e.limit?))),
        );
    for (resource, limit) in named {
        let known = out.entry(resource.clone()).or_insert(limit);
        *known = (*known).min(limit);
    }
    out
}

fn in_log_order(events: &[Applied]) -> Vec<&Applied> {
    let mut sorted: Vec<&Applied> = events.iter().collect();
    sorted.sort_by_key(|e| e.key());
    sorted
}

/// Acknowledged acquires: (op, session, resource, token).
fn granted(ops: &[Op]) -> impl Iterator<Item = (&Op, SessionId, &Resource, FenceToken)> {
    ops.iter()
        .filter(|o| o.kind == OpKind::Acquire && o.ok())
        .filter_map(|o| Some((o, o.session?, o.resource.as_ref()?, o.fence_token?)))
}

fn unique_tokens(ops: &[Op], events: &[&Applied]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut by_token: HashMap<FenceToken, (SessionId, &Resource, usize)> = HashMap::new();
    for (op, session, resource, token) in granted(ops) {
        match by_token.get(&token) {
            Some((s, r, first)) if (*s, *r) != (session, resource) => out.push(violation(
                format!("token {token} acknowledged for {s} on {r} and for {session} on {resource}"),
                vec![*first, op.id],
                vec![],
            )),
            Some(_) => {}
            None => {
                by_token.insert(token, (session, resource, op.id));
            }
        }
    }
    let mut seen: HashMap<FenceToken, u64> = HashMap::new();
    let mut highest: Option<(FenceToken, u64)> = None;
    for e in events.iter().filter(|e| e.change == Change::LockAcquired) {
        let Some(token) = e.fence_token else { continue };
        if let Some(first) = seen.insert(token, e.index) {
            out.push(violation(
                format!("token {token} granted at log index {first} and again at {}", e.index),
                vec![],
                vec![first, e.index],
            ));
        } else if let Some((top, at)) = highest.filter(|(top, _)| token <= *top) {
            out.push(violation(
                format!("token {token} granted at log index {} after token {top} at index {at}", e.index),
                vec![],
                vec![at, e.index],
            ));
        }
        if highest.is_none_or(|(top, _)| token > top) {
            highest = Some((token, e.index));
        }
    }
    out
}

fn real_time_order(ops: &[Op]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut per_resource: BTreeMap<&Resource, Vec<&Op>> = BTreeMap::new();
    for (op, _, resource, _) in granted(ops).filter(|(o, ..)| !(o.shared && o.status == Some(200))) {
        per_resource.entry(resource).or_default().push(op);
    }
    for (resource, grants) in per_resource {
        let mut by_completion = grants.clone();
        by_completion.sort_by(|a, b| a.complete.total_cmp(&b.complete));
        let mut by_invocation = grants;
        by_invocation.sort_by(|a, b| a.invoke.total_cmp(&b.invoke));
        // Sweep: `top` is the highest token among grants completed before the current invoke.
        let mut done = by_completion.iter().peekable();
        let mut top: Option<&Op> = None;
        for later in by_invocation {
            while let Some(earlier) = done.next_if(|e| e.complete < later.invoke) {
                if top.is_none_or(|t| earlier.fence_token > t.fence_token) {
                    top = Some(earlier);
                }
            }
            if let Some(earlier) = top.filter(|t| t.fence_token > later.fence_token) {
                out.push(violation(
                    format!(
                        "on {resource}: token {} was acknowledged at {:.3}s, before an acquire invoked at {:.3}s got the lower token {}",
                        earlier.fence_token.map_or(0, |t| t.0),
                        earlier.complete,
                        later.invoke,
                        later.fence_token.map_or(0, |t| t.0)
                    ),
                    vec![earlier.id, later.id],
                    vec![],
                ));
            }
        }
    }
    out
}

/// A grant held, as the replicated history tells it.
#[derive(Debug, Clone, Copy)]
struct Held {
    session: SessionId,
    token: FenceToken,
    shared: bool,
    /// The log index of its grant.
    index: u64,
}

impl Held {
    fn describe(&self) -> String {
        let mode = if self.shared { "shared" } else { "exclusive" };
        format!("{mode} token {} (session {}, index {})", self.token, self.session, self.index)
    }
}

fn describe_all(held: &[Held]) -> String {
    if held.is_empty() {
        return "none".to_string();
    }
    held.iter().map(Held::describe).collect::<Vec<_>>().join(", ")
}

/// Every resource's holders along the log, and the resources each session holds.
#[derive(Default)]
struct Holders {
    of: HashMap<Resource, Vec<Held>>,
    held_by: HashMap<SessionId, BTreeSet<Resource>>,
}

impl Holders {
    fn of(&self, resource: &Resource) -> &[Held] {
        self.of.get(resource).map_or(&[], Vec::as_slice)
    }

    fn add(&mut self, resource: &Resource, held: Held) {
        self.of.entry(resource.clone()).or_default().push(held);
        self.held_by.entry(held.session).or_default().insert(resource.clone());
    }

    /// Ends the grant (`session`, `token`) of `resource`: false if no such grant is held.
    fn end(&mut self, resource: &Resource, session: SessionId, token: FenceToken) -> bool {
        let Some(holders) = self.of.get_mut(resource) else { return false };
        let Some(place) = holders.iter().position(|h| (h.session, h.token) == (session, token)) else { return false };
        holders.remove(place);
        if let Some(held) = self.held_by.get_mut(&session) {
            held.remove(resource);
        }
        true
    }

    /// Ends everything `session` still holds, returning it.
    fn end_all(&mut self, session: SessionId) -> Vec<(Resource, Held)> {
        let mut out = Vec::new();
        for resource in self.held_by.remove(&session).unwrap_or_default() {
            if let Some(holders) = self.of.get_mut(&resource) {
                holders.retain(|h| {
                    let mine = h.session == session;
                    if mine {
                        out.push((resource.clone(), *h));
                    }
                    !mine
                });
            }
        }
        out
    }
}

fn exclusive_grants(
    events: &[&Applied],
    disagreements: &[String],
    semaphores: &HashMap<Resource, u64>,
) -> Vec<Violation> {
    let mut out: Vec<Violation> =
        disagreements.iter().map(|d| violation(format!("replicas disagree: {d}"), vec![], vec![])).collect();
    let mut holders = Holders::default();
    let mut ended: HashMap<SessionId, (Change, u64)> = HashMap::new();
    for e in events {
        let (Some(session), index) = (e.session, e.index) else { continue };
        match e.change {
            Change::SessionCreated | Change::LockWaiting | Change::LockWaitEnded => {}
            Change::LockAcquired => {
                let (Some(resource), Some(token)) = (e.resource.clone(), e.fence_token) else { continue };
                let shared = is_shared(e);
                let grant = format!(
                    "{} token {token} on {resource} granted at index {index} to session {session}",
                    if shared { "shared" } else { "exclusive" }
                );
                if let Some((how, at)) = ended.get(&session) {
                    out.push(violation(
                        format!("{grant}, which ended ({how:?}) at index {at}"),
                        vec![],
                        vec![*at, index],
                    ));
                }
                let held = holders.of(&resource);
                let mut conflict = |message: String, with: &Held| {
                    out.push(violation(format!("{grant} {message}"), vec![], vec![with.index, index]))
                };
                if let Some(h) = held.iter().find(|h| h.session == session) {
                    conflict(format!("while that session already held it ({})", h.describe()), h);
                } else if let Some(h) = held.iter().find(|h| h.token == token) {
                    conflict(format!("under the token of another holder ({})", h.describe()), h);
                } else if let Some(h) = held.iter().find(|h| !shared || !h.shared) {
                    conflict(format!("while {} held it: {}", held.len(), describe_all(held)), h);
                } else if let Some(limit) = semaphores.get(&resource).filter(|l| held.len() as u64 >= **l) {
                    conflict(
                        format!(
                            "beside {} shared holders, over its limit of {limit}: {}",
                            held.len(),
                            describe_all(held)
                        ),
                        &held[0],
                    );
                }
                holders.add(&resource, Held { session, token, shared, index });
            }
            Change::LockReleased => {
                let (Some(resource), Some(token)) = (e.resource.clone(), e.fence_token) else { continue };
                release(&mut out, &mut holders, session, &resource, token, index);
            }
            Change::SessionDeleted | Change::SessionExpired => {
                for (resource, token) in &e.released {
                    release(&mut out, &mut holders, session, resource, *token, index);
                }
                for (resource, h) in holders.end_all(session) {
                    out.push(violation(
                        format!(
                            "session {session} ended ({:?}) at index {index} but kept {} on {resource}",
                            e.change,
                            h.describe()
                        ),
                        vec![],
                        vec![h.index, index],
                    ));
                }
                ended.entry(session).or_insert((e.change, index));
            }
        }
    }
    out
}

/// Ends the grant (`session`, `resource`, `token`), which must be one that is held.
fn release(
    out: &mut Vec<Violation>,
    holders: &mut Holders,
    session: SessionId,
    resource: &Resource,
    token: FenceToken,
    index: u64,
) {
    if !holders.end(resource, session, token) {
        let held = holders.of(resource);
        let mut indexes: Vec<u64> = held.iter().map(|h| h.index).collect();
        indexes.push(index);
        out.push(violation(
            format!(
                "index {index} released token {token} on {resource} of session {session}, but the holders were: {}",
                describe_all(held)
            ),
            vec![],
            indexes,
        ));
    }
}

/// Check 3 from the workload's side: a reader that saw the fenced store written during its
/// shared hold, while its session had not ended (by leader time, within `margin`).
fn reads_overlapped(ev: &Evidence, events: &[&Applied], margin: f64) -> Vec<Violation> {
    let mut ended: HashMap<SessionId, f64> = HashMap::new();
    for e in events.iter().filter(|e| matches!(e.change, Change::SessionDeleted | Change::SessionExpired)) {
        if let Some(s) = e.session {
            ended.entry(s).or_insert(e.at - ev.started_unix);
        }
    }
    ev.ops
        .iter()
        .filter(|o| o.kind == OpKind::StoreRead && o.error.as_deref() == Some("WRITTEN_DURING_SHARED_HOLD"))
        .filter(|o| o.session.is_none_or(|s| ended.get(&s).is_none_or(|at| *at > o.complete + margin)))
        .map(|o| {
            violation(
                format!(
                    "a reader ({}, session {}) saw the fenced store of {} written during its shared hold under token {} ({:.3}s to {:.3}s)",
                    o.client,
                    o.session.map_or("?".to_string(), |s| s.to_string()),
                    o.resource.as_ref().map_or("?".to_string(), |r| r.to_string()),
                    o.fence_token.map_or(0, |t| t.0),
                    o.invoke,
                    o.complete
                ),
                vec![o.id],
                vec![],
            )
        })
        .collect()
}

fn nothing_lost(ev: &Evidence, events: &[&Applied]) -> Vec<Violation> {
    let mut out = Vec::new();
    let fin = &ev.final_state;
    // Indexes, so that each acknowledged operation is checked in constant time.
    let mut history: HashSet<(Change, SessionId, Option<Resource>, Option<FenceToken>)> = HashSet::new();
    for e in events {
        let Some(session) = e.session else { continue };
        history.insert((e.change, session, None, None));
        history.insert((e.change, session, e.resource.clone(), e.fence_token));
    }
    let expired: HashSet<SessionId> =
        events.iter().filter(|e| e.change == Change::SessionExpired).filter_map(|e| e.session).collect();
    let mut delete_attempted: HashSet<SessionId> = HashSet::new();
    let mut release_attempted: HashSet<(SessionId, Resource, FenceToken)> = HashSet::new();
    for o in ev.ops.iter().filter(|o| o.may_have_applied()) {
        match (o.kind, o.session, &o.resource, o.fence_token) {
            (OpKind::DeleteSession, Some(s), _, _) => {
                delete_attempted.insert(s);
            }
            (OpKind::Release, Some(s), Some(r), Some(t)) => {
                release_attempted.insert((s, r.clone(), t));
            }
            _ => {}
        }
    }
    let final_session = |s: &SessionId| fin.sessions.get(s).copied().unwrap_or(SessionFinal::Absent);
    let holds = |r: &Resource, s: SessionId, t: FenceToken| fin.locks.get(r).is_some_and(|h| h.contains(&(s, t)));
    for op in ev.ops.iter().filter(|o| o.ok()) {
        let Some(session) = op.session else { continue };
        let (change, key, lost) = match (op.kind, op.resource.clone(), op.fence_token) {
            (OpKind::CreateSession, _, _) => {
                // An expired session is forgotten an hour after its expiry, so only runs of over
                // an hour see one gone that way.
                let lost = final_session(&session) == SessionFinal::Absent
                    && !delete_attempted.contains(&session)
                    && !expired.contains(&session);
                let message =
                    format!("session {session} was created but is gone at the end, neither deleted nor expired");
                (Change::SessionCreated, (None, None), lost.then_some(message))
            }
            (OpKind::DeleteSession, _, _) => {
                let now = final_session(&session);
                let message = format!("session {session} was deleted but is {now:?} at the end");
                (Change::SessionDeleted, (None, None), (now != SessionFinal::Absent).then_some(message))
            }
            (OpKind::Acquire, Some(resource), Some(token)) => {
                let explained = holds(&resource, session, token)
                    || release_attempted.contains(&(session, resource.clone(), token))
                    || delete_attempted.contains(&session)
                    || expired.contains(&session)
                    || !fin.locks.contains_key(&resource);
                let message = format!(
                    "token {token} on {resource} of session {session} is not held at the end, and no release, delete or expiry explains it"
                );
                (Change::LockAcquired, (Some(resource), Some(token)), (!explained).then_some(message))
            }
            (OpKind::Release, Some(resource), Some(token)) => {
                let still = holds(&resource, session, token);
                let message = format!("token {token} on {resource} was released but is still held at the end");
                (Change::LockReleased, (Some(resource), Some(token)), still.then_some(message))
            }
            _ => continue,
        };
        if let Some(message) = lost {
            out.push(violation(message, vec![op.id], vec![]));
        }
        if !history.contains(&(change, session, key.0, key.1)) {
            out.push(violation(
                format!("acknowledged {} of session {session} is not in the replicated history", op.kind.name()),
                vec![op.id],
                vec![],
            ));
        }
    }
    // Locks held at the end come from grants in the history.
    for (resource, held) in &fin.locks {
        for (session, token) in held {
            if !history.contains(&(Change::LockAcquired, *session, Some(resource.clone()), Some(*token))) {
                out.push(violation(
                    format!("{resource} is held at the end by token {token} of {session}, which was never granted"),
                    vec![],
                    vec![],
                ));
            }
        }
    }
    let returned = granted(&ev.ops).map(|(op, _, _, t)| (t, op.id)).max();
    if let Some((top, id)) = returned.filter(|(t, _)| t.0 > fin.fence_counter) {
        out.push(violation(
            format!("token {top} was returned but the final fence counter is {}", fin.fence_counter),
            vec![id],
            vec![],
        ));
    }
    let tokens: BTreeSet<u64> =
        events.iter().filter(|e| e.change == Change::LockAcquired).filter_map(|e| e.fence_token.map(|t| t.0)).collect();
    let missing: Vec<u64> = (1..=fin.fence_counter).filter(|t| !tokens.contains(t)).collect();
    if !missing.is_empty() {
        out.push(violation(
            format!(
                "{} tokens up to the final counter {} have no grant in the replicated history, e.g. {:?}",
                missing.len(),
                fin.fence_counter,
                &missing[..missing.len().min(10)]
            ),
            vec![],
            vec![],
        ));
    }
    if let Some(top) = tokens.iter().max().filter(|t| **t > fin.fence_counter) {
        out.push(violation(
            format!("token {top} was granted but the final fence counter is {}", fin.fence_counter),
            vec![],
            vec![],
        ));
    }
    out
}

fn no_false_expiry(ev: &Evidence, events: &[&Applied], margin: f64) -> Vec<Violation> {
    let mut out = Vec::new();
    // Every session a client holds a lease on came from its own acknowledged create.
    let timeouts: HashMap<SessionId, u64> = ev
        .ops
        .iter()
        .filter(|o| o.kind == OpKind::CreateSession)
        .filter_map(|o| Some((o.session?, o.timeout_secs?)))
        .collect();
    // The latest acknowledged lease-giving operation of each session: creation or keepalive.
    let mut latest: HashMap<SessionId, &Op> = HashMap::new();
    for op in ev.ops.iter().filter(|o| o.ok() && matches!(o.kind, OpKind::CreateSession | OpKind::Keepalive)) {
        let Some(session) = op.session else { continue };
        let entry = latest.entry(session).or_insert(op);
        if op.invoke > entry.invoke {
            *entry = op;
        }
    }
    for e in events.iter().filter(|e| e.change == Change::SessionExpired) {
        let Some(session) = e.session else { continue };
        let (Some(op), Some(timeout)) = (latest.get(&session), timeouts.get(&session)) else { continue };
        let expired_at = e.at - ev.started_unix;
        let lease_left = op.invoke + *timeout as f64 - expired_at;
        if lease_left > margin {
            out.push(violation(
                format!(
                    "session {session} (timeout {timeout}s) expired at {expired_at:.3}s (index {}), but its {} invoked at {:.3}s was acknowledged: {lease_left:.3}s of lease were left",
                    e.index,
                    op.kind.name(),
                    op.invoke
                ),
                vec![op.id],
                vec![e.index],
            ));
        }
    }
    out
}

fn nothing_refused_applied(ops: &[Op], events: &[&Applied]) -> Vec<Violation> {
    let mut acquires: HashSet<(SessionId, &Resource)> = HashSet::new();
    let mut releases: HashSet<(SessionId, &Resource, FenceToken)> = HashSet::new();
    let mut deletes: HashSet<SessionId> = HashSet::new();
    for o in ops.iter().filter(|o| o.may_have_applied()) {
        match (o.kind, o.session, &o.resource) {
            (OpKind::Acquire, Some(s), Some(r)) => {
                acquires.insert((s, r));
            }
            (OpKind::Release, Some(s), Some(r)) => {
                if let Some(t) = o.fence_token {
                    releases.insert((s, r, t));
                }
            }
            (OpKind::DeleteSession, Some(s), _) => {
                deletes.insert(s);
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for e in events {
        let Some(session) = e.session else { continue };
        let matched = match (e.change, &e.resource, e.fence_token) {
            (Change::LockAcquired, Some(r), _) => acquires.contains(&(session, r)),
            (Change::LockReleased, Some(r), Some(t)) => releases.contains(&(session, r, t)),
            (Change::SessionDeleted, _, _) => deletes.contains(&session),
            _ => continue,
        };
        if !matched {
            let refused: Vec<usize> = ops
                .iter()
                .filter(|o| o.session == Some(session) && o.outcome == Outcome::Fail && o.resource == e.resource)
                .filter(|o| {
                    matches!(
                        (e.change, o.kind),
                        (Change::LockAcquired, OpKind::Acquire)
                            | (Change::LockReleased, OpKind::Release)
                            | (Change::SessionDeleted, OpKind::DeleteSession)
                    )
                })
                .map(|o| o.id)
                .collect();
            out.push(violation(
                format!(
                    "{:?} of session {session}{} at index {} matches no attempt that was acknowledged or unknown ({} refused attempts)",
                    e.change,
                    e.resource.as_ref().map(|r| format!(" on {r}")).unwrap_or_default(),
                    e.index,
                    refused.len()
                ),
                refused,
                vec![e.index],
            ));
        }
    }
    out
}

/// A waiter in a resource's queue, as the replicated history tells it.
#[derive(Debug, Clone)]
struct Waiter {
    session: SessionId,
    /// The key of its first `lock_waiting`: its place.
    joined: Key,
    /// From its latest `lock_waiting`, leader time.
    deadline: f64,
    shared: bool,
}

impl Waiter {
    fn describe(&self) -> String {
        let mode = if self.shared { "shared" } else { "exclusive" };
        format!("{mode} {} (joined at index {}, deadline {:.3})", self.session, self.joined.0, self.deadline)
    }
}

/// The queues replayed along the log (see the module docs), and the sessions that ended. A
/// check looks at an event against the state before it, then `apply`s it.
#[derive(Default)]
struct Queues {
    waiting: HashMap<Resource, Vec<Waiter>>,
    ended: HashMap<SessionId, (Change, u64)>,
    /// Each resource's holders: session, and whether shared.
    holders: HashMap<Resource, Vec<(SessionId, bool)>>,
    /// The resources changed since `take_touched`, with the latest time stamp of a change.
    touched: BTreeMap<Resource, f64>,
}

impl Queues {
    fn queue(&self, resource: &Resource) -> &[Waiter] {
        self.waiting.get(resource).map_or(&[], Vec::as_slice)
    }

    fn place(&self, resource: &Resource, session: SessionId) -> Option<usize> {
        self.queue(resource).iter().position(|w| w.session == session)
    }

    /// The resources `session` is queued for.
    fn waits_of(&self, session: SessionId) -> Vec<(&Resource, &Waiter)> {
        let mut out: Vec<_> = self
            .waiting
            .iter()
            .flat_map(|(r, q)| q.iter().filter(|w| w.session == session).map(move |w| (r, w)))
            .collect();
        out.sort_by_key(|(r, _)| (*r).clone());
        out
    }

    fn remove(&mut self, resource: &Resource, session: SessionId) -> Option<Waiter> {
        let queue = self.waiting.get_mut(resource)?;
        let place = queue.iter().position(|w| w.session == session)?;
        Some(queue.remove(place))
    }

    fn touch(&mut self, resource: &Resource, at: f64) {
        let latest = self.touched.entry(resource.clone()).or_insert(at);
        *latest = latest.max(at);
    }

    fn apply(&mut self, e: &Applied) {
        let Some(session) = e.session else { return };
        if let Some(resource) = &e.resource {
            self.touch(resource, e.at);
        }
        match (e.change, &e.resource) {
            (Change::LockWaiting, Some(resource)) => {
                // A wait of an ended session is check 10's; it takes no place here.
                if self.ended.contains_key(&session) {
                    return;
                }
                let deadline = e.deadline.unwrap_or(f64::INFINITY);
                let queue = self.waiting.entry(resource.clone()).or_default();
                match queue.iter_mut().find(|w| w.session == session) {
                    Some(w) => w.deadline = deadline,
                    None => queue.push(Waiter { session, joined: e.key(), deadline, shared: is_shared(e) }),
                }
            }
            (Change::LockWaitEnded, Some(resource)) => {
                self.remove(resource, session);
            }
            (Change::LockAcquired, Some(resource)) => {
                self.remove(resource, session);
                self.holders.entry(resource.clone()).or_default().push((session, is_shared(e)));
            }
            (Change::LockReleased, Some(resource)) => {
                if let Some(holders) = self.holders.get_mut(resource) {
                    holders.retain(|(s, _)| *s != session);
                }
            }
            (Change::SessionDeleted | Change::SessionExpired, _) => {
                let mut changed: Vec<Resource> = Vec::new();
                for (resource, queue) in &mut self.waiting {
                    if queue.iter().any(|w| w.session == session) {
                        queue.retain(|w| w.session != session);
                        changed.push(resource.clone());
                    }
                }
                for (resource, holders) in &mut self.holders {
                    if holders.iter().any(|(s, _)| *s == session) {
                        holders.retain(|(s, _)| *s != session);
                        changed.push(resource.clone());
                    }
                }
                for resource in changed {
                    self.touch(&resource, e.at);
                }
                self.ended.entry(session).or_insert((e.change, e.index));
            }
            _ => {}
        }
    }

    /// The resources changed since the last call, with the time of their latest change.
    fn take_touched(&mut self) -> BTreeMap<Resource, f64> {
        std::mem::take(&mut self.touched)
    }

    /// The head of `resource`'s queue if the holders admit it (see check 9), its session is
    /// live and its deadline is later than `at`: a waiter the service should have granted.
    fn admitted_head(&self, resource: &Resource, at: f64, limit: Option<u64>) -> Option<&Waiter> {
        let head = self.queue(resource).first()?;
        let holders = self.holders.get(resource).map_or(&[][..], Vec::as_slice);
        let fits = holders.is_empty()
            || (head.shared
                && holders.iter().all(|(_, shared)| *shared)
                && limit.is_none_or(|l| (holders.len() as u64) < l));
        (fits && head.deadline > at && !self.ended.contains_key(&head.session)).then_some(head)
    }

    fn holders_of(&self, resource: &Resource) -> String {
        let holders = self.holders.get(resource).map_or(&[][..], Vec::as_slice);
        if holders.is_empty() {
            return "no holder".to_string();
        }
        let shared = holders.iter().filter(|(_, s)| *s).count();
        format!("{} holders ({shared} shared)", holders.len())
    }
}

fn queue_grants(events: &[&Applied]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut queues = Queues::default();
    for e in events {
        if let (Change::LockAcquired, true, Some(session), Some(resource)) =
            (e.change, e.queued, e.session, &e.resource)
        {
            let token = e.fence_token.map_or(0, |t| t.0);
            let grant =
                format!("token {token} on {resource} handed from the queue to session {session} at index {}", e.index);
            if let Some((how, at)) = queues.ended.get(&session) {
                out.push(violation(
                    format!("{grant}, which ended ({how:?}) at index {at}"),
                    vec![],
                    vec![*at, e.index],
                ));
            } else {
                match queues.place(resource, session).map(|p| &queues.queue(resource)[p]) {
                    None => {
                        out.push(violation(format!("{grant}, which was not waiting for it"), vec![], vec![e.index]))
                    }
                    Some(w) if e.at > w.deadline => out.push(violation(
                        format!("{grant} at {:.3}, after the waiter's deadline {:.3}", e.at, w.deadline),
                        vec![],
                        vec![w.joined.0, e.index],
                    )),
                    Some(_) => {}
                }
            }
        }
        queues.apply(e);
    }
    out
}

fn queue_order(events: &[&Applied], semaphores: &HashMap<Resource, u64>, margin: f64) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut queues = Queues::default();
    for (i, e) in events.iter().enumerate() {
        // After the last change of each entry: no head left waiting that its resource admits.
        let entry_ends = events.get(i + 1).is_none_or(|next| next.index != e.index);
        let (Some(session), Some(resource)) = (e.session, &e.resource) else {
            queues.apply(e);
            if entry_ends {
                held_back(&mut out, &mut queues, e.index, semaphores);
            }
            continue;
        };
        match e.change {
            Change::LockAcquired => {
                let queue = queues.queue(resource);
                let place = queues.place(resource, session);
                let ahead = &queue[..place.unwrap_or(queue.len())];
                // A waiter whose deadline has come may be skipped before the sweep removes it.
                if let Some(w) = ahead.iter().find(|w| w.deadline > e.at) {
                    let mode = if is_shared(e) { "shared" } else { "exclusive" };
                    let grantee = match place {
                        Some(p) => format!("waiter {}", queue[p].describe()),
                        None => format!("{mode} session {session}, which was not waiting"),
                    };
                    let what = if is_shared(e) && !w.shared { " (a reader ahead of a queued writer)" } else { "" };
                    out.push(violation(
                        format!(
                            "{resource} granted at index {} (at {:.3}, token {}) to {grantee}, while {} was still waiting ahead{what}",
                            e.index,
                            e.at,
                            e.fence_token.map_or(0, |t| t.0),
                            w.describe()
                        ),
                        vec![],
                        vec![w.joined.0, e.index],
                    ));
                }
            }
            Change::LockWaitEnded => match queues.place(resource, session).map(|p| &queues.queue(resource)[p]) {
                None if !queues.ended.contains_key(&session) => out.push(violation(
                    format!(
                        "index {} ended the wait of session {session} for {resource}, which was not waiting",
                        e.index
                    ),
                    vec![],
                    vec![e.index],
                )),
                Some(w) if e.reason == Some(WaitEnd::Timeout) && e.at + margin < w.deadline => out.push(violation(
                    format!(
                        "index {} timed out waiter {} on {resource} at {:.3}, before its deadline",
                        e.index,
                        w.describe(),
                        e.at
                    ),
                    vec![],
                    vec![w.joined.0, e.index],
                )),
                _ => {}
            },
            _ => {}
        }
        queues.apply(e);
        if entry_ends {
            held_back(&mut out, &mut queues, e.index, semaphores);
        }
    }
    out
}

/// At the end of log entry `index`: every resource the entry changed whose queue has a head
/// its holders admit (a violation of check 9's last rule).
fn held_back(out: &mut Vec<Violation>, queues: &mut Queues, index: u64, semaphores: &HashMap<Resource, u64>) {
    for (resource, at) in queues.take_touched() {
        if let Some(head) = queues.admitted_head(&resource, at, semaphores.get(&resource).copied()) {
            let what = if head.shared && queues.holders.get(&resource).is_some_and(|h| !h.is_empty()) {
                "a shared waiter left out of the shared holders' batch"
            } else {
                "the head of the queue left waiting"
            };
            out.push(violation(
                format!(
                    "after index {index} (at {at:.3}), {resource} has {} and admits its head {}, but it was not granted: {what}",
                    queues.holders_of(&resource),
                    head.describe()
                ),
                vec![],
                vec![head.joined.0, index],
            ));
        }
    }
}

fn no_orphan_waiters(events: &[&Applied], fin: &FinalState) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut queues = Queues::default();
    for e in events {
        let Some(session) = e.session else { continue };
        match e.change {
            Change::LockWaiting => {
                if let Some((how, at)) = queues.ended.get(&session) {
                    out.push(violation(
                        format!(
                            "index {} queued session {session} for {}, but the session ended ({how:?}) at index {at}",
                            e.index,
                            e.resource.as_ref().map_or("?".to_string(), |r| r.to_string())
                        ),
                        vec![],
                        vec![*at, e.index],
                    ));
                }
            }
            Change::SessionDeleted | Change::SessionExpired => {
                for (resource, w) in queues.waits_of(session) {
                    out.push(violation(
                        format!("session {session} ended ({:?}) at index {} while still waiting for {resource} (joined at index {})", e.change, e.index, w.joined.0),
                        vec![],
                        vec![w.joined.0, e.index],
                    ));
                }
            }
            _ => {}
        }
        queues.apply(e);
    }
    // The final state. A session ended before the final reads only if its end is in the
    // history before the settle marker: a later end may have come between the read of a queue
    // and the read of the session, so a waiter that reads as expired or absent is one only if
    // the history has no end for its session at all.
    let ended_before_reads =
        |s: &SessionId| queues.ended.get(s).filter(|(_, at)| fin.settled.is_some_and(|settled| *at < settled)).copied();
    for (resource, (waiters, length)) in &fin.waiters {
        if waiters.len() as u64 != *length {
            out.push(violation(
                format!("{resource} lists {} waiters at the end but a queue_length of {length}", waiters.len()),
                vec![],
                vec![],
            ));
        }
        for s in waiters {
            let read = fin.sessions.get(s).copied();
            if let Some((how, at)) = ended_before_reads(s) {
                out.push(violation(
                    format!(
                        "session {s} is still waiting for {resource} at the end, but it ended ({how:?}) at index {at}"
                    ),
                    vec![],
                    vec![at],
                ));
            } else if matches!(read, Some(SessionFinal::Expired | SessionFinal::Absent))
                && !queues.ended.contains_key(s)
            {
                out.push(violation(
                    format!(
                        "session {s} is still waiting for {resource} at the end, but reads as {:?}",
                        read.unwrap_or(SessionFinal::Absent)
                    ),
                    vec![],
                    vec![],
                ));
            }
        }
    }
    for (s, resources) in fin.waiting_for.iter().filter(|(_, rs)| !rs.is_empty()) {
        if fin.sessions.get(s) == Some(&SessionFinal::Expired) {
            out.push(violation(
                format!("session {s} reads as expired at the end but is waiting for {resources:?}"),
                vec![],
                vec![],
            ));
        } else if let Some((how, at)) = ended_before_reads(s) {
            out.push(violation(
                format!("session {s} is waiting for {resources:?} at the end, but it ended ({how:?}) at index {at}"),
                vec![],
                vec![at],
            ));
        }
    }
    out
}

fn liveness(fin: &FinalState, bound: f64) -> Vec<Violation> {
    match fin.liveness {
        Some(s) if s <= bound => vec![],
        Some(s) => vec![violation(
            format!("the first write after the last heal succeeded only after {s:.2}s (bound {bound}s)"),
            vec![],
            vec![],
        )],
        None => vec![violation(format!("no write succeeded within {bound}s of the last heal"), vec![], vec![])],
    }
}

/// Counts of operations by kind and outcome.
pub fn tally(ops: &[Op]) -> BTreeMap<OpKind, BTreeMap<Outcome, usize>> {
    let mut t: BTreeMap<OpKind, BTreeMap<Outcome, usize>> = BTreeMap::new();
    for op in ops {
        *t.entry(op.kind).or_default().entry(op.outcome).or_default() += 1;
    }
    t
}

#[cfg(test)]
mod tests;

//! The checker against hand-made histories: one clean run that must pass every check, and a
//! table of runs each broken in one way that a given check must catch.

use super::*;
use crate::history::op;

const LIMITS: Limits = Limits { expiry_margin: 0.5, liveness_bound: 5.0 };

fn sid(n: u128) -> SessionId {
    SessionId::parse(&format!("{n:032x}")).unwrap()
}

fn res(name: &str) -> Resource {
    Resource::new(name).unwrap()
}

fn t(n: u64) -> FenceToken {
    FenceToken(n)
}

/// An operation: `(kind, session, resource, token, invoke, complete, outcome)`.
fn o(kind: OpKind, s: u128, r: Option<&str>, token: Option<u64>, invoke: f64, complete: f64, outcome: Outcome) -> Op {
    let mut op = op("test", 1, kind, invoke);
    op.session = Some(sid(s));
    op.resource = r.map(res);
    op.fence_token = token.map(t);
    op.timeout_secs = (kind == OpKind::CreateSession).then_some(10);
    op.complete = complete;
    op.outcome = outcome;
    op.status = Some(if outcome == Outcome::Ok { 200 } else { 503 });
    op
}

/// A replicated event: `(index, change, at, session, resource, token, released)`.
fn e(
    index: u64,
    change: Change,
    at: f64,
    s: u128,
    r: Option<&str>,
    token: Option<u64>,
    released: &[(&str, u64)],
) -> Applied {
    Applied {
        index,
        position: 0,
        change,
        at,
        session: Some(sid(s)),
        resource: r.map(res),
        fence_token: token.map(t),
        timeout_secs: (change == Change::SessionCreated).then_some(10),
        released: released.iter().map(|(r, n)| (res(r), t(*n))).collect(),
        queued: false,
        mode: None,
        waited: None,
        since: None,
        deadline: None,
        place: None,
        reason: None,
    }
}

/// `event` as the change at `position` of its entry.
fn at_position(mut event: Applied, position: u32) -> Applied {
    event.position = position;
    event
}

/// A `lock_waiting`: `(index, at, session, resource, since, deadline)`.
fn waiting(index: u64, at: f64, s: u128, r: &str, since: f64, deadline: f64) -> Applied {
    let mut event = e(index, LockWaiting, at, s, Some(r), None, &[]);
    (event.since, event.deadline) = (Some(since), Some(deadline));
    event
}

/// A `lock_wait_ended`: `(index, at, session, resource, reason)`.
fn wait_ended(index: u64, at: f64, s: u128, r: &str, reason: WaitEnd) -> Applied {
    let mut event = e(index, LockWaitEnded, at, s, Some(r), None, &[]);
    event.reason = Some(reason);
    event
}

/// A `lock_acquired` handed from the queue: `(index, at, session, resource, token)`.
fn handed(index: u64, at: f64, s: u128, r: &str, token: u64) -> Applied {
    let mut event = e(index, LockAcquired, at, s, Some(r), Some(token), &[]);
    event.queued = true;
    event
}

/// A waiting acquire: an acquire with `wait_secs`.
fn w(s: u128, r: &str, token: Option<u64>, invoke: f64, complete: f64, outcome: Outcome, status: u16) -> Op {
    let mut op = o(Acquire, s, Some(r), token, invoke, complete, outcome);
    op.wait_secs = Some(3);
    op.status = Some(status);
    op
}

const A: u128 = 1;
const B: u128 = 2;
const C: u128 = 3;
const D: u128 = 4;
const E: u128 = 5;
const F: u128 = 6;
const G: u128 = 7;
use crate::events::WaitEnd;
use Change::*;
use OpKind::*;
use Outcome::{Ok as Acked, Unknown};

/// A clean run: A takes r (token 1) and releases it, B takes r (token 2) and keeps it, A is
/// deleted, C takes r2 (token 3) and expires 10 s after its last keepalive.
///
/// Then a queue on q: D takes q (token 4); F, E and G wait, in that order, and E's retry moves
/// its deadline; D releases q when F's deadline has passed but the sweep has not yet removed
/// F, so q goes from the queue to E (token 5) in the same entry, and F times out; G is deleted
/// while waiting, its wait ending first in the same entry.
fn clean() -> Evidence {
    let ops = vec![
        o(CreateSession, A, None, None, 0.0, 0.1, Acked),
        o(CreateSession, B, None, None, 0.2, 0.3, Acked),
        o(Acquire, A, Some("r"), Some(1), 1.0, 1.1, Acked),
        o(Keepalive, A, None, None, 1.5, 1.6, Acked),
        o(Release, A, Some("r"), Some(1), 2.0, 2.1, Acked),
        o(Acquire, B, Some("r"), Some(2), 3.0, 3.1, Acked),
        // A retry whose answer was lost, then the idempotent answer with the same token.
        o(Acquire, B, Some("r"), None, 3.2, 9.2, Unknown),
        o(Acquire, B, Some("r"), Some(2), 9.3, 9.4, Acked),
        o(Keepalive, B, None, None, 4.0, 4.1, Acked),
        o(DeleteSession, A, None, None, 6.0, 6.1, Acked),
        o(CreateSession, C, None, None, 7.0, 7.1, Acked),
        o(Acquire, C, Some("r2"), Some(3), 7.2, 7.3, Acked),
        // The last keepalive: its lease ran out at 17.4, the expiry came at 17.5.
        o(Keepalive, C, None, None, 7.4, 7.45, Acked),
        o(CreateSession, D, None, None, 20.0, 20.05, Acked),
        o(CreateSession, E, None, None, 20.1, 20.15, Acked),
        o(CreateSession, F, None, None, 20.2, 20.25, Acked),
        o(CreateSession, G, None, None, 20.3, 20.35, Acked),
        o(Acquire, D, Some("q"), Some(4), 21.0, 21.05, Acked),
        w(F, "q", None, 21.1, 22.35, Outcome::Fail, 409),
        // E's first wait lost its connection; the retry kept its place and got the grant.
        w(E, "q", None, 21.2, 21.25, Unknown, 503),
        w(E, "q", Some(5), 21.3, 23.05, Acked, 201),
        w(G, "q", None, 21.35, 23.55, Outcome::Fail, 404),
        o(Release, D, Some("q"), Some(4), 22.9, 23.05, Acked),
        o(DeleteSession, G, None, None, 23.4, 23.55, Acked),
    ];
    let ops = ops.into_iter().enumerate().map(|(i, mut op)| {
        op.id = i;
        op
    });
    let events = vec![
        e(1, SessionCreated, 0.05, A, None, None, &[]),
        e(2, SessionCreated, 0.25, B, None, None, &[]),
        e(3, LockAcquired, 1.05, A, Some("r"), Some(1), &[]),
        e(4, LockReleased, 2.05, A, Some("r"), Some(1), &[]),
        e(5, LockAcquired, 3.05, B, Some("r"), Some(2), &[]),
        e(6, SessionDeleted, 6.05, A, None, None, &[]),
        e(7, SessionCreated, 7.05, C, None, None, &[]),
        e(8, LockAcquired, 7.25, C, Some("r2"), Some(3), &[]),
        e(9, SessionExpired, 17.5, C, None, None, &[("r2", 3)]),
        e(10, SessionCreated, 20.02, D, None, None, &[]),
        e(11, SessionCreated, 20.12, E, None, None, &[]),
        e(12, SessionCreated, 20.22, F, None, None, &[]),
        e(13, SessionCreated, 20.32, G, None, None, &[]),
        e(14, LockAcquired, 21.02, D, Some("q"), Some(4), &[]),
        waiting(15, 21.12, F, "q", 21.12, 22.12),
        waiting(16, 21.22, E, "q", 21.22, 24.22),
        waiting(17, 21.32, E, "q", 21.22, 24.32),
        waiting(18, 21.37, G, "q", 21.37, 24.37),
        e(19, LockReleased, 23.0, D, Some("q"), Some(4), &[]),
        at_position(handed(19, 23.0, E, "q", 5), 1),
        wait_ended(20, 23.2, F, "q", WaitEnd::Timeout),
        wait_ended(21, 23.5, G, "q", WaitEnd::SessionEnded),
        at_position(e(21, SessionDeleted, 23.5, G, None, None, &[]), 1),
    ];
    Evidence {
        ops: ops.collect(),
        events,
        disagreements: vec![],
        final_state: FinalState {
            fence_counter: 5,
            locks: [(res("r"), Some((sid(B), t(2)))), (res("r2"), None), (res("q"), Some((sid(E), t(5))))]
                .into_iter()
                .collect(),
            sessions: [
                (sid(A), SessionFinal::Absent),
                (sid(B), SessionFinal::Live),
                (sid(C), SessionFinal::Expired),
                (sid(D), SessionFinal::Live),
                (sid(E), SessionFinal::Live),
                (sid(F), SessionFinal::Live),
                (sid(G), SessionFinal::Absent),
            ]
            .into_iter()
            .collect(),
            waiters: [(res("r"), (vec![], 0)), (res("r2"), (vec![], 0)), (res("q"), (vec![], 0))].into_iter().collect(),
            waiting_for: BTreeMap::new(),
            settled: Some(22),
            liveness: Some(0.4),
        },
        started_unix: 0.0,
    }
}

fn add_op(ev: &mut Evidence, mut op: Op) {
    op.id = ev.ops.len();
    ev.ops.push(op);
}

fn without_event(ev: &mut Evidence, index: u64) {
    ev.events.retain(|e| e.index != index);
}

/// (what is wrong, the check that must catch it, how to break the clean run)
type Case = (&'static str, u8, fn(&mut Evidence));

const CASES: &[Case] = &[
    ("one token acknowledged for two grants", 1, |ev| add_op(ev, o(Acquire, C, Some("r3"), Some(2), 7.5, 7.6, Acked))),
    ("one token granted twice in the log", 1, |ev| {
        ev.events.push(e(30, LockAcquired, 30.0, B, Some("r3"), Some(2), &[]))
    }),
    ("a token lower than an earlier one in the log", 1, |ev| {
        ev.events.push(e(30, LockAcquired, 30.0, B, Some("r3"), Some(7), &[]));
        ev.events.push(e(31, LockAcquired, 30.1, B, Some("r4"), Some(6), &[]));
    }),
    ("an acquire after an acknowledged grant gets a lower token", 2, |ev| {
        add_op(ev, o(Acquire, A, Some("r"), Some(1), 3.5, 3.6, Acked))
    }),
    ("a grant while the previous grant was held", 3, |ev| without_event(ev, 4)),
    ("a grant to an expired session", 3, |ev| ev.events.push(e(30, LockAcquired, 30.0, C, Some("r3"), Some(6), &[]))),
    ("an expiry that keeps the session's lock", 3, |ev| {
        without_event(ev, 9);
        ev.events.push(e(9, SessionExpired, 17.5, C, None, None, &[]));
    }),
    ("a release of a grant that was not held", 3, |ev| {
        ev.events.push(e(30, LockReleased, 30.0, A, Some("r"), Some(1), &[]))
    }),
    ("replicas that disagree on an entry", 3, |ev| ev.disagreements.push("node 2 reported index 5 differently".into())),
    ("an acknowledged grant missing from the final state", 4, |ev| {
        ev.final_state.locks.insert(res("r"), None);
    }),
    ("an acknowledged release still held at the end", 4, |ev| {
        add_op(ev, o(Release, B, Some("r"), Some(2), 30.0, 30.1, Acked));
        ev.events.push(e(30, LockReleased, 30.05, B, Some("r"), Some(2), &[]));
    }),
    ("an acknowledged delete whose session is still there", 4, |ev| {
        ev.final_state.sessions.insert(sid(A), SessionFinal::Live);
    }),
    ("an acknowledged session gone without a delete", 4, |ev| {
        ev.final_state.sessions.insert(sid(B), SessionFinal::Absent);
    }),
    ("an acknowledged grant missing from the replicated history", 4, |ev| without_event(ev, 5)),
    ("a final fence counter below a returned token", 4, |ev| ev.final_state.fence_counter = 2),
    ("a lock held at the end that was never granted", 4, |ev| {
        ev.final_state.locks.insert(res("r2"), Some((sid(C), t(3))));
        ev.events.retain(|e| e.index != 8);
    }),
    ("an expiry while an acknowledged keepalive's lease was running", 5, |ev| {
        add_op(ev, o(Keepalive, C, None, None, 12.0, 12.1, Acked))
    }),
    ("a keepalive acknowledged after the expiry", 5, |ev| add_op(ev, o(Keepalive, C, None, None, 18.0, 18.1, Acked))),
    ("no write after the last heal", 6, |ev| ev.final_state.liveness = None),
    ("writes back only after the bound", 6, |ev| ev.final_state.liveness = Some(30.0)),
    ("a grant from an acquire the service refused", 7, |ev| {
        add_op(ev, o(Acquire, B, Some("r3"), None, 30.0, 30.1, Outcome::Fail));
        ev.events.push(e(30, LockAcquired, 30.05, B, Some("r3"), Some(6), &[]));
        ev.final_state.fence_counter = 6;
    }),
    ("a release nobody asked for", 7, |ev| {
        ev.events.push(e(30, LockReleased, 30.0, B, Some("r"), Some(2), &[]));
    }),
    ("a delete the service said it did not apply", 7, |ev| {
        add_op(ev, o(DeleteSession, C, None, None, 30.0, 30.1, Outcome::Fail));
        ev.events.push(e(30, SessionDeleted, 30.05, C, None, None, &[]));
    }),
    ("a grant from a wait the service answered with its deadline", 7, |ev| {
        // F's wait got 409 after its deadline, but the queue handed it q after all.
        add_op(ev, o(Release, E, Some("q"), Some(5), 29.9, 30.1, Acked));
        ev.events.push(e(30, LockReleased, 30.0, E, Some("q"), Some(5), &[]));
        ev.events.push(at_position(handed(30, 30.0, F, "q", 6), 1));
        ev.events.retain(|e| e.index != 20);
        ev.final_state.fence_counter = 6;
    }),
    ("a grant from the queue to a session that was not waiting", 8, |ev| {
        ev.events.retain(|e| !(e.change == LockWaiting && e.session == Some(sid(E))));
    }),
    ("a grant from the queue after the waiter's latest deadline", 8, |ev| {
        // E's retry moved its deadline to before the hand-off (the first one was later).
        ev.events.iter_mut().filter(|e| e.index == 17).for_each(|e| e.deadline = Some(22.9));
    }),
    ("a grant from the queue to a session that had ended", 8, |ev| {
        ev.events.push(at_position(e(18, SessionExpired, 21.37, E, None, None, &[]), 1));
    }),
    ("a later waiter granted while an earlier one was still waiting", 9, |ev| {
        // F's deadline had not come when q went to E behind it.
        ev.events.iter_mut().filter(|e| e.index == 15).for_each(|e| e.deadline = Some(30.0));
        ev.events.retain(|e| e.index != 20);
        ev.final_state.waiters.insert(res("q"), (vec![sid(F)], 1));
    }),
    ("a try-lock granted ahead of the queue", 9, |ev| {
        ev.events.push(waiting(30, 30.0, F, "q", 30.0, 33.0));
        ev.events.push(e(31, LockReleased, 30.5, E, Some("q"), Some(5), &[]));
        ev.events.push(e(32, LockAcquired, 30.6, D, Some("q"), Some(6), &[]));
        ev.final_state.fence_counter = 6;
    }),
    ("a waiter timed out before its deadline", 9, |ev| {
        ev.events.push(waiting(30, 30.0, D, "q", 30.0, 33.0));
        ev.events.push(wait_ended(31, 31.0, D, "q", WaitEnd::Timeout));
    }),
    ("the end of a wait that was not in the queue", 9, |ev| {
        ev.events.push(wait_ended(30, 30.0, D, "q", WaitEnd::Cancelled))
    }),
    ("a session deleted while still waiting", 10, |ev| ev.events.retain(|e| !(e.index == 21 && e.position == 0))),
    ("a session queued after it ended", 10, |ev| ev.events.push(waiting(30, 30.0, G, "q", 30.0, 33.0))),
    ("a waiter left at the end whose session ended in the history", 10, |ev| {
        ev.final_state.waiters.insert(res("q"), (vec![sid(G)], 1));
    }),
    ("a waiter left at the end whose session reads as expired", 10, |ev| {
        let ghost = sid(99);
        ev.final_state.sessions.insert(ghost, SessionFinal::Expired);
        ev.final_state.waiters.insert(res("r2"), (vec![ghost], 1));
    }),
    ("an expired session still waiting for a lock", 10, |ev| {
        ev.final_state.waiting_for.insert(sid(C), vec![res("q")]);
    }),
    ("a queue length that is not the number of waiters", 10, |ev| {
        ev.final_state.waiters.insert(res("q"), (vec![], 2));
    }),
];

fn counts(ev: &Evidence) -> Vec<(u8, usize)> {
    check(ev, LIMITS).iter().map(|c| (c.number, c.violations.len())).collect()
}

#[test]
fn a_clean_history_passes_every_check() {
    let results = check(&clean(), LIMITS);
    for r in &results {
        assert!(r.violations.is_empty(), "check {} ({}): {:#?}", r.number, r.name, r.violations);
    }
    assert_eq!(results.len(), 10);
}

#[test]
fn each_kind_of_violation_is_caught_by_its_check() {
    let mut missed = Vec::new();
    for (what, number, break_it) in CASES {
        let mut ev = clean();
        break_it(&mut ev);
        let counts = counts(&ev);
        let caught = counts.iter().any(|(n, v)| n == number && *v > 0);
        if !caught {
            missed.push(format!("{what}: check {number} found nothing ({counts:?})"));
        }
    }
    assert!(missed.is_empty(), "missed:\n{}", missed.join("\n"));
}

#[test]
fn the_expiry_margin_forgives_clock_reading_differences_only() {
    // C's last keepalive at 7.9 leaves 0.4 s of lease at the 17.5 s expiry: within the margin.
    let mut ev = clean();
    add_op(&mut ev, o(Keepalive, C, None, None, 7.9, 8.0, Acked));
    assert_eq!(counts(&ev)[4], (5, 0));
    // An unacknowledged keepalive proves nothing about the lease.
    let mut ev = clean();
    add_op(&mut ev, o(Keepalive, C, None, None, 12.0, 14.0, Unknown));
    assert_eq!(counts(&ev)[4], (5, 0));
}

#[test]
fn changes_batched_into_one_entry_are_ordered_by_position() {
    // The leader put A's release and B's acquire of `r` into one log entry, in that order.
    let batched = |release_first: bool| {
        let mut ev = clean();
        for event in &mut ev.events {
            if event.index == 5 {
                event.index = 4;
                event.position = if release_first { 1 } else { 0 };
            } else if event.index == 4 {
                event.position = if release_first { 0 } else { 1 };
            }
        }
        ev
    };
    let results = check(&batched(true), LIMITS);
    for r in &results {
        assert!(r.violations.is_empty(), "check {} ({}): {:#?}", r.number, r.name, r.violations);
    }
    // The same two changes in the other order would be a grant of a held lock.
    assert!(counts(&batched(false)).iter().any(|(n, v)| *n == 3 && *v > 0));
}

#[test]
fn a_waiter_whose_session_ends_during_the_final_reads_is_not_left_behind() {
    // The read of q listed G as a waiter; G's deletion came after the settle marker, so it may
    // have come after that read: no violation. Before the marker, it would be one.
    let mut ev = clean();
    ev.final_state.waiters.insert(res("q"), (vec![sid(G)], 1));
    ev.final_state.settled = Some(21);
    assert_eq!(counts(&ev)[9], (10, 0));
    ev.final_state.settled = Some(22);
    assert_eq!(counts(&ev)[9], (10, 1));
}

#[test]
fn a_timeout_stamped_a_little_before_its_deadline_is_within_the_margin() {
    // Only a grant carries the time the state machine used; a timeout carries its command's
    // stamp, which can be a little earlier.
    let mut ev = clean();
    ev.events.push(waiting(30, 30.0, D, "q", 30.0, 33.0));
    ev.events.push(wait_ended(31, 32.7, D, "q", WaitEnd::Timeout));
    assert_eq!(counts(&ev)[8], (9, 0));
}

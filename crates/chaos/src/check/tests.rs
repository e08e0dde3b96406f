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
fn e(index: u64, change: Change, at: f64, s: u128, r: Option<&str>, token: Option<u64>, released: &[(&str, u64)]) -> Applied {
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
    }
}

const A: u128 = 1;
const B: u128 = 2;
const C: u128 = 3;
use Change::*;
use OpKind::*;
use Outcome::{Ok as Acked, Unknown};

/// A clean run: A takes r (token 1) and releases it, B takes r (token 2) and keeps it, A is
/// deleted, C takes r2 (token 3) and expires 10 s after its last keepalive.
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
    ];
    Evidence {
        ops: ops.collect(),
        events,
        disagreements: vec![],
        final_state: FinalState {
            fence_counter: 3,
            locks: [(res("r"), Some((sid(B), t(2)))), (res("r2"), None)].into_iter().collect(),
            sessions: [(sid(A), SessionFinal::Absent), (sid(B), SessionFinal::Live), (sid(C), SessionFinal::Expired)]
                .into_iter()
                .collect(),
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
    ("one token granted twice in the log", 1, |ev| ev.events.push(e(10, LockAcquired, 8.0, B, Some("r3"), Some(2), &[]))),
    ("a token lower than an earlier one in the log", 1, |ev| {
        ev.events.push(e(10, LockAcquired, 8.0, B, Some("r3"), Some(5), &[]));
        ev.events.push(e(11, LockAcquired, 8.1, B, Some("r4"), Some(4), &[]));
    }),
    ("an acquire after an acknowledged grant gets a lower token", 2, |ev| {
        add_op(ev, o(Acquire, A, Some("r"), Some(1), 3.5, 3.6, Acked))
    }),
    ("a grant while the previous grant was held", 3, |ev| without_event(ev, 4)),
    ("a grant to an expired session", 3, |ev| ev.events.push(e(10, LockAcquired, 18.0, C, Some("r3"), Some(4), &[]))),
    ("an expiry that keeps the session's lock", 3, |ev| {
        without_event(ev, 9);
        ev.events.push(e(9, SessionExpired, 17.5, C, None, None, &[]));
    }),
    ("a release of a grant that was not held", 3, |ev| ev.events.push(e(10, LockReleased, 8.0, A, Some("r"), Some(1), &[]))),
    ("replicas that disagree on an entry", 3, |ev| ev.disagreements.push("node 2 reported index 5 differently".into())),
    ("an acknowledged grant missing from the final state", 4, |ev| {
        ev.final_state.locks.insert(res("r"), None);
    }),
    ("an acknowledged release still held at the end", 4, |ev| {
        add_op(ev, o(Release, B, Some("r"), Some(2), 10.0, 10.1, Acked));
        ev.events.push(e(10, LockReleased, 10.05, B, Some("r"), Some(2), &[]));
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
        add_op(ev, o(Acquire, B, Some("r3"), None, 8.0, 8.1, Outcome::Fail));
        ev.events.push(e(10, LockAcquired, 8.05, B, Some("r3"), Some(4), &[]));
        ev.final_state.fence_counter = 4;
    }),
    ("a release nobody asked for", 7, |ev| {
        ev.events.push(e(10, LockReleased, 8.0, B, Some("r"), Some(2), &[]));
    }),
    ("a delete the service said it did not apply", 7, |ev| {
        add_op(ev, o(DeleteSession, C, None, None, 8.0, 8.1, Outcome::Fail));
        ev.events.push(e(10, SessionDeleted, 8.05, C, None, None, &[]));
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
    assert_eq!(results.len(), 7);
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

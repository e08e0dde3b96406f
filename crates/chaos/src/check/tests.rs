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
        value: None,
        limit: None,
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

/// `event` in shared mode (a grant or a waiter), with a semaphore's `limit` for a waiter.
fn shared(mut event: Applied, limit: Option<u64>) -> Applied {
    event.mode = Some("shared".into());
    if event.change == LockWaiting {
        event.limit = limit;
    }
    event
}

/// `op` asking for a shared grant, with a semaphore's `limit`.
fn sh(mut op: Op, limit: Option<u64>) -> Op {
    op.shared = true;
    op.limit = limit;
    op
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
const H: u128 = 8;
const I: u128 = 9;
const J: u128 = 10;
const K: u128 = 11;
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
///
/// Then shared locks. H reads `rw` (shared, token 6); J waits to write it (exclusive) behind
/// H, and I and K wait to read it behind J: readers do not pass a queued writer. H releases:
/// J gets `rw` (token 7); J releases: I and K get it together (tokens 8 and 9, one entry). I
/// releases; K keeps it. On the semaphore `sem` (limit 2), H and I take permits (tokens 10 and
/// 11) and J waits; H releases and J gets the permit (token 12); I and J keep theirs.
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
        o(CreateSession, H, None, None, 39.9, 40.05, Acked),
        o(CreateSession, I, None, None, 40.0, 40.15, Acked),
        o(CreateSession, J, None, None, 40.1, 40.25, Acked),
        o(CreateSession, K, None, None, 40.2, 40.35, Acked),
        sh(o(Acquire, H, Some("rw"), Some(6), 40.95, 41.05, Acked), None),
        w(J, "rw", Some(7), 41.05, 41.55, Acked, 201),
        sh(w(I, "rw", Some(8), 41.15, 41.75, Acked, 201), None),
        sh(w(K, "rw", Some(9), 41.25, 41.75, Acked, 201), None),
        o(Release, H, Some("rw"), Some(6), 41.45, 41.55, Acked),
        o(Release, J, Some("rw"), Some(7), 41.65, 41.75, Acked),
        o(Release, I, Some("rw"), Some(8), 41.95, 42.05, Acked),
        // K asks again: the same shared grant (200), though I had been granted since.
        sh(o(Acquire, K, Some("rw"), Some(9), 42.5, 42.6, Acked), None),
        sh(o(Acquire, H, Some("sem"), Some(10), 42.95, 43.05, Acked), Some(2)),
        sh(o(Acquire, I, Some("sem"), Some(11), 43.05, 43.15, Acked), Some(2)),
        sh(w(J, "sem", Some(12), 43.15, 43.55, Acked, 201), Some(2)),
        o(Release, H, Some("sem"), Some(10), 43.45, 43.55, Acked),
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
        e(40, SessionCreated, 40.0, H, None, None, &[]),
        e(41, SessionCreated, 40.1, I, None, None, &[]),
        e(42, SessionCreated, 40.2, J, None, None, &[]),
        e(43, SessionCreated, 40.3, K, None, None, &[]),
        shared(e(44, LockAcquired, 41.0, H, Some("rw"), Some(6), &[]), None),
        waiting(45, 41.1, J, "rw", 41.1, 45.1),
        shared(waiting(46, 41.2, I, "rw", 41.2, 45.2), None),
        shared(waiting(47, 41.3, K, "rw", 41.3, 45.3), None),
        e(48, LockReleased, 41.5, H, Some("rw"), Some(6), &[]),
        at_position(handed(48, 41.5, J, "rw", 7), 1),
        e(49, LockReleased, 41.7, J, Some("rw"), Some(7), &[]),
        at_position(shared(handed(49, 41.7, I, "rw", 8), None), 1),
        at_position(shared(handed(49, 41.7, K, "rw", 9), None), 2),
        e(50, LockReleased, 42.0, I, Some("rw"), Some(8), &[]),
        shared(e(51, LockAcquired, 43.0, H, Some("sem"), Some(10), &[]), None),
        shared(e(52, LockAcquired, 43.1, I, Some("sem"), Some(11), &[]), None),
        shared(waiting(53, 43.2, J, "sem", 43.2, 46.2), Some(2)),
        e(54, LockReleased, 43.5, H, Some("sem"), Some(10), &[]),
        at_position(shared(handed(54, 43.5, J, "sem", 12), None), 1),
    ];
    Evidence {
        ops: ops.collect(),
        events,
        disagreements: vec![],
        final_state: FinalState {
            fence_counter: 12,
            locks: [
                (res("r"), vec![(sid(B), t(2))]),
                (res("r2"), vec![]),
                (res("q"), vec![(sid(E), t(5))]),
                (res("rw"), vec![(sid(K), t(9))]),
                (res("sem"), vec![(sid(I), t(11)), (sid(J), t(12))]),
            ]
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
                (sid(H), SessionFinal::Live),
                (sid(I), SessionFinal::Live),
                (sid(J), SessionFinal::Live),
                (sid(K), SessionFinal::Live),
            ]
            .into_iter()
            .collect(),
            waiters: [
                (res("r"), (vec![], 0)),
                (res("r2"), (vec![], 0)),
                (res("q"), (vec![], 0)),
                (res("rw"), (vec![], 0)),
                (res("sem"), (vec![], 0)),
            ]
            .into_iter()
            .collect(),
            waiting_for: BTreeMap::new(),
            settled: Some(60),
            liveness: Some(0.4),
        },
        started_unix: 0.0,
        semaphores: [(res("sem"), 2)].into_iter().collect(),
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
    ("a shared grant beside an exclusive one", 3, |ev| {
        // J's release of rw is gone: I reads while J still writes.
        ev.events.retain(|e| !(e.index == 49 && e.position == 0));
    }),
    ("an exclusive grant beside shared ones", 3, |ev| {
        ev.events.push(e(60, LockAcquired, 60.0, H, Some("rw"), Some(13), &[]));
        ev.final_state.fence_counter = 13;
    }),
    ("more shared holders than the semaphore's limit", 3, |ev| {
        // H never released its permit: J's makes three.
        ev.events.retain(|e| !(e.index == 54 && e.position == 0));
    }),
    ("a shared holder under another holder's token", 3, |ev| {
        ev.events.push(shared(e(60, LockAcquired, 60.0, H, Some("rw"), Some(9), &[]), None));
    }),
    ("a second grant to a session that holds the resource", 3, |ev| {
        ev.events.push(shared(e(60, LockAcquired, 60.0, K, Some("rw"), Some(13), &[]), None));
        ev.final_state.fence_counter = 13;
    }),
    ("a release of a shared grant that is not held", 3, |ev| {
        ev.events.push(e(60, LockReleased, 60.0, I, Some("rw"), Some(8), &[]));
    }),
    ("a reader that saw a write during its shared hold", 3, |ev| {
        let mut read = o(StoreRead, K, Some("rw"), Some(9), 42.1, 42.3, Outcome::Fail);
        read.error = Some("WRITTEN_DURING_SHARED_HOLD".into());
        add_op(ev, read);
    }),
    ("replicas that disagree on an entry", 3, |ev| ev.disagreements.push("node 2 reported index 5 differently".into())),
    ("an acknowledged grant missing from the final state", 4, |ev| {
        ev.final_state.locks.insert(res("r"), vec![]);
    }),
    ("an acknowledged shared grant missing from the final holders", 4, |ev| {
        ev.final_state.locks.insert(res("sem"), vec![(sid(J), t(12))]);
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
        ev.final_state.locks.insert(res("r2"), vec![(sid(C), t(3))]);
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
    ("a reader granted ahead of a queued writer", 9, |ev| {
        // K reads rw; J queues to write; H's shared try-lock passes J: writers would starve.
        ev.events.push(waiting(60, 60.0, J, "rw", 60.0, 70.0));
        ev.events.push(shared(e(61, LockAcquired, 60.5, H, Some("rw"), Some(13), &[]), None));
        ev.final_state.fence_counter = 13;
    }),
    ("a reader handed the lock ahead of a queued writer", 9, |ev| {
        // When H released, the readers behind J went first.
        for event in &mut ev.events {
            match (event.index, event.position) {
                (48, 1) => *event = at_position(shared(handed(48, 41.5, I, "rw", 7), None), 1),
                (49, 0) => *event = e(49, LockReleased, 41.7, I, Some("rw"), Some(7), &[]),
                (49, 1) => *event = at_position(handed(49, 41.7, J, "rw", 8), 1),
                (49, 2) => *event = at_position(shared(handed(49, 41.7, K, "rw", 9), None), 2),
                (50, 0) => *event = e(50, LockReleased, 42.0, J, Some("rw"), Some(8), &[]),
                _ => {}
            }
        }
    }),
    ("a shared waiter left out of a shared batch", 9, |ev| {
        // K, right behind I, was not granted with I.
        ev.events.retain(|e| !(e.index == 49 && e.position == 2));
        ev.final_state.locks.insert(res("rw"), vec![]);
    }),
    ("a free permit not handed to the waiter at the head", 9, |ev| {
        // H released sem but J, waiting, was not handed the permit.
        ev.events.retain(|e| !(e.index == 54 && e.position == 1));
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
fn the_limit_is_known_from_the_requests_too() {
    // Without the workload's word, the limit comes from the acquires and the waiters' events.
    let over = |ev: &mut Evidence| ev.events.retain(|e| !(e.index == 54 && e.position == 0));
    let mut ev = clean();
    ev.semaphores.clear();
    over(&mut ev);
    assert!(counts(&ev)[2].1 > 0, "from the acquires' limit");
    let mut ev = clean();
    ev.semaphores.clear();
    ev.ops.iter_mut().for_each(|o| o.limit = None);
    over(&mut ev);
    assert!(counts(&ev)[2].1 > 0, "from the waiter's limit");
    // Without any limit, three shared holders are fine.
    let mut ev = clean();
    ev.semaphores.clear();
    ev.ops.iter_mut().for_each(|o| o.limit = None);
    ev.events.iter_mut().for_each(|e| e.limit = None);
    over(&mut ev);
    assert_eq!(counts(&ev)[2], (3, 0));
}

#[test]
fn a_write_seen_by_a_reader_whose_session_had_ended_is_no_violation() {
    let mut ev = clean();
    let mut read = o(StoreRead, K, Some("rw"), Some(9), 42.1, 50.0, Outcome::Fail);
    read.error = Some("WRITTEN_DURING_SHARED_HOLD".into());
    add_op(&mut ev, read);
    ev.events.push(e(55, SessionExpired, 45.0, K, None, None, &[("rw", 9)]));
    ev.final_state.locks.insert(res("rw"), vec![]);
    ev.final_state.sessions.insert(sid(K), SessionFinal::Expired);
    assert_eq!(counts(&ev)[2], (3, 0));
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

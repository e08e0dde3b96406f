//! Property tests: random command sequences against the invariants lock.io promises.

use std::collections::BTreeMap;

use lockio_core::{
    Applied, ClientId, Command, DomainError, Effect, FenceToken, Limit, LockDelay, LockState, LockValue, Mode, Outcome,
    Resource, SessionId, Timeout, UnixMillis,
};
use proptest::prelude::*;

const SESSIONS: u128 = 4;
const RESOURCES: [&str; 3] = ["alpha", "beta", "gamma"];

fn session(n: u128) -> SessionId {
    SessionId(uuid::Uuid::from_u128(n + 1))
}

/// A command over a small pool of sessions and resources, so that conflicts are common.
fn command() -> impl Strategy<Value = Command> {
    let sid = (0..SESSIONS).prop_map(session);
    let res = (0..RESOURCES.len()).prop_map(|i| Resource::new(RESOURCES[i]).unwrap());
    // Mostly forward time, sometimes a step back (a leader's clock that jumped).
    let now = (0u64..20_000).prop_map(UnixMillis);
    prop_oneof![
        1 => (sid.clone(), 5u64..60, now.clone()).prop_map(|(session_id, t, now)| Command::CreateSession {
            session_id,
            client_id: ClientId::new("client").unwrap(),
            timeout: Timeout::from_secs(t).unwrap(),
            now
        }),
        1 => (sid.clone(), now.clone()).prop_map(|(session_id, now)| Command::DeleteSession { session_id, now }),
        1 => (sid.clone(), res.clone(), now.clone()).prop_map(|(session_id, resource, now)| Command::Acquire {
            session_id,
            resource,
            now
        }),
        1 => (sid.clone(), res.clone(), 1u64..12, now.clone()).prop_map(|(session_id, resource, t, now)| Command::Release {
            session_id,
            resource,
            fence_token: FenceToken::new(t).unwrap(),
            now
        }),
        1 => (proptest::collection::vec(sid.clone(), 0..3), now.clone())
            .prop_map(|(session_ids, now)| Command::ExpireSessions { session_ids, now }),
        1 => (proptest::collection::vec(sid.clone(), 0..2), now.clone()).prop_map(|(expire, now)| Command::Cleanup { expire, now }),
        1 => (proptest::collection::vec((sid.clone(), (0u64..20_000).prop_map(UnixMillis)), 0..3), now.clone())
            .prop_map(|(keepalives, now)| Command::RecordKeepalives { keepalives, now }),
        // Waiting is common, so that queues form.
        3 => (sid.clone(), res.clone(), 0u64..8_000, now.clone(), 0u8..6, proptest::option::of(0u64..3)).prop_map(
            |(session_id, resource, wait, now, kind, value)| {
                // Mostly exclusive, sometimes shared with no limit or a limit of 1 or 2.
                let (mode, limit) = match kind {
                    0..=2 => (Mode::Exclusive, None),
                    3 => (Mode::Shared, None),
                    n => (Mode::Shared, Some(Limit::new(u64::from(n) - 3).unwrap())),
                };
                let value = value.map(|v| LockValue::new(&format!("v{v}")).unwrap());
                Command::Wait { session_id, resource, mode, limit, value, deadline: UnixMillis(now.0 + wait), now }
            }
        ),
        1 => (sid.clone(), res, now.clone()).prop_map(|(session_id, resource, now)| Command::CancelWait { session_id, resource, now }),
        1 => now.clone().prop_map(|now| Command::Tick { now }),
        1 => (sid, 5u64..60, 0u64..3, now).prop_map(|(session_id, t, delay, now)| Command::CreateSessionWithLockDelay {
            session_id,
            client_id: ClientId::new("client").unwrap(),
            timeout: Timeout::from_secs(t).unwrap(),
            lock_delay: LockDelay::from_secs(delay).unwrap(),
            now
        }),
    ]
}

/// Every `(resource, token)` a command granted or released, from its outcome.
fn ended_grants(outcome: &Outcome) -> Vec<(Resource, FenceToken, SessionId)> {
    match outcome {
        Ok(Applied::SessionDeleted { released, .. }) => {
            released.iter().map(|g| (g.resource.clone(), g.fence_token, g.session_id)).collect()
        }
        Ok(Applied::Released { grant }) => vec![(grant.resource.clone(), grant.fence_token, grant.session_id)],
        Ok(Applied::Expired { expired, .. }) => expired
            .iter()
            .flat_map(|e| e.released.iter().map(|g| (g.resource.clone(), g.fence_token, g.session_id)))
            .collect(),
        _ => vec![],
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    /// At most one holder per resource, tokens strictly increase, delete and expiry release
    /// everything the session held, and the state's own invariants hold after every step.
    #[test]
    fn invariants_hold(commands in proptest::collection::vec(command(), 1..80)) {
        let mut state = LockState::new();
        // The model: who holds what, in which mode, from the effects alone.
        let mut holders: BTreeMap<Resource, BTreeMap<SessionId, (FenceToken, Mode)>> = BTreeMap::new();
        let mut last_token = 0u64;
        for command in commands {
            let before = state.clone();
            let predicted = match &command {
                Command::Acquire { session_id, resource, now } => Some(state.acquire_refusal(session_id, resource, *now)),
                _ => None,
            };
            let mut effects = Vec::new();
            let outcome = state.apply_traced(command.clone(), &mut effects);
            if let Some(predicted) = predicted {
                prop_assert_eq!(predicted, outcome.clone().err(), "acquire_refusal must predict the command's refusal");
            }
            prop_assert!(state.check_invariants().is_ok(), "{:?}", state.check_invariants());
            if outcome.is_err() {
                prop_assert_eq!(&before, &state, "a refused command must change nothing");
            }
            // The model follows the effects in the order they happened: in one expiry a lock
            // can be released, handed to a waiter, and released again with that waiter's session.
            let mut released = Vec::new();
            for effect in &effects {
                match effect {
                    Effect::LockReleased { grant, .. } => released.push(grant.clone()),
                    Effect::SessionDeleted { released: r, .. } | Effect::SessionExpired { released: r, .. } => {
                        released.extend(r.iter().cloned())
                    }
                    _ => {}
                }
                let ended: Vec<&lockio_core::Grant> = match effect {
                    Effect::LockReleased { grant, .. } => vec![grant],
                    Effect::SessionDeleted { released, .. } | Effect::SessionExpired { released, .. } => released.iter().collect(),
                    _ => vec![],
                };
                for g in ended {
                    let held = holders.entry(g.resource.clone()).or_default();
                    prop_assert_eq!(held.remove(&g.session_id), Some((g.fence_token, g.mode)), "released what was not held");
                    if held.is_empty() {
                        holders.remove(&g.resource);
                    }
                }
                if let Effect::LockAcquired { grant, .. } = effect {
                    prop_assert!(grant.fence_token.0 > last_token, "tokens strictly increase");
                    last_token = grant.fence_token.0;
                    let held = holders.entry(grant.resource.clone()).or_default();
                    // Never an exclusive grant beside any other, never shared beside exclusive.
                    prop_assert!(held.values().all(|(_, m)| *m == Mode::Shared) && (held.is_empty() || grant.mode == Mode::Shared),
                        "granted {} beside {:?}", grant.mode.as_str(), held);
                    prop_assert!(held.insert(grant.session_id, (grant.fence_token, grant.mode)).is_none(), "granted twice");
                }
            }
            let released: Vec<_> = released.iter().map(|g| (g.resource.clone(), g.fence_token, g.session_id)).collect();
            prop_assert_eq!(released, ended_grants(&outcome), "the outcome and the effects tell the same releases");
            match (&command, &outcome) {
                (Command::Acquire { resource, session_id, .. } | Command::Wait { resource, session_id, .. },
                    Ok(Applied::Acquired { grant, .. })) => {
                    prop_assert_eq!(holders.get(resource).and_then(|h| h.get(session_id)), Some(&(grant.fence_token, grant.mode)));
                }
                (Command::Acquire { resource, session_id, .. }, Err(DomainError::LockHeld { holder, .. })) => {
                    prop_assert!(holder != session_id);
                    prop_assert!(holders.get(resource).is_some_and(|h| h.contains_key(holder)));
                }
                (Command::Wait { resource, mode, limit: Some(limit), .. }, Ok(_)) if *mode == Mode::Shared => {
                    let shared = holders.get(resource).map_or(0, |h| h.len() as u64);
                    prop_assert!(shared <= limit.get(), "{} shared holders over the limit {}", shared, limit.get());
                }
                (Command::DeleteSession { session_id, .. }, Ok(_)) => {
                    prop_assert!(state.session(session_id).is_none());
                    prop_assert!(state.locks().all(|(_, l)| !l.holders.contains_key(session_id)));
                }
                (Command::ExpireSessions { session_ids, .. } | Command::Cleanup { expire: session_ids, .. }, Ok(_)) => {
                    for sid in session_ids {
                        prop_assert!(state.live_session(sid).is_err(), "listed session still live");
                        prop_assert!(state.locks().all(|(_, l)| !l.holders.contains_key(sid)), "expired session kept a lock");
                    }
                }
                _ => {}
            }
            prop_assert_eq!(state.fence_counter(), last_token);
            let real: BTreeMap<Resource, BTreeMap<SessionId, (FenceToken, Mode)>> = state
                .locks()
                .map(|(r, l)| (r.clone(), l.grants(r).iter().map(|g| (g.session_id, (g.fence_token, g.mode))).collect()))
                .collect();
            prop_assert_eq!(&holders, &real);
        }
    }

    /// The queues are FIFO: a model that appends each new waiter, drops each wait that ended
    /// and hands each grant from a queue to its head agrees with the state after every step,
    /// and no grant from a queue goes to a waiter whose deadline had passed.
    #[test]
    fn queues_are_fifo(commands in proptest::collection::vec(command(), 1..120)) {
        let mut state = LockState::new();
        let mut model: BTreeMap<Resource, Vec<(SessionId, UnixMillis)>> = BTreeMap::new();
        for command in commands {
            let mut effects = Vec::new();
            let _ = state.apply_traced(command, &mut effects);
            for effect in effects {
                match effect {
                    Effect::LockWaiting { resource, session_id, waiter, .. } => {
                        let queue = model.entry(resource).or_default();
                        match queue.iter_mut().find(|(s, _)| *s == session_id) {
                            Some(entry) => entry.1 = waiter.deadline,
                            None => queue.push((session_id, waiter.deadline)),
                        }
                    }
                    Effect::LockWaitEnded { resource, session_id, .. } => {
                        let queue = model.entry(resource).or_default();
                        let before = queue.len();
                        queue.retain(|(s, _)| *s != session_id);
                        prop_assert_eq!(queue.len() + 1, before, "a wait ended that was not in the queue");
                    }
                    Effect::LockAcquired { grant, queued: true, .. } => {
                        let queue = model.entry(grant.resource.clone()).or_default();
                        prop_assert!(!queue.is_empty(), "handed off from an empty queue");
                        let (head, deadline) = queue.remove(0);
                        prop_assert_eq!(head, grant.session_id, "not the head of the queue");
                        prop_assert!(deadline > grant.acquired_at, "granted at or past its deadline");
                    }
                    _ => {}
                }
            }
            model.retain(|_, q| !q.is_empty());
            for (resource, queue) in &model {
                let real: Vec<_> = state.queue(resource).map(|w| (w.session_id, w.deadline)).collect();
                prop_assert_eq!(&real, queue);
            }
            prop_assert_eq!(state.stats().waiters as usize, model.values().map(Vec::len).sum::<usize>());
        }
    }

    /// restore(snapshot(s)) == s, and the bytes round-trip exactly.
    #[test]
    fn snapshot_restore_is_identity(commands in proptest::collection::vec(command(), 0..60)) {
        let mut state = LockState::new();
        for command in commands {
            let _ = state.apply(command);
        }
        let bytes = state.snapshot();
        let restored = LockState::restore(&bytes).unwrap();
        prop_assert_eq!(&restored, &state);
        prop_assert_eq!(restored.snapshot(), bytes);
    }

    /// Two replicas applying the same sequence, one of them restarted from a snapshot midway,
    /// end byte-identical and returned the same outcomes.
    #[test]
    fn replicas_converge(commands in proptest::collection::vec(command(), 0..80), cut in 0usize..80) {
        let mut a = LockState::new();
        let mut b = LockState::new();
        for (i, command) in commands.into_iter().enumerate() {
            if i == cut {
                b = LockState::restore(&b.snapshot()).unwrap();
            }
            let (oa, ob) = (a.apply(command.clone()), b.apply(command));
            prop_assert_eq!(oa, ob);
        }
        prop_assert_eq!(a.snapshot(), b.snapshot());
    }
}

#[test]
fn corrupt_snapshots_are_refused_not_panicked_on() {
    let mut state = LockState::new();
    let sid = session(0);
    state
        .apply(Command::CreateSession {
            session_id: sid,
            client_id: ClientId::new("c").unwrap(),
            timeout: Timeout::from_secs(10).unwrap(),
            now: UnixMillis(1),
        })
        .unwrap();
    state
        .apply(Command::Acquire { session_id: sid, resource: Resource::new("r").unwrap(), now: UnixMillis(2) })
        .unwrap();
    let bytes = state.snapshot();
    assert!(LockState::restore(&[]).is_err());
    assert!(LockState::restore(&[9]).is_err());
    for len in 0..bytes.len() {
        assert!(LockState::restore(&bytes[..len]).is_err(), "truncated to {len} bytes");
    }
}

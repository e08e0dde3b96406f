//! `Replica`: everything the Raft log builds on each node, and what applying an entry does.
//!
//! Two parts: the pure lock state (`lockio_core::LockState`) and the directory of each
//! member's advertised HTTP address. The snapshot encoding of both lives here too. Like the
//! core, this is deterministic and does no I/O.

use std::collections::BTreeMap;

use lockio_core::{Effect, LockState, UnixMillis};
use serde::{Deserialize, Serialize};

use super::{LogCommand, LogOutcome, NodeId};

/// The replicated state of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replica {
    pub locks: LockState,
    /// Where each member's HTTP API is, as the member itself advertised it.
    pub http_addrs: BTreeMap<NodeId, String>,
}

/// Something that happened when an entry was applied, with the leader's time stamp of the
/// command; fed to the event stream and to the leader's open waits.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaEvent {
    pub at: UnixMillis,
    /// Which command of the entry caused it (its place in the entry's batch).
    pub command: usize,
    pub change: Change,
}

/// What changed: the core's own account, in the order it happened.
pub type Change = Effect;

#[derive(Serialize)]
struct SnapshotRef<'a> {
    locks: Vec<u8>,
    http_addrs: &'a BTreeMap<NodeId, String>,
}

#[derive(Deserialize)]
struct SnapshotOwned {
    locks: Vec<u8>,
    http_addrs: BTreeMap<NodeId, String>,
}

impl Replica {
    /// Applies one command; `events` receives what happened, for observers.
    pub fn apply(&mut self, command: LogCommand, events: &mut Vec<ReplicaEvent>) -> LogOutcome {
        match command {
            LogCommand::AdvertiseHttp { node_id, http_addr } => {
                self.http_addrs.insert(node_id, http_addr);
                LogOutcome::Done
            }
            LogCommand::Lock(commands) => {
                let outcomes = commands.into_iter().enumerate().map(|(i, command)| self.apply_lock(i, command, events));
                LogOutcome::Lock(outcomes.collect())
            }
        }
    }

    fn apply_lock(
        &mut self,
        place: usize,
        command: lockio_core::Command,
        events: &mut Vec<ReplicaEvent>,
    ) -> lockio_core::Outcome {
        let mut effects = Vec::new();
        let outcome = self.locks.apply_traced(command, &mut effects);
        // Stamped with the time the core used (the command's, never earlier than any before),
        // so that every event of a command, a grant's `acquired_at` included, shows the same.
        let at = self.locks.clock();
        events.extend(effects.into_iter().map(|change| ReplicaEvent { at, command: place, change }));
        outcome
    }

    pub fn snapshot(&self) -> Vec<u8> {
        let body = SnapshotRef { locks: self.locks.snapshot(), http_addrs: &self.http_addrs };
        postcard::to_allocvec(&body).expect("postcard encoding of in-memory maps")
    }

    pub fn restore(bytes: &[u8]) -> Result<Replica, String> {
        let snap: SnapshotOwned = postcard::from_bytes(bytes).map_err(|e| format!("bad snapshot: {e}"))?;
        let locks = LockState::restore(&snap.locks).map_err(|e| e.to_string())?;
        Ok(Replica { locks, http_addrs: snap.http_addrs })
    }
}

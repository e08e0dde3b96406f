//! `Replica`: everything the Raft log builds on each node, and what applying an entry does.
//!
//! Two parts: the pure lock state (`lockio_core::LockState`) and the directory of each
//! member's advertised HTTP address. The snapshot encoding of both lives here too. Like the
//! core, this is deterministic and does no I/O.

use std::collections::BTreeMap;

use lockio_core::{Applied, ClientId, Grant, LockState, SessionId, Timeout, UnixMillis};
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
/// command; fed to the event stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaEvent {
    pub at: UnixMillis,
    pub change: Change,
}

/// What changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    SessionCreated { session_id: SessionId, client_id: ClientId, timeout: Timeout },
    SessionDeleted { session_id: SessionId, client_id: ClientId, released: Vec<Grant> },
    SessionExpired { session_id: SessionId, client_id: ClientId, released: Vec<Grant> },
    LockAcquired { grant: Grant, client_id: ClientId },
    LockReleased { grant: Grant, client_id: ClientId },
}

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

/// The sessions a command names.
fn named_sessions(command: &lockio_core::Command) -> Box<dyn Iterator<Item = &SessionId> + '_> {
    use lockio_core::Command::*;
    match command {
        CreateSession { session_id, .. }
        | DeleteSession { session_id, .. }
        | Acquire { session_id, .. }
        | Release { session_id, .. } => Box::new(std::iter::once(session_id)),
        ExpireSessions { session_ids, .. } | Cleanup { expire: session_ids, .. } => Box::new(session_ids.iter()),
        // Recording keepalives produces no event.
        RecordKeepalives { .. } => Box::new(std::iter::empty()),
    }
}

fn unknown_client() -> ClientId {
    ClientId::new("(unknown)").expect("a valid literal")
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
                LogOutcome::Lock(commands.into_iter().map(|command| self.apply_lock(command, events)).collect())
            }
        }
    }

    fn apply_lock(&mut self, command: lockio_core::Command, events: &mut Vec<ReplicaEvent>) -> lockio_core::Outcome {
        let at = command.now();
        // A session the command deletes or cleans up is gone afterwards: note the clients of
        // the sessions it names first.
        let named_clients: BTreeMap<SessionId, ClientId> = named_sessions(&command)
            .filter_map(|id| Some((*id, self.locks.session(id)?.client_id.clone())))
            .collect();
        let outcome = self.locks.apply(command);
        let client =
            |id: &SessionId| named_clients.get(id).cloned().or_else(|| self.client_of(id)).unwrap_or_else(unknown_client);
        let change = |change| ReplicaEvent { at, change };
        match &outcome {
            Ok(Applied::SessionCreated { session_id, fresh: true }) => {
                if let Some(s) = self.locks.session(session_id) {
                    events.push(change(Change::SessionCreated {
                        session_id: *session_id,
                        client_id: s.client_id.clone(),
                        timeout: s.timeout,
                    }));
                }
            }
            Ok(Applied::SessionDeleted { session_id, released }) => events.push(change(Change::SessionDeleted {
                session_id: *session_id,
                client_id: client(session_id),
                released: released.clone(),
            })),
            Ok(Applied::Acquired { grant, fresh: true }) => events.push(ReplicaEvent {
                at: grant.acquired_at,
                change: Change::LockAcquired { grant: grant.clone(), client_id: client(&grant.session_id) },
            }),
            Ok(Applied::Released { grant }) => events
                .push(change(Change::LockReleased { grant: grant.clone(), client_id: client(&grant.session_id) })),
            Ok(Applied::Expired { expired, .. }) => events.extend(expired.iter().map(|e| {
                change(Change::SessionExpired {
                    session_id: e.session_id,
                    client_id: client(&e.session_id),
                    released: e.released.clone(),
                })
            })),
            _ => {}
        }
        outcome
    }

    fn client_of(&self, session_id: &SessionId) -> Option<ClientId> {
        self.locks.session(session_id).map(|s| s.client_id.clone())
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

//! `Replica`: everything the Raft log builds on each node, and what applying an entry does.
//!
//! Two parts: the pure lock state (`lockio_core::LockState`) and the directory of each
//! member's advertised HTTP address. The snapshot encoding of both lives here too. Like the
//! core, this is deterministic and does no I/O.

use std::collections::BTreeMap;

use lockio_core::{Applied, Grant, LockState, SessionId};
use serde::{Deserialize, Serialize};

use super::{LogCommand, LogOutcome, NodeId};

/// The replicated state of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replica {
    pub locks: LockState,
    /// Where each member's HTTP API is, as the member itself advertised it.
    pub http_addrs: BTreeMap<NodeId, String>,
}

/// Something that happened when an entry was applied; fed to the event stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ReplicaEvent {
    SessionCreated { session_id: SessionId, client_id: String },
    SessionDeleted { session_id: SessionId, released: Vec<Grant> },
    SessionExpired { session_id: SessionId, released: Vec<Grant> },
    LockAcquired { grant: Grant },
    LockReleased { grant: Grant },
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

impl Replica {
    /// Applies one command; `events` receives what happened, for observers.
    pub fn apply(&mut self, command: LogCommand, events: &mut Vec<ReplicaEvent>) -> LogOutcome {
        match command {
            LogCommand::AdvertiseHttp { node_id, http_addr } => {
                self.http_addrs.insert(node_id, http_addr);
                LogOutcome::Done
            }
            LogCommand::Lock(command) => {
                let created_client = match &command {
                    lockio_core::Command::CreateSession { client_id, .. } => Some(client_id.to_string()),
                    _ => None,
                };
                let outcome = self.locks.apply(command);
                match &outcome {
                    Ok(Applied::SessionCreated { session_id, fresh: true }) => events.push(ReplicaEvent::SessionCreated {
                        session_id: *session_id,
                        client_id: created_client.unwrap_or_default(),
                    }),
                    Ok(Applied::SessionDeleted { session_id, released }) => {
                        events.push(ReplicaEvent::SessionDeleted { session_id: *session_id, released: released.clone() })
                    }
                    Ok(Applied::Acquired { grant, fresh: true }) => {
                        events.push(ReplicaEvent::LockAcquired { grant: grant.clone() })
                    }
                    Ok(Applied::Released { grant }) => events.push(ReplicaEvent::LockReleased { grant: grant.clone() }),
                    Ok(Applied::Expired { expired, .. }) => {
                        events.extend(expired.iter().map(|e| ReplicaEvent::SessionExpired {
                            session_id: e.session_id,
                            released: e.released.clone(),
                        }))
                    }
                    _ => {}
                }
                LogOutcome::Lock(outcome)
            }
        }
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

//! The openraft adapter: how lock.io plugs into openraft 0.9.
//!
//! - `TypeConfig`: what a log entry carries (`LogCommand`) and what applying it returns
//!   (`LogOutcome`); nodes are `openraft::BasicNode` with their Raft address.
//! - `replica`: what applying a log entry does (the pure core plus the node directory).
//! - `log_store`: the durable Raft log, vote and committed index in redb.
//! - `state_machine`: the in-memory replica behind openraft's state-machine trait, with its
//!   snapshots kept in the same redb file.
//!
//! The node-to-node transport that carries openraft's RPCs is the crate's `transport` module.
//!
//! Nothing here knows HTTP/JSON or makes a business decision: refusals come back from the core
//! as values inside `LogOutcome`, and only real I/O failures become `StorageError`s (which
//! stop the node, as openraft requires).

pub mod log_store;
pub mod replica;
pub mod state_machine;
pub mod store;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// A node's id in the cluster (`--id`).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// lock.io's openraft type configuration.
    pub TypeConfig:
        D = LogCommand,
        R = LogOutcome,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;

/// What a log entry carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogCommand {
    /// Changes to the lock state, for the pure core, applied in order. The leader puts the
    /// commands of concurrent requests into one entry (see `service::proposer`), so that one
    /// append, one fsync and one round of replication serve them all.
    Lock(Vec<lockio_core::Command>),
    /// A node telling the cluster where its HTTP API is (`--advertise-http`).
    AdvertiseHttp { node_id: NodeId, http_addr: String },
}

/// What applying a log entry returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogOutcome {
    /// One outcome per command of a `LogCommand::Lock`, in order.
    Lock(Vec<lockio_core::Outcome>),
    /// An advert, or an entry openraft writes for itself (blank, membership).
    Done,
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::log_store::LogStore;
    use super::state_machine::StateMachine;
    use super::store::Store;
    use super::{StorageError, TypeConfig};

    /// Builds a fresh redb-backed log store and state machine in a temporary directory.
    struct RedbBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RedbBuilder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = Store::open(dir.path()).expect("open store");
            let sm = StateMachine::open(store.clone(), crate::events::EventLog::new(), Default::default())
                .expect("open state machine");
            Ok((dir, LogStore::new(store), sm))
        }
    }

    /// openraft's storage conformance suite against our redb log store and state machine.
    #[test]
    #[allow(clippy::result_large_err)] // openraft's error type, as its suite returns it
    fn openraft_storage_suite() -> Result<(), StorageError> {
        Suite::test_all(RedbBuilder)
    }
}

//! The node's redb file (`DATA_DIR/lockio.redb`): its tables and the few typed reads and
//! writes the log store and state machine share.
//!
//! Every write transaction here commits with `Durability::Immediate` (one fsync) unless a
//! caller asks otherwise; that is what makes "acknowledged means on disk" true.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Raft log entries by index, postcard-encoded `Entry`.
pub const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Small records: openraft's `vote`, `committed`, `last_purged`, and `node_id`, the node the
/// directory belongs to.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The latest snapshot: `meta` (openraft's `SnapshotMeta`) and `data` (the replica's bytes).
pub const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

/// The `META` key of the node id the directory belongs to.
const NODE_ID: &str = "node_id";

/// redb's page cache.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Any failure of the store, as text: openraft wraps it, and it stops the node.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(String);

impl StoreError {
    pub fn new(e: impl std::fmt::Display) -> Self {
        StoreError(e.to_string())
    }
}

macro_rules! store_error_from {
    ($($t:ty),*) => {$(impl From<$t> for StoreError {
        fn from(e: $t) -> Self { StoreError::new(e) }
    })*};
}
store_error_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    postcard::Error
);

/// A shared handle on the node's redb database.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl Store {
    /// Opens (or creates) the database in `data_dir`, creating the tables on first use.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        // redb caches up to 1 GiB by default; the log is read mostly at its tail and a snapshot
        // once per follower that needs it, so a small cache serves, and keeps the node's memory
        // to its state.
        let db = Database::builder().set_cache_size(CACHE_BYTES).create(data_dir.join("lockio.redb"))?;
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.open_table(SNAPSHOT)?;
        txn.commit()?;
        Ok(Store { db: Arc::new(db) })
    }

    /// Binds the directory to node `node_id` on first use, and refuses any other node after:
    /// a node started on another's directory would vote and acknowledge with that node's Raft
    /// history, as a second copy of it.
    pub fn bind_to_node(&self, node_id: u64) -> Result<(), StoreError> {
        match self.get::<u64>(META, NODE_ID)? {
            Some(owner) if owner == node_id => Ok(()),
            Some(owner) => Err(StoreError(format!(
                "it holds the state of node {owner}, not of --id {node_id}; a node's data directory must never be used by another node"
            ))),
            None => self.write(|txn| put(txn, META, NODE_ID, &node_id)),
        }
    }

    /// Reads one postcard-encoded record of a string-keyed table.
    pub fn get<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(table)?;
        match table.get(key)? {
            Some(bytes) => Ok(Some(postcard::from_bytes(bytes.value())?)),
            None => Ok(None),
        }
    }

    /// Runs `f` in a write transaction and commits it durably (fsync) before returning.
    pub fn write<R>(&self, f: impl FnOnce(&WriteTransaction) -> Result<R, StoreError>) -> Result<R, StoreError> {
        blocking(|| {
            let txn = self.db.begin_write()?;
            let out = f(&txn)?;
            txn.commit()?;
            Ok(out)
        })
    }

    pub fn db(&self) -> &Database {
        &self.db
    }
}

/// Runs blocking file I/O. On a tokio worker, `block_in_place` moves the runtime's other tasks
/// off this thread meanwhile; elsewhere (the flusher thread) it just runs.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Writes one postcard-encoded record into a string-keyed table inside `txn`.
pub fn put<T: Serialize>(
    txn: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
    value: &T,
) -> Result<(), StoreError> {
    let bytes = postcard::to_allocvec(value)?;
    txn.open_table(table)?.insert(key, bytes.as_slice())?;
    Ok(())
}

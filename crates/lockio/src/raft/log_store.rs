//! `LogStore`: openraft's `RaftLogStorage` on redb — the log, the vote and the committed index.
//!
//! Durability rules (openraft's, and ours): `save_vote`, `truncate` and `purge` commit with an
//! fsync before they return. `append` commits without a flush, so the entries are readable at
//! once and replication can start, and hands openraft's flush callback to the flusher thread,
//! which calls it only after a durable commit (one fsync for every append queued meanwhile:
//! group commit). `save_committed` is a hint and is written without a flush.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader, StorageIOError, Vote};
use redb::{ReadableDatabase, ReadableTable};

use super::store::{self, Store, StoreError, LOG, META};
use super::{Entry, LogId, NodeId, StorageError, TypeConfig};

/// The durable Raft log of this node. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct LogStore {
    store: Store,
    /// The last committed index openraft told us about, for `/cluster/status`.
    committed: Arc<AtomicU64>,
    /// Appends waiting for their flush, in order. A std channel: the flusher is a plain thread.
    flushes: mpsc::Sender<LogFlushed<TypeConfig>>,
}

fn log_err(verb: ErrorVerb) -> impl FnOnce(StoreError) -> StorageError {
    move |e| StorageIOError::new(ErrorSubject::Logs, verb, &e).into()
}

fn vote_err(verb: ErrorVerb) -> impl FnOnce(StoreError) -> StorageError {
    move |e| StorageIOError::new(ErrorSubject::Vote, verb, &e).into()
}

impl LogStore {
    pub fn new(store: Store) -> LogStore {
        let committed = store.get::<Option<LogId>>(META, "committed").ok().flatten().flatten();
        let committed = Arc::new(AtomicU64::new(committed.map(|l| l.index).unwrap_or(0)));
        let (flushes, queue) = mpsc::channel();
        let flusher = store.clone();
        std::thread::Builder::new()
            .name("lockio-log-flush".into())
            .spawn(move || flush_loop(flusher, queue))
            .expect("spawn the log flusher thread");
        LogStore { store, committed, flushes }
    }

    /// The committed index, shared with whoever reports it.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    fn read_range(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>, StoreError> {
        let txn = self.store.db().begin_read()?;
        let table = txn.open_table(LOG)?;
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Bound::Included(i),
            Bound::Excluded(&i) => Bound::Excluded(i),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        for item in table.range::<u64>((Bound::Included(start), end))? {
            let (_, bytes) = item?;
            entries.push(postcard::from_bytes(bytes.value())?);
        }
        Ok(entries)
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StoreError> {
        let txn = self.store.db().begin_read()?;
        let table = txn.open_table(LOG)?;
        let last = table.last()?;
        let entry: Option<Entry> = match last {
            Some((_, bytes)) => Some(postcard::from_bytes(bytes.value())?),
            None => None,
        };
        Ok(entry.map(|e| e.log_id))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.read_range(range).map_err(log_err(ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged = self.store.get::<LogId>(META, "last_purged").map_err(log_err(ErrorVerb::Read))?;
        let last = self.last_entry_id().map_err(log_err(ErrorVerb::Read))?;
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last.or(last_purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.store.write(|txn| store::put(txn, META, "vote", vote)).map_err(vote_err(ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.store.get::<Vote<NodeId>>(META, "vote").map_err(vote_err(ErrorVerb::Read))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        if let Some(c) = &committed {
            self.committed.store(c.index, Ordering::Relaxed);
        }
        self.store.write_lazy(|txn| store::put(txn, META, "committed", &committed)).map_err(log_err(ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed = self.store.get::<Option<LogId>>(META, "committed").map_err(log_err(ErrorVerb::Read))?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let result = self.store.write_lazy(|txn| {
            let mut table = txn.open_table(LOG)?;
            for entry in entries {
                let bytes = postcard::to_allocvec(&entry)?;
                table.insert(entry.log_id.index, bytes.as_slice())?;
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                // Readable now, durable once the flusher's next commit is done: only then may
                // openraft count these entries as persisted (and a follower acknowledge them).
                if let Err(mpsc::SendError(callback)) = self.flushes.send(callback) {
                    callback.log_io_completed(Err(std::io::Error::other("the log flusher stopped")));
                }
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(log_err(ErrorVerb::Write)(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.store
            .write(|txn| {
                remove_range(&mut txn.open_table(LOG)?, log_id.index..)
            })
            .map_err(log_err(ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Removing the entries and recording how far the log was purged is one transaction,
        // so a crash cannot leave a gap that `get_log_state` would not explain.
        self.store
            .write(|txn| {
                store::put(txn, META, "last_purged", &log_id)?;
                remove_range(&mut txn.open_table(LOG)?, ..=log_id.index)
            })
            .map_err(log_err(ErrorVerb::Delete))
    }
}

/// Deletes the log entries whose index falls in `range`.
fn remove_range(table: &mut redb::Table<u64, &[u8]>, range: impl RangeBounds<u64>) -> Result<(), StoreError> {
    let indexes: Vec<u64> = table.range(range)?.map(|item| item.map(|(k, _)| k.value())).collect::<Result<_, _>>()?;
    for index in indexes {
        table.remove(index)?;
    }
    Ok(())
}

/// The flusher thread: waits for appends, makes everything written so far durable with one
/// commit (one fsync), then tells openraft, in order. Ends when every `LogStore` clone is gone.
fn flush_loop(store: Store, queue: mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter());
        // An empty durable commit persists every non-durable commit before it.
        let started = std::time::Instant::now();
        let result = store.write(|_| Ok(()));
        crate::metrics::log_flush(batch.len(), started.elapsed());
        for callback in batch {
            callback.log_io_completed(result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())));
        }
    }
}

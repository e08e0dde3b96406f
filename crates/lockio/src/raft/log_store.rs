//! `LogStore`: openraft's `RaftLogStorage` on redb — the log, the vote and the committed index.
//!
//! One writer thread (the flusher) does every write to the log table, in the order openraft
//! asked for them, in batches: everything queued while it was busy goes into one redb
//! transaction with one fsync (group commit). So openraft's core never waits for the disk:
//!
//! - `append` keeps the entries in memory (`pending`), where readers see them at once, queues
//!   them, and returns; the flusher calls openraft's `LogFlushed` callback only after the
//!   durable commit that holds them. Only then does openraft count them (and a follower
//!   acknowledge them).
//! - `truncate` and `purge` go through the same queue and wait for their commit.
//! - `save_vote` commits with an fsync before it returns.
//! - `save_committed` is a hint: kept in memory, written with the flusher's next commit.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader, StorageIOError, Vote};
use redb::{ReadableDatabase, ReadableTable};
use tokio::sync::oneshot;

use super::store::{self, Store, StoreError, LOG, META};
use super::{Entry, LogId, NodeId, StorageError, TypeConfig};

/// The durable Raft log of this node. Cheap to clone; clones share the log.
#[derive(Clone)]
pub struct LogStore {
    store: Store,
    shared: Arc<Shared>,
}

/// What the `LogStore` clones and the flusher thread share.
struct Shared {
    /// Appended entries not yet known to be on disk, by index, each with the sequence number of
    /// its append (so the flusher drops only what it wrote, not a later append at that index).
    pending: RwLock<BTreeMap<u64, (u64, Entry)>>,
    /// The next append's sequence number.
    next_seq: AtomicU64,
    /// The committed log id openraft last told us of; the flusher writes it down.
    committed: Mutex<Option<LogId>>,
    /// Its index, for `/cluster/status`.
    committed_index: Arc<AtomicU64>,
    /// The flusher's queue. A std channel: the flusher is a plain thread.
    ops: mpsc::Sender<Op>,
}

/// A write for the flusher, in openraft's order.
enum Op {
    Append { entries: Vec<(u64, u64, Vec<u8>)>, done: LogFlushed<TypeConfig> },
    Truncate { from: u64, done: Done },
    Purge { upto: LogId, done: Done },
}

/// Tells an async caller that its write is committed (or why not).
type Done = oneshot::Sender<Result<(), String>>;

fn log_err(verb: ErrorVerb) -> impl FnOnce(StoreError) -> StorageError {
    move |e| StorageIOError::new(ErrorSubject::Logs, verb, &e).into()
}

fn vote_err(verb: ErrorVerb) -> impl FnOnce(StoreError) -> StorageError {
    move |e| StorageIOError::new(ErrorSubject::Vote, verb, &e).into()
}

impl LogStore {
    pub fn new(store: Store) -> LogStore {
        let committed = store.get::<Option<LogId>>(META, "committed").ok().flatten().flatten();
        let (ops, queue) = mpsc::channel();
        let shared = Arc::new(Shared {
            pending: RwLock::new(BTreeMap::new()),
            next_seq: AtomicU64::new(1),
            committed: Mutex::new(committed),
            committed_index: Arc::new(AtomicU64::new(committed.map(|l| l.index).unwrap_or(0))),
            ops,
        });
        let (flusher_store, flusher_shared) = (store.clone(), Arc::downgrade(&shared));
        std::thread::Builder::new()
            .name("lockio-log-flush".into())
            .spawn(move || flush_loop(flusher_store, flusher_shared, queue))
            .expect("spawn the log flusher thread");
        LogStore { store, shared }
    }

    /// The committed index, shared with whoever reports it.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.shared.committed_index.clone()
    }

    fn send(&self, op: Op) -> Result<(), StoreError> {
        self.shared.ops.send(op).map_err(|_| StoreError::new("the log flusher stopped"))
    }

    /// Queues `make(done)` and waits until the flusher has committed it.
    async fn write_through(&self, make: impl FnOnce(Done) -> Op) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.send(make(done))?;
        wait.await.map_err(|_| StoreError::new("the log flusher stopped"))?.map_err(StoreError::new)
    }

    fn read_range(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>, StoreError> {
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
        // Pending first, then disk: the flusher commits before it drops an entry from
        // `pending`, so an entry in flight between the two is found in one or the other.
        let mut entries: BTreeMap<u64, Entry> = {
            let pending = self.shared.pending.read().unwrap_or_else(|p| p.into_inner());
            pending.range((Bound::Included(start), end)).map(|(i, (_, e))| (*i, e.clone())).collect()
        };
        let txn = self.store.db().begin_read()?;
        let table = txn.open_table(LOG)?;
        for item in table.range::<u64>((Bound::Included(start), end))? {
            let (index, bytes) = item?;
            if let std::collections::btree_map::Entry::Vacant(slot) = entries.entry(index.value()) {
                slot.insert(postcard::from_bytes(bytes.value())?);
            }
        }
        Ok(entries.into_values().collect())
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StoreError> {
        let pending_last = {
            let pending = self.shared.pending.read().unwrap_or_else(|p| p.into_inner());
            pending.last_key_value().map(|(_, (_, e))| e.log_id)
        };
        let txn = self.store.db().begin_read()?;
        let table = txn.open_table(LOG)?;
        let last = table.last()?;
        let disk_last: Option<Entry> = match last {
            Some((_, bytes)) => Some(postcard::from_bytes(bytes.value())?),
            None => None,
        };
        Ok(pending_last.max(disk_last.map(|e| e.log_id)))
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
            self.shared.committed_index.store(c.index, Ordering::Relaxed);
        }
        *self.shared.committed.lock().unwrap_or_else(|p| p.into_inner()) = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(*self.shared.committed.lock().unwrap_or_else(|p| p.into_inner()))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        {
            let mut pending = self.shared.pending.write().unwrap_or_else(|p| p.into_inner());
            for entry in entries {
                let seq = self.shared.next_seq.fetch_add(1, Ordering::Relaxed);
                let bytes = postcard::to_allocvec(&entry).map_err(|e| log_err(ErrorVerb::Write)(StoreError::new(e)))?;
                encoded.push((entry.log_id.index, seq, bytes));
                pending.insert(entry.log_id.index, (seq, entry));
            }
        }
        // Readable now (from `pending`); the flusher reports it flushed after its commit.
        self.send(Op::Append { entries: encoded, done: callback }).map_err(log_err(ErrorVerb::Write))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut pending = self.shared.pending.write().unwrap_or_else(|p| p.into_inner());
            pending.split_off(&log_id.index);
        }
        self.write_through(|done| Op::Truncate { from: log_id.index, done }).await.map_err(log_err(ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write_through(|done| Op::Purge { upto: log_id, done }).await.map_err(log_err(ErrorVerb::Delete))
    }
}

/// The flusher thread: takes every queued write, commits them in one durable transaction (one
/// fsync), then reports each done, in order. Ends when every `LogStore` clone is gone.
fn flush_loop(store: Store, shared: std::sync::Weak<Shared>, queue: mpsc::Receiver<Op>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter());
        let Some(shared) = shared.upgrade() else { return };
        let committed = *shared.committed.lock().unwrap_or_else(|p| p.into_inner());
        let started = std::time::Instant::now();
        let result = store.write(|txn| {
            let mut table = txn.open_table(LOG)?;
            for op in &batch {
                match op {
                    Op::Append { entries, .. } => {
                        for (index, _, bytes) in entries {
                            table.insert(*index, bytes.as_slice())?;
                        }
                    }
                    Op::Truncate { from, .. } => remove_range(&mut table, *from..)?,
                    Op::Purge { upto, .. } => {
                        remove_range(&mut table, ..=upto.index)?;
                        store::put(txn, META, "last_purged", upto)?;
                    }
                }
            }
            drop(table);
            store::put(txn, META, "committed", &committed)
        });
        let appends = batch.iter().filter(|op| matches!(op, Op::Append { .. })).count();
        crate::metrics::log_flush(appends, started.elapsed());
        if result.is_ok() {
            // On disk now: drop what this batch wrote from `pending`, unless a later append
            // (after a truncate) has put another entry at that index meanwhile.
            let mut pending = shared.pending.write().unwrap_or_else(|p| p.into_inner());
            for op in &batch {
                if let Op::Append { entries, .. } = op {
                    for (index, seq, _) in entries {
                        if pending.get(index).is_some_and(|(s, _)| s == seq) {
                            pending.remove(index);
                        }
                    }
                }
            }
        }
        let error = result.err().map(|e| e.to_string());
        for op in batch {
            match op {
                Op::Append { done, .. } => {
                    done.log_io_completed(match &error {
                        None => Ok(()),
                        Some(e) => Err(std::io::Error::other(e.clone())),
                    });
                }
                Op::Truncate { done, .. } | Op::Purge { done, .. } => {
                    let _ = done.send(error.clone().map_or(Ok(()), Err));
                }
            }
        }
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

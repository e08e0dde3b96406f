//! `StateMachine`: openraft's `RaftStateMachine` over the in-memory `Replica`.
//!
//! `apply` decodes nothing and decides nothing: it hands each command to `Replica::apply` and
//! returns the outcome. The replica lives in memory; its durability comes from the log (replayed
//! up to the committed index on restart) and from snapshots, which are written to the node's
//! redb file before openraft may purge the log they cover.

use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::replica::{Change, Replica, ReplicaEvent};
use super::store::{self, Store, StoreError, SNAPSHOT};
use super::{Entry, LogId, LogOutcome, NodeId, StorageError, TypeConfig};
use crate::events::{EventLog, What};
use crate::service::Waits;

type Membership = StoredMembership<NodeId, openraft::BasicNode>;
type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// What has been applied on this node, read by the service layer for queries.
#[derive(Debug, Default)]
pub struct Applied {
    pub replica: Replica,
    pub last_applied: Option<LogId>,
    pub membership: Membership,
}

/// A shared, read-only view of the applied state.
#[derive(Clone)]
pub struct AppliedView {
    inner: Arc<RwLock<Applied>>,
}

impl AppliedView {
    /// Locks the applied state for reading. Never hold the guard across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, Applied> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshotMeta {
    meta: Meta,
}

/// The node's state machine; also its own snapshot builder (a cheap clone).
#[derive(Clone)]
pub struct StateMachine {
    store: Store,
    view: AppliedView,
    events: EventLog,
    /// The long-poll acquires open on this node, told how their queue entries end.
    waits: Waits,
}

fn snapshot_err(verb: ErrorVerb) -> impl FnOnce(StoreError) -> StorageError {
    move |e| StorageIOError::new(ErrorSubject::Snapshot(None), verb, &e).into()
}

impl StateMachine {
    /// Loads the last persisted snapshot, if any; openraft replays the log from there.
    pub fn open(store: Store, events: EventLog, waits: Waits) -> Result<StateMachine, StoreError> {
        let mut applied = Applied::default();
        if let Some(StoredSnapshotMeta { meta }) = store.get::<StoredSnapshotMeta>(SNAPSHOT, "meta")? {
            let data: Vec<u8> = store.get(SNAPSHOT, "data")?.unwrap_or_default();
            applied.replica = Replica::restore(&data).map_err(StoreError::new)?;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
        }
        Ok(StateMachine { store, view: AppliedView { inner: Arc::new(RwLock::new(applied)) }, events, waits })
    }

    pub fn view(&self) -> AppliedView {
        self.view.clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Applied> {
        self.view.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, meta: &Meta, data: &[u8]) -> Result<(), StoreError> {
        self.store.write(|txn| {
            store::put(txn, SNAPSHOT, "meta", &StoredSnapshotMeta { meta: meta.clone() })?;
            store::put(txn, SNAPSHOT, "data", &data)?;
            Ok(())
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = std::time::Instant::now();
        let (data, last_applied, membership) = {
            let applied = self.view.read();
            (applied.replica.snapshot(), applied.last_applied, applied.membership.clone())
        };
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => "empty".to_string(),
        };
        let meta = Meta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        // Durable before openraft learns of it: openraft purges the log this snapshot covers.
        self.persist(&meta, &data).map_err(snapshot_err(ErrorVerb::Write))?;
        tracing::info!(index = ?last_applied.map(|l| l.index), bytes = data.len(), took_ms = started.elapsed().as_millis() as u64, "snapshot built");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        let applied = self.view.read();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<LogOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut outcomes = Vec::new();
        let mut events: Vec<(u64, ReplicaEvent)> = Vec::new();
        {
            let mut applied = self.write();
            for entry in entries {
                applied.last_applied = Some(entry.log_id);
                let outcome = match entry.payload {
                    EntryPayload::Blank => LogOutcome::Done,
                    EntryPayload::Membership(m) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), m);
                        LogOutcome::Done
                    }
                    EntryPayload::Normal(command) => {
                        let mut happened = Vec::new();
                        let outcome = applied.replica.apply(command, &mut happened);
                        events.extend(happened.into_iter().map(|event| (entry.log_id.index, event)));
                        outcome
                    }
                };
                outcomes.push(outcome);
            }
        }
        let mut position = 0u32;
        let mut last_index = None;
        for (index, event) in events {
            position = if last_index == Some(index) { position + 1 } else { 0 };
            last_index = Some(index);
            // Expiries matter to an operator reading the log; the rest is in the event stream
            // and the metrics, and logging every grant would cost more than granting it.
            if matches!(event.change, Change::SessionExpired { .. }) {
                tracing::info!(index, change = ?event.change, "applied");
            } else {
                tracing::debug!(index, change = ?event.change, "applied");
            }
            crate::metrics::applied(&event.change);
            self.waits.deliver((index, event.command), &event.change);
            self.events.publish(event.at, What::Applied { index, position, change: event.change });
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let replica = Replica::restore(&data).map_err(|e| snapshot_err(ErrorVerb::Read)(StoreError::new(e)))?;
        self.persist(meta, &data).map_err(snapshot_err(ErrorVerb::Write))?;
        let mut applied = self.write();
        applied.replica = replica;
        applied.last_applied = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        drop(applied);
        // The events up to the snapshot were never applied here one by one: the event log
        // holds nothing before it, and a subscriber that asks for them is told so (`compacted`).
        self.events.skipped_to(meta.last_log_id.map_or(0, |l| l.index));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let meta: Option<StoredSnapshotMeta> =
            self.store.get(SNAPSHOT, "meta").map_err(snapshot_err(ErrorVerb::Read))?;
        let Some(StoredSnapshotMeta { meta }) = meta else { return Ok(None) };
        let data: Vec<u8> =
            self.store.get(SNAPSHOT, "data").map_err(snapshot_err(ErrorVerb::Read))?.unwrap_or_default();
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

//! The node's event log: what really happened, as this node saw it — applied session and lock
//! changes (with their log index), leader changes, members becoming unreachable or reachable.
//!
//! Recent events are kept in a ring buffer so a new subscriber (the dashboard, `GET /events`)
//! starts with history; live ones go out on a broadcast channel. Observing only: nothing here
//! feeds back into the lock state.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use lockio_core::UnixMillis;
use tokio::sync::broadcast;

use crate::raft::replica::Change;
use crate::raft::NodeId;

/// How many recent events a new subscriber gets.
const HISTORY: usize = 500;

/// One event.
#[derive(Debug, Clone)]
pub struct Event {
    /// This node's sequence number for the event (the SSE id), from 1.
    pub id: u64,
    /// When it happened: the leader's stamp for applied changes, this node's clock otherwise.
    pub at: UnixMillis,
    pub what: What,
}

#[derive(Debug, Clone)]
pub enum What {
    /// A change applied from the Raft log at `index`; `position` orders the changes of one
    /// entry (an entry carries a batch of commands), the same on every node.
    Applied {
        index: u64,
        position: u32,
        change: Change,
    },
    LeaderChanged {
        leader_id: Option<NodeId>,
        term: u64,
    },
    NodeUnreachable {
        node_id: NodeId,
    },
    NodeReachable {
        node_id: NodeId,
    },
}

/// A cheap handle on the node's event log.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    /// The recent events and the next id; one lock so that a subscriber's history and its live
    /// stream neither overlap nor leave a gap.
    recent: Mutex<(VecDeque<Event>, u64)>,
    live: broadcast::Sender<Event>,
}

impl EventLog {
    pub fn new() -> EventLog {
        let (live, _) = broadcast::channel(4096);
        EventLog { inner: Arc::new(Inner { recent: Mutex::new((VecDeque::with_capacity(HISTORY), 1)), live }) }
    }

    pub fn publish(&self, at: UnixMillis, what: What) {
        let mut recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        let event = Event { id: recent.1, at, what };
        recent.1 += 1;
        if recent.0.len() == HISTORY {
            recent.0.pop_front();
        }
        recent.0.push_back(event.clone());
        // No subscriber is not an error.
        let _ = self.inner.live.send(event);
    }

    /// The recent events with an id above `after`, and a receiver for everything later.
    pub fn subscribe(&self, after: u64) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        let history = recent.0.iter().filter(|e| e.id > after).cloned().collect();
        (history, self.inner.live.subscribe())
    }
}

//! The node's event log: what really happened, as this node saw it — applied session and lock
//! changes (with their place in the Raft log), leader changes, members becoming unreachable or
//! reachable.
//!
//! The last `--event-history` events are kept in a ring buffer; a subscriber (`GET /events`, the
//! dashboard) reads them from there with a cursor of its own, woken when more arrive, so a new
//! subscriber starts with history and one resuming `after` an id gets exactly what followed it.
//! An applied event's id is its place in the log, `INDEX.POSITION` (`EventId`), the same on
//! every node and across restarts. The log knows from which id on it holds every applied event
//! (its *floor*: the snapshot it started from or installed, or the last event it dropped); a
//! subscriber that needs anything older is told so (`Compacted`) instead of skipping it. Events
//! that are not from the log (leader changes, reachability) have no id. Observing only: nothing
//! here feeds back into the lock state.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lockio_core::UnixMillis;
use tokio::sync::watch;

use crate::raft::replica::Change;
use crate::raft::NodeId;

/// How many recent events a node keeps by default (`--event-history`).
pub const DEFAULT_HISTORY: usize = 10_000;

/// How often a quiet stream gets a `progress` event by default.
pub const DEFAULT_PROGRESS: Duration = Duration::from_secs(10);

/// Where an applied event is in the replicated log: the entry's `index` and the event's
/// `position` among that entry's events. Ordered as the log is. Written `INDEX.POSITION`; a bare
/// `INDEX` stands for the end of that entry (after all its events), which is what a node can
/// vouch for when it starts from a snapshot taken there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub index: u64,
    pub position: u32,
}

impl EventId {
    /// The position that stands for "after every event of the entry".
    const END: u32 = u32::MAX;

    pub fn new(index: u64, position: u32) -> EventId {
        EventId { index, position }
    }

    /// After every event of entry `index` and of those before it.
    pub fn end_of(index: u64) -> EventId {
        EventId { index, position: Self::END }
    }

    /// `INDEX.POSITION` or `INDEX`, decimal.
    pub fn parse(raw: &str) -> Option<EventId> {
        let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        match raw.split_once('.') {
            Some((i, p)) if digits(i) && digits(p) => {
                Some(EventId { index: i.parse().ok()?, position: p.parse().ok()? })
            }
            None if digits(raw) => Some(EventId::end_of(raw.parse().ok()?)),
            _ => None,
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.position == Self::END {
            write!(f, "{}", self.index)
        } else {
            write!(f, "{}.{}", self.index, self.position)
        }
    }
}

/// One event.
#[derive(Debug, Clone)]
pub struct Event {
    /// This node's sequence number for the event, from 1: the order it was published in.
    pub seq: u64,
    /// The event's place in the log (the SSE id); `None` for events that are not from the log.
    pub id: Option<EventId>,
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

impl Event {
    /// Whether the event is about a resource that starts with `prefix`: a lock event on such a
    /// resource, or a session's end that released one (its queue entries leave with
    /// `lock_wait_ended` events of their own).
    pub fn concerns(&self, prefix: &str) -> bool {
        let What::Applied { change, .. } = &self.what else { return false };
        match change {
            Change::SessionCreated { .. } => false,
            Change::SessionDeleted { released, .. } | Change::SessionExpired { released, .. } => {
                released.iter().any(|g| g.resource.as_str().starts_with(prefix))
            }
            Change::LockAcquired { grant, .. } | Change::LockReleased { grant, .. } => {
                grant.resource.as_str().starts_with(prefix)
            }
            Change::LockWaiting { resource, .. } | Change::LockWaitEnded { resource, .. } => {
                resource.as_str().starts_with(prefix)
            }
        }
    }
}

/// The answer to a subscriber that needs events this node no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Where the subscriber stood: it has everything up to here.
    pub requested: EventId,
    /// The oldest point this node can resume from: it holds every event after it.
    pub oldest: EventId,
    /// The newest point this node has reached, valid as `after`.
    pub current: EventId,
}

/// A cheap handle on the node's event log.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    ring: Mutex<Ring>,
    /// The sequence number of the newest event, for waking subscribers.
    published: watch::Sender<u64>,
    /// How often a quiet stream gets a `progress` event.
    progress: Duration,
}

struct Ring {
    events: VecDeque<Event>,
    capacity: usize,
    next_seq: u64,
    /// Every applied event after this point that this node has applied is in `events`.
    floor: EventId,
    /// The id of the newest applied event published.
    newest: Option<EventId>,
}

impl Ring {
    fn current(&self) -> EventId {
        self.newest.map_or(self.floor, |n| n.max(self.floor))
    }
}

/// One subscriber's place in the log.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The subscriber has (or does not want) every applied event up to here.
    seen: EventId,
    /// The sequence number of the last event looked at.
    cursor: u64,
    /// Events that are not from the log are sent only if published after this sequence
    /// number: a resumed stream does not get them again.
    notes_after: u64,
    prefix: Option<String>,
    wake: watch::Receiver<u64>,
}

impl Subscription {
    /// Everything up to here was delivered or did not match: valid as `after`.
    pub fn seen(&self) -> EventId {
        self.seen
    }

    /// Waits until something was published since the last `EventLog::read`.
    pub async fn changed(&mut self) {
        if self.wake.changed().await.is_err() {
            // The log is gone with its node; nothing more will come.
            std::future::pending::<()>().await;
        }
    }
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog::new()
    }
}

impl EventLog {
    /// A log with the default history and progress interval.
    pub fn new() -> EventLog {
        EventLog::with_history(DEFAULT_HISTORY, DEFAULT_PROGRESS)
    }

    /// A log that keeps the last `capacity` events (at least 1).
    pub fn with_history(capacity: usize, progress: Duration) -> EventLog {
        let capacity = capacity.max(1);
        let ring = Ring {
            events: VecDeque::with_capacity(capacity.min(DEFAULT_HISTORY)),
            capacity,
            next_seq: 1,
            floor: EventId::end_of(0),
            newest: None,
        };
        let (published, _) = watch::channel(0);
        EventLog { inner: Arc::new(Inner { ring: Mutex::new(ring), published, progress }) }
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        self.inner.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How often a quiet stream gets a `progress` event.
    pub fn progress_interval(&self) -> Duration {
        self.inner.progress
    }

    /// The state machine now stands at the end of entry `index` without having applied (and
    /// published) the entries up to it here: it started from a snapshot taken there, or
    /// installed one. Events up to that point are not this node's to give.
    pub fn skipped_to(&self, index: u64) {
        let mut ring = self.ring();
        ring.floor = ring.floor.max(EventId::end_of(index));
        drop(ring);
        // Subscribers that now miss something learn it at once.
        self.inner.published.send_modify(|_| {});
    }

    /// The newest point this node has reached.
    #[cfg(test)]
    pub fn current(&self) -> EventId {
        self.ring().current()
    }

    pub fn publish(&self, at: UnixMillis, what: What) {
        let mut ring = self.ring();
        let id = match &what {
            What::Applied { index, position, .. } => Some(EventId::new(*index, *position)),
            _ => None,
        };
        let seq = ring.next_seq;
        ring.next_seq += 1;
        if ring.events.len() == ring.capacity {
            if let Some(dropped) = ring.events.pop_front().and_then(|e| e.id) {
                ring.floor = ring.floor.max(dropped);
            }
        }
        if let Some(id) = id {
            ring.newest = Some(ring.newest.map_or(id, |n| n.max(id)));
        }
        ring.events.push_back(Event { seq, id, at, what });
        drop(ring);
        self.inner.published.send_replace(seq);
    }

    /// A subscriber that gets the events after `after` (the recent history when `None`), only
    /// those about resources starting with `prefix` when given.
    pub fn subscribe(&self, after: Option<EventId>, prefix: Option<String>) -> Subscription {
        let ring = self.ring();
        let wake = self.inner.published.subscribe();
        let before_all = ring.events.front().map_or(ring.next_seq, |e| e.seq) - 1;
        let (seen, notes_after) = match after {
            Some(after) => (after, ring.next_seq - 1),
            None => (ring.floor, before_all),
        };
        Subscription { seen, cursor: before_all, notes_after, prefix, wake }
    }

    /// The next events for `sub`, at most `max` of them; empty when it has everything so far.
    /// `Err` when it needs events this node no longer holds: it can never continue.
    pub fn read(&self, sub: &mut Subscription, max: usize) -> Result<Vec<Event>, Compacted> {
        sub.wake.borrow_and_update();
        let ring = self.ring();
        if ring.floor > sub.seen {
            return Err(Compacted { requested: sub.seen, oldest: ring.floor, current: ring.current() });
        }
        let first = ring.events.front().map_or(ring.next_seq, |e| e.seq);
        let start = (sub.cursor + 1).saturating_sub(first) as usize;
        let mut out = Vec::new();
        for event in ring.events.iter().skip(start) {
            if out.len() == max {
                break;
            }
            sub.cursor = event.seq;
            let wanted = match event.id {
                Some(id) if id <= sub.seen => false,
                Some(id) => {
                    sub.seen = id;
                    true
                }
                None => event.seq > sub.notes_after,
            };
            if wanted && sub.prefix.as_deref().is_none_or(|p| event.concerns(p)) {
                out.push(event.clone());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockio_core::{ClientId, Resource, SessionId, WaitEnd};

    fn grant(resource: &str) -> Change {
        Change::LockWaitEnded {
            resource: Resource::new(resource).unwrap(),
            session_id: SessionId(uuid::Uuid::nil()),
            client_id: ClientId::new("c").unwrap(),
            reason: WaitEnd::Timeout,
            waited_ms: 0,
            blocked_by: None,
        }
    }

    fn applied(log: &EventLog, index: u64, position: u32, resource: &str) {
        log.publish(UnixMillis(0), What::Applied { index, position, change: grant(resource) });
    }

    fn ids(events: &[Event]) -> Vec<String> {
        events.iter().map(|e| e.id.map_or("-".to_string(), |i| i.to_string())).collect()
    }

    #[test]
    fn ids_print_and_parse() {
        for (raw, id) in [("12.0", EventId::new(12, 0)), ("7.3", EventId::new(7, 3)), ("9", EventId::end_of(9))] {
            assert_eq!(EventId::parse(raw), Some(id), "{raw}");
            assert_eq!(id.to_string(), raw);
        }
        for bad in ["", "x", "1.", ".1", "1.2.3", "-1", "1-2", " 1", "1.99999999999", "99999999999999999999999"] {
            assert_eq!(EventId::parse(bad), None, "{bad:?}");
        }
        assert!(EventId::new(5, 9) < EventId::end_of(5) && EventId::end_of(5) < EventId::new(6, 0));
    }

    #[test]
    fn a_subscriber_gets_history_then_live_events_and_resumes_after_an_id() {
        let log = EventLog::with_history(100, DEFAULT_PROGRESS);
        applied(&log, 3, 0, "a");
        log.publish(UnixMillis(0), What::LeaderChanged { leader_id: Some(1), term: 1 });
        applied(&log, 3, 1, "b");
        let mut fresh = log.subscribe(None, None);
        assert_eq!(ids(&log.read(&mut fresh, 10).unwrap()), ["3.0", "-", "3.1"]);
        let mut resumed = log.subscribe(EventId::parse("3.0"), None);
        assert_eq!(ids(&log.read(&mut resumed, 10).unwrap()), ["3.1"], "no note from before the resume");
        applied(&log, 4, 0, "a");
        log.publish(UnixMillis(0), What::NodeReachable { node_id: 2 });
        assert_eq!(ids(&log.read(&mut fresh, 10).unwrap()), ["4.0", "-"]);
        assert_eq!(ids(&log.read(&mut resumed, 1).unwrap()), ["4.0"]);
        assert_eq!(ids(&log.read(&mut resumed, 1).unwrap()), ["-"]);
        assert!(log.read(&mut resumed, 1).unwrap().is_empty());
        // An id from a node that is ahead: nothing until this one passes it.
        let mut ahead = log.subscribe(EventId::parse("5.0"), None);
        applied(&log, 5, 0, "a");
        applied(&log, 5, 1, "a");
        assert_eq!(ids(&log.read(&mut ahead, 10).unwrap()), ["5.1"]);
        assert_eq!(ahead.seen(), EventId::new(5, 1));
    }

    #[test]
    fn a_prefix_keeps_only_its_resources_and_moves_the_point_reached() {
        let log = EventLog::with_history(100, DEFAULT_PROGRESS);
        applied(&log, 1, 0, "orders/1");
        applied(&log, 2, 0, "billing/1");
        let mut sub = log.subscribe(None, Some("orders/".into()));
        assert_eq!(ids(&log.read(&mut sub, 10).unwrap()), ["1.0"]);
        assert_eq!(sub.seen(), EventId::new(2, 0), "the skipped event is behind it too");
    }

    #[test]
    fn what_the_node_no_longer_holds_is_compacted_never_skipped() {
        let log = EventLog::with_history(3, DEFAULT_PROGRESS);
        let mut slow = log.subscribe(None, None);
        for i in 1..=5 {
            applied(&log, i, 0, "r");
        }
        let gone = log.read(&mut slow, 10).unwrap_err();
        assert_eq!(
            gone,
            Compacted { requested: EventId::end_of(0), oldest: EventId::new(2, 0), current: EventId::new(5, 0) }
        );
        let mut old = log.subscribe(EventId::parse("1.0"), None);
        assert!(log.read(&mut old, 10).is_err());
        let mut oldest = log.subscribe(Some(gone.oldest), None);
        assert_eq!(ids(&log.read(&mut oldest, 10).unwrap()), ["3.0", "4.0", "5.0"]);

        // A snapshot installed past what a subscriber has seen.
        log.skipped_to(9);
        assert_eq!(log.read(&mut oldest, 10).unwrap_err().oldest, EventId::end_of(9));
        let mut now = log.subscribe(Some(log.current()), None);
        assert!(log.read(&mut now, 10).unwrap().is_empty());
        assert_eq!(log.current().to_string(), "9");
    }

    #[test]
    fn a_node_started_from_a_snapshot_holds_only_what_came_after() {
        let log = EventLog::with_history(100, DEFAULT_PROGRESS);
        log.skipped_to(40);
        applied(&log, 41, 0, "r");
        assert!(log.read(&mut log.subscribe(EventId::parse("40.2"), None), 10).is_err());
        assert_eq!(ids(&log.read(&mut log.subscribe(EventId::parse("40"), None), 10).unwrap()), ["41.0"]);
        assert_eq!(ids(&log.read(&mut log.subscribe(None, None), 10).unwrap()), ["41.0"]);
    }
}

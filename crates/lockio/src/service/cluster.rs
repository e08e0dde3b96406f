//! This node's view of the cluster, for `/health` and `/cluster/status`: role, leader, term,
//! quorum, indexes, and every member as this node last heard from it. Computed from openraft's
//! metrics, the few `Signals` the adapters record, and the members' reports (`members`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lockio_core::Stats;
use openraft::ServerState;
use tokio::time::Instant;

use super::members::{millis_since, NodeReport, Role};
use super::Service;
use crate::raft::NodeId;

/// What the adapters observe that openraft's metrics do not carry.
#[derive(Clone)]
pub struct Signals {
    started: Instant,
    /// When this node last took an AppendEntries (or heartbeat) from a leader.
    last_leader_contact: Arc<Mutex<Option<Instant>>>,
    /// The committed index, as the log store last saved it.
    committed: Arc<AtomicU64>,
}

impl Signals {
    pub fn new(committed: Arc<AtomicU64>) -> Signals {
        Signals { started: Instant::now(), last_leader_contact: Arc::new(Mutex::new(None)), committed }
    }

    /// Called by the transport when a leader's AppendEntries was accepted.
    pub fn leader_contact(&self) {
        *self.last_leader_contact.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    pub fn committed_index(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    fn since_leader_contact(&self) -> Option<std::time::Duration> {
        let last = *self.last_leader_contact.lock().unwrap_or_else(|p| p.into_inner());
        last.map(|t| t.elapsed())
    }
}

/// `/health`.
#[derive(Debug, Clone)]
pub struct Health {
    pub node_id: NodeId,
    pub is_leader: bool,
    pub leader_id: Option<NodeId>,
    /// The leader's Raft address.
    pub leader: Option<String>,
    /// Healthy: a follower that heard from the leader, or a leader that heard from a majority,
    /// within the election timeout.
    pub healthy: bool,
}

/// One member in `/cluster/status`.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    pub id: NodeId,
    pub raft: String,
    /// As the member advertised it; `None` until its advert is applied.
    pub http: Option<String>,
    /// The member's own latest report (this node's own for itself); `None` if it never answered.
    pub report: Option<NodeReport>,
    /// Whether the member answers this node now, and how long ago it last did.
    pub reachable: bool,
    pub last_contact_ms: Option<u64>,
    /// The last log index known to be on that member, and how far behind the leader's log it
    /// is, from the leader (this node, or the leader's latest report).
    pub matched_index: Option<u64>,
    pub lag: Option<u64>,
}

/// `/cluster/status`.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    pub health: Health,
    /// This node's Raft address.
    pub raft_addr: String,
    pub state: &'static str,
    pub term: u64,
    pub uptime_secs: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// The last log index covered by this node's latest snapshot, and the last one it purged.
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub members: Vec<MemberStatus>,
    pub stats: Stats,
}

impl Service {
    pub fn health(&self) -> Health {
        let metrics = self.raft().metrics();
        let metrics = metrics.borrow();
        let within = self.inner.config.election_timeout;
        let healthy = match metrics.state {
            ServerState::Leader => {
                let voters = metrics.membership_config.membership().voter_ids().count();
                // A lone voter is its own majority; openraft reports no quorum ack for it.
                voters <= 1 || metrics.millis_since_quorum_ack.is_some_and(|ms| u128::from(ms) <= within.as_millis())
            }
            ServerState::Follower => self.inner.signals.since_leader_contact().is_some_and(|d| d <= within),
            _ => false,
        };
        let leader = metrics
            .current_leader
            .and_then(|id| metrics.membership_config.membership().get_node(&id).map(|n| n.addr.clone()));
        Health {
            node_id: self.node_id(),
            is_leader: metrics.state == ServerState::Leader,
            leader_id: metrics.current_leader,
            leader,
            healthy,
        }
    }

    pub fn cluster_status(&self) -> ClusterStatus {
        let health = self.health();
        let metrics = self.raft().metrics().borrow().clone();
        let me = self.node_report();
        let seen = self.members_seen();
        // Replication progress, as the leader reports it (from here if this node leads).
        let leader_report = if me.role == Role::Leader {
            Some(&me)
        } else {
            seen.values().filter_map(|s| s.report.as_ref()).find(|r| r.role == Role::Leader && r.term >= me.term)
        };
        let membership = metrics.membership_config.membership();
        let applied = self.view().read();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let (report, reachable, last_contact_ms) = if *id == me.node_id {
                    (Some(me.clone()), true, Some(0))
                } else {
                    let s = seen.get(id).cloned().unwrap_or_default();
                    (s.report, s.reachable, s.last_contact.map(millis_since))
                };
                let matched = leader_report.and_then(|l| l.matched.get(id).copied());
                MemberStatus {
                    id: *id,
                    raft: node.addr.clone(),
                    http: applied.replica.http_addrs.get(id).cloned(),
                    report,
                    reachable,
                    last_contact_ms,
                    matched_index: matched,
                    lag: matched.zip(leader_report).map(|(m, l)| l.last_log_index.saturating_sub(m)),
                }
            })
            .collect();
        let raft_addr = membership.get_node(&self.node_id()).map(|n| n.addr.clone()).unwrap_or_default();
        ClusterStatus {
            health,
            raft_addr,
            state: me.role.as_str(),
            term: me.term,
            uptime_secs: self.inner.signals.started.elapsed().as_secs(),
            commit_index: me.commit_index,
            applied_index: me.applied_index,
            snapshot_index: metrics.snapshot.map(|l| l.index),
            purged_index: metrics.purged.map(|l| l.index),
            members,
            stats: applied.replica.locks.stats(),
        }
    }
}

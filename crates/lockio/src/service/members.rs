//! What this node knows of every member: each one's own report of its role, term and indexes,
//! asked over the transport every `PROBE_INTERVAL`, when it last answered, and whether it can
//! be reached. Also the watcher that notices leader changes. Both publish to the event log.
//!
//! This is for people looking at the cluster (dashboard, `/cluster/status`); no decision about
//! locks or sessions is made from it.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::ServerState;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{wall_now, Service};
use crate::events::What;
use crate::raft::NodeId;
use crate::transport::path;

/// How often each member is asked for its report, and how long it has to answer before it
/// counts as unreachable.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// A member's role in Raft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "LEADER",
            Role::Follower => "FOLLOWER",
            Role::Candidate => "CANDIDATE",
            Role::Learner => "LEARNER",
            Role::Shutdown => "SHUTDOWN",
        }
    }
}

impl From<ServerState> for Role {
    fn from(s: ServerState) -> Role {
        match s {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        }
    }
}

/// A node's own account of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node_id: NodeId,
    pub role: Role,
    pub term: u64,
    pub leader_id: Option<NodeId>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    /// On a leader: the last log index known to be on each member.
    pub matched: BTreeMap<NodeId, u64>,
}

/// What this node last heard from one member.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub report: Option<NodeReport>,
    pub last_contact: Option<Instant>,
    pub reachable: bool,
}

impl Service {
    /// This node's report, as it answers a probe.
    pub fn node_report(&self) -> NodeReport {
        let metrics = self.raft().metrics().borrow().clone();
        NodeReport {
            node_id: self.node_id(),
            role: metrics.state.into(),
            term: metrics.current_term,
            leader_id: metrics.current_leader,
            commit_index: self.signals().committed_index(),
            applied_index: metrics.last_applied.map(|l| l.index).unwrap_or(0),
            last_log_index: metrics.last_log_index.unwrap_or(0),
            matched: metrics
                .replication
                .iter()
                .flatten()
                .map(|(id, l)| (*id, l.as_ref().map(|l| l.index).unwrap_or(0)))
                .collect(),
        }
    }

    /// The latest reports of the other members.
    pub fn members_seen(&self) -> BTreeMap<NodeId, Seen> {
        self.inner.members.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record_probe(&self, id: NodeId, report: Option<NodeReport>) {
        let mut seen = self.inner.members.lock().unwrap_or_else(|p| p.into_inner());
        let entry = seen.entry(id).or_default();
        let was_reachable = entry.reachable || entry.last_contact.is_none();
        let now = Instant::now();
        match report {
            Some(report) => {
                entry.report = Some(report);
                entry.last_contact = Some(now);
                entry.reachable = true;
            }
            None => entry.reachable = false,
        }
        let reachable = entry.reachable;
        drop(seen);
        if reachable != was_reachable {
            let what =
                if reachable { What::NodeReachable { node_id: id } } else { What::NodeUnreachable { node_id: id } };
            self.inner.events.publish(wall_now(), what);
        }
    }
}

/// Asks every other member for its report every `PROBE_INTERVAL`, for as long as the node runs.
pub async fn run_member_probes(service: Service) {
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let members: Vec<(NodeId, String)> = {
            let metrics = service.raft().metrics();
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            membership
                .nodes()
                .filter(|(id, _)| **id != service.node_id())
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect()
        };
        let probes = members.into_iter().map(|(id, addr)| {
            let service = service.clone();
            async move {
                let report =
                    service.inner.peers.call::<_, NodeReport>(&addr, path::REPORT, &(), PROBE_INTERVAL).await.ok();
                service.record_probe(id, report);
            }
        });
        futures_util::future::join_all(probes).await;
    }
}

/// Publishes an event whenever the leader this node knows of changes, counts the changes, and
/// keeps `Service::leader_changes` current.
pub async fn run_leader_watch(service: Service) {
    let mut metrics = service.raft().metrics();
    let mut last: (Option<NodeId>, u64) = (None, 0);
    loop {
        let now = {
            let m = metrics.borrow_and_update();
            (m.current_leader, m.current_term)
        };
        if now.0 != last.0 {
            service.inner.leader.send_replace(now.0);
            if now.0.is_some() {
                crate::metrics::leader_changed();
                service.inner.events.publish(wall_now(), What::LeaderChanged { leader_id: now.0, term: now.1 });
            }
        }
        last = now;
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Milliseconds since `t`, for display.
pub fn millis_since(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

//! Forming the cluster, once: the member with the lowest id in `--peers` initializes openraft
//! with every listed member, when it first reaches all of them and none is initialized yet.
//!
//! Never twice: a node whose Raft state is initialized does nothing here, and the initializing
//! node backs off if any peer already belongs to a cluster (it is then itself a wiped member,
//! which must not start a second cluster).

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::BasicNode;

use crate::cli::Peers;
use crate::raft::{NodeId, Raft};
use crate::transport::server::Hello;
use crate::transport::{path, PeerClient};

pub async fn form_cluster_once(raft: Raft, node_id: NodeId, peers: Peers, client: PeerClient) {
    match raft.is_initialized().await {
        Ok(false) => {}
        Ok(true) | Err(_) => return,
    }
    if peers.keys().next() != Some(&node_id) {
        tracing::info!("waiting to be added to the cluster by node {}", peers.keys().next().unwrap_or(&0));
        return;
    }
    let members: BTreeMap<NodeId, BasicNode> = peers.iter().map(|(id, addr)| (*id, BasicNode::new(addr))).collect();
    let mut waiting_logged = false;
    loop {
        let mut all_pristine = true;
        for (id, addr) in peers.iter().filter(|(id, _)| **id != node_id) {
            match client.call::<_, Hello>(addr, path::HELLO, &(), Duration::from_secs(1)).await {
                Ok(hello) if hello.initialized => {
                    tracing::warn!(peer = id, "peer already belongs to a cluster; this node will not form another");
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    if !waiting_logged {
                        tracing::info!(peer = id, error = %e, "waiting for every member to start before forming the cluster");
                        waiting_logged = true;
                    }
                    all_pristine = false;
                }
            }
        }
        if all_pristine {
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(members = ?peers, "cluster formed"),
                Err(e) => tracing::info!(error = %e, "cluster already initialized"),
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

//! `Forwarder`: carries the requests a follower cannot serve itself to the leader, many per
//! transport call.
//!
//! Each destination has its own lane: requests that arrive while the lane's calls are in flight
//! go together in the next call, so under load one HTTP round trip carries a batch (and the
//! leader proposes their commands together). A lane to a node that stopped answering holds up
//! only its own requests, never those for the new leader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::batching::run_batches;
use super::{Forwarded, Reply, ServiceError};
use crate::transport::{path, CallError, PeerClient};

/// Calls in flight per destination.
const IN_FLIGHT: usize = 4;
/// The most requests in one call.
const MAX_BATCH: usize = 256;

type Answer = Result<Reply, ServiceError>;

struct Job {
    forwarded: Forwarded,
    /// Whether the request proposes a command: if so, a call that may have arrived leaves its
    /// outcome unknown.
    proposes: bool,
    reply: oneshot::Sender<Answer>,
}

/// A handle on the node's forwarding lanes.
#[derive(Clone)]
pub struct Forwarder {
    peers: PeerClient,
    lanes: Arc<Mutex<HashMap<String, mpsc::Sender<Job>>>>,
}

impl Forwarder {
    pub fn new(peers: PeerClient) -> Forwarder {
        Forwarder { peers, lanes: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Sends `forwarded` (which `proposes` a command, or not) to the node at `addr` (its Raft
    /// address) and returns its answer.
    pub async fn forward(&self, addr: &str, forwarded: Forwarded, proposes: bool) -> Answer {
        let (tx, rx) = oneshot::channel();
        let lane = self.lane(addr);
        if lane.send(Job { forwarded, proposes, reply: tx }).await.is_err() {
            return Err(ServiceError::Unavailable { reason: "forwarding stopped".into(), outcome_unknown: false });
        }
        rx.await
            .unwrap_or(Err(ServiceError::Unavailable { reason: "forwarding lost".into(), outcome_unknown: proposes }))
    }

    /// Sends `forwarded` on a call of its own, outside the lanes: for a request that may stay
    /// open for long (a wait), which must neither hold up a batch nor outlive its caller.
    pub async fn forward_alone(&self, addr: &str, forwarded: Forwarded, proposes: bool) -> Answer {
        let budget = Duration::from_millis(forwarded.budget_ms);
        match self.peers.call::<_, Vec<Answer>>(addr, path::FORWARD, &vec![forwarded], budget).await {
            Ok(mut answers) if answers.len() == 1 => answers.remove(0),
            Ok(_) => {
                Err(ServiceError::Unavailable { reason: "bad forwarding answer".into(), outcome_unknown: proposes })
            }
            Err(e) => {
                let delivered = matches!(e, CallError::Failed { .. });
                Err(ServiceError::Unavailable { reason: e.to_string(), outcome_unknown: delivered && proposes })
            }
        }
    }

    fn lane(&self, addr: &str) -> mpsc::Sender<Job> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lane) = lanes.get(addr) {
            return lane.clone();
        }
        let (tx, rx) = mpsc::channel(8192);
        tokio::spawn(run_lane(self.peers.clone(), addr.to_string(), rx));
        lanes.insert(addr.to_string(), tx.clone());
        tx
    }
}

async fn run_lane(peers: PeerClient, addr: String, rx: mpsc::Receiver<Job>) {
    run_batches(rx, IN_FLIGHT, MAX_BATCH, move |jobs| {
        let (peers, addr) = (peers.clone(), addr.clone());
        async move {
            let budget = jobs.iter().map(|j| j.forwarded.budget_ms).max().unwrap_or(0);
            let (batch, replies): (Vec<Forwarded>, Vec<(bool, oneshot::Sender<Answer>)>) =
                jobs.into_iter().map(|j| (j.forwarded, (j.proposes, j.reply))).unzip();
            let answers =
                peers.call::<_, Vec<Answer>>(&addr, path::FORWARD, &batch, Duration::from_millis(budget)).await;
            match answers {
                Ok(answers) if answers.len() == replies.len() => {
                    for ((_, reply), answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(answer);
                    }
                }
                Ok(answers) => {
                    tracing::error!(
                        sent = replies.len(),
                        got = answers.len(),
                        "a forwarded batch came back with the wrong count"
                    );
                    for (proposes, reply) in replies {
                        let _ = reply.send(Err(ServiceError::Unavailable {
                            reason: "bad forwarding answer".into(),
                            outcome_unknown: proposes,
                        }));
                    }
                }
                Err(e) => {
                    let delivered = matches!(e, CallError::Failed { .. });
                    for (proposes, reply) in replies {
                        let _ = reply.send(Err(ServiceError::Unavailable {
                            reason: e.to_string(),
                            outcome_unknown: delivered && proposes,
                        }));
                    }
                }
            }
        }
    })
    .await
}

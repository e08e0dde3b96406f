//! `ReadBarrier`: confirms, for many concurrent callers at once, that this node is still the
//! leader and has applied everything committed before they asked (Raft's read index).
//!
//! A task starts openraft's `ensure_linearizable` rounds, up to `IN_FLIGHT` at once. A caller
//! joins the next round that *starts after it asked*, never one already in flight, so the
//! confirmation always postdates the caller's arrival. Linearizable reads and keepalives share
//! it; under load one heartbeat round serves hundreds of callers.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::{mpsc, oneshot};

use super::batching::run_batches;
use super::ServiceError;
use crate::raft::{NodeId, Raft};

type Waiter = oneshot::Sender<Result<(), ServiceError>>;

/// Rounds in flight at once: a new round need not wait for the last one's replies, so callers
/// wait for about one round trip, not two.
const IN_FLIGHT: usize = 2;

/// A handle on the read-index task.
#[derive(Clone)]
pub struct ReadBarrier {
    waiters: mpsc::Sender<Waiter>,
}

impl ReadBarrier {
    /// Starts the task. `round_timeout` bounds one round, so a leader cut off from its
    /// majority fails callers instead of holding them.
    pub fn start(raft: Raft, round_timeout: Duration) -> ReadBarrier {
        // Bounded: past this many queued callers, new ones wait to enqueue (backpressure).
        let (tx, rx) = mpsc::channel::<Waiter>(8192);
        tokio::spawn(run_batches(rx, IN_FLIGHT, usize::MAX, move |batch| {
            let raft = raft.clone();
            async move {
                let result = match tokio::time::timeout(round_timeout, raft.ensure_linearizable()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(confirm_error(e)),
                    Err(_) => Err(ServiceError::Unavailable {
                        reason: "the leader could not reach a majority in time".into(),
                        outcome_unknown: false,
                    }),
                };
                for waiter in batch {
                    let _ = waiter.send(result.clone());
                }
            }
        }));
        ReadBarrier { waiters: tx }
    }

    /// Returns once this node has been confirmed leader by a round that began after the call,
    /// and has applied the log up to that round's read index.
    pub async fn confirm(&self) -> Result<(), ServiceError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || ServiceError::Unavailable { reason: "node is shutting down".into(), outcome_unknown: false };
        self.waiters.send(tx).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

fn confirm_error(e: RaftError<NodeId, CheckIsLeaderError<NodeId, openraft::BasicNode>>) -> ServiceError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => ServiceError::NotLeader { leader: f.leader_id },
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)) => {
            ServiceError::Unavailable { reason: "the leader could not reach a majority".into(), outcome_unknown: false }
        }
        RaftError::Fatal(f) => {
            ServiceError::Unavailable { reason: format!("raft stopped: {f}"), outcome_unknown: false }
        }
    }
}

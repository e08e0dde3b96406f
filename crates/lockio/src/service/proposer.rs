//! `Proposer`: puts the lock commands of concurrent requests into shared log entries.
//!
//! One append and its fsync, one replication round and one apply then serve a whole batch, which
//! is where the leader's write throughput comes from (openraft 0.9 appends each `client_write`
//! on its own). A batch goes out as soon as a proposal slot is free: under light load that is at
//! once, with a batch of one; under heavy load the requests that arrive while earlier batches
//! are in flight form the next one. Each command still gets its own outcome, in order.

use lockio_core::{Command, Outcome};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot};

use super::batching::run_batches;
use super::ServiceError;
use crate::raft::{LogCommand, LogOutcome, Raft};

/// How many batches may be in flight at once: enough to keep the log busy while a batch waits
/// for its fsync and replication, few enough that batches still form under load. Measured at
/// 64 clients: 2 gave 30-40% more writes per second and less CPU per write than 1, 4 or 8.
const IN_FLIGHT: usize = 2;
/// The most commands in one entry.
const MAX_BATCH: usize = 512;

/// A command's outcome and where it was applied: the entry's log index and the command's place
/// in that entry.
type Reply = oneshot::Sender<Result<(Outcome, LogPlace), ServiceError>>;

/// Where a command was applied: (log index, place in the entry's batch). Ordered like the log.
pub type LogPlace = (u64, usize);

/// A handle on the proposing task.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::Sender<(Command, Reply)>,
}

impl Proposer {
    pub fn start(raft: Raft) -> Proposer {
        // Bounded: a flood of requests waits to enqueue rather than growing without limit.
        let (queue, rx) = mpsc::channel::<(Command, Reply)>(8192);
        tokio::spawn(run_batches(rx, IN_FLIGHT, MAX_BATCH, move |batch| {
            let raft = raft.clone();
            async move {
                let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
                let count = commands.len();
                crate::metrics::proposal_batch(count);
                match write(&raft, commands).await {
                    Ok((outcomes, index)) if outcomes.len() == count => {
                        for (place, (reply, outcome)) in replies.into_iter().zip(outcomes).enumerate() {
                            let _ = reply.send(Ok((outcome, (index, place))));
                        }
                    }
                    Ok((outcomes, _)) => {
                        tracing::error!(
                            count,
                            got = outcomes.len(),
                            "a batch applied with the wrong number of outcomes"
                        );
                        for reply in replies {
                            let _ = reply.send(Err(ServiceError::Internal));
                        }
                    }
                    Err(e) => {
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        }));
        Proposer { queue }
    }

    /// Proposes `command` in the next batch and returns its outcome, and where in the log it was
    /// applied, once applied here.
    pub async fn propose(&self, command: Command) -> Result<(Outcome, LogPlace), ServiceError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || ServiceError::Unavailable { reason: "node is shutting down".into(), outcome_unknown: false };
        self.queue.send((command, tx)).await.map_err(|_| stopped())?;
        // A dropped reply means the batch's task died with the outcome unknown.
        rx.await.unwrap_or(Err(ServiceError::Unavailable { reason: "proposal lost".into(), outcome_unknown: true }))
    }
}

/// Appends one entry with `commands` and waits until it is committed and applied here.
async fn write(raft: &Raft, commands: Vec<Command>) -> Result<(Vec<Outcome>, u64), ServiceError> {
    match raft.client_write(LogCommand::Lock(commands)).await {
        Ok(response) => match response.data {
            LogOutcome::Lock(outcomes) => Ok((outcomes, response.log_id.index)),
            LogOutcome::Done => {
                tracing::error!("a lock entry applied without lock outcomes");
                Err(ServiceError::Internal)
            }
        },
        Err(e) => Err(write_error(e)),
    }
}

/// What a failed `client_write` means for the request.
pub fn write_error(
    e: RaftError<crate::raft::NodeId, ClientWriteError<crate::raft::NodeId, openraft::BasicNode>>,
) -> ServiceError {
    match e {
        // openraft answers ForwardToLeader when this node is not the leader, or when the entry
        // was truncated away: either way it was not applied.
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ServiceError::NotLeader { leader: f.leader_id },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            tracing::error!(error = %e, "membership error on a plain write");
            ServiceError::Internal
        }
        RaftError::Fatal(f) => {
            ServiceError::Unavailable { reason: format!("raft stopped: {f}"), outcome_unknown: true }
        }
    }
}

//! The nemesis: real faults on a schedule. Each round waits a quiet spell, finds the leader,
//! injects one fault, holds it, heals it, and measures how long until a write succeeds again.
//!
//! Fault kinds: SIGKILL and restart (the leader, a follower, a random node, or all three at
//! once, which only the disk survives); SIGSTOP the
//! leader for longer than an election and SIGCONT it (a deposed leader wakes up believing it
//! still leads); and kernel partitions (the leader isolated; a random node cut from the other
//! two; a bridge, where two nodes cannot talk to each other but both reach the third).
//!
//! The schedule comes from the seed. The first rounds go through every kind once, in a seeded
//! order, so that even a short run covers them all; later rounds pick kinds at random.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::cluster::{Cluster, NodeId};
use crate::firewall::Firewall;
use crate::rng::Rng;
use crate::workload::Api;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    KillLeader,
    KillFollower,
    KillRandom,
    KillAll,
    PauseLeader,
    IsolateLeader,
    IsolateRandom,
    Bridge,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::KillLeader,
        FaultKind::KillFollower,
        FaultKind::KillRandom,
        FaultKind::KillAll,
        FaultKind::PauseLeader,
        FaultKind::IsolateLeader,
        FaultKind::IsolateRandom,
        FaultKind::Bridge,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillLeader => "kill-leader",
            FaultKind::KillFollower => "kill-follower",
            FaultKind::KillRandom => "kill-random",
            FaultKind::KillAll => "kill-all",
            FaultKind::PauseLeader => "pause-leader",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::IsolateRandom => "isolate-random",
            FaultKind::Bridge => "bridge",
        }
    }

    /// How long the fault is held, drawn from this range.
    fn hold(self) -> (Duration, Duration) {
        let s = Duration::from_secs;
        match self {
            FaultKind::KillLeader | FaultKind::KillFollower | FaultKind::KillRandom => (s(1), s(4)),
            // Short: every session's keepalives fail while the whole cluster is down.
            FaultKind::KillAll => (s(1), s(2)),
            // Well over the election timeout (at most 2 x 200 ms plus the 400 ms lease).
            FaultKind::PauseLeader => (Duration::from_millis(1500), s(4)),
            FaultKind::IsolateLeader | FaultKind::IsolateRandom | FaultKind::Bridge => (s(2), s(5)),
        }
    }
}

/// A fault that was injected, for the report and the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub kind: FaultKind,
    /// What was done, in words ("SIGKILL node 2 (leader)").
    pub what: String,
    pub nodes: Vec<NodeId>,
    /// The leader when the fault began, if one was known.
    pub leader: Option<NodeId>,
    /// Seconds since the run started.
    pub start: f64,
    pub healed: f64,
    /// Seconds from the heal until a write succeeded; `None` if none did within the bound.
    pub recovered_after: Option<f64>,
}

/// How the nemesis paces itself.
#[derive(Debug, Clone)]
pub struct Pacing {
    /// Quiet time between faults, drawn from this range.
    pub quiet: (Duration, Duration),
    /// How long to wait for writes to succeed after a heal before calling it unrecovered.
    pub recovery_bound: Duration,
}

/// The seeded order of fault kinds: all kinds once, then random ones.
pub struct Schedule {
    rng: Rng,
    first: Vec<FaultKind>,
}

impl Schedule {
    pub fn new(seed: u64) -> Schedule {
        let mut rng = Rng::derive(seed, 1);
        let mut first = FaultKind::ALL.to_vec();
        rng.shuffle(&mut first);
        first.reverse();
        Schedule { rng, first }
    }

    pub fn next_kind(&mut self) -> FaultKind {
        self.first.pop().unwrap_or_else(|| *self.rng.pick(&FaultKind::ALL))
    }
}

/// Runs fault rounds until `until`, with every fault healed on return (nodes resumed and
/// restarted, cuts removed). Errors are those of the machinery (iptables, restarting a node).
pub async fn run(
    cluster: &mut Cluster,
    firewall: &mut Firewall,
    api: &Api,
    http: &reqwest::Client,
    seed: u64,
    pacing: &Pacing,
    until: Instant,
) -> anyhow::Result<Vec<FaultRecord>> {
    let mut schedule = Schedule::new(seed);
    let mut rng = Rng::derive(seed, 2);
    let mut records = Vec::new();
    loop {
        let quiet = rng.duration(pacing.quiet.0, pacing.quiet.1);
        let kind = schedule.next_kind();
        let hold = rng.duration(kind.hold().0, kind.hold().1);
        // Only start a round that can finish before the end, heal and recovery included.
        if Instant::now() + quiet + hold + Duration::from_secs(5) > until {
            break;
        }
        tokio::time::sleep(quiet).await;
        let leader = cluster.leader(http).await;
        let ids = cluster.ids();
        let followers: Vec<NodeId> = ids.iter().copied().filter(|id| Some(*id) != leader).collect();
        let any = *rng.pick(&ids);
        let leader_or_any = leader.unwrap_or(any);
        let follower = *rng.pick(&followers);
        let role = |id: NodeId| if Some(id) == leader { "leader" } else { "follower" };
        let start = api.history.now();
        let (what, nodes) = match kind {
            FaultKind::KillLeader | FaultKind::KillFollower | FaultKind::KillRandom => {
                let target = match kind {
                    FaultKind::KillLeader => leader_or_any,
                    FaultKind::KillFollower => follower,
                    _ => any,
                };
                cluster.kill(target);
                tokio::time::sleep(hold).await;
                cluster.restart(target, http).await?;
                (format!("SIGKILL node {target} ({}), restarted after {hold:.1?}", role(target)), vec![target])
            }
            FaultKind::KillAll => {
                for id in &ids {
                    cluster.kill(*id);
                }
                tokio::time::sleep(hold).await;
                for id in &ids {
                    cluster.restart(*id, http).await?;
                }
                (format!("SIGKILL all three nodes at once, restarted after {hold:.1?}"), ids.clone())
            }
            FaultKind::PauseLeader => {
                cluster.pause(leader_or_any);
                tokio::time::sleep(hold).await;
                cluster.resume(leader_or_any);
                (
                    format!("SIGSTOP node {leader_or_any} ({}) for {hold:.1?}, then SIGCONT", role(leader_or_any)),
                    vec![leader_or_any],
                )
            }
            FaultKind::IsolateLeader | FaultKind::IsolateRandom => {
                let target = if kind == FaultKind::IsolateLeader { leader_or_any } else { any };
                firewall.isolate(target)?;
                tokio::time::sleep(hold).await;
                firewall.heal()?;
                (format!("cut node {target} ({}) from both others for {hold:.1?}", role(target)), vec![target])
            }
            FaultKind::Bridge => {
                // The leader and one follower lose each other; both still reach the third node.
                firewall.cut(leader_or_any, follower)?;
                let bridge = ids.iter().copied().find(|id| *id != leader_or_any && *id != follower).unwrap_or(any);
                tokio::time::sleep(hold).await;
                firewall.heal()?;
                (
                    format!(
                        "cut node {leader_or_any} ({}) from node {follower} for {hold:.1?}; node {bridge} reaches both",
                        role(leader_or_any)
                    ),
                    vec![leader_or_any, follower],
                )
            }
        };
        let healed = api.history.now();
        let recovered_after = api.probe_write(pacing.recovery_bound).await.map(|d| d.as_secs_f64());
        println!(
            "[{start:7.1}s] {:<15} {what}; writes ok {}",
            kind.name(),
            match recovered_after {
                Some(s) => format!("{s:.2}s after the heal"),
                None => format!("NOT within {:?} of the heal", pacing.recovery_bound),
            }
        );
        records.push(FaultRecord { kind, what, nodes, leader, start, healed, recovered_after });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_rounds_cover_every_kind_and_a_seed_replays_the_schedule() {
        for seed in [0, 1, 42, u64::MAX] {
            let mut schedule = Schedule::new(seed);
            let mut first: Vec<FaultKind> = (0..FaultKind::ALL.len()).map(|_| schedule.next_kind()).collect();
            let mut again = Schedule::new(seed);
            let replay: Vec<FaultKind> = (0..20).map(|_| again.next_kind()).collect();
            assert_eq!(replay[..first.len()], first[..]);
            first.sort();
            assert_eq!(first, FaultKind::ALL.to_vec(), "seed {seed}");
        }
    }
}

//! `lockio-chaos`: lock.io's fault suite. Starts a real three-node cluster on this machine,
//! runs a fenced lock workload against it while a nemesis kills, pauses and partitions nodes,
//! records every operation and the service's replicated history, checks them, and reports.
//! Exits 0 when every check passed, 1 on any violation, 2 when the run itself failed.
//!
//! Needs root (nodes run as their own uids; partitions are iptables rules). Whatever it set up
//! is taken down on the way out, on Ctrl-C and SIGTERM too, and a later run removes what a
//! killed one left.

mod check;
mod cluster;
mod events;
mod firewall;
mod history;
mod nemesis;
mod report;
mod rng;
mod run;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lockio_core::Resource;

use crate::check::Limits;
use crate::run::RunConfig;
use crate::workload::Settings;

/// lock.io's fault suite: a real cluster, a fenced workload, kills, pauses and partitions,
/// and a checker of the history.
#[derive(Debug, Parser)]
#[command(name = "lockio-chaos", version)]
struct Config {
    /// How long the workload and the faults run (e.g. `2m`, `20m`); healing, settling and
    /// checking take a little longer.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Seed of the fault schedule and the workload; a run prints it so it can be replayed.
    /// Default: taken from the clock.
    #[arg(long, env = "LOCKIO_CHAOS_SEED")]
    seed: Option<u64>,
    /// The `lockio` binary to test. Default: the `lockio` next to this binary (same cargo
    /// profile).
    #[arg(long, env = "LOCKIO_CHAOS_LOCKIO")]
    lockio: Option<PathBuf>,
    /// Clients that hold a kept-alive session and cycle acquire, fenced write, release.
    #[arg(long, default_value_t = 6)]
    lock_clients: usize,
    /// How many of the lock clients wait in the resource's queue instead of trying and polling.
    #[arg(long, default_value_t = 3)]
    waiting_clients: usize,
    /// Clients with a kept-alive session that read (shared) or write (exclusive) one resource,
    /// `rw-0`, and take permits of one semaphore, `sem-0`, by try-locks and waits.
    #[arg(long, default_value_t = 4)]
    shared_clients: usize,
    /// The number of permits of `sem-0` (the `limit` its shared acquires name).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    semaphore_limit: u64,
    /// The longest wait a client asks for, in seconds (each wait is 1 s to this).
    #[arg(long, default_value_t = 4)]
    max_wait: u64,
    /// Clients that create short sessions, sometimes lock, and delete them.
    #[arg(long, default_value_t = 2)]
    churn_clients: usize,
    /// Clients that play a queue of two on a resource of their own (hand-off, cancel,
    /// deadline, session end), and now and then wait for a hot resource and end the session.
    #[arg(long, default_value_t = 2)]
    queue_clients: usize,
    /// How many hot resources the clients contend for.
    #[arg(long, default_value_t = 3)]
    resources: usize,
    /// Session timeout in seconds: long against the faults (a few seconds each), so that no
    /// session should expire because of one.
    #[arg(long, default_value_t = 10)]
    session_timeout: u64,
    /// How often a keeper sends a keepalive.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    keepalive_every: Duration,
    /// The nodes' `--snapshot-every`: low, so that snapshots and log compaction happen under
    /// faults too.
    #[arg(long, default_value_t = 500)]
    snapshot_every: u64,
    /// Check 5's margin in seconds, for differences in reading the one machine's clock (check 9
    /// allows it to the time stamp of a wait's timeout too).
    #[arg(long, default_value_t = 0.5)]
    expiry_margin: f64,
    /// Check 6's bound in seconds: a write must succeed this soon after the last heal.
    #[arg(long, default_value_t = 5.0)]
    liveness_bound: f64,
    /// Where to write the JSON report.
    #[arg(long, default_value = "chaos-report.json")]
    report: PathBuf,
    /// Keep the nodes' data directories and logs (they are always kept when a check fails).
    #[arg(long)]
    keep_data: bool,
}

fn lockio_next_to_me() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.join("lockio")))
        .unwrap_or_else(|| PathBuf::from("lockio"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let seed = config.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
            % 1_000_000_007
    });
    let resources = (0..config.resources).map(|i| Resource::new(&format!("hot-{i}")).expect("a valid name")).collect();
    let run_config = RunConfig {
        duration: config.duration,
        seed,
        lockio: config.lockio.clone().unwrap_or_else(lockio_next_to_me),
        workload: Settings {
            seed,
            lock_clients: config.lock_clients,
            churn_clients: config.churn_clients,
            queue_clients: config.queue_clients,
            waiting_clients: config.waiting_clients,
            max_wait: config.max_wait,
            shared_clients: config.shared_clients,
            semaphore_limit: config.semaphore_limit,
            resources,
            session_timeout: config.session_timeout,
            keepalive_every: config.keepalive_every,
        },
        snapshot_every: config.snapshot_every,
        limits: Limits { expiry_margin: config.expiry_margin, liveness_bound: config.liveness_bound },
        report: config.report.clone(),
        keep_data: config.keep_data,
        command: std::env::args().collect::<Vec<_>>().join(" ") + &format!(" (seed {seed})"),
    };
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lockio-chaos: cannot handle SIGTERM: {e}");
            return ExitCode::from(2);
        }
    };
    // Dropping the run's future on a signal drops its guards: nodes killed, rules removed.
    let outcome = tokio::select! {
        outcome = run::run(run_config) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        _ = terminate.recv() => Err(anyhow::anyhow!("terminated")),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("lockio-chaos: {e:#} (seed {seed})");
            ExitCode::from(2)
        }
    }
}

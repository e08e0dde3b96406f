//! One chaos run from start to end: start the cluster, the firewall, the event collector and
//! the workload; let the nemesis work until the duration is up; heal everything; measure
//! liveness; stop the clients; wait until every node's event stream has caught up; read the
//! final state; check; report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::stream::{self, StreamExt};
use lockio_core::{FenceToken, Resource, SessionId};
use serde_json::json;
use tokio::time::Instant;

use crate::check::{check, Evidence, FinalState, Limits, SessionFinal};
use crate::cluster::{self, Cluster, NodeId};
use crate::events::{Change, Collector};
use crate::firewall::{self, Firewall};
use crate::history::History;
use crate::nemesis::{self, Pacing};
use crate::report::Report;
use crate::workload::{Api, FencedStore, Settings, Workload};

/// Everything a run is told; see `main.rs` for the flags.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub duration: Duration,
    pub seed: u64,
    pub lockio: PathBuf,
    pub workload: Settings,
    pub snapshot_every: u64,
    pub limits: Limits,
    pub report: PathBuf,
    pub keep_data: bool,
    pub command: String,
}

/// The timing flags every node gets (the report quotes them); `--snapshot-every` is added from
/// the run's config.
const SERVER_FLAGS: [&str; 8] =
    ["--heartbeat", "50ms", "--election-timeout", "200ms", "--request-timeout", "5s", "--sweep-interval", "100ms"];

/// Runs, checks and reports; returns whether every check passed.
pub async fn run(config: RunConfig) -> anyhow::Result<bool> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("lockio-chaos needs root: it runs nodes as their own uids and changes iptables rules");
    }
    let killed = cluster::kill_leftover_nodes();
    let chains = firewall::remove_leftover_chains()?;
    if killed + chains > 0 {
        println!("cleaned up after an earlier run: {killed} node processes, {chains} iptables chains");
    }
    let http = reqwest::Client::builder().no_proxy().build()?;
    let flags: Vec<String> = SERVER_FLAGS
        .iter()
        .map(|s| s.to_string())
        .chain(["--snapshot-every".to_string(), config.snapshot_every.to_string()])
        .collect();
    let mut cluster = Cluster::start(&config.lockio, flags, &http).await?;
    if config.keep_data {
        println!("data and logs kept in {}", cluster.keep_data().display());
    }
    let mut firewall = Firewall::install(cluster.endpoints())?;
    let collector = Collector::start(&cluster.endpoints());
    let history = History::new();
    let api = Api::new(cluster.ids().iter().map(|id| cluster.http_base(*id)).collect(), history.clone());
    let store = Arc::new(FencedStore::new(history.clone()));
    println!(
        "lockio-chaos: seed {} for {:?}; nodes {} in {}",
        config.seed,
        config.duration,
        cluster
            .endpoints()
            .iter()
            .map(|e| format!("{}={}:{}/{}", e.id, e.ip, e.http_port, e.raft_port))
            .collect::<Vec<_>>()
            .join(" "),
        cluster.root().display()
    );
    let mut workload = Workload::start(api.clone(), store, config.workload.clone());

    let pacing =
        Pacing { quiet: (Duration::from_secs(2), Duration::from_secs(4)), recovery_bound: Duration::from_secs(15) };
    let until = Instant::now() + config.duration;
    let faults = nemesis::run(&mut cluster, &mut firewall, &api, &http, config.seed, &pacing, until).await;
    // Heal whatever the nemesis left, even if it stopped on an error.
    firewall.heal()?;
    cluster.heal_processes(&http).await?;
    let faults = faults?;
    let final_heal = history.now();
    let liveness =
        api.probe_write(Duration::from_secs_f64(config.limits.liveness_bound * 3.0)).await.map(|d| d.as_secs_f64());
    println!(
        "[{final_heal:7.1}s] final heal; a write succeeded {}",
        liveness.map_or("NOT AT ALL".into(), |s| format!("{s:.2}s later"))
    );

    workload.stop_clients().await;
    let leader = cluster.wait_for_leader(&http, Duration::from_secs(30)).await?;
    let marker = settle(&api, &collector, &cluster.ids()).await;
    let mut final_state = read_final_state(&api, leader, &history, &config.workload.all_resources(), liveness).await?;
    workload.stop_keepers().await;
    let replicated = collector.finish().await;
    final_state.settled = replicated
        .events
        .iter()
        .find(|e| e.change == Change::SessionCreated && e.session.is_some() && e.session == marker)
        .map(|e| e.index);

    let evidence = Evidence {
        ops: history.take_ops(),
        events: replicated.events.clone(),
        disagreements: replicated.disagreements.clone(),
        final_state,
        started_unix: history.started_unix,
        semaphores: config.workload.semaphores(),
    };
    let results = check(&evidence, config.limits);
    let settings = json!({
        "lock_clients": config.workload.lock_clients,
        "churn_clients": config.workload.churn_clients,
        "queue_clients": config.workload.queue_clients,
        "waiting_clients": config.workload.waiting_clients,
        "shared_clients": config.workload.shared_clients,
        "semaphore_limit": config.workload.semaphore_limit,
        "max_wait_secs": config.workload.max_wait,
        "resources": config.workload.resources,
        "session_timeout_secs": config.workload.session_timeout,
        "keepalive_every_secs": config.workload.keepalive_every.as_secs_f64(),
        "snapshot_every": config.snapshot_every,
        "server_flags": SERVER_FLAGS.join(" "),
    });
    let report = Report {
        seed: config.seed,
        command: config.command.clone(),
        settings,
        duration_secs: history.now(),
        evidence: &evidence,
        replicated: &replicated,
        faults: &faults,
        results: &results,
        limits: config.limits,
        final_heal,
    };
    print!("{}", report.summary());
    report.write_json(&config.report).with_context(|| format!("cannot write {}", config.report.display()))?;
    println!("report: {}", config.report.display());
    if !report.passed() {
        let kept = cluster.keep_data();
        println!("node data and logs kept for inspection in {}", kept.display());
    }
    Ok(report.passed())
}

/// Waits until every node's event stream has delivered everything applied before now: creates
/// a marker session and waits until each stream has shown its creation. Returns the marker.
async fn settle(api: &Api, collector: &Collector, nodes: &[NodeId]) -> Option<SessionId> {
    match api.create_anywhere("marker", 3600, Duration::from_secs(30), Duration::from_millis(200)).await {
        Some((marker, _, _)) => {
            if !collector.wait_for_creation(marker, nodes, Duration::from_secs(30)).await {
                println!("warning: not every node's event stream caught up within 30 s");
            }
            Some(marker)
        }
        None => {
            println!("warning: could not create the marker session; the event history may be short");
            None
        }
    }
}

/// GETs `path` from `node` until it answers 200 or 404 (a few tries).
async fn read(api: &Api, node: NodeId, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    for _ in 0..20 {
        if let Some((status, body)) = api.get(node, path, Duration::from_secs(6)).await {
            if status == 200 || status == 404 {
                return Ok((status, body));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("GET {path} on node {node} did not answer")
}

/// Reads, linearizably through `node`, the fence counter, every resource's holders and waiters,
/// then every session a client was told it created or that was listed as a waiter, with what
/// it waits for.
async fn read_final_state(
    api: &Api,
    node: NodeId,
    history: &History,
    resources: &[Resource],
    liveness: Option<f64>,
) -> anyhow::Result<FinalState> {
    let (_, stats) = read(api, node, "/admin/stats").await?;
    let fence_counter = stats["fence_counter"].as_u64().context("no fence_counter in /admin/stats")?;
    let mut locks = BTreeMap::new();
    let mut waiters = BTreeMap::new();
    for r in resources {
        let (_, body) = read(api, node, &format!("/admin/locks/{r}")).await?;
        let holders: Vec<(SessionId, FenceToken)> = body["holders"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| {
                Some((h["session_id"].as_str().and_then(SessionId::parse)?, FenceToken(h["fence_token"].as_u64()?)))
            })
            .collect();
        if holders.is_empty() && body["locked"] == true {
            bail!("{r} reads as locked but lists no holders: {body}");
        }
        locks.insert(r.clone(), holders);
        let queue: Vec<SessionId> = body["waiters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w["session_id"].as_str().and_then(SessionId::parse))
            .collect();
        waiters.insert(r.clone(), (queue, body["queue_length"].as_u64().unwrap_or(0)));
    }
    let mut to_read: BTreeSet<SessionId> = history.created_sessions().into_iter().collect();
    to_read.extend(waiters.values().flat_map(|(queue, _)| queue.iter().copied()));
    let reads = stream::iter(to_read)
        .map(|s| async move {
            let (status, body) = read(api, node, &format!("/sessions/{s}")).await?;
            let state = match (status, body["is_expired"].as_bool()) {
                (404, _) => SessionFinal::Absent,
                (_, Some(true)) => SessionFinal::Expired,
                _ => SessionFinal::Live,
            };
            let waiting_for: Vec<Resource> = body["waiting_for"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| Resource::new(r.as_str()?).ok())
                .collect();
            anyhow::Ok((s, state, waiting_for))
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let (mut sessions, mut waiting_for) = (BTreeMap::new(), BTreeMap::new());
    for read in reads {
        let (s, state, resources) = read?;
        sessions.insert(s, state);
        if !resources.is_empty() {
            waiting_for.insert(s, resources);
        }
    }
    Ok(FinalState { fence_counter, locks, sessions, waiters, waiting_for, settled: None, liveness })
}

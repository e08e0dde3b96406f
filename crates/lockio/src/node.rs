//! One node's lifetime: open the data dir, start openraft, the transport and HTTP listeners and
//! the background tasks (expiry sweep, cluster formation, HTTP advert), then shut down cleanly
//! when `shutdown` resolves, or exit with an error when Raft stops by itself.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::ServeArgs;
use crate::events::EventLog;
use crate::raft::log_store::LogStore;
use crate::raft::state_machine::StateMachine;
use crate::raft::store::Store;
use crate::raft::Raft;
use crate::service::{
    run_leader_watch, run_member_probes, run_sweeper, Request, Service, ServiceConfig, Signals, Waits,
};
use crate::transport::{Network, PeerClient};
use crate::{formation, http, listener, transport};

/// Runs a node until `shutdown` resolves. Errors are for the operator: one line each.
pub async fn run(args: ServeArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    if !args.peers.contains_key(&args.id) {
        bail!("--id {} is not one of the --peers ({:?})", args.id, args.peers.keys().collect::<Vec<_>>());
    }
    // Every connection is a file descriptor; room for both caps and the node's own files.
    listener::raise_open_file_limit(args.connections.max_connections + args.connections.max_peer_connections + 1_024);
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let http_listener =
        TcpListener::bind(args.http).await.with_context(|| format!("cannot listen on --http {}", args.http))?;
    let raft_listener =
        TcpListener::bind(args.raft).await.with_context(|| format!("cannot listen on --raft {}", args.raft))?;
    let store = Store::open(&args.data_dir)
        .with_context(|| format!("cannot open the data directory {}", args.data_dir.display()))?;
    store
        .bind_to_node(args.id)
        .with_context(|| format!("cannot use the data directory {}", args.data_dir.display()))?;
    let metrics = crate::metrics::install().context("cannot install the metrics recorder")?;
    let events = EventLog::with_history(args.event_history as usize, args.progress_interval);
    let waits = Waits::default();

    let log_store = LogStore::new(store.clone());
    let state_machine =
        StateMachine::open(store, events.clone(), waits.clone()).context("cannot load the last snapshot")?;
    let view = state_machine.view();
    // Openraft replays the log from the snapshot on: the events before it are not this node's.
    if let Some(snapshot) = view.read().last_applied {
        events.skipped_to(snapshot.index);
    }
    let signals = Signals::new(log_store.committed_index());
    let peers = PeerClient::new();
    let timing = &args.timing;
    let config = openraft::Config {
        cluster_name: "lockio".into(),
        heartbeat_interval: timing.heartbeat.as_millis() as u64,
        election_timeout_min: timing.election_timeout.as_millis() as u64,
        election_timeout_max: 2 * timing.election_timeout.as_millis() as u64,
        install_snapshot_timeout: 10_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(args.snapshot_every),
        max_in_snapshot_log_to_keep: 1_000.min(args.snapshot_every),
        snapshot_max_chunk_size: 1024 * 1024,
        ..Default::default()
    }
    .validate()
    .context("invalid timing flags (the election timeout must exceed the heartbeat)")?;
    let raft = Raft::new(args.id, Arc::new(config), Network::new(peers.clone()), log_store, state_machine)
        .await
        .context("cannot start raft")?;

    let service = Service::new(
        ServiceConfig {
            node_id: args.id,
            request_timeout: timing.request_timeout,
            election_timeout: 2 * timing.election_timeout,
        },
        raft.clone(),
        view,
        peers.clone(),
        signals,
        events,
        waits,
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let limits = &args.connections;
    let api_limits = listener::Limits {
        header_read_timeout: limits.header_read_timeout,
        idle_timeout: limits.idle_timeout,
        max_connections: limits.max_connections as usize,
    };
    let peer_limits = listener::Limits { max_connections: limits.max_peer_connections as usize, ..api_limits };
    let http_server = tokio::spawn(listener::serve(
        "http",
        http_listener,
        http::router(service.clone(), metrics),
        api_limits,
        stopped(stop_rx.clone()),
    ));
    let raft_server = tokio::spawn(listener::serve(
        "raft",
        raft_listener,
        transport::server::router(service.clone()),
        peer_limits,
        stopped(stop_rx.clone()),
    ));
    let background = [
        tokio::spawn(run_sweeper(service.clone(), timing.sweep_interval)),
        tokio::spawn(run_member_probes(service.clone())),
        tokio::spawn(run_leader_watch(service.clone())),
        tokio::spawn(formation::form_cluster_once(raft.clone(), args.id, args.peers.clone(), peers)),
        tokio::spawn(advertise_http(
            service.clone(),
            args.advertise_http.clone().unwrap_or_else(|| args.http.to_string()),
        )),
    ];
    tracing::info!(node_id = args.id, http = %args.http, raft = %args.raft, "node started");

    let failure = tokio::select! {
        () = shutdown => None,
        why = raft_stopped(raft.clone()) => Some(why),
    };
    match &failure {
        None => tracing::info!("shutting down"),
        Some(why) => tracing::error!(error = %why, "raft stopped by itself; shutting down"),
    }
    for task in &background {
        task.abort();
    }
    let _ = stop_tx.send(true);
    // In-flight requests get a moment to finish; a stuck one does not hold the exit.
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        let _ = http_server.await;
        let _ = raft_server.await;
    })
    .await;
    raft.shutdown().await.ok();
    tracing::info!("stopped");
    match failure {
        None => Ok(()),
        Some(why) => bail!("raft stopped: {why}; exiting so that the node can be restarted from its data directory"),
    }
}

/// Resolves when openraft stops by itself: a storage failure (a full disk, an I/O error) or a
/// panic in its core. Such a node can no longer serve, vote or replicate, so it exits (non-zero)
/// rather than linger with every request timing out; its supervisor restarts it, and it
/// recovers from what is on disk.
async fn raft_stopped(raft: Raft) -> String {
    let mut metrics = raft.metrics();
    let why = match metrics.wait_for(|m| m.running_state.is_err()).await {
        Ok(m) => m.running_state.clone().err().map(|fatal| fatal.to_string()).unwrap_or_default(),
        Err(_) => "its core ended without a report".to_string(),
    };
    why
}

/// Makes this node's HTTP address known to the cluster, and keeps it so (a later restart may
/// advertise another address).
async fn advertise_http(service: Service, http_addr: String) {
    loop {
        let known = service.view().read().replica.http_addrs.get(&service.node_id()) == Some(&http_addr);
        if !known {
            let advert = Request::AdvertiseHttp { node_id: service.node_id(), http_addr: http_addr.clone() };
            if let Err(e) = service.handle(advert).await {
                tracing::debug!(error = %e, "HTTP address not advertised yet");
            }
        }
        tokio::time::sleep(Duration::from_millis(if known { 5_000 } else { 500 })).await;
    }
}

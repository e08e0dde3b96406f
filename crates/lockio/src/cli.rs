//! The command line (cli.md): `lockio serve` and `lockio dev`, with every flag also readable
//! from a `LOCKIO_*` environment variable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::raft::NodeId;

#[derive(Debug, Parser)]
#[command(name = "lockio", version, about = "lock.io: a Chubby-style lock service on Raft")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node of a cluster.
    Serve(ServeArgs),
    /// Run a local cluster of child processes (3 nodes by default) for development.
    Dev(DevArgs),
}

/// `lockio serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// This node's id: a positive integer unique in the cluster.
    #[arg(long, env = "LOCKIO_ID", value_parser = clap::value_parser!(u64).range(1..))]
    pub id: NodeId,

    /// Address the client API and dashboard listen on.
    #[arg(long, env = "LOCKIO_HTTP")]
    pub http: SocketAddr,

    /// Address the node-to-node transport listens on.
    #[arg(long, env = "LOCKIO_RAFT")]
    pub raft: SocketAddr,

    /// Every member of the initial cluster, this node included: ID=RAFT_ADDR,ID=RAFT_ADDR,...
    #[arg(long, env = "LOCKIO_PEERS", value_parser = parse_peers)]
    pub peers: Peers,

    /// Where this node keeps its durable state; created if missing.
    #[arg(long, env = "LOCKIO_DATA_DIR")]
    pub data_dir: PathBuf,

    /// The HTTP address other nodes and browsers should use for this node, when it differs
    /// from --http (containers, NAT). Default: --http.
    #[arg(long, env = "LOCKIO_ADVERTISE_HTTP")]
    pub advertise_http: Option<String>,

    #[command(flatten)]
    pub timing: Timing,

    /// Take a snapshot (and let the log be compacted) after this many log entries.
    #[arg(long, env = "LOCKIO_SNAPSHOT_EVERY", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_every: u64,
}

/// The timing knobs, with defaults for a LAN (see README, "Timing").
#[derive(Debug, Clone, Args)]
pub struct Timing {
    /// How long a request may wait for a leader and a quorum before it answers 503.
    #[arg(long, env = "LOCKIO_REQUEST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// How often the leader sends heartbeats.
    #[arg(long, env = "LOCKIO_HEARTBEAT", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,

    /// The election timeout T: a follower that hears no leader for 2T (the leader's lease)
    /// plus a random time between T and 2T starts an election.
    #[arg(long, env = "LOCKIO_ELECTION_TIMEOUT", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub election_timeout: Duration,

    /// How often the leader looks for sessions whose timeout has passed.
    #[arg(long, env = "LOCKIO_SWEEP_INTERVAL", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub sweep_interval: Duration,
}

/// `lockio dev`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// How many nodes to run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: u64,

    /// Where the nodes keep their data (one subdirectory each); reused on the next run.
    #[arg(long, default_value = "lockio-data")]
    pub data_dir: PathBuf,
}

/// The initial members: id → Raft address.
pub type Peers = BTreeMap<NodeId, String>;

fn parse_peers(raw: &str) -> Result<Peers, String> {
    let mut peers = Peers::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item.split_once('=').ok_or_else(|| format!("`{item}` is not ID=RAFT_ADDR"))?;
        let id: NodeId = id.trim().parse().map_err(|_| format!("`{id}` is not a node id"))?;
        if id == 0 {
            return Err("node ids must be positive".into());
        }
        let addr = addr.trim();
        if addr.rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok()).is_none() {
            return Err(format!("`{addr}` is not HOST:PORT"));
        }
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(format!("node id {id} is listed twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers given".into());
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_refuse() {
        let p = parse_peers("1=127.0.0.1:4321, 2=lock-node-2:4321").unwrap();
        assert_eq!(p[&2], "lock-node-2:4321");
        for bad in ["", "1", "1=x", "0=a:1", "1=a:1,1=b:2", "x=a:1", "1=a:99999"] {
            assert!(parse_peers(bad).is_err(), "{bad:?}");
        }
    }
}

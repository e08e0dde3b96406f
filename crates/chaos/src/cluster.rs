//! Cluster control: three real `lockio serve` processes on 127.0.0.1, .2 and .3, each with its
//! own temporary data directory and its own uid, which the harness can SIGKILL and restart,
//! SIGSTOP and SIGCONT, and ask who leads.
//!
//! Why a uid per node: on loopback every outgoing connection has source address 127.0.0.1,
//! whichever node opens it, so the firewall tells nodes apart by the owner of the socket
//! (`-m owner --uid-owner`). The uids are derived from the harness's pid, so leftovers of a
//! crashed run can be recognised and ended without touching anyone else's processes.
//!
//! Every node is also started with `PR_SET_PDEATHSIG`, so it dies with the harness; `Drop`
//! resumes and kills whatever still runs.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::time::Instant;

/// A node's id, 1 to 3.
pub type NodeId = u8;

/// The first uid of the range the harness gives its nodes: far above any real account.
const UID_BASE: u32 = 2_000_000_000;
/// Uids per harness process (nodes 1-3 use base+1..base+3).
const UIDS_PER_RUN: u32 = 4;

/// The uid of node `id` of the harness with process id `pid`.
pub fn node_uid(pid: u32, id: NodeId) -> u32 {
    UID_BASE + pid * UIDS_PER_RUN + id as u32
}

/// Where a node listens and who it runs as.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: NodeId,
    pub ip: Ipv4Addr,
    pub http_port: u16,
    pub raft_port: u16,
    pub uid: u32,
}

impl Endpoint {
    pub fn http_base(&self) -> String {
        format!("http://{}:{}", self.ip, self.http_port)
    }
}

struct Node {
    endpoint: Endpoint,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
}

/// The cluster under test.
pub struct Cluster {
    /// Holds the binary copy, data directories and logs until the cluster is dropped (or kept
    /// with `--keep-data`).
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    binary: PathBuf,
    nodes: Vec<Node>,
    peers: String,
    flags: Vec<String>,
}

/// A port free on `ip` right now.
fn free_port(ip: Ipv4Addr) -> anyhow::Result<u16> {
    Ok(TcpListener::bind(SocketAddr::from((ip, 0)))?.local_addr()?.port())
}

/// What one `/cluster/status` says, enough to find the leader.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub id: NodeId,
    pub leader: bool,
    pub healthy: bool,
    pub term: u64,
}

impl Cluster {
    /// Starts three nodes with `flags` added to each `lockio serve` and waits until they agree
    /// on a leader.
    pub async fn start(binary: &Path, flags: Vec<String>, http: &reqwest::Client) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("lockio-chaos-").tempdir().context("temp dir")?;
        let root = dir.path().to_path_buf();
        // The nodes run as unprivileged uids: they need to reach the binary and their own dirs.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
        let copy = root.join("lockio");
        std::fs::copy(binary, &copy).with_context(|| format!("cannot copy {}", binary.display()))?;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))?;
        let pid = std::process::id();
        let mut nodes = Vec::new();
        for id in 1..=3u8 {
            let ip = Ipv4Addr::new(127, 0, 0, id);
            let endpoint =
                Endpoint { id, ip, http_port: free_port(ip)?, raft_port: free_port(ip)?, uid: node_uid(pid, id) };
            let data_dir = root.join(format!("node{id}"));
            std::fs::create_dir(&data_dir)?;
            std::os::unix::fs::chown(&data_dir, Some(endpoint.uid), Some(endpoint.uid))?;
            nodes.push(Node {
                endpoint,
                data_dir,
                log: root.join(format!("node{id}.log")),
                child: None,
                paused: false,
            });
        }
        let peers = nodes
            .iter()
            .map(|n| format!("{}={}:{}", n.endpoint.id, n.endpoint.ip, n.endpoint.raft_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster { dir: Some(dir), root, binary: copy, nodes, peers, flags };
        for id in 1..=3 {
            cluster.spawn(id)?;
        }
        for id in 1..=3 {
            cluster.wait_serving(id, http).await?;
        }
        cluster.wait_for_leader(http, Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// Keeps the data directories and logs after the run; returns where they are.
    pub fn keep_data(&mut self) -> PathBuf {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        self.root.clone()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.nodes.iter().map(|n| n.endpoint.clone()).collect()
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.endpoint.id).collect()
    }

    fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize - 1]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    pub fn http_base(&self, id: NodeId) -> String {
        self.node(id).endpoint.http_base()
    }

    /// Nodes whose process runs and is not stopped.
    pub fn up(&self) -> Vec<NodeId> {
        self.nodes.iter().filter(|n| n.child.is_some() && !n.paused).map(|n| n.endpoint.id).collect()
    }

    fn spawn(&mut self, id: NodeId) -> anyhow::Result<()> {
        let node = self.node(id);
        let e = &node.endpoint;
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--id".into(),
            id.to_string(),
            "--http".into(),
            format!("{}:{}", e.ip, e.http_port),
            "--raft".into(),
            format!("{}:{}", e.ip, e.raft_port),
            "--peers".into(),
            self.peers.clone(),
            "--data-dir".into(),
            node.data_dir.display().to_string(),
        ];
        args.extend(self.flags.iter().cloned());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log)?;
        let mut command = Command::new(&self.binary);
        command
            .args(&args)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .uid(e.uid)
            .gid(e.uid);
        // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec, after
        // the uid change (which would otherwise clear it).
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().with_context(|| format!("cannot start node {id}"))?;
        let node = self.node_mut(id);
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    async fn wait_serving(&mut self, id: NodeId, http: &reqwest::Client) -> anyhow::Result<()> {
        let url = format!("{}/health", self.http_base(id));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http.get(&url).timeout(Duration::from_secs(1)).send().await.is_ok() {
                return Ok(());
            }
            let exited = self.node_mut(id).child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() >= deadline {
                bail!("node {id} did not come up; its log:\n{}", self.log_tail(id, 30));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: the node dies at once, with whatever it had not yet written.
    pub fn kill(&mut self, id: NodeId) {
        let node = self.node_mut(id);
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        node.paused = false;
    }

    /// Starts a killed node again from its data directory and waits until it serves HTTP.
    pub async fn restart(&mut self, id: NodeId, http: &reqwest::Client) -> anyhow::Result<()> {
        if self.node(id).child.is_none() {
            self.spawn(id)?;
        }
        self.wait_serving(id, http).await
    }

    /// SIGSTOP: the node freezes mid-step, its sockets open and silent.
    pub fn pause(&mut self, id: NodeId) {
        self.signal(id, libc::SIGSTOP);
        self.node_mut(id).paused = true;
    }

    /// SIGCONT: the node wakes up and carries on as if no time had passed.
    pub fn resume(&mut self, id: NodeId) {
        self.signal(id, libc::SIGCONT);
        self.node_mut(id).paused = false;
    }

    fn signal(&self, id: NodeId, signal: libc::c_int) {
        if let Some(child) = &self.node(id).child {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    /// Resumes paused nodes and restarts killed ones.
    pub async fn heal_processes(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        for id in self.ids() {
            if self.node(id).paused {
                self.resume(id);
            }
            if self.node(id).child.is_none() {
                self.restart(id, http).await?;
            }
        }
        Ok(())
    }

    /// `/cluster/status` of every node that is up and answers within a short time.
    pub async fn statuses(&self, http: &reqwest::Client) -> Vec<NodeStatus> {
        let mut out = Vec::new();
        for id in self.up() {
            let url = format!("{}/cluster/status?stale=true", self.http_base(id));
            let Ok(resp) = http.get(&url).timeout(Duration::from_millis(800)).send().await else { continue };
            let Ok(body) = resp.json::<Value>().await else { continue };
            out.push(NodeStatus {
                id,
                leader: body["state"] == "LEADER",
                healthy: body["has_quorum"] == true,
                term: body["term"].as_u64().unwrap_or(0),
            });
        }
        out
    }

    /// The node that leads in the highest term, healthy, among those that are up.
    pub async fn leader(&self, http: &reqwest::Client) -> Option<NodeId> {
        let statuses = self.statuses(http).await;
        statuses.iter().filter(|s| s.leader && s.healthy).max_by_key(|s| s.term).map(|s| s.id)
    }

    /// Polls until a healthy leader is known, or fails after `within`.
    pub async fn wait_for_leader(&self, http: &reqwest::Client, within: Duration) -> anyhow::Result<NodeId> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(id) = self.leader(http).await {
                return Ok(id);
            }
            if Instant::now() >= deadline {
                bail!("no leader within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last `lines` lines of node `id`'s log.
    pub fn log_tail(&self, id: NodeId, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.node(id).log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                // SAFETY: kill(2) on our own child. SIGKILL ends a stopped process too; the
                // SIGCONT only makes sure none is left stopped should the kill fail.
                unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Ends `lockio serve` processes left by an earlier harness that died without cleaning up:
/// those running as a uid of this harness's range whose harness process is gone.
pub fn kill_leftover_nodes() -> usize {
    let mut killed = 0;
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else { continue };
        let Some(uid) = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok())
        else {
            continue;
        };
        if uid <= UID_BASE {
            continue;
        }
        let harness = (uid - UID_BASE) / UIDS_PER_RUN;
        if !Path::new(&format!("/proc/{harness}")).exists() {
            // SAFETY: kill(2); the process is a node of a harness that no longer exists.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed += 1;
        }
    }
    killed
}

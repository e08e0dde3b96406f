//! `Cluster`: N real `lockio serve` processes with free ports on 127.0.0.1 and temporary data
//! directories, which tests can kill (SIGKILL), stop (SIGTERM), pause and restart.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::eventually;
use super::http::try_call;

/// Ports handed out in this test process, so two clusters of one process never share one.
static USED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if USED_PORTS.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// The lockio binary under test.
pub fn lockio_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lockio"))
}

pub struct Node {
    pub id: u64,
    pub http_port: u16,
    pub raft_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

pub struct Cluster {
    /// Holds the nodes' data directories and logs until the cluster is dropped.
    _dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    peers: String,
    extra: Vec<String>,
}

impl Cluster {
    /// Starts `n` nodes with the default flags and waits for a leader.
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_with(n, &[]).await
    }

    /// Starts `n` nodes with `extra` flags added to each `lockio serve`, and waits until a
    /// leader is elected and every node serves HTTP.
    pub async fn start_with(n: u64, extra: &[&str]) -> Cluster {
        for _attempt in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let nodes: Vec<Node> = (1..=n)
                .map(|id| Node {
                    id,
                    http_port: free_port(),
                    raft_port: free_port(),
                    data_dir: dir.path().join(format!("node{id}")),
                    log: dir.path().join(format!("node{id}.log")),
                    child: None,
                })
                .collect();
            let peers =
                nodes.iter().map(|n| format!("{}=127.0.0.1:{}", n.id, n.raft_port)).collect::<Vec<_>>().join(",");
            let mut cluster = Cluster { _dir: dir, nodes, peers, extra: extra.iter().map(|s| s.to_string()).collect() };
            for id in 1..=n {
                cluster.spawn(id);
            }
            if cluster.all_serving(Duration::from_secs(20)).await {
                cluster.wait_for_leader().await;
                return cluster;
            }
            // A port was taken by someone else between probing and binding: try new ones.
            eprintln!("cluster did not come up; retrying with other ports\n{}", cluster.logs());
        }
        panic!("could not start a cluster");
    }

    fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    /// The `lockio serve` arguments of node `id`.
    pub fn serve_args(&self, id: u64) -> Vec<String> {
        let node = self.node(id);
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--id".into(),
            id.to_string(),
            "--http".into(),
            format!("127.0.0.1:{}", node.http_port),
            "--raft".into(),
            format!("127.0.0.1:{}", node.raft_port),
            "--peers".into(),
            self.peers.clone(),
            "--data-dir".into(),
            node.data_dir.display().to_string(),
        ];
        args.extend(self.extra.iter().cloned());
        args
    }

    fn spawn(&mut self, id: u64) {
        let args = self.serve_args(id);
        let node = self.node_mut(id);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log).unwrap();
        let child = Command::new(lockio_bin())
            .args(&args)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn lockio");
        node.child = Some(child);
    }

    async fn all_serving(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        for id in 1..=self.nodes.len() as u64 {
            loop {
                if try_call("GET", &self.url(id, "/health")).await.is_some() {
                    break;
                }
                let exited = self.node_mut(id).child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
                if exited || tokio::time::Instant::now() >= deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        true
    }

    /// `http://127.0.0.1:PORT` of node `id`.
    pub fn base(&self, id: u64) -> String {
        format!("http://127.0.0.1:{}", self.node(id).http_port)
    }

    pub fn url(&self, id: u64, path: &str) -> String {
        format!("{}{path}", self.base(id))
    }

    pub fn raft_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.node(id).raft_port)
    }

    /// A `lockio-client` over every running node.
    pub fn client(&self) -> lockio_client::Client {
        lockio_client::Client::new(self.running().iter().map(|id| self.base(*id))).unwrap()
    }

    /// The ids of nodes whose process runs.
    pub fn running(&self) -> Vec<u64> {
        self.nodes.iter().filter(|n| n.child.is_some()).map(|n| n.id).collect()
    }

    /// SIGKILL: the node dies at once, with whatever it had not yet written.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.node_mut(id).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the exit; returns the exit status.
    pub fn stop(&mut self, id: u64) -> std::process::ExitStatus {
        let mut child = self.node_mut(id).child.take().expect("node runs");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap()
    }

    /// Starts node `id` again from its data directory and waits until it serves HTTP.
    pub async fn restart(&mut self, id: u64) {
        assert!(self.node(id).child.is_none(), "node {id} still runs");
        self.spawn(id);
        let url = self.url(id, "/health");
        eventually(Duration::from_secs(20), "restarted node serves HTTP", || {
            let url = url.clone();
            async move { try_call("GET", &url).await.map(|_| ()) }
        })
        .await;
    }

    /// Waits until one running node reports itself the healthy leader, and every other running
    /// node names it; returns its id.
    pub async fn wait_for_leader(&self) -> u64 {
        let running = self.running();
        let urls: Vec<(u64, String)> = running.iter().map(|id| (*id, self.url(*id, "/health"))).collect();
        eventually(Duration::from_secs(30), "a leader all running nodes agree on", || {
            let urls = urls.clone();
            async move {
                let mut leader = None;
                let mut named = BTreeSet::new();
                for (id, url) in &urls {
                    let health = try_call("GET", url).await?;
                    if health.body["is_leader"] == true && health.body["status"] == "healthy" {
                        leader = Some(*id);
                    }
                    named.insert(health.body["leader_id"].as_u64()?);
                }
                let leader = leader?;
                (named.len() == 1 && named.contains(&leader)).then_some(leader)
            }
        })
        .await
    }

    /// The last lines of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let text = std::fs::read_to_string(&node.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(25)..];
            out.push_str(&format!("--- node {} log (last {} lines)\n{}\n", node.id, tail.len(), tail.join("\n")));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

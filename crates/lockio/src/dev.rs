//! `lockio dev`: a local cluster of `lockio serve` child processes on 127.0.0.1, for trying
//! lock.io out and watching a failover (kill a node by the PID it prints).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::cli::DevArgs;

const HTTP_BASE: u16 = 5000;
const RAFT_BASE: u16 = 4321;

struct DevNode {
    id: u64,
    pid: u32,
    child: Child,
}

pub fn run(args: DevArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run_async(args))
}

async fn run_async(args: DevArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the lockio binary")?;
    let peers: Vec<String> =
        (1..=args.nodes).map(|id| format!("{id}=127.0.0.1:{}", RAFT_BASE + id as u16 - 1)).collect();
    let peers = peers.join(",");
    let mut nodes = Vec::new();
    for id in 1..=args.nodes {
        let dir = args.data_dir.join(format!("node{id}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("lockio.log"))
            .with_context(|| format!("cannot open the log file in {}", dir.display()))?;
        let http = format!("127.0.0.1:{}", HTTP_BASE + id as u16 - 1);
        let mut command = Command::new(&exe);
        command
            .arg("serve")
            .args(["--id", &id.to_string(), "--http", &http])
            .args(["--raft", &format!("127.0.0.1:{}", RAFT_BASE + id as u16 - 1)])
            .args(["--peers", &peers, "--data-dir"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // The children take their settings from these flags, not from the caller's LOCKIO_*.
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("LOCKIO_")) {
            command.env_remove(key);
        }
        let child = command.spawn().with_context(|| format!("cannot start node {id}"))?;
        let pid = child.id().unwrap_or(0);
        println!("node {id}  pid {pid:<7}  dashboard http://{http}/   log {}", dir.join("lockio.log").display());
        nodes.push(DevNode { id, pid, child });
    }
    println!("{} nodes running, data in {}. Ctrl-C stops them all.", args.nodes, display(&args.data_dir));

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        let exited = async {
            loop {
                for (i, node) in nodes.iter_mut().enumerate() {
                    if let Ok(Some(status)) = node.child.try_wait() {
                        return (i, status);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            _ = term.recv() => break,
            _ = interrupt.recv() => break,
            (i, status) = exited => {
                let node = nodes.remove(i);
                println!("node {} (pid {}) exited: {status}", node.id, node.pid);
                if nodes.is_empty() {
                    println!("no nodes left");
                    return Ok(());
                }
            }
        }
    }
    println!("stopping {} nodes", nodes.len());
    for node in &nodes {
        // SIGTERM: each node shuts down cleanly.
        unsafe { libc::kill(node.pid as i32, libc::SIGTERM) };
    }
    for node in &mut nodes {
        if tokio::time::timeout(Duration::from_secs(10), node.child.wait()).await.is_err() {
            let _ = node.child.kill().await;
        }
    }
    Ok(())
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

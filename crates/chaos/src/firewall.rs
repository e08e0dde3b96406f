//! Network partitions made by the kernel: iptables rules that drop the Raft traffic one node
//! sends to another.
//!
//! All rules live in this harness's own chain, `lkchaos-<pid>`, reached from `OUTPUT` by one
//! jump for TCP on `lo`, and every rule is tagged `lockio-chaos`. A rule matches the sending
//! node by its uid (on loopback all nodes' connections come from 127.0.0.1), and the receiving
//! node by its address and Raft port, so nothing outside this run's cluster is affected. Cutting
//! A from B drops what A sends to B's Raft port and what B sends to A's: requests, forwarded
//! client calls and replication in both directions. Answers to requests delivered before the
//! cut may still arrive, as messages in flight would.
//!
//! `Firewall` is a guard: dropping it removes the jump and the chain, and a new harness first
//! removes the chains of harnesses that died (their pid no longer exists).

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::{bail, Context};

use crate::cluster::{Endpoint, NodeId};

const TAG: &str = "lockio-chaos";
const PREFIX: &str = "lkchaos-";

fn iptables(args: &[&str]) -> anyhow::Result<String> {
    // `-w`: wait for the xtables lock instead of failing while another program changes rules.
    let out = Command::new("iptables").arg("-w").args(args).output().context("cannot run iptables")?;
    if !out.status.success() {
        bail!("iptables {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The jump from `OUTPUT` into `chain`, as arguments after `-A`/`-D OUTPUT`.
fn jump(chain: &str) -> Vec<String> {
    ["-o", "lo", "-p", "tcp", "-m", "comment", "--comment", TAG, "-j", chain].iter().map(|s| s.to_string()).collect()
}

fn remove_chain(chain: &str) {
    let jump = jump(chain);
    let jump: Vec<&str> = jump.iter().map(|s| s.as_str()).collect();
    while iptables(&[&["-D", "OUTPUT"], jump.as_slice()].concat()).is_ok() {}
    let _ = iptables(&["-F", chain]);
    let _ = iptables(&["-X", chain]);
}

/// Removes the chains of harnesses that are no longer running; returns how many.
pub fn remove_leftover_chains() -> anyhow::Result<usize> {
    let listing = iptables(&["-S"])?;
    let mut removed = 0;
    for line in listing.lines() {
        let Some(chain) = line.strip_prefix("-N ") else { continue };
        let Some(pid) = chain.strip_prefix(PREFIX).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            remove_chain(chain);
            removed += 1;
        }
    }
    Ok(removed)
}

/// This run's partition rules.
pub struct Firewall {
    chain: String,
    nodes: Vec<Endpoint>,
    /// The pairs currently cut (lower id first).
    cuts: BTreeSet<(NodeId, NodeId)>,
}

impl Firewall {
    /// Creates the chain and the jump to it; nothing is cut yet.
    pub fn install(nodes: Vec<Endpoint>) -> anyhow::Result<Firewall> {
        let chain = format!("{PREFIX}{}", std::process::id());
        remove_chain(&chain);
        iptables(&["-N", &chain])?;
        let firewall = Firewall { chain: chain.clone(), nodes, cuts: BTreeSet::new() };
        let jump = jump(&chain);
        let jump: Vec<&str> = jump.iter().map(|s| s.as_str()).collect();
        iptables(&[&["-I", "OUTPUT", "1"], jump.as_slice()].concat())?;
        Ok(firewall)
    }

    fn endpoint(&self, id: NodeId) -> &Endpoint {
        &self.nodes[id as usize - 1]
    }

    /// Drops what `from` sends to `to`'s Raft port.
    fn drop_one_way(&self, from: NodeId, to: NodeId) -> anyhow::Result<()> {
        let (from, to) = (self.endpoint(from), self.endpoint(to));
        let uid = from.uid.to_string();
        let dst = to.ip.to_string();
        let port = to.raft_port.to_string();
        iptables(&[
            "-A",
            &self.chain,
            "-m",
            "owner",
            "--uid-owner",
            &uid,
            "-d",
            &dst,
            "-p",
            "tcp",
            "--dport",
            &port,
            "-m",
            "comment",
            "--comment",
            TAG,
            "-j",
            "DROP",
        ])?;
        Ok(())
    }

    /// Cuts `a` and `b` from each other.
    pub fn cut(&mut self, a: NodeId, b: NodeId) -> anyhow::Result<()> {
        let pair = (a.min(b), a.max(b));
        if self.cuts.insert(pair) {
            self.drop_one_way(a, b)?;
            self.drop_one_way(b, a)?;
        }
        Ok(())
    }

    /// Cuts `node` from every other node.
    pub fn isolate(&mut self, node: NodeId) -> anyhow::Result<()> {
        for other in self.nodes.iter().map(|n| n.id).collect::<Vec<_>>() {
            if other != node {
                self.cut(node, other)?;
            }
        }
        Ok(())
    }

    /// Removes every cut.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        iptables(&["-F", &self.chain])?;
        self.cuts.clear();
        Ok(())
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        remove_chain(&self.chain);
    }
}

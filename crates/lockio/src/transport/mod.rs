//! The node-to-node transport on `--raft`: HTTP/1.1 with postcard bodies over pooled
//! keep-alive connections.
//!
//! `client` sends: openraft's RPCs (as its `RaftNetwork`) and requests a follower forwards to
//! the leader. `server` receives them and hands each to openraft or to the service. Nothing
//! here is JSON and nothing here makes a decision about locks.

pub mod client;
pub mod server;

pub use client::{CallError, Network, PeerClient};

/// Paths on the Raft listener.
pub mod path {
    pub const APPEND: &str = "/raft/append";
    pub const VOTE: &str = "/raft/vote";
    pub const SNAPSHOT: &str = "/raft/snapshot";
    /// Is the node's Raft state initialized? Used once, to form the cluster.
    pub const HELLO: &str = "/raft/hello";
    /// A node's report of its own role and indexes (`service::NodeReport`), for the others'
    /// view of the cluster.
    pub const REPORT: &str = "/raft/report";
    /// Client requests a follower hands to the leader, in batches.
    pub const FORWARD: &str = "/forward";
}

//! The sending side of the transport: one pooled HTTP client per node, shared by every Raft
//! replication stream, election and forwarded request. It also says, once, when a peer stops
//! answering and when it answers again (openraft's own line per failed RPC is turned off in
//! main.rs).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::path;
use crate::raft::{NodeId, TypeConfig};

/// Why a call to a peer failed, in the terms a caller needs to decide whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection could be made: the request was certainly not delivered.
    #[error("peer {addr} unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    /// The request may have been delivered; no usable answer came back.
    #[error("call to peer {addr} failed: {reason}")]
    Failed { addr: String, reason: String },
}

/// A cheap handle on the node's pooled HTTP client for peers.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    /// The peers (by address) whose last call got no answer.
    silent: Arc<Mutex<HashSet<String>>>,
}

impl PeerClient {
    pub fn new() -> PeerClient {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .expect("a plain HTTP client builds");
        PeerClient { http, silent: Arc::default() }
    }

    /// Notes whether a call to `addr` got an answer; logs only the changes, the rest at debug.
    fn heard(&self, addr: &str, answered: Result<(), &CallError>) {
        let mut silent = self.silent.lock().unwrap_or_else(|e| e.into_inner());
        match answered {
            Ok(()) => {
                if silent.remove(addr) {
                    tracing::info!(peer = addr, "peer answers again");
                }
            }
            Err(e) => {
                if silent.insert(addr.to_string()) {
                    tracing::warn!(peer = addr, error = %e, "peer unreachable or not answering; retrying quietly");
                } else {
                    tracing::debug!(peer = addr, error = %e, "peer still unreachable");
                }
            }
        }
    }

    /// POSTs `body` (postcard) to `http://addr/path` and decodes the postcard answer, within
    /// `timeout`.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let failed = |reason: String| CallError::Failed { addr: addr.to_string(), reason };
        let bytes = postcard::to_allocvec(body).map_err(|e| failed(e.to_string()))?;
        let response = self
            .http
            .post(format!("http://{addr}{path}"))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                let e = if e.is_connect() {
                    CallError::Unreachable { addr: addr.to_string(), reason: e.to_string() }
                } else {
                    failed(e.to_string())
                };
                self.heard(addr, Err(&e));
                e
            })?;
        self.heard(addr, Ok(()));
        if !response.status().is_success() {
            return Err(failed(format!("status {}", response.status())));
        }
        let body = response.bytes().await.map_err(|e| failed(e.to_string()))?;
        postcard::from_bytes(&body).map_err(|e| failed(format!("undecodable answer: {e}")))
    }
}

/// openraft's network factory: hands out connections that share the node's `PeerClient`.
#[derive(Clone)]
pub struct Network {
    peers: PeerClient,
}

impl Network {
    pub fn new(peers: PeerClient) -> Network {
        Network { peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConnection {
        PeerConnection { peers: self.peers.clone(), target, addr: node.addr.clone() }
    }
}

/// openraft's view of one peer.
pub struct PeerConnection {
    peers: PeerClient,
    target: NodeId,
    addr: String,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerConnection {
    async fn rpc<Req: Serialize, Resp: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E> {
        let answer: Result<Resp, RaftError<NodeId, E>> =
            self.peers.call(&self.addr, path, req, option.hard_ttl()).await.map_err(|e| match e {
                CallError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                CallError::Failed { .. } => RPCError::Network(NetworkError::new(&e)),
            })?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.rpc(path::APPEND, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.rpc(path::SNAPSHOT, &rpc, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        self.rpc(path::VOTE, &rpc, &option).await
    }
}

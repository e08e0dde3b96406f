//! The receiving side of the transport: the router served on `--raft`.
//!
//! Each route decodes a postcard body, hands it to openraft or to the service, and encodes the
//! answer. An undecodable body gets a 400 and touches nothing.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::path;
use crate::raft::{NodeId, TypeConfig};
use crate::service::{Forwarded, Service};

/// The answer to `path::HELLO`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Hello {
    pub node_id: NodeId,
    /// Whether the node's Raft state already belongs to a cluster.
    pub initialized: bool,
}

/// The largest body the transport takes: a snapshot chunk or a batch of log entries.
const MAX_BODY: usize = 64 * 1024 * 1024;

pub fn router(service: Service) -> Router {
    Router::new()
        .route(path::APPEND, post(append))
        .route(path::VOTE, post(vote))
        .route(path::SNAPSHOT, post(snapshot))
        .route(path::HELLO, post(hello))
        .route(path::REPORT, post(report))
        .route(path::FORWARD, post(forward))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(service)
}

/// The body as `T`, or the 400 to answer. The error is axum's own `Response`, returned straight
/// from the handler, so boxing it (clippy's `result_large_err`) would only add an allocation.
#[allow(clippy::result_large_err)]
fn decode<T: DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    postcard::from_bytes(body).map_err(|e| (StatusCode::BAD_REQUEST, format!("undecodable body: {e}")).into_response())
}

fn encode<T: Serialize>(value: &T) -> Response {
    match postcard::to_allocvec(value) {
        Ok(bytes) => ([("content-type", "application/octet-stream")], bytes).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not encode a transport answer");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn append(State(service): State<Service>, body: Bytes) -> Response {
    let request: AppendEntriesRequest<TypeConfig> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let answer = service.raft().append_entries(request).await;
    if matches!(answer, Ok(ref r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
        service.signals().leader_contact();
    }
    encode(&answer)
}

async fn vote(State(service): State<Service>, body: Bytes) -> Response {
    match decode::<VoteRequest<NodeId>>(&body) {
        Ok(request) => encode(&service.raft().vote(request).await),
        Err(e) => e,
    }
}

async fn snapshot(State(service): State<Service>, body: Bytes) -> Response {
    match decode::<InstallSnapshotRequest<TypeConfig>>(&body) {
        Ok(request) => {
            let answer = service.raft().install_snapshot(request).await;
            if answer.is_ok() {
                service.signals().leader_contact();
            }
            encode(&answer)
        }
        Err(e) => e,
    }
}

async fn hello(State(service): State<Service>) -> Response {
    match service.raft().is_initialized().await {
        Ok(initialized) => encode(&Hello { node_id: service.node_id(), initialized }),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn report(State(service): State<Service>) -> Response {
    encode(&service.node_report())
}

/// A batch of requests from one follower, served concurrently (so that their commands can
/// share log entries), answered in order.
async fn forward(State(service): State<Service>, body: Bytes) -> Response {
    match decode::<Vec<Forwarded>>(&body) {
        Ok(batch) => {
            let answers = futures_util::future::join_all(batch.into_iter().map(|f| service.handle_forwarded(f))).await;
            encode(&answers)
        }
        Err(e) => e,
    }
}

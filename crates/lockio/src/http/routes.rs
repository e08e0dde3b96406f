//! The HTTP handlers. Each reads its input (`input`), calls one service method and maps the
//! answer (`reply`, `error`); none makes a decision about sessions or locks.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lockio_core::SessionId;

use super::error::ApiError;
use super::input::{self, Body, Params, QueryParams};
use super::reply;
use crate::service::{Query, Request, Service};

type Answer = Result<Response, ApiError>;

async fn run(service: &Service, request: Request) -> Answer {
    Ok(reply::reply(service.handle(request).await?))
}

async fn read(service: &Service, query: &QueryParams, q: Query) -> Answer {
    let answer = if query.stale()? { service.read_stale(q) } else { service.handle(Request::Read(q)).await };
    Ok(reply::reply(answer?))
}

pub async fn health(State(service): State<Service>) -> Response {
    Json(reply::health(&service.health())).into_response()
}

pub async fn cluster_status(State(service): State<Service>) -> Response {
    Json(reply::cluster_status(&service.cluster_status())).into_response()
}

pub async fn sessions(State(service): State<Service>, query: QueryParams) -> Answer {
    read(&service, &query, Query::Sessions(query.listing()?)).await
}

pub async fn locks(State(service): State<Service>, query: QueryParams) -> Answer {
    read(&service, &query, Query::Locks(query.listing()?)).await
}

pub async fn create_session(State(service): State<Service>, body: Body) -> Answer {
    let body = body.object(true)?.unwrap_or_default();
    let client_id = input::client_id(&body)?;
    let timeout = input::timeout(&body)?;
    // Minted here, before replication, so that a retry on another leader asks for this same
    // session rather than a second one.
    let session_id = SessionId(uuid::Uuid::new_v4());
    run(&service, Request::CreateSession { session_id, client_id, timeout }).await
}

pub async fn get_session(State(service): State<Service>, params: Params, query: QueryParams) -> Answer {
    read(&service, &query, Query::Session(params.session_id()?)).await
}

pub async fn delete_session(State(service): State<Service>, params: Params, _body: Body) -> Answer {
    run(&service, Request::DeleteSession { session_id: params.session_id()? }).await
}

pub async fn keepalive(State(service): State<Service>, params: Params, _body: Body) -> Answer {
    run(&service, Request::Keepalive { session_id: params.session_id()? }).await
}

pub async fn session_locks(State(service): State<Service>, params: Params, query: QueryParams) -> Answer {
    read(&service, &query, Query::SessionLocks(params.session_id()?)).await
}

pub async fn acquire(State(service): State<Service>, params: Params, _body: Body) -> Answer {
    let resource = params.resource()?;
    let session_id = params.session_id()?;
    run(&service, Request::Acquire { session_id, resource }).await
}

pub async fn release(State(service): State<Service>, params: Params, query: QueryParams, body: Body) -> Answer {
    let resource = params.resource()?;
    let from_body = match body.object(false)? {
        Some(body) => input::fence_token(&body)?,
        None => None,
    };
    let from_query = query.fence_token()?;
    let fence_token = match (from_body, from_query) {
        (Some(b), Some(q)) if b != q => {
            return Err(ApiError::invalid("fence_token", "fence_token differs between the body and the query"))
        }
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => return Err(ApiError::invalid("fence_token", "fence_token is required (body or ?fence_token=N)")),
    };
    let session_id = params.session_id()?;
    run(&service, Request::Release { session_id, resource, fence_token }).await
}

/// `/sessions/{id}/locks/` and `/admin/locks/`: a resource name cannot be empty.
pub async fn empty_resource() -> ApiError {
    ApiError::invalid("resource", "resource must not be empty")
}

pub async fn cleanup(State(service): State<Service>, _body: Body) -> Answer {
    run(&service, Request::Cleanup).await
}

pub async fn stats(State(service): State<Service>, query: QueryParams) -> Answer {
    read(&service, &query, Query::Stats).await
}

pub async fn lock_status(State(service): State<Service>, params: Params, query: QueryParams) -> Answer {
    read(&service, &query, Query::Lock(params.resource()?)).await
}

pub async fn not_found() -> ApiError {
    ApiError::route_not_found()
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

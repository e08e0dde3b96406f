//! The HTTP handlers. Each reads its input (`input`), calls one service method and maps the
//! answer (`reply`, `error`); none makes a decision about sessions or locks.

use axum::extract::State;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lockio_core::SessionId;

use super::error::ApiError;
use super::input::{self, AcquireOptions, Body, Params, QueryParams};
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
    let lock_delay = input::lock_delay(&body)?;
    // Minted here, before replication, so that a retry on another leader asks for this same
    // session rather than a second one.
    let session_id = SessionId(uuid::Uuid::new_v4());
    run(&service, Request::CreateSession { session_id, client_id, timeout, lock_delay }).await
}

pub async fn get_session(State(service): State<Service>, params: Params, query: QueryParams) -> Answer {
    read(&service, &query, Query::Session(params.session_id()?)).await
}

pub async fn delete_session(
    State(service): State<Service>,
    params: Result<Params, ApiError>,
    body: Result<Body, ApiError>,
) -> Answer {
    let answer = async {
        body?;
        run(&service, Request::DeleteSession { session_id: params?.session_id()? }).await
    };
    answer.await.map_err(|e| e.with("deleted", false))
}

pub async fn keepalive(State(service): State<Service>, params: Params, _body: Body) -> Answer {
    run(&service, Request::Keepalive { session_id: params.session_id()? }).await
}

pub async fn session_locks(State(service): State<Service>, params: Params, query: QueryParams) -> Answer {
    read(&service, &query, Query::SessionLocks(params.session_id()?)).await
}

/// A try-lock, or with `wait` a long poll that stays open until the grant, the deadline or the
/// end of the session. If the client goes away first, the service cancels the wait (unless the
/// same request comes back within two seconds).
pub async fn acquire(
    State(service): State<Service>,
    params: Result<Params, ApiError>,
    query: Result<QueryParams, ApiError>,
    body: Result<Body, ApiError>,
) -> Answer {
    let answer = async {
        let params = params?;
        let resource = params.resource()?;
        let options = input::acquire_options(body?.object(false)?.as_ref(), &query?)?;
        let session_id = params.session_id()?;
        let wait_ms = options.wait.millis();
        let AcquireOptions { mode, limit, value, .. } = options;
        run(&service, Request::Acquire { session_id, resource, mode, limit, value, wait_ms }).await
    };
    answer.await.map_err(|e| e.with("acquired", false))
}

pub async fn release(
    State(service): State<Service>,
    params: Result<Params, ApiError>,
    query: Result<QueryParams, ApiError>,
    body: Result<Body, ApiError>,
) -> Answer {
    let answer = async { release_inner(&service, params?, query?, body?).await };
    answer.await.map_err(|e| e.with("released", false))
}

async fn release_inner(service: &Service, params: Params, query: QueryParams, body: Body) -> Answer {
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
        (None, None) => {
            return Err(ApiError::invalid("fence_token", "fence_token is required (body or ?fence_token=N)"))
        }
    };
    let session_id = params.session_id()?;
    run(service, Request::Release { session_id, resource, fence_token }).await
}

/// `/sessions/{id}/locks/` and `/admin/locks/`: a resource name cannot be empty.
pub async fn empty_resource(method: Method, uri: Uri) -> ApiError {
    let error = ApiError::invalid("resource", "resource must not be empty");
    match (method, uri.path().starts_with("/sessions/")) {
        (Method::POST, true) => error.with("acquired", false),
        (Method::DELETE, true) => error.with("released", false),
        _ => error,
    }
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

/// `POST /fence/check`: whether a token is a current holder's, as a linearizable read.
pub async fn fence_check(State(service): State<Service>, body: Body) -> Answer {
    let (resource, fence_token) = input::fence_check(&body.object(true)?.unwrap_or_default())?;
    run(&service, Request::Read(Query::FenceCheck { resource, fence_token })).await
}

pub async fn not_found() -> ApiError {
    ApiError::route_not_found()
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

//! The client-facing HTTP API (http-api.md): routes, input parsing, answers and errors, all JSON
//! except the dashboard page. Handlers are thin; the service layer decides.

mod error;
mod input;
mod reply;
mod routes;

use std::any::Any;

use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use crate::service::Service;
pub use error::ApiError;

/// The API router for one node.
pub fn router(service: Service) -> Router {
    Router::new()
        .route("/", get(routes::dashboard))
        .route("/health", get(routes::health))
        .route("/cluster/status", get(routes::cluster_status))
        .route("/sessions", post(routes::create_session))
        .route("/sessions/{session_id}", get(routes::get_session).delete(routes::delete_session))
        .route("/sessions/{session_id}/keepalive", post(routes::keepalive))
        .route("/sessions/{session_id}/locks", get(routes::session_locks))
        .route("/sessions/{session_id}/locks/", post(routes::empty_resource).delete(routes::empty_resource))
        .route("/sessions/{session_id}/locks/{resource}", post(routes::acquire).delete(routes::release))
        .route("/admin/cleanup", post(routes::cleanup))
        .route("/admin/stats", get(routes::stats))
        .route("/admin/locks/", get(routes::empty_resource))
        .route("/admin/locks/{resource}", get(routes::lock_status))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(CatchPanicLayer::custom(panic_answer))
        .with_state(service)
}

/// A panic in a handler is a bug: log it, answer a JSON 500 without its text.
fn panic_answer(panic: Box<dyn Any + Send + 'static>) -> Response {
    let text = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = text, "handler panicked");
    ApiError::internal().into_response()
}

//! The client-facing HTTP API (http-api.md): routes, input parsing, answers and errors, all JSON
//! except the dashboard page. Handlers are thin; the service layer decides.

mod dashboard;
mod error;
mod input;
pub(crate) mod reply;
mod routes;
mod stream;

use std::any::Any;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::time::Instant;
use tower_http::catch_panic::CatchPanicLayer;

use crate::service::Service;
pub use error::ApiError;

/// The API router for one node; `metrics` renders `GET /metrics`.
pub fn router(service: Service, metrics: PrometheusHandle) -> Router {
    let scrape = Router::new().route("/metrics", get(render_metrics)).with_state((service.clone(), metrics));
    Router::new()
        .route("/", get(dashboard::page))
        .route("/dashboard.js", get(dashboard::script))
        .route("/dashboard.css", get(dashboard::style))
        .route("/events", get(stream::events))
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
        .route("/admin/sessions", get(routes::sessions))
        .route("/admin/locks", get(routes::locks))
        .route("/admin/locks/", get(routes::empty_resource))
        .route("/fence/check", post(routes::fence_check))
        .route("/admin/locks/{resource}", get(routes::lock_status))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(service)
        .merge(scrape)
        .layer(axum::middleware::from_fn(count_request))
        .layer(CatchPanicLayer::custom(panic_answer))
}

async fn render_metrics(State((service, handle)): State<(Service, PrometheusHandle)>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], crate::metrics::render(&handle, &service))
}

/// Counts every request by route template, method and status, with its latency.
async fn count_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let route = route.as_deref().unwrap_or("unmatched");
    // The event stream stays open for as long as the page does; its duration says nothing.
    if route != "/events" {
        crate::metrics::http_request(route, &method, response.status().as_u16(), started.elapsed());
    }
    response
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

//! The cluster dashboard served at `GET /`: plain HTML, CSS and JavaScript compiled into the
//! binary (no build step, no CDN). The page talks only to the node that served it: it reads
//! `/cluster/status`, `/admin/locks`, `/admin/sessions` and the `/events` stream.

use axum::response::{Html, IntoResponse};

pub async fn page() -> Html<&'static str> {
    Html(include_str!("dashboard/index.html"))
}

pub async fn script() -> impl IntoResponse {
    ([("content-type", "text/javascript; charset=utf-8")], include_str!("dashboard/app.js"))
}

pub async fn style() -> impl IntoResponse {
    ([("content-type", "text/css; charset=utf-8")], include_str!("dashboard/style.css"))
}

//! `GET /health` (both listeners) and `GET /metrics` (admin listener).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;

use super::AppState;

/// `{"status":"ok","service":"sluice","version":"…"}`, the shape admin-api.md documents.
/// `200 ok` while serving; `503 draining` once a graceful stop or upgrade began, so load
/// balancers move away while in-flight responses finish.
pub async fn health() -> axum::response::Response {
    let draining = crate::lifecycle::draining();
    let body = Json(serde_json::json!({
        "status": if draining { "draining" } else { "ok" },
        "service": "sluice",
        "version": env!("CARGO_PKG_VERSION"),
    }));
    if draining {
        (http::StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    } else {
        body.into_response()
    }
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Some(cache) = state.cache {
        cache.refresh_metrics();
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::metrics::render(),
    )
}

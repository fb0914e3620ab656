//! `GET /health` (both listeners) and `GET /metrics` (admin listener).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;

use super::AppState;

/// `{"status":"ok","service":"sluice","version":"…"}`, the shape admin-api.md documents.
pub async fn health() -> impl IntoResponse {
    Json(serde_json::json!({
        "status": "ok",
        "service": "sluice",
        "version": env!("CARGO_PKG_VERSION"),
    }))
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

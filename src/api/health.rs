//! `GET /health` (both listeners) and `GET /metrics` (admin listener).

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;

/// `{"status":"ok","service":"sluice","version":"…"}`, the shape admin-api.md documents.
pub async fn health() -> impl IntoResponse {
    Json(serde_json::json!({
        "status": "ok",
        "service": "sluice",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Prometheus text exposition.
pub async fn metrics() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::metrics::render(),
    )
}

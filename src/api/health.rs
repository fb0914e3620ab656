//! `GET /health` (both listeners) and `GET /metrics` (admin listener).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;

use super::AppState;

/// `{"status":"ok","service":"sluice","version":"…"}`, the shape admin-api.md documents.
/// `200 ok` while serving; `503 draining` once a graceful stop or upgrade began, so load
/// balancers move away while in-flight responses finish. On a fleet (`state.redis`), `200
/// degraded` while Redis cannot answer, refuses writes or a command, or local snapshots lag
/// it: the node still serves non-gated and cached media, so load balancers should keep it,
/// while gated playback and key delivery fail closed (`"redis"` says which part is missing;
/// `"reason"` and `"op"` name a refusal: Redis's error code and sluice's operation).
pub async fn health(State(state): State<AppState>) -> axum::response::Response {
    let draining = crate::lifecycle::draining();
    let redis = state.redis.as_ref().map(|r| r.health());
    let degraded = redis
        .as_ref()
        .is_some_and(|h| !h.connected || !h.synced || h.refused.is_some());
    let mut body = serde_json::json!({
        "status": if draining { "draining" } else if degraded { "degraded" } else { "ok" },
        "service": "sluice",
        "version": env!("CARGO_PKG_VERSION"),
    });
    if let Some(h) = redis {
        let said = match (&h.refused, h.connected, h.synced) {
            (_, false, _) => "unavailable",
            (Some(r), true, _) if r.of_writes() => "refusing writes",
            (Some(_), true, _) => "refusing commands",
            (None, true, true) => "ok",
            (None, true, false) => "syncing",
        };
        body["redis"] = serde_json::Value::String(said.into());
        if let (Some(r), true) = (&h.refused, h.connected) {
            body["reason"] = serde_json::Value::String(r.code.clone());
            body["op"] = serde_json::Value::String(r.op.into());
        }
    }
    if draining {
        (http::StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    } else {
        Json(body).into_response()
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

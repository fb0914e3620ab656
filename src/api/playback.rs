//! playback-api.txt `GET /api/key/{hash}` (both listeners): the 16-byte AES-128 content key
//! for encrypted HLS, behind `Authorization: Bearer b64url(json).b64url(hmac)`
//! ([`crate::auth::key_token`]); no `X-API-Key`.
//!
//! | status | when (the document's "Response semantics") |
//! |---|---|
//! | 200 | key returned as `application/octet-stream`, `Cache-Control: no-store` |
//! | 401 | no `Authorization: Bearer …` |
//! | 403 | bad signature, expired token, hash mismatch (one message for all) |
//! | 404 | no key stored for the hash |
//! | 429 | over `key_delivery.rate_limit` per minute, keyed by token (else client IP) |
//! | 500 | unwrap failure (KEK missing or record corrupt): logged, nothing leaked |
//! | 503 | the fleet's shared state (Redis) cannot answer (unless `state.redis_fail_open` lists `key_delivery`) |
//!
//! Errors are playback's short JSON, `{"error": "…"}` (rendered by [`super::surface`]). The
//! rate limit (per token, else per IP) and the client's auth-failure budget are applied by
//! the API layer before this handler runs ([`super::limits`]), so token guessing is
//! throttled too. CORS and the preflight (allowing `Authorization`) come from the same layer.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::auth::key_token;
use crate::store::content_keys;

fn reply(status: StatusCode, message: &str) -> Response {
    ApiError::refused(status, message).into_reply()
}

fn reject(reason: &'static str) {
    crate::metrics::refused(crate::metrics::GateSurface::Key, reason);
}

pub(super) async fn key(
    State(state): State<AppState>,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> Response {
    let cfg = &state.config.access.key_delivery;
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::jwt::bearer_from_header);
    let Some(token) = bearer else {
        reject("key_token_missing");
        return reply(
            StatusCode::UNAUTHORIZED,
            "Missing Authorization: Bearer token",
        );
    };
    let secret = cfg.secret.as_ref().map(|s| s.as_bytes()).unwrap_or(b"");
    let now = chrono::Utc::now().timestamp();
    if let Err(e) = key_token::verify(secret, token, &hash, now) {
        tracing::debug!(error = %e, "key token refused");
        reject("key_token_invalid");
        return reply(StatusCode::FORBIDDEN, "Forbidden");
    }
    // The key of a content is kept under its one spelling (`MOVIE-1` is `Movie-1`).
    let hash = state.streams.canonical(&hash);
    let row = match state.content_keys.get(&hash).await {
        Ok(r) => r,
        // The shared state cannot answer: fail closed, or — when the operator allowed it —
        // serve the record this node last read.
        Err(e) if e.is_unavailable() => {
            match state.content_keys.last_known(&hash).filter(|_| {
                state
                    .config
                    .redis
                    .as_ref()
                    .is_some_and(|r| r.fail_open.key_delivery)
            }) {
                Some(sealed) => {
                    crate::metrics::REDIS_FALLBACKS
                        .with_label_values(&["fail_open_key_delivery"])
                        .inc();
                    Some(Some(sealed))
                }
                None => {
                    reject("state_unavailable");
                    tracing::warn!(error = %e, "key delivery refused: shared state unavailable (fail closed)");
                    return reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Service temporarily unavailable",
                    );
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "content key lookup failed");
            return reply(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
        }
    };
    let Some(sealed) = row else {
        return reply(StatusCode::NOT_FOUND, "No key for this media");
    };
    let opened = match (&state.config.access.keyring, sealed) {
        (Some(ring), Some(sealed)) => content_keys::open(ring, &hash, &sealed).map_err(|e| {
            tracing::error!(hash = %hash, kek = %sealed.kek_id, error = %e, "content key unwrap failed")
        }),
        (None, _) => {
            tracing::error!(hash = %hash, "content key stored but no KEK configured (kek.current)");
            Err(())
        }
        (_, None) => {
            tracing::error!(hash = %hash, "content key record is corrupt");
            Err(())
        }
    };
    let Ok(key) = opened else {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
    };
    (
        StatusCode::OK,
        [
            (http::header::CONTENT_TYPE, "application/octet-stream"),
            (http::header::CACHE_CONTROL, "no-store"),
        ],
        key.to_vec(),
    )
        .into_response()
}

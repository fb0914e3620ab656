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
//!
//! Errors are playback's short JSON, `{"error": "…"}`. The rate limit is checked first, so
//! token guessing is throttled too.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use super::{AppState, Client};
use crate::auth::key_token;
use crate::config::tokens::RateKey;
use crate::ratelimit::RateClass;
use crate::store::content_keys;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/key/{hash}", get(key).options(preflight))
}

fn reply(status: StatusCode, message: &str) -> Response {
    let mut r = (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": message }).to_string(),
    )
        .into_response();
    cors(&mut r);
    r
}

fn cors(r: &mut Response) {
    r.headers_mut().insert(
        http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        http::HeaderValue::from_static("*"),
    );
}

/// Browsers' players (hls.js) send the bearer header cross-origin: allow it.
async fn preflight() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    cors(&mut r);
    let h = r.headers_mut();
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_METHODS,
        http::HeaderValue::from_static("GET, OPTIONS"),
    );
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_HEADERS,
        http::HeaderValue::from_static("Authorization"),
    );
    h.insert(
        http::header::ACCESS_CONTROL_MAX_AGE,
        http::HeaderValue::from_static("86400"),
    );
    r
}

fn reject(reason: &'static str) {
    crate::metrics::AUTH_REJECTIONS
        .with_label_values(&[reason])
        .inc();
}

async fn key(
    State(state): State<AppState>,
    Extension(client): Extension<Client>,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> Response {
    let cfg = &state.config.access.key_delivery;
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::jwt::bearer_from_header);
    // Keyed by a digest of the token, so the limiter's table holds no credentials.
    let limit_key = match (cfg.rate_limit_key, bearer) {
        (RateKey::Token, Some(t)) => format!("t:{}", crate::auth::api_keys::hash(t)),
        _ => format!("ip:{}", client.ip),
    };
    if let Err(wait) = state.rate_limits.check(RateClass::Key, &limit_key) {
        reject("rate_limited");
        let mut r = reply(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded");
        r.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from(wait.as_secs_f64().ceil().max(1.0) as u64),
        );
        return r;
    }
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
    let h = hash.clone();
    let row = match state.db.call(move |c| content_keys::get(c, &h)).await {
        Ok(r) => r,
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
    let mut r = (
        StatusCode::OK,
        [
            (http::header::CONTENT_TYPE, "application/octet-stream"),
            (http::header::CACHE_CONTROL, "no-store"),
        ],
        key.to_vec(),
    )
        .into_response();
    cors(&mut r);
    r
}

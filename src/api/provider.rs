//! provider-proxy-api.txt: `GET /api/providers/{id}/channels/{channel_id}/stream`.
//!
//! Checks `Authorization: Bearer <JWT>` (HS256, `exp` required, `alg` pinned), finds the
//! channel, resolves its current upstream URL (fixed in config, or asked of the provider's
//! API), mints a ctx token for it and answers the document's Stream Info object:
//! `{"url": "/api/proxy?url=…&ctx=…", "stream_type": "hls"|"dash", "drm": null|{…}}`.
//!
//! Errors are `{"error": "…"}`: 401 missing/invalid JWT, 404 unknown provider or channel,
//! 400 when the provider's API answered an error (or an unusable URL).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;
use crate::config::providers::{ChannelSource, Provider};
use crate::ssrf;
use crate::store::ctx::{CtxInsertError, ProxyContext};

fn error(status: StatusCode, message: &str) -> Response {
    super::ApiError::refused(status, message).into_reply()
}

pub async fn stream(
    State(state): State<AppState>,
    Path((id, channel_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::jwt::bearer_from_header);
    let claims = match (token, &state.provider_jwt) {
        (Some(t), Some(v)) => v.verify(t).ok(),
        _ => None,
    };
    let Some(claims) = claims else {
        crate::metrics::refused(crate::metrics::GateSurface::Proxy, "provider_jwt");
        return error(StatusCode::UNAUTHORIZED, "Missing or invalid JWT token");
    };
    // The ctx quota's key: the JWT's subject, else the token itself (digest).
    let subject = match claims.sub.filter(|s| !s.is_empty()) {
        Some(sub) => format!("sub:{sub}"),
        None => format!(
            "jwt:{}",
            crate::auth::api_keys::hash(token.unwrap_or_default())
        ),
    };
    let Some(provider) = state.providers.by_id.get(&id).cloned() else {
        return error(StatusCode::NOT_FOUND, "Provider not found");
    };
    let Some(channel) = provider.channels.get(&channel_id) else {
        return error(StatusCode::NOT_FOUND, "Channel not found");
    };
    let upstream = match &channel.source {
        ChannelSource::Fixed(u) => u.clone(),
        ChannelSource::Api { url, pointer } => match ask_provider(&provider, url, pointer).await {
            Ok(u) => u,
            Err(why) => {
                tracing::warn!(provider = %id, channel = %channel_id, error = %why, "provider API error");
                return error(StatusCode::BAD_REQUEST, "Provider API returned an error");
            }
        },
    };
    let ctx = match state
        .ctx_store
        .insert(ProxyContext::new(
            &id,
            &channel_id,
            &subject,
            provider.ctx_ttl,
            provider.ctx_max_session,
        ))
        .await
    {
        Ok(ctx) => ctx,
        Err(CtxInsertError::Full(full)) => {
            tracing::warn!(provider = %id, error = %full, "Stream Info refused");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many active streams, try again later",
            );
        }
        Err(CtxInsertError::Store(e)) => {
            tracing::warn!(provider = %id, error = %e, "Stream Info refused: shared state unavailable");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service temporarily unavailable",
            );
        }
    };
    let stream_type = channel.stream_type;
    Json(json!({
        "url": crate::rewrite::proxy_url(&upstream, &ctx),
        "stream_type": stream_type,
        "drm": channel.drm,
    }))
    .into_response()
}

/// Ask the provider's API for the channel's current URL (JSON, `pointer` to the URL).
async fn ask_provider(
    provider: &Provider,
    api: &url::Url,
    pointer: &str,
) -> Result<url::Url, String> {
    let client = crate::http_client::control_plane(Duration::from_secs(10))?;
    let mut req = client.get(api.clone());
    for (name, value) in &provider.headers {
        req = req.header(name.as_str(), value.as_bytes());
    }
    if let Some(cookie) = crate::provider::cookie_header(&provider.cookies) {
        req = req.header(http::header::COOKIE, cookie);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let body = crate::http_client::read_bounded(resp, 1024 * 1024)
        .await
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let raw = v
        .pointer(pointer)
        .and_then(|u| u.as_str())
        .ok_or_else(|| format!("no string at {pointer}"))?;
    let url = api.join(raw).map_err(|e| e.to_string())?;
    ssrf::check_url(&url, &provider.allowed_hosts, provider.allow_private)
        .map_err(|e| e.to_string())?;
    Ok(url)
}

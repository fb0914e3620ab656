//! `POST /api/cache/purge` (admin listener): drop cached media.
//!
//! Body, exactly one of:
//! - `{"path": "/stream/{hash}/{rest}"}`: that object, in every variant of its key (the
//!   LL-HLS delivery-directive variants of a playlist included);
//! - `{"hash": "{hash}"}`: everything cached below `/stream/{hash}/` (registered player ids
//!   purge their publisher's objects);
//! - `{"url": "https://cdn…/x.m3u8"}`: a `/api/proxy` object by its upstream URL, for every
//!   provider and every query variant of that URL.
//!
//! Answers `{"status":"success","purged":N}`. Needs an API key with `write`.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::auth::api_keys::Permission;
use crate::media::path::parse_stream_path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    pub path: Option<String>,
    pub hash: Option<String>,
    pub url: Option<String>,
}

pub async fn purge(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, ApiError> {
    let key = super::admin::authorize(&state, &headers, Permission::Write).await?;
    let mut resp = purge_authorized(&state, &body).await.into_response();
    resp.extensions_mut().insert(key);
    Ok(resp)
}

async fn purge_authorized(
    state: &AppState,
    body: &[u8],
) -> Result<Json<serde_json::Value>, ApiError> {
    let req: PurgeRequest = super::error::parse_json(body)?;
    let Some(cache) = state.cache else {
        return Ok(Json(serde_json::json!({"status": "success", "purged": 0})));
    };
    let purged = match (req.path, req.hash, req.url) {
        (Some(path), None, None) => {
            let path = path.split('?').next().unwrap_or_default();
            match path
                .strip_prefix("/stream/")
                .map(|rest| parse_stream_path(rest, &state.config.stream.extensions))
            {
                Some(Ok(sp)) => {
                    let primary = state
                        .upstream
                        .cache_primary_of(&state.streams.dir_for(&sp.hash), &sp.rest_encoded());
                    cache.purge_variants(&primary)
                }
                _ => {
                    return Err(ApiError::BadRequest(
                        "path: expected /stream/{hash}/{file}".into(),
                    ))
                }
            }
        }
        (None, None, Some(url)) => {
            let url = url::Url::parse(&url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| ApiError::BadRequest("url: expected an http(s) URL".into()))?;
            state
                .providers
                .by_id
                .values()
                .map(|p| {
                    let mut bare = url.clone();
                    bare.set_query(None);
                    let primary = p.cache_primary(&bare);
                    if url.query().is_some() {
                        usize::from(cache.purge_primary(&p.cache_primary(&url)))
                    } else {
                        cache.purge_variants(&primary)
                    }
                })
                .sum()
        }
        (None, Some(hash), None) => {
            if !crate::media::valid_hash(&hash) {
                return Err(ApiError::BadRequest("hash: invalid media hash".into()));
            }
            // The trailing slash keeps `abc` from purging `abcd`.
            cache.purge_prefix(
                &state
                    .upstream
                    .cache_primary_of(&state.streams.dir_for(&hash), ""),
            )
        }
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of `path`, `hash` or `url`".into(),
            ))
        }
    };
    tracing::info!(purged, "cache purge");
    Ok(Json(
        serde_json::json!({"status": "success", "purged": purged}),
    ))
}

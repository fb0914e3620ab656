//! `POST /api/cache/purge` (admin listener): drop cached media by exact path or by `{hash}`.
//!
//! Body: `{"path": "/stream/{hash}/{rest}"}` removes that object; `{"hash": "{hash}"}` removes
//! everything cached below `/stream/{hash}/`. Registered player ids purge their publisher's
//! objects. Answers `{"status":"success","purged":N}`. Needs an API key with `write`.

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
    let purged = match (req.path, req.hash) {
        (Some(path), None) => {
            let path = path.split('?').next().unwrap_or_default();
            match path
                .strip_prefix("/stream/")
                .map(|rest| parse_stream_path(rest, &state.config.stream.extensions))
            {
                Some(Ok(sp)) => {
                    let primary = state
                        .upstream
                        .cache_primary_of(&state.streams.dir_for(&sp.hash), &sp.rest_encoded());
                    usize::from(cache.purge_primary(&primary))
                }
                _ => {
                    return Err(ApiError::BadRequest(
                        "path: expected /stream/{hash}/{file}".into(),
                    ))
                }
            }
        }
        (None, Some(hash)) => {
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
                "give exactly one of `path` or `hash`".into(),
            ))
        }
    };
    tracing::info!(purged, "cache purge");
    Ok(Json(
        serde_json::json!({"status": "success", "purged": purged}),
    ))
}

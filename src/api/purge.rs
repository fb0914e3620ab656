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
//! Answers `{"status":"success","purged":N}`. Needs an API key with `write` (the route
//! table, [`super::routes`]).
//!
//! In a fleet (`fleet:` set) the purge is resolved here to cache-key operations, applied,
//! and sent to every other node ([`crate::fleet::purge`]): `purged` is the fleet's total and
//! `nodes` what each node removed. When a node could not be reached the answer is `502`
//! `{"status":"error","message":…,"purged":N,"nodes":{…}}` naming it (retry the purge).

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::cache::runtime::PurgeOp;
use crate::fleet::purge::PurgeOps;
use crate::media::path::parse_stream_path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    pub path: Option<String>,
    pub hash: Option<String>,
    pub url: Option<String>,
}

/// `POST /api/cache/purge`, behind the route's `write` key check ([`super::routes`]).
pub async fn purge(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, ApiError> {
    purge_body(&state, &body).await
}

async fn purge_body(state: &AppState, body: &[u8]) -> Result<axum::response::Response, ApiError> {
    let req: PurgeRequest = super::error::parse_json(body)?;
    let ops = resolve(state, req)?;
    let Some(cache) = state.cache else {
        return Ok(Json(serde_json::json!({"status": "success", "purged": 0})).into_response());
    };
    let Some(fleet) = &state.fleet else {
        let local: usize = ops.iter().map(|op| cache.purge(op)).sum();
        tracing::info!(purged = local, "cache purge");
        return Ok(Json(serde_json::json!({"status": "success", "purged": local})).into_response());
    };
    // Every node, twice. After the first round no owner holds the old bytes, nor will a fill
    // of theirs that began before it store them ([`crate::cache::storage::FillStarted`]);
    // but a node purged early in that round may have refetched them meanwhile from an owner
    // purged later. The second round removes those, and no node can fetch them again: every
    // owner is past its first round. Only then is the purge a success.
    let ops = PurgeOps { ops };
    let mut purged = 0;
    let mut counts: Vec<(std::net::SocketAddr, Result<usize, String>)> = Vec::new();
    for round in 0..2 {
        let local: usize = ops.ops.iter().map(|op| cache.purge(op)).sum();
        let answers = std::iter::once((fleet.config.this, Ok(local))).chain(
            fleet
                .fan_out_purge(&ops)
                .await
                .into_iter()
                .map(|o| (o.node, o.result)),
        );
        for (i, (node, result)) in answers.enumerate() {
            if round == 0 {
                counts.push((node, result));
            } else if let Some((_, count)) = counts.get_mut(i) {
                *count = match (&count, result) {
                    (Ok(a), Ok(b)) => Ok(a + b),
                    (_, Err(e)) => Err(e),
                    (Err(e), _) => Err(e.clone()),
                };
            }
        }
        // A node not reached is not purged: the answer is a retry, whatever a second round
        // (another timeout) would say.
        if counts.iter().any(|(_, c)| c.is_err()) {
            break;
        }
    }
    let mut nodes = serde_json::Map::new();
    let mut failed = Vec::new();
    for (node, count) in counts {
        match count {
            Ok(n) => {
                purged += n;
                nodes.insert(node.to_string(), n.into());
            }
            Err(e) => {
                nodes.insert(node.to_string(), serde_json::json!({ "error": e }));
                failed.push(node.to_string());
            }
        }
    }
    tracing::info!(purged, "cache purge on every node");
    if failed.is_empty() {
        return Ok(Json(
            serde_json::json!({"status": "success", "purged": purged, "nodes": nodes}),
        )
        .into_response());
    }
    // Not every node is purged: an error the operator can retry, with what was done.
    Ok((
        http::StatusCode::BAD_GATEWAY,
        Json(serde_json::json!({
            "status": "error",
            "message": format!("purge not applied on {}: retry", failed.join(", ")),
            "purged": purged,
            "nodes": nodes,
        })),
    )
        .into_response())
}

/// A purge request as cache-key operations (the same on every node).
fn resolve(state: &AppState, req: PurgeRequest) -> Result<Vec<PurgeOp>, ApiError> {
    match (req.path, req.hash, req.url) {
        (Some(path), None, None) => {
            let path = path.split('?').next().unwrap_or_default();
            match path
                .strip_prefix("/stream/")
                .map(|rest| parse_stream_path(rest, &state.config.stream.extensions))
            {
                Some(Ok(sp)) => Ok(vec![PurgeOp::Variants(
                    state
                        .upstream
                        .cache_primary_of(&state.streams.dir_for(&sp.hash), &sp.rest_encoded()),
                )]),
                _ => Err(ApiError::BadRequest(
                    "path: expected /stream/{hash}/{file}".into(),
                )),
            }
        }
        (None, None, Some(url)) => {
            let url = url::Url::parse(&url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| ApiError::BadRequest("url: expected an http(s) URL".into()))?;
            Ok(state
                .providers
                .by_id
                .values()
                .map(|p| {
                    if url.query().is_some() {
                        PurgeOp::Exact(p.cache_primary(&url))
                    } else {
                        PurgeOp::Variants(p.cache_primary(&url))
                    }
                })
                .collect())
        }
        (None, Some(hash), None) => {
            if !crate::media::valid_hash(&hash) {
                return Err(ApiError::BadRequest("hash: invalid media hash".into()));
            }
            // The trailing slash keeps `abc` from purging `abcd`.
            Ok(vec![PurgeOp::Prefix(
                state
                    .upstream
                    .cache_primary_of(&state.streams.dir_for(&hash), ""),
            )])
        }
        _ => Err(ApiError::BadRequest(
            "give exactly one of `path`, `hash` or `url`".into(),
        )),
    }
}

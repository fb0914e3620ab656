//! The edge routes other nodes of a fleet call, mounted only when `fleet:` is set (the routes:
//! [`super::routes::ROUTES`]), each answering only a request signed by another node
//! ([`crate::fleet::auth`]; `403` otherwise): `POST /_fleet/purge` applies a purge another node
//! resolved to cache-key operations and sends it nowhere else ([`crate::fleet::purge`]);
//! `GET /_fleet/stats/{player}[?reset]` answers this node's figures for a player, for the node
//! reporting the fleet's ([`crate::fleet::stats`]).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{ApiError, AppState};
use crate::fleet::purge::PurgeOps;
use crate::fleet::stats::NodeStats;
use crate::fleet::PEER_REQUESTS;

/// The request is another node's, signed over exactly this method, target and body.
fn signed_by_a_node(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Result<(), ApiError> {
    let refused = || ApiError::Refused {
        status: http::StatusCode::FORBIDDEN,
        message: "Forbidden".into(),
    };
    let fleet = state
        .fleet
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("Not found".into()))?;
    let header = headers
        .get(crate::fleet::auth::HEADER)
        .and_then(|v| v.to_str().ok());
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    match header.map(|h| fleet.verify(h, method.as_str(), path_and_query, body)) {
        Some(Ok(_)) => {
            PEER_REQUESTS.with_label_values(&["served"]).inc();
            Ok(())
        }
        other => {
            PEER_REQUESTS.with_label_values(&["refused"]).inc();
            let reason = match other {
                Some(Err(e)) => e.as_str(),
                _ => "missing",
            };
            tracing::warn!(reason, path = %uri.path(), "fleet request refused");
            Err(refused())
        }
    }
}

/// `POST /_fleet/purge`: applied here, never sent on.
pub(super) async fn purge(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    signed_by_a_node(&state, &headers, &method, &uri, &body)?;
    let ops: PurgeOps = super::error::parse_json(&body)?;
    let purged: usize = match state.cache {
        Some(cache) => ops.ops.iter().map(|op| cache.purge(op)).sum(),
        None => 0,
    };
    tracing::info!(purged, "cache purge from a fleet node");
    Ok(Json(serde_json::json!({"status": "success", "purged": purged})).into_response())
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct StatsQuery {
    reset: Option<String>,
}

/// `GET /_fleet/stats/{player}`: this node's figures (reset after reading with `?reset`).
pub(super) async fn player_stats(
    State(state): State<AppState>,
    Path(player): Path<String>,
    Query(q): Query<StatsQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    signed_by_a_node(&state, &headers, &method, &uri, b"")?;
    let local: NodeStats = super::admin::local_stats(&state, &player);
    if q.reset.is_some() {
        state.stats.reset(&player);
    }
    Ok(Json(local).into_response())
}

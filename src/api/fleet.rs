//! The edge routes other nodes of a fleet call, mounted only when `fleet:` is set (the routes:
//! [`super::routes::ROUTES`]), each answering only a request signed by another node
//! ([`crate::fleet::auth`]; `403` otherwise): `POST /_fleet/purge` applies a purge another node
//! resolved to cache-key operations and sends it nowhere else ([`crate::fleet::purge`]);
//! `GET /_fleet/stats/{player}[?reset]` answers this node's figures for a player, for the node
//! reporting the fleet's ([`crate::fleet::stats`]).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;

use super::{ApiError, AppState, FromNode};
use crate::client::Client;
use crate::fleet::purge::PurgeOps;
use crate::fleet::stats::NodeStats;
use crate::fleet::PEER_REQUESTS;

/// A bodiless request is another node's: its signature was checked at its start, once
/// ([`FromNode`]).
fn from_a_node(state: &AppState, from_node: FromNode, uri: &Uri) -> Result<(), ApiError> {
    verdict(state, from_node.0.ok_or("missing"), uri)
}

/// A request with a body is another node's: signed over exactly this method, target and
/// body, for this node, from the sending node's address (`client.peer`), checked here, once.
fn signed_by_a_node(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
    client: &Client,
    body: &[u8],
) -> Result<(), ApiError> {
    let fleet = state
        .fleet
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("Not found".into()))?;
    let checked = headers
        .get(crate::fleet::auth::HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or("missing")
        .and_then(|h| {
            let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
            let peer = client.peer.map(|p| crate::client::canonical_ip(p.ip()));
            fleet
                .verify(h, method.as_str(), path_and_query, body, peer)
                .map_err(|e| e.as_str())
        });
    verdict(state, checked, uri)
}

fn verdict<T>(state: &AppState, checked: Result<T, &str>, uri: &Uri) -> Result<(), ApiError> {
    if state.fleet.is_none() {
        return Err(ApiError::NotFound("Not found".into()));
    }
    match checked {
        Ok(_) => {
            PEER_REQUESTS.with_label_values(&["served"]).inc();
            Ok(())
        }
        Err(reason) => {
            PEER_REQUESTS.with_label_values(&["refused"]).inc();
            tracing::warn!(reason, path = %uri.path(), "fleet request refused");
            Err(ApiError::Refused {
                status: http::StatusCode::FORBIDDEN,
                message: "Forbidden".into(),
            })
        }
    }
}

/// `POST /_fleet/purge`: applied here, never sent on.
pub(super) async fn purge(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Extension(client): Extension<Client>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    signed_by_a_node(&state, &headers, &method, &uri, &client, &body)?;
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
    uri: Uri,
    Extension(from_node): Extension<FromNode>,
) -> Result<Response, ApiError> {
    from_a_node(&state, from_node, &uri)?;
    let local: NodeStats = super::admin::local_stats(&state, &player);
    if q.reset.is_some() {
        state.stats.reset(&player);
    }
    Ok(Json(local).into_response())
}

//! admin-api.md: API keys, stream ids, stats — on the admin listener. Each route's permission,
//! rate class and audit are in the route table ([`super::routes::ROUTES`]).
//!
//! The API-key check ([`require_key`]) runs before the handler, for every route whose entry
//! names a permission ([`super::routes::Auth::ApiKey`]): a handler cannot forget it. Rate
//! limits (the API layer, [`super::limits`]) are checked before authentication and before the
//! body is read, so key guessing and oversized bodies are throttled too. Every request to an
//! audited route that presented a valid key, and every refusal, is written to `access_logs`
//! ([`log_access`], batched off the path).

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Json;
use serde_json::{json, Map, Value};

use super::{ApiError, AppState, Client};
use crate::auth::api_keys::{self, Permission};

/// The key a request authenticated with, left in the response for the access log.
#[derive(Debug, Clone, Copy)]
pub struct AuthedKey(pub i64);

/// `access_logs` (admin-api.md "Database Schema"): every request made with a valid key, and
/// every refusal (401, 403, 429) with `api_key_id` NULL when no key matched — the document
/// tells operators to monitor exactly those. Floods are aggregated by the writer.
pub fn log_access(
    state: &AppState,
    resp: &Response,
    endpoint: &str,
    method: &http::Method,
    client: &Client,
    request_id: &str,
) {
    let status = resp.status().as_u16();
    let key = resp.extensions().get::<AuthedKey>().map(|k| k.0);
    if key.is_none() && !matches!(status, 401 | 403 | 429) {
        return;
    }
    state
        .access_log
        .record(crate::store::access_log::AccessEntry {
            api_key_id: key,
            endpoint: endpoint.to_string(),
            method: method.to_string(),
            ip: client.ip.to_string(),
            status,
            request_id: Some(request_id.to_string()),
        });
}

/// Check `Authorization: Bearer <API key>` against the hashed keys and the permission needed.
pub async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    needed: Permission,
) -> Result<AuthedKey, ApiError> {
    let key = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::jwt::bearer_from_header)
        .ok_or(ApiError::Unauthorized)?;
    if key.len() > 256 {
        return Err(ApiError::Unauthorized);
    }
    let row = state.api_keys.find_active(&api_keys::hash(key)).await?;
    let Some((id, perm)) = row else {
        crate::metrics::refused(crate::metrics::GateSurface::Admin, "bad_api_key");
        return Err(ApiError::Unauthorized);
    };
    let perm: Permission = perm
        .parse()
        .map_err(|_| ApiError::Internal(format!("api key {id} has an unknown permission")))?;
    if !perm.allows(needed) {
        return Err(ApiError::InsufficientPermissions { key_id: id });
    }
    Ok(AuthedKey(id))
}

/// `endpoint` behind the API-key check for `needed` ([`require_key`]), as the route table says.
pub fn behind_key(
    state: &AppState,
    needed: Permission,
    endpoint: MethodRouter<AppState>,
) -> MethodRouter<AppState> {
    let state = state.clone();
    endpoint.route_layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            require_key(state.clone(), needed, req, next)
        },
    ))
}

/// The router's API-key check for a route that needs `needed`: refused in the surface's shape
/// before the handler runs, or passed on with the key left in the response for the access log.
pub async fn require_key(
    state: AppState,
    needed: Permission,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match authorize(&state, req.headers(), needed).await {
        Err(e) => e.into_response(),
        Ok(key) => {
            let mut resp = next.run(req).await;
            resp.extensions_mut().insert(key);
            resp
        }
    }
}

/// `{"status":"success","message":…}`, the document's acknowledgement.
fn success(message: &str) -> Response {
    Json(json!({"status": "success", "message": message})).into_response()
}

pub(super) async fn list_stream_ids(State(state): State<AppState>) -> Result<Response, ApiError> {
    let rows = state.streams.list().await?;
    Ok(Json(json!({"status": "success", "data": rows})).into_response())
}

/// A new stream id, validated field by field.
#[derive(Debug, PartialEq, Eq)]
pub struct NewStreamId {
    pub publisher: String,
    pub player: String,
    pub description: Option<String>,
}

/// Parse and validate a `POST /api/stream-ids` body; errors name the field.
pub fn parse_new_stream_id(body: &[u8]) -> Result<NewStreamId, ApiError> {
    let v: Value = super::error::parse_json(body)?;
    let Value::Object(obj) = v else {
        return Err(ApiError::BadRequest(
            "Request body must be a JSON object".into(),
        ));
    };
    let publisher = required_id(&obj, "publisher")?;
    let player = required_id(&obj, "player")?;
    let description = match obj.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            if s.chars().count() > 1024 {
                return Err(ApiError::BadRequest(
                    "Field 'description' must be at most 1024 characters".into(),
                ));
            }
            if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                return Err(ApiError::BadRequest(
                    "Field 'description' must not contain control characters".into(),
                ));
            }
            Some(s.clone())
        }
        Some(_) => {
            return Err(ApiError::BadRequest(
                "Field 'description' must be a string".into(),
            ))
        }
    };
    if let Some(extra) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "publisher" | "player" | "description"))
    {
        return Err(ApiError::BadRequest(format!("Unknown field '{extra}'")));
    }
    Ok(NewStreamId {
        publisher,
        player,
        description,
    })
}

/// Stream ids end up in `/stream/{player}/…` URLs and bucket paths: a strict character set.
fn required_id(obj: &Map<String, Value>, field: &str) -> Result<String, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(ApiError::BadRequest(format!(
            "Missing required field '{field}'"
        ))),
        Some(Value::String(s)) => {
            if s.is_empty() || s.len() > 128 {
                return Err(ApiError::BadRequest(format!(
                    "Field '{field}' must be 1 to 128 characters"
                )));
            }
            if !crate::media::valid_hash(s) {
                return Err(ApiError::BadRequest(format!(
                    "Field '{field}' may contain only letters, digits, '-', '_' and '.' and must not start with '.'"
                )));
            }
            Ok(s.clone())
        }
        Some(_) => Err(ApiError::BadRequest(format!(
            "Field '{field}' must be a string"
        ))),
    }
}

pub(super) async fn add_stream_id(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let new = parse_new_stream_id(&body)?;
    let player = new.player.clone();
    // One stream id per spelling: the edge resolves `/stream/LIVE` to `live`, so `LIVE` is
    // taken once `live` is (the store refuses it too, atomically, for a fleet's race).
    let taken = state.streams.resolve(&player);
    if taken.alias {
        return Err(ApiError::Conflict(already_exists(&player, &taken.name)));
    }
    if let Some(what) = shadowed(&state, &player) {
        return Err(ApiError::Conflict(format!(
            "Stream ID with player '{player}' would shadow {what}"
        )));
    }
    let row = crate::store::stream_ids::StreamId {
        publisher: new.publisher,
        player: new.player,
        description: new.description,
    };
    if !state.streams.insert(&row).await? {
        return Err(ApiError::Conflict(already_exists(&player, "")));
    }
    Ok(success("Stream ID added successfully"))
}

/// The document's 409 message, saying which spelling holds the name when it is another.
fn already_exists(player: &str, existing: &str) -> String {
    let mut m = format!("Stream ID with player '{player}' already exists");
    if existing != player {
        m.push_str(" (");
        if !existing.is_empty() {
            m.push_str(&format!("as '{existing}'; "));
        }
        m.push_str("stream ids are compared without ASCII case)");
    }
    m
}

/// What registering `player` would shadow: a configured content, a registered publisher, or
/// (for a `dir:` bucket, which can be listed) an existing folder.
fn shadowed(state: &AppState, player: &str) -> Option<String> {
    if let Some(what) = state.streams.shadowing(player) {
        return Some(what);
    }
    match &state.config.origins.bucket {
        crate::config::Bucket::Dir(root) if root.join(player).exists() => {
            Some(format!("folder '{player}' of the bucket"))
        }
        _ => None,
    }
}

pub(super) async fn delete_stream_id(
    State(state): State<AppState>,
    Path(player): Path<String>,
) -> Result<Response, ApiError> {
    if !state.streams.delete(&player).await? {
        return Err(ApiError::NotFound("Stream ID not found".into()));
    }
    Ok(success("Stream ID deleted successfully"))
}

pub(super) async fn create_key(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let v: Value = super::error::parse_json(&body)?;
    let Value::Object(obj) = &v else {
        return Err(ApiError::BadRequest(
            "Request body must be a JSON object".into(),
        ));
    };
    // `"active": false` must not silently create an active key: unknown fields are errors.
    if let Some(extra) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "permissions"))
    {
        return Err(ApiError::BadRequest(format!("Unknown field '{extra}'")));
    }
    let name = match v.get("name") {
        Some(Value::String(s))
            if !s.trim().is_empty() && s.len() <= 128 && !s.chars().any(char::is_control) =>
        {
            s.clone()
        }
        Some(Value::String(_)) => {
            return Err(ApiError::BadRequest(
                "Field 'name' must be 1 to 128 printable characters".into(),
            ))
        }
        Some(_) => return Err(ApiError::BadRequest("Field 'name' must be a string".into())),
        None => return Err(ApiError::BadRequest("Missing required field 'name'".into())),
    };
    let permission: Permission = match v.get("permissions") {
        Some(Value::String(s)) => s.parse().map_err(|_| {
            ApiError::BadRequest("Field 'permissions' must be one of admin, write, read".into())
        })?,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "Field 'permissions' must be a string".into(),
            ))
        }
        None => {
            return Err(ApiError::BadRequest(
                "Missing required field 'permissions'".into(),
            ))
        }
    };
    let (_, new_key) = state.api_keys.create(&name, permission).await?;
    Ok(Json(json!({
        "status": "success",
        "api_key": new_key,
        "message": "Save this key securely. It cannot be retrieved again."
    }))
    .into_response())
}

#[derive(Debug, serde::Deserialize)]
pub struct StatsQuery {
    pub reset: Option<String>,
    pub legacy: Option<String>,
}

pub(super) async fn player_stats(
    State(state): State<AppState>,
    Path(player): Path<String>,
    Query(q): Query<StatsQuery>,
) -> Result<Response, ApiError> {
    // Figures are kept under the one spelling the edge resolved requests to.
    let name = state.streams.canonical(&player);
    let registered = state.streams.publisher_for(&name).is_some();
    let (snap, cached_bytes, fleet) = stats_of(&state, &name, q.reset.is_some()).await;
    if snap.is_none() && !registered {
        return Err(ApiError::NotFound("Stream not found".into()));
    }
    let s = snap.unwrap_or(crate::stats::Snapshot {
        bitrate_kbps: 0,
        bytes: 0,
        requests: 0,
        upstream_errors: 0,
        rtt_ms: 0.0,
        latency_ms: 0.0,
        uptime_secs: 0,
        cache_hits: 0,
    });
    let cached_kib = cached_bytes / 1024;
    let legacy = q.legacy.as_deref() == Some("1");
    let body = if legacy {
        let mbps = s.bitrate_kbps as f64 / 1000.0;
        json!({
            "publishers": {
                player.clone(): {
                    "bitrate": s.bitrate_kbps,
                    "bytes_rcv_drop": 0,
                    "bytes_rcv_loss": 0,
                    "mbps_bandwidth": mbps,
                    "mbps_recv_rate": mbps,
                    "ms_rcv_buf": cached_kib,
                    "pkt_rcv_drop": s.upstream_errors,
                    "pkt_rcv_loss": 0,
                    "rtt": s.rtt_ms,
                    "uptime": s.uptime_secs,
                    "latency": s.latency_ms.round() as u64,
                    "bytes_sent": s.bytes,
                    "requests": s.requests,
                }
            },
            "status": "ok"
        })
    } else {
        json!({
            "publisher": {
                "bitrate": s.bitrate_kbps,
                "buffer": cached_kib,
                "dropped_pkts": s.upstream_errors,
                "rtt": s.rtt_ms,
                "uptime": s.uptime_secs,
                "latency": s.latency_ms.round() as u64,
                "bytes_sent": s.bytes,
                "requests": s.requests,
            },
            "status": "ok"
        })
    };
    let mut body = body;
    if let (Some((answered, nodes)), Some(o)) = (fleet, body.as_object_mut()) {
        o.insert(
            "fleet".into(),
            json!({"nodes": nodes, "answered": answered}),
        );
    }
    if q.reset.is_some() {
        state.stats.reset(&name);
    }
    Ok(Json(body).into_response())
}

/// This node's figures for a player: its stats and the bytes of its objects in this cache.
pub fn local_stats(state: &AppState, player: &str) -> crate::fleet::stats::NodeStats {
    let player = state.streams.canonical(player);
    let player = player.as_str();
    let cached_bytes = state
        .cache
        .map(|c| {
            let prefix = state
                .upstream
                .cache_primary_of(&state.streams.dir_for(player), "");
            c.storage.bytes_with_prefix(&prefix) as u64
        })
        .unwrap_or(0);
    crate::fleet::stats::NodeStats {
        snapshot: state.stats.snapshot(player),
        cached_bytes,
    }
}

/// The figures `/stats` reports: this node's, or in a fleet the sum over every node that
/// answered (with how many answered, of how many).
async fn stats_of(
    state: &AppState,
    player: &str,
    reset: bool,
) -> (Option<crate::stats::Snapshot>, u64, Option<(usize, usize)>) {
    let local = local_stats(state, player);
    let Some(fleet) = &state.fleet else {
        return (local.snapshot, local.cached_bytes, None);
    };
    let others = fleet.gather_stats(player, reset).await;
    let nodes = others.len() + 1;
    let answered: Vec<crate::fleet::stats::NodeStats> = std::iter::once(local)
        .chain(others.into_iter().filter_map(|(_, r)| r.ok()))
        .collect();
    let count = answered.len();
    let cached = answered.iter().map(|a| a.cached_bytes).sum();
    let snapshot = crate::fleet::stats::combine(answered.into_iter().filter_map(|a| a.snapshot));
    (snapshot, cached, Some((count, nodes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_bodies_are_validated_by_field() {
        let ok =
            parse_new_stream_id(br#"{"publisher":"studio_1","player":"live_stream"}"#).unwrap();
        assert_eq!(ok.player, "live_stream");
        let err = |b: &[u8]| parse_new_stream_id(b).unwrap_err().to_string();
        assert!(err(br#"{"player":"x"}"#).contains("'publisher'"));
        assert!(err(br#"{"publisher":1,"player":"x"}"#).contains("'publisher' must be a string"));
        assert!(err(br#"{"publisher":"a","player":"x\u0000"}"#).contains("'player'"));
        assert!(err(br#"{"publisher":"a\"b","player":"x"}"#).contains("'publisher'"));
        assert!(err(br#"{"publisher":"../x","player":"x"}"#).contains("'publisher'"));
        assert!(err(br#"{"publisher":"a","player":"x","description":5}"#).contains("'description'"));
        assert!(err(br#"{"publisher":"a","player":"x","extra":1}"#).contains("'extra'"));
        assert!(err(b"not json").contains("Invalid JSON"));
        assert!(err(b"[]").contains("object"));
    }
}

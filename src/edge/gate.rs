//! The stream-token gate on `/stream/{hash}/…` (stream-token-api "Verifications avant
//! diffusion"), run in `request_filter` before the cache is consulted, so a cached object is
//! never served to a request that would have been refused.
//!
//! Only hashes of contents configured with `token_required: true` are gated. The token comes
//! from the query (`?token=`) or the `stream_token` cookie; a playlist admitted with a query
//! token also sets that cookie (scoped to `/stream/{hash}/`) so the player's relative
//! segment and variant URIs carry it. The rules and their order are in [`crate::access`].

use pingora_proxy::Session;

use super::{respond_json, RequestCtx};
use crate::access::{error_body, MediaRequest};
use crate::state::AppState;
use crate::edge::route::StreamPath;

/// Check a media request. `Ok(true)`: refused, the answer is written.
pub(super) async fn enforce(
    state: &AppState,
    session: &mut Session,
    sp: &StreamPath,
    ctx: &mut RequestCtx,
) -> pingora_error::Result<bool> {
    let cfg = &state.config.access;
    if !cfg
        .streaming
        .content_by_hash(&sp.hash)
        .is_some_and(|c| c.token_required)
    {
        return Ok(false);
    }
    let client_ip =
        crate::client::client_of(session.as_downstream(), &state.config.trusted_proxies).ip;
    let req = session.req_header();
    let query = req.uri.query();
    let cookies = req.headers.get("cookie").and_then(|v| v.to_str().ok());
    let token = crate::access::token_from_request(query, cookies);
    let from_query = query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("token=")));
    let media = MediaRequest {
        hash: &sp.hash,
        token,
        client_ip,
        device_id: req.headers.get("x-device-id").and_then(|v| v.to_str().ok()),
        // One use = one playback start: a load of the entry playlist the token's streamUrl
        // names. Variant and media playlist reloads (live players reload every few seconds)
        // and segments are checked but spend nothing.
        playlist: req.uri.path() == cfg.streaming.stream_path.replace("{hash}", &sp.hash),
    };
    let now = chrono::Utc::now().timestamp();
    match state.access.admit(cfg, &media, now).await {
        Ok(claims) => {
            ctx.admitted_token = token.map(str::to_string);
            if from_query {
                if let Some(t) = token {
                    ctx.stream_cookie = Some(format!(
                        "stream_token={t}; Path=/stream/{}/; Max-Age={}; HttpOnly; SameSite=Lax",
                        sp.hash,
                        (claims.exp - now).max(0)
                    ));
                }
            }
            Ok(false)
        }
        Err(refusal) => {
            crate::metrics::AUTH_REJECTIONS
                .with_label_values(&[refusal.metric_label()])
                .inc();
            let status = refusal.status();
            ctx.local_status = Some(status.as_u16());
            let body = error_body(status, refusal.message()).to_string();
            respond_json(session, status.as_u16(), body.into()).await?;
            Ok(true)
        }
    }
}

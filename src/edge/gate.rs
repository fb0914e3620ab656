//! The stream-token gate on `/stream/{hash}/…` (stream-token-api "Verifications avant
//! diffusion"), run in `request_filter` before the cache is consulted, so a cached object is
//! never served to a request that would have been refused.
//!
//! The gate judges the canonical request: the decoded [`StreamPath`] and the bucket directory
//! it resolves to (`dir`, after stream-id aliases), which is exactly what is fetched. A hash
//! is gated when the content configured for that directory has `token_required: true`. The
//! rules and their order are in [`crate::access`]; this module reads the request, writes the
//! refusal, and leaves the admission in the request context for the response phases (the
//! playlist rewrite mints playback credentials from it; a failed answer, or one the player
//! left before any byte of the playlist was written, gives the use back).

use pingora_proxy::Session;

use super::{respond, RequestCtx};
use crate::access::{presented, Admission, MediaRequest, Spend};
use crate::api::Surface;
use crate::auth::playback::ObjectProof;
use crate::edge::route::StreamPath;
use crate::state::AppState;

/// Check a media request for the object in bucket directory `dir`. `Ok(true)`: refused,
/// the answer is written.
pub(super) async fn enforce(
    state: &AppState,
    session: &mut Session,
    sp: &StreamPath,
    dir: &str,
    ctx: &mut RequestCtx,
) -> pingora_error::Result<bool> {
    let streaming = &state.config.access.streaming;
    let Some(content) = streaming.content_by_hash(dir).filter(|c| c.token_required) else {
        return Ok(false);
    };
    let client = crate::client::client_of(session.as_downstream(), &state.config.trusted_proxies);
    let req = session.req_header();
    let shown = presented(
        req.uri.query(),
        req.headers.get("cookie").and_then(|v| v.to_str().ok()),
    );
    let rest = sp.rest_joined();
    let proof = ObjectProof::from_query(req.uri.query());
    let media = MediaRequest {
        rest: &rest,
        kind: sp.kind,
        presented: shown.as_ref(),
        client_ip: client.ip,
        device_id: req.headers.get("x-device-id").and_then(|v| v.to_str().ok()),
        spend: if req.method == http::Method::GET {
            Spend::Reserve
        } else {
            Spend::CheckOnly
        },
        proof: &proof,
    };
    let now = chrono::Utc::now().timestamp();
    match state.access.admit(streaming, content, &media, now).await {
        Ok(admission) => {
            ctx.gate = Some(admission);
            Ok(false)
        }
        Err(refusal) => {
            crate::metrics::refused(crate::metrics::GateSurface::Stream, refusal.metric_label());
            let status = refusal.status();
            ctx.local_status = Some(status.as_u16());
            let body = Surface::Streaming
                .error_body(status, refusal.message())
                .to_string();
            respond::json(session, status.as_u16(), body.into()).await?;
            Ok(true)
        }
    }
}

/// Whether an answer delivered what the use was reserved for.
fn delivered(status: u16) -> bool {
    (200..300).contains(&status) || status == 304
}

/// At the end of a request: a use reserved at admission is given back unless the player got
/// the playlist (2xx, or 304 for a copy it already holds).
pub(super) async fn settle(state: &AppState, admission: &Admission, status: u16) {
    if let (Some(jti), false) = (&admission.reserved, delivered(status)) {
        state.access.release(jti).await;
    }
}

/// Before a failed answer is written: give the use back now, not in the logging phase after
/// the answer, so a player (or backend) that asks `verify` the moment it sees the failure
/// finds the use unspent — on a fleet the give-back is a Redis round trip, which widened that
/// window. The logging phase then has nothing left to give back.
pub(super) async fn settle_before_answer(state: &AppState, ctx: &mut RequestCtx, status: u16) {
    if !delivered(status) {
        give_back(state, ctx).await;
    }
}

/// The player will not get the playlist: a failed answer, or a player that went away before
/// any byte of the playlist body was written (an abandoned start is not a playback). Give
/// the reserved use back now; the logging phase then has nothing left to give back.
pub(super) async fn give_back(state: &AppState, ctx: &mut RequestCtx) {
    if let Some(jti) = ctx.gate.as_mut().and_then(|a| a.reserved.take()) {
        state.access.release(&jti).await;
    }
}

//! signed-channel-api.txt: `/api/v1/*` on both listeners (the routes: [`super::routes::ROUTES`]).
//! `health`, `matches`, `channels` (never listing URLs or ClearKey keys) and `stats` are open;
//! `channels/{key}/stream` needs `X-Signature-Token` = hex HMAC-SHA256(secret,
//! `"{ts}:{path}"`) and `X-Signature-Timestamp`.
//!
//! Every answer is the document's envelope `{"success", "data", "error": {"code", "message"}}`
//! with codes `HTTP_<status>`. The signature covers the request path (no query), so a
//! captured signature cannot be used on another path; within the skew window
//! (`signed_channels.skew`, default ±300 s) the same request may be replayed — it is a
//! read-only GET, and refusing replays would need shared nonce state (README, "Signed
//! channels").

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::AppState;
use crate::auth::request_sig::{self, SigError};
use crate::config::tokens::Match;

/// Stream answers served since start, for `/api/v1/stats`.
static STREAMS_SERVED: AtomicU64 = AtomicU64::new(0);

fn ok(data: Value) -> Response {
    Json(json!({"success": true, "data": data, "error": null})).into_response()
}

fn fail(status: StatusCode, message: &str) -> Response {
    super::ApiError::refused(status, message).into_reply()
}

/// A signature failure's status and message.
pub fn sig_refusal(e: SigError) -> (StatusCode, &'static str) {
    match e {
        SigError::Missing => (
            StatusCode::UNAUTHORIZED,
            "Secure session credentials missing",
        ),
        SigError::MalformedTimestamp => (StatusCode::UNAUTHORIZED, "Invalid signature timestamp"),
        SigError::Skewed => (StatusCode::UNAUTHORIZED, "Signature timestamp expired"),
        SigError::BadSignature => (StatusCode::FORBIDDEN, "Invalid signature"),
    }
}

pub(super) async fn health(State(state): State<AppState>) -> Response {
    ok(json!({
        "status": "ok",
        "service": "sluice",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": state.started.elapsed().as_secs(),
    }))
}

/// `live` when started (and not ended), `upcoming` before; `None` once over.
pub fn match_status(m: &Match, now: i64) -> Option<&'static str> {
    if let Some(end) = m.end {
        if now >= end {
            return None;
        }
    }
    match (m.status.as_deref(), m.start) {
        (Some("live"), _) => Some("live"),
        (Some(_), _) => Some("upcoming"),
        (None, Some(start)) if now < start => Some("upcoming"),
        (None, _) => Some("live"),
    }
}

fn iso(t: Option<i64>) -> Value {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|d| Value::String(d.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
        .unwrap_or(Value::Null)
}

pub(super) async fn matches(State(state): State<AppState>) -> Response {
    let now = chrono::Utc::now().timestamp();
    let list: Vec<Value> = state
        .config
        .access
        .channels
        .matches
        .iter()
        .filter_map(|m| {
            match_status(m, now).map(|status| {
                json!({
                    "id": m.id,
                    "title": m.title,
                    "status": status,
                    "start_time": iso(m.start),
                    "end_time": iso(m.end),
                    "channels": m.channels,
                })
            })
        })
        .collect();
    ok(Value::Array(list))
}

pub(super) async fn channels(State(state): State<AppState>) -> Response {
    let list: Vec<Value> = state
        .config
        .access
        .channels
        .channels
        .iter()
        .map(|c| json!({"key": c.key, "name": c.name, "type": c.kind, "drm": c.drm}))
        .collect();
    ok(Value::Array(list))
}

pub(super) async fn stats(State(state): State<AppState>) -> Response {
    let now = chrono::Utc::now().timestamp();
    let cfg = &state.config.access.channels;
    let count = |s: &str| {
        cfg.matches
            .iter()
            .filter(|m| match_status(m, now) == Some(s))
            .count()
    };
    ok(json!({
        "channels": cfg.channels.len(),
        "live_matches": count("live"),
        "upcoming_matches": count("upcoming"),
        "streams_served": STREAMS_SERVED.load(Ordering::Relaxed),
        "uptime": state.started.elapsed().as_secs(),
    }))
}

pub(super) async fn stream(
    State(state): State<AppState>,
    Path(key): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let cfg = &state.config.access.channels;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let secret = cfg.secret.as_ref().map(|s| s.as_bytes()).unwrap_or(b"");
    let now = chrono::Utc::now().timestamp();
    if let Err(e) = request_sig::verify(
        secret,
        header("x-signature-token"),
        header("x-signature-timestamp"),
        uri.path(),
        now,
        cfg.skew_secs,
    ) {
        crate::metrics::refused(crate::metrics::GateSurface::Channels, "channel_signature");
        let (status, message) = sig_refusal(e);
        return fail(status, message);
    }
    let Some(ch) = cfg.channels.iter().find(|c| c.key == key) else {
        return fail(StatusCode::NOT_FOUND, "Channel not found");
    };
    let clearkey = if ch.drm == "clearkey" {
        let keys: Map<String, Value> = ch
            .keys
            .iter()
            .map(|(kid, k)| (kid.clone(), Value::String(k.to_string())))
            .collect();
        json!({ "keys": keys })
    } else {
        Value::Null
    };
    STREAMS_SERVED.fetch_add(1, Ordering::Relaxed);
    let mut r = ok(json!({
        "key": ch.key,
        "name": ch.name,
        "url": ch.url,
        "type": ch.kind,
        "drm": ch.drm,
        "clearkey": clearkey,
    }));
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(status: Option<&str>, start: Option<i64>, end: Option<i64>) -> Match {
        Match {
            id: "m".into(),
            title: "t".into(),
            status: status.map(String::from),
            start,
            end,
            channels: vec![],
        }
    }

    #[test]
    fn match_statuses() {
        assert_eq!(
            match_status(&m(None, Some(100), None), 50),
            Some("upcoming")
        );
        assert_eq!(
            match_status(&m(None, Some(100), Some(200)), 150),
            Some("live")
        );
        assert_eq!(match_status(&m(None, Some(100), Some(200)), 200), None);
        assert_eq!(
            match_status(&m(Some("live"), Some(100), None), 50),
            Some("live")
        );
        assert_eq!(
            match_status(&m(Some("upcoming"), None, None), 50),
            Some("upcoming")
        );
    }

    #[test]
    fn envelopes() {
        assert_eq!(
            crate::api::surface::envelope_error(
                StatusCode::UNAUTHORIZED,
                "Secure session credentials missing"
            ),
            json!({"success": false, "data": null, "error": {"code": "HTTP_401", "message": "Secure session credentials missing"}})
        );
        assert_eq!(sig_refusal(SigError::BadSignature).0, StatusCode::FORBIDDEN);
        assert_eq!(sig_refusal(SigError::Skewed).0, StatusCode::UNAUTHORIZED);
    }
}

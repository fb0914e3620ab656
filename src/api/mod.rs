//! The API router: every non-media route of both listeners, one axum `Router` per listener
//! built from the same route table, called in-process as a tower service (no loopback hop).
//!
//! | route                         | edge | admin | module        |
//! |-------------------------------|------|-------|---------------|
//! | `GET /health`                 |  ✓   |   ✓   | [`health`]    |
//! | `GET /metrics`                |      |   ✓   | [`health`]    |
//! | `/api/v2/streaming/*`         |  ✓   |   ✓   | [`streaming`] |
//! | `GET /api/key/{hash}`         |  ✓   |   ✓   | [`playback`]  |
//! | `/api/v1/*` (signed channels) |  ✓   |   ✓   | [`channels`]  |
//! | `PUT /api/content-keys/{hash}`|      |   ✓   | [`content_keys`] |
//!
//! Each surface keeps the error shape of its own document; [`error::ApiError`] maps typed
//! errors to that shape once, at this edge.

pub mod admin;
pub mod channels;
pub mod content_keys;
pub mod error;
pub mod health;
pub mod playback;
pub mod provider;
pub mod purge;
pub mod streaming;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use pingora_core::protocols::http::ServerSession;
use tower::ServiceExt;

pub use error::ApiError;

/// Which listener a router serves; each route says where it is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Edge,
    Admin,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Edge => "edge",
            Listener::Admin => "admin",
        }
    }
}

pub use crate::client::Client;
pub use crate::state::{AppState, Shared};

/// Largest request body the API reads; larger bodies get a 413.
pub const MAX_BODY: usize = 64 * 1024;

/// How much of an oversized body is read and dropped before the 413 (beyond it the
/// connection is closed on the client).
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

/// Build the router for one listener.
pub fn router(state: AppState, listener: Listener) -> Router {
    let mut r = Router::new()
        .route("/health", axum::routing::get(health::health))
        .route(
            "/api/providers/{id}/channels/{channel_id}/stream",
            axum::routing::get(provider::stream),
        );
    if listener == Listener::Admin {
        r = r
            .route("/metrics", axum::routing::get(health::metrics))
            .merge(admin::routes(state.clone()))
            .merge(content_keys::routes());
    }
    r = r
        .merge(streaming::routes())
        .merge(playback::routes())
        .merge(channels::routes());
    r.fallback(error::not_found).with_state(state)
}

/// Read the request from a Pingora session, run it through `router`, return the response.
pub async fn handle(
    router: &Router,
    session: &mut ServerSession,
    trusted: &[ipnet::IpNet],
) -> http::Response<Bytes> {
    let client = crate::client::client_of(session, trusted);
    let req = match read_request(session, client).await {
        Ok(req) => req,
        Err(e) => return error::into_bytes_response(e.into_response_generic()).await,
    };
    match router.clone().oneshot(req).await {
        Ok(resp) => error::into_bytes_response(resp).await,
        Err(never) => match never {},
    }
}

async fn read_request(
    session: &mut ServerSession,
    client: Client,
) -> Result<http::Request<Body>, ApiError> {
    let head = session.req_header();
    let mut builder = http::Request::builder()
        .method(head.method.clone())
        .uri(head.uri.clone())
        .version(http::Version::HTTP_11);
    for (name, value) in head.headers.iter() {
        builder = builder.header(name, value);
    }
    let declared = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // An oversized body is refused with 413, but first read (and drop) up to DRAIN_LIMIT of
    // it: a client still writing its body would otherwise see a broken pipe, not the 413.
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return Err(ApiError::PayloadTooLarge(MAX_BODY));
    }
    let mut body = Vec::new();
    let mut seen = 0usize;
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                seen += chunk.len();
                if seen > DRAIN_LIMIT {
                    return Err(ApiError::PayloadTooLarge(MAX_BODY));
                }
                if seen <= MAX_BODY {
                    body.extend_from_slice(&chunk);
                }
            }
            Ok(None) => break,
            Err(e) => {
                return Err(ApiError::BadRequest(format!(
                    "cannot read request body: {e}"
                )))
            }
        }
    }
    if seen > MAX_BODY {
        return Err(ApiError::PayloadTooLarge(MAX_BODY));
    }
    let mut req = builder
        .body(Body::from(body))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    req.extensions_mut().insert(client);
    Ok(req)
}

/// Collect an axum response body (our handlers always produce small, complete bodies).
pub async fn collect_body(body: Body) -> Bytes {
    match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    }
}

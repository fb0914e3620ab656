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
pub mod ratelimit;
pub mod streaming;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use pingora_core::protocols::http::ServerSession;
use tower::ServiceExt;

use crate::config::Config;
use crate::store::{Db, StreamRegistry};

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

/// The client as the API sees it: the socket peer and the address after trusted proxies.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub peer: Option<SocketAddr>,
    pub ip: IpAddr,
}

/// Shared state of every handler.
pub struct Shared {
    pub config: Arc<Config>,
    pub db: Db,
    pub streams: StreamRegistry,
    pub started: Instant,
    /// The media bucket (or dir origin) and how objects map to its paths.
    pub upstream: crate::edge::upstream::Upstream,
    /// The media cache, when `cache.enabled`.
    pub cache: Option<&'static crate::cache::runtime::CacheRuntime>,
    pub rate_limits: ratelimit::RateLimits,
    pub access_log: crate::store::access_log::AccessLog,
    pub stats: crate::stats::StatsTable,
    pub providers: crate::provider::Providers,
    pub ctx_store: Arc<dyn crate::store::ctx::CtxStore>,
    pub provider_jwt: Option<crate::auth::jwt::BearerVerifier>,
    /// Stream-token admission state (signer, revocations, use counts).
    pub access: crate::access::AccessState,
}

pub type AppState = Arc<Shared>;

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

/// The client address, honouring `X-Forwarded-For` only from configured trusted proxies:
/// walk the header right to left and take the first hop that is not itself trusted.
pub fn client_ip(peer: Option<IpAddr>, xff: Option<&str>, trusted: &[ipnet::IpNet]) -> IpAddr {
    let unspecified = IpAddr::from([0, 0, 0, 0]);
    let Some(mut ip) = peer.map(canonical_ip) else {
        return unspecified;
    };
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&ip) {
        return ip;
    }
    if let Some(xff) = xff {
        for hop in xff.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(h) => {
                    ip = canonical_ip(h);
                    if !is_trusted(&ip) {
                        return ip;
                    }
                }
                // A malformed hop ends the walk: trust nothing left of it.
                Err(_) => return ip,
            }
        }
    }
    ip
}

/// IPv4-mapped IPv6 addresses are the IPv4 client they carry.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The client of a Pingora session: its socket peer, and its address after trusted proxies.
pub fn client_of(session: &ServerSession, trusted: &[ipnet::IpNet]) -> Client {
    let peer = session.client_addr().and_then(|a| a.as_inet()).copied();
    let xff = session
        .get_header("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    Client {
        peer,
        ip: client_ip(peer.map(|p| p.ip()), xff, trusted),
    }
}

/// Read the request from a Pingora session, run it through `router`, return the response.
pub async fn handle(
    router: &Router,
    session: &mut ServerSession,
    trusted: &[ipnet::IpNet],
) -> http::Response<Bytes> {
    let client = client_of(session, trusted);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<ipnet::IpNet> {
        v.iter()
            .map(|s| crate::config::parse_cidr(s).unwrap())
            .collect()
    }

    #[test]
    fn xff_ignored_from_untrusted_peer() {
        let ip = client_ip(
            Some("203.0.113.9".parse().unwrap()),
            Some("1.2.3.4"),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn xff_walked_right_to_left_through_trusted_hops() {
        let t = nets(&["10.0.0.0/8"]);
        let ip = client_ip(
            Some("10.0.0.1".parse().unwrap()),
            Some("6.6.6.6, 198.51.100.7, 10.0.0.2"),
            &t,
        );
        assert_eq!(ip, "198.51.100.7".parse::<IpAddr>().unwrap());
        // A trusted proxy with no header is the client.
        let ip = client_ip(Some("10.0.0.1".parse().unwrap()), None, &t);
        assert_eq!(ip, "10.0.0.1".parse::<IpAddr>().unwrap());
        // Garbage stops the walk at the last good hop.
        let ip = client_ip(Some("10.0.0.1".parse().unwrap()), Some("1.1.1.1, junk"), &t);
        assert_eq!(ip, "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn mapped_v6_is_v4() {
        let ip = client_ip(Some("::ffff:192.0.2.1".parse().unwrap()), None, &[]);
        assert_eq!(ip, "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}

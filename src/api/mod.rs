//! The API router: every non-media route of both listeners, one axum `Router` per listener
//! built from the one route table ([`routes::ROUTES`]: methods, path, listeners, surface, rate
//! class, permission, audit and handler of every route), called in-process as a tower service
//! (no loopback hop).
//!
//! Each surface keeps the error shape of its own document; [`error::ApiError`] maps typed
//! errors to that shape once, at this edge.

pub mod admin;
pub mod channels;
pub mod content_keys;
pub mod error;
pub mod fleet;
pub mod health;
pub mod limits;
pub mod playback;
pub mod provider;
pub mod purge;
pub mod routes;
pub mod streaming;
pub mod surface;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use pingora_core::protocols::http::ServerSession;
use tower::ServiceExt;

pub use error::ApiError;
pub use surface::Surface;

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

/// Build the router for one listener from the route table: each route it serves, behind the
/// API-key check its entry names ([`routes::Auth::ApiKey`]).
pub fn router(state: AppState, listener: Listener) -> Router {
    routes::mount(
        listener,
        state.fleet.is_some(),
        |route, handler, methods| {
            let endpoint = handler(methods);
            match route.auth {
                routes::Auth::ApiKey(needed) => admin::behind_key(&state, needed, endpoint),
                _ => endpoint,
            }
        },
    )
    .with_state(state)
}

/// One API request, answered: the response with its complete body and `Content-Length`.
/// For `HEAD`, the body is that of the `GET` and the writer sends only the header.
pub struct Answer {
    pub response: http::Response<Bytes>,
    pub head_only: bool,
    /// The request's `X-Request-Id` ([`crate::request_id`]), also on the response.
    pub request_id: String,
}

/// Read the request from a Pingora session, run it through `router`, return the answer.
///
/// The layer every API request goes through, in order: CORS preflight for player-facing
/// surfaces; the rate-limit layer ([`limits`], before the body is read, so refused and
/// oversized requests cost nothing and count the same); the body (413 over [`MAX_BODY`]; 408
/// when it is not in within `limits.header_timeout` of the request's start, and the
/// connection closes: its framing is lost);
/// the router (`HEAD` runs as `GET`); then every error is rendered in its surface's shape
/// ([`surface`]), and requests to audited routes ([`routes::audited`]) are written to
/// `access_logs`.
///
/// `from_node`: the node whose valid fleet signature the request carries (edge listener
/// only, `GET`/`HEAD`; checked once, at the request's start): fleet nodes carry all of their
/// players and are not rate-limited per client; the fleet's routes read it ([`FromNode`]).
pub async fn handle(
    router: &Router,
    session: &mut ServerSession,
    state: &AppState,
    from_node: Option<std::net::SocketAddr>,
) -> Answer {
    let client = crate::client::client_of(session, &state.config.trusted_proxies);
    let body_due = crate::conn::body_due(session, state.config.limits.header_timeout);
    let head = session.req_header();
    let method = head.method.clone();
    let path = head.uri.path().to_string();
    // On the edge the id was settled at the request's start; the admin listener settles it
    // here.
    let request_id = crate::request_id::accept(head.headers.get(crate::request_id::HEADER));
    let surface = Surface::of(&path);
    let head_only = method == http::Method::HEAD;
    let mut spent = limits::Spent::default();
    let response = if method == http::Method::OPTIONS && surface.cors_allow_headers().is_some() {
        preflight(surface)
    } else {
        match limits::admit(
            state,
            &method,
            &path,
            &client,
            &head.headers,
            head.uri.query(),
            from_node.is_some(),
        )
        .await
        {
            Err(retry_after_secs) => ApiError::RateLimited { retry_after_secs }.into_reply(),
            Ok(s) => {
                spent = s;
                match read_request(session, client, from_node, body_due).await {
                    Err(e) => {
                        if matches!(e, ApiError::RequestTimeout) {
                            // The rest of the body is never read: no next request here.
                            session.set_keepalive(None);
                        }
                        e.into_reply()
                    }
                    Ok(req) => match router.clone().oneshot(req).await {
                        Ok(resp) => resp,
                        Err(never) => match never {},
                    },
                }
            }
        }
    };
    let status = response.status().as_u16();
    limits::settle(state, &spent, status).await;
    if routes::audited(&method, &path) {
        admin::log_access(state, &response, &path, &method, &client, &request_id);
    }
    let mut response = finish(surface, response).await;
    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(crate::request_id::HEADER, v);
    }
    Answer {
        response,
        head_only,
        request_id,
    }
}

/// Render errors in the surface's shape, add the surface's CORS and caching headers, and
/// collect the body with its length.
async fn finish(surface: Surface, response: axum::response::Response) -> http::Response<Bytes> {
    let (mut parts, body) = response.into_parts();
    let mut body = collect_body(body).await;
    let reply = parts.extensions.remove::<error::ErrorReply>();
    if parts.status.is_client_error() || parts.status.is_server_error() {
        let message = match (&reply, body.is_empty()) {
            (Some(r), _) => Some(r.message.clone()),
            // The router's own answers (405, and any other empty error) get the surface's
            // body with the status's reason.
            (None, true) => Some(
                parts
                    .status
                    .canonical_reason()
                    .unwrap_or("Error")
                    .to_string(),
            ),
            (None, false) => None,
        };
        if let Some(message) = message {
            body = Bytes::from(surface.error_body(parts.status, &message).to_string());
            parts.headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
        }
    }
    if surface.cors_allow_headers().is_some() {
        parts.headers.insert(
            http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
            http::HeaderValue::from_static("*"),
        );
    }
    // Tokens, verdicts, licenses, keys and ctx URLs are per viewer: never stored by a cache.
    if matches!(
        surface,
        Surface::Streaming | Surface::Provider | Surface::Playback
    ) || parts.status.is_client_error()
        || parts.status.is_server_error()
    {
        parts.headers.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
    }
    parts.headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.len()),
    );
    http::Response::from_parts(parts, body)
}

/// A CORS preflight for a player-facing surface: any origin, no credentials.
fn preflight(surface: Surface) -> axum::response::Response {
    let mut r = axum::response::IntoResponse::into_response(http::StatusCode::NO_CONTENT);
    let h = r.headers_mut();
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_METHODS,
        http::HeaderValue::from_static("GET, POST, HEAD, OPTIONS"),
    );
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_HEADERS,
        http::HeaderValue::from_static(surface.cors_allow_headers().unwrap_or("")),
    );
    h.insert(
        http::header::ACCESS_CONTROL_MAX_AGE,
        http::HeaderValue::from_static("86400"),
    );
    r
}

async fn read_request(
    session: &mut ServerSession,
    client: Client,
    from_node: Option<std::net::SocketAddr>,
    body_due: tokio::time::Instant,
) -> Result<http::Request<Body>, ApiError> {
    let head = session.req_header();
    // HEAD runs as GET; the writer drops the body and keeps its length.
    let method = if head.method == http::Method::HEAD {
        http::Method::GET
    } else {
        head.method.clone()
    };
    let mut builder = http::Request::builder()
        .method(method)
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
    // A client that asked `Expect: 100-continue` waits for this before sending its body
    // (curl waits a second, others indefinitely).
    let expects_continue = head
        .headers
        .get(http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
    let announces_body = declared.is_some_and(|n| n > 0)
        || head.headers.contains_key(http::header::TRANSFER_ENCODING);
    if expects_continue && announces_body {
        session
            .write_continue_response()
            .await
            .map_err(|e| ApiError::BadRequest(format!("cannot answer 100-continue: {e}")))?;
    }
    let mut body = Vec::new();
    let mut seen = 0usize;
    loop {
        let chunk = tokio::time::timeout_at(body_due, session.read_request_body())
            .await
            .map_err(|_| ApiError::RequestTimeout)?;
        match chunk {
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
    req.extensions_mut().insert(FromNode(from_node));
    Ok(req)
}

/// The fleet node whose signature a bodiless request carried, checked at the request's start
/// (a signature is accepted once: its handler must not check it again).
#[derive(Debug, Clone, Copy)]
pub struct FromNode(pub Option<std::net::SocketAddr>);

/// Collect an axum response body (our handlers always produce small, complete bodies).
pub async fn collect_body(body: Body) -> Bytes {
    match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    }
}

//! The edge service: a Pingora `ProxyHttp` that players talk to.
//!
//! ```text
//! request ─▶ request_filter ──┬─ API route ──▶ api::handle (in-process) ──▶ response
//!                             ├─ bad path ───▶ JSON 400/403/404
//!                             └─ /stream/… ──▶ [cache lookup] ─hit─▶ response_filter ─▶ player
//!                                                   │miss
//!                                              upstream_peer (bucket | dir origin)
//!                                              upstream_request_filter (path, Host, strip secrets)
//!                                              upstream_response_filter ─▶ [cache store]
//!                                              response_filter (CORS, Cache-Control, x-cache-status)
//! logging: one access-log line and the request metrics
//! ```

pub mod route;
pub mod upstream;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::api::{self, AppState};
use crate::metrics;
use route::{PathRejection, Route, StreamPath};
use upstream::Upstream;

/// The edge proxy; one per process, shared by all worker threads.
pub struct Edge {
    pub state: AppState,
    router: axum::Router,
    upstream: Upstream,
}

impl Edge {
    pub fn new(state: AppState, upstream: Upstream) -> Edge {
        let router = api::router(state.clone(), api::Listener::Edge);
        Edge {
            state,
            router,
            upstream,
        }
    }
}

/// Route classes for metrics and logs (a small fixed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    Stream,
    Proxy,
    Api,
    Rejected,
}

impl RouteClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Stream => "stream",
            RouteClass::Proxy => "proxy",
            RouteClass::Api => "api",
            RouteClass::Rejected => "rejected",
        }
    }
}

/// Per-request state carried through the phases.
pub struct RequestCtx {
    started: Instant,
    class: RouteClass,
    media: Option<MediaTarget>,
    upstream_started: Option<Instant>,
    bytes_out: usize,
    /// Status written by a local answer (API or refusal), for logging.
    local_status: Option<u16>,
}

/// Where a media request goes upstream.
#[derive(Debug, Clone)]
pub struct MediaTarget {
    pub path: StreamPath,
    /// Path and query sent to the origin.
    pub upstream_path: String,
}

/// A small JSON error body in the playback surface's shape: `{"error": "…"}`.
pub fn json_error_body(message: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "error": message }).to_string())
}

/// Answer locally with `status` and a JSON body, closing nothing (keep-alive preserved).
async fn respond_json(session: &mut Session, status: u16, body: Bytes) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header("access-control-allow-origin", "*")?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            class: RouteClass::Rejected,
            media: None,
            upstream_started: None,
            bytes_out: 0,
            local_status: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let path = session.req_header().uri.path().to_string();
        match route::classify(&path, &self.state.config.stream.extensions) {
            Ok(Route::Api) => {
                ctx.class = RouteClass::Api;
                let resp = api::handle(
                    &self.router,
                    session.as_downstream_mut(),
                    &self.state.config.trusted_proxies,
                )
                .await;
                let (parts, body) = resp.into_parts();
                ctx.local_status = Some(parts.status.as_u16());
                ctx.bytes_out = body.len();
                let mut head: ResponseHeader = parts.into();
                head.insert_header(http::header::CONTENT_LENGTH, body.len())?;
                let head_only = session.req_header().method == http::Method::HEAD;
                session
                    .write_response_header(Box::new(head), head_only || body.is_empty())
                    .await?;
                if !head_only && !body.is_empty() {
                    session.write_response_body(Some(body), true).await?;
                }
                Ok(true)
            }
            Ok(Route::ProviderProxy) => {
                ctx.class = RouteClass::Proxy;
                ctx.local_status = Some(404);
                respond_json(
                    session,
                    404,
                    json_error_body("Invalid or expired proxy context"),
                )
                .await?;
                Ok(true)
            }
            Ok(Route::Stream(sp)) => {
                ctx.class = RouteClass::Stream;
                let method = &session.req_header().method;
                if method != http::Method::GET && method != http::Method::HEAD {
                    ctx.local_status = Some(405);
                    respond_json(session, 405, json_error_body("method not allowed")).await?;
                    return Ok(true);
                }
                let publisher = self.state.streams.publisher_for(&sp.hash);
                let upstream_path = self
                    .upstream
                    .object_path(publisher.as_deref().unwrap_or(&sp.hash), &sp.rest_encoded());
                ctx.media = Some(MediaTarget {
                    path: sp,
                    upstream_path,
                });
                Ok(false)
            }
            Err(rejection) => {
                let (status, msg) = match rejection {
                    PathRejection::Malformed(why) => (400, format!("invalid media path: {why}")),
                    PathRejection::ExtensionNotAllowed => {
                        (403, "file type not allowed".to_string())
                    }
                };
                metrics::AUTH_REJECTIONS
                    .with_label_values(&["bad_path"])
                    .inc();
                ctx.local_status = Some(status);
                respond_json(session, status, json_error_body(&msg)).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        if ctx.media.is_none() {
            return Error::e_explain(ErrorType::InternalError, "no upstream for this route");
        }
        ctx.upstream_started = Some(Instant::now());
        self.upstream.peer().await
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(media) = &ctx.media else {
            return Ok(());
        };
        let uri: http::Uri = media
            .upstream_path
            .parse()
            .map_err(|e| Error::because(ErrorType::InternalError, "bad upstream path", e))?;
        req.set_uri(uri);
        req.insert_header(http::header::HOST, self.upstream.host_header())?;
        // Player credentials and cookies are for sluice, never for the bucket.
        for h in [
            "authorization",
            "cookie",
            "x-forwarded-for",
            "x-real-ip",
            "proxy-authorization",
        ] {
            req.remove_header(h);
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(t) = ctx.upstream_started {
            metrics::UPSTREAM_DURATION
                .with_label_values(&[ctx.class.as_str()])
                .observe(t.elapsed().as_secs_f64());
        }
        if resp.status.is_server_error() {
            metrics::UPSTREAM_ERRORS
                .with_label_values(&["status_5xx"])
                .inc();
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(media) = &ctx.media {
            resp.insert_header("access-control-allow-origin", "*")?;
            if resp.status.is_success() {
                let cc = if media.path.kind.is_manifest() {
                    format!(
                        "public, max-age={}",
                        self.state.config.stream.playlist_max_age.as_secs()
                    )
                } else {
                    "public, max-age=31536000, immutable".to_string()
                };
                resp.insert_header(http::header::CACHE_CONTROL, cc)?;
                if resp.headers.get(http::header::CONTENT_TYPE).is_none() {
                    resp.insert_header(
                        http::header::CONTENT_TYPE,
                        crate::media::content_type(&media.path.rest_joined()),
                    )?;
                }
            }
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(b) = body {
            ctx.bytes_out += b.len();
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (code, kind) = match e.etype() {
            ErrorType::HTTPStatus(code) => (*code, None),
            ErrorType::ConnectTimedout => (504, Some("connect_timeout")),
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => (504, Some("timeout")),
            ErrorType::ConnectRefused | ErrorType::ConnectNoRoute | ErrorType::ConnectError => {
                (502, Some("connect"))
            }
            _ => match e.esource() {
                ErrorSource::Upstream => (502, Some("read")),
                ErrorSource::Downstream => (0, None),
                _ => (500, None),
            },
        };
        if let Some(kind) = kind {
            metrics::UPSTREAM_ERRORS.with_label_values(&[kind]).inc();
        }
        if code > 0 {
            ctx.local_status = Some(code);
            let msg = match code {
                502 => "Upstream error",
                504 => "Upstream timed out",
                _ => "Internal error",
            };
            tracing::warn!(error = %e, status = code, "proxy failed");
            // The header may already be out (failure mid-body); then there is nothing to send.
            if session.response_written().is_none() {
                let _ = respond_json(session, code, json_error_body(msg)).await;
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.local_status)
            .unwrap_or(0);
        let class = ctx.class.as_str();
        let elapsed = ctx.started.elapsed();
        metrics::REQUESTS
            .with_label_values(&["edge", class, status_label(status)])
            .inc();
        metrics::REQUEST_DURATION
            .with_label_values(&["edge", class])
            .observe(elapsed.as_secs_f64());
        metrics::BYTES_OUT
            .with_label_values(&[class])
            .inc_by(ctx.bytes_out as u64);
        if self.state.config.log.access_log {
            let req = session.req_header();
            tracing::info!(
                target: "sluice::access",
                listener = "edge",
                method = %req.method,
                // The path only: queries can carry tokens and ctx ids.
                path = %req.uri.path(),
                status,
                bytes = ctx.bytes_out,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                cache = "none",
                class,
            );
        }
    }
}

/// Status codes as label values without allocating.
pub fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        204 => "204",
        206 => "206",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        410 => "410",
        413 => "413",
        416 => "416",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        0 => "0",
        s if s < 200 => "1xx",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// Shared handle type used by the server wiring.
pub type SharedEdge = Arc<Edge>;

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

mod gate;
pub mod playlist;
pub mod proxy;
pub mod respond;
pub mod route;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use pingora_cache::{CacheKey, CacheMeta, CachePhase, ForcedFreshness, HitHandler, RespCacheable};

use crate::api;
use crate::cache::runtime::CacheRuntime;
use crate::metrics;
use crate::state::AppState;
use crate::upstream::Upstream;
use route::{PathRejection, Route, StreamPath};

/// The edge proxy; one per process, shared by all worker threads.
pub struct Edge {
    pub state: AppState,
    router: axum::Router,
    upstream: Upstream,
    cache: Option<&'static CacheRuntime>,
    /// `stream.extensions`, shared with per-request playlist rewrites.
    extensions: Arc<Vec<String>>,
}

impl Edge {
    pub fn new(state: AppState) -> Edge {
        let router = api::router(state.clone(), api::Listener::Edge);
        let cache = state.cache;
        let upstream = state.upstream.clone();
        let extensions = Arc::new(state.config.stream.extensions.clone());
        Edge {
            state,
            router,
            upstream,
            cache,
            extensions,
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
    target: Option<Target>,
    upstream_started: Option<Instant>,
    /// Time from upstream request to its response header.
    upstream_latency: Option<std::time::Duration>,
    upstream_error: bool,
    bytes_out: usize,
    /// Status written by a local answer (API or refusal), for logging.
    local_status: Option<u16>,
    /// Replacing the origin's body (origin errors on media paths get our JSON).
    body_swap: BodySwap,
    /// A gated request's admission ([`gate`]): the playback its playlist's credentials are
    /// minted from, and the use to give back if the answer fails.
    gate: Option<crate::access::Admission>,
}

/// The state of a body replacement.
pub enum BodySwap {
    Keep,
    Pending(Bytes),
    Sent,
}

/// Where a proxied request goes.
pub enum Target {
    /// `/stream/{hash}/…` to the bucket.
    Stream(MediaTarget),
    /// `/api/proxy` to a provider's CDN.
    Proxy(Box<proxy::ProxiedTarget>),
}

impl Target {
    pub fn cache_primary(&self) -> &str {
        match self {
            Target::Stream(m) => &m.cache_primary,
            Target::Proxy(p) => &p.cache_primary,
        }
    }

    /// The object kind, for cache policy: `/stream` knows it from the path; a proxied URL
    /// may have no extension, so its content type decides when it names a playlist.
    pub fn kind(&self, resp: &ResponseHeader) -> crate::media::MediaKind {
        use crate::media::{self, MediaKind};
        match self {
            Target::Stream(m) => m.path.kind,
            Target::Proxy(p) => {
                let ct = resp
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok());
                match crate::rewrite::detect(ct, "", b"") {
                    Some(crate::rewrite::PlaylistKind::Hls) => MediaKind::HlsPlaylist,
                    Some(crate::rewrite::PlaylistKind::Dash) => MediaKind::DashManifest,
                    None => media::extension(p.url.path())
                        .map(MediaKind::from_extension)
                        .unwrap_or(MediaKind::Other),
                }
            }
        }
    }
}

/// Where a media request goes upstream.
#[derive(Debug, Clone)]
pub struct MediaTarget {
    pub path: StreamPath,
    /// Path and query sent to the origin.
    pub upstream_path: String,
    /// Primary cache key: scheme, host and path of the upstream object.
    pub cache_primary: String,
}

/// A small JSON error body in the media surfaces' shape (playback-api, provider-proxy-api):
/// `{"error": "…"}`.
pub fn json_error_body(message: &str) -> Bytes {
    Bytes::from(
        api::Surface::Playback
            .error_body(http::StatusCode::OK, message)
            .to_string(),
    )
}

/// The method gate shared by both media paths: GET/HEAD proxied, OPTIONS answered here.
async fn method_gate(session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    let method = &session.req_header().method;
    if method == http::Method::OPTIONS {
        ctx.local_status = Some(204);
        respond::preflight(session).await?;
        return Ok(true);
    }
    if method != http::Method::GET && method != http::Method::HEAD {
        ctx.local_status = Some(405);
        respond::json(session, 405, json_error_body("method not allowed")).await?;
        return Ok(true);
    }
    Ok(false)
}

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            class: RouteClass::Rejected,
            target: None,
            upstream_started: None,
            upstream_latency: None,
            upstream_error: false,
            bytes_out: 0,
            local_status: None,
            body_swap: BodySwap::Keep,
            gate: None,
        }
    }

    fn init_downstream_modules(&self, modules: &mut pingora_core::modules::http::HttpModules) {
        // Compression stays off (level 0) as in Pingora's default; playlists are rewritten.
        modules.add_module(
            pingora_core::modules::http::compression::ResponseCompressionBuilder::enable(0),
        );
        modules.add_module(Box::new(playlist::PlaylistRewriteBuilder));
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let path = session.req_header().uri.path().to_string();
        if session.req_header().method == http::Method::CONNECT {
            // sluice serves media and its APIs: never a tunnel. Answered in the shape of the
            // surface the target names, and the connection is not reused (CONNECT changes
            // message framing).
            ctx.local_status = Some(400);
            session.set_keepalive(None);
            let body = api::Surface::of(&path)
                .error_body(http::StatusCode::BAD_REQUEST, "CONNECT is not supported")
                .to_string();
            respond::json(session, 400, body.into()).await?;
            return Ok(true);
        }
        match route::classify(&path, &self.state.config.stream.extensions) {
            Ok(Route::Api) => {
                ctx.class = RouteClass::Api;
                let answer =
                    api::handle(&self.router, session.as_downstream_mut(), &self.state).await;
                let (parts, body) = answer.response.into_parts();
                ctx.local_status = Some(parts.status.as_u16());
                let head: ResponseHeader = parts.into();
                ctx.bytes_out = respond::write(session, head, body, answer.head_only).await?;
                Ok(true)
            }
            Ok(Route::ProviderProxy) => {
                ctx.class = RouteClass::Proxy;
                if method_gate(session, ctx).await? {
                    return Ok(true);
                }
                let checked = proxy::check_request(
                    session.req_header().uri.query(),
                    self.state.ctx_store.as_ref(),
                    &self.state.providers,
                );
                let target = match checked {
                    Ok((url, provider, token)) => proxy::resolve(url, provider, token).await,
                    Err(r) => Err(r),
                };
                match target {
                    Ok(t) => {
                        ctx.target = Some(Target::Proxy(Box::new(t)));
                        Ok(false)
                    }
                    Err(r) => {
                        if r.status == 403 {
                            metrics::AUTH_REJECTIONS
                                .with_label_values(&["proxy_refused"])
                                .inc();
                        }
                        ctx.local_status = Some(r.status);
                        respond::json(session, r.status, json_error_body(&r.message)).await?;
                        Ok(true)
                    }
                }
            }
            Ok(Route::Stream(sp)) => {
                ctx.class = RouteClass::Stream;
                if method_gate(session, ctx).await? {
                    return Ok(true);
                }
                // One resolution of the hash (stream id → publisher, configured content wins)
                // feeds both the gate and the fetch: they judge and fetch the same object.
                let dir = self.state.streams.dir_for(&sp.hash);
                if gate::enforce(&self.state, session, &sp, &dir, ctx).await? {
                    return Ok(true);
                }
                let upstream_path = self.upstream.object_path(&dir, &sp.rest_encoded());
                let cache_primary = self.upstream.cache_primary(&upstream_path);
                ctx.target = Some(Target::Stream(MediaTarget {
                    path: sp,
                    upstream_path,
                    cache_primary,
                }));
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
                respond::json(session, status, json_error_body(&msg)).await?;
                Ok(true)
            }
        }
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let (Some(cache), Some(_)) = (self.cache, &ctx.target) else {
            return Ok(());
        };
        let method = &session.req_header().method;
        if method != http::Method::GET && method != http::Method::HEAD {
            return Ok(());
        }
        session.cache.enable(
            cache.storage,
            Some(cache.eviction),
            None,
            Some(cache.lock),
            None,
        );
        session
            .cache
            .set_max_file_size_bytes(cache.max_object_bytes);
        Ok(())
    }

    fn cache_key_callback(&self, _session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        match &ctx.target {
            Some(t) => Ok(CacheRuntime::key(t.cache_primary())),
            None => Error::e_explain(ErrorType::InternalError, "cache key for a non-media route"),
        }
    }

    async fn cache_hit_filter(
        &self,
        _session: &mut Session,
        meta: &CacheMeta,
        hit_handler: &mut HitHandler,
        is_fresh: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<ForcedFreshness>> {
        let (Some(cache), Some(target)) = (self.cache, &ctx.target) else {
            return Ok(None);
        };
        let kind = target.kind(meta.response_header());
        if !is_fresh || !kind.is_manifest() || meta.response_header().status != 200 {
            return Ok(None);
        }
        // Live playlists go stale after about half a target duration; the stored TTL is the
        // VOD one because the TTL cannot be known before the body arrives.
        let Some(body) = crate::cache::storage::complete_body(hit_handler.as_ref()) else {
            return Ok(None);
        };
        Ok(cache.playlist_expired_at(kind, meta, &body).map(|at| {
            ForcedFreshness::ForceExpiredServeStale {
                expired_at: Some(at),
            }
        }))
    }

    fn response_cache_filter(
        &self,
        _session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        match (self.cache, &ctx.target) {
            (Some(cache), Some(t)) => Ok(cache.cacheability(t.kind(resp), resp)),
            _ => Ok(RespCacheable::Uncacheable(
                pingora_cache::NoCacheReason::NeverEnabled,
            )),
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        ctx.upstream_started = Some(Instant::now());
        match &ctx.target {
            Some(Target::Stream(_)) => self.upstream.peer().await,
            Some(Target::Proxy(t)) => Ok(self.upstream.pinned_peer(t.addr, t.tls, &t.sni)),
            None => Error::e_explain(ErrorType::InternalError, "no upstream for this route"),
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (path, host) = match &ctx.target {
            Some(Target::Stream(m)) => (m.upstream_path.as_str(), self.upstream.host_header()),
            Some(Target::Proxy(t)) => (t.path_and_query.as_str(), t.host_header.as_str()),
            None => return Ok(()),
        };
        let uri: http::Uri = path
            .parse()
            .map_err(|e| Error::because(ErrorType::InternalError, "bad upstream path", e))?;
        req.set_uri(uri);
        req.insert_header(http::header::HOST, host)?;
        // Player credentials and cookies are for sluice, never for the origin.
        for h in [
            "authorization",
            "cookie",
            "x-forwarded-for",
            "x-real-ip",
            "proxy-authorization",
            "x-device-id",
        ] {
            req.remove_header(h);
        }
        if let Some(Target::Proxy(t)) = &ctx.target {
            // Playlists must arrive uncompressed to be rewritten.
            req.remove_header(&http::header::ACCEPT_ENCODING);
            for (name, value) in &t.provider.headers {
                req.insert_header(name.clone(), value.clone())?;
            }
            if let Some(cookie) = &t.cookie {
                req.insert_header(http::header::COOKIE, cookie.as_str())?;
            }
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
            let latency = t.elapsed();
            ctx.upstream_latency = Some(latency);
            metrics::UPSTREAM_DURATION
                .with_label_values(&[ctx.class.as_str()])
                .observe(latency.as_secs_f64());
        }
        if resp.status.is_server_error() {
            ctx.upstream_error = true;
            metrics::UPSTREAM_ERRORS
                .with_label_values(&["status_5xx"])
                .inc();
        }
        // A redirect is followed by the player through the proxy again, so every hop is
        // re-checked; one the context does not allow is refused here.
        if let Some(Target::Proxy(t)) = &ctx.target {
            if resp.status.is_redirection() {
                if let Some(loc) = resp
                    .headers
                    .get(http::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                {
                    match proxy::proxied_location(loc, &t.url, &t.provider, &t.ctx_token) {
                        Ok(proxied) => {
                            resp.insert_header(http::header::LOCATION, proxied)?;
                        }
                        Err(r) => {
                            metrics::AUTH_REJECTIONS
                                .with_label_values(&["proxy_redirect"])
                                .inc();
                            resp.set_status(r.status)?;
                            resp.remove_header(&http::header::LOCATION);
                            resp.remove_header(&http::header::CONTENT_LENGTH);
                            resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
                            ctx.body_swap = BodySwap::Pending(json_error_body(&r.message));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(target) = &ctx.target else {
            return Ok(());
        };
        let phase = session.cache.phase();
        resp.insert_header("x-cache-status", cache_status(phase))?;
        if matches!(phase, CachePhase::Stale) && ctx.upstream_error {
            // Pingora does not reuse a connection after serving stale on an upstream error;
            // say so, or the client's next request on it is reset.
            resp.insert_header(http::header::CONNECTION, "close")?;
            session.set_keepalive(None);
        }
        resp.insert_header("access-control-allow-origin", "*")?;
        resp.insert_header(
            "access-control-expose-headers",
            "Content-Length, Content-Range, Accept-Ranges, x-cache-status",
        )?;
        match target {
            Target::Stream(media) => {
                if resp.status.as_u16() == 404 || resp.status.is_server_error() {
                    // The bucket's own error body (S3 XML, HTML) is not for players.
                    let msg = if resp.status.as_u16() == 404 {
                        "Not found"
                    } else {
                        "Upstream error"
                    };
                    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
                    // Chunked: an origin error with an empty body gives no chunk to swap.
                    resp.remove_header(&http::header::CONTENT_LENGTH);
                    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
                    ctx.body_swap = BodySwap::Pending(json_error_body(msg));
                }
                if resp.status.is_success() {
                    // Gated media must not be served by shared caches past the token check,
                    // and a gated playlist carries the viewer's credential in its URIs.
                    let gated = ctx.gate.is_some();
                    let cc = match (media.path.kind.is_manifest(), gated) {
                        (true, false) => format!(
                            "public, max-age={}",
                            self.state.config.stream.playlist_max_age.as_secs()
                        ),
                        (true, true) => "private, no-store".to_string(),
                        (false, false) => "public, max-age=31536000, immutable".to_string(),
                        (false, true) => "private, max-age=31536000, immutable".to_string(),
                    };
                    resp.insert_header(http::header::CACHE_CONTROL, cc)?;
                    let rewritable = media.path.kind.is_manifest()
                        && resp.status.as_u16() == 200
                        && session.req_header().method == http::Method::GET;
                    if let (Some(admission), Some(key), true) =
                        (&ctx.gate, &self.state.access.playback, rewritable)
                    {
                        // The base is the canonical path, never the request's spelling.
                        let base = url::Url::parse(&format!(
                            "http://{}/stream/{}/{}",
                            playlist::LOCAL_HOST,
                            route::encode_segments(std::slice::from_ref(&media.path.hash)),
                            media.path.rest_encoded()
                        ));
                        if let (Ok(base), Some(m)) = (
                            base,
                            session
                                .downstream_modules_ctx
                                .get_mut::<playlist::PlaylistRewrite>(),
                        ) {
                            m.arm(playlist::RewriteJob {
                                content_type: resp
                                    .headers
                                    .get(http::header::CONTENT_TYPE)
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string),
                                path_hint: media.path.rest_joined(),
                                base,
                                mapping: playlist::UriMapping::Playback(Box::new(
                                    playlist::PlaybackMapping {
                                        key: key.clone(),
                                        claims: admission.playback.clone(),
                                        quality: admission.quality,
                                        hash: media.path.hash.clone(),
                                        extensions: self.extensions.clone(),
                                    },
                                )),
                            });
                        }
                    }
                    if resp.headers.get(http::header::CONTENT_TYPE).is_none() {
                        resp.insert_header(
                            http::header::CONTENT_TYPE,
                            crate::media::content_type(&media.path.rest_joined()),
                        )?;
                    }
                }
            }
            Target::Proxy(t) => {
                // The rewritten playlist embeds this viewer's ctx: never cacheable downstream.
                let content_type = resp
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let ranged = resp.status.as_u16() == 206;
                if resp.status.is_success()
                    && !ranged
                    && session.req_header().method != http::Method::HEAD
                    && playlist::may_be_playlist(content_type.as_deref(), t.url.path())
                {
                    resp.insert_header(http::header::CACHE_CONTROL, "private, no-store")?;
                    if let Some(m) = session
                        .downstream_modules_ctx
                        .get_mut::<playlist::PlaylistRewrite>()
                    {
                        m.arm(playlist::RewriteJob {
                            content_type,
                            path_hint: t.url.path().to_string(),
                            base: t.url.clone(),
                            mapping: playlist::UriMapping::Proxy {
                                ctx: t.ctx_token.clone(),
                            },
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        // The replacement goes out with the first chunk: on a cache miss the end of the body
        // arrives as a separate `Done` task that never reaches this filter.
        match std::mem::replace(&mut ctx.body_swap, BodySwap::Keep) {
            BodySwap::Pending(replacement)
                if (body.is_some() || end_of_stream)
                    && session.req_header().method != http::Method::HEAD =>
            {
                *body = Some(replacement);
                ctx.body_swap = BodySwap::Sent;
            }
            BodySwap::Sent => {
                *body = None;
                ctx.body_swap = BodySwap::Sent;
            }
            other => ctx.body_swap = other,
        }
        if let Some(b) = body {
            ctx.bytes_out += b.len();
        }
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        ctx.upstream_error = true;
        e
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
            ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError => {
                (502, Some("tls"))
            }
            _ => match e.esource() {
                ErrorSource::Upstream => (502, Some("read")),
                ErrorSource::Downstream => (0, None),
                _ => (500, None),
            },
        };
        if let Some(kind) = kind {
            ctx.upstream_error = true;
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
                let _ = respond::json(session, code, json_error_body(msg)).await;
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
        let cache = if ctx.target.is_some() {
            cache_status(session.cache.phase())
        } else {
            "none"
        };
        if ctx.target.is_some() && self.cache.is_some() {
            metrics::CACHE_LOOKUPS.with_label_values(&[cache]).inc();
            if session.cache.lock_duration().is_some() {
                metrics::CACHE_LOCK_WAITS.inc();
            }
        }
        if let Some(admission) = &ctx.gate {
            gate::settle(&self.state, admission, status).await;
        }
        if let Some(Target::Stream(media)) = &ctx.target {
            self.state.stats.record(
                &media.path.hash,
                crate::stats::Sample {
                    bytes: ctx.bytes_out as u64,
                    duration: elapsed,
                    upstream: ctx.upstream_latency,
                    upstream_error: ctx.upstream_error,
                    cache_hit: cache == "hit",
                },
            );
        }
        metrics::REQUESTS
            .with_label_values(&["edge", class, metrics::status_label(status)])
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
                cache,
                class,
            );
        }
    }
}

/// The `x-cache-status` value for a cache phase.
pub fn cache_status(phase: CachePhase) -> &'static str {
    match phase {
        CachePhase::Hit => "hit",
        CachePhase::Miss => "miss",
        CachePhase::Stale | CachePhase::StaleUpdating => "stale",
        CachePhase::Expired => "expired",
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => "revalidated",
        _ => "bypass",
    }
}

/// Shared handle type used by the server wiring.
pub type SharedEdge = Arc<Edge>;

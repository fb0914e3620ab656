//! The edge service: a Pingora `ProxyHttp` that players talk to. Each phase is a few lines
//! here calling the module named after what it does in that phase (as river lays out its
//! proxy), so every rule has one home with its unit tests beside it.
//!
//! ```text
//! request ─▶ request_filters ──┬─ API route ─────▶ api::handle (in-process) ─▶ respond
//!                              ├─ refused ───────▶ respond (JSON in the route's shape)
//!                              ├─ playlist ──────▶ playlist::serve: a fill subrequest through
//!                              │                   the phases below, then the whole body
//!                              │                   rewritten and answered with its length
//!                              └─ media ─▶ caching (key, lookup, lock) ─hit─▶ response_modifiers ─▶ player
//!                                          (HTTP/2, not held fresh: caching::fill_apart first, a background
//!                                           fill takes the lock and this viewer reads as a lock waiter)
//!                                                  │miss
//!                                             upstream_peer (bucket | pinned provider address | the object's
//!                                                            owner node in a fleet: fleet.rs)
//!                                             upstream_modifiers (path, Host, header allow-list, provider headers and cookies)
//!                                             response_modifiers::upstream (redirects: the bucket's followed, a CDN's
//!                                                            rewritten; Set-Cookie kept out of the cache) ─▶ [cache store]
//!                                             response_modifiers::downstream (error bodies; what players are told: headers.rs,
//!                                             the one writer of Cache-Control, CORS and content type on every answer)
//! logging: observe (one access-log line, metrics, stats; a reserved use given back)
//! ```

mod caching;
mod directives;
mod fleet;
mod gate;
mod headers;
mod observe;
pub mod playlist;
mod prefetch;
mod protocol;
pub mod proxy;
mod request_filters;
pub mod respond;
mod response_modifiers;
pub mod route;
mod upstream_modifiers;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_cache::{CacheKey, CacheMeta, CachePhase, ForcedFreshness, HitHandler, RespCacheable};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, RangeType, Session};

use crate::api;
use crate::cache::runtime::CacheRuntime;
use crate::state::AppState;
use crate::upstream::Upstream;
use route::StreamPath;
use tracing::Instrument;

/// The edge proxy; one per process, shared by all worker threads.
pub struct Edge {
    pub state: AppState,
    router: axum::Router,
    upstream: Upstream,
    cache: Option<&'static CacheRuntime>,
    /// `stream.extensions`, shared with per-request playlist rewrites.
    extensions: Arc<Vec<String>>,
    /// Objects recently prefetched (not queued again).
    prefetched: prefetch::Recent,
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
            prefetched: prefetch::Recent::default(),
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
    /// `/stream` requests from other nodes of the fleet.
    Fleet,
}

impl RouteClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Stream => "stream",
            RouteClass::Proxy => "proxy",
            RouteClass::Api => "api",
            RouteClass::Rejected => "rejected",
            RouteClass::Fleet => "fleet",
        }
    }
}

/// Per-request state carried through the phases.
pub struct RequestCtx {
    started: Instant,
    class: RouteClass,
    target: Option<Target>,
    upstream_started: Option<Instant>,
    /// The cache's purge count when this request's upstream attempt began: a purge after it
    /// keeps the answer out of the cache ([`crate::cache::storage::FillStarted`]).
    purges_at_start: Option<u64>,
    /// Time from upstream request to its response header.
    upstream_latency: Option<std::time::Duration>,
    upstream_error: bool,
    /// Status written by a local answer (API or refusal), for logging.
    local_status: Option<u16>,
    /// The player went away before any byte of a buffered answer's body was written
    /// ([`playlist::serve`]): logged with status 0, as other answers that never went out.
    player_gone: bool,
    /// Replacing the origin's body (origin errors on media paths get our JSON).
    body_swap: BodySwap,
    /// A gated request's admission ([`gate`]): the playback its playlist's credentials are
    /// minted from, and the use to give back if the answer fails.
    gate: Option<crate::access::Admission>,
    /// This request is the fill subrequest of a buffered playlist answer
    /// ([`playlist::serve`]): it fetches (through the cache) for its parent and is not itself
    /// a player's request.
    fill: bool,
    /// The cache result of a playlist answer, as its fill subrequest saw it.
    fill_cache_status: Option<String>,
    /// A playlist hit stays fresh in the cache this much longer ([`caching::hit`]): the most
    /// its players are told.
    playlist_fresh_for: Option<std::time::Duration>,
    /// This miss asks the origin for the player's range, not the whole object
    /// ([`caching::miss`]).
    range_through: bool,
    /// A refusal decided after the request went upstream (a redirect to a refused target),
    /// answered by `fail_to_proxy` in the route's shape.
    refusal: Option<(u16, String)>,
    /// A live playlist's body collected for prefetch ([`prefetch`]).
    prefetch: Option<prefetch::Collecting>,
    /// Redirects from the bucket followed so far ([`response_modifiers::upstream`]).
    bucket_redirects: u8,
    /// Connection attempts to the bucket so far, and how many addresses it has (a failed
    /// connection moves to the next address).
    connect_attempt: usize,
    bucket_addresses: usize,
    /// This request's part in the cache fleet ([`fleet`]).
    fleet: fleet::Hop,
    /// The request came on a fleet node's connection that lost its exemption over its
    /// address's share: refused in `request_filter`.
    over_connection_share: bool,
    /// `X-Request-Id` ([`crate::request_id`]): the player's, or made here.
    request_id: String,
    /// The span the phases run in, so every line logged for this request names its id
    /// ([`crate::logging::request_span`]).
    span: tracing::Span,
}

/// The state of a body replacement.
pub enum BodySwap {
    Keep,
    Pending(Bytes),
    Sent,
}

/// Where a proxied request goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// `/stream/{hash}/…` to the bucket.
    Stream(MediaTarget),
    /// `/api/proxy` to a provider's CDN.
    Proxy(Box<proxy::ProxiedTarget>),
}

impl Target {
    /// An LL-HLS blocking playlist reload (`_HLS_msn`): the origin may hold it for several
    /// part durations, so it gets its own cache lock and timeouts.
    pub fn blocking(&self) -> bool {
        match self {
            Target::Stream(m) => m.blocking,
            Target::Proxy(p) => p.blocking,
        }
    }

    pub fn cache_primary(&self) -> &str {
        match self {
            Target::Stream(m) => &m.cache_primary,
            Target::Proxy(p) => &p.cache_primary,
        }
    }

    /// The object kind, for cache policy: `/stream` knows it from the path; a proxied URL
    /// may have no extension, so its content type decides when it names a playlist (a hit
    /// re-checks by content, [`caching::hit`]).
    pub fn kind(&self, resp: &ResponseHeader) -> crate::media::MediaKind {
        use crate::media::{self, MediaKind};
        match self {
            Target::Stream(m) => m.path.kind,
            Target::Proxy(p) => {
                let ct = resp
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok());
                match crate::rewrite::detect(ct, p.url.path(), b"") {
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
    /// The publisher directory the hash resolved to when it is a registered stream id
    /// (resolved once, in `request_filter`; `None` for a node's request: its node resolved).
    pub publisher: Option<String>,
    /// Path and query sent to the origin.
    pub upstream_path: String,
    /// Primary cache key: scheme, host and path of the upstream object (and the LL-HLS
    /// delivery directives a live playlist advertises, `edge/directives.rs`).
    pub cache_primary: String,
    /// An LL-HLS blocking playlist reload: its own lock and timeouts.
    pub blocking: bool,
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

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            class: RouteClass::Rejected,
            target: None,
            upstream_started: None,
            purges_at_start: None,
            upstream_latency: None,
            upstream_error: false,
            local_status: None,
            player_gone: false,
            body_swap: BodySwap::Keep,
            gate: None,
            fill: false,
            fill_cache_status: None,
            range_through: false,
            playlist_fresh_for: None,
            refusal: None,
            prefetch: None,
            bucket_redirects: 0,
            connect_attempt: 0,
            bucket_addresses: 1,
            fleet: fleet::Hop::default(),
            over_connection_share: false,
            request_id: String::new(),
            span: tracing::Span::none(),
        }
    }

    /// Playlist answers are built from a fill subrequest, and live playlists prefetch their
    /// parts with background fills (fills skip routing, so they never nest answers).
    fn allow_spawning_subrequest(&self, _session: &Session, _ctx: &RequestCtx) -> bool {
        true
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // The header is in: the connection's header deadline no longer applies. A request
        // that is not a fleet node's (signed) ends its connection's node exemption.
        ctx.fleet.signature = fleet::signature(self, session);
        ctx.over_connection_share =
            crate::conn::request_started(session.as_downstream(), ctx.fleet.signature.is_valid())
                .is_err();
        // Send progress on HTTP/2: Pingora bounds each body write of a stream by the session's
        // write timeout (unset by default), so a stream whose client never opens its
        // flow-control window ends after limits.send_timeout, like an HTTP/1.1 connection
        // that stops reading (whose guard bounds every write, [`crate::conn::guard`]).
        if session.as_downstream().is_http2() {
            let send_timeout = self.state.config.limits.send_timeout;
            session
                .as_downstream_mut()
                .set_write_timeout(Some(send_timeout));
        }
        // The request's id replaces whatever the player sent, so every later phase (the API
        // handlers, fills, local answers) reads the one id from the request header.
        let req = session.req_header_mut();
        ctx.request_id = crate::request_id::accept(req.headers.get(crate::request_id::HEADER));
        req.insert_header(crate::request_id::HEADER, &ctx.request_id)?;
        ctx.span = crate::logging::request_span(&ctx.request_id);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let span = ctx.span.clone();
        let answered = request_filters::request(self, session, ctx)
            .instrument(span)
            .await?;
        if !answered {
            caching::fill_apart(self, session, ctx).await?;
        }
        Ok(answered)
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        caching::enable(self.cache, session, ctx);
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
        session: &mut Session,
        meta: &CacheMeta,
        hit_handler: &mut HitHandler,
        is_fresh: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<ForcedFreshness>> {
        let forced = caching::hit(self.cache, ctx, meta, hit_handler, is_fresh);
        // A fresh hit takes no lock: a fill that found one has its place. An expired one
        // takes the lock after this filter; the fill is placed when it goes upstream.
        if is_fresh && forced.is_none() {
            caching::placed(session);
        }
        Ok(forced)
    }

    /// A miss: the cache lock is this request's (or there is none).
    fn cache_miss(&self, session: &mut Session, ctx: &mut RequestCtx) {
        session.cache.cache_miss();
        caching::placed(session);
        caching::miss(self.cache, session, ctx);
    }

    fn range_header_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        _ctx: &mut RequestCtx,
    ) -> RangeType {
        caching::ranges(session, resp)
    }

    fn response_cache_filter(
        &self,
        _session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        let mut cacheable =
            fleet::backdate(caching::cacheability(self.cache, ctx, resp), ctx.fleet.age);
        if let (RespCacheable::Cacheable(meta), Some(purges)) =
            (&mut cacheable, ctx.purges_at_start)
        {
            meta.extensions_mut()
                .insert(crate::cache::storage::FillStarted(purges));
        }
        Ok(cacheable)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        caching::placed(session);
        ctx.upstream_started = Some(Instant::now());
        ctx.purges_at_start = self.cache.map(|c| c.storage.purges());
        let mut peer = match &ctx.target {
            Some(Target::Stream(m)) => match fleet::owner_peer(self, m, &mut ctx.fleet) {
                Some(owner) => owner,
                None => {
                    let (peer, count) = self.upstream.peer(ctx.connect_attempt).await?;
                    ctx.bucket_addresses = count;
                    peer
                }
            },
            Some(Target::Proxy(t)) => self.upstream.pinned_peer(t.addr, t.tls, &t.sni),
            None => {
                return Error::e_explain(ErrorType::InternalError, "no upstream for this route")
            }
        };
        if ctx.target.as_ref().is_some_and(Target::blocking) {
            // The origin holds a blocking reload until the part exists.
            peer.options.read_timeout = Some(self.state.config.cache.blocking_reload_timeout);
        }
        if let Some(left) = caching::wait_left(self.cache, session, ctx)? {
            let o = &mut peer.options;
            for t in [
                &mut o.connection_timeout,
                &mut o.total_connection_timeout,
                &mut o.read_timeout,
            ] {
                *t = Some(t.map_or(left, |t| t.min(left)));
            }
        }
        Ok(peer)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        upstream_modifiers::request(&self.upstream, session.req_header(), req, ctx)?;
        fleet::to_owner(self, req, ctx)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        fleet::owner_answered(resp, ctx)?;
        caching::learn(self.cache, resp, ctx);
        response_modifiers::upstream(self, resp, ctx)?;
        // A node asking for a live playlist prefetches its parts itself.
        if ctx.fleet.from_peer.is_none() {
            prefetch::start(self, resp, ctx);
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        prefetch::body(self, session, body.as_ref(), end_of_stream, ctx);
        Ok(None)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        caching::placed(session);
        caching::stop_unstored_fill(session)?;
        response_modifiers::downstream(self, session, resp, ctx)
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        response_modifiers::body(session, body, end_of_stream, ctx);
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if ctx.fleet.owner.is_some() {
            let _in = ctx.span.clone().entered();
            return fleet::owner_failed(self, ctx, e, false);
        }
        ctx.upstream_error = true;
        // The bucket has more addresses: try the next one.
        if matches!(ctx.target, Some(Target::Stream(_)))
            && ctx.connect_attempt + 1 < ctx.bucket_addresses
        {
            ctx.connect_attempt += 1;
            e.set_retry(true);
        }
        e
    }

    /// Pingora's default policy (retry only idempotent requests with an intact body buffer,
    /// reused connections only for `ReusedOnly` errors), except at a fleet owner, where
    /// [`fleet::owner_failed`] decides.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        // Asking again, at the bucket's redirect target: not a failure of this peer.
        if response_modifiers::is_bucket_redirect(&e) {
            return e;
        }
        let mut e = e.more_context(format!("Peer: {peer}"));
        if ctx.fleet.owner.is_some() {
            let _in = ctx.span.clone().entered();
            return fleet::owner_failed(self, ctx, e, client_reused);
        }
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        if caching::is_fill_not_stored(e) {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let span = ctx.span.clone();
        response_modifiers::failure(self, session, e, ctx)
            .instrument(span)
            .await
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        caching::is_fill_not_stored(e)
    }

    /// A followed bucket redirect goes through Pingora's retry, which is not a failure.
    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        _ctx: &RequestCtx,
        e: &Error,
        _context: pingora_proxy::ProxyWarnLogContext,
    ) -> bool {
        response_modifiers::is_bucket_redirect(e)
    }

    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        observe::summary(session, ctx)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        crate::conn::request_finished(session.as_downstream(), e);
        let span = ctx.span.clone();
        observe::finished(self, session, ctx).instrument(span).await;
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

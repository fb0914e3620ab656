//! Playlists sluice rewrites — every `/api/proxy` answer that is (or may be) a playlist, the
//! JSON documents HLS attributes point at (`doc=`: interstitial asset lists, steering
//! manifests, [`crate::rewrite::json`]), and gated `/stream` playlists — are answered from
//! their complete body, never streamed.
//!
//! Why: a playlist answer must be the rewritten one or an error, decided before the header
//! goes out (a rewrite failure must be a `502`, not a `200` with a cut body), it must carry
//! its `Content-Length` (so live players' reloads keep their connection), `Range` is
//! meaningless on it, and a compressed origin body has to be decoded first. Pingora 0.9
//! writes a miss's header as soon as the upstream header arrives, so the body cannot be
//! judged in the proxy's own filters.
//!
//! How: [`serve`] runs a *fill* subrequest for the same object through the proxy phases —
//! cache lookup, cache lock (N players, one origin fetch), upstream, cache store — and reads
//! its answer. A 2xx playlist body is decoded ([`crate::rewrite::encoding`]), sniffed by its
//! content (`#EXTM3U`, `<MPD`) whatever its content type, rewritten with this request's
//! mapping (the viewer's ctx, or a playback credential), and answered locally with
//! `Content-Length`, `Cache-Control: private, no-store`, no upstream `ETag`. Anything else
//! the fill answers (an error, a redirect, a body that is not a playlist at a URL that did not
//! say it was one) is relayed as the fill shaped it, streamed.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora_core::protocols::http::HttpTask;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use tokio::sync::mpsc;
use url::Url;

use super::{respond, Edge, RequestCtx, RouteClass, Target};
use crate::auth::playback::{PlaybackClaims, PlaybackKey, Prover, Rep};
use crate::rewrite::encoding::{self, Coding};
use crate::rewrite::json::Document;
use crate::rewrite::quality::Quality;
use crate::rewrite::{self, PlaylistKind, Sniff, MAX_PLAYLIST_BYTES};

/// Bytes looked at before deciding whether a body of unknown kind is a playlist.
const SNIFF_BYTES: usize = 512;

/// The subrequest context of a fill: the object to fetch, decided by the parent request.
pub struct Fill {
    pub target: FillTarget,
    pub class: RouteClass,
    /// A fill run apart from an HTTP/2 viewer ([`super::caching::fill_apart`]): told once it
    /// has its place in the cache. Such a fill is for the cache only.
    pub viewer: Option<Placed>,
    /// Run in the background ([`spawn_background`]: a prefetch, or apart from its viewer):
    /// for the cache only, nobody reads its answer.
    pub background: bool,
}

impl Fill {
    pub fn new(target: FillTarget, class: RouteClass) -> Fill {
        Fill {
            target,
            class,
            viewer: None,
            background: false,
        }
    }
}

/// A fill's message to a viewer waiting for it: the fill's cache lookup has settled (it holds
/// the cache lock as the writer, found the object, or goes upstream), so the viewer's own
/// lookup, made after it, meets the fill's lock or its object and never takes the lock itself.
/// Dropped with the fill: a fill that ended in any other way releases its waiter too.
pub struct Placed(parking_lot::Mutex<Option<tokio::sync::oneshot::Sender<()>>>);

impl Placed {
    /// A message and the receiver the viewer waits on.
    pub fn channel() -> (Placed, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Placed(parking_lot::Mutex::new(Some(tx))), rx)
    }

    /// Tell the waiter, once (later calls do nothing).
    pub fn tell(&self) {
        if let Some(tx) = self.0.lock().take() {
            let _ = tx.send(());
        }
    }
}

/// Start `fill` as a background subrequest of this request: it runs through the proxy phases
/// on its own (its answer is drained; what it is for is the cache) and outlives the request.
/// `false` when this session cannot spawn subrequests.
///
/// The fill is an HTTP/1 session parsed from this request's header as Pingora writes it, so
/// an HTTP/2 request's version is set to HTTP/1.1 for the copy (see [`serve`]).
pub(super) fn spawn_background(session: &mut Session, mut fill: Fill) -> bool {
    fill.background = true;
    let version = session.req_header().version;
    if version == http::Version::HTTP_2 {
        session.req_header_mut().set_version(http::Version::HTTP_11);
    }
    let spawned = match session.subrequest_spawner.as_ref() {
        Some(spawner) => {
            let sub = pingora_proxy::subrequest::Ctx::builder()
                .user_ctx(Box::new(fill))
                .build();
            spawner.spawn_background_subrequest(session.as_downstream(), sub);
            true
        }
        None => false,
    };
    session.req_header_mut().set_version(version);
    spawned
}

/// What a fill fetches.
pub enum FillTarget {
    /// Decided and checked.
    Ready(Target),
    /// A proxied URL checked but not yet resolved (a prefetch: DNS and the address checks
    /// run in the fill itself).
    Resolve(Box<super::proxy::Checked>),
}

impl Fill {
    /// What this fill would be stored under (for prefetch bookkeeping).
    pub fn key(&self) -> String {
        match &self.target {
            FillTarget::Ready(t) => t.cache_primary().to_string(),
            FillTarget::Resolve(c) => c.provider.cache_primary(&c.url),
        }
    }

    fn blocking(&self) -> bool {
        matches!(&self.target, FillTarget::Ready(t) if t.blocking())
    }
}

/// The fill this session is, if it is one.
pub(super) fn fill_of(session: &Session) -> Option<&Fill> {
    session
        .subrequest_ctx
        .as_ref()?
        .user_ctx()?
        .downcast_ref::<Fill>()
}

/// A fill fetches the whole object, fresh from the cache or origin: `GET`, no range, no
/// conditionals (the parent answers those itself).
pub(super) fn prepare_fill_request(req: &mut RequestHeader) -> Result<()> {
    req.set_method(http::Method::GET);
    for h in ["range", "if-range", "if-none-match", "if-modified-since"] {
        req.remove_header(h);
    }
    Ok(())
}

/// Whether a request's answer is buffered and rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffering {
    /// A playlist by its URL: rewritten, or an error.
    Always,
    /// May be one: judged by its first bytes; relayed as is when it is not.
    Sniff,
    /// A media object by its URL: proxied straight through the cache.
    Never,
}

/// `/api/proxy`: playlists by extension always; known media extensions never; anything
/// else (`/live/index`, `…/manifest.php?x`) judged by content.
pub fn buffering_of_proxy(url: &Url) -> Buffering {
    if rewrite::kind_from_path(url.path()).is_some() {
        return Buffering::Always;
    }
    match crate::media::extension(url.path()).map(|e| e.to_ascii_lowercase()) {
        Some(e)
            if matches!(
                e.as_str(),
                "ts" | "m4s"
                    | "mp4"
                    | "m4a"
                    | "m4v"
                    | "aac"
                    | "ac3"
                    | "ec3"
                    | "mp3"
                    | "cmfv"
                    | "cmfa"
                    | "cmft"
                    | "vtt"
                    | "webvtt"
                    | "ttml"
                    | "key"
                    | "jpg"
                    | "jpeg"
                    | "png"
                    | "webp"
                    | "avif"
                    | "mkv"
                    | "webm"
            ) =>
        {
            Buffering::Never
        }
        _ => Buffering::Sniff,
    }
}

/// [`buffering_of_proxy`] for a checked target: a JSON document sluice rewrites (its `doc=`
/// hint, [`crate::rewrite::json`]) is always buffered.
pub fn buffering_of_target(target: &super::proxy::ProxiedTarget) -> Buffering {
    match target.document {
        Some(_) => Buffering::Always,
        None => buffering_of_proxy(&target.url),
    }
}

/// How one buffered answer is rewritten.
#[derive(Debug, Clone)]
pub struct Plan {
    pub buffering: Buffering,
    /// The JSON document this answer should be (rather than a playlist).
    pub document: Option<Document>,
    /// The URL relative URIs resolve against.
    pub base: Url,
    /// The URL path, to tell HLS from DASH when the body cannot.
    pub path_hint: String,
    pub mapping: UriMapping,
}

impl Plan {
    /// `/api/proxy`: every URI through `/api/proxy` with this viewer's ctx.
    pub fn proxy(target: &Target, buffering: Buffering) -> Plan {
        match target {
            Target::Proxy(t) => Plan {
                buffering,
                document: t.document,
                base: t.url.clone(),
                path_hint: t.url.path().to_string(),
                mapping: UriMapping::Proxy {
                    ctx: t.ctx_token.clone(),
                    requested: t.requested.clone(),
                },
            },
            // Not reachable: the caller builds proxy plans from proxy targets only.
            Target::Stream(m) => Plan {
                buffering,
                document: None,
                base: local_base(&m.path),
                path_hint: m.path.rest_joined(),
                mapping: UriMapping::Proxy {
                    ctx: String::new(),
                    requested: local_base(&m.path),
                },
            },
        }
    }

    /// A gated `/stream` playlist: URIs of the content carry a playback credential minted
    /// from the request's admission. `None` when there is no credential key (no secret).
    pub fn gated(edge: &Edge, target: &Target, ctx: &RequestCtx) -> Option<Plan> {
        let (Target::Stream(m), Some(admission), Some(key)) =
            (target, &ctx.gate, &edge.state.access.playback)
        else {
            return None;
        };
        Some(Plan {
            buffering: Buffering::Always,
            document: None,
            base: local_base(&m.path),
            path_hint: m.path.rest_joined(),
            mapping: UriMapping::Playback(Box::new(PlaybackMapping {
                key: key.clone(),
                claims: admission.playback.clone(),
                hash: m.path.hash.clone(),
                extensions: edge.extensions.clone(),
            })),
        })
    }
}

/// `http://sluice.local/stream/{hash}/{rest}`: the canonical path, never the request's
/// spelling.
fn local_base(path: &crate::media::path::StreamPath) -> Url {
    let text = format!(
        "http://{LOCAL_HOST}/stream/{}/{}",
        crate::media::path::encode_segments(std::slice::from_ref(&path.hash)),
        path.rest_encoded()
    );
    Url::parse(&text).unwrap_or_else(|_| {
        // Segments are percent-encoded; a parse failure is not reachable.
        Url::parse("http://sluice.local/").unwrap_or_else(|_| unreachable!())
    })
}

/// Answer the request from a fill subrequest: rewritten playlist, error, or relay.
pub(super) async fn serve(
    edge: &Edge,
    session: &mut Session,
    ctx: &mut RequestCtx,
    plan: Plan,
) -> Result<()> {
    let head_only = session.req_header().method == http::Method::HEAD;
    // The fill is an HTTP/1 session parsed from this request's header as Pingora writes it:
    // an HTTP/2 request comes out as `GET … HTTP/2`, which its HTTP/1 parser refuses (every
    // buffered playlist over HTTP/2 was a 400). The fill is sluice's own fetch: it is asked
    // as HTTP/1.1, and the player's request keeps its version.
    let version = session.req_header().version;
    if version == http::Version::HTTP_2 {
        session.req_header_mut().set_version(http::Version::HTTP_11);
    }
    let created = match (session.subrequest_spawner.as_ref(), ctx.target.clone()) {
        (Some(spawner), Some(target)) => {
            let fill = Fill::new(FillTarget::Ready(target), ctx.class);
            let deadline = edge.state.config.fill_deadline(fill.blocking());
            let sub = pingora_proxy::subrequest::Ctx::builder()
                .user_ctx(Box::new(fill))
                .build();
            Some((
                deadline,
                spawner.create_subrequest(session.as_downstream(), sub),
            ))
        }
        _ => None,
    };
    session.req_header_mut().set_version(version);
    let Some((deadline, (prepared, handle))) = created else {
        return answer_error(edge, session, ctx, 500, "Internal error").await;
    };
    let job = tokio::spawn(prepared.run());
    let pingora_core::protocols::http::subrequest::server::SubrequestHandle { tx, mut rx, .. } =
        handle;
    // While the fill runs, watch the player as Pingora's own proxy does while it waits for
    // an upstream: one that went away gets nothing written and its use back.
    let outcome = tokio::select! {
        biased;
        o = tokio::time::timeout(deadline, collect(&mut rx, plan.buffering)) => Some(o),
        e = player_gone(session) => {
            tracing::debug!(error = %e, "the player went away before its playlist was ready");
            None
        }
    };
    let Some(outcome) = outcome else {
        never_delivered(edge, session, ctx).await;
        drain_fill(tx, rx, job);
        return Ok(());
    };
    let failed = match &outcome {
        Err(_) => Some(504),
        Ok(Err(_)) => Some(502),
        Ok(Ok(Collected::Relay { header, .. })) => Some(header.status.as_u16()),
        Ok(Ok(Collected::Whole { .. })) => None,
    };
    if let Some(status) = failed {
        super::gate::settle_before_answer(&edge.state, ctx, status).await;
    }
    let result = match outcome {
        Err(_) => answer_error(edge, session, ctx, 504, "Upstream timed out").await,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "playlist fill failed");
            ctx.upstream_error = true;
            answer_error(edge, session, ctx, 502, "Upstream error").await
        }
        Ok(Ok(Collected::Whole { header, body })) => {
            ctx.fill_cache_status = cache_status_of(&header);
            finish(edge, session, ctx, &plan, header, body, head_only).await
        }
        Ok(Ok(Collected::Relay {
            header,
            prefix,
            end,
        })) => {
            ctx.fill_cache_status = cache_status_of(&header);
            relay(session, ctx, header, prefix, end, &mut rx, head_only).await
        }
    };
    drain_fill(tx, rx, job);
    result
}

/// Let the fill finish its cache write whatever happened to its parent.
fn drain_fill<T: Send + 'static, J: std::future::Future + Send + 'static>(
    tx: T,
    mut rx: mpsc::Receiver<HttpTask>,
    job: J,
) {
    tokio::spawn(async move {
        let _tx = tx;
        while rx.recv().await.is_some() {}
        let _ = job.await;
    });
}

/// Resolves when the player is gone: its connection closed or reset, its HTTP/2 stream
/// reset (Pingora's `read_body_or_idle`, what its proxy selects on while waiting for an
/// upstream). A request body, which a playlist request does not have, is read and dropped.
async fn player_gone(session: &mut Session) -> Box<Error> {
    let mut done = session.as_downstream_mut().is_body_done();
    loop {
        match session.as_downstream_mut().read_body_or_idle(done).await {
            Ok(Some(_)) => {}
            // Past the body the session idles until the player leaves; never spin here.
            Ok(None) if done => return std::future::pending().await,
            Ok(None) => done = true,
            Err(e) => return e,
        }
    }
}

/// No byte of the answer's body reached the player (it went away while the fill ran, or
/// the write failed): an entry load's use is given back, the log says 0 (as for any answer
/// that never went out, not the 200 that was meant), and the connection is not reused.
async fn never_delivered(edge: &Edge, session: &mut Session, ctx: &mut RequestCtx) {
    ctx.player_gone = true;
    super::gate::give_back(&edge.state, ctx).await;
    session.set_keepalive(None);
}

fn cache_status_of(header: &ResponseHeader) -> Option<String> {
    header
        .headers
        .get("x-cache-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// What the fill answered, as far as it was read.
enum Collected {
    /// The complete answer (a 2xx that is or may be a playlist).
    Whole { header: ResponseHeader, body: Bytes },
    /// To pass through as it comes: the header, the body read so far, whether it ended.
    Relay {
        header: ResponseHeader,
        prefix: Bytes,
        end: bool,
    },
}

async fn collect(rx: &mut mpsc::Receiver<HttpTask>, buffering: Buffering) -> Result<Collected> {
    let (header, mut end) = loop {
        match rx.recv().await {
            Some(HttpTask::Header(h, end)) => break (*h, end),
            Some(HttpTask::Failed(e)) => return Err(e),
            Some(HttpTask::Done) | None => {
                return Error::e_explain(ErrorType::ReadError, "fill ended without a response")
            }
            Some(_) => continue,
        }
    };
    let mut body = BytesMut::new();
    if !header.status.is_success() {
        return Ok(Collected::Relay {
            header,
            prefix: Bytes::new(),
            end,
        });
    }
    let coding = Coding::parse(
        header
            .headers
            .get(http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let mut decided = buffering == Buffering::Always;
    while !end {
        match rx.recv().await {
            Some(HttpTask::Body(Some(b), e)) => {
                body.extend_from_slice(&b);
                end = e;
            }
            Some(HttpTask::Body(None, e)) => end = e,
            Some(HttpTask::Failed(e)) => return Err(e),
            Some(HttpTask::Done) | None => end = true,
            Some(_) => {}
        }
        if body.len() > MAX_PLAYLIST_BYTES {
            if decided {
                // A playlist by its URL past the cap: the rewrite refuses it (502).
                drain_to_end(rx).await;
                return Ok(Collected::Whole {
                    header,
                    body: body.freeze(),
                });
            }
            return Ok(Collected::Relay {
                header,
                prefix: body.freeze(),
                end,
            });
        }
        // Only an identity body can be judged by its first bytes.
        if !decided && coding == Some(Coding::Identity) && body.len() >= SNIFF_BYTES {
            match rewrite::sniff(&body) {
                Sniff::Is(_) | Sniff::Undecided => decided = true,
                Sniff::Not => {
                    return Ok(Collected::Relay {
                        header,
                        prefix: body.freeze(),
                        end,
                    })
                }
            }
        }
    }
    Ok(Collected::Whole {
        header,
        body: body.freeze(),
    })
}

async fn drain_to_end(rx: &mut mpsc::Receiver<HttpTask>) {
    while let Some(t) = rx.recv().await {
        if t.is_end() {
            break;
        }
    }
}

/// The whole 2xx answer: rewrite a playlist, refuse a non-playlist at a playlist URL,
/// relay anything else.
async fn finish(
    edge: &Edge,
    session: &mut Session,
    ctx: &mut RequestCtx,
    plan: &Plan,
    header: ResponseHeader,
    body: Bytes,
    head_only: bool,
) -> Result<()> {
    let decoded = match encoding::decode_body(&header.headers, &body) {
        Ok(d) => d,
        Err(e) if plan.buffering == Buffering::Always => {
            return rewrite_failed(edge, session, ctx, &e).await;
        }
        Err(_) => return relay_whole(session, ctx, header, body, head_only).await,
    };
    let kind = match rewrite::sniff(&decoded) {
        Sniff::Is(kind) => Some(kind),
        Sniff::Undecided if plan.buffering == Buffering::Always && plan.document.is_none() => {
            rewrite::kind_from_path(&plan.path_hint)
        }
        _ => None,
    };
    let rewritten = match (kind, plan.document) {
        (Some(kind), _) => plan
            .mapping
            .rewrite(kind, &decoded, &plan.base)
            .map(|r| (kind.content_type(), r)),
        // A document sluice was told to expect (`doc=`): JSON, unless it is a playlist.
        (None, Some(doc)) => {
            let origin = player_facing_origin(edge, session);
            let r = plan
                .mapping
                .rewrite_document(doc, &decoded, &plan.base, &origin);
            r.map(|r| ("application/json", r))
        }
        (None, None) if plan.buffering == Buffering::Always => Err(
            rewrite::RewriteError::Malformed("the upstream answer is not a playlist".into()),
        ),
        (None, None) => return relay_whole(session, ctx, header, body, head_only).await,
    };
    let (content_type, rewritten) = match rewritten {
        Ok(r) => r,
        Err(e) => return rewrite_failed(edge, session, ctx, &e).await,
    };
    let mut resp = ResponseHeader::build(200, Some(8))?;
    let answer = super::headers::Answer::Rewritten {
        content_type,
        cache_status: ctx.fill_cache_status.as_deref(),
    };
    super::headers::told(answer, 200).write(&mut resp)?;
    ctx.local_status = Some(200);
    if let Err(e) = respond::write(session, resp, Bytes::from(rewritten), head_only).await {
        // Part of the playlist went out: the player had its load (the use stays spent).
        if session.as_downstream().body_bytes_sent() > 0 {
            return Err(e);
        }
        tracing::debug!(error = %e, "the player went away before its playlist was written");
        never_delivered(edge, session, ctx).await;
    }
    Ok(())
}

/// `scheme://host[/prefix]` the player reached sluice at: `streaming.public_base_url` when set,
/// else the request's ([`crate::client::request_base`]).
fn player_facing_origin(edge: &Edge, session: &Session) -> String {
    if let Some(base) = &edge.state.config.access.streaming.public_base_url {
        return base.trim_end_matches('/').to_string();
    }
    let downstream = session.as_downstream();
    let client = crate::client::client_of(downstream, &edge.state.config.trusted_proxies);
    let tls = downstream.digest().is_some_and(|d| d.ssl_digest.is_some());
    let req = session.req_header();
    crate::client::request_base(
        &req.headers,
        req.uri.authority().map(|a| a.as_str()),
        &client,
        tls,
    )
}

async fn rewrite_failed(
    edge: &Edge,
    session: &mut Session,
    ctx: &mut RequestCtx,
    e: &rewrite::RewriteError,
) -> Result<()> {
    if let rewrite::RewriteError::NotAllowed(_) = e {
        // The viewer's answer, not an upstream fault; the use is given back (not a success).
        return answer_error(
            edge,
            session,
            ctx,
            403,
            crate::access::Refusal::OutOfScope.message(),
        )
        .await;
    }
    crate::metrics::UPSTREAM_ERRORS
        .with_label_values(&["rewrite"])
        .inc();
    tracing::warn!(error = %e, "playlist not rewritten");
    answer_error(
        edge,
        session,
        ctx,
        502,
        "Upstream playlist could not be rewritten",
    )
    .await
}

/// A failed answer made here. The use its admission reserved is given back before the answer
/// is written ([`super::gate::settle_before_answer`]): a player that asks `verify` the moment
/// it reads the failure finds the use unspent. (The 403 of a master with nothing within the
/// token's quality gave it back only in the logging phase, after the answer: a prompt
/// `verify` could still see it spent.)
async fn answer_error(
    edge: &Edge,
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    message: &str,
) -> Result<()> {
    super::gate::settle_before_answer(&edge.state, ctx, status).await;
    ctx.local_status = Some(status);
    respond::json(session, status, super::json_error_body(message)).await
}

/// Relay a complete answer the fill shaped (headers already adjusted by its response
/// phases), with its length.
async fn relay_whole(
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut header: ResponseHeader,
    body: Bytes,
    head_only: bool,
) -> Result<()> {
    header.remove_header(&http::header::TRANSFER_ENCODING);
    ctx.local_status = Some(header.status.as_u16());
    respond::write(session, header, body, head_only).await?;
    Ok(())
}

/// Relay an answer as it arrives from the fill.
async fn relay(
    session: &mut Session,
    ctx: &mut RequestCtx,
    header: ResponseHeader,
    prefix: Bytes,
    mut end: bool,
    rx: &mut mpsc::Receiver<HttpTask>,
    head_only: bool,
) -> Result<()> {
    ctx.local_status = Some(header.status.as_u16());
    let mut header = header;
    super::respond::echo_request_id(session, &mut header)?;
    if end {
        return relay_whole(session, ctx, header, prefix, head_only).await;
    }
    session
        .write_response_header(Box::new(header), head_only)
        .await?;
    if head_only {
        return Ok(());
    }
    if !prefix.is_empty() {
        session.write_response_body(Some(prefix), false).await?;
    }
    while !end {
        match rx.recv().await {
            Some(HttpTask::Body(Some(b), e)) => {
                end = e;
                session.write_response_body(Some(b), e).await?;
                continue;
            }
            Some(HttpTask::Body(None, e)) => end = e,
            Some(HttpTask::Failed(e)) => return Err(e),
            Some(HttpTask::Done) | None => end = true,
            Some(_) => {}
        }
        if end {
            session.write_response_body(None, true).await?;
        }
    }
    Ok(())
}

/// What each resolved URI becomes.
#[derive(Debug, Clone)]
pub enum UriMapping {
    /// `/api/proxy?url=<absolute>&ctx=<ctx>` (provider streams); `requested` is the upstream
    /// URL as the player named it (`EXT-X-DEFINE:QUERYPARAM` values).
    Proxy { ctx: String, requested: Url },
    /// A token-gated `/stream` playlist: URIs of the same content on sluice itself carry a
    /// playback credential (`?pc=`) minted for this response. `base` is then
    /// `http://sluice.local/stream/{hash}/…` and other URIs keep their form.
    Playback(Box<PlaybackMapping>),
}

/// How a gated playlist's URIs get their playback credential.
#[derive(Debug, Clone)]
pub struct PlaybackMapping {
    pub key: Arc<PlaybackKey>,
    /// The playback this response belongs to; its quality ceiling, if any, restricts the
    /// playlist and makes every object need a proof.
    pub claims: PlaybackClaims,
    /// The `{hash}` of the request path (a stream id or the content hash): URIs below
    /// `/stream/{hash}/` are this content's.
    pub hash: String,
    /// `stream.extensions`, to read URIs back into canonical media paths.
    pub extensions: Arc<Vec<String>>,
}

/// The host standing for sluice itself in [`UriMapping::Playback`] bases.
pub const LOCAL_HOST: &str = "sluice.local";

impl UriMapping {
    /// Rewrite a playlist of `kind` (decoded text) with this mapping.
    pub fn rewrite(
        &self,
        kind: PlaylistKind,
        body: &[u8],
        base: &Url,
    ) -> Result<Vec<u8>, rewrite::RewriteError> {
        match self {
            // `rewrite_proxied` is `rewrite` with the `proxy_url(abs, ctx)` map (non-http(s)
            // refused) plus a fast path for plain relative URIs; see `rewrite::ProxyMapper`.
            UriMapping::Proxy { ctx, requested } => {
                rewrite::rewrite_proxied(kind, body, base, ctx, requested)
            }
            UriMapping::Playback(m) => m.rewrite(kind, body, base),
        }
    }

    /// Rewrite a JSON document of `doc`'s kind (decoded body) with this mapping: its URIs
    /// through `/api/proxy` with the viewer's ctx, a steering manifest's next one hinted as
    /// such ([`rewrite::json`]). The URIs are absolute, on `origin` (sluice as the player
    /// reached it): hls.js loads an interstitial asset's URI as it is, so a path would be
    /// resolved against the page, not against the list.
    pub fn rewrite_document(
        &self,
        doc: Document,
        body: &[u8],
        base: &Url,
        origin: &str,
    ) -> Result<Vec<u8>, rewrite::RewriteError> {
        let UriMapping::Proxy { ctx, .. } = self else {
            return Err(rewrite::RewriteError::Json(format!(
                "{} documents are rewritten on /api/proxy only",
                doc.name()
            )));
        };
        let mapper = rewrite::ProxyMapper::new(base, ctx);
        rewrite::json::rewrite_document(doc, body, base, &mut |u, points_at| {
            let mut out = format!("{origin}{}", mapper.map(u)?);
            if let Some(d) = points_at {
                out.push_str("&doc=");
                out.push_str(d.name());
            }
            Ok(out)
        })
    }
}

/// Which of a restricted playlist's own URIs get an object proof (unrestricted playbacks need
/// none): what the playlist lists, never a playlist it only mentions.
enum Proofs {
    None,
    /// A multivariant playlist: its non-playlist objects (session data, steering manifest)
    /// and the playlists the quality model kept (canonical rests).
    Master(HashSet<String>),
    /// A media playlist: its segments, parts, maps and hints — not the playlists it points at
    /// (rendition reports, interstitial assets), which only a master can open.
    Media,
    /// An MPD: its objects, itself (`Location`), and templates that may expand to the
    /// Representations the quality kept.
    Dash {
        reps: Vec<Rep>,
        own: String,
    },
}

/// A URI of this content: its canonical rest (with `$…$` identifiers kept for a template),
/// whether it is a playlist, whether it is a template.
struct OwnUri {
    rest: String,
    manifest: bool,
    template: bool,
}

impl PlaybackMapping {
    /// The canonical path below `/stream/{hash}/` of a resolved URI, if it is this
    /// content's (on sluice itself, under the same hash in any ASCII case — one content has
    /// one spelling — a valid media path). A DASH
    /// template is judged with its identifiers standing for what a player puts there.
    fn own_uri(&self, abs: &Url) -> Option<OwnUri> {
        if abs.host_str() != Some(LOCAL_HOST) {
            return None;
        }
        let raw = abs.path().strip_prefix("/stream/")?;
        let tokens = rewrite::dash::placeholders(raw);
        if tokens.is_empty() {
            let sp = crate::media::path::parse_stream_path(raw, &self.extensions).ok()?;
            return sp.hash.eq_ignore_ascii_case(&self.hash).then(|| OwnUri {
                rest: sp.rest_joined(),
                manifest: sp.kind.is_manifest(),
                template: false,
            });
        }
        // `$Number%05d$` must not be read as a percent escape: check a sample expansion,
        // then decode the literal parts only.
        let mut sample = raw.to_string();
        for t in &tokens {
            sample = sample.replace(
                t,
                if t.contains("RepresentationID") {
                    "r"
                } else {
                    "1"
                },
            );
        }
        let sp = crate::media::path::parse_stream_path(&sample, &self.extensions).ok()?;
        if !sp.hash.eq_ignore_ascii_case(&self.hash) {
            return None;
        }
        let (_, rest_raw) = raw.split_once('/')?;
        Some(OwnUri {
            rest: decode_template(rest_raw, &tokens)?,
            manifest: sp.kind.is_manifest(),
            template: true,
        })
    }

    /// Rewrite a gated playlist: restrict it to the playback's quality (a multivariant
    /// playlist by the HLS model, an MPD by its Representations), mint one credential, and put
    /// it — with the object proofs a restricted playback needs — on every URI of this content.
    fn rewrite(
        &self,
        kind: PlaylistKind,
        body: &[u8],
        base: &Url,
    ) -> Result<Vec<u8>, rewrite::RewriteError> {
        rewrite::check_size(body.len())?;
        let text = std::str::from_utf8(body).map_err(|_| rewrite::RewriteError::NotUtf8)?;
        let ceiling = self.claims.quality.as_deref().and_then(Quality::limit);
        let (text, proofs) = match (ceiling, kind) {
            (None, _) => (std::borrow::Cow::Borrowed(text), Proofs::None),
            (Some(q), PlaylistKind::Hls) => match rewrite::quality::restrict_master(text, q) {
                None => (std::borrow::Cow::Borrowed(text), Proofs::Media),
                Some(r) if r.variants == 0 => {
                    return Err(rewrite::RewriteError::NotAllowed(q.label()));
                }
                Some(r) => {
                    let kept = r
                        .playlists
                        .iter()
                        .filter_map(|u| base.join(u).ok())
                        .filter_map(|abs| self.own_uri(&abs))
                        .map(|o| o.rest)
                        .collect();
                    (std::borrow::Cow::Owned(r.text), Proofs::Master(kept))
                }
            },
            (Some(q), PlaylistKind::Dash) => {
                let filtered = rewrite::dash_quality::filter_representations(
                    text,
                    &rewrite::dash_quality::Ceiling {
                        max_height: q.max_height(),
                        max_bandwidth: q.max_bandwidth(),
                    },
                )?;
                if filtered.kept.is_empty() && !filtered.removed.is_empty() {
                    return Err(rewrite::RewriteError::NotAllowed(q.label()));
                }
                // An id also removed elsewhere (another Period) is not opened by the kept one.
                let reps = filtered
                    .kept
                    .iter()
                    .chain(&filtered.others)
                    .filter(|k| !filtered.removed.iter().any(|r| r.id == k.id))
                    .map(|k| Rep(k.id.clone(), k.bandwidth))
                    .collect();
                let own = self.own_uri(base).map(|o| o.rest).unwrap_or_default();
                (
                    std::borrow::Cow::Owned(filtered.text),
                    Proofs::Dash { reps, own },
                )
            }
        };
        let credential = self.key.sign(&self.claims);
        let prover = self.key.prover(&credential);
        let mut map = |abs: &Url| self.map(abs, &credential, &proofs, &prover);
        rewrite::rewrite(kind, text.as_bytes(), base, &mut map)
    }

    /// A URI of this content on sluice gets `pc=` (and its proof; any `token=`/`pc=`/proof it
    /// had removed); other URIs on sluice keep path and query; URIs elsewhere stay absolute
    /// and untouched.
    fn map(
        &self,
        abs: &Url,
        credential: &str,
        proofs: &Proofs,
        prover: &Prover,
    ) -> Result<String, String> {
        if abs.host_str() != Some(LOCAL_HOST) {
            return Ok(abs.to_string());
        }
        let path = abs.path();
        let own = self.own_uri(abs);
        let mut out = String::with_capacity(path.len() + credential.len() + 64);
        out.push_str(path);
        let mut sep = '?';
        for (k, v) in abs.query_pairs() {
            if own.is_some() && OUR_PARAMS.contains(&k.as_ref()) {
                continue;
            }
            out.push(sep);
            sep = '&';
            out.extend(url::form_urlencoded::byte_serialize(k.as_bytes()));
            out.push('=');
            out.extend(url::form_urlencoded::byte_serialize(v.as_bytes()));
        }
        let Some(own) = own else {
            return Ok(out);
        };
        out.push(sep);
        out.push_str("pc=");
        out.push_str(credential);
        let object_proof = match proofs {
            Proofs::None => false,
            Proofs::Master(kept) => !own.manifest || kept.contains(&own.rest),
            Proofs::Media => !own.manifest,
            Proofs::Dash { reps, own: mpd } => {
                if own.template {
                    let t = prover
                        .template(&own.rest, reps)
                        .map_err(|e| e.to_string())?;
                    for (k, v) in [("pt", &t.pt), ("pr", &t.pr), ("pm", &t.pm)] {
                        out.push('&');
                        out.push_str(k);
                        out.push('=');
                        out.push_str(v);
                    }
                    return Ok(out);
                }
                !own.manifest || own.rest == *mpd
            }
        };
        if object_proof && !own.template {
            out.push_str("&ps=");
            out.push_str(&prover.object(&own.rest));
        }
        Ok(out)
    }
}

/// Query parameters sluice itself puts on a content's URIs (a credential and its proofs, or
/// a stream token): an upstream playlist's own values are dropped, never passed on.
const OUR_PARAMS: [&str; 6] = ["token", "pc", "ps", "pt", "pr", "pm"];

/// The decoded form of a template path (below the hash): literal parts percent-decoded,
/// `$…$` identifiers kept as written. `None` when a literal does not decode to UTF-8.
fn decode_template(raw: &str, tokens: &[&str]) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    loop {
        let next = tokens
            .iter()
            .filter_map(|t| rest.find(t).map(|i| (i, *t)))
            .min_by_key(|(i, _)| *i);
        let (literal, tail) = match next {
            Some((i, t)) => (&rest[..i], Some((t, &rest[i + t.len()..]))),
            None => (rest, None),
        };
        out.push_str(
            &percent_encoding::percent_decode_str(literal)
                .decode_utf8()
                .ok()?,
        );
        match tail {
            Some((t, after)) => {
                out.push_str(t);
                rest = after;
            }
            None => return Some(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef";

    #[tokio::test]
    async fn placed_tells_once_and_a_dropped_fill_releases_its_viewer() {
        let (placed, told) = Placed::channel();
        placed.tell();
        placed.tell();
        assert!(told.await.is_ok());
        let (placed, told) = Placed::channel();
        drop(placed);
        assert!(told.await.is_err(), "the viewer waits no longer");
    }

    fn playback(quality: Option<&str>) -> PlaybackMapping {
        PlaybackMapping {
            key: std::sync::Arc::new(PlaybackKey::derive(SECRET)),
            claims: PlaybackClaims {
                version: 2,
                playback_id: "pb".into(),
                jti: "j".into(),
                dir: "h".into(),
                ip: "192.0.2.1".into(),
                device: String::new(),
                start: 1,
                exp: i64::MAX,
                quality: quality.map(String::from),
            },
            hash: "h".into(),
            extensions: std::sync::Arc::new(
                ["m3u8", "m4s", "mp4", "ts", "mpd", "json"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
        }
    }

    fn rewritten(m: &PlaybackMapping, kind: PlaylistKind, base: &str, input: &str) -> String {
        let base = Url::parse(base).unwrap();
        String::from_utf8(m.rewrite(kind, input.as_bytes(), &base).unwrap()).unwrap()
    }

    /// Whether the edge would admit `uri` (a rewritten URI) with its own credential and proof.
    fn opens(uri: &str) -> bool {
        let url = Url::parse(&format!("http://x{uri}")).unwrap();
        let pc = url
            .query_pairs()
            .find(|(k, _)| k == "pc")
            .unwrap()
            .1
            .into_owned();
        let key = PlaybackKey::derive(SECRET);
        let claims = key.verify(&pc, 2).unwrap();
        let rest = url.path().strip_prefix("/stream/h/").unwrap();
        let rest = percent_encoding::percent_decode_str(rest)
            .decode_utf8()
            .unwrap();
        claims.quality.is_none()
            || key.proves(
                &pc,
                &rest,
                &crate::auth::playback::ObjectProof::from_query(url.query()),
            )
    }

    #[test]
    fn playback_mapping_puts_a_credential_on_own_uris_only() {
        let mapping = playback(None);
        let input = "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"/api/key/h?x=1\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\nvideo/p.m3u8?x=1&token=old&ps=forged\n#EXTINF:2,\nhttps://other.cdn/seg.ts\n#EXTINF:2,\n/stream/other/seg.ts\n";
        let out = rewritten(
            &mapping,
            PlaylistKind::Hls,
            "http://sluice.local/stream/h/master.m3u8",
            input,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "#EXT-X-KEY:METHOD=AES-128,URI=\"/api/key/h?x=1\"");
        assert!(
            lines[3].starts_with("/stream/h/video/p.m3u8?x=1&pc="),
            "{out}"
        );
        assert!(
            !lines[3].contains("token=") && !lines[3].contains("ps="),
            "{out}"
        );
        assert_eq!(lines[5], "https://other.cdn/seg.ts");
        assert_eq!(lines[7], "/stream/other/seg.ts");
        assert!(opens(lines[3]));
    }

    #[test]
    fn restricted_quality_proves_each_object_it_lists() {
        let mapping = playback(Some("720p"));
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=1280x720\nv720.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=1920x1080\nv1080.m3u8\n#EXT-X-SESSION-DATA:DATA-ID=\"x\",URI=\"meta.json\"\n";
        let out = rewritten(
            &mapping,
            PlaylistKind::Hls,
            "http://sluice.local/stream/h/master.m3u8",
            master,
        );
        assert!(!out.contains("v1080"), "{out}");
        let uri = out.lines().nth(2).unwrap();
        assert!(
            uri.starts_with("/stream/h/v720.m3u8?pc=") && opens(uri),
            "{out}"
        );
        assert!(
            out.contains("meta.json?pc=") && out.contains("&ps="),
            "{out}"
        );
        // The 1080p playlist with the same credential and the 720p proof: refused.
        assert!(!opens(&uri.replace("v720.m3u8", "v1080.m3u8")));
        // ffmpeg's layout: segments beside their playlist at the content root, shared by
        // every variant. The media playlist proves its own segments, one by one.
        let pc = Url::parse(&format!("http://x{uri}"))
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "pc")
            .unwrap()
            .1
            .into_owned();
        let media_map = PlaybackMapping {
            claims: PlaybackKey::derive(SECRET).verify(&pc, 2).unwrap(),
            ..playback(None)
        };
        let media = "#EXTM3U\n#EXT-X-MAP:URI=\"v720_init.mp4\"\n#EXTINF:2,\nv720_001.m4s\n#EXT-X-RENDITION-REPORT:URI=\"v1080.m3u8\",LAST-MSN=1\n";
        let out = rewritten(
            &media_map,
            PlaylistKind::Hls,
            "http://sluice.local/stream/h/v720.m3u8",
            media,
        );
        let seg = out.lines().nth(3).unwrap();
        assert!(
            seg.starts_with("/stream/h/v720_001.m4s?pc=") && opens(seg),
            "{out}"
        );
        assert!(opens(
            out.lines().nth(1).unwrap().split('"').nth(1).unwrap()
        ));
        assert!(!opens(&seg.replace("v720_001", "v1080_001")));
        // A playlist a media playlist only mentions gets no proof.
        let report = out.lines().nth(4).unwrap().split('"').nth(1).unwrap();
        assert!(!report.contains("ps=") && !opens(report), "{out}");
    }

    #[test]
    fn nothing_within_the_ceiling_is_refused() {
        let mapping = playback(Some("480p"));
        let base = Url::parse("http://sluice.local/stream/h/master.m3u8").unwrap();
        let master =
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=9000000,RESOLUTION=3840x2160\nuhd.m3u8\n";
        assert!(matches!(
            mapping.rewrite(PlaylistKind::Hls, master.as_bytes(), &base),
            Err(rewrite::RewriteError::NotAllowed("480p"))
        ));
    }

    #[test]
    fn dash_templates_keep_the_credential() {
        // ffmpeg's default: `$Number%05d$` is not a percent escape.
        let mpd = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static"><Period>
<AdaptationSet contentType="video">
<Representation id="0" bandwidth="800000" width="640" height="360"><SegmentTemplate initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1"/></Representation>
<Representation id="1" bandwidth="6000000" width="1920" height="1080"><SegmentTemplate initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1"/></Representation>
</AdaptationSet></Period></MPD>"#;
        let expand = |t: &str, id: &str| {
            t.replace("$RepresentationID$", id)
                .replace("$Number%05d$", "00042")
                .replace("&amp;", "&")
        };
        for (quality, ids_open, ids_shut) in [
            (None, vec!["0", "1"], vec![]),
            (Some("720p"), vec!["0"], vec!["1"]),
        ] {
            let out = rewritten(
                &playback(quality),
                PlaylistKind::Dash,
                "http://sluice.local/stream/h/manifest.mpd",
                mpd,
            );
            let media = out
                .split("media=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            assert!(
                media.starts_with("/stream/h/chunk-stream$RepresentationID$-$Number%05d$.m4s?pc="),
                "{out}"
            );
            for id in ids_open {
                assert!(opens(&expand(media, id)), "{quality:?} {id}: {out}");
            }
            for id in ids_shut {
                assert!(!out.contains("height=\"1080\""), "{out}");
                assert!(!opens(&expand(media, id)), "{quality:?} {id}");
            }
        }
    }

    #[test]
    fn what_is_buffered() {
        let b = |u: &str| buffering_of_proxy(&Url::parse(u).unwrap());
        assert_eq!(b("https://cdn/live/index.m3u8"), Buffering::Always);
        assert_eq!(b("https://cdn/live/manifest.MPD?x=1"), Buffering::Always);
        assert_eq!(b("https://cdn/live/seg_1.ts"), Buffering::Never);
        assert_eq!(b("https://cdn/live/key.key"), Buffering::Never);
        assert_eq!(b("https://cdn/live/index"), Buffering::Sniff);
        assert_eq!(b("https://cdn/live/play.php?f=m3u8"), Buffering::Sniff);
    }

    #[test]
    fn fills_fetch_the_whole_object() {
        let mut req = RequestHeader::build("HEAD", b"/x.m3u8", None).unwrap();
        req.insert_header("Range", "bytes=0-").unwrap();
        req.insert_header("If-None-Match", "\"e\"").unwrap();
        prepare_fill_request(&mut req).unwrap();
        assert_eq!(req.method, http::Method::GET);
        assert!(req.headers.get("range").is_none() && req.headers.get("if-none-match").is_none());
    }
}

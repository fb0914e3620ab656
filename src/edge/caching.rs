//! The cache phases: enable the cache for media requests, judge hits of playlists (live ones
//! expire early, by their content), and decide what may be stored (policy in
//! [`crate::cache::policy`]). An HTTP/2 viewer of an object the cache does not hold has it
//! filled apart from itself ([`fill_apart`]).

use std::time::{Duration, SystemTime};

use pingora_cache::storage::Storage;
use pingora_cache::{
    CacheMeta, CacheOptionOverrides, CachePhase, ForcedFreshness, HitHandler, NoCacheReason,
    RespCacheable,
};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::{RangeType, Session};

use super::playlist::{self, Fill, FillTarget, Placed};
use super::{Edge, RequestCtx, Target};
use crate::cache::known::{self, Ask, Fetch};
use crate::cache::runtime::{CacheRuntime, PlaylistFreshness};
use crate::media::MediaKind;
use crate::rewrite::{self, PlaylistKind};

/// `request_cache_filter`: GET/HEAD media requests use the cache, with its lock.
pub(super) fn enable(
    cache: Option<&'static CacheRuntime>,
    session: &mut Session,
    ctx: &RequestCtx,
) {
    let (Some(cache), Some(_)) = (cache, &ctx.target) else {
        return;
    };
    let method = &session.req_header().method;
    if method != http::Method::GET && method != http::Method::HEAD {
        return;
    }
    let blocking = ctx.target.as_ref().is_some_and(Target::blocking);
    let (lock, overrides) = if blocking {
        // Blocking reloads have their own bound (`cache.blocking_reload_timeout`).
        (cache.blocking_lock, None)
    } else {
        // The lock waits of one request, however many, add up to at most the wait budget.
        let mut o = CacheOptionOverrides::default();
        o.wait_timeout = Some(cache.wait_budget);
        (cache.lock, Some(o))
    };
    session.cache.enable(
        cache.storage,
        Some(cache.eviction),
        None,
        Some(lock),
        overrides,
    );
    // No `set_max_file_size_bytes`: pingora's check fails a response of unknown length
    // mid-body (a `500` cut at the limit). The per-object limit is enforced by the policy
    // (`Content-Length`, [`CacheRuntime::cacheability`]) and by the storage, which turns an
    // outgrown write into a pass-through, so the object streams through uncached, complete.
    // A miss is filled at the origin's pace, not its first viewer's: with pingora's
    // cancel-safe downstream writes, the miss loop keeps reading the origin into the cache
    // while this viewer's socket is full, and the viewer reads its answer back from the
    // storage (a streaming partial hit) at its own pace, like every other viewer of the fill.
    // Without it, the loop awaits each downstream write and a stalled first viewer stalls
    // the fill, and with it everyone reading the object.
    session.set_proxy_tasks_enabled(true);
}

/// The kind of a stored object, judged by its content when it is a playlist: a proxied URL
/// may carry any extension and any content type.
fn stored_kind(target: &Target, meta: &CacheMeta, body: Option<&[u8]>) -> MediaKind {
    if let (Target::Proxy(p), Some(body)) = (target, body) {
        match rewrite::detect(None, p.url.path(), body) {
            Some(PlaylistKind::Hls) => return MediaKind::HlsPlaylist,
            Some(PlaylistKind::Dash) => return MediaKind::DashManifest,
            None => {}
        }
    }
    target.kind(meta.response_header())
}

/// `cache_hit_filter`: a fresh hit of a live playlist older than about half its target
/// duration is expired (the TTL cannot be known when the header is stored). One still fresh
/// notes how long it stays so: players are never told it is fresh for longer
/// ([`super::headers`]).
pub(super) fn hit(
    cache: Option<&'static CacheRuntime>,
    ctx: &mut RequestCtx,
    meta: &CacheMeta,
    hit_handler: &HitHandler,
    is_fresh: bool,
) -> Option<ForcedFreshness> {
    let (Some(cache), Some(target)) = (cache, &ctx.target) else {
        return None;
    };
    if !is_fresh || meta.response_header().status != 200 {
        return None;
    }
    let may_be_playlist = match target {
        Target::Stream(m) => m.path.kind.is_manifest(),
        Target::Proxy(_) => true,
    };
    if !may_be_playlist {
        return None;
    }
    let stored = crate::cache::storage::complete_body(hit_handler.as_ref())?;
    // Judged from its text, decoded from the coding its origin sent (origins compress
    // playlists unasked: from its gzip bytes a live playlist was not recognised and was held
    // as an ordinary object). Not decodable, or over the playlist cap: not judged.
    let body = crate::rewrite::encoding::decode_body(meta.headers(), &stored).ok()?;
    let kind = stored_kind(target, meta, Some(&body));
    if !kind.is_manifest() {
        return None;
    }
    match cache.playlist_expired_at(kind, meta, &body) {
        PlaylistFreshness::ExpiredAt(at) => Some(ForcedFreshness::ForceExpiredServeStale {
            expired_at: Some(at),
        }),
        PlaylistFreshness::FreshFor(fresh_for) => {
            ctx.playlist_fresh_for = Some(fresh_for);
            None
        }
    }
}

/// `response_cache_filter`: the policy's decision for this response.
pub(super) fn cacheability(
    cache: Option<&'static CacheRuntime>,
    ctx: &RequestCtx,
    resp: &ResponseHeader,
) -> RespCacheable {
    match (cache, &ctx.target) {
        (Some(cache), Some(t)) => cache.cacheability(t.kind(resp), resp),
        _ => RespCacheable::Uncacheable(NoCacheReason::NeverEnabled),
    }
}

/// `upstream_peer`: how long a request that waited behind another request's fetch may still
/// wait for the origin itself, or a `504` when its wait budget (`cache.lock_timeout`, counted
/// from the request's arrival) is spent.
///
/// A waiter goes to the origin itself when the fetch it waited on failed, was uncacheable, or
/// timed out. Without this bound it then waited its full origin timeouts on top of the lock
/// wait (`lock_timeout + read_timeout`, 24.5 s with the defaults on a hung origin), and every
/// waiter of a hung origin sent it one more request. `None` for requests that did not wait
/// and for LL-HLS blocking reloads (their own bound: `cache.blocking_reload_timeout`).
pub(super) fn wait_left(
    cache: Option<&'static CacheRuntime>,
    session: &Session,
    ctx: &RequestCtx,
) -> Result<Option<Duration>> {
    let Some(cache) = cache else {
        return Ok(None);
    };
    if session.cache.lock_duration().is_none() || ctx.target.as_ref().is_some_and(Target::blocking)
    {
        return Ok(None);
    }
    let left = cache.wait_budget.saturating_sub(ctx.started.elapsed());
    // Less than this is not worth an origin round trip.
    if left < Duration::from_millis(50) {
        return Error::e_explain(
            ErrorType::ReadTimedout,
            "waited the whole cache.lock_timeout behind another fetch of this object",
        );
    }
    Ok(Some(left))
}

/// `request_filter`, last, for a media request that goes on to the cache: an HTTP/2 viewer of
/// an object the cache does not hold fresh never becomes the writer of its fill.
///
/// Why: a miss's writer reads the origin into the cache only as fast as it writes its own
/// viewer. On HTTP/1.1 Pingora's cancel-safe downstream writes keep the two apart ([`enable`]),
/// but they are HTTP/1-only (`supports_proxy_task_api()` is false for HTTP/2), so a first
/// HTTP/2 viewer with a zero flow-control window froze the fill for every viewer of the
/// object (they hung at 128–256 KiB), and a slow one paced them all.
///
/// How: the object is filled by a background fill subrequest (an HTTP/1 session with
/// cancel-safe writes whose answer is drained, as prefetch runs them), started before this
/// viewer's own cache lookup; the viewer waits until the fill has its place in the cache
/// ([`Placed`]: it holds the lock, found the object, or went upstream), then looks up as any
/// other viewer and reads the object as a lock waiter, from the storage's streaming partial
/// write, at its own pace. A fill whose answer is not stored (an error status, an uncacheable
/// or oversized object) releases the lock and this viewer fetches for itself, uncoalesced, as
/// it would have.
///
/// `Err` when the viewer resets its stream while it waits: its request ends there (and counts
/// against its connection's reset budget, [`crate::conn::h2`]); the fill goes on for the cache.
pub(super) async fn fill_apart(edge: &Edge, session: &mut Session, ctx: &RequestCtx) -> Result<()> {
    let (Some(cache), Some(target)) = (edge.cache, &ctx.target) else {
        return Ok(());
    };
    // A node's request is fetched by that node's rules (a fill of it would be routed to the
    // object's owner again).
    if ctx.fill || ctx.fleet.from_peer.is_some() || !session.as_downstream().is_http2() {
        return Ok(());
    }
    let method = &session.req_header().method;
    if method != http::Method::GET && method != http::Method::HEAD {
        return Ok(());
    }
    // The lookup the viewer's own will make: a fresh object (or a write in flight, which is
    // fresh and streams to its readers) needs no fill.
    let key = CacheRuntime::key(target.cache_primary());
    let span = pingora_cache::trace::Span::inactive().handle();
    match cache.storage.lookup(&key, &span).await {
        Ok(Some((meta, _))) if meta.is_fresh(SystemTime::now()) => return Ok(()),
        // An expired object is revalidated whole, whatever the viewer asks.
        Ok(Some(_)) => {}
        // The viewer's own lookup meets the same error and proceeds as Pingora does.
        Err(_) => return Ok(()),
        // A miss passed through is the viewer's own fetch, not a fill ([`miss`]).
        Ok(None) => {
            if plan(cache, session, target) != Fetch::Whole {
                return Ok(());
            }
        }
    }
    let (placed, told) = Placed::channel();
    let mut fill = Fill::new(FillTarget::Ready(target.clone()), ctx.class);
    fill.viewer = Some(placed);
    if !playlist::spawn_background(session, fill) {
        return Ok(());
    }
    // Bounded by the wait budget the viewer's lock wait is counted against anyway.
    let left = cache.wait_budget.saturating_sub(ctx.started.elapsed());
    tokio::select! {
        _ = tokio::time::timeout(left, told) => Ok(()),
        // A GET or HEAD has no body (one was refused before): this only ends on a reset.
        gone = session.as_downstream_mut().read_body_or_idle(true) => match gone {
            Err(e) => Err(e.into_down()),
            Ok(_) => Ok(()),
        },
    }
}

/// The fill's cache lookup has settled (see [`fill_apart`]): tell its viewer, if it has one.
pub(super) fn placed(session: &Session) {
    if let Some(viewer) = playlist::fill_of(session).and_then(|f| f.viewer.as_ref()) {
        viewer.tell();
    }
}

/// `cache_miss`: how this miss is fetched ([`crate::cache::known`]), decided for every path
/// that misses (players over any protocol, fills, a fleet node's request at its owner):
/// - whole, into the cache: the cache lock is this request's;
/// - a range of an object not known to fit the cache: the origin is asked for the player's
///   range ([`super::upstream_modifiers::request`]), whose `206` is not stored; an origin
///   that ignores ranges answers the whole object, which is stored if it fits and the range
///   answered from it. The lock is given up at once (its waiters compete for it again,
///   [`crate::cache::known::FetchLock`]): ranges of one object are not queued behind each
///   other's origin round trips;
/// - a `HEAD` of an object not known to fit: asked of the origin as a `HEAD` (Pingora would
///   fetch the whole body to answer it), its length learned;
/// - a segment its live playlist says is still being written: straight through, never
///   stored (the cache is off for these two).
pub(super) fn miss(
    cache: Option<&'static CacheRuntime>,
    session: &mut Session,
    ctx: &mut RequestCtx,
) {
    let (Some(cache), Some(target)) = (cache, &ctx.target) else {
        return;
    };
    match plan(cache, session, target) {
        Fetch::Whole => {}
        Fetch::Bypass(why) => {
            tracing::debug!(why, "miss passed through, not stored");
            session.cache.disable(NoCacheReason::Custom(why));
        }
        Fetch::AsRange => {
            tracing::debug!("miss asked as a range");
            session
                .cache
                .release_write_lock(NoCacheReason::Custom(known::RANGE_OF_UNKNOWN));
            ctx.range_through = true;
        }
    }
}

/// The one reading of how a miss of `target` asked by this request is fetched.
fn plan(cache: &CacheRuntime, session: &Session, target: &Target) -> Fetch {
    let req = session.req_header();
    let ask = if req.method == http::Method::HEAD {
        Ask::Head
    } else if req.headers.contains_key(http::header::RANGE) {
        Ask::Range
    } else {
        Ask::Whole
    };
    cache
        .known
        .plan(target.cache_primary(), ask, cache.max_object_bytes)
}

/// `upstream_response_filter`: learn the object's complete length from what the origin
/// said (a later range of it is then fetched whole only if it fits the cache).
pub(super) fn learn(cache: Option<&'static CacheRuntime>, resp: &ResponseHeader, ctx: &RequestCtx) {
    if let (Some(cache), Some(target)) = (cache, &ctx.target) {
        let primary = target.cache_primary();
        if !cache.known.is_growing(primary) {
            cache.known.learn(primary, resp);
        }
    }
}

/// `range_header_filter`: ranges of a stored object are answered from the cache. Pingora
/// reads the object's length from its `Content-Length`, which an object the origin sent
/// chunked does not have: a complete one gets its length from the storage (its ranges were
/// otherwise never answered, however long it had been held whole).
pub(super) fn ranges(session: &mut Session, resp: &mut ResponseHeader) -> RangeType {
    let hit = matches!(
        session.cache.phase(),
        CachePhase::Hit | CachePhase::Stale | CachePhase::StaleUpdating
    );
    if hit
        && resp.status == http::StatusCode::OK
        && !resp.headers.contains_key(http::header::CONTENT_LENGTH)
    {
        if let Some(body) =
            crate::cache::storage::complete_body(session.cache.hit_handler().as_ref())
        {
            resp.remove_header(&http::header::TRANSFER_ENCODING);
            // A header value from a number: not reachable as an error.
            let _ = resp.insert_header(http::header::CONTENT_LENGTH, body.len());
        }
    }
    pingora_proxy::range_header_filter(session.req_header(), resp, Some(MAX_RANGES))
}

/// Most ranges one request may ask for (Pingora's default).
const MAX_RANGES: usize = 200;

/// The error that stops a fill run apart from its viewer whose answer is not being stored.
pub(super) const FILL_NOT_STORED: &str = "fill_not_stored";

/// `response_filter`: a background fill — a prefetch, or a fill run apart from its viewer
/// ([`fill_apart`]) — whose answer is not being stored (uncacheable, too large, refused by the
/// storage) is stopped at its header: it is for the cache only (a viewer, released from the
/// lock, fetches the object for itself). Without this the fill read the whole body for
/// nobody: doubling what the origin sends for an HTTP/2 viewer, and for a prefetch of an
/// object too large to keep, all of it for nothing.
pub(super) fn stop_unstored_fill(session: &Session) -> Result<()> {
    let for_the_cache = playlist::fill_of(session).is_some_and(|f| f.background);
    if for_the_cache && !session.cache.enabled() {
        return Error::e_explain(
            ErrorType::Custom(FILL_NOT_STORED),
            "the answer is not stored; nobody reads it",
        );
    }
    Ok(())
}

/// Whether `e` is [`stop_unstored_fill`]'s: not a failure, nothing to log or answer.
pub(super) fn is_fill_not_stored(e: &Error) -> bool {
    matches!(e.etype(), ErrorType::Custom(FILL_NOT_STORED))
}

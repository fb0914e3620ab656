//! Prefetch of LL-HLS parts and live segments: when a live HLS playlist comes from the origin,
//! its newest parts and segments and its preload hint are fetched into the cache by
//! background fill subrequests, so the first player asking for a new part gets a hit (and a
//! preload-hinted part being held by the origin is one upstream request however many players
//! join it, through the cache lock).
//!
//! On by default for `/stream` (`stream.prefetch`, how many objects per playlist), off for
//! `/api/proxy` (`providers.<id>.prefetch`); a proxied prefetch passes the same ctx, URL and
//! address checks as a player's request. A VOD playlist (`#EXT-X-ENDLIST`) prefetches nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use parking_lot::Mutex;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use url::Url;

use super::playlist::{Fill, FillTarget, LOCAL_HOST};
use super::{Edge, MediaTarget, RequestCtx, Target};
use crate::rewrite::encoding::{self, Coding};

/// Largest playlist body collected for prefetch.
const MAX_COLLECT: usize = 2 * 1024 * 1024;
/// An object prefetched recently is not prefetched again (every player's playlist miss would
/// otherwise queue the same fills).
const RECENT: Duration = Duration::from_secs(10);

/// Recently prefetched cache keys.
#[derive(Default)]
pub struct Recent {
    seen: Mutex<HashMap<String, Instant>>,
}

impl Recent {
    /// Whether `key` was prefetched in the last [`RECENT`] (a hit on it is a prefetch hit).
    pub fn recently(&self, key: &str) -> bool {
        self.seen
            .lock()
            .get(key)
            .is_some_and(|t| t.elapsed() < RECENT)
    }

    /// Whether `key` should be prefetched now (and remember that it was).
    fn claim(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut seen = self.seen.lock();
        if seen.len() > 10_000 {
            seen.retain(|_, t| now.duration_since(*t) < RECENT);
        }
        match seen.get(key) {
            Some(t) if now.duration_since(*t) < RECENT => false,
            _ => {
                seen.insert(key.to_string(), now);
                true
            }
        }
    }
}

/// A playlist body being collected for prefetch.
pub struct Collecting {
    buf: BytesMut,
    coding: Coding,
    count: usize,
    /// The body's announced length: the playlist is read as soon as it is all here. The
    /// end-of-stream call can come after the cache handed the whole body to the player, who
    /// then asks for a segment the playlist no longer calls growing.
    length: Option<usize>,
}

/// At the upstream response header: collect this body if it may be a live HLS playlist —
/// to learn which of its segments are still growing ([`crate::cache::known`]), and to
/// prefetch when its route does.
pub(super) fn start(edge: &Edge, resp: &ResponseHeader, ctx: &mut RequestCtx) {
    if resp.status.as_u16() != 200 || edge.cache.is_none() {
        return;
    }
    let count = match &ctx.target {
        Some(Target::Stream(m)) if m.path.kind == crate::media::MediaKind::HlsPlaylist => {
            Some(edge.state.config.stream.prefetch)
        }
        Some(Target::Proxy(p))
            if super::playlist::buffering_of_proxy(&p.url) != super::playlist::Buffering::Never =>
        {
            Some(p.provider.prefetch)
        }
        _ => None,
    };
    let coding = Coding::parse(
        resp.headers
            .get(http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    if let (Some(count), Some(coding)) = (count, coding) {
        let length = resp
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        ctx.prefetch = Some(Collecting {
            buf: BytesMut::new(),
            coding,
            count,
            length,
        });
    }
}

/// A body chunk from upstream; at the end, prefetch what the playlist announces.
pub(super) fn body(
    edge: &Edge,
    session: &mut Session,
    body: Option<&bytes::Bytes>,
    end: bool,
    ctx: &mut RequestCtx,
) {
    let Some(c) = ctx.prefetch.as_mut() else {
        return;
    };
    if let Some(b) = body {
        // Only identity text can be told from its first bytes; an encoded playlist is judged
        // once decoded (a gzip body never starts with `#EXT`: its parts were never prefetched).
        let not_text = c.coding == encoding::Coding::Identity && !b.starts_with(b"#EXT");
        if c.buf.len() + b.len() > MAX_COLLECT || (c.buf.is_empty() && not_text) {
            ctx.prefetch = None;
            return;
        }
        c.buf.extend_from_slice(b);
    }
    if !end && c.length.is_none_or(|n| c.buf.len() < n) {
        return;
    }
    let Some(c) = ctx.prefetch.take() else {
        return;
    };
    let Ok(text) = encoding::decode(c.coding, &c.buf) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(&text) else {
        return;
    };
    let Some(target) = ctx.target.clone() else {
        return;
    };
    let Some(playlist) = playlist_of(text) else {
        return;
    };
    if let Some(cache) = edge.cache {
        let (growing, whole) = playlist.growing();
        let primary = |uri: &str| fill_for(edge, &target, uri).map(|f| f.key());
        for key in growing.into_iter().filter_map(primary) {
            cache.known.mark_growing(&key);
        }
        for key in whole.into_iter().filter_map(primary) {
            cache.known.mark_complete(&key);
        }
    }
    for uri in playlist.announced(c.count) {
        let Some(fill) = fill_for(edge, &target, uri) else {
            continue;
        };
        let key = fill.key();
        if !edge.prefetched.claim(&key) {
            continue;
        }
        if !super::playlist::spawn_background(session, fill) {
            return;
        }
        crate::metrics::PREFETCHES.inc();
    }
}

/// The HLS playlist a collected body is (`None` for anything else); what it announces and
/// which segments grow are its own ([`crate::media::hls::Playlist`]).
fn playlist_of(text: &str) -> Option<crate::media::hls::Playlist<'_>> {
    text.starts_with("#EXTM3U")
        .then(|| crate::media::hls::Playlist::parse(text))
}

/// The fill of an announced URI, if the route may fetch it.
fn fill_for(edge: &Edge, playlist: &Target, uri: &str) -> Option<Fill> {
    match playlist {
        Target::Stream(m) => {
            let base = Url::parse(&format!(
                "http://{LOCAL_HOST}/stream/{}/{}",
                crate::media::path::encode_segments(std::slice::from_ref(&m.path.hash)),
                m.path.rest_encoded()
            ))
            .ok()?;
            let abs = base.join(uri).ok()?;
            if abs.host_str() != Some(LOCAL_HOST) || abs.query().is_some() {
                return None;
            }
            let rest = abs.path().strip_prefix("/stream/")?;
            let sp = crate::media::path::parse_stream_path(rest, &edge.extensions).ok()?;
            if sp.hash != m.path.hash || sp.kind.is_manifest() {
                return None;
            }
            // The same hash as the playlist's: its resolution holds.
            let dir = m.publisher.as_deref().unwrap_or(&sp.hash);
            let upstream_path = edge.upstream.object_path(dir, &sp.rest_encoded());
            let cache_primary = edge.upstream.cache_primary(&upstream_path);
            Some(Fill::new(
                FillTarget::Ready(Target::Stream(MediaTarget {
                    path: sp,
                    publisher: m.publisher.clone(),
                    upstream_path,
                    cache_primary,
                    blocking: false,
                })),
                super::RouteClass::Stream,
            ))
        }
        Target::Proxy(p) => {
            let abs = p.url.join(uri).ok()?;
            crate::ssrf::check_url(&abs, &p.provider.allowed_hosts, p.provider.allow_private)
                .ok()?;
            if crate::rewrite::kind_from_path(abs.path()).is_some() {
                return None;
            }
            Some(Fill::new(
                FillTarget::Resolve(Box::new(super::proxy::Checked {
                    requested: abs.clone(),
                    document: None,
                    url: abs,
                    provider: p.provider.clone(),
                    context: p.context.clone(),
                    token: p.ctx_token.clone(),
                    directives: None,
                })),
                super::RouteClass::Proxy,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-PART-INF:PART-TARGET=0.2\n#EXTINF:1,\nseg_9.m4s\n#EXT-X-PART:DURATION=0.2,URI=\"part_10.0.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.2,URI=\"part_10.1.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_10.2.m4s\"\n";

    fn announced(text: &str, n: usize) -> Vec<String> {
        playlist_of(text).map_or_else(Vec::new, |p| {
            p.announced(n).into_iter().map(str::to_string).collect()
        })
    }

    #[test]
    fn newest_first_hint_first() {
        assert_eq!(
            announced(LIVE, 3),
            ["part_10.2.m4s", "part_10.1.m4s", "part_10.0.m4s"]
        );
        assert_eq!(announced(LIVE, 10).last().unwrap(), "seg_9.m4s");
        assert!(announced(&format!("{LIVE}#EXT-X-ENDLIST\n"), 3).is_empty());
        assert!(announced("not a playlist", 3).is_empty());
    }

    #[test]
    fn recent_claims_once() {
        let r = Recent::default();
        assert!(!r.recently("a"));
        assert!(r.claim("a"));
        assert!(r.recently("a"));
        assert!(!r.claim("a"));
        assert!(r.claim("b"));
    }
}

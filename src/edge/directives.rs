//! `request_filter`: the one place LL-HLS delivery directives (`_HLS_msn`, `_HLS_part`,
//! `_HLS_skip`) of a `/stream` playlist or an `/api/proxy` URL are decided.
//!
//! They are honoured — forwarded upstream, part of the cache key, a blocking reload with its
//! own lock — only when the playlist as last seen (its committed copy in the cache, without
//! directives) is a live playlist whose `EXT-X-SERVER-CONTROL` advertises them, and only when
//! valid ([`crate::media::llhls::judge`]); malformed ones on such a playlist are a `400`.
//! Otherwise they are dropped from the key and from the upstream request: a VOD playlist
//! asked with 1,000 `_HLS_msn` values is one origin fetch and one stored copy. A playlist
//! sluice holds no copy of is fetched without directives (that copy then says what it
//! advertises), as RFC 8216bis has clients load a playlist before using them.
//!
//! A fleet peer's request carries directives its node honoured already: trusted, but still
//! only in their valid, canonical form.

use crate::cache::runtime::CacheRuntime;
use crate::media::hls::Playlist;
use crate::media::llhls::{self, Advertised, Verdict};
use crate::rewrite::encoding;

/// What the query's directives come to for the playlist whose key without directives is
/// `base_primary`. `from_peer`: a fleet node's request (its node judged them).
pub(super) async fn decide(
    cache: Option<&'static CacheRuntime>,
    base_primary: &str,
    query: Option<&str>,
    from_peer: bool,
) -> Verdict {
    if !llhls::asks(query) {
        return Verdict::Drop;
    }
    let advertised = if from_peer {
        Advertised::ALL
    } else {
        last_advertised(cache, base_primary).await
    };
    llhls::judge(query, advertised)
}

/// What the cached copy of the playlist advertises; nothing when there is no copy (or no
/// cache), or it is not a readable HLS playlist.
async fn last_advertised(cache: Option<&'static CacheRuntime>, base_primary: &str) -> Advertised {
    let Some(cache) = cache else {
        return Advertised::default();
    };
    let Some((meta, body)) = cache
        .storage
        .committed(&CacheRuntime::key(base_primary))
        .await
    else {
        return Advertised::default();
    };
    let Ok(decoded) = encoding::decode_body(meta.headers(), &body) else {
        return Advertised::default();
    };
    let text = String::from_utf8_lossy(&decoded);
    Advertised::of(&Playlist::parse(&text))
}

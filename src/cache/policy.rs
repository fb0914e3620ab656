//! How long sluice keeps an object: pure functions of the object kind, the origin's
//! response headers and (for playlists) the playlist itself.
//!
//! - Segments, init segments, images: `cache.segment_ttl` (they never change once published).
//! - Playlists: stored with the VOD TTL; on every hit the playlist is read and a *live* one
//!   (no `#EXT-X-ENDLIST`, or a DASH `type="dynamic"` MPD) is treated as expired once it is
//!   older than half its `#EXT-X-TARGETDURATION` (capped by `cache.live_playlist_ttl_max`).
//!   The TTL cannot be decided at store time because the response filter runs before the body.
//! - `404`: `cache.not_found_ttl` (a segment that is not there yet must not stay missing).
//! - `Vary`: an answer that varies on anything but `Accept-Encoding` is not stored
//!   ([`shared_by_all`]). Sluice keeps one copy per key and forwards no player header the
//!   origin could vary on (`edge::upstream_modifiers`), so such an answer would be one
//!   viewer's variant served to all; `Vary: *` is never stored.
//! - The origin wins where it is stricter: `no-store`/`private` are not stored, and a shorter
//!   `s-maxage`/`max-age`/`Expires` shortens ours ([`OriginFreshness`]). `s-maxage` overrides
//!   `max-age`: sluice is a shared cache (RFC 9111 §5.2.2.10). A lifetime that is not a valid
//!   delta-seconds (`max-age=x`, a repeated `max-age`) counts as zero (§4.2.1).
//! - `Age`: an answer that was already `Age` seconds old upstream is stored as that old
//!   (its creation back-dated), so it is fresh for its lifetime minus `Age` and the `Age`
//!   players get (now minus creation) includes the upstream's and never goes backwards; one
//!   as old as its lifetime is not stored. `Date` is not used for age (an origin's clock may
//!   be off; RFC 9111 §4.2.3 takes the larger of the two, sluice takes `Age` only).
//! - `stale-if-error`: a stored object may be served stale for `cache.stale_if_error` after it
//!   expires when the origin fails, unless the origin said `must-revalidate`,
//!   `proxy-revalidate` or `s-maxage` (§4.2.4, §5.2.2.2, §5.2.2.8, §5.2.2.10): those are never
//!   served stale (sluice has no stale-while-revalidate).

use std::time::{Duration, SystemTime};

use pingora_cache::cache_control::CacheControl;
use pingora_http::ResponseHeader;

use crate::config::CacheConfig;
use crate::media::MediaKind;

/// What to do with an origin response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Store {
        /// Freshness lifetime, counted from the object's creation.
        ttl: Duration,
        stale_if_error: Duration,
        /// How old the answer already was when it arrived (its `Age`): the object's
        /// creation is this far before now.
        age: Duration,
    },
    DontStore(&'static str),
}

#[derive(Debug, Clone)]
pub struct CachePolicy {
    pub segment_ttl: Duration,
    pub vod_playlist_ttl: Duration,
    pub live_playlist_ttl_max: Duration,
    pub not_found_ttl: Duration,
    pub stale_if_error: Duration,
}

impl From<&CacheConfig> for CachePolicy {
    fn from(c: &CacheConfig) -> Self {
        CachePolicy {
            segment_ttl: c.segment_ttl,
            vod_playlist_ttl: c.vod_playlist_ttl,
            live_playlist_ttl_max: c.live_playlist_ttl_max,
            not_found_ttl: c.not_found_ttl,
            stale_if_error: c.stale_if_error,
        }
    }
}

/// Whether a playlist is still changing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Vod,
    /// Live, with the playlist's target duration (HLS) or minimum update period (DASH).
    Live(Option<Duration>),
}

impl CachePolicy {
    /// Decide at store time from the response header.
    pub fn decide(&self, kind: MediaKind, resp: &ResponseHeader, now: SystemTime) -> Decision {
        let status = resp.status.as_u16();
        let ours = match status {
            200 => {
                if kind.is_manifest() {
                    self.vod_playlist_ttl
                } else {
                    self.segment_ttl
                }
            }
            404 | 410 => self.not_found_ttl,
            _ => return Decision::DontStore("status"),
        };
        if !shared_by_all(resp) {
            return Decision::DontStore("origin vary");
        }
        let origin = OriginFreshness::of(resp, now);
        if origin.no_store || origin.private {
            return Decision::DontStore("origin cache-control");
        }
        let ttl = match origin.shared_lifetime() {
            Some(o) => o.min(ours),
            None => ours,
        };
        if ttl <= origin.age {
            return Decision::DontStore("origin says stale");
        }
        Decision::Store {
            ttl,
            stale_if_error: if status == 200 && origin.may_serve_stale() {
                self.stale_if_error
            } else {
                Duration::ZERO
            },
            age: origin.age,
        }
    }

    /// How long a playlist stays fresh, from its content.
    pub fn playlist_ttl(&self, kind: MediaKind, body: &[u8]) -> Duration {
        let liveness = match kind {
            MediaKind::HlsPlaylist => hls_liveness(body),
            MediaKind::DashManifest => dash_liveness(body),
            _ => return self.segment_ttl,
        };
        match liveness {
            Liveness::Vod => self.vod_playlist_ttl,
            Liveness::Live(period) => {
                let half = period.map(|p| p / 2).unwrap_or(self.live_playlist_ttl_max);
                half.clamp(
                    Duration::from_millis(500),
                    self.live_playlist_ttl_max.max(Duration::from_millis(500)),
                )
            }
        }
    }
}

/// Whether one stored copy of this answer may serve every player: its `Vary` (all its
/// lines) names nothing but `Accept-Encoding`. Field names are compared as RFC 9110 says
/// (case-insensitive, a comma list with optional spaces and empty items); `*` varies on
/// everything. Sluice asks every origin with the same `Accept-Encoding` (none), so an
/// encoding variant is the one every fill gets. A `Vary` value that is not text is taken
/// as varying.
pub fn shared_by_all(resp: &ResponseHeader) -> bool {
    resp.headers.get_all(http::header::VARY).iter().all(|v| {
        v.to_str().is_ok_and(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .all(|name| name.eq_ignore_ascii_case("accept-encoding"))
        })
    })
}

/// What an origin's answer says about its own freshness (RFC 9111 §4.2, §5.2.2), read with
/// pingora-cache's `Cache-Control` parser: what sluice may store and serve, and what players
/// may be told (`edge/headers.rs`, `players_cache_control`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginFreshness {
    pub no_store: bool,
    pub private: bool,
    /// `no-cache` (without field names or with: sluice treats both as "revalidate every time").
    pub no_cache: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    /// `s-maxage`: the lifetime for shared caches (sluice, a CDN in front of it).
    pub s_maxage: Option<Duration>,
    /// `max-age`, else `Expires - Date`: the lifetime for any cache (a player's too).
    pub lifetime: Option<Duration>,
    /// The upstream's `Age` (zero when absent or not delta-seconds).
    pub age: Duration,
}

/// The largest `Age` taken (RFC 9111 §1.2.2: 2^31 is "infinity").
const MAX_AGE_VALUE: u64 = 1 << 31;

impl OriginFreshness {
    pub fn of(resp: &ResponseHeader, now: SystemTime) -> OriginFreshness {
        let cc = CacheControl::from_resp_headers(resp);
        // An invalid or repeated lifetime directive: stale (RFC 9111 §4.2.1).
        let secs = |v: pingora_error::Result<Option<u32>>| match v {
            Ok(v) => v.map(|s| Duration::from_secs(u64::from(s))),
            Err(_) => Some(Duration::ZERO),
        };
        let mut f = OriginFreshness::default();
        if let Some(cc) = &cc {
            f.no_store = cc.no_store();
            f.private = cc.private();
            f.no_cache = cc.no_cache();
            f.must_revalidate = cc.must_revalidate();
            f.proxy_revalidate = cc.proxy_revalidate();
            f.s_maxage = secs(cc.s_maxage());
            f.lifetime = secs(cc.max_age());
        }
        if f.lifetime.is_none() {
            f.lifetime = expires_lifetime(resp, now);
        }
        f.age = resp
            .headers
            .get(http::header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|a| Duration::from_secs(a.min(MAX_AGE_VALUE)))
            .unwrap_or_default();
        f
    }

    /// The lifetime for sluice, a shared cache: `no-cache` zero, then `s-maxage`, then
    /// `max-age`/`Expires`; `None` when the origin says nothing (sluice's own TTL applies).
    pub fn shared_lifetime(&self) -> Option<Duration> {
        if self.no_cache {
            return Some(Duration::ZERO);
        }
        self.s_maxage.or(self.lifetime)
    }

    /// Whether an expired copy may be served when the origin fails: not when the origin
    /// forbade it to shared caches (`must-revalidate`, `proxy-revalidate`, `s-maxage`).
    pub fn may_serve_stale(&self) -> bool {
        !(self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some())
    }
}

/// `Expires - Date` (or `- now` without a `Date`); an unparseable `Expires` means "already
/// expired" (RFC 9111 §5.3).
fn expires_lifetime(resp: &ResponseHeader, now: SystemTime) -> Option<Duration> {
    let expires = resp.headers.get(http::header::EXPIRES)?.to_str().ok()?;
    let Ok(at) = httpdate::parse_http_date(expires) else {
        return Some(Duration::ZERO);
    };
    let base = resp
        .headers
        .get(http::header::DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .unwrap_or(now);
    Some(at.duration_since(base).unwrap_or(Duration::ZERO))
}

/// HLS: VOD or live as the one HLS model defines it ([`crate::media::hls::Playlist::liveness`]).
pub fn hls_liveness(body: &[u8]) -> Liveness {
    let text = String::from_utf8_lossy(body);
    match crate::media::hls::Playlist::parse(&text).liveness() {
        crate::media::hls::Liveness::Vod => Liveness::Vod,
        crate::media::hls::Liveness::Live(target) => Liveness::Live(target),
    }
}

/// DASH: `type="dynamic"` is live; its `minimumUpdatePeriod` (ISO 8601, e.g. `PT2S`) paces refreshes.
pub fn dash_liveness(body: &[u8]) -> Liveness {
    // The root element, read by the XML parser the rewriter uses: any namespace prefix
    // (`<mpd:MPD>`), any spacing around `=`, either quote, entities decoded. Nothing an
    // origin sends can make this panic; anything unreadable counts as VOD.
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut buf = Vec::new();
    for _ in 0..64 {
        let event = match reader.read_event_into(&mut buf) {
            Ok(e) => e,
            Err(_) => return Liveness::Vod,
        };
        match event {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                if e.local_name().as_ref() != b"MPD" {
                    return Liveness::Vod;
                }
                let mut dynamic = false;
                let mut period = None;
                for a in e.attributes().flatten() {
                    let value = a
                        .unescape_value()
                        .map(|v| v.trim().to_string())
                        .unwrap_or_default();
                    match a.key.local_name().as_ref() {
                        b"type" => dynamic = value == "dynamic",
                        b"minimumUpdatePeriod" => period = parse_iso_duration(&value),
                        _ => {}
                    }
                }
                return if dynamic {
                    Liveness::Live(period)
                } else {
                    Liveness::Vod
                };
            }
            quick_xml::events::Event::Eof => return Liveness::Vod,
            _ => {}
        }
        buf.clear();
    }
    Liveness::Vod
}

/// `PT2S`, `PT1M30.5S`, `PT1H` → Duration. Days and larger units are not used in MPD refresh periods.
pub fn parse_iso_duration(s: &str) -> Option<Duration> {
    let t = s.strip_prefix("PT")?;
    let mut secs = 0f64;
    let mut num = String::new();
    for c in t.chars() {
        match c {
            '0'..='9' | '.' => num.push(c),
            'H' | 'M' | 'S' => {
                let v: f64 = num.parse().ok()?;
                secs += v * match c {
                    'H' => 3600.0,
                    'M' => 60.0,
                    _ => 1.0,
                };
                num.clear();
            }
            _ => return None,
        }
    }
    (num.is_empty() && secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CachePolicy {
        CachePolicy {
            segment_ttl: Duration::from_secs(86400),
            vod_playlist_ttl: Duration::from_secs(300),
            live_playlist_ttl_max: Duration::from_secs(5),
            not_found_ttl: Duration::from_secs(5),
            stale_if_error: Duration::from_secs(60),
        }
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn segments_get_long_ttl_without_origin_headers() {
        let d = policy().decide(MediaKind::Segment, &resp(200, &[]), SystemTime::now());
        assert_eq!(
            d,
            Decision::Store {
                ttl: Duration::from_secs(86400),
                stale_if_error: Duration::from_secs(60),
                age: Duration::ZERO,
            }
        );
    }

    #[test]
    fn origin_stricter_wins() {
        let now = SystemTime::now();
        let p = policy();
        assert_eq!(
            p.decide(
                MediaKind::Segment,
                &resp(200, &[("cache-control", "max-age=10")]),
                now
            ),
            Decision::Store {
                ttl: Duration::from_secs(10),
                stale_if_error: Duration::from_secs(60),
                age: Duration::ZERO,
            }
        );
        // Longer origin TTLs do not extend ours.
        assert!(matches!(
            p.decide(MediaKind::Segment, &resp(200, &[("cache-control", "max-age=999999999")]), now),
            Decision::Store { ttl, .. } if ttl == Duration::from_secs(86400)
        ));
        assert!(matches!(
            p.decide(
                MediaKind::Segment,
                &resp(200, &[("cache-control", "no-store")]),
                now
            ),
            Decision::DontStore(_)
        ));
        assert!(matches!(
            p.decide(
                MediaKind::Segment,
                &resp(200, &[("cache-control", "private, max-age=60")]),
                now
            ),
            Decision::DontStore(_)
        ));
        let date = httpdate::fmt_http_date(now);
        let exp = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert!(matches!(
            p.decide(MediaKind::Segment, &resp(200, &[("date", &date), ("expires", &exp)]), now),
            Decision::Store { ttl, .. } if ttl == Duration::from_secs(30)
        ));
        assert!(matches!(
            p.decide(MediaKind::Segment, &resp(200, &[("expires", "0")]), now),
            Decision::DontStore(_)
        ));
    }

    #[test]
    fn an_upstream_age_is_spent_freshness() {
        let now = SystemTime::now();
        let p = policy();
        assert_eq!(
            p.decide(
                MediaKind::Segment,
                &resp(200, &[("cache-control", "max-age=60"), ("age", "50")]),
                now
            ),
            Decision::Store {
                ttl: Duration::from_secs(60),
                stale_if_error: Duration::from_secs(60),
                age: Duration::from_secs(50),
            }
        );
        // As old as its lifetime (or older): stale, not stored.
        for age in ["60", "61", "99999999999999999"] {
            assert_eq!(
                p.decide(
                    MediaKind::Segment,
                    &resp(200, &[("cache-control", "max-age=60"), ("age", age)]),
                    now
                ),
                Decision::DontStore("origin says stale"),
                "{age}"
            );
        }
        // Our own TTL is spent by it too; a malformed Age is ignored.
        assert!(matches!(
            p.decide(MediaKind::Segment, &resp(200, &[("age", "86400")]), now),
            Decision::DontStore(_)
        ));
        assert!(matches!(
            p.decide(MediaKind::Segment, &resp(200, &[("age", "-5")]), now),
            Decision::Store { age, .. } if age.is_zero()
        ));
    }

    #[test]
    fn revalidate_and_s_maxage_are_never_served_stale() {
        let now = SystemTime::now();
        let p = policy();
        let sie = |cc: &str| match p.decide(
            MediaKind::Segment,
            &resp(200, &[("cache-control", cc)]),
            now,
        ) {
            Decision::Store { stale_if_error, .. } => stale_if_error,
            d => panic!("{cc}: {d:?}"),
        };
        assert_eq!(sie("max-age=10"), Duration::from_secs(60));
        for cc in [
            "max-age=10, must-revalidate",
            "max-age=10, proxy-revalidate",
            "s-maxage=10",
            "s-maxage=10, max-age=600",
            "MUST-REVALIDATE",
        ] {
            assert!(sie(cc).is_zero(), "{cc}");
        }
        // s-maxage overrides max-age for sluice, both ways.
        assert!(matches!(
            p.decide(MediaKind::Segment, &resp(200, &[("cache-control", "max-age=600, s-maxage=5")]), now),
            Decision::Store { ttl, .. } if ttl == Duration::from_secs(5)
        ));
        assert!(matches!(
            p.decide(MediaKind::Segment, &resp(200, &[("cache-control", "max-age=0, s-maxage=50")]), now),
            Decision::Store { ttl, .. } if ttl == Duration::from_secs(50)
        ));
        // An invalid lifetime is stale.
        assert!(matches!(
            p.decide(
                MediaKind::Segment,
                &resp(200, &[("cache-control", "max-age=soon")]),
                now
            ),
            Decision::DontStore(_)
        ));
    }

    #[test]
    fn not_found_is_short_and_errors_are_not_stored() {
        let now = SystemTime::now();
        assert!(matches!(
            policy().decide(MediaKind::Segment, &resp(404, &[]), now),
            Decision::Store { ttl, stale_if_error, .. } if ttl == Duration::from_secs(5) && stale_if_error.is_zero()
        ));
        for s in [500, 502, 503, 206, 304, 301] {
            assert!(matches!(
                policy().decide(MediaKind::Segment, &resp(s, &[]), now),
                Decision::DontStore(_)
            ));
        }
    }

    #[test]
    fn only_an_encoding_vary_is_stored() {
        let now = SystemTime::now();
        let p = policy();
        let stored = |headers: &[(&str, &str)]| {
            let mut r = ResponseHeader::build(200, None).unwrap();
            for (k, v) in headers {
                r.append_header(k.to_string(), *v).unwrap();
            }
            matches!(
                p.decide(MediaKind::Segment, &r, now),
                Decision::Store { .. }
            )
        };
        for kept in [
            &[][..],
            &[("vary", "Accept-Encoding")],
            &[("vary", "accept-encoding")],
            &[("Vary", " ACCEPT-ENCODING ,accept-Encoding")],
            &[("vary", "accept-encoding"), ("vary", "Accept-Encoding")],
            &[("vary", ", ,accept-encoding,")],
            &[("vary", "")],
        ] {
            assert!(stored(kept), "{kept:?}");
        }
        for refused in [
            &[("vary", "*")][..],
            &[("vary", " * ")],
            &[("vary", "Accept-Encoding, *")],
            &[("vary", "User-Agent")],
            &[("vary", "accept-encoding,user-agent")],
            &[("vary", "Accept-Encoding"), ("vary", "Accept-Language")],
            &[("vary", "Origin")],
            &[("vary", "accept-encodings")],
        ] {
            assert!(!stored(refused), "{refused:?}");
        }
        // A 404 that varies is one viewer's answer too.
        let mut r = ResponseHeader::build(404, None).unwrap();
        r.insert_header("vary", "User-Agent").unwrap();
        assert_eq!(
            p.decide(MediaKind::Segment, &r, now),
            Decision::DontStore("origin vary")
        );
        // Not text: varying.
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header(
            "vary",
            http::HeaderValue::from_bytes(b"accept-encoding\xff").unwrap(),
        )
        .unwrap();
        assert!(!shared_by_all(&r));
    }

    #[test]
    fn live_and_vod_playlists() {
        let p = policy();
        let live = b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n";
        let vod = b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n#EXT-X-ENDLIST\n";
        let master = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n";
        assert_eq!(
            hls_liveness(live),
            Liveness::Live(Some(Duration::from_secs(4)))
        );
        assert_eq!(
            p.playlist_ttl(MediaKind::HlsPlaylist, live),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.playlist_ttl(MediaKind::HlsPlaylist, vod),
            Duration::from_secs(300)
        );
        assert_eq!(
            p.playlist_ttl(MediaKind::HlsPlaylist, master),
            Duration::from_secs(300)
        );
        // A long target duration is capped.
        let slow = b"#EXTM3U\n#EXT-X-TARGETDURATION:60\n#EXTINF:60,\na.ts\n";
        assert_eq!(
            p.playlist_ttl(MediaKind::HlsPlaylist, slow),
            Duration::from_secs(5)
        );
        // CRLF and garbage target durations.
        let crlf = b"#EXTM3U\r\n#EXT-X-TARGETDURATION:2\r\n#EXTINF:2,\r\na.ts\r\n";
        assert_eq!(
            p.playlist_ttl(MediaKind::HlsPlaylist, crlf),
            Duration::from_secs(1)
        );
        let junk = b"#EXTM3U\n#EXT-X-TARGETDURATION:NaN\n#EXTINF:2,\na.ts\n";
        assert_eq!(
            p.playlist_ttl(MediaKind::HlsPlaylist, junk),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn dash_dynamic_and_static() {
        let p = policy();
        let dynamic = br#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" minimumUpdatePeriod="PT4S"><Period/></MPD>"#;
        let stat = br#"<MPD type="static" mediaPresentationDuration="PT10M"></MPD>"#;
        assert_eq!(
            dash_liveness(dynamic),
            Liveness::Live(Some(Duration::from_secs(4)))
        );
        assert_eq!(
            p.playlist_ttl(MediaKind::DashManifest, dynamic),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.playlist_ttl(MediaKind::DashManifest, stat),
            Duration::from_secs(300)
        );
        assert_eq!(
            parse_iso_duration("PT1M30.5S"),
            Some(Duration::from_secs_f64(90.5))
        );
        assert_eq!(parse_iso_duration("P1D"), None);
        assert_eq!(parse_iso_duration("PT5"), None);
    }

    #[test]
    fn dash_liveness_in_any_spelling_never_panics() {
        let prefixed = br#"<?xml version="1.0"?><mpd:MPD xmlns:mpd="urn:mpeg:dash:schema:mpd:2011" type = 'dynamic' minimumUpdatePeriod="PT2S"><mpd:Period/></mpd:MPD>"#;
        assert_eq!(
            dash_liveness(prefixed),
            Liveness::Live(Some(Duration::from_secs(2)))
        );
        let spaced = b"<MPD\n  type=\" dynamic \"\n></MPD>";
        assert_eq!(dash_liveness(spaced), Liveness::Live(None));
        for hostile in [
            "<MPD type=\"dynamic\" minimumUpdatePeriod=\"\u{e9}\"></MPD>",
            "<MPD type=\"dynamic\" minimumUpdatePeriod=\u{e9}></MPD>",
            "<MPD minimumUpdatePeriod=\"PT\u{e9}S\" type=\"dynamic\">",
            "<MPD type=\"dyn\u{e9}amic\"",
            "\u{e9}\u{e9}<MPD",
            "<?xml version=\"1.0\"?><!-- <MPD type=\"dynamic\"> --><Other/>",
        ] {
            let _ = dash_liveness(hostile.as_bytes());
            let _ = policy().playlist_ttl(MediaKind::DashManifest, hostile.as_bytes());
        }
        assert_eq!(
            dash_liveness(b"<?xml version=\"1.0\"?><!-- <MPD type=\"dynamic\"> --><Other/>"),
            Liveness::Vod
        );
    }
}

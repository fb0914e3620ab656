//! The one writer of what players are told: `Cache-Control`, CORS, `Content-Type`,
//! `X-Content-Type-Options` and `x-cache-status` on every answer a player gets from the edge.
//!
//! Every answer goes through [`told`]: an origin's object relayed (a cache hit, a miss, a stale
//! or revalidated copy, a fill's answer, a fleet owner's copy — `response_modifiers::downstream`),
//! a playlist rewritten for its viewer (`playlist`), an answer sluice makes itself (errors and
//! refusals, `respond::json`; a refused fleet signature), a content key (`/api/key/{hash}`,
//! `request_filters`) and a media preflight (`respond::preflight`). The function only renders:
//! what the origin said about freshness is judged by [`crate::cache::policy::OriginFreshness`].
//!
//! Why one place: the headers used to be written in five files, whose CORS expose lists
//! differed, and an origin's `Cache-Control` reached players unchanged on errors other than
//! `404`/`5xx` (a `403` or a `416` could be announced cacheable for as long as the origin's
//! `200` was).
//!
//! Answers to another fleet node (`fleet::to_peer`) are not players' answers: the asking node
//! applies this writer to what it relays.

use pingora_error::Result;
use pingora_http::ResponseHeader;

use crate::cache::policy::OriginFreshness;

/// The response headers a player script on another origin may read (Resource Timing and
/// range bookkeeping; the cache result for QoE beacons).
pub const EXPOSE_HEADERS: &str = "Content-Length, Content-Range, Accept-Ranges, x-cache-status";

/// The request headers a preflight allows when the browser names none (or names them
/// unreadably).
const PREFLIGHT_DEFAULT_HEADERS: &str = "Range, Authorization, Content-Type, X-Device-Id";

/// What an answer to a player is.
#[derive(Debug, Clone, Copy)]
pub enum Answer<'a> {
    /// An origin's object as stored or as it arrives (`/stream`, `/api/proxy` objects that are
    /// not rewritten).
    Relayed(Relayed<'a>),
    /// A playlist rewritten for this viewer: its ctx or playback credential is inside.
    Rewritten {
        content_type: &'static str,
        /// The cache result of the fill that fetched it.
        cache_status: Option<&'a str>,
    },
    /// An answer sluice makes itself on a media path: a JSON error or refusal.
    Local,
    /// A content key (`/api/key/{hash}`): players fetch it cross-origin, like media.
    Key,
    /// A CORS preflight on a media path; `requested` is the browser's
    /// `Access-Control-Request-Headers`.
    Preflight { requested: Option<&'a str> },
}

/// An origin's object on its way to a player.
#[derive(Debug, Clone, Copy)]
pub struct Relayed<'a> {
    /// What the origin said about freshness (its `Cache-Control`, `Expires`, `Age`).
    pub origin: &'a OriginFreshness,
    /// The origin's `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    /// The object's path (its extension types it when the origin did not).
    pub path: &'a str,
    /// A playlist or manifest (never `immutable`, capped by `stream.playlist_max_age`).
    pub manifest: bool,
    /// Opened by a stream token: `private`.
    pub gated: bool,
    /// `x-cache-status` ([`super::cache_status`]).
    pub cache_status: &'static str,
    /// `stream.playlist_max_age` in seconds: the most a playlist's players are told.
    pub playlist_max_age: u64,
}

/// The headers decided for one answer, in the order they are written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Told(Vec<(&'static str, String)>);

impl Told {
    fn set(&mut self, name: &'static str, value: impl Into<String>) {
        self.0.push((name, value.into()));
    }

    /// The value decided for `name` (lower case), if any.
    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Write them on a response header, replacing what was there.
    pub fn write(&self, resp: &mut ResponseHeader) -> Result<()> {
        for (name, value) in &self.0 {
            resp.insert_header(*name, value.as_str())?;
        }
        Ok(())
    }
}

/// What a player is told for an answer of `status`.
///
/// | answer | `Cache-Control` |
/// |---|---|
/// | relayed `2xx`/`304` | [`players_cache_control`] of the origin's freshness |
/// | relayed anything else (`3xx`, `4xx`, `5xx`) | `no-store` |
/// | rewritten playlist | `private, no-store` |
/// | local answer, content key | `no-store` |
/// | preflight | none |
///
/// Every answer but a preflight gets the same CORS set (`Access-Control-Allow-Origin: *`,
/// `Timing-Allow-Origin: *`, [`EXPOSE_HEADERS`]) and `X-Content-Type-Options: nosniff`; a
/// preflight allows `GET, HEAD, OPTIONS` with the headers the browser asked for.
pub fn told(answer: Answer<'_>, status: u16) -> Told {
    let mut t = Told::default();
    match answer {
        Answer::Preflight { requested } => {
            t.set("access-control-allow-origin", "*");
            t.set("access-control-allow-methods", "GET, HEAD, OPTIONS");
            t.set("access-control-allow-headers", preflight_headers(requested));
            t.set("access-control-max-age", "86400");
            return t;
        }
        Answer::Relayed(r) => {
            let cc = if (200..300).contains(&status) || status == 304 {
                players_cache_control(r.origin, r.manifest, r.gated, r.playlist_max_age)
            } else {
                "no-store".to_string()
            };
            t.set("cache-control", cc);
            if let Some(ct) = relayed_content_type(&r, status) {
                t.set("content-type", ct);
            }
            t.set("x-cache-status", r.cache_status);
        }
        Answer::Rewritten {
            content_type,
            cache_status,
        } => {
            // Rewritten per viewer (their ctx or credential): never stored by anyone else.
            t.set("cache-control", "private, no-store");
            t.set("content-type", content_type);
            if let Some(s) = cache_status {
                t.set("x-cache-status", s);
            }
        }
        Answer::Local | Answer::Key => t.set("cache-control", "no-store"),
    }
    t.set("access-control-allow-origin", "*");
    // Players on any origin may measure their media fetches (QoE: Resource Timing).
    t.set("timing-allow-origin", "*");
    t.set("access-control-expose-headers", EXPOSE_HEADERS);
    t.set("x-content-type-options", "nosniff");
    t
}

/// The players' message for an origin error whose body sluice replaces with its own JSON
/// (the origin's S3 XML or HTML is not for players): `404` and `5xx`.
pub fn origin_error_message(status: u16) -> Option<&'static str> {
    match status {
        404 => Some("Not found"),
        500..=599 => Some("Upstream error"),
        _ => None,
    }
}

/// A relayed answer's type: JSON for the errors whose body is replaced, a multi-range `206`'s
/// own `multipart/byteranges` (its boundary is in it), else a media type.
fn relayed_content_type(r: &Relayed<'_>, status: u16) -> Option<String> {
    if origin_error_message(status).is_some() {
        return Some("application/json".into());
    }
    let multipart = status == 206
        && r.content_type.is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/byteranges")
        });
    if multipart {
        return None;
    }
    Some(media_content_type(r.content_type, r.path))
}

/// The request headers a preflight allows: those the browser asked for when they read as a
/// header list, else [`PREFLIGHT_DEFAULT_HEADERS`].
fn preflight_headers(requested: Option<&str>) -> &str {
    requested
        .filter(|v| v.len() < 1024 && v.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .unwrap_or(PREFLIGHT_DEFAULT_HEADERS)
}

/// The `Cache-Control` players get for a successful media answer: never fresher than the
/// origin said.
///
/// - The origin's `no-store` → `no-store`; `private` → `private, no-cache`; `no-cache` →
///   `no-cache` (gated media is `private`, a gated playlist `private, no-store`).
/// - A lifetime from the origin (`max-age`, else `Expires - Date`, else `s-maxage`) is passed
///   on, capped by ours (`stream.playlist_max_age` for playlists); players count the `Age`
///   sluice sends against it. A `max-age=0` or past `Expires` is `max-age=0`.
/// - Only an object the origin said nothing about is `immutable` for a year (playback-api's
///   header for segments), a playlist `max-age={playlist_max_age}`.
/// - `must-revalidate` is passed on; `s-maxage` and `proxy-revalidate` too on `public`
///   answers (for shared caches in front of sluice).
pub fn players_cache_control(
    origin: &OriginFreshness,
    manifest: bool,
    gated: bool,
    playlist_max_age: u64,
) -> String {
    const YEAR: u64 = 31_536_000;
    if origin.no_store {
        return "no-store".into();
    }
    let private = gated || origin.private;
    let scope = if private { "private" } else { "public" };
    if origin.no_cache {
        return format!("{scope}, no-cache");
    }
    if origin.private {
        // Stored nowhere shared; the browser may keep it briefly, and must revalidate.
        return "private, no-cache".into();
    }
    if manifest && gated {
        return "private, no-store".into();
    }
    let cap = if manifest { playlist_max_age } else { YEAR };
    let Some(lifetime) = origin.lifetime.or(origin.s_maxage) else {
        return if manifest {
            format!("{scope}, max-age={playlist_max_age}")
        } else {
            format!("{scope}, max-age={YEAR}, immutable")
        };
    };
    let mut cc = format!("{scope}, max-age={}", lifetime.as_secs().min(cap));
    if !private {
        if let Some(s) = origin.s_maxage {
            cc.push_str(&format!(", s-maxage={}", s.as_secs().min(cap)));
        }
    }
    if origin.must_revalidate {
        cc.push_str(", must-revalidate");
    }
    if origin.proxy_revalidate && !private {
        cc.push_str(", proxy-revalidate");
    }
    cc
}

/// The content type players get for an origin's media answer: playlists under their one
/// proper type, media types as sent, everything else `application/octet-stream`.
///
/// An ISO BMFF media segment (`video/iso.segment`, the registered type origins and sluice
/// give `.m4s`) is `video/mp4`: MediaSource takes ISO BMFF only as `video/mp4`/`audio/mp4`,
/// and Shaka Player, given a segment URL without an extension (every `/api/proxy` URL) and a
/// playlist without a container hint, takes the segment's `Content-Type` (from a `HEAD`) for
/// the SourceBuffer's: `video/iso.segment` failed the load (4032 in the trial; 3015,
/// `addSourceBuffer` throwing, with the Shaka of `tests/clients`).
pub fn media_content_type(origin: Option<&str>, path: &str) -> String {
    let mime = origin
        .unwrap_or_else(|| crate::media::content_type(path))
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if let Some(t) = crate::rewrite::playlist_mime(&mime) {
        return t.to_string();
    }
    if mime == "video/iso.segment" {
        return "video/mp4".to_string();
    }
    let well_formed = mime.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && mime
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'+' | b'.' | b'-'))
    });
    let allowed = mime.starts_with("video/")
        || mime.starts_with("audio/")
        || matches!(
            mime.as_str(),
            "text/vtt"
                | "application/ttml+xml"
                | "image/jpeg"
                | "image/png"
                | "image/webp"
                | "image/avif"
                | "application/octet-stream"
                | "application/mp4"
        );
    if well_formed && allowed {
        mime
    } else {
        "application/octet-stream".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(headers: &[(&str, &str)]) -> OriginFreshness {
        let mut r = ResponseHeader::build(200, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        OriginFreshness::of(&r, std::time::SystemTime::now())
    }

    /// The routes of the table: how each kind of answer reaches [`told`].
    #[derive(Debug, Clone, Copy)]
    enum Route {
        /// `/stream` segment (and `/api/proxy` objects that are not playlists).
        Segment,
        /// `/stream` playlist, not gated: relayed as stored.
        Playlist,
        /// `/stream` segment opened by a stream token.
        GatedSegment,
        /// `/api/proxy` playlist, gated `/stream` playlist: rewritten.
        Rewritten,
        /// An error or refusal made here (the gate's 403, a bad path).
        Local,
        Key,
    }

    fn told_for(route: Route, origin_cc: Option<&str>, status: u16) -> Told {
        let headers: Vec<(&str, &str)> = origin_cc
            .map(|v| ("cache-control", v))
            .into_iter()
            .collect();
        let o = origin(&headers);
        let relayed = |manifest, gated| {
            Answer::Relayed(Relayed {
                origin: &o,
                content_type: Some(if manifest {
                    "application/vnd.apple.mpegurl"
                } else {
                    "video/mp2t"
                }),
                path: "/h/x",
                manifest,
                gated,
                cache_status: "miss",
                playlist_max_age: 2,
            })
        };
        let answer = match route {
            Route::Segment => relayed(false, false),
            Route::Playlist => relayed(true, false),
            Route::GatedSegment => relayed(false, true),
            Route::Rewritten => Answer::Rewritten {
                content_type: "application/vnd.apple.mpegurl",
                cache_status: Some("hit"),
            },
            Route::Local => Answer::Local,
            Route::Key => Answer::Key,
        };
        told(answer, status)
    }

    /// (route × origin `Cache-Control` × status) → the `Cache-Control` players get; every
    /// row also gets the one CORS set.
    #[test]
    fn the_table() {
        use Route::*;
        const IMMUTABLE: &str = "public, max-age=31536000, immutable";
        let rows: &[(Route, Option<&str>, u16, &str)] = &[
            // Segments: the origin's lifetime, never a longer one; immutable only on silence.
            (Segment, None, 200, IMMUTABLE),
            (Segment, Some("max-age=0"), 200, "public, max-age=0"),
            (Segment, Some("no-cache"), 200, "public, no-cache"),
            (Segment, Some("no-store"), 200, "no-store"),
            (
                Segment,
                Some("private, max-age=60"),
                200,
                "private, no-cache",
            ),
            (
                Segment,
                Some("s-maxage=30"),
                200,
                "public, max-age=30, s-maxage=30",
            ),
            (
                Segment,
                Some("max-age=600, s-maxage=5"),
                200,
                "public, max-age=600, s-maxage=5",
            ),
            (Segment, Some("max-age=10"), 200, "public, max-age=10"),
            // A range or a revalidation says what the whole object's 200 says.
            (Segment, None, 206, IMMUTABLE),
            (Segment, Some("max-age=10"), 206, "public, max-age=10"),
            (Segment, None, 304, IMMUTABLE),
            (Segment, Some("max-age=0"), 304, "public, max-age=0"),
            // Errors and redirects relayed: never cacheable by players, whatever the origin
            // said (an origin's 403 with max-age=600 was passed on as it was).
            (Segment, None, 404, "no-store"),
            (Segment, Some("max-age=600"), 403, "no-store"),
            (Segment, Some("public, max-age=31536000"), 416, "no-store"),
            (Segment, Some("max-age=600"), 302, "no-store"),
            (Segment, Some("max-age=60"), 503, "no-store"),
            // Playlists: capped by stream.playlist_max_age (2 here), never immutable.
            (Playlist, None, 200, "public, max-age=2"),
            (Playlist, Some("max-age=60"), 200, "public, max-age=2"),
            (Playlist, Some("max-age=0"), 200, "public, max-age=0"),
            (Playlist, Some("no-cache"), 200, "public, no-cache"),
            (Playlist, None, 404, "no-store"),
            // Gated media is private.
            (
                GatedSegment,
                None,
                200,
                "private, max-age=31536000, immutable",
            ),
            (GatedSegment, Some("no-cache"), 200, "private, no-cache"),
            (
                GatedSegment,
                Some("s-maxage=5, proxy-revalidate"),
                200,
                "private, max-age=5",
            ),
            // Rewritten per viewer: whatever the origin said.
            (Rewritten, None, 200, "private, no-store"),
            (Rewritten, Some("max-age=600"), 200, "private, no-store"),
            // Made here.
            (Local, None, 403, "no-store"),
            (Local, None, 400, "no-store"),
            (Local, None, 502, "no-store"),
            (Key, None, 200, "no-store"),
            (Key, None, 403, "no-store"),
        ];
        for (route, cc, status, want) in rows {
            let t = told_for(*route, *cc, *status);
            let row = format!("{route:?} × {cc:?} × {status}");
            assert_eq!(t.get("cache-control"), Some(*want), "{row}");
            assert_eq!(t.get("access-control-allow-origin"), Some("*"), "{row}");
            assert_eq!(t.get("timing-allow-origin"), Some("*"), "{row}");
            assert_eq!(
                t.get("access-control-expose-headers"),
                Some(EXPOSE_HEADERS),
                "{row}"
            );
            assert_eq!(t.get("x-content-type-options"), Some("nosniff"), "{row}");
            assert!(
                !(want.contains("immutable") && cc.is_some()),
                "{row}: immutable though the origin spoke"
            );
        }
    }

    #[test]
    fn types_and_cache_status() {
        let o = origin(&[]);
        let relayed = |ct: Option<&'static str>, status| {
            let r = Relayed {
                origin: &o,
                content_type: ct,
                path: "/h/seg.m4s",
                manifest: false,
                gated: false,
                cache_status: "hit",
                playlist_max_age: 2,
            };
            told(Answer::Relayed(r), status)
        };
        let t = relayed(Some("text/html"), 200);
        assert_eq!(t.get("content-type"), Some("application/octet-stream"));
        assert_eq!(t.get("x-cache-status"), Some("hit"));
        assert_eq!(relayed(None, 200).get("content-type"), Some("video/mp4"));
        // Errors whose body is replaced are JSON.
        assert_eq!(
            relayed(Some("application/xml"), 404).get("content-type"),
            Some("application/json")
        );
        assert_eq!(
            relayed(Some("text/html"), 502).get("content-type"),
            Some("application/json")
        );
        // A 403 keeps its body, typed as media or octet-stream.
        assert_eq!(
            relayed(Some("text/html"), 403).get("content-type"),
            Some("application/octet-stream")
        );
        // A multi-range 206 keeps its own type (the boundary is in it): not rewritten.
        assert_eq!(
            relayed(Some("multipart/byteranges; boundary=x"), 206).get("content-type"),
            None
        );
        let rw = told(
            Answer::Rewritten {
                content_type: "application/dash+xml",
                cache_status: None,
            },
            200,
        );
        assert_eq!(rw.get("content-type"), Some("application/dash+xml"));
        assert_eq!(rw.get("x-cache-status"), None);
        assert_eq!(told(Answer::Local, 403).get("content-type"), None);
    }

    #[test]
    fn preflights() {
        let p = told(Answer::Preflight { requested: None }, 204);
        assert_eq!(p.get("access-control-allow-origin"), Some("*"));
        assert_eq!(
            p.get("access-control-allow-methods"),
            Some("GET, HEAD, OPTIONS")
        );
        assert_eq!(
            p.get("access-control-allow-headers"),
            Some(PREFLIGHT_DEFAULT_HEADERS)
        );
        assert_eq!(p.get("access-control-max-age"), Some("86400"));
        assert_eq!(p.get("cache-control"), None);
        let asked = told(
            Answer::Preflight {
                requested: Some("range, x-custom"),
            },
            204,
        );
        assert_eq!(
            asked.get("access-control-allow-headers"),
            Some("range, x-custom")
        );
        let odd = told(
            Answer::Preflight {
                requested: Some("range\u{7f}"),
            },
            204,
        );
        assert_eq!(
            odd.get("access-control-allow-headers"),
            Some(PREFLIGHT_DEFAULT_HEADERS)
        );
    }

    #[test]
    fn cache_control_follows_the_origin() {
        let cc = |o: Option<&str>, m: bool, g: bool| {
            let headers: Vec<(&str, &str)> = o.map(|v| ("cache-control", v)).into_iter().collect();
            players_cache_control(&origin(&headers), m, g, 2)
        };
        assert_eq!(
            cc(None, false, false),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(cc(None, true, false), "public, max-age=2");
        assert_eq!(
            cc(None, false, true),
            "private, max-age=31536000, immutable"
        );
        assert_eq!(cc(None, true, true), "private, no-store");
        assert_eq!(cc(Some("no-store"), false, false), "no-store");
        assert_eq!(cc(Some("public, NO-STORE"), true, false), "no-store");
        assert_eq!(
            cc(Some("private, max-age=60"), false, false),
            "private, no-cache"
        );
        assert_eq!(cc(Some("no-cache"), false, false), "public, no-cache");
        assert_eq!(cc(Some("no-cache"), false, true), "private, no-cache");
        // The origin's lifetime, never a longer one.
        assert_eq!(cc(Some("max-age=10"), false, false), "public, max-age=10");
        assert_eq!(cc(Some("max-age=0"), false, false), "public, max-age=0");
        assert_eq!(cc(Some("max-age=0"), true, false), "public, max-age=0");
        assert_eq!(cc(Some("max-age=60"), true, false), "public, max-age=2");
        assert_eq!(cc(Some("max-age=10"), false, true), "private, max-age=10");
        assert_eq!(cc(Some("max-age=x"), false, false), "public, max-age=0");
        assert_eq!(
            cc(Some("max-age=999999999"), false, false),
            "public, max-age=31536000"
        );
        assert_eq!(
            cc(Some("max-age=30, must-revalidate"), false, false),
            "public, max-age=30, must-revalidate"
        );
        assert_eq!(
            cc(
                Some("s-maxage=5, max-age=60, proxy-revalidate"),
                false,
                false
            ),
            "public, max-age=60, s-maxage=5, proxy-revalidate"
        );
        assert_eq!(
            cc(Some("s-maxage=5, proxy-revalidate"), false, true),
            "private, max-age=5"
        );
        for o in [
            "no-store",
            "private",
            "no-cache",
            "private, no-cache",
            "max-age=0",
        ] {
            assert!(!cc(Some(o), false, false).contains("immutable"), "{o}");
        }
        // Expires: its lifetime from Date; past or invalid is stale.
        let now = std::time::SystemTime::now();
        let date = httpdate::fmt_http_date(now);
        let later = httpdate::fmt_http_date(now + std::time::Duration::from_secs(30));
        let past = httpdate::fmt_http_date(now - std::time::Duration::from_secs(30));
        let seg = |h: &[(&str, &str)]| players_cache_control(&origin(h), false, false, 2);
        assert_eq!(
            seg(&[("date", &date), ("expires", &later)]),
            "public, max-age=30"
        );
        assert_eq!(
            seg(&[("date", &date), ("expires", &past)]),
            "public, max-age=0"
        );
        assert_eq!(seg(&[("expires", "0")]), "public, max-age=0");
        // max-age wins over Expires.
        assert_eq!(
            seg(&[("expires", &past), ("cache-control", "max-age=20")]),
            "public, max-age=20"
        );
    }

    #[test]
    fn only_media_types_reach_players() {
        assert_eq!(
            media_content_type(Some("video/mp2t"), "/a.ts"),
            "video/mp2t"
        );
        assert_eq!(
            media_content_type(Some("VIDEO/MP4; x=1"), "/a"),
            "video/mp4"
        );
        assert_eq!(
            media_content_type(Some("text/html"), "/a.ts"),
            "application/octet-stream"
        );
        assert_eq!(
            media_content_type(Some("image/svg+xml"), "/a.jpg"),
            "application/octet-stream"
        );
        assert_eq!(
            media_content_type(Some("application/javascript"), "/a"),
            "application/octet-stream"
        );
        assert_eq!(
            media_content_type(Some("application/x-mpegURL"), "/a"),
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(media_content_type(None, "/a/seg.m4s"), "video/mp4");
        assert_eq!(
            media_content_type(Some("Video/ISO.Segment; x=1"), "/api/proxy"),
            "video/mp4"
        );
        assert_eq!(
            media_content_type(Some("image/webp"), "/t.webp"),
            "image/webp"
        );
    }
}

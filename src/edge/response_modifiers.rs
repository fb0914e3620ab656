//! The response phases: what the cache may store (`upstream`), what players see
//! (`downstream`, `body`), and answers for failures (`failure`).
//!
//! Rules, each a pure function with its tests below:
//! - [`players_cache_control`]: players' `Cache-Control` never says an object is fresher than
//!   the origin did — the origin's `no-store`/`private`/`no-cache` are kept, its lifetime
//!   (`max-age`, `Expires`) passed on, `immutable` only when it said nothing; gated media is
//!   `private`.
//! - [`media_content_type`]: only media types reach players from an origin; anything else
//!   (`text/html`, `image/svg+xml`, …) is `application/octet-stream`, always with
//!   `X-Content-Type-Options: nosniff`.
//! - An origin's `Set-Cookie` is never stored and never forwarded to players (on sluice's
//!   own domain it would land in every viewer's browser); for `/api/proxy` it goes into the
//!   context's server-side jar and back upstream for that context only.
//! - Origin errors on media paths become `{"error": …}`; a CDN's redirect is rewritten through
//!   `/api/proxy` (every hop re-checked) or refused with `403` JSON.
//! - The bucket's redirects on `/stream` are followed by sluice, never shown to players
//!   ([`follow_bucket_redirect`]): a target on the bucket's own origin is asked for at once
//!   (Pingora's retry, up to [`MAX_BUCKET_REDIRECTS`] hops); any other is a `502`.

use pingora_cache::CachePhase;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::{FailToProxy, Session};

use super::{json_error_body, proxy, respond, BodySwap, Edge, RequestCtx, Target};
use crate::cache::policy::OriginFreshness;
use crate::metrics;
use crate::upstream::{RedirectRefusal, MAX_BUCKET_REDIRECTS};

/// The error that sends a request upstream again, at its bucket redirect's target.
const BUCKET_REDIRECT: &str = "bucket_redirect";

/// Whether `e` is [`follow_bucket_redirect`]'s request to ask again: not a failure.
pub(super) fn is_bucket_redirect(e: &Error) -> bool {
    matches!(e.etype(), ErrorType::Custom(BUCKET_REDIRECT))
}

/// `upstream_response_filter`, before the cache stores anything.
pub(super) fn upstream(edge: &Edge, resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
    if let Some(t) = ctx.upstream_started {
        let latency = t.elapsed();
        ctx.upstream_latency = Some(latency);
        metrics::UPSTREAM_DURATION
            .with_label_values(&[ctx.class.as_str()])
            .observe(latency.as_secs_f64());
    }
    // Never a tunnel: a 101 would hand the client a raw two-way stream to the origin, past
    // every check (requests asking for one are refused before this, [`super::protocol`]).
    if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
        ctx.upstream_error = true;
        ctx.refusal = Some((502, "the origin tried to switch protocols".into()));
        return Error::e_explain(ErrorType::HTTPStatus(502), "upstream answered 101");
    }
    if matches!(ctx.target, Some(Target::Stream(_)))
        && resp.status.is_redirection()
        && resp.status != http::StatusCode::NOT_MODIFIED
    {
        return follow_bucket_redirect(edge, resp, ctx);
    }
    if resp.status.is_server_error() {
        ctx.upstream_error = true;
        metrics::UPSTREAM_ERRORS
            .with_label_values(&["status_5xx"])
            .inc();
    }
    // An origin error with an empty body leaves nothing to put the player's JSON in (the end
    // of an empty body never reaches the body filter): answered locally instead, framed.
    let empty_body = resp
        .headers
        .get(http::header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() == b"0");
    if empty_body && (resp.status == http::StatusCode::NOT_FOUND || resp.status.is_server_error()) {
        let status = resp.status.as_u16();
        let msg = if status == 404 {
            "Not found"
        } else {
            "Upstream error"
        };
        ctx.refusal = Some((status, msg.into()));
        return Error::e_explain(ErrorType::HTTPStatus(status), "origin error with no body");
    }
    // Never stored, never replayed: the CDN's cookies belong to this context only.
    let set_cookies: Vec<String> = resp
        .headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    resp.remove_header(&http::header::SET_COOKIE);
    if let Some(Target::Proxy(t)) = &ctx.target {
        for c in &set_cookies {
            t.context.jar.store(c, &t.url);
        }
        // A redirect is followed by the player through the proxy again, so every hop is
        // re-checked; one the context does not allow is refused here, before anything is
        // written, so the refusal can be a proper JSON answer.
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
                        crate::metrics::refused(
                            crate::metrics::GateSurface::Proxy,
                            "proxy_redirect",
                        );
                        ctx.refusal = Some((r.status, r.message.clone()));
                        return Error::e_explain(ErrorType::HTTPStatus(r.status), r.message);
                    }
                }
            }
        }
    }
    Ok(())
}

/// A redirect from the bucket on `/stream`: players never see it.
///
/// Followed when [`crate::upstream::Upstream::follow`] says the target is on the bucket's
/// origin and names an object `/stream` may name: the request's upstream path becomes the
/// target's and the request goes upstream again (Pingora's retry: `upstream_peer` and
/// `upstream_request_filter` run again, nothing has been written to the player or the cache).
/// Every request that asks the bucket runs this filter — a player's miss, playlist and
/// HTTP/2 fills, prefetch, a fleet owner's fetch — so all of them follow the same way.
///
/// What is cached: the target's answer, under the key of what was *asked* (the key was made
/// before the lookup and does not change), with the target's own freshness. So the redirect is
/// not asked again while that answer is fresh, and players keep the URL they asked for. That is
/// safe because the target is an object of the same bucket and the same content directory
/// (whose gate this request passed), passing the same path rules and of the same kind as the
/// requested one — the answer a player following the redirect itself would have got — and
/// nothing of the player's went into the choice (the bucket saw only sluice's allow-listed
/// request headers). The redirect itself is never stored.
///
/// Refused — a target off the bucket's origin, outside its prefix, in another content's
/// directory, a path `/stream` refuses, a different kind of object, a playlist in another
/// directory (the player resolves its relative URIs against the URL it asked for), no
/// `Location`, more than [`MAX_BUCKET_REDIRECTS`] hops —: a `502` in the playback error shape,
/// logged with the target's host only (its query may carry a signature).
fn follow_bucket_redirect(edge: &Edge, resp: &ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
    let Some(Target::Stream(m)) = &mut ctx.target else {
        return Ok(());
    };
    let location = resp
        .headers
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok());
    let followed = match location {
        None => Err(RedirectRefusal::NoLocation),
        Some(_) if ctx.bucket_redirects >= MAX_BUCKET_REDIRECTS => Err(RedirectRefusal::TooMany),
        Some(loc) => edge
            .upstream
            .follow(&m.upstream_path, loc, m.path.kind, &edge.extensions),
    };
    let status = resp.status.as_u16();
    match followed {
        Ok((path, _)) => {
            ctx.bucket_redirects += 1;
            tracing::debug!(
                status,
                hop = ctx.bucket_redirects,
                "following the bucket's redirect"
            );
            m.upstream_path = path;
            let mut e = Error::explain(
                ErrorType::Custom(BUCKET_REDIRECT),
                "asking again at the bucket's redirect target",
            );
            e.set_retry(true);
            Err(e)
        }
        Err(why) => {
            ctx.upstream_error = true;
            metrics::UPSTREAM_ERRORS
                .with_label_values(&["redirect"])
                .inc();
            tracing::warn!(status, reason = %why, "refused the bucket's redirect");
            ctx.refusal = Some((502, "Upstream redirect refused".into()));
            Error::e_explain(ErrorType::HTTPStatus(502), "bucket redirect refused")
        }
    }
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

/// Answers after which Pingora does not serve another request on the connection, so the
/// answer must say `Connection: close` (a `keep-alive` left the client's next request
/// unanswered): a stale object served because its revalidation failed (an origin error, an
/// origin 5xx — the phase is `Stale` only then: a revalidation that worked is `Revalidated`,
/// a new object `Miss`/`Expired`), and a `304` made for a conditional request on a miss, whose
/// upstream body is still being read into the cache behind the header-only answer.
fn ends_the_connection(phase: CachePhase, status: u16) -> bool {
    match phase {
        CachePhase::Stale => true,
        CachePhase::Miss | CachePhase::Expired => status == 304,
        _ => false,
    }
}

/// `response_filter`: what players see (hits and misses alike).
pub(super) fn downstream(
    edge: &Edge,
    session: &mut Session,
    resp: &mut ResponseHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    if !ctx.request_id.is_empty() {
        resp.insert_header(crate::request_id::HEADER, &ctx.request_id)?;
    }
    let Some(target) = &ctx.target else {
        return Ok(());
    };
    if ctx.fleet.from_peer.is_some() {
        // Another node stores and rewrites it for its own players.
        return super::fleet::to_peer(session, resp);
    }
    let phase = session.cache.phase();
    resp.insert_header("x-cache-status", super::cache_status(phase))?;
    if ends_the_connection(phase, resp.status.as_u16()) {
        resp.insert_header(http::header::CONNECTION, "close")?;
        session.set_keepalive(None);
    }
    resp.remove_header(&http::header::SET_COOKIE);
    resp.insert_header("access-control-allow-origin", "*")?;
    // Players on any origin may measure their media fetches (QoE: Resource Timing).
    resp.insert_header("timing-allow-origin", "*")?;
    resp.insert_header(
        "access-control-expose-headers",
        "Content-Length, Content-Range, Accept-Ranges, x-cache-status",
    )?;
    resp.insert_header("x-content-type-options", "nosniff")?;
    let status = resp.status.as_u16();
    if status == 404 || resp.status.is_server_error() {
        // The origin's own error body (S3 XML, HTML) is not for players.
        let msg = if status == 404 {
            "Not found"
        } else {
            "Upstream error"
        };
        resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        // Framed, so the connection stays usable (a body that ends only at close would not
        // be): by the replacement's length when the origin sent a body to swap (an empty
        // one never gets here, see `upstream`), else chunked.
        let replacement = json_error_body(msg);
        if resp.headers.contains_key(http::header::CONTENT_LENGTH) {
            resp.insert_header(http::header::CONTENT_LENGTH, replacement.len())?;
        } else {
            resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        ctx.body_swap = BodySwap::Pending(replacement);
        return Ok(());
    }
    let (path, manifest) = match target {
        Target::Stream(m) => (m.path.rest_joined(), m.path.kind.is_manifest()),
        Target::Proxy(p) => (p.url.path().to_string(), false),
    };
    let origin_type = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // A multi-range 206 (Pingora's range filter made it from the stored object) is typed by its
    // parts' boundary: retyping it as the media lost the boundary, and the body could not be
    // split by the player.
    let multipart = status == 206
        && origin_type.as_deref().is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/byteranges")
        });
    if !multipart {
        resp.insert_header(
            http::header::CONTENT_TYPE,
            media_content_type(origin_type.as_deref(), &path),
        )?;
    }
    if resp.status.is_success() || status == 304 {
        let origin = OriginFreshness::of(resp, std::time::SystemTime::now());
        let cc = players_cache_control(
            &origin,
            manifest,
            ctx.gate.is_some(),
            edge.state.config.stream.playlist_max_age.as_secs(),
        );
        resp.insert_header(http::header::CACHE_CONTROL, cc)?;
    }
    Ok(())
}

/// `response_body_filter`: the replacement body goes out with the first chunk (on a cache
/// miss the end of the body arrives as a separate `Done` task that never reaches this
/// filter).
pub(super) fn body(
    session: &Session,
    body: &mut Option<bytes::Bytes>,
    end_of_stream: bool,
    ctx: &mut RequestCtx,
) {
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
}

/// `fail_to_proxy`: the answer for a failure before the response header went out.
pub(super) async fn failure(
    edge: &Edge,
    session: &mut Session,
    e: &Error,
    ctx: &mut RequestCtx,
) -> FailToProxy {
    let (code, kind) = match e.etype() {
        ErrorType::HTTPStatus(code) => (*code, None),
        // Pingora's retries (`server.max_retries`) ran out before the redirects did.
        ErrorType::Custom(BUCKET_REDIRECT) => (502, Some("redirect")),
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
        let msg = match (&ctx.refusal, code) {
            (Some((_, m)), _) => m.clone(),
            (None, 502) => "Upstream error".into(),
            (None, 504) => "Upstream timed out".into(),
            _ => "Internal error".into(),
        };
        if ctx.refusal.is_none() {
            tracing::warn!(error = %e, status = code, "proxy failed");
        }
        // The header may already be out (failure mid-body); then there is nothing to send.
        if session.response_written().is_none() {
            // A use reserved at admission goes back before the failure is written, as on
            // every other failed answer (super::gate::settle_before_answer).
            super::gate::settle_before_answer(&edge.state, ctx, code).await;
            // Pingora does not reuse a connection after a failed proxy attempt: say so.
            session.set_keepalive(None);
            let _ = respond::json(session, code, json_error_body(&msg)).await;
        }
    }
    FailToProxy {
        error_code: code,
        can_reuse_downstream: false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stale_answers_and_304s_on_a_miss_end_the_connection() {
        use super::{ends_the_connection, CachePhase};
        assert!(ends_the_connection(CachePhase::Stale, 200));
        assert!(ends_the_connection(CachePhase::Miss, 304));
        assert!(ends_the_connection(CachePhase::Expired, 304));
        assert!(!ends_the_connection(CachePhase::Miss, 200));
        assert!(!ends_the_connection(CachePhase::Hit, 304));
        assert!(!ends_the_connection(CachePhase::Revalidated, 304));
        assert!(!ends_the_connection(CachePhase::StaleUpdating, 200));
    }

    use super::*;

    fn origin(headers: &[(&str, &str)]) -> OriginFreshness {
        let mut r = ResponseHeader::build(200, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        OriginFreshness::of(&r, std::time::SystemTime::now())
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

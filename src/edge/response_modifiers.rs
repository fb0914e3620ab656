//! The response phases: what the cache may store (`upstream`), what players see
//! (`downstream`, `body`), and answers for failures (`failure`).
//!
//! Rules:
//! - What players are told (`Cache-Control` never fresher than the origin said, CORS, content
//!   type, `nosniff`, `x-cache-status`) is decided by the one writer, [`super::headers`].
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

use super::{headers, json_error_body, proxy, respond, BodySwap, Edge, RequestCtx, Target};
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
    // Only a node speaks for itself: an origin's answer never says a node is busy (an owner
    // relaying it would have its peers skip it). Read before this, from an owner's own
    // answer ([`super::fleet::owner_answered`]).
    resp.remove_header(crate::conn::BUSY_HEADER);
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
        let msg = headers::origin_error_message(status).unwrap_or("Upstream error");
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
    if ends_the_connection(phase, resp.status.as_u16()) {
        resp.insert_header(http::header::CONNECTION, "close")?;
        session.set_keepalive(None);
    }
    resp.remove_header(&http::header::SET_COOKIE);
    let status = resp.status.as_u16();
    let (path, manifest) = match target {
        Target::Stream(m) => (m.path.rest_joined(), m.path.kind.is_manifest()),
        Target::Proxy(p) => (p.url.path().to_string(), false),
    };
    let origin_type = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let origin = OriginFreshness::of(resp, std::time::SystemTime::now());
    let answer = headers::Answer::Relayed(headers::Relayed {
        origin: &origin,
        content_type: origin_type.as_deref(),
        path: &path,
        manifest,
        gated: ctx.gate.is_some(),
        cache_status: super::cache_status(phase),
        // Never longer than the cache itself holds the copy (a live playlist: about half its
        // target duration).
        playlist_max_age: edge
            .state
            .config
            .stream
            .playlist_max_age
            .min(ctx.playlist_fresh_for.unwrap_or(std::time::Duration::MAX))
            .as_secs(),
    });
    headers::told(answer, status).write(resp)?;
    if let Some(msg) = headers::origin_error_message(status) {
        // The origin's own error body (S3 XML, HTML) is not for players. Framed, so the
        // connection stays usable (a body that ends only at close would not be): by the
        // replacement's length when the origin sent a body to swap (an empty one never gets
        // here, see `upstream`), else chunked.
        let replacement = json_error_body(msg);
        if resp.headers.contains_key(http::header::CONTENT_LENGTH) {
            resp.insert_header(http::header::CONTENT_LENGTH, replacement.len())?;
        } else {
            resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        ctx.body_swap = BodySwap::Pending(replacement);
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
}

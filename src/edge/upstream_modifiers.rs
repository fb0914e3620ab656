//! `upstream_request_filter`: the request the origin sees.
//!
//! Built from an allow-list, not a deny-list: a player's credentials, cookies, `Origin`,
//! API keys and whatever else it sends are for sluice, never for the origin. What passes is
//! what a cache fill, a range and a revalidation need ([`FORWARDED`]) — nothing that could
//! make the origin answer one viewer differently from the next, because one stored answer
//! serves them all: not the player's `User-Agent`, `Accept-Language`, `Accept` or
//! `Accept-Encoding` (sluice asks with none, so every fill gets the origin's one identity
//! answer and a `Vary: Accept-Encoding` object is the same for everyone). Then the route adds
//! its own: the object's path and `Host`, and for `/api/proxy` the provider's headers and the
//! context's cookies (URL parameters moved into cookies, the provider's cookies, and those
//! the CDN set for this context earlier — its server-side jar); a fleet node's signature is
//! added after this ([`super::fleet::to_owner`]).
//!
//! A range the cache would fetch whole is asked of the origin as the player asked it when the
//! object is not known to fit the cache ([`super::caching::miss`]).
//!
//! This is the one place: every request to an origin — `/stream`, `/api/proxy`, playlist
//! fills, prefetch fills, a fleet node asking the owner and the owner asking the bucket —
//! runs through [`request`]. The storing side of the same rule is
//! [`crate::cache::policy::shared_by_all`].

use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;

use super::{RequestCtx, Target};
use crate::upstream::Upstream;

/// Request headers a player's request may carry to the origin: none of them can vary a
/// media answer by who asks (validators and ranges name the same object for everyone).
pub const FORWARDED: [&str; 4] = ["range", "if-range", "if-none-match", "if-modified-since"];

/// Keep only the allow-listed headers.
pub fn retain_forwarded(req: &mut RequestHeader) {
    let drop: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|name| !FORWARDED.contains(&name.as_str()))
        .cloned()
        .collect();
    for name in drop {
        req.remove_header(&name);
    }
}

/// `player` is the player's request as it arrived; `req` the one going upstream (Pingora has
/// already dropped its range and conditionals when the answer is for the cache).
pub(super) fn request(
    upstream: &Upstream,
    player: &RequestHeader,
    req: &mut RequestHeader,
    ctx: &RequestCtx,
) -> Result<()> {
    let (path, host) = match &ctx.target {
        Some(Target::Stream(m)) => (m.upstream_path.as_str(), upstream.host_header()),
        Some(Target::Proxy(t)) => (t.path_and_query.as_str(), t.host_header.as_str()),
        None => return Ok(()),
    };
    let uri: http::Uri = path
        .parse()
        .map_err(|e| Error::because(ErrorType::InternalError, "bad upstream path", e))?;
    req.set_uri(uri);
    retain_forwarded(req);
    if ctx.range_through {
        // A miss passed through as a range ([`super::caching::miss`]): the origin is asked
        // for what the player asked.
        for name in [http::header::RANGE, http::header::IF_RANGE] {
            if let Some(v) = player.headers.get(&name) {
                req.insert_header(name, v.clone())?;
            }
        }
    }
    req.insert_header(http::header::HOST, host)?;
    if !ctx.request_id.is_empty() {
        req.insert_header(crate::request_id::HEADER, &ctx.request_id)?;
    }
    if let Some(Target::Proxy(t)) = &ctx.target {
        for (name, value) in &t.provider.headers {
            req.insert_header(name.clone(), value.clone())?;
        }
        if let Some(cookie) = t.cookie_header() {
            req.insert_header(http::header::COOKIE, cookie)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allow_list_passes() {
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        for (k, v) in [
            ("Range", "bytes=0-1"),
            ("User-Agent", "hls.js"),
            ("X-Api-Key", "secret"),
            ("Origin", "https://evil.example"),
            ("X-Player", "p"),
            ("Authorization", "Bearer t"),
            ("Cookie", "a=b"),
            ("X-Forwarded-For", "1.2.3.4"),
            ("If-None-Match", "\"e\""),
            ("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("If-Range", "\"e\""),
            ("Accept-Language", "fr-CH, fr;q=0.9"),
            ("Accept", "application/dash+xml"),
            ("Accept-Encoding", "gzip, br"),
        ] {
            req.insert_header(k, v).unwrap();
        }
        retain_forwarded(&mut req);
        let mut names: Vec<&str> = req.headers.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["if-modified-since", "if-none-match", "if-range", "range"]
        );
    }
}

//! What an HTTP request to the edge may be, decided before routing, the cache or any
//! upstream work.
//!
//! - `CONNECT` and `Upgrade` (WebSocket, h2c…) are refused: sluice serves media and its
//!   APIs, never a tunnel. A `101` from an origin is never relayed either
//!   ([`super::response_modifiers`]).
//! - An HTTP/1.1 request without `Host` is malformed (RFC 9112 §3.2).
//! - A header larger than `limits.max_header_bytes` gets 431 (Pingora accepts up to 1 MiB;
//!   larger is cut by the connection guard, [`crate::conn::guard`]).
//! - Media routes take no body: a `GET` announcing one would hold a cache lock while the
//!   body trickles in, or reach the origin. HTTP/1.1 announces a body in its header; an
//!   HTTP/2 (or HTTP/3) stream announces one by leaving its request open after HEADERS (no
//!   END_STREAM: DATA frames follow), with or without a `content-length`.
//!
//! Every refusal closes the connection: its framing (an upgrade, a body never read) cannot
//! be trusted for a next request.

use pingora_http::RequestHeader;

/// A request refused by the protocol rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Connect,
    Upgrade,
    NoHost,
    HeaderTooLarge,
    Body,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::HeaderTooLarge => 431,
            _ => 400,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Connect => "CONNECT is not supported",
            Refusal::Upgrade => "protocol upgrades are not supported",
            Refusal::NoHost => "Host header is required",
            Refusal::HeaderTooLarge => "Request header is too large",
            Refusal::Body => "media requests take no body",
        }
    }

    /// Metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Connect | Refusal::Upgrade => "upgrade",
            Refusal::NoHost => "no_host",
            Refusal::HeaderTooLarge => "header_too_large",
            Refusal::Body => "body",
        }
    }
}

/// Rules for every route.
pub fn check(req: &RequestHeader, max_header_bytes: usize) -> Option<Refusal> {
    if header_bytes(req) > max_header_bytes {
        return Some(Refusal::HeaderTooLarge);
    }
    if req.method == http::Method::CONNECT {
        return Some(Refusal::Connect);
    }
    if wants_upgrade(req) {
        return Some(Refusal::Upgrade);
    }
    if req.version == http::Version::HTTP_11 && req.headers.get(http::header::HOST).is_none() {
        return Some(Refusal::NoHost);
    }
    None
}

/// The rule for media routes (`/stream`, `/api/proxy`): no request body. `stream_open`: the
/// request's stream has not ended with its header (HTTP/2: HEADERS without END_STREAM), so a
/// body follows whatever the header says.
pub fn check_media(req: &RequestHeader, stream_open: bool) -> Option<Refusal> {
    (stream_open || has_body(req)).then_some(Refusal::Body)
}

/// The request's header size as sent: request line and fields.
pub fn header_bytes(req: &RequestHeader) -> usize {
    let line = req.method.as_str().len() + req.raw_path().len() + 12;
    req.headers
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
        + 2
}

fn wants_upgrade(req: &RequestHeader) -> bool {
    req.headers.contains_key(http::header::UPGRADE)
        || req
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// A body is announced by any `Transfer-Encoding`, or a `Content-Length` other than 0.
fn has_body(req: &RequestHeader) -> bool {
    if req.headers.contains_key(http::header::TRANSFER_ENCODING) {
        return true;
    }
    req.headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .any(|v| v.to_str().map(|s| s.trim() != "0").unwrap_or(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, b"/stream/h/seg.ts", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn upgrades_and_connect_are_refused() {
        let host = ("host", "edge");
        assert_eq!(
            check(&req("GET", &[host, ("upgrade", "websocket")]), 65536),
            Some(Refusal::Upgrade)
        );
        assert_eq!(
            check(
                &req("GET", &[host, ("connection", "keep-alive, Upgrade")]),
                65536
            ),
            Some(Refusal::Upgrade)
        );
        assert_eq!(
            check(&req("CONNECT", &[host]), 65536),
            Some(Refusal::Connect)
        );
        assert_eq!(
            check(&req("GET", &[host, ("connection", "close")]), 65536),
            None
        );
    }

    #[test]
    fn http11_needs_host() {
        assert_eq!(check(&req("GET", &[]), 65536), Some(Refusal::NoHost));
        let mut r10 = req("GET", &[]);
        r10.set_version(http::Version::HTTP_10);
        assert_eq!(check(&r10, 65536), None);
    }

    #[test]
    fn large_headers_get_431() {
        let big = "x".repeat(2000);
        let r = req("GET", &[("host", "edge"), ("x-big", &big)]);
        assert_eq!(check(&r, 1024), Some(Refusal::HeaderTooLarge));
        assert_eq!(check(&r, 4096), None);
        assert!(header_bytes(&r) > 2000);
    }

    #[test]
    fn media_requests_take_no_body() {
        assert_eq!(
            check_media(&req("GET", &[("content-length", "0")]), false),
            None
        );
        assert_eq!(check_media(&req("GET", &[]), false), None);
        assert_eq!(
            check_media(&req("GET", &[("content-length", "100")]), false),
            Some(Refusal::Body)
        );
        assert_eq!(
            check_media(&req("GET", &[("transfer-encoding", "chunked")]), false),
            Some(Refusal::Body)
        );
        // An HTTP/2 stream left open after HEADERS, no content-length.
        assert_eq!(check_media(&req("GET", &[]), true), Some(Refusal::Body));
    }
}

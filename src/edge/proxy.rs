//! `/api/proxy?url=&ctx=` (provider-proxy-api.txt "Stream Proxy"): from the query to a pinned
//! upstream target, or a refusal with the document's status.
//!
//! Order of checks: `url` and `ctx` present (400) → ctx known and live (404; 503 when a
//! fleet's shared state cannot answer) → URL parses
//! (400) → scheme, credentials, host allow-list and literal-IP rules (403, [`crate::ssrf`]) →
//! DNS → every resolved address allowed (403) → connect to the first checked address only.
//! The upstream connection is made to that address, so a second DNS answer cannot move it.

use std::net::SocketAddr;
use std::sync::Arc;

use url::Url;

use crate::config::providers::{Provider, Providers};
use crate::media::llhls;
use crate::rewrite::json::{self, Document};
use crate::ssrf::{self, Refusal};
use crate::store::ctx::{CtxStore, ProxyContext};

/// A checked upstream for one proxied request.
#[derive(Debug, Clone)]
pub struct ProxiedTarget {
    /// The upstream URL as fetched (after moving configured params into cookies).
    pub url: Url,
    pub addr: SocketAddr,
    pub tls: bool,
    pub sni: String,
    pub host_header: String,
    pub path_and_query: String,
    /// Cookies every request of this target sends: converted URL params, then the
    /// provider's cookies (the context's jar is added per request, [`Self::cookie_header`]).
    pub cookies: Vec<(String, String)>,
    pub provider: Arc<Provider>,
    /// The context behind the ctx token (its cookie jar).
    pub context: Arc<ProxyContext>,
    /// An LL-HLS blocking playlist reload (`_HLS_msn` honoured and forwarded).
    pub blocking: bool,
    /// The upstream URL as the player named it, before parameters moved into cookies: where
    /// a playlist's `EXT-X-DEFINE:QUERYPARAM` values come from.
    pub requested: Url,
    /// The JSON document the proxied URL says this is (`doc=`), rewritten by the edge.
    pub document: Option<Document>,
    pub ctx_token: String,
    /// Cache key: the provider and the upstream URL (scheme, host, port, path, query minus
    /// the provider's credential parameters), never the ctx.
    pub cache_primary: String,
}

impl ProxiedTarget {
    /// Forward honoured LL-HLS delivery directives (canonical, [`llhls::judge`]): appended
    /// to the upstream URL, so they are in the request and in the cache key.
    pub fn add_directives(&mut self, directives: &str) {
        let query = match self.url.query() {
            Some(q) if !q.is_empty() => format!("{q}&{directives}"),
            _ => directives.to_string(),
        };
        self.url.set_query(Some(&query));
        self.path_and_query = format!("{}?{query}", self.url.path());
        self.cache_primary = self.provider.cache_primary(&self.url);
        self.blocking = llhls::is_blocking(directives);
    }

    /// The `Cookie` header of one upstream request: fixed cookies, then the jar's.
    pub fn cookie_header(&self) -> Option<String> {
        let jar = self.context.jar.cookies_for(&self.url);
        let all: Vec<&(String, String)> = self
            .cookies
            .iter()
            .chain(
                jar.iter()
                    .filter(|(n, _)| !self.cookies.iter().any(|(f, _)| f == n)),
            )
            .collect();
        crate::provider::cookie_header(all)
    }
}

/// What [`check_request`] established before DNS.
#[derive(Clone)]
pub struct Checked {
    pub url: Url,
    pub provider: Arc<Provider>,
    pub context: Arc<ProxyContext>,
    pub token: String,
    /// The `_HLS_*` pairs the request carried (removed from `url`), for the edge to judge.
    pub directives: Option<String>,
    /// See [`ProxiedTarget::requested`].
    pub requested: Url,
    /// See [`ProxiedTarget::document`].
    pub document: Option<Document>,
}

/// A refusal: status and the message for `{"error": …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRefusal {
    pub status: u16,
    pub message: String,
}

impl ProxyRefusal {
    fn new(status: u16, message: impl Into<String>) -> ProxyRefusal {
        ProxyRefusal {
            status,
            message: message.into(),
        }
    }
}

impl From<Refusal> for ProxyRefusal {
    fn from(r: Refusal) -> Self {
        ProxyRefusal::new(403, format!("URL not allowed: {r}"))
    }
}

/// `url` and `ctx` from the query string.
///
/// Values are percent-decoded only: a `+` stays a `+`. sluice writes every proxied URL with
/// spaces as `%20` and `+` as `%2B`, so a literal `+` here was put in by the player itself,
/// substituting a value into a template after sluice encoded it (a DASH
/// `$RepresentationID$`, an HLS `{$variable}`), and means `+`. Read as a form (`+` is a space)
/// it became a space and the origin answered 404.
pub fn parse_query(query: Option<&str>) -> Result<(String, String), ProxyRefusal> {
    let mut url = None;
    let mut ctx = None;
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let value = || {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        };
        match k {
            "url" if url.is_none() => url = Some(value()),
            "ctx" if ctx.is_none() => ctx = Some(value()),
            _ => {}
        }
    }
    match (url, ctx) {
        (Some(u), Some(c)) if !u.is_empty() && !c.is_empty() => Ok((u, c)),
        _ => Err(ProxyRefusal::new(400, "Missing url or ctx parameter")),
    }
}

/// Move the named query parameters out of the URL; returns them as cookies.
pub fn params_to_cookies(url: &mut Url, names: &[String]) -> Vec<(String, String)> {
    if names.is_empty() || url.query().is_none() {
        return Vec::new();
    }
    let mut cookies = Vec::new();
    let mut kept = Vec::new();
    for (k, v) in url.query_pairs() {
        if names.iter().any(|n| n == k.as_ref()) && crate::config::providers::is_cookie_value(&v) {
            cookies.push((k.into_owned(), v.into_owned()));
        } else {
            kept.push((k.into_owned(), v.into_owned()));
        }
    }
    if cookies.is_empty() {
        return cookies;
    }
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    cookies
}

/// Everything up to DNS: the context, the provider and the URL checks. `path` is the request
/// path: `/api/proxy` (url and ctx in the query) or the path form
/// `/api/proxy/{ctx}/{scheme}/{authority}/{path}` (the query is the upstream URL's).
pub async fn check_request(
    path: &str,
    query: Option<&str>,
    store: &dyn CtxStore,
    providers: &Providers,
    own: &[SocketAddr],
) -> Result<Checked, ProxyRefusal> {
    let (raw_url, token) = if path == "/api/proxy" {
        parse_query(query)?
    } else {
        crate::rewrite::unwrap_proxy_path(path, query)
            .ok_or_else(|| ProxyRefusal::new(400, "Invalid proxy path"))?
    };
    // A fleet's ctx store that cannot answer fails closed.
    let ctx = store
        .get(&token)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "proxy context lookup failed: shared state unavailable");
            ProxyRefusal::new(503, "Service temporarily unavailable")
        })?
        .ok_or_else(|| ProxyRefusal::new(404, "Invalid or expired proxy context"))?;
    let provider = providers
        .by_id
        .get(&ctx.provider)
        .cloned()
        .ok_or_else(|| ProxyRefusal::new(404, "Invalid or expired proxy context"))?;
    if raw_url.len() > 8192 || raw_url.contains(['\r', '\n', '\0']) {
        return Err(ProxyRefusal::new(400, "Invalid url parameter"));
    }
    let mut url =
        Url::parse(&raw_url).map_err(|_| ProxyRefusal::new(400, "Invalid url parameter"))?;
    let query_form = path == "/api/proxy";
    let own_pairs = || {
        query_form
            .then(|| query.unwrap_or("").split('&'))
            .into_iter()
            .flatten()
            .map(|p| p.split_once('=').unwrap_or((p, "")))
    };
    // A cloned content-steering pathway's replacement, which the player put in sluice's own
    // query ([`json::apply_clone`]): applied before every check below.
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let decoded: Vec<(String, String)> = own_pairs()
        .map(|(k, v)| (decode(k), v))
        .filter(|(k, _)| k == json::CLONE_HOST || k.starts_with(json::CLONE_PARAM))
        .map(|(k, v)| (k, decode(v)))
        .collect();
    json::apply_clone(
        &mut url,
        decoded.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .map_err(|e| ProxyRefusal::new(400, format!("Invalid url parameter: {e}")))?;
    ssrf::check_url(&url, &provider.allowed_hosts, provider.allow_private)?;
    let requested = url.clone();
    let document = own_pairs()
        .find(|(k, _)| *k == "doc")
        .and_then(|(_, v)| Document::from_name(v));
    // LL-HLS delivery directives, whether the player appended them to `/api/proxy?url=…` or
    // to the path form's query (the upstream URL's own), leave the URL here; the edge decides
    // whether this playlist advertises them ([`super::directives`], then
    // [`ProxiedTarget::add_directives`]).
    let mut asked = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    // On an interstitials asset list or a steering manifest the `_HLS_*` parameters a player
    // adds to sluice's URL (`_HLS_primary_id`, `_HLS_start_offset`, `_HLS_pathway`,
    // `_HLS_throughput`) are the origin's: they go upstream with the URL.
    let mut forwarded = Vec::new();
    if query_form {
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if llhls::is_directive_name(&k) {
                if document.is_some() {
                    forwarded.push((k.into_owned(), v.into_owned()));
                } else {
                    asked.append_pair(&k, &v);
                    any = true;
                }
            }
        }
    }
    if document.is_none() && url.query_pairs().any(|(k, _)| llhls::is_directive_name(&k)) {
        let mut kept = Vec::new();
        for (k, v) in url.query_pairs() {
            if llhls::is_directive_name(&k) {
                asked.append_pair(&k, &v);
                any = true;
            } else {
                kept.push((k.into_owned(), v.into_owned()));
            }
        }
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    let directives = any.then(|| asked.finish());
    if !forwarded.is_empty() {
        // As the player would have set them on the origin's URL (hls.js `setQueryParam`):
        // a parameter of the same name is replaced, the rest of the query kept byte for byte.
        let mut query: Vec<String> = url
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| {
                let k = p.split_once('=').map_or(*p, |(k, _)| k);
                !p.is_empty() && !forwarded.iter().any(|(f, _)| decode(k) == *f)
            })
            .map(str::to_string)
            .collect();
        let mut added = url::form_urlencoded::Serializer::new(String::new());
        added.extend_pairs(&forwarded);
        query.push(added.finish());
        url.set_query(Some(&query.join("&")));
    }
    if let (Some(ip), Some(port)) = (
        url.host_str()
            .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse().ok()),
        url.port_or_known_default(),
    ) {
        if ssrf::is_own_listener(SocketAddr::new(ip, port), own) {
            return Err(Refusal::OwnListener.into());
        }
    }
    Ok(Checked {
        url,
        provider,
        context: ctx,
        token,
        directives,
        requested,
        document,
    })
}

/// Resolve and pin: every address the name resolves to must be allowed, and none may be
/// sluice's own listener.
pub async fn resolve(checked: Checked, own: &[SocketAddr]) -> Result<ProxiedTarget, ProxyRefusal> {
    let Checked {
        mut url,
        provider,
        context,
        token,
        directives: _,
        requested,
        document,
    } = checked;
    let host = url.host_str().ok_or(Refusal::NoHost)?.to_string();
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tls = url.scheme() == "https";
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare.as_str(), port))
        .await
        .map_err(|_| Refusal::Unresolvable)?
        .collect();
    if addrs.is_empty() {
        return Err(Refusal::Unresolvable.into());
    }
    if addrs.iter().any(|a| ssrf::is_own_listener(*a, own)) {
        crate::metrics::refused(crate::metrics::GateSurface::Proxy, "ssrf");
        return Err(Refusal::OwnListener.into());
    }
    if addrs
        .iter()
        .any(|a| !ssrf::address_allowed(a.ip(), provider.allow_private))
    {
        crate::metrics::refused(crate::metrics::GateSurface::Proxy, "ssrf");
        return Err(Refusal::PrivateAddress.into());
    }
    let mut cookies = params_to_cookies(&mut url, &provider.url_params_to_cookies);
    cookies.extend(provider.cookies.iter().cloned());
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let mut path_and_query = url.path().to_string();
    if let Some(q) = url.query() {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    Ok(ProxiedTarget {
        // Set with the directives the edge honours ([`ProxiedTarget::add_directives`]).
        blocking: false,
        requested,
        document,
        addr: addrs[0],
        tls,
        sni: bare,
        host_header,
        path_and_query,
        cookies,
        cache_primary: provider.cache_primary(&url),
        url,
        provider,
        context,
        ctx_token: token,
    })
}

/// A redirect from upstream: its target as a proxied URL, if the context allows it.
pub fn proxied_location(
    location: &str,
    base: &Url,
    provider: &Provider,
    token: &str,
) -> Result<String, ProxyRefusal> {
    let target = base
        .join(location)
        .map_err(|_| ProxyRefusal::new(502, "Upstream sent an invalid redirect"))?;
    ssrf::check_url(&target, &provider.allowed_hosts, provider.allow_private)?;
    Ok(crate::rewrite::proxy_url(&target, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        assert_eq!(
            parse_query(Some("url=https%3A%2F%2Fa%2Fb.m3u8&ctx=T")),
            Ok(("https://a/b.m3u8".into(), "T".into()))
        );
        // A `+` a player substituted after sluice encoded the URL is a `+`, not a space.
        assert_eq!(
            parse_query(Some("url=https%3A%2F%2Fa%2Fseg-v+1.m4s%3Fq%3Da%2Bb&ctx=T")),
            Ok(("https://a/seg-v+1.m4s?q=a+b".into(), "T".into()))
        );
        for q in [
            None,
            Some(""),
            Some("url=x"),
            Some("ctx=y"),
            Some("url=&ctx=y"),
        ] {
            assert_eq!(parse_query(q).unwrap_err().status, 400, "{q:?}");
        }
    }

    #[test]
    fn params_move_to_cookies() {
        let mut u = Url::parse("https://cdn/x.m3u8?hdnts=exp%3D1~hmac%3Dab&keep=1").unwrap();
        let c = params_to_cookies(&mut u, &["hdnts".into()]);
        assert_eq!(c, vec![("hdnts".to_string(), "exp=1~hmac=ab".to_string())]);
        assert_eq!(u.as_str(), "https://cdn/x.m3u8?keep=1");
        let mut u = Url::parse("https://cdn/x.m3u8?token=abc").unwrap();
        params_to_cookies(&mut u, &["token".into()]);
        assert_eq!(u.as_str(), "https://cdn/x.m3u8");
    }
}

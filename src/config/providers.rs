//! Providers (provider-proxy-api.txt) as configured: the `providers:` section as written
//! ([`ProviderFile`]) and the validated, data-only form [`Providers::from_file`] makes of it,
//! which `Config` holds. What sluice does with a provider at run time (its cache key, the
//! `Cookie` header) is [`crate::provider`]'s.
//!
//! Validation refuses anything that would let a provider entry turn sluice into an open proxy:
//! header values with CR/LF, channel URLs on hosts outside the provider's allow-list,
//! non-http(s) schemes — and any way to the media bucket ([`reaches_bucket`]): a provider's
//! ctx is handed to every viewer, and the bucket holds gated objects.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// `providers.<id>` as written (`Serialize` for `sluice check --dump`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderFile {
    /// Base URL of the provider's API; `channels.*.api` paths are resolved against it.
    #[serde(default)]
    pub api_base: Option<String>,
    /// Headers sent on every upstream request of this provider's streams.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Cookies sent on every upstream request.
    #[serde(default)]
    pub cookies: BTreeMap<String, String>,
    /// Upstream URL query parameters moved into cookies (the document's "Converts URL
    /// parameters to cookies").
    #[serde(default)]
    pub url_params_to_cookies: Vec<String>,
    /// Hosts `/api/proxy` may fetch for this provider: `cdn.example.com` or `*.example.com`,
    /// on their scheme's default port, or with an explicit port (`cdn.example.com:8443`).
    /// Empty: the hosts (and ports) of the channel URLs and of `api_base`. A channel URL's own
    /// host and port are always allowed.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Allow loopback/private/link-local upstream addresses (default: refused).
    #[serde(default)]
    pub allow_private: bool,
    /// Idle lifetime of a ctx token handed out by the stream endpoint: each use extends it.
    #[serde(default = "default_ctx_ttl", with = "humantime_serde")]
    pub ctx_ttl: Duration,
    /// The longest a ctx may live however much it is used (one viewing session).
    #[serde(default = "default_ctx_max_session", with = "humantime_serde")]
    pub ctx_max_session: Duration,
    /// Upstream query parameters that carry credentials, left out of the cache key (the
    /// object is the same whoever's token fetched it).
    #[serde(default = "default_cache_key_ignore")]
    pub cache_key_ignore: Vec<String>,
    /// Parts and segments of a live playlist prefetched into the cache ahead of players
    /// (same ctx and address checks as a player's request); 0, the default, is off.
    #[serde(default)]
    pub prefetch: usize,
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelFile>,
}

fn default_ctx_ttl() -> Duration {
    Duration::from_secs(3600)
}

fn default_ctx_max_session() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// Credential parameters of the common CDNs (Akamai, CloudFront, generic tokens).
pub fn default_cache_key_ignore() -> Vec<String> {
    [
        "hdnts",
        "hdnea",
        "Policy",
        "Signature",
        "Key-Pair-Id",
        "token",
        "Expires",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `providers.<id>.channels.<channel_id>` as written.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelFile {
    /// A fixed upstream stream URL.
    #[serde(default)]
    pub url: Option<String>,
    /// Or: a path (against `api_base`) or URL of the provider API that answers the current
    /// stream URL as JSON.
    #[serde(default)]
    pub api: Option<String>,
    /// JSON pointer to the URL in the API's answer (default `/url`).
    #[serde(default)]
    pub url_pointer: Option<String>,
    #[serde(rename = "type")]
    pub stream_type: StreamType,
    #[serde(default)]
    pub drm: Option<Drm>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamType {
    Hls,
    Dash,
}

/// The document's DRM object, returned as is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Drm {
    pub system: String,
    pub license_url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Where a channel's stream URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelSource {
    Fixed(Url),
    Api { url: Url, pointer: String },
}

#[derive(Debug, Clone)]
pub struct Channel {
    pub source: ChannelSource,
    pub stream_type: StreamType,
    pub drm: Option<Drm>,
}

/// One validated provider.
#[derive(Debug, Clone)]
pub struct Provider {
    pub id: String,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub cookies: Vec<(String, String)>,
    pub url_params_to_cookies: Vec<String>,
    pub allowed_hosts: HostList,
    pub allow_private: bool,
    pub ctx_ttl: Duration,
    pub ctx_max_session: Duration,
    pub cache_key_ignore: Vec<String>,
    pub prefetch: usize,
    pub channels: BTreeMap<String, Channel>,
}

/// Exact hosts and `*.suffix` patterns, lower-case, each on its scheme's default port or an
/// explicit one — minus the media bucket, which no entry can open ([`Self::reaches_bucket`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostList {
    exact: Vec<(String, Option<u16>)>,
    suffixes: Vec<(String, Option<u16>)>,
    /// The bucket, never reachable whatever the entries say (a wildcard may cover its host).
    bucket: Option<BucketOrigin>,
}

/// The media bucket (`origins.bucket`) as the origin no provider may reach, in canonical form.
///
/// It is named by its host names (the URL's, and `origins.host_header`'s: the virtual host it
/// answers as) and its port — never by addresses, which unrelated hosts share on CDNs (so
/// `origins.resolve` plays no part). A bucket on a web default port (80 or 443) is taken to
/// answer on the other one too, as object stores do for `http`/`https`. With a path prefix,
/// only paths below it are the bucket: the rest of a shared host stays reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketOrigin {
    hosts: Vec<String>,
    ports: Vec<u16>,
    /// The prefix's segments as [`path_segments`] gives them (empty: the whole host).
    prefix: Vec<String>,
}

impl BucketOrigin {
    /// The origin of an HTTP bucket sent `host_header` (`origins.host_header`); `None` for a
    /// `dir:` bucket (a private socket no URL names).
    pub fn of(bucket: &super::Bucket, host_header: Option<&str>) -> Option<BucketOrigin> {
        let super::Bucket::Http(u) = bucket else {
            return None;
        };
        let mut hosts = vec![canonical_host(&u.host)];
        if let Some(h) = host_header {
            let name = split_port(h.trim()).map_or_else(|_| h.to_string(), |(n, _)| n);
            hosts.push(canonical_host(&name));
        }
        hosts.sort();
        hosts.dedup();
        let ports = match u.port {
            80 | 443 => vec![80, 443],
            p => vec![p],
        };
        Some(BucketOrigin {
            hosts,
            ports,
            prefix: path_segments(&u.prefix),
        })
    }
}

/// Whether `url` reaches the media bucket: its canonical host (lower-case, no trailing dot,
/// IDNA, IP literals in one spelling) names the bucket, on a port the bucket answers, and —
/// when the bucket has a path prefix — its path is at or below the prefix (decoded, dot
/// segments and empty segments dropped, without ASCII case: what some origin might still
/// take for the prefix). The one rule behind every check, at load and per request.
pub fn reaches_bucket(url: &Url, bucket: &BucketOrigin) -> bool {
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    bucket.hosts.contains(&canonical_host(host))
        && bucket.ports.contains(&port)
        && path_segments(url.path()).starts_with(&bucket.prefix)
}

/// A URL path as an origin may read it: percent-decoded, split on `/` and `\`, empty and `.`
/// segments dropped, `..` applied, ASCII-lowercased.
fn path_segments(path: &str) -> Vec<String> {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let mut out: Vec<String> = Vec::new();
    for seg in decoded.split(['/', '\\']) {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_ascii_lowercase()),
        }
    }
    out
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_port(entry: &str) -> Result<(String, Option<u16>), String> {
    let bad = || format!("`{entry}` is not a host or host:port");
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_string(), Some(p.parse().map_err(|_| bad())?))),
            None if after.is_empty() => Ok((host.to_string(), None)),
            None => Err(bad()),
        };
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            Ok((host.to_string(), Some(port.parse().map_err(|_| bad())?)))
        }
        Some(_) => Ok((entry.to_string(), None)), // a bare IPv6 address
        None => Ok((entry.to_string(), None)),
    }
}

impl HostList {
    pub fn parse(entries: &[String]) -> Result<HostList, String> {
        let mut list = HostList::default();
        for e in entries {
            let e = e.trim().to_ascii_lowercase();
            let (host, port) = split_port(&e)?;
            if let Some(suffix) = host.strip_prefix("*.") {
                if suffix.is_empty() || suffix.contains('*') || !suffix.contains('.') {
                    return Err(format!(
                        "`{e}`: a wildcard needs a domain with a dot, like *.example.com"
                    ));
                }
                list.suffixes.push((format!(".{suffix}"), port));
            } else if host.is_empty() || host.contains('*') || host.contains('/') {
                return Err(format!("`{e}` is not a host name"));
            } else {
                list.push(&host, port);
            }
        }
        Ok(list)
    }

    /// Allow `host` on `port` (`None`: the scheme's default port).
    pub fn push(&mut self, host: &str, port: Option<u16>) {
        let entry = (canonical_host(host), port);
        if !self.exact.contains(&entry) {
            self.exact.push(entry);
        }
    }

    /// Allow a URL's own host and port.
    pub fn push_url(&mut self, url: &Url) {
        let host = url.host_str().unwrap_or_default();
        self.push(host, url.port());
    }

    /// Whether `host` on `port` is allowed; `default_port` is the URL scheme's. An entry
    /// without a port allows the default port only: `cdn.example.com` never opens
    /// `cdn.example.com:8000`. `*.example.com` matches `a.example.com` and `a.b.example.com`,
    /// not `example.com`.
    pub fn allows(&self, host: &str, port: u16, default_port: u16) -> bool {
        let h = canonical_host(host);
        let h = h.as_str();
        let port_ok = |p: &Option<u16>| p.unwrap_or(default_port) == port;
        self.exact.iter().any(|(e, p)| e == h && port_ok(p))
            || self
                .suffixes
                .iter()
                .any(|(s, p)| h.ends_with(s.as_str()) && h.len() > s.len() && port_ok(p))
    }

    /// Whether a URL's host and port are allowed.
    pub fn allows_url(&self, url: &Url) -> bool {
        let (Some(host), Some(port), Some(default)) = (
            url.host_str(),
            url.port_or_known_default(),
            default_port(url.scheme()),
        ) else {
            return false;
        };
        self.allows(host, port, default)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty()
    }

    /// Close the bucket to this list, whatever its entries allow.
    pub fn exclude_bucket(&mut self, bucket: &BucketOrigin) {
        self.bucket = Some(bucket.clone());
    }

    /// Whether `url` is on the bucket this list excludes ([`reaches_bucket`]).
    pub fn reaches_bucket(&self, url: &Url) -> bool {
        self.bucket.as_ref().is_some_and(|b| reaches_bucket(url, b))
    }

    /// The first exact entry that opens the bucket: its host, on the entry's port or either
    /// scheme's default, at the root path (so a bucket with a path prefix leaves a shared
    /// host's entry allowed; the prefix is refused per request).
    fn entry_on_bucket(&self, bucket: &BucketOrigin) -> Option<String> {
        self.exact.iter().find_map(|(host, port)| {
            let shown = match host.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(_)) => format!("[{host}]"),
                _ => host.clone(),
            };
            let reaches = ["http", "https"].iter().any(|scheme| {
                let port = port.or(default_port(scheme)).unwrap_or(0);
                Url::parse(&format!("{scheme}://{shown}:{port}/"))
                    .is_ok_and(|u| reaches_bucket(&u, bucket))
            });
            reaches.then(|| match port {
                Some(p) => format!("{shown}:{p}"),
                None => shown,
            })
        })
    }
}

/// The default port of a proxied scheme.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// All providers, by id.
#[derive(Debug, Clone, Default)]
pub struct Providers {
    pub by_id: BTreeMap<String, std::sync::Arc<Provider>>,
}

impl Providers {
    /// Validate; errors are `(dotted key, message)` for the config layer to place. `bucket`:
    /// the media bucket, which no provider URL or allowed host may reach.
    pub fn from_file(
        raw: &BTreeMap<String, ProviderFile>,
        bucket: Option<&BucketOrigin>,
    ) -> Result<Providers, (String, String)> {
        let on_bucket = |url: &Url| bucket.is_some_and(|b| reaches_bucket(url, b));
        let bucket_msg = |what: &str| {
            format!(
                "{what} is on the media bucket's origin (origins.bucket): a provider must never reach the bucket"
            )
        };
        let mut by_id = BTreeMap::new();
        for (id, p) in raw {
            let key = |k: &str| format!("providers.{id}.{k}");
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
            {
                return Err((
                    format!("providers.{id}"),
                    "provider ids use letters, digits, - and _".into(),
                ));
            }
            let api_base = match &p.api_base {
                Some(b) => Some(http_url(b).map_err(|m| (key("api_base"), m))?),
                None => None,
            };
            let mut headers = Vec::new();
            for (name, value) in &p.headers {
                let n = http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| (key("headers"), format!("`{name}` is not a header name")))?;
                if matches!(
                    n.as_str(),
                    "host" | "content-length" | "transfer-encoding" | "connection" | "cookie"
                ) {
                    return Err((
                        key("headers"),
                        format!("`{name}` cannot be injected (use cookies: for cookies)"),
                    ));
                }
                let v = http::HeaderValue::from_str(value).map_err(|_| {
                    (
                        key("headers"),
                        format!("value of `{name}` has characters a header cannot carry"),
                    )
                })?;
                headers.push((n, v));
            }
            let mut cookies = Vec::new();
            for (name, value) in &p.cookies {
                if !is_cookie_token(name) || !is_cookie_value(value) {
                    return Err((
                        key("cookies"),
                        format!("`{name}` is not a valid cookie name/value"),
                    ));
                }
                cookies.push((name.clone(), value.clone()));
            }
            for name in &p.url_params_to_cookies {
                if !is_cookie_token(name) {
                    return Err((
                        key("url_params_to_cookies"),
                        format!("`{name}` is not a valid cookie name"),
                    ));
                }
            }
            let mut allowed_hosts =
                HostList::parse(&p.allowed_hosts).map_err(|m| (key("allowed_hosts"), m))?;
            if let Some(entry) = bucket.and_then(|b| allowed_hosts.entry_on_bucket(b)) {
                return Err((key("allowed_hosts"), bucket_msg(&format!("`{entry}`"))));
            }
            let derive_hosts = allowed_hosts.is_empty();
            if derive_hosts {
                if let Some(u) = &api_base {
                    // Its host becomes reachable through `/api/proxy`: never the bucket's.
                    if on_bucket(u) {
                        return Err((key("api_base"), bucket_msg("`api_base`")));
                    }
                    allowed_hosts.push_url(u);
                }
            }
            let mut channels = BTreeMap::new();
            for (cid, c) in &p.channels {
                let ckey = |k: &str| format!("providers.{id}.channels.{cid}.{k}");
                let source = match (&c.url, &c.api) {
                    (Some(u), None) => {
                        let url = http_url(u).map_err(|m| (ckey("url"), m))?;
                        if on_bucket(&url) {
                            return Err((ckey("url"), bucket_msg(&format!("`{u}`"))));
                        }
                        let host = url.host_str().unwrap_or_default().to_string();
                        let named = derive_hosts || {
                            let default = default_port(url.scheme()).unwrap_or(0);
                            allowed_hosts.allows(&host, default, default)
                                || allowed_hosts.allows_url(&url)
                        };
                        if !named {
                            return Err((
                                ckey("url"),
                                format!("host `{host}` is not in allowed_hosts"),
                            ));
                        }
                        // A channel URL's own host:port is always reachable.
                        allowed_hosts.push_url(&url);
                        ChannelSource::Fixed(url)
                    }
                    (None, Some(api)) => {
                        let url = match &api_base {
                            Some(base) => {
                                base.join(api).map_err(|e| (ckey("api"), e.to_string()))?
                            }
                            None => http_url(api)
                                .map_err(|m| (ckey("api"), format!("{m} (or set api_base)")))?,
                        };
                        ChannelSource::Api {
                            url,
                            pointer: c.url_pointer.clone().unwrap_or_else(|| "/url".into()),
                        }
                    }
                    _ => {
                        return Err((
                            format!("providers.{id}.channels.{cid}"),
                            "give exactly one of `url` or `api`".into(),
                        ))
                    }
                };
                if let Some(drm) = &c.drm {
                    if !matches!(drm.system.as_str(), "widevine" | "playready" | "fairplay") {
                        return Err((
                            ckey("drm.system"),
                            "use widevine, playready or fairplay".into(),
                        ));
                    }
                    http_url(&drm.license_url).map_err(|m| (ckey("drm.license_url"), m))?;
                }
                channels.insert(
                    cid.clone(),
                    Channel {
                        source,
                        stream_type: c.stream_type,
                        drm: c.drm.clone(),
                    },
                );
            }
            if p.ctx_ttl.is_zero() || p.ctx_ttl > Duration::from_secs(7 * 86400) {
                return Err((key("ctx_ttl"), "must be between 1s and 7d".into()));
            }
            if p.ctx_max_session < p.ctx_ttl || p.ctx_max_session > Duration::from_secs(30 * 86400)
            {
                return Err((
                    key("ctx_max_session"),
                    "must be at least ctx_ttl and at most 30d".into(),
                ));
            }
            for name in &p.cache_key_ignore {
                if name.is_empty() || name.contains(['&', '=', '#']) {
                    return Err((
                        key("cache_key_ignore"),
                        format!("`{name}` is not a query parameter name"),
                    ));
                }
            }
            if let Some(b) = bucket {
                allowed_hosts.exclude_bucket(b);
            }
            by_id.insert(
                id.clone(),
                std::sync::Arc::new(Provider {
                    id: id.clone(),
                    headers,
                    cookies,
                    url_params_to_cookies: p.url_params_to_cookies.clone(),
                    allowed_hosts,
                    allow_private: p.allow_private,
                    ctx_ttl: p.ctx_ttl,
                    ctx_max_session: p.ctx_max_session,
                    cache_key_ignore: p.cache_key_ignore.clone(),
                    prefetch: p.prefetch.min(16),
                    channels,
                }),
            );
        }
        Ok(Providers { by_id })
    }
}

/// Lower-case, IDNA (the `url` crate's host parser: `MÉDIA.example` is
/// `xn--mdia-bpa.example`), no trailing dot, no IPv6 brackets, IP literals in one spelling
/// (IPv4-mapped IPv6 as IPv4).
pub fn canonical_host(host: &str) -> String {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let h = h.strip_suffix('.').unwrap_or(h);
    let ip = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(ip, std::net::IpAddr::V4)
            .to_string(),
        v4 => v4.to_string(),
    };
    if let Ok(addr) = h.parse::<std::net::IpAddr>() {
        return ip(addr);
    }
    match url::Host::parse(h) {
        Ok(url::Host::Domain(d)) => d.trim_end_matches('.').to_string(),
        Ok(url::Host::Ipv4(v4)) => ip(v4.into()),
        Ok(url::Host::Ipv6(v6)) => ip(v6.into()),
        Err(_) => h.trim_end_matches('.').to_ascii_lowercase(),
    }
}

fn http_url(s: &str) -> Result<Url, String> {
    let u = Url::parse(s).map_err(|e| format!("`{s}`: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!("`{s}`: only http(s) URLs with a host"));
    }
    Ok(u)
}

/// RFC 6265 cookie-name token.
pub fn is_cookie_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(
                    b,
                    b'(' | b')'
                        | b'<'
                        | b'>'
                        | b'@'
                        | b','
                        | b';'
                        | b':'
                        | b'\\'
                        | b'"'
                        | b'/'
                        | b'['
                        | b']'
                        | b'?'
                        | b'='
                        | b'{'
                        | b'}'
                )
        })
}

/// RFC 6265 cookie-octets (no quotes, commas, semicolons, backslashes, whitespace).
pub fn is_cookie_value(s: &str) -> bool {
    s.bytes().all(|b| {
        b == 0x21
            || (0x23..=0x2B).contains(&b)
            || (0x2D..=0x3A).contains(&b)
            || (0x3C..=0x5B).contains(&b)
            || (0x5D..=0x7E).contains(&b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Providers, (String, String)> {
        let raw: BTreeMap<String, ProviderFile> = serde_yaml::from_str(yaml).unwrap();
        Providers::from_file(&raw, None)
    }

    #[test]
    fn host_lists() {
        let l = HostList::parse(&[
            "cdn.example.com".into(),
            "*.akamaized.net".into(),
            "media.example.com:8443".into(),
            "[::1]:9000".into(),
        ])
        .unwrap();
        let a = |h: &str| l.allows(h, 443, 443);
        assert!(a("cdn.example.com"));
        assert!(a("CDN.example.com."));
        assert!(a("a.b.akamaized.net"));
        assert!(!a("akamaized.net"));
        assert!(!a("evilakamaized.net"));
        assert!(!a("cdn.example.com.evil.io"));
        // Ports: the default one unless listed.
        assert!(!l.allows("cdn.example.com", 8000, 443));
        assert!(l.allows("media.example.com", 8443, 443));
        assert!(!l.allows("media.example.com", 443, 443));
        assert!(l.allows("::1", 9000, 80) && !l.allows("::1", 80, 80));
        assert!(HostList::parse(&["a.example:http".into()]).is_err());
        assert!(HostList::parse(&["*".into()]).is_err());
        assert!(HostList::parse(&["*.com*".into()]).is_err());
    }

    #[test]
    fn providers_validate_and_derive_hosts() {
        let p = parse(
            "acme:\n  headers: {Referer: https://acme.example/}\n  cookies: {sid: abc}\n  channels:\n    ch1: {url: 'https://cdn.acme.example/live/ch1.m3u8', type: hls}\n    ch2: {url: 'https://cdn2.acme.example/a.mpd', type: dash, drm: {system: widevine, license_url: 'https://lic.example/wv', headers: {X-Custom-Data: u1}}}\n",
        )
        .unwrap();
        let acme = &p.by_id["acme"];
        assert!(acme.allowed_hosts.allows("cdn.acme.example", 443, 443));
        assert!(acme.allowed_hosts.allows("cdn2.acme.example", 443, 443));
        assert!(!acme.allowed_hosts.allows("cdn.acme.example", 8080, 443));
        assert!(!acme.allowed_hosts.allows("lic.example", 443, 443));
        assert_eq!(acme.channels["ch2"].stream_type, StreamType::Dash);
    }

    fn bucket(url: &str, host_header: Option<&str>) -> BucketOrigin {
        let b = crate::config::parse_bucket(url).unwrap();
        BucketOrigin::of(&b, host_header).unwrap()
    }

    fn reaches(b: &BucketOrigin, url: &str) -> bool {
        reaches_bucket(&Url::parse(url).unwrap(), b)
    }

    #[test]
    fn canonical_hosts() {
        assert_eq!(canonical_host("CDN.Example.COM."), "cdn.example.com");
        assert_eq!(canonical_host("MÉDIA.example"), "xn--mdia-bpa.example");
        assert_eq!(canonical_host("[::FFFF:127.0.0.1]"), "127.0.0.1");
        assert_eq!(canonical_host("[2001:DB8::1]"), "2001:db8::1");
        assert_eq!(canonical_host("0x7f.1"), "127.0.0.1");
    }

    #[test]
    fn the_bucket_in_every_spelling() {
        let b = bucket("https://media.example.com", None);
        for u in [
            "https://media.example.com/movie-1/seg.ts",
            "https://MEDIA.Example.com/movie-1/seg.ts",
            "https://media.example.com./movie-1/seg.ts",
            "https://media.example.com:443/movie-1/seg.ts",
            // The same host on the other web default port: object stores serve both.
            "http://media.example.com/movie-1/seg.ts",
            "http://media.example.com:80/",
        ] {
            assert!(reaches(&b, u), "{u}");
        }
        for u in [
            "https://media.example.com:8443/x",
            "https://cdn.example.com/x",
            "https://media.example.com.evil.io/x",
            "https://sub.media.example.com/x",
        ] {
            assert!(!reaches(&b, u), "{u}");
        }
        // IDNA: the bucket configured in Unicode or in punycode is one host.
        let b = bucket("https://MÉDIA.example/", None);
        assert!(reaches(&b, "https://xn--mdia-bpa.example/x"));
        assert!(reaches(&b, "https://média.EXAMPLE./x"));
        // IP literals in one spelling; a non-default port is that port only.
        let b = bucket("http://127.0.0.1:9000", None);
        assert!(reaches(&b, "http://[::ffff:127.0.0.1]:9000/x"));
        assert!(reaches(&b, "http://2130706433:9000/x"));
        assert!(reaches(&b, "https://127.0.0.1:9000/x"));
        assert!(!reaches(&b, "http://127.0.0.1:9001/x"));
        assert!(!reaches(&b, "http://127.0.0.2:9000/x"));
        // Its other name, the Host it is sent; never an address another name resolves to.
        let b = bucket("http://10.0.0.5:9000", Some("Media.Internal:9000"));
        assert!(reaches(&b, "http://media.internal:9000/x"));
        assert!(!reaches(&b, "http://media.internal:9001/x"));
        assert!(!reaches(&b, "http://storage.internal:9000/x"));
    }

    #[test]
    fn a_shared_host_is_the_bucket_below_its_prefix_only() {
        let b = bucket("http://storage.example:9000/media/", None);
        for u in [
            "http://storage.example:9000/media",
            "http://storage.example:9000/media/movie-1/seg.ts",
            "http://STORAGE.example.:9000/MEDIA/movie-1/seg.ts",
            "http://storage.example:9000//media//movie-1/seg.ts",
            "http://storage.example:9000/live/../media/seg.ts",
            "http://storage.example:9000/live/%2e%2e/media/seg.ts",
            "http://storage.example:9000/live%2F..%2Fmedia/seg.ts",
            "http://storage.example:9000/%6Dedia/seg.ts",
            "http://storage.example:9000/./media/seg.ts",
            "http://storage.example:9000/live\\..\\media/seg.ts",
        ] {
            assert!(reaches(&b, u), "{u}");
        }
        for u in [
            "http://storage.example:9000/",
            "http://storage.example:9000/live/ch1.m3u8",
            "http://storage.example:9000/mediax/seg.ts",
            "http://storage.example:9000/live/media/seg.ts",
        ] {
            assert!(!reaches(&b, u), "{u}");
        }
    }

    #[test]
    fn providers_never_reach_the_bucket() {
        let b = bucket("https://media.example.com/", None);
        let with = |yaml: &str| {
            let raw: BTreeMap<String, ProviderFile> = serde_yaml::from_str(yaml).unwrap();
            Providers::from_file(&raw, Some(&b))
        };
        let refused = [
            ("x:\n  channels:\n    c: {url: 'https://MEDIA.example.com.:443/a.m3u8', type: hls}\n", "providers.x.channels.c.url"),
            ("x:\n  channels:\n    c: {url: 'http://media.example.com/a.m3u8', type: hls}\n", "providers.x.channels.c.url"),
            ("x:\n  api_base: 'https://Media.Example.com/'\n  channels:\n    c: {api: '/c', type: hls}\n", "providers.x.api_base"),
            ("x:\n  allowed_hosts: [cdn.example.com, 'MEDIA.example.com.']\n  channels:\n    c: {url: 'https://cdn.example.com/a.m3u8', type: hls}\n", "providers.x.allowed_hosts"),
            ("x:\n  allowed_hosts: ['media.example.com:80']\n", "providers.x.allowed_hosts"),
        ];
        for (yaml, key) in refused {
            let e = with(yaml).unwrap_err();
            assert_eq!(e.0, key, "{yaml}");
            assert!(e.1.contains("bucket"), "{e:?}");
        }
        // A channel API is asked by sluice itself, never through `/api/proxy` (the URL it
        // answers is checked per request): accepted, as is an `api_base` whose host is not
        // derived into the list.
        assert!(with(
            "x:\n  channels:\n    c: {api: 'https://media.example.com/api/c', type: hls}\n"
        )
        .is_ok());
        assert!(with("x:\n  api_base: 'https://media.example.com/api/'\n  allowed_hosts: [cdn.example.com]\n  channels:\n    c: {api: 'c', type: hls}\n").is_ok());
        // Another port of the host, or a wildcard: accepted, and the wildcard cannot open
        // the bucket per request.
        let p = with("x:\n  allowed_hosts: ['*.example.com', 'media.example.com:8443']\n  channels:\n    c: {url: 'https://cdn.example.com/a.m3u8', type: hls}\n").unwrap();
        let hosts = &p.by_id["x"].allowed_hosts;
        assert!(hosts.allows_url(&Url::parse("https://media.example.com/a.ts").unwrap()));
        assert!(hosts.reaches_bucket(&Url::parse("https://media.example.com/a.ts").unwrap()));
        assert!(!hosts.reaches_bucket(&Url::parse("https://media.example.com:8443/a").unwrap()));
        // A bucket with a prefix leaves the rest of a shared host to the provider.
        let b = bucket("https://media.example.com/vod", None);
        let raw: BTreeMap<String, ProviderFile> = serde_yaml::from_str(
            "x:\n  allowed_hosts: [media.example.com]\n  channels:\n    c: {url: 'https://media.example.com/live/a.m3u8', type: hls}\n    d: {url: 'https://media.example.com/VOD/a.m3u8', type: hls}\n",
        )
        .unwrap();
        let e = Providers::from_file(&raw, Some(&b)).unwrap_err();
        assert_eq!(e.0, "providers.x.channels.d.url");
        let mut raw = raw;
        raw.get_mut("x").unwrap().channels.remove("d");
        assert!(Providers::from_file(&raw, Some(&b)).is_ok());
    }

    #[test]
    fn providers_refuse_unsafe_entries() {
        let bad = [
            ("x:\n  headers: {X-A: \"a\\r\\nInjected: 1\"}\n", "headers"),
            ("x:\n  headers: {Host: evil}\n", "headers"),
            ("x:\n  cookies: {\"a;b\": c}\n", "cookies"),
            ("x:\n  channels:\n    c: {url: 'file:///etc/passwd', type: hls}\n", "url"),
            ("x:\n  allowed_hosts: [a.example]\n  channels:\n    c: {url: 'https://b.example/x.m3u8', type: hls}\n", "url"),
            ("x:\n  channels:\n    c: {type: hls}\n", "channels.c"),
            ("x:\n  channels:\n    c: {url: 'https://a/x', type: hls, drm: {system: clear, license_url: 'https://l'}}\n", "drm.system"),
        ];
        for (yaml, key) in bad {
            let e = parse(yaml).unwrap_err();
            assert!(e.0.contains(key), "{yaml}: {e:?}");
        }
    }
}

//! A proxy context's server-side cookie jar.
//!
//! Some provider CDNs hand out cookies and want them back (Akamai `hdntl`, CloudFront signed
//! cookies). sluice never lets an origin's `Set-Cookie` reach players — on sluice's own
//! domain it would land in every viewer's browser — nor the cache. Instead the cookies a CDN
//! sets on a context's requests are kept here, per context, and sent back upstream on that
//! context's later requests only (RFC 6265 domain and path matching, `Max-Age`/`Expires`).
//! Bounded: at most [`MAX_COOKIES`] cookies of at most [`MAX_VALUE`] bytes each.

use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use url::Url;

use crate::config::providers::{is_cookie_token, is_cookie_value};

pub const MAX_COOKIES: usize = 32;
pub const MAX_VALUE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    name: String,
    value: String,
    /// Lower-case host (`host_only`) or domain the cookie matches.
    domain: String,
    host_only: bool,
    path: String,
    expires: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct CookieJar {
    cookies: Mutex<Vec<Stored>>,
}

impl CookieJar {
    /// Take a `Set-Cookie` value received for `url`. Malformed, oversized or foreign-domain
    /// cookies are ignored; an expired one removes its stored namesake.
    pub fn store(&self, set_cookie: &str, url: &Url) {
        let Some(host) = url
            .host_str()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        else {
            return;
        };
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim(), value.trim().trim_matches('"'));
        if !is_cookie_token(name) || !is_cookie_value(value) || value.len() > MAX_VALUE {
            return;
        }
        let mut domain = host.clone();
        let mut host_only = true;
        let mut path = default_path(url);
        let mut expires = None;
        let mut expired = false;
        for attr in parts {
            let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "domain" if !v.is_empty() => {
                    let d = v.trim_start_matches('.').to_ascii_lowercase();
                    if !domain_matches(&host, &d) {
                        return; // a cookie for another site
                    }
                    domain = d;
                    host_only = false;
                }
                "path" if v.starts_with('/') => path = v.to_string(),
                "max-age" => match v.parse::<i64>() {
                    Ok(secs) if secs <= 0 => expired = true,
                    Ok(secs) => expires = Some(Instant::now() + Duration::from_secs(secs as u64)),
                    Err(_) => {}
                },
                "expires" if expires.is_none() => {
                    if let Ok(at) = httpdate::parse_http_date(v) {
                        match at.duration_since(SystemTime::now()) {
                            Ok(left) => expires = Some(Instant::now() + left),
                            Err(_) => expired = true,
                        }
                    }
                }
                _ => {}
            }
        }
        let mut jar = self.cookies.lock();
        jar.retain(|c| !(c.name == name && c.domain == domain && c.path == path));
        if expired {
            return;
        }
        let now = Instant::now();
        jar.retain(|c| c.expires.is_none_or(|e| e > now));
        if jar.len() >= MAX_COOKIES {
            jar.remove(0);
        }
        jar.push(Stored {
            name: name.to_string(),
            value: value.to_string(),
            domain,
            host_only,
            path,
            expires,
        });
    }

    /// The `(name, value)` pairs to send with a request for `url`.
    pub fn cookies_for(&self, url: &Url) -> Vec<(String, String)> {
        let Some(host) = url
            .host_str()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        else {
            return Vec::new();
        };
        let now = Instant::now();
        self.cookies
            .lock()
            .iter()
            .filter(|c| c.expires.is_none_or(|e| e > now))
            .filter(|c| {
                if c.host_only {
                    c.domain == host
                } else {
                    domain_matches(&host, &c.domain)
                }
            })
            .filter(|c| path_matches(url.path(), &c.path))
            .map(|c| (c.name.clone(), c.value.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.cookies.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// RFC 6265 §5.1.3: `host` is `domain` or ends with `.domain` (and is not an IP).
fn domain_matches(host: &str, domain: &str) -> bool {
    if domain.is_empty() {
        return false;
    }
    host == domain
        || (host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            && host.parse::<std::net::IpAddr>().is_err())
}

/// RFC 6265 §5.1.4.
fn path_matches(request: &str, cookie: &str) -> bool {
    request == cookie
        || (request.starts_with(cookie)
            && (cookie.ends_with('/') || request.as_bytes().get(cookie.len()) == Some(&b'/')))
}

/// RFC 6265 §5.1.4 default-path: the request path up to its last `/`.
fn default_path(url: &Url) -> String {
    let p = url.path();
    match p.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => p[..i].to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn cookies_go_back_where_they_came_from() {
        let jar = CookieJar::default();
        jar.store(
            "hdntl=exp=1~acl=*~hmac=ab; Path=/live; HttpOnly",
            &u("https://cdn.example.com/live/master.m3u8"),
        );
        jar.store(
            "edge=1; Domain=.example.com; Path=/",
            &u("https://cdn.example.com/live/x.m3u8"),
        );
        jar.store(
            "evil=1; Domain=other.example",
            &u("https://cdn.example.com/live/x.m3u8"),
        );
        assert_eq!(
            jar.cookies_for(&u("https://cdn.example.com/live/seg.ts")),
            vec![
                ("hdntl".to_string(), "exp=1~acl=*~hmac=ab".to_string()),
                ("edge".to_string(), "1".to_string())
            ]
        );
        assert_eq!(
            jar.cookies_for(&u("https://img.example.com/live/seg.ts")),
            vec![("edge".to_string(), "1".to_string())]
        );
        assert!(jar
            .cookies_for(&u("https://cdn.example.com/other/seg.ts"))
            .iter()
            .all(|c| c.0 != "hdntl"));
        assert!(jar.cookies_for(&u("https://other.example/x")).is_empty());
        // Replaced, then expired.
        jar.store(
            "hdntl=new; Path=/live",
            &u("https://cdn.example.com/live/a.m3u8"),
        );
        assert_eq!(
            jar.cookies_for(&u("https://cdn.example.com/live/s.ts"))[1].1,
            "new"
        );
        jar.store(
            "hdntl=x; Path=/live; Max-Age=0",
            &u("https://cdn.example.com/live/a.m3u8"),
        );
        assert!(jar
            .cookies_for(&u("https://cdn.example.com/live/s.ts"))
            .iter()
            .all(|c| c.0 != "hdntl"));
    }

    #[test]
    fn the_jar_is_bounded_and_refuses_garbage() {
        let jar = CookieJar::default();
        for i in 0..100 {
            jar.store(&format!("c{i}=v"), &u("https://cdn.example.com/"));
        }
        assert_eq!(jar.len(), MAX_COOKIES);
        for bad in [
            "novalue",
            "=v",
            "a b=c",
            "a=\u{1}",
            &format!("big={}", "x".repeat(MAX_VALUE + 1)),
        ] {
            let before = jar.len();
            jar.store(bad, &u("https://x.example/"));
            assert_eq!(jar.len(), before, "{bad}");
        }
        assert!(!domain_matches("192.168.0.1", "168.0.1"));
    }
}

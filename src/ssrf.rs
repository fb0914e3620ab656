//! The no-open-proxy rule for `/api/proxy`: which upstream URLs and addresses a provider
//! context may reach. Pure functions; the proxy path resolves the host, checks every address
//! with [`address_allowed`] and pins the connection to the checked address, so a DNS answer
//! that changes between check and connect (rebinding) cannot redirect it.
//!
//! The URL is parsed with the WHATWG rules of the `url` crate, which already turns
//! `http://2130706433/`, `http://0x7f.1/` and `http://0177.0.0.1/` into `127.0.0.1`; the IP
//! checks then see the real address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::Url;

use crate::config::providers::HostList;

/// Why an upstream URL was refused (all are 403 to the player).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("only http and https upstream URLs are proxied")]
    Scheme,
    #[error("upstream URL has no host")]
    NoHost,
    #[error("upstream URLs may not carry credentials")]
    Credentials,
    #[error("host is not allowed for this proxy context")]
    HostNotAllowed,
    #[error("upstream address is not public")]
    PrivateAddress,
    #[error("upstream host did not resolve")]
    Unresolvable,
    #[error("sluice's own listeners are never a proxy target")]
    OwnListener,
    #[error("the media bucket is never a proxy target")]
    Bucket,
}

/// Whether `addr` reaches one of sluice's own listeners: the same port on the listener's
/// address — or, for a listener on a wildcard address, on a loopback, private or local
/// one. Checked on every resolved address, even for providers with `allow_private`.
pub fn is_own_listener(addr: std::net::SocketAddr, own: &[std::net::SocketAddr]) -> bool {
    let ip = crate::client::canonical_ip(addr.ip());
    own.iter().any(|l| {
        l.port() == addr.port()
            && (crate::client::canonical_ip(l.ip()) == ip
                || (l.ip().is_unspecified() && !address_allowed(ip, false))
                || ip.is_loopback() && l.ip().is_loopback())
    })
}

/// Check the parts of a URL that need no DNS: scheme, host allow-list, credentials, the
/// media bucket (never reachable, [`crate::config::providers::reaches_bucket`]), and a
/// literal IP host against the address rules. Every URL a provider context fetches passes
/// here: the player's, each redirect hop's, each URI of a rewritten playlist, a prefetch's,
/// and the one a provider API answers.
pub fn check_url(url: &Url, hosts: &HostList, allow_private: bool) -> Result<(), Refusal> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refusal::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Credentials);
    }
    if hosts.reaches_bucket(url) {
        return Err(Refusal::Bucket);
    }
    let host = url.host().ok_or(Refusal::NoHost)?;
    let name = match &host {
        url::Host::Domain(d) => d.to_string(),
        url::Host::Ipv4(v4) => v4.to_string(),
        url::Host::Ipv6(v6) => v6.to_string(),
    };
    let default = crate::config::providers::default_port(url.scheme()).ok_or(Refusal::Scheme)?;
    let port = url.port_or_known_default().unwrap_or(default);
    if !hosts.allows(&name, port, default) {
        return Err(Refusal::HostNotAllowed);
    }
    let literal = match host {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    };
    if let Some(ip) = literal {
        if !address_allowed(ip, allow_private) {
            return Err(Refusal::PrivateAddress);
        }
    }
    Ok(())
}

/// Whether an address may be contacted: public unicast only, unless `allow_private`.
/// Unspecified, broadcast and multicast are never allowed.
pub fn address_allowed(ip: IpAddr, allow_private: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_allowed(v4, allow_private),
        IpAddr::V6(v6) => {
            // IPv4 carried in IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
            // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the embedded IPv4 address.
            if let Some(v4) = embedded_v4(v6) {
                return v4_allowed(v4, allow_private);
            }
            if v6.is_unspecified() || v6.is_multicast() {
                return false;
            }
            let s = v6.segments();
            let private = v6.is_loopback()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0); // discard 100::/64
            allow_private || !private
        }
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified() {
        return Some(tail); // IPv4-compatible
    }
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(tail); // NAT64
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

fn v4_allowed(v4: Ipv4Addr, allow_private: bool) -> bool {
    let o = v4.octets();
    if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() || o[0] == 0 {
        return false;
    }
    let private = v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local() // 169.254/16, cloud metadata
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 192 && o[1] == 0 && o[2] == 2) // TEST-NET-1
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || (o[0] == 198 && o[1] == 51 && o[2] == 100) // TEST-NET-2
        || (o[0] == 203 && o[1] == 0 && o[2] == 113) // TEST-NET-3
        || o[0] >= 240; // reserved
    allow_private || !private
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(v: &[&str]) -> HostList {
        HostList::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn literal_addresses_in_every_spelling() {
        let any = hosts(&[
            "127.0.0.1",
            "10.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "::ffff:7f00:1",
            "::1",
            "fd00::1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "100.64.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "fe80::1",
            "255.255.255.255",
            "224.0.0.1",
        ]);
        let refused = [
            "http://127.0.0.1/x",
            "http://2130706433/x",
            "http://0x7f000001/x",
            "http://0177.0.0.1/x",
            "http://127.1/x",
            "http://10.0.0.1/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://0.0.0.0/x",
            "http://0/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://[::1]/x",
            "http://[fd00::1]/x",
            "http://[64:ff9b::169.254.169.254]/x",
            "http://[2002:7f00:1::]/x",
            "http://100.64.0.1/x",
            "http://192.168.1.1/x",
            "http://172.16.0.1/x",
            "http://[fe80::1]/x",
            "http://255.255.255.255/x",
            "http://224.0.0.1/x",
        ];
        for u in refused {
            let url = Url::parse(u).unwrap();
            assert_eq!(
                check_url(&url, &any, false),
                Err(Refusal::PrivateAddress),
                "{u} -> {url}"
            );
        }
        // The same loopback literal is fine when the provider allows private addresses.
        assert_eq!(
            check_url(&Url::parse("http://127.0.0.1/x").unwrap(), &any, true),
            Ok(())
        );
        assert!(!address_allowed("0.0.0.0".parse().unwrap(), true));
    }

    #[test]
    fn schemes_hosts_and_credentials() {
        let h = hosts(&["cdn.example.com", "*.akamaized.net"]);
        let ok = |u: &str| check_url(&Url::parse(u).unwrap(), &h, false);
        assert_eq!(ok("https://cdn.example.com/live.m3u8"), Ok(()));
        assert_eq!(ok("http://a.akamaized.net/x.ts"), Ok(()));
        assert_eq!(ok("file:///etc/passwd"), Err(Refusal::Scheme));
        assert_eq!(ok("gopher://cdn.example.com/x"), Err(Refusal::Scheme));
        assert_eq!(ok("ftp://cdn.example.com/x"), Err(Refusal::Scheme));
        assert_eq!(ok("https://evil.example/x"), Err(Refusal::HostNotAllowed));
        assert_eq!(
            ok("https://cdn.example.com.evil.io/x"),
            Err(Refusal::HostNotAllowed)
        );
        assert_eq!(
            ok("https://user:pw@cdn.example.com/x"),
            Err(Refusal::Credentials)
        );
        assert_eq!(
            ok("https://cdn.example.com@169.254.169.254/x"),
            Err(Refusal::Credentials)
        );
    }

    #[test]
    fn ports_and_own_listeners() {
        let h = hosts(&["cdn.example.com", "127.0.0.1"]);
        let ok = |u: &str| check_url(&Url::parse(u).unwrap(), &h, true);
        assert!(ok("https://cdn.example.com/x").is_ok());
        assert_eq!(
            ok("https://cdn.example.com:8443/x"),
            Err(Refusal::HostNotAllowed)
        );
        assert!(ok("http://127.0.0.1/x").is_ok());
        assert_eq!(
            ok("http://127.0.0.1:8000/metrics"),
            Err(Refusal::HostNotAllowed)
        );
        let own: Vec<std::net::SocketAddr> = vec![
            "0.0.0.0:8080".parse().unwrap(),
            "127.0.0.1:8000".parse().unwrap(),
        ];
        for a in [
            "127.0.0.1:8080",
            "10.1.2.3:8080",
            "127.0.0.1:8000",
            "[::1]:8000",
            "[::ffff:127.0.0.1]:8000",
        ] {
            assert!(is_own_listener(a.parse().unwrap(), &own), "{a}");
        }
        for a in ["127.0.0.1:9000", "203.0.113.5:8000", "10.1.2.3:8000"] {
            assert!(!is_own_listener(a.parse().unwrap(), &own), "{a}");
        }
    }

    #[test]
    fn the_bucket_is_closed_whatever_the_list_allows() {
        let mut h = hosts(&["*.example.com", "storage.example.com"]);
        let b = crate::config::parse_bucket("https://storage.example.com/media").unwrap();
        h.exclude_bucket(&crate::config::providers::BucketOrigin::of(&b, None).unwrap());
        let ok = |u: &str| check_url(&Url::parse(u).unwrap(), &h, false);
        assert_eq!(ok("https://storage.example.com/live/a.m3u8"), Ok(()));
        assert_eq!(ok("https://a.example.com/media/x.ts"), Ok(()));
        for u in [
            "https://storage.example.com/media/movie-1/seg.ts",
            "https://STORAGE.example.com./Media/movie-1/seg.ts",
            "https://storage.example.com:443/live/../media/x.ts",
        ] {
            assert_eq!(ok(u), Err(Refusal::Bucket), "{u}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(address_allowed(ip.parse().unwrap(), false), "{ip}");
        }
    }
}

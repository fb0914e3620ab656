//! Who is asking: the one place a client address is derived.
//!
//! Every decision that depends on the client's address — IP-bound stream tokens, playback
//! credentials, rate limits, access logs, the `ipAddress` claim — reads it from
//! [`client_ip`]. `X-Forwarded-For` is believed only when the socket peer is a configured
//! trusted proxy, and then it is read as RFC 9110 list syntax: *every* header line, in order,
//! joined with commas, walked right to left past the trusted hops. Reading only the first
//! line would let a client pick its address behind a proxy that appends its own line
//! (HAProxy `option forwardfor`): the client's forged line comes first.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// The client as sluice sees it: the socket peer and the address after trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub peer: Option<SocketAddr>,
    pub ip: IpAddr,
    /// The socket peer is a configured trusted proxy (its forwarding headers are believed).
    pub via_trusted_proxy: bool,
}

/// The client address from the socket peer and every `X-Forwarded-For` line, in order.
///
/// Walks the combined list right to left and takes the first hop that is not itself
/// trusted; a malformed hop ends the walk (nothing left of it is believed).
pub fn client_ip<'a>(
    peer: Option<IpAddr>,
    xff_lines: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let Some(mut ip) = peer.map(canonical_ip) else {
        return IpAddr::from([0, 0, 0, 0]);
    };
    if !is_trusted(&ip, trusted) {
        return ip;
    }
    // Later lines are appended by hops closer to us: walk lines last-first, each line's
    // items last-first.
    for line in xff_lines.rev() {
        for hop in line.rsplit(',') {
            let hop = hop.trim();
            if hop.is_empty() {
                continue;
            }
            match parse_hop(hop) {
                Some(h) => {
                    ip = canonical_ip(h);
                    if !is_trusted(&ip, trusted) {
                        return ip;
                    }
                }
                None => return ip,
            }
        }
    }
    ip
}

/// A hop as proxies write it: an address, optionally `[v6]` or with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse().ok())
}

/// Whether `ip` (canonical) is a configured trusted proxy.
pub fn is_trusted(ip: &IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(ip))
}

/// IPv4-mapped IPv6 addresses are the IPv4 client they carry.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The address one client holds connections under: an IPv4 address, or an IPv6 address's
/// /64 (one subscriber's allocation — counting single IPv6 addresses would let one client
/// open a connection from each of its 2^64 addresses).
pub fn connection_key(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The client of a request: its socket peer and headers.
pub fn client_from(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Client {
    let lines = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    let ip = client_ip(peer.map(|p| p.ip()), lines, trusted);
    Client {
        peer,
        ip,
        via_trusted_proxy: peer.is_some_and(|p| is_trusted(&canonical_ip(p.ip()), trusted)),
    }
}

/// The client of a Pingora server session.
pub fn client_of(
    session: &pingora_core::protocols::http::ServerSession,
    trusted: &[IpNet],
) -> Client {
    let peer = session.client_addr().and_then(|a| a.as_inet()).copied();
    client_from(peer, &session.req_header().headers, trusted)
}

/// `scheme://host` players reached sluice at: the request's `Host` (HTTP/2: its authority),
/// `https` when the connection is TLS, or — only when the peer is a trusted proxy — its
/// `X-Forwarded-Proto` and `X-Forwarded-Host` (first value of each). Anything malformed falls
/// back (`localhost`).
pub fn request_base(
    headers: &HeaderMap,
    authority: Option<&str>,
    client: &Client,
    tls: bool,
) -> String {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
    };
    let valid_host = |h: &&str| {
        !h.is_empty()
            && h.parse::<http::uri::Authority>()
                .is_ok_and(|a| a.as_str() == *h && !h.contains('@'))
    };
    let forwarded_host = client
        .via_trusted_proxy
        .then(|| first("x-forwarded-host"))
        .flatten()
        .filter(valid_host);
    let host = forwarded_host
        .or_else(|| {
            headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .or(authority)
                .filter(valid_host)
        })
        .unwrap_or("localhost");
    let scheme = match client
        .via_trusted_proxy
        .then(|| first("x-forwarded-proto"))
        .flatten()
    {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(_) => "http",
        None if tls => "https",
        None => "http",
    };
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_base_forms() {
        let direct = Client {
            peer: None,
            ip: "192.0.2.1".parse().unwrap(),
            via_trusted_proxy: false,
        };
        let proxied = Client {
            via_trusted_proxy: true,
            ..direct
        };
        let mut h = HeaderMap::new();
        h.insert("host", "edge.example:8443".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert("x-forwarded-host", "cdn.example".parse().unwrap());
        assert_eq!(
            request_base(&h, None, &direct, false),
            "http://edge.example:8443"
        );
        assert_eq!(
            request_base(&h, None, &direct, true),
            "https://edge.example:8443"
        );
        assert_eq!(
            request_base(&h, None, &proxied, false),
            "https://cdn.example"
        );
        let none = HeaderMap::new();
        assert_eq!(
            request_base(&none, Some("h2.example"), &direct, true),
            "https://h2.example"
        );
        assert_eq!(
            request_base(&none, None, &direct, false),
            "http://localhost"
        );
        let mut bad = HeaderMap::new();
        bad.insert("host", "u@evil.example".parse().unwrap());
        assert_eq!(request_base(&bad, None, &direct, false), "http://localhost");
    }

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter()
            .map(|s| crate::config::parse_cidr(s).unwrap())
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn connections_count_per_ipv4_address_and_per_ipv6_64() {
        assert_eq!(connection_key(ip("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(connection_key(ip("::ffff:203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(
            connection_key(ip("2001:db8:1:2:aaaa::1")),
            connection_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            connection_key(ip("2001:db8:1:2::1")),
            connection_key(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn xff_ignored_from_untrusted_peer() {
        let got = client_ip(
            Some(ip("203.0.113.9")),
            ["1.2.3.4"].into_iter(),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn xff_walked_right_to_left_through_trusted_hops() {
        let t = nets(&["10.0.0.0/8"]);
        let got = client_ip(
            Some(ip("10.0.0.1")),
            ["6.6.6.6, 198.51.100.7, 10.0.0.2"].into_iter(),
            &t,
        );
        assert_eq!(got, ip("198.51.100.7"));
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), std::iter::empty(), &t),
            ip("10.0.0.1")
        );
        // Garbage stops the walk at the last good hop.
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), ["1.1.1.1, junk"].into_iter(), &t),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn every_header_line_counts_in_order() {
        // The client sent "X-Forwarded-For: 6.6.6.6"; the trusted proxy appended its own
        // line with the real peer. The last line wins.
        let t = nets(&["127.0.0.1/32"]);
        let got = client_ip(
            Some(ip("127.0.0.1")),
            ["6.6.6.6", "198.51.100.7"].into_iter(),
            &t,
        );
        assert_eq!(got, ip("198.51.100.7"));
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        h.append(
            "x-forwarded-for",
            "198.51.100.7, 127.0.0.1".parse().unwrap(),
        );
        let c = client_from(Some("127.0.0.1:9".parse().unwrap()), &h, &t);
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert!(c.via_trusted_proxy);
    }

    #[test]
    fn hops_with_ports_and_brackets() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), ["[2001:db8::1]:443"].into_iter(), &t),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), ["192.0.2.1:5000"].into_iter(), &t),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn mapped_v6_is_v4() {
        let got = client_ip(Some(ip("::ffff:192.0.2.1")), std::iter::empty(), &[]);
        assert_eq!(got, ip("192.0.2.1"));
    }
}

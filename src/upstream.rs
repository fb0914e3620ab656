//! Upstream selection for media paths: the configured bucket, or the built-in dir origin.
//!
//! The bucket's host is resolved with a real resolver (hickory, `/etc/resolv.conf` and
//! `/etc/hosts`), whose cache keeps each answer for its TTL — a miss does not cost a lookup —
//! and every address it returns is used: a connection that fails moves the request to the
//! next address ([`Upstream::peer`] by attempt number, retried from `fail_to_connect`).
//! `origins.resolve` pins the host to fixed addresses instead.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioAsyncResolver;

use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};

use crate::config::{Bucket, Origins};

/// The media origin and how to reach it.
#[derive(Clone)]
pub struct Upstream {
    target: Target,
    prefix: String,
    host_header: String,
    connect_timeout: Duration,
    read_timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("host_header", &self.host_header)
            .field("prefix", &self.prefix)
            .finish()
    }
}

#[derive(Clone)]
enum Target {
    Tcp {
        host: String,
        port: u16,
        tls: bool,
        sni: String,
        addresses: Addresses,
    },
    Uds(PathBuf),
}

/// Where the bucket's addresses come from.
#[derive(Clone)]
enum Addresses {
    /// An IP literal, or `origins.resolve`.
    Fixed(Vec<IpAddr>),
    /// DNS, cached for each answer's TTL.
    Resolver(Arc<TokioAsyncResolver>),
    /// No resolver configuration readable: the system's getaddrinfo (no TTL, no cache).
    System,
}

impl Upstream {
    /// `dir_socket` is where the built-in dir origin listens when the bucket is `dir:`.
    pub fn new(origins: &Origins, dir_socket: PathBuf) -> Upstream {
        let (target, prefix, default_host) = match &origins.bucket {
            Bucket::Http(u) => {
                let default_port = if u.tls { 443 } else { 80 };
                let addresses = if !origins.resolve.is_empty() {
                    Addresses::Fixed(origins.resolve.clone())
                } else if let Ok(ip) = u.host.parse::<IpAddr>() {
                    Addresses::Fixed(vec![ip])
                } else {
                    match TokioAsyncResolver::tokio_from_system_conf() {
                        Ok(r) => Addresses::Resolver(Arc::new(r)),
                        Err(e) => {
                            tracing::warn!(error = %e, "no resolver configuration; using getaddrinfo for the bucket");
                            Addresses::System
                        }
                    }
                };
                let host = if u.host.contains(':') {
                    format!("[{}]", u.host)
                } else {
                    u.host.clone()
                };
                let host_header = if u.port == default_port {
                    host
                } else {
                    format!("{host}:{}", u.port)
                };
                (
                    Target::Tcp {
                        host: u.host.clone(),
                        port: u.port,
                        tls: u.tls,
                        sni: u.host.clone(),
                        addresses,
                    },
                    u.prefix.clone(),
                    host_header,
                )
            }
            Bucket::Dir(_) => (
                Target::Uds(dir_socket),
                String::new(),
                "localhost".to_string(),
            ),
        };
        Upstream {
            target,
            prefix,
            host_header: origins.host_header.clone().unwrap_or(default_host),
            connect_timeout: origins.connect_timeout,
            read_timeout: origins.read_timeout,
        }
    }

    /// `{prefix}/{dir}/{rest}`: the origin path of an object.
    pub fn object_path(&self, dir: &str, rest_encoded: &str) -> String {
        let dir = crate::media::path::encode_segments(&[dir.to_string()]);
        format!("{}/{}/{}", self.prefix, dir, rest_encoded)
    }

    /// `scheme://host/path` of an upstream object: the cache key's primary part.
    pub fn cache_primary(&self, upstream_path: &str) -> String {
        let scheme = match &self.target {
            Target::Tcp { tls: true, .. } => "https",
            Target::Tcp { tls: false, .. } => "http",
            Target::Uds(_) => "dir",
        };
        format!("{scheme}://{}{}", self.host_header, upstream_path)
    }

    /// The cache key's primary part for `{dir}/{rest}`; with an empty `rest`, the prefix of
    /// everything cached below `{dir}/`.
    pub fn cache_primary_of(&self, dir: &str, rest_encoded: &str) -> String {
        self.cache_primary(&self.object_path(dir, rest_encoded))
    }

    /// The `/stream/{dir}/{rest}[?query]` path naming the object at `upstream_path` (the
    /// inverse of [`Upstream::object_path`]): how one fleet node asks another for it.
    pub fn stream_path_of(&self, upstream_path: &str) -> Option<String> {
        let rest = upstream_path.strip_prefix(self.prefix.as_str())?;
        rest.starts_with('/').then(|| format!("/stream{rest}"))
    }

    pub fn host_header(&self) -> &str {
        &self.host_header
    }

    /// A peer pinned to an already checked address (the `/api/proxy` path), with our timeouts.
    pub fn pinned_peer(&self, addr: std::net::SocketAddr, tls: bool, sni: &str) -> Box<HttpPeer> {
        let mut peer = HttpPeer::new(addr, tls, sni.to_string());
        self.apply_timeouts(&mut peer);
        Box::new(peer)
    }

    fn apply_timeouts(&self, peer: &mut HttpPeer) {
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.total_connection_timeout = Some(self.connect_timeout * 2);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.write_timeout = Some(self.read_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
    }

    /// The bucket's addresses, in the resolver's order.
    async fn addresses(&self) -> Result<Vec<SocketAddr>> {
        let Target::Tcp {
            host,
            port,
            addresses,
            ..
        } = &self.target
        else {
            return Ok(Vec::new());
        };
        let ips: Vec<IpAddr> = match addresses {
            Addresses::Fixed(ips) => ips.clone(),
            Addresses::Resolver(r) => r
                .lookup_ip(host.as_str())
                .await
                .map_err(|e| {
                    Error::because(ErrorType::ConnectNoRoute, format!("resolving {host}"), e)
                })?
                .iter()
                .collect(),
            Addresses::System => tokio::net::lookup_host((host.as_str(), *port))
                .await
                .map_err(|e| {
                    Error::because(ErrorType::ConnectNoRoute, format!("resolving {host}"), e)
                })?
                .map(|a| a.ip())
                .collect(),
        };
        if ips.is_empty() {
            return Error::e_explain(ErrorType::ConnectNoRoute, "no address for bucket host");
        }
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, *port))
            .collect())
    }

    /// The peer for connection attempt `attempt` (0 first): the bucket's addresses in turn,
    /// so a failed connection moves to the next one. Returns the peer and how many addresses
    /// there are. Pingora pools connections per peer identity.
    pub async fn peer(&self, attempt: usize) -> Result<(Box<HttpPeer>, usize)> {
        let (mut peer, count) = match &self.target {
            Target::Tcp { tls, sni, .. } => {
                let addrs = self.addresses().await?;
                let addr = addrs[attempt % addrs.len()];
                (HttpPeer::new(addr, *tls, sni.clone()), addrs.len())
            }
            Target::Uds(path) => (
                HttpPeer::new_uds(&path.to_string_lossy(), false, String::new())?,
                1,
            ),
        };
        self.apply_timeouts(&mut peer);
        Ok((Box::new(peer), count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_bucket;

    fn origins(bucket: &str) -> Origins {
        Origins {
            bucket: parse_bucket(bucket).unwrap(),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            host_header: None,
            resolve: Vec::new(),
        }
    }

    #[tokio::test]
    async fn fixed_addresses_are_taken_in_turn() {
        let mut o = origins("http://bucket.test:9000");
        o.resolve = vec!["127.0.0.3".parse().unwrap(), "127.0.0.1".parse().unwrap()];
        let u = Upstream::new(&o, PathBuf::new());
        let (p0, n) = u.peer(0).await.unwrap();
        let (p1, _) = u.peer(1).await.unwrap();
        assert_eq!(n, 2);
        assert_eq!(p0._address.to_string(), "127.0.0.3:9000");
        assert_eq!(p1._address.to_string(), "127.0.0.1:9000");
        // An IP literal bucket needs no resolver.
        let u = Upstream::new(&origins("http://[::1]:8080"), PathBuf::new());
        assert_eq!(
            u.peer(0).await.unwrap().0._address.to_string(),
            "[::1]:8080"
        );
    }

    #[test]
    fn object_paths_and_hosts() {
        let u = Upstream::new(&origins("http://cdn.example:9000/media/"), PathBuf::new());
        assert_eq!(u.object_path("h", "v/seg.m4s"), "/media/h/v/seg.m4s");
        assert_eq!(u.host_header(), "cdn.example:9000");
        let u = Upstream::new(&origins("https://cdn.example"), PathBuf::new());
        assert_eq!(u.object_path("h", "a.m3u8"), "/h/a.m3u8");
        assert_eq!(u.host_header(), "cdn.example");
        let u = Upstream::new(&origins("dir:./x"), PathBuf::from("/tmp/o.sock"));
        assert_eq!(u.object_path("demo", "master.m3u8"), "/demo/master.m3u8");
        // And back to the path another fleet node is asked for.
        let u = Upstream::new(&origins("http://cdn.example:9000/media/"), PathBuf::new());
        let p = u.object_path("h", "v/seg.m4s");
        assert_eq!(u.stream_path_of(&p).unwrap(), "/stream/h/v/seg.m4s");
        assert_eq!(
            u.stream_path_of("/media/h/live.m3u8?_HLS_msn=3").unwrap(),
            "/stream/h/live.m3u8?_HLS_msn=3"
        );
        assert_eq!(u.stream_path_of("/other/h/x.ts"), None);
    }
}

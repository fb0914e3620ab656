//! Upstream selection for media paths: the configured bucket, or the built-in dir origin.

use std::path::PathBuf;
use std::time::Duration;

use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};

use crate::config::{Bucket, Origins};

/// The media origin and how to reach it.
#[derive(Debug, Clone)]
pub struct Upstream {
    target: Target,
    prefix: String,
    host_header: String,
    connect_timeout: Duration,
    read_timeout: Duration,
}

#[derive(Debug, Clone)]
enum Target {
    Tcp {
        addr: (String, u16),
        tls: bool,
        sni: String,
    },
    Uds(PathBuf),
}

impl Upstream {
    /// `dir_socket` is where the built-in dir origin listens when the bucket is `dir:`.
    pub fn new(origins: &Origins, dir_socket: PathBuf) -> Upstream {
        let (target, prefix, default_host) = match &origins.bucket {
            Bucket::Http(u) => {
                let default_port = if u.tls { 443 } else { 80 };
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
                        addr: (u.host.clone(), u.port),
                        tls: u.tls,
                        sni: u.host.clone(),
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

    /// A fresh peer with our timeouts. Pingora pools connections per peer identity.
    /// The host is resolved asynchronously so DNS never blocks a proxy worker.
    pub async fn peer(&self) -> Result<Box<HttpPeer>> {
        let mut peer = match &self.target {
            Target::Tcp { addr, tls, sni } => {
                let resolved = tokio::net::lookup_host((addr.0.as_str(), addr.1))
                    .await
                    .map_err(|e| {
                        Error::because(
                            ErrorType::ConnectNoRoute,
                            format!("resolving {}", addr.0),
                            e,
                        )
                    })?
                    .next()
                    .ok_or_else(|| {
                        Error::explain(ErrorType::ConnectNoRoute, "no address for bucket host")
                    })?;
                HttpPeer::new(resolved, *tls, sni.clone())
            }
            Target::Uds(path) => HttpPeer::new_uds(&path.to_string_lossy(), false, String::new())?,
        };
        self.apply_timeouts(&mut peer);
        Ok(Box::new(peer))
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
        }
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
    }
}

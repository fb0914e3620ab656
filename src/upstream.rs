//! Upstream selection for media paths: the configured bucket, or the built-in dir origin.
//!
//! The bucket's host is resolved with a real resolver (hickory, `/etc/resolv.conf` and
//! `/etc/hosts`), whose cache keeps each answer for its TTL — a miss does not cost a lookup —
//! and every address it returns is used: a connection that fails moves the request to the
//! next address ([`Upstream::peer`] by attempt number, retried from `fail_to_connect`).
//! `origins.resolve` pins the host to fixed addresses instead.
//!
//! The bucket's redirects are followed here, never passed to players ([`Upstream::follow`]):
//! an absolute `Location` would show players the bucket's address and send them around
//! sluice, and a relative one resolved against `/stream/…` named nothing. A redirect is
//! followed only while it stays on the bucket's origin (same scheme, host and port, the host
//! judged by the one bucket rule, [`reaches_bucket`]) and names an object of the same content
//! directory that `/stream` paths may name; anything else is refused.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioAsyncResolver;

use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};

use crate::config::providers::{reaches_bucket, BucketOrigin};
use crate::config::{Bucket, Origins};
use crate::media::path::{parse_stream_path, StreamPath};

/// Redirects from the bucket followed for one request at most; one more is refused.
pub const MAX_BUCKET_REDIRECTS: u8 = 5;

/// Why a redirect from the bucket is not followed: the player gets a `502`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectRefusal {
    #[error("the bucket sent a redirect without a usable Location")]
    NoLocation,
    /// The host is kept for the log line (never the URL: its query may carry a signature).
    #[error("the bucket redirected off its origin (to host {host})")]
    OffOrigin { host: String },
    #[error("the bucket redirected outside its objects")]
    OutsideBucket,
    #[error("the bucket redirected to a path /stream refuses")]
    PathRefused,
    /// The gate decided on the content asked for; an object of another content (which may be
    /// gated otherwise) is not served in its name.
    #[error("the bucket redirected to another content's directory")]
    OtherContent,
    #[error("the bucket redirected to another kind of object")]
    KindChanged,
    /// The player resolves a playlist's relative URIs against the URL it asked for: served
    /// there, a playlist from another directory would point them at the wrong objects.
    #[error("the bucket redirected a playlist to another directory")]
    PlaylistMoved,
    #[error("the bucket redirected more than {MAX_BUCKET_REDIRECTS} times")]
    TooMany,
}

/// The media origin and how to reach it.
#[derive(Clone)]
pub struct Upstream {
    target: Target,
    prefix: String,
    host_header: String,
    /// The bucket's origin as the one bucket rule names it, with the scheme and port sluice
    /// asks it on (`None` for a `dir:` bucket: its built-in origin never redirects).
    origin: Option<(BucketOrigin, &'static str, u16)>,
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
        let origin = match &origins.bucket {
            Bucket::Http(u) => BucketOrigin::of(&origins.bucket, origins.host_header.as_deref())
                .map(|o| (o, if u.tls { "https" } else { "http" }, u.port)),
            Bucket::Dir(_) => None,
        };
        Upstream {
            target,
            prefix,
            origin,
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

    /// Where the bucket's redirect of `from` (the upstream path and query that was asked)
    /// to `location` leads: the upstream path and query to ask instead, and the object it
    /// names as a `/stream` path, whose kind must be `kind` (what was asked decides the
    /// cache policy and the rewrite: a segment does not turn into a playlist on the way).
    ///
    /// Followed only when the target is on the bucket's origin — the same scheme and port
    /// sluice asks it on, a host the bucket rule ([`reaches_bucket`]) takes for the bucket
    /// (its host or `origins.host_header`'s) — below the bucket's prefix, in the content
    /// directory asked for (the gate decided on that content: another one's objects, which may
    /// be gated otherwise, are not served in its name), and its path passes the `/stream` path
    /// rules (no traversal in any encoding, an allowed extension). The
    /// target's query is the bucket's own and goes with it.
    ///
    /// # Errors
    /// The [`RedirectRefusal`] that says why not.
    pub fn follow(
        &self,
        from: &str,
        location: &str,
        kind: crate::media::MediaKind,
        allowed_ext: &[String],
    ) -> Result<(String, StreamPath), RedirectRefusal> {
        let Some((origin, scheme, port)) = &self.origin else {
            return Err(RedirectRefusal::OutsideBucket);
        };
        let Target::Tcp { host, .. } = &self.target else {
            return Err(RedirectRefusal::OutsideBucket);
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let base = url::Url::parse(&format!("{scheme}://{host}:{port}{from}"))
            .map_err(|_| RedirectRefusal::NoLocation)?;
        let target = base
            .join(location.trim())
            .map_err(|_| RedirectRefusal::NoLocation)?;
        let same_origin = target.scheme() == *scheme
            && target.port_or_known_default() == Some(*port)
            && target.username().is_empty()
            && target.password().is_none()
            && reaches_bucket(&target, origin);
        if !same_origin {
            // Another path of the bucket's own host (outside its prefix) is "outside", not "off".
            let mut probe = target.clone();
            probe.set_path(&format!("{}/", self.prefix));
            let on_host = target.scheme() == *scheme
                && target.port_or_known_default() == Some(*port)
                && reaches_bucket(&probe, origin);
            return Err(if on_host {
                RedirectRefusal::OutsideBucket
            } else {
                RedirectRefusal::OffOrigin {
                    host: target.host_str().unwrap_or("").to_string(),
                }
            });
        }
        let rest = target
            .path()
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or(RedirectRefusal::OutsideBucket)?;
        let sp = parse_stream_path(rest, allowed_ext).map_err(|_| RedirectRefusal::PathRefused)?;
        let content_of = |p: &str| {
            p.strip_prefix(self.prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .and_then(|r| r.split('/').next())
                .map(str::to_string)
        };
        let asked = content_of(from);
        if asked.is_none() || asked != content_of(&self.object_path(&sp.hash, "")) {
            return Err(RedirectRefusal::OtherContent);
        }
        if sp.kind != kind {
            return Err(RedirectRefusal::KindChanged);
        }
        let mut path = self.object_path(&sp.hash, &sp.rest_encoded());
        let dir = |p: &str| -> String {
            let p = p.split('?').next().unwrap_or("");
            p[..p.rfind('/').map_or(0, |i| i + 1)].to_string()
        };
        if kind.is_manifest() && dir(&path) != dir(from) {
            return Err(RedirectRefusal::PlaylistMoved);
        }
        if let Some(q) = target.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok((path, sp))
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
    fn redirects_are_followed_on_the_buckets_origin_only() {
        use crate::media::MediaKind::{HlsPlaylist, Segment};
        let exts: Vec<String> = ["m3u8", "m4s", "ts"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut o = origins("http://Bucket.example:9000/media");
        o.host_header = Some("vhost.example".into());
        let u = Upstream::new(&o, PathBuf::new());
        let from = "/media/h/v/seg_1.m4s";
        let ok = |loc: &str| u.follow(from, loc, Segment, &exts).map(|(p, _)| p);
        // Relative, absolute, the host in another spelling, the virtual host, another stream.
        assert_eq!(ok("seg_2.m4s").unwrap(), "/media/h/v/seg_2.m4s");
        assert_eq!(ok("../w/seg_1.m4s").unwrap(), "/media/h/w/seg_1.m4s");
        assert_eq!(ok("/media/h/seg_1.m4s").unwrap(), "/media/h/seg_1.m4s");
        // Another content's directory: the gate decided on this one.
        assert_eq!(ok("/media/g/seg_1.m4s"), Err(RedirectRefusal::OtherContent));
        assert_eq!(
            ok("../../H/v/seg_1.m4s"),
            Err(RedirectRefusal::OtherContent)
        );
        assert_eq!(
            ok("http://BUCKET.example.:9000/media/h/x.m4s?v=2").unwrap(),
            "/media/h/x.m4s?v=2"
        );
        assert_eq!(
            ok("http://vhost.example:9000/media/h/x.m4s").unwrap(),
            "/media/h/x.m4s"
        );
        // Off the origin: another host, scheme or port; the host is all that is kept.
        for loc in [
            "http://cdn.example/media/h/x.m4s?sig=secret",
            "https://bucket.example:9000/media/h/x.m4s",
            "http://bucket.example:9001/media/h/x.m4s",
            "http://bucket.example/media/h/x.m4s",
            "//elsewhere.example/media/h/x.m4s",
        ] {
            match ok(loc) {
                Err(RedirectRefusal::OffOrigin { host }) => assert!(!host.contains("secret")),
                other => panic!("{loc}: {other:?}"),
            }
        }
        assert_eq!(
            ok("http://cdn.example/x?sig=secret")
                .unwrap_err()
                .to_string(),
            "the bucket redirected off its origin (to host cdn.example)"
        );
        // On the origin but outside the bucket, or a path /stream refuses, or another kind.
        assert_eq!(ok("/other/h/x.m4s"), Err(RedirectRefusal::OutsideBucket));
        assert_eq!(ok("/mediax/h/x.m4s"), Err(RedirectRefusal::OutsideBucket));
        assert_eq!(ok("/media/x.m4s"), Err(RedirectRefusal::PathRefused));
        assert_eq!(ok("/media/h/passwd"), Err(RedirectRefusal::PathRefused));
        assert_eq!(
            ok("/media/h/.hidden.m4s"),
            Err(RedirectRefusal::PathRefused)
        );
        assert_eq!(
            ok("/media/h/x%2f..%2fy.m4s"),
            Err(RedirectRefusal::PathRefused)
        );
        assert_eq!(
            ok("/media/../../etc/h/x.m4s"),
            Err(RedirectRefusal::OutsideBucket)
        );
        assert_eq!(ok("/media/h/live.m3u8"), Err(RedirectRefusal::KindChanged));
        assert_eq!(ok("http://[::1"), Err(RedirectRefusal::NoLocation));
        // A playlist stays in its directory (its relative URIs are resolved by the player
        // against the URL it asked for).
        let playlist =
            |from: &str, loc: &str| u.follow(from, loc, HlsPlaylist, &exts).map(|(p, _)| p);
        assert_eq!(
            playlist("/media/h/a.m3u8?_HLS_msn=3", "b.m3u8"),
            Ok("/media/h/b.m3u8".to_string())
        );
        assert_eq!(
            playlist("/media/h/v/a.m3u8", "/media/h/v/b.m3u8?x=1"),
            Ok("/media/h/v/b.m3u8?x=1".to_string())
        );
        assert_eq!(
            playlist("/media/h/a.m3u8", "v2/a.m3u8"),
            Err(RedirectRefusal::PlaylistMoved)
        );
        assert_eq!(
            playlist("/media/h/v/a.m3u8", "/media/h/w/a.m3u8"),
            Err(RedirectRefusal::PlaylistMoved)
        );
        // A dir: bucket's built-in origin never redirects: nothing is followed.
        let d = Upstream::new(&origins("dir:./x"), PathBuf::from("/tmp/o.sock"));
        assert_eq!(
            d.follow("/h/a.m4s", "b.m4s", Segment, &exts),
            Err(RedirectRefusal::OutsideBucket)
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

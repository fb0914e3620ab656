//! `fleet:` — the nodes that run as one service and share one cache (the shield tier, see
//! [`crate::fleet`]): the edge listeners of all of them (`peers`), which one this is
//! (`self`), the secret their node-to-node requests are signed with (`secret_env`), and how
//! long a node waits for an object's owner before it goes to the origin itself.
//!
//! Same two layers as the rest of [`super`]: [`file::Fleet`] mirrors the YAML,
//! [`Validator::fleet`] turns it into [`FleetConfig`] with errors naming the key.
//!
//! Peers are written as `IP:port`, not host names: the owner of an object is chosen by
//! hashing onto the peers' addresses (every node must compute the same ring). A peer is
//! trusted by its signature, never by its address ([`crate::conn::admission`] only admits a
//! connection from its address provisionally).

use std::net::SocketAddr;
use std::time::Duration;

use super::{Config, ConfigError, Secret, Validator};
use crate::config::tokens::MIN_SECRET_LEN;

/// The YAML shape of `fleet:`.
pub mod file {
    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Fleet {
        /// The edge listeners (`IP:port`) of every node, this one included.
        pub peers: Vec<String>,
        /// Which of `peers` this node is.
        #[serde(rename = "self")]
        pub this: String,
        /// Environment variable holding the node-to-node secret (≥ 16 bytes).
        pub secret_env: String,
        /// Connecting to an object's owner.
        #[serde(default = "connect_timeout", with = "humantime_serde")]
        pub connect_timeout: Duration,
        /// Waiting for the owner's response header, and for each read of its body.
        #[serde(default = "owner_timeout", with = "humantime_serde")]
        pub owner_timeout: Duration,
    }

    fn connect_timeout() -> Duration {
        Duration::from_secs(1)
    }

    fn owner_timeout() -> Duration {
        Duration::from_secs(5)
    }
}

/// Validated `fleet:`.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Every node's edge listener, canonical (IPv4-mapped IPv6 written as IPv4), in the
    /// order written.
    pub peers: Vec<SocketAddr>,
    /// This node (one of `peers`).
    pub this: SocketAddr,
    pub secret: Secret,
    pub connect_timeout: Duration,
    pub owner_timeout: Duration,
}

impl FleetConfig {
    /// The other nodes.
    pub fn others(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.peers.iter().copied().filter(move |p| *p != self.this)
    }
}

impl Config {
    /// The fleet's nodes' addresses: a connection from one is admitted uncounted until a
    /// request on it shows it is not a node's ([`crate::conn::admission`]); nothing else
    /// about a node is decided by its address.
    pub fn fleet_node_addresses(&self) -> Vec<ipnet::IpNet> {
        self.fleet
            .iter()
            .flat_map(|f| f.peers.iter().map(|p| ipnet::IpNet::from(p.ip())))
            .collect()
    }
}

/// `IP:port`, canonical.
fn canonical_addr(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(crate::client::canonical_ip(a.ip()), a.port())
}

impl Validator<'_> {
    pub(super) fn fleet(
        &self,
        f: Option<file::Fleet>,
        env: &dyn Fn(&str) -> Option<String>,
        cache_enabled: bool,
    ) -> Result<Option<FleetConfig>, ConfigError> {
        let Some(f) = f else {
            return Ok(None);
        };
        if f.peers.is_empty() {
            return Err(self.err("fleet.peers", "must list every node's edge listener"));
        }
        let mut peers = Vec::with_capacity(f.peers.len());
        for p in &f.peers {
            let addr = p
                .trim()
                .parse::<SocketAddr>()
                .map(canonical_addr)
                .map_err(|_| {
                    self.err(
                        "fleet.peers",
                        format!("`{p}` is not an address like 10.0.0.1:8080 (IP and port)"),
                    )
                })?;
            if addr.ip().is_unspecified() || addr.port() == 0 {
                return Err(self.err(
                    "fleet.peers",
                    format!("`{p}`: give the address other nodes reach this one at"),
                ));
            }
            if peers.contains(&addr) {
                return Err(self.err("fleet.peers", format!("`{p}` is listed twice")));
            }
            peers.push(addr);
        }
        let this = f
            .this
            .trim()
            .parse::<SocketAddr>()
            .map(canonical_addr)
            .map_err(|_| {
                self.err(
                    "fleet.self",
                    format!("`{}` is not an address like 10.0.0.1:8080", f.this),
                )
            })?;
        if !peers.contains(&this) {
            return Err(self.err(
                "fleet.self",
                format!("`{}` is not one of fleet.peers", f.this),
            ));
        }
        let secret = env(&f.secret_env).ok_or_else(|| {
            self.err(
                "fleet.secret_env",
                format!("environment variable `{}` is not set", f.secret_env),
            )
        })?;
        if secret.len() < MIN_SECRET_LEN {
            return Err(self.err(
                "fleet.secret_env",
                format!("the secret must be at least {MIN_SECRET_LEN} bytes"),
            ));
        }
        if f.connect_timeout < Duration::from_millis(10) {
            return Err(self.err("fleet.connect_timeout", "must be at least 10ms"));
        }
        if f.owner_timeout < Duration::from_millis(100) {
            return Err(self.err("fleet.owner_timeout", "must be at least 100ms"));
        }
        if !cache_enabled {
            return Err(self.err(
                "fleet",
                "a fleet shares its cache: cache.enabled must be true",
            ));
        }
        Ok(Some(FleetConfig {
            peers,
            this,
            secret: Secret(secret.into_bytes()),
            connect_timeout: f.connect_timeout,
            owner_timeout: f.owner_timeout,
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const SECRET: &str = "fleet-secret-0123456789";

    fn parse(text: &str) -> Result<Config, String> {
        Config::from_str_named(text, "t.yaml", &|v| match v {
            "FLEET" => Some(SECRET.to_string()),
            "SHORT" => Some("short".to_string()),
            _ => None,
        })
        .map_err(|e| e.to_string())
    }

    fn fleet(body: &str) -> String {
        format!("fleet:\n{body}")
    }

    const GOOD: &str = "  peers: [\"10.0.0.1:8080\", \"10.0.0.2:8080\", \"[::ffff:10.0.0.3]:8080\"]\n  self: 10.0.0.2:8080\n  secret_env: FLEET\n";

    #[test]
    fn unset_is_a_single_node() {
        assert!(parse("").unwrap().fleet.is_none());
    }

    #[test]
    fn a_valid_fleet() {
        let c = parse(&fleet(GOOD)).unwrap();
        let f = c.fleet.as_ref().unwrap();
        assert_eq!(f.peers.len(), 3);
        assert_eq!(f.this.to_string(), "10.0.0.2:8080");
        // IPv4-mapped IPv6 is the IPv4 node.
        assert_eq!(f.peers[2].to_string(), "10.0.0.3:8080");
        assert_eq!(f.secret.0, SECRET.as_bytes());
        assert_eq!(f.owner_timeout, std::time::Duration::from_secs(5));
        assert_eq!(f.others().count(), 2);
        // Peers' addresses are admitted provisionally.
        let exempt = c.fleet_node_addresses();
        assert!(exempt
            .iter()
            .any(|n| n.contains(&"10.0.0.3".parse::<std::net::IpAddr>().unwrap())));
        // The secret never shows in Debug output.
        assert!(!format!("{f:?}").contains(SECRET));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "  peers: [\"10.0.0.1:8080\"]\n  self: 10.0.0.2:8080\n  secret_env: FLEET\n",
                "fleet.self",
            ),
            (
                "  peers: [\"node-a:8080\"]\n  self: 10.0.0.2:8080\n  secret_env: FLEET\n",
                "fleet.peers",
            ),
            (
                "  peers: [\"10.0.0.1:8080\", \"10.0.0.1:8080\"]\n  self: 10.0.0.1:8080\n  secret_env: FLEET\n",
                "fleet.peers",
            ),
            (
                "  peers: [\"0.0.0.0:8080\"]\n  self: 0.0.0.0:8080\n  secret_env: FLEET\n",
                "fleet.peers",
            ),
            (
                "  peers: []\n  self: 10.0.0.1:8080\n  secret_env: FLEET\n",
                "fleet.peers",
            ),
            (
                "  peers: [\"10.0.0.1:8080\"]\n  self: 10.0.0.1:8080\n  secret_env: NOPE\n",
                "fleet.secret_env",
            ),
            (
                "  peers: [\"10.0.0.1:8080\"]\n  self: 10.0.0.1:8080\n  secret_env: SHORT\n",
                "fleet.secret_env",
            ),
            (
                "  peers: [\"10.0.0.1:8080\"]\n  self: 10.0.0.1:8080\n  secret_env: FLEET\n  owner_timeout: 1ms\n",
                "fleet.owner_timeout",
            ),
            (
                "  peers: [\"10.0.0.1:8080\"]\n  self: 10.0.0.1:8080\n  secret_env: FLEET\n  ownr_timeout: 1s\n",
                "ownr_timeout",
            ),
        ];
        for (body, key) in cases {
            let e = parse(&fleet(body)).unwrap_err();
            assert!(e.contains(key) && e.contains("t.yaml"), "{body}: {e}");
        }
        let e = parse(&format!("cache:\n  enabled: false\n{}", fleet(GOOD))).unwrap_err();
        assert!(e.contains("cache.enabled"), "{e}");
    }

    #[test]
    fn the_secret_is_its_own() {
        let e = parse(&format!(
            "key_delivery:\n  secret: {SECRET}\n{}",
            fleet(GOOD)
        ))
        .unwrap_err();
        assert!(e.contains("fleet.secret_env"), "{e}");
    }
}

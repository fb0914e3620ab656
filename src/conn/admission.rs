//! How many edge connections one client, and the edge as a whole, may hold open.
//!
//! A connection is admitted with a [`Permit`] that gives its place back when dropped (when
//! the connection ends, whatever ended it). Clients are counted under
//! [`crate::client::connection_key`] (an IPv4 address or an IPv6 /64); `trusted_proxies`
//! and the nodes of a fleet (`fleet.peers`) carry many clients on few addresses and are only
//! subject to the global ceiling.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ipnet::IpNet;
use parking_lot::Mutex;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client already holds `max_connections_per_ip`.
    PerIp,
    /// The edge already holds `max_connections`.
    Global,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::PerIp => "per_ip",
            Refusal::Global => "global",
        }
    }
}

/// The connection counts.
#[derive(Debug)]
pub struct Admission {
    /// The listener's metric label (`edge`, `admin`).
    listener: &'static str,
    per_client: Mutex<HashMap<IpAddr, u32>>,
    open: AtomicU64,
    max_per_client: u32,
    max_total: u64,
    exempt: Vec<IpNet>,
}

/// One admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    /// The key counted under, when counted per client.
    client: Option<IpAddr>,
}

impl Admission {
    pub fn new(
        listener: &'static str,
        max_per_client: u32,
        max_total: u64,
        exempt: Vec<IpNet>,
    ) -> Arc<Admission> {
        Arc::new(Admission {
            listener,
            per_client: Mutex::new(HashMap::new()),
            open: AtomicU64::new(0),
            max_per_client,
            max_total,
            exempt,
        })
    }

    /// Admit a connection from `peer` (`None`: not an IP socket, counted globally only).
    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Permit, Refusal> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Global);
        }
        let client = peer
            .map(crate::client::canonical_ip)
            .filter(|ip| !crate::client::is_trusted(ip, &self.exempt))
            .map(crate::client::connection_key);
        if let Some(key) = client {
            let mut map = self.per_client.lock();
            let n = map.entry(key).or_insert(0);
            if *n >= self.max_per_client {
                drop(map);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::PerIp);
            }
            *n += 1;
        }
        crate::metrics::CONNECTIONS_OPEN
            .with_label_values(&[self.listener])
            .inc();
        Ok(Permit {
            admission: self.clone(),
            client,
        })
    }

    /// The listener's metric label.
    pub fn listener(&self) -> &'static str {
        self.listener
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Acquire)
    }

    /// Connections `ip` holds now.
    pub fn held_by(&self, ip: IpAddr) -> u32 {
        let key = crate::client::connection_key(ip);
        self.per_client.lock().get(&key).copied().unwrap_or(0)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(key) = self.client {
            let mut map = self.admission.per_client.lock();
            if let Some(n) = map.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&key);
                }
            }
        }
        self.admission.open.fetch_sub(1, Ordering::AcqRel);
        crate::metrics::CONNECTIONS_OPEN
            .with_label_values(&[self.admission.listener])
            .dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn one_client_is_held_to_its_share_and_gets_it_back() {
        let a = Admission::new("test", 2, 100, vec![]);
        let p1 = a.admit(ip("203.0.113.1")).unwrap();
        let _p2 = a.admit(ip("203.0.113.1")).unwrap();
        assert_eq!(a.admit(ip("203.0.113.1")).unwrap_err(), Refusal::PerIp);
        // Another client is not affected.
        let _q = a.admit(ip("203.0.113.2")).unwrap();
        drop(p1);
        let _p3 = a.admit(ip("203.0.113.1")).unwrap();
        assert_eq!(a.open(), 3);
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a = Admission::new("test", 1, 100, vec![]);
        let _p = a.admit(ip("2001:db8:0:1::1")).unwrap();
        assert_eq!(a.admit(ip("2001:db8:0:1::2")).unwrap_err(), Refusal::PerIp);
        let _v4 = a.admit(ip("198.51.100.7")).unwrap();
        assert_eq!(
            a.admit(ip("::ffff:198.51.100.7")).unwrap_err(),
            Refusal::PerIp
        );
    }

    #[test]
    fn trusted_proxies_only_meet_the_global_ceiling() {
        let trusted = vec![crate::config::parse_cidr("10.0.0.0/8").unwrap()];
        let a = Admission::new("test", 1, 3, trusted);
        let _a = a.admit(ip("10.1.1.1")).unwrap();
        let _b = a.admit(ip("10.1.1.1")).unwrap();
        let _c = a.admit(ip("10.1.1.1")).unwrap();
        assert_eq!(a.admit(ip("10.1.1.1")).unwrap_err(), Refusal::Global);
        assert_eq!(a.admit(ip("203.0.113.1")).unwrap_err(), Refusal::Global);
        assert_eq!(a.held_by("10.1.1.1".parse().unwrap()), 0);
    }
}

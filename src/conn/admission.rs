//! How many connections one client, and a listener as a whole, may hold open.
//!
//! A connection is admitted with a [`Permit`] that gives its place back when dropped (when
//! the connection ends, whatever ended it). Clients are counted under
//! [`crate::client::connection_key`] (an IPv4 address or an IPv6 /64).
//!
//! Two kinds of addresses carry many clients on few connections' worth of share:
//! `trusted_proxies` (exempt from the per-client count on the edge, meeting only the global
//! ceiling) and the fleet's nodes. A node is trusted by its signature, never by its address:
//! a connection from a node's address is admitted *provisionally* uncounted, and the
//! exemption ends — the connection is counted under its address, and refused if that is
//! over its share — at its first request that carries no valid fleet signature, or at once
//! when it speaks HTTP/2 (nodes talk to each other over HTTP/1.1). The admin listener
//! exempts no one.
//!
//! The share counts requests in flight, whatever carries them: an HTTP/1.1 connection carries
//! one at a time, and an HTTP/2 connection holds one place for itself (its first stream) and
//! takes a [`Place`] for every further stream in flight ([`Permit::stream_place`]). So
//! `max_connections_per_ip` bounds a client's upstream fetches and descriptors the same way
//! over either protocol, and `max_connections` bounds the edge's.

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
    /// Addresses admitted uncounted until a request shows the connection is not a node's.
    provisional: Vec<IpNet>,
}

/// One admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    /// The key counted under, when counted per client.
    client: Mutex<Option<IpAddr>>,
    /// A fleet node's address while its exemption holds.
    provisional: Mutex<Option<IpAddr>>,
}

impl Admission {
    /// `exempt`: never counted per client (`trusted_proxies`); `provisional`: uncounted until
    /// [`Permit::end_exemption`] (the fleet's nodes).
    pub fn new(
        listener: &'static str,
        max_per_client: u32,
        max_total: u64,
        exempt: Vec<IpNet>,
        provisional: Vec<IpNet>,
    ) -> Arc<Admission> {
        Arc::new(Admission {
            listener,
            per_client: Mutex::new(HashMap::new()),
            open: AtomicU64::new(0),
            max_per_client,
            max_total,
            exempt,
            provisional,
        })
    }

    /// Admit a connection from `peer` (`None`: not an IP socket, counted globally only).
    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Permit, Refusal> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Global);
        }
        let ip = peer
            .map(crate::client::canonical_ip)
            .filter(|ip| !crate::client::is_trusted(ip, &self.exempt));
        let provisional = ip.filter(|ip| crate::client::is_trusted(ip, &self.provisional));
        let mut client = None;
        if let (Some(ip), None) = (ip, provisional) {
            let key = crate::client::connection_key(ip);
            if let Err(r) = self.count(key) {
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(r);
            }
            client = Some(key);
        }
        crate::metrics::CONNECTIONS_OPEN
            .with_label_values(&[self.listener])
            .inc();
        Ok(Permit {
            admission: self.clone(),
            client: Mutex::new(client),
            provisional: Mutex::new(provisional),
        })
    }

    /// Take one of `key`'s places.
    fn count(&self, key: IpAddr) -> Result<(), Refusal> {
        let mut map = self.per_client.lock();
        let n = map.entry(key).or_insert(0);
        if *n >= self.max_per_client {
            if *n == 0 {
                map.remove(&key);
            }
            return Err(Refusal::PerIp);
        }
        *n += 1;
        Ok(())
    }

    /// Give one of `key`'s places back.
    fn uncount(&self, key: IpAddr) {
        let mut map = self.per_client.lock();
        if let Some(n) = map.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&key);
            }
        }
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

/// One HTTP/2 stream's place beyond its connection's first; dropping it frees the place.
#[derive(Debug)]
pub struct Place {
    admission: Arc<Admission>,
    client: Option<IpAddr>,
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(key) = self.client {
            self.admission.uncount(key);
        }
        self.admission.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Permit {
    /// A place for one more HTTP/2 stream in flight on this connection, counted under the
    /// connection's client (if counted) and against the listener's ceiling.
    pub fn stream_place(&self) -> Result<Place, Refusal> {
        let admission = &self.admission;
        if admission.open.fetch_add(1, Ordering::AcqRel) >= admission.max_total {
            admission.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Global);
        }
        let client = *self.client.lock();
        if let Some(key) = client {
            if let Err(r) = admission.count(key) {
                admission.open.fetch_sub(1, Ordering::AcqRel);
                return Err(r);
            }
        }
        Ok(Place {
            admission: admission.clone(),
            client,
        })
    }

    /// A fleet node's exemption ends (a request without a valid fleet signature, or a
    /// protocol nodes do not use): the connection is counted under its address from now on.
    /// `Err` when that address already holds its share: the connection must be refused.
    pub fn end_exemption(&self) -> Result<(), Refusal> {
        let Some(ip) = self.provisional.lock().take() else {
            return Ok(());
        };
        let key = crate::client::connection_key(ip);
        self.admission.count(key).inspect_err(|r| {
            crate::metrics::CONNECTIONS_REFUSED
                .with_label_values(&[self.admission.listener, r.as_str()])
                .inc();
        })?;
        *self.client.lock() = Some(key);
        Ok(())
    }

    /// Whether the connection is still admitted as a fleet node's (uncounted).
    pub fn provisional(&self) -> bool {
        self.provisional.lock().is_some()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(key) = *self.client.lock() {
            self.admission.uncount(key);
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
        let a = Admission::new("test", 2, 100, vec![], vec![]);
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
    fn streams_beyond_a_connections_first_share_its_clients_places() {
        let a = Admission::new("test", 3, 100, vec![], vec![]);
        let conn = a.admit(ip("203.0.113.1")).unwrap();
        let s1 = conn.stream_place().unwrap();
        let s2 = conn.stream_place().unwrap();
        assert_eq!(conn.stream_place().unwrap_err(), Refusal::PerIp);
        assert_eq!(a.admit(ip("203.0.113.1")).unwrap_err(), Refusal::PerIp);
        assert_eq!(a.held_by("203.0.113.1".parse().unwrap()), 3);
        drop(s1);
        let _other = a.admit(ip("203.0.113.1")).unwrap();
        drop(s2);
        drop(conn);
        assert_eq!(a.held_by("203.0.113.1".parse().unwrap()), 1);
        assert_eq!(a.open(), 1);
    }

    #[test]
    fn an_exempt_clients_streams_meet_the_global_ceiling() {
        let trusted = vec![crate::config::parse_cidr("10.0.0.0/8").unwrap()];
        let a = Admission::new("test", 1, 3, trusted, vec![]);
        let conn = a.admit(ip("10.1.1.1")).unwrap();
        let _s1 = conn.stream_place().unwrap();
        let _s2 = conn.stream_place().unwrap();
        assert_eq!(conn.stream_place().unwrap_err(), Refusal::Global);
        assert_eq!(a.held_by("10.1.1.1".parse().unwrap()), 0);
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a = Admission::new("test", 1, 100, vec![], vec![]);
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
        let a = Admission::new("test", 1, 3, trusted, vec![]);
        let _a = a.admit(ip("10.1.1.1")).unwrap();
        let _b = a.admit(ip("10.1.1.1")).unwrap();
        let _c = a.admit(ip("10.1.1.1")).unwrap();
        assert_eq!(a.admit(ip("10.1.1.1")).unwrap_err(), Refusal::Global);
        assert_eq!(a.admit(ip("203.0.113.1")).unwrap_err(), Refusal::Global);
        assert_eq!(a.held_by("10.1.1.1".parse().unwrap()), 0);
    }

    #[test]
    fn a_fleet_nodes_address_is_exempt_until_its_exemption_ends() {
        let peers = vec![crate::config::parse_cidr("10.9.9.9").unwrap()];
        let a = Admission::new("test", 1, 100, vec![], peers);
        let p1 = a.admit(ip("10.9.9.9")).unwrap();
        let p2 = a.admit(ip("10.9.9.9")).unwrap();
        let p3 = a.admit(ip("10.9.9.9")).unwrap();
        assert_eq!(a.held_by("10.9.9.9".parse().unwrap()), 0);
        assert!(p1.provisional());
        // The first unsigned request: counted, and within the share of one.
        p1.end_exemption().unwrap();
        assert!(!p1.provisional());
        assert_eq!(a.held_by("10.9.9.9".parse().unwrap()), 1);
        // Ending twice counts once.
        p1.end_exemption().unwrap();
        assert_eq!(a.held_by("10.9.9.9".parse().unwrap()), 1);
        // The next one is over the share: refused, and not counted.
        assert_eq!(p2.end_exemption().unwrap_err(), Refusal::PerIp);
        assert_eq!(a.held_by("10.9.9.9".parse().unwrap()), 1);
        drop(p2);
        drop(p1);
        assert_eq!(a.held_by("10.9.9.9".parse().unwrap()), 0);
        p3.end_exemption().unwrap();
        assert_eq!(a.held_by("10.9.9.9".parse().unwrap()), 1);
        drop(p3);
        assert_eq!(a.held_by("10.9.9.9".parse().unwrap()), 0);
        assert_eq!(a.open(), 0);
    }
}

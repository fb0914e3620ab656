//! Which node owns an object: Ketama consistent hashing (pingora-load-balancing's
//! `KetamaHashing`) of the object's cache key onto the fleet's edge addresses.
//!
//! Every node builds the same ring from the same `fleet.peers`, so every node names the same
//! owner for a key. Adding or removing one node of N moves about 1/N of the keys to another
//! owner and leaves the rest where they were: a peer change (rolled out by graceful upgrade)
//! does not make the fleet cold, and since cache keys name the upstream object — never the
//! node that fetched it — whatever any node already holds stays valid.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use pingora::lb::selection::consistent::KetamaHashing;
use pingora::lb::selection::{BackendIter, BackendSelection};
use pingora::lb::Backend;

/// The fleet's hash ring.
pub struct Ring {
    ketama: Arc<KetamaHashing>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ring")
    }
}

impl Ring {
    pub fn new(peers: &[SocketAddr]) -> Ring {
        let backends: BTreeSet<Backend> = peers
            .iter()
            .map(|p| Backend {
                addr: pingora::protocols::l4::socket::SocketAddr::Inet(*p),
                weight: 1,
                ext: Default::default(),
            })
            .collect();
        Ring {
            ketama: Arc::new(KetamaHashing::build(&backends)),
        }
    }

    /// The owner of the object whose cache key's primary part is `primary`.
    pub fn owner(&self, primary: &str) -> Option<SocketAddr> {
        let mut it = self.ketama.iter(primary.as_bytes());
        it.next().and_then(|b| b.addr.as_inet().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| format!("10.0.0.{i}:8080").parse().unwrap())
            .collect()
    }

    fn keys() -> Vec<String> {
        (0..3000)
            .map(|i| format!("http://bucket/h{}/v/seg_{i}.m4s", i % 7))
            .collect()
    }

    #[test]
    fn every_node_names_the_same_owner_whatever_the_order() {
        let mut reversed = peers(3);
        reversed.reverse();
        let (a, b) = (Ring::new(&peers(3)), Ring::new(&reversed));
        for k in keys() {
            assert_eq!(a.owner(&k), b.owner(&k));
        }
    }

    #[test]
    fn keys_spread_over_the_nodes() {
        let ring = Ring::new(&peers(3));
        let mut counts = std::collections::HashMap::new();
        for k in keys() {
            *counts.entry(ring.owner(&k).unwrap()).or_insert(0usize) += 1;
        }
        assert_eq!(counts.len(), 3);
        for (node, n) in counts {
            assert!((600..=1400).contains(&n), "{node}: {n} of 3000");
        }
    }

    #[test]
    fn adding_a_node_moves_only_its_share() {
        let (three, four) = (Ring::new(&peers(3)), Ring::new(&peers(4)));
        let keys = keys();
        let moved = keys
            .iter()
            .filter(|k| three.owner(k) != four.owner(k))
            .count();
        // About a quarter move, all of them to the new node.
        assert!(
            moved < keys.len() * 2 / 5,
            "{moved} of {} moved",
            keys.len()
        );
        for k in &keys {
            if three.owner(k) != four.owner(k) {
                assert_eq!(four.owner(k), Some(peers(4)[3]));
            }
        }
    }
}

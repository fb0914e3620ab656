//! The cache fleet (shield tier): N sluice nodes serving as one, each object fetched from
//! the origin once for the whole fleet.
//!
//! ```text
//! player ─▶ node B (not the owner) ─miss─▶ node A (owner of the key) ─miss─▶ origin
//!              │ gate, cache lock              │ cache lock: one fetch for every node
//!              └─ stores the object too        └─ never forwards a node's request again
//! ```
//!
//! - The owner of a cold `/stream` object is chosen by consistent hashing of its cache key
//!   ([`ring`]). A non-owner that misses asks the owner, over the owner's edge listener, with
//!   a signed request ([`auth`]); the owner serves it from its cache or fills it from the
//!   origin under its cache lock, so all nodes' misses of one object coalesce there. The
//!   non-owner caches what it gets (same cache key: the key names the upstream object, not
//!   the node it came from).
//! - Owner unreachable, or no response header within `fleet.owner_timeout` → the non-owner
//!   fetches from the origin itself, and skips that owner for [`DOWN_FOR`]. A failure after
//!   the owner's body started ends that response; the partial body is never stored.
//! - A request from a node is served locally and never forwarded to a third node: during a
//!   rolling change of `fleet.peers` two nodes may disagree about the owner, and forwarding
//!   could loop.
//! - Purges fan out to every node ([`purge`]).
//!
//! The edge's phases call this through `edge::fleet`; nothing here touches a session.

pub mod auth;
pub mod purge;
pub mod ring;
pub mod stats;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;
use pingora_core::upstreams::peer::HttpPeer;
use prometheus::{register_int_counter_vec, IntCounterVec};
use thiserror::Error;

use crate::config::fleet::FleetConfig;

/// How long a node that failed to answer is skipped (its objects fetched from the origin)
/// before it is tried again.
pub const DOWN_FOR: Duration = Duration::from_secs(5);

/// The `result` labels of [`OWNER_FETCHES`].
pub const OWNER_RESULTS: [&str; 9] = [
    "answered",
    "connect_failed",
    "timed_out",
    "refused",
    "not_a_peer",
    "busy",
    "failed",
    "skipped_down",
    "aborted",
];

/// Create every fleet series (at 0) so dashboards and alerts see them from the start, on a
/// single node too. Called at start.
pub fn init_metrics() {
    for (metric, results) in [
        (&OWNER_FETCHES, &OWNER_RESULTS[..]),
        (&PEER_REQUESTS, &["served", "refused"][..]),
        (&PURGE_FANOUT, &["ok", "failed"][..]),
    ] {
        for r in results {
            metric.with_label_values(&[r]).inc_by(0);
        }
    }
}

/// A non-owner's fetches from owners, by result: `answered` (the owner's header came),
/// `connect_failed`, `timed_out`, `refused` (the owner refused our signature: secrets or
/// clocks differ), `not_a_peer` (the owner's `fleet.peers` does not list this node: a
/// rolling change of the list), `busy` (the owner is over its connection share: skipped for a while),
/// `failed` (then fetched from the origin), `skipped_down` (owner skipped
/// after a recent failure: origin directly), `aborted` (the owner's body broke off).
pub static OWNER_FETCHES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_fleet_owner_fetches_total",
        "Misses sent to the object's owner node, by result",
        &["result"]
    )
    .expect("metric registers once")
});

/// Requests from other nodes, by result: `served`, `refused` (bad signature).
pub static PEER_REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_fleet_peer_requests_total",
        "Node-to-node requests received, by result",
        &["result"]
    )
    .expect("metric registers once")
});

/// Purges sent to other nodes, by result: `ok`, `failed`.
pub static PURGE_FANOUT: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_fleet_purge_fanout_total",
        "Purges sent to other nodes, by result",
        &["result"]
    )
    .expect("metric registers once")
});

/// Why the fleet could not be set up.
#[derive(Debug, Error)]
pub enum FleetError {
    #[error("fleet: cannot build the node-to-node HTTP client: {0}")]
    Client(String),
    #[error(
        "fleet.self: {0} is not an address of this machine ({1}); node-to-node requests leave \
         from it so that the other nodes recognise this one"
    )]
    NotLocal(std::net::IpAddr, std::io::Error),
}

/// Who fetches an object on a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// This node: from the origin.
    This,
    /// Another node, to be asked.
    Peer(SocketAddr),
    /// Another node that failed recently: from the origin, without asking it.
    Down(SocketAddr),
}

/// The fleet as this node sees it.
pub struct Fleet {
    pub config: FleetConfig,
    ring: ring::Ring,
    /// The other nodes (the only accepted senders of signed requests).
    others: Vec<SocketAddr>,
    /// Per other node: until when (ms since `epoch`) it is skipped; 0 when it is not.
    down_until: Vec<AtomicU64>,
    epoch: Instant,
    /// Purge fan-out (control plane; objects travel through the proxy).
    client: reqwest::Client,
    /// The signatures accepted lately: each is accepted once.
    replays: parking_lot::Mutex<auth::Replays>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("this", &self.config.this)
            .field("peers", &self.config.peers)
            .finish()
    }
}

impl Fleet {
    /// # Errors
    /// When the fan-out HTTP client cannot be built.
    pub fn new(config: &FleetConfig) -> Result<Fleet, FleetError> {
        let ip = config.this.ip();
        std::net::TcpListener::bind((ip, 0)).map_err(|e| FleetError::NotLocal(ip, e))?;
        let others: Vec<SocketAddr> = config.others().collect();
        let client = reqwest::Client::builder()
            .timeout(purge::TIMEOUT)
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            // From this node's fleet address: the receiver knows its peers by address.
            .local_address(config.this.ip())
            .no_proxy()
            .build()
            .map_err(|e| FleetError::Client(e.to_string()))?;
        init_metrics();
        Ok(Fleet {
            ring: ring::Ring::new(&config.peers),
            down_until: others.iter().map(|_| AtomicU64::new(0)).collect(),
            others,
            epoch: Instant::now(),
            client,
            replays: parking_lot::Mutex::new(auth::Replays::default()),
            config: config.clone(),
        })
    }

    /// Who fetches the object with cache key primary `primary` on a miss.
    pub fn owner(&self, primary: &str) -> Owner {
        match self.ring.owner(primary) {
            Some(p) if p != self.config.this => {
                if self.is_down(p) {
                    Owner::Down(p)
                } else {
                    Owner::Peer(p)
                }
            }
            _ => Owner::This,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn slot(&self, peer: SocketAddr) -> Option<&AtomicU64> {
        self.others
            .iter()
            .position(|p| *p == peer)
            .map(|i| &self.down_until[i])
    }

    /// Skip `peer` for [`DOWN_FOR`]: it refused a connection or did not answer in time.
    pub fn mark_down(&self, peer: SocketAddr) {
        if let Some(s) = self.slot(peer) {
            let until = self.now_ms() + DOWN_FOR.as_millis() as u64;
            if s.swap(until, Ordering::Relaxed) <= self.now_ms() {
                crate::metrics::FLEET_PEER_DOWN.inc();
                tracing::warn!(%peer, skip_for = ?DOWN_FOR, "fleet node did not answer: its objects come from the origin for now");
            }
        }
    }

    pub fn is_down(&self, peer: SocketAddr) -> bool {
        self.slot(peer)
            .is_some_and(|s| s.load(Ordering::Relaxed) > self.now_ms())
    }

    /// The `x-sluice-fleet` header for a request this node sends to `receiver`.
    ///
    /// # Errors
    /// Never in practice (see [`auth::sign`]).
    pub fn sign(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        receiver: SocketAddr,
    ) -> Result<String, auth::AuthError> {
        auth::sign(
            &self.config.secret.0,
            &auth::Signed {
                method,
                path_and_query,
                body,
            },
            &auth::Hop {
                sender: self.config.this,
                receiver,
                ts: chrono::Utc::now().timestamp(),
                nonce: rand::random(),
            },
        )
    }

    /// Check a received `x-sluice-fleet` header, which `peer` (the connection's address,
    /// canonical; never a forwarded one) sent: made for this node by another, from that
    /// node's address, in the window, and never seen here before. The sender on success.
    ///
    /// # Errors
    /// [`auth::AuthError`]: which check failed.
    pub fn verify(
        &self,
        header: &str,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        peer: Option<std::net::IpAddr>,
    ) -> Result<SocketAddr, auth::AuthError> {
        let now = chrono::Utc::now().timestamp();
        let v = auth::verify(
            &self.config.secret.0,
            header,
            &auth::Signed {
                method,
                path_and_query,
                body,
            },
            &self.others,
            self.config.this,
            peer,
            now,
        )?;
        self.replays.lock().first_use(&v, now)?;
        Ok(v.sender)
    }

    /// The peer to ask `owner` for an object: its edge listener, from this node's fleet
    /// address, with the fleet's timeouts. `read_timeout` is the owner's response-header
    /// timeout, and the longest pause in its body (`fleet.owner_timeout`, or the LL-HLS
    /// blocking-reload bound for a blocking playlist request the owner legitimately holds).
    pub fn peer(&self, owner: SocketAddr, read_timeout: Duration) -> Box<HttpPeer> {
        let mut peer = HttpPeer::new(owner, false, String::new());
        let o = &mut peer.options;
        o.connection_timeout = Some(self.config.connect_timeout);
        o.total_connection_timeout = Some(self.config.connect_timeout);
        o.read_timeout = Some(read_timeout);
        o.write_timeout = Some(self.config.owner_timeout);
        o.idle_timeout = Some(Duration::from_secs(60));
        let mut bind = pingora_core::connectors::l4::BindTo::default();
        bind.addr = Some(SocketAddr::new(self.config.this.ip(), 0));
        o.bind_to = Some(bind);
        Box::new(peer)
    }

    /// The other nodes, in `fleet.peers` order.
    pub fn others(&self) -> &[SocketAddr] {
        &self.others
    }

    /// Send a signed request to every other node's edge listener, concurrently (each bounded
    /// by [`purge::TIMEOUT`]), and read each JSON answer as `T`: one result per node, in
    /// `fleet.peers` order. Operator operations only (purge, stats); objects travel through
    /// the proxy.
    pub async fn ask_all<T>(
        &self,
        method: http::Method,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Vec<(SocketAddr, Result<T, String>)>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, &node) in self.others.iter().enumerate() {
            let request = self
                .client
                .request(method.clone(), format!("http://{node}{path_and_query}"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            let header = self.sign(method.as_str(), path_and_query, &body, node);
            tasks.spawn(async move {
                let result = match header {
                    Ok(h) => ask(request.header(auth::HEADER, h)).await,
                    Err(e) => Err(e.to_string()),
                };
                (i, node, result)
            });
        }
        let mut answers = Vec::with_capacity(self.others.len());
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(a) => answers.push(a),
                Err(e) => tracing::error!(error = %e, "fleet request task failed"),
            }
        }
        answers.sort_by_key(|(i, _, _)| *i);
        answers
            .into_iter()
            .map(|(_, node, result)| (node, result))
            .collect()
    }
}

/// Largest answer read from another node (purge and stats answers are a few hundred bytes).
const MAX_ANSWER: usize = 16 * 1024;

async fn ask<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
) -> Result<T, String> {
    let resp = request
        .send()
        .await
        .map_err(|e| format!("unreachable: {e}"))?;
    let status = resp.status();
    let body = crate::http_client::read_bounded(resp, MAX_ANSWER)
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("unexpected answer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(this: &str) -> FleetConfig {
        FleetConfig {
            peers: ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
                .iter()
                .map(|p| p.parse().unwrap())
                .collect(),
            this: this.parse().unwrap(),
            secret: crate::config::Secret(b"fleet-secret-0123456789".to_vec()),
            connect_timeout: Duration::from_secs(1),
            owner_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn nodes_agree_on_owners_and_skip_a_down_one() {
        let nodes: Vec<Fleet> = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
            .iter()
            .map(|t| Fleet::new(&config(t)).unwrap())
            .collect();
        let key = "http://bucket/h/seg_1.m4s";
        let owner = nodes[0].ring.owner(key).unwrap();
        for n in &nodes {
            let want = if n.config.this == owner {
                Owner::This
            } else {
                Owner::Peer(owner)
            };
            assert_eq!(n.owner(key), want);
        }
        let asker = nodes.iter().find(|n| n.config.this != owner).unwrap();
        asker.mark_down(owner);
        assert_eq!(asker.owner(key), Owner::Down(owner));
        // Marking this node or a stranger changes nothing.
        asker.mark_down("127.0.0.1:9".parse().unwrap());
        assert!(!asker.is_down("127.0.0.1:9".parse().unwrap()));
    }

    #[test]
    fn this_node_must_be_local() {
        let e = Fleet::new(&config("192.0.2.1:1")).unwrap_err();
        assert!(matches!(e, FleetError::NotLocal(..)), "{e}");
    }

    #[test]
    fn a_node_accepts_what_another_signs_for_it_once_from_its_address() {
        let a = Fleet::new(&config("127.0.0.1:1")).unwrap();
        let b = Fleet::new(&config("127.0.0.1:2")).unwrap();
        let c = Fleet::new(&config("127.0.0.1:3")).unwrap();
        let from_a = Some(a.config.this.ip());
        let h = a.sign("GET", "/stream/h/x.ts", b"", b.config.this).unwrap();
        assert_eq!(
            c.verify(&h, "GET", "/stream/h/x.ts", b"", from_a),
            Err(auth::AuthError::BadMac)
        );
        assert_eq!(
            a.verify(&h, "GET", "/stream/h/x.ts", b"", from_a),
            Err(auth::AuthError::UnknownSender)
        );
        assert_eq!(
            b.verify(&h, "GET", "/stream/h/x.ts", b"", from_a),
            Ok(a.config.this)
        );
        assert_eq!(
            b.verify(&h, "GET", "/stream/h/x.ts", b"", from_a),
            Err(auth::AuthError::Replayed)
        );
        // Two requests for one object in one second are two headers.
        let h2 = a.sign("GET", "/stream/h/x.ts", b"", b.config.this).unwrap();
        assert_ne!(h, h2);
        assert_eq!(
            b.verify(&h2, "GET", "/stream/h/x.ts", b"", from_a),
            Ok(a.config.this)
        );
    }
}

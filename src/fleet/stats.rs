//! `GET /stats/{player}` reports the fleet's figures: the node asked gathers every other
//! node's figures for the player (a signed `GET /_fleet/stats/{player}` to each, `?reset`
//! passed on) and adds them to its own ([`combine`]). A player's requests may land on any
//! node (a load balancer spreads them), so one node's figures are a part of the truth.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::Fleet;
use crate::stats::Snapshot;

/// The edge route other nodes ask for a player's figures (followed by the player id).
pub const PATH_PREFIX: &str = "/_fleet/stats/";

/// One node's figures for a player.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    /// `None` when the node has not served the player.
    pub snapshot: Option<Snapshot>,
    /// Bytes of the player's objects in that node's cache.
    pub cached_bytes: u64,
}

/// The path asking for `player`'s figures (and resetting them with `reset`).
pub fn path(player: &str, reset: bool) -> String {
    let player = crate::media::path::encode_segments(&[player.to_string()]);
    let reset = if reset { "?reset" } else { "" };
    format!("{PATH_PREFIX}{player}{reset}")
}

impl Fleet {
    /// Every other node's figures for `player`, in `fleet.peers` order.
    pub async fn gather_stats(
        &self,
        player: &str,
        reset: bool,
    ) -> Vec<(SocketAddr, Result<NodeStats, String>)> {
        let answers = self
            .ask_all::<NodeStats>(http::Method::GET, &path(player, reset), Vec::new())
            .await;
        for (node, a) in &answers {
            if let Err(e) = a {
                tracing::warn!(%node, error = %e, "fleet stats: a node did not answer");
            }
        }
        answers
    }
}

/// The fleet's figures from each node's: counts and rates add up, the smoothed times are
/// averaged weighted by each node's requests, the uptime is the longest. `None` when no node
/// has served the player.
pub fn combine(parts: impl IntoIterator<Item = Snapshot>) -> Option<Snapshot> {
    let parts: Vec<Snapshot> = parts.into_iter().collect();
    if parts.is_empty() {
        return None;
    }
    let requests: u64 = parts.iter().map(|s| s.requests).sum();
    let weighted = |f: fn(&Snapshot) -> f64| {
        if requests == 0 {
            return 0.0;
        }
        let sum: f64 = parts.iter().map(|s| f(s) * s.requests as f64).sum();
        (sum / requests as f64 * 10.0).round() / 10.0
    };
    Some(Snapshot {
        bitrate_kbps: parts.iter().map(|s| s.bitrate_kbps).sum(),
        bytes: parts.iter().map(|s| s.bytes).sum(),
        requests,
        upstream_errors: parts.iter().map(|s| s.upstream_errors).sum(),
        rtt_ms: weighted(|s| s.rtt_ms),
        latency_ms: weighted(|s| s.latency_ms),
        uptime_secs: parts.iter().map(|s| s.uptime_secs).max().unwrap_or(0),
        cache_hits: parts.iter().map(|s| s.cache_hits).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(requests: u64, rtt: f64, uptime: u64) -> Snapshot {
        Snapshot {
            bitrate_kbps: 1000,
            bytes: 10 * requests,
            requests,
            upstream_errors: 1,
            rtt_ms: rtt,
            latency_ms: rtt * 2.0,
            uptime_secs: uptime,
            cache_hits: requests / 2,
        }
    }

    #[test]
    fn figures_add_up_across_nodes() {
        let s = combine([snap(30, 10.0, 5), snap(10, 50.0, 90)]).unwrap();
        assert_eq!(s.bitrate_kbps, 2000);
        assert_eq!(s.bytes, 400);
        assert_eq!(s.requests, 40);
        assert_eq!(s.upstream_errors, 2);
        assert_eq!(s.rtt_ms, 20.0);
        assert_eq!(s.latency_ms, 40.0);
        assert_eq!(s.uptime_secs, 90);
        assert_eq!(s.cache_hits, 20);
        assert_eq!(combine([snap(7, 3.0, 1)]), Some(snap(7, 3.0, 1)));
        assert_eq!(combine([]), None);
    }

    #[test]
    fn player_ids_are_encoded_in_the_path() {
        assert_eq!(path("live_1", false), "/_fleet/stats/live_1");
        assert_eq!(path("a b", true), "/_fleet/stats/a%20b?reset");
    }
}

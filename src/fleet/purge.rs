//! Purge on any node purges every node: the node that received `POST /api/cache/purge`
//! resolves it to cache-key operations ([`PurgeOps`]), applies them, and sends the same
//! operations to every other node's edge listener as a signed `POST /_fleet/purge`. A node
//! applies a fleet purge locally and never sends it on. Keys are the same on every node, so
//! nothing is resolved twice (a stream id registered on one node only still purges its
//! objects everywhere).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Fleet, PURGE_FANOUT};
use crate::cache::runtime::PurgeOp;

/// The edge route other nodes send purges to.
pub const PATH: &str = "/_fleet/purge";

/// How long a fan-out waits for each node (they are asked concurrently).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A fleet purge's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeOps {
    pub ops: Vec<PurgeOp>,
}

/// What one other node answered.
#[derive(Debug, Clone)]
pub struct NodePurge {
    pub node: SocketAddr,
    /// Objects it removed, or why it could not be asked.
    pub result: Result<usize, String>,
}

#[derive(Deserialize)]
struct Answer {
    purged: usize,
}

impl Fleet {
    /// Send `ops` to every other node; one answer per node, in `fleet.peers` order.
    pub async fn fan_out_purge(&self, ops: &PurgeOps) -> Vec<NodePurge> {
        let body = match serde_json::to_vec(ops) {
            Ok(b) => b,
            Err(e) => {
                return self
                    .others
                    .iter()
                    .map(|&node| NodePurge {
                        node,
                        result: Err(e.to_string()),
                    })
                    .collect()
            }
        };
        self.ask_all::<Answer>(http::Method::POST, PATH, body)
            .await
            .into_iter()
            .map(|(node, result)| {
                let result = result.map(|a| a.purged);
                let label = if result.is_ok() { "ok" } else { "failed" };
                PURGE_FANOUT.with_label_values(&[label]).inc();
                if let Err(e) = &result {
                    tracing::warn!(%node, error = %e, "fleet purge not applied on a node");
                }
                NodePurge { node, result }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_travel_as_json() {
        let ops = PurgeOps {
            ops: vec![
                PurgeOp::Variants("http://b/h/x.m3u8".into()),
                PurgeOp::Prefix("http://b/h/".into()),
                PurgeOp::Exact("https://cdn/x.ts?a=1".into()),
            ],
        };
        let text = serde_json::to_string(&ops).unwrap();
        assert_eq!(
            text,
            r#"{"ops":[{"variants":"http://b/h/x.m3u8"},{"prefix":"http://b/h/"},{"exact":"https://cdn/x.ts?a=1"}]}"#
        );
        assert_eq!(serde_json::from_str::<PurgeOps>(&text).unwrap(), ops);
        assert!(serde_json::from_str::<PurgeOps>(r#"{"ops":[{"all":""}]}"#).is_err());
    }
}

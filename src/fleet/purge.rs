//! Purge on any node purges every node: the node that received `POST /api/cache/purge`
//! resolves it to cache-key operations ([`PurgeOps`]), applies them, and sends the same
//! operations to every other node's edge listener as a signed `POST /_fleet/purge`. A node
//! applies a fleet purge locally and never sends it on. Keys are the same on every node, so
//! nothing is resolved twice (a stream id registered on one node only still purges its
//! objects everywhere).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{auth, Fleet, PURGE_FANOUT};
use crate::cache::runtime::PurgeOp;

/// The edge route other nodes send purges to.
pub const PATH: &str = "/_fleet/purge";

/// How long the fan-out waits for each node (they are asked concurrently).
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
    /// Send `ops` to every other node, concurrently; one answer per node, in `fleet.peers`
    /// order.
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
        let mut tasks = tokio::task::JoinSet::new();
        for (i, &node) in self.others.iter().enumerate() {
            let client = self.client.clone();
            let body = body.clone();
            let header = self.sign("POST", PATH, &body);
            tasks.spawn(async move {
                let result = match header {
                    Ok(h) => send(&client, node, h, body).await,
                    Err(e) => Err(e.to_string()),
                };
                (i, NodePurge { node, result })
            });
        }
        let mut answers: Vec<(usize, NodePurge)> = Vec::with_capacity(self.others.len());
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(a) => answers.push(a),
                Err(e) => tracing::error!(error = %e, "fleet purge task failed"),
            }
        }
        answers.sort_by_key(|(i, _)| *i);
        answers
            .into_iter()
            .map(|(_, a)| {
                let label = if a.result.is_ok() { "ok" } else { "failed" };
                PURGE_FANOUT.with_label_values(&[label]).inc();
                if let Err(e) = &a.result {
                    tracing::warn!(node = %a.node, error = %e, "fleet purge not applied on a node");
                }
                a
            })
            .collect()
    }
}

async fn send(
    client: &reqwest::Client,
    node: SocketAddr,
    header: String,
    body: Vec<u8>,
) -> Result<usize, String> {
    let resp = client
        .post(format!("http://{node}{PATH}"))
        .header(auth::HEADER, header)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("unreachable: {e}"))?;
    let status = resp.status();
    let body = crate::http_client::read_bounded(resp, 4096)
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    serde_json::from_slice::<Answer>(&body)
        .map(|a| a.purged)
        .map_err(|e| format!("unexpected answer: {e}"))
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

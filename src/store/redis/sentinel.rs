//! Finding the master behind Sentinels (`state.redis_sentinel`): asked at every (re)connect of
//! the [`super::Redis`] supervisor, so a failover is followed without a restart.
//!
//! ```text
//!  supervisor: connection missing, lost, or ROLE is no longer master (a READONLY kicks it)
//!      └─▶ MasterResolver::resolve ── SENTINEL MASTERS ─▶ sentinel i (then i+1, …)
//!                 │                   ROLE ───────────▶ the node it names: must say master
//!                 └─▶ Client for that node ─▶ command connection and pub/sub follow it
//! ```
//!
//! The `redis` crate's [`Sentinel`] does the asking (its flags filter: a master marked
//! `s_down`/`o_down` is skipped, and the node must confirm `ROLE master`). It tries its list of
//! Sentinels in turn with no time bound, so one blackholed Sentinel would stall every
//! resolution: here each Sentinel is its own crate `Sentinel`, asked with its own bound, and
//! the one that answered last is asked first next time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use tokio::sync::Mutex;

use super::StoreError;
use crate::config::redis::SentinelConfig;

/// Asks the Sentinels which node is the master now.
pub struct MasterResolver {
    /// The name the Sentinels monitor.
    master: String,
    /// `(host:port shown, its client)` per Sentinel, in the configured order.
    sentinels: Vec<(String, Mutex<Sentinel>)>,
    /// How to talk to the node named (TLS, database, password).
    node: SentinelNodeConnectionInfo,
    /// Index of the Sentinel that answered last.
    next: AtomicUsize,
}

/// A master as resolved: its client, and `host:port` for the logs.
pub struct Master {
    pub client: redis::Client,
    pub at: String,
}

impl MasterResolver {
    /// # Errors
    /// When a Sentinel's address cannot make a client (never for a validated config).
    pub fn new(cfg: &SentinelConfig) -> Result<MasterResolver, StoreError> {
        let sentinels = cfg
            .sentinels
            .iter()
            .map(|(host, port)| {
                let shown = SentinelConfig::shown_sentinel(host, *port);
                Sentinel::build(vec![cfg.sentinel_connection_info(host, *port)])
                    .map(|s| (shown.clone(), Mutex::new(s)))
                    .map_err(|e| StoreError::Redis(format!("sentinel {shown}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MasterResolver {
            master: cfg.master.clone(),
            sentinels,
            node: cfg.node_connection_info(),
            next: AtomicUsize::new(0),
        })
    }

    /// The name the Sentinels monitor.
    pub fn name(&self) -> &str {
        &self.master
    }

    /// How long [`Self::resolve`] may take when every Sentinel uses its whole `each` bound.
    pub fn bound(&self, each: Duration) -> Duration {
        each * self.sentinels.len().max(1) as u32
    }

    /// The master as the first Sentinel that answers within `each` names it (and the node
    /// itself confirms).
    ///
    /// # Errors
    /// Every Sentinel's failure, joined: none reachable, none knowing the name, the master
    /// they name down or not (yet) a master — during a failover, until the promotion.
    pub async fn resolve(&self, each: Duration) -> Result<Master, String> {
        let n = self.sentinels.len();
        let first = self.next.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for i in (0..n).map(|k| (first + k) % n) {
            let (shown, sentinel) = &self.sentinels[i];
            let asked = tokio::time::timeout(each, async {
                sentinel
                    .lock()
                    .await
                    .async_master_for(&self.master, Some(&self.node))
                    .await
            })
            .await;
            match asked {
                Ok(Ok(client)) => {
                    self.next.store(i, Ordering::Relaxed);
                    let at = client.get_connection_info().addr.to_string();
                    return Ok(Master { client, at });
                }
                Ok(Err(e)) => failures.push(format!("sentinel {shown}: {e}")),
                Err(_) => failures.push(format!("sentinel {shown}: no answer within {each:?}")),
            }
        }
        Err(failures.join("; "))
    }
}

//! Revoked stream tokens (stream-token-api "Revocation: blacklist"): `jti → keep_until`.
//!
//! `keep_until` is not the token's `exp`: a token is accepted until `exp + leeway`, and a
//! playback it started runs on playback credentials until `streaming.playback_max` after
//! that, so a revocation must outlive both
//! ([`crate::config::tokens::StreamingConfig::revocation_horizon`]). The `exp` column holds
//! that horizon.
//!
//! [`RevocationStore`] is the seam for the shared store ([`crate::store::redis::tokens`],
//! when `state.redis` is set); [`SqliteRevocations`] is the single-node one: a SQLite table for durability plus an
//! in-memory set that the edge reads on every gated request without I/O. A revocation is
//! written to SQLite first and then to memory, so once `POST /revoke` answers, every later
//! request on this node sees it. Entries are dropped once their token has expired anyway.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;
use rusqlite::params;

use super::{Db, StoreError};

/// Where revocations live.
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Revoke `jti`, remembering it until `keep_until` (unix seconds). Idempotent; a later
    /// call may only extend the horizon.
    async fn revoke(&self, jti: &str, keep_until: i64) -> Result<(), StoreError>;
    /// Whether `jti` is revoked. Must not block: the edge calls it on every gated request.
    async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError>;
    /// Forget revocations whose horizon passed before `now`.
    async fn prune(&self, now: i64) -> Result<(), StoreError>;
    /// What this node knows without asking anyone (never fails, never waits): the answer a
    /// `state.redis_fail_open: [playback]` node falls back to while the shared store is down.
    fn known_revoked(&self, jti: &str) -> bool;
    /// Every live revocation, `(jti, keep_until)` (for `sluice state migrate`).
    async fn all(&self) -> Result<Vec<(String, i64)>, StoreError>;
}

pub struct SqliteRevocations {
    db: Db,
    set: RwLock<HashMap<String, i64>>,
}

impl SqliteRevocations {
    /// Load the unexpired revocations.
    pub fn load(db: Db, now: i64) -> Result<Arc<SqliteRevocations>, StoreError> {
        let rows: Vec<(String, i64)> = db.call_blocking(move |c| {
            c.execute("DELETE FROM revoked_tokens WHERE exp < ?1", params![now])?;
            let mut st = c.prepare("SELECT jti, exp FROM revoked_tokens")?;
            let it = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            it.collect()
        })?;
        Ok(Arc::new(SqliteRevocations {
            db,
            set: RwLock::new(rows.into_iter().collect()),
        }))
    }
}

#[async_trait]
impl RevocationStore for SqliteRevocations {
    async fn revoke(&self, jti: &str, keep_until: i64) -> Result<(), StoreError> {
        let j = jti.to_string();
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO revoked_tokens (jti, exp) VALUES (?1, ?2)
                     ON CONFLICT(jti) DO UPDATE SET exp = max(exp, excluded.exp)",
                    params![j, keep_until],
                )
            })
            .await?;
        let mut set = self.set.write();
        let e = set.entry(jti.to_string()).or_insert(keep_until);
        *e = (*e).max(keep_until);
        Ok(())
    }

    async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        Ok(self.set.read().contains_key(jti))
    }

    fn known_revoked(&self, jti: &str) -> bool {
        self.set.read().contains_key(jti)
    }

    async fn all(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(self
            .set
            .read()
            .iter()
            .map(|(j, e)| (j.clone(), *e))
            .collect())
    }

    async fn prune(&self, now: i64) -> Result<(), StoreError> {
        self.set.write().retain(|_, exp| *exp >= now);
        self.db
            .call(move |c| c.execute("DELETE FROM revoked_tokens WHERE exp < ?1", params![now]))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn revocations_survive_a_restart_until_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let db = Db::open(&path).unwrap();
        let r = SqliteRevocations::load(db, 100).unwrap();
        assert!(!r.is_revoked("a").await.unwrap());
        r.revoke("a", 200).await.unwrap();
        r.revoke("a", 200).await.unwrap();
        r.revoke("old", 150).await.unwrap();
        assert!(r.is_revoked("a").await.unwrap());
        drop(r);
        let r = SqliteRevocations::load(Db::open(&path).unwrap(), 160).unwrap();
        assert!(r.is_revoked("a").await.unwrap());
        assert!(!r.is_revoked("old").await.unwrap());
        r.prune(201).await.unwrap();
        assert!(!r.is_revoked("a").await.unwrap());
    }
}

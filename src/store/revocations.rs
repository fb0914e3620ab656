//! Revoked stream tokens (stream-token-api "Revocation: blacklist"): `jti → keep_until`.
//!
//! `keep_until` is not the token's `exp`: a token is accepted until `exp + leeway`, and a
//! playback it started runs on playback credentials until `streaming.playback_max` after
//! that, so a revocation must outlive both
//! ([`crate::config::tokens::StreamingConfig::revocation_horizon`]). The `exp` column holds
//! that horizon.
//!
//! **Credential reach.** Those two settings may be lowered between restarts while
//! credentials minted under the old ones are still out. So the state keeps a high-water
//! mark of `leeway + playback_max` ([`RevocationStore::credential_reach`]; SQLite
//! `state_meta`, Redis `sluice:credential_reach`), raised when a process starts and never
//! lowered, and every horizon is computed with it. Why a horizon fixed at revoke time is
//! enough: a credential lives at most `exp + reach` with the reach it was minted under, and
//! every reach this state ran with before the revoke is in the mark; after the revoke the
//! token's entry loads are refused, so no credential is minted under a later, longer reach.
//! Purges (at start and every minute) only drop entries past their horizon.
//!
//! [`RevocationStore`] is the seam for the shared store ([`crate::store::redis::tokens`],
//! when `state.redis` is set); [`SqliteRevocations`] is the single-node one: a SQLite table for durability plus an
//! in-memory set that the edge reads on every gated request without I/O. A revocation is
//! written to SQLite first and then to memory, so once `POST /revoke` answers, every later
//! request on this node sees it. Entries are dropped once their token has expired anyway.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
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
    /// `state.redis_fail_open: [playback]` node falls back to while the shared store is down,
    /// and what it holds against a shared store that lost a revocation.
    fn known_revoked(&self, jti: &str) -> bool {
        self.known_horizon(jti).is_some()
    }
    /// The horizon of a revocation this node knows (its local copy), if it knows one.
    fn known_horizon(&self, jti: &str) -> Option<i64>;
    /// The largest credential reach (`leeway + playback_max`, seconds:
    /// [`crate::config::tokens::StreamingConfig::credential_reach`]) this state has run
    /// with, after raising it to `at_least`. Only ever grows, and is persisted.
    async fn credential_reach(&self, at_least: i64) -> Result<i64, StoreError>;
    /// Every live revocation, `(jti, keep_until)` (for `sluice state migrate`).
    async fn all(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// Stream tokens issued (`iat`) and playback credentials minted before this second are
    /// refused: the shared store lost the revocations and use counts that could vouch for
    /// them (an emptied Redis: [`super::redis::epoch`]). 0 while nothing was lost.
    fn vouched_since(&self) -> i64 {
        0
    }
}

pub struct SqliteRevocations {
    db: Db,
    set: RwLock<HashMap<String, i64>>,
    /// The persisted credential reach high-water mark.
    reach: AtomicI64,
}

/// The `state_meta` row of the credential reach high-water mark.
const REACH: &str = "credential_reach";

/// Raise the persisted credential reach to `at_least`; the mark after.
fn raise_reach(c: &rusqlite::Connection, at_least: i64) -> rusqlite::Result<i64> {
    c.execute(
        "INSERT INTO state_meta (name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)",
        params![REACH, at_least],
    )?;
    c.query_row(
        "SELECT value FROM state_meta WHERE name = ?1",
        params![REACH],
        |r| r.get(0),
    )
}

impl SqliteRevocations {
    /// Load the unexpired revocations, and record `reach` (this process's
    /// `leeway + playback_max`) in the high-water mark before anything is served.
    pub fn load(db: Db, now: i64, reach: i64) -> Result<Arc<SqliteRevocations>, StoreError> {
        let (rows, mark) = db.call_blocking(move |c| {
            c.execute("DELETE FROM revoked_tokens WHERE exp < ?1", params![now])?;
            let mut st = c.prepare("SELECT jti, exp FROM revoked_tokens")?;
            let it = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let rows: Vec<(String, i64)> = it.collect::<rusqlite::Result<_>>()?;
            Ok((rows, raise_reach(c, reach)?))
        })?;
        Ok(Arc::new(SqliteRevocations {
            db,
            set: RwLock::new(rows.into_iter().collect()),
            reach: AtomicI64::new(mark),
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

    fn known_horizon(&self, jti: &str) -> Option<i64> {
        self.set.read().get(jti).copied()
    }

    /// Read from the file each time (a revoke is rare): another process on the same file
    /// (`sluice state migrate`) may have raised it.
    async fn credential_reach(&self, at_least: i64) -> Result<i64, StoreError> {
        let at_least = at_least.max(self.reach.load(Ordering::Acquire));
        let mark = self.db.call(move |c| raise_reach(c, at_least)).await?;
        Ok(self.reach.fetch_max(mark, Ordering::AcqRel).max(mark))
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
        let r = SqliteRevocations::load(db, 100, 60).unwrap();
        assert!(!r.is_revoked("a").await.unwrap());
        r.revoke("a", 200).await.unwrap();
        r.revoke("a", 200).await.unwrap();
        r.revoke("old", 150).await.unwrap();
        assert!(r.is_revoked("a").await.unwrap());
        drop(r);
        let r = SqliteRevocations::load(Db::open(&path).unwrap(), 160, 60).unwrap();
        assert!(r.is_revoked("a").await.unwrap());
        assert!(!r.is_revoked("old").await.unwrap());
        r.prune(201).await.unwrap();
        assert!(!r.is_revoked("a").await.unwrap());
    }

    #[tokio::test]
    async fn the_credential_reach_only_grows_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let r = SqliteRevocations::load(Db::open(&path).unwrap(), 0, 3660).unwrap();
        assert_eq!(r.credential_reach(0).await.unwrap(), 3660);
        assert_eq!(r.credential_reach(7200).await.unwrap(), 7200);
        drop(r);
        // Restarted with a shorter playback_max: the mark stays.
        let r = SqliteRevocations::load(Db::open(&path).unwrap(), 0, 60).unwrap();
        assert_eq!(r.credential_reach(60).await.unwrap(), 7200);
        r.revoke("a", 500).await.unwrap();
        assert_eq!(r.known_horizon("a"), Some(500));
        assert!(r.known_revoked("a") && !r.known_revoked("b"));
    }
}

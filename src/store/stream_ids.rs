//! The stream-id registry (admin-api.md `stream_ids`): player id → publisher prefix.
//!
//! `/stream/{player}/…` is fetched from `{bucket}/{publisher}/…` when `{player}` is registered.
//! The request path reads an in-memory snapshot (one atomic load, no lock, no I/O); every write
//! through the admin API reloads it, so changes take effect without a restart. On a fleet the
//! rows live in Redis and every node reloads its snapshot when one announces a write.
//!
//! A stream id is an alias, and aliases must not become a way around the gate: the edge gates
//! on the directory a hash *resolves to* ([`StreamRegistry::dir_for`]), and a hash that names a
//! configured content always resolves to itself, whatever rows exist (a row registered before
//! the content was configured cannot shadow it; the admin API refuses new ones with 409).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{Db, StoreError};

/// One row of `stream_ids`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamId {
    pub publisher: String,
    pub player: String,
    pub description: Option<String>,
}

/// Where stream ids live: the SQLite table on one node ([`SqliteStreamIds`]), Redis for a
/// fleet ([`crate::store::redis::records`]: a write on any node reaches every node's snapshot
/// through pub/sub).
#[async_trait::async_trait]
pub trait StreamIdStore: Send + Sync {
    /// Every row, in insertion order.
    async fn list(&self) -> Result<Vec<StreamId>, StoreError>;
    /// Add a row; `false` when the player id exists already.
    async fn insert(&self, row: &StreamId) -> Result<bool, StoreError>;
    /// Remove a row; `false` when there was none.
    async fn delete(&self, player: &str) -> Result<bool, StoreError>;
}

/// Stream ids in the SQLite state file.
pub struct SqliteStreamIds {
    pub db: Db,
}

#[async_trait::async_trait]
impl StreamIdStore for SqliteStreamIds {
    async fn list(&self) -> Result<Vec<StreamId>, StoreError> {
        self.db.call(list_rows).await
    }

    async fn insert(&self, row: &StreamId) -> Result<bool, StoreError> {
        let r = row.clone();
        let inserted = self
            .db
            .call(move |c| {
                c.execute(
                    "INSERT INTO stream_ids (publisher, player, description) VALUES (?1, ?2, ?3)",
                    rusqlite::params![r.publisher, r.player, r.description],
                )
            })
            .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(StoreError::Sql(rusqlite::Error::SqliteFailure(e, _)))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, player: &str) -> Result<bool, StoreError> {
        let p = player.to_string();
        let n = self
            .db
            .call(move |c| c.execute("DELETE FROM stream_ids WHERE player = ?1", [p]))
            .await?;
        Ok(n > 0)
    }
}

#[derive(Clone)]
pub struct StreamRegistry {
    store: Arc<dyn StreamIdStore>,
    snapshot: Arc<ArcSwap<HashMap<String, String>>>,
    /// Hashes of configured contents: never resolved through a stream id.
    reserved: Arc<HashSet<String>>,
}

impl StreamRegistry {
    /// Load the current table. `reserved`: hashes of configured contents, which always
    /// resolve to themselves.
    pub fn load(
        db: Db,
        reserved: impl IntoIterator<Item = String>,
    ) -> Result<StreamRegistry, StoreError> {
        let reg = Self::empty(Arc::new(SqliteStreamIds { db: db.clone() }), reserved);
        let rows = db.call_blocking(list_rows)?;
        reg.warn_shadowing(&rows);
        reg.install(&rows);
        Ok(reg)
    }

    /// A registry over `store` with an empty snapshot: the shared store fills it on its
    /// first sync ([`Self::reload`]).
    pub fn empty(
        store: Arc<dyn StreamIdStore>,
        reserved: impl IntoIterator<Item = String>,
    ) -> StreamRegistry {
        StreamRegistry {
            store,
            snapshot: Arc::new(ArcSwap::from_pointee(HashMap::new())),
            reserved: Arc::new(
                reserved
                    .into_iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
            ),
        }
    }

    fn warn_shadowing(&self, rows: &[StreamId]) {
        for r in rows
            .iter()
            .filter(|r| self.reserved.contains(&r.player.to_ascii_lowercase()))
        {
            tracing::warn!(
                player = %r.player,
                "stream id shadows a configured content; the content wins (delete the stream id)"
            );
        }
    }

    /// Why `player` may not be registered (it would shadow something), if it may not.
    pub fn shadowing(&self, player: &str) -> Option<String> {
        if self.reserved.contains(&player.to_ascii_lowercase()) {
            return Some(format!("configured content '{player}'"));
        }
        if self.snapshot.load().values().any(|p| p == player) {
            return Some(format!("publisher '{player}'"));
        }
        None
    }

    fn install(&self, rows: &[StreamId]) {
        let map = rows
            .iter()
            .map(|r| (r.player.clone(), r.publisher.clone()))
            .collect();
        self.snapshot.store(Arc::new(map));
    }

    /// The publisher prefix for a player id, if registered (and not a configured content).
    pub fn publisher_for(&self, player: &str) -> Option<String> {
        if self.reserved.contains(&player.to_ascii_lowercase()) {
            return None;
        }
        self.snapshot.load().get(player).cloned()
    }

    /// The registered player ids in this node's snapshot.
    pub fn players(&self) -> Vec<String> {
        self.snapshot.load().keys().cloned().collect()
    }

    /// The bucket directory of `/stream/{hash}/…`: the publisher of a registered player id,
    /// else the hash itself.
    pub fn dir_for(&self, hash: &str) -> String {
        self.publisher_for(hash).unwrap_or_else(|| hash.to_string())
    }

    /// Re-read the table (after a write, on a shared store's change notice, or on operator
    /// request).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let rows = self.store.list().await?;
        self.install(&rows);
        Ok(())
    }

    /// Re-read the table, warning about rows a configured content shadows (at start, and
    /// when a shared store's snapshot is taken again).
    pub async fn reload_checked(&self) -> Result<(), StoreError> {
        let rows = self.store.list().await?;
        self.warn_shadowing(&rows);
        self.install(&rows);
        Ok(())
    }

    pub async fn list(&self) -> Result<Vec<StreamId>, StoreError> {
        self.store.list().await
    }

    /// Add a row and refresh this node's snapshot; `false` when the player id exists.
    pub async fn insert(&self, row: &StreamId) -> Result<bool, StoreError> {
        let inserted = self.store.insert(row).await?;
        self.reload().await?;
        Ok(inserted)
    }

    /// Remove a row and refresh this node's snapshot; `false` when there was none.
    pub async fn delete(&self, player: &str) -> Result<bool, StoreError> {
        let removed = self.store.delete(player).await?;
        self.reload().await?;
        Ok(removed)
    }

    pub fn store(&self) -> &Arc<dyn StreamIdStore> {
        &self.store
    }
}

fn list_rows(c: &mut rusqlite::Connection) -> Result<Vec<StreamId>, rusqlite::Error> {
    let mut st =
        c.prepare_cached("SELECT publisher, player, description FROM stream_ids ORDER BY id")?;
    let rows = st.query_map([], |r| {
        Ok(StreamId {
            publisher: r.get(0)?,
            player: r.get(1)?,
            description: r.get(2)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn snapshot_follows_table() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("s.db")).unwrap();
        let reg = StreamRegistry::load(db.clone(), ["movie".to_string()]).unwrap();
        assert_eq!(reg.publisher_for("live"), None);
        db.call(|c| {
            c.execute(
                "INSERT INTO stream_ids (publisher, player) VALUES ('studio_1', 'live')",
                [],
            )
        })
        .await
        .unwrap();
        reg.reload().await.unwrap();
        assert_eq!(reg.publisher_for("live").as_deref(), Some("studio_1"));
        assert_eq!(
            reg.shadowing("studio_1").as_deref(),
            Some("publisher 'studio_1'")
        );
        assert!(reg.shadowing("movie").is_some() && reg.shadowing("new").is_none());
        // A row naming a configured content never resolves.
        db.call(|c| {
            c.execute(
                "INSERT INTO stream_ids (publisher, player) VALUES ('elsewhere', 'movie')",
                [],
            )
        })
        .await
        .unwrap();
        reg.reload().await.unwrap();
        assert_eq!(reg.dir_for("movie"), "movie");
    }
}

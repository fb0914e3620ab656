//! The stream-id registry (admin-api.md `stream_ids`): player id → publisher prefix.
//!
//! `/stream/{player}/…` is fetched from `{bucket}/{publisher}/…` when `{player}` is registered.
//! The request path reads an in-memory snapshot (one atomic load, no lock, no I/O); every write
//! through the admin API reloads it, so changes take effect without a restart.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{Db, StoreError};

/// One row of `stream_ids`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamId {
    pub publisher: String,
    pub player: String,
    pub description: Option<String>,
}

#[derive(Clone)]
pub struct StreamRegistry {
    db: Db,
    snapshot: Arc<ArcSwap<HashMap<String, String>>>,
}

impl StreamRegistry {
    /// Load the current table.
    pub fn load(db: Db) -> Result<StreamRegistry, StoreError> {
        let reg = StreamRegistry {
            db,
            snapshot: Arc::new(ArcSwap::from_pointee(HashMap::new())),
        };
        let rows = reg.db.call_blocking(list_rows)?;
        reg.install(&rows);
        Ok(reg)
    }

    fn install(&self, rows: &[StreamId]) {
        let map = rows
            .iter()
            .map(|r| (r.player.clone(), r.publisher.clone()))
            .collect();
        self.snapshot.store(Arc::new(map));
    }

    /// The publisher prefix for a player id, if registered.
    pub fn publisher_for(&self, player: &str) -> Option<String> {
        self.snapshot.load().get(player).cloned()
    }

    /// The bucket directory of `/stream/{hash}/…`: the publisher of a registered player id,
    /// else the hash itself.
    pub fn dir_for(&self, hash: &str) -> String {
        self.publisher_for(hash).unwrap_or_else(|| hash.to_string())
    }

    /// Re-read the table (after a write, or on operator request).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let rows = self.db.call(list_rows).await?;
        self.install(&rows);
        Ok(())
    }

    pub async fn list(&self) -> Result<Vec<StreamId>, StoreError> {
        self.db.call(list_rows).await
    }

    pub fn db(&self) -> &Db {
        &self.db
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
        let reg = StreamRegistry::load(db.clone()).unwrap();
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
    }
}

//! The stream-id registry (admin-api.md `stream_ids`): player id → publisher prefix.
//!
//! `/stream/{player}/…` is fetched from `{bucket}/{publisher}/…` when `{player}` is registered.
//! The request path reads an in-memory snapshot (one atomic load, no lock, no I/O); every write
//! through the admin API reloads it, so changes take effect without a restart.
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
        let reg = StreamRegistry {
            db,
            snapshot: Arc::new(ArcSwap::from_pointee(HashMap::new())),
            reserved: Arc::new(
                reserved
                    .into_iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
            ),
        };
        let rows = reg.db.call_blocking(list_rows)?;
        for r in rows
            .iter()
            .filter(|r| reg.reserved.contains(&r.player.to_ascii_lowercase()))
        {
            tracing::warn!(
                player = %r.player,
                "stream id shadows a configured content; the content wins (delete the stream id)"
            );
        }
        reg.install(&rows);
        Ok(reg)
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

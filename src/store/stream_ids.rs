//! The stream-id registry (admin-api.md `stream_ids`): player id → publisher prefix.
//!
//! `/stream/{player}/…` is fetched from `{bucket}/{publisher}/…` when `{player}` is registered.
//! The request path reads an in-memory snapshot (one atomic load, no lock, no I/O); every write
//! through the admin API reloads it, so changes take effect without a restart. On a fleet the
//! rows live in Redis and every node reloads its snapshot when one announces a write.
//!
//! A stream id is an alias, and aliases must not become a way around the gate: the edge gates
//! on the directory a hash *resolves to* ([`StreamRegistry::resolve`]), and a hash that names a
//! configured content always resolves to itself, whatever rows exist (a row registered before
//! the content was configured cannot shadow it; the admin API refuses new ones with 409).
//!
//! One name, one spelling: `/stream/{name}` is resolved on the ASCII-lowercased name, so
//! `MOVIE-1`, `movie-1` and `Movie-1` are one content (answered with its configured spelling,
//! which is what the bucket is asked for) and `LIVE` is the stream id `live`. Stream ids equal
//! without ASCII case to another one or to a content hash are refused — by the store itself,
//! atomically, so two nodes of a fleet cannot both register a spelling.

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
    /// Add a row; `false` when the player id exists already, in any ASCII case.
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
                // One statement: the case-insensitive check and the insert cannot interleave
                // with another writer. NOCASE folds ASCII only, as the edge's lookup does.
                c.execute(
                    "INSERT INTO stream_ids (publisher, player, description) \
                     SELECT ?1, ?2, ?3 WHERE NOT EXISTS \
                     (SELECT 1 FROM stream_ids WHERE player = ?2 COLLATE NOCASE)",
                    rusqlite::params![r.publisher, r.player, r.description],
                )
            })
            .await;
        match inserted {
            Ok(n) => Ok(n == 1),
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

/// What `/stream/{name}/…` names, decided once on the ASCII-lowercased name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The name in its one spelling: a content's configured hash, a stream id as registered,
    /// else the name as given (an unknown directory is the bucket's business).
    pub name: String,
    /// The bucket directory fetched: the content's hash, the stream id's publisher (itself
    /// in a content's configured spelling when it names one), else the name.
    pub dir: String,
    /// `name` is a registered stream id (`dir` is its publisher).
    pub alias: bool,
}

/// A node's view of the stream ids: player ids by their ASCII-lowercased spelling.
#[derive(Debug, Default)]
struct Snapshot {
    /// lowercased player → (player as registered, publisher).
    by_folded: HashMap<String, (String, String)>,
    /// Registered publishers, lowercased.
    publishers: HashSet<String>,
    /// The rows as read, in insertion order (what a fleet node puts back into an emptied
    /// Redis: [`crate::store::redis::epoch`]).
    rows: Arc<Vec<StreamId>>,
}

#[derive(Clone)]
pub struct StreamRegistry {
    store: Arc<dyn StreamIdStore>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// Hashes of configured contents by their lowercased spelling: never resolved through a
    /// stream id, always answered in their configured spelling.
    reserved: Arc<HashMap<String, String>>,
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
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
            reserved: Arc::new(
                reserved
                    .into_iter()
                    .map(|h| (h.to_ascii_lowercase(), h))
                    .collect(),
            ),
        }
    }

    /// Rows a configured content shadows, and rows equal without ASCII case to an earlier
    /// one (written before stream ids were compared that way): the first one registered wins.
    fn warn_shadowing(&self, rows: &[StreamId]) {
        let mut seen: HashMap<String, &str> = HashMap::new();
        for r in rows {
            let folded = r.player.to_ascii_lowercase();
            if self.reserved.contains_key(&folded) {
                tracing::warn!(
                    player = %r.player,
                    "stream id shadows a configured content; the content wins (delete the stream id)"
                );
            } else if let Some(first) = seen.get(&folded) {
                tracing::warn!(
                    player = %r.player,
                    first = %first,
                    "stream id equals an earlier one without ASCII case; the earlier one wins (delete this one)"
                );
            } else {
                seen.insert(folded, &r.player);
            }
        }
    }

    /// Why `player` may not be registered (it would shadow something), if it may not.
    /// Compared without ASCII case, as requests are resolved.
    pub fn shadowing(&self, player: &str) -> Option<String> {
        let folded = player.to_ascii_lowercase();
        if let Some(hash) = self.reserved.get(&folded) {
            return Some(format!("configured content '{hash}'"));
        }
        let snap = self.snapshot.load();
        if let Some((existing, _)) = snap.by_folded.get(&folded) {
            return Some(format!("stream id '{existing}'"));
        }
        if snap.publishers.contains(&folded) {
            return Some(format!("publisher '{player}'"));
        }
        None
    }

    fn install(&self, rows: &[StreamId]) {
        let mut snap = Snapshot::default();
        for r in rows {
            // Rows come in insertion order: on a spelling registered twice (before the
            // store refused that), the first one stays.
            snap.by_folded
                .entry(r.player.to_ascii_lowercase())
                .or_insert_with(|| (r.player.clone(), r.publisher.clone()));
            snap.publishers.insert(r.publisher.to_ascii_lowercase());
        }
        snap.rows = Arc::new(rows.to_vec());
        self.snapshot.store(Arc::new(snap));
    }

    /// A configured content's hash in its configured spelling, if `name` spells one.
    fn content(&self, name: &str) -> Option<&String> {
        self.reserved.get(&name.to_ascii_lowercase())
    }

    /// What `/stream/{name}/…` names: a configured content (whatever rows exist), else a
    /// registered stream id, else the bucket directory `name` — each in one spelling.
    pub fn resolve(&self, name: &str) -> Resolved {
        if let Some(hash) = self.content(name) {
            return Resolved {
                name: hash.clone(),
                dir: hash.clone(),
                alias: false,
            };
        }
        if let Some((player, publisher)) = self
            .snapshot
            .load()
            .by_folded
            .get(&name.to_ascii_lowercase())
        {
            // A publisher spelling a content is fetched (and gated) as that content.
            let dir = self.content(publisher).unwrap_or(publisher).clone();
            return Resolved {
                name: player.clone(),
                dir,
                alias: true,
            };
        }
        Resolved {
            name: name.to_string(),
            dir: name.to_string(),
            alias: false,
        }
    }

    /// The publisher directory of a registered player id (any spelling), if registered and
    /// not a configured content.
    pub fn publisher_for(&self, player: &str) -> Option<String> {
        let r = self.resolve(player);
        r.alias.then_some(r.dir)
    }

    /// The one spelling of `/stream/{name}`: what stats, metrics and keys are kept under.
    pub fn canonical(&self, name: &str) -> String {
        self.resolve(name).name
    }

    /// The registered player ids in this node's snapshot.
    pub fn players(&self) -> Vec<String> {
        self.snapshot
            .load()
            .by_folded
            .values()
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// The rows of this node's snapshot, in insertion order.
    pub fn rows(&self) -> Arc<Vec<StreamId>> {
        self.snapshot.load().rows.clone()
    }

    /// The bucket directory of `/stream/{hash}/…`: the publisher of a registered player id,
    /// else the hash itself (a content's in its configured spelling).
    pub fn dir_for(&self, hash: &str) -> String {
        self.resolve(hash).dir
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

    #[tokio::test]
    async fn one_spelling_per_name() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("s.db")).unwrap();
        let reg = StreamRegistry::load(db.clone(), ["Movie-1".to_string()]).unwrap();
        let row = |publisher: &str, player: &str| StreamId {
            publisher: publisher.into(),
            player: player.into(),
            description: None,
        };
        assert!(reg.insert(&row("studio_1", "live")).await.unwrap());
        // The store refuses another spelling, not only the snapshot.
        assert!(!reg.store().insert(&row("studio_2", "LIVE")).await.unwrap());
        assert!(!reg.store().insert(&row("studio_2", "live")).await.unwrap());
        assert_eq!(reg.list().await.unwrap().len(), 1);
        for spelling in ["live", "LIVE", "Live"] {
            let r = reg.resolve(spelling);
            assert_eq!(
                (r.name.as_str(), r.dir.as_str(), r.alias),
                ("live", "studio_1", true)
            );
        }
        // A content answers in its configured spelling, whatever rows exist.
        for spelling in ["movie-1", "MOVIE-1", "Movie-1"] {
            let r = reg.resolve(spelling);
            assert_eq!(
                (r.name.as_str(), r.dir.as_str(), r.alias),
                ("Movie-1", "Movie-1", false)
            );
        }
        // A publisher spelling a content is fetched as that content.
        assert!(reg.insert(&row("movie-1", "trailer")).await.unwrap());
        assert_eq!(reg.dir_for("TRAILER"), "Movie-1");
        // Anything else is the directory as asked (buckets are case-sensitive).
        assert_eq!(reg.resolve("Other").dir, "Other");
        assert_eq!(reg.shadowing("LIVE").as_deref(), Some("stream id 'live'"));
        assert_eq!(
            reg.shadowing("STUDIO_1").as_deref(),
            Some("publisher 'STUDIO_1'")
        );
        assert_eq!(
            reg.shadowing("MOVIE-1").as_deref(),
            Some("configured content 'Movie-1'")
        );
        // Rows written before spellings were compared: the first one registered wins.
        db.call(|c| {
            c.execute(
                "INSERT INTO stream_ids (publisher, player) VALUES ('elsewhere', 'LIVE')",
                [],
            )
        })
        .await
        .unwrap();
        reg.reload_checked().await.unwrap();
        assert_eq!(reg.dir_for("LIVE"), "studio_1");
    }
}

//! SQLite state: one connection owned by one dedicated thread.
//!
//! Proxy workers never touch the database directly: they send a closure to the store thread
//! and `.await` its answer, so a slow disk stalls only that request, never a Pingora worker.
//! WAL mode, `synchronous=FULL` so an acknowledged write survives a `kill -9` right after
//! the response, and versioned migrations tracked in `PRAGMA user_version`.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rusqlite::Connection;
use thiserror::Error;
use tokio::sync::oneshot;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("sqlite {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("sqlite {path}: cannot create directory: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("sqlite: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("sqlite thread has stopped")]
    Gone,
    /// The shared store (Redis) did not answer: down, unreachable, or slower than
    /// `state.redis_timeout`. Requests that need it fail closed (503).
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// The shared store answered with an error, or with a record sluice cannot read.
    #[error("redis: {0}")]
    Redis(String),
}

impl StoreError {
    /// Whether the store could not be reached (as opposed to a bad record or query).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A handle to the store thread. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    tx: mpsc::Sender<Job>,
    path: PathBuf,
}

/// Each entry moves the schema one version forward; never edit a released entry.
const MIGRATIONS: &[&str] = &[
    // 1: the tables of admin-api.md, plus sealed content keys.
    r#"
    CREATE TABLE stream_ids (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        publisher   TEXT NOT NULL,
        player      TEXT NOT NULL UNIQUE,
        description TEXT,
        created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );
    CREATE TABLE api_keys (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        key_hash    TEXT NOT NULL UNIQUE,
        key_prefix  TEXT NOT NULL DEFAULT '',
        name        TEXT NOT NULL,
        permissions TEXT NOT NULL CHECK (permissions IN ('admin', 'write', 'read')),
        created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        last_used   TEXT,
        active      INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE access_logs (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        api_key_id    INTEGER REFERENCES api_keys(id),
        endpoint      TEXT NOT NULL,
        method        TEXT NOT NULL,
        ip_address    TEXT NOT NULL,
        timestamp     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        response_code INTEGER NOT NULL
    );
    CREATE INDEX access_logs_timestamp ON access_logs(timestamp);
    CREATE TABLE content_keys (
        hash        TEXT PRIMARY KEY,
        kek_id      TEXT NOT NULL,
        nonce       BLOB NOT NULL,
        sealed      BLOB NOT NULL,
        created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );
    "#,
    // 2: revoked stream tokens (stream-token-api), kept until their token expires.
    r#"
    CREATE TABLE revoked_tokens (
        jti         TEXT PRIMARY KEY,
        exp         INTEGER NOT NULL,
        revoked_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );
    CREATE INDEX revoked_tokens_exp ON revoked_tokens(exp);
    "#,
    // 3: aggregated refusal floods (one row standing for `count` requests).
    r#"
    ALTER TABLE access_logs ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
    "#,
    // 4: the request's X-Request-Id, to follow an admin request across logs.
    r#"
    ALTER TABLE access_logs ADD COLUMN request_id TEXT;
    "#,
    // 5: facts about the state itself that only ever grow, e.g. the longest credential
    // reach (`leeway + playback_max`) this state has run with (revocations' horizon).
    r#"
    CREATE TABLE state_meta (
        name        TEXT PRIMARY KEY,
        value       INTEGER NOT NULL
    );
    "#,
];

impl Db {
    /// Open (creating the file and its parent directory), migrate, and start the store thread.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        let shown = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Dir {
                path: shown.clone(),
                source,
            })?;
        }
        let mut conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: shown.clone(),
            source,
        })?;
        Self::prepare(&mut conn).map_err(|source| StoreError::Open {
            path: shown.clone(),
            source,
        })?;
        // The state file holds key hashes, sealed content keys and access logs: owner only
        // (SQLite gives its -wal and -shm files the database file's mode).
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let p = PathBuf::from(p);
            if p.exists() {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).map_err(
                    |source| StoreError::Dir {
                        path: p.display().to_string(),
                        source,
                    },
                )?;
            }
        }
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sluice-sqlite".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|source| StoreError::Dir {
                path: shown,
                source,
            })?;
        Ok(Db {
            tx,
            path: path.to_path_buf(),
        })
    }

    fn prepare(conn: &mut Connection) -> Result<(), rusqlite::Error> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
            tracing::info!(version = i + 1, "sqlite schema migrated");
        }
        Ok(())
    }

    /// The schema version this build migrates to.
    pub fn schema_version() -> usize {
        MIGRATIONS.len()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` on the store thread and wait for its result without blocking the caller's thread.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, rusqlite::Error> + Send + 'static,
    {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Box::new(move |conn| {
                let _ = done.send(f(conn));
            }))
            .map_err(|_| StoreError::Gone)?;
        Ok(wait.await.map_err(|_| StoreError::Gone)??)
    }

    /// Blocking variant for start-up and CLI commands (never on a proxy worker).
    pub fn call_blocking<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, rusqlite::Error> + Send + 'static,
    {
        let (done, wait) = mpsc::channel();
        self.tx
            .send(Box::new(move |conn| {
                let _ = done.send(f(conn));
            }))
            .map_err(|_| StoreError::Gone)?;
        Ok(wait.recv().map_err(|_| StoreError::Gone)??)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_migrates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/s.db");
        let db = Db::open(&path).unwrap();
        let tables: Vec<String> = db
            .call(|c| {
                let mut st =
                    c.prepare("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")?;
                let rows = st.query_map([], |r| r.get(0))?;
                rows.collect()
            })
            .await
            .unwrap();
        for t in ["access_logs", "api_keys", "content_keys", "stream_ids"] {
            assert!(tables.contains(&t.to_string()), "{tables:?}");
        }
        let mode: String = db
            .call(|c| c.pragma_query_value(None, "journal_mode", |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        drop(db);
        // A second open finds the schema current and changes nothing.
        let db = Db::open(&path).unwrap();
        let v: usize = db
            .call(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(v, Db::schema_version());
    }

    #[tokio::test]
    async fn player_is_unique() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("s.db")).unwrap();
        let insert = |c: &mut Connection| {
            c.execute(
                "INSERT INTO stream_ids (publisher, player) VALUES (?1, ?2)",
                ("pub", "play"),
            )
        };
        db.call(insert).await.unwrap();
        assert!(db.call(insert).await.is_err());
    }
}

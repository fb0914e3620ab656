//! `api_keys` rows: only the SHA-256 of a key and a short display prefix are stored.
//! [`ApiKeyStore`] is the seam between the SQLite table and the fleet's Redis.

use rusqlite::{params, Connection, OptionalExtension};

use super::{Db, StoreError};

/// A stored key, never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKeyRow {
    pub id: i64,
    pub name: String,
    pub key_prefix: String,
    pub permissions: String,
    pub created_at: String,
    pub last_used: Option<String>,
    pub active: bool,
}

pub fn count_all(c: &mut Connection) -> Result<i64, rusqlite::Error> {
    c.query_row("SELECT COUNT(*) FROM api_keys", [], |r| r.get(0))
}

/// Create an API key: generate it, store its SHA-256 and display prefix, and return
/// `(id, key)` — the only moment the key exists in clear. Every path that creates a key (the
/// admin API, the default admin key at first start, `sluice keys create`) goes through here.
pub fn create(
    c: &mut Connection,
    name: &str,
    permission: crate::auth::api_keys::Permission,
) -> Result<(i64, String), rusqlite::Error> {
    use crate::auth::api_keys;
    let key = api_keys::generate();
    let id = insert(
        c,
        &api_keys::hash(&key),
        &api_keys::display_prefix(&key),
        name,
        permission.as_str(),
    )?;
    Ok((id, key))
}

/// The two lines admin-api.md shows on first start, once the default admin key is created
/// (by the server at start on one node, by the first node to find the key table empty on a
/// fleet: [`super::redis::records::DefaultAdminKey`]).
pub fn announce_default_admin_key(key: &str) {
    println!("Generated default admin API key: {key}");
    println!("IMPORTANT: Save this key securely. It will not be shown again.");
}

fn insert(
    c: &mut Connection,
    key_hash: &str,
    key_prefix: &str,
    name: &str,
    permissions: &str,
) -> Result<i64, rusqlite::Error> {
    c.execute(
        "INSERT INTO api_keys (key_hash, key_prefix, name, permissions) VALUES (?1, ?2, ?3, ?4)",
        params![key_hash, key_prefix, name, permissions],
    )?;
    Ok(c.last_insert_rowid())
}

/// The active key with this hash: `(id, permissions)`.
pub fn find_active(
    c: &mut Connection,
    key_hash: &str,
) -> Result<Option<(i64, String)>, rusqlite::Error> {
    c.prepare_cached("SELECT id, permissions FROM api_keys WHERE key_hash = ?1 AND active = 1")?
        .query_row(params![key_hash], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

pub fn touch(c: &mut Connection, ids: &[i64]) -> Result<(), rusqlite::Error> {
    let tx = c.transaction()?;
    {
        let mut st = tx.prepare_cached(
            "UPDATE api_keys SET last_used = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id = ?1",
        )?;
        for id in ids {
            st.execute(params![id])?;
        }
    }
    tx.commit()
}

pub fn list(c: &mut Connection) -> Result<Vec<ApiKeyRow>, rusqlite::Error> {
    let mut st = c.prepare(
        "SELECT id, name, key_prefix, permissions, created_at, last_used, active FROM api_keys ORDER BY id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(ApiKeyRow {
            id: r.get(0)?,
            name: r.get(1)?,
            key_prefix: r.get(2)?,
            permissions: r.get(3)?,
            created_at: r.get(4)?,
            last_used: r.get(5)?,
            active: r.get::<_, i64>(6)? != 0,
        })
    })?;
    rows.collect()
}

/// Deactivate by id or by display prefix; returns how many keys changed.
pub fn deactivate(c: &mut Connection, id_or_prefix: &str) -> Result<usize, rusqlite::Error> {
    match id_or_prefix.parse::<i64>() {
        Ok(id) => c.execute(
            "UPDATE api_keys SET active = 0 WHERE id = ?1 AND active = 1",
            params![id],
        ),
        Err(_) => c.execute(
            "UPDATE api_keys SET active = 0 WHERE key_prefix = ?1 AND active = 1",
            params![id_or_prefix],
        ),
    }
}

/// A whole `api_keys` row, hash included (never the key): what `sluice state migrate` moves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiKeyRecord {
    pub id: i64,
    pub key_hash: String,
    pub key_prefix: String,
    pub name: String,
    pub permissions: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<String>,
    pub active: bool,
}

impl ApiKeyRecord {
    pub fn row(&self) -> ApiKeyRow {
        ApiKeyRow {
            id: self.id,
            name: self.name.clone(),
            key_prefix: self.key_prefix.clone(),
            permissions: self.permissions.clone(),
            created_at: self.created_at.clone(),
            last_used: self.last_used.clone(),
            active: self.active,
        }
    }
}

/// Where API keys live: the SQLite table on one node ([`SqliteApiKeys`]), Redis for a fleet
/// ([`crate::store::redis::records`]), chosen at start. Every path that creates, checks or
/// revokes a key (admin API, stream-token API, CLI) goes through it.
#[async_trait::async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// The active key with this hash: `(id, permissions)`.
    async fn find_active(&self, key_hash: &str) -> Result<Option<(i64, String)>, StoreError>;
    /// A new key: `(id, key)`, the only moment the key exists in clear.
    async fn create(
        &self,
        name: &str,
        permission: crate::auth::api_keys::Permission,
    ) -> Result<(i64, String), StoreError>;
    async fn list(&self) -> Result<Vec<ApiKeyRow>, StoreError>;
    /// Deactivate by id or display prefix; how many keys changed.
    async fn deactivate(&self, id_or_prefix: &str) -> Result<usize, StoreError>;
    /// Record that these keys were just used.
    async fn touch(&self, ids: &[i64]) -> Result<(), StoreError>;
    /// With no key at all, create the default admin key, once however many processes start
    /// together; the key goes to the one that created it.
    async fn ensure_default_admin(&self) -> Result<Option<String>, StoreError>;
    async fn export(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Write these rows as they are (ids kept).
    async fn import(&self, rows: &[ApiKeyRecord]) -> Result<(), StoreError>;
}

/// API keys in the SQLite state file.
pub struct SqliteApiKeys {
    pub db: Db,
}

#[async_trait::async_trait]
impl ApiKeyStore for SqliteApiKeys {
    async fn find_active(&self, key_hash: &str) -> Result<Option<(i64, String)>, StoreError> {
        let h = key_hash.to_string();
        self.db.call(move |c| find_active(c, &h)).await
    }

    async fn create(
        &self,
        name: &str,
        permission: crate::auth::api_keys::Permission,
    ) -> Result<(i64, String), StoreError> {
        let name = name.to_string();
        self.db.call(move |c| create(c, &name, permission)).await
    }

    async fn list(&self) -> Result<Vec<ApiKeyRow>, StoreError> {
        self.db.call(list).await
    }

    async fn deactivate(&self, id_or_prefix: &str) -> Result<usize, StoreError> {
        let k = id_or_prefix.to_string();
        self.db.call(move |c| deactivate(c, &k)).await
    }

    async fn touch(&self, ids: &[i64]) -> Result<(), StoreError> {
        let ids = ids.to_vec();
        self.db.call(move |c| touch(c, &ids)).await
    }

    async fn ensure_default_admin(&self) -> Result<Option<String>, StoreError> {
        self.db
            .call(|c| {
                if count_all(c)? > 0 {
                    return Ok(None);
                }
                create(c, "default admin", crate::auth::api_keys::Permission::Admin)
                    .map(|(_, k)| Some(k))
            })
            .await
    }

    async fn export(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.db
            .call(|c| {
                let mut st = c.prepare(
                    "SELECT id, key_hash, key_prefix, name, permissions, created_at, last_used, active
                     FROM api_keys ORDER BY id",
                )?;
                let rows = st.query_map([], |r| {
                    Ok(ApiKeyRecord {
                        id: r.get(0)?,
                        key_hash: r.get(1)?,
                        key_prefix: r.get(2)?,
                        name: r.get(3)?,
                        permissions: r.get(4)?,
                        created_at: r.get(5)?,
                        last_used: r.get(6)?,
                        active: r.get::<_, i64>(7)? != 0,
                    })
                })?;
                rows.collect()
            })
            .await
    }

    async fn import(&self, rows: &[ApiKeyRecord]) -> Result<(), StoreError> {
        let rows = rows.to_vec();
        self.db
            .call(move |c| {
                let tx = c.transaction()?;
                for r in &rows {
                    tx.execute(
                        "INSERT OR REPLACE INTO api_keys
                           (id, key_hash, key_prefix, name, permissions, created_at, last_used, active)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![
                            r.id,
                            r.key_hash,
                            r.key_prefix,
                            r.name,
                            r.permissions,
                            r.created_at,
                            r.last_used,
                            r.active as i64
                        ],
                    )?;
                }
                tx.commit()
            })
            .await
    }
}

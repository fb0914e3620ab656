//! `api_keys` rows: only the SHA-256 of a key and a short display prefix are stored.

use rusqlite::{params, Connection, OptionalExtension};

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

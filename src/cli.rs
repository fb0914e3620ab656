//! The token and content-key commands of the `sluice` CLI (`src/main.rs` parses, this runs):
//!
//! - `sluice content-key import --hash H --key-hex K` / `generate --hash H`: store a content
//!   key sealed under the current KEK (`generate` prints the new key once, for the packager);
//! - `sluice keys rotate-kek`: re-seal every content key under `kek.current`;
//! - `sluice token key --hash H --ttl 3600`: mint a playback key token (playback-api);
//! - `sluice secret seal-clearkey --kid KID --key-hex K`: a "v2" envelope for a ClearKey key
//!   in `signed_channels.channels[].keys`.
//!
//! - `sluice keys create|list|revoke`: admin-API keys;
//! - `sluice state migrate --from sqlite --to redis` (or back): move a node's state.
//!
//! They work while `sluice serve` runs (SQLite WAL); a running server sees imported keys on
//! the next request. With `state.redis` set they work on the fleet's Redis instead, and every
//! node sees the change.

use std::path::Path;

use crate::auth::api_keys::Permission;
use crate::config::Config;
use crate::store::api_keys::ApiKeyRow;
use crate::store::{content_keys, Db, Stores};

fn load(config: &Path) -> Result<Config, String> {
    Config::load(config).map_err(|e| e.to_string())
}

/// The stores the config names (Redis connected, when set).
fn stores(config: &Config) -> Result<Stores, String> {
    let db = Db::open(&config.sqlite_path).map_err(|e| e.to_string())?;
    Stores::open_connected(&db, config).map_err(|e| e.to_string())
}

/// Run a store call to completion on a small runtime of this command's own.
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| rt.block_on(f))
        .map_err(|e| format!("runtime: {e}"))
}

/// A new admin-API key: `(id, key)`.
pub fn api_key_create(
    config: &Path,
    name: &str,
    permission: Permission,
) -> Result<(i64, String), String> {
    let s = stores(&load(config)?)?;
    block_on(s.api_keys.create(name, permission))?.map_err(|e| e.to_string())
}

pub fn api_key_list(config: &Path) -> Result<Vec<ApiKeyRow>, String> {
    let s = stores(&load(config)?)?;
    block_on(s.api_keys.list())?.map_err(|e| e.to_string())
}

/// Deactivate by id or display prefix; how many keys changed.
pub fn api_key_revoke(config: &Path, id_or_prefix: &str) -> Result<usize, String> {
    let s = stores(&load(config)?)?;
    block_on(s.api_keys.deactivate(id_or_prefix))?.map_err(|e| e.to_string())
}

/// `sluice state migrate`: what was moved, as a sentence.
pub fn state_migrate(config: &Path, from: &str, to: &str) -> Result<String, String> {
    use crate::store::migrate::{migrate, Backend};
    let config = load(config)?;
    let from: Backend = from.parse().map_err(|e| format!("--from {e}"))?;
    let to: Backend = to.parse().map_err(|e| format!("--to {e}"))?;
    let moved = block_on(migrate(&config, from, to))?.map_err(|e| e.to_string())?;
    Ok(format!("moved {moved}"))
}

fn keyring(config: &Config) -> Result<&crate::crypto::Keyring, String> {
    config
        .access
        .keyring
        .as_ref()
        .ok_or_else(|| "no KEK configured: set kek.current in the config".to_string())
}

/// Import (`Some(hex)`) or generate (`None`) the content key of `hash`. Returns what to print.
pub fn content_key(config: &Path, hash: &str, key_hex: Option<&str>) -> Result<String, String> {
    let config = load(config)?;
    let ring = keyring(&config)?;
    // A content's key is kept under its configured spelling, which key delivery looks up.
    let hash = config
        .access
        .streaming
        .content_by_hash(hash)
        .map_or(hash, |c| c.hash.as_str());
    let (key, generated) = match key_hex {
        Some(h) => (
            content_keys::parse_key_hex(h).map_err(|e| e.to_string())?,
            false,
        ),
        None => (content_keys::generate(), true),
    };
    let sealed = content_keys::seal(ring, hash, &key).map_err(|e| e.to_string())?;
    let kek = sealed.kek_id.clone();
    let s = stores(&config)?;
    block_on(s.content_keys.put(hash, &sealed))?.map_err(|e| e.to_string())?;
    eprintln!("stored content key for {hash} sealed under KEK {kek}");
    Ok(if generated {
        hex::encode(key.as_slice())
    } else {
        String::new()
    })
}

/// Re-seal every content key under the current KEK.
pub fn rotate_kek(config: &Path) -> Result<String, String> {
    let config = load(config)?;
    let ring = keyring(&config)?.clone();
    let current = ring.current_id().to_string();
    let s = stores(&config)?;
    let (changed, total) = block_on(s.content_keys.rotate(&ring))?.map_err(|e| e.to_string())?;
    Ok(format!(
        "re-sealed {changed} of {total} content key(s) under KEK {current}"
    ))
}

/// A key token for `hash` valid `ttl_secs` from now.
pub fn key_token(config: &Path, hash: &str, ttl_secs: i64) -> Result<String, String> {
    let config = load(config)?;
    let secret = config.access.key_delivery.secret.as_ref().ok_or_else(|| {
        "no key token secret: set KEY_TOKEN_SECRET or key_delivery.secret_env".to_string()
    })?;
    if ttl_secs <= 0 {
        return Err("--ttl must be above zero".into());
    }
    let exp = chrono::Utc::now().timestamp() + ttl_secs;
    Ok(crate::auth::key_token::mint(secret.as_bytes(), hash, exp))
}

/// A "v2" envelope of a ClearKey key, bound to its kid.
pub fn seal_clearkey(config: &Path, kid: &str, key_hex: &str) -> Result<String, String> {
    let config = load(config)?;
    let ring = keyring(&config)?;
    let kid = kid.to_ascii_lowercase();
    if kid.len() != 32 || !kid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("--kid must be 32 hex characters".into());
    }
    let key = content_keys::parse_key_hex(key_hex).map_err(|e| e.to_string())?;
    ring.seal(&key, &crate::config::tokens::clearkey_aad(&kid))
        .map(|s| s.to_envelope())
        .map_err(|e| e.to_string())
}

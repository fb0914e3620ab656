//! The token and content-key commands of the `sluice` CLI (`src/main.rs` parses, this runs):
//!
//! - `sluice content-key import --hash H --key-hex K` / `generate --hash H`: store a content
//!   key sealed under the current KEK (`generate` prints the new key once, for the packager);
//! - `sluice keys rotate-kek`: re-seal every content key under `kek.current`;
//! - `sluice token key --hash H --ttl 3600`: mint a playback key token (playback-api);
//! - `sluice secret seal-clearkey --kid KID --key-hex K`: a "v2" envelope for a ClearKey key
//!   in `signed_channels.channels[].keys`.
//!
//! They work while `sluice serve` runs (SQLite WAL); a running server sees imported keys on
//! the next request.

use std::path::Path;

use crate::config::Config;
use crate::store::content_keys;

fn load(config: &Path) -> Result<Config, String> {
    Config::load(config).map_err(|e| e.to_string())
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
    let (key, generated) = match key_hex {
        Some(h) => (
            content_keys::parse_key_hex(h).map_err(|e| e.to_string())?,
            false,
        ),
        None => (content_keys::generate(), true),
    };
    let sealed = content_keys::seal(ring, hash, &key).map_err(|e| e.to_string())?;
    let kek = sealed.kek_id.clone();
    let db = crate::store::Db::open(&config.sqlite_path).map_err(|e| e.to_string())?;
    let h = hash.to_string();
    db.call_blocking(move |c| content_keys::upsert(c, &h, &sealed))
        .map_err(|e| e.to_string())?;
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
    let db = crate::store::Db::open(&config.sqlite_path).map_err(|e| e.to_string())?;
    let (changed, total) = db
        .call_blocking(move |c| Ok(content_keys::rotate_all(c, &ring).map_err(|e| e.to_string())))
        .map_err(|e| e.to_string())??;
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

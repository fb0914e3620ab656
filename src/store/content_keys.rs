//! `content_keys` rows: 16-byte AES-128 content keys (playback-api `GET /api/key/{hash}`),
//! sealed with AES-256-GCM under the KEK keyring ([`crate::crypto`]).
//!
//! Each row keeps the id of the KEK that sealed it; the associated data is
//! `"content-key:" + hash`, so a sealed key copied to another row does not open. Rotation
//! ([`rotate_all`], `sluice keys rotate-kek`) re-seals every row not yet under the current
//! KEK, in one transaction, so a crash leaves either the old or the new set, never a mix
//! that the configured keyring cannot open.

use rusqlite::{params, Connection, OptionalExtension};
use zeroize::Zeroizing;

use crate::crypto::{CryptoError, Keyring, Sealed};

/// AES-128 content keys only: what `#EXT-X-KEY:METHOD=AES-128` players expect.
pub const CONTENT_KEY_LEN: usize = 16;

/// The associated data a content key is sealed with.
pub fn aad(hash: &str) -> Vec<u8> {
    format!("content-key:{hash}").into_bytes()
}

/// Why a content key could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum ContentKeyError {
    #[error("no KEK configured (kek.current)")]
    NoKeyring,
    #[error("a content key is {CONTENT_KEY_LEN} bytes (32 hex characters)")]
    BadKey,
    #[error("invalid media hash")]
    BadHash,
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] super::StoreError),
}

/// Parse 32 hex characters into a key.
pub fn parse_key_hex(s: &str) -> Result<Zeroizing<Vec<u8>>, ContentKeyError> {
    let bytes = Zeroizing::new(hex::decode(s.trim()).map_err(|_| ContentKeyError::BadKey)?);
    if bytes.len() != CONTENT_KEY_LEN {
        return Err(ContentKeyError::BadKey);
    }
    Ok(bytes)
}

/// A fresh random content key from the OS RNG.
pub fn generate() -> Zeroizing<Vec<u8>> {
    use rand::RngCore;
    let mut k = Zeroizing::new(vec![0u8; CONTENT_KEY_LEN]);
    rand::rngs::OsRng.fill_bytes(&mut k);
    k
}

/// Seal `key` for `hash` (pure; no I/O).
pub fn seal(ring: &Keyring, hash: &str, key: &[u8]) -> Result<Sealed, ContentKeyError> {
    if !crate::media::valid_hash(hash) {
        return Err(ContentKeyError::BadHash);
    }
    if key.len() != CONTENT_KEY_LEN {
        return Err(ContentKeyError::BadKey);
    }
    Ok(ring.seal(key, &aad(hash))?)
}

/// Insert or replace the sealed key of `hash`.
pub fn upsert(c: &mut Connection, hash: &str, sealed: &Sealed) -> Result<(), rusqlite::Error> {
    c.execute(
        "INSERT INTO content_keys (hash, kek_id, nonce, sealed) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(hash) DO UPDATE SET kek_id = excluded.kek_id, nonce = excluded.nonce,
           sealed = excluded.sealed, updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
        params![
            hash,
            sealed.kek_id,
            sealed.nonce.to_vec(),
            sealed.ciphertext
        ],
    )?;
    Ok(())
}

fn row_to_sealed(kek_id: String, nonce: Vec<u8>, ciphertext: Vec<u8>) -> Option<Sealed> {
    Some(Sealed {
        kek_id,
        nonce: nonce.try_into().ok()?,
        ciphertext,
    })
}

/// The sealed key of `hash`. `Some(None)` is a row whose nonce is corrupt (a 500, not a 404).
pub fn get(c: &mut Connection, hash: &str) -> Result<Option<Option<Sealed>>, rusqlite::Error> {
    c.prepare_cached("SELECT kek_id, nonce, sealed FROM content_keys WHERE hash = ?1")?
        .query_row(params![hash], |r| {
            Ok(row_to_sealed(r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()
}

/// Open a stored key.
pub fn open(
    ring: &Keyring,
    hash: &str,
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    ring.open(sealed, &aad(hash))
}

/// Re-seal every key not under the keyring's current KEK. Returns (re-sealed, total).
///
/// # Errors
/// The first row that does not open (its KEK missing from the keyring, or corrupt); nothing
/// is written then.
pub fn rotate_all(c: &mut Connection, ring: &Keyring) -> Result<(usize, usize), ContentKeyError> {
    let tx = c.transaction()?;
    let rows: Vec<(String, String, Vec<u8>, Vec<u8>)> = {
        let mut st = tx.prepare("SELECT hash, kek_id, nonce, sealed FROM content_keys")?;
        let it = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        it.collect::<Result<_, _>>()?
    };
    let total = rows.len();
    let mut changed = 0;
    for (hash, kek_id, nonce, ct) in rows {
        if kek_id == ring.current_id() {
            continue;
        }
        let sealed = row_to_sealed(kek_id, nonce, ct).ok_or(CryptoError::Open)?;
        let fresh = crate::crypto::rewrap(ring, &sealed, &aad(&hash))?;
        tx.execute(
            "UPDATE content_keys SET kek_id = ?2, nonce = ?3, sealed = ?4,
               updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE hash = ?1",
            params![hash, fresh.kek_id, fresh.nonce.to_vec(), fresh.ciphertext],
        )?;
        changed += 1;
    }
    tx.commit()?;
    Ok((changed, total))
}

/// Where sealed content keys live: the SQLite table on one node ([`SqliteContentKeys`]),
/// Redis for a fleet ([`crate::store::redis::records`]). Records are sealed before they reach
/// either; neither ever sees a key in clear.
#[async_trait::async_trait]
pub trait ContentKeyStore: Send + Sync {
    /// The sealed key of `hash`; `Some(None)`: a record that cannot be read (a 500, not 404).
    async fn get(&self, hash: &str) -> Result<Option<Option<Sealed>>, super::StoreError>;
    /// Insert or replace the sealed key of `hash`.
    async fn put(&self, hash: &str, sealed: &Sealed) -> Result<(), super::StoreError>;
    /// Re-seal every key not under the keyring's current KEK: (re-sealed, total).
    async fn rotate(&self, ring: &Keyring) -> Result<(usize, usize), ContentKeyError>;
    /// Every record (for `sluice state migrate`); unreadable ones are skipped.
    async fn all(&self) -> Result<Vec<(String, Sealed)>, super::StoreError>;
    /// The record this node last read for `hash`, without asking anyone (key delivery's
    /// fallback under `state.redis_fail_open: [key_delivery]`).
    fn last_known(&self, _hash: &str) -> Option<Sealed> {
        None
    }
}

/// Content keys in the SQLite state file.
pub struct SqliteContentKeys {
    pub db: super::Db,
}

#[async_trait::async_trait]
impl ContentKeyStore for SqliteContentKeys {
    async fn get(&self, hash: &str) -> Result<Option<Option<Sealed>>, super::StoreError> {
        let h = hash.to_string();
        self.db.call(move |c| get(c, &h)).await
    }

    async fn put(&self, hash: &str, sealed: &Sealed) -> Result<(), super::StoreError> {
        let (h, sealed) = (hash.to_string(), sealed.clone());
        self.db.call(move |c| upsert(c, &h, &sealed)).await
    }

    async fn rotate(&self, ring: &Keyring) -> Result<(usize, usize), ContentKeyError> {
        let ring = ring.clone();
        self.db
            .call(move |c| Ok(rotate_all(c, &ring)))
            .await
            .map_err(ContentKeyError::Store)?
    }

    async fn all(&self) -> Result<Vec<(String, Sealed)>, super::StoreError> {
        self.db
            .call(|c| {
                let mut st = c.prepare("SELECT hash, kek_id, nonce, sealed FROM content_keys")?;
                let rows = st.query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    let (hash, kek, nonce, ct) = row?;
                    if let Some(s) = row_to_sealed(kek, nonce, ct) {
                        out.push((hash, s));
                    }
                }
                Ok(out)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Kek;

    fn ring(cur: u8, prev: &[u8]) -> Keyring {
        let k = |n: u8| Kek::new(&format!("k{n}"), [n; 32]).unwrap();
        Keyring::new(k(cur), prev.iter().map(|&p| k(p)).collect()).unwrap()
    }

    #[test]
    fn seal_store_open_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::Db::open(&dir.path().join("s.db")).unwrap();
        let a = ring(1, &[]);
        let key = parse_key_hex("00112233445566778899aabbccddeeff").unwrap();
        let sealed = seal(&a, "movie-1", &key).unwrap();
        db.call_blocking(move |c| upsert(c, "movie-1", &sealed))
            .unwrap();
        let got = db
            .call_blocking(|c| get(c, "movie-1"))
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got.kek_id, "k1");
        assert_eq!(
            open(&a, "movie-1", &got).unwrap().as_slice(),
            key.as_slice()
        );
        // Bound to its row.
        assert!(open(&a, "movie-2", &got).is_err());

        let b = ring(2, &[1]);
        let (changed, total) = db
            .call_blocking(move |c| rotate_all(c, &b).map_err(|_| rusqlite::Error::InvalidQuery))
            .unwrap();
        assert_eq!((changed, total), (1, 1));
        let got = db
            .call_blocking(|c| get(c, "movie-1"))
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got.kek_id, "k2");
        let only_b = ring(2, &[]);
        assert_eq!(
            open(&only_b, "movie-1", &got).unwrap().as_slice(),
            key.as_slice()
        );
        // Rotation with a keyring missing the old KEK fails and writes nothing.
        assert!(matches!(
            rotate_all(
                &mut rusqlite::Connection::open_in_memory().unwrap(),
                &only_b
            ),
            Err(ContentKeyError::Sql(_))
        ));
    }

    #[test]
    fn key_and_hash_validation() {
        assert!(parse_key_hex("0011").is_err());
        assert!(parse_key_hex("zz112233445566778899aabbccddeeff").is_err());
        assert_eq!(generate().len(), 16);
        let a = ring(1, &[]);
        assert!(matches!(
            seal(&a, "../x", &[0; 16]),
            Err(ContentKeyError::BadHash)
        ));
        assert!(matches!(
            seal(&a, "x", &[0; 15]),
            Err(ContentKeyError::BadKey)
        ));
    }
}

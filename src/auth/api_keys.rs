//! Operator API keys (`admin-api.md`, "Authentication" and "API Key Management"):
//! `Authorization: Bearer <API_KEY>` on the admin routes, with `admin`/`write`/`read`
//! permissions.
//!
//! Keys are 32 alphanumeric characters (the document's `<32-character-key>`), drawn from
//! the OS RNG: 32 × log2(62) ≈ 190 bits, far past guessing. Only the SHA-256 of a key is
//! stored (`api_keys.key_hash`), so a leaked database does not leak usable keys; a fast
//! unsalted hash is enough because the input is already high-entropy random, not a password.

use std::fmt;
use std::str::FromStr;

use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Length of a generated key.
pub const KEY_LEN: usize = 32;
/// Characters of a key shown in listings and logs to tell keys apart.
pub const DISPLAY_PREFIX_LEN: usize = 8;

/// A fresh API key: [`KEY_LEN`] characters from `[A-Za-z0-9]`, uniform (rand's
/// `Alphanumeric` rejects rather than biases), from the operating system's RNG.
pub fn generate() -> String {
    Alphanumeric.sample_string(&mut OsRng, KEY_LEN)
}

/// The stored form of a key: lowercase hex SHA-256 of its UTF-8 bytes (64 characters).
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether `key` hashes to `stored_hash` (hex, either case), compared in constant time.
/// For callers that fetched a row by some other index than the hash itself.
pub fn matches_hash(key: &str, stored_hash: &str) -> bool {
    match hex::decode(stored_hash) {
        Ok(stored) => Sha256::digest(key.as_bytes())
            .as_slice()
            .ct_eq(&stored)
            .into(),
        Err(_) => false,
    }
}

/// The first [`DISPLAY_PREFIX_LEN`] characters of `key` (all of it if shorter), for
/// listings: enough to recognise a key, far too little to use it.
pub fn display_prefix(key: &str) -> String {
    key.chars().take(DISPLAY_PREFIX_LEN).collect()
}

/// What a key may do (`admin-api.md`, "Permission Levels"). Ordered: `admin ⊇ write ⊇ read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Full access to all endpoints.
    Admin,
    /// Can read and write stream IDs.
    Write,
    /// Read-only access.
    Read,
}

/// A permission string other than `admin`, `write` or `read`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown permission (expected admin, write or read)")]
pub struct UnknownPermission;

impl Permission {
    /// The name used in the API and the `api_keys.permissions` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Admin => "admin",
            Permission::Write => "write",
            Permission::Read => "read",
        }
    }

    /// Whether a key holding `self` may use a route that needs `needed`.
    pub fn allows(self, needed: Permission) -> bool {
        self.rank() >= needed.rank()
    }

    fn rank(self) -> u8 {
        match self {
            Permission::Read => 0,
            Permission::Write => 1,
            Permission::Admin => 2,
        }
    }
}

impl FromStr for Permission {
    type Err = UnknownPermission;

    /// Exact lowercase names only, as the document writes them and the database stores
    /// them, so one permission has one spelling.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Permission::Admin),
            "write" => Ok(Permission::Write),
            "read" => Ok(Permission::Read),
            _ => Err(UnknownPermission),
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_keys_are_32_alnum_and_distinct() {
        let keys: HashSet<String> = (0..1000).map(|_| generate()).collect();
        assert_eq!(keys.len(), 1000);
        for k in &keys {
            assert_eq!(k.len(), KEY_LEN);
            assert!(k.bytes().all(|b| b.is_ascii_alphanumeric()), "{k}");
        }
        // All 62 symbols show up across 32,000 draws (probability of a miss is negligible).
        let symbols: HashSet<char> = keys.iter().flat_map(|k| k.chars()).collect();
        assert_eq!(symbols.len(), 62);
    }

    #[test]
    fn hash_is_lowercase_hex_sha256() {
        // `printf '%s' abc | sha256sum`
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let k = generate();
        assert_eq!(hash(&k).len(), 64);
        assert_eq!(hash(&k), hash(&k));
        assert_ne!(hash(&k), hash(&generate()));
    }

    #[test]
    fn matches_hash_constant_time_helper() {
        let k = generate();
        let h = hash(&k);
        assert!(matches_hash(&k, &h));
        assert!(matches_hash(&k, &h.to_uppercase()));
        assert!(!matches_hash(&generate(), &h));
        assert!(!matches_hash(&k, &h[..62]));
        assert!(!matches_hash(&k, "not hex"));
        assert!(!matches_hash(&k, ""));
    }

    #[test]
    fn display_prefix_takes_eight_chars() {
        assert_eq!(display_prefix("abcdefghijklmnop"), "abcdefgh");
        assert_eq!(display_prefix("abc"), "abc");
        assert_eq!(display_prefix(""), "");
        assert_eq!(display_prefix("ééééééééé"), "éééééééé");
        let k = generate();
        assert!(k.starts_with(&display_prefix(&k)));
    }

    #[test]
    fn permission_names_round_trip() {
        for p in [Permission::Admin, Permission::Write, Permission::Read] {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            assert_eq!(serde_json::from_str::<Permission>(&json).unwrap(), p);
        }
        for bad in ["", "Admin", "READ", " read", "owner", "readwrite"] {
            assert_eq!(bad.parse::<Permission>(), Err(UnknownPermission), "{bad}");
        }
    }

    #[test]
    fn permission_hierarchy() {
        use Permission::*;
        let table = [
            (Admin, Admin, true),
            (Admin, Write, true),
            (Admin, Read, true),
            (Write, Admin, false),
            (Write, Write, true),
            (Write, Read, true),
            (Read, Admin, false),
            (Read, Write, false),
            (Read, Read, true),
        ];
        for (held, needed, ok) in table {
            assert_eq!(held.allows(needed), ok, "{held} allows {needed}");
        }
    }
}

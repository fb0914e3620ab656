//! Secrets at rest (DESIGN.md, "Keys at rest"): content keys, provider credentials and other
//! secrets are sealed with AES-256-GCM under a key-encryption key (KEK) taken from the
//! environment, and every sealed record names the KEK that sealed it so the KEK can rotate.
//!
//! - A [`Keyring`] holds the current KEK (used to seal) and previous ones (still accepted to
//!   open); [`rewrap`] moves a record to the current KEK (`sluice keys rotate-kek`).
//! - Each seal draws a fresh random 96-bit nonce from the OS RNG. With random nonces NIST
//!   SP 800-38D bounds one key to ~2³² seals; content keys number far fewer, and rotation
//!   resets the count.
//! - The KEK id is bound into the associated data alongside the caller's `aad` (e.g.
//!   `b"content-key:" + hash`), so a record can be neither moved to another row nor
//!   relabelled with another KEK id: either change fails authentication.
//! - [`Sealed::to_envelope`] is the text form for secrets kept in config files,
//!   `v2:<kek_id>:<base64 nonce>:<base64 ciphertext‖tag>` (our "v2" envelope; the
//!   signed-channel document's "A256GCM v2" names the same cipher).
//!
//! Errors carry no key material and no plaintext; a failure to open is deliberately one
//! opaque variant (the caller answers 500 and logs the KEK id, never why GCM refused).

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

/// Domain separation for the internal associated data, versioned with the envelope.
const AAD_DOMAIN: &[u8] = b"sluice-seal-v2\0";
/// The envelope's version tag.
const ENVELOPE_VERSION: &str = "v2";
/// AES-GCM tag length; a ciphertext is at least this long.
const TAG_LEN: usize = 16;
/// Longest KEK id; ids are labels like `kek-2026-04`, not data.
pub const MAX_KEK_ID_LEN: usize = 64;
/// Longest envelope accepted. Sealed secrets are keys and tokens, not files.
pub const MAX_ENVELOPE_LEN: usize = 64 * 1024;

/// What went wrong sealing or opening. No variant carries key bytes or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// A KEK id that is empty, too long, or has characters outside `[A-Za-z0-9._-]`
    /// (the envelope uses `:` as its separator).
    #[error("invalid KEK id (1-64 characters from A-Z a-z 0-9 . _ -)")]
    InvalidKekId,
    /// KEK material that is neither 64 hex characters nor base64 of exactly 32 bytes. The
    /// offending text is not echoed.
    #[error("KEK '{id}' is not 64 hex characters or base64 of 32 bytes")]
    InvalidKek { id: String },
    /// Two KEKs in one keyring share an id, so records could not say which one sealed them.
    #[error("KEK id '{0}' appears more than once in the keyring")]
    DuplicateKekId(String),
    /// A record sealed under a KEK the keyring does not hold (retired too early?).
    #[error("record sealed with unknown KEK '{0}'")]
    UnknownKek(String),
    /// Authentication failed: wrong KEK, wrong associated data, or altered record.
    #[error("sealed record failed authentication")]
    Open,
    /// Encryption failed (only possible for absurdly large plaintexts).
    #[error("sealing failed")]
    Seal,
    /// The envelope text is not `v2:<kek_id>:<base64 nonce>:<base64 ciphertext>`.
    #[error("malformed sealed envelope: {0}")]
    MalformedEnvelope(&'static str),
}

/// A key-encryption key: 32 bytes and the id records use to name it. Zeroed on drop; `Debug`
/// shows the id only.
#[derive(Clone)]
pub struct Kek {
    id: String,
    key: [u8; 32],
}

impl Drop for Kek {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Kek {
    /// A KEK from its raw bytes.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKekId`] for an unusable id.
    pub fn new(id: &str, key: [u8; 32]) -> Result<Kek, CryptoError> {
        validate_kek_id(id)?;
        Ok(Kek {
            id: id.to_owned(),
            key,
        })
    }

    /// A KEK from 64 hex characters (either case), e.g. `openssl rand -hex 32`.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKekId`] or [`CryptoError::InvalidKek`].
    pub fn from_hex(id: &str, hex_key: &str) -> Result<Kek, CryptoError> {
        validate_kek_id(id)?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(hex_key.trim(), &mut key)
            .map_err(|_| CryptoError::InvalidKek { id: id.to_owned() })?;
        Kek::new(id, key)
    }

    /// A KEK from base64 of exactly 32 bytes, e.g. `openssl rand -base64 32`. Standard or
    /// URL-safe alphabet, padded or not.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKekId`] or [`CryptoError::InvalidKek`].
    pub fn from_base64(id: &str, b64: &str) -> Result<Kek, CryptoError> {
        validate_kek_id(id)?;
        let b64 = b64.trim();
        let invalid = || CryptoError::InvalidKek { id: id.to_owned() };
        // The decoded bytes are key material: keep them in a zeroizing buffer.
        let bytes = [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(b64).ok())
            .map(Zeroizing::new)
            .ok_or_else(invalid)?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| invalid())?;
        Kek::new(id, key)
    }

    /// A KEK from either form: 64 hex characters, else base64 of 32 bytes. Unambiguous,
    /// since 64 hex characters read as base64 would be 48 bytes.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKekId`] or [`CryptoError::InvalidKek`].
    pub fn parse(id: &str, s: &str) -> Result<Kek, CryptoError> {
        let t = s.trim();
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            Kek::from_hex(id, t)
        } else {
            Kek::from_base64(id, t)
        }
    }

    /// The id records sealed under this KEK carry.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Result<Aes256Gcm, CryptoError> {
        // Always 32 bytes, so this cannot fail; mapped rather than unwrapped all the same.
        Aes256Gcm::new_from_slice(&self.key).map_err(|_| CryptoError::Seal)
    }
}

/// One sealed secret: the KEK that sealed it, the nonce, and ciphertext with the GCM tag
/// appended.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub kek_id: String,
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    // Ciphertext is not secret, but it is noise in logs: show its length only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("kek_id", &self.kek_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

impl Sealed {
    /// `v2:<kek_id>:<base64 nonce>:<base64 ciphertext‖tag>`, standard base64 with padding
    /// (no `:` in that alphabet, so the separators stay unambiguous).
    pub fn to_envelope(&self) -> String {
        format!(
            "{ENVELOPE_VERSION}:{}:{}:{}",
            self.kek_id,
            STANDARD.encode(self.nonce),
            STANDARD.encode(&self.ciphertext)
        )
    }

    /// Parse [`Self::to_envelope`]'s form. Surrounding whitespace (a trailing newline in a
    /// config file) is ignored; anything else irregular is refused, including non-canonical
    /// base64, so one record has one spelling.
    ///
    /// # Errors
    /// [`CryptoError::MalformedEnvelope`] (or [`CryptoError::InvalidKekId`] for a bad id).
    pub fn from_envelope(s: &str) -> Result<Sealed, CryptoError> {
        let s = s.trim();
        if s.len() > MAX_ENVELOPE_LEN {
            return Err(CryptoError::MalformedEnvelope("too long"));
        }
        let mut parts = s.split(':');
        let (Some(version), Some(kek_id), Some(nonce_b64), Some(ct_b64), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(CryptoError::MalformedEnvelope(
                "expected 4 ':'-separated fields",
            ));
        };
        if version != ENVELOPE_VERSION {
            return Err(CryptoError::MalformedEnvelope(
                "unknown version (expected v2)",
            ));
        }
        validate_kek_id(kek_id)?;
        let nonce: [u8; 12] = STANDARD
            .decode(nonce_b64)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(CryptoError::MalformedEnvelope(
                "nonce is not base64 of 12 bytes",
            ))?;
        let ciphertext = STANDARD
            .decode(ct_b64)
            .map_err(|_| CryptoError::MalformedEnvelope("ciphertext is not base64"))?;
        if ciphertext.len() < TAG_LEN {
            return Err(CryptoError::MalformedEnvelope(
                "ciphertext shorter than the GCM tag",
            ));
        }
        Ok(Sealed {
            kek_id: kek_id.to_owned(),
            nonce,
            ciphertext,
        })
    }
}

/// The KEKs a process knows: one to seal with, any number still accepted to open.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: Kek,
    previous: Vec<Kek>,
}

impl Keyring {
    /// A keyring sealing with `current` and also opening records sealed with `previous`.
    ///
    /// # Errors
    /// [`CryptoError::DuplicateKekId`] if two KEKs share an id.
    pub fn new(current: Kek, previous: Vec<Kek>) -> Result<Keyring, CryptoError> {
        let mut seen = vec![current.id.as_str()];
        for k in &previous {
            if seen.contains(&k.id.as_str()) {
                return Err(CryptoError::DuplicateKekId(k.id.clone()));
            }
            seen.push(&k.id);
        }
        Ok(Keyring { current, previous })
    }

    /// The id new records are sealed under.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Seal `plaintext` under the current KEK, authenticating `aad` and the KEK id.
    ///
    /// # Errors
    /// [`CryptoError::Seal`] only if AES-GCM refuses (plaintext beyond its ~64 GB limit).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, CryptoError> {
        let kek = &self.current;
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext = kek
            .cipher()?
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &bound_aad(&kek.id, aad),
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        Ok(Sealed {
            kek_id: kek.id.clone(),
            nonce,
            ciphertext,
        })
    }

    /// Open `sealed` with the KEK it names, checking `aad`. The plaintext is zeroed when the
    /// returned buffer is dropped.
    ///
    /// # Errors
    /// [`CryptoError::UnknownKek`] if the keyring lacks that KEK; [`CryptoError::Open`] if
    /// authentication fails (wrong `aad`, altered nonce/ciphertext/KEK id).
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let kek = self
            .find(&sealed.kek_id)
            .ok_or_else(|| CryptoError::UnknownKek(sealed.kek_id.clone()))?;
        kek.cipher()
            .map_err(|_| CryptoError::Open)?
            .decrypt(
                &Nonce::from(sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &bound_aad(&sealed.kek_id, aad),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Open)
    }

    fn find(&self, id: &str) -> Option<&Kek> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
    }
}

/// Open `sealed` with whichever KEK sealed it and seal it again under the keyring's current
/// KEK, same `aad` (for `sluice keys rotate-kek`). A record already under the current KEK
/// gets a fresh nonce, which is harmless.
///
/// # Errors
/// Those of [`Keyring::open`] and [`Keyring::seal`].
pub fn rewrap(keyring: &Keyring, sealed: &Sealed, aad: &[u8]) -> Result<Sealed, CryptoError> {
    let plaintext = keyring.open(sealed, aad)?;
    keyring.seal(&plaintext, aad)
}

/// `domain ‖ len(kek_id) as u32 BE ‖ kek_id ‖ caller aad`. The length prefix keeps the
/// boundary between id and caller data unambiguous (`("a", "bc")` ≠ `("ab", "c")`).
fn bound_aad(kek_id: &str, aad: &[u8]) -> Vec<u8> {
    let id = kek_id.as_bytes();
    let mut out = Vec::with_capacity(AAD_DOMAIN.len() + 4 + id.len() + aad.len());
    out.extend_from_slice(AAD_DOMAIN);
    // Ids are at most MAX_KEK_ID_LEN bytes when validated; saturate rather than truncate
    // for a hand-built `Sealed` with a huge id (it then fails as UnknownKek anyway).
    out.extend_from_slice(&u32::try_from(id.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(aad);
    out
}

fn validate_kek_id(id: &str) -> Result<(), CryptoError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_KEK_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CryptoError::InvalidKekId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OLD_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    // base64 of bytes 0x20..=0x3f
    const NEW_B64: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    const AAD: &[u8] = b"content-key:movie-2026-04-01";
    const CONTENT_KEY: &[u8] = b"0123456789abcdef";

    fn old() -> Kek {
        Kek::parse("kek-2025", OLD_HEX).unwrap()
    }

    fn new() -> Kek {
        Kek::parse("kek-2026", NEW_B64).unwrap()
    }

    fn ring() -> Keyring {
        Keyring::new(old(), vec![]).unwrap()
    }

    #[test]
    fn kek_parsing() {
        let expected: Vec<u8> = (0u8..32).collect();
        assert_eq!(old().key.to_vec(), expected);
        assert_eq!(
            Kek::from_hex("a", &OLD_HEX.to_uppercase())
                .unwrap()
                .key
                .to_vec(),
            expected
        );
        assert_eq!(new().key.to_vec(), (0x20u8..0x40).collect::<Vec<_>>());
        // Unpadded, URL-safe and whitespace-wrapped forms of 32 bytes.
        let k = [0xfbu8; 32];
        for s in [
            STANDARD.encode(k),
            STANDARD_NO_PAD.encode(k),
            URL_SAFE.encode(k),
            URL_SAFE_NO_PAD.encode(k),
            format!("  {}\n", STANDARD.encode(k)),
        ] {
            assert_eq!(Kek::parse("b", &s).unwrap().key, k, "{s}");
        }
        assert_eq!(Kek::from_base64("b", &STANDARD.encode(k)).unwrap().key, k);
    }

    #[test]
    fn kek_parsing_refuses_wrong_sizes_and_ids() {
        for bad in [
            "",
            "00",
            &OLD_HEX[..62],
            &format!("{OLD_HEX}00"),
            &OLD_HEX.replace('0', "g"),
            &STANDARD.encode([1u8; 31]),
            &STANDARD.encode([1u8; 33]),
            "not a key at all!",
        ] {
            assert_eq!(
                Kek::parse("k", bad).unwrap_err(),
                CryptoError::InvalidKek { id: "k".into() },
                "{bad}"
            );
        }
        assert!(Kek::from_hex("k", NEW_B64).is_err());
        assert!(Kek::from_base64("k", OLD_HEX).is_err());
        for id in ["", "a:b", "a b", "é", &"x".repeat(65), "a\n"] {
            assert_eq!(
                Kek::parse(id, OLD_HEX).unwrap_err(),
                CryptoError::InvalidKekId,
                "{id:?}"
            );
        }
        assert!(Kek::new(&"x".repeat(64), [0; 32]).is_ok());
    }

    #[test]
    fn debug_and_errors_hold_no_key_material() {
        let dbg = format!(
            "{:?} {:?}",
            old(),
            Keyring::new(new(), vec![old()]).unwrap()
        );
        assert!(dbg.contains("kek-2025") && dbg.contains("redacted"));
        assert!(!dbg.contains("[0, 1, 2"), "{dbg}");
        assert!(!dbg.contains("32, 33, 34"), "{dbg}");
        let secret_hex = "deadbeef".repeat(7) + "deadbee";
        let errs = [
            Kek::parse("k", &secret_hex).unwrap_err(),
            Kek::from_base64("k", &STANDARD.encode([0xdeu8; 31])).unwrap_err(),
            ring().open(&new_ring_sealed(), AAD).unwrap_err(),
            ring()
                .open(
                    &Sealed {
                        kek_id: "kek-2025".into(),
                        nonce: [0; 12],
                        ciphertext: vec![0; 32],
                    },
                    AAD,
                )
                .unwrap_err(),
        ];
        for e in errs {
            let text = format!("{e} {e:?}");
            assert!(!text.contains("deadbee"), "{text}");
            assert!(!text.contains("3q3e"), "{text}"); // base64 of 0xde 0xad…
            assert!(!text.contains(OLD_HEX), "{text}");
        }
        let sealed_dbg = format!("{:?}", ring().seal(CONTENT_KEY, AAD).unwrap());
        assert!(!sealed_dbg.contains("0123456789abcdef"));
    }

    fn new_ring_sealed() -> Sealed {
        Keyring::new(new(), vec![])
            .unwrap()
            .seal(CONTENT_KEY, AAD)
            .unwrap()
    }

    #[test]
    fn round_trip() {
        let r = ring();
        let sealed = r.seal(CONTENT_KEY, AAD).unwrap();
        assert_eq!(sealed.kek_id, "kek-2025");
        assert_eq!(sealed.ciphertext.len(), CONTENT_KEY.len() + TAG_LEN);
        assert_ne!(&sealed.ciphertext[..16], CONTENT_KEY);
        assert_eq!(r.open(&sealed, AAD).unwrap().as_slice(), CONTENT_KEY);
        // Empty plaintext and empty aad work too.
        let empty = r.seal(b"", b"").unwrap();
        assert!(r.open(&empty, b"").unwrap().is_empty());
    }

    #[test]
    fn nonces_are_fresh() {
        let r = ring();
        let a = r.seal(CONTENT_KEY, AAD).unwrap();
        let b = r.seal(CONTENT_KEY, AAD).unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn wrong_aad_fails() {
        let r = ring();
        let sealed = r.seal(CONTENT_KEY, AAD).unwrap();
        assert_eq!(
            r.open(&sealed, b"content-key:other").unwrap_err(),
            CryptoError::Open
        );
        assert_eq!(r.open(&sealed, b"").unwrap_err(), CryptoError::Open);
    }

    #[test]
    fn tampering_fails() {
        let r = ring();
        let sealed = r.seal(CONTENT_KEY, AAD).unwrap();
        for i in 0..sealed.ciphertext.len() {
            let mut t = sealed.clone();
            t.ciphertext[i] ^= 0x01;
            assert_eq!(r.open(&t, AAD).unwrap_err(), CryptoError::Open, "byte {i}");
        }
        for i in 0..12 {
            let mut t = sealed.clone();
            t.nonce[i] ^= 0x80;
            assert_eq!(r.open(&t, AAD).unwrap_err(), CryptoError::Open, "nonce {i}");
        }
        let mut t = sealed.clone();
        t.ciphertext.truncate(TAG_LEN - 1);
        assert_eq!(r.open(&t, AAD).unwrap_err(), CryptoError::Open);
        t.ciphertext.clear();
        assert_eq!(r.open(&t, AAD).unwrap_err(), CryptoError::Open);
        let mut t = sealed;
        t.ciphertext.push(0);
        assert_eq!(r.open(&t, AAD).unwrap_err(), CryptoError::Open);
    }

    #[test]
    fn unknown_kek_fails() {
        let sealed = new_ring_sealed();
        assert_eq!(
            ring().open(&sealed, AAD).unwrap_err(),
            CryptoError::UnknownKek("kek-2026".into())
        );
    }

    #[test]
    fn relabelled_kek_id_fails() {
        // Two KEKs with the same bytes under different ids: the id is authenticated, so a
        // record cannot be moved from one label to the other.
        let a = Kek::parse("a", OLD_HEX).unwrap();
        let b = Kek::parse("b", OLD_HEX).unwrap();
        let r = Keyring::new(a, vec![b]).unwrap();
        let mut sealed = r.seal(CONTENT_KEY, AAD).unwrap();
        sealed.kek_id = "b".into();
        assert_eq!(r.open(&sealed, AAD).unwrap_err(), CryptoError::Open);
    }

    #[test]
    fn aad_boundary_is_unambiguous() {
        assert_ne!(bound_aad("ab", b"c"), bound_aad("a", b"bc"));
    }

    #[test]
    fn duplicate_ids_refused() {
        assert_eq!(
            Keyring::new(old(), vec![new(), old()]).unwrap_err(),
            CryptoError::DuplicateKekId("kek-2025".into())
        );
        assert!(Keyring::new(old(), vec![new(), Kek::new("kek-2024", [9; 32]).unwrap()]).is_ok());
    }

    #[test]
    fn rotation() {
        let sealed_old = ring().seal(CONTENT_KEY, AAD).unwrap();
        let rotating = Keyring::new(new(), vec![old()]).unwrap();
        assert_eq!(rotating.current_id(), "kek-2026");
        // During rotation both old and new records open.
        assert_eq!(
            rotating.open(&sealed_old, AAD).unwrap().as_slice(),
            CONTENT_KEY
        );
        let rewrapped = rewrap(&rotating, &sealed_old, AAD).unwrap();
        assert_eq!(rewrapped.kek_id, "kek-2026");
        // After rotation the old KEK can be dropped.
        let only_new = Keyring::new(new(), vec![]).unwrap();
        assert_eq!(
            only_new.open(&rewrapped, AAD).unwrap().as_slice(),
            CONTENT_KEY
        );
        assert_eq!(
            only_new.open(&sealed_old, AAD).unwrap_err(),
            CryptoError::UnknownKek("kek-2025".into())
        );
        // Rewrap checks the aad like open does.
        assert_eq!(
            rewrap(&rotating, &sealed_old, b"other").unwrap_err(),
            CryptoError::Open
        );
        // Rewrapping a current record is a re-seal.
        let again = rewrap(&only_new, &rewrapped, AAD).unwrap();
        assert_ne!(again.nonce, rewrapped.nonce);
        assert_eq!(only_new.open(&again, AAD).unwrap().as_slice(), CONTENT_KEY);
    }

    #[test]
    fn envelope_round_trip() {
        let r = ring();
        let sealed = r.seal(CONTENT_KEY, AAD).unwrap();
        let env = sealed.to_envelope();
        assert!(env.starts_with("v2:kek-2025:"));
        assert_eq!(env.split(':').count(), 4);
        let back = Sealed::from_envelope(&env).unwrap();
        assert_eq!(back, sealed);
        assert_eq!(Sealed::from_envelope(&format!("{env}\n")).unwrap(), sealed);
        assert_eq!(r.open(&back, AAD).unwrap().as_slice(), CONTENT_KEY);
    }

    #[test]
    fn malformed_envelopes_refused() {
        let env = ring().seal(CONTENT_KEY, AAD).unwrap().to_envelope();
        let f: Vec<&str> = env.split(':').collect();
        let (id, n, c) = (f[1], f[2], f[3]);
        let short_ct = STANDARD.encode([0u8; 15]);
        let nonce_11 = STANDARD.encode([0u8; 11]);
        let nonce_13 = STANDARD.encode([0u8; 13]);
        // 12 bytes encode to 16 characters with no padding, so padding is surplus here.
        let nonce_padded = format!("{n}==");
        let huge = format!("v2:{id}:{n}:{}", "A".repeat(MAX_ENVELOPE_LEN));
        let cases = [
            String::new(),
            "v2".into(),
            format!("v1:{id}:{n}:{c}"),
            format!("V2:{id}:{n}:{c}"),
            format!("v3:{id}:{n}:{c}"),
            format!("v2:{id}:{n}"),
            format!("v2:{id}:{n}:{c}:"),
            format!("v2:{id}:{n}:{c}:extra"),
            format!("v2::{n}:{c}"),
            format!("v2:bad id:{n}:{c}"),
            format!("v2:{id}::{c}"),
            format!("v2:{id}:{n}:"),
            format!("v2:{id}:{nonce_11}:{c}"),
            format!("v2:{id}:{nonce_13}:{c}"),
            format!("v2:{id}:{nonce_padded}:{c}"),
            // URL-safe alphabet (0xfb bytes encode to '-' and '_'), not the envelope's.
            format!("v2:{id}:{}:{c}", URL_SAFE.encode([0xfbu8; 12])),
            format!("v2:{id}:{n}:{short_ct}"),
            format!("v2:{id}:{n}:{}", c.replace('=', "")),
            format!("v2:{id}:{n}:{c}=="),
            format!("v2:{id}:{n}:!{c}"),
            format!("v2:{id}:{n}: {c}"),
            huge,
        ];
        for bad in cases {
            assert!(Sealed::from_envelope(&bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn seal_open_round_trips(pt in proptest::collection::vec(any::<u8>(), 0..512), aad in proptest::collection::vec(any::<u8>(), 0..64)) {
            let r = ring();
            let sealed = r.seal(&pt, &aad).unwrap();
            let back = Sealed::from_envelope(&sealed.to_envelope()).unwrap();
            let opened = r.open(&back, &aad).unwrap();
            prop_assert_eq!(opened.as_slice(), pt.as_slice());
        }

        #[test]
        fn envelope_parser_never_panics(s in ".{0,200}") {
            let _ = Sealed::from_envelope(&s);
            let _ = Kek::parse("k", &s);
        }
    }
}

//! Playback credentials: what a started playback carries after its entry playlist.
//!
//! A stream token (stream-token-api) opens only the entry playlist of its content, and that
//! load spends one of its `maxUses`. The playlist sluice returns has every `/stream/` URI of
//! the same content rewritten to carry a *playback credential* (`?pc=…`): a stateless,
//! HMAC-signed statement "playback `id` of token `jti`, content `dir`, bound to this address
//! and device, until `exp`, at most quality `q`". Child playlists and segments need it; a raw
//! stream token is refused there, so an exhausted (or never started) token cannot play by
//! any path. The edge checks it against the revocation list on every request. It outlives the
//! token's own `exp` up to `streaming.playback_max` after the start — a film started at minute
//! 50 of a one-hour token still finishes — and a revocation ends it at once.
//!
//! # What a restricted credential opens
//! A credential with a quality ceiling (`q`) opens nothing by itself: every object of the
//! content also needs a proof minted when the playlist that lists it was rewritten, so a
//! credential opens exactly what its own playlists listed — wherever the objects live, however
//! guessable their names, however many renditions the master has:
//! - `ps=` (*object proof*): `MAC(credential, path)`, one per URI of a playlist;
//! - `pt=`, `pr=`, `pm=` (*template proof*, DASH `SegmentTemplate`): the template pattern, the
//!   Representations it may expand to (id and bandwidth) and `MAC(credential, pattern, reps)`;
//!   the player substitutes `$Number$` etc. in the path and the edge checks the path against
//!   the pattern with only those Representations.
//!
//! Proofs are 128-bit truncated HMAC-SHA256 under their own derived key, bound to the
//! credential's signature: a proof of one playback is worthless to another. Nothing in a
//! credential grows with the content (the first version carried a list of paths, capped at 64:
//! a master with many renditions silently lost its allowed variant).
//!
//! Format: `base64url(json).base64url(HMAC-SHA256(payload_b64, K))`, where `K` is derived
//! from `streaming.secret` for this purpose only (a credential can never pass as any other
//! token, and no other MAC made with the stream secret can pass as a credential). Pure: the
//! caller supplies `now`.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Longest credential text looked at (bounds the work of a hostile one).
pub const MAX_CREDENTIAL_LEN: usize = 2048;
/// Longest template proof (`pt` + `pr`) looked at: a template's Representations are listed
/// in `pr`, ~20 bytes each, so this holds ~1,500 of them. A manifest whose allowed
/// Representations do not fit is refused when it is rewritten (502, logged), never cut.
pub const MAX_TEMPLATE_PROOF_LEN: usize = 32 * 1024;
/// Proof length: 128 bits.
const PROOF_BYTES: usize = 16;

/// The keys credentials and their proofs are signed with, derived from the stream secret.
#[derive(Clone)]
pub struct PlaybackKey {
    credential: [u8; 32],
    proof: [u8; 32],
}

impl fmt::Debug for PlaybackKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlaybackKey(<redacted>)")
    }
}

fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = hmac_of(secret);
    mac.update(label);
    mac.finalize().into_bytes().into()
}

fn hmac_of(key: &[u8]) -> Hmac<Sha256> {
    // HMAC-SHA256 takes keys of any length.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

impl PlaybackKey {
    /// `HMAC-SHA256(stream_secret, "sluice playback credential v1")` for credentials (the
    /// label of the first format: credentials that carried no scope stay valid across an
    /// upgrade), `… "sluice playback proof v2"` for proofs.
    pub fn derive(stream_secret: &[u8]) -> PlaybackKey {
        PlaybackKey {
            credential: derive(stream_secret, b"sluice playback credential v1"),
            proof: derive(stream_secret, b"sluice playback proof v2"),
        }
    }

    fn mac(&self, payload_b64: &str) -> [u8; 32] {
        let mut mac = hmac_of(&self.credential);
        mac.update(payload_b64.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The credential text for `claims`.
    pub fn sign(&self, claims: &PlaybackClaims) -> String {
        // Serializing a struct of strings and integers cannot fail.
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let sig = URL_SAFE_NO_PAD.encode(self.mac(&payload));
        format!("{payload}.{sig}")
    }

    /// Check the MAC and expiry of a credential and return its claims.
    ///
    /// # Errors
    /// [`CredentialError::Invalid`] for anything malformed or not signed by this key (a
    /// first-version credential that carried a path scope included: its claims are not
    /// these); [`CredentialError::Expired`] when `now >= exp`. Never panics.
    pub fn verify(&self, text: &str, now: i64) -> Result<PlaybackClaims, CredentialError> {
        if text.len() > MAX_CREDENTIAL_LEN {
            return Err(CredentialError::Invalid("too long"));
        }
        let (payload, sig) = text
            .split_once('.')
            .ok_or(CredentialError::Invalid("malformed"))?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| CredentialError::Invalid("malformed signature"))?;
        if !bool::from(self.mac(payload).as_slice().ct_eq(&sig)) {
            return Err(CredentialError::Invalid("bad signature"));
        }
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| CredentialError::Invalid("malformed payload"))?;
        let claims: PlaybackClaims =
            serde_json::from_slice(&json).map_err(|_| CredentialError::Invalid("bad claims"))?;
        if claims.exp <= now {
            return Err(CredentialError::Expired);
        }
        Ok(claims)
    }

    /// A minter of proofs for one credential (its text as [`Self::sign`] made it).
    pub fn prover(&self, credential: &str) -> Prover {
        let mut mac = hmac_of(&self.proof);
        // The signature part names the credential exactly (it is a MAC of the claims).
        let sig = credential.rsplit_once('.').map_or(credential, |(_, s)| s);
        mac.update(sig.as_bytes());
        mac.update(&[0]);
        Prover { keyed: mac }
    }

    /// Whether `proof` opens the object at `rest` (decoded path below `/stream/{hash}/`)
    /// for `credential`. Constant time in the MAC comparison.
    pub fn proves(&self, credential: &str, rest: &str, proof: &ObjectProof) -> bool {
        let prover = self.prover(credential);
        match proof {
            ObjectProof::None => false,
            ObjectProof::Object(ps) => ct_eq_b64(&prover.object(rest), ps),
            ObjectProof::Template { pattern, reps, mac } => {
                if pattern.len() + reps.len() > MAX_TEMPLATE_PROOF_LEN {
                    return false;
                }
                let Some(pattern_text) = URL_SAFE_NO_PAD
                    .decode(pattern)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                else {
                    return false;
                };
                if !ct_eq_b64(&prover.template_mac(&pattern_text, reps), mac) {
                    return false;
                }
                let Some(reps) = decode_reps(reps) else {
                    return false;
                };
                template_matches(&pattern_text, rest, &reps)
            }
        }
    }
}

fn ct_eq_b64(expected: &str, given: &str) -> bool {
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// Mints the proofs of one credential (rewrite time).
#[derive(Clone)]
pub struct Prover {
    keyed: Hmac<Sha256>,
}

impl Prover {
    fn finish(mac: Hmac<Sha256>) -> String {
        let full = mac.finalize().into_bytes();
        URL_SAFE_NO_PAD.encode(&full[..PROOF_BYTES])
    }

    /// `ps=` for the object at `rest`.
    pub fn object(&self, rest: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(b"o\0");
        mac.update(rest.as_bytes());
        Prover::finish(mac)
    }

    fn template_mac(&self, pattern: &str, reps_b64: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(b"t\0");
        mac.update(pattern.as_bytes());
        mac.update(&[0]);
        mac.update(reps_b64.as_bytes());
        Prover::finish(mac)
    }

    /// `(pt, pr, pm)` for a template `pattern` (decoded path below `/stream/{hash}/` with its
    /// `$…$` identifiers) that may expand to `reps`.
    ///
    /// # Errors
    /// When the proof would exceed [`MAX_TEMPLATE_PROOF_LEN`].
    pub fn template(&self, pattern: &str, reps: &[Rep]) -> Result<TemplateProof, ProofTooLarge> {
        let pr = URL_SAFE_NO_PAD.encode(serde_json::to_vec(reps).unwrap_or_default());
        let pt = URL_SAFE_NO_PAD.encode(pattern.as_bytes());
        if pt.len() + pr.len() > MAX_TEMPLATE_PROOF_LEN {
            return Err(ProofTooLarge(pt.len() + pr.len()));
        }
        let pm = self.template_mac(pattern, &pr);
        Ok(TemplateProof { pt, pr, pm })
    }
}

/// A template proof too large to carry (see [`MAX_TEMPLATE_PROOF_LEN`]).
#[derive(Debug, Error)]
#[error("template proof of {0} bytes exceeds the {MAX_TEMPLATE_PROOF_LEN}-byte bound")]
pub struct ProofTooLarge(pub usize);

/// The query parameters of a template proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProof {
    pub pt: String,
    pub pr: String,
    pub pm: String,
}

/// A DASH Representation a template may expand to: `$RepresentationID$` and `$Bandwidth$`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rep(pub String, pub Option<u64>);

fn decode_reps(b64: &str) -> Option<Vec<Rep>> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).ok()?).ok()
}

/// What a request shows besides its credential: the proof for the object it asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ObjectProof {
    #[default]
    None,
    Object(String),
    Template {
        pattern: String,
        reps: String,
        mac: String,
    },
}

impl ObjectProof {
    /// Read `ps`, or `pt`+`pr`+`pm`, from a query (first occurrence of each name counts).
    pub fn from_query(query: Option<&str>) -> ObjectProof {
        let Some(q) = query else {
            return ObjectProof::None;
        };
        let (mut ps, mut pt, mut pr, mut pm) = (None, None, None, None);
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            let slot = match k.as_ref() {
                "ps" => &mut ps,
                "pt" => &mut pt,
                "pr" => &mut pr,
                "pm" => &mut pm,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
        match (ps, pt, pr, pm) {
            (Some(ps), ..) => ObjectProof::Object(ps),
            (None, Some(pattern), Some(reps), Some(mac)) => {
                ObjectProof::Template { pattern, reps, mac }
            }
            _ => ObjectProof::None,
        }
    }
}

/// One piece of a DASH URL template.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Literal(&'a str),
    /// `$Number$`, `$Time$`, `$SubNumber$` (any width/format): digits, or hex digits for
    /// `%x`/`%X` formats.
    Digits {
        hex: bool,
    },
    RepresentationId,
    Bandwidth,
}

fn pieces(pattern: &str) -> Option<Vec<Piece<'_>>> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('$') {
        if open > 0 {
            out.push(Piece::Literal(&rest[..open]));
        }
        let close = rest[open + 1..].find('$')? + open + 1;
        let inner = &rest[open + 1..close];
        let (ident, format) = inner.split_once('%').unwrap_or((inner, ""));
        let hex = format.ends_with(['x', 'X']);
        out.push(match ident {
            "" => Piece::Literal("$"),
            "Number" | "Time" | "SubNumber" => Piece::Digits { hex },
            "RepresentationID" => Piece::RepresentationId,
            "Bandwidth" => Piece::Bandwidth,
            _ => return None,
        });
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Literal(rest));
    }
    Some(out)
}

/// Whether `path` is what a player makes of `pattern` for one of `reps` (every
/// `$RepresentationID$` and `$Bandwidth$` of one expansion from the same Representation).
pub fn template_matches(pattern: &str, path: &str, reps: &[Rep]) -> bool {
    let Some(pieces) = pieces(pattern) else {
        return false;
    };
    let uses_rep = pieces
        .iter()
        .any(|p| matches!(p, Piece::RepresentationId | Piece::Bandwidth));
    if !uses_rep {
        return match_from(&pieces, path, None);
    }
    reps.iter().any(|r| match_from(&pieces, path, Some(r)))
}

fn match_from(pieces: &[Piece<'_>], s: &str, rep: Option<&Rep>) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return s.is_empty();
    };
    match first {
        Piece::Literal(l) => s.strip_prefix(l).is_some_and(|t| match_from(rest, t, rep)),
        Piece::RepresentationId => rep.is_some_and(|r| {
            s.strip_prefix(r.0.as_str())
                .is_some_and(|t| match_from(rest, t, rep))
        }),
        Piece::Bandwidth => rep.and_then(|r| r.1).is_some_and(|bw| {
            s.strip_prefix(bw.to_string().as_str())
                .is_some_and(|t| match_from(rest, t, rep))
        }),
        Piece::Digits { hex } => {
            let run = s
                .bytes()
                .take_while(|b| {
                    if *hex {
                        b.is_ascii_hexdigit()
                    } else {
                        b.is_ascii_digit()
                    }
                })
                .count();
            // At least one digit; try the longest run first (the usual case is a literal
            // that does not start with a digit right after).
            (1..=run.min(40))
                .rev()
                .any(|n| match_from(rest, &s[n..], rep))
        }
    }
}

/// Why a credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CredentialError {
    #[error("invalid playback credential: {0}")]
    Invalid(&'static str),
    #[error("playback credential expired")]
    Expired,
}

/// What a credential says. Unknown fields are refused: a first-version credential that
/// carried a path scope (`p`) must not read as an unrestricted one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybackClaims {
    /// Format version (2; absent in first-version credentials, which had no scope).
    #[serde(rename = "v", default)]
    pub version: u8,
    /// The playback: one entry load (random, 128 bits).
    #[serde(rename = "id", default, skip_serializing_if = "String::is_empty")]
    pub playback_id: String,
    /// The stream token's `jti`: the revocation key.
    #[serde(rename = "j")]
    pub jti: String,
    /// The content's bucket directory (its hash, after stream-id resolution).
    #[serde(rename = "h")]
    pub dir: String,
    /// The client address bound at the entry load (canonical text).
    #[serde(rename = "i")]
    pub ip: String,
    /// The device bound by the token; empty when the token named none.
    #[serde(rename = "d", default, skip_serializing_if = "String::is_empty")]
    pub device: String,
    /// When the playback started (the entry load), unix seconds.
    #[serde(rename = "s")]
    pub start: i64,
    /// Valid while `now < exp` (`start + streaming.playback_max`).
    #[serde(rename = "e")]
    pub exp: i64,
    /// The quality ceiling (`480p`, `720p`, `1080p`); absent: every quality. A ceiling makes
    /// every object need a proof (module doc).
    #[serde(rename = "q", default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
}

/// A new playback id: 128 random bits, base64url.
pub fn new_playback_id() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PlaybackKey {
        PlaybackKey::derive(b"stream-secret-0123456789")
    }

    fn claims(quality: Option<&str>) -> PlaybackClaims {
        PlaybackClaims {
            version: 2,
            playback_id: "pb-1".into(),
            jti: "j-1".into(),
            dir: "movie".into(),
            ip: "192.0.2.1".into(),
            device: String::new(),
            start: 1000,
            exp: 2000,
            quality: quality.map(String::from),
        }
    }

    #[test]
    fn round_trip_and_expiry() {
        let c = claims(None);
        let t = key().sign(&c);
        assert_eq!(key().verify(&t, 1999).unwrap(), c);
        assert_eq!(key().verify(&t, 2000), Err(CredentialError::Expired));
        // Another secret, or the raw stream secret itself, does not verify it.
        assert!(matches!(
            PlaybackKey::derive(b"other-secret-0123456789").verify(&t, 1500),
            Err(CredentialError::Invalid(_))
        ));
    }

    fn resign(payload: &serde_json::Value) -> String {
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap());
        let sig = URL_SAFE_NO_PAD.encode(key().mac(&p));
        format!("{p}.{sig}")
    }

    #[test]
    fn first_version_credentials() {
        // Unrestricted ones (no scope) still play after an upgrade…
        let v1 = serde_json::json!({"j":"j","h":"movie","i":"192.0.2.1","s":1,"e":2000});
        assert_eq!(key().verify(&resign(&v1), 1500).unwrap().quality, None);
        // …restricted ones (a path scope) are refused, never read as unrestricted.
        let v1r = serde_json::json!({"j":"j","h":"movie","i":"192.0.2.1","s":1,"e":2000,"p":["v720/p.m3u8"]});
        assert_eq!(
            key().verify(&resign(&v1r), 1500),
            Err(CredentialError::Invalid("bad claims"))
        );
    }

    #[test]
    fn tampering_is_refused() {
        let t = key().sign(&claims(Some("720p")));
        let (payload, sig) = t.split_once('.').unwrap();
        let mut c: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        c.as_object_mut().unwrap().remove("q");
        let forged = format!(
            "{}.{sig}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap())
        );
        assert!(matches!(
            key().verify(&forged, 1500),
            Err(CredentialError::Invalid("bad signature"))
        ));
        for bad in [
            "",
            ".",
            "a.b",
            &t[..t.len() - 2],
            &format!("{t}x"),
            &"A".repeat(5000),
        ] {
            assert!(key().verify(bad, 1500).is_err(), "{bad}");
        }
    }

    #[test]
    fn object_proofs_bind_credential_and_path() {
        let k = key();
        let cred = k.sign(&claims(Some("720p")));
        let other = k.sign(&PlaybackClaims {
            playback_id: "pb-2".into(),
            ..claims(Some("720p"))
        });
        let ps = k.prover(&cred).object("v720/seg_1.m4s");
        assert_eq!(ps.len(), 22);
        let proof = ObjectProof::Object(ps.clone());
        assert!(k.proves(&cred, "v720/seg_1.m4s", &proof));
        assert!(!k.proves(&cred, "v720/seg_2.m4s", &proof));
        assert!(!k.proves(&cred, "v1080/seg_1.m4s", &proof));
        assert!(!k.proves(&other, "v720/seg_1.m4s", &proof));
        assert!(!k.proves(&cred, "v720/seg_1.m4s", &ObjectProof::None));
        assert!(!k.proves(&cred, "v720/seg_1.m4s", &ObjectProof::Object(String::new())));
        let q = format!("pc=x&ps={ps}&ps=zzz");
        assert_eq!(ObjectProof::from_query(Some(&q)), proof);
        assert_eq!(
            ObjectProof::from_query(Some("pt=a&pr=b")),
            ObjectProof::None
        );
    }

    #[test]
    fn template_proofs() {
        let k = key();
        let cred = k.sign(&claims(Some("720p")));
        let reps = vec![
            Rep("v360".into(), Some(800_000)),
            Rep("v720".into(), Some(2_800_000)),
        ];
        let pattern = "dash/$RepresentationID$/seg_$Number%05d$.m4s";
        let t = k.prover(&cred).template(pattern, &reps).unwrap();
        let q = format!("pc=x&pt={}&pr={}&pm={}", t.pt, t.pr, t.pm);
        let proof = ObjectProof::from_query(Some(&q));
        assert!(k.proves(&cred, "dash/v720/seg_00001.m4s", &proof));
        assert!(k.proves(&cred, "dash/v360/seg_12345678.m4s", &proof));
        for refused in [
            "dash/v1080/seg_00001.m4s",
            "dash/v720/seg_.m4s",
            "dash/v720/seg_0001x.m4s",
            "dash/v720/seg_00001.m4s.m3u8",
            "dash/v720/../v1080/seg_1.m4s",
            "other/v720/seg_00001.m4s",
        ] {
            assert!(!k.proves(&cred, refused, &proof), "{refused}");
        }
        // A widened list or another pattern does not carry the MAC.
        let wide = k
            .prover(&cred)
            .template(pattern, &[Rep("v1080".into(), None)])
            .unwrap();
        let forged = ObjectProof::Template {
            pattern: t.pt.clone(),
            reps: wide.pr,
            mac: t.pm.clone(),
        };
        assert!(!k.proves(&cred, "dash/v1080/seg_00001.m4s", &forged));
        // Bandwidth-addressed templates: id and bandwidth of one Representation.
        assert!(template_matches(
            "b/$Bandwidth$/$Time$.m4s",
            "b/800000/90000.m4s",
            &reps
        ));
        assert!(!template_matches(
            "b/$Bandwidth$/$Time$.m4s",
            "b/5000000/9.m4s",
            &reps
        ));
        assert!(!template_matches(
            "$RepresentationID$_$Bandwidth$.m4s",
            "v360_2800000.m4s",
            &reps
        ));
        assert!(template_matches("s_$Number%08x$.m4s", "s_00ff.m4s", &[]));
        assert!(template_matches("a$$b_$Number$.m4s", "a$b_7.m4s", &[]));
        assert!(!template_matches("s_$Unknown$.m4s", "s_1.m4s", &[]));
        let huge = vec![Rep("x".repeat(100), Some(1)); 400];
        assert!(k.prover(&cred).template(pattern, &huge).is_err());
    }

    #[test]
    fn debug_hides_the_key() {
        assert!(!format!("{:?}", key()).contains(|c: char| c.is_ascii_digit()));
    }
}

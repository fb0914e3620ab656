//! Playback credentials: what a started playback carries after its entry playlist.
//!
//! A stream token (stream-token-api) opens only the entry playlist of its content, and that
//! load spends one of its `maxUses`. The playlist sluice returns has every `/stream/` URI of
//! the same content rewritten to carry a *playback credential* (`?pc=…`): a stateless,
//! HMAC-signed statement "playback `jti` of content `dir`, bound to this address and device,
//! may fetch these paths until `exp`". Child playlists and segments need it; a raw stream
//! token is refused there, so an exhausted (or never started) token cannot play by any path.
//!
//! The credential is re-minted into every playlist the player loads (media playlists of a
//! restricted-quality playback add their segments' directories to the scope), and the edge
//! checks it against the revocation list on every request. It outlives the token's own
//! `exp` up to `streaming.playback_max` after the start — a film started at minute 50 of a
//! one-hour token still finishes — and a revocation ends it at once.
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

/// Longest credential text looked at (a few scope entries; bounds the work of a hostile one).
pub const MAX_CREDENTIAL_LEN: usize = 4096;
/// Most scope entries a credential carries (variants + renditions + segment directories).
pub const MAX_SCOPE_ENTRIES: usize = 64;

/// The key credentials are signed with, derived from the stream-token secret.
#[derive(Clone)]
pub struct PlaybackKey([u8; 32]);

impl fmt::Debug for PlaybackKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlaybackKey(<redacted>)")
    }
}

impl PlaybackKey {
    /// `HMAC-SHA256(stream_secret, "sluice playback credential v1")`.
    pub fn derive(stream_secret: &[u8]) -> PlaybackKey {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(stream_secret)
            .unwrap_or_else(|_| unreachable_hmac());
        mac.update(b"sluice playback credential v1");
        PlaybackKey(mac.finalize().into_bytes().into())
    }

    fn mac(&self, payload_b64: &str) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable_hmac());
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
    /// [`CredentialError::Invalid`] for anything malformed or not signed by this key;
    /// [`CredentialError::Expired`] when `now >= exp`. Never panics.
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
}

/// HMAC-SHA256 takes keys of any length; this cannot happen.
fn unreachable_hmac() -> Hmac<Sha256> {
    unreachable!("HMAC accepts any key length")
}

/// Why a credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CredentialError {
    #[error("invalid playback credential: {0}")]
    Invalid(&'static str),
    #[error("playback credential expired")]
    Expired,
}

/// What a credential says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybackClaims {
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
    /// Which objects of the content it opens; absent: all of them.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<String>>,
}

impl PlaybackClaims {
    /// Whether the object at `rest` (decoded path below `/stream/{hash}/`) may be fetched.
    ///
    /// A scope entry ending in `/` opens the non-playlist objects (segments, init segments,
    /// keys, images) below that directory; any other entry opens exactly that playlist.
    /// Playlists are never opened by a directory entry, so the segments of one variant do
    /// not open the playlist of another that shares their directory.
    pub fn allows(&self, rest: &str, is_playlist: bool) -> bool {
        let Some(scope) = &self.scope else {
            return true;
        };
        scope.iter().any(|entry| match entry.strip_suffix('/') {
            Some(_) => !is_playlist && rest.starts_with(entry.as_str()),
            None => is_playlist && rest == entry,
        })
    }

    /// These claims with `extra` entries added to a restricted scope (an unrestricted one
    /// stays unrestricted). Entries already present are not repeated; the total is capped.
    pub fn widened(&self, extra: impl IntoIterator<Item = String>) -> PlaybackClaims {
        let mut next = self.clone();
        if let Some(scope) = &mut next.scope {
            for e in extra {
                if scope.len() >= MAX_SCOPE_ENTRIES {
                    break;
                }
                if !scope.contains(&e) {
                    scope.push(e);
                }
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PlaybackKey {
        PlaybackKey::derive(b"stream-secret-0123456789")
    }

    fn claims(scope: Option<Vec<&str>>) -> PlaybackClaims {
        PlaybackClaims {
            jti: "j-1".into(),
            dir: "movie".into(),
            ip: "192.0.2.1".into(),
            device: String::new(),
            start: 1000,
            exp: 2000,
            scope: scope.map(|v| v.into_iter().map(String::from).collect()),
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

    #[test]
    fn tampering_is_refused() {
        let t = key().sign(&claims(Some(vec!["v720/playlist.m3u8"])));
        let (payload, sig) = t.split_once('.').unwrap();
        let mut c: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        c.as_object_mut().unwrap().remove("p");
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
    fn scope_rules() {
        let all = claims(None);
        assert!(all.allows("v1080/seg.m4s", false));
        assert!(all.allows("master.m3u8", true));
        let c = claims(Some(vec!["v720/playlist.m3u8", "audio/en.m3u8"]));
        assert!(c.allows("v720/playlist.m3u8", true));
        assert!(!c.allows("v720/seg_1.m4s", false));
        assert!(!c.allows("v1080/playlist.m3u8", true));
        let seg = c.widened(["v720/".to_string(), "v720/".to_string()]);
        assert_eq!(seg.scope.as_ref().unwrap().len(), 3);
        assert!(seg.allows("v720/seg_1.m4s", false));
        assert!(seg.allows("v720/sub/init.mp4", false));
        // A directory entry never opens a playlist, nor a sibling directory.
        assert!(!seg.allows("v720/other.m3u8", true));
        assert!(!seg.allows("v7200/seg.m4s", false));
        assert!(!seg.allows("v1080/seg_1.m4s", false));
        assert_eq!(all.widened(["x/".to_string()]).scope, None);
    }

    #[test]
    fn debug_hides_the_key() {
        assert!(!format!("{:?}", key()).contains(|c: char| c.is_ascii_digit()));
    }
}

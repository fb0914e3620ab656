//! Stream tokens (`stream-token-api.txt`, "Structure du token"): the JWT that
//! `POST /api/v2/streaming/token` issues and that the edge checks before serving media.
//!
//! HS256 only ("Token signe HMAC-SHA256"), via `jsonwebtoken` with the algorithm pinned: a
//! header saying `none`, `RS256` (the RS/HS key-confusion attack) or `HS384`/`HS512` is
//! refused before any claim is read. The claims are exactly the document's: standard `sub`,
//! `iat`, `exp`, `jti` and camelCase `contentId`, `contentType`, `quality`, `deviceId`,
//! `profileId`, `ipAddress`, `maxUses`.
//!
//! Time rules, checked here against a caller-supplied `now` (the crate never reads the
//! clock in pure code):
//! - valid while `now < exp + leeway` ("Non expire -- exp > now"); leeway defaults to 0 and
//!   is capped at [`MAX_LEEWAY_SECS`];
//! - `0 < exp - iat <= 3600` ("Token valide 1h maximum"): a token claiming a longer life was
//!   not minted by a conforming issuer and is refused as invalid, not merely trimmed;
//! - `iat <= now + 60`: a token from the future means a broken or hostile issuer clock.
//!
//! Use counts, IP/device binding and revocation need state and live with the caller.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest lifetime a stream token may claim: `exp - iat`, seconds.
pub const MAX_TTL_SECS: i64 = 3600;
/// How far in the future `iat` may be, for issuer clocks running slightly ahead.
pub const IAT_FUTURE_SKEW_SECS: i64 = 60;
/// Upper bound for the configurable expiry leeway.
pub const MAX_LEEWAY_SECS: u32 = 60;
/// Longest token text looked at. A stream token is ~450 bytes; the cap bounds the work a
/// hostile `token=` can cause.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The claims of a stream token, serialized with the document's exact names and order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamClaims {
    /// The user the token was issued to.
    pub sub: String,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expiry, unix seconds.
    pub exp: i64,
    #[serde(rename = "contentId")]
    pub content_id: String,
    /// E.g. `"MOVIE"`.
    #[serde(rename = "contentType")]
    pub content_type: String,
    /// One of the document's qualities (`auto`, `480p`, `720p`, `1080p`, `4k`); not
    /// validated here, the issuing handler decides what a subscription allows.
    pub quality: String,
    #[serde(rename = "deviceId")]
    pub device_id: String,
    #[serde(rename = "profileId")]
    pub profile_id: String,
    /// The address the token is bound to ("IP Binding"), as text.
    #[serde(rename = "ipAddress")]
    pub ip_address: String,
    /// Uses allowed ("Max Uses"); counting them is the caller's job.
    #[serde(rename = "maxUses")]
    pub max_uses: u32,
    /// Unique token id, the key for use counts and the revocation blacklist.
    pub jti: String,
}

/// Why a stream token was not signed or not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StreamTokenError {
    /// Validly signed and well-formed, but `now >= exp + leeway`. The document's
    /// `401 Token expired`.
    #[error("Token expired")]
    Expired,
    /// Anything else wrong with a presented token: malformed, wrong algorithm, bad
    /// signature, impossible lifetime, issued in the future, or no secret configured. The
    /// reason is for logs and metrics, never for the client.
    #[error("invalid stream token: {0}")]
    Invalid(&'static str),
    /// [`StreamTokenSigner::sign`] refused the claims or could not encode them.
    #[error("stream token not signed: {0}")]
    Sign(&'static str),
}

/// Signs and verifies stream tokens under one HS256 secret.
#[derive(Clone)]
pub struct StreamTokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    has_secret: bool,
    leeway: i64,
}

impl fmt::Debug for StreamTokenSigner {
    // Hand-written so the secret (inside the keys) never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamTokenSigner")
            .field("secret", &"<redacted>")
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl StreamTokenSigner {
    /// A signer for `secret` with zero expiry leeway. An empty secret yields a signer that
    /// signs and verifies nothing (fail closed) — config validation should have refused it.
    pub fn new(secret: &[u8]) -> Self {
        StreamTokenSigner {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            has_secret: !secret.is_empty(),
            leeway: 0,
        }
    }

    /// Accept tokens up to `secs` past `exp`, capped at [`MAX_LEEWAY_SECS`].
    pub fn with_leeway(mut self, secs: u32) -> Self {
        self.leeway = i64::from(secs.min(MAX_LEEWAY_SECS));
        self
    }

    /// Sign `claims` as an HS256 JWT.
    ///
    /// # Errors
    /// [`StreamTokenError::Sign`] if no secret is configured or the claims' lifetime is not
    /// within `1..=3600` seconds (such a token would be refused by [`Self::verify`]).
    pub fn sign(&self, claims: &StreamClaims) -> Result<String, StreamTokenError> {
        if !self.has_secret {
            return Err(StreamTokenError::Sign("no secret configured"));
        }
        if lifetime_problem(claims).is_some() {
            return Err(StreamTokenError::Sign("lifetime must be 1..=3600 seconds"));
        }
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(super::jwt::STREAM_TOKEN_TYP.to_string());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|_| StreamTokenError::Sign("encoding failed"))
    }

    /// Verify `token` at time `now` (unix seconds) and return its claims.
    ///
    /// The signature and algorithm are checked before the claims are deserialized.
    ///
    /// # Errors
    /// [`StreamTokenError::Expired`] for a genuine token past its expiry;
    /// [`StreamTokenError::Invalid`] for everything else. Never panics.
    pub fn verify(&self, token: &str, now: i64) -> Result<StreamClaims, StreamTokenError> {
        let claims = self.verify_signature(token, now)?;
        if claims.exp.saturating_add(self.leeway) <= now {
            return Err(StreamTokenError::Expired);
        }
        Ok(claims)
    }

    /// Everything [`Self::verify`] checks except expiry: for revoking a token whose
    /// playbacks may outlive it.
    ///
    /// # Errors
    /// [`StreamTokenError::Invalid`] as for [`Self::verify`].
    pub fn verify_signature(
        &self,
        token: &str,
        now: i64,
    ) -> Result<StreamClaims, StreamTokenError> {
        if !self.has_secret {
            return Err(StreamTokenError::Invalid("no secret configured"));
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(StreamTokenError::Invalid("token too long"));
        }
        if super::jwt::header_facts(token).is_some_and(|h| h.crit) {
            return Err(StreamTokenError::Invalid("crit header"));
        }
        let data = jsonwebtoken::decode::<StreamClaims>(token, &self.decoding, &hs256_only())
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                    StreamTokenError::Invalid("algorithm is not HS256")
                }
                ErrorKind::InvalidSignature => StreamTokenError::Invalid("bad signature"),
                _ if super::jwt::header_alg_is_not_hs256(token) => {
                    StreamTokenError::Invalid("algorithm is not HS256")
                }
                _ => StreamTokenError::Invalid("malformed token or claims"),
            })?;
        let claims = data.claims;
        if let Some(reason) = lifetime_problem(&claims) {
            return Err(StreamTokenError::Invalid(reason));
        }
        if claims.iat > now.saturating_add(IAT_FUTURE_SKEW_SECS) {
            return Err(StreamTokenError::Invalid("issued in the future"));
        }
        Ok(claims)
    }
}

/// Claims for a new token: a fresh UUID v4 `jti`, `iat = now`, and `exp = now + ttl` with
/// `ttl_secs` clamped to `1..=3600` (the document's one-hour maximum).
#[allow(clippy::too_many_arguments)] // one argument per claim, as the document lists them
pub fn new_claims(
    sub: &str,
    content_id: &str,
    content_type: &str,
    quality: &str,
    device_id: &str,
    profile_id: &str,
    ip: IpAddr,
    max_uses: u32,
    ttl_secs: i64,
    now: i64,
) -> StreamClaims {
    let ttl = ttl_secs.clamp(1, MAX_TTL_SECS);
    StreamClaims {
        sub: sub.to_owned(),
        iat: now,
        exp: now.saturating_add(ttl),
        content_id: content_id.to_owned(),
        content_type: content_type.to_owned(),
        quality: quality.to_owned(),
        device_id: device_id.to_owned(),
        profile_id: profile_id.to_owned(),
        // Canonical text form, so the edge's later comparison is not fooled by spelling.
        ip_address: ip.to_string(),
        max_uses,
        jti: uuid::Uuid::new_v4().to_string(),
    }
}

/// `Some(reason)` unless `0 < exp - iat <= MAX_TTL_SECS`.
fn lifetime_problem(claims: &StreamClaims) -> Option<&'static str> {
    match claims.exp.checked_sub(claims.iat) {
        Some(life) if life > MAX_TTL_SECS => Some("lifetime exceeds 1h"),
        Some(life) if life > 0 => None,
        _ => Some("exp is not after iat"),
    }
}

/// jsonwebtoken's validation reduced to "HS256 signature only": the time and claim rules
/// above are ours, against an injected `now` (jsonwebtoken would read the system clock and
/// defaults to 60 s leeway and `exp < now` rather than the document's `exp > now`).
fn hs256_only() -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.leeway = 0;
    v.required_spec_claims = HashSet::new();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    use proptest::prelude::*;
    use sha2::Sha256;

    const SECRET: &[u8] = b"stream-token-secret-0123456789";
    const NOW: i64 = 1_736_935_200;

    fn signer() -> StreamTokenSigner {
        StreamTokenSigner::new(SECRET)
    }

    fn claims(now: i64, ttl: i64) -> StreamClaims {
        new_claims(
            "user-uuid",
            "content-uuid",
            "MOVIE",
            "1080p",
            "device-uuid",
            "profile-uuid",
            "192.168.1.1".parse().unwrap(),
            5,
            ttl,
            now,
        )
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn hmac256(msg: &str) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
        m.update(msg.as_bytes());
        URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
    }

    /// Encode arbitrary claims with jsonwebtoken directly, bypassing `sign`'s checks.
    fn raw_encode(alg: Algorithm, claims: &impl Serialize) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    fn is_invalid(r: Result<StreamClaims, StreamTokenError>) -> bool {
        matches!(r, Err(StreamTokenError::Invalid(_)))
    }

    #[test]
    fn round_trip() {
        let c = claims(NOW, 3600);
        let token = signer().sign(&c).unwrap();
        assert_eq!(signer().verify(&token, NOW).unwrap(), c);
        assert_eq!(signer().verify(&token, NOW + 3599).unwrap(), c);
    }

    #[test]
    fn claim_names_match_the_document() {
        let token = signer().sign(&claims(NOW, 3600)).unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "contentId",
                "contentType",
                "deviceId",
                "exp",
                "iat",
                "ipAddress",
                "jti",
                "maxUses",
                "profileId",
                "quality",
                "sub"
            ]
        );
        assert_eq!(json["maxUses"], 5);
        assert_eq!(json["ipAddress"], "192.168.1.1");
        let header = token.split('.').next().unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(header["alg"], "HS256");
        assert_eq!(header["typ"], "stream+jwt");
    }

    #[test]
    fn crit_header_refused() {
        let c = claims(NOW, 600);
        let payload = b64(&serde_json::to_string(&c).unwrap());
        let h = b64(r#"{"alg":"HS256","typ":"JWT","crit":["exp"],"exp":1}"#);
        let token = format!("{h}.{payload}.{}", hmac256(&format!("{h}.{payload}")));
        assert_eq!(
            signer().verify(&token, NOW),
            Err(StreamTokenError::Invalid("crit header"))
        );
    }

    #[test]
    fn document_example_shape_verifies() {
        // The document's example, hand-signed: iat 1234567890, exp +1h.
        let json = r#"{"sub":"user-uuid","iat":1234567890,"exp":1234571490,"contentId":"content-uuid","contentType":"MOVIE","quality":"1080p","deviceId":"device-uuid","profileId":"profile-uuid","ipAddress":"192.168.1.1","maxUses":5,"jti":"token-uuid"}"#;
        let msg = format!("{}.{}", b64(r#"{"alg":"HS256","typ":"JWT"}"#), b64(json));
        let token = format!("{msg}.{}", hmac256(&msg));
        let c = signer().verify(&token, 1_234_567_900).unwrap();
        assert_eq!(c.jti, "token-uuid");
        assert_eq!(c.max_uses, 5);
    }

    #[test]
    fn new_claims_clamps_ttl_and_makes_unique_jti() {
        let a = claims(NOW, 86_400);
        assert_eq!(a.exp - a.iat, MAX_TTL_SECS);
        let b = claims(NOW, -5);
        assert_eq!(b.exp - b.iat, 1);
        assert_ne!(a.jti, b.jti);
        assert_eq!(uuid::Uuid::parse_str(&a.jti).unwrap().get_version_num(), 4);
        let v6 = new_claims(
            "u",
            "c",
            "MOVIE",
            "auto",
            "d",
            "p",
            "::ffff:10.0.0.1".parse().unwrap(),
            1,
            60,
            NOW,
        );
        assert_eq!(v6.ip_address, "::ffff:10.0.0.1");
    }

    #[test]
    fn alg_none_refused() {
        let c = claims(NOW, 3600);
        let payload = b64(&serde_json::to_string(&c).unwrap());
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"None","typ":"JWT"}"#,
            r#"{"alg":"NONE"}"#,
        ] {
            let h = b64(header);
            for token in [
                format!("{h}.{payload}."),
                format!("{h}.{payload}"),
                format!("{h}.{payload}.{}", hmac256(&format!("{h}.{payload}"))),
            ] {
                let r = signer().verify(&token, NOW);
                assert_eq!(
                    r,
                    Err(StreamTokenError::Invalid("algorithm is not HS256")),
                    "{header}"
                );
            }
        }
    }

    #[test]
    fn other_secret_refused() {
        let token = StreamTokenSigner::new(b"another-secret")
            .sign(&claims(NOW, 60))
            .unwrap();
        assert_eq!(
            signer().verify(&token, NOW),
            Err(StreamTokenError::Invalid("bad signature"))
        );
    }

    #[test]
    fn rs256_header_with_hmac_signature_refused() {
        let c = claims(NOW, 3600);
        let msg = format!(
            "{}.{}",
            b64(r#"{"alg":"RS256","typ":"JWT"}"#),
            b64(&serde_json::to_string(&c).unwrap())
        );
        let token = format!("{msg}.{}", hmac256(&msg));
        assert_eq!(
            signer().verify(&token, NOW),
            Err(StreamTokenError::Invalid("algorithm is not HS256"))
        );
    }

    #[test]
    fn hs384_and_hs512_refused() {
        let c = claims(NOW, 3600);
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let token = raw_encode(alg, &c);
            assert_eq!(
                signer().verify(&token, NOW),
                Err(StreamTokenError::Invalid("algorithm is not HS256"))
            );
        }
    }

    #[test]
    fn expired_refused_and_leeway_is_capped() {
        let c = claims(NOW, 60);
        let token = signer().sign(&c).unwrap();
        assert!(signer().verify(&token, NOW + 59).is_ok());
        assert_eq!(
            signer().verify(&token, NOW + 60),
            Err(StreamTokenError::Expired)
        );
        assert_eq!(
            signer().verify(&token, i64::MAX),
            Err(StreamTokenError::Expired)
        );
        let lenient = signer().with_leeway(10);
        assert!(lenient.verify(&token, NOW + 69).is_ok());
        assert_eq!(
            lenient.verify(&token, NOW + 70),
            Err(StreamTokenError::Expired)
        );
        let capped = signer().with_leeway(u32::MAX);
        assert!(capped.verify(&token, NOW + 60 + 59).is_ok());
        assert_eq!(
            capped.verify(&token, NOW + 60 + 60),
            Err(StreamTokenError::Expired)
        );
    }

    #[test]
    fn lifetime_over_one_hour_refused() {
        let mut c = claims(NOW, 3600);
        c.exp = c.iat + 3601;
        assert_eq!(
            signer().sign(&c),
            Err(StreamTokenError::Sign("lifetime must be 1..=3600 seconds"))
        );
        let token = raw_encode(Algorithm::HS256, &c);
        assert_eq!(
            signer().verify(&token, NOW),
            Err(StreamTokenError::Invalid("lifetime exceeds 1h"))
        );
        // exp before iat, and extreme values that would overflow a naive subtraction.
        for (iat, exp) in [
            (NOW, NOW),
            (NOW, NOW - 1),
            (i64::MIN, i64::MAX),
            (i64::MAX, i64::MIN),
        ] {
            c.iat = iat;
            c.exp = exp;
            assert!(is_invalid(
                signer().verify(&raw_encode(Algorithm::HS256, &c), NOW)
            ));
        }
    }

    #[test]
    fn iat_in_the_future_refused() {
        let ok = signer().sign(&claims(NOW + 60, 600)).unwrap();
        assert!(signer().verify(&ok, NOW).is_ok());
        let bad = signer().sign(&claims(NOW + 61, 600)).unwrap();
        assert_eq!(
            signer().verify(&bad, NOW),
            Err(StreamTokenError::Invalid("issued in the future"))
        );
    }

    #[test]
    fn tampered_claims_refused() {
        let token = signer().sign(&claims(NOW, 600)).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut c: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        c["maxUses"] = 500.into();
        c["ipAddress"] = "10.0.0.1".into();
        parts[1] = b64(&c.to_string());
        assert_eq!(
            signer().verify(&parts.join("."), NOW),
            Err(StreamTokenError::Invalid("bad signature"))
        );
    }

    #[test]
    fn missing_or_mistyped_claims_refused() {
        let mut c = serde_json::to_value(claims(NOW, 600)).unwrap();
        c.as_object_mut().unwrap().remove("exp");
        assert!(is_invalid(
            signer().verify(&raw_encode(Algorithm::HS256, &c), NOW)
        ));
        for (k, v) in [
            ("exp", serde_json::json!("1736935800")),
            ("exp", serde_json::json!(1736935800.5)),
            ("maxUses", serde_json::json!(-1)),
            ("maxUses", serde_json::json!("5")),
            ("jti", serde_json::json!(null)),
            ("ipAddress", serde_json::json!(["1.2.3.4"])),
        ] {
            let mut c = serde_json::to_value(claims(NOW, 600)).unwrap();
            c[k] = v;
            assert!(
                is_invalid(signer().verify(&raw_encode(Algorithm::HS256, &c), NOW)),
                "{k}"
            );
        }
    }

    #[test]
    fn garbage_refused() {
        let token = signer().sign(&claims(NOW, 600)).unwrap();
        for bad in [
            "",
            ".",
            "..",
            "...",
            "a.b.c",
            "eyJhbGciOiJIUzI1NiJ9..",
            &token[..token.len() - 1],
            &format!("{token}."),
            &format!("{token}A"),
            &token.replacen('.', "", 1),
            &"A".repeat(MAX_TOKEN_LEN + 1),
            "\u{0}\u{ffff}",
        ] {
            assert!(is_invalid(signer().verify(bad, NOW)), "{bad}");
        }
    }

    #[test]
    fn empty_secret_fails_closed() {
        let s = StreamTokenSigner::new(b"");
        assert!(matches!(
            s.sign(&claims(NOW, 60)),
            Err(StreamTokenError::Sign(_))
        ));
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(NOW, 60),
            &EncodingKey::from_secret(b""),
        )
        .unwrap();
        assert!(is_invalid(s.verify(&forged, NOW)));
    }

    #[test]
    fn debug_redacts_secret() {
        let dbg = format!("{:?}", signer());
        assert!(!dbg.contains("stream-token-secret"));
        assert!(dbg.contains("redacted"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn never_panics(s in ".{0,400}", now in any::<i64>()) {
            let _ = signer().verify(&s, now);
        }

        #[test]
        fn never_panics_on_jwt_shaped(h in "[A-Za-z0-9_-]{0,60}", p in "[A-Za-z0-9_-]{0,200}", sig in "[A-Za-z0-9_-]{0,60}") {
            let _ = signer().verify(&format!("{h}.{p}.{sig}"), NOW);
        }
    }
}

//! Provider bearer JWTs (`provider-proxy-api.txt`, "Get Stream URL"): the
//! `Authorization: Bearer <jwt_token>` on `GET /api/providers/:id/channels/:channel_id/stream`,
//! where a missing or invalid token is a `401`.
//!
//! The document does not say who issues these tokens; sluice verifies them with a shared
//! HS256 secret from config, `alg` pinned (no `none`, no RS/HS confusion, no other HMAC
//! sizes), `exp` required, and optional `iss`/`aud` checks. `nbf`, when present, is honoured.
//! `exp`, `nbf` and `iat` are NumericDates, which RFC 7519 §2 allows to be non-integer
//! (`1767225600.5`): they are compared as real numbers, and refused when not a finite number
//! between 0 and the end of year 9999 ([`MAX_NUMERIC_DATE`]).
//! As with [`super::stream_token`], jsonwebtoken checks only the algorithm and signature;
//! the time and claim rules are ours, against an explicit `now`.
//!
//! When no audience is configured the `aud` claim is ignored (jsonwebtoken's default would
//! refuse every token that carries one), since the operator has chosen not to pin one.

use std::collections::HashSet;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use thiserror::Error;

/// Longest token text looked at. Identity-provider JWTs with group claims can be a few KB;
/// 8 KB is also a common header-size limit.
pub const MAX_TOKEN_LEN: usize = 8192;
/// Upper bound for the configurable `exp`/`nbf` leeway.
pub const MAX_LEEWAY_SECS: u32 = 300;
/// Latest NumericDate accepted, 9999-12-31T23:59:59Z: a later one is no date an issuer meant
/// (and beyond 2^53 a float no longer holds whole seconds).
pub const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

/// The verified claims of a provider bearer token.
#[derive(Debug, Clone, PartialEq)]
pub struct BearerClaims {
    pub sub: Option<String>,
    /// Expiry, unix seconds (required), rounded down when the token's is fractional.
    pub exp: i64,
    pub iss: Option<String>,
    /// Every other claim (`aud`, `nbf`, `iat`, custom ones), as sent.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The wire form: `exp` optional here so a missing one is reported as [`JwtError::MissingExp`]
/// rather than as a generic parse failure, and any JSON value so a fractional one is read by
/// [`numeric_date`] rather than refused by serde.
#[derive(Deserialize)]
struct RawClaims {
    sub: Option<String>,
    exp: Option<serde_json::Value>,
    iss: Option<String>,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

/// Why a bearer token was refused. All are a `401` for the client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JwtError {
    /// Not a JWT, too long, or claims of the wrong type (e.g. an `exp` that is no number).
    #[error("malformed bearer token: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not `HS256` (including `none`).
    #[error("bearer token algorithm is not HS256")]
    WrongAlgorithm,
    /// Signature mismatch, or no secret configured.
    #[error("bearer token signature mismatch")]
    BadSignature,
    #[error("bearer token has no exp claim")]
    MissingExp,
    #[error("bearer token expired")]
    Expired,
    /// `nbf` is still in the future.
    #[error("bearer token not yet valid")]
    NotYetValid,
    #[error("bearer token issuer not accepted")]
    WrongIssuer,
    #[error("bearer token audience not accepted")]
    WrongAudience,
    /// The header has `crit` (RFC 7515 §4.1.11): extensions sluice does not implement.
    #[error("bearer token has a crit header")]
    CriticalHeader,
    /// A sluice stream token presented as a user bearer.
    #[error("a stream token is not a bearer token")]
    StreamToken,
}

/// Verifies provider bearer tokens under one HS256 secret.
#[derive(Clone)]
pub struct BearerVerifier {
    decoding: DecodingKey,
    has_secret: bool,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: i64,
}

impl fmt::Debug for BearerVerifier {
    // Hand-written so the secret never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerVerifier")
            .field("secret", &"<redacted>")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl BearerVerifier {
    /// A verifier for `secret`, requiring `iss == issuer` and `aud ∋ audience` when given,
    /// with zero leeway. An empty secret verifies nothing.
    pub fn new(secret: &[u8], issuer: Option<String>, audience: Option<String>) -> Self {
        BearerVerifier {
            decoding: DecodingKey::from_secret(secret),
            has_secret: !secret.is_empty(),
            issuer,
            audience,
            leeway: 0,
        }
    }

    /// Tolerate clock differences with the issuer of up to `secs` (capped at
    /// [`MAX_LEEWAY_SECS`]) on `exp` and `nbf`.
    pub fn with_leeway(mut self, secs: u32) -> Self {
        self.leeway = i64::from(secs.min(MAX_LEEWAY_SECS));
        self
    }

    /// Verify `token` against the system clock. See [`Self::verify_at`].
    pub fn verify(&self, token: &str) -> Result<BearerClaims, JwtError> {
        self.verify_at(token, chrono::Utc::now().timestamp())
    }

    /// Verify `token` at `now` (unix seconds): HS256 signature, then `exp` (valid while
    /// `now < exp + leeway`), `nbf`, `iss`, `aud`.
    ///
    /// # Errors
    /// One [`JwtError`] variant per reason; never panics.
    pub fn verify_at(&self, token: &str, now: i64) -> Result<BearerClaims, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed("token too long"));
        }
        if !self.has_secret {
            return Err(JwtError::BadSignature);
        }
        if let Some(h) = header_facts(token) {
            if h.crit {
                return Err(JwtError::CriticalHeader);
            }
            if h.typ
                .is_some_and(|t| t.eq_ignore_ascii_case(STREAM_TOKEN_TYP))
            {
                return Err(JwtError::StreamToken);
            }
        }
        let raw = jsonwebtoken::decode::<RawClaims>(token, &self.decoding, &hs256_only())
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                    JwtError::WrongAlgorithm
                }
                ErrorKind::InvalidSignature => JwtError::BadSignature,
                _ if header_alg_is_not_hs256(token) => JwtError::WrongAlgorithm,
                _ => JwtError::Malformed("not a JWT, or claims of the wrong type"),
            })?
            .claims;

        let exp = numeric_date(raw.exp.as_ref().ok_or(JwtError::MissingExp)?)
            .ok_or(JwtError::Malformed("exp is not a NumericDate"))?;
        // As real numbers: `exp: 100.5` is still valid at 100 and expired at 101. Every operand
        // is below 2^53 (or `now`, rounded alike), so the f64 comparison is exact enough.
        let (now_f, leeway) = (now as f64, self.leeway as f64);
        if exp + leeway <= now_f {
            return Err(JwtError::Expired);
        }
        if let Some(v) = raw.extra.get("nbf") {
            let nbf = numeric_date(v).ok_or(JwtError::Malformed("nbf is not a NumericDate"))?;
            if nbf > now_f + leeway {
                return Err(JwtError::NotYetValid);
            }
        }
        // Not checked against the clock, but it is a NumericDate or the token is malformed.
        if let Some(v) = raw.extra.get("iat") {
            numeric_date(v).ok_or(JwtError::Malformed("iat is not a NumericDate"))?;
        }
        if let Some(want) = &self.issuer {
            if raw.iss.as_deref() != Some(want.as_str()) {
                return Err(JwtError::WrongIssuer);
            }
        }
        if let Some(want) = &self.audience {
            // RFC 7519 §4.1.3: `aud` is a string or an array of strings.
            let ok = match raw.extra.get("aud") {
                Some(serde_json::Value::String(a)) => a == want,
                Some(serde_json::Value::Array(list)) => {
                    list.iter().any(|a| a.as_str() == Some(want.as_str()))
                }
                _ => false,
            };
            if !ok {
                return Err(JwtError::WrongAudience);
            }
        }
        Ok(BearerClaims {
            sub: raw.sub,
            // In range by `numeric_date`, so the conversion is exact.
            exp: exp.floor() as i64,
            iss: raw.iss,
            extra: raw.extra,
        })
    }
}

/// A NumericDate (RFC 7519 §2: seconds since the epoch, "non-integer values can be
/// represented"): a JSON number, integer or not, finite and within `0..=MAX_NUMERIC_DATE`.
/// `None` for anything else (strings, `null`, negative or absurd values).
pub fn numeric_date(v: &serde_json::Value) -> Option<f64> {
    let n = v.as_f64()?;
    (n.is_finite() && (0.0..=MAX_NUMERIC_DATE).contains(&n)).then_some(n)
}

/// The token in an `Authorization` header value of the form `Bearer <token>`.
///
/// The scheme is case-insensitive (RFC 9110 §11.1); surrounding whitespace is ignored.
/// `None` for another scheme, an empty token, or a token containing whitespace (no token
/// format sluice accepts has any, so it means a mangled header).
pub fn bearer_from_header(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(|c: char| c.is_ascii_whitespace())?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return None;
    }
    Some(token)
}

/// jsonwebtoken's validation reduced to "HS256 signature only"; see the module doc.
fn hs256_only() -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.leeway = 0;
    v.required_spec_claims = HashSet::new();
    v
}

/// The JOSE `typ` sluice's own stream tokens carry. A user bearer with this `typ` is
/// refused: a stream token travels in URLs, playlists and logs of other systems, and must
/// never pass as a user's credential even where secrets were (wrongly) shared.
pub const STREAM_TOKEN_TYP: &str = "stream+jwt";

/// What the JOSE header of a token says, as far as sluice's rules care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeaderFacts {
    /// RFC 7515 §4.1.11: a `crit` header lists extensions the recipient must understand;
    /// sluice understands none, so any `crit` means refuse.
    pub crit: bool,
    pub typ: Option<String>,
}

/// Read the JOSE header of a compact JWS (`None` when it is not decodable JSON).
pub(crate) fn header_facts(token: &str) -> Option<HeaderFacts> {
    let header_b64 = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header_b64).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let obj = v.as_object()?;
    Some(HeaderFacts {
        crit: obj.contains_key("crit"),
        typ: obj.get("typ").and_then(|t| t.as_str()).map(str::to_string),
    })
}

/// Whether the token's header names an algorithm other than HS256. Used only to label a
/// rejection: jsonwebtoken reports `alg: none` (which it cannot represent) as a JSON error,
/// and "wrong algorithm" is the more useful reason in logs and metrics.
pub(crate) fn header_alg_is_not_hs256(token: &str) -> bool {
    let Some(header_b64) = token.split('.').next() else {
        return false;
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(header_b64) else {
        return false;
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) => matches!(v.get("alg").and_then(|a| a.as_str()), Some(alg) if alg != "HS256"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use jsonwebtoken::{EncodingKey, Header};
    use proptest::prelude::*;
    use serde_json::json;
    use sha2::Sha256;

    const SECRET: &[u8] = b"provider-jwt-secret";
    const NOW: i64 = 1_750_000_000;

    fn verifier() -> BearerVerifier {
        BearerVerifier::new(SECRET, None, None)
    }

    fn encode(alg: Algorithm, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn hs256_manual(header: &str, claims: &serde_json::Value) -> String {
        let msg = format!("{}.{}", b64(header), b64(&claims.to_string()));
        let mut m = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
        m.update(msg.as_bytes());
        format!(
            "{msg}.{}",
            URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
        )
    }

    #[test]
    fn round_trip_with_extra_claims() {
        let token = encode(
            Algorithm::HS256,
            &json!({"sub":"u1","exp":NOW+60,"iss":"idp","aud":"sluice","role":"viewer"}),
        );
        let c = verifier().verify_at(&token, NOW).unwrap();
        assert_eq!(c.sub.as_deref(), Some("u1"));
        assert_eq!(c.exp, NOW + 60);
        assert_eq!(c.iss.as_deref(), Some("idp"));
        assert_eq!(c.extra["role"], "viewer");
        assert_eq!(c.extra["aud"], "sluice");
        assert!(!c.extra.contains_key("exp"));
    }

    #[test]
    fn verify_uses_the_clock() {
        let now = chrono::Utc::now().timestamp();
        let ok = encode(Algorithm::HS256, &json!({"exp": now + 300}));
        assert!(verifier().verify(&ok).is_ok());
        let old = encode(Algorithm::HS256, &json!({"exp": now - 300}));
        assert_eq!(verifier().verify(&old), Err(JwtError::Expired));
    }

    #[test]
    fn alg_none_refused() {
        let claims = json!({"sub":"u1","exp":NOW+60});
        let h = b64(r#"{"alg":"none","typ":"JWT"}"#);
        let p = b64(&claims.to_string());
        for token in [format!("{h}.{p}."), format!("{h}.{p}")] {
            assert_eq!(
                verifier().verify_at(&token, NOW),
                Err(JwtError::WrongAlgorithm)
            );
        }
    }

    #[test]
    fn wrong_algorithms_refused() {
        let claims = json!({"sub":"u1","exp":NOW+60});
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            assert_eq!(
                verifier().verify_at(&encode(alg, &claims), NOW),
                Err(JwtError::WrongAlgorithm)
            );
        }
        let confused = hs256_manual(r#"{"alg":"RS256","typ":"JWT"}"#, &claims);
        assert_eq!(
            verifier().verify_at(&confused, NOW),
            Err(JwtError::WrongAlgorithm)
        );
        let es = hs256_manual(r#"{"alg":"ES256"}"#, &claims);
        assert_eq!(
            verifier().verify_at(&es, NOW),
            Err(JwtError::WrongAlgorithm)
        );
        // The same bytes with an HS256 header do verify: the refusal is the alg pin.
        let fine = hs256_manual(r#"{"alg":"HS256","typ":"JWT"}"#, &claims);
        assert!(verifier().verify_at(&fine, NOW).is_ok());
    }

    #[test]
    fn bad_signature_and_other_secret_refused() {
        let token = encode(Algorithm::HS256, &json!({"exp":NOW+60}));
        let other = BearerVerifier::new(b"other", None, None);
        assert_eq!(other.verify_at(&token, NOW), Err(JwtError::BadSignature));
        let (msg, _) = token.rsplit_once('.').unwrap();
        let tampered = format!("{}.{}", msg, b64("x".repeat(32).as_str()));
        assert_eq!(
            verifier().verify_at(&tampered, NOW),
            Err(JwtError::BadSignature)
        );
        let empty = BearerVerifier::new(b"", None, None);
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"exp":NOW+60}),
            &EncodingKey::from_secret(b""),
        )
        .unwrap();
        assert_eq!(empty.verify_at(&forged, NOW), Err(JwtError::BadSignature));
    }

    #[test]
    fn missing_or_mistyped_exp() {
        let t = encode(Algorithm::HS256, &json!({"sub":"u1"}));
        assert_eq!(verifier().verify_at(&t, NOW), Err(JwtError::MissingExp));
        let t = encode(Algorithm::HS256, &json!({"sub":"u1","exp":null}));
        assert_eq!(verifier().verify_at(&t, NOW), Err(JwtError::MissingExp));
        for exp in [
            json!("1750000060"),
            json!([1]),
            json!(true),
            json!(-1),
            json!(1e300),
            json!(253_402_300_800_i64),
            json!(u64::MAX),
        ] {
            let t = encode(Algorithm::HS256, &json!({"exp":exp}));
            assert!(
                matches!(verifier().verify_at(&t, NOW), Err(JwtError::Malformed(_))),
                "{exp}"
            );
        }
    }

    #[test]
    fn fractional_numeric_dates_compare_as_real_numbers() {
        // RFC 7519 §2: "non-integer values can be represented".
        let t = encode(
            Algorithm::HS256,
            &json!({"exp": NOW as f64 + 0.5, "nbf": NOW as f64 - 0.25, "iat": NOW as f64 - 1.75}),
        );
        let c = verifier().verify_at(&t, NOW).unwrap();
        assert_eq!(c.exp, NOW);
        assert_eq!(verifier().verify_at(&t, NOW + 1), Err(JwtError::Expired));
        assert!(verifier().with_leeway(1).verify_at(&t, NOW + 1).is_ok());
        let t = encode(
            Algorithm::HS256,
            &json!({"exp": NOW + 600, "nbf": NOW as f64 + 0.5}),
        );
        assert_eq!(verifier().verify_at(&t, NOW), Err(JwtError::NotYetValid));
        assert!(verifier().verify_at(&t, NOW + 1).is_ok());
        // Integers written as floats, and exponent notation, are numbers like any other.
        for exp in ["1750000060.0", "1.75000006e9", "1750000060"] {
            let v: serde_json::Value = serde_json::from_str(exp).unwrap();
            let t = encode(Algorithm::HS256, &json!({"exp": v}));
            assert_eq!(
                verifier().verify_at(&t, NOW).unwrap().exp,
                NOW + 60,
                "{exp}"
            );
        }
    }

    #[test]
    fn numeric_dates() {
        for (v, want) in [
            (json!(0), Some(0.0)),
            (json!(1767225600), Some(1767225600.0)),
            (json!(1767225600.5), Some(1767225600.5)),
            (json!(MAX_NUMERIC_DATE), Some(MAX_NUMERIC_DATE)),
            (json!(MAX_NUMERIC_DATE + 1.0), None),
            (json!(-0.5), None),
            (json!(i64::MIN), None),
            (json!(1e300), None),
            (json!("1767225600"), None),
            (json!(null), None),
            (json!([1767225600]), None),
            (json!({"n": 1}), None),
            (json!(f64::NAN), None),
        ] {
            assert_eq!(numeric_date(&v), want, "{v}");
        }
    }

    #[test]
    fn iat_must_be_a_numeric_date() {
        for iat in [json!(NOW), json!(NOW as f64 - 0.5)] {
            let t = encode(Algorithm::HS256, &json!({"exp": NOW + 60, "iat": iat}));
            assert!(verifier().verify_at(&t, NOW).is_ok(), "{iat}");
        }
        for iat in [json!("yesterday"), json!(-5), json!(1e300), json!([NOW])] {
            let t = encode(Algorithm::HS256, &json!({"exp": NOW + 60, "iat": iat}));
            assert_eq!(
                verifier().verify_at(&t, NOW),
                Err(JwtError::Malformed("iat is not a NumericDate")),
                "{iat}"
            );
        }
    }

    #[test]
    fn expired_and_leeway() {
        let t = encode(Algorithm::HS256, &json!({"exp":NOW}));
        assert_eq!(verifier().verify_at(&t, NOW), Err(JwtError::Expired));
        assert!(verifier().verify_at(&t, NOW - 1).is_ok());
        assert!(verifier().with_leeway(30).verify_at(&t, NOW + 29).is_ok());
        assert_eq!(
            verifier().with_leeway(u32::MAX).verify_at(&t, NOW + 300),
            Err(JwtError::Expired)
        );
    }

    #[test]
    fn nbf() {
        let t = encode(Algorithm::HS256, &json!({"exp":NOW+600,"nbf":NOW+10}));
        assert_eq!(verifier().verify_at(&t, NOW), Err(JwtError::NotYetValid));
        assert!(verifier().verify_at(&t, NOW + 10).is_ok());
        assert!(verifier().with_leeway(10).verify_at(&t, NOW).is_ok());
        let t = encode(Algorithm::HS256, &json!({"exp":NOW+600,"nbf":"soon"}));
        assert!(matches!(
            verifier().verify_at(&t, NOW),
            Err(JwtError::Malformed(_))
        ));
    }

    #[test]
    fn issuer() {
        let v = BearerVerifier::new(SECRET, Some("https://idp.example".into()), None);
        let good = encode(
            Algorithm::HS256,
            &json!({"exp":NOW+60,"iss":"https://idp.example"}),
        );
        assert!(v.verify_at(&good, NOW).is_ok());
        let wrong = encode(
            Algorithm::HS256,
            &json!({"exp":NOW+60,"iss":"https://evil.example"}),
        );
        assert_eq!(v.verify_at(&wrong, NOW), Err(JwtError::WrongIssuer));
        let none = encode(Algorithm::HS256, &json!({"exp":NOW+60}));
        assert_eq!(v.verify_at(&none, NOW), Err(JwtError::WrongIssuer));
        // Without a configured issuer any iss is accepted.
        assert!(verifier().verify_at(&wrong, NOW).is_ok());
    }

    #[test]
    fn audience() {
        let v = BearerVerifier::new(SECRET, None, Some("sluice".into()));
        for (aud, ok) in [
            (json!("sluice"), true),
            (json!(["other", "sluice"]), true),
            (json!("other"), false),
            (json!(["other"]), false),
            (json!([]), false),
            (json!(7), false),
        ] {
            let t = encode(Algorithm::HS256, &json!({"exp":NOW+60,"aud":aud}));
            let r = v.verify_at(&t, NOW);
            assert_eq!(r.is_ok(), ok, "{aud}");
            if !ok {
                assert_eq!(r, Err(JwtError::WrongAudience));
            }
        }
        let t = encode(Algorithm::HS256, &json!({"exp":NOW+60}));
        assert_eq!(v.verify_at(&t, NOW), Err(JwtError::WrongAudience));
    }

    #[test]
    fn garbage_refused() {
        for bad in ["", ".", "..", "a.b.c", "Bearer x", "eyJ.eyJ.eyJ", "\u{0}"] {
            assert!(verifier().verify_at(bad, NOW).is_err(), "{bad}");
        }
        let huge = "A".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            verifier().verify_at(&huge, NOW),
            Err(JwtError::Malformed("token too long"))
        );
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(
            bearer_from_header("Bearer abc.def.ghi"),
            Some("abc.def.ghi")
        );
        assert_eq!(bearer_from_header("bearer abc"), Some("abc"));
        assert_eq!(bearer_from_header("BEARER   abc  "), Some("abc"));
        assert_eq!(bearer_from_header("  Bearer\tabc"), Some("abc"));
        assert_eq!(bearer_from_header("Bearer"), None);
        assert_eq!(bearer_from_header("Bearer   "), None);
        assert_eq!(bearer_from_header("Bearerabc"), None);
        assert_eq!(bearer_from_header("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_from_header("Bearer a b"), None);
        assert_eq!(bearer_from_header(""), None);
    }

    #[test]
    fn debug_redacts_secret() {
        let dbg = format!(
            "{:?}",
            BearerVerifier::new(b"topsecretvalue", Some("i".into()), None)
        );
        assert!(!dbg.contains("topsecretvalue"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn never_panics(s in ".{0,400}", now in any::<i64>()) {
            let _ = verifier().verify_at(&s, now);
            let _ = bearer_from_header(&s);
        }
    }
}

//! The playback key token: the `Authorization: Bearer {token}` that `GET /api/key/{hash}`
//! requires before it returns a 16-byte content key (`playback-api.txt`, "Token format").
//!
//! ```text
//! token = base64url(json{"hash":"…","exp":<unix seconds>}) "." base64url(HMAC-SHA256(key=KEY_TOKEN_SECRET, msg=payload_b64))
//! ```
//!
//! The MAC covers the base64url *payload string*, not the JSON bytes, exactly as the document's
//! shell recipe computes it. base64url is unpadded: the recipe's
//! `openssl base64 -A | tr '+/' '-_' | tr -d '='` produces the URL-safe alphabet with the
//! padding stripped, which is what [`mint`] emits and [`verify`] requires.
//!
//! Canonical encoding only: [`verify`] refuses `=` padding, the standard alphabet's `+` and
//! `/`, and non-zero trailing bits. The recipe never produces those, and accepting them would
//! give one token several spellings (so a rate limit or log keyed by the token text could be
//! sidestepped by re-spelling it).
//!
//! Every failure maps to `403` at the handler (`playback-api.txt`, "Response semantics"); a
//! missing header is the handler's `401`, not this module's concern.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// Longest token text [`verify`] will look at. A real token is ~100 bytes (a media hash and
/// a timestamp); the cap keeps a hostile header from costing a large decode and MAC.
pub const MAX_TOKEN_LEN: usize = 2048;

/// Length of an HMAC-SHA256 tag; its unpadded base64url form is 43 characters.
const MAC_LEN: usize = 32;

/// The verified payload of a key token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KeyClaims {
    /// The media hash the token grants, compared with the `{hash}` in the request path.
    pub hash: String,
    /// Expiry, unix seconds. The token is valid while `now < exp`.
    pub exp: i64,
}

/// Why a key token was refused. All variants are a `403` for the client; the distinction is
/// for logs and the "token rejections by reason" metric.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyTokenError {
    /// Not `payload.signature` in canonical unpadded base64url, too long, or (after the
    /// signature checked out) a payload that is not `{"hash": string, "exp": integer}`.
    #[error("malformed key token: {0}")]
    Malformed(&'static str),
    /// The MAC does not match (wrong secret, or payload/signature altered).
    #[error("key token signature mismatch")]
    BadSignature,
    /// `exp <= now`.
    #[error("key token expired")]
    Expired,
    /// Validly signed, but for another media hash than the one requested.
    #[error("key token is for another media hash")]
    HashMismatch,
}

/// Mint a key token for `hash` valid until `exp` (unix seconds).
///
/// The payload JSON is `{"hash":…,"exp":…}` in that order with no whitespace, byte-identical
/// to the document's `jq -cn '{hash: $hash, exp: $exp}'` for ordinary hashes, so tokens from
/// either side look the same.
pub fn mint(secret: &[u8], hash: &str, exp: i64) -> String {
    // `Value`'s Display is infallible and escapes the string as JSON requires, so there is
    // no error path to handle (serde_json::to_string returns a Result we could only ignore).
    let json = format!(
        "{{\"hash\":{},\"exp\":{}}}",
        serde_json::Value::String(hash.to_owned()),
        exp
    );
    let payload_b64 = URL_SAFE_NO_PAD.encode(json.as_bytes());
    // An (unreachable) MAC failure yields an empty signature, which never verifies.
    let sig_b64 = mac(secret, payload_b64.as_bytes())
        .map(|tag| URL_SAFE_NO_PAD.encode(tag))
        .unwrap_or_default();
    format!("{payload_b64}.{sig_b64}")
}

/// Verify `token` for a request on `/api/key/{expected_hash}` at time `now` (unix seconds).
///
/// Order matters: the signature is checked before the payload is decoded or parsed, so
/// unauthenticated input never reaches the JSON parser.
///
/// # Errors
/// [`KeyTokenError::Malformed`], [`KeyTokenError::BadSignature`], [`KeyTokenError::Expired`]
/// or [`KeyTokenError::HashMismatch`]; never panics, whatever the input. An empty `secret`
/// verifies nothing (always `BadSignature`).
pub fn verify(
    secret: &[u8],
    token: &str,
    expected_hash: &str,
    now: i64,
) -> Result<KeyClaims, KeyTokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(KeyTokenError::Malformed("token too long"));
    }
    let (payload_b64, sig_b64) = token
        .split_once('.')
        .ok_or(KeyTokenError::Malformed("missing '.' separator"))?;
    if sig_b64.contains('.') {
        return Err(KeyTokenError::Malformed("more than one '.' separator"));
    }
    if payload_b64.is_empty() {
        return Err(KeyTokenError::Malformed("empty payload"));
    }
    let sig = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| KeyTokenError::Malformed("signature is not canonical unpadded base64url"))?;
    if sig.len() != MAC_LEN {
        return Err(KeyTokenError::Malformed("signature is not 32 bytes"));
    }
    if secret.is_empty() {
        // Fail closed: an HMAC under an empty key is computable by anyone.
        return Err(KeyTokenError::BadSignature);
    }
    let mut m = HmacSha256::new_from_slice(secret).map_err(|_| KeyTokenError::BadSignature)?;
    m.update(payload_b64.as_bytes());
    // `verify_slice` compares in constant time.
    m.verify_slice(&sig)
        .map_err(|_| KeyTokenError::BadSignature)?;

    let json = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| KeyTokenError::Malformed("payload is not canonical unpadded base64url"))?;
    // serde's derived struct also accepts a JSON array (`["h", 1]`, positionally); the
    // format is an object, so insist on one.
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(KeyTokenError::Malformed("payload is not a JSON object"));
    }
    let claims: KeyClaims = serde_json::from_slice(&json).map_err(|_| {
        KeyTokenError::Malformed("payload is not {\"hash\":string,\"exp\":integer}")
    })?;

    if claims.exp <= now {
        return Err(KeyTokenError::Expired);
    }
    // The hash is public (it is in the URL), so a plain comparison leaks nothing.
    if claims.hash != expected_hash {
        return Err(KeyTokenError::HashMismatch);
    }
    Ok(claims)
}

/// HMAC-SHA256 of `msg` under `secret`. `None` cannot happen (HMAC takes keys of any
/// length) but is handled as "no valid MAC" rather than with a panic.
fn mac(secret: &[u8], msg: &[u8]) -> Option<[u8; MAC_LEN]> {
    let mut m = HmacSha256::new_from_slice(secret).ok()?;
    m.update(msg);
    Some(m.finalize().into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"replace-with-key-token-secret";
    const HASH: &str = "movie-2026-04-01";
    const NOW: i64 = 1_780_000_000;

    /// The document's shell recipe, step by step: `jq -cn` JSON, `openssl base64 -A`
    /// (standard alphabet, padded), `tr '+/' '-_'`, `tr -d '='`, then the same for the MAC.
    fn shell_recipe_token(secret: &[u8], hash: &str, exp: i64) -> String {
        let payload = format!("{{\"hash\":\"{hash}\",\"exp\":{exp}}}");
        let to_url = |b64: String| b64.replace('+', "-").replace('/', "_").replace('=', "");
        let payload_b64 = to_url(STANDARD.encode(payload.as_bytes()));
        let mut m = HmacSha256::new_from_slice(secret).unwrap();
        m.update(payload_b64.as_bytes());
        let sig_b64 = to_url(STANDARD.encode(m.finalize().into_bytes()));
        format!("{payload_b64}.{sig_b64}")
    }

    fn parts(token: &str) -> (String, String) {
        let (p, s) = token.split_once('.').unwrap();
        (p.to_owned(), s.to_owned())
    }

    /// Sign an arbitrary payload string the way `mint` does, for the wrong-JSON cases.
    fn sign_payload_b64(payload_b64: &str) -> String {
        let sig = URL_SAFE_NO_PAD.encode(mac(SECRET, payload_b64.as_bytes()).unwrap());
        format!("{payload_b64}.{sig}")
    }

    fn sign_json(json: &str) -> String {
        sign_payload_b64(&URL_SAFE_NO_PAD.encode(json))
    }

    #[test]
    fn round_trip() {
        let token = mint(SECRET, HASH, NOW + 3600);
        let claims = verify(SECRET, &token, HASH, NOW).unwrap();
        assert_eq!(
            claims,
            KeyClaims {
                hash: HASH.into(),
                exp: NOW + 3600
            }
        );
    }

    #[test]
    fn shell_recipe_token_verifies_and_matches_mint() {
        let exp = NOW + 3600;
        let token = shell_recipe_token(SECRET, HASH, exp);
        assert!(!token.contains('='));
        assert_eq!(verify(SECRET, &token, HASH, NOW).unwrap().exp, exp);
        // Byte-identical to what `mint` produces.
        assert_eq!(token, mint(SECRET, HASH, exp));
    }

    #[test]
    fn shell_recipe_with_url_alphabet_characters_verifies() {
        // Find an exp whose payload or MAC encodes to '-' or '_' so the tr step matters.
        let token = (0..1000)
            .map(|i| shell_recipe_token(SECRET, HASH, NOW + i))
            .find(|t| t.contains('-') || t.contains('_'))
            .unwrap();
        verify(SECRET, &token, HASH, NOW - 1).unwrap();
    }

    #[test]
    fn known_vector() {
        // Computed independently with the document's recipe in a shell:
        //   P=$(printf '%s' '{"hash":"movie-2026-04-01","exp":1780003600}' \
        //       | openssl base64 -A | tr '+/' '-_' | tr -d '=')
        //   S=$(printf '%s' "$P" | openssl dgst -sha256 -mac HMAC \
        //       -macopt key:replace-with-key-token-secret -binary \
        //       | openssl base64 -A | tr '+/' '-_' | tr -d '=')
        //   echo "$P.$S"
        let token = mint(SECRET, HASH, 1_780_003_600);
        assert_eq!(
            token,
            "eyJoYXNoIjoibW92aWUtMjAyNi0wNC0wMSIsImV4cCI6MTc4MDAwMzYwMH0.\
             eSr5TzUWr4GDjum2HmTilMYL0ZTxqWXMnCjdKHVeck0"
        );
    }

    #[test]
    fn tampered_payload_refused() {
        let token = mint(SECRET, HASH, NOW + 3600);
        let (_, s) = parts(&token);
        let forged =
            URL_SAFE_NO_PAD.encode(format!("{{\"hash\":\"{HASH}\",\"exp\":{}}}", NOW + 999_999));
        assert_eq!(
            verify(SECRET, &format!("{forged}.{s}"), HASH, NOW),
            Err(KeyTokenError::BadSignature)
        );
    }

    #[test]
    fn tampered_signature_refused() {
        let token = mint(SECRET, HASH, NOW + 3600);
        let (p, s) = parts(&token);
        let mut sig = URL_SAFE_NO_PAD.decode(&s).unwrap();
        sig[0] ^= 1;
        let bad = format!("{p}.{}", URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(
            verify(SECRET, &bad, HASH, NOW),
            Err(KeyTokenError::BadSignature)
        );
    }

    #[test]
    fn wrong_secret_refused() {
        let token = mint(b"another-secret", HASH, NOW + 3600);
        assert_eq!(
            verify(SECRET, &token, HASH, NOW),
            Err(KeyTokenError::BadSignature)
        );
    }

    #[test]
    fn empty_secret_fails_closed() {
        let token = mint(b"", HASH, NOW + 3600);
        assert_eq!(
            verify(b"", &token, HASH, NOW),
            Err(KeyTokenError::BadSignature)
        );
    }

    #[test]
    fn truncated_refused() {
        let token = mint(SECRET, HASH, NOW + 3600);
        for cut in 0..token.len() {
            let r = verify(SECRET, &token[..cut], HASH, NOW);
            assert!(r.is_err(), "prefix of length {cut} accepted");
        }
    }

    #[test]
    fn empty_signature_refused() {
        let token = mint(SECRET, HASH, NOW + 3600);
        let (p, _) = parts(&token);
        assert!(matches!(
            verify(SECRET, &format!("{p}."), HASH, NOW),
            Err(KeyTokenError::Malformed(_))
        ));
    }

    #[test]
    fn missing_dot_refused() {
        let token = mint(SECRET, HASH, NOW + 3600).replace('.', "");
        assert!(matches!(
            verify(SECRET, &token, HASH, NOW),
            Err(KeyTokenError::Malformed(_))
        ));
        assert!(matches!(
            verify(SECRET, "", HASH, NOW),
            Err(KeyTokenError::Malformed(_))
        ));
    }

    #[test]
    fn extra_dots_refused() {
        let token = mint(SECRET, HASH, NOW + 3600);
        let (p, s) = parts(&token);
        for bad in [
            format!("{token}."),
            format!(".{token}"),
            format!("{p}.{s}.{s}"),
            format!("{p}..{s}"),
        ] {
            assert!(verify(SECRET, &bad, HASH, NOW).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn padded_or_standard_alphabet_refused() {
        // '=' padding on either part is refused, as is the standard alphabet's '+' and '/'.
        let token = mint(SECRET, HASH, NOW + 3600);
        let (p, s) = parts(&token);
        let padded_sig = format!("{p}.{s}=");
        assert!(matches!(
            verify(SECRET, &padded_sig, HASH, NOW),
            Err(KeyTokenError::Malformed(_))
        ));
        // The padded form of the payload changes the MAC input, so it fails either as
        // malformed or as a bad signature, never as accepted.
        let pad = "=".repeat((4 - p.len() % 4) % 4);
        if !pad.is_empty() {
            assert!(verify(SECRET, &format!("{p}{pad}.{s}"), HASH, NOW).is_err());
        }
        // Standard alphabet: re-spell a token that has URL-safe characters.
        let token = (0..1000)
            .map(|i| mint(SECRET, HASH, NOW + i))
            .find(|t| parts(t).1.contains('-') || parts(t).1.contains('_'))
            .unwrap();
        let (p, s) = parts(&token);
        let std_sig = s.replace('-', "+").replace('_', "/");
        assert!(matches!(
            verify(SECRET, &format!("{p}.{std_sig}"), HASH, 0),
            Err(KeyTokenError::Malformed(_))
        ));
    }

    #[test]
    fn non_canonical_trailing_bits_refused() {
        let token = mint(SECRET, HASH, NOW + 3600);
        let (p, s) = parts(&token);
        // 43 chars encode 32 bytes with 2 spare bits in the last char; flipping them keeps
        // the bytes but changes the spelling.
        let last = s.chars().last().unwrap();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let idx = alphabet.iter().position(|&c| c as char == last).unwrap();
        let respelled = alphabet[idx ^ 1] as char;
        let bad = format!("{p}.{}{respelled}", &s[..s.len() - 1]);
        assert!(matches!(
            verify(SECRET, &bad, HASH, NOW),
            Err(KeyTokenError::Malformed(_))
        ));
    }

    #[test]
    fn expired_refused() {
        let token = mint(SECRET, HASH, NOW);
        assert_eq!(
            verify(SECRET, &token, HASH, NOW),
            Err(KeyTokenError::Expired)
        );
        assert_eq!(
            verify(SECRET, &token, HASH, NOW + 1),
            Err(KeyTokenError::Expired)
        );
        assert!(verify(SECRET, &token, HASH, NOW - 1).is_ok());
    }

    #[test]
    fn hash_mismatch_refused() {
        let token = mint(SECRET, HASH, NOW + 3600);
        assert_eq!(
            verify(SECRET, &token, "movie-2026-04-02", NOW),
            Err(KeyTokenError::HashMismatch)
        );
        assert_eq!(
            verify(SECRET, &token, "", NOW),
            Err(KeyTokenError::HashMismatch)
        );
    }

    #[test]
    fn wrong_json_types_refused() {
        for json in [
            r#"{"hash":"movie-2026-04-01","exp":"1780003600"}"#,
            r#"{"hash":"movie-2026-04-01","exp":1780003600.5}"#,
            r#"{"hash":"movie-2026-04-01","exp":1.78e9}"#,
            r#"{"hash":"movie-2026-04-01","exp":null}"#,
            r#"{"hash":"movie-2026-04-01","exp":99999999999999999999999}"#,
            r#"{"hash":42,"exp":1780003600}"#,
            r#"{"hash":"movie-2026-04-01"}"#,
            r#"{"exp":1780003600}"#,
            r#"{"hash":"a","exp":1780003600,"exp":1780003601}"#,
            r#"["movie-2026-04-01",1780003600]"#,
            r#"null"#,
            r#""#,
            "not json",
        ] {
            assert!(
                matches!(
                    verify(SECRET, &sign_json(json), HASH, NOW),
                    Err(KeyTokenError::Malformed(_))
                ),
                "{json} accepted"
            );
        }
        // A validly signed but non-base64url payload string.
        assert!(matches!(
            verify(SECRET, &sign_payload_b64("!!!"), HASH, NOW),
            Err(KeyTokenError::Malformed(_))
        ));
    }

    #[test]
    fn extra_fields_are_ignored() {
        let json = format!(r#"{{"hash":"{HASH}","exp":{},"sub":"u1"}}"#, NOW + 10);
        assert!(verify(SECRET, &sign_json(&json), HASH, NOW).is_ok());
    }

    #[test]
    fn huge_input_refused() {
        let huge = "A".repeat(10 * 1024 * 1024);
        assert!(matches!(
            verify(SECRET, &huge, HASH, NOW),
            Err(KeyTokenError::Malformed(_))
        ));
        let huge = format!("{}.{}", "A".repeat(MAX_TOKEN_LEN), "B".repeat(43));
        assert!(matches!(
            verify(SECRET, &huge, HASH, NOW),
            Err(KeyTokenError::Malformed(_))
        ));
    }

    #[test]
    fn hash_with_json_specials_round_trips() {
        let hash = "we\"ird\\hash\u{1}é";
        let token = mint(SECRET, hash, NOW + 1);
        assert_eq!(verify(SECRET, &token, hash, NOW).unwrap().hash, hash);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn never_panics_on_arbitrary_input(s in ".{0,300}") {
            let _ = verify(SECRET, &s, HASH, NOW);
        }

        #[test]
        fn never_panics_on_dotted_base64ish(p in "[A-Za-z0-9_\\-+/=]{0,80}", s in "[A-Za-z0-9_\\-+/=]{0,80}") {
            let _ = verify(SECRET, &format!("{p}.{s}"), HASH, NOW);
        }

        #[test]
        fn round_trips_any_hash_and_exp(hash in ".{0,64}", exp in any::<i64>()) {
            let token = mint(SECRET, &hash, exp);
            let r = verify(SECRET, &token, &hash, exp.saturating_sub(1));
            if exp == i64::MIN {
                prop_assert_eq!(r, Err(KeyTokenError::Expired));
            } else {
                prop_assert_eq!(r, Ok(KeyClaims { hash, exp }));
            }
        }
    }
}

//! Request signatures for the signed-channel API (`signed-channel-api.txt`, "HMAC-SHA256
//! Verification"): `GET /api/v1/channels/{key}/stream` requires
//!
//! ```text
//! X-Signature-Timestamp: <unix seconds, integer>
//! X-Signature-Token:     hex(HMAC-SHA256(key=secret, msg="{timestamp}:{path}"))
//! ```
//!
//! `path` is the request path *without* the query string: the document's Python and Node
//! examples sign `/api/v1/channels/{key}/stream` and nothing else, so the caller must pass
//! the path exactly as the client requested it, minus any `?…`.
//!
//! The MAC is computed over the timestamp *as sent* (the header string), so the signed bytes
//! are exactly the client's. A timestamp outside `now ± skew` is refused (DESIGN.md default
//! ±300 s); that bounds how long a captured signature can be replayed, but a replay inside
//! the window is not detected here.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// Length of the hex signature: 32 MAC bytes, two hex digits each.
const TOKEN_HEX_LEN: usize = 64;

/// Longest accepted timestamp string. `i64::MAX` has 19 digits; the cap keeps a hostile
/// header from reaching the parser at length.
const MAX_TIMESTAMP_LEN: usize = 19;

/// Why a signed request was refused. The handler maps these to the document's envelope
/// (`{"success":false,…,"error":{"code":"HTTP_401",…}}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SigError {
    /// `X-Signature-Token` or `X-Signature-Timestamp` absent or empty.
    #[error("signature headers missing")]
    Missing,
    /// The timestamp is not a plain decimal integer of unix seconds.
    #[error("signature timestamp is not an integer")]
    MalformedTimestamp,
    /// The timestamp is outside `now ± skew`.
    #[error("signature timestamp outside the allowed window")]
    Skewed,
    /// The token is not 64 hex digits, or does not match the MAC.
    #[error("signature mismatch")]
    BadSignature,
}

/// The lowercase hex signature for a request on `path` at `timestamp`, as the document's
/// `hmac.new(secret, f"{timestamp}:{path}", sha256).hexdigest()` computes it.
pub fn sign(secret: &[u8], timestamp: i64, path: &str) -> String {
    mac(secret, timestamp.to_string().as_bytes(), path)
        .map(hex::encode)
        // Unreachable (HMAC takes any key length); an empty token never verifies.
        .unwrap_or_default()
}

/// Verify the two headers of a request on `path` (no query string) at time `now`.
///
/// `token_hex` may be upper- or lowercase hex; it is compared with the MAC in constant
/// time. Surrounding whitespace in either header is ignored (header values are often
/// trimmed by one hop and not another). `skew_secs` below zero is treated as zero.
///
/// # Errors
/// [`SigError::Missing`] if either header is empty, then [`SigError::MalformedTimestamp`],
/// [`SigError::Skewed`], [`SigError::BadSignature`], in that order (the timestamp is checked
/// first because it is cheap and not secret). An empty `secret` verifies nothing.
pub fn verify(
    secret: &[u8],
    token_hex: &str,
    timestamp: &str,
    path: &str,
    now: i64,
    skew_secs: i64,
) -> Result<(), SigError> {
    let token_hex = token_hex.trim();
    let timestamp = timestamp.trim();
    if token_hex.is_empty() || timestamp.is_empty() {
        return Err(SigError::Missing);
    }
    // Digits only: `i64::from_str` would also take a sign, and a client never sends one.
    if timestamp.len() > MAX_TIMESTAMP_LEN || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SigError::MalformedTimestamp);
    }
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| SigError::MalformedTimestamp)?;
    // i128 so that extreme `now`/`ts` values cannot overflow the subtraction.
    let skew = i128::from(skew_secs.max(0));
    if (i128::from(now) - i128::from(ts)).abs() > skew {
        return Err(SigError::Skewed);
    }

    if token_hex.len() != TOKEN_HEX_LEN {
        return Err(SigError::BadSignature);
    }
    // `hex` accepts both cases.
    let tag = hex::decode(token_hex).map_err(|_| SigError::BadSignature)?;
    if secret.is_empty() {
        // Fail closed: an HMAC under an empty key is computable by anyone.
        return Err(SigError::BadSignature);
    }
    let mut m = HmacSha256::new_from_slice(secret).map_err(|_| SigError::BadSignature)?;
    m.update(timestamp.as_bytes());
    m.update(b":");
    m.update(path.as_bytes());
    // `verify_slice` compares in constant time.
    m.verify_slice(&tag).map_err(|_| SigError::BadSignature)
}

fn mac(secret: &[u8], timestamp: &[u8], path: &str) -> Option<[u8; 32]> {
    let mut m = HmacSha256::new_from_slice(secret).ok()?;
    m.update(timestamp);
    m.update(b":");
    m.update(path.as_bytes());
    Some(m.finalize().into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"your-hmac-secret-key-here";
    const PATH: &str = "/api/v1/channels/wctveng/stream";
    const TS: i64 = 1_781_371_516;
    const SKEW: i64 = 300;

    /// `printf '%s' '1781371516:/api/v1/channels/wctveng/stream' \
    ///   | openssl dgst -sha256 -hmac 'your-hmac-secret-key-here'`
    const DOC_EXAMPLE_TOKEN: &str =
        "850025f8eb195dc2e19bcf705037ee45540b91e362a79d959091d8071fd142c7";

    #[test]
    fn doc_example_matches_openssl() {
        assert_eq!(sign(SECRET, TS, PATH), DOC_EXAMPLE_TOKEN);
        verify(SECRET, DOC_EXAMPLE_TOKEN, "1781371516", PATH, TS, SKEW).unwrap();
    }

    #[test]
    fn doc_example_matches_independent_hmac() {
        let mut m = HmacSha256::new_from_slice(SECRET).unwrap();
        m.update(b"1781371516:/api/v1/channels/wctveng/stream");
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            sign(SECRET, TS, PATH)
        );
    }

    #[test]
    fn round_trip_and_uppercase_hex() {
        let tok = sign(SECRET, TS, PATH);
        assert_eq!(tok, tok.to_lowercase());
        verify(SECRET, &tok, &TS.to_string(), PATH, TS + 10, SKEW).unwrap();
        verify(SECRET, &tok.to_uppercase(), &TS.to_string(), PATH, TS, SKEW).unwrap();
        verify(SECRET, &format!(" {tok} "), " 1781371516 ", PATH, TS, SKEW).unwrap();
    }

    #[test]
    fn missing_headers() {
        let tok = sign(SECRET, TS, PATH);
        assert_eq!(
            verify(SECRET, "", "1781371516", PATH, TS, SKEW),
            Err(SigError::Missing)
        );
        assert_eq!(
            verify(SECRET, &tok, "", PATH, TS, SKEW),
            Err(SigError::Missing)
        );
        assert_eq!(
            verify(SECRET, "  ", " ", PATH, TS, SKEW),
            Err(SigError::Missing)
        );
    }

    #[test]
    fn malformed_timestamps() {
        let tok = sign(SECRET, TS, PATH);
        for ts in [
            "abc",
            "-1781371516",
            "+1781371516",
            "1781371516.0",
            "1.781e9",
            "0x6a2f",
            "17813 71516",
            "99999999999999999999",
            "9999999999999999999",
            "١٢٣",
        ] {
            let r = verify(SECRET, &tok, ts, PATH, TS, SKEW);
            assert!(
                r == Err(SigError::MalformedTimestamp) || r == Err(SigError::Skewed),
                "{ts}: {r:?}"
            );
        }
        assert_eq!(
            verify(SECRET, &tok, "99999999999999999999", PATH, TS, SKEW),
            Err(SigError::MalformedTimestamp)
        );
    }

    #[test]
    fn skew_window() {
        let tok = sign(SECRET, TS, PATH);
        let ts = TS.to_string();
        assert!(verify(SECRET, &tok, &ts, PATH, TS + SKEW, SKEW).is_ok());
        assert!(verify(SECRET, &tok, &ts, PATH, TS - SKEW, SKEW).is_ok());
        assert_eq!(
            verify(SECRET, &tok, &ts, PATH, TS + SKEW + 1, SKEW),
            Err(SigError::Skewed)
        );
        assert_eq!(
            verify(SECRET, &tok, &ts, PATH, TS - SKEW - 1, SKEW),
            Err(SigError::Skewed)
        );
        assert_eq!(
            verify(SECRET, &tok, &ts, PATH, TS + 1, -5),
            Err(SigError::Skewed)
        );
        assert!(verify(SECRET, &tok, &ts, PATH, TS, -5).is_ok());
        // Extreme clocks do not overflow.
        assert_eq!(
            verify(SECRET, &tok, &ts, PATH, i64::MIN, i64::MAX),
            Err(SigError::Skewed)
        );
        assert_eq!(
            verify(SECRET, &tok, &ts, PATH, i64::MAX, SKEW),
            Err(SigError::Skewed)
        );
    }

    #[test]
    fn bad_signatures() {
        let tok = sign(SECRET, TS, PATH);
        let ts = TS.to_string();
        // Wrong path, wrong timestamp, query string included, wrong secret.
        assert_eq!(
            verify(SECRET, &tok, &ts, "/api/v1/channels/other/stream", TS, SKEW),
            Err(SigError::BadSignature)
        );
        assert_eq!(
            verify(SECRET, &tok, &(TS + 1).to_string(), PATH, TS, SKEW),
            Err(SigError::BadSignature)
        );
        assert_eq!(
            verify(SECRET, &tok, &ts, &format!("{PATH}?a=1"), TS, SKEW),
            Err(SigError::BadSignature)
        );
        assert_eq!(
            verify(b"other", &tok, &ts, PATH, TS, SKEW),
            Err(SigError::BadSignature)
        );
        // Leading zeros change the signed string, so the signature no longer matches.
        assert_eq!(
            verify(SECRET, &tok, &format!("0{ts}"), PATH, TS, SKEW),
            Err(SigError::BadSignature)
        );
        // Flipped digit, truncated, extended, non-hex, base64 of the MAC.
        let mut flipped = tok.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        for bad in [
            flipped.as_str(),
            &tok[..63],
            &format!("{tok}0"),
            &format!("{}zz", &tok[..62]),
            "hQAl+OsZXcLhm89wUDfuRVQLkeNip52VkJHYBx/RQsc=",
            &"é".repeat(32),
        ] {
            assert_eq!(
                verify(SECRET, bad, &ts, PATH, TS, SKEW),
                Err(SigError::BadSignature),
                "{bad}"
            );
        }
    }

    #[test]
    fn empty_secret_fails_closed() {
        let tok = sign(b"", TS, PATH);
        assert_eq!(
            verify(b"", &tok, &TS.to_string(), PATH, TS, SKEW),
            Err(SigError::BadSignature)
        );
    }

    #[test]
    fn huge_inputs_refused_without_panic() {
        let huge = "f".repeat(1 << 20);
        assert_eq!(
            verify(SECRET, &huge, "1781371516", PATH, TS, SKEW),
            Err(SigError::BadSignature)
        );
        assert_eq!(
            verify(SECRET, "00", &"1".repeat(1 << 20), PATH, TS, SKEW),
            Err(SigError::MalformedTimestamp)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn never_panics(tok in ".{0,80}", ts in ".{0,25}", path in ".{0,40}", now in any::<i64>(), skew in any::<i64>()) {
            let _ = verify(SECRET, &tok, &ts, &path, now, skew);
        }

        #[test]
        fn round_trips(ts in 0i64..=4_000_000_000, path in "/[a-z0-9/_.-]{0,60}") {
            let tok = sign(SECRET, ts, &path);
            prop_assert_eq!(verify(SECRET, &tok, &ts.to_string(), &path, ts, 0), Ok(()));
        }
    }
}

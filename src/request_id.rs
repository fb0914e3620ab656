//! `X-Request-Id`: one id per request, carried from the player (or made here) through the
//! access-log line, the request to the origin, the `access_logs` row and the answer, so one
//! request can be followed across sluice, the origin's logs and a client's report.
//!
//! An incoming id is kept when it is 1–128 printable ASCII characters (no spaces or control
//! characters: it goes into log lines and headers as is); anything else is replaced, never
//! trimmed or escaped. A new id is 16 random bytes as 32 hex digits.

use rand::RngCore;

/// The header, lower case as HTTP/2 sends it.
pub const HEADER: &str = "x-request-id";

/// The longest id kept.
pub const MAX_LEN: usize = 128;

/// Whether `v` may be used as given.
pub fn valid(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= MAX_LEN && v.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// A fresh id: 16 random bytes, hex.
pub fn generate() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The id of a request that presented `incoming`: itself when valid, else a new one.
pub fn accept(incoming: Option<&http::HeaderValue>) -> String {
    match incoming.map(|v| v.as_bytes()) {
        Some(v) if valid(v) => String::from_utf8_lossy(v).into_owned(),
        _ => generate(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn a_valid_id_is_kept() {
        let v = HeaderValue::from_static("abc-123_Z.9:/=");
        assert_eq!(accept(Some(&v)), "abc-123_Z.9:/=");
        let long = "a".repeat(MAX_LEN);
        assert_eq!(accept(Some(&HeaderValue::from_str(&long).unwrap())), long);
    }

    #[test]
    fn a_bad_id_is_replaced() {
        for bad in [
            "".to_string(),
            "a b".to_string(),
            "tab\there".to_string(),
            "a".repeat(MAX_LEN + 1),
        ] {
            let v = HeaderValue::from_str(&bad).unwrap();
            let got = accept(Some(&v));
            assert_ne!(got, bad);
            assert_eq!(got.len(), 32, "{got}");
        }
        // Bytes outside ASCII (obs-text) are not printable ASCII.
        let v = HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
        assert_eq!(accept(Some(&v)).len(), 32);
    }

    #[test]
    fn a_missing_id_is_made_and_unique() {
        let a = accept(None);
        let b = accept(None);
        assert!(valid(a.as_bytes()));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}

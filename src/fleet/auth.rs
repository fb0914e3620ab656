//! Node-to-node authentication: the `x-sluice-fleet` header. Pure functions, time injected.
//!
//! ```text
//! x-sluice-fleet: v1 <sender IP:port> <unix seconds> <hex HMAC-SHA256>
//! MAC = HMAC-SHA256(fleet secret,
//!         "sluice-fleet-v1\n" method "\n" path-and-query "\n" seconds "\n" sender "\n" hex(SHA-256(body)))
//! ```
//!
//! The MAC binds the method, the exact request target (path and query as sent), the time,
//! the sender and the body (purges carry one), so a captured header opens nothing but the
//! same request, and only within [`WINDOW`] of its time. Inside the window the same request
//! may be replayed: it is a read of one object (or a purge) that the sender was entitled to,
//! and refusing replays would need nonce state shared by the fleet. Node-to-node traffic
//! belongs on the private network. The sender must be another configured node; MACs are
//! compared in constant time.

use std::net::SocketAddr;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// The request header a node signs its requests to another node with.
pub const HEADER: &str = "x-sluice-fleet";

/// How far a request's time may be from the receiver's clock, either way.
pub const WINDOW_SECS: i64 = 30;

/// [`WINDOW_SECS`] as a duration, for documentation.
pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(WINDOW_SECS as u64);

const VERSION: &str = "v1";

/// Why a fleet header was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("malformed fleet header")]
    Malformed,
    #[error("sender is not another node of this fleet")]
    UnknownSender,
    #[error("fleet request outside the time window")]
    Stale,
    #[error("bad fleet signature")]
    BadMac,
}

impl AuthError {
    /// Label for metrics and the refusal's marker header.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthError::Malformed => "malformed",
            AuthError::UnknownSender => "unknown_sender",
            AuthError::Stale => "stale",
            AuthError::BadMac => "bad_mac",
        }
    }
}

/// What a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub method: &'a str,
    /// The request target exactly as sent: path and query.
    pub path_and_query: &'a str,
    pub body: &'a [u8],
}

/// `None` only if the HMAC refused the key, which it does for no length.
fn mac(secret: &[u8], req: &Signed<'_>, ts: i64, sender: &SocketAddr) -> Option<[u8; 32]> {
    let body = hex::encode(Sha256::digest(req.body));
    let mut m = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    for part in [
        "sluice-fleet-v1\n",
        req.method,
        "\n",
        req.path_and_query,
        "\n",
        &ts.to_string(),
        "\n",
        &sender.to_string(),
        "\n",
        &body,
    ] {
        m.update(part.as_bytes());
    }
    Some(m.finalize().into_bytes().into())
}

/// The header value for a request sent by `sender` at `now` (unix seconds).
///
/// # Errors
/// Never in practice: HMAC takes keys of any length.
pub fn sign(
    secret: &[u8],
    req: &Signed<'_>,
    sender: &SocketAddr,
    now: i64,
) -> Result<String, AuthError> {
    let mac = mac(secret, req, now, sender).ok_or(AuthError::BadMac)?;
    Ok(format!("{VERSION} {sender} {now} {}", hex::encode(mac)))
}

/// Check a received header: the sender is one of `others` (the fleet's nodes but this
/// one), its time within [`WINDOW_SECS`] of `now`, its MAC right. Returns the sender.
///
/// # Errors
/// [`AuthError`] says which check failed (for metrics; the answer to the requester is the
/// same for all).
pub fn verify(
    secret: &[u8],
    header: &str,
    req: &Signed<'_>,
    others: &[SocketAddr],
    now: i64,
) -> Result<SocketAddr, AuthError> {
    let mut parts = header.split(' ');
    let (Some(VERSION), Some(sender), Some(ts), Some(mac_hex), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(AuthError::Malformed);
    };
    let sender: SocketAddr = sender.parse().map_err(|_| AuthError::Malformed)?;
    let ts: i64 = ts.parse().map_err(|_| AuthError::Malformed)?;
    let given = hex::decode(mac_hex).map_err(|_| AuthError::Malformed)?;
    if !others.contains(&sender) {
        return Err(AuthError::UnknownSender);
    }
    if (now - ts).abs() > WINDOW_SECS {
        return Err(AuthError::Stale);
    }
    let expected = mac(secret, req, ts, &sender).ok_or(AuthError::BadMac)?;
    if given.len() == expected.len() && bool::from(expected.ct_eq(given.as_slice())) {
        Ok(sender)
    } else {
        Err(AuthError::BadMac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"fleet-secret-0123456789";
    const NOW: i64 = 1_700_000_000;

    fn a() -> SocketAddr {
        "10.0.0.1:8080".parse().unwrap()
    }
    fn b() -> SocketAddr {
        "10.0.0.2:8080".parse().unwrap()
    }

    fn get(p: &str) -> Signed<'_> {
        Signed {
            method: "GET",
            path_and_query: p,
            body: b"",
        }
    }

    #[test]
    fn a_signed_request_verifies_at_the_receiver() {
        let h = sign(SECRET, &get("/stream/h/seg_1.m4s"), &a(), NOW).unwrap();
        assert!(h.starts_with("v1 10.0.0.1:8080 1700000000 "));
        assert_eq!(
            verify(SECRET, &h, &get("/stream/h/seg_1.m4s"), &[a()], NOW + 3),
            Ok(a())
        );
    }

    #[test]
    fn everything_signed_is_bound() {
        let req = get("/stream/h/seg_1.m4s");
        let h = sign(SECRET, &req, &a(), NOW).unwrap();
        // Another path, query, method or body.
        for other in [
            get("/stream/h/seg_2.m4s"),
            get("/stream/h/seg_1.m4s?x=1"),
            Signed {
                method: "HEAD",
                ..req
            },
            Signed { body: b"{}", ..req },
        ] {
            assert_eq!(
                verify(SECRET, &h, &other, &[a()], NOW),
                Err(AuthError::BadMac)
            );
        }
        // Another secret.
        assert_eq!(
            verify(b"another-secret-0123456789", &h, &req, &[a()], NOW),
            Err(AuthError::BadMac)
        );
        // The sender swapped for another node: the MAC covers the sender.
        let forged = h.replace("10.0.0.1:8080", "10.0.0.2:8080");
        assert_eq!(
            verify(SECRET, &forged, &req, &[a(), b()], NOW),
            Err(AuthError::BadMac)
        );
        // The time moved forward.
        let forged = h.replace("1700000000", "1700000020");
        assert_eq!(
            verify(SECRET, &forged, &req, &[a()], NOW),
            Err(AuthError::BadMac)
        );
    }

    #[test]
    fn only_other_nodes_within_the_window() {
        let req = get("/stream/h/x.ts");
        let h = sign(SECRET, &req, &a(), NOW).unwrap();
        assert_eq!(
            verify(SECRET, &h, &req, &[b()], NOW),
            Err(AuthError::UnknownSender)
        );
        assert_eq!(
            verify(SECRET, &h, &req, &[a()], NOW + WINDOW_SECS + 1),
            Err(AuthError::Stale)
        );
        assert_eq!(
            verify(SECRET, &h, &req, &[a()], NOW - WINDOW_SECS - 1),
            Err(AuthError::Stale)
        );
        assert!(verify(SECRET, &h, &req, &[a()], NOW - WINDOW_SECS).is_ok());
    }

    #[test]
    fn malformed_headers() {
        let req = get("/stream/h/x.ts");
        for h in [
            "",
            "v1",
            "v2 10.0.0.1:8080 1700000000 00",
            "v1 10.0.0.1:8080 1700000000",
            "v1 node-a 1700000000 00",
            "v1 10.0.0.1:8080 soon 00",
            "v1 10.0.0.1:8080 1700000000 zz",
            "v1 10.0.0.1:8080 1700000000 00 extra",
        ] {
            assert_eq!(
                verify(SECRET, h, &req, &[a()], NOW),
                Err(AuthError::Malformed),
                "{h}"
            );
        }
        // A short MAC is a bad MAC, not a prefix match.
        let h = sign(SECRET, &req, &a(), NOW).unwrap();
        let short = &h[..h.len() - 2];
        assert_eq!(
            verify(SECRET, short, &req, &[a()], NOW),
            Err(AuthError::BadMac)
        );
    }

    proptest! {
        #[test]
        fn no_other_mac_passes(mac in "[0-9a-f]{64}", path in "/[a-z0-9/._-]{1,40}") {
            let h = format!("v1 10.0.0.1:8080 {NOW} {mac}");
            let req = get(&path);
            let real = sign(SECRET, &req, &a(), NOW).unwrap();
            prop_assume!(real != h);
            prop_assert_eq!(verify(SECRET, &h, &req, &[a()], NOW), Err(AuthError::BadMac));
        }
    }
}

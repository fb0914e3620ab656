//! Node-to-node authentication: the `x-sluice-fleet` header. Pure functions, time injected.
//!
//! ```text
//! x-sluice-fleet: v2 <sender IP:port> <unix seconds> <hex nonce> <hex HMAC-SHA256>
//! MAC = HMAC-SHA256(fleet secret,
//!         "sluice-fleet-v2\n" method "\n" path-and-query "\n" seconds "\n" sender "\n"
//!         receiver "\n" nonce "\n" hex(SHA-256(body)))
//! ```
//!
//! The MAC binds the method, the exact request target (path and query as sent), the time,
//! the sender, the receiver and the body (purges carry one). A header captured on the wire
//! therefore opens nothing but the same request at the same node, and only:
//! - from the sender's configured address: the connection's peer address must be the
//!   sender's (nodes connect from their `fleet.self` address); the address alone is never
//!   enough, the signature alone neither;
//! - once: each node remembers the MACs it accepted while their time is inside [`WINDOW`]
//!   ([`Replays`]), and a second use is refused. The random nonce makes two real requests
//!   for the same object in the same second two different headers;
//! - within [`WINDOW`] of its time.
//!
//! The sender must be another configured node; MACs are compared in constant time.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};

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

/// The most signatures a node remembers at once (each accepted request's, for the window):
/// past it, node requests are refused (the asking node serves its player from the origin)
/// rather than let a replay through.
pub const MAX_REMEMBERED: usize = 1_000_000;

const VERSION: &str = "v2";

/// A request's nonce: random per request, so no two requests share a MAC.
pub type Nonce = [u8; 16];

/// Why a fleet header was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("malformed fleet header")]
    Malformed,
    #[error("sender is not another node of this fleet")]
    UnknownSender,
    #[error("fleet request not from the sender's address")]
    WrongAddress,
    #[error("fleet request outside the time window")]
    Stale,
    #[error("bad fleet signature")]
    BadMac,
    #[error("fleet signature already used")]
    Replayed,
    #[error("too many fleet signatures inside the window")]
    TooMany,
}

impl AuthError {
    /// Label for metrics and the refusal's marker header.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthError::Malformed => "malformed",
            AuthError::UnknownSender => "unknown_sender",
            AuthError::WrongAddress => "wrong_address",
            AuthError::Stale => "stale",
            AuthError::BadMac => "bad_mac",
            AuthError::Replayed => "replayed",
            AuthError::TooMany => "too_many",
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

/// Who sends a request to whom, when.
#[derive(Debug, Clone, Copy)]
pub struct Hop {
    pub sender: SocketAddr,
    pub receiver: SocketAddr,
    pub ts: i64,
    pub nonce: Nonce,
}

/// `None` only if the HMAC refused the key, which it does for no length.
fn mac(secret: &[u8], req: &Signed<'_>, hop: &Hop) -> Option<[u8; 32]> {
    let body = hex::encode(Sha256::digest(req.body));
    let mut m = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    for part in [
        "sluice-fleet-v2\n",
        req.method,
        "\n",
        req.path_and_query,
        "\n",
        &hop.ts.to_string(),
        "\n",
        &hop.sender.to_string(),
        "\n",
        &hop.receiver.to_string(),
        "\n",
        &hex::encode(hop.nonce),
        "\n",
        &body,
    ] {
        m.update(part.as_bytes());
    }
    Some(m.finalize().into_bytes().into())
}

/// The header value for a request `hop.sender` sends `hop.receiver` at `hop.ts` (unix
/// seconds).
///
/// # Errors
/// Never in practice: HMAC takes keys of any length.
pub fn sign(secret: &[u8], req: &Signed<'_>, hop: &Hop) -> Result<String, AuthError> {
    let mac = mac(secret, req, hop).ok_or(AuthError::BadMac)?;
    Ok(format!(
        "{VERSION} {} {} {} {}",
        hop.sender,
        hop.ts,
        hex::encode(hop.nonce),
        hex::encode(mac)
    ))
}

/// A header that passed [`verify`]: who sent it, and what [`Replays`] remembers of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub sender: SocketAddr,
    pub ts: i64,
    /// The MAC's first half: unique per request (the nonce), unforgeable.
    pub id: [u8; 16],
}

/// Check a received header at node `this`: the sender is one of `others` (the fleet's
/// nodes but this one), the connection comes from the sender's address (`peer`, canonical),
/// its time is within [`WINDOW_SECS`] of `now`, its MAC (made for this receiver) is right.
/// Whether it was used before is [`Replays::first_use`]'s question, asked after this.
///
/// # Errors
/// [`AuthError`] says which check failed (for metrics; the answer to the requester is the
/// same for all).
pub fn verify(
    secret: &[u8],
    header: &str,
    req: &Signed<'_>,
    others: &[SocketAddr],
    this: SocketAddr,
    peer: Option<IpAddr>,
    now: i64,
) -> Result<Verified, AuthError> {
    let mut parts = header.split(' ');
    let (Some(VERSION), Some(sender), Some(ts), Some(nonce_hex), Some(mac_hex), None) = (
        parts.next(),
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
    let nonce: Nonce = hex::decode(nonce_hex)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or(AuthError::Malformed)?;
    let given = hex::decode(mac_hex).map_err(|_| AuthError::Malformed)?;
    if !others.contains(&sender) {
        return Err(AuthError::UnknownSender);
    }
    if peer != Some(sender.ip()) {
        return Err(AuthError::WrongAddress);
    }
    if (now - ts).abs() > WINDOW_SECS {
        return Err(AuthError::Stale);
    }
    let hop = Hop {
        sender,
        receiver: this,
        ts,
        nonce,
    };
    let expected = mac(secret, req, &hop).ok_or(AuthError::BadMac)?;
    if given.len() == expected.len() && bool::from(expected.ct_eq(given.as_slice())) {
        let mut id = [0u8; 16];
        id.copy_from_slice(&expected[..16]);
        Ok(Verified { sender, ts, id })
    } else {
        Err(AuthError::BadMac)
    }
}

/// The signatures a node accepted whose time is still inside the window, by time: a header
/// is accepted once. Only verified headers are remembered (a stranger adds nothing), each
/// until its own time leaves the window; at most [`MAX_REMEMBERED`].
#[derive(Debug, Default)]
pub struct Replays {
    by_time: BTreeMap<i64, HashSet<[u8; 16]>>,
    len: usize,
}

impl Replays {
    /// Remember `v` at `now`; [`AuthError::Replayed`] if it was accepted before.
    ///
    /// # Errors
    /// [`AuthError::Replayed`], or [`AuthError::TooMany`] when the window is full.
    pub fn first_use(&mut self, v: &Verified, now: i64) -> Result<(), AuthError> {
        // Forget what can no longer pass the window check.
        while let Some(entry) = self.by_time.first_entry() {
            if *entry.key() >= now - WINDOW_SECS {
                break;
            }
            self.len -= entry.remove().len();
        }
        if self.by_time.get(&v.ts).is_some_and(|s| s.contains(&v.id)) {
            return Err(AuthError::Replayed);
        }
        if self.len >= MAX_REMEMBERED {
            return Err(AuthError::TooMany);
        }
        self.by_time.entry(v.ts).or_default().insert(v.id);
        self.len += 1;
        Ok(())
    }

    /// How many signatures are remembered.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
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
    fn c() -> SocketAddr {
        "10.0.0.3:8080".parse().unwrap()
    }

    fn get(p: &str) -> Signed<'_> {
        Signed {
            method: "GET",
            path_and_query: p,
            body: b"",
        }
    }

    /// `a` to `b` at `NOW`.
    fn hop() -> Hop {
        Hop {
            sender: a(),
            receiver: b(),
            ts: NOW,
            nonce: [7; 16],
        }
    }

    /// Verify at `b`, from `a`'s address, at `now`.
    fn at_b(h: &str, req: &Signed<'_>, now: i64) -> Result<SocketAddr, AuthError> {
        verify(SECRET, h, req, &[a(), c()], b(), Some(a().ip()), now).map(|v| v.sender)
    }

    #[test]
    fn a_signed_request_verifies_at_its_receiver() {
        let req = get("/stream/h/seg_1.m4s");
        let h = sign(SECRET, &req, &hop()).unwrap();
        assert!(h.starts_with("v2 10.0.0.1:8080 1700000000 07070707"), "{h}");
        assert_eq!(at_b(&h, &req, NOW + 3), Ok(a()));
    }

    #[test]
    fn everything_signed_is_bound() {
        let req = get("/stream/h/seg_1.m4s");
        let h = sign(SECRET, &req, &hop()).unwrap();
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
            assert_eq!(at_b(&h, &other, NOW), Err(AuthError::BadMac));
        }
        // Another secret.
        assert_eq!(
            verify(
                b"another-secret-0123456789",
                &h,
                &req,
                &[a()],
                b(),
                Some(a().ip()),
                NOW
            )
            .map(|v| v.sender),
            Err(AuthError::BadMac)
        );
        // Another receiver: the header made for b opens nothing at c.
        assert_eq!(
            verify(SECRET, &h, &req, &[a(), b()], c(), Some(a().ip()), NOW).map(|v| v.sender),
            Err(AuthError::BadMac)
        );
        // The sender swapped for another node (from that node's address): the MAC covers it.
        let forged = h.replace("10.0.0.1:8080", "10.0.0.3:8080");
        assert_eq!(
            verify(SECRET, &forged, &req, &[a(), c()], b(), Some(c().ip()), NOW).map(|v| v.sender),
            Err(AuthError::BadMac)
        );
        // The time moved forward, the nonce changed.
        for forged in [
            h.replace("1700000000", "1700000020"),
            h.replace("07070707", "08070707"),
        ] {
            assert_eq!(at_b(&forged, &req, NOW), Err(AuthError::BadMac));
        }
    }

    #[test]
    fn only_from_the_senders_address() {
        let req = get("/stream/h/x.ts");
        let h = sign(SECRET, &req, &hop()).unwrap();
        for peer in [None, Some("127.0.0.1".parse().unwrap()), Some(c().ip())] {
            assert_eq!(
                verify(SECRET, &h, &req, &[a(), c()], b(), peer, NOW).map(|v| v.sender),
                Err(AuthError::WrongAddress),
                "{peer:?}"
            );
        }
    }

    #[test]
    fn only_other_nodes_within_the_window() {
        let req = get("/stream/h/x.ts");
        let h = sign(SECRET, &req, &hop()).unwrap();
        assert_eq!(
            verify(SECRET, &h, &req, &[c()], b(), Some(a().ip()), NOW).map(|v| v.sender),
            Err(AuthError::UnknownSender)
        );
        assert_eq!(at_b(&h, &req, NOW + WINDOW_SECS + 1), Err(AuthError::Stale));
        assert_eq!(at_b(&h, &req, NOW - WINDOW_SECS - 1), Err(AuthError::Stale));
        assert!(at_b(&h, &req, NOW - WINDOW_SECS).is_ok());
    }

    #[test]
    fn malformed_headers() {
        let req = get("/stream/h/x.ts");
        let n = "07".repeat(16);
        for h in [
            "".to_string(),
            "v2".into(),
            format!("v1 10.0.0.1:8080 1700000000 {}", "0".repeat(64)),
            format!("v2 10.0.0.1:8080 1700000000 {n}"),
            format!("v2 node-a 1700000000 {n} 00"),
            format!("v2 10.0.0.1:8080 soon {n} 00"),
            "v2 10.0.0.1:8080 1700000000 0707 00".into(),
            format!("v2 10.0.0.1:8080 1700000000 {n} zz"),
            format!("v2 10.0.0.1:8080 1700000000 {n} 00 extra"),
        ] {
            assert_eq!(at_b(&h, &req, NOW), Err(AuthError::Malformed), "{h}");
        }
        // A short MAC is a bad MAC, not a prefix match.
        let h = sign(SECRET, &req, &hop()).unwrap();
        assert_eq!(at_b(&h[..h.len() - 2], &req, NOW), Err(AuthError::BadMac));
    }

    #[test]
    fn a_header_is_accepted_once_and_forgotten_with_its_window() {
        let req = get("/stream/h/x.ts");
        let mut seen = Replays::default();
        let h = sign(SECRET, &req, &hop()).unwrap();
        let v = verify(SECRET, &h, &req, &[a()], b(), Some(a().ip()), NOW).unwrap();
        assert_eq!(seen.first_use(&v, NOW), Ok(()));
        assert_eq!(seen.first_use(&v, NOW + 1), Err(AuthError::Replayed));
        assert_eq!(
            seen.first_use(&v, NOW + WINDOW_SECS),
            Err(AuthError::Replayed)
        );
        // The same request again with its own nonce is another header.
        let again = sign(
            SECRET,
            &req,
            &Hop {
                nonce: [8; 16],
                ..hop()
            },
        )
        .unwrap();
        let w = verify(SECRET, &again, &req, &[a()], b(), Some(a().ip()), NOW).unwrap();
        assert_ne!(v.id, w.id);
        assert_eq!(seen.first_use(&w, NOW), Ok(()));
        assert_eq!(seen.len(), 2);
        // Once its time is out of the window (where verify refuses it anyway) it is forgotten.
        let later = Verified { ts: NOW + 40, ..v };
        assert_eq!(seen.first_use(&later, NOW + 40), Ok(()));
        assert_eq!(seen.len(), 1);
    }

    proptest! {
        #[test]
        fn no_other_mac_passes(mac in "[0-9a-f]{64}", path in "/[a-z0-9/._-]{1,40}") {
            let h = format!("v2 10.0.0.1:8080 {NOW} {} {mac}", "07".repeat(16));
            let req = get(&path);
            let real = sign(SECRET, &req, &hop()).unwrap();
            prop_assume!(real != h);
            prop_assert_eq!(at_b(&h, &req, NOW), Err(AuthError::BadMac));
        }
    }
}

//! Proxy contexts behind `ctx` tokens (provider-proxy-api.txt "Stream Proxy").
//!
//! The stream endpoint mints an opaque token (192 random bits, base64url) and stores what the
//! proxy needs to fetch that stream: the provider, and so its headers, cookies, allowed hosts
//! and address policy, plus an expiry. `/api/proxy` looks the token up on every request; an
//! unknown or expired token is a 404. The store is bounded: when full, the context closest to
//! expiry is dropped first. [`CtxStore`] is the seam for a shared (Redis) store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;
use rand::RngCore;

/// What a ctx token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyContext {
    pub provider: String,
    pub channel: String,
    pub expires: Instant,
}

/// Where contexts live.
pub trait CtxStore: Send + Sync {
    /// Store a context; returns its token.
    fn insert(&self, ctx: ProxyContext) -> String;
    /// The live context for a token.
    fn get(&self, token: &str) -> Option<Arc<ProxyContext>>;
}

/// A fresh token: 24 random bytes from the OS, base64url without padding (32 characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The in-process store.
pub struct MemoryCtxStore {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_token: HashMap<String, Arc<ProxyContext>>,
    /// Expiry order, for eviction and sweeping: (expires, sequence) → token.
    by_expiry: BTreeMap<(Instant, u64), String>,
    seq: u64,
}

impl MemoryCtxStore {
    pub fn new(capacity: usize) -> MemoryCtxStore {
        MemoryCtxStore {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().by_token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sweep(inner: &mut Inner, now: Instant) {
        while let Some((&(exp, seq), _)) = inner.by_expiry.iter().next() {
            if exp > now {
                break;
            }
            if let Some(tok) = inner.by_expiry.remove(&(exp, seq)) {
                inner.by_token.remove(&tok);
            }
        }
    }
}

impl CtxStore for MemoryCtxStore {
    fn insert(&self, ctx: ProxyContext) -> String {
        let token = new_token();
        let mut inner = self.inner.lock();
        Self::sweep(&mut inner, Instant::now());
        while inner.by_token.len() >= self.capacity {
            let Some((k, tok)) = inner.by_expiry.pop_first() else {
                break;
            };
            let _ = k;
            inner.by_token.remove(&tok);
        }
        inner.seq += 1;
        let seq = inner.seq;
        inner.by_expiry.insert((ctx.expires, seq), token.clone());
        inner.by_token.insert(token.clone(), Arc::new(ctx));
        token
    }

    fn get(&self, token: &str) -> Option<Arc<ProxyContext>> {
        // Tokens have a fixed shape; anything else is not looked up at all.
        if token.len() != 32
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        let inner = self.inner.lock();
        let ctx = inner.by_token.get(token)?;
        (ctx.expires > Instant::now()).then(|| ctx.clone())
    }
}

/// Lifetime helper for callers.
pub fn expiry(ttl: Duration) -> Instant {
    Instant::now() + ttl
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(ttl_ms: u64) -> ProxyContext {
        ProxyContext {
            provider: "p".into(),
            channel: "c".into(),
            expires: Instant::now() + Duration::from_millis(ttl_ms),
        }
    }

    #[test]
    fn tokens_are_long_random_and_distinct() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn lookup_expiry_and_bound() {
        let s = MemoryCtxStore::new(2);
        let t1 = s.insert(ctx(60_000));
        assert_eq!(s.get(&t1).unwrap().provider, "p");
        assert!(s.get("nope").is_none());
        assert!(s.get(&"A".repeat(32)).is_none());
        let short = s.insert(ctx(1));
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.get(&short).is_none(), "expired context still served");
        // Full: the context nearest expiry goes first.
        let t3 = s.insert(ctx(60_000));
        let t4 = s.insert(ctx(120_000));
        assert_eq!(s.len(), 2);
        assert!(s.get(&t1).is_none());
        assert!(s.get(&t3).is_some() && s.get(&t4).is_some());
    }
}

//! Proxy contexts behind `ctx` tokens (provider-proxy-api.txt "Stream Proxy").
//!
//! The stream endpoint mints an opaque token (192 random bits, base64url) and stores what the
//! proxy needs to fetch that stream: the provider, and so its headers, cookies, allowed hosts
//! and address policy, plus an expiry. `/api/proxy` looks the token up on every request; an
//! unknown or expired token is a 404. [`CtxStore`] is the seam for a shared (Redis) store.
//!
//! The store is bounded without letting one caller push everyone else out: each context
//! belongs to a *subject* (the Stream Info caller's JWT `sub`), a subject holds at most
//! `per_subject` live contexts (its own oldest is replaced), and when the whole store is full
//! of live contexts a new one is refused ([`CtxFull`], a 503) rather than evicting another
//! viewer's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;
use rand::RngCore;

/// What a ctx token stands for.
#[derive(Debug)]
pub struct ProxyContext {
    pub provider: String,
    pub channel: String,
    /// Who minted it (quota key).
    pub subject: String,
    /// Idle lifetime: every use moves the expiry to `now + ttl` ...
    pub ttl: Duration,
    /// ... but never past this: the longest a playback session may last.
    pub max_until: Instant,
    /// Cookies the provider's CDN set on this context's requests (sent back upstream for
    /// this context only).
    pub jar: super::cookie_jar::CookieJar,
}

impl ProxyContext {
    /// A context for `provider`/`channel` minted by `subject`.
    pub fn new(
        provider: &str,
        channel: &str,
        subject: &str,
        ttl: Duration,
        max_session: Duration,
    ) -> ProxyContext {
        ProxyContext {
            provider: provider.to_string(),
            channel: channel.to_string(),
            subject: subject.to_string(),
            ttl,
            max_until: Instant::now() + max_session,
            jar: Default::default(),
        }
    }

    /// The expiry a use at `now` gives.
    pub fn expiry_at(&self, now: Instant) -> Instant {
        (now + self.ttl).min(self.max_until)
    }
}

/// The store holds as many live contexts as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the proxy context store is full")]
pub struct CtxFull;

/// Why a context was not stored.
#[derive(Debug, thiserror::Error)]
pub enum CtxInsertError {
    #[error(transparent)]
    Full(#[from] CtxFull),
    #[error(transparent)]
    Store(#[from] super::StoreError),
}

/// Where contexts live: [`MemoryCtxStore`] on one node, [`crate::store::redis::ctx`] for a
/// fleet (mint on one node, use on any).
#[async_trait::async_trait]
pub trait CtxStore: Send + Sync {
    /// Store a context; returns its token.
    ///
    /// # Errors
    /// [`CtxInsertError::Full`] when the store is full of live contexts of other subjects;
    /// [`CtxInsertError::Store`] when a shared store cannot answer.
    async fn insert(&self, ctx: ProxyContext) -> Result<String, CtxInsertError>;
    /// The live context for a token (its expiry slides with this use).
    ///
    /// # Errors
    /// When a shared store cannot answer (the request fails closed).
    async fn get(&self, token: &str) -> Result<Option<Arc<ProxyContext>>, super::StoreError>;
    /// Drop what has expired from local memory.
    fn prune(&self) {}
}

/// Whether `token` has the shape [`new_token`] gives (anything else is never looked up).
pub fn well_formed(token: &str) -> bool {
    token.len() == 32
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
    per_subject: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Token → context and its current (expires, sequence) key.
    by_token: HashMap<String, (Arc<ProxyContext>, (Instant, u64))>,
    /// Expiry order, for sweeping: (expires, sequence) → token.
    by_expiry: BTreeMap<(Instant, u64), String>,
    /// Each subject's contexts in expiry order.
    by_subject: HashMap<String, BTreeMap<(Instant, u64), String>>,
    seq: u64,
}

impl Inner {
    fn remove(&mut self, key: (Instant, u64)) {
        if let Some(tok) = self.by_expiry.remove(&key) {
            if let Some((ctx, _)) = self.by_token.remove(&tok) {
                if let Some(mine) = self.by_subject.get_mut(&ctx.subject) {
                    mine.remove(&key);
                    if mine.is_empty() {
                        self.by_subject.remove(&ctx.subject);
                    }
                }
            }
        }
    }
}

impl MemoryCtxStore {
    /// At most `capacity` live contexts, `per_subject` of them per subject.
    pub fn new(capacity: usize, per_subject: usize) -> MemoryCtxStore {
        MemoryCtxStore {
            capacity: capacity.max(1),
            per_subject: per_subject.max(1),
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
            inner.remove((exp, seq));
            crate::metrics::CTX_EVICTIONS
                .with_label_values(&["expired"])
                .inc();
        }
        crate::metrics::CTX_CONTEXTS.set(inner.by_token.len() as i64);
    }
}

#[async_trait::async_trait]
impl CtxStore for MemoryCtxStore {
    async fn insert(&self, ctx: ProxyContext) -> Result<String, CtxInsertError> {
        Ok(MemoryCtxStore::insert(self, ctx)?)
    }

    async fn get(&self, token: &str) -> Result<Option<Arc<ProxyContext>>, super::StoreError> {
        Ok(MemoryCtxStore::get(self, token))
    }

    fn prune(&self) {
        Self::sweep(&mut self.inner.lock(), Instant::now());
    }
}

impl MemoryCtxStore {
    /// Store a context; returns its token.
    ///
    /// # Errors
    /// [`CtxFull`] when the store is full of live contexts of other subjects.
    pub fn insert(&self, ctx: ProxyContext) -> Result<String, CtxFull> {
        let token = new_token();
        let mut inner = self.inner.lock();
        Self::sweep(&mut inner, Instant::now());
        // A subject at its quota replaces its own oldest context, never anyone else's.
        while let Some(oldest) = inner
            .by_subject
            .get(&ctx.subject)
            .filter(|m| m.len() >= self.per_subject)
            .and_then(|m| m.keys().next().copied())
        {
            inner.remove(oldest);
            crate::metrics::CTX_EVICTIONS
                .with_label_values(&["subject_quota"])
                .inc();
        }
        if inner.by_token.len() >= self.capacity {
            crate::metrics::CTX_REFUSED.inc();
            return Err(CtxFull);
        }
        inner.seq += 1;
        let key = (ctx.expiry_at(Instant::now()), inner.seq);
        inner.by_expiry.insert(key, token.clone());
        inner
            .by_subject
            .entry(ctx.subject.clone())
            .or_default()
            .insert(key, token.clone());
        inner.by_token.insert(token.clone(), (Arc::new(ctx), key));
        crate::metrics::CTX_CONTEXTS.set(inner.by_token.len() as i64);
        Ok(token)
    }

    /// The live context for a token; its expiry slides with this use.
    pub fn get(&self, token: &str) -> Option<Arc<ProxyContext>> {
        // Tokens have a fixed shape; anything else is not looked up at all.
        if !well_formed(token) {
            return None;
        }
        let now = Instant::now();
        let mut inner = self.inner.lock();
        let (ctx, key) = inner.by_token.get(token).cloned()?;
        if key.0 <= now {
            return None;
        }
        // Sliding expiry: a context in use lives on (up to its session maximum). Re-indexed
        // only when it moves by a quarter of its lifetime (at most a second), to keep busy
        // contexts cheap.
        let next = ctx.expiry_at(now);
        if next > key.0 + (ctx.ttl / 4).min(Duration::from_secs(1)) {
            let subject = ctx.subject.clone();
            inner.by_expiry.remove(&key);
            let new_key = (next, key.1);
            inner.by_expiry.insert(new_key, token.to_string());
            if let Some(mine) = inner.by_subject.get_mut(&subject) {
                mine.remove(&key);
                mine.insert(new_key, token.to_string());
            }
            if let Some(entry) = inner.by_token.get_mut(token) {
                entry.1 = new_key;
            }
        }
        Some(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(ttl_ms: u64) -> ProxyContext {
        ctx_of("s", ttl_ms)
    }

    fn ctx_of(subject: &str, ttl_ms: u64) -> ProxyContext {
        ProxyContext::new(
            "p",
            "c",
            subject,
            Duration::from_millis(ttl_ms),
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn expiry_slides_with_use_up_to_the_session_maximum() {
        let s = MemoryCtxStore::new(10, 10);
        let t = s
            .insert(ProxyContext::new(
                "p",
                "c",
                "s",
                Duration::from_millis(1500),
                Duration::from_millis(4000),
            ))
            .unwrap();
        // Used every 0.8 s, it outlives its 1.5 s idle lifetime...
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(800));
            assert!(s.get(&t).is_some());
        }
        // ...but not its 4 s session.
        std::thread::sleep(Duration::from_millis(1200));
        assert!(s.get(&t).is_none());
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
        let s = MemoryCtxStore::new(2, 10);
        let t1 = s.insert(ctx(60_000)).unwrap();
        assert_eq!(s.get(&t1).unwrap().provider, "p");
        assert!(s.get("nope").is_none());
        assert!(s.get(&"A".repeat(32)).is_none());
        let short = s.insert(ctx(1)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.get(&short).is_none(), "expired context still served");
        // Full of live contexts: a new one is refused, nothing live is evicted.
        let t3 = s.insert(ctx_of("other", 60_000)).unwrap();
        assert_eq!(s.insert(ctx_of("third", 120_000)), Err(CtxFull));
        assert_eq!(s.len(), 2);
        assert!(s.get(&t1).is_some() && s.get(&t3).is_some());
    }

    #[test]
    fn a_subject_only_replaces_its_own() {
        let s = MemoryCtxStore::new(100, 3);
        let theirs = s.insert(ctx_of("victim", 60_000)).unwrap();
        let mine: Vec<String> = (0..10)
            .map(|i| s.insert(ctx_of("flooder", 60_000 + i)).unwrap())
            .collect();
        assert!(
            s.get(&theirs).is_some(),
            "another viewer's context was evicted"
        );
        assert_eq!(mine.iter().filter(|t| s.get(t).is_some()).count(), 3);
        assert!(s.get(&mine[9]).is_some() && s.get(&mine[0]).is_none());
        assert_eq!(s.len(), 4);
    }
}

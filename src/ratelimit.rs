//! Per-class, per-client rate limits (admin-api.md "Rate Limiting"; playback-api key delivery;
//! sluice's public stream-token, Stream Info and signature routes).
//!
//! "30 requests per minute" means at most 30 admitted in *any* 60-second window, so each
//! limiter is an exact sliding-window log: per key, the instants of the requests admitted in
//! the last window. A token bucket or GCRA with a burst of 30 admits ~60 in a minute (the
//! burst, then the refill); this cannot. The cost is one timestamp per admitted request, so
//! each class's table is bounded by a timestamp budget: when it is full, keys whose window
//! is empty go first, then the least recently used key (which can only forget some of that
//! key's history — documented in README).
//!
//! Every class is applied the same way, by one layer before the request body is read
//! (`api::limits`): a refused request costs no body read and no handler work, and an
//! oversized body is counted like any other request. Classes that count *failures* (the
//! auth-failure budget) reserve a slot at admission and [`RateLimits::release`] it when the
//! answer turns out not to be a failure, which keeps the count exact under concurrency.
//!
//! On a fleet (`state.redis`) the same windows live in Redis ([`SharedWindows`]), so the
//! documents' numbers are per client across every node; when Redis cannot answer, each node
//! counts in its own windows meanwhile ([`RateLimits::admit`]).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::RateLimitsConfig as Limits;
use crate::store::rate_windows::SharedWindows;

/// The digests of credentials that were answered as valid, so a per-credential budget (a
/// key in the fleet's shared windows) is made only for a credential that proved itself:
/// whatever a stranger invents spends the client's own budgets and adds nothing here (an
/// invalid credential never gets a success). Bounded at [`Vouched::MAX`] entries, least
/// recently seen forgotten first (two generations, swapped when the newer one is full):
/// a forgotten credential is counted by its client's address until its next success.
#[derive(Debug, Default)]
pub struct Vouched {
    generations: Mutex<[std::collections::HashSet<String>; 2]>,
}

impl Vouched {
    pub const MAX: usize = 2 * 65_536;

    pub fn contains(&self, digest: &str) -> bool {
        let mut g = self.generations.lock();
        if g[0].contains(digest) {
            return true;
        }
        if g[1].remove(digest) {
            Self::add(&mut g, digest);
            return true;
        }
        false
    }

    pub fn insert(&self, digest: &str) {
        let mut g = self.generations.lock();
        if !g[0].contains(digest) {
            g[1].remove(digest);
            Self::add(&mut g, digest);
        }
    }

    fn add(g: &mut [std::collections::HashSet<String>; 2], digest: &str) {
        if g[0].len() >= Self::MAX / 2 {
            g.swap(0, 1);
            g[0].clear();
        }
        g[0].insert(digest.to_string());
    }

    pub fn len(&self) -> usize {
        let g = self.generations.lock();
        g[0].len() + g[1].len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The endpoint classes with their own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateClass {
    /// Stream-id, purge and content-key routes (admin `rate_limit_api`).
    Api,
    /// `GET /stats/{player}` (`rate_limit_stats`).
    Stats,
    /// API key management (`rate_limit_config`).
    Config,
    /// `GET /api/key/{hash}` (playback), per bearer token or client IP.
    Key,
    /// `POST /api/v2/streaming/{token,revoke,drm/license}`, per bearer credential.
    Streaming,
    /// `GET /api/v2/streaming/verify`, per token.
    Verify,
    /// The provider Stream Info endpoint, per bearer JWT.
    StreamInfo,
    /// 401/403 answers per client IP on the public credential-checking routes.
    AuthFailures,
}

impl RateClass {
    pub const ALL: [RateClass; 8] = [
        RateClass::Api,
        RateClass::Stats,
        RateClass::Config,
        RateClass::Key,
        RateClass::Streaming,
        RateClass::Verify,
        RateClass::StreamInfo,
        RateClass::AuthFailures,
    ];

    /// Label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RateClass::Api => "api",
            RateClass::Stats => "stats",
            RateClass::Config => "config",
            RateClass::Key => "key",
            RateClass::Streaming => "streaming",
            RateClass::Verify => "verify",
            RateClass::StreamInfo => "stream_info",
            RateClass::AuthFailures => "auth_failures",
        }
    }
}

/// Create the `sluice_rate_limited_total` series of every class (at zero). Called at start.
pub fn init_metrics() {
    for c in RateClass::ALL {
        crate::metrics::RATE_LIMITED.with_label_values(&[c.as_str()]);
    }
}

/// The configured requests per minute of `class`.
fn per_minute(limits: &Limits, class: RateClass) -> u32 {
    match class {
        RateClass::Api => limits.api,
        RateClass::Stats => limits.stats,
        RateClass::Config => limits.config,
        RateClass::Key => limits.key,
        RateClass::Streaming => limits.streaming,
        RateClass::Verify => limits.verify,
        RateClass::StreamInfo => limits.stream_info,
        RateClass::AuthFailures => limits.auth_failures,
    }
}

/// Timestamps one class may hold across all its keys (≈ 16 bytes each).
const TIMESTAMP_BUDGET: usize = 2_000_000;
/// Lock striping.
const SHARDS: usize = 32;

/// One exact sliding-window limiter.
pub struct SlidingWindow {
    limit: usize,
    window: Duration,
    max_keys_per_shard: usize,
    shards: Vec<Mutex<HashMap<String, VecDeque<Instant>>>>,
}

impl SlidingWindow {
    pub fn new(per_window: u32, window: Duration) -> SlidingWindow {
        let limit = per_window.max(1) as usize;
        let max_keys = (TIMESTAMP_BUDGET / limit).clamp(SHARDS * 16, 1 << 20);
        SlidingWindow {
            limit,
            window,
            max_keys_per_shard: max_keys / SHARDS,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, VecDeque<Instant>>> {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in key.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
        &self.shards[(h as usize) % SHARDS]
    }

    /// Admit one request for `key` at `now`, or say how long until one would be admitted.
    pub fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut map = self.shard(key).lock();
        if !map.contains_key(key) && map.len() >= self.max_keys_per_shard {
            self.make_room(&mut map, now);
        }
        let log = map.entry(key.to_string()).or_default();
        while log
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            log.pop_front();
        }
        if log.len() >= self.limit {
            let oldest = log.front().copied().unwrap_or(now);
            return Err((oldest + self.window).saturating_duration_since(now));
        }
        log.push_back(now);
        Ok(())
    }

    /// Take back the most recent admission of `key` (the request did not count after all).
    pub fn release(&self, key: &str) {
        if let Some(log) = self.shard(key).lock().get_mut(key) {
            log.pop_back();
        }
    }

    /// Requests admitted for `key` in the window ending `now`.
    pub fn count_at(&self, key: &str, now: Instant) -> usize {
        self.shard(key).lock().get(key).map_or(0, |log| {
            log.iter()
                .filter(|t| now.saturating_duration_since(**t) < self.window)
                .count()
        })
    }

    fn make_room(&self, map: &mut HashMap<String, VecDeque<Instant>>, now: Instant) {
        let window = self.window;
        map.retain(|_, log| {
            log.back()
                .is_some_and(|t| now.saturating_duration_since(*t) < window)
        });
        if map.len() >= self.max_keys_per_shard {
            if let Some(lru) = map
                .iter()
                .min_by_key(|(_, log)| log.back().copied())
                .map(|(k, _)| k.clone())
            {
                map.remove(&lru);
            }
        }
    }

    /// Drop keys with nothing left in their window.
    pub fn prune(&self, now: Instant) {
        for s in &self.shards {
            s.lock().retain(|_, log| {
                log.back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < self.window)
            });
        }
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where an admission was counted, to give it back in the same place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    Local,
    Shared(String),
}

/// One limiter per class.
pub struct RateLimits {
    limiters: HashMap<RateClass, SlidingWindow>,
    /// Credentials answered as valid lately: only these get a budget of their own.
    vouched: Vouched,
    limits: Limits,
    /// The fleet's windows; `None` on a single node.
    shared: Option<std::sync::Arc<dyn SharedWindows>>,
    /// Whether the last shared admission failed (to log the switch once each way).
    local_fallback: std::sync::atomic::AtomicBool,
}

const MINUTE: Duration = Duration::from_secs(60);

impl RateLimits {
    pub fn new(limits: Limits) -> RateLimits {
        RateLimits {
            limiters: RateClass::ALL
                .iter()
                .map(|c| (*c, SlidingWindow::new(per_minute(&limits, *c), MINUTE)))
                .collect(),
            vouched: Vouched::default(),
            limits,
            shared: None,
            local_fallback: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the credential with this digest was answered as valid lately (on this node).
    pub fn vouched(&self, digest: &str) -> bool {
        self.vouched.contains(digest)
    }

    /// The credential with this digest was answered as valid: its requests spend a budget
    /// of their own from now on.
    pub fn vouch(&self, digest: &str) {
        self.vouched.insert(digest);
    }

    /// Count in the fleet's windows; this node's own windows only while they cannot answer.
    pub fn with_shared(mut self, shared: std::sync::Arc<dyn SharedWindows>) -> RateLimits {
        self.shared = Some(shared);
        self
    }

    /// Admit one request of `class` for `key`: in the fleet's windows when there are some
    /// (falling back to this node's when Redis cannot answer: a limit is never skipped), else
    /// in this node's. `Err(retry_after)` when over the limit.
    pub async fn admit(&self, class: RateClass, key: &str) -> Result<Admitted, Duration> {
        use std::sync::atomic::Ordering;
        if let Some(shared) = &self.shared {
            match shared
                .admit(class.as_str(), key, per_minute(&self.limits, class), MINUTE)
                .await
            {
                Ok(r) => {
                    if self.local_fallback.swap(false, Ordering::Relaxed) {
                        tracing::info!("rate limits counted fleet-wide again");
                    }
                    return r.map(Admitted::Shared);
                }
                Err(e) => {
                    crate::metrics::REDIS_FALLBACKS
                        .with_label_values(&["local_rate_limit"])
                        .inc();
                    if !self.local_fallback.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "rate limits counted on this node only until redis answers");
                    }
                }
            }
        }
        self.check(class, key).map(|()| Admitted::Local)
    }

    /// Give back an admission made by [`Self::admit`].
    pub async fn give_back(&self, class: RateClass, key: &str, admitted: &Admitted) {
        match (admitted, &self.shared) {
            (Admitted::Shared(ticket), Some(shared)) => {
                if let Err(e) = shared.release(class.as_str(), key, ticket).await {
                    tracing::debug!(error = %e, "rate-limit slot not given back");
                }
            }
            _ => self.release(class, key),
        }
    }

    fn limiter(&self, class: RateClass) -> Option<&SlidingWindow> {
        self.limiters.get(&class)
    }

    /// `Ok` when admitted; `Err(retry_after)` when over the limit.
    pub fn check(&self, class: RateClass, key: &str) -> Result<(), Duration> {
        match self.limiter(class) {
            Some(l) => l.check_at(key, Instant::now()),
            None => Ok(()),
        }
    }

    /// Give back an admission made by [`Self::check`].
    pub fn release(&self, class: RateClass, key: &str) {
        if let Some(l) = self.limiter(class) {
            l.release(key);
        }
    }

    /// Drop idle keys so the tables do not grow without bound.
    pub fn prune(&self) {
        let now = Instant::now();
        for l in self.limiters.values() {
            l.prune(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vouched_is_bounded_and_keeps_what_is_used() {
        let v = Vouched::default();
        assert!(!v.contains("a"));
        v.insert("a");
        assert!(v.contains("a"));
        for i in 0..Vouched::MAX {
            v.insert(&i.to_string());
            if i % 1000 == 0 {
                // Used all along: never forgotten.
                assert!(v.contains("a"), "{i}");
            }
        }
        assert!(v.len() <= Vouched::MAX);
        assert!(v.contains("a"));
        // The oldest, never used again, are gone.
        assert!(!v.contains("0"));
    }

    #[test]
    fn at_most_n_in_any_window() {
        let w = SlidingWindow::new(30, MINUTE);
        let t0 = Instant::now();
        for i in 0..30 {
            assert!(
                w.check_at("ip", t0 + Duration::from_millis(i)).is_ok(),
                "{i}"
            );
        }
        let retry = w.check_at("ip", t0 + Duration::from_secs(1)).unwrap_err();
        assert_eq!(retry, Duration::from_secs(59));
        // A token bucket would have refilled by now; the window has not moved past any.
        assert!(w.check_at("ip", t0 + Duration::from_secs(30)).is_err());
        assert!(w
            .check_at("ip", t0 + Duration::from_millis(59_999))
            .is_err());
        // Exactly 60 s after the first admission, one slot frees.
        assert!(w.check_at("ip", t0 + Duration::from_secs(60)).is_ok());
        assert!(w.check_at("ip", t0 + Duration::from_secs(60)).is_err());
        assert_eq!(w.count_at("ip", t0 + Duration::from_secs(60)), 30);
        // Other keys are independent.
        assert!(w.check_at("other", t0).is_ok());
    }

    #[test]
    fn sliding_not_fixed_windows() {
        // 10 per minute: 10 at 0:50 and 10 at 1:10 would pass a fixed-window counter.
        let w = SlidingWindow::new(10, MINUTE);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(w.check_at("k", t0 + Duration::from_secs(50)).is_ok());
        }
        assert!(w.check_at("k", t0 + Duration::from_secs(70)).is_err());
    }

    #[test]
    fn release_gives_a_slot_back() {
        let w = SlidingWindow::new(2, MINUTE);
        let t0 = Instant::now();
        assert!(w.check_at("k", t0).is_ok());
        assert!(w.check_at("k", t0).is_ok());
        assert!(w.check_at("k", t0).is_err());
        w.release("k");
        assert!(w.check_at("k", t0).is_ok());
    }

    #[test]
    fn the_table_is_bounded() {
        let w = SlidingWindow::new(100_000, MINUTE);
        let cap = w.max_keys_per_shard * SHARDS;
        let t0 = Instant::now();
        for i in 0..cap * 3 {
            let _ = w.check_at(&format!("k{i}"), t0 + Duration::from_micros(i as u64));
        }
        assert!(w.len() <= cap, "{} > {cap}", w.len());
        w.prune(t0 + Duration::from_secs(3600));
        assert!(w.is_empty());
    }

    #[test]
    fn classes_have_separate_limits() {
        let rl = RateLimits::new(Limits {
            api: 3,
            stats: 300,
            config: 1,
            key: 1,
            streaming: 1,
            verify: 1,
            stream_info: 1,
            auth_failures: 1,
        });
        for _ in 0..3 {
            assert!(rl.check(RateClass::Api, "1.2.3.4").is_ok());
        }
        assert!(rl.check(RateClass::Api, "1.2.3.4").is_err());
        assert!(rl.check(RateClass::Stats, "1.2.3.4").is_ok());
        assert!(rl.check(RateClass::Config, "1.2.3.4").is_ok());
        assert!(rl.check(RateClass::Config, "1.2.3.4").is_err());
    }
}

//! The process-wide cache: storage, eviction manager, cache lock and policy, created once at
//! start-up and leaked to `&'static` (pingora-cache takes `&'static` handles).

use std::time::SystemTime;

use pingora_cache::lock::CacheKeyLockImpl;
use pingora_cache::{CacheKey, CacheMeta, NoCacheReason, RespCacheable};
use pingora_http::ResponseHeader;

use super::disk::{DiskError, DiskKey, DiskTier};
use super::eviction::NewestKept;
use super::known::FetchLock;
use super::policy::{CachePolicy, Decision};
use super::storage::{MemoryStorage, UncachedReason};
use crate::config::CacheConfig;
use crate::media::MediaKind;
use crate::metrics;

/// Shards of the LRU eviction manager (independent of the storage's shards).
const EVICTION_SHARDS: usize = 16;

/// A stored playlist judged by its content ([`CacheRuntime::playlist_expired_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistFreshness {
    ExpiredAt(SystemTime),
    FreshFor(std::time::Duration),
}

pub struct CacheRuntime {
    pub storage: &'static MemoryStorage,
    pub eviction: &'static NewestKept<EVICTION_SHARDS>,
    pub lock: &'static CacheKeyLockImpl,
    /// The lock of LL-HLS blocking playlist reloads, whose fills may legitimately take
    /// several part durations.
    pub blocking_lock: &'static CacheKeyLockImpl,
    pub policy: CachePolicy,
    pub max_object_bytes: usize,
    pub budget_bytes: usize,
    /// `cache.lock_timeout`: the most a request waits, in total, behind another request's
    /// fetch of the same object (see [`crate::edge`]'s `caching::wait_left`).
    pub wait_budget: std::time::Duration,
    /// Lengths and growing segments of objects not held: how a miss is fetched.
    pub known: super::known::Known,
}

impl CacheRuntime {
    /// Build and leak the cache for this process.
    ///
    /// `state_dir` (the parent of `state.sqlite`) holds the disk tier's key.
    ///
    /// # Errors
    /// The disk tier's directory (`cache.disk.path`) cannot be created or read, or its key
    /// (`{state_dir}/disk-cache.key`) cannot be read or created.
    pub fn install(
        cfg: &CacheConfig,
        state_dir: &std::path::Path,
    ) -> Result<&'static CacheRuntime, DiskError> {
        // Capacity is a hint for pre-allocation: assume ~64 KiB objects on average.
        let capacity = (cfg.memory_bytes / (64 * 1024)).clamp(1024, 1 << 20);
        // The LRU evicts at 7/8 of the budget. Fills in flight are tracked in it as they grow
        // (so a fill evicts cold objects to make room for itself); the last 1/8 is slack for
        // what the LRU does not see (a stalled fill whose entry it already chose, the kept
        // window of a pass-through), up to the storage's hard budget.
        let lru_limit = cfg.memory_bytes - cfg.memory_bytes / 8;
        let eviction: &'static NewestKept<EVICTION_SHARDS> =
            Box::leak(Box::new(NewestKept::with_capacity(lru_limit, capacity)));
        let mut storage = MemoryStorage::new(cfg.shards, cfg.memory_bytes)
            .with_max_object_bytes(cfg.max_object_bytes)
            .with_eviction(eviction);
        if let Some(d) = &cfg.disk {
            let key = DiskKey::load_or_create(state_dir)?;
            storage = storage.with_disk(DiskTier::open(&d.path, d.bytes, key)?);
        }
        let storage: &'static MemoryStorage = Box::leak(Box::new(storage));
        let lock: &'static CacheKeyLockImpl = Box::leak(Box::new(FetchLock::new(cfg.lock_timeout)));
        let blocking_lock: &'static CacheKeyLockImpl =
            Box::leak(Box::new(FetchLock::new(cfg.blocking_reload_timeout)));
        Ok(Box::leak(Box::new(CacheRuntime {
            storage,
            eviction,
            lock,
            blocking_lock,
            policy: CachePolicy::from(cfg),
            max_object_bytes: cfg.max_object_bytes,
            budget_bytes: cfg.memory_bytes,
            wait_budget: cfg.lock_timeout,
            known: super::known::Known::default(),
        })))
    }

    /// The key for an upstream object: scheme, host and path only, never query tokens,
    /// ctx ids or auth headers (those are checked before the cache).
    pub fn key(primary: &str) -> CacheKey {
        CacheKey::new(primary.to_string(), "")
    }

    /// Turn a response into a cacheable meta, or say why not.
    pub fn cacheability(&self, kind: MediaKind, resp: &ResponseHeader) -> RespCacheable {
        let now = SystemTime::now();
        // Known too large: not cached, and waiters on the cache lock go to the origin at once
        // (`ResponseTooLarge` gives the lock up) instead of queueing for a fill that never
        // comes. Unknown lengths are judged by the storage as they stream.
        let too_large = resp
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok())
            .is_some_and(|len| len > self.max_object_bytes);
        if too_large {
            self.storage.note_uncached(UncachedReason::TooLarge);
            return RespCacheable::Uncacheable(NoCacheReason::ResponseTooLarge);
        }
        match self.policy.decide(kind, resp, now) {
            Decision::Store {
                ttl,
                stale_if_error,
                age,
            } => {
                // As old as the origin said it already was: Pingora's `Age` on hits (now
                // minus creation) then includes the upstream's, and freshness ends when the
                // origin's lifetime does.
                let created = now.checked_sub(age).unwrap_or(now);
                RespCacheable::Cacheable(CacheMeta::new(
                    created + ttl,
                    created,
                    0,
                    stale_if_error.as_secs().min(u32::MAX as u64) as u32,
                    resp.clone(),
                ))
            }
            Decision::DontStore(why) => RespCacheable::Uncacheable(NoCacheReason::Custom(why)),
        }
    }

    /// For a playlist hit: when it stopped being fresh (live playlists expire early), or how
    /// long it stays fresh.
    pub fn playlist_expired_at(
        &self,
        kind: MediaKind,
        meta: &CacheMeta,
        body: &[u8],
    ) -> PlaylistFreshness {
        let ttl = self.policy.playlist_ttl(kind, body);
        let until = meta.created() + ttl;
        match until.duration_since(SystemTime::now()) {
            Ok(left) if !left.is_zero() => PlaylistFreshness::FreshFor(left),
            _ => PlaylistFreshness::ExpiredAt(until),
        }
    }

    /// Remove one object by primary key. Returns whether something was removed.
    pub fn purge_primary(&self, primary: &str) -> bool {
        self.storage
            .purge_exact_primary(primary, Some(self.eviction))
    }

    /// Remove an object in every variant of its key: the key itself and the same key with
    /// any query (LL-HLS delivery directives, query-selected content).
    pub fn purge_variants(&self, primary: &str) -> usize {
        let exact = usize::from(self.purge_primary(primary));
        let sep = if primary.contains('?') { '&' } else { '?' };
        exact + self.purge_prefix(&format!("{primary}{sep}"))
    }

    /// Remove every object whose primary key starts with `prefix`.
    pub fn purge_prefix(&self, prefix: &str) -> usize {
        self.storage.purge_prefix(prefix, Some(self.eviction))
    }

    /// Apply one purge operation; how many objects it removed.
    pub fn purge(&self, op: &PurgeOp) -> usize {
        match op {
            PurgeOp::Exact(p) => usize::from(self.purge_primary(p)),
            PurgeOp::Variants(p) => self.purge_variants(p),
            PurgeOp::Prefix(p) => self.purge_prefix(p),
        }
    }

    /// Copy storage counters into the metrics registry (called at scrape time).
    pub fn refresh_metrics(&self) {
        let stats = self.storage.stats();
        metrics::CACHE_BYTES.set(stats.bytes_stored as i64);
        metrics::CACHE_INFLIGHT_BYTES.set(stats.inflight_bytes as i64);
        catch_up(&metrics::CACHE_EVICTIONS, stats.evictions);
        if let Some(disk) = self.storage.disk() {
            let d = disk.stats();
            metrics::CACHE_DISK_BYTES.set(d.bytes as i64);
            for (event, count) in [
                ("hit", d.hits),
                ("write", d.writes),
                ("dropped", d.dropped),
                ("corrupt", d.corrupt),
                ("foreign", d.foreign),
                ("evicted", d.evictions),
            ] {
                catch_up(
                    &metrics::CACHE_DISK_EVENTS.with_label_values(&[event]),
                    count,
                );
            }
        }
        for (reason, count) in [
            (UncachedReason::TooLarge, stats.uncached_too_large),
            (UncachedReason::OverBudget, stats.uncached_over_budget),
            (UncachedReason::Purged, stats.uncached_purged),
        ] {
            catch_up(
                &metrics::CACHE_UNCACHED.with_label_values(&[reason.as_str()]),
                count,
            );
        }
    }
}

/// What a purge removes, by cache key primary: the form a purge request is resolved to
/// before it is applied, here and on every other node of a fleet (keys name the upstream
/// object, so they are the same on every node).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeOp {
    /// The object with exactly this primary key.
    Exact(String),
    /// The object in every variant of its key ([`CacheRuntime::purge_variants`]).
    Variants(String),
    /// Every object whose primary key starts with this.
    Prefix(String),
}

/// Bring a Prometheus counter up to a storage counter (both only grow).
fn catch_up(counter: &prometheus::IntCounter, now: u64) {
    let seen = counter.get();
    if now > seen {
        counter.inc_by(now - seen);
    }
}

//! [`NewestKept`]: pingora's sharded LRU, except that an entry is never evicted by its own
//! admission.
//!
//! Where it sits: the edge hands it to pingora-cache as the eviction manager, and
//! [`super::MemoryStorage`] admits growing fills to it (see `MemoryStorage::with_eviction`).
//!
//! Why: `eviction::lru::Manager<N>` keeps N independent LRUs and evicts from the tail of the
//! longer of two random shards. When a shard holds a single entry — common when a budget
//! holds a few dozen multi-MB segments across 16 shards — the entry just admitted is that
//! shard's tail, and its own admission may evict it: a segment is fetched, committed and
//! dropped at once, and its next viewers go to the origin again. Here an admission that
//! chose its own entry puts it back and evicts again (other shards are drawn), a bounded
//! number of times.

use std::time::SystemTime;

use async_trait::async_trait;
use pingora_cache::eviction::lru::Manager;
use pingora_cache::eviction::{CacheEntryKey, CacheEntryKeyRef, EvictionManager};

/// How many times an admission that evicted its own entry tries again.
const READMIT_TRIES: usize = 16;

/// Pingora's LRU with the admitted entry kept (see the module docs).
pub struct NewestKept<const N: usize>(Manager<N>);

impl<const N: usize> NewestKept<N> {
    /// An LRU evicting past `limit` bytes; `capacity` pre-allocates per shard.
    pub fn with_capacity(limit: usize, capacity: usize) -> Self {
        NewestKept(Manager::with_capacity(limit, capacity))
    }

    /// `evicted` from admitting `item` at `weight`, with `item` itself put back (and others
    /// evicted in its place) while tries last.
    fn keep_admitted(
        &self,
        item: &CacheEntryKey,
        weight: usize,
        fresh_until: SystemTime,
        mut evicted: Vec<CacheEntryKey>,
    ) -> Vec<CacheEntryKey> {
        for _ in 0..READMIT_TRIES {
            let Some(at) = evicted.iter().position(|e| e == item) else {
                break;
            };
            evicted.swap_remove(at);
            evicted.extend(self.0.admit(item.clone(), weight, fresh_until));
        }
        evicted
    }
}

#[async_trait]
impl<const N: usize> EvictionManager for NewestKept<N> {
    fn total_size(&self) -> usize {
        self.0.total_size()
    }

    fn total_items(&self) -> usize {
        self.0.total_items()
    }

    fn evicted_size(&self) -> usize {
        self.0.evicted_size()
    }

    fn evicted_items(&self) -> usize {
        self.0.evicted_items()
    }

    fn admit(
        &self,
        item: CacheEntryKey,
        size: usize,
        fresh_until: SystemTime,
    ) -> Vec<CacheEntryKey> {
        let evicted = self.0.admit(item.clone(), size, fresh_until);
        self.keep_admitted(&item, size, fresh_until, evicted)
    }

    fn increment_weight(
        &self,
        item: &CacheEntryKey,
        delta: usize,
        max_weight: Option<usize>,
    ) -> Vec<CacheEntryKey> {
        let evicted = self.0.increment_weight(item, delta, max_weight);
        match self.0.peek_weight(item) {
            // Still tracked: its own admission did not evict it.
            Some(_) => evicted,
            None => {
                let weight = max_weight.map_or(delta, |max| delta.min(max)).max(1);
                self.keep_admitted(item, weight, SystemTime::now(), evicted)
            }
        }
    }

    fn remove(&self, item: CacheEntryKeyRef<'_>) {
        self.0.remove(item)
    }

    fn access(&self, item: &CacheEntryKey, size: usize, fresh_until: SystemTime) -> bool {
        self.0.access(item, size, fresh_until)
    }

    fn peek(&self, item: &CacheEntryKey) -> bool {
        self.0.peek(item)
    }

    async fn save(&self, dir_path: &str) -> pingora_error::Result<()> {
        self.0.save(dir_path).await
    }

    async fn load(&self, dir_path: &str) -> pingora_error::Result<()> {
        self.0.load(dir_path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::CacheKey;

    fn entry(i: usize) -> CacheEntryKey {
        CacheEntryKey::key_only(CacheKey::new(format!("k{i}"), "").to_compact())
    }

    #[test]
    fn an_admission_never_evicts_its_own_entry() {
        // Many shards, few large entries: most shards hold one entry or none, so pingora's
        // LRU often evicts the entry it is admitting. Each admission here evicts others.
        let lru = NewestKept::<16>::with_capacity(4 * 100, 16);
        for i in 0..400 {
            let evicted = lru.admit(entry(i), 100, SystemTime::now());
            assert!(!evicted.contains(&entry(i)), "admission {i} evicted itself");
            assert!(lru.peek(&entry(i)));
            assert!(lru.total_size() <= 4 * 100);
        }
    }
}

//! Stream-token use counters (stream-token-api "Max Uses": `count < maxUses`).
//!
//! One *use* is one playback start: a successful load of the entry playlist with the stream
//! token (README, "Stream tokens"). The gate reserves it at admission and gives it back with
//! [`UseCounter::release`] when the answer is not a success. [`UseCounter::try_use`]
//! is atomic per `jti`: of N concurrent requests on a fresh token exactly `maxUses` succeed.
//!
//! [`MemoryUseCounter`] keeps counts in this process (a restart forgets them, which only
//! matters for tokens minted before it, at most one hour); the trait is the seam for a shared
//! store (Redis `INCR` with `EXPIRE` at the token's `exp`).

use std::collections::HashMap;

use async_trait::async_trait;
use parking_lot::Mutex;

/// The outcome of counting one use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UseOutcome {
    /// Counted; this many uses remain.
    Allowed { remaining: u32 },
    /// `count >= maxUses` already; nothing counted.
    Exhausted,
}

#[async_trait]
pub trait UseCounter: Send + Sync {
    /// Count one use of `jti` if fewer than `max` were counted. `exp` (unix seconds) bounds
    /// how long the count must be kept.
    async fn try_use(&self, jti: &str, max: u32, exp: i64) -> UseOutcome;
    /// Give back one use counted by [`Self::try_use`] (the request it admitted failed).
    async fn release(&self, jti: &str);
    /// Uses counted so far (reservations in flight included).
    async fn used(&self, jti: &str) -> u32;
    /// Forget counts kept until before `now` (the `exp` given to `try_use` is the horizon:
    /// the token's `exp + leeway`).
    async fn prune(&self, now: i64);
}

/// In-process counters, sharded to keep lock hold times and contention small.
pub struct MemoryUseCounter {
    shards: Vec<Mutex<HashMap<String, (u32, i64)>>>,
}

const SHARDS: usize = 16;

impl Default for MemoryUseCounter {
    fn default() -> Self {
        MemoryUseCounter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl MemoryUseCounter {
    fn shard(&self, jti: &str) -> &Mutex<HashMap<String, (u32, i64)>> {
        // FNV-1a: cheap and stable; jtis are random UUIDs anyway.
        let mut h: u64 = 0xcbf29ce484222325;
        for b in jti.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
        &self.shards[(h as usize) % SHARDS]
    }

    /// The counting rule itself, on one shard's map.
    fn count(map: &mut HashMap<String, (u32, i64)>, jti: &str, max: u32, exp: i64) -> UseOutcome {
        let entry = map.entry(jti.to_string()).or_insert((0, exp));
        if entry.0 >= max {
            return UseOutcome::Exhausted;
        }
        entry.0 += 1;
        UseOutcome::Allowed {
            remaining: max - entry.0,
        }
    }
}

#[async_trait]
impl UseCounter for MemoryUseCounter {
    async fn try_use(&self, jti: &str, max: u32, exp: i64) -> UseOutcome {
        Self::count(&mut self.shard(jti).lock(), jti, max, exp)
    }

    async fn release(&self, jti: &str) {
        if let Some(e) = self.shard(jti).lock().get_mut(jti) {
            e.0 = e.0.saturating_sub(1);
        }
    }

    async fn used(&self, jti: &str) -> u32 {
        self.shard(jti).lock().get(jti).map(|e| e.0).unwrap_or(0)
    }

    async fn prune(&self, now: i64) {
        for s in &self.shards {
            s.lock().retain(|_, (_, exp)| *exp >= now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn counts_up_to_max_then_refuses() {
        let c = MemoryUseCounter::default();
        assert_eq!(c.used("j").await, 0);
        for left in (0..3).rev() {
            assert_eq!(
                c.try_use("j", 3, 100).await,
                UseOutcome::Allowed { remaining: left }
            );
        }
        assert_eq!(c.try_use("j", 3, 100).await, UseOutcome::Exhausted);
        assert_eq!(c.used("j").await, 3);
        c.release("j").await;
        assert_eq!(c.used("j").await, 2);
        assert_eq!(
            c.try_use("j", 3, 100).await,
            UseOutcome::Allowed { remaining: 0 }
        );
        assert_eq!(c.used("other").await, 0);
        c.prune(101).await;
        assert_eq!(c.used("j").await, 0);
    }

    #[test]
    fn exactly_max_succeed_under_contention() {
        let c = Arc::new(MemoryUseCounter::default());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap();
        let ok = rt.block_on(async {
            let tasks: Vec<_> = (0..200)
                .map(|_| {
                    let c = c.clone();
                    tokio::spawn(async move { c.try_use("jti", 7, 100).await })
                })
                .collect();
            let mut ok = 0;
            for t in tasks {
                if matches!(t.await.unwrap(), UseOutcome::Allowed { .. }) {
                    ok += 1;
                }
            }
            ok
        });
        assert_eq!(ok, 7);
    }
}

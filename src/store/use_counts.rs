//! Stream-token use counters (stream-token-api "Max Uses": `count < maxUses`).
//!
//! One *use* is one playback start: a successful load of the entry playlist with the stream
//! token (README, "Stream tokens"). The gate reserves it at admission and gives it back with
//! [`UseCounter::release`] when the answer is not a success. [`UseCounter::try_use`]
//! is atomic per `jti`: of N concurrent requests on a fresh token exactly `maxUses` succeed.
//!
//! [`MemoryUseCounter`] keeps counts in this process (a restart forgets them, which only
//! matters for tokens minted before it, at most one hour); the trait is the seam for the
//! shared store ([`crate::store::redis::tokens`]: a script that checks the revocation and
//! counts the use in one round trip, the count expiring at the token's `exp + leeway`).

use std::collections::HashMap;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::revocations::RevocationStore;
use super::StoreError;

/// The outcome of counting one use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UseOutcome {
    /// Counted; this many uses remain.
    Allowed { remaining: u32 },
    /// `count >= maxUses` already; nothing counted.
    Exhausted,
}

/// What the entry load's state question answered ([`UseCounter::admit_entry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryOutcome {
    /// The token is revoked; nothing counted.
    Revoked,
    /// `count >= maxUses` already; nothing counted.
    Exhausted,
    /// Not revoked, and a use was counted (reserve) or one is left (check only).
    Admitted,
}

#[async_trait]
pub trait UseCounter: Send + Sync {
    /// Count one use of `jti` if fewer than `max` were counted. `exp` (unix seconds) bounds
    /// how long the count must be kept.
    async fn try_use(&self, jti: &str, max: u32, exp: i64) -> Result<UseOutcome, StoreError>;
    /// Give back one use counted by [`Self::try_use`] (the request it admitted failed).
    async fn release(&self, jti: &str) -> Result<(), StoreError>;
    /// Uses counted so far (reservations in flight included).
    async fn used(&self, jti: &str) -> Result<u32, StoreError>;
    /// Forget counts kept until before `now` (the `exp` given to `try_use` is the horizon:
    /// the token's `exp + leeway`).
    async fn prune(&self, now: i64);

    /// An entry load's state question in one step: `jti` is not revoked and, with `reserve`,
    /// one use is counted (else: one is left). A shared store answers it in one round trip
    /// (the Redis implementation runs one script over both keys); this default asks the two
    /// stores in turn, which is what a single node always did.
    async fn admit_entry(
        &self,
        revocations: &dyn RevocationStore,
        jti: &str,
        max: u32,
        exp: i64,
        reserve: bool,
    ) -> Result<EntryOutcome, StoreError> {
        if revocations.is_revoked(jti).await? {
            return Ok(EntryOutcome::Revoked);
        }
        if reserve {
            return Ok(match self.try_use(jti, max, exp).await? {
                UseOutcome::Allowed { .. } => EntryOutcome::Admitted,
                UseOutcome::Exhausted => EntryOutcome::Exhausted,
            });
        }
        Ok(if self.used(jti).await? >= max {
            EntryOutcome::Exhausted
        } else {
            EntryOutcome::Admitted
        })
    }
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
    async fn try_use(&self, jti: &str, max: u32, exp: i64) -> Result<UseOutcome, StoreError> {
        Ok(Self::count(&mut self.shard(jti).lock(), jti, max, exp))
    }

    async fn release(&self, jti: &str) -> Result<(), StoreError> {
        if let Some(e) = self.shard(jti).lock().get_mut(jti) {
            e.0 = e.0.saturating_sub(1);
        }
        Ok(())
    }

    async fn used(&self, jti: &str) -> Result<u32, StoreError> {
        Ok(self.shard(jti).lock().get(jti).map(|e| e.0).unwrap_or(0))
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
        assert_eq!(c.used("j").await.unwrap(), 0);
        for left in (0..3).rev() {
            assert_eq!(
                c.try_use("j", 3, 100).await.unwrap(),
                UseOutcome::Allowed { remaining: left }
            );
        }
        assert_eq!(c.try_use("j", 3, 100).await.unwrap(), UseOutcome::Exhausted);
        assert_eq!(c.used("j").await.unwrap(), 3);
        c.release("j").await.unwrap();
        assert_eq!(c.used("j").await.unwrap(), 2);
        assert_eq!(
            c.try_use("j", 3, 100).await.unwrap(),
            UseOutcome::Allowed { remaining: 0 }
        );
        assert_eq!(c.used("other").await.unwrap(), 0);
        c.prune(101).await;
        assert_eq!(c.used("j").await.unwrap(), 0);
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
                    tokio::spawn(async move { c.try_use("jti", 7, 100).await.unwrap() })
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

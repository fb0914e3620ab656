//! Stream-token state of a fleet: revocations and use counts (stream-token-api "Max Uses",
//! "Revocation immediate possible via blacklist Redis").
//!
//! | key | type | TTL |
//! |---|---|---|
//! | `sluice:tok:{<jti>}:rev` | string `1` | `EXAT` the revocation horizon (`exp` + the credential reach below) |
//! | `sluice:tok:{<jti>}:uses` | integer | `EXAT` the use-count horizon (`exp + leeway`) |
//! | `sluice:revoked` | sorted set `jti → horizon` | none; pruned by score every minute |
//! | `sluice:credential_reach` | integer: the largest `leeway + playback_max` any node ran with | none |
//!
//! Both keys of one token share the `{jti}` hash tag, so the entry load's script
//! ([`ENTRY`]: revoked? then count the use) touches one slot: **one round trip** per entry
//! load, atomic across the fleet (of N concurrent starts of a `maxUses: 5` token on any
//! number of nodes, exactly 5 count). Requests carrying a playback credential cost no round
//! trip: they check this node's copy of `sluice:revoked`, kept current through
//! `rev <jti> <horizon>` messages ([`super::EVENTS`]) and trusted only while
//! [`super::Redis::view_fresh`]; otherwise the one key is asked directly.
//!
//! Every node raises `sluice:credential_reach` to its own reach at each (re)subscription, and
//! a revoke reads it (raising it again, in case Redis lost it): a horizon is computed with the
//! longest reach any node of the fleet ran with ([`crate::store::revocations`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use once_cell::sync::Lazy;
use parking_lot::RwLock;

use super::{EventSink, Redis, BULK_TIMEOUT, EVENTS};
use crate::store::revocations::RevocationStore;
use crate::store::use_counts::{EntryOutcome, UseCounter, UseOutcome};
use crate::store::StoreError;

pub const REVOKED_INDEX: &str = "sluice:revoked";
/// The fleet's credential reach high-water mark.
pub const REACH_KEY: &str = "sluice:credential_reach";

pub fn revoked_key(jti: &str) -> String {
    format!("sluice:tok:{}:rev", super::tag(jti))
}

pub fn uses_key(jti: &str) -> String {
    format!("sluice:tok:{}:uses", super::tag(jti))
}

/// Revoke: the horizon only ever grows; the index and the notice in the same step.
static REVOKE: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r"
local keep = tonumber(ARGV[2])
local cur = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]) or '0')
if cur > keep then keep = cur end
redis.call('SET', KEYS[1], '1', 'EXAT', keep)
redis.call('ZADD', KEYS[2], keep, ARGV[1])
redis.call('PUBLISH', ARGV[3], 'rev ' .. ARGV[1] .. ' ' .. keep)
return keep
",
    )
});

/// The entry load: `KEYS[1]` revocation, `KEYS[2]` use count; `ARGV` max, horizon, mode
/// (`reserve`, `check`, or `count`: no revocation check). Returns -1 revoked, -2 used up,
/// else the uses left after this one.
pub static ENTRY: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r"
if ARGV[3] ~= 'count' and redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local max = tonumber(ARGV[1])
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if used >= max then return -2 end
if ARGV[3] == 'check' then return max - used end
used = redis.call('INCR', KEYS[2])
redis.call('EXPIREAT', KEYS[2], ARGV[2])
return max - used
",
    )
});

/// Raise the credential reach to `ARGV[1]` if it is lower; the mark after.
static RAISE_REACH: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local mine = tonumber(ARGV[1])
if mine > cur then
  redis.call('SET', KEYS[1], mine)
  cur = mine
end
return cur
",
    )
});

/// Give a reserved use back (never below zero; the TTL stays).
static RELEASE: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r"
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if v > 0 then return redis.call('DECR', KEYS[1]) end
return 0
",
    )
});

/// Revocations of the fleet, with this node's copy for credential checks.
pub struct RedisRevocations {
    redis: Arc<Redis>,
    set: RwLock<HashMap<String, i64>>,
    /// The largest credential reach this node knows of: its own, and the fleet's as last
    /// read (kept even if Redis loses it).
    reach: AtomicI64,
}

impl RedisRevocations {
    /// `reach`: this process's `leeway + playback_max`.
    pub fn new(redis: Arc<Redis>, reach: i64) -> Arc<RedisRevocations> {
        Arc::new(RedisRevocations {
            redis,
            set: RwLock::new(HashMap::new()),
            reach: AtomicI64::new(reach),
        })
    }

    /// Raise the fleet's mark to what this node knows (and `at_least`); the mark after.
    async fn raise_reach(
        &self,
        at_least: i64,
        limit: std::time::Duration,
    ) -> Result<i64, StoreError> {
        let mine = self.reach.load(Ordering::Acquire).max(at_least);
        let mark: i64 = self
            .redis
            .run_within("credential_reach", limit, move |mut c| async move {
                RAISE_REACH
                    .key(REACH_KEY)
                    .arg(mine)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let mark = mark.max(mine);
        self.reach.fetch_max(mark, Ordering::AcqRel);
        Ok(mark)
    }

    fn remember(&self, jti: &str, keep_until: i64) {
        let mut set = self.set.write();
        let e = set.entry(jti.to_string()).or_insert(keep_until);
        *e = (*e).max(keep_until);
    }

    /// The whole index (`jti → horizon`) of revocations still live at `now`.
    async fn load(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.redis
            .run_within("revocations_load", BULK_TIMEOUT, move |mut c| async move {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(REVOKED_INDEX)
                    .arg(now)
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .query_async::<Vec<(String, i64)>>(&mut c)
                    .await
            })
            .await
    }
}

#[async_trait]
impl RevocationStore for RedisRevocations {
    async fn revoke(&self, jti: &str, keep_until: i64) -> Result<(), StoreError> {
        let (key, j) = (revoked_key(jti), jti.to_string());
        let keep: i64 = self
            .redis
            .run("revoke", move |mut c| async move {
                REVOKE
                    .key(key)
                    .key(REVOKED_INDEX)
                    .arg(j)
                    .arg(keep_until)
                    .arg(EVENTS)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        self.remember(jti, keep);
        Ok(())
    }

    async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        if self.set.read().contains_key(jti) {
            return Ok(true);
        }
        // The local copy is current within the staleness bound: no round trip.
        if self.redis.view_fresh() {
            return Ok(false);
        }
        let key = revoked_key(jti);
        let revoked: bool = self
            .redis
            .run("is_revoked", move |mut c| async move {
                redis::cmd("EXISTS").arg(key).query_async(&mut c).await
            })
            .await?;
        Ok(revoked)
    }

    fn known_horizon(&self, jti: &str) -> Option<i64> {
        self.set.read().get(jti).copied()
    }

    fn vouched_since(&self) -> i64 {
        self.redis.vouched_since()
    }

    async fn credential_reach(&self, at_least: i64) -> Result<i64, StoreError> {
        self.raise_reach(at_least, self.redis.timeout()).await
    }

    async fn all(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.load(chrono::Utc::now().timestamp()).await
    }

    async fn prune(&self, now: i64) -> Result<(), StoreError> {
        self.set.write().retain(|_, exp| *exp >= now);
        self.redis
            .run("revocations_prune", move |mut c| async move {
                redis::cmd("ZREMRANGEBYSCORE")
                    .arg(REVOKED_INDEX)
                    .arg("-inf")
                    .arg(format!("({now}"))
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }
}

#[async_trait]
impl EventSink for RedisRevocations {
    fn topic(&self) -> &'static str {
        "rev"
    }

    async fn on_event(&self, arg: &str) {
        if let Some((jti, keep)) = arg.split_once(' ') {
            if let Ok(keep) = keep.parse::<i64>() {
                self.remember(jti, keep);
            }
        }
    }

    async fn resync(&self) -> Result<(), StoreError> {
        // Before this node's credentials can be revoked elsewhere, the fleet knows its reach.
        self.raise_reach(0, BULK_TIMEOUT).await?;
        let rows = self.load(chrono::Utc::now().timestamp()).await?;
        let mut set = self.set.write();
        for (jti, keep) in rows {
            let e = set.entry(jti).or_insert(keep);
            *e = (*e).max(keep);
        }
        Ok(())
    }
}

/// Use counts of the fleet.
pub struct RedisUseCounter {
    redis: Arc<Redis>,
}

impl RedisUseCounter {
    pub fn new(redis: Arc<Redis>) -> Arc<RedisUseCounter> {
        Arc::new(RedisUseCounter { redis })
    }

    async fn entry(
        &self,
        jti: &str,
        max: u32,
        exp: i64,
        mode: &'static str,
    ) -> Result<i64, StoreError> {
        let (rev, uses) = (revoked_key(jti), uses_key(jti));
        self.redis
            .run("entry", move |mut c| async move {
                ENTRY
                    .key(rev)
                    .key(uses)
                    .arg(max)
                    .arg(exp)
                    .arg(mode)
                    .invoke_async(&mut c)
                    .await
            })
            .await
    }
}

#[async_trait]
impl UseCounter for RedisUseCounter {
    async fn try_use(&self, jti: &str, max: u32, exp: i64) -> Result<UseOutcome, StoreError> {
        Ok(match self.entry(jti, max, exp, "count").await? {
            n if n >= 0 => UseOutcome::Allowed {
                remaining: u32::try_from(n).unwrap_or(0),
            },
            _ => UseOutcome::Exhausted,
        })
    }

    async fn release(&self, jti: &str) -> Result<(), StoreError> {
        let key = uses_key(jti);
        self.redis
            .run("release", move |mut c| async move {
                RELEASE.key(key).invoke_async::<i64>(&mut c).await
            })
            .await?;
        Ok(())
    }

    async fn used(&self, jti: &str) -> Result<u32, StoreError> {
        let key = uses_key(jti);
        let n: Option<u32> = self
            .redis
            .run("used", move |mut c| async move {
                redis::cmd("GET").arg(key).query_async(&mut c).await
            })
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// Counts expire with their keys.
    async fn prune(&self, _now: i64) {}

    async fn admit_entry(
        &self,
        _revocations: &dyn RevocationStore,
        jti: &str,
        max: u32,
        exp: i64,
        reserve: bool,
    ) -> Result<EntryOutcome, StoreError> {
        let mode = if reserve { "reserve" } else { "check" };
        Ok(match self.entry(jti, max, exp, mode).await? {
            -1 => EntryOutcome::Revoked,
            -2 => EntryOutcome::Exhausted,
            _ => EntryOutcome::Admitted,
        })
    }
}

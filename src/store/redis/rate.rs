//! Rate-limit windows of a fleet: the same exact sliding-window log as
//! [`crate::ratelimit::SlidingWindow`], kept in Redis so "30 per minute" is 30 per client
//! across every node.
//!
//! | key | type | TTL |
//! |---|---|---|
//! | `sluice:rl:{<class>:<client key>}` | sorted set `admission → ms` | the window (60 s) after the last admission |
//!
//! One script per limited request ([`ADMIT`]); time is Redis's own clock (`TIME`), so nodes
//! with skewed clocks share one window. When Redis cannot answer, the caller counts on the
//! node's local windows instead ([`crate::ratelimit::RateLimits::admit`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use once_cell::sync::Lazy;

use super::Redis;
use crate::store::rate_windows::SharedWindows;
use crate::store::StoreError;

pub fn window_key(class: &str, key: &str) -> String {
    format!("sluice:rl:{}", super::tag(&format!("{class}:{key}")))
}

/// `KEYS[1]` the window; `ARGV` limit, window ms, a unique suffix. Returns `{1, member}` when
/// admitted, `{0, ms until a slot frees}` when not.
static ADMIT: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tostring(tonumber(oldest[2]) + window - now)}
end
local member = now .. '-' .. ARGV[3]
redis.call('ZADD', KEYS[1], now, member)
redis.call('PEXPIRE', KEYS[1], window)
return {1, member}
",
    )
});

pub struct RedisWindows {
    redis: Arc<Redis>,
}

impl RedisWindows {
    pub fn new(redis: Arc<Redis>) -> Arc<RedisWindows> {
        Arc::new(RedisWindows { redis })
    }
}

#[async_trait]
impl SharedWindows for RedisWindows {
    async fn admit(
        &self,
        class: &'static str,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Result<String, Duration>, StoreError> {
        let k = window_key(class, key);
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let suffix = crate::store::ctx::new_token();
        let (admitted, v): (i64, String) = self
            .redis
            .run("rate_limit", move |mut c| async move {
                ADMIT
                    .key(k)
                    .arg(limit.max(1))
                    .arg(window_ms)
                    .arg(suffix)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        if admitted == 1 {
            return Ok(Ok(v));
        }
        let wait = v.parse::<u64>().unwrap_or(window_ms);
        Ok(Err(Duration::from_millis(wait)))
    }

    /// Given back without waiting: the answer it follows is already decided.
    async fn release(
        &self,
        class: &'static str,
        key: &str,
        member: &str,
    ) -> Result<(), StoreError> {
        let (k, m) = (window_key(class, key), member.to_string());
        self.redis
            .detach("rate_limit_release", move |mut c| async move {
                redis::cmd("ZREM")
                    .arg(k)
                    .arg(m)
                    .query_async::<()>(&mut c)
                    .await
            });
        Ok(())
    }
}

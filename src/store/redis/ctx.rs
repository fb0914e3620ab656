//! Proxy contexts of a fleet (provider-proxy-api "Stream Proxy"): a ctx minted by the Stream
//! Info call on one node works on every node, with the sliding expiry, the per-subject quota
//! and the capacity of [`crate::store::ctx::MemoryCtxStore`], counted fleet-wide.
//!
//! | key | type | TTL |
//! |---|---|---|
//! | `sluice:ctx:{<token>}` | hash: provider `p`, channel `c`, subject `s`, idle ttl ms `t`, session end unix ms `m` | `PEXPIREAT` the current expiry (slides with use, never past `m`) |
//! | `sluice:ctx-subject:{<sha256(subject)>}` | sorted set `token → expiry ms` | the longest session in it |
//! | `sluice:ctx-live` | sorted set `token → expiry ms` | none; cleaned as contexts expire |
//!
//! A use slides the expiry with one script on the ctx's own key ([`SLIDE`]). Each node keeps
//! the contexts it served in a small cache and skips the round trip while the expiry would
//! move by less than min(ttl/4, 1 s) — the same re-index rule the single-node store follows —
//! and while its snapshots are fresh; a context replaced on another node (quota) is dropped
//! from every cache by a `ctx-del <token>` notice. The cookie jar a CDN fills for a context
//! (see `cookie_jar`) stays on the node that received the cookies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use once_cell::sync::Lazy;
use parking_lot::Mutex;

use super::{EventSink, Redis, EVENTS};
use crate::store::ctx::{new_token, well_formed, CtxFull, CtxInsertError, CtxStore, ProxyContext};
use crate::store::StoreError;

pub const CTX_PREFIX: &str = "sluice:ctx:";
pub const LIVE: &str = "sluice:ctx-live";

pub fn ctx_key(token: &str) -> String {
    format!("{CTX_PREFIX}{}", super::tag(token))
}

pub fn subject_key(subject: &str) -> String {
    format!(
        "sluice:ctx-subject:{}",
        super::tag(&crate::auth::api_keys::hash(subject))
    )
}

/// Store a context: `KEYS` ctx, subject set, live set; `ARGV` token, ttl ms, session ms,
/// per-subject quota, capacity, provider, channel, subject, events channel, ctx key prefix.
/// Returns the session end (unix ms), or 0 when the fleet is full of live contexts.
static INSERT: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function clean(z)
  local stale = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, 256)
  for _, tok in ipairs(stale) do
    local left = redis.call('PTTL', ARGV[10] .. '{' .. tok .. '}')
    if left > 0 then redis.call('ZADD', z, now + left, tok) else redis.call('ZREM', z, tok) end
  end
end
clean(KEYS[2])
local per = tonumber(ARGV[4])
while redis.call('ZCARD', KEYS[2]) >= per do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  redis.call('ZREM', KEYS[2], oldest)
  redis.call('ZREM', KEYS[3], oldest)
  redis.call('DEL', ARGV[10] .. '{' .. oldest .. '}')
  redis.call('PUBLISH', ARGV[9], 'ctx-del ' .. oldest)
end
clean(KEYS[3])
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[5]) then return 0 end
local ttl = tonumber(ARGV[2])
local max_until = now + tonumber(ARGV[3])
local exp = math.min(now + ttl, max_until)
redis.call('HSET', KEYS[1], 'p', ARGV[6], 'c', ARGV[7], 's', ARGV[8], 't', ttl, 'm', max_until)
redis.call('PEXPIREAT', KEYS[1], exp)
redis.call('ZADD', KEYS[2], exp, ARGV[1])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
redis.call('ZADD', KEYS[3], exp, ARGV[1])
return max_until
",
    )
});

/// Use a context: its fields and new expiry, or nil when it is gone.
/// Returns `[provider, channel, subject, ttl ms, session end ms, expiry ms, now ms]`.
static SLIDE: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r"
local f = redis.call('HMGET', KEYS[1], 'p', 'c', 's', 't', 'm')
if not f[1] then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local exp = math.min(now + tonumber(f[4]), tonumber(f[5]))
if exp <= now then return false end
redis.call('PEXPIREAT', KEYS[1], exp)
return {f[1], f[2], f[3], f[4], f[5], tostring(exp), tostring(now)}
",
    )
});

struct Cached {
    ctx: Arc<ProxyContext>,
    /// The expiry Redis holds, as of the last round trip.
    expires: Instant,
}

/// Contexts in Redis, with this node's cache.
pub struct RedisCtxStore {
    redis: Arc<Redis>,
    capacity: usize,
    per_subject: usize,
    cache: Mutex<HashMap<String, Cached>>,
}

impl RedisCtxStore {
    pub fn new(redis: Arc<Redis>, capacity: usize, per_subject: usize) -> Arc<RedisCtxStore> {
        Arc::new(RedisCtxStore {
            redis,
            capacity: capacity.max(1),
            per_subject: per_subject.max(1),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The cached context, when using it now needs no round trip.
    fn cached(&self, token: &str, now: Instant) -> Option<Arc<ProxyContext>> {
        let cache = self.cache.lock();
        let c = cache.get(token)?;
        if c.expires <= now {
            return None;
        }
        let slack = (c.ctx.ttl / 4).min(Duration::from_secs(1));
        (c.ctx.expiry_at(now) <= c.expires + slack).then(|| c.ctx.clone())
    }

    fn remember(&self, token: &str, ctx: Arc<ProxyContext>, expires: Instant) {
        let mut cache = self.cache.lock();
        if cache.len() >= self.capacity && !cache.contains_key(token) {
            let now = Instant::now();
            cache.retain(|_, c| c.expires > now);
            if cache.len() >= self.capacity {
                cache.clear();
            }
        }
        cache.insert(token.to_string(), Cached { ctx, expires });
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl CtxStore for RedisCtxStore {
    async fn insert(&self, ctx: ProxyContext) -> Result<String, CtxInsertError> {
        let token = new_token();
        let session = ctx
            .max_until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let (k1, k2) = (ctx_key(&token), subject_key(&ctx.subject));
        let args = (
            token.clone(),
            ms(ctx.ttl).max(1),
            ms(session),
            self.per_subject,
            self.capacity,
            ctx.provider.clone(),
            ctx.channel.clone(),
            ctx.subject.clone(),
        );
        let stored: i64 = self
            .redis
            .run("ctx_insert", move |mut c| async move {
                INSERT
                    .key(k1)
                    .key(k2)
                    .key(LIVE)
                    .arg(args.0)
                    .arg(args.1)
                    .arg(args.2)
                    .arg(args.3)
                    .arg(args.4)
                    .arg(args.5)
                    .arg(args.6)
                    .arg(args.7)
                    .arg(EVENTS)
                    .arg(CTX_PREFIX)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        if stored == 0 {
            return Err(CtxInsertError::Full(CtxFull));
        }
        let expires = ctx.expiry_at(Instant::now());
        self.remember(&token, Arc::new(ctx), expires);
        Ok(token)
    }

    async fn get(&self, token: &str) -> Result<Option<Arc<ProxyContext>>, StoreError> {
        if !well_formed(token) {
            return Ok(None);
        }
        let now = Instant::now();
        if self.redis.view_fresh() {
            if let Some(ctx) = self.cached(token, now) {
                return Ok(Some(ctx));
            }
        }
        let key = ctx_key(token);
        let answer: Result<Option<Vec<String>>, StoreError> = self
            .redis
            .run("ctx_get", move |mut c| async move {
                SLIDE.key(key).invoke_async(&mut c).await
            })
            .await;
        let fields = match answer {
            Ok(f) => f,
            Err(e) => {
                // Fail open only where the operator allowed it, and only for a context this
                // node knows and that has not expired.
                if self.redis.fail_open.playback && e.is_unavailable() {
                    let cache = self.cache.lock();
                    if let Some(c) = cache.get(token).filter(|c| c.expires > now) {
                        crate::metrics::REDIS_FALLBACKS
                            .with_label_values(&["fail_open_playback"])
                            .inc();
                        return Ok(Some(c.ctx.clone()));
                    }
                }
                return Err(e);
            }
        };
        let Some(f) = fields.filter(|f| f.len() == 7) else {
            self.cache.lock().remove(token);
            return Ok(None);
        };
        let num = |s: &str| s.parse::<i64>().unwrap_or(0);
        let (ttl_ms, max_ms, exp_ms, now_ms) = (num(&f[3]), num(&f[4]), num(&f[5]), num(&f[6]));
        let after = |ms: i64| now + Duration::from_millis(u64::try_from(ms - now_ms).unwrap_or(0));
        let expires = after(exp_ms);
        // Keep this node's instance (its cookie jar) when it has one.
        let existing = self.cache.lock().get(token).map(|c| c.ctx.clone());
        let ctx = existing.unwrap_or_else(|| {
            Arc::new(ProxyContext {
                provider: f[0].clone(),
                channel: f[1].clone(),
                subject: f[2].clone(),
                ttl: Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0)),
                max_until: after(max_ms),
                jar: Default::default(),
            })
        });
        self.remember(token, ctx.clone(), expires);
        Ok(Some(ctx))
    }

    fn prune(&self) {
        let now = Instant::now();
        self.cache.lock().retain(|_, c| c.expires > now);
    }
}

#[async_trait]
impl EventSink for RedisCtxStore {
    fn topic(&self) -> &'static str {
        "ctx-del"
    }

    async fn on_event(&self, token: &str) {
        self.cache.lock().remove(token);
    }

    /// Replacements may have been missed: every cached context is asked for again.
    async fn resync(&self) -> Result<(), StoreError> {
        self.cache.lock().clear();
        Ok(())
    }
}

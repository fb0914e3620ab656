//! The operator's records on a fleet: API keys, stream ids and sealed content keys. An admin
//! write on any node is in Redis when it is acknowledged (durable with AOF
//! `appendfsync always`, README "Running a fleet") and reaches every node's snapshot through
//! a notice on [`super::EVENTS`].
//!
//! | key | type | holds |
//! |---|---|---|
//! | `sluice:api-keys` | hash `sha256(key) → JSON row` | id, display prefix, name, permissions, created, active |
//! | `sluice:api-key-used` | hash `id → time` | last use (written by the access-log writer, batched) |
//! | `sluice:api-key-seq` | integer | the last id given |
//! | `sluice:api-keys-bootstrap` | string | set once (`SET NX`): the fleet's default admin key was made |
//! | `sluice:stream-ids` | hash `player → JSON {publisher, description, seq}` | notice `streams` |
//! | `sluice:stream-id-seq` | integer | insertion order |
//! | `sluice:content-keys` | hash `media hash → v2 envelope` (AES-256-GCM under the KEK) | notice `ckey <hash>` |
//!
//! None of them expires. An API key is checked with one `HGET` per admin-API request (no
//! cache: a revoked key is refused on every node at once); stream ids are read from each
//! node's snapshot (no round trip on the media path); a content key costs one `HGET` per key
//! request.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use once_cell::sync::Lazy;
use parking_lot::Mutex;

use super::{EventSink, Redis, BULK_TIMEOUT, EVENTS};
use crate::auth::api_keys::Permission;
use crate::crypto::{Keyring, Sealed};
use crate::store::api_keys::{ApiKeyRecord, ApiKeyRow, ApiKeyStore};
use crate::store::content_keys::{aad, ContentKeyError, ContentKeyStore};
use crate::store::stream_ids::{StreamId, StreamIdStore, StreamRegistry};
use crate::store::StoreError;

pub const API_KEYS: &str = "sluice:api-keys";
pub const API_KEY_USED: &str = "sluice:api-key-used";
pub const API_KEY_SEQ: &str = "sluice:api-key-seq";
pub const API_KEYS_BOOTSTRAP: &str = "sluice:api-keys-bootstrap";
pub const STREAM_IDS: &str = "sluice:stream-ids";
pub const STREAM_ID_SEQ: &str = "sluice:stream-id-seq";
pub const CONTENT_KEYS: &str = "sluice:content-keys";

fn now_text() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn bad_record(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Redis(format!("unreadable {what} record: {e}"))
}

/// The default admin key is made once per fleet: by the first process that finds no key at
/// all and wins the `SET NX`.
static BOOTSTRAP: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r"
if redis.call('HLEN', KEYS[1]) > 0 then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX') then return 1 end
return 0
",
    )
});

/// API keys of the fleet.
pub struct RedisApiKeys {
    redis: Arc<Redis>,
}

impl RedisApiKeys {
    pub fn new(redis: Arc<Redis>) -> Arc<RedisApiKeys> {
        Arc::new(RedisApiKeys { redis })
    }

    async fn records(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let (rows, used): (HashMap<String, String>, HashMap<i64, String>) = self
            .redis
            .run_within("api_keys_all", BULK_TIMEOUT, |mut c| async move {
                redis::pipe()
                    .hgetall(API_KEYS)
                    .hgetall(API_KEY_USED)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for json in rows.values() {
            let mut r: ApiKeyRecord =
                serde_json::from_str(json).map_err(|e| bad_record("api key", e))?;
            if let Some(t) = used.get(&r.id) {
                r.last_used = Some(t.clone());
            }
            out.push(r);
        }
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    async fn write(&self, rows: Vec<ApiKeyRecord>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut max_id = 0;
        for r in &rows {
            let mut stored = r.clone();
            let used = stored.last_used.take();
            let json = serde_json::to_string(&stored).map_err(|e| bad_record("api key", e))?;
            pipe.hset(API_KEYS, &r.key_hash, json).ignore();
            if let Some(t) = used {
                pipe.hset(API_KEY_USED, r.id, t).ignore();
            }
            max_id = max_id.max(r.id);
        }
        self.redis
            .run_within("api_keys_write", BULK_TIMEOUT, move |mut c| async move {
                pipe.query_async::<()>(&mut c).await?;
                // Ids handed out later stay above every id written.
                let cur: Option<i64> = redis::cmd("GET")
                    .arg(API_KEY_SEQ)
                    .query_async(&mut c)
                    .await?;
                if cur.unwrap_or(0) < max_id {
                    redis::cmd("SET")
                        .arg(API_KEY_SEQ)
                        .arg(max_id)
                        .query_async::<()>(&mut c)
                        .await?;
                }
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl ApiKeyStore for RedisApiKeys {
    async fn find_active(&self, key_hash: &str) -> Result<Option<(i64, String)>, StoreError> {
        let h = key_hash.to_string();
        let json: Option<String> = self
            .redis
            .run("api_key_find", move |mut c| async move {
                redis::cmd("HGET")
                    .arg(API_KEYS)
                    .arg(h)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let Some(json) = json else { return Ok(None) };
        let r: ApiKeyRecord = serde_json::from_str(&json).map_err(|e| bad_record("api key", e))?;
        Ok(r.active.then_some((r.id, r.permissions)))
    }

    async fn create(
        &self,
        name: &str,
        permission: Permission,
    ) -> Result<(i64, String), StoreError> {
        use crate::auth::api_keys;
        let key = api_keys::generate();
        let id: i64 = self
            .redis
            .run("api_key_id", |mut c| async move {
                redis::cmd("INCR")
                    .arg(API_KEY_SEQ)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let row = ApiKeyRecord {
            id,
            key_hash: api_keys::hash(&key),
            key_prefix: api_keys::display_prefix(&key),
            name: name.to_string(),
            permissions: permission.as_str().to_string(),
            created_at: now_text(),
            last_used: None,
            active: true,
        };
        let json = serde_json::to_string(&row).map_err(|e| bad_record("api key", e))?;
        let h = row.key_hash.clone();
        self.redis
            .run("api_key_create", move |mut c| async move {
                redis::cmd("HSET")
                    .arg(API_KEYS)
                    .arg(h)
                    .arg(json)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await?;
        Ok((id, key))
    }

    async fn list(&self) -> Result<Vec<ApiKeyRow>, StoreError> {
        Ok(self
            .records()
            .await?
            .iter()
            .map(ApiKeyRecord::row)
            .collect())
    }

    async fn deactivate(&self, id_or_prefix: &str) -> Result<usize, StoreError> {
        let by_id = id_or_prefix.parse::<i64>().ok();
        let changed: Vec<ApiKeyRecord> = self
            .records()
            .await?
            .into_iter()
            .filter(|r| r.active)
            .filter(|r| match by_id {
                Some(id) => r.id == id,
                None => r.key_prefix == id_or_prefix,
            })
            .map(|mut r| {
                r.active = false;
                r.last_used = None;
                r
            })
            .collect();
        let n = changed.len();
        self.write(changed).await?;
        Ok(n)
    }

    async fn touch(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = now_text();
        let items: Vec<(i64, String)> = ids.iter().map(|id| (*id, now.clone())).collect();
        self.redis
            .run("api_key_touch", move |mut c| async move {
                redis::cmd("HSET")
                    .arg(API_KEY_USED)
                    .arg(items)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
    }

    async fn ensure_default_admin(&self) -> Result<Option<String>, StoreError> {
        let won: i64 = self
            .redis
            .run("api_key_bootstrap", |mut c| async move {
                BOOTSTRAP
                    .key(API_KEYS)
                    .key(API_KEYS_BOOTSTRAP)
                    .arg(now_text())
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        if won != 1 {
            return Ok(None);
        }
        let (_, key) = self.create("default admin", Permission::Admin).await?;
        Ok(Some(key))
    }

    async fn export(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.records().await
    }

    async fn import(&self, rows: &[ApiKeyRecord]) -> Result<(), StoreError> {
        self.write(rows.to_vec()).await
    }
}

/// On a fleet, the default admin key is made by whichever node first finds the key table
/// empty, at start or once Redis is reachable.
pub struct DefaultAdminKey(pub Arc<dyn ApiKeyStore>);

#[async_trait]
impl EventSink for DefaultAdminKey {
    fn topic(&self) -> &'static str {
        "api-keys"
    }

    async fn on_event(&self, _arg: &str) {}

    async fn resync(&self) -> Result<(), StoreError> {
        if let Some(key) = self.0.ensure_default_admin().await? {
            crate::store::api_keys::announce_default_admin_key(&key);
        }
        Ok(())
    }
}

/// A stream id as stored: the row and its insertion order.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredStreamId {
    publisher: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    seq: i64,
}

/// One player id per spelling, checked in the script so two nodes cannot both register
/// `live` and `LIVE` (Lua's `string.lower` folds ASCII only, as the edge's lookup does).
static STREAM_INSERT: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r"
local folded = string.lower(ARGV[1])
for _, player in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.lower(player) == folded then return 0 end
end
local rec = cjson.decode(ARGV[2])
rec['seq'] = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))
redis.call('PUBLISH', ARGV[3], 'streams ' .. ARGV[1])
return 1
",
    )
});

static STREAM_DELETE: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[2], 'streams ' .. ARGV[1])
return 1
",
    )
});

/// Stream ids of the fleet.
pub struct RedisStreamIds {
    redis: Arc<Redis>,
}

impl RedisStreamIds {
    pub fn new(redis: Arc<Redis>) -> Arc<RedisStreamIds> {
        Arc::new(RedisStreamIds { redis })
    }
}

#[async_trait]
impl StreamIdStore for RedisStreamIds {
    async fn list(&self) -> Result<Vec<StreamId>, StoreError> {
        let all: HashMap<String, String> = self
            .redis
            .run_within("stream_ids_all", BULK_TIMEOUT, |mut c| async move {
                redis::cmd("HGETALL")
                    .arg(STREAM_IDS)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut rows = Vec::with_capacity(all.len());
        for (player, json) in all {
            let s: StoredStreamId =
                serde_json::from_str(&json).map_err(|e| bad_record("stream id", e))?;
            rows.push((
                s.seq,
                StreamId {
                    publisher: s.publisher,
                    player,
                    description: s.description,
                },
            ));
        }
        rows.sort_by(|a, b| (a.0, &a.1.player).cmp(&(b.0, &b.1.player)));
        Ok(rows.into_iter().map(|(_, r)| r).collect())
    }

    async fn insert(&self, row: &StreamId) -> Result<bool, StoreError> {
        let json = serde_json::to_string(&StoredStreamId {
            publisher: row.publisher.clone(),
            description: row.description.clone(),
            seq: 0,
        })
        .map_err(|e| bad_record("stream id", e))?;
        let player = row.player.clone();
        let n: i64 = self
            .redis
            .run("stream_id_insert", move |mut c| async move {
                STREAM_INSERT
                    .key(STREAM_IDS)
                    .key(STREAM_ID_SEQ)
                    .arg(player)
                    .arg(json)
                    .arg(EVENTS)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(n == 1)
    }

    async fn delete(&self, player: &str) -> Result<bool, StoreError> {
        let p = player.to_string();
        let n: i64 = self
            .redis
            .run("stream_id_delete", move |mut c| async move {
                STREAM_DELETE
                    .key(STREAM_IDS)
                    .arg(p)
                    .arg(EVENTS)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(n == 1)
    }
}

/// Keeps a node's stream-id snapshot current.
pub struct StreamIdSync(pub StreamRegistry);

#[async_trait]
impl EventSink for StreamIdSync {
    fn topic(&self) -> &'static str {
        "streams"
    }

    async fn on_event(&self, _player: &str) {
        if let Err(e) = self.0.reload().await {
            tracing::warn!(error = %e, "stream ids not reloaded after a change notice");
        }
    }

    async fn resync(&self) -> Result<(), StoreError> {
        self.0.reload_checked().await
    }
}

/// Re-seal one key only if nobody changed it meanwhile.
static CONTENT_KEY_SWAP: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], 'ckey ' .. ARGV[1])
return 1
",
    )
});

/// Sealed content keys of the fleet, with the records this node read (for
/// `state.redis_fail_open: [key_delivery]`).
pub struct RedisContentKeys {
    redis: Arc<Redis>,
    seen: Mutex<HashMap<String, Sealed>>,
    /// Every sealed key of the fleet as this node last knew it (`hash → envelope`): taken at
    /// each (re)subscription, kept current by `ckey` notices, and put back into an emptied
    /// Redis ([`super::epoch`]). Copied on write, so a kept copy costs nothing until it changes.
    copy: parking_lot::RwLock<Arc<HashMap<String, String>>>,
}

/// Most records a node remembers for fail-open key delivery.
const SEEN_MAX: usize = 100_000;

impl RedisContentKeys {
    pub fn new(redis: Arc<Redis>) -> Arc<RedisContentKeys> {
        Arc::new(RedisContentKeys {
            redis,
            seen: Mutex::new(HashMap::new()),
            copy: parking_lot::RwLock::new(Arc::new(HashMap::new())),
        })
    }

    /// This node's copy of the fleet's sealed keys (`hash → envelope`).
    pub fn kept(&self) -> Arc<HashMap<String, String>> {
        self.copy.read().clone()
    }

    fn keep(&self, hash: &str, envelope: Option<String>) {
        let mut copy = self.copy.write();
        let unchanged = copy.get(hash) == envelope.as_ref();
        if unchanged {
            return;
        }
        let map = Arc::make_mut(&mut copy);
        match envelope {
            Some(e) => map.insert(hash.to_string(), e),
            None => map.remove(hash),
        };
    }

    async fn envelopes(&self) -> Result<HashMap<String, String>, StoreError> {
        self.redis
            .run_within("content_keys_all", BULK_TIMEOUT, |mut c| async move {
                redis::cmd("HGETALL")
                    .arg(CONTENT_KEYS)
                    .query_async(&mut c)
                    .await
            })
            .await
    }
}

#[async_trait]
impl ContentKeyStore for RedisContentKeys {
    async fn get(&self, hash: &str) -> Result<Option<Option<Sealed>>, StoreError> {
        let h = hash.to_string();
        let envelope: Option<String> = self
            .redis
            .run("content_key_get", move |mut c| async move {
                redis::cmd("HGET")
                    .arg(CONTENT_KEYS)
                    .arg(h)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let Some(envelope) = envelope else {
            self.seen.lock().remove(hash);
            return Ok(None);
        };
        let sealed = Sealed::from_envelope(&envelope).ok();
        if let Some(s) = &sealed {
            if self.redis.fail_open.key_delivery {
                let mut seen = self.seen.lock();
                if seen.len() >= SEEN_MAX {
                    seen.clear();
                }
                seen.insert(hash.to_string(), s.clone());
            }
        }
        Ok(Some(sealed))
    }

    async fn put(&self, hash: &str, sealed: &Sealed) -> Result<(), StoreError> {
        let (h, envelope) = (hash.to_string(), sealed.to_envelope());
        let kept = envelope.clone();
        self.redis
            .run("content_key_put", move |mut c| async move {
                redis::pipe()
                    .atomic()
                    .hset(CONTENT_KEYS, &h, envelope)
                    .ignore()
                    .add_command(super::event("ckey", &h))
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await?;
        self.keep(hash, Some(kept));
        Ok(())
    }

    async fn rotate(&self, ring: &Keyring) -> Result<(usize, usize), ContentKeyError> {
        let all = self.envelopes().await?;
        // Every record must open before anything is written (as the SQLite rotation).
        let mut fresh = Vec::new();
        for (hash, envelope) in &all {
            let sealed = Sealed::from_envelope(envelope)?;
            if sealed.kek_id == ring.current_id() {
                continue;
            }
            let next = crate::crypto::rewrap(ring, &sealed, &aad(hash))?;
            fresh.push((hash.clone(), envelope.clone(), next.to_envelope()));
        }
        let mut changed = 0;
        for (hash, old, new) in fresh {
            let n: i64 = self
                .redis
                .run_within(
                    "content_key_rotate",
                    BULK_TIMEOUT,
                    move |mut c| async move {
                        CONTENT_KEY_SWAP
                            .key(CONTENT_KEYS)
                            .arg(hash)
                            .arg(old)
                            .arg(new)
                            .arg(EVENTS)
                            .invoke_async(&mut c)
                            .await
                    },
                )
                .await?;
            changed += usize::try_from(n).unwrap_or(0);
        }
        Ok((changed, all.len()))
    }

    async fn all(&self) -> Result<Vec<(String, Sealed)>, StoreError> {
        Ok(self
            .envelopes()
            .await?
            .into_iter()
            .filter_map(|(h, e)| Sealed::from_envelope(&e).ok().map(|s| (h, s)))
            .collect())
    }

    fn last_known(&self, hash: &str) -> Option<Sealed> {
        self.seen.lock().get(hash).cloned()
    }
}

#[async_trait]
impl EventSink for RedisContentKeys {
    fn topic(&self) -> &'static str {
        "ckey"
    }

    /// A replaced key must not be served from memory later; the copy takes the new one.
    async fn on_event(&self, hash: &str) {
        self.seen.lock().remove(hash);
        let h = hash.to_string();
        let now: Result<Option<String>, StoreError> = self
            .redis
            .run("content_key_copy", move |mut c| async move {
                redis::cmd("HGET")
                    .arg(CONTENT_KEYS)
                    .arg(h)
                    .query_async(&mut c)
                    .await
            })
            .await;
        match now {
            Ok(envelope) => self.keep(hash, envelope),
            Err(e) => tracing::debug!(error = %e, "content key copy not refreshed"),
        }
    }

    async fn resync(&self) -> Result<(), StoreError> {
        self.seen.lock().clear();
        let all = self.envelopes().await?;
        *self.copy.write() = Arc::new(all);
        Ok(())
    }
}

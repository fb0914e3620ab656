//! The fleet's epoch: an emptied Redis (`FLUSHALL`, a restart without persistence, a lost
//! volume) is noticed by every node, and the fleet recovers to a stated state instead of
//! carrying on as if nothing had happened.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `sluice:{epoch}` | hash `id`, `since`, `at` | the epoch: a random id made with the marker; `since`: tokens issued and credentials minted before this second (Redis's clock) cannot be vouched for; `at`: when the marker was made |
//! | `sluice:{probe}:<node>` | string, `PX 5000` | the supervisor's probe write: does Redis take writes? |
//!
//! **Detection.** On every (re)connection — before the new connection serves a request — and
//! after every supervisor `PING` (each second), a node reads the marker. A node that knows
//! an epoch and finds it missing or replaced has lost the fleet's state: revocations, use
//! counts, API keys, stream ids, content keys, ctx contexts may all be gone. A node that
//! knows none (it just started) adopts the marker, or makes it (`since` 0: a new fleet, or
//! an upgrade of one that ran without a marker).
//!
//! **Recovery, exactly.**
//! - The node that finds the marker missing makes a new one with `since` = the next second
//!   (one script: whoever comes first makes it, the others adopt it); a node that knew the
//!   old epoch and finds a new one raises `since` to the second after the new one's `at` (a
//!   node that had just started may have made it with `since` 0). Entry loads of tokens whose
//!   `iat` is before `since`, and requests with credentials minted before it, are refused as
//!   revoked tokens are (`410 Token revoked`), on every node, until they expire: their
//!   revocations and use counts cannot be vouched for (fail closed). `verify` says the same.
//! - Stream ids and content keys are put back from each node's copy as of its last check
//!   that found the epoch intact (so nothing read from the emptied Redis, and nothing deleted
//!   before the loss), with "set if absent" semantics: a value written after the loss is
//!   never overwritten. Only within [`RESTORE_WINDOW_SECS`] of the new marker: a node that
//!   notices later (it was cut off) puts nothing back, since its copy may undo changes made
//!   since. What could not be put back is listed at warn and counted.
//! - The default admin key is made again and printed by one node (the once-per-fleet
//!   `SET NX` of [`super::records::API_KEYS_BOOTSTRAP`]); other API keys are gone.
//! - Every local snapshot is taken again, as after a resubscription.
//! - `sluice_redis_epoch_changes_total` counts it on each node, with one warn line
//!   `redis state lost (epoch X → Y) …`.
//!
//! A node's knowledge of the epoch lives in memory: a fleet whose every node restarted while
//! Redis was emptied cannot tell, and starts a new epoch with `since` 0.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use once_cell::sync::Lazy;
use parking_lot::{Mutex, RwLock};
use prometheus::{register_int_counter, register_int_counter_vec, IntCounter, IntCounterVec};
use redis::aio::MultiplexedConnection;

use super::records::{RedisContentKeys, CONTENT_KEYS, STREAM_IDS, STREAM_ID_SEQ};
use super::{EventSink, Redis, BULK_TIMEOUT, EVENTS};
use crate::store::api_keys::ApiKeyStore;
use crate::store::stream_ids::{StreamId, StreamRegistry};
use crate::store::StoreError;

/// The epoch marker.
pub const EPOCH_KEY: &str = "sluice:{epoch}";
/// How long after a new marker a node still puts its copies back.
pub const RESTORE_WINDOW_SECS: i64 = 10;
/// Rows per restore script.
const RESTORE_BATCH: usize = 500;
/// Bound of the marker read and the probe write.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Epoch changes this node noticed (an emptied Redis).
pub static EPOCH_CHANGES: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "sluice_redis_epoch_changes_total",
        "Times this node found the Redis epoch marker missing or replaced: the shared state was lost"
    )
    .expect("metric registers once")
});

/// What a node put back after a loss, by kind and outcome.
pub static RESTORES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_redis_epoch_restores_total",
        "Rows put back into an emptied Redis from this node's copy, by kind (stream_ids, content_keys) and outcome (restored; present: already in Redis, put back by another node or written after the loss, kept; missing: could not be put back)",
        &["kind", "outcome"]
    )
    .expect("metric registers once")
});

/// Create the series (at zero) when the Redis client starts.
pub fn init_metrics() {
    Lazy::force(&EPOCH_CHANGES);
    for kind in ["stream_ids", "content_keys"] {
        for outcome in ["restored", "present", "missing"] {
            RESTORES.with_label_values(&[kind, outcome]);
        }
    }
}

/// Make the marker if there is none; return it (`id`, `since`, `at`) and Redis's time.
/// `ARGV[2]`: `fresh` (the caller knows no epoch: `since` 0) or `lost` (the caller knew
/// another one: `since` after the marker's `at`).
static CLAIM: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r"
local now = tonumber(redis.call('TIME')[1])
local id = redis.call('HGET', KEYS[1], 'id')
if not id then
  local since = 0
  if ARGV[2] == 'lost' then since = now + 1 end
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'since', since, 'at', now)
  return {ARGV[1], since, now, now}
end
local since = tonumber(redis.call('HGET', KEYS[1], 'since') or '0')
local at = tonumber(redis.call('HGET', KEYS[1], 'at') or now)
if ARGV[2] == 'lost' and since < at + 1 then
  since = at + 1
  redis.call('HSET', KEYS[1], 'since', since)
end
return {id, since, at, now}
",
    )
});

/// Put stream ids back where no spelling of them exists (as the insert script judges),
/// in order, each with a new insertion number and its notice. Returns (restored, taken).
static RESTORE_STREAM_IDS: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r"
local folded = {}
for _, p in ipairs(redis.call('HKEYS', KEYS[1])) do folded[string.lower(p)] = true end
local restored, taken = {}, {}
for i = 2, #ARGV, 2 do
  local player = ARGV[i]
  local f = string.lower(player)
  if folded[f] then
    taken[#taken + 1] = player
  else
    local rec = cjson.decode(ARGV[i + 1])
    rec['seq'] = redis.call('INCR', KEYS[2])
    redis.call('HSET', KEYS[1], player, cjson.encode(rec))
    redis.call('PUBLISH', ARGV[1], 'streams ' .. player)
    folded[f] = true
    restored[#restored + 1] = player
  end
end
return {restored, taken}
",
    )
});

/// Put sealed content keys back where absent, each with its notice. Returns (restored, taken).
static RESTORE_CONTENT_KEYS: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r"
local restored, taken = {}, {}
for i = 2, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('PUBLISH', ARGV[1], 'ckey ' .. ARGV[i])
    restored[#restored + 1] = ARGV[i]
  else
    taken[#taken + 1] = ARGV[i]
  end
end
return {restored, taken}
",
    )
});

/// The marker as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub id: String,
    /// Tokens issued and credentials minted before this second are refused.
    pub since: i64,
    /// When the marker was made (Redis's clock, seconds).
    pub at: i64,
}

impl Marker {
    /// The marker from `HGETALL`; `None` when there is none (or it is unreadable: the same
    /// to a node, which then makes or adopts another).
    fn parse(fields: &HashMap<String, String>) -> Option<Marker> {
        let id = fields.get("id").filter(|id| !id.is_empty())?.clone();
        let num = |k: &str| fields.get(k).and_then(|v| v.parse::<i64>().ok());
        Some(Marker {
            id,
            since: num("since").unwrap_or(0),
            at: num("at").unwrap_or(0),
        })
    }
}

/// This node's copies, as of its last check that found the epoch intact.
#[derive(Clone, Default)]
struct Copies {
    stream_ids: Option<Arc<Vec<StreamId>>>,
    content_keys: Option<Arc<HashMap<String, String>>>,
}

/// What recovery works with, wired once at start.
#[derive(Default)]
struct Parts {
    api_keys: Option<Arc<dyn ApiKeyStore>>,
    content_keys: Option<Arc<RedisContentKeys>>,
    stream_ids: Option<StreamRegistry>,
}

/// What this node knows of the epoch.
pub struct EpochState {
    probe_key: String,
    known: Mutex<Option<Marker>>,
    /// `known.since`, read on every gated request.
    since: AtomicI64,
    vouched: Mutex<Copies>,
    parts: RwLock<Parts>,
    recovering: AtomicBool,
}

impl EpochState {
    /// `node`: this process's random id (its probe key's suffix).
    pub fn new(node: &str) -> EpochState {
        EpochState {
            probe_key: format!("sluice:{}:{node}", super::tag("probe")),
            known: Mutex::new(None),
            since: AtomicI64::new(0),
            vouched: Mutex::new(Copies::default()),
            parts: RwLock::new(Parts::default()),
            recovering: AtomicBool::new(false),
        }
    }

    /// Tokens issued (credentials minted) before this second cannot be vouched for; 0 until
    /// a loss.
    pub fn since(&self) -> i64 {
        self.since.load(Ordering::Acquire)
    }

    /// The epoch id this node knows.
    pub fn id(&self) -> Option<String> {
        self.known.lock().as_ref().map(|m| m.id.clone())
    }

    /// The stores whose copies are put back, and the key store that makes the default admin
    /// key again.
    pub fn keep(&self, api_keys: Arc<dyn ApiKeyStore>, content_keys: Arc<RedisContentKeys>) {
        let mut p = self.parts.write();
        p.api_keys = Some(api_keys);
        p.content_keys = Some(content_keys);
    }

    /// The stream registry whose rows are put back.
    pub fn keep_stream_ids(&self, registry: StreamRegistry) {
        self.parts.write().stream_ids = Some(registry);
    }

    fn copies(&self) -> Copies {
        let p = self.parts.read();
        Copies {
            stream_ids: p.stream_ids.as_ref().map(StreamRegistry::rows),
            content_keys: p.content_keys.as_ref().map(|c| c.kept()),
        }
    }

    fn adopt(&self, m: Marker) {
        self.since.store(m.since, Ordering::Release);
        *self.known.lock() = Some(m);
    }
}

/// What one restore did.
#[derive(Default)]
struct Restored {
    restored: usize,
    present: Vec<String>,
    missing: Vec<String>,
}

impl Redis {
    /// Tokens issued (credentials minted) before this second are refused: the shared state
    /// that could vouch for them was lost ([`self::epoch`](super::epoch)). 0 unless it was.
    pub fn vouched_since(&self) -> i64 {
        self.epoch.since()
    }

    /// Read the marker on `conn` (and probe that writes are taken); on a change, recover.
    /// Called by the supervisor on each new connection before it serves requests, and
    /// after each good `PING`.
    pub(super) async fn check_epoch(self: &Arc<Self>, conn: &MultiplexedConnection) {
        // Taken before the marker is read: if the marker is intact, these predate any loss.
        let candidate = self.epoch.copies();
        self.probe_writes(conn).await;
        let mut c = conn.clone();
        let read = tokio::time::timeout(
            CHECK_TIMEOUT,
            redis::cmd("HGETALL")
                .arg(EPOCH_KEY)
                .query_async::<HashMap<String, String>>(&mut c),
        )
        .await;
        let found = match read {
            Ok(Ok(fields)) => {
                self.refusals.succeeded("epoch_read");
                Marker::parse(&fields)
            }
            Ok(Err(e)) => {
                if super::refuses_for_now(&e) {
                    self.refusals.note(&self.shown, "epoch_read", &e);
                }
                tracing::debug!(error = %e, "redis epoch marker not read");
                return;
            }
            Err(_) => return,
        };
        let known = self.epoch.known.lock().clone();
        match (known, found) {
            (Some(k), Some(f)) if k.id == f.id => {
                if f.since != k.since {
                    tracing::info!(epoch = %f.id, since = f.since, "redis epoch: tokens issued before `since` are refused");
                }
                self.epoch.adopt(f);
                // Not while a recovery is retaking the snapshots: its copies are in between.
                if !self.epoch.recovering.load(Ordering::Acquire) {
                    *self.epoch.vouched.lock() = candidate;
                }
            }
            (None, Some(f)) => {
                tracing::info!(epoch = %f.id, since = f.since, "redis epoch");
                self.epoch.adopt(f);
            }
            (None, None) => {
                if let Some((m, _)) = self.claim(conn, false).await {
                    tracing::info!(epoch = %m.id, "redis epoch");
                    self.epoch.adopt(m);
                }
            }
            (Some(k), found) => self.lost(conn, k, found).await,
        }
    }

    /// `SET sluice:{probe}:<node> 1 PX 5000`: while Redis refuses writes (out of memory,
    /// read-only, unable to persist), `/health` says so even when no request writes.
    async fn probe_writes(&self, conn: &MultiplexedConnection) {
        let mut c = conn.clone();
        let answer = tokio::time::timeout(
            CHECK_TIMEOUT,
            redis::cmd("SET")
                .arg(&self.epoch.probe_key)
                .arg(1)
                .arg("PX")
                .arg(5000)
                .query_async::<()>(&mut c),
        )
        .await;
        match answer {
            Ok(Ok(())) => {
                self.refusals.succeeded("probe");
                self.refusals.writes_accepted();
            }
            Ok(Err(e)) if super::refuses_for_now(&e) => {
                self.refusals.note(&self.shown, "probe", &e);
            }
            _ => {}
        }
    }

    /// The marker after making it if absent (`lost`: `since` after its `at`), and Redis's time.
    async fn claim(&self, conn: &MultiplexedConnection, lost: bool) -> Option<(Marker, i64)> {
        let mut c = conn.clone();
        let id = crate::store::ctx::new_token();
        let answer = tokio::time::timeout(
            CHECK_TIMEOUT,
            CLAIM
                .key(EPOCH_KEY)
                .arg(id)
                .arg(if lost { "lost" } else { "fresh" })
                .invoke_async::<(String, i64, i64, i64)>(&mut c),
        )
        .await;
        match answer {
            Ok(Ok((id, since, at, now))) => {
                self.refusals.succeeded("epoch_claim");
                Some((Marker { id, since, at }, now))
            }
            Ok(Err(e)) if super::refuses_for_now(&e) => {
                // Said at warn once per distinct answer, not every second.
                self.refusals.note(&self.shown, "epoch_claim", &e);
                None
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "redis epoch marker could not be made");
                None
            }
            Err(_) => None,
        }
    }

    /// The epoch this node knew is gone: adopt the new one (refusing what it cannot vouch
    /// for at once), then put copies back and retake snapshots in the background.
    async fn lost(
        self: &Arc<Self>,
        conn: &MultiplexedConnection,
        old: Marker,
        found: Option<Marker>,
    ) {
        if self.epoch.recovering.load(Ordering::Acquire) {
            return;
        }
        // On failure nothing is adopted: the next check finds the loss again.
        let Some((new, now)) = self.claim(conn, true).await else {
            return;
        };
        self.epoch.adopt(new.clone());
        EPOCH_CHANGES.inc();
        let what = if found.is_some() {
            "replaced"
        } else {
            "missing"
        };
        tracing::warn!(
            redis = %self.shown,
            since = new.since,
            "redis state lost (epoch {} → {}): the marker was {what} (FLUSHALL, a restart \
             without persistence?); stream tokens issued and playback credentials minted \
             before {} are refused as revoked until they expire, stream ids and content keys \
             are put back from this node's copy, the default admin key is made again by one \
             node, other API keys and ctx contexts are gone",
            old.id,
            new.id,
            new.since,
        );
        self.epoch.recovering.store(true, Ordering::Release);
        let copies = self.epoch.vouched.lock().clone();
        let me = self.clone();
        self.rt.spawn(async move {
            me.recover(copies, &new, now).await;
            me.epoch.recovering.store(false, Ordering::Release);
        });
    }

    async fn recover(self: &Arc<Self>, copies: Copies, epoch: &Marker, now: i64) {
        // The new connection is published once the supervisor's check returns.
        let mut waited = Duration::ZERO;
        while self.conn.load().is_none() && waited < BULK_TIMEOUT {
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += Duration::from_millis(20);
        }
        let late = now - epoch.at > RESTORE_WINDOW_SECS;
        let streams = match copies.stream_ids {
            Some(rows) if late => Restored {
                missing: rows.iter().map(|r| r.player.clone()).collect(),
                ..Restored::default()
            },
            Some(rows) => self.restore_stream_ids(&rows).await,
            None => Restored::default(),
        };
        let keys = match copies.content_keys {
            Some(keys) if late => Restored {
                missing: keys.keys().cloned().collect(),
                ..Restored::default()
            },
            Some(keys) => self.restore_content_keys(&keys).await,
            None => Restored::default(),
        };
        for (kind, r) in [("stream_ids", &streams), ("content_keys", &keys)] {
            RESTORES
                .with_label_values(&[kind, "restored"])
                .inc_by(r.restored as u64);
            RESTORES
                .with_label_values(&[kind, "present"])
                .inc_by(r.present.len() as u64);
            RESTORES
                .with_label_values(&[kind, "missing"])
                .inc_by(r.missing.len() as u64);
        }
        tracing::warn!(
            epoch = %epoch.id,
            stream_ids = streams.restored,
            content_keys = keys.restored,
            already_there = streams.present.len() + keys.present.len(),
            "redis state lost: put back from this node's copy"
        );
        if !streams.missing.is_empty() || !keys.missing.is_empty() {
            let why = if late {
                format!(
                    "this node noticed the loss {}s after the new epoch began (more than \
                     {RESTORE_WINDOW_SECS}s: its copy may undo changes made since)",
                    now - epoch.at
                )
            } else {
                "the restore failed".to_string()
            };
            tracing::warn!(
                epoch = %epoch.id,
                "redis state lost: not restored ({why}): stream ids [{}], content keys [{}]",
                streams.missing.join(", "),
                keys.missing.join(", "),
            );
        }
        let api_keys = self.epoch.parts.read().api_keys.clone();
        if let Some(api_keys) = api_keys {
            match api_keys.ensure_default_admin().await {
                Ok(Some(key)) => {
                    crate::store::api_keys::announce_default_admin_key(&key);
                    tracing::warn!(
                        epoch = %epoch.id,
                        "redis state lost: this node made the default admin key again (printed \
                         on its standard output); re-create the other API keys with it"
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "redis state lost: the default admin key could not be made again")
                }
            }
        }
        // Every snapshot taken again, as after a resubscription: nothing this node holds
        // outlives the loss unless it was put back.
        let sinks: Vec<Arc<dyn EventSink>> = self.sinks.read().clone();
        for sink in sinks {
            if let Err(e) = sink.resync().await {
                tracing::warn!(topic = sink.topic(), error = %e, "snapshot not retaken after the redis state loss");
            }
        }
    }

    async fn restore_stream_ids(&self, rows: &[StreamId]) -> Restored {
        let mut out = Restored::default();
        for batch in rows.chunks(RESTORE_BATCH) {
            let mut args: Vec<String> = Vec::with_capacity(batch.len() * 2);
            for r in batch {
                let json = serde_json::json!({
                    "publisher": r.publisher,
                    "description": r.description,
                    "seq": 0,
                });
                args.push(r.player.clone());
                args.push(json.to_string());
            }
            let answer: Result<(Vec<String>, Vec<String>), StoreError> = self
                .run_within("epoch_restore", BULK_TIMEOUT, move |mut c| async move {
                    RESTORE_STREAM_IDS
                        .key(STREAM_IDS)
                        .key(STREAM_ID_SEQ)
                        .arg(EVENTS)
                        .arg(args)
                        .invoke_async(&mut c)
                        .await
                })
                .await;
            tally(&mut out, answer, batch.iter().map(|r| r.player.clone()));
        }
        out
    }

    async fn restore_content_keys(&self, keys: &HashMap<String, String>) -> Restored {
        let mut out = Restored::default();
        let rows: Vec<(&String, &String)> = keys.iter().collect();
        for batch in rows.chunks(RESTORE_BATCH) {
            let args: Vec<String> = batch
                .iter()
                .flat_map(|(h, e)| [(*h).clone(), (*e).clone()])
                .collect();
            let answer: Result<(Vec<String>, Vec<String>), StoreError> = self
                .run_within("epoch_restore", BULK_TIMEOUT, move |mut c| async move {
                    RESTORE_CONTENT_KEYS
                        .key(CONTENT_KEYS)
                        .arg(EVENTS)
                        .arg(args)
                        .invoke_async(&mut c)
                        .await
                })
                .await;
            tally(&mut out, answer, batch.iter().map(|(h, _)| (*h).clone()));
        }
        out
    }
}

fn tally(
    out: &mut Restored,
    answer: Result<(Vec<String>, Vec<String>), StoreError>,
    names: impl Iterator<Item = String>,
) {
    match answer {
        Ok((restored, taken)) => {
            out.restored += restored.len();
            out.present.extend(taken);
        }
        Err(e) => {
            tracing::warn!(error = %e, "redis state lost: a restore script failed");
            out.missing.extend(names);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_needs_an_id() {
        let f = |pairs: &[(&str, &str)]| {
            Marker::parse(
                &pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert_eq!(f(&[]), None);
        assert_eq!(f(&[("id", ""), ("since", "5")]), None);
        assert_eq!(
            f(&[("id", "e1"), ("since", "12"), ("at", "11")]),
            Some(Marker {
                id: "e1".into(),
                since: 12,
                at: 11
            })
        );
        assert_eq!(
            f(&[("id", "e1"), ("since", "x")]),
            Some(Marker {
                id: "e1".into(),
                since: 0,
                at: 0
            })
        );
    }
}

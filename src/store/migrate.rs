//! `sluice state migrate --from sqlite --to redis` (and back): move a node's durable state
//! between its SQLite file (`state.sqlite`) and the fleet's Redis (`state.redis`), both
//! named by the same config file.
//!
//! Moved: API keys (hashes, ids, names, permissions, activity), stream ids, sealed content
//! keys (still sealed: the KEK never needs to be present), and revocations still live. Not
//! moved: use counts and proxy contexts (memory-only on one node, gone at its restart
//! anyway), rate-limit windows, access logs (they stay in each node's SQLite file). Rows the
//! target already holds are kept where they would clash (a stream id) or replaced by the
//! source's (an API key with the same hash, a content key of the same media hash), so running
//! it twice changes nothing.

use super::{Db, StoreError, Stores};
use crate::config::Config;

/// One side of a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Redis,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "sqlite" => Ok(Backend::Sqlite),
            "redis" => Ok(Backend::Redis),
            other => Err(format!("`{other}`: use sqlite or redis")),
        }
    }
}

/// What a migration moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Moved {
    pub api_keys: usize,
    pub stream_ids: usize,
    /// Stream ids the target already had (kept).
    pub stream_ids_kept: usize,
    pub content_keys: usize,
    pub revocations: usize,
}

impl std::fmt::Display for Moved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} API key(s), {} stream id(s) ({} already there, kept), {} content key(s), {} revocation(s)",
            self.api_keys, self.stream_ids, self.stream_ids_kept, self.content_keys, self.revocations
        )
    }
}

/// Copy everything durable from `from` to `to`.
///
/// # Errors
/// `state.redis` unset, Redis unreachable, or a store error (the migration stops there;
/// running it again completes it).
pub async fn migrate(config: &Config, from: Backend, to: Backend) -> Result<Moved, StoreError> {
    if from == to {
        return Err(StoreError::Redis(
            "--from and --to name the same store".into(),
        ));
    }
    let redis_cfg = config.redis.as_ref().ok_or_else(|| {
        StoreError::Redis(
            "neither state.redis nor state.redis_sentinel is set in the config: nothing to \
             migrate to or from"
                .into(),
        )
    })?;
    let db = Db::open(&config.sqlite_path)?;
    let sqlite = Stores::local(&db, config)?;
    let redis = super::redis::Redis::start(redis_cfg)?;
    let limit = redis_cfg.timeout.max(std::time::Duration::from_secs(5));
    let connected = {
        let r = redis.clone();
        tokio::task::spawn_blocking(move || r.wait_connected(limit))
            .await
            .unwrap_or(false)
    };
    if !connected {
        return Err(StoreError::Unavailable(format!(
            "redis ({}) did not answer within {limit:?}",
            redis.shown()
        )));
    }
    let shared = Stores::shared(redis, config);
    let (src, dst) = match from {
        Backend::Sqlite => (&sqlite, &shared),
        Backend::Redis => (&shared, &sqlite),
    };
    copy(src, dst).await
}

async fn copy(src: &Stores, dst: &Stores) -> Result<Moved, StoreError> {
    let mut moved = Moved::default();
    let keys = src.api_keys.export().await?;
    // Ids name keys (`sluice keys revoke 3`): never let two different keys share one.
    let taken: std::collections::HashMap<i64, String> = dst
        .api_keys
        .export()
        .await?
        .into_iter()
        .map(|r| (r.id, r.key_hash))
        .collect();
    if let Some(k) = keys
        .iter()
        .find(|k| taken.get(&k.id).is_some_and(|h| *h != k.key_hash))
    {
        return Err(StoreError::Redis(format!(
            "the target already holds another API key with id {}: migrate into an empty store",
            k.id
        )));
    }
    dst.api_keys.import(&keys).await?;
    moved.api_keys = keys.len();
    for row in src.stream_ids.list().await? {
        if dst.stream_ids.insert(&row).await? {
            moved.stream_ids += 1;
        } else {
            moved.stream_ids_kept += 1;
        }
    }
    for (hash, sealed) in src.content_keys.all().await? {
        dst.content_keys.put(&hash, &sealed).await?;
        moved.content_keys += 1;
    }
    // Credentials the source's nodes minted live by its reach: the target keeps revocations
    // at least that long from now on.
    let reach = src.revocations.credential_reach(0).await?;
    dst.revocations.credential_reach(reach).await?;
    let now = chrono::Utc::now().timestamp();
    for (jti, keep_until) in src.revocations.all().await? {
        if keep_until > now {
            dst.revocations.revoke(&jti, keep_until).await?;
            moved.revocations += 1;
        }
    }
    Ok(moved)
}

//! State: SQLite (the system of record of one node) and in-memory snapshots the request path
//! reads — or, for a fleet (`state.redis`), Redis ([`redis`]) behind the same traits.
//!
//! | trait | one node | fleet |
//! |---|---|---|
//! | [`api_keys::ApiKeyStore`] | SQLite `api_keys` | [`redis::records::RedisApiKeys`] |
//! | [`content_keys::ContentKeyStore`] | SQLite `content_keys` | [`redis::records::RedisContentKeys`] |
//! | [`stream_ids::StreamIdStore`] | SQLite `stream_ids` | [`redis::records::RedisStreamIds`] |
//! | [`revocations::RevocationStore`] | SQLite `revoked_tokens` + memory | [`redis::tokens::RedisRevocations`] |
//! | [`use_counts::UseCounter`] | memory | [`redis::tokens::RedisUseCounter`] |
//! | [`ctx::CtxStore`] | memory | [`redis::ctx::RedisCtxStore`] |
//! | [`rate_windows::SharedWindows`] | — (memory windows) | [`redis::rate::RedisWindows`] |
//!
//! Chosen once at start ([`Stores::open`]). Access logs stay in each node's SQLite file.

pub mod access_log;
pub mod api_keys;
pub mod content_keys;
pub mod cookie_jar;
pub mod ctx;
pub mod migrate;
pub mod rate_windows;
pub mod redis;
pub mod revocations;
pub mod sqlite;
pub mod stream_ids;
pub mod use_counts;

use std::sync::Arc;

pub use sqlite::{Db, StoreError};
pub use stream_ids::StreamRegistry;

use crate::config::Config;

/// The stores a process runs with.
#[derive(Clone)]
pub struct Stores {
    pub api_keys: Arc<dyn api_keys::ApiKeyStore>,
    pub content_keys: Arc<dyn content_keys::ContentKeyStore>,
    pub stream_ids: Arc<dyn stream_ids::StreamIdStore>,
    pub revocations: Arc<dyn revocations::RevocationStore>,
    pub uses: Arc<dyn use_counts::UseCounter>,
    pub ctx: Arc<dyn ctx::CtxStore>,
    /// The fleet's rate-limit windows.
    pub windows: Option<Arc<dyn rate_windows::SharedWindows>>,
    /// The shared-state connection, on a fleet.
    pub redis: Option<Arc<redis::Redis>>,
}

impl Stores {
    /// The single-node stores over `db`.
    pub fn local(db: &Db, config: &Config) -> Result<Stores, StoreError> {
        Ok(Stores {
            api_keys: Arc::new(api_keys::SqliteApiKeys { db: db.clone() }),
            content_keys: Arc::new(content_keys::SqliteContentKeys { db: db.clone() }),
            stream_ids: Arc::new(stream_ids::SqliteStreamIds { db: db.clone() }),
            revocations: revocations::SqliteRevocations::load(
                db.clone(),
                chrono::Utc::now().timestamp(),
                config.access.streaming.credential_reach(),
            )?,
            uses: Arc::new(use_counts::MemoryUseCounter::default()),
            ctx: Arc::new(ctx::MemoryCtxStore::new(
                config.provider_auth.ctx_capacity,
                config.provider_auth.ctx_per_subject,
            )),
            windows: None,
            redis: None,
        })
    }

    /// The fleet's stores on `redis`; the holders of local snapshots are registered for its
    /// change notices (the caller adds the stream registry, then starts the subscription).
    pub fn shared(redis: Arc<redis::Redis>, config: &Config) -> Stores {
        use self::redis::{ctx::RedisCtxStore, rate::RedisWindows, records, tokens};
        let api_keys = records::RedisApiKeys::new(redis.clone());
        let content_keys = records::RedisContentKeys::new(redis.clone());
        let revocations = tokens::RedisRevocations::new(
            redis.clone(),
            config.access.streaming.credential_reach(),
        );
        let ctx = RedisCtxStore::new(
            redis.clone(),
            config.provider_auth.ctx_capacity,
            config.provider_auth.ctx_per_subject,
        );
        redis.register(revocations.clone());
        redis.register(ctx.clone());
        redis.register(content_keys.clone());
        redis.register(Arc::new(records::DefaultAdminKey(api_keys.clone())));
        redis.epoch.keep(api_keys.clone(), content_keys.clone());
        Stores {
            api_keys,
            content_keys,
            stream_ids: records::RedisStreamIds::new(redis.clone()),
            revocations,
            uses: tokens::RedisUseCounter::new(redis.clone()),
            ctx,
            windows: Some(RedisWindows::new(redis.clone())),
            redis: Some(redis),
        }
    }

    /// The stores `config` asks for. With `state.redis`, the connection is started (in the
    /// background: see [`redis::Redis::wait_connected`]).
    pub fn open(db: &Db, config: &Config) -> Result<Stores, StoreError> {
        match &config.redis {
            None => Self::local(db, config),
            Some(cfg) => Ok(Self::shared(redis::Redis::start(cfg)?, config)),
        }
    }

    /// For a one-shot command (CLI): the stores, with Redis connected or an error naming it.
    pub fn open_connected(db: &Db, config: &Config) -> Result<Stores, StoreError> {
        let stores = Self::open(db, config)?;
        if let Some(r) = &stores.redis {
            let limit = r.timeout().max(std::time::Duration::from_secs(5));
            if !r.wait_connected(limit) {
                return Err(StoreError::Unavailable(format!(
                    "state.redis: {} did not answer within {limit:?}",
                    r.shown()
                )));
            }
        }
        Ok(stores)
    }
}

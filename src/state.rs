//! The process state every request reads: configuration, stores, the cache, the limiters.
//!
//! It sits below both the edge ([`crate::edge`]) and the API ([`crate::api`]): each reads it,
//! neither owns it. Built once by [`crate::server::build`].

use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::store::{Db, StreamRegistry};

/// Shared state of every handler.
pub struct Shared {
    pub config: Arc<Config>,
    pub db: Db,
    pub streams: StreamRegistry,
    pub started: Instant,
    /// The media bucket (or dir origin) and how objects map to its paths.
    pub upstream: crate::upstream::Upstream,
    /// The media cache, when `cache.enabled`.
    pub cache: Option<&'static crate::cache::runtime::CacheRuntime>,
    pub rate_limits: crate::ratelimit::RateLimits,
    pub access_log: crate::store::access_log::AccessLog,
    pub stats: crate::stats::StatsTable,
    pub providers: crate::config::providers::Providers,
    pub ctx_store: Arc<dyn crate::store::ctx::CtxStore>,
    pub provider_jwt: Option<crate::auth::jwt::BearerVerifier>,
    /// Stream-token admission state (signer, revocations, use counts).
    pub access: crate::access::AccessState,
    /// Admin-API keys (SQLite, or Redis on a fleet).
    pub api_keys: Arc<dyn crate::store::api_keys::ApiKeyStore>,
    /// Sealed content keys (SQLite, or Redis on a fleet).
    pub content_keys: Arc<dyn crate::store::content_keys::ContentKeyStore>,
    /// The fleet's shared-state connection (`state.redis`), for health and metrics.
    pub redis: Option<Arc<crate::store::redis::Redis>>,
    /// The cache fleet this node belongs to (`fleet:`); `None`: a single node.
    pub fleet: Option<crate::fleet::Fleet>,
}

pub type AppState = Arc<Shared>;

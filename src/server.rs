//! Wiring: one Pingora `Server` with the edge proxy, the admin service and (for `dir:`
//! buckets) the built-in file origin, all sharing one [`crate::state::Shared`] state.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora_core::server::Server;
use pingora_core::services::listening::Service;
use thiserror::Error;

use crate::admin::AdminApp;
use crate::config::{Bucket, Config};
use crate::edge::Edge;
use crate::origin_dir::DirOrigin;
use crate::state::Shared;
use crate::store::{Db, StoreError, Stores, StreamRegistry};
use crate::upstream::Upstream;

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
}

/// The directory holding sluice's state (the SQLite file's directory).
pub fn state_dir(config: &Config) -> PathBuf {
    match config.sqlite_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Everything built and ready to run; `run_forever` starts serving.
pub struct Sluice {
    pub server: Server,
    pub shared: Arc<Shared>,
    /// This process's claim on the state directory, held while it runs.
    pub lock: crate::instance::InstanceLock,
}

impl Sluice {
    /// Serve until stopped: sluice's own signal handling ([`crate::lifecycle`]) in place of
    /// Pingora's, so a stop drains in-flight responses and exits as soon as they are done.
    /// `startup` reports readiness (pid file; the daemon's parent) once every listener listens.
    pub fn run(self, startup: crate::daemon::Startup) -> ! {
        let conf = self.server.configuration.clone();
        let phases = self.server.watch_execution_phase();
        // The daemon's stderr is server.error_log (reopened on SIGHUP); in the foreground it
        // is whatever the operator gave it.
        let error_log = if startup.detached() {
            conf.error_log.as_ref().map(PathBuf::from)
        } else {
            None
        };
        let signals = crate::lifecycle::Signals::new(
            PathBuf::from(&conf.upgrade_sock),
            error_log,
            self.shared.config.upgrade_wait,
            phases,
        );
        startup.report_when_listening();
        self.server.run(pingora_core::server::RunArgs {
            shutdown_signal: Box::new(signals),
        });
        tracing::info!("stopped");
        drop(self.lock);
        crate::lifecycle::exit_process(0)
    }
}

/// Open state and build the services. `upgrade` takes sockets over from a running instance.
pub fn build(config: Config, upgrade: bool) -> Result<Sluice, StartError> {
    let config = Arc::new(config);
    // First of all: one process per state directory, and every listener bindable. Nothing
    // is written, and no socket replaced, before both hold.
    let lock = crate::instance::acquire(&state_dir(&config), upgrade).map_err(StartError::Setup)?;
    if !upgrade {
        crate::instance::check_listeners(&config.listeners()).map_err(StartError::Setup)?;
    }
    let db = Db::open(&config.sqlite_path)?;
    let stores = Stores::open(&db, &config)?;
    let reserved = config
        .access
        .streaming
        .contents
        .iter()
        .map(|c| c.hash.clone());
    let streams = match &stores.redis {
        None => StreamRegistry::load(db.clone(), reserved)?,
        Some(redis) => fleet_registry(&db, &stores, redis, reserved)?,
    };
    // The dir origin's socket lives in a private directory: nothing but this process may
    // reach the bucket behind the gate.
    let dir_socket = crate::instance::private_run_dir(&state_dir(&config))
        .map_err(StartError::Setup)?
        .join("origin.sock");
    let upstream = Upstream::new(&config.origins, dir_socket.clone());
    let (access_log, mut access_log_writer) =
        crate::store::access_log::AccessLog::new(db.clone(), config.admin.access_log_retention);
    if stores.redis.is_some() {
        access_log_writer = access_log_writer.with_shared_keys(stores.api_keys.clone());
    }
    let mut rate_limits = crate::ratelimit::RateLimits::new(config.rate_limits);
    if let Some(w) = &stores.windows {
        rate_limits = rate_limits.with_shared(w.clone());
    }
    let mut access = crate::access::AccessState::new(
        &config.access,
        stores.revocations.clone(),
        stores.uses.clone(),
    )
    .map_err(StartError::Setup)?;
    access.fail_open = config.redis.as_ref().is_some_and(|r| r.fail_open.playback);
    let shared = Arc::new(Shared {
        config: config.clone(),
        db,
        streams,
        upstream,
        started: Instant::now(),
        cache: config
            .cache
            .enabled
            .then(|| {
                crate::cache::runtime::CacheRuntime::install(&config.cache, &state_dir(&config))
            })
            .transpose()
            .map_err(|e| StartError::Setup(e.to_string()))?,
        rate_limits,
        access_log,
        stats: crate::stats::StatsTable::new(),
        providers: config.providers.clone(),
        ctx_store: stores.ctx.clone(),
        provider_jwt: config.provider_auth.jwt_secret.as_ref().map(|s| {
            crate::auth::jwt::BearerVerifier::new(
                &s.0,
                config.provider_auth.issuer.clone(),
                config.provider_auth.audience.clone(),
            )
        }),
        access,
        api_keys: stores.api_keys.clone(),
        content_keys: stores.content_keys.clone(),
        redis: stores.redis.clone(),
        fleet: config
            .fleet
            .as_ref()
            .map(crate::fleet::Fleet::new)
            .transpose()
            .map_err(|e| StartError::Setup(e.to_string()))?,
    });
    if stores.redis.is_none() {
        ensure_admin_key(&shared.db)?;
    }
    crate::metrics::CACHE_BUDGET_BYTES.set(if config.cache.enabled {
        config.cache.memory_bytes as i64
    } else {
        0
    });
    crate::metrics::init(
        config.metrics.top_streams,
        config
            .access
            .streaming
            .contents
            .iter()
            .map(|c| c.hash.clone())
            .chain(shared.streams.players()),
    );
    // The label sets other modules own.
    crate::access::init_metrics();
    crate::ratelimit::init_metrics();
    crate::fleet::init_metrics();

    let mut server_conf = config.server_conf();
    // `server.daemon: true` has been handled before anything was opened ([`crate::daemon`]):
    // Pingora's own daemon mode would fork here, leaving every thread started above behind.
    server_conf.daemon = false;
    let opt = pingora_core::server::configuration::Opt {
        upgrade,
        daemon: false,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf);
    server.bootstrap();
    let conf = server.configuration.clone();

    if let Bucket::Dir(root) = &config.origins.bucket {
        let root = absolute(root);
        if !root.is_dir() {
            tracing::warn!(dir = %root.display(), "origins.bucket directory does not exist yet");
        }
        if !upgrade {
            // A socket left by a crashed run would make bind fail.
            let _ = std::fs::remove_file(&dir_socket);
        }
        let mut origin = Service::new("sluice dir origin".into(), DirOrigin::new(root));
        origin.add_uds(
            &dir_socket.to_string_lossy(),
            Some(std::os::unix::fs::PermissionsExt::from_mode(0o600)),
        );
        server.add_service(origin);
    }

    let mut proxy = pingora_proxy::http_proxy(&conf, Edge::new(shared.clone()));
    let limits = &config.limits;
    let mut options = pingora_core::apps::HttpServerOptions::default();
    // CONNECT reaches sluice's own hooks (refused there in the route's error shape)
    // instead of Pingora's bare 405.
    options.allow_connect_method_proxying = true;
    options.h2_idle_timeout = Some(limits.keepalive_timeout);
    proxy.server_options = Some(options);
    proxy.h2_options = Some(h2_options(limits));
    let proxy = std::sync::Arc::new(proxy);
    // One admission for both edge listeners: a client's share spans cleartext and TLS.
    let admission = edge_admission(&config);
    let proxy_protocol_from = if config.proxy_protocol {
        config.trusted_proxies.clone()
    } else {
        Vec::new()
    };
    let guard_limits =
        crate::conn::guard::GuardLimits::from_config(limits).with_write_hold(config.write_buffer);
    // One service (one runtime) for both edge listeners; TLS is terminated by the guarded
    // app on the TLS listener's connections (after any PROXY header), so both are plain TCP.
    let mut app = crate::conn::GuardedApp::new(proxy, admission, guard_limits)
        .with_proxy_protocol(proxy_protocol_from);
    if let Some(t) = &config.edge_tls {
        let acceptor = crate::tls::acceptor(&t.cert, &t.key)
            .map_err(|e| StartError::Setup(format!("listen.edge_tls: {e}")))?;
        app = app.with_tls(acceptor, t.addr);
    }
    let mut edge = Service::new("sluice edge".into(), app);
    edge.add_listener(edge_listener(config.edge_addr));
    if let Some(t) = &config.edge_tls {
        edge.add_listener(edge_listener(t.addr));
    }
    server.add_service(edge);

    // The admin listener lives under the same deadlines, with its own connection counts.
    let mut admin = Service::new(
        "sluice admin".into(),
        crate::conn::GuardedApp::new(
            std::sync::Arc::new(AdminApp::new(shared.clone())),
            // The admin listener exempts no one: fleet traffic never goes there.
            crate::conn::admission::Admission::new(
                "admin",
                config.limits.max_connections_per_ip,
                config.limits.max_connections.unwrap_or(4096),
                Vec::new(),
                Vec::new(),
            ),
            crate::conn::guard::GuardLimits::from_config(&config.limits),
        ),
    );
    admin.add_tcp(&config.admin_addr.to_string());
    server.add_service(admin);

    server.add_service(pingora_core::services::background::background_service(
        "sluice housekeeping",
        crate::housekeeping::Housekeeping::new(shared.clone(), access_log_writer),
    ));

    Ok(Sluice {
        server,
        shared,
        lock,
    })
}

/// An edge listening socket. Its write buffer is off: the connection guard holds small
/// writes and sends them with the next one in one vectored send
/// ([`crate::conn::guard::GuardedStream`]), which a copying buffer cannot do without copying
/// every body. (Pingora's default 1,460-byte buffer sent a header and its body in two sends;
/// a 32/64 KiB buffer sent them in one but copied the body: 60 KB parts got slower.)
fn edge_listener(addr: std::net::SocketAddr) -> pingora_core::listeners::ListenerConfig {
    use pingora_core::protocols::l4::stream::L4BufferSettings;
    pingora_core::listeners::ListenerConfig::tcp(addr.to_string()).l4_buffer(L4BufferSettings {
        read: None,
        write: Some(0),
    })
}

/// What one HTTP/2 stream may hold written but not yet sent (h2's default is 400 KiB): a
/// stream the client gives no window holds this much of its own besides the cache's bytes.
/// 64 KiB keeps 128 stalled streams on a connection to 8 MiB and still fills a 10 ms, 50 Mbit/s
/// path per stream.
const H2_SEND_BUFFER: usize = 64 * 1024;

/// HTTP/2 on the edge: streams per connection, the header list bounded like an HTTP/1
/// header, stream resets a client may cause before they are accepted (rapid-reset floods;
/// resets after are counted by [`crate::conn::h2`]) bounded, and each stream's send buffer.
fn h2_options(
    limits: &crate::config::limits::LimitsConfig,
) -> pingora_core::protocols::http::v2::server::H2Options {
    let mut o = pingora_core::protocols::http::v2::server::default_h2_options();
    o.max_concurrent_streams(limits.h2_max_concurrent_streams);
    o.max_header_list_size(limits.max_header_bytes as u32);
    o.max_pending_accept_reset_streams(limits.h2_max_pending_resets as usize);
    o.max_local_error_reset_streams(Some(limits.h2_max_pending_resets as usize));
    o.max_send_buffer_size(H2_SEND_BUFFER);
    o
}

/// The edge's connection ceilings: `limits.max_connections` or half the open-files limit
/// (raised to its hard ceiling first).
fn edge_admission(config: &Config) -> std::sync::Arc<crate::conn::admission::Admission> {
    let nofile = crate::conn::raise_file_limit();
    let max_total = config
        .limits
        .max_connections
        .unwrap_or_else(|| crate::config::limits::default_max_connections(nofile));
    if max_total.saturating_mul(2) > nofile {
        tracing::warn!(
            max_connections = max_total,
            open_files_limit = nofile,
            "limits.max_connections is above half the open-files limit: at the limit, accept() \
             fails (EMFILE) and new connections wait in the listen backlog"
        );
    }
    tracing::info!(
        max_connections = max_total,
        max_connections_per_ip = config.limits.max_connections_per_ip,
        "edge connection limits"
    );
    crate::conn::admission::Admission::new(
        "edge",
        config.limits.max_connections_per_ip,
        max_total,
        config.trusted_proxies.clone(),
        config.fleet_node_addresses(),
    )
}

/// On first start (no API keys at all), create the default admin key and print it once, in
/// the words admin-api.md documents. Only its hash is stored. (On a fleet, the first node to
/// reach Redis with an empty key table does it: [`crate::store::redis::records`].)
fn ensure_admin_key(db: &Db) -> Result<(), StartError> {
    use crate::auth::api_keys;
    let count = db.call_blocking(crate::store::api_keys::count_all)?;
    if count > 0 {
        return Ok(());
    }
    let (_, key) = db.call_blocking(|c| {
        crate::store::api_keys::create(c, "default admin", api_keys::Permission::Admin)
    })?;
    crate::store::api_keys::announce_default_admin_key(&key);
    Ok(())
}

/// A fleet node's stream registry: filled from Redis and kept current by its change notices.
/// Start-up waits (briefly) for the first snapshot so a healthy fleet serves aliases from the
/// first request; a node that cannot reach Redis starts anyway — degraded, failing closed
/// where shared state is needed — and catches up when Redis answers.
fn fleet_registry(
    db: &Db,
    stores: &Stores,
    redis: &Arc<crate::store::redis::Redis>,
    reserved: impl IntoIterator<Item = String>,
) -> Result<StreamRegistry, StartError> {
    // The local file keeps only access logs here; their key ids name keys held in Redis.
    db.call_blocking(|c| c.pragma_update(None, "foreign_keys", "OFF"))?;
    let registry = StreamRegistry::empty(stores.stream_ids.clone(), reserved);
    redis.epoch.keep_stream_ids(registry.clone());
    redis.register(Arc::new(crate::store::redis::records::StreamIdSync(
        registry.clone(),
    )));
    redis.start_sync();
    let wait = redis.timeout().max(Duration::from_secs(3));
    if redis.wait_synced(wait) {
        tracing::info!(redis = %redis.shown(), "shared state: redis");
    } else {
        let health = redis.health();
        let why = match (&health.refused, health.connected) {
            // Redis's own words were logged at warn when it refused.
            (Some(r), _) => format!("redis refuses {} ({})", r.op, r.code),
            (None, true) => "redis connected, local snapshots not taken yet".to_string(),
            (None, false) => "redis not reachable yet".to_string(),
        };
        tracing::error!(
            redis = %redis.shown(),
            "shared state: {why}; serving degraded (gated playback and key delivery fail \
             closed) meanwhile"
        );
    }
    Ok(registry)
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

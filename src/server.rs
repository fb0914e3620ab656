//! Wiring: one Pingora `Server` with the edge proxy, the admin service and (for `dir:`
//! buckets) the built-in file origin, all sharing one [`crate::state::Shared`] state.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use pingora_core::server::Server;
use pingora_core::services::listening::Service;
use thiserror::Error;

use crate::admin::AdminApp;
use crate::config::{Bucket, Config};
use crate::edge::Edge;
use crate::origin_dir::DirOrigin;
use crate::state::Shared;
use crate::store::{Db, StoreError, StreamRegistry};
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

/// Open state and build the services. `upgrade` takes sockets over from a running instance.
pub fn build(config: Config, upgrade: bool) -> Result<Sluice, StartError> {
    let config = Arc::new(config);
    // First of all: one process per state directory, and every listener bindable. Nothing
    // is written, and no socket replaced, before both hold.
    let lock = crate::instance::acquire(&state_dir(&config), upgrade).map_err(StartError::Setup)?;
    if !upgrade {
        crate::instance::check_listeners(&[
            ("listen.edge", config.edge_addr),
            ("listen.admin", config.admin_addr),
        ])
        .map_err(StartError::Setup)?;
    }
    let db = Db::open(&config.sqlite_path)?;
    let streams = StreamRegistry::load(
        db.clone(),
        config
            .access
            .streaming
            .contents
            .iter()
            .map(|c| c.hash.clone()),
    )?;
    let db_for_access = db.clone();
    // The dir origin's socket lives in a private directory: nothing but this process may
    // reach the bucket behind the gate.
    let dir_socket = crate::instance::private_run_dir(&state_dir(&config))
        .map_err(StartError::Setup)?
        .join("origin.sock");
    let upstream = Upstream::new(&config.origins, dir_socket.clone());
    let (access_log, access_log_writer) =
        crate::store::access_log::AccessLog::new(db.clone(), config.admin.access_log_retention);
    let shared = Arc::new(Shared {
        config: config.clone(),
        db,
        streams,
        upstream,
        started: Instant::now(),
        cache: config
            .cache
            .enabled
            .then(|| crate::cache::runtime::CacheRuntime::install(&config.cache))
            .transpose()
            .map_err(|e| StartError::Setup(e.to_string()))?,
        rate_limits: crate::ratelimit::RateLimits::new(config.rate_limits),
        access_log,
        stats: crate::stats::StatsTable::new(),
        providers: config.providers.clone(),
        ctx_store: Arc::new(crate::store::ctx::MemoryCtxStore::new(
            config.provider_auth.ctx_capacity,
            config.provider_auth.ctx_per_subject,
        )),
        provider_jwt: config.provider_auth.jwt_secret.as_ref().map(|s| {
            crate::auth::jwt::BearerVerifier::new(
                &s.0,
                config.provider_auth.issuer.clone(),
                config.provider_auth.audience.clone(),
            )
        }),
        access: crate::access::AccessState::new(
            &config.access,
            crate::store::revocations::SqliteRevocations::load(
                db_for_access,
                chrono::Utc::now().timestamp(),
            )?,
            std::sync::Arc::new(crate::store::use_counts::MemoryUseCounter::default()),
        )
        .map_err(StartError::Setup)?,
    });
    ensure_admin_key(&shared.db)?;

    let server_conf = config.server_conf();
    // `server.daemon: true` forks into the background after binding (systemd Type=forking with
    // PIDFile=server.pid_file, which is how Pingora's graceful upgrade works under systemd).
    let opt = pingora_core::server::configuration::Opt {
        upgrade,
        daemon: server_conf.daemon,
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

    let mut edge = pingora_proxy::http_proxy_service_with_name(
        &conf,
        Edge::new(shared.clone()),
        "sluice edge",
    );
    if let Some(proxy) = edge.app_logic_mut() {
        let mut options = pingora_core::apps::HttpServerOptions::default();
        // CONNECT reaches sluice's own hooks (refused there in the route's error shape)
        // instead of Pingora's bare 405.
        options.allow_connect_method_proxying = true;
        proxy.server_options = Some(options);
    }
    edge.add_tcp(&config.edge_addr.to_string());
    server.add_service(edge);

    let mut admin = Service::new("sluice admin".into(), AdminApp::new(shared.clone()));
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

/// On first start (no API keys at all), create the default admin key and print it once, in
/// the words admin-api.md documents. Only its hash is stored.
fn ensure_admin_key(db: &Db) -> Result<(), StartError> {
    use crate::auth::api_keys;
    let count = db.call_blocking(crate::store::api_keys::count_all)?;
    if count > 0 {
        return Ok(());
    }
    let (_, key) = db.call_blocking(|c| {
        crate::store::api_keys::create(c, "default admin", api_keys::Permission::Admin)
    })?;
    println!("Generated default admin API key: {key}");
    println!("IMPORTANT: Save this key securely. It will not be shown again.");
    Ok(())
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

//! Configuration: the YAML file an operator writes, and the validated [`Config`] the server runs.
//!
//! Two layers, as in river: [`file`] mirrors the YAML (serde, unknown keys rejected), and
//! [`Config::load`] turns it into the internal, validated [`Config`]. Every error names the
//! file, the line and the dotted key, so `sluice check` can point at the mistake.
//!
//! Secrets never need to sit in the file: `${NAME}` in a value is replaced by the environment
//! variable `NAME` after parsing, the value then typed by its key ([`yaml`]; a missing variable
//! is an error naming the line), and keys ending in `_env` name a variable to read a secret
//! from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

pub mod dump;
pub mod fleet;
pub mod host;
pub mod limits;
pub mod providers;
pub mod redis;
pub mod size;
pub mod tokens;
pub mod yaml;

/// A configuration problem, always naming where it is.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error(
        "{file}: line {line}: environment variable `{var}` is not set (referenced as ${{{var}}})"
    )]
    MissingEnv {
        file: String,
        line: usize,
        var: String,
    },
    /// The text is not YAML (or uses what sluice does not read: anchors, tags).
    #[error("{file}: line {line}, column {column}: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: line {line}, column {column}: key `{key}`: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
    #[error("{file}: line {line}: key `{key}`: {message}")]
    Invalid {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
}

/// The YAML shape, one struct per section. Defaults live here so an empty file is valid.
pub mod file {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Default, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct ConfigFile {
        pub listen: Listen,
        pub state: State,
        pub origins: Origins,
        pub cache: Cache,
        pub stream: Stream,
        pub log: Log,
        pub metrics: Metrics,
        pub admin: Admin,
        pub providers: std::collections::BTreeMap<String, super::providers::ProviderFile>,
        pub provider_auth: ProviderAuth,
        pub rate_limits: RateLimits,
        pub trusted_proxies: Vec<String>,
        pub limits: super::limits::file::Limits,
        pub shutdown: Shutdown,
        /// Token surfaces (see [`super::tokens`]).
        pub kek: super::tokens::file::Kek,
        pub key_delivery: super::tokens::file::KeyDelivery,
        pub streaming: super::tokens::file::Streaming,
        pub signed_channels: super::tokens::file::SignedChannels,
        /// The nodes sharing one cache (see [`super::fleet`]).
        pub fleet: Option<super::fleet::file::Fleet>,
        /// Pingora's own `ServerConf`: taken out of the document before this struct is read
        /// and typed by Pingora's struct itself (`Validator::server`); named here so it is a
        /// known key.
        #[serde(skip_serializing)]
        pub server: Option<serde::de::IgnoredAny>,
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Listen {
        pub edge: String,
        pub admin: String,
        /// The edge over TLS (HTTP/2 and HTTP/1.1).
        pub edge_tls: Option<EdgeTls>,
        /// Accept PROXY protocol headers from `trusted_proxies` on the edge listeners.
        pub proxy_protocol: bool,
        /// Bytes of small writes an edge connection holds to send with the next write.
        #[serde(with = "super::size")]
        pub write_buffer: usize,
    }

    impl Default for Listen {
        fn default() -> Self {
            Listen {
                edge: "0.0.0.0:8080".into(),
                admin: "127.0.0.1:8000".into(),
                edge_tls: None,
                proxy_protocol: false,
                write_buffer: super::DEFAULT_WRITE_BUFFER,
            }
        }
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct EdgeTls {
        pub address: String,
        /// PEM certificate chain.
        pub cert: String,
        /// PEM private key.
        pub key: String,
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Shutdown {
        /// How long `SIGQUIT` waits for a new process on `server.upgrade_sock`.
        #[serde(with = "humantime_serde")]
        pub upgrade_wait: std::time::Duration,
    }

    impl Default for Shutdown {
        fn default() -> Self {
            Shutdown {
                upgrade_wait: std::time::Duration::from_secs(30),
            }
        }
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct State {
        pub sqlite: String,
        /// The fleet's shared state (`redis://host:port/db`, `rediss://` for TLS); unset:
        /// SQLite and memory, one node.
        pub redis: Option<String>,
        /// Redis behind Sentinels instead of one URL (exclusive with `redis`).
        pub redis_sentinel: Option<super::redis::file::RedisSentinel>,
        /// Environment variable holding the Redis password (instead of one in the URL).
        pub redis_password_env: Option<String>,
        /// The longest a request waits on Redis.
        #[serde(with = "humantime_serde")]
        pub redis_timeout: std::time::Duration,
        /// What may keep answering while Redis is unreachable: `playback`, `key_delivery`.
        pub redis_fail_open: Vec<String>,
    }

    impl Default for State {
        fn default() -> Self {
            State {
                sqlite: "./data/sluice.db".into(),
                redis: None,
                redis_sentinel: None,
                redis_password_env: None,
                redis_timeout: std::time::Duration::from_millis(200),
                redis_fail_open: Vec::new(),
            }
        }
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Origins {
        pub bucket: String,
        #[serde(with = "humantime_serde")]
        pub connect_timeout: std::time::Duration,
        #[serde(with = "humantime_serde")]
        pub read_timeout: std::time::Duration,
        /// Sent as `Host` upstream; defaults to the bucket URL's host.
        pub host_header: Option<String>,
        /// Fixed addresses of the bucket host instead of DNS (tried in turn).
        pub resolve: Vec<String>,
    }

    impl Default for Origins {
        fn default() -> Self {
            Origins {
                bucket: "dir:./demo/media".into(),
                connect_timeout: std::time::Duration::from_secs(3),
                read_timeout: std::time::Duration::from_secs(15),
                host_header: None,
                resolve: Vec::new(),
            }
        }
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Cache {
        pub enabled: bool,
        #[serde(with = "super::size")]
        pub memory_bytes: u64,
        #[serde(with = "super::size")]
        pub max_object_bytes: u64,
        pub shards: usize,
        #[serde(with = "humantime_serde")]
        pub segment_ttl: std::time::Duration,
        #[serde(with = "humantime_serde")]
        pub vod_playlist_ttl: std::time::Duration,
        #[serde(with = "humantime_serde")]
        pub live_playlist_ttl_max: std::time::Duration,
        #[serde(with = "humantime_serde")]
        pub not_found_ttl: std::time::Duration,
        #[serde(with = "humantime_serde")]
        pub stale_if_error: std::time::Duration,
        #[serde(with = "humantime_serde")]
        pub lock_timeout: std::time::Duration,
        /// How long an LL-HLS blocking playlist reload (`_HLS_msn`) may wait: on the cache
        /// lock and on the origin, which holds it until the part exists (up to 3 × target
        /// duration).
        #[serde(with = "humantime_serde")]
        pub blocking_reload_timeout: std::time::Duration,
        /// The disk tier behind the memory cache; off when absent.
        pub disk: Option<CacheDisk>,
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct CacheDisk {
        pub path: std::path::PathBuf,
        #[serde(with = "super::size")]
        pub bytes: u64,
    }

    impl Default for Cache {
        fn default() -> Self {
            use std::time::Duration;
            Cache {
                enabled: true,
                memory_bytes: 256 * 1024 * 1024,
                max_object_bytes: 64 * 1024 * 1024,
                shards: 16,
                segment_ttl: Duration::from_secs(24 * 3600),
                vod_playlist_ttl: Duration::from_secs(300),
                live_playlist_ttl_max: Duration::from_secs(5),
                not_found_ttl: Duration::from_secs(5),
                stale_if_error: Duration::from_secs(300),
                lock_timeout: Duration::from_secs(10),
                blocking_reload_timeout: Duration::from_secs(20),
                disk: None,
            }
        }
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Stream {
        pub extensions: Vec<String>,
        /// `Cache-Control: max-age` sent to players for playlists.
        #[serde(with = "humantime_serde")]
        pub playlist_max_age: std::time::Duration,
        /// Parts and segments of a live playlist fetched into the cache ahead of players
        /// (the newest ones and the preload hint); 0 turns prefetch off.
        pub prefetch: usize,
    }

    impl Default for Stream {
        fn default() -> Self {
            Stream {
                extensions: [
                    "m3u8", "m4s", "mp4", "jpg", "webp", "ts", "aac", "vtt", "mpd",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                playlist_max_age: std::time::Duration::from_secs(2),
                prefetch: 3,
            }
        }
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Admin {
        /// Requests per minute per client for stream-id routes (admin-api.md `rate_limit_api`).
        pub rate_limit_api: u32,
        /// … for `/stats/{player}` (`rate_limit_stats`).
        pub rate_limit_stats: u32,
        /// … for API key management (`rate_limit_config`).
        pub rate_limit_config: u32,
        /// How long `access_logs` rows are kept.
        #[serde(with = "humantime_serde")]
        pub access_log_retention: std::time::Duration,
    }

    impl Default for Admin {
        fn default() -> Self {
            Admin {
                rate_limit_api: 30,
                rate_limit_stats: 300,
                rate_limit_config: 20,
                access_log_retention: std::time::Duration::from_secs(30 * 86400),
            }
        }
    }

    /// Limits of the public routes, requests per minute (admin and key-delivery classes are
    /// under `admin:` and `key_delivery:`, where their documents put them).
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct RateLimits {
        /// `POST /api/v2/streaming/{token,revoke,drm/license}`, per bearer credential.
        pub streaming: u32,
        /// `GET /api/v2/streaming/verify`, per token.
        pub verify: u32,
        /// The provider Stream Info endpoint, per bearer JWT.
        pub stream_info: u32,
        /// 401/403 answers per client IP on the public credential-checking routes.
        pub auth_failures: u32,
    }

    impl Default for RateLimits {
        fn default() -> Self {
            RateLimits {
                streaming: 1200,
                verify: 120,
                stream_info: 60,
                auth_failures: 60,
            }
        }
    }

    /// How the provider stream endpoint checks `Authorization: Bearer <JWT>`.
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct ProviderAuth {
        /// The HS256 secret (use `${VAR}`), or:
        pub jwt_secret: Option<String>,
        /// the name of an environment variable holding it.
        pub jwt_secret_env: Option<String>,
        pub issuer: Option<String>,
        pub audience: Option<String>,
        /// Live proxy contexts one JWT subject may hold (its oldest is replaced beyond).
        pub ctx_per_subject: usize,
        /// Live proxy contexts in all; a new one beyond is refused (503), never evicting.
        pub ctx_capacity: usize,
    }

    impl Default for ProviderAuth {
        fn default() -> Self {
            ProviderAuth {
                jwt_secret: None,
                jwt_secret_env: None,
                issuer: None,
                audience: None,
                ctx_per_subject: 16,
                ctx_capacity: 100_000,
            }
        }
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Log {
        /// A tracing `EnvFilter` directive; `RUST_LOG` overrides it.
        pub level: String,
        /// One line per request: `true` (the main log, target `sluice::access`), `false`,
        /// `stdout`, or an absolute file path.
        pub access_log: AccessLog,
        /// `text` or `json`.
        pub format: String,
    }

    /// `log.access_log` as written: a bool, or `stdout` / a path.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum AccessLog {
        Enabled(bool),
        Sink(String),
    }

    impl<'de> Deserialize<'de> for AccessLog {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl serde::de::Visitor<'_> for Visitor {
                type Value = AccessLog;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("true, false, stdout or an absolute file path")
                }
                fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<AccessLog, E> {
                    Ok(AccessLog::Enabled(v))
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AccessLog, E> {
                    // A substituted `${VAR}` arrives as a string.
                    Ok(match v {
                        "true" => AccessLog::Enabled(true),
                        "false" => AccessLog::Enabled(false),
                        other => AccessLog::Sink(other.to_string()),
                    })
                }
            }
            d.deserialize_any(Visitor)
        }
    }

    impl Serialize for AccessLog {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                AccessLog::Enabled(b) => s.serialize_bool(*b),
                AccessLog::Sink(v) => s.serialize_str(v),
            }
        }
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Metrics {
        /// Unconfigured hashes (and `/api/proxy` provider/channels) given their own
        /// per-stream series; the rest share `other`.
        pub top_streams: usize,
    }

    impl Default for Metrics {
        fn default() -> Self {
            Metrics {
                top_streams: super::DEFAULT_TOP_STREAMS,
            }
        }
    }

    impl Default for Log {
        fn default() -> Self {
            Log {
                level: "info".into(),
                access_log: AccessLog::Enabled(true),
                format: "text".into(),
            }
        }
    }
}

/// Where media comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bucket {
    /// An HTTP(S) origin: `{base}/{hash}/{rest}`.
    Http(BucketUrl),
    /// A local directory, served through the built-in file origin.
    Dir(PathBuf),
}

/// The parts of an HTTP bucket URL the proxy needs per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash (may be empty).
    pub prefix: String,
}

#[derive(Debug, Clone)]
pub struct Origins {
    pub bucket: Bucket,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub host_header: Option<String>,
    pub resolve: Vec<std::net::IpAddr>,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub enabled: bool,
    pub memory_bytes: usize,
    pub max_object_bytes: usize,
    pub shards: usize,
    pub segment_ttl: Duration,
    pub vod_playlist_ttl: Duration,
    pub live_playlist_ttl_max: Duration,
    pub not_found_ttl: Duration,
    pub stale_if_error: Duration,
    pub lock_timeout: Duration,
    pub blocking_reload_timeout: Duration,
    pub disk: Option<CacheDiskConfig>,
}

/// `cache.disk`: where the disk tier keeps its files and how many bytes of them at most.
#[derive(Debug, Clone)]
pub struct CacheDiskConfig {
    pub path: PathBuf,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Lower-case extensions without the dot.
    pub extensions: Vec<String>,
    pub playlist_max_age: Duration,
    pub prefetch: usize,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub rate_limit_api: u32,
    pub rate_limit_stats: u32,
    pub rate_limit_config: u32,
    pub access_log_retention: Duration,
}

/// A secret from the config or environment; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Requests per minute of each rate-limit class (`admin.rate_limit_*`, `rate_limits.*`, and
/// `key_delivery`'s); the limiter ([`crate::ratelimit`]) reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimitsConfig {
    pub api: u32,
    pub stats: u32,
    pub config: u32,
    pub key: u32,
    pub streaming: u32,
    pub verify: u32,
    pub stream_info: u32,
    pub auth_failures: u32,
}

#[derive(Debug, Clone, Default)]
pub struct ProviderAuthConfig {
    pub jwt_secret: Option<Secret>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub ctx_per_subject: usize,
    pub ctx_capacity: usize,
}

/// `metrics.top_streams` when unset.
pub const DEFAULT_TOP_STREAMS: usize = 20;

/// The most `metrics.top_streams` may be: each admitted name is five series per route.
pub const MAX_TOP_STREAMS: usize = 1000;

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Unconfigured streams admitted to per-stream labels ([`crate::metrics::per_stream`]).
    pub top_streams: usize,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    /// `log.access_log`: where the one line per request goes.
    pub access_log: AccessLogSink,
    pub json: bool,
}

/// Where access-log lines go (`log.access_log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogSink {
    /// `false`: no access lines.
    Off,
    /// `true`: in the main log, on target `sluice::access`.
    MainLog,
    /// `stdout`: on standard output, apart from the main log (stderr).
    Stdout,
    /// A file, opened for appending and reopened on SIGHUP (logrotate).
    File(PathBuf),
}

impl AccessLogSink {
    /// Whether access lines are written at all.
    pub fn on(&self) -> bool {
        *self != AccessLogSink::Off
    }
}

/// The validated configuration the server runs with.
/// `listen.edge_tls`, checked at load (files readable, certificate and key a pair).
#[derive(Debug, Clone)]
pub struct EdgeTlsConfig {
    pub addr: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `listen.write_buffer` default: small writes (a response header, a chunk header, a small
/// body) held to leave with the next write in one vectored send or at the flush. Measured in
/// README "Performance".
pub const DEFAULT_WRITE_BUFFER: usize = 4 * 1024;
/// The largest `listen.write_buffer`.
pub const MAX_WRITE_BUFFER: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub source: String,
    pub edge_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The edge over TLS (`listen.edge_tls`).
    pub edge_tls: Option<EdgeTlsConfig>,
    /// PROXY protocol from `trusted_proxies` on the edge listeners (`listen.proxy_protocol`).
    pub proxy_protocol: bool,
    /// Small writes an edge connection holds, in bytes (`listen.write_buffer`).
    pub write_buffer: usize,
    pub sqlite_path: PathBuf,
    /// The fleet's shared state (`state.redis` or `state.redis_sentinel`); `None`: SQLite and
    /// memory, one node.
    pub redis: Option<redis::RedisConfig>,
    pub origins: Origins,
    pub cache: CacheConfig,
    pub stream: StreamConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub admin: AdminConfig,
    pub providers: providers::Providers,
    pub provider_auth: ProviderAuthConfig,
    /// Requests per minute of every rate-limit class (`key` is filled in with the token
    /// sections).
    pub rate_limits: RateLimitsConfig,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// What one client connection may hold (`limits:`).
    pub limits: limits::LimitsConfig,
    /// How long `SIGQUIT` waits for a successor on the upgrade socket (`shutdown.upgrade_wait`).
    pub upgrade_wait: Duration,
    /// Pingora's `server:` section as written; [`Config::server_conf`] builds the `ServerConf`.
    pub server: serde_yaml::Value,
    /// Key delivery, stream tokens, signed channels and the KEK keyring.
    pub access: tokens::AccessConfig,
    /// The nodes sharing one cache (`fleet:`); `None`: a single node.
    pub fleet: Option<fleet::FleetConfig>,
}

impl Config {
    /// Read, expand, parse and validate `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let (name, text) = read_file(path)?;
        Self::from_str_named(&text, &name, &|v| std::env::var(v).ok())
    }

    /// Parse from text; `file` is only used in error messages. `env` resolves `${NAME}`.
    pub fn from_str_named(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Self::read(text, file, env).map(|(config, _)| config)
    }

    /// Parse, substitute and validate; also the file structs as read (defaults filled in), for
    /// `sluice check --dump`.
    fn read(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Config, file::ConfigFile), ConfigError> {
        let mut root = yaml::parse(text, file)?;
        yaml::substitute(&mut root, file, env)?;
        // Pingora's section is typed by Pingora's own `ServerConf` (see `server_conf_from`).
        let server = yaml::take_key(&mut root, "server");
        let parse_error =
            |(key, line, column, message): (String, usize, usize, String)| ConfigError::Parse {
                file: file.into(),
                line,
                column,
                key,
                message,
            };
        let mut raw: file::ConfigFile = yaml::from_node(&root).map_err(parse_error)?;
        let dump = raw.clone();
        let access = tokens::AccessFile::take(&mut raw);
        let shared_state = redis::RedisFile::take(&mut raw);
        let fleet = raw.fleet.take();
        let validator = Validator { file, text };
        let server = validator.server(server.as_ref())?;
        let mut config = validator.validate(raw, server)?;
        config.access = tokens::validate(&validator, access, env)?;
        config.redis = redis::validate(&validator, shared_state, env)?;
        config.fleet = validator.fleet(fleet, env, config.cache.enabled)?;
        config.rate_limits.key = config.access.key_delivery.rate_limit;
        validator.distinct_secrets(&config)?;
        Ok((config, dump))
    }
}

impl Config {
    /// sluice's own listening addresses: never a proxy target.
    pub fn own_listeners(&self) -> Vec<SocketAddr> {
        self.listeners().into_iter().map(|(_, a)| a).collect()
    }

    /// Every TCP listener with the key that configures it.
    pub fn listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut v = vec![
            ("listen.edge", self.edge_addr),
            ("listen.admin", self.admin_addr),
        ];
        v.extend(
            self.edge_tls
                .as_ref()
                .map(|t| ("listen.edge_tls.address", t.addr)),
        );
        v
    }

    /// How long a playlist answer may wait for its fill: a cache-lock wait, then a connect and
    /// two reads of the origin, and a margin.
    pub fn fill_deadline(&self, blocking: bool) -> Duration {
        let (lock, read) = if blocking {
            (
                self.cache.blocking_reload_timeout,
                self.cache.blocking_reload_timeout,
            )
        } else {
            (self.cache.lock_timeout, self.origins.read_timeout)
        };
        lock + self.origins.connect_timeout + read * 2 + Duration::from_secs(5)
    }

    /// Valid but worth an operator's attention (printed by `sluice check`).
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.access.streaming.public_base_url.is_none() {
            notes.push(
                "streaming.public_base_url is not set: streamUrl is built from each request's \
                 Host (and X-Forwarded-Proto/-Host from trusted_proxies); set it in production"
                    .to_string(),
            );
        }
        notes
    }

    /// Pingora's `ServerConf` from the `server:` section (validated at load, so this succeeds).
    pub fn server_conf(&self) -> pingora_core::server::configuration::ServerConf {
        server_conf_from(&self.server).unwrap_or_default()
    }
}

fn server_conf_from(
    v: &serde_yaml::Value,
) -> Result<pingora_core::server::configuration::ServerConf, String> {
    serde_yaml::from_value(v.clone()).map_err(|e| e.to_string())
}

impl Validator<'_> {
    /// Pingora's `server:` section, typed by Pingora's `ServerConf` (a `${VAR}` there is a
    /// number where Pingora takes one) with sluice's defaults applied: the effective settings,
    /// every key present.
    fn server(&self, node: Option<&yaml::Node>) -> Result<serde_yaml::Value, ConfigError> {
        use pingora_core::server::configuration::ServerConf;
        let mapping = node.and_then(|n| n.as_mapping());
        // Pingora ignores unknown keys; a misspelt `thredas: 2` must not pass silently.
        let known = serde_yaml::to_value(ServerConf::default()).unwrap_or_default();
        for k in mapping.into_iter().flat_map(|m| m.keys()) {
            if !matches!(&known, serde_yaml::Value::Mapping(km) if km.contains_key(k.as_str())) {
                return Err(ConfigError::Invalid {
                    file: self.file.into(),
                    line: k.span().start().map(|m| m.line()).unwrap_or(0),
                    key: format!("server.{}", k.as_str()),
                    message: format!(
                        "unknown key `{}` (not a Pingora server setting)",
                        k.as_str()
                    ),
                });
            }
        }
        let mut conf: ServerConf = match node {
            None => ServerConf::default(),
            Some(n) => {
                yaml::from_node(n).map_err(|(key, line, column, message)| ConfigError::Parse {
                    file: self.file.into(),
                    line,
                    column,
                    key: if key.is_empty() || key == "." {
                        "server".into()
                    } else {
                        format!("server.{key}")
                    },
                    message,
                })?
            }
        };
        let set = |key: &str| mapping.is_some_and(|m| m.keys().any(|k| k.as_str() == key));
        // Pingora defaults to work-stealing runtimes; measured here (benches/load, one worker,
        // 500 connections of 16 KB hits) that gives a 5x nginx p99, against 1.3x with
        // per-thread runtimes at the same throughput. Operators can still ask for stealing
        // explicitly. With per-thread runtimes, several accept tasks per listener keep a burst
        // of new connections from queueing behind established ones (1,000 players joining at
        // once: first-byte max 1.0 s with one accept task, 0.2 s with four).
        if !set("work_stealing") {
            conf.work_stealing = false;
        }
        if !set("listener_tasks_per_fd") {
            conf.listener_tasks_per_fd = 4;
        }
        // The longest a graceful stop or upgrade lets in-flight responses run (a 20 MiB
        // segment to a slow phone); the process exits as soon as nothing is in flight
        // (crate::lifecycle), so this is only an upper bound.
        conf.grace_period_seconds.get_or_insert(30);
        conf.graceful_shutdown_timeout_seconds.get_or_insert(5);
        // Pingora switched users inside its own daemon fork, which sluice does not use
        // (crate::daemon): the service manager runs sluice as its user instead.
        for (key, set) in [
            ("server.user", conf.user.is_some()),
            ("server.group", conf.group.is_some()),
        ] {
            if set {
                return Err(self.err(
                    key,
                    "not supported: start sluice as its user (the systemd unit's User= and Group=)",
                ));
            }
        }
        if conf.threads == 0 {
            return Err(self.err("server.threads", "must be at least 1"));
        }
        serde_yaml::to_value(conf).map_err(|e| self.err("server", e.to_string()))
    }
}

/// The file's name (for messages) and text.
fn read_file(path: &Path) -> Result<(String, String), ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: name.clone(),
        source,
    })?;
    Ok((name, text))
}

struct Validator<'a> {
    file: &'a str,
    text: &'a str,
}

impl Validator<'_> {
    /// Best-effort line of a dotted key: the first line whose key is the last path element,
    /// after the lines of its parents.
    fn line_of(&self, key: &str) -> usize {
        let mut from = 0usize;
        let mut found = 0usize;
        let lines: Vec<&str> = self.text.lines().collect();
        for part in key.split('.') {
            let needle = format!("{part}:");
            match lines
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, l)| l.trim_start().trim_start_matches("- ").starts_with(&needle))
            {
                Some((i, _)) => {
                    found = i + 1;
                    from = i + 1;
                }
                None => break,
            }
        }
        found
    }

    fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.into(),
            line: self.line_of(key),
            key: key.into(),
            message: message.into(),
        }
    }

    /// Every HMAC secret must be its own: a shared one lets a credential of one kind pass as
    /// another (a stream token, which travels in URLs and playlists, as a user bearer).
    fn distinct_secrets(&self, c: &Config) -> Result<(), ConfigError> {
        let a = &c.access;
        let secrets: [(&str, Option<&[u8]>); 6] = [
            (
                "streaming.secret",
                a.streaming.secret.as_ref().map(|s| s.as_bytes()),
            ),
            (
                "streaming.jwt.secret",
                a.streaming.jwt.as_ref().map(|j| j.secret.as_bytes()),
            ),
            (
                "key_delivery.secret",
                a.key_delivery.secret.as_ref().map(|s| s.as_bytes()),
            ),
            (
                "signed_channels.secret",
                a.channels.secret.as_ref().map(|s| s.as_bytes()),
            ),
            (
                "provider_auth.jwt_secret",
                c.provider_auth.jwt_secret.as_ref().map(|s| s.0.as_slice()),
            ),
            (
                "fleet.secret_env",
                c.fleet.as_ref().map(|f| f.secret.0.as_slice()),
            ),
        ];
        for (i, (key, secret)) in secrets.iter().enumerate() {
            let Some(secret) = secret else { continue };
            if let Some((other, _)) = secrets[..i]
                .iter()
                .find(|(_, s)| s.is_some_and(|s| s == *secret))
            {
                return Err(self.err(
                    key,
                    format!("must differ from {other}: every token kind needs its own secret"),
                ));
            }
        }
        Ok(())
    }

    fn addr(&self, key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
        v.parse()
            .map_err(|_| self.err(key, format!("`{v}` is not an address like 0.0.0.0:8080")))
    }

    fn validate(
        &self,
        raw: file::ConfigFile,
        server: serde_yaml::Value,
    ) -> Result<Config, ConfigError> {
        let edge_addr = self.addr("listen.edge", &raw.listen.edge)?;
        let admin_addr = self.addr("listen.admin", &raw.listen.admin)?;
        if edge_addr == admin_addr {
            return Err(self.err("listen.admin", "must differ from listen.edge"));
        }
        let edge_tls = match &raw.listen.edge_tls {
            None => None,
            Some(t) => {
                let addr = self.addr("listen.edge_tls.address", &t.address)?;
                if addr == edge_addr || addr == admin_addr {
                    return Err(self.err(
                        "listen.edge_tls.address",
                        "must differ from listen.edge and listen.admin",
                    ));
                }
                let (cert, key) = (PathBuf::from(&t.cert), PathBuf::from(&t.key));
                crate::tls::server_config(&cert, &key).map_err(|e| {
                    let field = match e {
                        crate::tls::TlsError::NoKey(_) => "listen.edge_tls.key",
                        crate::tls::TlsError::Read(ref p, _) if *p == t.key => {
                            "listen.edge_tls.key"
                        }
                        _ => "listen.edge_tls.cert",
                    };
                    self.err(field, e.to_string())
                })?;
                Some(EdgeTlsConfig { addr, cert, key })
            }
        };
        if raw.state.sqlite.trim().is_empty() {
            return Err(self.err("state.sqlite", "must be a file path"));
        }
        let bucket =
            parse_bucket(&raw.origins.bucket).map_err(|m| self.err("origins.bucket", m))?;
        let mut resolve = Vec::new();
        for a in &raw.origins.resolve {
            resolve.push(
                a.trim().parse::<std::net::IpAddr>().map_err(|_| {
                    self.err("origins.resolve", format!("`{a}` is not an IP address"))
                })?,
            );
        }
        if raw.origins.connect_timeout.is_zero() || raw.origins.read_timeout.is_zero() {
            return Err(self.err("origins.connect_timeout", "timeouts must be above zero"));
        }
        let c = raw.cache;
        if c.enabled && c.memory_bytes < 1024 * 1024 {
            return Err(self.err("cache.memory_bytes", "must be at least 1048576 (1 MiB)"));
        }
        if c.shards == 0 || c.shards > 1024 {
            return Err(self.err("cache.shards", "must be between 1 and 1024"));
        }
        if c.max_object_bytes == 0 || c.max_object_bytes > c.memory_bytes {
            return Err(self.err(
                "cache.max_object_bytes",
                "must be above zero and not above cache.memory_bytes",
            ));
        }
        if let Some(d) = &c.disk {
            if d.path.as_os_str().is_empty() {
                return Err(self.err("cache.disk.path", "must name a directory"));
            }
            if d.bytes < c.max_object_bytes {
                return Err(self.err(
                    "cache.disk.bytes",
                    "must be at least cache.max_object_bytes",
                ));
            }
            // Compared as written (`sluice check` on the host sees the same paths `serve` uses).
            let plain = |p: &Path| -> PathBuf {
                p.components()
                    .filter(|c| !matches!(c, std::path::Component::CurDir))
                    .collect()
            };
            let state_dir = plain(
                Path::new(raw.state.sqlite.trim())
                    .parent()
                    .unwrap_or(Path::new("")),
            );
            if state_dir.starts_with(plain(&d.path)) {
                return Err(self.err(
                    "cache.disk.path",
                    "must not be the state directory (the parent of state.sqlite) nor contain \
                     it: the disk tier's key (disk-cache.key) lives there, apart from the files \
                     it authenticates, and the tier deletes what is not its own in its directories",
                ));
            }
        }
        let mut extensions = Vec::new();
        for e in &raw.stream.extensions {
            let e = e.trim_start_matches('.').to_ascii_lowercase();
            if e.is_empty() || !e.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(self.err("stream.extensions", format!("`{e}` is not an extension")));
            }
            extensions.push(e);
        }
        let mut trusted_proxies = Vec::new();
        for p in &raw.trusted_proxies {
            trusted_proxies.push(parse_cidr(p).ok_or_else(|| {
                self.err("trusted_proxies", format!("`{p}` is not an IP or CIDR"))
            })?);
        }
        let rl = &raw.rate_limits;
        for (key, v) in [
            ("admin.rate_limit_api", raw.admin.rate_limit_api),
            ("admin.rate_limit_stats", raw.admin.rate_limit_stats),
            ("admin.rate_limit_config", raw.admin.rate_limit_config),
            ("rate_limits.streaming", rl.streaming),
            ("rate_limits.verify", rl.verify),
            ("rate_limits.stream_info", rl.stream_info),
            ("rate_limits.auth_failures", rl.auth_failures),
        ] {
            if v == 0 {
                return Err(self.err(key, "must be at least 1 request per minute"));
            }
        }
        let limits = self.limits(raw.limits)?;
        // No provider may reach the media bucket (its objects are gated): refused here, and
        // per request by each provider's host list.
        let bucket_origin =
            providers::BucketOrigin::of(&bucket, raw.origins.host_header.as_deref());
        let providers = providers::Providers::from_file(&raw.providers, bucket_origin.as_ref())
            .map_err(|(key, msg)| self.err(&key, msg))?;
        let pa = raw.provider_auth;
        let jwt_secret = match (pa.jwt_secret, pa.jwt_secret_env) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    "provider_auth.jwt_secret",
                    "give jwt_secret or jwt_secret_env, not both",
                ))
            }
            (Some(s), None) => Some(s),
            (None, Some(var)) => Some(std::env::var(&var).map_err(|_| {
                self.err(
                    "provider_auth.jwt_secret_env",
                    format!("environment variable `{var}` is not set"),
                )
            })?),
            (None, None) => None,
        };
        if let Some(s) = &jwt_secret {
            if s.len() < 16 {
                return Err(self.err("provider_auth.jwt_secret", "must be at least 16 bytes"));
            }
        }
        if pa.ctx_per_subject == 0 || pa.ctx_capacity < pa.ctx_per_subject {
            return Err(self.err(
                "provider_auth.ctx_per_subject",
                "must be at least 1 and not above provider_auth.ctx_capacity",
            ));
        }
        if !providers.by_id.is_empty() && jwt_secret.is_none() {
            return Err(self.err(
                "provider_auth.jwt_secret",
                "providers are configured, so a JWT secret is required",
            ));
        }
        check_log_level(&raw.log.level).map_err(|m| self.err("log.level", m))?;
        let log_json = match raw.log.format.as_str() {
            "text" => false,
            "json" => true,
            other => return Err(self.err("log.format", format!("`{other}`: use text or json"))),
        };
        let access_log = match &raw.log.access_log {
            file::AccessLog::Enabled(true) => AccessLogSink::MainLog,
            file::AccessLog::Enabled(false) => AccessLogSink::Off,
            file::AccessLog::Sink(s) if s == "stdout" => AccessLogSink::Stdout,
            file::AccessLog::Sink(s) if Path::new(s).is_absolute() => {
                AccessLogSink::File(PathBuf::from(s))
            }
            file::AccessLog::Sink(other) => {
                return Err(self.err(
                    "log.access_log",
                    format!("`{other}`: use true, false, stdout or an absolute file path"),
                ))
            }
        };
        if raw.metrics.top_streams > MAX_TOP_STREAMS {
            return Err(self.err(
                "metrics.top_streams",
                format!(
                    "{}: at most {MAX_TOP_STREAMS} (each name is a handful of series)",
                    raw.metrics.top_streams
                ),
            ));
        }
        if raw.listen.write_buffer > MAX_WRITE_BUFFER {
            return Err(self.err(
                "listen.write_buffer",
                format!("at most {MAX_WRITE_BUFFER} bytes (it is allocated per connection)"),
            ));
        }
        Ok(Config {
            source: self.file.to_string(),
            edge_addr,
            admin_addr,
            edge_tls,
            proxy_protocol: raw.listen.proxy_protocol,
            write_buffer: raw.listen.write_buffer,
            sqlite_path: PathBuf::from(raw.state.sqlite),
            // Filled in by `from_str_named` (it needs the environment).
            redis: None,
            origins: Origins {
                bucket,
                connect_timeout: raw.origins.connect_timeout,
                read_timeout: raw.origins.read_timeout,
                host_header: raw.origins.host_header,
                resolve,
            },
            cache: CacheConfig {
                enabled: c.enabled,
                memory_bytes: c.memory_bytes as usize,
                max_object_bytes: c.max_object_bytes as usize,
                shards: c.shards,
                segment_ttl: c.segment_ttl,
                vod_playlist_ttl: c.vod_playlist_ttl,
                live_playlist_ttl_max: c.live_playlist_ttl_max,
                not_found_ttl: c.not_found_ttl,
                stale_if_error: c.stale_if_error,
                lock_timeout: c.lock_timeout,
                blocking_reload_timeout: c.blocking_reload_timeout,
                disk: c.disk.as_ref().map(|d| CacheDiskConfig {
                    path: d.path.clone(),
                    bytes: d.bytes,
                }),
            },
            stream: StreamConfig {
                extensions,
                playlist_max_age: raw.stream.playlist_max_age,
                prefetch: raw.stream.prefetch.min(16),
            },
            log: LogConfig {
                level: raw.log.level,
                access_log,
                json: log_json,
            },
            metrics: MetricsConfig {
                top_streams: raw.metrics.top_streams,
            },
            admin: AdminConfig {
                rate_limit_api: raw.admin.rate_limit_api,
                rate_limit_stats: raw.admin.rate_limit_stats,
                rate_limit_config: raw.admin.rate_limit_config,
                access_log_retention: raw.admin.access_log_retention,
            },
            providers,
            provider_auth: ProviderAuthConfig {
                jwt_secret: jwt_secret.map(|s| Secret(s.into_bytes())),
                issuer: pa.issuer,
                audience: pa.audience,
                ctx_per_subject: pa.ctx_per_subject,
                ctx_capacity: pa.ctx_capacity,
            },
            rate_limits: RateLimitsConfig {
                api: raw.admin.rate_limit_api,
                stats: raw.admin.rate_limit_stats,
                config: raw.admin.rate_limit_config,
                key: 0,
                streaming: rl.streaming,
                verify: rl.verify,
                stream_info: rl.stream_info,
                auth_failures: rl.auth_failures,
            },
            trusted_proxies,
            limits,
            upgrade_wait: raw.shutdown.upgrade_wait,
            server,
            // Filled in by `from_str_named` (they need the environment).
            access: Default::default(),
            fleet: None,
        })
    }
}

/// The levels a `log.level` directive may name.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// `log.level`: a tracing `EnvFilter` directive list (`info`, `info,sluice=debug`) whose every
/// level is one of [`LOG_LEVELS`]. EnvFilter itself reads a bare word that is not a level as a
/// target (`warning` = "everything under a module named warning, at trace"), which turned
/// logging off for a typo; here a bare word must be a level.
pub fn check_log_level(v: &str) -> Result<(), String> {
    let usage = "use off, error, warn, info, debug or trace, or target=level (info,sluice=debug)";
    if v.trim().is_empty() {
        return Err(format!("must name a level: {usage}"));
    }
    for directive in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.trim().is_empty() => level,
            Some(_) => return Err(format!("`{directive}` names no target: {usage}")),
            None => directive,
        };
        if !LOG_LEVELS.contains(&level.trim().to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`{level}` in `{directive}` is not a level: {usage}"
            ));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(v)
        .map(|_| ())
        .map_err(|e| format!("`{v}`: {e}"))
}

/// `http://host[:port][/prefix]`, `https://…` or `dir:PATH`.
pub fn parse_bucket(v: &str) -> Result<Bucket, String> {
    if let Some(dir) = v.strip_prefix("dir:") {
        if dir.is_empty() {
            return Err("`dir:` needs a directory path".into());
        }
        return Ok(Bucket::Dir(PathBuf::from(dir)));
    }
    let url = url::Url::parse(v).map_err(|e| format!("`{v}`: {e}"))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        s => {
            return Err(format!(
                "scheme `{s}` is not supported; use http, https or dir:"
            ))
        }
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a bucket URL takes no query or fragment".into());
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("`{v}` has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    Ok(Bucket::Http(BucketUrl {
        tls,
        host,
        port,
        prefix: url.path().trim_end_matches('/').to_string(),
    }))
}

/// Parse `trusted_proxies` entries: an IP, or a CIDR range.
pub fn parse_cidr(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_str_named(text, "t.yaml", &|v| {
            (v == "SECRET").then(|| "s3cr3t".to_string())
        })
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.edge_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(c.admin_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(c.sqlite_path, PathBuf::from("./data/sluice.db"));
        assert_eq!(c.origins.bucket, Bucket::Dir("./demo/media".into()));
        assert!(c.stream.extensions.contains(&"m3u8".to_string()));
    }

    #[test]
    fn top_streams_defaults_and_is_bounded() {
        assert_eq!(parse("").unwrap().metrics.top_streams, DEFAULT_TOP_STREAMS);
        assert_eq!(
            parse("metrics:\n  top_streams: 5\n")
                .unwrap()
                .metrics
                .top_streams,
            5
        );
        let e = parse("metrics:\n  top_streams: 100000\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("metrics.top_streams") && e.contains("line 2"),
            "{e}"
        );
    }

    #[test]
    fn access_log_is_a_bool_stdout_or_an_absolute_path() {
        let sink = |v: &str| parse(&format!("log:\n  access_log: {v}\n")).map(|c| c.log.access_log);
        assert_eq!(parse("").unwrap().log.access_log, AccessLogSink::MainLog);
        assert_eq!(sink("true").unwrap(), AccessLogSink::MainLog);
        assert_eq!(sink("false").unwrap(), AccessLogSink::Off);
        assert_eq!(sink("stdout").unwrap(), AccessLogSink::Stdout);
        assert_eq!(
            sink("/var/log/sluice/access.log").unwrap(),
            AccessLogSink::File("/var/log/sluice/access.log".into())
        );
        // A typo or a relative path is refused, naming the key and the line.
        for bad in ["off", "access.log", "\"\"", "5"] {
            let e = sink(bad).unwrap_err().to_string();
            assert!(
                e.contains("access_log") && e.contains("line 2"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = parse("listen:\n  edge: 127.0.0.1:1\n  edgee: x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.yaml"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("edgee"), "{e}");
    }

    #[test]
    fn bad_address_names_key() {
        let e = parse("listen:\n  admin: nope\n").unwrap_err().to_string();
        assert!(e.contains("listen.admin") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn write_buffer_defaults_and_is_bounded() {
        assert_eq!(parse("").unwrap().write_buffer, DEFAULT_WRITE_BUFFER);
        assert_eq!(
            parse("listen:\n  write_buffer: 0\n").unwrap().write_buffer,
            0
        );
        let e = parse("listen:\n  write_buffer: 1073741824\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("listen.write_buffer") && e.contains("line 2"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_names_key() {
        let e = parse("cache:\n  memory_bytes: lots\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cache.memory_bytes") && e.contains("line 2"),
            "{e}"
        );
    }

    #[test]
    fn cache_disk_is_off_by_default_and_validated() {
        assert!(parse("").unwrap().cache.disk.is_none());
        let c =
            parse("cache:\n  disk:\n    path: /var/cache/sluice\n    bytes: 1073741824\n").unwrap();
        let d = c.cache.disk.unwrap();
        assert_eq!(
            (d.path.to_str(), d.bytes),
            (Some("/var/cache/sluice"), 1 << 30)
        );
        let e = parse("cache:\n  disk:\n    path: /x\n    bytes: 1000\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cache.disk.bytes"), "{e}");
        let e = parse("cache:\n  disk:\n    path: /x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bytes"), "{e}");
        // The disk tier's key lives in the state directory: never among the files it
        // authenticates (and the tier deletes what is not its own in its directories).
        for (sqlite, disk) in [
            ("/var/lib/sluice/sluice.db", "/var/lib/sluice"),
            ("/var/lib/sluice/sluice.db", "/var/lib/sluice/"),
            ("/var/lib/sluice/state/sluice.db", "/var/lib"),
            ("./data/sluice.db", "data"),
            ("sluice.db", "."),
        ] {
            let e = parse(&format!(
                "state:\n  sqlite: {sqlite}\ncache:\n  disk:\n    path: {disk}\n    bytes: 1GiB\n"
            ))
            .expect_err(disk)
            .to_string();
            assert!(e.contains("cache.disk.path") && e.contains("state"), "{e}");
        }
        for (sqlite, disk) in [
            ("/var/lib/sluice/sluice.db", "/var/cache/sluice"),
            ("/var/lib/sluice/sluice.db", "/var/lib/sluice/cache"),
            ("/var/lib/sluice-state/sluice.db", "/var/lib/sluice"),
        ] {
            parse(&format!(
                "state:\n  sqlite: {sqlite}\ncache:\n  disk:\n    path: {disk}\n    bytes: 1GiB\n"
            ))
            .expect(disk);
        }
    }

    #[test]
    fn env_expansion_and_missing_var() {
        let c = parse("origins:\n  bucket: http://h/${SECRET}\n").unwrap();
        match c.origins.bucket {
            Bucket::Http(u) => assert_eq!(u.prefix, "/s3cr3t"),
            other => panic!("{other:?}"),
        }
        let e = parse("a: 1\nb: ${NOPE}\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("NOPE"), "{e}");
        assert_eq!(
            yaml::expand("$${LIT}", &|_| None).unwrap().as_deref(),
            Some("${LIT}")
        );
    }

    #[test]
    fn bucket_forms() {
        let b = parse_bucket("https://cdn.example.com/media/").unwrap();
        assert_eq!(
            b,
            Bucket::Http(BucketUrl {
                tls: true,
                host: "cdn.example.com".into(),
                port: 443,
                prefix: "/media".into()
            })
        );
        let b = parse_bucket("http://[::1]:9000").unwrap();
        assert!(
            matches!(b, Bucket::Http(ref u) if u.host == "::1" && u.port == 9000 && u.prefix.is_empty())
        );
        assert!(parse_bucket("ftp://x").is_err());
        assert!(parse_bucket("dir:").is_err());
        assert!(parse_bucket("http://h/?q=1").is_err());
    }

    #[test]
    fn server_user_and_group_are_the_service_managers() {
        for key in ["user", "group"] {
            let err = parse(&format!("server:\n  daemon: true\n  {key}: nobody\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("line 3: key `server.{key}`")) && err.contains("User="),
                "{err}"
            );
        }
    }

    #[test]
    fn server_section_passes_through() {
        let c = parse("server:\n  threads: 3\n  grace_period_seconds: 7\n").unwrap();
        assert_eq!(c.server_conf().threads, 3);
        assert!(
            !c.server_conf().work_stealing,
            "per-thread runtimes by default"
        );
        assert_eq!(c.server_conf().listener_tasks_per_fd, 4);
        assert!(
            parse("server:\n  work_stealing: true\n")
                .unwrap()
                .server_conf()
                .work_stealing
        );
        assert_eq!(c.server_conf().grace_period_seconds, Some(7));
        assert!(parse("server:\n  threads: 0\n").is_err());
        let e = parse("server:\n  threads: 2\n  thredas: 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.thredas") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn secrets_must_differ() {
        let shared = "same-secret-0123456789";
        let e = parse(&format!(
            "streaming:\n  secret: {shared}\n  jwt:\n    secret: {shared}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("streaming.jwt.secret") && e.contains("must differ from streaming.secret"),
            "{e}"
        );
        let e = parse(&format!(
            "key_delivery:\n  secret: {shared}\nsigned_channels:\n  secret: {shared}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("signed_channels.secret"), "{e}");
        assert!(parse(
            "key_delivery:\n  secret: one-secret-0123456789\nsigned_channels:\n  secret: two-secret-0123456789\n"
        )
        .is_ok());
    }

    #[test]
    fn log_level_is_a_filter_of_known_levels() {
        for ok in [
            "info",
            "WARN",
            "off",
            "info,sluice=debug",
            "sluice::access=off, warn",
        ] {
            assert!(check_log_level(ok).is_ok(), "{ok}");
            parse(&format!("log:\n  level: \"{ok}\"\n")).unwrap();
        }
        for bad in [
            "warning",
            "",
            "info,sluice=verbose",
            "=info",
            "inf0",
            "5",
            "sluice",
        ] {
            assert!(check_log_level(bad).is_err(), "{bad}");
        }
        let e = parse("log:\n  format: text\n  level: warning\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("log.level") && e.contains("line 3") && e.contains("`warning`"),
            "{e}"
        );
    }

    #[test]
    fn sizes_take_units_everywhere() {
        let c = parse(
            "listen:\n  write_buffer: 8KiB\ncache:\n  memory_bytes: 512MiB\n  max_object_bytes: 64 MiB\n  disk:\n    path: /x\n    bytes: 10GB\nlimits:\n  max_header_bytes: 32kib\n",
        )
        .unwrap();
        assert_eq!(c.write_buffer, 8 << 10);
        assert_eq!(c.cache.memory_bytes, 512 << 20);
        assert_eq!(c.cache.max_object_bytes, 64 << 20);
        assert_eq!(c.cache.disk.unwrap().bytes, 10_000_000_000);
        assert_eq!(c.limits.max_header_bytes, 32 << 10);
        // Plain bytes, and a substituted value (typed by its key, units too).
        assert_eq!(
            parse("cache:\n  memory_bytes: 268435456\n")
                .unwrap()
                .cache
                .memory_bytes,
            268435456
        );
        for (var, want) in [("268435456", 268435456), ("1GiB", 1 << 30)] {
            let c = Config::from_str_named("cache:\n  memory_bytes: ${MEM}\n", "t.yaml", &|v| {
                (v == "MEM").then(|| var.to_string())
            })
            .unwrap();
            assert_eq!(c.cache.memory_bytes, want);
        }
        let e = parse("cache:\n  enabled: true\n  max_object_bytes: 12 parsecs\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cache.max_object_bytes") && e.contains("line 3") && e.contains("256MiB"),
            "{e}"
        );
    }

    #[test]
    fn substituted_values_are_typed_by_their_key() {
        let env = |v: &str| match v {
            "S" => Some("abc #x: [1 0123456789".to_string()),
            "E" => Some("false".to_string()),
            "T" => Some("3".to_string()),
            _ => None,
        };
        let c = Config::from_str_named(
            "# ${UNSET} in a comment\nkey_delivery:\n  secret: ${S} # comment\ncache:\n  enabled: ${E}\n  memory_bytes: 2MiB\n  max_object_bytes: 1MiB\nserver:\n  threads: ${T}\n",
            "t.yaml",
            &env,
        )
        .unwrap();
        assert_eq!(
            c.access.key_delivery.secret.as_ref().unwrap().as_bytes(),
            b"abc #x: [1 0123456789"
        );
        assert!(!c.cache.enabled);
        assert_eq!(c.server_conf().threads, 3);
        let e = Config::from_str_named("\ncache:\n  enabled: ${S}\n", "t.yaml", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cache.enabled") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn cidr_parsing() {
        let c = parse_cidr("10.0.0.0/8").unwrap();
        assert!(c.contains(&"10.1.2.3".parse::<std::net::IpAddr>().unwrap()));
        let one = parse_cidr("127.0.0.1").unwrap();
        assert!(one.contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap()));
        assert!(!one.contains(&"127.0.0.2".parse::<std::net::IpAddr>().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_none());
    }
}

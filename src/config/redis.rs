//! `state.redis*`: the shared state of a fleet (README "Running a fleet").
//!
//! Unset, sluice keeps its state in the embedded SQLite file and in memory (one node). Set,
//! everything nodes must agree on lives in Redis ([`crate::store::redis`]): one server named
//! by `state.redis`, or the master a set of Sentinels names (`state.redis_sentinel`, which
//! survives the master's loss). The URL may carry a password; it is kept in a [`RedisUrl`]
//! whose `Debug` and `Display` show only scheme, host, port and database, so no log line,
//! error or `sluice check` output can print it; Sentinel passwords come only from the
//! environment and are [`super::Secret`]s.

use std::fmt;
use std::time::Duration;

use super::{ConfigError, Validator};

/// The YAML shape of `state.redis_sentinel`.
pub mod file {
    use serde::{Deserialize, Serialize};

    /// `state.redis_sentinel: {master, sentinels, db, tls, sentinel_password_env}`.
    #[derive(Debug, Default, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct RedisSentinel {
        /// The name the Sentinels monitor (`sentinel monitor NAME …`). Required.
        pub master: Option<String>,
        /// `host:port` of each Sentinel (port 26379 when left out). Required.
        pub sentinels: Vec<String>,
        /// The database on the master.
        pub db: i64,
        /// TLS to the Sentinels and to the master they name.
        pub tls: bool,
        /// Environment variable holding the Sentinels' own password (`requirepass` of the
        /// Sentinels); the master's is `state.redis_password_env`.
        pub sentinel_password_env: Option<String>,
    }
}

/// The YAML keys (under `state:`), taken out of the file struct before validation.
#[derive(Debug, Default)]
pub struct RedisFile {
    pub url: Option<String>,
    pub sentinel: Option<file::RedisSentinel>,
    pub password_env: Option<String>,
    pub timeout: Duration,
    pub fail_open: Vec<String>,
}

impl RedisFile {
    pub fn take(raw: &mut super::file::ConfigFile) -> RedisFile {
        RedisFile {
            url: raw.state.redis.take(),
            sentinel: raw.state.redis_sentinel.take(),
            password_env: raw.state.redis_password_env.take(),
            timeout: raw.state.redis_timeout,
            fail_open: std::mem::take(&mut raw.state.redis_fail_open),
        }
    }
}

/// What may keep answering when Redis cannot (`state.redis_fail_open`). Empty by default:
/// everything that needs Redis fails closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailOpen {
    /// Token-gated playback: an entry load is admitted without its use being counted, and
    /// playback credentials are checked against this node's last known revocations.
    pub playback: bool,
    /// `GET /api/key/{hash}` serves the content key this node last read.
    pub key_delivery: bool,
}

/// Where the fleet's shared state lives. Never prints the password.
#[derive(Clone)]
pub struct RedisUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<super::Secret>,
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{scheme}://{host}:{}/{}", self.port, self.db)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

impl RedisUrl {
    /// The client's connection parameters (the password included).
    pub fn connection_info(&self) -> redis::ConnectionInfo {
        let addr = if self.tls {
            redis::ConnectionAddr::TcpTls {
                host: self.host.clone(),
                port: self.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            redis::ConnectionAddr::Tcp(self.host.clone(), self.port)
        };
        redis::ConnectionInfo {
            addr,
            redis: redis::RedisConnectionInfo {
                db: self.db,
                username: self.username.clone(),
                password: self
                    .password
                    .as_ref()
                    .map(|p| String::from_utf8_lossy(&p.0).into_owned()),
                ..Default::default()
            },
        }
    }
}

/// The master behind Sentinels (`state.redis_sentinel`), validated. `Debug` shows no secret.
#[derive(Debug, Clone)]
pub struct SentinelConfig {
    /// The name the Sentinels monitor.
    pub master: String,
    /// `(host, port)` of each Sentinel, in the configured order.
    pub sentinels: Vec<(String, u16)>,
    pub db: i64,
    pub tls: bool,
    /// The master's (and replicas') password: `state.redis_password_env`.
    pub password: Option<super::Secret>,
    /// The Sentinels' password: `state.redis_sentinel.sentinel_password_env`.
    pub sentinel_password: Option<super::Secret>,
}

impl SentinelConfig {
    /// `host:port` of one Sentinel (IPv6 in brackets).
    pub fn shown_sentinel(host: &str, port: u16) -> String {
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }

    /// How to reach one Sentinel (its password included).
    pub fn sentinel_connection_info(&self, host: &str, port: u16) -> redis::ConnectionInfo {
        redis::ConnectionInfo {
            addr: addr(self.tls, host, port),
            redis: redis::RedisConnectionInfo {
                password: self.sentinel_password.as_ref().map(text_of),
                ..Default::default()
            },
        }
    }

    /// How to talk to the master a Sentinel names (database and password included).
    pub fn node_connection_info(&self) -> redis::sentinel::SentinelNodeConnectionInfo {
        redis::sentinel::SentinelNodeConnectionInfo {
            tls_mode: self.tls.then_some(redis::TlsMode::Secure),
            redis_connection_info: Some(redis::RedisConnectionInfo {
                db: self.db,
                password: self.password.as_ref().map(text_of),
                ..Default::default()
            }),
        }
    }
}

impl fmt::Display for SentinelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|(h, p)| Self::shown_sentinel(h, *p))
            .collect();
        write!(
            f,
            "master {} via sentinels {}{} db {}",
            self.master,
            sentinels.join(","),
            if self.tls { " (tls)" } else { "" },
            self.db
        )
    }
}

fn text_of(s: &super::Secret) -> String {
    String::from_utf8_lossy(&s.0).into_owned()
}

fn addr(tls: bool, host: &str, port: u16) -> redis::ConnectionAddr {
    if tls {
        redis::ConnectionAddr::TcpTls {
            host: host.to_string(),
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        redis::ConnectionAddr::Tcp(host.to_string(), port)
    }
}

/// Where the fleet's shared state is: one server, or whichever master the Sentinels name.
#[derive(Debug, Clone)]
pub enum RedisEndpoint {
    /// `state.redis`.
    Url(RedisUrl),
    /// `state.redis_sentinel`.
    Sentinel(SentinelConfig),
}

impl RedisEndpoint {
    /// Every password this endpoint holds (for redaction).
    pub fn secrets(&self) -> Vec<&super::Secret> {
        match self {
            RedisEndpoint::Url(u) => u.password.iter().collect(),
            RedisEndpoint::Sentinel(s) => s.password.iter().chain(&s.sentinel_password).collect(),
        }
    }
}

impl fmt::Display for RedisEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisEndpoint::Url(u) => u.fmt(f),
            RedisEndpoint::Sentinel(s) => s.fmt(f),
        }
    }
}

/// `state.redis` (or `state.redis_sentinel`) and its companions, validated.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub endpoint: RedisEndpoint,
    /// The longest any request waits on Redis (`state.redis_timeout`).
    pub timeout: Duration,
    pub fail_open: FailOpen,
}

/// Parse `redis://[user[:password]@]host[:port][/db]` or `rediss://…` (TLS).
pub fn parse_url(v: &str) -> Result<RedisUrl, String> {
    let url = url::Url::parse(v).map_err(|e| format!("not a URL: {e}"))?;
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        s => return Err(format!("scheme `{s}`: use redis:// or rediss://")),
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("the URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a Redis URL takes no query or fragment".into());
    }
    let db = match url.path().trim_start_matches('/') {
        "" => 0,
        d => d
            .parse::<i64>()
            .ok()
            .filter(|n| (0..=15).contains(n))
            .ok_or("the path is the database number, 0 to 15")?,
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| "the URL's user or password is not UTF-8".to_string())
    };
    let username = match url.username() {
        "" => None,
        u => Some(decode(u)?),
    };
    let password = url
        .password()
        .map(decode)
        .transpose()?
        .map(|p| super::Secret(p.into_bytes()));
    Ok(RedisUrl {
        tls,
        host,
        port: url.port().unwrap_or(6379),
        db,
        username,
        password,
    })
}

/// `host[:port]` of a Sentinel (26379 when the port is left out; IPv6 in brackets). The
/// message never repeats the text: a mistaken entry may hold a password.
pub fn parse_sentinel(v: &str) -> Result<(String, u16), String> {
    const SHAPE: &str = "not host:port";
    let url =
        url::Url::parse(&format!("redis://{}", v.trim())).map_err(|e| format!("{SHAPE} ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{SHAPE}: no user or password here (the Sentinels' password is sentinel_password_env)"
        ));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{SHAPE}: no path or query"));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or(format!("{SHAPE}: no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, url.port().unwrap_or(26379)))
}

/// `state.redis_sentinel`, validated; `password` is the master's (`state.redis_password_env`).
fn sentinel(
    v: &Validator<'_>,
    raw: file::RedisSentinel,
    password: Option<super::Secret>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SentinelConfig, ConfigError> {
    let master = raw
        .master
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            v.err(
                "state.redis_sentinel.master",
                "required: the name the Sentinels monitor (`sentinel monitor NAME …`)",
            )
        })?;
    if master.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(v.err("state.redis_sentinel.master", "a master name has no spaces"));
    }
    if raw.sentinels.is_empty() {
        return Err(v.err(
            "state.redis_sentinel.sentinels",
            "required: the Sentinels' host:port, at least one (three or more for a quorum)",
        ));
    }
    let sentinels = raw
        .sentinels
        .iter()
        .enumerate()
        .map(|(i, s)| {
            parse_sentinel(s).map_err(|m| {
                v.err(
                    "state.redis_sentinel.sentinels",
                    format!("entry {}: {m}", i + 1),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !(0..=15).contains(&raw.db) {
        return Err(v.err("state.redis_sentinel.db", "the database number, 0 to 15"));
    }
    let sentinel_password = raw
        .sentinel_password_env
        .map(|var| {
            env(&var)
                .filter(|p| !p.is_empty())
                .map(|p| super::Secret(p.into_bytes()))
                .ok_or_else(|| {
                    v.err(
                        "state.redis_sentinel.sentinel_password_env",
                        format!("environment variable `{var}` is not set"),
                    )
                })
        })
        .transpose()?;
    Ok(SentinelConfig {
        master,
        sentinels,
        db: raw.db,
        tls: raw.tls,
        password,
        sentinel_password,
    })
}

/// Validate the `state.redis*` keys. `env` resolves `state.redis_password_env` and
/// `state.redis_sentinel.sentinel_password_env`.
pub(super) fn validate(
    v: &Validator<'_>,
    raw: RedisFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<RedisConfig>, ConfigError> {
    let password = |var: &str| {
        env(var)
            .filter(|p| !p.is_empty())
            .map(|p| super::Secret(p.into_bytes()))
            .ok_or_else(|| {
                v.err(
                    "state.redis_password_env",
                    format!("environment variable `{var}` is not set"),
                )
            })
    };
    let endpoint = match (raw.url, raw.sentinel) {
        (Some(_), Some(_)) => {
            return Err(v.err(
                "state.redis_sentinel",
                "state.redis and state.redis_sentinel exclude each other: give the one URL or \
                 the Sentinels",
            ))
        }
        (None, None) => {
            for (key, set) in [
                ("state.redis_password_env", raw.password_env.is_some()),
                ("state.redis_fail_open", !raw.fail_open.is_empty()),
            ] {
                if set {
                    return Err(v.err(
                        key,
                        "only meaningful with state.redis or state.redis_sentinel",
                    ));
                }
            }
            return Ok(None);
        }
        (None, Some(s)) => {
            let pw = raw.password_env.as_deref().map(password).transpose()?;
            RedisEndpoint::Sentinel(sentinel(v, s, pw, env)?)
        }
        (Some(text), None) => {
            // The message never repeats the URL: it may hold a password.
            let mut url = parse_url(text.trim()).map_err(|m| v.err("state.redis", m))?;
            if let Some(var) = &raw.password_env {
                if url.password.is_some() {
                    return Err(v.err(
                        "state.redis_password_env",
                        "the URL already has a password: give one or the other",
                    ));
                }
                url.password = Some(password(var)?);
            }
            RedisEndpoint::Url(url)
        }
    };
    if raw.timeout < Duration::from_millis(10) || raw.timeout > Duration::from_secs(10) {
        return Err(v.err("state.redis_timeout", "must be between 10ms and 10s"));
    }
    let mut fail_open = FailOpen::default();
    for what in &raw.fail_open {
        match what.as_str() {
            "playback" => fail_open.playback = true,
            "key_delivery" => fail_open.key_delivery = true,
            other => {
                return Err(v.err(
                    "state.redis_fail_open",
                    format!("`{other}`: the list may hold playback and key_delivery"),
                ))
            }
        }
    }
    Ok(Some(RedisConfig {
        endpoint,
        timeout: raw.timeout,
        fail_open,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_str_named(text, "t.yaml", &|v| match v {
            "DATA_PW" => Some("data-s3cret".into()),
            "SENT_PW" => Some("sentinel-s3cret".into()),
            _ => None,
        })
    }

    /// `(line, key, message)` of a refused config.
    fn refused(text: &str) -> (usize, String, String) {
        match load(text) {
            Err(ConfigError::Invalid {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected a refusal naming a key, got {other:?}"),
        }
    }

    #[test]
    fn sentinel_config_is_read_and_never_shows_a_password() {
        let c = load(
            "state:\n  redis_password_env: DATA_PW\n  redis_sentinel:\n    master: edge-state\n    \
             sentinels: [\"10.0.0.1:26380\", \"sentinel-b\", \"[::1]:26381\"]\n    db: 3\n    \
             tls: true\n    sentinel_password_env: SENT_PW\n",
        )
        .unwrap();
        let r = c.redis.expect("shared state configured");
        let RedisEndpoint::Sentinel(s) = &r.endpoint else {
            panic!("not a sentinel endpoint: {:?}", r.endpoint);
        };
        assert_eq!(s.master, "edge-state");
        assert_eq!(
            s.sentinels,
            vec![
                ("10.0.0.1".to_string(), 26380),
                ("sentinel-b".to_string(), 26379),
                ("::1".to_string(), 26381)
            ]
        );
        assert_eq!((s.db, s.tls), (3, true));
        let shown = format!("{} {:?}", r.endpoint, r.endpoint);
        assert_eq!(
            r.endpoint.to_string(),
            "master edge-state via sentinels 10.0.0.1:26380,sentinel-b:26379,[::1]:26381 (tls) db 3"
        );
        assert!(!shown.contains("s3cret"), "{shown}");
        // The Sentinels get their password, the master its own, over TLS, on its database.
        let sent = s.sentinel_connection_info("10.0.0.1", 26380);
        assert_eq!(sent.redis.password.as_deref(), Some("sentinel-s3cret"));
        assert!(matches!(sent.addr, redis::ConnectionAddr::TcpTls { .. }));
        let node = s.node_connection_info();
        let info = node.redis_connection_info.expect("node info");
        assert_eq!(
            (info.db, info.password.as_deref()),
            (3, Some("data-s3cret"))
        );
        assert!(matches!(node.tls_mode, Some(redis::TlsMode::Secure)));
        assert_eq!(r.endpoint.secrets().len(), 2);
    }

    #[test]
    fn sentinel_mistakes_name_their_key_and_line() {
        let both = "state:\n  redis: redis://h:6379/0\n  redis_sentinel:\n    master: m\n    \
                    sentinels: [\"h:26379\"]\n";
        let (line, key, message) = refused(both);
        assert_eq!((line, key.as_str()), (3, "state.redis_sentinel"));
        assert!(message.contains("exclude each other"), "{message}");
        for (text, want_key, want_line) in [
            (
                "state:\n  redis_sentinel:\n    sentinels: [\"h:26379\"]\n",
                "state.redis_sentinel.master",
                2,
            ),
            (
                "state:\n  redis_sentinel:\n    master: m\n",
                "state.redis_sentinel.sentinels",
                2,
            ),
            (
                "state:\n  redis_sentinel:\n    master: m\n    sentinels: [\"h:26379/1\"]\n",
                "state.redis_sentinel.sentinels",
                4,
            ),
            (
                "state:\n  redis_sentinel:\n    master: m\n    sentinels: [\"u:pw@h:1\"]\n",
                "state.redis_sentinel.sentinels",
                4,
            ),
            (
                "state:\n  redis_sentinel:\n    master: m\n    sentinels: [h]\n    db: 16\n",
                "state.redis_sentinel.db",
                5,
            ),
            (
                "state:\n  redis_sentinel:\n    master: m\n    sentinels: [h]\n    \
                 sentinel_password_env: NOPE\n",
                "state.redis_sentinel.sentinel_password_env",
                5,
            ),
            (
                "state:\n  redis_password_env: NOPE\n  redis_sentinel:\n    master: m\n    \
                 sentinels: [h]\n",
                "state.redis_password_env",
                2,
            ),
            (
                "state:\n  redis_fail_open: [playback]\n",
                "state.redis_fail_open",
                2,
            ),
        ] {
            let (line, key, message) = refused(text);
            assert_eq!(
                (key.as_str(), line),
                (want_key, want_line),
                "{text}: {message}"
            );
            assert!(!message.contains("pw"), "{message}");
        }
    }

    #[test]
    fn urls_parse_and_never_show_the_password() {
        let u = parse_url("redis://:s3cret@10.0.0.5:6380/2").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.db),
            (false, "10.0.0.5", 6380, 2)
        );
        assert_eq!(u.to_string(), "redis://10.0.0.5:6380/2");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(
            u.connection_info().redis.password.as_deref(),
            Some("s3cret")
        );
        let t = parse_url("rediss://user:p%40ss@cache.example:6390").unwrap();
        assert!(t.tls);
        assert_eq!(t.username.as_deref(), Some("user"));
        assert_eq!(t.to_string(), "rediss://cache.example:6390/0");
        assert_eq!(
            parse_url("redis://[::1]/0").unwrap().to_string(),
            "redis://[::1]:6379/0"
        );
        for bad in [
            "http://x",
            "redis://",
            "redis://h/99",
            "redis://h/0?x=1",
            "nope",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}

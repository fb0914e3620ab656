//! `state.redis*`: the shared state of a fleet (README "Running a fleet").
//!
//! Unset, sluice keeps its state in the embedded SQLite file and in memory (one node). Set,
//! everything nodes must agree on lives in Redis ([`crate::store::redis`]). The URL may carry
//! a password; it is kept in a [`RedisUrl`] whose `Debug` and `Display` show only scheme,
//! host, port and database, so no log line, error or `sluice check` output can print it.

use std::fmt;
use std::time::Duration;

use super::{ConfigError, Validator};

/// The YAML keys (under `state:`), taken out of the file struct before validation.
#[derive(Debug, Default)]
pub struct RedisFile {
    pub url: Option<String>,
    pub password_env: Option<String>,
    pub timeout: Duration,
    pub fail_open: Vec<String>,
}

impl RedisFile {
    pub fn take(raw: &mut super::file::ConfigFile) -> RedisFile {
        RedisFile {
            url: raw.state.redis.take(),
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

/// `state.redis` and its companions, validated.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: RedisUrl,
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

/// Validate the `state.redis*` keys. `env` resolves `state.redis_password_env`.
pub(super) fn validate(
    v: &Validator<'_>,
    raw: RedisFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<RedisConfig>, ConfigError> {
    let Some(text) = raw.url else {
        for (key, set) in [
            ("state.redis_password_env", raw.password_env.is_some()),
            ("state.redis_fail_open", !raw.fail_open.is_empty()),
        ] {
            if set {
                return Err(v.err(key, "only meaningful with state.redis"));
            }
        }
        return Ok(None);
    };
    // The message never repeats the URL: it may hold a password.
    let mut url = parse_url(text.trim()).map_err(|m| v.err("state.redis", m))?;
    if let Some(var) = &raw.password_env {
        if url.password.is_some() {
            return Err(v.err(
                "state.redis_password_env",
                "the URL already has a password: give one or the other",
            ));
        }
        let pw = env(var).filter(|p| !p.is_empty()).ok_or_else(|| {
            v.err(
                "state.redis_password_env",
                format!("environment variable `{var}` is not set"),
            )
        })?;
        url.password = Some(super::Secret(pw.into_bytes()));
    }
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
        url,
        timeout: raw.timeout,
        fail_open,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

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

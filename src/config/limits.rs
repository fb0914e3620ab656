//! `limits:` — what one client connection may hold on the edge: how long its request header
//! may take, how long it may idle between requests or stall a response, how large its
//! header may be, and how many connections one address (and the whole edge) may keep open.
//!
//! Same two layers as the rest of [`super`]: [`file::Limits`] mirrors the YAML,
//! [`Validator::limits`] turns it into [`LimitsConfig`] with errors naming the key.

use std::time::Duration;

use super::{ConfigError, Validator};

/// The YAML shape of `limits:`.
pub mod file {
    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Limits {
        /// The whole request header must arrive within this (from its first byte, or from
        /// the connection's start for its first request).
        #[serde(with = "humantime_serde")]
        pub header_timeout: Duration,
        /// Idle time allowed between two requests on a kept-alive connection.
        #[serde(with = "humantime_serde")]
        pub keepalive_timeout: Duration,
        /// A response that makes no write progress to the client for this long is cut.
        #[serde(with = "humantime_serde")]
        pub send_timeout: Duration,
        /// Largest request header (request line and fields) answered; larger gets 431.
        #[serde(with = "crate::config::size")]
        pub max_header_bytes: u64,
        /// Requests in flight per client address (`trusted_proxies` exempt): each connection
        /// holds one place, each HTTP/2 stream beyond its connection's first another.
        pub max_connections_per_ip: u32,
        /// Open edge connections in all; unset: half the file-descriptor limit.
        pub max_connections: Option<u64>,
        /// HTTP/2: concurrent streams per connection.
        pub h2_max_concurrent_streams: u32,
        /// HTTP/2: stream resets a client may cause per connection (refilled one a second),
        /// before or after the stream was accepted, before the connection is closed with
        /// GOAWAY(ENHANCE_YOUR_CALM) (rapid-reset protection).
        pub h2_max_pending_resets: u32,
    }

    impl Default for Limits {
        fn default() -> Self {
            Limits {
                header_timeout: Duration::from_secs(10),
                keepalive_timeout: Duration::from_secs(60),
                send_timeout: Duration::from_secs(60),
                max_header_bytes: 64 * 1024,
                max_connections_per_ip: 512,
                max_connections: None,
                h2_max_concurrent_streams: 128,
                h2_max_pending_resets: 32,
            }
        }
    }
}

/// Validated `limits:`.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub send_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections_per_ip: u32,
    /// `None`: derived from the file-descriptor limit at start ([`default_max_connections`]).
    pub max_connections: Option<u64>,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_pending_resets: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let f = file::Limits::default();
        LimitsConfig {
            header_timeout: f.header_timeout,
            keepalive_timeout: f.keepalive_timeout,
            send_timeout: f.send_timeout,
            max_header_bytes: f.max_header_bytes as usize,
            max_connections_per_ip: f.max_connections_per_ip,
            max_connections: f.max_connections,
            h2_max_concurrent_streams: f.h2_max_concurrent_streams,
            h2_max_pending_resets: f.h2_max_pending_resets,
        }
    }
}

/// Pingora reads at most 1 MiB of request header; a limit above it could never be reached.
const PINGORA_MAX_HEADER: u64 = 1024 * 1024;

/// Half the file-descriptor limit, keeping some for everything else: a proxied miss holds
/// an upstream connection beside its client's, and SQLite, the cache and logs need a few.
pub fn default_max_connections(nofile: u64) -> u64 {
    (nofile.saturating_sub(256) / 2).max(64)
}

impl Validator<'_> {
    pub(super) fn limits(&self, l: file::Limits) -> Result<LimitsConfig, ConfigError> {
        for (key, d) in [
            ("limits.header_timeout", l.header_timeout),
            ("limits.keepalive_timeout", l.keepalive_timeout),
            ("limits.send_timeout", l.send_timeout),
        ] {
            if d < Duration::from_millis(100) {
                return Err(self.err(key, "must be at least 100ms"));
            }
        }
        if !(1024..=PINGORA_MAX_HEADER).contains(&l.max_header_bytes) {
            return Err(self.err(
                "limits.max_header_bytes",
                "must be between 1024 and 1048576 (Pingora's own ceiling)",
            ));
        }
        if l.max_connections_per_ip == 0 {
            return Err(self.err("limits.max_connections_per_ip", "must be at least 1"));
        }
        if l.max_connections == Some(0) {
            return Err(self.err("limits.max_connections", "must be at least 1"));
        }
        if l.h2_max_concurrent_streams == 0 {
            return Err(self.err("limits.h2_max_concurrent_streams", "must be at least 1"));
        }
        Ok(LimitsConfig {
            header_timeout: l.header_timeout,
            keepalive_timeout: l.keepalive_timeout,
            send_timeout: l.send_timeout,
            max_header_bytes: l.max_header_bytes as usize,
            max_connections_per_ip: l.max_connections_per_ip,
            max_connections: l.max_connections,
            h2_max_concurrent_streams: l.h2_max_concurrent_streams,
            h2_max_pending_resets: l.h2_max_pending_resets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_connection_ceiling_leaves_room_for_upstreams() {
        assert_eq!(default_max_connections(1024), 384);
        assert_eq!(default_max_connections(100), 64);
        assert_eq!(default_max_connections(1_048_576), 524_160);
    }
}

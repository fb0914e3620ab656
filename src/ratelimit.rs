//! Per-class, per-client rate limits (admin-api.md "Rate Limiting"; playback-api key delivery).
//!
//! One GCRA limiter (the `governor` crate) per endpoint class, keyed by client: a burst of the
//! full per-minute quota, refilled evenly over the minute, so the 31st `api` request inside a
//! minute is refused while the `stats` class still answers. The key is the client IP as
//! resolved by [`super::client_ip`] (X-Forwarded-For only from trusted proxies), or another
//! string key where a document says so (the key endpoint limits by bearer token).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// The endpoint classes with their own buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateClass {
    /// Stream-id routes.
    Api,
    /// `GET /stats/{player}`.
    Stats,
    /// API key management.
    Config,
    /// `GET /api/key/{hash}` (playback).
    Key,
}

pub struct RateLimits {
    api: DefaultKeyedRateLimiter<String>,
    stats: DefaultKeyedRateLimiter<String>,
    config: DefaultKeyedRateLimiter<String>,
    key: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN))
}

impl RateLimits {
    /// Requests per minute for each class.
    pub fn new(api: u32, stats: u32, config: u32, key: u32) -> RateLimits {
        RateLimits {
            api: DefaultKeyedRateLimiter::keyed(per_minute(api)),
            stats: DefaultKeyedRateLimiter::keyed(per_minute(stats)),
            config: DefaultKeyedRateLimiter::keyed(per_minute(config)),
            key: DefaultKeyedRateLimiter::keyed(per_minute(key)),
            clock: DefaultClock::default(),
        }
    }

    fn limiter(&self, class: RateClass) -> &DefaultKeyedRateLimiter<String> {
        match class {
            RateClass::Api => &self.api,
            RateClass::Stats => &self.stats,
            RateClass::Config => &self.config,
            RateClass::Key => &self.key,
        }
    }

    /// `Ok` when allowed; `Err(retry_after)` when over the limit.
    pub fn check(&self, class: RateClass, key: &str) -> Result<(), Duration> {
        match self.limiter(class).check_key(&key.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => Err(not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Drop idle keys so the tables do not grow without bound.
    pub fn prune(&self) {
        self.api.retain_recent();
        self.stats.retain_recent();
        self.config.retain_recent();
        self.key.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_have_separate_buckets() {
        let rl = RateLimits::new(30, 300, 20, 120);
        for i in 0..30 {
            assert!(rl.check(RateClass::Api, "1.2.3.4").is_ok(), "request {i}");
        }
        let retry = rl.check(RateClass::Api, "1.2.3.4").unwrap_err();
        assert!(
            retry > Duration::ZERO && retry <= Duration::from_secs(2),
            "{retry:?}"
        );
        // Another class, another client: unaffected.
        assert!(rl.check(RateClass::Stats, "1.2.3.4").is_ok());
        assert!(rl.check(RateClass::Api, "5.6.7.8").is_ok());
        for _ in 0..20 {
            assert!(rl.check(RateClass::Config, "9.9.9.9").is_ok());
        }
        assert!(rl.check(RateClass::Config, "9.9.9.9").is_err());
    }
}

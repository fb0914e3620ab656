//! Rate-limit windows kept where every node sees them: the seam between the limiter
//! ([`crate::ratelimit`], which counts in this node's own windows on a single node) and the
//! fleet's Redis ([`super::redis::rate::RedisWindows`]). The trait lives with the other stores
//! so the store never reaches up into the limiter.

use std::time::Duration;

use super::StoreError;

/// Windows kept where every node sees them (Redis on a fleet,
/// [`super::redis::rate`]): the same exact sliding-window rule, one log per class and
/// client for the whole fleet.
#[async_trait::async_trait]
pub trait SharedWindows: Send + Sync {
    /// Admit one request: `Ok(Ok(ticket))` (the ticket gives the slot back), `Ok(Err(wait))`
    /// when over the limit.
    async fn admit(
        &self,
        class: &'static str,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Result<String, Duration>, StoreError>;
    async fn release(&self, class: &'static str, key: &str, ticket: &str)
        -> Result<(), StoreError>;
}

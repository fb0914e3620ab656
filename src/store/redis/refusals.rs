//! What a reachable Redis refuses (out of memory under `noeviction`, an ACL user without a
//! command, a read-only replica, a server that cannot persist …), remembered per operation so
//! `/health` does not say `ok` while it lasts, and told to the operator at warn once per
//! distinct answer rather than once per request.
//!
//! A refusal is forgotten when the same operation succeeds again, and — for refusals of
//! writes in general (everything but `NOPERM`, which is about one command) — when the
//! supervisor's probe write succeeds ([`super::epoch`]: `SET sluice:{probe}:<node> 1 PX 5000`
//! every second).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::RedisError;

/// A distinct refusal is logged at warn again after this long (with how many were not).
const WARN_AGAIN_AFTER: Duration = Duration::from_secs(60);
/// Distinct messages remembered for the warn-once rule; past it the memory starts over.
const LOGGED_MAX: usize = 256;

/// The refusal `/health` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// sluice's name of the operation (`revoke`, `entry`, `subscribe`, `probe`, …).
    pub op: &'static str,
    /// Redis's error code (`OOM`, `NOPERM`, `READONLY`, `MISCONF`, …).
    pub code: String,
}

impl Refused {
    /// A refusal of writes in general (not one command's permission).
    pub fn of_writes(&self) -> bool {
        self.code != "NOPERM"
    }
}

#[derive(Default)]
struct Inner {
    by_op: BTreeMap<&'static str, Refused>,
    /// `op: message` → (last warned, refusals since not logged at warn).
    logged: HashMap<String, (Instant, u64)>,
}

/// The refusals of this process's Redis, by operation.
#[derive(Default)]
pub struct Refusals {
    /// Anything remembered: the request path skips the lock while nothing is.
    any: AtomicBool,
    inner: Mutex<Inner>,
}

impl Refusals {
    /// Remember that Redis refused `op` with `e`, and tell the operator (at warn the first
    /// time this answer is seen, then at most every [`WARN_AGAIN_AFTER`]).
    pub fn note(&self, redis: &str, op: &'static str, e: &RedisError) {
        let code = e.code().unwrap_or("ERR").to_string();
        let message = format!("{op}: {e}");
        let mut inner = self.inner.lock();
        inner.by_op.insert(op, Refused { op, code });
        self.any.store(true, Ordering::Release);
        if inner.logged.len() >= LOGGED_MAX && !inner.logged.contains_key(&message) {
            inner.logged.clear();
        }
        let now = Instant::now();
        let (warned, quiet) = inner.logged.entry(message).or_insert((now, u64::MAX));
        if *quiet == u64::MAX || now.duration_since(*warned) >= WARN_AGAIN_AFTER {
            let repeated = if *quiet == u64::MAX { 0 } else { *quiet };
            *warned = now;
            *quiet = 0;
            drop(inner);
            tracing::warn!(
                redis = %redis,
                op,
                error = %e,
                repeated,
                "redis refused the operation: requests that need it fail closed (503) and \
                 /health says degraded until it succeeds again"
            );
        } else {
            *quiet += 1;
            drop(inner);
            tracing::debug!(op, error = %e, "redis refused the operation (again)");
        }
    }

    /// `op` succeeded: its refusal, if any, is over.
    pub fn succeeded(&self, op: &'static str) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut inner = self.inner.lock();
        if inner.by_op.remove(op).is_some() {
            tracing::info!(op, "redis accepts the operation again");
        }
        self.any.store(!inner.by_op.is_empty(), Ordering::Release);
    }

    /// A write succeeded: every refusal of writes in general is over (`NOPERM`s stay until
    /// their own operation succeeds).
    pub fn writes_accepted(&self) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut inner = self.inner.lock();
        let before = inner.by_op.len();
        inner.by_op.retain(|_, r| !r.of_writes());
        if inner.by_op.len() < before {
            tracing::info!("redis accepts writes again");
        }
        self.any.store(!inner.by_op.is_empty(), Ordering::Release);
    }

    /// The refusal to report: a refusal of writes before a single command's, then by name.
    pub fn current(&self) -> Option<Refused> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let inner = self.inner.lock();
        inner
            .by_op
            .values()
            .find(|r| r.of_writes())
            .or_else(|| inner.by_op.values().next())
            .cloned()
    }
}

impl super::Redis {
    /// Whether Redis refuses this node's `SUBSCRIBE` (an ACL user without it), asked on a
    /// throwaway connection after a subscription delivered nothing: the pub/sub client of the
    /// `redis` crate (0.32) takes the error reply to `SUBSCRIBE` for a confirmation, so the
    /// refusal would otherwise never be seen. Remembered (and said at warn) when it does.
    pub(super) async fn subscribe_refused(&self) -> bool {
        let limit = self.timeout.max(Duration::from_secs(1));
        let Some(client) = self.client.load_full() else {
            return false;
        };
        let Ok(Ok(mut c)) =
            tokio::time::timeout(limit, client.get_multiplexed_async_connection()).await
        else {
            return false;
        };
        let answer = tokio::time::timeout(
            limit,
            redis::cmd("SUBSCRIBE")
                .arg(&self.heartbeat)
                .query_async::<redis::Value>(&mut c),
        )
        .await;
        match answer {
            Ok(Err(e)) if super::refuses_for_now(&e) => {
                self.refusals.note(&self.shown, "subscribe", &e);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oom() -> RedisError {
        redis::make_extension_error(
            "OOM".into(),
            Some("command not allowed when used memory > 'maxmemory'.".into()),
        )
    }

    #[test]
    fn remembered_until_the_operation_or_a_write_succeeds() {
        let r = Refusals::default();
        assert_eq!(r.current(), None);
        let e = oom();
        assert_eq!(e.code(), Some("OOM"), "{e:?}");
        r.note("redis://x", "revoke", &e);
        assert_eq!(
            r.current(),
            Some(Refused {
                op: "revoke",
                code: "OOM".into()
            })
        );
        // A write elsewhere succeeding ends a refusal of writes.
        r.writes_accepted();
        assert_eq!(r.current(), None);
        r.note("redis://x", "revoke", &e);
        r.succeeded("entry");
        assert!(r.current().is_some());
        r.succeeded("revoke");
        assert_eq!(r.current(), None);
    }
}

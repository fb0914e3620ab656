//! The fleet's shared state on Redis (`state.redis`): one connection per process, on its own
//! runtime thread, behind the same store traits as the single-node SQLite/memory state.
//!
//! ```text
//!  proxy workers (per-thread runtimes)          sluice-redis thread (current-thread runtime)
//!  ──────────────────────────────────          ────────────────────────────────────────────
//!  store call ── spawn(fut) ─────────────────▶ multiplexed command connection ──▶ redis
//!      ▲   waits ≤ state.redis_timeout         supervisor: PING, reconnect, log, metrics
//!      └── answer / Unavailable (fail closed)  heartbeat: PUBLISH sluice:hb:{node} every 200 ms
//!                                              subscription: sluice:events + own heartbeat
//!                                                → local snapshots (revocations, stream ids,
//!                                                  ctx cache, content keys) kept current
//! ```
//!
//! **Why a thread of its own.** Pingora runs each worker on its own single-threaded runtime;
//! a connection whose driver task lived on one of them would stall whenever that worker is
//! busy, and reconnect tasks would die with it. Here every Redis future runs on the
//! `sluice-redis` runtime; a request spawns its command there and waits for the answer at
//! most `state.redis_timeout` (default 200 ms) — no request ever hangs on Redis.
//!
//! **Failure.** A connection error or a timeout wakes the supervisor, which PINGs; a failed
//! PING drops the connection (`sluice_redis_up 0`, one log line) and reconnects with backoff
//! (100 ms doubling to 250 ms), logging the outage's length when it is back. While it is down
//! every store call answers [`StoreError::Unavailable`] at once: callers fail closed (503)
//! unless `state.redis_fail_open` lists their surface.
//!
//! **Sentinel** (`state.redis_sentinel`, [`sentinel`]). The server is whichever master the
//! Sentinels name at each connect; while connected, the supervisor's probe is `ROLE` instead
//! of `PING` (and a command answered `READONLY` wakes it), so a demoted node is left for the
//! new master even when the old one still answers. The subscription reconnects to the same
//! client, and leaves a master the Sentinels no longer name.
//!
//! **Local snapshots and their staleness.** Requests carrying a playback credential must not
//! cost a round trip, so each node keeps the revocation set (and the stream ids, a ctx cache,
//! the content keys it read) in memory, updated by messages on [`EVENTS`]. A snapshot is only
//! trusted while it is provably recent: every 200 ms the node publishes a heartbeat on its own
//! channel, and Redis delivers a subscriber's messages in the order it executed the
//! `PUBLISH`es, so once the heartbeat sent at `T` arrived, every change acknowledged before
//! `T` has arrived too. [`Redis::view_fresh`] holds while the newest heartbeat received was
//! sent less than [`STALENESS_BOUND`] (1 s) ago; otherwise the stores ask Redis directly.
//! After each (re)subscription every snapshot is taken again before the view counts as
//! fresh, so a message missed during an outage is never missed for good.
//!
//! **Refusals and loss.** A reachable Redis that refuses (out of memory, an ACL user without a
//! command, a replica) is remembered until the operation succeeds again, so `/health` says so
//! ([`refusals`]). An emptied Redis is noticed by the epoch marker the supervisor reads on
//! every (re)connection and after every `PING`, and the fleet recovers to a stated state
//! ([`epoch`]).

pub mod ctx;
pub mod epoch;
pub mod rate;
pub mod records;
pub mod refusals;
pub mod sentinel;
pub mod tokens;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use futures_util::StreamExt;
use parking_lot::RwLock;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, RedisResult};
use tokio::sync::Notify;

use super::StoreError;
use crate::config::redis::{FailOpen, RedisConfig, RedisEndpoint};
use crate::metrics;

/// The channel every change notice is published on (`<topic> <argument>`).
pub const EVENTS: &str = "sluice:events";
/// The longest a trusted local snapshot may lag Redis.
pub const STALENESS_BOUND: Duration = Duration::from_secs(1);
const HEARTBEAT_EVERY: Duration = Duration::from_millis(200);
/// A subscription that delivered no heartbeat for this long is presumed dead and replaced.
const SUBSCRIPTION_SILENCE: Duration = Duration::from_secs(3);
const PING_EVERY: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_millis(250);
/// Bound of the bulk calls that are never on a request (snapshots, migration, CLI).
pub const BULK_TIMEOUT: Duration = Duration::from_secs(10);

/// A holder of a local snapshot: told about changes, and asked to take the snapshot again
/// after every (re)subscription.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// The topic of [`EVENTS`] messages this sink wants.
    fn topic(&self) -> &'static str;
    /// One message's argument (after the topic).
    async fn on_event(&self, arg: &str);
    /// Reload everything from Redis (messages may have been missed).
    async fn resync(&self) -> Result<(), StoreError>;
}

/// Publish a change notice (inside scripts, `redis.call('PUBLISH', …)` does the same).
pub fn event(topic: &str, arg: &str) -> redis::Cmd {
    let mut c = redis::cmd("PUBLISH");
    c.arg(EVENTS).arg(format!("{topic} {arg}"));
    c
}

/// How the server is found.
enum Source {
    /// `state.redis`: one address.
    Fixed,
    /// `state.redis_sentinel`: asked of the Sentinels at every connect.
    Sentinel(sentinel::MasterResolver),
}

/// The shared-state connection of this process.
pub struct Redis {
    /// `redis://host:port/db` (or the master's name and the Sentinels), never the password.
    shown: String,
    source: Source,
    /// The server connected to last (the subscription connects to it too); with Sentinels,
    /// replaced at each resolution, `None` before the first.
    client: ArcSwapOption<redis::Client>,
    /// With Sentinels: `host:port` of the master resolved last, and how many times it moved
    /// (the subscription follows when this changes).
    master_at: parking_lot::Mutex<Option<String>>,
    master_moves: AtomicU64,
    rt: tokio::runtime::Handle,
    conn: ArcSwapOption<MultiplexedConnection>,
    timeout: Duration,
    kick: Notify,
    /// This process's heartbeat channel.
    heartbeat: String,
    base: Instant,
    /// Send time (ns after `base`, +1) of the newest heartbeat received; 0: none yet.
    heard: AtomicU64,
    /// Subscribed, and every snapshot taken since.
    synced: AtomicBool,
    sinks: RwLock<Vec<Arc<dyn EventSink>>>,
    pub fail_open: FailOpen,
    /// What Redis refuses now, for `/health` ([`refusals`]).
    refusals: refusals::Refusals,
    /// The epoch marker this node knows, and what it puts back after a loss ([`epoch`]).
    pub epoch: epoch::EpochState,
}

/// What `/health` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub connected: bool,
    pub synced: bool,
    /// Reachable, but refusing writes (`OOM`, `READONLY`, `MISCONF`, …) or a command
    /// (`NOPERM`).
    pub refused: Option<refusals::Refused>,
}

impl Redis {
    /// Start the `sluice-redis` runtime thread and the connection supervisor. Returns at
    /// once: the first connection is made in the background ([`Self::wait_connected`]).
    ///
    /// # Errors
    /// When the runtime thread cannot be started or the URL is not usable.
    pub fn start(cfg: &RedisConfig) -> Result<Arc<Redis>, StoreError> {
        let (source, client) = match &cfg.endpoint {
            RedisEndpoint::Url(url) => {
                let client = redis::Client::open(url.connection_info())
                    .map_err(|e| StoreError::Redis(format!("{url}: {e}")))?;
                (Source::Fixed, Some(Arc::new(client)))
            }
            RedisEndpoint::Sentinel(s) => {
                (Source::Sentinel(sentinel::MasterResolver::new(s)?), None)
            }
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("sluice-redis".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(std::future::pending::<()>());
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| StoreError::Redis(format!("cannot start the redis thread: {e}")))?;
        let rt = rx
            .recv()
            .map_err(|_| StoreError::Redis("the redis thread did not start".into()))?
            .map_err(|e| StoreError::Redis(format!("redis runtime: {e}")))?;
        let node = crate::store::ctx::new_token();
        let redis = Arc::new(Redis {
            shown: cfg.endpoint.to_string(),
            source,
            client: ArcSwapOption::new(client),
            master_at: parking_lot::Mutex::new(None),
            master_moves: AtomicU64::new(0),
            rt,
            conn: ArcSwapOption::empty(),
            timeout: cfg.timeout,
            kick: Notify::new(),
            heartbeat: format!("sluice:hb:{node}"),
            base: Instant::now(),
            heard: AtomicU64::new(0),
            synced: AtomicBool::new(false),
            sinks: RwLock::new(Vec::new()),
            fail_open: cfg.fail_open,
            refusals: refusals::Refusals::default(),
            epoch: epoch::EpochState::new(&node),
        });
        metrics::init_redis();
        epoch::init_metrics();
        redis.rt.spawn(redis.clone().supervise());
        Ok(redis)
    }

    /// Start the heartbeat and the subscription (after every [`EventSink`] is registered).
    pub fn start_sync(self: &Arc<Self>) {
        self.rt.spawn(self.clone().heartbeat());
        self.rt.spawn(self.clone().subscription());
    }

    pub fn register(&self, sink: Arc<dyn EventSink>) {
        self.sinks.write().push(sink);
    }

    /// `redis://host:port/db`, without credentials.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn health(&self) -> Health {
        Health {
            connected: self.conn.load().is_some(),
            synced: self.view_fresh(),
            refused: self.refusals.current(),
        }
    }

    /// Block (a start-up or CLI thread, never a worker) until connected, at most `limit`.
    pub fn wait_connected(&self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.conn.load().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.conn.load().is_some()
    }

    /// Block until the local snapshots are taken and fresh, at most `limit`.
    pub fn wait_synced(&self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.view_fresh() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.view_fresh()
    }

    /// Whether local snapshots are provably within [`STALENESS_BOUND`] of Redis.
    pub fn view_fresh(&self) -> bool {
        self.view_age().is_some_and(|age| age <= STALENESS_BOUND)
    }

    /// How old the newest heartbeat received is: the bound on snapshot staleness.
    pub fn view_age(&self) -> Option<Duration> {
        if !self.synced.load(Ordering::Acquire) {
            return None;
        }
        match self.heard.load(Ordering::Acquire) {
            0 => None,
            n => Some(
                self.base
                    .elapsed()
                    .saturating_sub(Duration::from_nanos(n - 1)),
            ),
        }
    }

    /// Run one Redis operation on the redis runtime; answer within `state.redis_timeout`.
    pub async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.run_within(op, self.timeout, f).await
    }

    /// [`Self::run`] with another bound (bulk reads off the request path).
    pub async fn run_within<T, F, Fut>(
        &self,
        op: &'static str,
        limit: Duration,
        f: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        let outcome = |o: &str| metrics::REDIS_OPS.with_label_values(&[op, o]).inc();
        let Some(conn) = self.conn.load_full() else {
            outcome("unavailable");
            return Err(StoreError::Unavailable(format!(
                "{} is not connected",
                self.shown
            )));
        };
        let started = Instant::now();
        let task = self.rt.spawn(f((*conn).clone()));
        let answer = tokio::time::timeout(limit, task).await;
        metrics::REDIS_DURATION
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        match answer {
            Ok(Ok(Ok(v))) => {
                outcome("ok");
                self.refusals.succeeded(op);
                Ok(v)
            }
            Ok(Ok(Err(e))) if connection_problem(&e) => {
                outcome("unavailable");
                self.kick.notify_one();
                Err(StoreError::Unavailable(format!("{}: {e}", self.shown)))
            }
            Ok(Ok(Err(e))) if refuses_for_now(&e) => {
                // Reachable, but not serving this: out of memory, a user without the
                // permission, a replica, a loading or failing-over server. The request fails
                // closed as for an outage (503), and the operator is told what Redis said.
                outcome("refused");
                self.refusals.note(&self.shown, op, &e);
                if e.code() == Some("READONLY") && matches!(self.source, Source::Sentinel(_)) {
                    // The node was demoted: the supervisor's ROLE probe finds it and asks
                    // the Sentinels for the new master now, not at the next tick.
                    self.kick.notify_one();
                }
                Err(StoreError::Unavailable(format!("{op}: {e}")))
            }
            Ok(Ok(Err(e))) => {
                outcome("error");
                Err(StoreError::Redis(format!("{op}: {e}")))
            }
            Ok(Err(e)) => {
                outcome("error");
                Err(StoreError::Unavailable(format!("{op}: {e}")))
            }
            Err(_) => {
                outcome("timeout");
                self.kick.notify_one();
                Err(StoreError::Unavailable(format!(
                    "{} did not answer {op} within {limit:?}",
                    self.shown
                )))
            }
        }
    }

    /// Run one Redis operation without waiting for its answer (a give-back the request's
    /// answer does not depend on); bounded by `state.redis_timeout` all the same.
    pub fn detach<F, Fut>(self: &Arc<Self>, op: &'static str, f: F)
    where
        F: FnOnce(MultiplexedConnection) -> Fut + Send + 'static,
        Fut: Future<Output = RedisResult<()>> + Send + 'static,
    {
        let me = self.clone();
        self.rt.spawn(async move {
            if let Err(e) = me.run(op, f).await {
                tracing::debug!(op, error = %e, "detached redis operation failed");
            }
        });
    }

    /// Connect, watch, reconnect — forever, on the redis runtime.
    async fn supervise(self: Arc<Self>) {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout.max(Duration::from_secs(1)))
            .set_response_timeout(BULK_TIMEOUT);
        let mut backoff = MIN_BACKOFF;
        // Since when the connection has been missing (after a first failure or a loss).
        let mut down_since: Option<Instant> = None;
        let mut ever_up = false;
        loop {
            if self.conn.load().is_none() {
                let attempt =
                    tokio::time::timeout(self.connect_bound(), self.connect(&config)).await;
                match attempt {
                    Ok(Ok(c)) => {
                        // An emptied Redis is noticed before this connection serves a request.
                        self.check_epoch(&c).await;
                        self.conn.store(Some(Arc::new(c.clone())));
                        metrics::REDIS_UP.set(1);
                        backoff = MIN_BACKOFF;
                        match down_since.take() {
                            Some(t) if ever_up => {
                                metrics::REDIS_RECONNECTS
                                    .with_label_values(&["command"])
                                    .inc();
                                tracing::info!(
                                    redis = %self.shown,
                                    down_ms = t.elapsed().as_millis() as u64,
                                    "redis reconnected: shared state is back"
                                );
                            }
                            _ => tracing::info!(redis = %self.shown, "redis connected"),
                        }
                        ever_up = true;
                        self.check_eviction_policy(&c).await;
                    }
                    failed => {
                        if down_since.is_none() {
                            down_since = Some(Instant::now());
                            let why = match failed {
                                Ok(Err(e)) => e.to_string(),
                                _ => "connection timed out".into(),
                            };
                            tracing::error!(
                                redis = %self.shown,
                                error = %why,
                                "redis unreachable: gated playback and key delivery fail closed \
                                 (unless state.redis_fail_open), rate limits count locally; \
                                 retrying"
                            );
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            tokio::select! {
                _ = self.kick.notified() => {}
                _ = tokio::time::sleep(PING_EVERY) => {}
            }
            let Some(c) = self.conn.load_full() else {
                continue;
            };
            let c = (*c).clone();
            if let Err(why) = self.probe(c.clone()).await {
                self.conn.store(None);
                metrics::REDIS_UP.set(0);
                down_since = Some(Instant::now());
                tracing::error!(
                    redis = %self.shown,
                    error = %why,
                    "redis connection lost: gated playback and key delivery fail closed \
                     (unless state.redis_fail_open), rate limits count locally; reconnecting"
                );
            } else {
                self.check_epoch(&c).await;
            }
        }
    }

    /// How long one connection attempt may take (with Sentinels: asking each in turn too).
    fn connect_bound(&self) -> Duration {
        let each = self.timeout.max(Duration::from_secs(1));
        let resolve = match &self.source {
            Source::Fixed => Duration::ZERO,
            Source::Sentinel(r) => r.bound(each),
        };
        each + resolve + Duration::from_millis(500)
    }

    /// A command connection to the server; with Sentinels, to the master they name now (the
    /// client kept for the subscription, and a log line when it moved).
    async fn connect(
        &self,
        config: &AsyncConnectionConfig,
    ) -> Result<MultiplexedConnection, String> {
        if let Source::Sentinel(r) = &self.source {
            let master = r.resolve(self.timeout.max(Duration::from_secs(1))).await?;
            let moved = {
                let mut at = self.master_at.lock();
                let moved = at.as_deref() != Some(master.at.as_str());
                *at = Some(master.at.clone());
                moved
            };
            if moved {
                self.master_moves.fetch_add(1, Ordering::AcqRel);
                tracing::info!("redis master {} at {}", r.name(), master.at);
            }
            self.client.store(Some(Arc::new(master.client)));
        }
        let client = self
            .client
            .load_full()
            .ok_or_else(|| "no master resolved yet".to_string())?;
        client
            .get_multiplexed_async_connection_with_config(config)
            .await
            .map_err(|e| e.to_string())
    }

    /// Is the connection still good: it answers PING; with Sentinels, it is still the master
    /// (`ROLE`: a demoted node answers, but refuses every write with READONLY).
    async fn probe(&self, mut c: MultiplexedConnection) -> Result<(), String> {
        let limit = Duration::from_secs(1);
        match &self.source {
            Source::Fixed => {
                match tokio::time::timeout(limit, redis::cmd("PING").query_async::<String>(&mut c))
                    .await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer to PING within 1s".into()),
                }
            }
            Source::Sentinel(r) => {
                match tokio::time::timeout(
                    limit,
                    redis::cmd("ROLE").query_async::<redis::Role>(&mut c),
                )
                .await
                {
                    Ok(Ok(redis::Role::Primary { .. })) => Ok(()),
                    Ok(Ok(_)) => Err(format!(
                        "{} is no longer the master of {}: asking the Sentinels again",
                        self.master_at.lock().as_deref().unwrap_or("the node"),
                        r.name()
                    )),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer to ROLE within 1s".into()),
                }
            }
        }
    }

    /// Say loudly, at every (re)connection, when Redis may evict keys under memory pressure:
    /// an evicted revocation lets a revoked token start playbacks on nodes that never saw it,
    /// an evicted use count gives spent uses back. `CONFIG GET` may be refused (ACLs,
    /// managed services): then say the policy could not be checked.
    async fn check_eviction_policy(&self, c: &MultiplexedConnection) {
        let mut c = c.clone();
        let answer = tokio::time::timeout(
            Duration::from_secs(1),
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory-policy")
                .query_async::<std::collections::HashMap<String, String>>(&mut c),
        )
        .await;
        let why = match answer {
            Ok(Ok(m)) => match m.get("maxmemory-policy") {
                Some(p) if p == "noeviction" => {
                    tracing::info!(redis = %self.shown, "redis maxmemory-policy is noeviction");
                    return;
                }
                Some(p) => {
                    tracing::warn!(
                        redis = %self.shown,
                        "redis maxmemory-policy is {p}: under memory pressure Redis may evict \
                         revocations and use counts (a revoked token could start playing again on \
                         another node, spent uses come back); set maxmemory-policy noeviction"
                    );
                    return;
                }
                None => "CONFIG GET answered no maxmemory-policy".to_string(),
            },
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer to CONFIG GET within 1s".to_string(),
        };
        tracing::warn!(
            redis = %self.shown,
            error = %why,
            "could not check maxmemory-policy: make sure it is noeviction (an evicting Redis \
             may drop revocations and use counts)"
        );
    }

    /// Publish this node's heartbeat every [`HEARTBEAT_EVERY`].
    async fn heartbeat(self: Arc<Self>) {
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.refresh_metrics();
            let Some(c) = self.conn.load_full() else {
                continue;
            };
            let mut c = (*c).clone();
            let sent = self.base.elapsed().as_nanos() as u64;
            let sent = tokio::time::timeout(
                Duration::from_secs(1),
                redis::cmd("PUBLISH")
                    .arg(&self.heartbeat)
                    .arg(sent)
                    .query_async::<i64>(&mut c),
            )
            .await;
            match sent {
                Ok(Ok(_)) => self.refusals.succeeded("heartbeat"),
                // A user without `PUBLISH`: no snapshot is ever fresh; say why.
                Ok(Err(e)) if refuses_for_now(&e) => {
                    self.refusals.note(&self.shown, "heartbeat", &e)
                }
                _ => {}
            }
        }
    }

    fn refresh_metrics(&self) {
        let age = self.view_age();
        metrics::REDIS_VIEW_AGE.set(age.map_or(-1.0, |a| a.as_secs_f64()));
        metrics::REDIS_SYNCED.set(i64::from(age.is_some_and(|a| a <= STALENESS_BOUND)));
    }

    /// Subscribe, take every snapshot, apply messages; again after any loss.
    async fn subscription(self: Arc<Self>) {
        let mut backoff = MIN_BACKOFF;
        let mut ever_synced = false;
        let mut lost_logged = false;
        // The last subscription was refused (said at warn once): no line per retry.
        let mut refused = false;
        loop {
            let moves = self.master_moves.load(Ordering::Acquire);
            match self.subscribe_and_sync().await {
                Ok(mut pubsub) => {
                    backoff = MIN_BACKOFF;
                    lost_logged = false;
                    if refused {
                        tracing::debug!(redis = %self.shown, "redis subscription retried");
                    } else if ever_synced {
                        metrics::REDIS_RECONNECTS
                            .with_label_values(&["subscription"])
                            .inc();
                        tracing::info!(
                            redis = %self.shown,
                            "redis subscription restored: local snapshots reloaded"
                        );
                    } else {
                        tracing::info!(redis = %self.shown, "redis subscription up: local snapshots loaded");
                    }
                    ever_synced = true;
                    self.synced.store(true, Ordering::Release);
                    self.follow(&mut pubsub, moves).await;
                    let never_heard = self.heard.load(Ordering::Acquire) == 0;
                    self.synced.store(false, Ordering::Release);
                    self.heard.store(0, Ordering::Release);
                    self.refresh_metrics();
                    if self.master_moves.load(Ordering::Acquire) != moves {
                        tracing::info!(
                            redis = %self.shown,
                            "redis subscription follows the master the Sentinels name now"
                        );
                        continue;
                    }
                    refused = never_heard && self.subscribe_refused().await;
                    if !refused {
                        tracing::warn!(
                            redis = %self.shown,
                            "redis subscription lost: credential checks ask redis directly (or \
                             fail closed) until it is back"
                        );
                    }
                }
                Err(e) => {
                    if !lost_logged {
                        tracing::debug!(redis = %self.shown, error = %e, "redis subscription not ready; retrying");
                        lost_logged = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn subscribe_and_sync(&self) -> Result<redis::aio::PubSub, StoreError> {
        let unavailable = |e: RedisError| StoreError::Unavailable(e.to_string());
        let client = self
            .client
            .load_full()
            .ok_or_else(|| StoreError::Unavailable("no master resolved yet".into()))?;
        let mut pubsub = tokio::time::timeout(
            self.timeout.max(Duration::from_secs(1)),
            client.get_async_pubsub(),
        )
        .await
        .map_err(|_| StoreError::Unavailable("subscription connect timed out".into()))?
        .map_err(unavailable)?;
        tokio::time::timeout(
            self.timeout.max(Duration::from_secs(1)),
            pubsub.subscribe(&[EVENTS, self.heartbeat.as_str()]),
        )
        .await
        .map_err(|_| StoreError::Unavailable("SUBSCRIBE timed out".into()))?
        .map_err(unavailable)?;
        // Subscribed first, snapshots second: a change made in between is both in the
        // snapshot and in a queued message, never in neither.
        let sinks: Vec<Arc<dyn EventSink>> = self.sinks.read().clone();
        for sink in sinks {
            sink.resync().await?;
        }
        Ok(pubsub)
    }

    /// Apply messages until the subscription ends or falls silent, or the Sentinels named
    /// another master than the one subscribed to (`moves` then).
    async fn follow(&self, pubsub: &mut redis::aio::PubSub, moves: u64) {
        let mut check = tokio::time::interval(Duration::from_millis(250));
        let subscribed_at = Instant::now();
        let mut stream = pubsub.on_message();
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { return };
                    let payload: String = msg.get_payload().unwrap_or_default();
                    if msg.get_channel_name() == self.heartbeat {
                        if let Ok(sent) = payload.parse::<u64>() {
                            self.heard.fetch_max(sent.saturating_add(1), Ordering::AcqRel);
                        }
                        // The subscription works (a refused one delivers nothing).
                        self.refusals.succeeded("subscribe");
                        continue;
                    }
                    let (topic, arg) = payload.split_once(' ').unwrap_or((payload.as_str(), ""));
                    let sinks: Vec<Arc<dyn EventSink>> = self.sinks.read().clone();
                    for sink in sinks.iter().filter(|s| s.topic() == topic) {
                        sink.on_event(arg).await;
                    }
                }
                _ = check.tick() => {
                    let silent = match self.view_age() {
                        Some(age) => age > SUBSCRIPTION_SILENCE,
                        None => subscribed_at.elapsed() > SUBSCRIPTION_SILENCE,
                    };
                    if silent || self.master_moves.load(Ordering::Acquire) != moves {
                        return;
                    }
                }
            }
        }
    }
}

/// Errors that mean "not reachable" rather than "refused this command".
fn connection_problem(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

/// Errors of a reachable Redis that cannot serve the command now (not a bad request of
/// ours): out of memory under `noeviction`, an ACL user without the command or key, a
/// read-only replica, a server loading, failing over or unable to persist.
fn refuses_for_now(e: &RedisError) -> bool {
    refusal_code(e.code())
}

fn refusal_code(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "OOM"
                | "NOPERM"
                | "READONLY"
                | "MASTERDOWN"
                | "LOADING"
                | "BUSY"
                | "NOREPLICAS"
                | "MISCONF"
                | "CLUSTERDOWN"
                | "TRYAGAIN"
        )
    )
}

/// A hash tag for a key part: `{…}` keeps every key of one thing in one Cluster slot, and
/// the part is hashed when it could hold anything (a JWT subject, a client key).
pub fn tag(part: &str) -> String {
    format!("{{{part}}}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn refusals_that_are_not_our_mistakes() {
        for code in [
            "OOM",
            "NOPERM",
            "READONLY",
            "LOADING",
            "MASTERDOWN",
            "MISCONF",
        ] {
            assert!(super::refusal_code(Some(code)), "{code}");
        }
        for code in [None, Some("WRONGTYPE"), Some("ERR"), Some("NOSCRIPT")] {
            assert!(!super::refusal_code(code), "{code:?}");
        }
    }
}

//! Prometheus metrics: one registry, handles created once, scraped at `/metrics` on the
//! admin listener. Label values are drawn from small fixed sets (route class, status) so the
//! series count stays bounded whatever players send. Per-stream series ([`per_stream`]) take
//! their `stream` label through a bounded admission. [`init`] creates every series of a known
//! label set at start, so each exists (at zero) before its first event.
//!
//! The families live here; a label set owned by a module above (the stream token's refusals,
//! the rate-limit classes, the fleet's results) is created by that module's `init_metrics`,
//! called at start beside [`init`], and values only a module above knows (draining, requests
//! in flight) are pushed by it: nothing here imports a layer above (see `src/lib.rs`).

pub mod per_stream;

use once_cell::sync::Lazy;
use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec, Encoder, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, TextEncoder,
};

/// Requests answered, by listener, route class and status code.
pub static REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_requests_total",
        "Requests answered, by listener, route class and status",
        &["listener", "class", "status"]
    )
    .expect("metric registers once")
});

/// Request duration from first byte in to last byte out.
pub static REQUEST_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec!(
        "sluice_request_duration_seconds",
        "Request duration, by listener and route class",
        &["listener", "class"],
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    )
    .expect("metric registers once")
});

/// Upstream (origin) failures, by kind ([`UPSTREAM_ERROR_KINDS`]).
pub static UPSTREAM_ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_upstream_errors_total",
        "Upstream failures, by kind",
        &["kind"]
    )
    .expect("metric registers once")
});

/// Upstream time to response header.
pub static UPSTREAM_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec!(
        "sluice_upstream_duration_seconds",
        "Time from upstream request to its response header",
        &["class"],
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    )
    .expect("metric registers once")
});

/// Response body bytes sent to clients, by route class.
pub static BYTES_OUT: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_bytes_out_total",
        "Response body bytes sent downstream, by route class",
        &["class"]
    )
    .expect("metric registers once")
});

/// Cache lookups by result: hit, miss, stale, expired, bypass, revalidated.
pub static CACHE_LOOKUPS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_cache_lookups_total",
        "Cache results served, by status",
        &["status"]
    )
    .expect("metric registers once")
});

/// Bytes reserved by cache fills in flight (part of `sluice_cache_bytes`).
pub static CACHE_INFLIGHT_BYTES: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "sluice_cache_inflight_bytes",
        "Bytes reserved by cache fills in flight (included in sluice_cache_bytes)"
    )
    .expect("metric registers once")
});

/// Objects streamed through uncached, by reason: too_large, over_budget, purged.
pub static CACHE_UNCACHED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_cache_uncached_total",
        "Cacheable objects streamed through uncached, by reason",
        &["reason"]
    )
    .expect("metric registers once")
});

/// Bytes of files in the disk tier (`cache.disk`).
pub static CACHE_DISK_BYTES: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "sluice_cache_disk_bytes",
        "Bytes of files in the disk cache tier"
    )
    .expect("metric registers once")
});

/// Disk tier events: hit (read back), write, dropped, corrupt (deleted unread), evicted.
pub static CACHE_DISK_EVENTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_cache_disk_events_total",
        "Disk cache tier events, by kind: hit, write, dropped, corrupt, evicted",
        &["event"]
    )
    .expect("metric registers once")
});

/// Requests that waited on the cache lock for another request's origin fetch.
pub static CACHE_LOCK_WAITS: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "sluice_cache_lock_waits_total",
        "Requests that waited for another request's fetch of the same object"
    )
    .expect("metric registers once")
});

/// Objects removed to stay under the byte budget.
pub static CACHE_EVICTIONS: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "sluice_cache_evictions_total",
        "Cached objects evicted to stay under cache.memory_bytes"
    )
    .expect("metric registers once")
});

/// Bytes held by the cache storage (bodies plus headers).
pub static CACHE_BYTES: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "sluice_cache_bytes",
        "Bytes currently stored in the memory cache"
    )
    .expect("metric registers once")
});

/// The memory cache's byte budget (`cache.memory_bytes`; 0 with the cache off), for
/// "cache at budget" ratios.
pub static CACHE_BUDGET_BYTES: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "sluice_cache_memory_budget_bytes",
        "The memory cache's byte budget (cache.memory_bytes; 0 with the cache off)"
    )
    .expect("metric registers once")
});

/// Token and auth refusals, by surface and reason ([`refused`]).
pub static AUTH_REJECTIONS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_auth_rejections_total",
        "Requests refused by a token, signature or access check, by surface and reason",
        &["surface", "reason"]
    )
    .expect("metric registers once")
});

/// Where a refusal was decided: the `surface` label of [`AUTH_REJECTIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateSurface {
    /// The `/stream/{hash}/…` gate and path rules.
    Stream,
    /// `GET /api/key/{hash}` (key tokens).
    Key,
    /// `/api/proxy` and the provider API that mints its contexts.
    Proxy,
    /// The streaming API (`/api/v2/streaming/*`: tokens, verify, license).
    Api,
    /// Signed channels (`/api/v1/channels/*`).
    Channels,
    /// The admin API (API keys).
    Admin,
    /// Node-to-node requests of a cache fleet.
    Fleet,
}

impl GateSurface {
    pub const ALL: [GateSurface; 7] = [
        GateSurface::Stream,
        GateSurface::Key,
        GateSurface::Proxy,
        GateSurface::Api,
        GateSurface::Channels,
        GateSurface::Admin,
        GateSurface::Fleet,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GateSurface::Stream => "stream",
            GateSurface::Key => "key",
            GateSurface::Proxy => "proxy",
            GateSurface::Api => "api",
            GateSurface::Channels => "channels",
            GateSurface::Admin => "admin",
            GateSurface::Fleet => "fleet",
        }
    }

    /// The reasons this surface refuses with (every one is created at start). The stream
    /// token's own refusals, on `stream` and `api`, belong to the gate: `access::init_metrics`
    /// creates them.
    pub fn reasons(self) -> Vec<&'static str> {
        match self {
            GateSurface::Stream => vec!["bad_path"],
            GateSurface::Api => vec!["bad_bearer_jwt"],
            GateSurface::Key => vec![
                "key_token_missing",
                "key_token_invalid",
                "state_unavailable",
            ],
            GateSurface::Proxy => vec!["proxy_refused", "proxy_redirect", "ssrf", "provider_jwt"],
            GateSurface::Channels => vec!["channel_signature"],
            GateSurface::Admin => vec!["bad_api_key"],
            GateSurface::Fleet => vec!["fleet_signature"],
        }
    }
}

/// Count one refusal. `reason` is always a fixed string, never request data.
pub fn refused(surface: GateSurface, reason: &'static str) {
    AUTH_REJECTIONS
        .with_label_values(&[surface.as_str(), reason])
        .inc();
}

/// How long requests waited on the cache lock for another request's origin fetch.
pub static CACHE_LOCK_WAIT: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec!(
        "sluice_cache_lock_wait_seconds",
        "Time requests waited for another request's fetch of the same object, by route class",
        &["class"],
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    )
    .expect("metric registers once")
});

/// LL-HLS blocking playlist reloads (`_HLS_msn`): how long players were held.
pub static LLHLS_BLOCKING: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec!(
        "sluice_llhls_blocking_reload_seconds",
        "LL-HLS blocking playlist reloads (_HLS_msn), time until answered, by route class",
        &["class"],
        vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    )
    .expect("metric registers once")
});

/// Player requests answered from the cache for an object prefetched in the last 10 s.
pub static PREFETCH_HITS: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "sluice_prefetch_hits_total",
        "Player requests that hit an object prefetched in the last 10 s"
    )
    .expect("metric registers once")
});

/// Live `/api/proxy` contexts held by this node's memory ctx store.
pub static CTX_CONTEXTS: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "sluice_ctx_store_contexts",
        "Live /api/proxy contexts in this node's memory store"
    )
    .expect("metric registers once")
});

/// Contexts removed from the memory ctx store, by reason: `expired`, `subject_quota` (the
/// subject's oldest replaced by its new one).
pub static CTX_EVICTIONS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_ctx_store_evictions_total",
        "Contexts removed from the memory ctx store, by reason (expired, subject_quota)",
        &["reason"]
    )
    .expect("metric registers once")
});

/// New contexts refused because the store was full of live ones.
pub static CTX_REFUSED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "sluice_ctx_store_refused_total",
        "New /api/proxy contexts refused because the store was full of live ones"
    )
    .expect("metric registers once")
});

/// Stop and upgrade events: `drain_started`, `upgrade_handover`, `upgrade_no_successor`.
pub static LIFECYCLE_EVENTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_lifecycle_events_total",
        "Stop and upgrade events, by event (drain_started, upgrade_handover, upgrade_no_successor)",
        &["event"]
    )
    .expect("metric registers once")
});

/// 1 while this process drains (stop or upgrade).
pub static DRAINING: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "sluice_draining",
        "1 while this process drains for a stop or an upgrade"
    )
    .expect("metric registers once")
});

/// Requests in flight now.
pub static IN_FLIGHT: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!("sluice_requests_in_flight", "Requests in flight now")
        .expect("metric registers once")
});

/// Cache fleet peers going down: marked after a failure while up (then skipped for a few
/// seconds, their objects fetched from the origin).
pub static FLEET_PEER_DOWN: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "sluice_fleet_peer_down_total",
        "Times a fleet peer was marked down after a failed fetch (skipped for a few seconds)"
    )
    .expect("metric registers once")
});

/// Requests refused by a rate limit, by class.
pub static RATE_LIMITED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_rate_limited_total",
        "Requests refused with 429 by a rate limit, by class",
        &["class"]
    )
    .expect("metric registers once")
});

/// Connections open now (HTTP/1 and HTTP/2, TLS or not), by listener (`edge`, `admin`).
pub static CONNECTIONS_OPEN: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec!(
        "sluice_connections_open",
        "Connections open now, by listener",
        &["listener"]
    )
    .expect("metric registers once")
});

/// Connections refused at accept, by listener and reason (`per_ip`, `global`, `proxy_protocol`,
/// `tls`).
pub static CONNECTIONS_REFUSED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_connections_refused_total",
        "Connections refused at accept, by listener and reason",
        &["listener", "reason"]
    )
    .expect("metric registers once")
});

/// Edge connections closed by a limit, by reason (`header_timeout`, `idle_timeout`,
/// `send_timeout`, `header_too_large`, `h2_resets`, `h2_malformed`).
pub static CONNECTIONS_CLOSED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_connections_closed_total",
        "Edge connections closed by a limit, by reason",
        &["reason"]
    )
    .expect("metric registers once")
});

/// Requests refused before routing, by reason (`upgrade`, `body`, `no_host`,
/// `header_too_large`; HTTP/2 streams over a share: `per_ip`, `global`, `h2_streams`).
pub static REQUESTS_REFUSED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_requests_refused_total",
        "Requests refused by the edge's protocol rules, by reason",
        &["reason"]
    )
    .expect("metric registers once")
});

/// Parts and segments fetched into the cache ahead of players.
pub static PREFETCHES: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "sluice_prefetches_total",
        "Live parts and segments fetched into the cache ahead of players"
    )
    .expect("metric registers once")
});

/// Admin access-log entries dropped because the write queue was full.
pub static ACCESS_LOG_DROPPED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "sluice_access_log_dropped_total",
        "Admin access-log entries dropped because the writer fell behind"
    )
    .expect("metric registers once")
});

/// 1 while the shared state (Redis, `state.redis`) answers, 0 while it does not.
pub static REDIS_UP: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "sluice_redis_up",
        "1 while the shared state (Redis) answers, 0 while it does not"
    )
    .expect("metric registers once")
});

/// 1 while this node's local snapshots (revocations, stream ids, ctx cache) follow Redis
/// through pub/sub within the staleness bound.
pub static REDIS_SYNCED: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "sluice_redis_synced",
        "1 while local snapshots follow Redis through pub/sub within the staleness bound"
    )
    .expect("metric registers once")
});

/// Redis commands (scripts count as one), by operation and outcome (`ok`, `error`,
/// `timeout`, `unavailable`).
pub static REDIS_OPS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_redis_ops_total",
        "Redis round trips, by operation and outcome",
        &["op", "outcome"]
    )
    .expect("metric registers once")
});

/// Round-trip time of Redis operations as seen by the request (runtime hop included).
pub static REDIS_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec!(
        "sluice_redis_op_duration_seconds",
        "Redis round trip as seen by the request, by operation",
        &["op"],
        vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5]
    )
    .expect("metric registers once")
});

/// Reconnections of the Redis command connection and of the subscription.
pub static REDIS_RECONNECTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_redis_reconnects_total",
        "Reconnections to Redis after a loss, by connection (command, subscription)",
        &["connection"]
    )
    .expect("metric registers once")
});

/// Answers given without Redis: `fail_open` (a `state.redis_fail_open` surface) and
/// `local_rate_limit` (limits counted on this node only).
pub static REDIS_FALLBACKS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_redis_fallbacks_total",
        "Requests answered without Redis, by kind (fail_open_playback, fail_open_key_delivery, local_rate_limit)",
        &["kind"]
    )
    .expect("metric registers once")
});

/// Age of the newest pub/sub heartbeat this node received: how stale its revocation set may
/// be (-1 while not subscribed).
pub static REDIS_VIEW_AGE: Lazy<prometheus::Gauge> = Lazy::new(|| {
    prometheus::register_gauge!(
        "sluice_redis_view_age_seconds",
        "Age of the newest pub/sub heartbeat received: the bound on local snapshot staleness (-1: not subscribed)"
    )
    .expect("metric registers once")
});

/// This build: `sluice_build_info{version, commit} 1` (join on it to label other series by
/// the running version). `commit` is `SLUICE_BUILD_COMMIT` at build time (`make release`
/// sets it from git), else `unknown`.
pub static BUILD_INFO: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec!(
        "sluice_build_info",
        "Always 1, labelled with the running build's version and git commit",
        &["version", "commit"]
    )
    .expect("metric registers once")
});

/// The `commit` label of [`BUILD_INFO`].
pub fn build_commit() -> &'static str {
    match option_env!("SLUICE_BUILD_COMMIT") {
        Some(c) if !c.is_empty() => c,
        _ => "unknown",
    }
}

/// The edge's route classes and the admin listener's (`listener`, `class`) pairs of
/// [`REQUESTS`] and [`REQUEST_DURATION`].
const LISTENER_CLASSES: [(&str, &str); 7] = [
    ("edge", "stream"),
    ("edge", "proxy"),
    ("edge", "api"),
    ("edge", "rejected"),
    ("edge", "fleet"),
    ("admin", "api"),
    ("admin", "metrics"),
];

/// Create the series of the shared state (`state.redis`) that exist before their first
/// event; called once the Redis client is made.
pub fn init_redis() {
    REDIS_UP.set(0);
    REDIS_SYNCED.set(0);
    REDIS_VIEW_AGE.set(-1.0);
    for c in ["command", "subscription"] {
        REDIS_RECONNECTS.with_label_values(&[c]);
    }
}

/// Status codes as label values without allocating.
pub fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        204 => "204",
        206 => "206",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        410 => "410",
        413 => "413",
        416 => "416",
        429 => "429",
        431 => "431",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        0 => "0",
        s if s < 200 => "1xx",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// The `kind` labels of [`UPSTREAM_ERRORS`].
pub const UPSTREAM_ERROR_KINDS: [&str; 8] = [
    "connect",
    "connect_timeout",
    "timeout",
    "tls",
    "read",
    "status_5xx",
    "rewrite",
    "redirect",
];

/// Create every series whose labels are known before the first event, and size the
/// per-stream admission. Called once at start; `known_streams` are the configured content
/// hashes and the registered stream ids.
pub fn init(top_streams: usize, known_streams: impl IntoIterator<Item = String>) {
    touch_known();
    per_stream::init(top_streams, known_streams);
}

fn touch_known() {
    BUILD_INFO
        .with_label_values(&[env!("CARGO_PKG_VERSION"), build_commit()])
        .set(1);
    for (listener, class) in LISTENER_CLASSES {
        REQUEST_DURATION.with_label_values(&[listener, class]);
        // Answers by status appear as they happen; the successful one exists from start.
        if class != "rejected" {
            REQUESTS.with_label_values(&[listener, class, "200"]);
        }
    }
    for c in ["stream", "proxy", "fleet"] {
        UPSTREAM_DURATION.with_label_values(&[c]);
    }
    for k in UPSTREAM_ERROR_KINDS {
        UPSTREAM_ERRORS.with_label_values(&[k]);
    }
    for c in ["stream", "proxy", "api", "rejected", "fleet"] {
        BYTES_OUT.with_label_values(&[c]);
    }
    for s in ["hit", "miss", "stale", "expired", "revalidated", "bypass"] {
        CACHE_LOOKUPS.with_label_values(&[s]);
    }
    Lazy::force(&CACHE_LOCK_WAITS);
    for c in ["stream", "proxy"] {
        CACHE_LOCK_WAIT.with_label_values(&[c]);
        LLHLS_BLOCKING.with_label_values(&[c]);
    }
    Lazy::force(&CACHE_EVICTIONS);
    Lazy::force(&CACHE_BYTES);
    Lazy::force(&CACHE_BUDGET_BYTES);
    Lazy::force(&CACHE_INFLIGHT_BYTES);
    Lazy::force(&CACHE_DISK_BYTES);
    for e in ["hit", "write", "dropped", "corrupt", "evicted"] {
        CACHE_DISK_EVENTS.with_label_values(&[e]);
    }
    for reason in ["too_large", "over_budget", "purged"] {
        CACHE_UNCACHED.with_label_values(&[reason]);
    }
    for surface in GateSurface::ALL {
        for reason in surface.reasons() {
            AUTH_REJECTIONS.with_label_values(&[surface.as_str(), reason]);
        }
    }
    Lazy::force(&ACCESS_LOG_DROPPED);
    Lazy::force(&PREFETCHES);
    Lazy::force(&PREFETCH_HITS);
    Lazy::force(&CTX_CONTEXTS);
    Lazy::force(&CTX_REFUSED);
    for r in ["expired", "subject_quota"] {
        CTX_EVICTIONS.with_label_values(&[r]);
    }
    for e in ["drain_started", "upgrade_handover", "upgrade_no_successor"] {
        LIFECYCLE_EVENTS.with_label_values(&[e]);
    }
    Lazy::force(&DRAINING);
    Lazy::force(&IN_FLIGHT);
    for l in ["edge", "admin"] {
        CONNECTIONS_OPEN.with_label_values(&[l]);
        for r in ["per_ip", "global", "proxy_protocol", "tls"] {
            CONNECTIONS_REFUSED.with_label_values(&[l, r]);
        }
    }
    for r in [
        "header_timeout",
        "idle_timeout",
        "send_timeout",
        "header_too_large",
        "h2_resets",
        "h2_malformed",
    ] {
        CONNECTIONS_CLOSED.with_label_values(&[r]);
    }
    for r in [
        "upgrade",
        "body",
        "no_host",
        "header_too_large",
        "per_ip",
        "global",
        "h2_streams",
    ] {
        REQUESTS_REFUSED.with_label_values(&[r]);
    }
    for k in [
        "fail_open_playback",
        "fail_open_key_delivery",
        "local_rate_limit",
    ] {
        REDIS_FALLBACKS.with_label_values(&[k]);
    }
    Lazy::force(&FLEET_PEER_DOWN);
}

/// The `process_*` families of the process answering the scrape.
///
/// The `prometheus` crate's own process collector (its `process` feature) is bound to the
/// pid of whoever first touched the default registry; in daemon mode that can be the parent
/// that forked and exited, and its families would be empty — or, with the pid reused,
/// another process's. So the scrape reads a collector made for the current pid.
fn process_families() -> Vec<prometheus::proto::MetricFamily> {
    use prometheus::core::Collector;
    use prometheus::process_collector::ProcessCollector;
    static PROCESS: Lazy<parking_lot::Mutex<Option<(u32, ProcessCollector)>>> =
        Lazy::new(|| parking_lot::Mutex::new(None));
    let pid = std::process::id();
    let mut held = PROCESS.lock();
    match &*held {
        Some((p, c)) if *p == pid => c.collect(),
        _ => {
            let c = ProcessCollector::for_self();
            let families = c.collect();
            *held = Some((pid, c));
            families
        }
    }
}

/// Render the registry in the Prometheus text format.
pub fn render() -> Vec<u8> {
    // This module's known series exist even when `init` was not called (tests, tools).
    touch_known();
    let mut families: Vec<_> = prometheus::gather()
        .into_iter()
        .filter(|f| !f.name().starts_with("process_"))
        .collect();
    families.extend(process_families());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut buf = Vec::with_capacity(8 * 1024);
    // Encoding into a Vec cannot fail for well-formed families.
    let _ = TextEncoder::new().encode(&families, &mut buf);
    buf
}

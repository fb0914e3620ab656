//! Prometheus metrics: one registry, handles created once, scraped at `/metrics` on the
//! admin listener. Label values are drawn from small fixed sets (route class, status) so the
//! series count stays bounded whatever players send.

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

/// Upstream (origin) failures, by kind: connect, timeout, read, status_5xx.
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

/// Objects streamed through uncached, by reason: too_large, over_budget.
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

/// Token and auth refusals, by reason.
pub static AUTH_REJECTIONS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_auth_rejections_total",
        "Requests refused by an auth check, by reason",
        &["reason"]
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
/// `send_timeout`, `header_too_large`).
pub static CONNECTIONS_CLOSED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_connections_closed_total",
        "Edge connections closed by a limit, by reason",
        &["reason"]
    )
    .expect("metric registers once")
});

/// Requests refused before routing, by reason (`upgrade`, `body`, `no_host`,
/// `header_too_large`).
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

/// Render the registry in the Prometheus text format.
pub fn render() -> Vec<u8> {
    // Touch every handle so each metric appears (at zero) before its first event.
    Lazy::force(&REQUESTS);
    Lazy::force(&REQUEST_DURATION);
    Lazy::force(&UPSTREAM_ERRORS);
    Lazy::force(&UPSTREAM_DURATION);
    Lazy::force(&BYTES_OUT);
    Lazy::force(&CACHE_LOOKUPS);
    Lazy::force(&CACHE_LOCK_WAITS);
    Lazy::force(&CACHE_EVICTIONS);
    Lazy::force(&CACHE_BYTES);
    Lazy::force(&CACHE_INFLIGHT_BYTES);
    for reason in ["too_large", "over_budget"] {
        CACHE_UNCACHED.with_label_values(&[reason]);
    }
    Lazy::force(&AUTH_REJECTIONS);
    Lazy::force(&ACCESS_LOG_DROPPED);
    Lazy::force(&PREFETCHES);
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
    ] {
        CONNECTIONS_CLOSED.with_label_values(&[r]);
    }
    for r in ["upgrade", "body", "no_host", "header_too_large"] {
        REQUESTS_REFUSED.with_label_values(&[r]);
    }
    for c in crate::ratelimit::RateClass::ALL {
        RATE_LIMITED.with_label_values(&[c.as_str()]);
    }
    let mut buf = Vec::with_capacity(8 * 1024);
    // Encoding into a Vec cannot fail for well-formed families.
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut buf);
    buf
}

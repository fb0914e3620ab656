//! `logging` and `request_summary`: one access-log line, the request metrics, per-player
//! stats, a reserved use given back — and no credential in any log line.
//!
//! Queries carry credentials (`token=`, `pc=`, `ctx=`, and provider tokens inside `url=`),
//! so nothing here logs one: the access log has the path only, and the summary Pingora puts
//! in its own WARN/ERROR lines is the method, path and host ([`summary`]).

use pingora_proxy::Session;

use super::{gate, Edge, RequestCtx, Target};
use crate::metrics;

/// What Pingora's own error lines say about a request: no query, no credentials.
pub(super) fn summary(session: &Session) -> String {
    let req = session.req_header();
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    format!(
        "{} {}, Host: {host}",
        req.method,
        crate::redact::redact_path(req.uri.path())
    )
}

pub(super) async fn finished(edge: &Edge, session: &mut Session, ctx: &mut RequestCtx) {
    let cache = if ctx.target.is_some() {
        match &ctx.fill_cache_status {
            Some(s) => s.clone(),
            None => super::cache_status(session.cache.phase()).to_string(),
        }
    } else {
        "none".to_string()
    };
    if ctx.fill {
        // The fill of a playlist answer: its parent logs the request; the cache lookup is
        // this one's.
        if edge.cache.is_some() {
            metrics::CACHE_LOOKUPS
                .with_label_values(&[cache.as_str()])
                .inc();
            if session.cache.lock_duration().is_some() {
                metrics::CACHE_LOCK_WAITS.inc();
            }
        }
        return;
    }
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .or(ctx.local_status)
        .unwrap_or(0);
    let class = ctx.class.as_str();
    let elapsed = ctx.started.elapsed();
    if ctx.target.is_some() && edge.cache.is_some() && ctx.fill_cache_status.is_none() {
        metrics::CACHE_LOOKUPS
            .with_label_values(&[cache.as_str()])
            .inc();
        if session.cache.lock_duration().is_some() {
            metrics::CACHE_LOCK_WAITS.inc();
        }
    }
    if let Some(admission) = &ctx.gate {
        gate::settle(&edge.state, admission, status).await;
    }
    // A node's request is its player's, counted where that player was served.
    if let (Some(Target::Stream(media)), None) = (&ctx.target, ctx.fleet.from_peer) {
        edge.state.stats.record(
            &media.path.hash,
            crate::stats::Sample {
                bytes: ctx.bytes_out as u64,
                duration: elapsed,
                upstream: ctx.upstream_latency,
                upstream_error: ctx.upstream_error,
                cache_hit: cache == "hit",
            },
        );
    }
    metrics::REQUESTS
        .with_label_values(&["edge", class, metrics::status_label(status)])
        .inc();
    metrics::REQUEST_DURATION
        .with_label_values(&["edge", class])
        .observe(elapsed.as_secs_f64());
    metrics::BYTES_OUT
        .with_label_values(&[class])
        .inc_by(ctx.bytes_out as u64);
    if edge.state.config.log.access_log {
        let client =
            crate::client::client_of(session.as_downstream(), &edge.state.config.trusted_proxies);
        let req = session.req_header();
        tracing::info!(
            target: "sluice::access",
            listener = "edge",
            // The one client address every decision uses (PROXY protocol and trusted
            // X-Forwarded-For applied).
            client = %client.ip,
            version = ?req.version,
            method = %req.method,
            // The path only (queries carry tokens, credentials and ctx ids), path-form ctx
            // redacted.
            path = %crate::redact::redact_path(req.uri.path()),
            status,
            bytes = ctx.bytes_out,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            cache = %cache,
            class,
        );
    }
}

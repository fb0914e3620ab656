//! `logging` and `request_summary`: one access-log line, the request metrics, per-player
//! stats, a reserved use given back — and no credential in any log line.
//!
//! Queries carry credentials (`token=`, `pc=`, `ctx=`, and provider tokens inside `url=`),
//! so nothing here logs one: the access log has the path only, and the summary Pingora puts
//! in its own WARN/ERROR lines is the method, path, host and request id ([`summary`]).
//!
//! The bytes counted (access line, `sluice_bytes_out_total`, per-stream egress, stats) are
//! the response body bytes the downstream session wrote, whoever wrote them: a proxied or
//! cached body, an API answer, a local refusal, a proxy failure's error body.

use pingora_proxy::Session;

use super::{gate, Edge, RequestCtx, Target};
use crate::metrics;

/// What Pingora's own error lines say about a request: no query, no credentials; the
/// request id once it is settled.
pub(super) fn summary(session: &Session, ctx: &RequestCtx) -> String {
    let req = session.req_header();
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let path = crate::redact::redact_path(req.uri.path());
    if ctx.request_id.is_empty() {
        format!("{} {path}, Host: {host}", req.method)
    } else {
        format!(
            "{} {path}, Host: {host}, request_id={}",
            req.method, ctx.request_id
        )
    }
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
        // The fill of a playlist answer (or a prefetch): its parent logs the request; the
        // cache lookup and the origin fetch are this one's.
        if edge.cache.is_some() {
            metrics::CACHE_LOOKUPS
                .with_label_values(&[cache.as_str()])
                .inc();
            lock_waited(session, ctx);
        }
        if went_to_origin(ctx) {
            if let Some((route, stream)) = stream_label(edge, ctx, false) {
                metrics::per_stream::record_fill_fetch(route, &stream);
            }
        }
        return;
    }
    // 0: no answer went out (the player left first), whatever was meant or buffered.
    let status = if ctx.player_gone {
        0
    } else {
        session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.local_status)
            .unwrap_or(0)
    };
    let class = ctx.class.as_str();
    let elapsed = ctx.started.elapsed();
    let bytes_out = session.as_downstream().body_bytes_sent();
    let looked_up = ctx.target.is_some() && edge.cache.is_some();
    if looked_up && ctx.fill_cache_status.is_none() {
        metrics::CACHE_LOOKUPS
            .with_label_values(&[cache.as_str()])
            .inc();
        lock_waited(session, ctx);
    }
    if let Some(target) = &ctx.target {
        if target.blocking() {
            metrics::LLHLS_BLOCKING
                .with_label_values(&[class])
                .observe(elapsed.as_secs_f64());
        }
        if cache == "hit" && edge.prefetched.recently(target.cache_primary()) {
            metrics::PREFETCH_HITS.inc();
        }
    }
    // A node's request is counted where its player was served.
    if ctx.fleet.from_peer.is_none() {
        if let Some((route, stream)) = stream_label(edge, ctx, succeeded(status)) {
            metrics::per_stream::record(&metrics::per_stream::Served {
                route,
                stream: &stream,
                bytes: bytes_out as u64,
                lookup: looked_up.then_some(cache == "hit"),
                origin_fetch: went_to_origin(ctx),
            });
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
                bytes: bytes_out as u64,
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
        .inc_by(bytes_out as u64);
    if edge.state.config.log.access_log.on() {
        let req = session.req_header();
        crate::logging::access(&crate::logging::AccessLine {
            listener: "edge",
            client: crate::client::client_of(
                session.as_downstream(),
                &edge.state.config.trusted_proxies,
            )
            .ip,
            version: req.version,
            method: &req.method,
            path: req.uri.path(),
            status,
            bytes: bytes_out,
            duration: elapsed,
            cache: &cache,
            class,
            request_id: &ctx.request_id,
        });
    }
}

/// The answer a per-stream label may be admitted on: the player got the object.
fn succeeded(status: u16) -> bool {
    (200..300).contains(&status) || status == 304
}

/// This request (not a fleet owner) fetched from the origin.
fn went_to_origin(ctx: &RequestCtx) -> bool {
    ctx.upstream_started.is_some() && (ctx.fleet.owner.is_none() || ctx.fleet.fallback)
}

fn lock_waited(session: &Session, ctx: &RequestCtx) {
    if let Some(waited) = session.cache.lock_duration() {
        metrics::CACHE_LOCK_WAITS.inc();
        metrics::CACHE_LOCK_WAIT
            .with_label_values(&[ctx.class.as_str()])
            .observe(waited.as_secs_f64());
    }
}

/// The per-stream route and label of a media request ([`metrics::per_stream`]): a
/// configured content by its configured hash, a registered stream id by itself, any other
/// hash or provider/channel through the bounded admission.
fn stream_label(edge: &Edge, ctx: &RequestCtx, admit: bool) -> Option<(&'static str, String)> {
    match ctx.target.as_ref()? {
        Target::Stream(media) => {
            let hash = media.path.hash.as_str();
            // The stream-id resolution is the one the request was routed by.
            let known = match edge.state.config.access.streaming.content_by_hash(hash) {
                Some(c) => Some(c.hash.as_str()),
                None => media.publisher.is_some().then_some(hash),
            };
            Some((
                "stream",
                metrics::per_stream::stream_label(hash, known, admit),
            ))
        }
        Target::Proxy(p) => Some((
            "proxy",
            metrics::per_stream::proxy_label(&p.provider.id, &p.context.channel, admit),
        )),
    }
}

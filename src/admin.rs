//! The admin service: operator routes on `listen.admin` (loopback by default).
//!
//! Endpoints: `GET /health`, `GET /metrics` (Prometheus), and the operator API routes listed
//! in [`crate::api`]. A Pingora listening service (a `ServeHttp` app), so its socket is handed
//! over on a graceful upgrade like the edge's.

use std::time::Instant;

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

use crate::api;
use crate::metrics;
use crate::state::AppState;

pub struct AdminApp {
    state: AppState,
    router: axum::Router,
}

impl AdminApp {
    pub fn new(state: AppState) -> AdminApp {
        let router = api::router(state.clone(), api::Listener::Admin);
        AdminApp { state, router }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let started = Instant::now();
        // The admin listener exempts no one (nothing to end).
        let _ = crate::conn::request_started(session, false);
        let answer = api::handle(&self.router, session, &self.state, false).await;
        // Answered (the write follows at once): idle time starts.
        crate::conn::request_finished(session);
        let resp = answer.response;
        let request_id = answer.request_id;
        let status = resp.status().as_u16();
        let class = if session.req_header().uri.path() == "/metrics" {
            "metrics"
        } else {
            "api"
        };
        let elapsed = started.elapsed();
        metrics::REQUESTS
            .with_label_values(&["admin", class, crate::metrics::status_label(status)])
            .inc();
        metrics::REQUEST_DURATION
            .with_label_values(&["admin", class])
            .observe(elapsed.as_secs_f64());
        let (parts, body) = resp.into_parts();
        if self.state.config.log.access_log {
            let req = session.req_header();
            tracing::info!(
                target: "sluice::access",
                listener = "admin",
                method = %req.method,
                path = %req.uri.path(),
                status,
                bytes = body.len(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                cache = "none",
                class,
                request_id = %request_id,
            );
        }
        // HEAD: the GET's headers and length; Pingora writes no body for a HEAD.
        let body = if answer.head_only {
            Vec::new()
        } else {
            body.to_vec()
        };
        Response::from_parts(parts, body)
    }
}

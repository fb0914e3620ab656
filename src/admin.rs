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
use tracing::Instrument;

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
        // The request's id, settled once (on the request header, where the API layer reads
        // it), and the span every line logged while answering carries it in.
        let request_id =
            crate::request_id::accept(session.req_header().headers.get(crate::request_id::HEADER));
        if let Ok(v) = http::HeaderValue::from_str(&request_id) {
            session
                .req_header_mut()
                .insert_header(crate::request_id::HEADER, v)
                .ok();
        }
        let answer = api::handle(&self.router, session, &self.state, None)
            .instrument(crate::logging::request_span(&request_id))
            .await;
        // Answered (the write follows at once): idle time starts.
        crate::conn::request_finished(session, None);
        let resp = answer.response;
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
        // HEAD: the GET's headers and length; Pingora writes no body for a HEAD.
        let body = if answer.head_only {
            Vec::new()
        } else {
            body.to_vec()
        };
        if self.state.config.log.access_log.on() {
            let req = session.req_header();
            let client = crate::client::client_of(session, &self.state.config.trusted_proxies);
            crate::logging::access(&crate::logging::AccessLine {
                listener: "admin",
                client: client.ip,
                version: req.version,
                method: &req.method,
                path: req.uri.path(),
                status,
                bytes: body.len(),
                duration: elapsed,
                cache: "none",
                class,
                request_id: &answer.request_id,
            });
        }
        Response::from_parts(parts, body)
    }
}

//! HTTP/2 connections: sluice's own accept loop, so that a connection's streams are held to
//! the rules its HTTP/1.1 neighbours meet.
//!
//! ```text
//! GuardedStream (ALPN h2) ─▶ preface within header_timeout of accept ─▶ accept loop
//!     each stream ─▶ its place in the client's share (else 503) ─▶ a task: Pingora's HTTP app
//!     a stream reset before its answer ─▶ the connection's reset budget (else GOAWAY)
//!     no stream in flight for keepalive_timeout ─▶ closed
//!     SIGTERM / upgrade ─▶ GOAWAY (and h2's PING); streams in flight finish under their own
//!         deadlines; then closed on the PONG, or header_timeout after the last one ends
//! ```
//!
//! Pingora's own loop (`pingora_core::apps`) spawns each stream and forgets it: the preface
//! had no deadline, a stream reset after it was accepted was not counted anywhere (its task
//! and its origin fetch ran on), every stream of every connection was served however many a
//! client held, and after GOAWAY a client that never answered PING held the connection (and
//! the drain) for the whole grace period. Here the loop keeps its streams' tasks, so it knows
//! what is in flight, and the streams report back through a [`StreamTicket`] in their request
//! header's extensions ([`super::request_finished`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use pingora_core::apps::HttpServerApp;
use pingora_core::protocols::http::v2::server::{self as h2s, H2Accept};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Digest, Stream};
use pingora_core::server::ShutdownWatch;
use pingora_http::ResponseHeader;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::admission::{Permit, Refusal};
use super::guard::GuardLimits;
use crate::metrics;

/// Streams a connection may reject as malformed before it is closed (as Pingora's own loop).
const MAX_MALFORMED: usize = 32;

/// How long a connection told to calm down (GOAWAY) is given to flush it.
const GOAWAY_FLUSH: Duration = Duration::from_secs(1);

/// A token bucket of stream resets: `capacity` at once, one more back each second. A player
/// cancels the odd request (a quality switch, a seek); a flood spends the bucket in moments.
#[derive(Debug)]
pub struct ResetBudget {
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl ResetBudget {
    const REFILL_PER_SEC: f64 = 1.0;

    pub fn new(capacity: u32, now: Instant) -> ResetBudget {
        ResetBudget {
            capacity: f64::from(capacity),
            tokens: f64::from(capacity),
            at: now,
        }
    }

    /// Spend one reset at `now`; `false` once the budget is spent.
    pub fn spend(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * Self::REFILL_PER_SEC;
        self.tokens = (self.tokens + refill).min(self.capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What one connection's streams report back to its accept loop.
#[derive(Debug)]
struct Shared {
    resets: Mutex<ResetBudget>,
    /// The reset budget is spent: the loop sends GOAWAY (ENHANCE_YOUR_CALM) and closes.
    calm: AtomicBool,
    wake: Notify,
}

impl Shared {
    /// One stream ended before its answer because of its client (a reset, a write that failed).
    fn reset_before_answer(&self) {
        if !self.resets.lock().spend(Instant::now()) && !self.calm.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }
}

/// A stream's handle on its connection, in its request header's extensions.
#[derive(Debug, Clone)]
pub struct StreamTicket(Arc<Shared>);

impl StreamTicket {
    /// The stream's handling ended; `client_gone`: before its answer was complete, because of
    /// its client.
    pub fn finished(&self, client_gone: bool) {
        if client_gone {
            self.0.reset_before_answer();
        }
    }

    /// A stream reset before its answer counts the same whenever it is noticed; this one was
    /// refused for the connection's own streams in flight.
    fn refused(&self) {
        self.0.reset_before_answer();
    }
}

/// The rules one connection is served under.
pub struct H2Rules {
    /// The preface (and the server's first settings exchange) is due then.
    pub preface_due: Instant,
    /// Deadlines, streams in flight (`h2_max_streams`) and the reset budget (`h2_max_resets`).
    pub limits: Arc<GuardLimits>,
}

/// The connection's digest, shared by its streams (as Pingora's loop builds it).
fn digest_of(stream: &Stream) -> Arc<Digest> {
    Arc::new(Digest {
        ssl_digest: stream.get_ssl_digest(),
        timing_digest: stream.get_timing_digest(),
        proxy_digest: stream.get_proxy_digest(),
        socket_digest: stream.get_socket_digest(),
    })
}

/// Serve one HTTP/2 connection; returns when it is closed. `permit` is the connection's place
/// in its listener's admission (it covers one stream in flight).
pub async fn serve<A>(
    app: &Arc<A>,
    stream: Stream,
    permit: Arc<Permit>,
    rules: H2Rules,
    shutdown: &ShutdownWatch,
) where
    A: HttpServerApp + Send + Sync + 'static,
{
    let digest = digest_of(&stream);
    let handshake = h2s::handshake(stream, app.h2_options());
    let mut conn = match tokio::time::timeout_at(rules.preface_due, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            metrics::CONNECTIONS_CLOSED
                .with_label_values(&["header_timeout"])
                .inc();
            tracing::debug!("HTTP/2 preface not received within limits.header_timeout");
            return;
        }
    };
    let shared = Arc::new(Shared {
        resets: Mutex::new(ResetBudget::new(rules.limits.h2_max_resets, Instant::now())),
        calm: AtomicBool::new(false),
        wake: Notify::new(),
    });
    let ticket = StreamTicket(shared.clone());
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut malformed = 0usize;
    let mut shutdown = shutdown.clone();
    let mut draining = *shutdown.borrow();
    if draining {
        conn.graceful_shutdown();
    }
    // When the connection, idle, is closed: keepalive_timeout after its last stream; while
    // draining, header_timeout (the client has had GOAWAY and a PING: h2 closes the
    // connection on the PONG, and a client that never answers is not waited for).
    let idle_after = |draining: bool| {
        if draining {
            rules.limits.header_timeout
        } else {
            rules.limits.keepalive_timeout
        }
    };
    let mut idle_due = Instant::now() + idle_after(draining);
    let end = loop {
        tokio::select! {
            biased;
            _ = shutdown.changed(), if !draining => {
                draining = true;
                conn.graceful_shutdown();
                idle_due = idle_due.min(Instant::now() + idle_after(true));
            }
            _ = shared.wake.notified() => {
                if shared.calm.load(Ordering::Acquire) {
                    break Some("h2_resets");
                }
            }
            accepted = h2s::HttpSession::from_h2_conn(&mut conn, digest.clone()) => {
                match accepted {
                    // The client closed, or the connection failed (commonly a dropped TCP).
                    Err(e) => {
                        tracing::debug!(error = %e, "HTTP/2 connection ended");
                        break None;
                    }
                    Ok(None) => break None,
                    Ok(Some(H2Accept::Rejected)) => {
                        malformed += 1;
                        if malformed >= MAX_MALFORMED {
                            break Some("h2_malformed");
                        }
                    }
                    Ok(Some(H2Accept::Session(session))) => {
                        while tasks.try_join_next().is_some() {}
                        admit(app, session, &permit, &ticket, &rules, &mut tasks, shutdown.clone());
                    }
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                if tasks.is_empty() {
                    idle_due = Instant::now() + idle_after(draining);
                }
            }
            _ = tokio::time::sleep_until(idle_due), if tasks.is_empty() => {
                if !draining {
                    metrics::CONNECTIONS_CLOSED.with_label_values(&["idle_timeout"]).inc();
                }
                break None;
            }
        }
    };
    // `None`: the client closed, the connection failed or idled out; `Some`: a limit closed it.
    match end {
        None => {
            // The connection is gone or closing; its streams' tasks end as their writes fail.
            tasks.detach_all();
        }
        Some(reason) => {
            metrics::CONNECTIONS_CLOSED
                .with_label_values(&[reason])
                .inc();
            tracing::debug!(reason, "HTTP/2 connection closed by a limit");
            // What its streams were doing (origin fetches for nobody) stops with it.
            tasks.abort_all();
            if reason == "h2_resets" {
                conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                let _ = tokio::time::timeout(
                    GOAWAY_FLUSH,
                    std::future::poll_fn(|cx| conn.poll_closed(cx)),
                )
                .await;
            }
        }
    }
}

/// Take a new stream in: within the connection's streams in flight and its client's share it
/// is served on its own task; otherwise refused.
fn admit<A>(
    app: &Arc<A>,
    mut session: h2s::HttpSession,
    permit: &Permit,
    ticket: &StreamTicket,
    rules: &H2Rules,
    tasks: &mut JoinSet<()>,
    shutdown: ShutdownWatch,
) where
    A: HttpServerApp + Send + Sync + 'static,
{
    // A client that keeps to SETTINGS_MAX_CONCURRENT_STREAMS never has more tasks than
    // streams; more means it reset streams whose handling still runs, and opened others.
    if tasks.len() >= rules.limits.h2_max_streams {
        metrics::REQUESTS_REFUSED
            .with_label_values(&["h2_streams"])
            .inc();
        session.shutdown_with_reason(h2::Reason::REFUSED_STREAM);
        ticket.refused();
        return;
    }
    // The first stream in flight is the connection's own place; every further one takes one
    // of its client's.
    let place = if tasks.is_empty() {
        None
    } else {
        match permit.stream_place() {
            Ok(p) => Some(p),
            Err(r) => {
                metrics::REQUESTS_REFUSED
                    .with_label_values(&[r.as_str()])
                    .inc();
                tasks.spawn(refuse(session, r, rules.limits.send_timeout));
                return;
            }
        }
    };
    session
        .req_header_mut()
        .extensions_mut()
        .insert(ticket.clone());
    let app = app.clone();
    tasks.spawn(async move {
        let _place = place;
        app.process_new_http(ServerSession::new_http2(session), &shutdown)
            .await;
    });
}

/// Answer a stream over its client's share (as a connection over it is answered).
async fn refuse(mut session: h2s::HttpSession, why: Refusal, send_timeout: Duration) {
    let body = Bytes::from_static(b"{\"error\":\"Too many requests in flight\"}\n");
    let Ok(mut resp) = ResponseHeader::build(503, Some(3)) else {
        return;
    };
    let _ = resp.insert_header("content-type", "application/json");
    let _ = resp.insert_header("content-length", body.len().to_string());
    let _ = resp.insert_header("retry-after", "1");
    let _ = resp.insert_header(super::BUSY_HEADER, "1");
    tracing::debug!(
        reason = why.as_str(),
        "HTTP/2 stream over its client's share"
    );
    session.set_write_timeout(Some(send_timeout));
    if session.write_response_header(Box::new(resp), false).is_ok() {
        let _ = session.write_body(body, true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_budget_spends_and_refills_one_a_second() {
        let t0 = Instant::now();
        let mut b = ResetBudget::new(3, t0);
        assert!(b.spend(t0));
        assert!(b.spend(t0));
        assert!(b.spend(t0));
        assert!(!b.spend(t0 + Duration::from_millis(500)));
        assert!(b.spend(t0 + Duration::from_millis(1600)));
        assert!(!b.spend(t0 + Duration::from_millis(1700)));
        // Never more than its capacity, however long it rested.
        let later = t0 + Duration::from_secs(3600);
        assert!(b.spend(later));
        assert!(b.spend(later));
        assert!(b.spend(later));
        assert!(!b.spend(later));
    }

    #[test]
    fn a_zero_budget_refuses_the_first_reset() {
        let t0 = Instant::now();
        let mut b = ResetBudget::new(0, t0);
        assert!(!b.spend(t0 + Duration::from_secs(5)));
    }
}

//! Edge connections, before any request: admission and the connection's deadlines.
//!
//! ```text
//! accept ─▶ GuardedApp::process_new ─▶ admission (per client, global) ─refused─▶ 503, close
//!                                   │
//!                                   ▼
//!                         GuardedStream (header, idle and send deadlines, header ceiling)
//!                                   │
//!                                   ▼
//!                         Pingora's HTTP/1 or HTTP/2 server loop ─▶ edge phases (crate::edge)
//! ```
//!
//! Pingora's own HTTP/1 application loop stays as it is: [`GuardedApp`] wraps it (the edge
//! proxy, and the admin service, each with its own counts), admits the connection and hands
//! it a guarded stream. HTTP/2 connections are served by sluice's own accept loop ([`h2`]),
//! which holds their streams to the same rules. The applications report request boundaries
//! through [`request_started`] and [`request_finished`].

pub mod admission;
pub mod guard;
pub mod h2;
pub mod proxy_protocol;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use std::os::fd::AsRawFd;

use ipnet::IpNet;
use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest};

use admission::Admission;
use guard::{GuardLimits, GuardedStream};

/// A Pingora application under admission and deadlines.
pub struct GuardedApp<A> {
    inner: Arc<A>,
    admission: Arc<Admission>,
    limits: Arc<GuardLimits>,
    /// TLS terminated here for connections to this address (after any PROXY header,
    /// which precedes it).
    tls: Option<(Arc<Acceptor>, std::net::SocketAddr)>,
    /// Peers allowed to send a PROXY header (`listen.proxy_protocol`); empty: none.
    proxy_protocol_from: Vec<IpNet>,
}

impl<A> GuardedApp<A> {
    pub fn new(inner: Arc<A>, admission: Arc<Admission>, limits: GuardLimits) -> Self {
        GuardedApp {
            inner,
            admission,
            limits: Arc::new(limits),
            tls: None,
            proxy_protocol_from: Vec::new(),
        }
    }

    /// Terminate TLS on connections to `listener`.
    pub fn with_tls(mut self, acceptor: Acceptor, listener: std::net::SocketAddr) -> Self {
        self.tls = Some((Arc::new(acceptor), listener));
        self
    }

    /// The acceptor when `stream` came in on the TLS listener.
    fn tls_for(&self, stream: &Stream) -> Option<Arc<Acceptor>> {
        let (acceptor, listener) = self.tls.as_ref()?;
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(PeerAddr::as_inet).copied())?;
        let matches = local.port() == listener.port()
            && (listener.ip().is_unspecified() || local.ip() == listener.ip());
        matches.then(|| acceptor.clone())
    }

    /// Accept PROXY protocol headers from these peers.
    pub fn with_proxy_protocol(mut self, trusted: Vec<IpNet>) -> Self {
        self.proxy_protocol_from = trusted;
        self
    }

    /// Before admission: the PROXY header (its client becomes the connection's peer).
    async fn accept_proxy_header(
        &self,
        stream: Stream,
        due: tokio::time::Instant,
    ) -> Result<Stream, String> {
        let peer = guard::peer_of(&stream);
        let trusted = peer.is_some_and(|p| {
            crate::client::is_trusted(
                &crate::client::canonical_ip(p.ip()),
                &self.proxy_protocol_from,
            )
        });
        if !trusted {
            return Ok(stream);
        }
        let mut l4 = stream
            .into_any()
            .downcast::<L4Stream>()
            .map_err(|_| "PROXY protocol on a listener that is not plain TCP".to_string())?;
        let declared = tokio::time::timeout_at(due, proxy_protocol::read(&mut l4))
            .await
            .map_err(|_| "PROXY header not received within limits.header_timeout".to_string())?
            .map_err(|e| e.to_string())?;
        if let Some(proxy_protocol::Declared::Client(client)) = declared {
            let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
            let _ = digest.peer_addr.set(Some(PeerAddr::Inet(client)));
            l4.set_socket_digest(digest);
        }
        Ok(l4)
    }
}

/// Marks a `503` this node made itself because it is over a connection or request share
/// (never an origin's relayed `503`): a fleet node asking an owner that answers so fetches
/// from the origin instead ([`crate::edge`]'s `fleet::owner_answered`).
pub const BUSY_HEADER: &str = "x-sluice-busy";

/// The answer to a connection over its client's (or the edge's) share.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\ncontent-length: 33\r\nretry-after: 1\r\nx-sluice-busy: 1\r\n\
connection: close\r\n\r\n\
{\"error\":\"Too many connections\"}\n";

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for GuardedApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let listener = self.admission.listener();
        let refused = |reason: &str| {
            crate::metrics::CONNECTIONS_REFUSED
                .with_label_values(&[listener, reason])
                .inc();
        };
        // One deadline from accept to the first complete request header: the PROXY header,
        // the TLS handshake and the header all count against the same header_timeout.
        let header_due = tokio::time::Instant::now() + self.limits.header_timeout;
        let stream = match self.accept_proxy_header(stream, header_due).await {
            Ok(s) => s,
            Err(e) => {
                refused("proxy_protocol");
                tracing::debug!(error = %e, "connection refused");
                return None;
            }
        };
        // The client as the PROXY header declared it, else the socket's peer.
        let peer = guard::peer_of(&stream);
        let tls = self.tls_for(&stream);
        let permit = match self.admission.admit(peer.map(|p| p.ip())) {
            Ok(p) => p,
            Err(refusal) => {
                refused(refusal.as_str());
                tracing::debug!(peer = ?peer, reason = refusal.as_str(), "connection refused");
                if tls.is_none() {
                    refuse(stream).await;
                }
                return None;
            }
        };
        let stream: Stream = match tls {
            None => stream,
            Some(acceptor) => {
                let handshake = async {
                    let l4 = stream
                        .into_any()
                        .downcast::<L4Stream>()
                        .map_err(|_| "TLS on a listener that is not plain TCP".to_string())?;
                    acceptor.tls_handshake(*l4).await.map_err(|e| e.to_string())
                };
                match tokio::time::timeout_at(header_due, handshake).await {
                    Ok(Ok(tls)) => Box::new(tls),
                    Ok(Err(e)) => {
                        refused("tls");
                        tracing::debug!(peer = ?peer, error = %e, "TLS handshake failed");
                        return None;
                    }
                    Err(_) => {
                        refused("tls");
                        tracing::debug!(peer = ?peer, "TLS handshake not done within limits.header_timeout");
                        return None;
                    }
                }
            }
        };
        let mut guarded = GuardedStream::new(stream, permit, self.limits.clone(), header_due);
        // Fleet nodes talk to each other over HTTP/1.1: an HTTP/2 connection is no node's.
        if guarded.is_http2() && guarded.permit().end_exemption().is_err() {
            tracing::debug!(peer = ?peer, "HTTP/2 connection over its address's share");
            return None;
        }
        if guarded.is_http2() {
            let rules = h2::H2Rules {
                preface_due: header_due,
                limits: self.limits.clone(),
            };
            let permit = guarded.shared_permit();
            h2::serve(&self.inner, Box::new(guarded), permit, rules, shutdown).await;
            return None;
        }
        // Through the guard: its header deadline (started with it) bounds the wait.
        if !guarded.read_first_header().await {
            return None;
        }
        ServerApp::process_new(&self.inner, Box::new(guarded), shutdown).await
    }

    async fn cleanup(&self) {
        // Wakes the proxy's kept-alive connections waiting for a request, so they close.
        ServerApp::cleanup(&*self.inner).await;
    }
}

/// Say 503 and close, reading what the client already sent so the close is not a reset
/// that destroys the answer before it is read. Bounded in time.
async fn refuse(mut stream: Stream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        if stream.write_all(BUSY).await.is_ok() {
            let _ = stream.flush().await;
            let mut sink = [0u8; 4096];
            let mut drained = 0;
            while drained < 64 * 1024 {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        }
    })
    .await;
}

/// Raise the open-files limit to its hard ceiling (as nginx's `worker_rlimit_nofile` would)
/// and return it: every connection, upstream and cache file is a descriptor.
pub fn raise_file_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                return hard;
            }
            soft
        }
        Err(_) => 1024,
    }
}

fn guard_of(session: &ServerSession) -> Option<&GuardedStream> {
    let stream = session.stream()?;
    (**stream).as_any().downcast_ref::<GuardedStream>()
}

/// A request header is in and its handling began: the header deadline no longer applies.
/// `from_node`: the request carries a valid fleet signature; any other request ends a fleet
/// node's connection exemption ([`admission`]), and `Err` says the connection is now over its
/// address's share: answer the request with a refusal and close.
pub fn request_started(session: &ServerSession, from_node: bool) -> Result<(), admission::Refusal> {
    let Some(g) = guard_of(session) else {
        return Ok(());
    };
    g.signal().started();
    if from_node {
        Ok(())
    } else {
        g.permit().end_exemption()
    }
}

/// When the request's body must have arrived: `limits.header_timeout` from the request's
/// start, like its header. HTTP/1.1 keeps the instant its connection guard counted the header
/// against; an HTTP/2 stream (or any session without a guard) starts when its header is in,
/// which is `now` for a caller at the start of the request's handling.
pub fn body_due(session: &ServerSession, header_timeout: Duration) -> tokio::time::Instant {
    match guard_of(session) {
        Some(g) => g.header_due(),
        None => tokio::time::Instant::now() + header_timeout,
    }
}

/// The request's handling ended (`error`: how it failed, if it did). HTTP/1.1: the
/// connection now idles under `limits.keepalive_timeout`. HTTP/2: a stream whose client
/// went away before its answer was complete (a reset, a write that failed) is counted
/// against its connection's reset budget ([`h2`]).
pub fn request_finished(session: &ServerSession, error: Option<&pingora_error::Error>) {
    if let Some(g) = guard_of(session) {
        g.signal().finished();
    }
    if let Some(ticket) = session.req_header().extensions.get::<h2::StreamTicket>() {
        ticket.finished(error.is_some_and(client_went_away));
    }
}

/// Whether `e` ended a request because its client went away (reset the stream, closed the
/// connection, a write to it failed) — not a timeout, not the origin's fault.
fn client_went_away(e: &pingora_error::Error) -> bool {
    use pingora_error::{ErrorSource, ErrorType};
    *e.esource() == ErrorSource::Downstream
        && !matches!(
            e.etype(),
            ErrorType::WriteTimedout | ErrorType::ReadTimedout
        )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_raw_503_is_framed() {
        let text = std::str::from_utf8(super::BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains(&format!("\r\n{}: 1\r\n", super::BUSY_HEADER)));
    }
}

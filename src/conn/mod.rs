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
//! Pingora's own HTTP application loop stays as it is: [`GuardedApp`] wraps it (the edge
//! proxy, and the admin service, each with its own counts), admits the connection and hands
//! it a guarded stream. The applications report request boundaries through
//! [`request_started`] and [`request_finished`].

pub mod admission;
pub mod guard;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use admission::Admission;
use guard::{GuardLimits, GuardedStream};

/// A Pingora application under admission and deadlines.
pub struct GuardedApp<A> {
    inner: Arc<A>,
    admission: Arc<Admission>,
    limits: Arc<GuardLimits>,
}

impl<A> GuardedApp<A> {
    pub fn new(inner: A, admission: Arc<Admission>, limits: GuardLimits) -> Self {
        GuardedApp {
            inner: Arc::new(inner),
            admission,
            limits: Arc::new(limits),
        }
    }
}

/// The answer to a connection over its client's (or the edge's) share.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\ncontent-length: 33\r\nretry-after: 1\r\nconnection: close\r\n\r\n\
{\"error\":\"Too many connections\"}\n";

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for GuardedApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = guard::peer_of(&stream);
        let permit = match self.admission.admit(peer.map(|p| p.ip())) {
            Ok(p) => p,
            Err(refusal) => {
                crate::metrics::CONNECTIONS_REFUSED
                    .with_label_values(&[self.admission.listener(), refusal.as_str()])
                    .inc();
                tracing::debug!(peer = ?peer, reason = refusal.as_str(), "connection refused");
                refuse(stream).await;
                return None;
            }
        };
        let guarded = GuardedStream::new(stream, permit, self.limits.clone(), None);
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
pub fn request_started(session: &ServerSession) {
    if let Some(g) = guard_of(session) {
        g.signal().started();
    }
}

/// The request is answered: the connection now idles under `limits.keepalive_timeout`.
pub fn request_finished(session: &ServerSession) {
    if let Some(g) = guard_of(session) {
        g.signal().finished();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_raw_503_is_framed() {
        let text = std::str::from_utf8(super::BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}

//! The edge connection's own deadlines, enforced on its byte stream.
//!
//! Pingora 0.9 bounds each *read* of a request header (a slowloris sending one byte every few
//! seconds resets it forever) and, once a kept-alive connection has answered a request, waits
//! for the next one without any limit. [`GuardedStream`] wraps the connection and applies:
//!
//! - `limits.header_timeout` to the whole request header: from the connection's accept for
//!   its first request (one deadline across any PROXY header, the TLS handshake and the
//!   header, [`super::GuardedApp`]), from the first byte of each later one; a request body
//!   read by the API is due by the same deadline ([`GuardedStream::header_due`]);
//! - `limits.keepalive_timeout` to the idle time between requests (the proxy's `logging`
//!   phase marks the end of each request through [`RequestSignal`]);
//! - `limits.send_timeout` to any write that makes no progress;
//! - a hard ceiling on the bytes of one request header (answered 431 and closed without
//!   buffering more), so an unfinished megabyte header cannot pin memory. Headers between
//!   `limits.max_header_bytes` and this ceiling are parsed and answered 431 by the request
//!   filter, in the route's error shape.
//!
//! An expired deadline ends the read with end-of-file: Pingora closes the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::SslDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::admission::Permit;
use crate::metrics;

/// The deadlines one connection lives under.
#[derive(Debug, Clone)]
pub struct GuardLimits {
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub send_timeout: Duration,
    /// Header bytes past which the connection is answered 431 and closed unparsed.
    pub header_ceiling: usize,
    /// Small writes held to leave with the next write or flush (`listen.write_buffer`).
    pub write_hold: usize,
    /// HTTP/2: streams in flight per connection (`limits.h2_max_concurrent_streams`).
    pub h2_max_streams: usize,
    /// HTTP/2: the reset budget per connection (`limits.h2_max_pending_resets`).
    pub h2_max_resets: u32,
}

impl GuardLimits {
    pub fn from_config(l: &crate::config::limits::LimitsConfig) -> GuardLimits {
        GuardLimits {
            header_timeout: l.header_timeout,
            keepalive_timeout: l.keepalive_timeout,
            send_timeout: l.send_timeout,
            // Twice the configured limit: anything up to it is parsed and refused in the
            // route's shape; only clearly abusive headers are cut raw.
            header_ceiling: l.max_header_bytes.saturating_mul(2),
            write_hold: crate::config::DEFAULT_WRITE_BUFFER,
            h2_max_streams: l.h2_max_concurrent_streams as usize,
            h2_max_resets: l.h2_max_pending_resets,
        }
    }

    /// Hold up to `bytes` of small writes (0: every write goes out as it comes).
    pub fn with_write_hold(mut self, bytes: usize) -> GuardLimits {
        self.write_hold = bytes;
        self
    }
}

/// Request boundaries on one connection, as the proxy phases report them, and whether the
/// connection has work in flight (a request begun, from its first header byte to its
/// answer): a graceful stop waits for that, not for idle connections.
#[derive(Debug, Default)]
pub struct RequestSignal {
    in_request: AtomicBool,
    finished: AtomicU64,
    busy: AtomicBool,
}

impl RequestSignal {
    /// A request header has been parsed and its phases began.
    pub fn started(&self) {
        self.in_request.store(true, Ordering::Release);
        self.set_busy(true);
    }

    /// The request is answered; the connection idles until the next one.
    pub fn finished(&self) {
        self.finished.fetch_add(1, Ordering::AcqRel);
        self.in_request.store(false, Ordering::Release);
        self.set_busy(false);
    }

    fn set_busy(&self, busy: bool) {
        if self.busy.swap(busy, Ordering::AcqRel) != busy {
            if busy {
                crate::lifecycle::work_started();
            } else {
                crate::lifecycle::work_done();
            }
        }
    }
}

/// Where one request header stands: how many bytes, and whether its end (an empty line
/// after a request line) has been seen.
#[derive(Debug, Default, Clone)]
pub struct HeaderWatch {
    pub bytes: usize,
    pub started: bool,
    pub ended: bool,
    /// A byte other than CR/LF was seen: blank lines before the request line do not end it.
    content: bool,
    /// 1: just after LF; 2: after LF CR.
    newline: u8,
}

impl HeaderWatch {
    /// Account `data`; true once the header's end has been seen (bytes after it are not
    /// counted: they are the body or the next request).
    pub fn feed(&mut self, data: &[u8]) -> bool {
        if self.ended {
            return true;
        }
        if !data.is_empty() {
            self.started = true;
        }
        for (i, &b) in data.iter().enumerate() {
            match b {
                b'\n' => {
                    if self.content && self.newline != 0 {
                        self.ended = true;
                        self.bytes += i + 1;
                        return true;
                    }
                    self.newline = 1;
                }
                b'\r' => self.newline = if self.newline == 1 { 2 } else { 0 },
                _ => {
                    self.content = true;
                    self.newline = 0;
                }
            }
        }
        self.bytes += data.len();
        false
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    /// Between requests, before the next one's first byte.
    Idle,
    /// The header under way must be complete by then.
    Header,
}

/// The answer to a header past the ceiling, written raw (no parsed request to shape it by).
const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
content-type: application/json\r\ncontent-length: 39\r\nconnection: close\r\n\r\n\
{\"error\":\"Request header is too large\"}";

/// An edge connection under its deadlines (see the module docs).
pub struct GuardedStream {
    inner: Stream,
    signal: RequestSignal,
    limits: Arc<GuardLimits>,
    http2: bool,
    seen_finished: u64,
    header: HeaderWatch,
    deadline: Option<Deadline>,
    read_timer: Pin<Box<Sleep>>,
    write_stalled: bool,
    write_timer: Pin<Box<Sleep>>,
    /// The raw 431 being written, and how much of it is out.
    refusing: Option<(Bytes, usize)>,
    /// Bytes read by [`Peek::try_peek`] (already seen by the header watch), read again first.
    peeked: Vec<u8>,
    /// Small writes held back ([`GuardLimits::write_hold`]): a response header, a chunk
    /// header, a small body. They leave with the next larger write in one vectored send (the
    /// larger write is not copied) or at the next flush.
    held: Vec<u8>,
    permit: Arc<Permit>,
}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .field("http2", &self.http2)
            .finish()
    }
}

impl GuardedStream {
    /// Guard `inner` (already past TLS), whose first request header is due at `header_due`
    /// (`limits.header_timeout` after the connection was accepted). Must be called inside the
    /// runtime (it arms timers).
    pub fn new(
        inner: Stream,
        permit: Permit,
        limits: Arc<GuardLimits>,
        header_due: Instant,
    ) -> GuardedStream {
        let http2 = matches!(inner.selected_alpn_proto(), Some(ALPN::H2));
        let now = Instant::now();
        let signal = RequestSignal::default();
        // A fresh connection is work from its accept: its first request is on the way (a
        // client descheduled between connect and send is still a player), so a drain waits
        // for it — within the header deadline — instead of exiting under it (the close
        // would reset a request that was about to be sent). HTTP/2 streams are not reported
        // one by one: the connection is the work (on a graceful stop Pingora sends GOAWAY
        // and it ends with its last stream).
        signal.set_busy(true);
        GuardedStream {
            inner,
            signal,
            http2,
            seen_finished: 0,
            header: HeaderWatch::default(),
            // The first request's header is due header_timeout after the connection opened.
            deadline: Some(Deadline::Header),
            read_timer: Box::pin(tokio::time::sleep_until(header_due)),
            write_stalled: false,
            write_timer: Box::pin(tokio::time::sleep_until(now + limits.send_timeout)),
            refusing: None,
            peeked: Vec::new(),
            held: Vec::new(),
            limits,
            permit: Arc::new(permit),
        }
    }

    /// This connection's place in its listener's admission.
    pub fn permit(&self) -> &Permit {
        &self.permit
    }

    /// The same place, for an HTTP/2 connection's streams to take their own places beside it
    /// ([`Permit::stream_place`]).
    pub fn shared_permit(&self) -> Arc<Permit> {
        self.permit.clone()
    }

    /// Whether the connection speaks HTTP/2 (ALPN `h2`).
    pub fn is_http2(&self) -> bool {
        self.http2
    }

    /// When the current request's header was (or is) due: `limits.header_timeout` after the
    /// request's start (its first byte; for the first request, the connection's accept). The
    /// timer keeps this instant until the connection idles after the request's answer.
    pub fn header_due(&self) -> Instant {
        self.read_timer.deadline()
    }

    /// The request boundaries of this connection (for the proxy phases).
    pub fn signal(&self) -> &RequestSignal {
        &self.signal
    }

    fn arm(&mut self, deadline: Deadline, after: Duration) {
        self.deadline = Some(deadline);
        self.read_timer.as_mut().reset(Instant::now() + after);
    }

    /// Keep writing the raw 431; end-of-file to the reader once it is out (or cannot be).
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, off)) = self.refusing.take() {
            if off >= bytes.len() {
                let _ = Pin::new(&mut self.inner).poll_flush(cx);
                return Poll::Ready(Ok(()));
            }
            let r = Pin::new(&mut self.inner).poll_write(cx, &bytes[off..]);
            match self.stall(cx, r) {
                Poll::Ready(Ok(n)) if n > 0 => self.refusing = Some((bytes, off + n)),
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    self.refusing = Some((bytes, off));
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// A write that cannot progress for `send_timeout` fails.
    fn stall<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => {
                if !self.write_stalled {
                    self.write_stalled = true;
                    self.write_timer
                        .as_mut()
                        .reset(Instant::now() + self.limits.send_timeout);
                }
                if self.write_timer.as_mut().poll(cx).is_ready() {
                    metrics::CONNECTIONS_CLOSED
                        .with_label_values(&["send_timeout"])
                        .inc();
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "limits.send_timeout: no write progress to the client",
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.write_stalled = false;
                ready
            }
        }
    }

    fn poll_guarded_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.refusing.is_some() {
            return self.poll_refusal(cx);
        }
        let awaiting_header = if self.http2 {
            // HTTP/2 bounds its own streams (h2 idle timeout, header list size); here only
            // the connection preface is due within header_timeout.
            !self.header.started
        } else if self.signal.in_request.load(Ordering::Acquire) {
            false
        } else {
            let finished = self.signal.finished.load(Ordering::Acquire);
            if finished != self.seen_finished {
                self.seen_finished = finished;
                self.header = HeaderWatch::default();
                self.arm(Deadline::Idle, self.limits.keepalive_timeout);
            }
            !self.header.ended
        };
        if !awaiting_header {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        if let Some(deadline) = self.deadline {
            if self.read_timer.as_mut().poll(cx).is_ready() {
                self.deadline = None;
                let reason = match deadline {
                    Deadline::Idle => "idle_timeout",
                    Deadline::Header => "header_timeout",
                };
                metrics::CONNECTIONS_CLOSED
                    .with_label_values(&[reason])
                    .inc();
                // End of file: Pingora closes the connection.
                return Poll::Ready(Ok(()));
            }
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let new = &buf.filled()[before..];
            if new.is_empty() {
                return r;
            }
            if self.deadline == Some(Deadline::Idle) {
                self.arm(Deadline::Header, self.limits.header_timeout);
            }
            // A request has begun: a graceful stop waits for its answer.
            self.signal.set_busy(true);
            if self.http2 {
                self.header.started = true;
                self.deadline = None;
                return r;
            }
            if self.header.feed(new) {
                self.deadline = None;
            } else if self.header.bytes > self.limits.header_ceiling {
                buf.set_filled(before);
                metrics::CONNECTIONS_CLOSED
                    .with_label_values(&["header_too_large"])
                    .inc();
                self.refusing = Some((Bytes::from_static(TOO_LARGE), 0));
                return self.poll_refusal(cx);
            }
        }
        r
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.signal.set_busy(false);
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.peeked.is_empty() {
            let n = this.peeked.len().min(buf.remaining());
            buf.put_slice(&this.peeked[..n]);
            this.peeked.drain(..n);
            return Poll::Ready(Ok(()));
        }
        this.poll_guarded_read(cx, buf)
    }
}

impl GuardedStream {
    /// Send what is held (before a flush, a shutdown or a vectored write).
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let r = Pin::new(&mut self.inner).poll_write(cx, &self.held);
            match self.stall(cx, r) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.held.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// A write (one slice from `poll_write`, several from `poll_write_vectored`): held when
    /// it fits the hold, else sent after the held bytes, together with them below
    /// [`COMBINE_BELOW`]. Ready with how many of `bufs`' bytes were taken.
    fn poll_write_slices(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.held.len() + total <= self.limits.write_hold {
            for b in bufs {
                self.held.extend_from_slice(b);
            }
            return Poll::Ready(Ok(total));
        }
        if total >= COMBINE_BELOW {
            match self.poll_send_held(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other.map(|r| r.map(|()| 0)),
            }
        }
        while !self.held.is_empty() {
            // The held bytes first, then as many of `bufs` as one call takes.
            let mut all = [io::IoSlice::new(&[]); 8];
            all[0] = io::IoSlice::new(&self.held);
            let n = bufs.len().min(all.len() - 1);
            all[1..=n].copy_from_slice(&bufs[..n]);
            let r = Pin::new(&mut self.inner).poll_write_vectored(cx, &all[..=n]);
            match self.stall(cx, r) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(sent)) if sent > self.held.len() => {
                    let of_bufs = sent - self.held.len();
                    self.held.clear();
                    return Poll::Ready(Ok(of_bufs));
                }
                Poll::Ready(Ok(sent)) => {
                    self.held.drain(..sent);
                }
                other => return other,
            }
        }
        let r = match bufs {
            [one] => Pin::new(&mut self.inner).poll_write(cx, one),
            _ => Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
        };
        self.stall(cx, r)
    }
}

/// Writes of at least this many bytes leave in their own send, after the held bytes: measured
/// (16 KB and 60 KB hits, `make bench`), a header sent together with a 16 KB body in one
/// `writev` costs less than two sends, but with a 60 KB body it cost ~35% more system time
/// than two sends (the body copied into socket buffers at the header's offset).
const COMBINE_BELOW: usize = 32 * 1024;

/// Writes: Pingora writes a response header, then the body, then flushes. Sent as they come
/// they are two TCP sends (two packets) for every small answer; copied into a buffer they
/// are one send but a copy of every body. So small writes are held (up to
/// [`GuardLimits::write_hold`] bytes) and leave with the next write in one vectored send,
/// which copies nothing, or at the flush: a header and its 16 KB segment are one `writev`,
/// a header and a 1 KB playlist one `send` of the held bytes; a body of [`COMBINE_BELOW`]
/// or more follows its header in a send of its own. Every writer flushes at the
/// end of its answer (Pingora's HTTP/1 and HTTP/2 sessions do), so nothing stays held.
impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_slices(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_slices(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_send_held(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.stall(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_send_held(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.stall(cx, r)
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        // A client that stopped reading must not hold the close either.
        let _ = tokio::time::timeout(self.limits.send_timeout, self.inner.shutdown()).await;
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&pingora_core::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

impl GuardedStream {
    /// Read a fresh connection's first request header through the guard (its deadline and
    /// size ceiling apply) and keep the bytes to be read again, so Pingora parses a complete
    /// header at once. Pingora gives up a request header still arriving when its service
    /// begins to shut down: without this, a drain or a graceful upgrade reset every new
    /// connection whose header came in more than one read. HTTP/2 waits for the first bytes
    /// of its preface only (its streams are Pingora's to bound). `false`: the client closed,
    /// or sent no complete header in time (counted where that was decided).
    pub async fn read_first_header(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 4096];
        loop {
            // Taken out while reading, so the read comes from the socket, not from them.
            let mut peeked = std::mem::take(&mut self.peeked);
            let n = match self.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            peeked.extend_from_slice(&chunk[..n]);
            self.peeked = peeked;
            if self.http2 || self.header.ended {
                return true;
            }
        }
    }
}

#[async_trait]
impl Peek for GuardedStream {
    /// Wait for `buf.len()` bytes through the guard (its header deadline applies: a client
    /// that sends nothing in time gets end of file, counted as a `header_timeout` close) and
    /// keep them to be read again.
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        use tokio::io::AsyncReadExt;
        // Taken out while reading, so the read below comes from the socket, not from them.
        let mut peeked = std::mem::take(&mut self.peeked);
        let have = peeked.len();
        if have < buf.len() {
            peeked.resize(buf.len(), 0);
            self.read_exact(&mut peeked[have..]).await?;
        }
        buf.copy_from_slice(&peeked[..buf.len()]);
        self.peeked = peeked;
        Ok(true)
    }
}

/// The peer address as a socket digest would report it.
pub fn peer_of(stream: &Stream) -> Option<std::net::SocketAddr> {
    stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(PeerAddr::as_inet).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guarded server side of a real loopback connection, and its client side.
    async fn pair(write_hold: usize) -> (GuardedStream, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = l.accept().await.unwrap();
        // Pingora's default 1,460-byte write buffer under the guard: writes at least that
        // large pass through it.
        let raw = pingora_core::protocols::l4::stream::Stream::from(server);
        let admission = super::super::admission::Admission::new("edge", 10, 10, vec![], vec![]);
        let permit = admission.admit(None).unwrap();
        let limits = GuardLimits {
            header_timeout: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(5),
            header_ceiling: 1 << 16,
            write_hold: 0,
            h2_max_streams: 128,
            h2_max_resets: 32,
        }
        .with_write_hold(write_hold);
        (
            GuardedStream::new(
                Box::new(raw),
                permit,
                Arc::new(limits),
                Instant::now() + Duration::from_secs(5),
            ),
            client,
        )
    }

    async fn read_now(c: &mut tokio::net::TcpStream) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), c.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    #[tokio::test]
    async fn small_writes_wait_for_the_next_write_or_the_flush() {
        use tokio::io::AsyncWriteExt;
        let (mut g, mut c) = pair(64).await;
        g.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        assert!(
            read_now(&mut c).await.is_empty(),
            "a held header went out alone"
        );
        // A write past the hold takes the held bytes with it, in order.
        let body: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        g.write_all(&body).await.unwrap();
        let mut want = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        want.extend_from_slice(&body);
        assert_eq!(read_now(&mut c).await, want);
        // A small tail leaves at the flush.
        g.write_all(b"tail").await.unwrap();
        assert!(read_now(&mut c).await.is_empty());
        g.flush().await.unwrap();
        assert_eq!(read_now(&mut c).await, b"tail");
        // A vectored write is held or sent with the held bytes the same way.
        g.write_all(b"ab").await.unwrap();
        let parts = [io::IoSlice::new(b"cd"), io::IoSlice::new(&body)];
        let n = g.write_vectored(&parts).await.unwrap();
        g.flush().await.unwrap();
        let got = read_now(&mut c).await;
        assert_eq!(&got[..4], b"abcd");
        assert_eq!(got.len(), 2 + n);
    }

    #[tokio::test]
    async fn a_slow_reader_gets_every_byte_in_order() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut g, mut c) = pair(4096).await;
        // Far more than the socket buffers: the writes go out in partial sends.
        let body: Vec<u8> = (0..8_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = {
            let mut e = b"header".to_vec();
            e.extend_from_slice(&body);
            e.extend_from_slice(b"0\r\n\r\n");
            e
        };
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 7919];
            loop {
                tokio::time::sleep(Duration::from_micros(50)).await;
                match c.read(&mut buf).await.unwrap() {
                    0 => break,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
            got
        });
        g.write_all(b"header").await.unwrap();
        for chunk in body.chunks(300_000) {
            g.write_all(chunk).await.unwrap();
        }
        g.write_all(b"0\r\n\r\n").await.unwrap();
        g.flush().await.unwrap();
        AsyncWriteExt::shutdown(&mut g).await.unwrap();
        drop(g);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes out of order");
    }

    #[test]
    fn a_header_ends_at_its_first_empty_line() {
        let mut w = HeaderWatch::default();
        assert!(!w.feed(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(w.feed(b"\r\nbody bytes"));
        assert_eq!(w.bytes, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".len());
    }

    #[test]
    fn bare_lf_lines_end_a_header_too() {
        let mut w = HeaderWatch::default();
        assert!(w.feed(b"GET / HTTP/1.1\nHost: a\n\n"));
    }

    #[test]
    fn blank_lines_before_the_request_line_do_not_end_it() {
        let mut w = HeaderWatch::default();
        assert!(!w.feed(b"\r\n\r\n\n\n"));
        assert!(!w.feed(b"GET / HTTP/1.1\r\n"));
        assert!(w.feed(b"\r\n"));
    }

    #[test]
    fn the_end_is_found_across_reads_byte_by_byte() {
        let mut w = HeaderWatch::default();
        let req = b"GET / HTTP/1.1\r\nX: y\r\n\r\n";
        for (i, b) in req.iter().enumerate() {
            let ended = w.feed(std::slice::from_ref(b));
            assert_eq!(ended, i == req.len() - 1, "byte {i}");
        }
        assert_eq!(w.bytes, req.len());
    }

    #[test]
    fn a_cr_inside_a_line_is_not_a_line_end() {
        let mut w = HeaderWatch::default();
        assert!(!w.feed(b"GET / HTTP/1.1\r\nX: a\rb\r\n"));
        assert!(w.feed(b"\r\n"));
    }

    #[test]
    fn the_raw_431_is_framed() {
        let text = std::str::from_utf8(TOO_LARGE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}

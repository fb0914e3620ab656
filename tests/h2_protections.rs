//! Request-level protections hold on every protocol (issue 21), against the real binary: the
//! same case over HTTP/1.1 and over HTTP/2 (raw frames from the `h2` crate on the TLS edge
//! listener), with short limits.
//!
//! - a media request with a body (an HTTP/2 stream whose HEADERS lack END_STREAM) is refused
//!   and never reaches the origin;
//! - an API request body must arrive within `limits.header_timeout` (408, then closed);
//! - a stream the client never opens a window for is ended after `limits.send_timeout`;
//! - on the TLS listener one deadline runs from accept to the first complete header (it does
//!   not restart after the handshake or the PROXY header);
//! - SIGINT during a SIGTERM drain exits at once.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{random_bytes, signal, Reply, Sluice, TestOrigin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SEGMENT: &str = "/stream/h/v/seg.ts";

/// How a test reaches the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Http11,
    Http2,
}

struct Edge {
    s: Sluice,
    o: common::RunningOrigin,
    p: common::Pki,
    tls: SocketAddr,
    segment: Bytes,
}

impl Edge {
    /// sluice with a TLS listener beside the cleartext one, `limits` (indented two spaces)
    /// and `listen` keys.
    fn start(limits: &str, listen: &str) -> Edge {
        Self::start_with(limits, listen, "")
    }

    /// As [`Edge::start`], with `extra` top-level YAML.
    fn start_with(limits: &str, listen: &str, extra: &str) -> Edge {
        let segment = random_bytes(2 * 1024 * 1024, 21);
        let o = TestOrigin::new()
            .route("/h/v/seg.ts", Reply::ok(segment.clone(), "video/mp2t"))
            .start();
        let p = common::pki();
        let port = common::free_port();
        let listen = format!("{}{listen}", p.edge_tls(port));
        let cfg = format!(
            "origins:\n  bucket: {}\nlimits:\n{limits}log:\n  format: json\n{extra}",
            o.url()
        );
        let s = Sluice::start_with_listen(&listen, &cfg);
        let tls = format!("127.0.0.1:{port}").parse().unwrap();
        Edge {
            s,
            o,
            p,
            tls,
            segment,
        }
    }

    fn connector(&self, alpn: &[u8]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(
                self.p.ca_der.clone(),
            ))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }

    /// TLS over `tcp` to the edge, offering `alpn`.
    async fn tls_over(
        &self,
        tcp: tokio::net::TcpStream,
        alpn: &[u8],
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        self.connector(alpn).connect(name, tcp).await
    }

    /// An HTTP/2 connection to the TLS edge; `window`: the streams' initial window (0: the
    /// client never lets a byte of body through).
    async fn h2(&self, window: u32) -> h2::client::SendRequest<Bytes> {
        let tcp = tokio::net::TcpStream::connect(self.tls).await.unwrap();
        let tls = self.tls_over(tcp, b"h2").await.unwrap();
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(window)
            .handshake::<_, Bytes>(tls)
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        send.ready().await.unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.tls.port())
    }
}

fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

/// Read an HTTP/1.1 response (status, head, body by Content-Length) and whether the connection
/// closed right after it.
fn h1_response(sock: &mut TcpStream) -> (u16, String, Vec<u8>, bool) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        sock.read_exact(&mut byte).expect("a response header");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len: usize = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let closed = match sock.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    (head[9..12].parse().unwrap(), head, body, closed)
}

// ---- 1. Media routes take no body, whatever carried the request ----

async fn media_body_is_refused(proto: Proto) {
    let e = Edge::start("  header_timeout: 5s\n", "");
    match proto {
        Proto::Http11 => {
            let mut c = TcpStream::connect(e.s.edge).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            write!(
                c,
                "GET {SEGMENT} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            )
            .unwrap();
            let (status, _, body, closed) = h1_response(&mut c);
            assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
            assert!(closed, "the connection stays open after a refused body");
        }
        Proto::Http2 => {
            let mut h2 = e.h2(65_535).await;
            // No content-length, no END_STREAM on HEADERS: a DATA frame follows.
            let (resp, mut body) = h2
                .send_request(request("GET", &e.url(SEGMENT), &[]), false)
                .unwrap();
            body.send_data(Bytes::from_static(b"hello"), true).unwrap();
            let resp = tokio::time::timeout(Duration::from_secs(10), resp)
                .await
                .expect("an answer")
                .expect("a response, not a reset");
            assert_eq!(resp.status(), 400);
            let mut got = Vec::new();
            let mut b = resp.into_body();
            while let Some(Ok(chunk)) = b.data().await {
                got.extend_from_slice(&chunk);
            }
            let v: serde_json::Value = serde_json::from_slice(&got).unwrap();
            assert_eq!(v["error"], "media requests take no body", "{v}");
        }
    }
    // Let a forwarded request land, if one was forwarded.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        e.o.hits("/h/v/seg.ts"),
        0,
        "the origin saw a request with a body"
    );
    // And the same object without a body is served (the refusal was about the body).
    let mut h2 = e.h2(65_535).await;
    let (resp, _) = h2
        .send_request(request("GET", &e.url(SEGMENT), &[]), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_media_get_with_a_body_is_refused_over_http11() {
    media_body_is_refused(Proto::Http11).await;
}

#[tokio::test]
async fn a_media_get_with_a_body_is_refused_over_http2() {
    media_body_is_refused(Proto::Http2).await;
}

// ---- 2. An API request body is due within header_timeout ----

const TOKEN_API: &str = "/api/v2/streaming/token";

/// A body announced as 200 bytes, sent one byte every 250 ms (a slow-body attack): the answer
/// is 408 in the stream-token surface's shape, well before the body could have been complete,
/// and the connection (HTTP/1.1) or stream (HTTP/2) is closed.
async fn slow_api_body_gets_408(proto: Proto) {
    let e = Edge::start("  header_timeout: 1500ms\n", "");
    let started = Instant::now();
    let (status, body) = match proto {
        Proto::Http11 => {
            let mut c = TcpStream::connect(e.s.edge).unwrap();
            write!(
                c,
                "POST {TOKEN_API} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{"
            )
            .unwrap();
            let mut w = c.try_clone().unwrap();
            let trickle = std::thread::spawn(move || {
                for _ in 0..60 {
                    std::thread::sleep(Duration::from_millis(250));
                    if w.write_all(b" ").is_err() {
                        return;
                    }
                }
            });
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let (status, _, body, closed) = h1_response(&mut c);
            assert!(closed, "the connection stays open after the 408");
            drop(c);
            let _ = trickle.join();
            (status, body)
        }
        Proto::Http2 => {
            let mut h2 = e.h2(65_535).await;
            let (resp, mut send) = h2
                .send_request(
                    request(
                        "POST",
                        &e.url(TOKEN_API),
                        &[
                            ("content-type", "application/json"),
                            ("content-length", "200"),
                        ],
                    ),
                    false,
                )
                .unwrap();
            send.send_data(Bytes::from_static(b"{"), false).unwrap();
            let trickle = tokio::spawn(async move {
                for _ in 0..60 {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    if send.send_data(Bytes::from_static(b" "), false).is_err() {
                        return;
                    }
                }
            });
            let resp = tokio::time::timeout(Duration::from_secs(30), resp)
                .await
                .expect("an answer")
                .expect("a response, not a reset");
            let status = resp.status().as_u16();
            let mut got = Vec::new();
            let mut b = resp.into_body();
            while let Some(Ok(chunk)) = b.data().await {
                got.extend_from_slice(&chunk);
            }
            // The stream is over: the trickle can no longer send on it.
            tokio::time::timeout(Duration::from_secs(5), trickle)
                .await
                .expect("the request stream stays open after the 408")
                .unwrap();
            (status, got)
        }
    };
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["statusCode"], 408, "{body}");
    // 200 bytes at 4 a second take 50 s: the deadline cut it.
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn a_slow_api_body_gets_408_over_http11() {
    slow_api_body_gets_408(Proto::Http11).await;
}

#[tokio::test]
async fn a_slow_api_body_gets_408_over_http2() {
    slow_api_body_gets_408(Proto::Http2).await;
}

/// A prompt body within the deadline is read as before.
#[tokio::test]
async fn a_prompt_api_body_is_answered() {
    let e = Edge::start("  header_timeout: 1500ms\n", "");
    let mut h2 = e.h2(65_535).await;
    let (resp, mut send) = h2
        .send_request(
            request(
                "POST",
                &e.url(TOKEN_API),
                &[("content-type", "application/json")],
            ),
            false,
        )
        .unwrap();
    send.send_data(Bytes::from_static(b"{\"contentId\":\"x\"}"), true)
        .unwrap();
    let resp = resp.await.unwrap();
    // No credentials: the route itself answers (its 401), the body was read.
    assert_eq!(resp.status(), 401);
}

// ---- 3. Send progress on HTTP/2 ----

/// A stream whose client never opens a window is ended after `limits.send_timeout` (HTTP/1.1:
/// a client that stops reading has its connection closed after it).
async fn a_stalled_reader_is_ended(proto: Proto) {
    let e = Edge::start("  send_timeout: 1s\n", "");
    // Warm the object: the stalled viewer reads a cache hit.
    let warm = common::client()
        .get(e.s.edge_url(SEGMENT))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(warm.len(), e.segment.len());
    match proto {
        Proto::Http11 => {
            // 2 MB × 8 on one connection, pipelined and never read: more than the socket
            // buffers hold.
            let mut c = TcpStream::connect(e.s.edge).unwrap();
            // One write: a loaded machine may see sluice end the connection (send progress)
            // between separate writes, which is not what this checks.
            let mut pipelined = String::new();
            for _ in 0..8 {
                pipelined.push_str(&format!("GET {SEGMENT} HTTP/1.1\r\nHost: t\r\n\r\n"));
            }
            c.write_all(pipelined.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_secs(4));
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut total = 0usize;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
            assert!(
                total < 8 * e.segment.len(),
                "every byte was delivered to a client that did not read: {total}"
            );
        }
        Proto::Http2 => {
            let mut h2 = e.h2(0).await;
            let (resp, _) = h2
                .send_request(request("GET", &e.url(SEGMENT), &[]), true)
                .unwrap();
            let resp = resp.await.expect("the header needs no window");
            assert_eq!(resp.status(), 200);
            let mut body = resp.into_body();
            // No byte of body can come; the stream must end (reset) instead of waiting.
            let ended = tokio::time::timeout(Duration::from_secs(15), async {
                loop {
                    match body.data().await {
                        None => return "end of stream",
                        Some(Err(_)) => return "reset",
                        Some(Ok(_)) => {}
                    }
                }
            })
            .await
            .expect("a stream with a zero window is held past send_timeout");
            assert_eq!(ended, "reset");
        }
    }
}

#[tokio::test]
async fn a_stalled_reader_is_ended_over_http11() {
    a_stalled_reader_is_ended(Proto::Http11).await;
}

#[tokio::test]
async fn a_zero_window_stream_is_ended_over_http2() {
    a_stalled_reader_is_ended(Proto::Http2).await;
}

// ---- 4. One deadline from accept to the first complete header on the TLS listener ----

/// A GET over HTTP/1.1 on `tls`: the status, or `None` when the connection closed first.
async fn get_over<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    tls: &mut S,
) -> Option<u16> {
    tls.write_all(
        format!("GET {SEGMENT} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut head))
        .await
        .ok()?
        .ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// header_timeout 3 s: the handshake starts at 1.8 s (within it), the request is sent at
/// 3.6 s. Counted from accept, the header is late (the connection is closed); restarted
/// after the handshake it would be due at 4.8 s and answered.
#[tokio::test]
async fn the_tls_header_deadline_counts_from_accept() {
    let e = Edge::start("  header_timeout: 3s\n", "");
    // A prompt client is served.
    let tcp = tokio::net::TcpStream::connect(e.tls).await.unwrap();
    let mut tls = e.tls_over(tcp, b"http/1.1").await.unwrap();
    assert_eq!(get_over(&mut tls).await, Some(200));

    let accepted = Instant::now();
    let tcp = tokio::net::TcpStream::connect(e.tls).await.unwrap();
    tokio::time::sleep_until((accepted + Duration::from_millis(1800)).into()).await;
    let mut tls = e
        .tls_over(tcp, b"http/1.1")
        .await
        .expect("the handshake within header_timeout");
    tokio::time::sleep_until((accepted + Duration::from_millis(3600)).into()).await;
    assert_eq!(
        get_over(&mut tls).await,
        None,
        "a header completed {:?} after accept was answered",
        accepted.elapsed()
    );
}

/// The same with a PROXY header from a trusted balancer: sent at 1.2 s, the handshake at
/// 2.4 s; header_timeout 2 s from accept has passed, so the handshake is refused.
#[tokio::test]
async fn the_tls_deadline_does_not_restart_after_the_proxy_header() {
    let e = Edge::start_with(
        "  header_timeout: 2s\n",
        "  proxy_protocol: true\n",
        "trusted_proxies: [127.0.0.1/32]\n",
    );
    let accepted = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(e.tls).await.unwrap();
    tokio::time::sleep_until((accepted + Duration::from_millis(1200)).into()).await;
    let local = tcp.local_addr().unwrap();
    tcp.write_all(
        format!(
            "PROXY TCP4 203.0.113.9 127.0.0.1 {} {}\r\n",
            local.port(),
            e.tls.port()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep_until((accepted + Duration::from_millis(2400)).into()).await;
    let got = match e.tls_over(tcp, b"http/1.1").await {
        Err(_) => None,
        Ok(mut tls) => get_over(&mut tls).await,
    };
    assert_eq!(got, None, "served {:?} after accept", accepted.elapsed());
}

// ---- 5. SIGINT during a drain ----

/// The process exists and is not a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_a_drain_exits_at_once() {
    let o = TestOrigin::new()
        .route(
            "/h/v/late.ts",
            Reply::ok(random_bytes(1024, 5), "video/mp2t").delay(Duration::from_secs(20)),
        )
        .start();
    let mut s = Sluice::start_with_server(
        &format!("origins:\n  bucket: {}\n  read_timeout: 30s\n", o.url()),
        "  grace_period_seconds: 60\n  graceful_shutdown_timeout_seconds: 5\n",
    );
    let url = s.edge_url("/stream/h/v/late.ts");
    let waiting = tokio::spawn(async move { common::client().get(&url).send().await });
    common::wait_for(
        "the request to reach its origin",
        Duration::from_secs(10),
        || o.hits("/h/v/late.ts") >= 1,
    );
    signal(s.pid(), "-TERM");
    // The drain waits for the request in flight.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(running(s.pid()), "exited before its drain: {}", s.log());
    signal(s.pid(), "-INT");
    let stopped = Instant::now();
    let status = s.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "{status:?}");
    assert!(stopped.elapsed() < Duration::from_secs(8));
    assert!(s.log().contains("SIGINT"), "{}", s.log());
    waiting.abort();
}

//! An HTTP/2 connection is held to the rules of a connection and its streams to the rules of
//! requests (issue 21), against the real binary over the TLS edge listener:
//!
//! - the connection preface is due within `limits.header_timeout` of accept;
//! - streams a client resets after they opened count against `limits.h2_max_pending_resets`
//!   (the connection gets GOAWAY, and the origin is not fetched once per reset);
//! - a client address's requests in flight are bounded by `limits.max_connections_per_ip`
//!   whether they come as HTTP/1.1 connections or as HTTP/2 streams;
//! - a drain closes an idle HTTP/2 connection that does not answer PING, and lets a stream
//!   in flight finish.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{random_bytes, Reply, Sluice, TestOrigin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

struct Edge {
    s: Sluice,
    o: common::RunningOrigin,
    p: common::Pki,
    tls: SocketAddr,
}

impl Edge {
    /// sluice with a TLS listener, the origin's routes, `limits` (indented two spaces) and
    /// `server` keys.
    fn start(origin: TestOrigin, limits: &str, server: &str) -> Edge {
        let o = origin.start();
        let p = common::pki();
        let port = common::free_port();
        let cfg = format!(
            "origins:\n  bucket: {}\n  read_timeout: 30s\nlimits:\n{limits}log:\n  format: json\n",
            o.url()
        );
        let dir = tempfile::tempdir().unwrap();
        let listen = p.edge_tls(port);
        let s = Sluice::start_in_full(dir, &cfg, &[], server, &listen);
        let tls = format!("127.0.0.1:{port}").parse().unwrap();
        Edge { s, o, p, tls }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.tls.port())
    }

    /// An HTTP/2 connection and the task driving it (its result says how it ended).
    async fn h2(
        &self,
    ) -> (
        h2::client::SendRequest<Bytes>,
        tokio::task::JoinHandle<Result<(), h2::Error>>,
    ) {
        let tls = common::tls_connect(&self.p, self.tls.port(), b"h2").await;
        let (send, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
        (send, tokio::spawn(conn))
    }
}

fn get(url: &str) -> http::Request<()> {
    http::Request::builder()
        .method("GET")
        .uri(url)
        .body(())
        .unwrap()
}

/// Read until the server closes; how long that took, or `None` if it did not within `limit`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|_| start.elapsed())
}

// ---- 1. The connection preface is due with the first header ----

/// header_timeout 2 s, keepalive 60 s: a client that sends half the preface and stops is closed
/// at the header deadline (before: held for as long as it liked, the handshake had no deadline).
#[tokio::test]
async fn a_partial_preface_is_closed_at_the_header_deadline() {
    let e = Edge::start(
        TestOrigin::new(),
        "  header_timeout: 2s\n  keepalive_timeout: 60s\n",
        "",
    );
    let mut tls = common::tls_connect(&e.p, e.tls.port(), b"h2").await;
    tls.write_all(&PREFACE[..10]).await.unwrap();
    let took = closed_within(&mut tls, Duration::from_secs(20))
        .await
        .expect("a partial preface was held for 20 s");
    assert!(took < Duration::from_secs(8), "closed after {took:?}");
}

// ---- 2. Streams reset after they opened are counted ----

/// Streams on distinct cold objects, each reset ~10 ms after it opened, on one connection:
/// the connection gets GOAWAY (ENHANCE_YOUR_CALM) long before 300, and the origin sees a
/// bounded number of fetches (before: 300 streams, 300 origin fetches, no GOAWAY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_reset_after_they_open_are_counted() {
    let mut origin = TestOrigin::new();
    for i in 0..300 {
        origin = origin.route(
            &format!("/h/v/r{i}.ts"),
            Reply::ok(random_bytes(64 * 1024, i), "video/mp2t").delay(Duration::from_millis(800)),
        );
    }
    let e = Edge::start(
        origin,
        "  h2_max_concurrent_streams: 16\n  h2_max_pending_resets: 8\n",
        "",
    );
    let (mut send, conn) = e.h2().await;
    let mut opened = 0;
    for i in 0..300 {
        let Ok(ready) = send.clone().ready().await else {
            break;
        };
        send = ready;
        let Ok((resp, _)) = send.send_request(get(&e.url(&format!("/stream/h/v/r{i}.ts"))), true)
        else {
            break;
        };
        opened += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(resp);
    }
    let ended = tokio::time::timeout(Duration::from_secs(15), conn)
        .await
        .expect("the connection is still open after its resets")
        .unwrap();
    let reason = ended.err().and_then(|e| e.reason());
    assert_eq!(
        reason,
        Some(h2::Reason::ENHANCE_YOUR_CALM),
        "{opened} streams opened and reset"
    );
    assert!(opened < 300, "every stream was opened: {opened}");
    // What was fetched for streams nobody reads is bounded by the connection's streams in
    // flight, not by how many it reset.
    std::thread::sleep(Duration::from_secs(2));
    let fetched = e.o.total_hits();
    eprintln!("{opened} streams opened and reset before GOAWAY; {fetched} origin fetches");
    assert!(
        fetched <= 40,
        "{fetched} origin fetches for {opened} reset streams"
    );
}

/// A player that cancels a few requests (a quality switch) is not cut: resets within the
/// budget leave the connection serving.
#[tokio::test]
async fn a_few_cancelled_requests_leave_the_connection_serving() {
    let seg = random_bytes(32 * 1024, 7);
    let mut origin = TestOrigin::new().route("/h/v/ok.ts", Reply::ok(seg.clone(), "video/mp2t"));
    for i in 0..4 {
        origin = origin.route(
            &format!("/h/v/c{i}.ts"),
            Reply::ok(random_bytes(64 * 1024, i), "video/mp2t").delay(Duration::from_millis(300)),
        );
    }
    let e = Edge::start(origin, "  h2_max_pending_resets: 8\n", "");
    let (mut send, conn) = e.h2().await;
    for i in 0..4 {
        send = send.ready().await.unwrap();
        let (resp, _) = send
            .send_request(get(&e.url(&format!("/stream/h/v/c{i}.ts"))), true)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(resp);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    send = send
        .ready()
        .await
        .expect("the connection still takes streams");
    let (resp, _) = send
        .send_request(get(&e.url("/stream/h/v/ok.ts")), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, seg);
    assert!(!conn.is_finished());
}

// ---- 3. A client's requests in flight, whatever carries them ----

#[derive(Debug, Clone, Copy)]
enum Proto {
    Http11,
    Http2,
}

/// The statuses of a raw HTTP/1.1 GET on a new connection (`None`: closed first).
fn h1_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut c = TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut head = [0u8; 12];
    c.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// `max_connections_per_ip: 4`, six requests in flight at once on slow objects: four are
/// served, two refused with 503 — as six HTTP/1.1 connections, and as six streams over two
/// HTTP/2 connections (before: every stream was served, 10 connections × 128 streams from one
/// address took 1,280 origin fetches and as many descriptors).
async fn requests_in_flight_are_shared(proto: Proto) {
    let mut origin = TestOrigin::new();
    for i in 0..6 {
        origin = origin.route(
            &format!("/h/v/slow{i}.ts"),
            Reply::ok(random_bytes(16 * 1024, i), "video/mp2t").delay(Duration::from_secs(2)),
        );
    }
    let e = Edge::start(origin, "  max_connections_per_ip: 4\n", "");
    let mut statuses: Vec<u16> = match proto {
        Proto::Http11 => {
            let edge = e.s.edge;
            let threads: Vec<_> = (0..6)
                .map(|i| {
                    std::thread::spawn(move || {
                        h1_status(edge, &format!("/stream/h/v/slow{i}.ts")).unwrap_or(0)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        }
        Proto::Http2 => {
            let (a, _ca) = e.h2().await;
            let (b, _cb) = e.h2().await;
            let mut waits = Vec::new();
            for i in 0..6 {
                let send = if i % 2 == 0 { a.clone() } else { b.clone() };
                let url = e.url(&format!("/stream/h/v/slow{i}.ts"));
                waits.push(tokio::spawn(async move {
                    let mut send = send.ready().await.unwrap();
                    let (resp, _) = send.send_request(get(&url), true).unwrap();
                    match resp.await {
                        Ok(r) => r.status().as_u16(),
                        Err(_) => 0,
                    }
                }));
            }
            let mut out = Vec::new();
            for w in waits {
                out.push(w.await.unwrap());
            }
            out
        }
    };
    statuses.sort();
    // HTTP/1.1 connections over the share are refused before a request is read (a 503 the
    // client may or may not see before the close).
    let served = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 503 || **s == 0).count();
    assert_eq!((served, refused), (4, 2), "{proto:?}: {statuses:?}");
    assert_eq!(e.o.total_hits(), 4, "{proto:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_shared_over_http11() {
    requests_in_flight_are_shared(Proto::Http11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_shared_over_http2() {
    requests_in_flight_are_shared(Proto::Http2).await;
}

// ---- 4. Drain ----

/// SIGTERM with an idle HTTP/2 connection that never answers PING (it never reads) and a
/// stream in flight on another: the stream's answer arrives whole, and the process exits soon
/// after it (before: the silent connection held the drain for the whole grace period).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_is_not_held_by_a_connection_that_ignores_ping() {
    let body = random_bytes(256 * 1024, 3);
    let origin = TestOrigin::new().route(
        "/h/v/slow.ts",
        Reply::ok(body.clone(), "video/mp2t").trickle(8, Duration::from_secs(3)),
    );
    let mut e = Edge::start(
        origin,
        "  header_timeout: 2s\n  keepalive_timeout: 60s\n",
        "  grace_period_seconds: 60\n  graceful_shutdown_timeout_seconds: 5\n",
    );
    // The silent client: a whole preface and SETTINGS, then nothing, never reading.
    let mut silent = common::tls_connect(&e.p, e.tls.port(), b"h2").await;
    silent.write_all(PREFACE).await.unwrap();
    silent.write_all(SETTINGS).await.unwrap();
    silent.flush().await.unwrap();

    let (send, _conn) = e.h2().await;
    let mut send = send.ready().await.unwrap();
    let (resp, _) = send
        .send_request(get(&e.url("/stream/h/v/slow.ts")), true)
        .unwrap();
    let reading = tokio::spawn(async move {
        let resp = resp.await.map_err(|e| e.to_string())?;
        let mut body = resp.into_body();
        let mut got = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = body.flow_control().release_capacity(chunk.len());
            got.extend_from_slice(&chunk);
        }
        Ok::<_, String>(got)
    });
    common::wait_for(
        "the stream to reach the origin",
        Duration::from_secs(10),
        || e.o.hits("/h/v/slow.ts") >= 1,
    );
    let stopped = Instant::now();
    common::signal(e.s.pid(), "-TERM");
    let got = reading
        .await
        .unwrap()
        .expect("the stream in flight is finished");
    assert_eq!(got.len(), body.len());
    let status = tokio::task::spawn_blocking(move || {
        let st = e.s.wait_exit(Duration::from_secs(30));
        (st, e.s.log())
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{:?}", status.0);
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "the drain took {took:?}: {}",
        status.1
    );
    drop(silent);
}

//! Hostile clients against the real binary: raw sockets, short limits configured, every
//! case bounded in connections and time. What one client may hold (idle and slowloris
//! connections, headers, connection floods), tunnels, bodies on media routes, and the framing
//! of every local answer.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{admin_key, client, metric, metrics, random_bytes, Reply, Sluice, TestOrigin};

fn limits(origin: &common::RunningOrigin, extra: &str) -> String {
    format!(
        "origins:\n  bucket: {}\n  read_timeout: 10s\nlimits:\n  header_timeout: 2s\n  \
         keepalive_timeout: 2s\n  send_timeout: 2s\n  max_header_bytes: 8192\n{extra}",
        origin.url()
    )
}

fn origin() -> common::RunningOrigin {
    TestOrigin::new()
        .route(
            "/h/v/seg_1.ts",
            Reply::ok(random_bytes(64 * 1024, 1), "video/mp2t"),
        )
        .route(
            "/h/v/seg_2.ts",
            Reply::ok(random_bytes(64 * 1024, 2), "video/mp2t"),
        )
        .route("/h/v/missing.ts", Reply::status(404))
        .route(
            "/h/v/empty_500.ts",
            Reply {
                body: bytes::Bytes::new(),
                ..Reply::status(500)
            },
        )
        .route("/h/v/broken.ts", Reply::status(503))
        .start()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// A complete response read from a kept-alive socket by its framing (Content-Length or
/// chunked); panics on a response whose body would end only at close.
fn read_response(sock: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        sock.read_exact(&mut byte).expect("response header");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let lower = head.to_ascii_lowercase();
    let header = |name: &str| {
        lower.lines().find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .map(|v| v.trim().to_string())
        })
    };
    if status == 100 || status == 204 || status == 304 {
        return (status, head, Vec::new());
    }
    if let Some(len) = header("content-length") {
        let mut body = vec![0u8; len.parse().unwrap()];
        sock.read_exact(&mut body).unwrap();
        return (status, head, body);
    }
    assert_eq!(
        header("transfer-encoding").as_deref(),
        Some("chunked"),
        "unframed response (its body would end at close):\n{head}"
    );
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            sock.read_exact(&mut byte).unwrap();
            line.push(byte[0]);
        }
        let size = usize::from_str_radix(std::str::from_utf8(&line).unwrap().trim(), 16).unwrap();
        let mut chunk = vec![0u8; size + 2];
        sock.read_exact(&mut chunk).unwrap();
        if size == 0 {
            return (status, head, body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

/// Wait until the server closes `sock` (EOF or reset); returns how long that took.
fn closed_within(sock: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match sock.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

const GET_HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: edge\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_and_slowloris_connections_are_closed_by_the_limits() {
    let o = origin();
    let s = Sluice::start(&limits(&o, ""));
    let edge = s.edge;
    let cases = tokio::task::spawn_blocking(move || {
        // Idle after one answered request: closed by keepalive_timeout (2 s).
        let idle = std::thread::spawn(move || {
            let mut c = connect(edge);
            c.write_all(GET_HEALTH).unwrap();
            assert_eq!(read_response(&mut c).0, 200);
            closed_within(&mut c, Duration::from_secs(10))
        });
        // A second header trickled one byte every 300 ms: each byte would reset a per-read
        // timer; the whole header is due within header_timeout (2 s).
        let slowloris = std::thread::spawn(move || {
            let mut c = connect(edge);
            c.write_all(GET_HEALTH).unwrap();
            assert_eq!(read_response(&mut c).0, 200);
            let start = Instant::now();
            let header = b"GET /health HTTP/1.1\r\nHost: edge\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            for b in header.iter() {
                std::thread::sleep(Duration::from_millis(300));
                if c.write_all(std::slice::from_ref(b)).is_err() {
                    break;
                }
                if start.elapsed() > Duration::from_secs(12) {
                    break;
                }
            }
            closed_within(&mut c, Duration::from_secs(1)).map(|_| start.elapsed())
        });
        // A new connection that never sends its first request.
        let silent = std::thread::spawn(move || {
            let mut c = connect(edge);
            closed_within(&mut c, Duration::from_secs(10))
        });
        // A first request that never finishes its header.
        let unfinished = std::thread::spawn(move || {
            let mut c = connect(edge);
            c.write_all(b"GET /health HTTP/1.1\r\nHost: edge\r\nX-Never: ")
                .unwrap();
            closed_within(&mut c, Duration::from_secs(10))
        });
        [
            idle.join().unwrap(),
            slowloris.join().unwrap(),
            silent.join().unwrap(),
            unfinished.join().unwrap(),
        ]
    })
    .await
    .unwrap();
    let names = ["idle", "slowloris", "silent", "unfinished"];
    for (name, took) in names.iter().zip(cases) {
        let took = took.unwrap_or_else(|| panic!("{name} connection was never closed"));
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
            "{name} closed after {took:?}"
        );
    }
    let m = metrics(&s).await;
    assert!(
        metric(
            &m,
            "sluice_connections_closed_total{reason=\"idle_timeout\"}"
        ) >= 1.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "sluice_connections_closed_total{reason=\"header_timeout\"}"
        ) >= 3.0,
        "{m}"
    );
    // A kept-alive connection in use is not cut: requests 1 s apart for 5 s.
    let mut c = connect(s.edge);
    for _ in 0..5 {
        c.write_all(GET_HEALTH).unwrap();
        assert_eq!(read_response(&mut c).0, 200);
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_headers_are_refused_and_never_reach_the_origin() {
    let o = origin();
    let s = Sluice::start(&limits(&o, ""));
    // Over max_header_bytes (8 KiB) but parseable: 431 in the route's shape, closed.
    let mut c = connect(s.edge);
    let big = "b".repeat(10 * 1024);
    write!(
        c,
        "GET /stream/h/v/seg_1.ts HTTP/1.1\r\nHost: edge\r\nX-Big: {big}\r\n\r\n"
    )
    .unwrap();
    let (status, head, body) = read_response(&mut c);
    assert_eq!(status, 431, "{head}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["error"].as_str().unwrap().contains("too large"), "{v}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert_eq!(o.hits("/h/v/seg_1.ts"), 0);

    // A header that keeps coming without an end: answered 431 and closed as soon as it
    // passes the ceiling, long before header_timeout, without buffering the rest.
    let mut c = connect(s.edge);
    c.write_all(b"GET /stream/h/v/seg_1.ts HTTP/1.1\r\nHost: edge\r\n")
        .unwrap();
    let start = Instant::now();
    let line = format!("X-Pad: {}\r\n", "p".repeat(1000));
    let mut sent = 0;
    while sent < 256 * 1024 {
        if c.write_all(line.as_bytes()).is_err() {
            break;
        }
        sent += line.len();
    }
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(
        got.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(start.elapsed() < Duration::from_millis(1900));
    assert_eq!(o.hits("/h/v/seg_1.ts"), 0);
    let m = metrics(&s).await;
    assert!(
        metric(
            &m,
            "sluice_requests_refused_total{reason=\"header_too_large\"}"
        ) >= 1.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "sluice_connections_closed_total{reason=\"header_too_large\"}"
        ) >= 1.0,
        "{m}"
    );
}

/// An origin that answers every request with `101 Switching Protocols` and then echoes.
fn switching_origin() -> (SocketAddr, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        for conn in l.incoming().take(4) {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                );
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrades_are_refused_on_every_route_and_a_101_is_never_relayed() {
    let o = origin();
    let s = Sluice::start(&limits(&o, ""));
    for (path, shape) in [
        ("/stream/h/v/seg_1.ts", "error"),
        ("/api/proxy?url=http://example.com/a.ts&ctx=x", "error"),
        ("/api/stream-ids", "message"),
        ("/api/v2/streaming/verify?token=x", "statusCode"),
    ] {
        let mut c = connect(s.edge);
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: edge\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let (status, head, body) = read_response(&mut c);
        assert_eq!(status, 400, "{path}: {head}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v.get(shape).is_some(), "{path}: {v}");
        assert!(
            closed_within(&mut c, Duration::from_secs(3)).is_some(),
            "{path}"
        );
    }
    let mut c = connect(s.edge);
    c.write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c).0, 400);
    assert_eq!(o.total_hits(), 0);

    // An origin that switches protocols on a plain GET: the client gets a 502, not a tunnel.
    let (addr, _h) = switching_origin();
    let s2 = Sluice::start(&format!(
        "origins:\n  bucket: http://{addr}\n  read_timeout: 3s\n"
    ));
    let mut c = connect(s2.edge);
    c.write_all(b"GET /stream/h/v/seg_9.ts HTTP/1.1\r\nHost: edge\r\n\r\n")
        .unwrap();
    let (status, head, body) = read_response(&mut c);
    assert_eq!(status, 502, "{head}");
    assert!(!head.to_ascii_lowercase().contains("upgrade"), "{head}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["error"].is_string(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_on_media_routes_are_refused_before_the_cache_lock() {
    let o = TestOrigin::new()
        .route(
            "/h/v/cold.ts",
            Reply::ok(random_bytes(256 * 1024, 5), "video/mp2t"),
        )
        .start();
    let s = Sluice::start(&limits(&o, ""));
    // Announces 100 bytes, sends 2: refused at once, not after a body timeout.
    let mut c = connect(s.edge);
    let start = Instant::now();
    c.write_all(b"GET /stream/h/v/cold.ts HTTP/1.1\r\nHost: edge\r\nContent-Length: 100\r\n\r\nab")
        .unwrap();
    let (status, head, body) = read_response(&mut c);
    assert_eq!(status, 400, "{head}");
    assert!(String::from_utf8_lossy(&body).contains("no body"));
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(closed_within(&mut c, Duration::from_secs(2)).is_some());
    // An invalid chunked body on the cold object: refused at once too.
    let mut c = connect(s.edge);
    c.write_all(b"GET /stream/h/v/cold.ts HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c).0, 400);
    assert_eq!(
        o.hits("/h/v/cold.ts"),
        0,
        "a refused request reached the origin"
    );
    // Nothing was left holding the object's cache lock: a viewer gets it at once.
    let started = Instant::now();
    let r = client()
        .get(s.edge_url("/stream/h/v/cold.ts"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 256 * 1024);
    assert!(started.elapsed() < Duration::from_secs(3));
    // Content-Length: 0 is no body.
    let mut c = connect(s.edge);
    c.write_all(b"GET /stream/h/v/cold.ts HTTP/1.1\r\nHost: edge\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c).0, 200);
    // HTTP/1.1 without Host is malformed; HTTP/1.0 without it is fine.
    let mut c = connect(s.edge);
    c.write_all(b"GET /stream/h/v/cold.ts HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c).0, 400);
    let mut c = connect(s.edge);
    c.write_all(b"GET /health HTTP/1.0\r\n\r\n").unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    assert!(all.starts_with(b"HTTP/1.1 200") || all.starts_with(b"HTTP/1.0 200"));
    let m = metrics(&s).await;
    assert!(
        metric(&m, "sluice_requests_refused_total{reason=\"body\"}") >= 2.0,
        "{m}"
    );
    assert!(
        metric(&m, "sluice_requests_refused_total{reason=\"no_host\"}") >= 1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expect_continue_on_api_posts_gets_its_100() {
    let o = origin();
    let s = Sluice::start(&limits(&o, ""));
    let key = admin_key(&s);
    let body = br#"{"stream_id":"expect-1","hash":"h"}"#;
    let mut c = connect(s.edge);
    write!(
        c,
        "POST /api/stream-ids HTTP/1.1\r\nHost: edge\r\nX-API-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let (status, head, _) = read_response(&mut c);
    assert_eq!(status, 100, "no 100 Continue before the body: {head}");
    c.write_all(body).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (status, head, _) = read_response(&mut c);
    assert!((200..500).contains(&status), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_address_holds_at_most_its_share_of_connections() {
    let o = origin();
    let s = Sluice::start(&limits(&o, "  max_connections_per_ip: 8\n"));
    let mut held: Vec<TcpStream> = (0..8).map(|_| connect(s.edge)).collect();
    // Every one of them is served.
    for c in held.iter_mut() {
        c.write_all(GET_HEALTH).unwrap();
        assert_eq!(read_response(c).0, 200);
    }
    let mut extra = connect(s.edge);
    let (status, head, body) = read_response(&mut extra);
    assert_eq!(status, 503, "{head}");
    assert!(String::from_utf8_lossy(&body).contains("Too many connections"));
    // A place freed is a place for the next connection.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = connect(s.edge);
        c.write_all(GET_HEALTH).unwrap();
        if read_response(&mut c).0 == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a freed place was not given back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = metrics(&s).await;
    assert!(
        metric(
            &m,
            "sluice_connections_refused_total{listener=\"edge\",reason=\"per_ip\"}"
        ) >= 1.0,
        "{m}"
    );

    // Trusted proxies carry many clients: only the global ceiling applies to them.
    let s2 = Sluice::start(&limits(
        &o,
        "  max_connections_per_ip: 2\n  max_connections: 6\ntrusted_proxies: [127.0.0.1]\n",
    ));
    let mut held: Vec<TcpStream> = (0..6).map(|_| connect(s2.edge)).collect();
    for c in held.iter_mut() {
        c.write_all(GET_HEALTH).unwrap();
        assert_eq!(read_response(c).0, 200);
    }
    let mut extra = connect(s2.edge);
    assert_eq!(read_response(&mut extra).0, 503);
    let m = metrics(&s2).await;
    assert!(
        metric(
            &m,
            "sluice_connections_refused_total{listener=\"edge\",reason=\"global\"}"
        ) >= 1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "sluice_connections_open{listener=\"edge\"}"),
        6.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn origin_errors_are_framed_and_keep_the_connection() {
    let o = origin();
    let s = Sluice::start(&limits(&o, ""));
    let mut c = connect(s.edge);
    // Miss then hit of a cached 404, an empty 500, a 503 with a body, then a segment: all on
    // one connection, each answer framed.
    for (path, want) in [
        ("/stream/h/v/missing.ts", 404),
        ("/stream/h/v/missing.ts", 404),
        ("/stream/h/v/broken.ts", 503),
        ("/stream/h/v/seg_2.ts", 200),
    ] {
        write!(c, "GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n").unwrap();
        let (status, head, body) = read_response(&mut c);
        assert_eq!(status, want, "{path}: {head}");
        if want != 200 {
            let v: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{path}: {e}: {:?}", String::from_utf8_lossy(&body)));
            assert!(v["error"].is_string(), "{path}: {v}");
        } else {
            assert_eq!(body.len(), 64 * 1024);
        }
    }
    // An origin error with an empty body: the JSON answer is made locally, framed, and the
    // connection closed (Pingora does not reuse one after a failed proxy attempt) — and says so.
    let mut c2 = connect(s.edge);
    c2.write_all(b"GET /stream/h/v/empty_500.ts HTTP/1.1\r\nHost: edge\r\n\r\n")
        .unwrap();
    let (status, head, body) = read_response(&mut c2);
    assert_eq!(status, 500, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["error"].is_string(), "{v}");
    // HEAD of an error: the GET's header, no body, and the connection still usable.
    c.write_all(b"HEAD /stream/h/v/broken.ts HTTP/1.1\r\nHost: edge\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 503"));
    c.write_all(GET_HEALTH).unwrap();
    assert_eq!(read_response(&mut c).0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_stops_reading_is_cut_by_send_timeout() {
    let body = random_bytes(48 * 1024 * 1024, 7);
    let o = TestOrigin::new()
        .route("/h/v/big.ts", Reply::ok(body, "video/mp2t"))
        .start();
    let s = Sluice::start(&limits(&o, "cache:\n  enabled: false\n"));
    let mut c = connect(s.edge);
    c.write_all(b"GET /stream/h/v/big.ts HTTP/1.1\r\nHost: edge\r\n\r\n")
        .unwrap();
    // Read nothing for a while: socket buffers fill, writes stall, send_timeout (2 s) cuts.
    let waiting = Instant::now();
    let m = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let m = metrics(&s).await;
        if metric(
            &m,
            "sluice_connections_closed_total{reason=\"send_timeout\"}",
        ) >= 1.0
        {
            break m;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "a stalled client was never cut:\n{m}"
        );
    };
    assert!(
        metric(&m, "sluice_connections_open{listener=\"edge\"}") <= 1.0,
        "{m}"
    );
    // What the client can still read ends well short of the object.
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got < 48 * 1024 * 1024, "the whole object arrived: {got}");
}

// ---- The same cases over HTTP/2 (the TLS edge listener, streams from the `h2` crate) ----

/// sluice as in the cases above, with a TLS listener beside the cleartext one.
fn start_with_tls(o: &common::RunningOrigin) -> (Sluice, common::Pki, u16) {
    let p = common::pki();
    let port = common::free_port();
    let listen = p.edge_tls(port);
    (Sluice::start_with_listen(&listen, &limits(o, "")), p, port)
}

/// One GET over `send`: the status and the whole body.
async fn h2_get(
    send: &h2::client::SendRequest<bytes::Bytes>,
    port: u16,
    path: &str,
) -> (u16, Vec<u8>) {
    let mut send = send
        .clone()
        .ready()
        .await
        .expect("the connection takes a stream");
    let req = http::Request::get(format!("https://localhost:{port}{path}"))
        .body(())
        .unwrap();
    let (resp, _) = send.send_request(req, true).unwrap();
    let resp = resp.await.expect("answered");
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    (status, got)
}

/// HTTP/2 twin of `idle_and_slowloris_connections_are_closed_by_the_limits` (idle part): a
/// connection with no stream in flight is closed by keepalive_timeout (2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_http2_connection_is_closed_by_keepalive_timeout() {
    let o = origin();
    let (_s, p, port) = start_with_tls(&o);
    let tls = common::tls_connect(&p, port, b"h2").await;
    let (send, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    assert_eq!(h2_get(&send, port, "/health").await.0, 200);
    let idle = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("an idle HTTP/2 connection was held past keepalive_timeout")
        .unwrap()
        .ok();
    assert!(
        idle.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        idle.elapsed()
    );
}

/// HTTP/2 twin of `origin_errors_are_framed_and_keep_the_connection`: origin errors are
/// answered in the route's JSON shape on their own streams, and the connection keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn origin_errors_over_http2_are_answered_and_keep_the_connection() {
    let o = origin();
    let (_s, p, port) = start_with_tls(&o);
    let send = common::h2_connect(&p, port).await;
    for (path, want) in [
        ("/stream/h/v/missing.ts", 404),
        ("/stream/h/v/missing.ts", 404),
        ("/stream/h/v/broken.ts", 503),
        ("/stream/h/v/empty_500.ts", 500),
        ("/stream/h/v/seg_2.ts", 200),
    ] {
        let (status, body) = h2_get(&send, port, path).await;
        assert_eq!(status, want, "{path}");
        if want == 200 {
            assert_eq!(body.len(), 64 * 1024);
        } else {
            let v: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{path}: {e}: {:?}", String::from_utf8_lossy(&body)));
            assert!(v["error"].is_string(), "{path}: {v}");
        }
    }
    assert_eq!(h2_get(&send, port, "/health").await.0, 200);
}

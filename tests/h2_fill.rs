//! A cache fill never waits on one HTTP/2 viewer (issue 21), against the real binary over
//! its TLS edge listener: the first viewer of a cold object opens an HTTP/2 stream and never
//! reads it (its flow-control window stays at zero: no WINDOW_UPDATE is ever sent), and
//! every other viewer — HTTP/1.1 and HTTP/2 — still gets the whole object from one origin
//! fetch, at the origin's pace.
//!
//! The HTTP/2 clients are the `h2` crate over `tokio-rustls`: `h2` sends a WINDOW_UPDATE only
//! for the bytes a caller releases, so a stream whose body is never polled is a stalled
//! player, frame for frame.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{client, h2_connect, random_bytes, Pki, Reply, Sluice, TestOrigin};
use futures::StreamExt;

/// sluice with the TLS edge listener (HTTP/2 by ALPN) on a free port, in front of `origin`.
fn start(p: &Pki, origin: &common::RunningOrigin) -> (Sluice, u16) {
    let port = common::free_port();
    let listen = p.edge_tls(port);
    let extra = format!(
        "origins:\n  bucket: {}\n  read_timeout: 10s\n",
        origin.url()
    );
    (Sluice::start_with_listen(&listen, &extra), port)
}

/// `GET path` on a new HTTP/2 connection: the answer's status and its body stream, not read.
async fn h2_get(p: &Pki, port: u16, path: &str) -> (u16, h2::RecvStream) {
    let send = h2_connect(p, port).await;
    let mut send = send.ready().await.expect("stream slot");
    let req = http::Request::get(format!("https://localhost:{port}{path}"))
        .body(())
        .expect("request");
    let (resp, _) = send.send_request(req, true).expect("send request");
    let resp = resp.await.expect("response header");
    (resp.status().as_u16(), resp.into_body())
}

/// Read an HTTP/2 body to its end, giving the window back as a browser does.
async fn h2_read(body: &mut h2::RecvStream) -> Vec<u8> {
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body chunk");
        got.extend_from_slice(&chunk);
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    got
}

/// One viewer's result: what it received, and whether it got to the end within the limit.
type Viewed = (Vec<u8>, bool);

async fn h11_viewer(url: String, limit: Duration) -> Viewed {
    let mut got = Vec::new();
    let done = tokio::time::timeout(limit, async {
        let r = client().get(&url).send().await.expect("HTTP/1.1 request");
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), http::Version::HTTP_11);
        let mut stream = r.bytes_stream();
        while let Some(chunk) = stream.next().await {
            got.extend_from_slice(&chunk.expect("body chunk"));
        }
    })
    .await
    .is_ok();
    (got, done)
}

async fn h2_viewer(p: Arc<Pki>, port: u16, path: &'static str, limit: Duration) -> Viewed {
    let mut got = Vec::new();
    let done = tokio::time::timeout(limit, async {
        let (status, mut body) = h2_get(&p, port, path).await;
        assert_eq!(status, 200);
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("body chunk");
            got.extend_from_slice(&chunk);
            let _ = body.flow_control().release_capacity(chunk.len());
        }
    })
    .await
    .is_ok();
    (got, done)
}

/// How the first viewer, on HTTP/2, reads its answer while the others are served.
#[derive(Clone, Copy, Debug)]
enum First {
    /// Never reads: its stream window stays full (no WINDOW_UPDATE).
    Stalled,
    /// Reads about 16 KiB per second, giving back each chunk's window as it goes.
    Slow,
}

/// The first viewer's body, read as `first` says until `fast` is set, then to the end.
async fn first_viewer(
    mut body: h2::RecvStream,
    first: First,
    fast: tokio::sync::watch::Receiver<bool>,
) -> Vec<u8> {
    let mut got = Vec::new();
    if let First::Stalled = first {
        let mut fast = fast;
        let _ = fast.wait_for(|f| *f).await;
        got.extend(h2_read(&mut body).await);
        return got;
    }
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body chunk");
        got.extend_from_slice(&chunk);
        let _ = body.flow_control().release_capacity(chunk.len());
        if !*fast.borrow() {
            tokio::time::sleep(Duration::from_millis(chunk.len() as u64 * 1000 / 16384)).await;
        }
    }
    got
}

/// The first viewer of a cold 4 MiB segment asks over HTTP/2 and reads as `first` says; four
/// more viewers (two HTTP/1.1, two HTTP/2) must each get the whole segment at the origin's
/// pace from the one origin fetch, and the first viewer, reading at last, all of it.
async fn a_first_http2_viewer_does_not_pace_the_fill(first: First) {
    let len = 4 * 1024 * 1024;
    let body = random_bytes(len, 2101);
    // The origin sends the segment over about 2 s.
    let origin = TestOrigin::new()
        .route(
            "/h/cold.m4s",
            Reply::ok(body.clone(), "video/iso.segment").trickle(32, Duration::from_secs(2)),
        )
        .start();
    let p = Arc::new(common::pki());
    let (s, port) = start(&p, &origin);
    let path = "/stream/h/cold.m4s";

    // Viewer A asks first over HTTP/2.
    let (status, a_body) = h2_get(&p, port, path).await;
    assert_eq!(status, 200);
    assert_eq!(origin.hits("/h/cold.m4s"), 1);
    let (fast, fast_rx) = tokio::sync::watch::channel(false);
    let a = tokio::spawn(first_viewer(a_body, first, fast_rx));

    // Viewers B..E, two on HTTP/1.1 and two on HTTP/2, all reading, get the whole segment at
    // the origin's pace (generous limit: about 2 s on loopback).
    let limit = Duration::from_secs(20);
    let url = s.edge_url(path);
    let viewers = vec![
        tokio::spawn(h11_viewer(url.clone(), limit)),
        tokio::spawn(h11_viewer(url, limit)),
        tokio::spawn(h2_viewer(p.clone(), port, path, limit)),
        tokio::spawn(h2_viewer(p.clone(), port, path, limit)),
    ];
    for (i, v) in viewers.into_iter().enumerate() {
        let (got, done) = v.await.expect("viewer task");
        let name = ["B (HTTP/1.1)", "C (HTTP/1.1)", "D (HTTP/2)", "E (HTTP/2)"][i];
        assert!(
            done && got.len() == len,
            "viewer {name} got {} of {len} bytes while the first HTTP/2 viewer was {first:?}",
            got.len()
        );
        assert!(got == body, "viewer {name} got a different body");
    }
    assert_eq!(origin.hits("/h/cold.m4s"), 1, "one origin fetch");

    // A, reading at full speed at last, gets the whole segment, from the cache.
    fast.send(true).expect("first viewer waits");
    let got = tokio::time::timeout(limit, a)
        .await
        .expect("the first viewer reads its answer to the end")
        .expect("first viewer task");
    assert_eq!(got.len(), len);
    assert!(got == body, "viewer A got a different body");
    assert_eq!(origin.hits("/h/cold.m4s"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_first_http2_viewer_does_not_hold_the_fill() {
    a_first_http2_viewer_does_not_pace_the_fill(First::Stalled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_http2_viewer_does_not_pace_the_fill() {
    a_first_http2_viewer_does_not_pace_the_fill(First::Slow).await;
}

/// `GET` or `HEAD` with extra headers on a new HTTP/2 connection: status, headers, body.
async fn h2_request(
    p: &Pki,
    port: u16,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, Vec<u8>) {
    let send = h2_connect(p, port).await;
    let mut send = send.ready().await.expect("stream slot");
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("https://localhost:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (resp, _) = send
        .send_request(req.body(()).expect("request"), true)
        .expect("send request");
    let resp = resp.await.expect("response header");
    let (parts, mut body) = resp.into_parts();
    let got = h2_read(&mut body).await;
    (parts.status.as_u16(), parts.headers, got)
}

/// A cold range over HTTP/2 of an origin that ignores ranges is answered from the one whole
/// answer (`206`, the right bytes), which is kept; a cold `HEAD` gets the object's header and
/// no body, and no body is fetched for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_range_and_head_over_http2_are_answered_from_one_fetch() {
    let body = random_bytes(300_000, 2102);
    let origin = TestOrigin::new()
        .route("/h/r.mp4", Reply::ok(body.clone(), "video/mp4"))
        .route("/h/head.mp4", Reply::ok(body.clone(), "video/mp4"))
        .start();
    let p = common::pki();
    let (_s, port) = start(&p, &origin);

    let (status, headers, got) = h2_request(
        &p,
        port,
        http::Method::GET,
        "/stream/h/r.mp4",
        &[("range", "bytes=1000-1999")],
    )
    .await;
    assert_eq!(status, 206);
    assert_eq!(headers["content-range"], "bytes 1000-1999/300000");
    assert!(got == body.slice(1000..2000), "a different range");
    let (status, _, got) = h2_request(&p, port, http::Method::GET, "/stream/h/r.mp4", &[]).await;
    assert_eq!(status, 200);
    assert!(got == body, "a different body after the range");
    assert_eq!(origin.hits("/h/r.mp4"), 1);

    let (status, headers, got) =
        h2_request(&p, port, http::Method::HEAD, "/stream/h/head.mp4", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-length"], "300000");
    assert!(got.is_empty(), "a HEAD answer with a body");
    // A HEAD of an object whose length was not known is asked as a HEAD (no body fetched:
    // it might be too large to keep, `cache::known`); the GET after it is one fill.
    // (An HTTP/2 viewer reads its miss from the background fill, as a hit.)
    for _ in 0..2 {
        let (status, headers, got) =
            h2_request(&p, port, http::Method::GET, "/stream/h/head.mp4", &[]).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-cache-status"], "hit");
        assert!(got == body, "a different body after the HEAD");
    }
    let methods: Vec<String> = origin
        .requests()
        .into_iter()
        .filter(|r| r.path_and_query == "/h/head.mp4")
        .map(|r| r.method)
        .collect();
    assert_eq!(methods, ["HEAD", "GET"]);
}

/// An origin that answers every request with `body` as `no-store`, in 64 KiB writes 20 ms
/// apart, and records for each connection how many body bytes it wrote before the peer went
/// away (or all of them).
async fn counting_origin(body: Bytes) -> (String, Arc<Mutex<Vec<usize>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let sent = Arc::new(Mutex::new(Vec::new()));
    let record = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (body, record) = (body.clone(), record.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: video/iso.segment\r\n\
                     cache-control: no-store\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let mut n = 0;
                if sock.write_all(answer.as_bytes()).await.is_ok() {
                    for piece in body.chunks(64 * 1024) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        if sock.write_all(piece).await.is_err() {
                            break;
                        }
                        n += piece.len();
                    }
                }
                record.lock().expect("record").push(n);
            });
        }
    });
    (url, sent)
}

/// An answer the cache does not store (here `no-store`) reaches its HTTP/2 viewer whole, and
/// the fill that found it out stops at its header instead of reading the body for nobody: of
/// the two origin connections, one carried the whole body (the viewer's), the other less
/// than half of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncached_answer_over_http2_reaches_its_viewer_and_the_fill_stops_at_its_header() {
    let len = 2 * 1024 * 1024;
    let body = random_bytes(len, 2103);
    let (url, sent) = counting_origin(body.clone()).await;
    let p = common::pki();
    let port = common::free_port();
    let listen = p.edge_tls(port);
    let s = Sluice::start_with_listen(
        &listen,
        &format!("origins:\n  bucket: {url}\n  read_timeout: 10s\n"),
    );
    let (status, headers, got) =
        h2_request(&p, port, http::Method::GET, "/stream/h/private.m4s", &[]).await;
    assert_eq!(status, 200);
    assert_ne!(headers["x-cache-status"], "hit");
    assert!(got == body, "a different body");
    // Both origin connections have ended once the viewer has its body and the fill stopped.
    let start = std::time::Instant::now();
    let mut counts = loop {
        let counts = sent.lock().expect("counts").clone();
        if counts.len() >= 2 || start.elapsed() > Duration::from_secs(10) {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    counts.sort_unstable();
    assert_eq!(counts.len(), 2, "origin connections: {counts:?}");
    assert_eq!(counts[1], len, "the viewer's fetch: {counts:?}");
    assert!(
        counts[0] < len / 2,
        "the fill read on for nobody: {counts:?}"
    );
    // A fill stopped on purpose is not a failure: nothing in the log says so.
    let log = s.log();
    assert!(
        !log.contains("ERROR") && !log.contains("proxy failed"),
        "{log}"
    );
}

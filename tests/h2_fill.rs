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

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{client, random_bytes, Pki, Reply, Sluice, TestOrigin};
use futures::StreamExt;
use rustls::pki_types::{CertificateDer, ServerName};

/// sluice with the TLS edge listener (HTTP/2 by ALPN) on a free port, in front of `origin`.
fn start(p: &Pki, origin: &common::RunningOrigin) -> (Sluice, u16) {
    let port = common::free_port();
    let listen = format!(
        "  edge_tls:\n    address: 127.0.0.1:{port}\n    cert: {}\n    key: {}\n",
        p.cert.display(),
        p.key.display()
    );
    let extra = format!(
        "origins:\n  bucket: {}\n  read_timeout: 10s\n",
        origin.url()
    );
    (Sluice::start_with_listen(&listen, &extra), port)
}

/// An HTTP/2 connection to the TLS edge (ALPN `h2`, the test CA trusted).
async fn h2_connect(p: &Pki, port: u16) -> h2::client::SendRequest<Bytes> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(p.ca_der.clone()))
        .expect("test CA");
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the TLS edge");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_first_http2_viewer_does_not_hold_the_fill() {
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

    // Viewer A asks first over HTTP/2 and never reads: its stream window (64 KiB) fills and
    // stays full.
    let (status, mut stalled) = h2_get(&p, port, path).await;
    assert_eq!(status, 200);
    assert_eq!(origin.hits("/h/cold.m4s"), 1);

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
            "viewer {name} got {} of {len} bytes while the first HTTP/2 viewer stalled",
            got.len()
        );
        assert!(got == body, "viewer {name} got a different body");
    }
    assert_eq!(origin.hits("/h/cold.m4s"), 1, "one origin fetch");

    // A, reading at last, gets the whole segment at its own pace, from the cache.
    let got = tokio::time::timeout(limit, h2_read(&mut stalled))
        .await
        .expect("the stalled viewer reads its answer to the end");
    assert_eq!(got.len(), len);
    assert!(got == body, "viewer A got a different body");
    assert_eq!(origin.hits("/h/cold.m4s"), 1);
}

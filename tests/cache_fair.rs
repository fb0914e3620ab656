//! A full cache stays fair, against the real binary and a real loopback origin that counts
//! its fetches: once the memory cache sits at its high-water mark (7/8 of
//! `cache.memory_bytes`), a new fill makes room by evicting cold objects, so its viewers
//! coalesce on one origin fetch; and fills that stall (a slow origin, a client that stopped
//! reading) hold what has arrived, not the whole budget, so new objects are still cached.
//!
//! The HTTP/2 client is the `h2` crate over `tokio-rustls` against the TLS edge listener: `h2`
//! gives flow-control window back only for what a caller releases, so streams whose bodies
//! are never polled are stalled players, frame for frame.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use common::{client, h2_connect, metric, metrics, random_bytes, Reply, Sluice, TestOrigin};

const MIB: usize = 1024 * 1024;

/// A small budget whose last eighth (3 MiB) cannot take a 4 MiB segment.
const BUDGET: usize = 24 * MIB;
const SEGMENT: usize = 4 * MIB;

fn cfg(origin: &common::RunningOrigin) -> String {
    format!(
        "origins:\n  bucket: {}\n  read_timeout: 10s\ncache:\n  memory_bytes: {BUDGET}\n  max_object_bytes: 8388608\n",
        origin.url()
    )
}

/// Fetch `path` once and check the body.
async fn fetch(s: &Sluice, path: &str, want: &Bytes) {
    let r = client().get(s.edge_url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    let body = r.bytes().await.unwrap();
    assert!(body == *want, "{path}: {} bytes, wrong body", body.len());
}

/// `viewers` players ask for `path` at once; each must get the whole body.
async fn watch_together(s: &Sluice, path: &str, want: &Bytes, viewers: usize) {
    let url = s.edge_url(path);
    let players: Vec<_> = (0..viewers)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let r = client().get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap()
            })
        })
        .collect();
    for p in players {
        let body = p.await.unwrap();
        assert!(body == *want, "{path}: {} bytes, wrong body", body.len());
    }
}

/// Fill the cache to its high-water mark with 1 MiB objects (more than fit: the LRU evicts).
async fn fill_to_high_water(s: &Sluice, bodies: &[Bytes]) {
    for (i, body) in bodies.iter().enumerate() {
        fetch(s, &format!("/stream/h/warm{i}.m4s"), body).await;
    }
    let m = metrics(s).await;
    let stored = metric(&m, "sluice_cache_bytes");
    assert!(
        stored >= (BUDGET - BUDGET / 8 - 2 * MIB) as f64 && stored <= BUDGET as f64,
        "the cache should sit at its 7/8 high-water mark: {stored} of {BUDGET}"
    );
}

fn warm_bodies() -> Vec<Bytes> {
    (0..30).map(|i| random_bytes(MIB, 500 + i)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_segments_at_the_high_water_mark_are_fetched_once_each() {
    let warm = warm_bodies();
    let segments: Vec<Bytes> = (0..12).map(|i| random_bytes(SEGMENT, 900 + i)).collect();
    let mut b = TestOrigin::new();
    for (i, body) in warm.iter().enumerate() {
        b = b.route(
            &format!("/h/warm{i}.m4s"),
            Reply::ok(body.clone(), "video/iso.segment"),
        );
    }
    for (i, body) in segments.iter().enumerate() {
        b = b.route(
            &format!("/h/seg{i}.m4s"),
            Reply::ok(body.clone(), "video/iso.segment"),
        );
    }
    let origin = b.start();
    let s = Sluice::start(&cfg(&origin));
    fill_to_high_water(&s, &warm).await;

    // A live stream's new segments, one after another, each wanted by 10 viewers at once.
    for (i, body) in segments.iter().enumerate() {
        watch_together(&s, &format!("/stream/h/seg{i}.m4s"), body, 10).await;
    }
    let fetches: Vec<usize> = (0..segments.len())
        .map(|i| origin.hits(&format!("/h/seg{i}.m4s")))
        .collect();
    assert_eq!(
        fetches,
        vec![1; segments.len()],
        "origin fetches per new segment (10 viewers each): {}",
        metrics(&s)
            .await
            .lines()
            .filter(|l| l.starts_with("sluice_cache"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The newest segment stayed cached: one more viewer is a hit.
    let last = segments.len() - 1;
    fetch(&s, &format!("/stream/h/seg{last}.m4s"), &segments[last]).await;
    assert_eq!(origin.hits(&format!("/h/seg{last}.m4s")), 1);

    let m = metrics(&s).await;
    assert!(metric(&m, "sluice_cache_bytes") <= BUDGET as f64, "{m}");
    assert!(
        metric(&m, "sluice_cache_evictions_total") >= 12.0,
        "room was made by evicting cold objects: {m}"
    );
    assert_eq!(
        metric(&m, "sluice_cache_uncached_total{reason=\"over_budget\"}"),
        0.0,
        "{m}"
    );
}

/// A client that asks for an object and never reads the answer (the socket stays open).
fn ask_and_stop_reading(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    // Read the status line's first bytes only: the fill has started.
    let mut first = [0u8; 12];
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_fills_do_not_keep_new_objects_out_of_the_cache() {
    // Eight cold 4 MiB objects whose origin sends 64 KiB now and the rest over two minutes:
    // their fills stay in flight for the whole test. Announced, they are 32 MiB: more than
    // the whole budget.
    let stalled = 8;
    let fresh = random_bytes(SEGMENT, 4242);
    let mut b = TestOrigin::new().route(
        "/h/fresh.m4s",
        Reply::ok(fresh.clone(), "video/iso.segment"),
    );
    for i in 0..stalled {
        b = b.route(
            &format!("/h/stall{i}.m4s"),
            Reply::ok(random_bytes(SEGMENT, 70 + i as u64), "video/iso.segment")
                .trickle(64, Duration::from_secs(120)),
        );
    }
    let origin = b.start();
    let s = Sluice::start(&cfg(&origin));

    // One client opens the eight fills and stops reading.
    let edge = s.edge;
    let held = tokio::task::spawn_blocking(move || {
        (0..stalled)
            .map(|i| ask_and_stop_reading(edge, &format!("/stream/h/stall{i}.m4s")))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for i in 0..stalled {
        assert_eq!(origin.hits(&format!("/h/stall{i}.m4s")), 1);
    }

    // While they are stalled, 20 viewers want a new segment: one origin fetch, then cached.
    watch_together(&s, "/stream/h/fresh.m4s", &fresh, 20).await;
    fetch(&s, "/stream/h/fresh.m4s", &fresh).await;
    let m = metrics(&s).await;
    assert_eq!(
        origin.hits("/h/fresh.m4s"),
        1,
        "origin fetches of a new segment for 21 viewers while 8 fills are stalled\n{m}\n{}",
        s.log()
    );

    let inflight = metric(&m, "sluice_cache_inflight_bytes");
    assert!(
        inflight > 0.0 && inflight <= (stalled * MIB) as f64,
        "the stalled fills are still in flight and hold what arrived, not what they \
         announced: {inflight}"
    );
    assert!(metric(&m, "sluice_cache_bytes") <= BUDGET as f64, "{m}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_http2_streams_do_not_keep_new_objects_out_of_the_cache() {
    // One HTTP/2 connection opens streams on eight distinct cold 4 MiB objects (a fast
    // origin) and never reads them: announced, they are 32 MiB, more than the budget.
    let stalled = 8;
    let fresh = random_bytes(SEGMENT, 4545);
    let mut b = TestOrigin::new().route(
        "/h/fresh.m4s",
        Reply::ok(fresh.clone(), "video/iso.segment"),
    );
    for i in 0..stalled {
        b = b.route(
            &format!("/h/cold{i}.m4s"),
            Reply::ok(random_bytes(SEGMENT, 270 + i as u64), "video/iso.segment"),
        );
    }
    let origin = b.start();
    let p = common::pki();
    let port = common::free_port();
    let listen = p.edge_tls(port);
    let s = Sluice::start_with_listen(&listen, &cfg(&origin));

    let conn = h2_connect(&p, port).await;
    let mut held = Vec::new();
    for i in 0..stalled {
        let mut send = conn.clone().ready().await.expect("stream slot");
        let req = http::Request::get(format!("https://localhost:{port}/stream/h/cold{i}.m4s"))
            .body(())
            .expect("request");
        let (resp, _) = send.send_request(req, true).expect("send request");
        let resp = resp.await.expect("response header");
        assert_eq!(resp.status(), 200);
        // The body is never polled: no window is given back.
        held.push(resp.into_body());
    }
    for i in 0..stalled {
        assert_eq!(origin.hits(&format!("/h/cold{i}.m4s")), 1);
    }

    // While the streams stay open, 20 viewers want a new segment, then one more.
    watch_together(&s, "/stream/h/fresh.m4s", &fresh, 20).await;
    fetch(&s, "/stream/h/fresh.m4s", &fresh).await;
    let m = metrics(&s).await;
    assert_eq!(
        origin.hits("/h/fresh.m4s"),
        1,
        "origin fetches of a new segment for 21 viewers beside 8 stalled HTTP/2 streams\n{m}\n{}",
        s.log()
    );
    assert!(metric(&m, "sluice_cache_bytes") <= BUDGET as f64, "{m}");
    drop(held);
    drop(conn);
}

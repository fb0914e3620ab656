//! Cache fills against the real binary and a real loopback origin: one slow viewer does not
//! slow the others, waiters' total wait is bounded, in-flight fills count against the memory
//! budget, objects past the limits stream through uncached and complete, and the disk tier
//! keeps the working set across a restart.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{client, metric, random_bytes, Reply, Sluice, TestOrigin};
use futures::StreamExt;

fn cfg(origin: &common::RunningOrigin, extra: &str) -> String {
    format!(
        "origins:\n  bucket: {}\n  read_timeout: 10s\n{extra}",
        origin.url()
    )
}

async fn metrics(s: &Sluice) -> String {
    client()
        .get(s.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A player on a bad network: sends its request, reads the header and the first `first`
/// body bytes, then stops reading (the socket stays open until `finish` or drop).
struct StalledReader {
    stream: TcpStream,
    /// Bytes read so far after the header.
    body: Vec<u8>,
}

impl StalledReader {
    fn start(addr: SocketAddr, path: &str, first: usize) -> StalledReader {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let header_end = loop {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed before the header");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("content-length"),
            "expected a sized answer: {head}"
        );
        let mut body = buf.split_off(header_end);
        while body.len() < first {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed early");
            body.extend_from_slice(&chunk[..n]);
        }
        StalledReader { stream, body }
    }

    /// Resume reading to the end of the connection.
    fn finish(mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        self.stream.read_to_end(&mut rest).unwrap();
        self.body.extend_from_slice(&rest);
        self.body
    }
}

/// Read a GET's body for at most `limit`; returns what arrived (possibly partial).
async fn read_for(url: &str, limit: Duration) -> (Vec<u8>, bool) {
    let c = client();
    let mut got = Vec::new();
    let done = tokio::time::timeout(limit, async {
        let r = c.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let mut stream = r.bytes_stream();
        while let Some(chunk) = stream.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
    })
    .await
    .is_ok();
    (got, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_first_viewer_does_not_slow_a_second_viewer() {
    // Larger than what the kernel's socket buffers of a stalled loopback reader absorb
    // (a few MB each way), so a fill paced by that reader cannot finish.
    let len = 32 * 1024 * 1024;
    let body = random_bytes(len, 77);
    let origin = TestOrigin::new()
        .route(
            "/h/big.m4s",
            Reply::ok(body.clone(), "video/iso.segment").trickle(16, Duration::from_millis(500)),
        )
        .start();
    let s = Sluice::start(&cfg(&origin, ""));
    let path = "/stream/h/big.m4s";

    // The first viewer reads 64 KiB and stalls.
    let edge = s.edge;
    let slow = tokio::task::spawn_blocking(move || StalledReader::start(edge, path, 64 * 1024))
        .await
        .unwrap();

    // A normal viewer asking a moment later gets the whole object while the first one is
    // still stalled (generous limit: the transfer takes well under a second on loopback).
    let (got, done) = read_for(&s.edge_url(path), Duration::from_secs(20)).await;
    assert!(
        done && got.len() == len,
        "second viewer got {} of {len} bytes while the first viewer stalled",
        got.len()
    );
    assert!(got == body, "second viewer got a different body");
    assert_eq!(origin.hits("/h/big.m4s"), 1, "one origin fetch");
    let m = metrics(&s).await;
    assert!(metric(&m, "sluice_cache_bytes") >= len as f64, "{m}");

    // The slow viewer, reading again, gets the whole and correct body at its own pace.
    let slow_body = tokio::task::spawn_blocking(move || slow.finish())
        .await
        .unwrap();
    assert_eq!(slow_body.len(), len);
    assert!(slow_body == body, "slow viewer got a different body");
    assert_eq!(origin.hits("/h/big.m4s"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_completes_when_the_first_viewer_leaves() {
    let len = 16 * 1024 * 1024;
    let body = random_bytes(len, 78);
    let origin = TestOrigin::new()
        .route(
            "/h/gone.m4s",
            Reply::ok(body.clone(), "video/iso.segment").trickle(16, Duration::from_secs(1)),
        )
        .start();
    let s = Sluice::start(&cfg(&origin, ""));
    let path = "/stream/h/gone.m4s";
    let edge = s.edge;
    // The first viewer reads a little and hangs up.
    tokio::task::spawn_blocking(move || drop(StalledReader::start(edge, path, 16 * 1024)))
        .await
        .unwrap();
    // The fill goes on without it: the object is stored whole from that one fetch.
    let start = Instant::now();
    loop {
        let m = metrics(&s).await;
        if metric(&m, "sluice_cache_bytes") >= len as f64 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "fill did not complete after the first viewer left: {m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = client().get(s.edge_url(path)).send().await.unwrap();
    assert_eq!(r.headers()["x-cache-status"], "hit");
    assert!(r.bytes().await.unwrap() == body);
    assert_eq!(origin.hits("/h/gone.m4s"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_on_a_hung_origin_wait_at_most_the_lock_timeout() {
    // The origin accepts and never answers (within the test).
    let origin = TestOrigin::new()
        .route(
            "/h/hung.m4s",
            Reply::ok("late", "video/iso.segment").delay(Duration::from_secs(60)),
        )
        .start();
    let s = Sluice::start(&format!(
        "origins:\n  bucket: {}\n  read_timeout: 8s\ncache:\n  lock_timeout: 2s\n",
        origin.url()
    ));
    let url = s.edge_url("/stream/h/hung.m4s");
    // The first request fetches (and waits up to the read timeout for the origin).
    let first = {
        let url = url.clone();
        tokio::spawn(async move { client().get(&url).send().await.unwrap().status() })
    };
    // Wait until its fetch reached the origin, then five players queue behind it.
    let start = Instant::now();
    while origin.hits("/h/hung.m4s") == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "no origin fetch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let began = Instant::now();
                let r = client().get(&url).send().await.unwrap();
                let status = r.status().as_u16();
                let body: serde_json::Value = r.json().await.unwrap();
                (status, body, began.elapsed())
            })
        })
        .collect();
    for w in waiters {
        let (status, body, waited) = w.await.unwrap();
        assert_eq!(status, 504, "{body}");
        assert_eq!(body["error"], "Upstream timed out");
        // Bounded by the lock timeout (2 s), with a wide margin for a loaded machine;
        // the old bound was lock_timeout + read_timeout (10 s).
        assert!(
            waited < Duration::from_millis(6500),
            "a waiter waited {waited:?}"
        );
    }
    // No waiter went to the hung origin itself: still the one fetch.
    assert_eq!(origin.hits("/h/hung.m4s"), 1);
    assert_eq!(first.await.unwrap(), 504);
}

/// Sample `sluice_cache_bytes` and `sluice_cache_inflight_bytes` until `done` is set;
/// returns the largest of each seen.
async fn sample_cache_bytes(
    s: &Sluice,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (f64, f64, usize) {
    let (mut bytes, mut inflight, mut samples) = (0f64, 0f64, 0);
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        let m = metrics(s).await;
        bytes = bytes.max(metric(&m, "sluice_cache_bytes"));
        inflight = inflight.max(metric(&m, "sluice_cache_inflight_bytes"));
        samples += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (bytes, inflight, samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_slow_cold_fills_stay_within_the_memory_budget() {
    let objects = 64;
    let len = 1024 * 1024;
    let budget = 8 * 1024 * 1024;
    let mut b = TestOrigin::new();
    for i in 0..objects {
        b = b.route(
            &format!("/h/c{i}.m4s"),
            Reply::ok(random_bytes(len, 1000 + i as u64), "video/iso.segment")
                .trickle(8, Duration::from_secs(2)),
        );
    }
    let origin = b.start();
    let s = Sluice::start(&cfg(
        &origin,
        &format!("cache:\n  memory_bytes: {budget}\n  max_object_bytes: 2097152\n"),
    ));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let players: Vec<_> = (0..objects)
        .map(|i| {
            let url = s.edge_url(&format!("/stream/h/c{i}.m4s"));
            tokio::spawn(async move {
                let r = client().get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap()
            })
        })
        .collect();
    let sampler = {
        let done = done.clone();
        let s = &s;
        async move { sample_cache_bytes(s, done).await }
    };
    let all = async {
        let mut bodies = Vec::new();
        for p in players {
            bodies.push(p.await.unwrap());
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        bodies
    };
    let ((max_bytes, max_inflight, samples), bodies) = tokio::join!(sampler, all);
    // Every player got its whole object, cached or streamed through.
    for (i, body) in bodies.iter().enumerate() {
        assert!(
            *body == random_bytes(len, 1000 + i as u64),
            "object {i} differs"
        );
    }
    assert!(samples >= 3, "only {samples} samples");
    assert!(
        max_bytes <= budget as f64,
        "cache held {max_bytes} bytes (stored + in flight), budget {budget}"
    );
    assert!(
        max_inflight > 0.0 && max_inflight <= budget as f64,
        "in-flight fills peaked at {max_inflight} bytes, budget {budget}"
    );
    let m = metrics(&s).await;
    // At most budget / 1 MiB fills fit at once; the rest streamed through uncached.
    let uncached = metric(&m, "sluice_cache_uncached_total{reason=\"over_budget\"}");
    assert!(uncached >= (objects - 8) as f64, "{uncached} uncached: {m}");
    assert_eq!(metric(&m, "sluice_cache_inflight_bytes"), 0.0, "{m}");
    assert!(metric(&m, "sluice_cache_bytes") <= budget as f64, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_larger_than_max_stream_through_uncached_and_complete() {
    let len = 6 * 1024 * 1024;
    let body = random_bytes(len, 5150);
    let origin = TestOrigin::new()
        .route(
            "/h/chunked.mp4",
            Reply::ok(body.clone(), "video/mp4").unannounced_length(),
        )
        .route("/h/sized.mp4", Reply::ok(body.clone(), "video/mp4"))
        .start();
    let s = Sluice::start(&cfg(&origin, "cache:\n  max_object_bytes: 1048576\n"));
    let c = client();
    for round in 0..2 {
        for p in ["/stream/h/chunked.mp4", "/stream/h/sized.mp4"] {
            let r = c.get(s.edge_url(p)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{p}");
            let got = r.bytes().await;
            let got = got.unwrap_or_else(|e| panic!("{p} round {round}: body cut: {e}"));
            assert_eq!(got.len(), len, "{p} round {round}");
            assert!(got == body, "{p} round {round}: different body");
        }
    }
    // Not cached: each request went to the origin.
    assert_eq!(origin.hits("/h/chunked.mp4"), 2);
    assert_eq!(origin.hits("/h/sized.mp4"), 2);
    let m = metrics(&s).await;
    assert!(
        metric(&m, "sluice_cache_uncached_total{reason=\"too_large\"}") >= 4.0,
        "{m}"
    );
    assert_eq!(metric(&m, "sluice_cache_inflight_bytes"), 0.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_object_past_the_default_64_mib_streams_whole() {
    let len = 80 * 1024 * 1024;
    let body = random_bytes(len, 6464);
    let origin = TestOrigin::new()
        .route(
            "/h/huge.mp4",
            Reply::ok(body.clone(), "video/mp4").unannounced_length(),
        )
        .start();
    let s = Sluice::start(&cfg(&origin, ""));
    let r = client()
        .get(s.edge_url("/stream/h/huge.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut got = 0usize;
    let mut same = true;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("body cut after {got} bytes: {e}"));
        same &= body.get(got..got + chunk.len()) == Some(&chunk[..]);
        got += chunk.len();
    }
    assert_eq!(got, len);
    assert!(same, "different body");
}

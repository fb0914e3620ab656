//! Cache fills against the real binary and a real loopback origin: one slow viewer does not
//! slow the others, waiters' total wait is bounded, in-flight fills count against the memory
//! budget, objects past the limits stream through uncached and complete, and the disk tier
//! keeps the working set across a restart.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{client, metric, metrics, random_bytes, Reply, Sluice, TestOrigin};
use futures::StreamExt;

fn cfg(origin: &common::RunningOrigin, extra: &str) -> String {
    format!(
        "origins:\n  bucket: {}\n  read_timeout: 10s\n{extra}",
        origin.url()
    )
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
    // At most budget / 1 MiB fills fit at once (a few more if some players arrive after the
    // first fills completed); the rest streamed through uncached.
    let uncached = metric(&m, "sluice_cache_uncached_total{reason=\"over_budget\"}");
    assert!(uncached >= (objects / 2) as f64, "{uncached} uncached: {m}");
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

/// The disk tier's file holding `path` (its primary key is stored in the file).
fn disk_file_of(dir: &std::path::Path, path: &str) -> std::path::PathBuf {
    for sub in std::fs::read_dir(dir).unwrap().flatten() {
        if sub.file_name() == "tmp" || !sub.file_type().unwrap().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
            let data = std::fs::read(f.path()).unwrap();
            if data.windows(path.len()).any(|w| w == path.as_bytes()) {
                return f.path();
            }
        }
    }
    panic!("no disk cache file for {path}");
}

/// Fetch `/stream/h/d{i}.m4s` for every object; each must be whole and correct.
async fn fetch_all(s: &Sluice, bodies: &[bytes::Bytes]) -> Vec<String> {
    let c = client();
    let mut statuses = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let r = c
            .get(s.edge_url(&format!("/stream/h/d{i}.m4s")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        statuses.push(r.headers()["x-cache-status"].to_str().unwrap().to_string());
        assert!(r.bytes().await.unwrap() == *body, "object {i} differs");
    }
    statuses
}

/// Origin fetches of the second round, after a restart, with and without the disk tier.
async fn refetches_after_restart(disk: Option<&std::path::Path>) -> (usize, Sluice) {
    let bodies: Vec<_> = (0..10).map(|i| random_bytes(256 * 1024, 700 + i)).collect();
    let mut b = TestOrigin::new();
    for (i, body) in bodies.iter().enumerate() {
        b = b.route(
            &format!("/h/d{i}.m4s"),
            Reply::ok(body.clone(), "video/iso.segment"),
        );
    }
    let origin = b.start();
    let extra = match disk {
        Some(d) => cfg(
            &origin,
            &format!(
                "cache:\n  disk:\n    path: {}\n    bytes: 67108864\n",
                d.display()
            ),
        ),
        None => cfg(&origin, ""),
    };
    let s = Sluice::start(&extra);
    fetch_all(&s, &bodies).await;
    assert_eq!(origin.total_hits(), 10);
    if disk.is_some() {
        // Written in the background: wait until all ten are on disk.
        let start = Instant::now();
        loop {
            let m = metrics(&s).await;
            if metric(&m, "sluice_cache_disk_events_total{event=\"write\"}") >= 10.0 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "not written: {m}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // SIGKILL: nothing gets a chance to flush.
    let dir = s.stop_keep_dir();
    let s = Sluice::start_in(dir, &extra, &[]);
    let statuses = fetch_all(&s, &bodies).await;
    if disk.is_some() {
        assert!(statuses.iter().all(|st| st == "hit"), "{statuses:?}");
    }
    (origin.total_hits() - 10, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_keeps_the_working_set_across_a_restart() {
    let (without, _) = refetches_after_restart(None).await;
    assert_eq!(
        without, 10,
        "memory only: every object goes back to the origin"
    );
    let disk = tempfile::tempdir().unwrap();
    let (with, s) = refetches_after_restart(Some(disk.path())).await;
    assert_eq!(
        with, 0,
        "with the disk tier no object goes back to the origin"
    );
    eprintln!(
        "origin fetches after a restart, 10 objects: memory only {without}, with cache.disk {with}"
    );
    let m = metrics(&s).await;
    assert!(
        metric(&m, "sluice_cache_disk_events_total{event=\"hit\"}") >= 10.0,
        "{m}"
    );
    assert!(
        metric(&m, "sluice_cache_disk_bytes") >= (10 * 256 * 1024) as f64,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_or_altered_disk_files_are_misses() {
    let bodies: Vec<_> = (0..3).map(|i| random_bytes(100_000, 900 + i)).collect();
    let mut b = TestOrigin::new();
    for (i, body) in bodies.iter().enumerate() {
        b = b.route(
            &format!("/h/d{i}.m4s"),
            Reply::ok(body.clone(), "video/iso.segment"),
        );
    }
    let origin = b.start();
    let disk = tempfile::tempdir().unwrap();
    let extra = cfg(
        &origin,
        &format!(
            "cache:\n  disk:\n    path: {}\n    bytes: 67108864\n",
            disk.path().display()
        ),
    );
    let s = Sluice::start(&extra);
    fetch_all(&s, &bodies).await;
    let start = Instant::now();
    while metric(
        &metrics(&s).await,
        "sluice_cache_disk_events_total{event=\"write\"}",
    ) < 3.0
    {
        assert!(start.elapsed() < Duration::from_secs(20), "not written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dir = s.stop_keep_dir();
    // d0: torn (cut short, as a crash mid-write would leave it were it not renamed last);
    // d1: one body byte flipped, same size.
    let torn = disk_file_of(disk.path(), "/h/d0.m4s");
    let len = std::fs::metadata(&torn).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&torn)
        .unwrap()
        .set_len(len - 1000)
        .unwrap();
    let altered = disk_file_of(disk.path(), "/h/d1.m4s");
    let mut data = std::fs::read(&altered).unwrap();
    let last = data.len() - 10;
    data[last] ^= 0x55;
    std::fs::write(&altered, &data).unwrap();

    let s = Sluice::start_in(dir, &extra, &[]);
    let statuses = fetch_all(&s, &bodies).await;
    // Both damaged objects were fetched again, whole and correct; the intact one was not.
    assert_eq!(statuses, ["miss", "miss", "hit"]);
    assert_eq!(origin.hits("/h/d0.m4s"), 2);
    assert_eq!(origin.hits("/h/d1.m4s"), 2);
    assert_eq!(origin.hits("/h/d2.m4s"), 1);
    let m = metrics(&s).await;
    assert!(
        metric(&m, "sluice_cache_disk_events_total{event=\"corrupt\"}") >= 1.0,
        "{m}"
    );
}

/// Three objects served once and written to a disk tier; sluice then stopped. What a restart
/// in the returned directory finds on disk is up to the caller.
async fn written_to_disk(
    seed: u64,
) -> (
    common::RunningOrigin,
    Vec<bytes::Bytes>,
    tempfile::TempDir,
    tempfile::TempDir,
    String,
) {
    let bodies: Vec<_> = (0..3).map(|i| random_bytes(100_000, seed + i)).collect();
    let mut b = TestOrigin::new();
    for (i, body) in bodies.iter().enumerate() {
        b = b.route(
            &format!("/h/d{i}.m4s"),
            Reply::ok(body.clone(), "video/iso.segment"),
        );
    }
    let origin = b.start();
    let disk = tempfile::tempdir().unwrap();
    let extra = cfg(
        &origin,
        &format!(
            "cache:\n  disk:\n    path: {}\n    bytes: 67108864\n",
            disk.path().display()
        ),
    );
    let s = Sluice::start(&extra);
    fetch_all(&s, &bodies).await;
    let start = Instant::now();
    while metric(
        &metrics(&s).await,
        "sluice_cache_disk_events_total{event=\"write\"}",
    ) < 3.0
    {
        assert!(start.elapsed() < Duration::from_secs(20), "not written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dir = s.stop_keep_dir();
    (origin, bodies, dir, disk, extra)
}

/// What someone who can write the cache directory but not read sluice's state directory can
/// do to a file: change its body and recompute every check that needs no secret. A CRC-32
/// file (`SLUICE\x01\n`) has its checksum after the fixed header's lengths (bytes 28..32, over
/// everything after byte 32); a MAC file (`SLUICE\x02\n`) gets SHA-256 of everything else in
/// its tag field (bytes 36..68), the best an attacker without the key can put there.
fn forge(path: &std::path::Path) {
    use sha2::Digest;
    let mut data = std::fs::read(path).unwrap();
    let last = data.len() - 10;
    data[last] ^= 0x55;
    match &data[..8] {
        b"SLUICE\x01\n" => {
            let crc = crc32fast::hash(&data[32..]);
            data[28..32].copy_from_slice(&crc.to_le_bytes());
        }
        b"SLUICE\x02\n" => {
            let mut h = sha2::Sha256::new();
            h.update(&data[..36]);
            h.update(&data[68..]);
            let digest = h.finalize();
            data[36..68].copy_from_slice(&digest);
        }
        other => panic!("unknown disk file format {other:?}"),
    }
    std::fs::write(path, &data).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_file_altered_with_its_checksum_recomputed_is_never_served() {
    let (origin, bodies, dir, disk, extra) = written_to_disk(1100).await;
    forge(&disk_file_of(disk.path(), "/h/d1.m4s"));
    let s = Sluice::start_in(dir, &extra, &[]);
    let statuses = fetch_all(&s, &bodies).await;
    // The forged object was fetched again (whole and correct: `fetch_all` compares bodies);
    // the others were served from disk.
    assert_eq!(statuses, ["hit", "miss", "hit"]);
    assert_eq!(origin.hits("/h/d1.m4s"), 2);
    assert_eq!(origin.hits("/h/d0.m4s") + origin.hits("/h/d2.m4s"), 2);
    let m = metrics(&s).await;
    assert_eq!(
        metric(&m, "sluice_cache_disk_events_total{event=\"corrupt\"}"),
        1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_files_under_a_lost_key_are_dropped_unread() {
    let (origin, bodies, dir, disk, extra) = written_to_disk(1200).await;
    let key = dir.path().join("state/disk-cache.key");
    assert!(
        key.exists(),
        "the disk tier's key lives in the state directory"
    );
    assert!(
        std::fs::read_dir(disk.path())
            .unwrap()
            .flatten()
            .all(|e| e.file_type().unwrap().is_dir()),
        "no key among the cache files"
    );
    std::fs::remove_file(&key).unwrap();
    let s = Sluice::start_in(dir, &extra, &[]);
    let statuses = fetch_all(&s, &bodies).await;
    // A new key: nothing written under the old one is served.
    assert_eq!(statuses, ["miss", "miss", "miss"]);
    assert_eq!(origin.total_hits(), 6);
    let m = metrics(&s).await;
    assert_eq!(
        metric(&m, "sluice_cache_disk_events_total{event=\"foreign\"}"),
        3.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "sluice_cache_disk_events_total{event=\"hit\"}"),
        0.0,
        "{m}"
    );
    assert!(s.log().contains("another key"), "{}", s.log());
}

/// Origin fetches for the same objects after a graceful upgrade (`serve --upgrade`, then
/// SIGQUIT to the old process), with or without the disk tier.
async fn refetches_after_upgrade(disk: Option<&std::path::Path>) -> usize {
    use std::process::{Command, Stdio};
    let bodies: Vec<_> = (0..10).map(|i| random_bytes(256 * 1024, 800 + i)).collect();
    let mut b = TestOrigin::new();
    for (i, body) in bodies.iter().enumerate() {
        b = b.route(
            &format!("/h/d{i}.m4s"),
            Reply::ok(body.clone(), "video/iso.segment"),
        );
    }
    let origin = b.start();
    let extra = match disk {
        Some(d) => cfg(
            &origin,
            &format!(
                "cache:\n  disk:\n    path: {}\n    bytes: 67108864\n",
                d.display()
            ),
        ),
        None => cfg(&origin, ""),
    };
    let mut old = Sluice::start(&extra);
    fetch_all(&old, &bodies).await;
    if disk.is_some() {
        let start = Instant::now();
        while metric(
            &metrics(&old).await,
            "sluice_cache_disk_events_total{event=\"write\"}",
        ) < 10.0
        {
            assert!(start.elapsed() < Duration::from_secs(20), "not written");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let log = std::fs::File::create(old.state_dir().join("new.log")).unwrap();
    let mut new = Command::new(common::sluice_bin())
        .args(["serve", "--upgrade", "-c"])
        .arg(&old.config_path)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    // The new process waits for the listening sockets; the old one hands them over on SIGQUIT.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(Command::new("kill")
        .args(["-QUIT", &old.pid().to_string()])
        .status()
        .unwrap()
        .success());
    old.wait_exit(Duration::from_secs(20));
    let before = origin.total_hits();
    // Served by the new process on the same sockets.
    fetch_all(&old, &bodies).await;
    let after = origin.total_hits() - before;
    let _ = new.kill();
    let _ = new.wait();
    after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_keeps_the_working_set_across_an_upgrade() {
    let without = refetches_after_upgrade(None).await;
    let disk = tempfile::tempdir().unwrap();
    let with = refetches_after_upgrade(Some(disk.path())).await;
    eprintln!("origin fetches after an upgrade, 10 objects: memory only {without}, with cache.disk {with}");
    assert_eq!(without, 10, "memory only: the new process starts cold");
    assert_eq!(
        with, 0,
        "with the disk tier the new process serves from disk"
    );
}

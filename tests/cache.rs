//! Segment delivery and caching, over real HTTP against the real binary and a counting origin.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{admin_key, client, metric, metrics, random_bytes, Reply, Sluice, TestOrigin};
use futures::StreamExt;

fn cfg(origin: &common::RunningOrigin, extra: &str) -> String {
    format!(
        "origins:\n  bucket: {}\n  read_timeout: 10s\n{extra}",
        origin.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cold_segment_fetched_once_for_200_concurrent_players() {
    let body = random_bytes(512 * 1024, 42);
    // A little latency so all 200 arrive while the first fetch is in flight.
    let origin = TestOrigin::new()
        .route(
            "/h/v/seg_1.m4s",
            Reply::ok(body.clone(), "video/iso.segment").delay(Duration::from_millis(300)),
        )
        .start();
    let s = Sluice::start(&cfg(&origin, ""));
    let c = client();
    let url = s.edge_url("/stream/h/v/seg_1.m4s");
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let c = c.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let r = c.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), body);
    }
    assert_eq!(
        origin.hits("/h/v/seg_1.m4s"),
        1,
        "origin fetched more than once"
    );
    // And a later request is a plain hit.
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["x-cache-status"], "hit");
    assert_eq!(origin.hits("/h/v/seg_1.m4s"), 1);
    let m = metrics(&s).await;
    assert!(
        metric(&m, "sluice_cache_lookups_total{status=\"hit\"}") >= 1.0,
        "{m}"
    );
    assert!(
        metric(&m, "sluice_cache_lookups_total{status=\"miss\"}") >= 1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_origin_streams_to_waiters_as_bytes_arrive() {
    let body = random_bytes(4 * 1024 * 1024, 9);
    // Long enough that "first byte before the origin finished" cannot be confused with
    // scheduling noise on a loaded 2-core machine.
    let transfer = Duration::from_secs(3);
    let origin = TestOrigin::new()
        .route(
            "/h/big.m4s",
            Reply::ok(body.clone(), "video/iso.segment").trickle(40, transfer),
        )
        .route(
            "/h/big2.m4s",
            Reply::ok(body.clone(), "video/iso.segment").trickle(40, transfer),
        )
        .start();
    let s = Sluice::start(&cfg(&origin, ""));
    let c = client();

    // 50 players arrive together: every one sees its first byte long before the origin is done.
    let url = s.edge_url("/stream/h/big.m4s");
    let start = Instant::now();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = c.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let r = c.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let mut stream = r.bytes_stream();
                let mut first = None;
                let mut got = Vec::new();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.unwrap();
                    if first.is_none() && !chunk.is_empty() {
                        first = Some(start.elapsed());
                    }
                    got.extend_from_slice(&chunk);
                }
                (first.unwrap(), got)
            })
        })
        .collect();
    let mut worst_first = Duration::ZERO;
    for t in tasks {
        let (first, got) = t.await.unwrap();
        worst_first = worst_first.max(first);
        assert!(got == body, "a waiter got a different body");
    }
    assert!(
        worst_first < transfer * 3 / 4,
        "slowest first byte after {worst_first:?}; the origin takes {transfer:?}"
    );
    assert_eq!(origin.hits("/h/big.m4s"), 1, "{}", s.log());

    // A second player arriving mid-transfer gets the whole body from the same fetch.
    let url2 = s.edge_url("/stream/h/big2.m4s");
    let c1 = c.clone();
    let u1 = url2.clone();
    let first =
        tokio::spawn(async move { c1.get(&u1).send().await.unwrap().bytes().await.unwrap() });
    tokio::time::sleep(transfer / 2).await;
    let second = c.get(&url2).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(first.await.unwrap(), body);
    assert_eq!(second, body);
    assert_eq!(origin.hits("/h/big2.m4s"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_stays_under_its_byte_budget() {
    let object = 1024 * 1024;
    let mut b = TestOrigin::new();
    for i in 0..40 {
        b = b.route(
            &format!("/h/s{i}.m4s"),
            Reply::ok(random_bytes(object, i), "video/iso.segment"),
        );
    }
    let origin = b.start();
    let budget = 8 * 1024 * 1024;
    let s = Sluice::start(&cfg(
        &origin,
        &format!("cache:\n  memory_bytes: {budget}\n  max_object_bytes: 2097152\n"),
    ));
    let c = client();
    let rss_before = rss_kb(s.pid());
    for round in 0..2 {
        for i in 0..40 {
            let r = c
                .get(s.edge_url(&format!("/stream/h/s{i}.m4s")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "round {round} object {i}");
            assert_eq!(r.bytes().await.unwrap().len(), object);
        }
    }
    // Eviction runs right after each admission; give the purge tasks a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = metrics(&s).await;
    let stored = metric(&m, "sluice_cache_bytes");
    assert!(stored > 0.0, "{m}");
    assert!(
        stored <= budget as f64,
        "cache holds {stored} bytes, budget {budget}"
    );
    assert!(metric(&m, "sluice_cache_evictions_total") >= 30.0, "{m}");
    // Evicted objects are fetched again: the origin saw the second round too.
    assert!(origin.total_hits() > 40);
    // 80 MB went through; resident memory grew by far less (budget plus working buffers).
    let grown_mb = (rss_kb(s.pid()).saturating_sub(rss_before)) / 1024;
    assert!(
        grown_mb < 64,
        "RSS grew by {grown_mb} MB for an {} MB budget",
        budget >> 20
    );
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn live_playlist_refreshes_vod_does_not() {
    let live = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:2,\ns1.m4s\n";
    let vod = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns1.m4s\n#EXT-X-ENDLIST\n";
    let origin = TestOrigin::new()
        .route(
            "/h/live.m3u8",
            Reply::ok(live, "application/vnd.apple.mpegurl"),
        )
        .route(
            "/h/vod.m3u8",
            Reply::ok(vod, "application/vnd.apple.mpegurl"),
        )
        .start();
    let s = Sluice::start(&cfg(&origin, ""));
    let c = client();
    let get = |p: &str| {
        let c = c.clone();
        let url = s.edge_url(p);
        async move {
            let r = c.get(url).send().await.unwrap();
            let status = r.headers()["x-cache-status"].to_str().unwrap().to_string();
            let cc = r.headers()["cache-control"].to_str().unwrap().to_string();
            (status, cc, r.text().await.unwrap())
        }
    };
    let (st, cc, body) = get("/stream/h/live.m3u8").await;
    assert_eq!((st.as_str(), body.as_str()), ("miss", live));
    assert!(!cc.contains("immutable"), "{cc}");
    let (st, _, _) = get("/stream/h/live.m3u8").await;
    assert_eq!(st, "hit");
    get("/stream/h/vod.m3u8").await;

    // The live playlist moves on at the origin; after half a target duration sluice refetches.
    let live2 = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:2\n#EXTINF:2,\ns2.m4s\n";
    origin.set_route(
        "/h/live.m3u8",
        Reply::ok(live2, "application/vnd.apple.mpegurl"),
    );
    origin.set_route(
        "/h/vod.m3u8",
        Reply::ok("changed", "application/vnd.apple.mpegurl"),
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (_, _, body) = get("/stream/h/live.m3u8").await;
    assert_eq!(body, live2);
    assert_eq!(origin.hits("/h/live.m3u8"), 2);
    let (st, _, body) = get("/stream/h/vod.m3u8").await;
    assert_eq!((st.as_str(), body.as_str()), ("hit", vod));
    assert_eq!(origin.hits("/h/vod.m3u8"), 1);
}

#[tokio::test]
async fn stale_segment_served_when_origin_goes_down() {
    let body = random_bytes(10_000, 3);
    let mut origin = TestOrigin::new()
        .route(
            "/h/a.m4s",
            Reply::ok(body.clone(), "video/iso.segment").header("cache-control", "max-age=1"),
        )
        .start();
    let s = Sluice::start(&cfg(&origin, "cache:\n  stale_if_error: 60s\n"));
    let c = client();
    let url = s.edge_url("/stream/h/a.m4s");
    assert_eq!(
        c.get(&url).send().await.unwrap().bytes().await.unwrap(),
        body
    );
    origin.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache-status"], "stale");
    assert_eq!(r.bytes().await.unwrap(), body);
    // Never cached: a 502 in JSON.
    let r = c
        .get(s.edge_url("/stream/h/other.m4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
}

#[tokio::test]
async fn not_found_is_cached_briefly() {
    let origin = TestOrigin::new().start();
    let s = Sluice::start(&cfg(&origin, "cache:\n  not_found_ttl: 1s\n"));
    let c = client();
    let url = s.edge_url("/stream/h/later.m4s");
    for _ in 0..3 {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 404);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "Not found");
    }
    assert_eq!(origin.hits("/h/later.m4s"), 1);
    // The segment appears; after not_found_ttl players get it.
    let body = random_bytes(1000, 5);
    origin.set_route("/h/later.m4s", Reply::ok(body.clone(), "video/iso.segment"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), body);
}

#[tokio::test]
async fn range_requests_answered_from_cache() {
    let body = random_bytes(100_000, 11);
    let origin = TestOrigin::new()
        .route("/h/r.mp4", Reply::ok(body.clone(), "video/mp4"))
        .start();
    let s = Sluice::start(&cfg(&origin, ""));
    let c = client();
    let url = s.edge_url("/stream/h/r.mp4");
    // Cold range request: the whole object is cached, the range is answered.
    let r = c
        .get(&url)
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 0-99/100000");
    assert_eq!(r.bytes().await.unwrap(), body.slice(0..100));
    let r = c
        .get(&url)
        .header("range", "bytes=50000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["x-cache-status"], "hit");
    assert_eq!(r.bytes().await.unwrap(), body.slice(50000..));
    let r = c
        .get(&url)
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), body.slice(99990..));
    let r = c
        .get(&url)
        .header("range", "bytes=200000-300000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    // HEAD from cache.
    let r = c.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "100000");
    assert_eq!(origin.hits("/h/r.mp4"), 1);
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let origin = TestOrigin::new()
        .route(
            "/h/p.m3u8",
            Reply::ok("#EXTM3U\n#EXT-X-ENDLIST\n", "application/vnd.apple.mpegurl"),
        )
        .start();
    let s = Sluice::start(&cfg(&origin, ""));
    let c = client();
    let r = c
        .request(reqwest::Method::OPTIONS, s.edge_url("/stream/h/p.m3u8"))
        .header("origin", "https://player.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "range")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("GET"));
    assert_eq!(r.headers()["access-control-allow-headers"], "range");
    assert_eq!(origin.total_hits(), 0);
    let r = c.get(s.edge_url("/stream/h/p.m3u8")).send().await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.headers()["cache-control"], "public, max-age=2");
    // Other methods are refused.
    let r = c.post(s.edge_url("/stream/h/p.m3u8")).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn extensions_are_an_allow_list() {
    let origin = TestOrigin::new()
        .route("/h/x.php", Reply::ok("<?php", "text/plain"))
        .route("/h/a.m4s", Reply::ok("seg", "video/iso.segment"))
        .start();
    let s = Sluice::start(&cfg(&origin, "stream:\n  extensions: [m4s]\n"));
    let c = client();
    for p in ["/stream/h/x.php", "/stream/h/a.ts", "/stream/h/noext"] {
        let r = c.get(s.edge_url(p)).send().await.unwrap();
        assert_eq!(r.status(), 403, "{p}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["error"].is_string());
    }
    assert_eq!(
        c.get(s.edge_url("/stream/h/a.m4s"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(origin.hits("/h/x.php"), 0);
}

/// Send a raw request line so no client library normalizes the path first.
fn raw_get(addr: std::net::SocketAddr, target: &[u8]) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    s.write_all(&req).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn traversal_table_never_reaches_the_origin() {
    let origin = TestOrigin::new()
        .route("/etc/passwd.ts", Reply::ok("root:x:0:0", "video/mp2t"))
        .route("/h/ok.ts", Reply::ok("fine", "video/mp2t"))
        .start();
    let s = Sluice::start(&cfg(&origin, ""));
    let cases: &[&[u8]] = &[
        b"/stream/h/../../etc/passwd.ts",
        b"/stream/../etc/passwd.ts",
        b"/stream/h/%2e%2e/%2e%2e/etc/passwd.ts",
        b"/stream/h/%2E%2E/etc/passwd.ts",
        b"/stream/h/.%2e/etc/passwd.ts",
        b"/stream/h/%2e./etc/passwd.ts",
        b"/stream/h/%252e%252e/etc/passwd.ts",
        b"/stream/h/..%2fetc%2fpasswd.ts",
        b"/stream/h/..%2Fetc/passwd.ts",
        b"/stream/h/%2e%2e%2f%2e%2e%2fetc/passwd.ts",
        b"/stream/h/..\\..\\etc\\passwd.ts",
        b"/stream/h/..%5c..%5cetc/passwd.ts",
        b"/stream/h/%5c..%5cpasswd.ts",
        b"/stream/h/passwd%00.ts",
        b"/stream/h/%c0%ae%c0%ae/etc/passwd.ts",
        b"/stream/h/%c0%af/etc/passwd.ts",
        b"/stream/h/%e0%80%ae%e0%80%ae/etc/passwd.ts",
        b"/stream/h//etc/passwd.ts",
        b"/stream//etc/passwd.ts",
        b"/stream/h/./../passwd.ts",
        b"/stream/h/.../passwd.ts",
        b"/stream/%2e%2e/etc/passwd.ts",
        b"/stream/h/C:/windows/win.ini.ts",
        b"/stream/h/%0d%0aX-Injected:1.ts",
        b"/stream/h%2f..%2f/etc/passwd.ts",
        b"/stream/h/%ff%fe.ts",
        b"/stream/h/..;/etc/passwd.ts",
        b"/stream/h/%u002e%u002e/passwd.ts",
    ];
    assert!(cases.len() >= 25);
    for target in cases {
        let status = raw_get(s.edge, target);
        assert!(
            (400..500).contains(&status),
            "{} answered {status}",
            String::from_utf8_lossy(target)
        );
    }
    assert_eq!(
        origin.total_hits(),
        0,
        "a traversal attempt reached the origin: {:?}",
        origin.requests()
    );
    assert_eq!(raw_get(s.edge, b"/stream/h/ok.ts"), 200);
}

/// A fill whose request went out before a purge may carry the version the purge removed
/// (the origin answered before it changed, the bytes were on their way): it is served to the
/// players who asked, and never stored.
#[tokio::test]
async fn a_fill_that_began_before_a_purge_is_not_stored() {
    let origin = TestOrigin::new()
        .route(
            "/h/slow.m4s",
            Reply::ok("old", "video/iso.segment").delay(Duration::from_millis(800)),
        )
        .start();
    let s = Sluice::start(&cfg(&origin, ""));
    let key = admin_key(&s);
    let c = client();
    let first = tokio::spawn({
        let (c, url) = (c.clone(), s.edge_url("/stream/h/slow.m4s"));
        async move { c.get(url).send().await.unwrap().text().await.unwrap() }
    });
    // The fill is waiting on the origin; the object changes and is purged.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(origin.hits("/h/slow.m4s"), 1);
    origin.set_route("/h/slow.m4s", Reply::ok("new", "video/iso.segment"));
    let r = c
        .post(s.admin_url("/api/cache/purge"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"path": "/stream/h/slow.m4s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(first.await.unwrap(), "old");
    let r = c
        .get(s.edge_url("/stream/h/slow.m4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-cache-status"], "miss");
    assert_eq!(r.text().await.unwrap(), "new");
    assert_eq!(origin.hits("/h/slow.m4s"), 2);
    assert_eq!(
        metric(
            &metrics(&s).await,
            "sluice_cache_uncached_total{reason=\"purged\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn purge_by_path_and_by_hash() {
    let origin = TestOrigin::new()
        .route("/h/a.m4s", Reply::ok("a", "video/iso.segment"))
        .route("/h/b.m4s", Reply::ok("b", "video/iso.segment"))
        .route("/hx/c.m4s", Reply::ok("c", "video/iso.segment"))
        .start();
    let s = Sluice::start(&cfg(&origin, ""));
    let key = admin_key(&s);
    let c = client();
    for p in ["/stream/h/a.m4s", "/stream/h/b.m4s", "/stream/hx/c.m4s"] {
        c.get(s.edge_url(p))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    let purge = |body: serde_json::Value| {
        let c = c.clone();
        let url = s.admin_url("/api/cache/purge");
        let key = key.clone();
        async move {
            let r = c
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    assert_eq!(
        purge(serde_json::json!({"path": "/stream/h/a.m4s"})).await,
        (200, serde_json::json!({"status":"success","purged":1}))
    );
    c.get(s.edge_url("/stream/h/a.m4s")).send().await.unwrap();
    assert_eq!(origin.hits("/h/a.m4s"), 2);
    // By hash: everything under h/, nothing under hx/.
    assert_eq!(purge(serde_json::json!({"hash": "h"})).await.1["purged"], 2);
    let r = c.get(s.edge_url("/stream/hx/c.m4s")).send().await.unwrap();
    assert_eq!(r.headers()["x-cache-status"], "hit");
    assert_eq!(purge(serde_json::json!({"hash": "../x"})).await.0, 400);
    assert_eq!(purge(serde_json::json!({})).await.0, 400);
    // Without a key: 401.
    let r = c
        .post(s.admin_url("/api/cache/purge"))
        .json(&serde_json::json!({"hash": "h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

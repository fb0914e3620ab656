//! Foundation: the real binary, both listeners, a real origin, metrics, `sluice check`.

mod common;

use std::process::Command;

use common::{client, metric, random_bytes, sluice_bin, Reply, Sluice, TestOrigin};

const PLAYLIST: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.0,\nseg_1.m4s\n#EXT-X-ENDLIST\n";

#[tokio::test]
async fn health_on_both_listeners() {
    let s = Sluice::start("");
    let c = client();
    for url in [s.edge_url("/health"), s.admin_url("/health")] {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            v,
            serde_json::json!({"status": "ok", "service": "sluice", "version": env!("CARGO_PKG_VERSION")})
        );
    }
    // Unknown API routes answer JSON 404 on both listeners.
    for url in [s.edge_url("/nope"), s.admin_url("/nope")] {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 404);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["status"], "error");
    }
    // Metrics live on the admin listener only.
    assert_eq!(
        c.get(s.edge_url("/metrics")).send().await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn playlist_and_segment_proxied_byte_exact() {
    let segment = random_bytes(300_000, 7);
    let origin = TestOrigin::new()
        .route(
            "/media/movie/video/playlist.m3u8",
            Reply::ok(PLAYLIST, "application/vnd.apple.mpegurl"),
        )
        .route(
            "/media/movie/video/seg_1.m4s",
            Reply::ok(segment.clone(), "video/iso.segment"),
        )
        .start();
    let s = Sluice::start(&format!("origins:\n  bucket: {}/media\n", origin.url()));
    let c = client();

    let r = c
        .get(s.edge_url("/stream/movie/video/playlist.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.headers()["content-type"], "application/vnd.apple.mpegurl");
    assert_eq!(r.text().await.unwrap(), PLAYLIST);

    let r = c
        .get(s.edge_url("/stream/movie/video/seg_1.m4s?token=secret"))
        .header("authorization", "Bearer player-secret")
        .header("cookie", "session=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.bytes().await.unwrap(), segment);

    // The bucket saw the object path, without the player's query, credentials or cookies.
    let seen = origin
        .requests()
        .into_iter()
        .find(|r| r.path_and_query.ends_with("seg_1.m4s"))
        .expect("origin saw the segment request");
    assert_eq!(seen.path_and_query, "/media/movie/video/seg_1.m4s");
    assert!(!seen.headers.contains_key("authorization"));
    assert!(!seen.headers.contains_key("cookie"));
    assert_eq!(seen.headers["host"], origin.addr.to_string());

    // A missing object is the bucket's 404.
    let r = c
        .get(s.edge_url("/stream/movie/video/seg_9.m4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn origin_down_is_json_502() {
    let mut origin = TestOrigin::new().start();
    let url = origin.url();
    origin.stop();
    let s = Sluice::start(&format!(
        "origins:\n  bucket: {url}\n  connect_timeout: 1s\n"
    ));
    let r = client()
        .get(s.edge_url("/stream/x/seg.m4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "Upstream error");
    let m = client()
        .get(s.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric(&m, "sluice_upstream_errors_total{kind=\"connect\"}") >= 1.0,
        "{m}"
    );
}

#[tokio::test]
async fn metrics_move_after_requests() {
    let origin = TestOrigin::new()
        .route("/h/a.ts", Reply::ok(random_bytes(1000, 1), "video/mp2t"))
        .start();
    let s = Sluice::start(&format!("origins:\n  bucket: {}\n", origin.url()));
    let c = client();
    let scrape = || async {
        c.get(s.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = scrape().await;
    for _ in 0..3 {
        assert_eq!(
            c.get(s.edge_url("/stream/h/a.ts"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // A request is counted in its logging phase, just after its last byte went out: wait
    // for the metric rather than race it.
    let series = "sluice_requests_total{class=\"stream\",listener=\"edge\",status=\"200\"}";
    let mut after = scrape().await;
    for _ in 0..100 {
        if metric(&after, series) - metric(&before, series) >= 3.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        after = scrape().await;
    }
    assert_eq!(
        metric(&after, series) - metric(&before, series),
        3.0,
        "{after}"
    );
    let bytes = "sluice_bytes_out_total{class=\"stream\"}";
    assert!(metric(&after, bytes) - metric(&before, bytes) >= 3000.0);
    assert!(after.contains("sluice_request_duration_seconds_bucket"));
    assert!(after.contains("sluice_upstream_duration_seconds_bucket"));
}

#[tokio::test]
async fn demo_stream_from_dir_origin() {
    let s = Sluice::start("origins:\n  bucket: dir:./demo/media\n");
    let c = client();
    let r = c
        .get(s.edge_url("/stream/demo/master.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.starts_with("#EXTM3U"), "{text}");
    let on_disk = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/demo/media/demo/video/r360/seg_0.m4s"
    ))
    .unwrap();
    let r = c
        .get(s.edge_url("/stream/demo/video/r360/seg_0.m4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), on_disk.as_slice());
    let r = c
        .get(s.edge_url("/stream/demo/missing.m4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn check_accepts_shipped_configs() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/conf")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let out = Command::new(sluice_bin())
                .args(["check", "-c"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn check_rejects_bad_configs_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unknown.yaml",
            "listen:\n  edge: 127.0.0.1:1\n  admn: 127.0.0.1:2\n",
            vec!["unknown.yaml", "line 3", "admn"],
        ),
        (
            "badaddr.yaml",
            "listen:\n  admin: localhost\n",
            vec!["badaddr.yaml", "line 2", "listen.admin"],
        ),
        (
            "badtype.yaml",
            "cache:\n  memory_bytes: [1]\n",
            vec!["badtype.yaml", "line 2", "cache.memory_bytes"],
        ),
        (
            "env.yaml",
            "origins:\n  bucket: ${SLUICE_TEST_UNSET_VAR}\n",
            vec!["env.yaml", "line 2", "SLUICE_TEST_UNSET_VAR"],
        ),
        (
            "scheme.yaml",
            "origins:\n  bucket: ftp://x\n",
            vec!["scheme.yaml", "origins.bucket"],
        ),
    ];
    for (name, text, needles) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = Command::new(sluice_bin())
            .args(["check", "-c"])
            .arg(&path)
            .env_remove("SLUICE_TEST_UNSET_VAR")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name} passed");
        let err = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(err.contains(n), "{name}: `{n}` not in: {err}");
        }
    }
    // Secrets come from the environment.
    let path = dir.path().join("env-ok.yaml");
    std::fs::write(
        &path,
        "origins:\n  bucket: http://${SLUICE_TEST_HOST}:9000\n",
    )
    .unwrap();
    let out = Command::new(sluice_bin())
        .args(["check", "-c"])
        .arg(&path)
        .env("SLUICE_TEST_HOST", "bucket.internal")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn version_and_help() {
    let out = Command::new(sluice_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("sluice {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(sluice_bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "check", "EXAMPLES"] {
        assert!(help.contains(word), "{help}");
    }
}

#[tokio::test]
async fn logs_written_to_a_file_carry_no_colour_codes() {
    for extra in ["", "log:\n  format: json\n"] {
        let s = Sluice::start(extra);
        let r = client().get(s.edge_url("/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let start = std::time::Instant::now();
        while !s.log().contains("sluice::access") {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(5),
                "{}",
                s.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let log = s.log();
        assert!(
            !log.contains('\u{1b}'),
            "escape codes in a log file:\n{log}"
        );
    }
}

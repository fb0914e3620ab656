//! Real players: hls.js and Shaka Player in headless Chromium play streams through sluice —
//! the demo over `/stream`, the same media over a provider's `/api/proxy` with rewritten
//! playlists, a ClearKey DASH channel, and a 480p/720p/1080p ladder (HLS and DASH) with
//! quality-restricted tokens, the origin's own request log showing what was fetched.
//! Needs Debian's `chromium` and `tests/clients` node modules (scripts/ensure-test-deps.sh).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{client, Reply, RunningOrigin, Sluice, TestOrigin};
use serde_json::Value;

/// `origin` with a route `/{prefix}/{rel}` for every file `rel` under `root`.
fn serve_dir(mut origin: TestOrigin, root: &Path, prefix: &str) -> TestOrigin {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
                let ct = sluice::media::content_type(&rel);
                origin = origin.route(
                    &format!("/{prefix}/{rel}"),
                    Reply::ok(std::fs::read(&p).unwrap(), ct),
                );
            }
        }
    }
    origin
}

/// The media bucket of the ABR tests: a real HTTP origin holding tests/fixtures/abr (the
/// 480p/720p/1080p ladder, its HLS master and its DASH manifest) under `/abr/`. Its request
/// log is the origin log: what sluice fetched for the players.
fn abr_origin() -> RunningOrigin {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/abr/media/abr");
    serve_dir(TestOrigin::new(), &root, "abr").start()
}

/// Requests the origin saw for paths starting with `prefix` (`/abr/1080p/`: that variant's
/// playlist, init and media segments).
fn origin_hits(origin: &RunningOrigin, prefix: &str) -> usize {
    origin
        .requests()
        .iter()
        .filter(|r| r.path_and_query.starts_with(prefix))
        .count()
}

/// The same ladder laid out as ffmpeg lays out a multi-variant HLS output by default
/// (`-var_stream_map "v:0 v:1 v:2" -master_pl_name master.m3u8 out_%v.m3u8`, fMP4): every
/// variant's playlist, init segment and media segments side by side at the content root —
/// `out_0.m3u8`, `init_0.mp4`, `out_00.m4s`, `out_01.m4s`, …, variant 2 being 1080p — under
/// `/flat/`. The bytes are the abr fixture's; only the names and the URIs that point at them
/// differ.
fn flat_origin() -> RunningOrigin {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/abr/media/abr");
    let read = |rel: &str| std::fs::read(root.join(rel)).unwrap();
    let text = |rel: &str| String::from_utf8(read(rel)).unwrap();
    let mut master = text("master.m3u8");
    let mut origin = TestOrigin::new();
    for (i, v) in ["480p", "720p", "1080p"].into_iter().enumerate() {
        master = master.replace(&format!("{v}/playlist.m3u8"), &format!("out_{i}.m3u8"));
        let mut playlist = text(&format!("{v}/playlist.m3u8"))
            .replace("URI=\"init.mp4\"", &format!("URI=\"init_{i}.mp4\""));
        origin = origin.route(
            &format!("/flat/init_{i}.mp4"),
            Reply::ok(read(&format!("{v}/init.mp4")), "video/mp4"),
        );
        for n in 0..4 {
            playlist = playlist.replace(&format!("seg_{n}.m4s"), &format!("out_{i}{n}.m4s"));
            origin = origin.route(
                &format!("/flat/out_{i}{n}.m4s"),
                Reply::ok(read(&format!("{v}/seg_{n}.m4s")), "video/iso.segment"),
            );
        }
        assert!(
            !playlist.contains("seg_") && playlist.contains("init_"),
            "{playlist}"
        );
        origin = origin.route(
            &format!("/flat/out_{i}.m3u8"),
            Reply::ok(playlist, "application/vnd.apple.mpegurl"),
        );
    }
    assert!(!master.contains("/playlist.m3u8"), "{master}");
    origin
        .route(
            "/flat/master.m3u8",
            Reply::ok(master, "application/vnd.apple.mpegurl"),
        )
        .start()
}

/// The same ladder as ffmpeg's DASH muxer writes it by default (`-f dash`, fMP4): one
/// AdaptationSet, Representations `0`/`1`/`2` (2 being 1080p) each with its own
/// `SegmentTemplate` — `init-stream$RepresentationID$.m4s`,
/// `chunk-stream$RepresentationID$-$Number%05d$.m4s` numbered from 1 — every file side by
/// side at the content root, under `/flatdash/`. The bytes are the abr fixture's.
fn flat_dash_origin() -> RunningOrigin {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/abr/media/abr");
    let read = |rel: &str| std::fs::read(root.join(rel)).unwrap();
    let mut reps = String::new();
    let mut origin = TestOrigin::new();
    let ladder = [
        ("480p", 800000, 854, 480),
        ("720p", 2500000, 1280, 720),
        ("1080p", 5000000, 1920, 1080),
    ];
    for (i, (v, bandwidth, width, height)) in ladder.into_iter().enumerate() {
        reps.push_str(&format!(
            "\t\t\t<Representation id=\"{i}\" mimeType=\"video/mp4\" codecs=\"avc1.42c00d\" bandwidth=\"{bandwidth}\" width=\"{width}\" height=\"{height}\" sar=\"1:1\">\n\
             \t\t\t\t<SegmentTemplate timescale=\"12800\" initialization=\"init-stream$RepresentationID$.m4s\" media=\"chunk-stream$RepresentationID$-$Number%05d$.m4s\" startNumber=\"1\">\n\
             \t\t\t\t\t<SegmentTimeline>\n\t\t\t\t\t\t<S t=\"0\" d=\"25600\" r=\"3\" />\n\t\t\t\t\t</SegmentTimeline>\n\
             \t\t\t\t</SegmentTemplate>\n\t\t\t</Representation>\n"
        ));
        origin = origin.route(
            &format!("/flatdash/init-stream{i}.m4s"),
            Reply::ok(read(&format!("{v}/init.mp4")), "video/mp4"),
        );
        for n in 0..4 {
            origin = origin.route(
                &format!("/flatdash/chunk-stream{i}-{:05}.m4s", n + 1),
                Reply::ok(read(&format!("{v}/seg_{n}.m4s")), "video/iso.segment"),
            );
        }
    }
    let mpd = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <MPD xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"\n\
         \txmlns=\"urn:mpeg:dash:schema:mpd:2011\"\n\
         \txmlns:xlink=\"http://www.w3.org/1999/xlink\"\n\
         \tprofiles=\"urn:mpeg:dash:profile:isoff-live:2011\"\n\
         \ttype=\"static\"\n\
         \tmediaPresentationDuration=\"PT8.0S\"\n\
         \tmaxSegmentDuration=\"PT2.0S\"\n\
         \tminBufferTime=\"PT4.0S\">\n\
         \t<ProgramInformation>\n\t</ProgramInformation>\n\
         \t<Period id=\"0\" start=\"PT0.0S\">\n\
         \t\t<AdaptationSet id=\"0\" contentType=\"video\" startWithSAP=\"1\" segmentAlignment=\"true\" frameRate=\"25/1\" maxWidth=\"1920\" maxHeight=\"1080\" par=\"16:9\">\n\
         {reps}\t\t</AdaptationSet>\n\t</Period>\n</MPD>\n"
    );
    origin
        .route(
            "/flatdash/manifest.mpd",
            Reply::ok(mpd, "application/dash+xml"),
        )
        .start()
}

/// Sluice in front of `origin` with one gated content `hash` (its id too) whose entry is
/// `entry`.
fn gated_sluice(origin: &RunningOrigin, hash: &str, entry: &str) -> Sluice {
    Sluice::start(&format!(
        "origins:\n  bucket: {}\nstreaming:\n  secret: browser-abr-secret-0123456\n  \
         contents:\n    - {{id: {hash}, hash: {hash}, entry: {entry}, token_required: true, max_uses: 4}}\n",
        origin.url()
    ))
}

/// A stream token's `streamUrl` for `content` at `quality`, minted with the admin key.
fn stream_url(s: &Sluice, content: &str, quality: &str) -> String {
    let key = common::admin_key(s);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let minted: Value = rt.block_on(async {
        client()
            .post(s.edge_url("/api/v2/streaming/token"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"contentId": content, "quality": quality}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    minted["streamUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("{minted}"))
        .to_string()
}

/// Play `url` for `secs` seconds; the player's report.
fn play(url: &str, secs: u32) -> Value {
    play_mode(url, secs, "")
}

/// [`play`] with the page's `mode` (`ll`: low-latency hls.js; `abr`: start on the lowest
/// variant with a fixed bandwidth prior).
fn play_mode(url: &str, secs: u32, mode: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/player/run.js");
    let out = Command::new("node")
        .arg(script)
        .arg(url)
        .arg(secs.to_string())
        .arg(mode)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "player failed (is chromium installed? run scripts/ensure-test-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("player report {line:?}: {e}"))
}

fn assert_played(r: &Value) {
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert_eq!(r["levels"], 2, "{r}");
    assert!(r["frags"].as_u64().unwrap_or(0) >= 4, "{r}");
    assert!(r["currentTime"].as_f64().unwrap_or(0.0) > 2.0, "{r}");
}

#[test]
fn hls_js_plays_the_demo_and_a_provider_stream() {
    // The demo over /stream from the built-in dir origin.
    let s = Sluice::start("origins:\n  bucket: dir:./demo/media\n");
    let r = play(&s.edge_url("/stream/demo/master.m3u8"), 6);
    assert_played(&r);
    drop(s);

    // The demo gated by a stream token with a quality ceiling: the player is given only the
    // streamUrl, and everything else (variants, the audio rendition, init and media
    // segments) it reaches through the playback credentials sluice mints into playlists.
    let s = Sluice::start(
        "origins:\n  bucket: dir:./demo/media\nstreaming:\n  secret: browser-stream-secret-0123\n  contents:\n    - {id: demo, hash: demo, token_required: true, max_uses: 1}\n",
    );
    let key = common::admin_key(&s);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let minted: Value = rt.block_on(async {
        client()
            .post(s.edge_url("/api/v2/streaming/token"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"contentId": "demo", "quality": "480p"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let url = minted["streamUrl"].as_str().unwrap().to_string();
    let r = play(&url, 6);
    assert_played(&r);
    // That was the token's one use: a second playback is refused.
    let again = rt.block_on(async { client().get(&url).send().await.unwrap().status() });
    assert_eq!(again, 403);
    drop(s);

    // The same media from a provider CDN, through /api/proxy with rewriting and injection.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/media/demo");
    let origin = serve_dir(TestOrigin::new(), &root, "cdn/demo").start();
    let secret = "browser-test-jwt-secret-0123";
    let s = Sluice::start(&format!(
        "provider_auth:\n  jwt_secret: {secret}\nproviders:\n  cdn:\n    headers: {{X-Auth: abc}}\n    allowed_hosts: [\"127.0.0.1\"]\n    allow_private: true\n    channels:\n      demo: {{url: \"http://{}/cdn/demo/master.m3u8\", type: hls}}\n",
        origin.addr
    ));
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "viewer", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let info: Value = rt.block_on(async {
        client()
            .get(s.edge_url("/api/providers/cdn/channels/demo/stream"))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let r = play(&s.edge_url(info["url"].as_str().unwrap()), 6);
    assert_played(&r);
    // Every fetch the player caused went through sluice with the provider's header.
    let seen = origin.requests();
    assert!(seen.len() >= 6, "{seen:?}");
    assert!(seen
        .iter()
        .all(|r| r.headers.get("x-auth").map(String::as_str) == Some("abc")));
}

/// Shaka Player plays a ClearKey-encrypted DASH stream (packaged by Shaka Packager, see
/// tests/fixtures/clearkey/make.sh) from what the signed channel API returns — the URL points
/// at sluice's `/stream`, the keys are the channel's — and with a wrong key for the right
/// KID playback does not advance.
#[test]
fn shaka_plays_a_clearkey_dash_channel_from_the_signed_channel_api() {
    const SECRET: &str = "shaka-channel-secret-0123456789";
    let s = Sluice::start_with_env(
        "origins:\n  bucket: dir:./tests/fixtures/clearkey/media\n\
         signed_channels:\n  secret_env: CHANNEL_SECRET\n  channels:\n    - key: cktv\n      \
         name: ClearKey TV\n      url: http://{EDGE}/stream/ck/manifest.mpd\n      type: dash\n      \
         drm: clearkey\n      keys:\n        0123456789abcdef0123456789abcdef: fedcba9876543210fedcba9876543210\n",
        &[("CHANNEL_SECRET", SECRET)],
    );
    let shaka = |wrong: bool| -> Value {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/player/shaka.js");
        let mut cmd = Command::new("node");
        cmd.arg(script)
            .arg(s.edge_url(""))
            .arg("cktv")
            .arg("6")
            .env("SECRET", SECRET);
        if wrong {
            cmd.env("WRONG_KEY", "1");
        }
        let out = cmd.output().expect("node runs");
        assert!(
            out.status.success(),
            "shaka failed (run scripts/ensure-test-deps.sh): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|e| panic!("shaka report {line:?}: {e}"))
    };
    let r = shaka(false);
    eprintln!("shaka, right key: {r}");
    assert_eq!(r["drm"], "clearkey", "{r}");
    assert!(
        r["url"]
            .as_str()
            .unwrap()
            .contains("/stream/ck/manifest.mpd"),
        "{r}"
    );
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert_eq!(r["loaded"], true, "{r}");
    assert!(r["currentTime"].as_f64().unwrap_or(0.0) > 2.0, "{r}");
    // The segments came through sluice.
    assert!(s.log().contains("/stream/ck/seg_2.m4s"), "{}", s.log());

    // The right KID with a wrong key: decryption yields garbage, playback must not advance.
    let r = shaka(true);
    eprintln!("shaka, wrong key: {r}");
    let t = r["currentTime"].as_f64().unwrap_or(0.0);
    let stuck = t < 0.5;
    let decode_error = r["errors"].as_array().is_some_and(|e| {
        e.iter().any(|x| {
            x.as_str()
                .is_some_and(|x| x.starts_with("video:") || x.starts_with("shaka:"))
        })
    });
    assert!(stuck || decode_error, "played with a wrong key: {r}");
    assert!(t < 2.0, "advanced {t} s with a wrong key: {r}");
}

/// A gated multi-variant stream (declared 480p / 720p / 1080p): hls.js adapts across the
/// variants it is allowed, and a `720p` token never fetches the 1080p variant (sluice lists
/// only allowed variants, and the playback opens only what its playlists listed) — the origin
/// was never asked for any 1080p object.
#[test]
fn hls_js_adapts_across_variants_and_a_720p_token_never_gets_1080p() {
    let origin = abr_origin();
    let s = gated_sluice(&origin, "abr", "master.m3u8");

    let r = play_mode(&stream_url(&s, "abr", "720p"), 8, "abr");
    eprintln!("720p token: {r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert_eq!(r["levels"], 2, "a 720p token lists 480p and 720p only: {r}");
    assert!(r["currentTime"].as_f64().unwrap_or(0.0) > 2.0, "{r}");
    // Adaptive: fragments from more than one variant (hls.js starts low and climbs).
    let distinct = |r: &Value| {
        let mut l: Vec<String> = r["fragLevels"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        l.sort();
        l.dedup();
        l
    };
    assert!(distinct(&r).len() >= 2, "no switch between variants: {r}");
    assert!(
        origin_hits(&origin, "/abr/720p/") >= 1,
        "{:?}",
        origin.requests()
    );
    assert_eq!(
        origin_hits(&origin, "/abr/1080p/"),
        0,
        "the origin was asked for 1080p objects with a 720p token: {:?}",
        origin.requests()
    );

    // The same content with an `auto` token lists (and may reach) 1080p.
    let r = play_mode(&stream_url(&s, "abr", "auto"), 8, "abr");
    eprintln!("auto token: {r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert_eq!(r["levels"], 3, "{r}");
    assert!(distinct(&r).len() >= 2, "no switch between variants: {r}");
}

/// Shaka Player (`node shaka.js --src`) plays `src` for `secs` seconds; its report.
fn shaka_play(src: &str, secs: u32, mode: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/player/shaka.js");
    let out = Command::new("node")
        .arg(script)
        .arg("--src")
        .arg(src)
        .arg(secs.to_string())
        .arg(mode)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "shaka failed (run scripts/ensure-test-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("shaka report {line:?}: {e}"))
}

/// The heights of the variant tracks Shaka was offered, lowest first.
fn track_heights(r: &Value) -> Vec<u64> {
    r["tracks"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["height"].as_u64()).collect())
        .unwrap_or_default()
}

/// The paths Shaka fetched (manifests, playlists, segments) that lie under `/stream/abr/{variant}/`.
fn player_fetched(r: &Value, variant: &str) -> usize {
    let prefix = format!("/stream/abr/{variant}/");
    r["fetched"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p.as_str().is_some_and(|p| p.starts_with(&prefix)))
                .count()
        })
        .unwrap_or(0)
}

/// Shaka in Chromium plays the ladder with a `720p` token and an `auto` one, starting from
/// a 1 Gbps estimate so it goes for the highest variant it is offered: with `720p` it is
/// offered 480p and 720p only, plays 720p, and neither it nor sluice ever asks for a 1080p
/// object (the origin's log); with `auto` it is offered all three and plays 1080p — which
/// shows the first run's zero is the ceiling's doing, not the player's choice.
fn shaka_plays_the_ladder_within_its_token(entry: &str) {
    let origin = abr_origin();
    let s = gated_sluice(&origin, "abr", entry);

    let r = shaka_play(&stream_url(&s, "abr", "720p"), 8, "top");
    eprintln!("shaka, {entry}, 720p token: {r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert_eq!(r["loaded"], true, "{r}");
    assert!(r["currentTime"].as_f64().unwrap_or(0.0) > 2.0, "{r}");
    assert_eq!(
        track_heights(&r),
        [480, 720],
        "a 720p token offers 480p and 720p: {r}"
    );
    assert_eq!(r["activeHeights"], serde_json::json!([720]), "{r}");
    assert!(player_fetched(&r, "720p") >= 2, "{r}");
    assert_eq!(player_fetched(&r, "1080p"), 0, "{r}");
    assert!(
        origin_hits(&origin, "/abr/720p/") >= 2,
        "{:?}",
        origin.requests()
    );
    assert_eq!(
        origin_hits(&origin, "/abr/1080p/"),
        0,
        "the origin was asked for 1080p objects with a 720p token: {:?}",
        origin.requests()
    );

    let r = shaka_play(&stream_url(&s, "abr", "auto"), 8, "top");
    eprintln!("shaka, {entry}, auto token: {r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert!(r["currentTime"].as_f64().unwrap_or(0.0) > 2.0, "{r}");
    assert_eq!(track_heights(&r), [480, 720, 1080], "{r}");
    assert_eq!(r["activeHeights"], serde_json::json!([1080]), "{r}");
    assert!(
        origin_hits(&origin, "/abr/1080p/") >= 2,
        "{:?}",
        origin.requests()
    );
}

/// HLS: the master filtered by the token's quality.
#[test]
fn shaka_plays_the_hls_ladder_with_a_720p_token_and_never_gets_1080p() {
    shaka_plays_the_ladder_within_its_token("master.m3u8");
}

/// DASH: the manifest's Representations filtered by the token's quality, the segment
/// template's proof naming only the Representations left.
#[test]
fn shaka_plays_the_dash_ladder_with_a_720p_token_and_never_gets_1080p() {
    shaka_plays_the_ladder_within_its_token("manifest.mpd");
}

/// ffmpeg's default layout (every variant's playlist and segments at the content root, see
/// [`flat_origin`]) with a `720p` token: hls.js and Shaka both play it — the first version of
/// the credential scoped by directory, so here every segment was refused although its
/// playlist listed it — and neither ever gets a 1080p object (`out_2*`, `init_2.mp4`) out of
/// the origin, though they sit in the same directory as what they play. With `auto`, Shaka is
/// offered 1080p and plays it from the same origin.
#[test]
fn hls_js_and_shaka_play_ffmpegs_flat_ladder_with_a_720p_token_and_never_get_1080p() {
    let origin = flat_origin();
    let s = gated_sluice(&origin, "flat", "master.m3u8");
    let hits_1080p = || origin_hits(&origin, "/flat/out_2") + origin_hits(&origin, "/flat/init_2");

    let r = play_mode(&stream_url(&s, "flat", "720p"), 8, "abr");
    eprintln!("hls.js, flat, 720p token: {r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert_eq!(r["levels"], 2, "a 720p token lists 480p and 720p only: {r}");
    assert!(r["frags"].as_u64().unwrap_or(0) >= 3, "{r}");
    assert!(r["currentTime"].as_f64().unwrap_or(0.0) > 2.0, "{r}");

    let r = shaka_play(&stream_url(&s, "flat", "720p"), 8, "top");
    eprintln!("shaka, flat, 720p token: {r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert!(r["currentTime"].as_f64().unwrap_or(0.0) > 2.0, "{r}");
    assert_eq!(track_heights(&r), [480, 720], "{r}");
    assert_eq!(r["activeHeights"], serde_json::json!([720]), "{r}");
    assert!(
        origin_hits(&origin, "/flat/out_1") >= 3,
        "{:?}",
        origin.requests()
    );
    assert_eq!(
        hits_1080p(),
        0,
        "the origin was asked for 1080p objects with a 720p token: {:?}",
        origin.requests()
    );

    let r = shaka_play(&stream_url(&s, "flat", "auto"), 8, "top");
    eprintln!("shaka, flat, auto token: {r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert_eq!(track_heights(&r), [480, 720, 1080], "{r}");
    assert_eq!(r["activeHeights"], serde_json::json!([1080]), "{r}");
    assert!(hits_1080p() >= 3, "{:?}", origin.requests());
}

/// ffmpeg's default DASH output (see [`flat_dash_origin`]: per-Representation templates with
/// `$Number%05d$`, every file at the content root) with a `720p` token: Shaka plays 720p —
/// the first version lost the credential on `$Number%05d$` (every segment 401) and did not
/// filter DASH at all — is offered 480p and 720p only, and the origin is never asked for a
/// 1080p object; with `auto` it is offered 1080p and plays it.
#[test]
fn shaka_plays_ffmpegs_dash_ladder_with_a_720p_token_and_never_gets_1080p() {
    let origin = flat_dash_origin();
    let s = gated_sluice(&origin, "flatdash", "manifest.mpd");
    let hits_1080p = || {
        origin_hits(&origin, "/flatdash/init-stream2")
            + origin_hits(&origin, "/flatdash/chunk-stream2-")
    };

    let r = shaka_play(&stream_url(&s, "flatdash", "720p"), 8, "top");
    eprintln!("shaka, ffmpeg dash, 720p token: {r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert!(r["currentTime"].as_f64().unwrap_or(0.0) > 2.0, "{r}");
    assert_eq!(track_heights(&r), [480, 720], "{r}");
    assert_eq!(r["activeHeights"], serde_json::json!([720]), "{r}");
    assert!(
        origin_hits(&origin, "/flatdash/chunk-stream1-") >= 3,
        "{:?}",
        origin.requests()
    );
    assert_eq!(
        hits_1080p(),
        0,
        "the origin was asked for 1080p objects with a 720p token: {:?}",
        origin.requests()
    );

    let r = shaka_play(&stream_url(&s, "flatdash", "auto"), 8, "top");
    eprintln!("shaka, ffmpeg dash, auto token: {r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert_eq!(track_heights(&r), [480, 720, 1080], "{r}");
    assert_eq!(r["activeHeights"], serde_json::json!([1080]), "{r}");
    assert!(hits_1080p() >= 3, "{:?}", origin.requests());
}

/// hls.js plays a provider stream that uses `EXT-X-DEFINE` through `/api/proxy`: the
/// multivariant playlist defines `auth` from its own URL's query (`QUERYPARAM`), the media
/// playlists `IMPORT` it, and every URI carries `?auth={$auth}` — with a value holding `&`,
/// `=` and `+`. Every object reaches the origin with the value whole. (Before: hls.js failed
/// on the `QUERYPARAM` — sluice's URL has no `auth` — and a value's `&` cut the URL.)
#[test]
fn hls_js_plays_define_queryparam_values_with_ampersands_through_the_proxy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/media/demo");
    let mut origin = serve_dir(TestOrigin::new(), &root, "cdn/demo");
    // The demo's playlists, with variables: each URI asks for `auth`.
    for rel in [
        "master.m3u8",
        "video/r360/playlist.m3u8",
        "video/r180/playlist.m3u8",
        "audio/aac/playlist.m3u8",
    ] {
        let text = std::fs::read_to_string(root.join(rel)).unwrap();
        let define = if rel == "master.m3u8" {
            "#EXT-X-DEFINE:QUERYPARAM=\"auth\""
        } else {
            "#EXT-X-DEFINE:IMPORT=\"auth\""
        };
        let mut out = String::new();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some((head, tail)) = line.split_once("URI=\"") {
                let (uri, rest) = tail.split_once('"').unwrap();
                out.push_str(&format!("{head}URI=\"{uri}?auth={{$auth}}\"{rest}\n"));
            } else if line.starts_with('#') {
                out.push_str(line);
                out.push('\n');
            } else {
                out.push_str(&format!("{line}?auth={{$auth}}\n"));
            }
            if line == "#EXTM3U" {
                out.push_str("#EXT-X-VERSION:11\n");
                out.push_str(define);
                out.push('\n');
            }
        }
        let out = out.replace("#EXT-X-VERSION:7\n", "");
        origin = origin.route(
            &format!("/cdn/demo/{rel}"),
            Reply::ok(out, "application/vnd.apple.mpegurl"),
        );
    }
    let origin = origin.start();
    let secret = "browser-define-jwt-secret-0123";
    let s = Sluice::start(&format!(
        "provider_auth:\n  jwt_secret: {secret}\nproviders:\n  cdn:\n    allowed_hosts: [\"127.0.0.1\"]\n    allow_private: true\n    channels:\n      demo: {{url: \"http://{}/cdn/demo/master.m3u8?auth=k%26v%3D1%2B2\", type: hls}}\n",
        origin.addr
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(common::stream_info_url(
        &s,
        "cdn",
        "demo",
        &common::provider_jwt(secret, "viewer"),
    ));
    let r = play(&s.edge_url(&url), 6);
    assert_played(&r);
    let seen = origin.requests();
    let media: Vec<_> = seen
        .iter()
        .filter(|r| !r.path_and_query.starts_with("/cdn/demo/master.m3u8"))
        .collect();
    assert!(media.len() >= 6, "{seen:?}");
    for r in media {
        assert!(
            r.path_and_query.ends_with("?auth=k&v=1+2"),
            "{}",
            r.path_and_query
        );
    }
}

/// The demo's playlists as a provider CDN at `/cdn/demo/` serves them, with `edit` applied to
/// each media playlist's text.
fn demo_with(mut origin: TestOrigin, edit: impl Fn(&str, &str) -> String) -> TestOrigin {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/media/demo");
    origin = serve_dir(origin, &root, "cdn/demo");
    for rel in [
        "video/r360/playlist.m3u8",
        "video/r180/playlist.m3u8",
        "audio/aac/playlist.m3u8",
    ] {
        let text = std::fs::read_to_string(root.join(rel)).unwrap();
        origin = origin.route(
            &format!("/cdn/demo/{rel}"),
            Reply::ok(edit(rel, &text), "application/vnd.apple.mpegurl"),
        );
    }
    origin
}

/// A provider `cdn` (header `X-Auth: abc`) on `hosts`, channel `demo` at `url`; the
/// `/api/proxy` URL a viewer gets for it.
fn provider_channel(hosts: &str, url: &str) -> (Sluice, String) {
    let secret = "browser-forms-jwt-secret-0123";
    let s = Sluice::start(&format!(
        "provider_auth:\n  jwt_secret: {secret}\nproviders:\n  cdn:\n    headers: {{X-Auth: abc}}\n    allowed_hosts: [{hosts}]\n    allow_private: true\n    channels:\n      demo: {{url: \"{url}\", type: hls}}\n"
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let entry = rt.block_on(common::stream_info_url(
        &s,
        "cdn",
        "demo",
        &common::provider_jwt(secret, "viewer"),
    ));
    let entry = s.edge_url(&entry);
    (s, entry)
}

/// hls.js plays an HLS Interstitials ad (2 s into the stream) whose asset list names the ad
/// by an absolute CDN URL: the asset list is rewritten, so the ad's playlists and segments
/// are fetched through sluice (with the provider's header), never from the CDN directly.
/// (Before: the JSON passed through, hls.js went to the CDN itself and played no ad.)
#[test]
fn hls_js_plays_an_interstitial_ad_through_the_proxy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/media/demo");
    let port = common::free_port_on("127.0.0.1");
    let list = format!(
        r#"{{"ASSETS":[{{"URI":"http://127.0.0.1:{port}/cdn/ad/master.m3u8","DURATION":6.0}}]}}"#
    );
    let origin = demo_with(serve_dir(TestOrigin::new(), &root, "cdn/ad"), |rel, text| {
        let daterange = if rel.starts_with("video/") {
            "#EXT-X-DATERANGE:ID=\"ad\",CLASS=\"com.apple.hls.interstitial\",START-DATE=\"2026-01-01T00:00:02.000Z\",X-ASSET-LIST=\"/cdn/ads/list.json\"\n"
        } else {
            ""
        };
        text.replacen(
            "#EXTINF",
            &format!("{daterange}#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n#EXTINF"),
            1,
        )
    })
    .route("/cdn/ads/list.json", Reply::ok(list, "application/json"))
    .start_at(&format!("127.0.0.1:{port}"));
    let (_s, entry) = provider_channel(
        "\"127.0.0.1\"",
        &format!("http://127.0.0.1:{port}/cdn/demo/master.m3u8"),
    );
    let r = play(&entry, 8);
    let seen = origin.requests();
    assert!(
        seen.iter().any(|r| r.path_and_query == "/cdn/ads/list.json"
            || r.path_and_query.starts_with("/cdn/ads/list.json?")),
        "{r} {seen:?}"
    );
    let ad: Vec<_> = seen
        .iter()
        .filter(|r| r.path_and_query.starts_with("/cdn/ad/"))
        .collect();
    assert!(
        ad.iter().any(|r| r.path_and_query.ends_with(".m4s")),
        "no ad segment fetched: {r} {seen:?}"
    );
    // Everything, the ad included, went through sluice.
    for r in &seen {
        assert_eq!(
            r.headers.get("x-auth").map(String::as_str),
            Some("abc"),
            "fetched past sluice: {}",
            r.path_and_query
        );
    }
}

/// hls.js plays a stream with content steering through `/api/proxy`: the steering manifest
/// (relative `RELOAD-URI`) puts a pathway cloned onto another host first, and hls.js's own
/// URI replacement of that clone (`HOST`, `PARAMS`) lands on sluice, which fetches the
/// cloned host — inside `allowed_hosts` — with the provider's header. (Before: the manifest
/// passed through and the clone's `HOST` sent the player past sluice.)
#[test]
fn hls_js_follows_a_steering_pathway_clone_through_the_proxy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/media/demo");
    let port = common::free_port_on("127.0.0.1");
    let master = std::fs::read_to_string(root.join("master.m3u8"))
        .unwrap()
        .replace(
            "#EXT-X-VERSION:7\n",
            "#EXT-X-VERSION:7\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"steer/manifest.json\",PATHWAY-ID=\"A\"\n",
        )
        .replace(
            "AUDIO=\"group_aud\"",
            "AUDIO=\"group_aud\",PATHWAY-ID=\"A\"",
        );
    let manifest = r#"{"VERSION":1,"TTL":300,"RELOAD-URI":"next.json","PATHWAY-PRIORITY":["B","A"],"PATHWAY-CLONES":[{"BASE-ID":"A","ID":"B","URI-REPLACEMENT":{"HOST":"127.0.0.3","PARAMS":{"cdn":"b"}}}]}"#;
    let origin = serve_dir(TestOrigin::new(), &root, "cdn/demo")
        .route(
            "/cdn/demo/master.m3u8",
            Reply::ok(master, "application/vnd.apple.mpegurl"),
        )
        .route(
            "/cdn/demo/steer/manifest.json",
            Reply::ok(manifest, "application/json"),
        )
        .start_at(&format!("127.0.0.1:{port}"));
    let clone =
        serve_dir(TestOrigin::new(), &root, "cdn/demo").start_at(&format!("127.0.0.3:{port}"));
    let (_s, entry) = provider_channel(
        &format!("\"127.0.0.1:{port}\", \"127.0.0.3:{port}\""),
        &format!("http://127.0.0.1:{port}/cdn/demo/master.m3u8"),
    );
    let r = play(&entry, 8);
    // Moving to the steered pathway, hls.js cancels the loads still running on the old one
    // and says so (`networkError:aborted`, not fatal): how many depends on timing. Any other
    // error fails the test.
    let errors: Vec<&serde_json::Value> = r["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e.as_str() != Some("networkError:aborted"))
        .collect();
    assert!(errors.is_empty(), "{r}");
    let steered = origin.requests();
    assert!(
        steered.iter().any(|q| q
            .path_and_query
            .starts_with("/cdn/demo/steer/manifest.json?_HLS_pathway=")),
        "{r} {steered:?}"
    );
    let cloned = clone.requests();
    assert!(
        cloned
            .iter()
            .any(|q| q.path_and_query.ends_with(".m3u8?cdn=b")),
        "the clone's playlists were never fetched: {r} {cloned:?}"
    );
    assert!(
        cloned
            .iter()
            .all(|q| q.headers.get("x-auth").map(String::as_str) == Some("abc")),
        "fetched past sluice: {cloned:?}"
    );
}

/// Shaka in Chromium plays fMP4 HLS through `/api/proxy` from an origin that types `.m4s` as
/// `video/iso.segment` (the registered type; the abr fixture served as files by their
/// extension). The proxied segment URLs have no extension, so Shaka takes the container from
/// the segment's `Content-Type` (a `HEAD`): before, sluice passed `video/iso.segment` on and
/// Shaka failed with 4032 (the same stream played directly and through `/stream`, whose URLs
/// end in `.m4s`).
#[test]
fn shaka_plays_fmp4_hls_through_the_proxy_from_an_origin_typing_segments_iso_segment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/abr/media/abr");
    let origin = serve_dir(TestOrigin::new(), &root, "abr").start_on("127.0.0.2");
    assert_eq!(
        sluice::media::content_type("abr/720p/seg_0.m4s"),
        "video/iso.segment"
    );
    let secret = "shaka-proxy-secret-0123456789";
    let s = Sluice::start(&format!(
        "provider_auth:\n  jwt_secret: {secret}\nproviders:\n  cdn:\n    allowed_hosts: [\"127.0.0.2\"]\n    allow_private: true\n    channels:\n      abr: {{url: \"http://{}/abr/master.m3u8\", type: hls}}\n",
        origin.addr
    ));
    let jwt = common::provider_jwt(secret, "viewer");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let entry = rt.block_on(common::stream_info_url(&s, "cdn", "abr", &jwt));
    assert!(entry.starts_with("/api/proxy?url="), "{entry}");
    let r = shaka_play(&s.edge_url(&entry), 8, "");
    eprintln!("shaka through /api/proxy: {r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert_eq!(r["loaded"], true, "{r}");
    assert!(r["currentTime"].as_f64().unwrap_or(0.0) > 2.0, "{r}");
    // Every segment the player played came through the proxy from the origin.
    assert!(
        origin_hits(&origin, "/abr/") >= 4,
        "{:?}",
        origin.requests()
    );
    assert!(
        origin
            .requests()
            .iter()
            .any(|r| r.path_and_query.ends_with(".m4s")),
        "{:?}",
        origin.requests()
    );
}

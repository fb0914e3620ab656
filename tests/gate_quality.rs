//! Quality is decided per object (issue 20): a restricted token's playback opens exactly what
//! its playlists listed, on content laid out as real packagers lay it out — ffmpeg's flat
//! layout (every variant's playlist and segments at the content root), variants sharing one
//! segment directory, masters with 100+ renditions, rendition groups of every type, I-frame
//! streams with and without `RESOLUTION`, DASH with several AdaptationSets and ffmpeg's
//! `$Number%05d$` template.
//!
//! Each test plays the content as a player would (every URI of every playlist, recursively),
//! then tries every excluded object with every credential and proof the playback was given:
//! each must be refused, and the origin must never have been asked for it. The flat-layout
//! and DASH cases run over HTTP/1.1 and over HTTP/2 (TLS, ALPN); the suite's second pass runs
//! them all again with sluice as the daemon the shipped unit starts.

mod common;

use std::collections::{BTreeSet, VecDeque};

use common::{admin_key, client, Pki, Reply, RunningOrigin, Sluice, TestOrigin};
use serde_json::{json, Value};

const SECRET: &str = "gate-quality-stream-secret-0123";
const HLS: &str = "application/vnd.apple.mpegurl";
const DASH: &str = "application/dash+xml";

fn config(origin: &RunningOrigin, contents: &[(&str, &str)]) -> String {
    let mut c = format!(
        "origins:\n  bucket: {}\nstreaming:\n  secret: {SECRET}\n  contents:\n",
        origin.url()
    );
    for (hash, entry) in contents {
        c.push_str(&format!(
            "    - id: {hash}\n      hash: {hash}\n      entry: {entry}\n      token_required: true\n      max_uses: 5\n"
        ));
    }
    c
}

async fn token(s: &Sluice, content: &str, quality: &str) -> String {
    let resp = client()
        .post(s.edge_url("/api/v2/streaming/token"))
        .bearer_auth(admin_key(s))
        .json(&json!({"contentId": content, "quality": quality}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["streamToken"].as_str().unwrap().to_string()
}

/// How the player talks to sluice: every rule must hold whatever carries the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Http1,
    /// HTTP/2 over TLS (ALPN), with curl.
    Http2,
}

/// sluice with a TLS listener beside the cleartext one, and the protocol the tests speak.
struct Edge {
    s: Sluice,
    proto: Proto,
    tls_port: u16,
    pki: Pki,
}

impl std::ops::Deref for Edge {
    type Target = Sluice;
    fn deref(&self) -> &Sluice {
        &self.s
    }
}

impl Edge {
    fn start(origin: &RunningOrigin, contents: &[(&str, &str)], proto: Proto) -> Edge {
        let pki = common::pki();
        let tls_port = common::free_port();
        let listen = pki.edge_tls(tls_port);
        let s = Sluice::start_with_listen(&listen, &config(origin, contents));
        Edge {
            s,
            proto,
            tls_port,
            pki,
        }
    }
}

async fn get(e: &Edge, path: &str) -> (u16, String) {
    if e.proto == Proto::Http1 {
        let resp = client().get(e.edge_url(path)).send().await.unwrap();
        return (resp.status().as_u16(), resp.text().await.unwrap());
    }
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--http2", "--max-time", "20"])
        .args(["--cacert", &e.pki.ca.to_string_lossy()])
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", e.tls_port)])
        .args(["-w", "\n%{http_version} %{http_code}"])
        .arg(format!("https://localhost:{}{path}", e.tls_port))
        .output()
        .await
        .expect("curl runs (scripts/ensure-test-deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap();
    let (version, status) = tail.split_once(' ').unwrap();
    assert_eq!(version, "2", "not HTTP/2: {tail}");
    (status.parse().unwrap(), body.to_string())
}

/// URIs of an HLS playlist: URI lines and `URI="…"` attributes.
fn hls_uris(playlist: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in playlist.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        if line.starts_with('#') {
            for (i, _) in line.match_indices("URI=\"") {
                let rest = &line[i + 5..];
                out.push(rest[..rest.find('"').unwrap()].to_string());
            }
        } else {
            out.push(line.to_string());
        }
    }
    out
}

fn resolve(base: &str, uri: &str) -> String {
    let base = url::Url::parse(&format!("http://x{base}")).unwrap();
    let u = base.join(&uri.replace("&amp;", "&")).unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

/// What a player reached: every object path fetched (status 200 each, asserted) and every
/// query (credential and proof) it was given.
struct Playback {
    paths: BTreeSet<String>,
    queries: BTreeSet<String>,
    master: String,
}

/// Play an HLS content as a player would: the entry with the token, then every URI of every
/// playlist on sluice, recursively.
async fn play_hls(s: &Edge, hash: &str, entry: &str, token: &str) -> Playback {
    let first = format!("/stream/{hash}/{entry}?token={token}");
    let (st, master) = get(s, &first).await;
    assert_eq!(st, 200, "{master}");
    let mut pb = Playback {
        paths: BTreeSet::new(),
        queries: BTreeSet::new(),
        master: master.clone(),
    };
    let mut todo: VecDeque<(String, String)> = VecDeque::new();
    todo.push_back((format!("/stream/{hash}/{entry}"), master));
    while let Some((base, text)) = todo.pop_front() {
        for u in hls_uris(&text) {
            let abs = resolve(&base, &u);
            if !abs.starts_with("/stream/") {
                continue;
            }
            let (path, query) = abs.split_once('?').unwrap_or((&abs, ""));
            assert!(query.contains("pc="), "no credential on {abs}");
            if !pb.paths.insert(path.to_string()) {
                continue;
            }
            pb.queries.insert(query.to_string());
            let (st, body) = get(s, &abs).await;
            assert_eq!(st, 200, "{abs}: {body}");
            if body.starts_with("#EXTM3U") {
                todo.push_back((path.to_string(), body));
            }
        }
    }
    pb
}

/// Every excluded object, with every credential and proof the playback was given, and with
/// the credential alone: refused, and never asked of the origin.
async fn excluded_stay_shut(s: &Edge, o: &RunningOrigin, pb: &Playback, excluded: &[String]) {
    for path in excluded {
        let pc = pb
            .queries
            .iter()
            .next()
            .and_then(|q| q.split('&').find(|kv| kv.starts_with("pc=")))
            .unwrap()
            .to_string();
        for q in pb.queries.iter().chain(std::iter::once(&pc)) {
            let (st, body) = get(s, &format!("{path}?{q}")).await;
            assert_eq!(st, 403, "{path}?{q}: {body}");
        }
        let upstream = path.replacen("/stream", "", 1);
        assert_eq!(o.hits(&upstream), 0, "the origin was asked for {upstream}");
    }
}

#[tokio::test]
async fn ffmpeg_flat_layout_plays_its_allowed_variants_only_http1() {
    ffmpeg_flat_layout_plays_its_allowed_variants_only_over(Proto::Http1).await;
}

#[tokio::test]
async fn ffmpeg_flat_layout_plays_its_allowed_variants_only_http2() {
    ffmpeg_flat_layout_plays_its_allowed_variants_only_over(Proto::Http2).await;
}

async fn ffmpeg_flat_layout_plays_its_allowed_variants_only_over(proto: Proto) {
    // `ffmpeg -var_stream_map "v:0 v:1 v:2" -master_pl_name master.m3u8 stream_%v.m3u8`:
    // everything at the content root.
    let master = "#EXTM3U\n#EXT-X-VERSION:6\n\
#EXT-X-STREAM-INF:BANDWIDTH=1140800,RESOLUTION=854x480,CODECS=\"avc1.64001e,mp4a.40.2\"\nstream_0.m3u8\n\n\
#EXT-X-STREAM-INF:BANDWIDTH=3140800,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\"\nstream_1.m3u8\n\n\
#EXT-X-STREAM-INF:BANDWIDTH=6140800,RESOLUTION=1920x1080,CODECS=\"avc1.640028,mp4a.40.2\"\nstream_2.m3u8\n";
    let mut o = TestOrigin::new().route("/flat/master.m3u8", Reply::ok(master, HLS));
    for v in 0..3 {
        let media = format!(
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:4.000000,\nstream_{v}0.ts\n#EXTINF:4.000000,\nstream_{v}1.ts\n#EXT-X-ENDLIST\n"
        );
        o = o.route(&format!("/flat/stream_{v}.m3u8"), Reply::ok(media, HLS));
        for n in 0..2 {
            o = o.route(
                &format!("/flat/stream_{v}{n}.ts"),
                Reply::ok(vec![v as u8; 188], "video/mp2t"),
            );
        }
    }
    let o = o.start();
    let s = Edge::start(&o, &[("flat", "master.m3u8")], proto);
    let t = token(&s, "flat", "720p").await;
    let pb = play_hls(&s, "flat", "master.m3u8", &t).await;
    assert_eq!(pb.paths.len(), 2 + 4, "{:?}", pb.paths);
    assert!(!pb.master.contains("stream_2"), "{}", pb.master);
    let excluded: Vec<String> = ["stream_2.m3u8", "stream_20.ts", "stream_21.ts"]
        .iter()
        .map(|p| format!("/stream/flat/{p}"))
        .collect();
    excluded_stay_shut(&s, &o, &pb, &excluded).await;
    // Unrestricted: everything.
    let all = token(&s, "flat", "auto").await;
    let pb = play_hls(&s, "flat", "master.m3u8", &all).await;
    assert_eq!(pb.paths.len(), 3 + 6);
}

#[tokio::test]
async fn shared_segment_directories_and_rendition_groups_of_every_type() {
    // Bento4/Shaka style: all video in one directory, names guessable; audio groups, two
    // video-angle groups, subtitles, captions, and I-frame streams with and without RESOLUTION.
    let master = "#EXTM3U\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"stereo\",NAME=\"en\",DEFAULT=YES,URI=\"audio/en.m3u8\"\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"atmos\",NAME=\"en\",URI=\"audio/atmos.m3u8\"\n\
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"fr\",URI=\"subs/fr.m3u8\"\n\
#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID=\"cc\",NAME=\"en\",INSTREAM-ID=\"CC1\"\n\
#EXT-X-MEDIA:TYPE=VIDEO,GROUP-ID=\"angle-720\",NAME=\"cam2\",URI=\"video/cam2_720.m3u8\"\n\
#EXT-X-MEDIA:TYPE=VIDEO,GROUP-ID=\"angle-1080\",NAME=\"cam2\",URI=\"video/cam2_1080.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\",AUDIO=\"stereo\",SUBTITLES=\"subs\",CLOSED-CAPTIONS=\"cc\",VIDEO=\"angle-720\"\n\
video/720.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=7000000,RESOLUTION=1920x1080,CODECS=\"avc1.640028,ec-3\",AUDIO=\"atmos\",SUBTITLES=\"subs\",CLOSED-CAPTIONS=\"cc\",VIDEO=\"angle-1080\"\n\
video/1080.m3u8\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=300000,CODECS=\"avc1.64001f\",URI=\"video/720_iframes.m3u8\"\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=150000,CODECS=\"avc1.640028\",URI=\"video/1080_iframes.m3u8\"\n";
    let media = |prefix: &str| {
        format!("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MAP:URI=\"{prefix}_init.mp4\"\n#EXTINF:4,\n{prefix}_1.m4s\n#EXT-X-ENDLIST\n")
    };
    let iframes = |prefix: &str| {
        format!("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-I-FRAMES-ONLY\n#EXT-X-MAP:URI=\"{prefix}_init.mp4\"\n#EXT-X-BYTERANGE:1000@0\n#EXTINF:4,\n{prefix}_1.m4s\n#EXT-X-ENDLIST\n")
    };
    let mut o = TestOrigin::new().route("/shared/master.m3u8", Reply::ok(master, HLS));
    let objects = [
        ("video/720", "720"),
        ("video/1080", "1080"),
        ("video/cam2_720", "cam2_720"),
        ("video/cam2_1080", "cam2_1080"),
        ("audio/en", "en"),
        ("audio/atmos", "atmos"),
        ("subs/fr", "fr"),
    ];
    for (playlist, prefix) in objects {
        let dir = playlist.rsplit_once('/').unwrap().0;
        o = o
            .route(
                &format!("/shared/{playlist}.m3u8"),
                Reply::ok(media(prefix), HLS),
            )
            .route(
                &format!("/shared/{dir}/{prefix}_init.mp4"),
                Reply::ok(vec![1u8; 64], "video/mp4"),
            )
            .route(
                &format!("/shared/{dir}/{prefix}_1.m4s"),
                Reply::ok(vec![2u8; 256], "video/iso.segment"),
            );
    }
    for prefix in ["720", "1080"] {
        o = o.route(
            &format!("/shared/video/{prefix}_iframes.m3u8"),
            Reply::ok(iframes(prefix), HLS),
        );
    }
    let o = o.start();
    let s = Edge::start(&o, &[("shared", "master.m3u8")], Proto::Http1);
    let t = token(&s, "shared", "720p").await;
    let pb = play_hls(&s, "shared", "master.m3u8", &t).await;
    for reached in [
        "video/720.m3u8",
        "video/720_1.m4s",
        "video/720_iframes.m3u8",
        "video/cam2_720.m3u8",
        "video/cam2_720_1.m4s",
        "audio/en.m3u8",
        "audio/en_1.m4s",
        "subs/fr.m3u8",
    ] {
        assert!(
            pb.paths.contains(&format!("/stream/shared/{reached}")),
            "{reached} not reached: {:?}",
            pb.paths
        );
    }
    let excluded: Vec<String> = [
        "video/1080.m3u8",
        "video/1080_1.m4s",
        "video/1080_init.mp4",
        "video/1080_iframes.m3u8",
        "video/cam2_1080.m3u8",
        "video/cam2_1080_1.m4s",
        "audio/atmos.m3u8",
        "audio/atmos_1.m4s",
    ]
    .iter()
    .map(|p| format!("/stream/shared/{p}"))
    .collect();
    excluded_stay_shut(&s, &o, &pb, &excluded).await;
}

#[tokio::test]
async fn a_hundred_renditions_never_crowd_out_the_allowed_variant() {
    let mut master = String::from("#EXTM3U\n");
    let mut o = TestOrigin::new();
    for i in 0..60 {
        master.push_str(&format!(
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"a{i}\",LANGUAGE=\"l{i}\",URI=\"audio/{i}.m3u8\"\n"
        ));
        master.push_str(&format!(
            "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"sub\",NAME=\"s{i}\",LANGUAGE=\"l{i}\",URI=\"subs/{i}.m3u8\"\n"
        ));
        o = o
            .route(
                &format!("/many/audio/{i}.m3u8"),
                Reply::ok("#EXTM3U\n#EXTINF:4,\na.aac\n#EXT-X-ENDLIST\n", HLS),
            )
            .route(
                &format!("/many/subs/{i}.m3u8"),
                Reply::ok("#EXTM3U\n#EXTINF:4,\ns.vtt\n#EXT-X-ENDLIST\n", HLS),
            );
    }
    o = o
        .route("/many/audio/a.aac", Reply::ok(vec![0u8; 10], "audio/aac"))
        .route("/many/subs/s.vtt", Reply::ok("WEBVTT\n", "text/vtt"));
    for (h, w) in [(1080, 1920), (720, 1280), (360, 640)] {
        master.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},RESOLUTION={w}x{h},AUDIO=\"aud\",SUBTITLES=\"sub\"\nv{h}/p.m3u8\n",
            h * 6000
        ));
        o = o
            .route(
                &format!("/many/v{h}/p.m3u8"),
                Reply::ok("#EXTM3U\n#EXTINF:4,\ns1.ts\n#EXT-X-ENDLIST\n", HLS),
            )
            .route(
                &format!("/many/v{h}/s1.ts"),
                Reply::ok(vec![1u8; 188], "video/mp2t"),
            );
    }
    let o = o.route("/many/master.m3u8", Reply::ok(master, HLS)).start();
    let s = Edge::start(&o, &[("many", "master.m3u8")], Proto::Http1);
    let t = token(&s, "many", "720p").await;
    let pb = play_hls(&s, "many", "master.m3u8", &t).await;
    // 120 renditions, 2 variants, their segments, the shared audio and text objects.
    assert_eq!(pb.paths.len(), 120 + 2 + 2 + 2, "{}", pb.paths.len());
    let excluded = vec![
        "/stream/many/v1080/p.m3u8".to_string(),
        "/stream/many/v1080/s1.ts".to_string(),
    ];
    excluded_stay_shut(&s, &o, &pb, &excluded).await;
}

#[tokio::test]
async fn an_iframe_stream_is_judged_by_its_variant_not_its_bandwidth() {
    // Small BANDWIDTHs and no RESOLUTION, in a directory of their own: each addresses its
    // variant's full segments (byte ranges), so each goes with its variant — the one whose
    // name it carries — and one that names no variant is tied to none and removed.
    let master = "#EXTM3U\n\
#EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720\nhd/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=8000000,RESOLUTION=1920x1080\nfhd/index.m3u8\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=120000,URI=\"trick/hd_iframes.m3u8\"\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI=\"trick/fhd_iframes.m3u8\"\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=60000,URI=\"trick/keyframes.m3u8\"\n";
    let seg = |d: &str| {
        format!("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\n{d}_0.ts\n#EXT-X-ENDLIST\n")
    };
    let ifr = |d: &str| {
        format!("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-I-FRAMES-ONLY\n#EXT-X-BYTERANGE:376@0\n#EXTINF:6,\n../{d}/{d}_0.ts\n#EXT-X-ENDLIST\n")
    };
    let mut o = TestOrigin::new()
        .route("/trick/master.m3u8", Reply::ok(master, HLS))
        .route("/trick/trick/keyframes.m3u8", Reply::ok(ifr("fhd"), HLS));
    for d in ["hd", "fhd"] {
        o = o
            .route(&format!("/trick/{d}/index.m3u8"), Reply::ok(seg(d), HLS))
            .route(
                &format!("/trick/trick/{d}_iframes.m3u8"),
                Reply::ok(ifr(d), HLS),
            )
            .route(
                &format!("/trick/{d}/{d}_0.ts"),
                Reply::ok(vec![7u8; 376], "video/mp2t"),
            );
    }
    let o = o.start();
    let s = Edge::start(&o, &[("trick", "master.m3u8")], Proto::Http1);
    let t = token(&s, "trick", "720p").await;
    let pb = play_hls(&s, "trick", "master.m3u8", &t).await;
    assert!(pb.paths.contains("/stream/trick/trick/hd_iframes.m3u8"));
    assert!(pb.paths.contains("/stream/trick/hd/hd_0.ts"));
    assert!(
        !pb.master.contains("fhd") && !pb.master.contains("keyframes"),
        "{}",
        pb.master
    );
    let excluded: Vec<String> = [
        "trick/fhd_iframes.m3u8",
        "trick/keyframes.m3u8",
        "fhd/index.m3u8",
        "fhd/fhd_0.ts",
    ]
    .iter()
    .map(|p| format!("/stream/trick/{p}"))
    .collect();
    excluded_stay_shut(&s, &o, &pb, &excluded).await;
}

/// A DASH MPD with an avc and an hevc video AdaptationSet, audio and text, templates at
/// AdaptationSet level (Bento4) and Representation level (ffmpeg's `$Number%05d$`).
const MPD: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="static" mediaPresentationDuration="PT8S" minBufferTime="PT2S">
  <Period id="0" start="PT0S">
    <AdaptationSet contentType="video" mimeType="video/mp4" segmentAlignment="true">
      <SegmentTemplate timescale="1000" duration="4000" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/seg-$Number$.m4s" startNumber="1"/>
      <Representation id="avc360" codecs="avc1.64001e" bandwidth="800000" width="640" height="360"/>
      <Representation id="avc720" codecs="avc1.64001f" bandwidth="3000000" width="1280" height="720"/>
      <Representation id="avc1080" codecs="avc1.640028" bandwidth="6000000" width="1920" height="1080"/>
    </AdaptationSet>
    <AdaptationSet contentType="video" mimeType="video/mp4">
      <Representation id="1" codecs="hvc1.1.6.L93.90" bandwidth="1500000" width="1280" height="720">
        <SegmentTemplate timescale="1000" duration="4000" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1"/>
      </Representation>
      <Representation id="2" codecs="hvc1.1.6.L150.90" bandwidth="9000000" width="3840" height="2160">
        <SegmentTemplate timescale="1000" duration="4000" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1"/>
      </Representation>
    </AdaptationSet>
    <AdaptationSet contentType="audio" mimeType="audio/mp4" lang="en">
      <SegmentTemplate timescale="1000" duration="4000" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/seg-$Number$.m4s" startNumber="1"/>
      <Representation id="aac" codecs="mp4a.40.2" bandwidth="128000"/>
    </AdaptationSet>
    <AdaptationSet contentType="text" mimeType="text/vtt" lang="fr">
      <Representation id="fr" bandwidth="1000"><BaseURL>subs/fr.vtt</BaseURL></Representation>
    </AdaptationSet>
  </Period>
</MPD>
"#;

fn dash_origin() -> RunningOrigin {
    let mut o = TestOrigin::new()
        .route("/dash/manifest.mpd", Reply::ok(MPD, DASH))
        // An HLS master beside the MPD (a dual-format package).
        .route(
            "/dash/master.m3u8",
            Reply::ok(
                "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=6000000,RESOLUTION=1920x1080\navc1080/p.m3u8\n",
                HLS,
            ),
        )
        .route("/dash/subs/fr.vtt", Reply::ok("WEBVTT\n", "text/vtt"));
    for id in ["avc360", "avc720", "avc1080", "aac"] {
        o = o
            .route(
                &format!("/dash/{id}/init.mp4"),
                Reply::ok(vec![1u8; 64], "video/mp4"),
            )
            .route(
                &format!("/dash/{id}/seg-1.m4s"),
                Reply::ok(vec![2u8; 128], "video/iso.segment"),
            );
    }
    for id in ["1", "2"] {
        o = o
            .route(
                &format!("/dash/init-stream{id}.m4s"),
                Reply::ok(vec![3u8; 64], "video/iso.segment"),
            )
            .route(
                &format!("/dash/chunk-stream{id}-00001.m4s"),
                Reply::ok(vec![4u8; 128], "video/iso.segment"),
            );
    }
    o.start()
}

/// The template attributes of the rewritten MPD, as the player reads them (XML-unescaped).
fn templates(mpd: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["media=\"", "initialization=\""] {
        for (i, _) in mpd.match_indices(attr) {
            let rest = &mpd[i + attr.len()..];
            out.push(rest[..rest.find('"').unwrap()].replace("&amp;", "&"));
        }
    }
    out
}

fn expand(template: &str, id: &str) -> String {
    template
        .replace("$RepresentationID$", id)
        .replace("$Number%05d$", "00001")
        .replace("$Number$", "1")
}

#[tokio::test]
async fn dash_restricted_filters_representations_and_opens_only_its_manifest_http1() {
    dash_restricted_filters_representations_and_opens_only_its_manifest_over(Proto::Http1).await;
}

#[tokio::test]
async fn dash_restricted_filters_representations_and_opens_only_its_manifest_http2() {
    dash_restricted_filters_representations_and_opens_only_its_manifest_over(Proto::Http2).await;
}

async fn dash_restricted_filters_representations_and_opens_only_its_manifest_over(proto: Proto) {
    let o = dash_origin();
    let s = Edge::start(&o, &[("dash", "manifest.mpd")], proto);
    let t = token(&s, "dash", "720p").await;
    let (st, mpd) = get(&s, &format!("/stream/dash/manifest.mpd?token={t}")).await;
    assert_eq!(st, 200, "{mpd}");
    assert!(!mpd.contains("avc1080") && !mpd.contains("3840"), "{mpd}");
    assert!(
        mpd.contains("avc720") && mpd.contains("hvc1.1.6.L93.90"),
        "{mpd}"
    );
    let tpls = templates(&mpd);
    assert!(!tpls.is_empty());
    let mut queries = BTreeSet::new();
    for tpl in &tpls {
        assert!(tpl.contains("pc="), "{tpl}");
        queries.insert(tpl.split_once('?').unwrap().1.to_string());
    }
    // Every allowed Representation plays: AdaptationSet-level and ffmpeg templates.
    for (tpl_has, id) in [
        ("$RepresentationID$/seg", "avc360"),
        ("$RepresentationID$/seg", "avc720"),
        ("$RepresentationID$/init", "avc720"),
        ("$RepresentationID$/seg", "aac"),
        ("chunk-stream", "1"),
        ("init-stream", "1"),
    ] {
        for tpl in tpls.iter().filter(|t| t.contains(tpl_has)) {
            let p = resolve("/stream/dash/manifest.mpd", &expand(tpl, id));
            let (st, body) = get(&s, &p).await;
            assert_eq!(st, 200, "{p}: {body}");
        }
    }
    // The text track's BaseURL.
    let vtt = mpd
        .split("<BaseURL>")
        .nth(1)
        .unwrap()
        .split("</BaseURL>")
        .next()
        .unwrap();
    let (st, _) = get(
        &s,
        &resolve("/stream/dash/manifest.mpd", &vtt.replace("&amp;", "&")),
    )
    .await;
    assert_eq!(st, 200);
    // Excluded Representations, through every template and proof; the HLS master beside the
    // MPD (its own manifest never listed it).
    for q in &queries {
        for path in [
            "/stream/dash/avc1080/seg-1.m4s",
            "/stream/dash/avc1080/init.mp4",
            "/stream/dash/chunk-stream2-00001.m4s",
            "/stream/dash/init-stream2.m4s",
            "/stream/dash/master.m3u8",
        ] {
            let (st, body) = get(&s, &format!("{path}?{q}")).await;
            assert_eq!(st, 403, "{path}?{q}: {body}");
        }
        // A template proof for the pattern of one directory does not open a sibling file.
        let (st, _) = get(&s, &format!("/stream/dash/avc720/other.m4s?{q}")).await;
        assert_eq!(st, 403);
    }
    for p in [
        "/dash/avc1080/seg-1.m4s",
        "/dash/chunk-stream2-00001.m4s",
        "/dash/master.m3u8",
    ] {
        assert_eq!(o.hits(p), 0, "{p}");
    }
}

#[tokio::test]
async fn ffmpeg_dash_templates_keep_the_credential() {
    // Unrestricted: `$Number%05d$` once lost the credential (every segment 401).
    let o = dash_origin();
    let s = Edge::start(&o, &[("dash", "manifest.mpd")], Proto::Http1);
    let t = token(&s, "dash", "auto").await;
    let (st, mpd) = get(&s, &format!("/stream/dash/manifest.mpd?token={t}")).await;
    assert_eq!(st, 200, "{mpd}");
    let tpls = templates(&mpd);
    for tpl in tpls
        .iter()
        .filter(|t| t.contains("stream$RepresentationID$"))
    {
        assert!(tpl.contains("pc="), "{tpl}");
        for id in ["1", "2"] {
            let p = resolve("/stream/dash/manifest.mpd", &expand(tpl, id));
            let (st, body) = get(&s, &p).await;
            assert_eq!(st, 200, "{p}: {body}");
        }
    }
}

#[tokio::test]
async fn nothing_within_the_ceiling_is_a_403_and_gives_the_use_back() {
    let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=15000000,RESOLUTION=3840x2160\nuhd/p.m3u8\n";
    let o = TestOrigin::new()
        .route("/uhd/master.m3u8", Reply::ok(master, HLS))
        .start();
    let s = Edge::start(&o, &[("uhd", "master.m3u8")], Proto::Http1);
    // `verify` asked the moment the 403 is read finds the use unspent, every time (the
    // give-back once came after the answer, in the logging phase: a prompt `verify` under
    // load saw 4).
    for _ in 0..20 {
        let t = token(&s, "uhd", "480p").await;
        let (st, body) = get(&s, &format!("/stream/uhd/master.m3u8?token={t}")).await;
        assert_eq!(st, 403, "{body}");
        let (_, v) = get(&s, &format!("/api/v2/streaming/verify?token={t}")).await;
        let v: Value = serde_json::from_str(&v).unwrap();
        assert_eq!(v["remainingUses"], 5, "{v}");
    }
}

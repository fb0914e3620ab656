//! Throughput of the per-request playlist rewrite (`sluice::rewrite`), which runs in
//! `response_body_filter` on every playlist fetch, after the cache.
//!
//! Run: `cargo bench --bench rewrite -- --warm-up-time 1 --measurement-time 2`.
//!
//! Two groups over the same inputs: `rewrite` is the generic API with a `map` closure
//! (`proxy_url` per URI, after `Url::join`), which is what the edge ran before issue 7;
//! `rewrite_edge` is `rewrite_proxied`, what the edge runs now (a fast path for plain
//! relative URIs, byte-identical output). Their ratio is the before/after of that change.
//!
//! `rewrite_gated` is a token-gated `/stream` playlist: `unrestricted` puts the playback
//! credential on each URI, `720p` also restricts the playlist to the ceiling and mints a proof
//! per URI (HMAC-SHA256, truncated) or per DASH template (issue 20). Their ratio is what
//! per-object quality costs the rewrite.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;

use sluice::auth::playback::{PlaybackClaims, PlaybackKey};
use sluice::edge::playlist::{PlaybackMapping, UriMapping};
use sluice::rewrite::{proxy_url, rewrite, rewrite_proxied, PlaylistKind};
use url::Url;

fn live_playlist(segments: usize, ll_parts: usize) -> String {
    let mut s = String::from(
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:184000\n",
    );
    if ll_parts > 0 {
        s.push_str("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.0\n");
        s.push_str("#EXT-X-PART-INF:PART-TARGET=0.33334\n");
    }
    s.push_str("#EXT-X-MAP:URI=\"init.mp4\"\n");
    s.push_str("#EXT-X-KEY:METHOD=AES-128,URI=\"https://keys.example.com/k/42\",IV=0x0000000000000000000000000002CEC0\n");
    for i in 0..segments {
        let n = 184_000 + i;
        s.push_str("#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.000Z\n");
        if ll_parts > 0 && i + 2 >= segments {
            for p in 0..ll_parts {
                s.push_str(&format!(
                    "#EXT-X-PART:DURATION=0.33334,URI=\"part{n}.{p}.mp4\"{}\n",
                    if p == 0 { ",INDEPENDENT=YES" } else { "" }
                ));
            }
        }
        s.push_str(&format!("#EXTINF:6.006,\nsegment_{n}.m4s\n"));
    }
    if ll_parts > 0 {
        s.push_str("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_next.mp4\"\n");
        s.push_str(
            "#EXT-X-RENDITION-REPORT:URI=\"../1M/index.m3u8\",LAST-MSN=184100,LAST-PART=3\n",
        );
    }
    s
}

fn vod_playlist(segments: usize) -> String {
    let mut s = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-PLAYLIST-TYPE:VOD\n",
    );
    for i in 0..segments {
        s.push_str(&format!("#EXTINF:10.000,\nmovie_1080p_{i:05}.ts\n"));
    }
    s.push_str("#EXT-X-ENDLIST\n");
    s
}

fn dash_manifest(periods: usize) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"dynamic\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" minimumUpdatePeriod=\"PT2S\">\n  <BaseURL>https://cdn.example.com/dash/</BaseURL>\n  <Location>manifest.mpd</Location>\n",
    );
    for p in 0..periods {
        s.push_str(&format!(
            "  <Period id=\"p{p}\" start=\"PT{}S\">\n    <BaseURL>period{p}/</BaseURL>\n",
            p * 60
        ));
        s.push_str("    <AdaptationSet mimeType=\"video/mp4\" segmentAlignment=\"true\">\n      <SegmentTemplate timescale=\"90000\" media=\"$RepresentationID$/seg-$Number%05d$.m4s\" initialization=\"$RepresentationID$/init.mp4\">\n        <SegmentTimeline><S t=\"0\" d=\"180000\" r=\"29\"/></SegmentTimeline>\n      </SegmentTemplate>\n");
        for (id, bw) in [("v1080", 6_000_000), ("v720", 3_000_000), ("v360", 800_000)] {
            s.push_str(&format!(
                "      <Representation id=\"{id}\" bandwidth=\"{bw}\" codecs=\"avc1.64001f\"/>\n"
            ));
        }
        s.push_str("    </AdaptationSet>\n    <AdaptationSet mimeType=\"audio/mp4\" lang=\"en\">\n      <Representation id=\"a1\" bandwidth=\"128000\">\n        <BaseURL>audio/en/</BaseURL>\n        <SegmentList timescale=\"1000\" duration=\"2000\">\n          <Initialization sourceURL=\"init.mp4\"/>\n");
        for i in 0..30 {
            s.push_str(&format!("          <SegmentURL media=\"s{i}.m4s\"/>\n"));
        }
        s.push_str(
            "        </SegmentList>\n      </Representation>\n    </AdaptationSet>\n  </Period>\n",
        );
    }
    s.push_str("</MPD>\n");
    s
}

/// A master with 60 audio and 60 subtitle renditions and a 5-rung ladder.
fn big_master() -> String {
    let mut m = String::from("#EXTM3U\n#EXT-X-VERSION:7\n");
    for i in 0..60 {
        m.push_str(&format!("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"a{i}\",LANGUAGE=\"l{i}\",URI=\"audio/{i}/index.m3u8\"\n"));
        m.push_str(&format!("#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"s\",NAME=\"s{i}\",LANGUAGE=\"l{i}\",URI=\"subs/{i}/index.m3u8\"\n"));
    }
    for (w, h, bw) in [
        (640, 360, 800_000),
        (854, 480, 1_400_000),
        (1280, 720, 2_800_000),
        (1920, 1080, 5_000_000),
        (3840, 2160, 14_000_000),
    ] {
        m.push_str(&format!("#EXT-X-STREAM-INF:BANDWIDTH={bw},RESOLUTION={w}x{h},CODECS=\"avc1.640028,mp4a.40.2\",AUDIO=\"a\",SUBTITLES=\"s\"\nv{h}/index.m3u8\n"));
        m.push_str(&format!(
            "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={},RESOLUTION={w}x{h},URI=\"v{h}/iframes.m3u8\"\n",
            bw / 10
        ));
    }
    m
}

fn gated(quality: Option<&str>) -> UriMapping {
    UriMapping::Playback(Box::new(PlaybackMapping {
        key: Arc::new(PlaybackKey::derive(b"bench-stream-secret-0123456789")),
        claims: PlaybackClaims {
            version: 2,
            playback_id: "Jm6b7OQ0hG8ncWpPZ0qY3w".into(),
            jti: "5f0c7a52-8d7e-4c1f-9a51-3b0e2a1d9c77".into(),
            dir: "movie".into(),
            ip: "203.0.113.7".into(),
            device: String::new(),
            start: 1_767_225_600,
            exp: 1_767_247_200,
            quality: quality.map(str::to_string),
        },
        hash: "movie".into(),
        extensions: Arc::new(
            ["m3u8", "m4s", "mp4", "ts", "mpd", "vtt", "aac"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
    }))
}

fn bench(c: &mut Criterion) {
    let hls_base = Url::parse("https://cdn.example.com/live/channel1/720p/index.m3u8").unwrap();
    let dash_base = Url::parse("https://origin.example.com/live/channel1/manifest.mpd").unwrap();
    let cases = [
        (
            "hls_live_6_segments",
            PlaylistKind::Hls,
            live_playlist(6, 0),
            &hls_base,
        ),
        (
            "hls_vod_1000_segments",
            PlaylistKind::Hls,
            vod_playlist(1000),
            &hls_base,
        ),
        (
            "hls_ll_parts",
            PlaylistKind::Hls,
            live_playlist(12, 4),
            &hls_base,
        ),
        (
            "dash_3_periods",
            PlaylistKind::Dash,
            dash_manifest(3),
            &dash_base,
        ),
    ];
    let mut group = c.benchmark_group("rewrite");
    for (name, kind, input, base) in &cases {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| {
                let mut map = |u: &Url| Ok(proxy_url(u, "ctx-0123456789abcdef"));
                rewrite(*kind, black_box(input.as_bytes()), base, &mut map).unwrap()
            })
        });
    }
    group.finish();
    let mut group = c.benchmark_group("rewrite_edge");
    for (name, kind, input, base) in &cases {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| {
                rewrite_proxied(
                    *kind,
                    black_box(input.as_bytes()),
                    base,
                    "ctx-0123456789abcdef",
                    base,
                )
                .unwrap()
            })
        });
    }
    group.finish();
    let local = |p: &str| Url::parse(&format!("http://sluice.local/stream/movie/{p}")).unwrap();
    let gated_cases = [
        (
            "hls_master_120_renditions",
            PlaylistKind::Hls,
            big_master(),
            local("master.m3u8"),
        ),
        (
            "hls_vod_1000_segments",
            PlaylistKind::Hls,
            vod_playlist(1000),
            local("v720/index.m3u8"),
        ),
        (
            "dash_3_periods",
            PlaylistKind::Dash,
            dash_manifest(3).replace("https://cdn.example.com/dash/", "/stream/movie/dash/"),
            local("manifest.mpd"),
        ),
    ];
    let mut group = c.benchmark_group("rewrite_gated");
    for (name, kind, input, base) in &gated_cases {
        group.throughput(Throughput::Bytes(input.len() as u64));
        for (label, quality) in [("unrestricted", None), ("720p", Some("720p"))] {
            let mapping = gated(quality);
            group.bench_function(format!("{name}/{label}"), |b| {
                b.iter(|| {
                    mapping
                        .rewrite(*kind, black_box(input.as_bytes()), base)
                        .unwrap()
                })
            });
        }
    }
    group.finish();
    // The floor: quick-xml reading the same MPD and doing nothing with it.
    let mpd = dash_manifest(3);
    let mut group = c.benchmark_group("xml_floor");
    group.throughput(Throughput::Bytes(mpd.len() as u64));
    group.bench_function("dash_3_periods_read_only", |b| {
        b.iter(|| sluice::rewrite::dash::has_alternative_base_urls(black_box(&mpd)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Throughput of the per-request playlist rewrite (`sluice::rewrite`), which runs in
//! `response_body_filter` on every playlist fetch, after the cache.
//!
//! Run: `cargo bench --bench rewrite -- --warm-up-time 1 --measurement-time 2`.
//!
//! Two groups over the same inputs: `rewrite` is the generic API with a `map` closure
//! (`proxy_url` per URI, after `Url::join`), which is what the edge ran before issue 7;
//! `rewrite_edge` is `rewrite_proxied`, what the edge runs now (a fast path for plain
//! relative URIs, byte-identical output). Their ratio is the before/after of that change.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
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
                )
                .unwrap()
            })
        });
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

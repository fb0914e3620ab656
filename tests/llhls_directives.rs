//! LL-HLS delivery directives are honoured only where a playlist advertises them (issue 22,
//! "Freshness"): `_HLS_msn`, `_HLS_part` and `_HLS_skip` go to the origin and into the cache
//! key only for a live playlist whose `EXT-X-SERVER-CONTROL`, as last seen, offers them
//! (`CAN-BLOCK-RELOAD=YES`, `CAN-SKIP-UNTIL`), and only when valid (RFC 8216bis §6.2.5);
//! malformed ones there are a `400`. Anywhere else they are dropped: a VOD playlist asked
//! with 1,000 `_HLS_msn` values was 1,000 origin fetches and 1,000 stored copies. Over
//! `/stream` and `/api/proxy`.

mod common;

use common::{client, Reply, RunningOrigin, Sluice, TestOrigin};
use futures::StreamExt;

const SECRET: &str = "provider-jwt-secret-0123456789";
const HLS: &str = "application/vnd.apple.mpegurl";

const VOD: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:2,\nseg_1.ts\n#EXTINF:2,\nseg_2.ts\n#EXT-X-ENDLIST\n";
/// Live, but advertising nothing.
const LIVE_PLAIN: &str =
    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:4\n#EXTINF:2,\nseg_4.ts\n#EXTINF:2,\nseg_5.ts\n";
/// Live LL-HLS: blocking reload and delta updates (not of date ranges).
const LIVE_LL: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:12\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12,PART-HOLD-BACK=1.5\n#EXT-X-PART-INF:PART-TARGET=0.5\n#EXT-X-MEDIA-SEQUENCE:4\n#EXTINF:2,\nseg_4.m4s\n#EXT-X-PART:DURATION=0.5,URI=\"part_5.0.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_5.1.m4s\"\n";
/// What the LL origin answers a blocking reload for part 5.1.
const LIVE_LL_NEXT: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:12\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12,PART-HOLD-BACK=1.5\n#EXT-X-PART-INF:PART-TARGET=0.5\n#EXT-X-MEDIA-SEQUENCE:4\n#EXTINF:2,\nseg_4.m4s\n#EXT-X-PART:DURATION=0.5,URI=\"part_5.0.m4s\"\n#EXT-X-PART:DURATION=0.5,URI=\"part_5.1.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_5.2.m4s\"\n";

fn origin() -> RunningOrigin {
    TestOrigin::new()
        .route("/v/vod.m3u8", Reply::ok(VOD, HLS))
        .route("/v/plain.m3u8", Reply::ok(LIVE_PLAIN, HLS))
        .route("/v/ll.m3u8", Reply::ok(LIVE_LL, HLS))
        .route(
            "/v/ll.m3u8?_HLS_msn=5&_HLS_part=1",
            Reply::ok(LIVE_LL_NEXT, HLS),
        )
        .route("/v/ll.m3u8?_HLS_skip=YES", Reply::ok(LIVE_LL_NEXT, HLS))
        .start()
}

/// `/stream` from `bucket` (no prefetch: only playlist fetches reach the origins) and a
/// provider `p1` on `cdn` for `/api/proxy`.
fn start(bucket: &RunningOrigin, cdn: &RunningOrigin) -> Sluice {
    Sluice::start(&format!(
        "origins:\n  bucket: {}\nstream:\n  prefetch: 0\nprovider_auth:\n  jwt_secret: {SECRET}\nproviders:\n  p1:\n    allow_private: true\n    channels:\n      v: {{url: \"http://{}/v/vod.m3u8\", type: hls}}\n",
        bucket.url(),
        cdn.addr
    ))
}

/// A ctx of `p1` (via the Stream Info endpoint).
async fn ctx(s: &Sluice) -> String {
    common::stream_info_ctx(s, "p1", "v", &common::provider_jwt(SECRET, "viewer")).await
}

/// For each route, the origin it asks and the URL of `path` with `query` appended as a
/// player appends it (to `/api/proxy?url=…&ctx=…` for the proxy).
struct Routes {
    stream: String,
    proxy: String,
}

impl Routes {
    fn new(s: &Sluice, cdn: &RunningOrigin, ctx: &str, path: &str) -> Routes {
        let u = format!("http://{}{path}", cdn.addr);
        Routes {
            stream: s.edge_url(&format!("/stream{path}")),
            proxy: s.edge_url(&format!(
                "/api/proxy?url={}&ctx={ctx}",
                url::form_urlencoded::byte_serialize(u.as_bytes()).collect::<String>()
            )),
        }
    }

    fn both(&self, query: &str) -> [(&'static str, String); 2] {
        let with = |base: &str, sep: char| {
            if query.is_empty() {
                base.to_string()
            } else {
                format!("{base}{sep}{query}")
            }
        };
        [
            ("stream", with(&self.stream, '?')),
            ("proxy", with(&self.proxy, '&')),
        ]
    }
}

async fn get(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn fetches(o: &RunningOrigin, f: impl Fn(&str) -> bool) -> Vec<String> {
    o.requests()
        .into_iter()
        .map(|r| r.path_and_query)
        .filter(|p| f(p))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vod_playlist_asked_with_a_thousand_msn_values_is_one_origin_fetch() {
    let (bucket, cdn) = (origin(), origin());
    let s = start(&bucket, &cdn);
    let ctx = ctx(&s).await;
    let routes = Routes::new(&s, &cdn, &ctx, "/v/vod.m3u8");
    for (i, (route, base)) in routes.both("").into_iter().enumerate() {
        let o = [&bucket, &cdn][i];
        // Directives of every spelling — valid, malformed, unknown — and any other query.
        let urls: Vec<String> = (0..1000)
            .map(|n| match n % 4 {
                0 | 1 => format!("_HLS_msn={n}&_HLS_part={}", n % 7),
                2 => format!("_HLS_msn=-{n}&_HLS_skip=maybe&_HLS_x={n}"),
                _ => format!("_HLS_skip=YES&x={n}"),
            })
            .map(|q| {
                let sep = if route == "stream" { '?' } else { '&' };
                format!("{base}{sep}{q}")
            })
            .collect();
        let answers: Vec<(u16, String)> = futures::stream::iter(urls)
            .map(|u| async move { get(&u).await })
            .buffer_unordered(8)
            .collect()
            .await;
        for (status, body) in &answers {
            assert_eq!(*status, 200, "{route}: {body}");
            assert!(body.contains("#EXT-X-ENDLIST"), "{route}: {body}");
        }
        let seen = fetches(o, |p| p.starts_with("/v/vod.m3u8"));
        assert_eq!(seen.len(), 1, "{route}: 1,000 requests, origin fetches");
        assert_eq!(seen[0], "/v/vod.m3u8", "{route}");
    }
    // The path form, whose query is the upstream URL's own: its `_HLS_*` parameters are
    // judged the same way (the origin's own parameters stay in the URL and the key).
    let before = fetches(&cdn, |p| p.starts_with("/v/vod.m3u8")).len();
    for n in 0..50 {
        let url = s.edge_url(&format!(
            "/api/proxy/{ctx}/http/{}/v/vod.m3u8?_HLS_msn={n}&_HLS_part=0",
            cdn.addr
        ));
        let (status, body) = get(&url).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("#EXT-X-ENDLIST"), "{body}");
    }
    let seen = fetches(&cdn, |p| p.starts_with("/v/vod.m3u8"));
    assert_eq!(seen.len(), before, "path form: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn directives_a_live_playlist_does_not_advertise_never_reach_the_origin() {
    let (bucket, cdn) = (origin(), origin());
    let s = start(&bucket, &cdn);
    let ctx = ctx(&s).await;
    let routes = Routes::new(&s, &cdn, &ctx, "/v/plain.m3u8");
    for (i, (route, base)) in routes.both("").into_iter().enumerate() {
        let o = [&bucket, &cdn][i];
        // Loaded first, as a player does: sluice has seen it advertise nothing.
        assert_eq!(get(&base).await.0, 200);
        for q in [
            "_HLS_msn=5",
            "_HLS_msn=5&_HLS_part=0",
            "_HLS_skip=YES",
            "_HLS_part=x",
        ] {
            let sep = if route == "stream" { '?' } else { '&' };
            let (status, body) = get(&format!("{base}{sep}{q}")).await;
            assert_eq!(status, 200, "{route} {q}: {body}");
            assert!(body.contains("seg_5.ts"), "{route} {q}: {body}");
        }
        let seen = fetches(o, |p| p.contains("_HLS_"));
        assert!(seen.is_empty(), "{route}: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_ll_playlist_has_valid_directives_honoured_and_malformed_ones_refused() {
    let (bucket, cdn) = (origin(), origin());
    let s = start(&bucket, &cdn);
    let ctx = ctx(&s).await;
    let routes = Routes::new(&s, &cdn, &ctx, "/v/ll.m3u8");
    for (i, (route, base)) in routes.both("").into_iter().enumerate() {
        let o = [&bucket, &cdn][i];
        let sep = if route == "stream" { '?' } else { '&' };
        assert_eq!(get(&base).await.0, 200);
        // Honoured in their canonical form, whatever order the player wrote them in, and
        // another spelling of the same directives is the same cached answer.
        for q in ["_HLS_part=1&_HLS_msn=5", "_HLS_msn=05&_HLS_part=1&x=1"] {
            let (status, body) = get(&format!("{base}{sep}{q}")).await;
            assert_eq!(status, 200, "{route} {q}: {body}");
            assert!(body.contains("part_5.2.m4s"), "{route} {q}: {body}");
        }
        let (status, body) = get(&format!("{base}{sep}_HLS_skip=YES")).await;
        assert_eq!(status, 200, "{route}: {body}");
        assert!(body.contains("part_5.2.m4s"), "{route}: {body}");
        // Malformed: 400, and never asked of the origin.
        for q in [
            "_HLS_part=1",
            "_HLS_msn=abc",
            "_HLS_msn=-1",
            "_HLS_msn=5&_HLS_msn=6",
            "_HLS_msn=5&_HLS_part=1.5",
            "_HLS_skip=maybe",
            "_HLS_skip=v2",
        ] {
            let (status, body) = get(&format!("{base}{sep}{q}")).await;
            assert_eq!(status, 400, "{route} {q}: {body}");
        }
        let seen = fetches(o, |p| p.starts_with("/v/ll.m3u8"));
        assert_eq!(
            seen,
            vec![
                "/v/ll.m3u8".to_string(),
                "/v/ll.m3u8?_HLS_msn=5&_HLS_part=1".to_string(),
                "/v/ll.m3u8?_HLS_skip=YES".to_string(),
            ],
            "{route}"
        );
    }
}

//! What is cached for whom (issue 22): one stored copy answers every viewer of a key, so no
//! player header that could change the origin's answer reaches an origin (on every path
//! that asks one: `/stream`, `/api/proxy`, playlist fills, prefetches, the fleet's owner
//! fetch), and an answer whose `Vary` names anything but `Accept-Encoding` is not stored —
//! the next viewer gets its own fetch, never the first viewer's variant.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{
    client, free_port_on, random_bytes, wait_for, Reply, RunningOrigin, Sluice, TestOrigin,
};

const SECRET: &str = "provider-jwt-secret-0123456789";
const SEGMENT: &str = "video/mp2t";
const HLS: &str = "application/vnd.apple.mpegurl";
/// What players send that an origin could vary its answer on.
const PLAYER: [(&str, &str); 4] = [
    ("user-agent", "Mozilla/5.0 (SMART-TV; Tizen 6.0) viewer-one"),
    ("accept-language", "fr-CH, fr;q=0.9"),
    ("accept", "application/vnd.apple.mpegurl"),
    ("accept-encoding", "gzip, br"),
];

fn jwt(sub: &str) -> String {
    common::provider_jwt(SECRET, sub)
}

/// `bucket` for `/stream` and a provider `p1` on `cdn` (whose configured `User-Agent` is the
/// same for all its viewers) for `/api/proxy`.
fn start(bucket: &RunningOrigin, cdn: &RunningOrigin) -> Sluice {
    let a = cdn.addr;
    Sluice::start(&format!(
        r#"origins:
  bucket: {url}
provider_auth:
  jwt_secret: {SECRET}
providers:
  p1:
    allow_private: true
    prefetch: 2
    headers: {{User-Agent: "AcmePlayer/1.0", X-Provider: one}}
    channels:
      live: {{url: "http://{a}/live/index.m3u8", type: hls}}
"#,
        url = bucket.url()
    ))
}

/// A ctx of `p1` (via the Stream Info endpoint).
async fn ctx(s: &Sluice) -> String {
    common::stream_info_ctx(s, "p1", "live", &jwt("viewer")).await
}

fn proxied(o: &RunningOrigin, path: &str, ctx: &str) -> String {
    let u = format!("http://{}{path}", o.addr);
    format!(
        "/api/proxy?url={}&ctx={ctx}",
        url::form_urlencoded::byte_serialize(u.as_bytes()).collect::<String>()
    )
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut r = client().get(url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let st = resp.status().as_u16();
    let h = resp.headers().clone();
    (st, h, resp.bytes().await.unwrap().to_vec())
}

/// The same routes on two origins: the bucket for `/stream` and `p1`'s CDN for `/api/proxy`
/// (a provider must never reach the bucket).
fn twins(build: impl Fn() -> TestOrigin) -> (RunningOrigin, RunningOrigin) {
    (build().start(), build().start())
}

/// Each route, the origin it asks and the URL a player asks for `path`.
fn routes<'a>(
    s: &Sluice,
    bucket: &'a RunningOrigin,
    cdn: &'a RunningOrigin,
    ctx: &str,
    path: &str,
) -> [(&'static str, &'a RunningOrigin, String); 2] {
    [
        ("stream", bucket, s.edge_url(&format!("/stream{path}"))),
        ("proxy", cdn, s.edge_url(&proxied(cdn, path, ctx))),
    ]
}

fn fetches(o: &RunningOrigin, path: &str) -> usize {
    o.requests()
        .iter()
        .filter(|r| r.path_and_query == path)
        .count()
}

/// A live playlist whose segments sluice prefetches.
fn live_playlist() -> String {
    let mut p = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n");
    for i in 1..=3 {
        p.push_str(&format!("#EXTINF:2,\nseg_{i}.ts\n"));
    }
    p
}

/// No request the origin saw carried a header a player could vary it with (`provider`: the
/// provider's own `User-Agent` goes to this origin, checked by the caller).
fn assert_no_player_headers(o: &RunningOrigin, provider: bool) {
    for r in o.requests() {
        for (name, _) in PLAYER {
            if name == "user-agent" && provider {
                continue;
            }
            assert!(
                !r.headers.contains_key(name),
                "{name} reached the origin: {r:?}"
            );
        }
    }
}

#[tokio::test]
async fn player_headers_that_vary_answers_never_reach_the_origin() {
    let bucket = TestOrigin::new()
        .route("/movie/seg.ts", Reply::ok(random_bytes(5000, 1), SEGMENT))
        .route(
            "/movie/index.m3u8",
            Reply::ok(
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg.ts\n#EXT-X-ENDLIST\n",
                HLS,
            ),
        )
        .route("/tv/index.m3u8", Reply::ok(live_playlist(), HLS));
    let cdn = TestOrigin::new()
        .route("/live/index.m3u8", Reply::ok(live_playlist(), HLS))
        .route("/live/direct.ts", Reply::ok("d", SEGMENT));
    let (mut bucket, mut cdn) = (bucket, cdn);
    for i in 1..=3 {
        let seg = format!("seg_{i}.ts");
        bucket = bucket.route(
            &format!("/tv/{seg}"),
            Reply::ok(random_bytes(3000, i), SEGMENT),
        );
        cdn = cdn.route(
            &format!("/live/{seg}"),
            Reply::ok(random_bytes(3000, i), SEGMENT),
        );
    }
    let (bucket, cdn) = (bucket.start(), cdn.start());
    let s = start(&bucket, &cdn);
    let c = ctx(&s).await;
    // `/stream`: a segment, a VOD playlist (a fill), a live playlist (a fill and prefetches).
    for path in [
        "/stream/movie/seg.ts",
        "/stream/movie/index.m3u8",
        "/stream/tv/index.m3u8",
    ] {
        let (st, _, _) = get(&s.edge_url(path), &PLAYER).await;
        assert_eq!(st, 200, "{path}");
    }
    // `/api/proxy`: a segment and a live playlist (a fill and prefetches).
    for path in ["/live/direct.ts", "/live/index.m3u8"] {
        let (st, _, _) = get(&s.edge_url(&proxied(&cdn, path, &c)), &PLAYER).await;
        assert_eq!(st, 200, "{path}");
    }
    // The prefetches went too.
    wait_for("prefetches", Duration::from_secs(10), || {
        bucket.hits("/tv/seg_3.ts") >= 1 && cdn.hits("/live/seg_3.ts") >= 1
    });
    assert!(bucket.requests().len() >= 4, "{:?}", bucket.requests());
    assert!(cdn.requests().len() >= 3, "{:?}", cdn.requests());
    assert_no_player_headers(&bucket, false);
    assert_no_player_headers(&cdn, true);
    // The provider's configured headers are the same for all its viewers: they stay.
    for r in cdn.requests() {
        assert_eq!(
            r.headers.get("user-agent").map(String::as_str),
            Some("AcmePlayer/1.0"),
            "{r:?}"
        );
        assert_eq!(
            r.headers.get("x-provider").map(String::as_str),
            Some("one"),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn an_answer_that_varies_by_viewer_is_not_stored() {
    let paths = ["/v/ua.ts", "/v/star.ts", "/v/mixed.ts", "/v/list.m3u8"];
    let (bucket, cdn) = twins(|| {
        paths
            .iter()
            .fold(TestOrigin::new(), |o, p| o.route(p, variant(p, "nobody")))
    });
    let s = start(&bucket, &cdn);
    let c = ctx(&s).await;
    for path in paths {
        for (route, o, url) in routes(&s, &bucket, &cdn, &c, path) {
            let viewer_one = [("user-agent", "viewer-one"), ("accept-language", "en")];
            let viewer_two = [("user-agent", "viewer-two"), ("accept-language", "de")];
            let before = fetches(o, path);
            o.set_route(path, variant(path, "firstviewer"));
            let (st, _, body) = get(&url, &viewer_one).await;
            assert_eq!(st, 200, "{route} {path}");
            assert!(
                String::from_utf8_lossy(&body).contains("firstviewer"),
                "{route} {path}"
            );
            o.set_route(path, variant(path, "secondviewer"));
            let (st, h, body) = get(&url, &viewer_two).await;
            assert_eq!(st, 200, "{route} {path}");
            let body = String::from_utf8_lossy(&body).into_owned();
            assert!(
                body.contains("secondviewer") && !body.contains("firstviewer"),
                "{route} {path}: the first viewer's variant was served: {body}"
            );
            assert_ne!(
                h.get("x-cache-status").map(|v| v.to_str().unwrap()),
                Some("hit")
            );
            assert_eq!(
                fetches(o, path),
                before + 2,
                "{route} {path}: one origin fetch per viewer"
            );
        }
    }
}

/// The answers of [`an_answer_that_varies_by_viewer_is_not_stored`], for one viewer.
fn variant(path: &str, viewer: &str) -> Reply {
    let vary: &[&str] = match path {
        "/v/ua.ts" => &["User-Agent"],
        "/v/star.ts" => &["*"],
        "/v/mixed.ts" => &["accept-encoding", "Accept-Language"],
        _ => &["Accept-Encoding, User-Agent"],
    };
    let mut r = if path.ends_with(".m3u8") {
        Reply::ok(
            format!("#EXTM3U\n#EXTINF:2,\n{viewer}.ts\n#EXT-X-ENDLIST\n"),
            HLS,
        )
    } else {
        Reply::ok(format!("variant for viewer {viewer}"), SEGMENT)
    };
    for v in vary {
        r = r.header("vary", v);
    }
    r
}

#[tokio::test]
async fn an_encoding_vary_in_any_spelling_is_still_cached() {
    let spellings: [&[&str]; 5] = [
        &["Accept-Encoding"],
        &["accept-encoding"],
        &[" ACCEPT-ENCODING ,accept-Encoding"],
        &["Accept-Encoding", "accept-encoding"],
        &[", Accept-Encoding,"],
    ];
    let (bucket, cdn) = twins(|| {
        let mut origin = TestOrigin::new();
        for (i, vary) in spellings.iter().enumerate() {
            let mut r = Reply::ok(random_bytes(2000, i as u64), SEGMENT);
            for v in *vary {
                r = r.header("vary", v);
            }
            origin = origin.route(&format!("/e/seg_{i}.ts"), r);
        }
        origin
    });
    let s = start(&bucket, &cdn);
    let c = ctx(&s).await;
    for (i, vary) in spellings.iter().enumerate() {
        let path = format!("/e/seg_{i}.ts");
        for (route, o, url) in routes(&s, &bucket, &cdn, &c, &path) {
            let before = fetches(o, &path);
            for (n, ua) in ["viewer-one", "viewer-two", "viewer-three"]
                .iter()
                .enumerate()
            {
                let (st, h, body) =
                    get(&url, &[("user-agent", ua), ("accept-encoding", "gzip")]).await;
                assert_eq!(st, 200, "{route} {path}");
                assert_eq!(body, random_bytes(2000, i as u64).to_vec());
                if n > 0 {
                    assert_eq!(h["x-cache-status"], "hit", "{route} {vary:?}");
                }
            }
            assert_eq!(
                fetches(o, &path),
                before + 1,
                "{route} {vary:?}: one origin fetch"
            );
        }
    }
}

#[tokio::test]
async fn a_not_found_that_varies_is_not_served_to_other_viewers() {
    let (bucket, cdn) = twins(|| {
        TestOrigin::new()
            .route("/n/seg.ts", Reply::status(404).header("vary", "User-Agent"))
            .route("/n/plain.ts", Reply::status(404))
    });
    let s = start(&bucket, &cdn);
    let c = ctx(&s).await;
    for (route, o, url) in routes(&s, &bucket, &cdn, &c, "/n/seg.ts") {
        o.set_route("/n/seg.ts", Reply::status(404).header("vary", "User-Agent"));
        let (st, _, _) = get(&url, &[("user-agent", "old-tv/1.0")]).await;
        assert_eq!(st, 404, "{route}");
        o.set_route(
            "/n/seg.ts",
            Reply::ok("for everyone else", SEGMENT).header("vary", "User-Agent"),
        );
        let (st, _, body) = get(&url, &[("user-agent", "new-phone/2.0")]).await;
        assert_eq!(
            st, 200,
            "{route}: the first viewer's 404 was served to another"
        );
        assert_eq!(body, b"for everyone else");
        assert_eq!(fetches(o, "/n/seg.ts"), 2, "{route}");
    }
    // A 404 that does not vary is still kept for `cache.not_found_ttl`.
    for _ in 0..3 {
        assert_eq!(get(&s.edge_url("/stream/n/plain.ts"), &[]).await.0, 404);
    }
    assert_eq!(bucket.hits("/n/plain.ts"), 1);
}

#[tokio::test]
async fn the_fleet_owner_fetch_carries_no_player_headers_and_stores_no_variant() {
    let o = TestOrigin::new()
        .route("/f/plain.ts", Reply::ok(random_bytes(4000, 3), SEGMENT))
        .route(
            "/f/varies.ts",
            Reply::ok("variant", SEGMENT).header("vary", "User-Agent"),
        )
        .start();
    let ips = ["127.0.0.2", "127.0.0.3"];
    let addrs: Vec<SocketAddr> = ips
        .iter()
        .map(|ip| format!("{ip}:{}", free_port_on(ip)).parse().unwrap())
        .collect();
    let secret = format!("vary-fleet-secret-{}", std::process::id());
    let ring = sluice::fleet::ring::Ring::new(&addrs);
    let peers: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    let nodes: Vec<Sluice> = addrs
        .iter()
        .map(|&this| {
            let cfg = format!(
                "origins:\n  bucket: {}\nfleet:\n  peers: [{}]\n  self: \"{this}\"\n  secret_env: FLEET_SECRET\n",
                o.url(),
                peers.join(", ")
            );
            let secret = secret.clone();
            std::thread::spawn(move || {
                Sluice::start_at(this, &cfg, &[("FLEET_SECRET", secret.as_str())])
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    for path in ["f/plain.ts", "f/varies.ts"] {
        let owner = ring.owner(&format!("http://{}/{path}", o.addr)).unwrap();
        // Ask the node that does not own it: it asks the owner, which asks the origin.
        let asker = addrs.iter().position(|a| *a != owner).unwrap();
        for round in 0..2 {
            let (st, _, _) = get(&nodes[asker].edge_url(&format!("/stream/{path}")), &PLAYER).await;
            assert_eq!(st, 200, "{path} round {round}");
        }
    }
    assert_no_player_headers(&o, false);
    assert_eq!(
        o.hits("/f/plain.ts"),
        1,
        "stored (by the owner and the asker)"
    );
    assert_eq!(
        o.hits("/f/varies.ts"),
        2,
        "a variant stored by neither node"
    );
}

/// `GET path` on a new HTTP/2 connection with the player's headers: status and whole body.
async fn h2_get(
    p: &common::Pki,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<u8>) {
    let send = common::h2_connect(p, port).await;
    let mut send = send.ready().await.expect("stream slot");
    let mut req = http::Request::get(format!("https://localhost:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (resp, _) = send
        .send_request(req.body(()).expect("request"), true)
        .expect("send request");
    let resp = resp.await.expect("response header");
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body chunk");
        got.extend_from_slice(&chunk);
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    (status, got)
}

#[tokio::test]
async fn over_http2_too() {
    // An HTTP/2 viewer of a cold object never fetches it itself: a background fill does
    // (`caching::fill_apart`), and a playlist is a fill subrequest; both are origin requests.
    let o = TestOrigin::new()
        .route("/movie/seg.ts", Reply::ok(random_bytes(5000, 1), SEGMENT))
        .route(
            "/movie/index.m3u8",
            Reply::ok(
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg.ts\n#EXT-X-ENDLIST\n",
                HLS,
            ),
        )
        .route("/movie/ua.ts", variant("/v/ua.ts", "nobody"))
        .start();
    let p = common::pki();
    let port = common::free_port();
    let _s = Sluice::start_with_listen(
        &p.edge_tls(port),
        &format!("origins:\n  bucket: {}\n", o.url()),
    );
    for path in ["/stream/movie/seg.ts", "/stream/movie/index.m3u8"] {
        let (st, _) = h2_get(&p, port, path, &PLAYER).await;
        assert_eq!(st, 200, "{path}");
    }
    assert_eq!(o.total_hits(), 2, "{:?}", o.requests());
    // Not stored: each viewer's own fetch (on HTTP/2 the background fill stops at the
    // header it may not store and the viewer fetches for itself: two requests, one body).
    let mut seen = 0;
    for viewer in ["firstviewer", "secondviewer"] {
        o.set_route("/movie/ua.ts", variant("/v/ua.ts", viewer));
        let (st, body) = h2_get(&p, port, "/stream/movie/ua.ts", &[("user-agent", viewer)]).await;
        assert_eq!(st, 200);
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("variant for viewer {viewer}")
        );
        assert!(o.hits("/movie/ua.ts") > seen, "{viewer}: no origin fetch");
        seen = o.hits("/movie/ua.ts");
    }
    assert_no_player_headers(&o, false);
}

//! What players are told (issue 22, "one writer for what players are told"): the table of
//! `src/edge/headers.rs` driven through the real binary over real HTTP — `/stream` segments
//! with each origin `Cache-Control`, live and VOD playlists, `/api/proxy` segments and
//! playlists, a `404`, the gate's `403`, a `206`, a `304`, an origin's `403`, key delivery and
//! a preflight — with the same `Cache-Control`, CORS set and type over HTTP/1.1 and HTTP/2.

mod common;

use common::{admin_key, client, random_bytes, Reply, RunningOrigin, Sluice, TestOrigin};

const PROVIDER_SECRET: &str = "provider-jwt-secret-0123456789";
const STREAM_SECRET: &str = "player-headers-stream-secret-0123";
const TS: &str = "video/mp2t";
const HLS: &str = "application/vnd.apple.mpegurl";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The one CORS expose list every player answer carries.
const EXPOSE: &str = "Content-Length, Content-Range, Accept-Ranges, x-cache-status";

/// The headers the table decides, in this order.
const DECIDED: [&str; 6] = [
    "cache-control",
    "access-control-allow-origin",
    "timing-allow-origin",
    "access-control-expose-headers",
    "x-content-type-options",
    "content-type",
];

const LIVE: &str =
    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2,\nseg.ts\n";
/// Held for 5 s (half its target duration, `cache.live_playlist_ttl_max`): a hit during the
/// test still has more than `stream.playlist_max_age` (2 s) left, so a miss and a hit say the
/// same (`cache_freshness` covers a hit with less left than that).
const LIVE_LONG: &str =
    "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:10,\nseg.ts\n";
const VOD: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg.ts\n#EXT-X-ENDLIST\n";

fn bucket() -> RunningOrigin {
    let seg = |seed| Reply::ok(random_bytes(4096, seed), TS);
    TestOrigin::new()
        .route("/m/seg.ts", seg(1))
        .route("/m/maxage0.ts", seg(2).header("cache-control", "max-age=0"))
        .route("/m/nocache.ts", seg(3).header("cache-control", "no-cache"))
        .route(
            "/m/smaxage.ts",
            seg(4).header("cache-control", "s-maxage=30"),
        )
        .route(
            "/m/etag.ts",
            seg(5)
                .header("cache-control", "max-age=60")
                .header("etag", "\"v1\""),
        )
        .route(
            "/m/forbidden.ts",
            Reply::status(403).header("cache-control", "public, max-age=600"),
        )
        .route("/m/live.m3u8", Reply::ok(LIVE_LONG, HLS))
        .route("/m/vod.m3u8", Reply::ok(VOD, HLS))
        .route("/gated/master.m3u8", Reply::ok(VOD, HLS))
        .route("/gated/seg.ts", seg(6))
        .start()
}

fn cdn() -> RunningOrigin {
    TestOrigin::new()
        .route("/live/index.m3u8", Reply::ok(LIVE, HLS))
        .route("/live/seg.ts", Reply::ok(random_bytes(4096, 7), TS))
        .route("/live/seg", Reply::ok(random_bytes(4096, 8), TS))
        .start()
}

fn config(bucket: &RunningOrigin, cdn: &RunningOrigin) -> String {
    format!(
        r#"origins:
  bucket: {bucket}
provider_auth:
  jwt_secret: {PROVIDER_SECRET}
providers:
  p1:
    allow_private: true
    channels:
      live: {{url: "http://{cdn}/live/index.m3u8", type: hls}}
streaming:
  secret: {STREAM_SECRET}
  contents:
    - id: gated
      hash: gated
      token_required: true
      max_uses: 10
"#,
        bucket = bucket.url(),
        cdn = cdn.addr,
    )
}

/// One row: a request and what players must be told.
struct Row {
    what: &'static str,
    method: http::Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    status: u16,
    cache_control: Option<&'static str>,
    /// `None`: not decided by sluice for this row (a preflight's).
    content_type: Option<&'static str>,
    /// The CORS set of every answer (a preflight has its own).
    cors: bool,
}

fn get(what: &'static str, path: String, status: u16, cc: &'static str, ct: &'static str) -> Row {
    Row {
        what,
        method: http::Method::GET,
        path,
        headers: Vec::new(),
        status,
        cache_control: Some(cc),
        content_type: Some(ct),
        cors: true,
    }
}

/// The decided headers of one answer (absent ones as `None`).
type Seen = Vec<(&'static str, Option<String>)>;

fn decided(h: &http::HeaderMap) -> Seen {
    DECIDED
        .iter()
        .map(|n| {
            (
                *n,
                h.get(*n).and_then(|v| v.to_str().ok()).map(str::to_string),
            )
        })
        .collect()
}

async fn over_http1(s: &Sluice, row: &Row) -> (u16, Seen, http::HeaderMap) {
    let mut r = client().request(row.method.clone(), s.edge_url(&row.path));
    for (k, v) in &row.headers {
        r = r.header(*k, v);
    }
    let resp = r.send().await.expect("HTTP/1.1 answer");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    resp.bytes().await.expect("HTTP/1.1 body");
    (status, decided(&headers), headers)
}

async fn over_http2(p: &common::Pki, port: u16, row: &Row) -> (u16, Seen) {
    let send = common::h2_connect(p, port).await;
    let mut send = send.ready().await.expect("stream slot");
    let mut req = http::Request::builder()
        .method(row.method.clone())
        .uri(format!("https://localhost:{port}{}", row.path));
    for (k, v) in &row.headers {
        req = req.header(*k, v.as_str());
    }
    let (resp, _) = send
        .send_request(req.body(()).expect("request"), true)
        .expect("send request");
    let resp = resp.await.expect("HTTP/2 answer");
    let status = resp.status().as_u16();
    let seen = decided(resp.headers());
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("HTTP/2 body");
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    (status, seen)
}

/// A stream token for the gated content, from the streaming API.
async fn stream_token(s: &Sluice) -> String {
    let v: serde_json::Value = client()
        .post(s.edge_url("/api/v2/streaming/token"))
        .bearer_auth(admin_key(s))
        .json(&serde_json::json!({"contentId": "gated"}))
        .send()
        .await
        .expect("token answer")
        .json()
        .await
        .expect("token JSON");
    v["streamToken"]
        .as_str()
        .unwrap_or_else(|| panic!("no streamToken: {v}"))
        .to_string()
}

fn proxied(cdn: &RunningOrigin, path: &str, ctx: &str) -> String {
    let u = format!("http://{}{path}", cdn.addr);
    format!(
        "/api/proxy?url={}&ctx={ctx}",
        url::form_urlencoded::byte_serialize(u.as_bytes()).collect::<String>()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_are_told_what_the_table_says_over_http1_and_http2() {
    let b = bucket();
    let c = cdn();
    let p = common::pki();
    let port = common::free_port();
    let s = Sluice::start_with_listen(&p.edge_tls(port), &config(&b, &c));
    let jwt = common::provider_jwt(PROVIDER_SECRET, "viewer");
    let ctx = common::stream_info_ctx(&s, "p1", "live", &jwt).await;
    let token = stream_token(&s).await;
    // Stored first, so the range and the revalidation below are answered from the cache.
    for path in ["/stream/m/seg.ts", "/stream/m/etag.ts"] {
        let r = client().get(s.edge_url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.bytes().await.unwrap();
    }

    let mut rows = vec![
        get(
            "segment, origin silent",
            "/stream/m/seg.ts".into(),
            200,
            IMMUTABLE,
            TS,
        ),
        get(
            "segment, origin max-age=0",
            "/stream/m/maxage0.ts".into(),
            200,
            "public, max-age=0",
            TS,
        ),
        get(
            "segment, origin no-cache",
            "/stream/m/nocache.ts".into(),
            200,
            "public, no-cache",
            TS,
        ),
        get(
            "segment, origin s-maxage=30",
            "/stream/m/smaxage.ts".into(),
            200,
            "public, max-age=30, s-maxage=30",
            TS,
        ),
        get(
            "live playlist",
            "/stream/m/live.m3u8".into(),
            200,
            "public, max-age=2",
            HLS,
        ),
        get(
            "VOD playlist",
            "/stream/m/vod.m3u8".into(),
            200,
            "public, max-age=2",
            HLS,
        ),
        get(
            "/api/proxy segment",
            proxied(&c, "/live/seg.ts", &ctx),
            200,
            IMMUTABLE,
            TS,
        ),
        get(
            "/api/proxy playlist (rewritten)",
            proxied(&c, "/live/index.m3u8", &ctx),
            200,
            "private, no-store",
            HLS,
        ),
        get(
            "gated playlist (rewritten)",
            format!("/stream/gated/master.m3u8?token={token}"),
            200,
            "private, no-store",
            HLS,
        ),
        get(
            "/api/proxy segment without an extension (through a playlist fill)",
            proxied(&c, "/live/seg", &ctx),
            200,
            IMMUTABLE,
            TS,
        ),
        get(
            "/api/proxy 404",
            proxied(&c, "/live/missing.ts", &ctx),
            404,
            "no-store",
            "application/json",
        ),
        // No extension: it may be a playlist, so it is fetched by a fill and relayed.
        get(
            "/api/proxy 404 through a playlist fill",
            proxied(&c, "/live/missing", &ctx),
            404,
            "no-store",
            "application/json",
        ),
        get(
            "origin 404",
            "/stream/m/nothing.ts".into(),
            404,
            "no-store",
            "application/json",
        ),
        // The origin said its 403 may be kept ten minutes: players are not told so.
        get(
            "origin 403",
            "/stream/m/forbidden.ts".into(),
            403,
            "no-store",
            "application/octet-stream",
        ),
        // A stream token opens the entry playlist only: the gate's own 403.
        get(
            "gate 403",
            format!("/stream/gated/seg.ts?token={token}"),
            403,
            "no-store",
            "application/json",
        ),
        get(
            "key delivery without a token",
            "/api/key/m".into(),
            401,
            "no-store",
            "application/json",
        ),
    ];
    let mut range = get("206 range", "/stream/m/seg.ts".into(), 206, IMMUTABLE, TS);
    range.headers.push(("range", "bytes=0-99".into()));
    rows.push(range);
    let mut revalidated = get(
        "304",
        "/stream/m/etag.ts".into(),
        304,
        "public, max-age=60",
        TS,
    );
    revalidated.headers.push(("if-none-match", "\"v1\"".into()));
    rows.push(revalidated);
    // A range past the end of a stored object whose origin said max-age=60: an error, not
    // something to keep (the origin's Cache-Control went out with it).
    let mut unsatisfiable = get("416 range", "/stream/m/etag.ts".into(), 416, "no-store", TS);
    unsatisfiable.content_type = None;
    unsatisfiable.headers.push(("range", "bytes=99999-".into()));
    rows.push(unsatisfiable);
    rows.push(Row {
        what: "preflight",
        method: http::Method::OPTIONS,
        path: "/stream/m/seg.ts".into(),
        headers: vec![
            ("origin", "https://player.example".into()),
            ("access-control-request-method", "GET".into()),
        ],
        status: 204,
        cache_control: None,
        content_type: None,
        cors: false,
    });

    // Every row is checked before failing, so a failure names every row that differs.
    let mut wrong = Vec::new();
    for row in &rows {
        let (st1, h1, raw) = over_http1(&s, row).await;
        let (st2, h2) = over_http2(&p, port, row).await;
        let what = row.what;
        let mut check = |ok: bool, msg: String| {
            if !ok {
                wrong.push(format!("{what}: {msg}"));
            }
        };
        check(st1 == row.status, format!("HTTP/1.1 status {st1}"));
        check(st2 == row.status, format!("HTTP/2 status {st2}"));
        check(h1 == h2, format!("HTTP/1.1 {h1:?} != HTTP/2 {h2:?}"));
        let value = |name: &str| {
            h1.iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.as_deref())
        };
        let cc = value("cache-control");
        check(cc == row.cache_control, format!("Cache-Control {cc:?}"));
        if let Some(want) = row.content_type {
            let ct = value("content-type");
            check(ct == Some(want), format!("Content-Type {ct:?}"));
        }
        let origin = value("access-control-allow-origin");
        check(origin == Some("*"), format!("Allow-Origin {origin:?}"));
        if row.cors {
            let timing = value("timing-allow-origin");
            check(
                timing == Some("*"),
                format!("Timing-Allow-Origin {timing:?}"),
            );
            let expose = value("access-control-expose-headers");
            check(expose == Some(EXPOSE), format!("Expose-Headers {expose:?}"));
            let sniff = value("x-content-type-options");
            check(
                sniff == Some("nosniff"),
                format!("X-Content-Type-Options {sniff:?}"),
            );
        } else {
            let methods = raw
                .get("access-control-allow-methods")
                .and_then(|v| v.to_str().ok());
            check(
                methods == Some("GET, HEAD, OPTIONS"),
                format!("Allow-Methods {methods:?}"),
            );
        }
    }
    assert!(
        wrong.is_empty(),
        "players were told otherwise:\n{}",
        wrong.join("\n")
    );
}

/// The request rows of README's directive table, and the response directives sluice does not
/// pass on: a player's `Cache-Control: no-cache`, `max-age=0` or `Pragma` is answered from the
/// cache without asking the origin; validators give `304` on a stored object (`If-None-Match`
/// first); the origin's `immutable`, `stale-while-revalidate` and `stale-if-error` are not
/// repeated to players, its `Vary`, `ETag`, `Last-Modified` and `Expires` are, its
/// `Set-Cookie` is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_directives_are_what_the_readme_says() {
    let modified = "Mon, 07 Dec 2026 10:00:00 GMT";
    let expires = httpdate::fmt_http_date(
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    );
    let o = TestOrigin::new()
        .route(
            "/m/seg.ts",
            Reply::ok(random_bytes(4096, 11), TS)
                .header(
                    "cache-control",
                    "max-age=600, immutable, stale-while-revalidate=30, stale-if-error=30",
                )
                .header("etag", "\"e1\"")
                .header("last-modified", modified)
                .header("expires", &expires)
                .header("vary", "Accept-Encoding")
                .header("set-cookie", "cdn=1; Path=/"),
        )
        .start();
    let s = Sluice::start(&format!("origins:\n  bucket: {}\n", o.url()));
    let ask = |headers: Vec<(&'static str, &'static str)>| {
        let url = s.edge_url("/stream/m/seg.ts");
        async move {
            let mut r = client().get(url);
            for (k, v) in headers {
                r = r.header(k, v);
            }
            let resp = r.send().await.expect("answer");
            let status = resp.status().as_u16();
            let h = resp.headers().clone();
            resp.bytes().await.expect("body");
            (status, h)
        }
    };
    let text =
        |h: &http::HeaderMap, n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (st, h) = ask(vec![]).await;
    assert_eq!(st, 200);
    assert_eq!(
        text(&h, "cache-control").as_deref(),
        Some("public, max-age=600")
    );
    assert_eq!(text(&h, "vary").as_deref(), Some("Accept-Encoding"));
    assert_eq!(text(&h, "etag").as_deref(), Some("\"e1\""));
    assert_eq!(text(&h, "last-modified").as_deref(), Some(modified));
    assert_eq!(text(&h, "expires"), Some(expires.clone()));
    assert!(h.get("set-cookie").is_none(), "{h:?}");
    // A player cannot make the origin send the object again.
    for asked in [
        ("cache-control", "no-cache"),
        ("cache-control", "max-age=0"),
        ("pragma", "no-cache"),
    ] {
        let (st, h) = ask(vec![asked]).await;
        assert_eq!(st, 200, "{asked:?}");
        assert_eq!(
            text(&h, "x-cache-status").as_deref(),
            Some("hit"),
            "{asked:?}"
        );
    }
    assert_eq!(o.hits("/m/seg.ts"), 1, "{:?}", o.requests());
    // Validators on the stored object.
    let (st, h) = ask(vec![("if-none-match", "\"e1\"")]).await;
    assert_eq!(st, 304);
    assert_eq!(
        text(&h, "cache-control").as_deref(),
        Some("public, max-age=600")
    );
    let (st, _) = ask(vec![("if-none-match", "W/\"e1\"")]).await;
    assert_eq!(st, 304, "weak comparison");
    let (st, _) = ask(vec![("if-modified-since", modified)]).await;
    assert_eq!(st, 304);
    // If-None-Match first: a different tag is a 200 whatever If-Modified-Since says.
    let (st, _) = ask(vec![
        ("if-none-match", "\"other\""),
        ("if-modified-since", modified),
    ])
    .await;
    assert_eq!(st, 200);
    assert_eq!(o.hits("/m/seg.ts"), 1, "{:?}", o.requests());
}

//! `/api/proxy` and the cache under what a CDN sees (issue 11): playlists always rewritten or
//! an error (ranges, compression, odd content types, failures, framing, HEAD, ETag), the cache
//! never replaying what is not everyone's (cookies, Cache-Control, keys per provider and
//! query, content types), no open doors (ports, own listeners, sliding ctx, logs, forwarded
//! headers), and a cache policy nothing an origin sends can break.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{client, random_bytes, Reply, RunningOrigin, Sluice, TestOrigin};
use serde_json::{json, Value};

const SECRET: &str = "provider-jwt-secret-0123456789";
const HLS: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg_1.ts\n#EXTINF:2,\nseg_2.ts\n#EXT-X-ENDLIST\n";
const MPD: &str = "<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"static\"><Period><AdaptationSet><Representation id=\"v\" bandwidth=\"1\"><SegmentTemplate media=\"seg_$Number$.m4s\" initialization=\"init.mp4\"/></Representation></AdaptationSet></Period></MPD>\n";

fn jwt(sub: &str) -> String {
    common::provider_jwt(SECRET, sub)
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn brotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(b).unwrap();
    }
    out
}

/// A redirect with an empty body, as origins send them.
fn redirect(to: &str) -> Reply {
    Reply {
        body: bytes::Bytes::new(),
        ..Reply::status(302).header("location", to)
    }
}

fn origin() -> RunningOrigin {
    let mut big = String::from("#EXTM3U\n");
    while big.len() < 9 * 1024 * 1024 {
        big.push_str("#EXTINF:2,\nsegment_with_a_long_name_00000000.ts\n");
    }
    TestOrigin::new()
        .route(
            "/v/index.m3u8",
            Reply::ok(HLS, "application/vnd.apple.mpegurl").header("etag", "\"upstream-etag\""),
        )
        .route("/v/manifest.mpd", Reply::ok(MPD, "application/dash+xml"))
        .route(
            "/v/seg_1.ts",
            Reply::ok(random_bytes(20_000, 1), "video/mp2t"),
        )
        .route(
            "/gz/index.m3u8",
            Reply::ok(gzip(HLS.as_bytes()), "application/vnd.apple.mpegurl")
                .header("content-encoding", "gzip"),
        )
        .route(
            "/br/index.m3u8",
            Reply::ok(brotli(HLS.as_bytes()), "application/vnd.apple.mpegurl")
                .header("content-encoding", "br"),
        )
        .route(
            "/gz/manifest",
            Reply::ok(gzip(MPD.as_bytes()), "application/xml").header("content-encoding", "gzip"),
        )
        .route(
            "/bad/utf8.m3u8",
            Reply::ok(
                b"#EXTM3U\n#EXTINF:2,\nseg\xff.ts\n".to_vec(),
                "application/vnd.apple.mpegurl",
            ),
        )
        .route(
            "/bad/ftp.m3u8",
            Reply::ok(
                "#EXTM3U\n#EXTINF:2,\nftp://x.example/seg.ts\n",
                "application/vnd.apple.mpegurl",
            ),
        )
        .route(
            "/bad/unquoted.m3u8",
            Reply::ok(
                "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=key.bin\n#EXTINF:2,\nseg.ts\n",
                "application/vnd.apple.mpegurl",
            ),
        )
        .route(
            "/bad/big.m3u8",
            Reply::ok(big, "application/vnd.apple.mpegurl"),
        )
        .route(
            "/bad/broken.mpd",
            Reply::ok(
                "<?xml version=\"1.0\"?><MPD><Period><AdaptationSet></Period>",
                "application/dash+xml",
            ),
        )
        .route(
            "/bad/notaplaylist.m3u8",
            Reply::ok("<html>oops</html>", "text/html"),
        )
        .route("/ct/live", Reply::ok(HLS, "video/mp2t"))
        .route("/ct/list.m3u8", Reply::ok(HLS, "image/png"))
        .route(
            "/ct/thumb",
            Reply::ok(
                HLS.replace("#EXTM3U", "#EXTM3U\n#EXT-X-VERSION:3"),
                "image/jpeg",
            ),
        )
        .route("/ct/blob", Reply::ok(random_bytes(30_000, 7), "video/mp2t"))
        .route(
            "/ct/page",
            Reply::ok("<html><script>alert(1)</script></html>", "text/html"),
        )
        .route(
            "/ct/page.ts",
            Reply::ok("<svg onload=alert(1)>", "image/svg+xml"),
        )
        .route(
            "/r/away",
            redirect("http://169.254.169.254/latest/meta-data/"),
        )
        .route("/r/away.ts", redirect("http://169.254.169.254/x.ts"))
        .route(
            "/c/a.ts",
            Reply::ok(random_bytes(1000, 2), "video/mp2t")
                .header("set-cookie", "hdntl=exp=9~hmac=ab; Path=/c; HttpOnly"),
        )
        .route("/c/b.ts", Reply::ok(random_bytes(1000, 3), "video/mp2t"))
        .route(
            "/cc/private.ts",
            Reply::ok(random_bytes(100, 4), "video/mp2t")
                .header("cache-control", "private, max-age=600"),
        )
        .route(
            "/cc/nostore.ts",
            Reply::ok(random_bytes(100, 5), "video/mp2t").header("cache-control", "no-store"),
        )
        .route(
            "/cc/nocache.ts",
            Reply::ok(random_bytes(100, 6), "video/mp2t").header("cache-control", "no-cache"),
        )
        .route("/q/seg.ts?n=5", Reply::ok("five", "video/mp2t"))
        .route("/q/seg.ts?n=6", Reply::ok("six", "video/mp2t"))
        .route("/q/seg.ts", Reply::ok("no query", "video/mp2t"))
        .route("/h/seg.ts", Reply::ok("h", "video/mp2t"))
        .start()
}

fn config(o: &RunningOrigin, extra: &str) -> String {
    let a = o.addr;
    format!(
        r#"provider_auth:
  jwt_secret: {SECRET}
providers:
  p1:
    allow_private: true
    channels:
      live: {{url: "http://{a}/v/index.m3u8", type: hls}}
{extra}  p2:
    allow_private: true
    headers: {{X-Provider: two}}
    channels:
      live: {{url: "http://{a}/v/index.m3u8", type: hls}}
"#
    )
}

/// A ctx of `provider` (via the Stream Info endpoint).
async fn ctx(s: &Sluice, provider: &str) -> String {
    common::stream_info_ctx(s, provider, "live", &jwt("viewer")).await
}

fn proxied(o: &RunningOrigin, path: &str, ctx: &str) -> String {
    let u = format!("http://{}{path}", o.addr);
    format!(
        "/api/proxy?url={}&ctx={ctx}",
        url::form_urlencoded::byte_serialize(u.as_bytes()).collect::<String>()
    )
}

async fn get(
    s: &Sluice,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut r = client().get(s.edge_url(path));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let st = resp.status().as_u16();
    let h = resp.headers().clone();
    (st, h, resp.bytes().await.unwrap().to_vec())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn ranges_never_skip_the_rewrite() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let c = ctx(&s, "p1").await;
    for path in ["/v/index.m3u8", "/v/manifest.mpd"] {
        for round in ["miss", "hit"] {
            let (st, h, body) = get(&s, &proxied(&o, path, &c), &[("range", "bytes=0-")]).await;
            assert_eq!(st, 200, "{path} {round}");
            let body = text(&body);
            assert!(body.contains("/api/proxy?url="), "{path} {round}: {body}");
            assert!(
                !body.contains(&format!("http://{}", o.addr)) || body.contains("%3A%2F%2F"),
                "{body}"
            );
            assert_eq!(
                h["content-length"],
                body.len().to_string(),
                "{path} {round}"
            );
            assert!(h.get("content-range").is_none());
        }
    }
}

#[tokio::test]
async fn compressed_playlists_are_decoded_and_failures_are_502() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let c = ctx(&s, "p1").await;
    for path in ["/gz/index.m3u8", "/br/index.m3u8", "/gz/manifest"] {
        let (st, h, body) = get(&s, &proxied(&o, path, &c), &[]).await;
        assert_eq!(st, 200, "{path}: {}", text(&body));
        assert!(
            text(&body).contains("/api/proxy?url="),
            "{path}: {}",
            text(&body)
        );
        assert!(h.get("content-encoding").is_none(), "{path}");
    }
    for path in [
        "/bad/utf8.m3u8",
        "/bad/ftp.m3u8",
        "/bad/unquoted.m3u8",
        "/bad/big.m3u8",
        "/bad/broken.mpd",
        "/bad/notaplaylist.m3u8",
    ] {
        let (st, h, body) = get(&s, &proxied(&o, path, &c), &[]).await;
        assert_eq!(st, 502, "{path}: {}", text(&body));
        let v: Value =
            serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{path}: {}", text(&body)));
        assert!(v["error"].is_string(), "{path}: {v}");
        assert_eq!(h["content-type"], "application/json");
    }
}

#[test]
fn rewritten_playlists_keep_their_connection() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = rt.block_on(ctx(&s, "p1"));
    let path = proxied(&o, "/v/index.m3u8", &c);
    let mut sock = std::net::TcpStream::connect(s.edge).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for round in 0..3 {
        write!(sock, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let (head, body) = read_response(&mut sock);
        assert!(head.starts_with("HTTP/1.1 200"), "round {round}: {head}");
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
        assert!(text(&body).contains("/api/proxy?url="));
    }
}

/// One response with a Content-Length body from a kept-alive socket.
fn read_response(sock: &mut std::net::TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        sock.read_exact(&mut byte).expect("response header");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body).unwrap();
    (head, body)
}

#[tokio::test]
async fn playlists_are_known_by_content_whatever_their_type() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let c = ctx(&s, "p1").await;
    for path in ["/ct/live", "/ct/list.m3u8", "/ct/thumb"] {
        let (st, h, body) = get(&s, &proxied(&o, path, &c), &[]).await;
        assert_eq!(st, 200, "{path}");
        assert!(
            text(&body).contains("/api/proxy?url="),
            "{path}: {}",
            text(&body)
        );
        assert_eq!(h["content-type"], "application/vnd.apple.mpegurl", "{path}");
    }
    // Not a playlist: passed through as is.
    let (st, h, body) = get(&s, &proxied(&o, "/ct/blob", &c), &[]).await;
    assert_eq!(st, 200);
    assert_eq!(body, random_bytes(30_000, 7).to_vec());
    assert_eq!(h["content-type"], "video/mp2t");
}

#[tokio::test]
async fn head_and_etag_describe_the_rewritten_body() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let c = ctx(&s, "p1").await;
    let path = proxied(&o, "/v/index.m3u8", &c);
    let (_, h, body) = get(&s, &path, &[]).await;
    assert_ne!(
        h.get("etag").map(|v| v.to_str().unwrap()),
        Some("\"upstream-etag\"")
    );
    let r = client().head(s.edge_url(&path)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], body.len().to_string());
    assert_ne!(
        r.headers().get("etag").map(|v| v.to_str().unwrap()),
        Some("\"upstream-etag\"")
    );
}

#[tokio::test]
async fn a_refused_redirect_is_a_403_with_a_json_body() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let c = ctx(&s, "p1").await;
    for path in ["/r/away", "/r/away.ts"] {
        let (st, h, body) = get(&s, &proxied(&o, path, &c), &[]).await;
        assert_eq!(st, 403, "{path}");
        assert_eq!(h["content-type"], "application/json", "{path}");
        let v: Value =
            serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{path}: {:?}", text(&body)));
        assert!(v["error"].as_str().unwrap().contains("not allowed"), "{v}");
    }
}

#[tokio::test]
async fn origin_cookies_stay_with_their_context() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let (mine, theirs) = (ctx(&s, "p1").await, ctx(&s, "p1").await);
    for round in 0..2 {
        let (st, h, _) = get(&s, &proxied(&o, "/c/a.ts", &mine), &[]).await;
        assert_eq!(st, 200);
        assert!(
            h.get("set-cookie").is_none(),
            "round {round}: Set-Cookie reached the player"
        );
    }
    let (st, _, _) = get(&s, &proxied(&o, "/c/b.ts?x=1", &mine), &[]).await;
    assert_eq!(st, 200);
    let (st, _, _) = get(&s, &proxied(&o, "/c/b.ts?x=2", &theirs), &[]).await;
    assert_eq!(st, 200);
    let seen = o.requests();
    let cookie_of = |q: &str| {
        seen.iter()
            .find(|r| r.path_and_query == q)
            .and_then(|r| r.headers.get("cookie").cloned())
            .unwrap_or_default()
    };
    assert!(
        cookie_of("/c/b.ts?x=1").contains("hdntl=exp=9~hmac=ab"),
        "{seen:?}"
    );
    assert!(
        !cookie_of("/c/b.ts?x=2").contains("hdntl"),
        "another context got the cookie"
    );
    assert_eq!(o.hits("/c/a.ts"), 1, "the second request was a cache hit");
}

#[tokio::test]
async fn players_cache_control_follows_the_origin() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let c = ctx(&s, "p1").await;
    for (path, want) in [
        ("/cc/private.ts", "private, no-cache"),
        ("/cc/nostore.ts", "no-store"),
        ("/cc/nocache.ts", "public, no-cache"),
    ] {
        for _ in 0..2 {
            let (st, h, _) = get(&s, &proxied(&o, path, &c), &[]).await;
            assert_eq!(st, 200);
            assert_eq!(h["cache-control"], want, "{path}");
        }
    }
}

#[tokio::test]
async fn the_cache_key_has_the_provider_and_the_query() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let (c1, c2) = (ctx(&s, "p1").await, ctx(&s, "p2").await);
    assert_eq!(
        text(&get(&s, &proxied(&o, "/q/seg.ts?n=5", &c1), &[]).await.2),
        "five"
    );
    assert_eq!(
        text(&get(&s, &proxied(&o, "/q/seg.ts?n=6", &c1), &[]).await.2),
        "six"
    );
    assert_eq!(
        text(&get(&s, &proxied(&o, "/q/seg.ts", &c1), &[]).await.2),
        "no query"
    );
    // Another provider's credentials: another object.
    let before = o.hits("/h/seg.ts");
    get(&s, &proxied(&o, "/h/seg.ts", &c1), &[]).await;
    get(&s, &proxied(&o, "/h/seg.ts", &c2), &[]).await;
    assert_eq!(o.hits("/h/seg.ts") - before, 2);
    // Credential parameters are not part of the key.
    get(
        &s,
        &proxied(&o, "/h/seg.ts?hdnts=exp%3D1~hmac%3Da", &c1),
        &[],
    )
    .await;
    get(
        &s,
        &proxied(&o, "/h/seg.ts?hdnts=exp%3D2~hmac%3Db", &c1),
        &[],
    )
    .await;
    assert_eq!(o.hits("/h/seg.ts") - before, 2);
    // Purge by upstream URL removes it for every provider.
    let key = common::admin_key(&s);
    let r: Value = client()
        .post(s.admin_url("/api/cache/purge"))
        .bearer_auth(&key)
        .json(&json!({"url": format!("http://{}/h/seg.ts", o.addr)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["purged"], 2, "{r}");
    get(&s, &proxied(&o, "/h/seg.ts", &c1), &[]).await;
    assert_eq!(o.hits("/h/seg.ts") - before, 3);
}

#[tokio::test]
async fn only_media_types_reach_players() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let c = ctx(&s, "p1").await;
    for path in ["/ct/page", "/ct/page.ts"] {
        let (st, h, _) = get(&s, &proxied(&o, path, &c), &[]).await;
        assert_eq!(st, 200, "{path}");
        assert_eq!(h["content-type"], "application/octet-stream", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
    }
    let (_, h, _) = get(&s, &proxied(&o, "/v/seg_1.ts", &c), &[]).await;
    assert_eq!(h["content-type"], "video/mp2t");
    assert_eq!(h["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn no_context_reaches_another_port_or_sluice_itself() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let c = ctx(&s, "p1").await;
    for target in [
        format!("http://127.0.0.1:{}/metrics", s.admin.port()),
        format!("http://127.0.0.1:{}/health", s.edge.port()),
        format!("http://{}/metrics", s.admin),
    ] {
        let path = format!(
            "/api/proxy?url={}&ctx={c}",
            url::form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>()
        );
        let (st, _, body) = get(&s, &path, &[]).await;
        assert_eq!(st, 403, "{target}: {}", text(&body));
    }
    drop(s);
    // Even when the provider lists the host by name, a port is its own.
    let s = Sluice::start(&format!(
        "provider_auth:\n  jwt_secret: {SECRET}\nproviders:\n  p1:\n    allow_private: true\n    allowed_hosts: [\"127.0.0.1\"]\n    channels:\n      live: {{url: \"http://{}/v/index.m3u8\", type: hls}}\n",
        o.addr
    ));
    let c = ctx(&s, "p1").await;
    let target = format!("http://127.0.0.1:{}/metrics", s.admin.port());
    let path = format!(
        "/api/proxy?url={}&ctx={c}",
        url::form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>()
    );
    assert_eq!(get(&s, &path, &[]).await.0, 403);
    assert_eq!(get(&s, &proxied(&o, "/v/seg_1.ts", &c), &[]).await.0, 200);
}

#[tokio::test]
async fn a_context_in_use_slides_up_to_its_session_maximum() {
    let o = origin();
    let s = Sluice::start(&config(&o, "    ctx_ttl: 2s\n    ctx_max_session: 5s\n"));
    let c = ctx(&s, "p1").await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(get(&s, &proxied(&o, "/v/seg_1.ts", &c), &[]).await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get(&s, &proxied(&o, "/v/seg_1.ts", &c), &[]).await.0, 404);
}

#[tokio::test]
async fn player_headers_do_not_reach_the_origin() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let c = ctx(&s, "p1").await;
    get(
        &s,
        &proxied(&o, "/h/seg.ts?fresh=1", &c),
        &[
            ("x-api-key", "k"),
            ("origin", "https://evil.example"),
            ("x-player", "p"),
            ("cookie", "a=b"),
            ("user-agent", "hls.js"),
        ],
    )
    .await;
    let seen = o.requests();
    let r = seen
        .iter()
        .find(|r| r.path_and_query == "/h/seg.ts?fresh=1")
        .unwrap();
    // Nor does anything an origin could vary its answer on (tests/cache_vary.rs).
    for h in ["x-api-key", "origin", "x-player", "cookie", "user-agent"] {
        assert!(!r.headers.contains_key(h), "{h} reached the origin: {r:?}");
    }
}

#[tokio::test]
async fn logs_carry_no_credentials() {
    let mut o = origin();
    let s = Sluice::start(&format!(
        "{}streaming:\n  secret: stream-secret-0123456789abcdef\n  contents:\n    - {{id: c1, hash: movie, token_required: true}}\n",
        config(&o, "")
    ));
    let c = ctx(&s, "p1").await;
    let key = common::admin_key(&s);
    let token: Value = client()
        .post(s.edge_url("/api/v2/streaming/token"))
        .bearer_auth(&key)
        .json(&json!({"contentId": "c1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["streamToken"].as_str().unwrap().to_string();
    // The origin goes away: Pingora logs its failures, with a request summary.
    let addr = o.addr;
    o.stop();
    let secret_param = "hdnts=exp%3D1~acl%3D*~hmac%3Dsupersecret0123";
    let u = format!("http://{addr}/v/seg_9.ts?{secret_param}");
    let path = format!(
        "/api/proxy?url={}&ctx={c}",
        url::form_urlencoded::byte_serialize(u.as_bytes()).collect::<String>()
    );
    assert!(get(&s, &path, &[]).await.0 >= 500);
    get(&s, &format!("/stream/movie/master.m3u8?token={token}"), &[]).await;
    get(&s, &format!("/api/v2/streaming/verify?token={token}"), &[]).await;
    let _ = client()
        .get(s.admin_url(&format!("/api/v2/streaming/verify?token={token}")))
        .send()
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = s.log();
    for secret in [c.as_str(), token.as_str(), "supersecret0123"] {
        assert!(
            !log.contains(secret),
            "a credential reached the log:\n{log}"
        );
    }
}

#[tokio::test]
async fn live_dash_is_recognised_and_odd_manifests_do_not_break_the_policy() {
    let o = TestOrigin::new()
        .route(
            "/d/live.mpd",
            Reply::ok(
                "<?xml version=\"1.0\"?>\n<mpd:MPD xmlns:mpd=\"urn:mpeg:dash:schema:mpd:2011\" type = \"dynamic\" minimumUpdatePeriod=\"PT2S\"><mpd:Period/></mpd:MPD>\n",
                "application/dash+xml",
            ),
        )
        .route(
            "/d/odd.mpd",
            Reply::ok(
                "<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"dynamic\" minimumUpdatePeriod=\"é\"><Period/></MPD>\n",
                "application/dash+xml",
            ),
        )
        .route(
            "/d/odd2.mpd",
            Reply::ok("<?xml version=\"1.0\"?>\n<MPD type=\"dynamic\" minimumUpdatePeriod=é><Period/></MPD>\n", "application/dash+xml"),
        )
        .start();
    let s = Sluice::start(&config(&o, ""));
    let c = ctx(&s, "p1").await;
    assert_eq!(get(&s, &proxied(&o, "/d/live.mpd", &c), &[]).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(get(&s, &proxied(&o, "/d/live.mpd", &c), &[]).await.0, 200);
    assert_eq!(
        o.hits("/d/live.mpd"),
        2,
        "a live MPD was cached like a VOD one"
    );
    for path in ["/d/odd.mpd", "/d/odd2.mpd"] {
        for _ in 0..3 {
            let st = get(&s, &proxied(&o, path, &c), &[]).await.0;
            assert!(st == 200 || st == 502, "{path}: {st}");
        }
    }
    // The process is still up.
    assert_eq!(get(&s, "/health", &[]).await.0, 200);
}

#[tokio::test]
async fn every_uri_form_goes_through_the_proxy() {
    let master = "#EXTM3U\n#EXT-X-DEFINE:NAME=\"p\",VALUE=\"abc\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv/{$p}/index.m3u8\n#EXT-X-IMAGE-STREAM-INF:BANDWIDTH=1,RESOLUTION=320x180,URI=\"thumbs/t.m3u8\"\n";
    let mpd = "<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"dynamic\"><UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\" value=\"/time\"/><Period><AdaptationSet><Representation id=\"v\" bandwidth=\"1\"><SegmentTemplate media=\"s_$Number$.m4s\"/></Representation></AdaptationSet></Period></MPD>\n";
    let o = TestOrigin::new()
        .route(
            "/u/master.m3u8",
            Reply::ok(master, "application/vnd.apple.mpegurl"),
        )
        .route("/u/live.mpd", Reply::ok(mpd, "application/dash+xml"))
        .start();
    let s = Sluice::start(&config(&o, ""));
    let c = ctx(&s, "p1").await;
    let (_, _, body) = get(&s, &proxied(&o, "/u/master.m3u8", &c), &[]).await;
    let body = text(&body);
    let variant = body.lines().find(|l| l.starts_with("/api/proxy")).unwrap();
    // A VALUE sluice knows is substituted by sluice (README: HLS variables).
    let upstream = sluice::rewrite::unwrap_proxy_url(variant).unwrap().0;
    assert!(
        upstream.ends_with("/u/v/abc/index.m3u8"),
        "variable mangled: {variant}"
    );
    let thumbs = body
        .split("URI=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(
        thumbs.starts_with("/api/proxy?url="),
        "image stream not rewritten: {body}"
    );
    let (_, _, body) = get(&s, &proxied(&o, "/u/live.mpd", &c), &[]).await;
    let body = text(&body);
    assert!(
        body.contains("value=\"/api/proxy?url="),
        "UTCTiming not rewritten: {body}"
    );
}

#[tokio::test]
async fn stream_answers_follow_the_origins_cache_control_and_types_too() {
    let o = TestOrigin::new()
        .route(
            "/movie/private.ts",
            Reply::ok(random_bytes(100, 1), "video/mp2t").header("cache-control", "private"),
        )
        .route("/movie/page.ts", Reply::ok("<html></html>", "text/html"))
        .route(
            "/movie/c.ts",
            Reply::ok(random_bytes(100, 2), "video/mp2t").header("set-cookie", "session=origin"),
        )
        .start();
    let s = Sluice::start(&format!("origins:\n  bucket: {}\n", o.url()));
    for _ in 0..2 {
        let (st, h, _) = get(&s, "/stream/movie/private.ts", &[]).await;
        assert_eq!(st, 200);
        assert_eq!(h["cache-control"], "private, no-cache");
        let (_, h, _) = get(&s, "/stream/movie/page.ts", &[]).await;
        assert_eq!(h["content-type"], "application/octet-stream");
        assert_eq!(h["x-content-type-options"], "nosniff");
        let (_, h, _) = get(&s, "/stream/movie/c.ts", &[]).await;
        assert!(h.get("set-cookie").is_none());
    }
}

#[tokio::test]
async fn a_dead_bucket_address_fails_over_to_the_next() {
    let o = TestOrigin::new()
        .route(
            "/movie/seg_1.ts",
            Reply::ok(random_bytes(5000, 3), "video/mp2t"),
        )
        .start();
    // The first address refuses connections; the second is the origin.
    let s = Sluice::start(&format!(
        "origins:\n  bucket: http://bucket.test:{}\n  resolve: [127.0.0.3, 127.0.0.1]\n  connect_timeout: 1s\n",
        o.addr.port()
    ));
    for _ in 0..3 {
        let (st, _, body) = get(&s, "/stream/movie/seg_1.ts?fresh", &[]).await;
        assert_eq!(st, 200);
        assert_eq!(body, random_bytes(5000, 3).to_vec());
    }
}

#[tokio::test]
async fn alternative_base_urls_fail_over_through_the_proxy() {
    // Two CDNs hold the same media; the MPD lists both. A player resolving against either
    // BaseURL gets the segment through sluice from that CDN.
    let seg = random_bytes(4000, 11);
    let cdn1 = TestOrigin::new()
        .route(
            "/live/v/seg_1.m4s",
            Reply::ok(seg.clone(), "video/iso.segment"),
        )
        .start();
    let cdn2 = TestOrigin::new()
        .route(
            "/live/v/seg_1.m4s",
            Reply::ok(seg.clone(), "video/iso.segment"),
        )
        .start_on("127.0.0.2");
    let mpd = format!(
        "<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"static\"><BaseURL>http://{}/live/</BaseURL><BaseURL>http://{}/live/</BaseURL><Period><AdaptationSet><Representation id=\"v\" bandwidth=\"1\"><SegmentTemplate media=\"v/seg_$Number$.m4s\"/></Representation></AdaptationSet></Period></MPD>\n",
        cdn1.addr, cdn2.addr
    );
    let o = TestOrigin::new()
        .route("/m/manifest.mpd", Reply::ok(mpd, "application/dash+xml"))
        .start();
    let s = Sluice::start(&format!(
        "provider_auth:\n  jwt_secret: {SECRET}\nproviders:\n  p1:\n    allow_private: true\n    allowed_hosts: [\"{}\", \"{}\", \"{}\"]\n    channels:\n      live: {{url: \"http://{}/m/manifest.mpd\", type: dash}}\n",
        o.addr, cdn1.addr, cdn2.addr, o.addr
    ));
    let c = ctx(&s, "p1").await;
    let (st, _, body) = get(&s, &proxied(&o, "/m/manifest.mpd", &c), &[]).await;
    assert_eq!(st, 200);
    let body = text(&body);
    let bases: Vec<String> = body
        .split("<BaseURL>")
        .skip(1)
        .map(|b| b.split("</BaseURL>").next().unwrap().to_string())
        .collect();
    assert_eq!(bases.len(), 2, "{body}");
    assert!(body.contains("media=\"v/seg_$Number$.m4s\""), "{body}");
    for (i, b) in bases.iter().enumerate() {
        let page = url::Url::parse(&s.edge_url(b)).unwrap();
        let seg_url = page.join("v/seg_1.m4s").unwrap();
        let (st, _, got) = get(
            &s,
            &format!(
                "{}{}",
                seg_url.path(),
                seg_url.query().map(|q| format!("?{q}")).unwrap_or_default()
            ),
            &[],
        )
        .await;
        assert_eq!(st, 200, "base {i}: {b}");
        assert_eq!(got, seg.to_vec());
    }
    assert_eq!(cdn1.hits("/live/v/seg_1.m4s"), 1);
    assert_eq!(cdn2.hits("/live/v/seg_1.m4s"), 1);
    // The path form is held to the same rules: an unknown ctx is 404, a foreign host 403.
    assert_eq!(
        get(&s, "/api/proxy/nope/http/127.0.0.1:1/x.m4s", &[])
            .await
            .0,
        404
    );
    assert_eq!(
        get(
            &s,
            &format!("/api/proxy/{c}/http/169.254.169.254/latest"),
            &[]
        )
        .await
        .0,
        403
    );
}

//! provider-proxy-api.txt over real HTTP: the stream endpoint, `/api/proxy` with header and
//! cookie injection and playlist rewriting, and the SSRF table.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{client, random_bytes, Reply, RunningOrigin, Sluice, TestOrigin};
use serde_json::{json, Value};

const SECRET: &str = "provider-jwt-secret-0123456789";

fn jwt(secret: &str, exp_offset: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "user-1", "exp": now + exp_offset}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Unwrap `/api/proxy?url=…&ctx=…` into (url, ctx).
fn unwrap(proxied: &str) -> (String, String) {
    sluice::rewrite::unwrap_proxy_url(proxied)
        .unwrap_or_else(|| panic!("not a proxy URL: {proxied}"))
}

fn media_origin() -> RunningOrigin {
    let master = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"en\",URI=\"audio/en.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=800000,AUDIO=\"aud\"\nvideo/720.m3u8?hdnts=exp%3D9~hmac%3Dab\n";
    let media = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=AES-128,URI=\"../keys/k1.key\"\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.0,\nseg_1.m4s\n#EXTINF:2.0,\n/live/ch001/video/seg_2.m4s\n#EXTINF:0.1,\ndata:video/mp2t;base64,AA\n";
    TestOrigin::new()
        .route("/live/ch001/master.m3u8", Reply::ok(master, "application/vnd.apple.mpegurl"))
        .route("/live/ch001/video/720.m3u8", Reply::ok(media, "application/octet-stream"))
        .route("/live/ch001/audio/en.m3u8", Reply::ok("#EXTM3U\n#EXTINF:2,\na1.m4s\n", "application/x-mpegURL"))
        .route("/live/ch001/video/init.mp4", Reply::ok(random_bytes(800, 1), "video/mp4"))
        .route("/live/ch001/video/seg_1.m4s", Reply::ok(random_bytes(50_000, 2), "video/iso.segment"))
        .route("/live/ch001/video/seg_2.m4s", Reply::ok(random_bytes(50_000, 3), "video/iso.segment"))
        .route("/live/ch001/keys/k1.key", Reply::ok(random_bytes(16, 4), "application/octet-stream"))
        .route("/live/ch001/manifest.mpd", Reply::ok(
            "<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"static\"><Period><AdaptationSet><Representation id=\"v\" bandwidth=\"1\"><BaseURL>dash/</BaseURL><SegmentTemplate media=\"seg_$Number$.m4s\" initialization=\"init.mp4\"/></Representation></AdaptationSet></Period></MPD>\n",
            "application/dash+xml",
        ))
        .route("/redirect.m3u8", Reply::status(302).header("location", "/live/ch001/master.m3u8"))
        .route("/live/ch001/dash/seg_v+1_3.m4s", Reply::ok(random_bytes(1000, 5), "video/iso.segment"))
        .start_on("127.0.0.2")
}

fn config(origin: &RunningOrigin, twin: &RunningOrigin, api: &RunningOrigin) -> String {
    let o = origin.addr;
    let t = twin.addr.port();
    format!(
        r#"provider_auth:
  jwt_secret: {SECRET}
providers:
  acme:
    headers: {{Referer: "https://acme.example/", X-Provider-Key: k-123}}
    cookies: {{cf_clearance: abc}}
    url_params_to_cookies: [hdnts]
    allowed_hosts: ["127.0.0.2"]
    allow_private: true
    channels:
      ch001: {{url: "http://{o}/live/ch001/master.m3u8", type: hls}}
      ch002:
        url: "http://{o}/live/ch001/manifest.mpd"
        type: dash
        drm: {{system: widevine, license_url: "https://license.example.com/widevine", headers: {{Authorization: "Bearer provider_token_here", X-Custom-Data: user123}}}}
      redirecting: {{url: "http://{o}/redirect.m3u8", type: hls}}
      fromapi: {{api: "http://{api}/channels/ch001", url_pointer: /data/url, type: hls}}
      broken: {{api: "http://{api}/channels/broken", type: hls}}
  locked:
    allowed_hosts: ["127.0.0.1", localhost, "10.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1", "0.0.0.0", "192.168.1.1", "172.16.0.1", "100.64.0.1", "fd00::1", "fe80::1", "127.0.0.2"]
    channels:
      ch: {{url: "http://127.0.0.1:{t}/x.m3u8", type: hls}}
"#,
        api = api.addr
    )
}

async fn stream_info(
    s: &Sluice,
    provider: &str,
    channel: &str,
    auth: Option<String>,
) -> (u16, Value) {
    let mut r = client().get(s.edge_url(&format!(
        "/api/providers/{provider}/channels/{channel}/stream"
    )));
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    let resp = r.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

struct Setup {
    origin: RunningOrigin,
    twin: RunningOrigin,
    _api: RunningOrigin,
    s: Sluice,
}

fn setup() -> Setup {
    let origin = media_origin();
    let twin = TestOrigin::new()
        .route(
            "/x.m3u8",
            Reply::ok("#EXTM3U\n", "application/vnd.apple.mpegurl"),
        )
        .start();
    let api = TestOrigin::new()
        .route(
            "/channels/ch001",
            Reply::ok(
                format!(
                    r#"{{"data":{{"url":"http://{}/live/ch001/master.m3u8"}}}}"#,
                    origin.addr
                ),
                "application/json",
            ),
        )
        .route("/channels/broken", Reply::status(500))
        .start();
    let s = Sluice::start(&config(&origin, &twin, &api));
    Setup {
        origin,
        twin,
        _api: api,
        s,
    }
}

#[tokio::test]
async fn stream_endpoint_status_table() {
    let Setup {
        s,
        origin,
        twin: _twin,
        _api,
    } = setup();
    let good = Some(format!("Bearer {}", jwt(SECRET, 300)));
    let (st, v) = stream_info(&s, "acme", "ch001", good.clone()).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["stream_type"], "hls");
    assert_eq!(v["drm"], Value::Null);
    assert_eq!(
        v.as_object().unwrap().len(),
        3,
        "exactly url, stream_type, drm: {v}"
    );
    let (url, ctx) = unwrap(v["url"].as_str().unwrap());
    assert_eq!(
        url,
        format!("http://{}/live/ch001/master.m3u8", origin.addr)
    );
    assert!(ctx.len() >= 22, "ctx too short for 128 bits: {ctx}");

    let (st, v) = stream_info(&s, "acme", "ch002", good.clone()).await;
    assert_eq!(st, 200);
    assert_eq!(v["stream_type"], "dash");
    assert_eq!(
        v["drm"],
        json!({"system":"widevine","license_url":"https://license.example.com/widevine","headers":{"Authorization":"Bearer provider_token_here","X-Custom-Data":"user123"}})
    );
    // Channel URL from the provider's API; an API error is a 400.
    let (st, v) = stream_info(&s, "acme", "fromapi", good.clone()).await;
    assert_eq!(st, 200, "{v}\n{}", s.log());
    assert!(unwrap(v["url"].as_str().unwrap())
        .0
        .ends_with("/live/ch001/master.m3u8"));
    assert_eq!(
        stream_info(&s, "acme", "broken", good.clone()).await,
        (400, json!({"error":"Provider API returned an error"}))
    );

    assert_eq!(stream_info(&s, "nope", "ch001", good.clone()).await.0, 404);
    assert_eq!(stream_info(&s, "acme", "nope", good.clone()).await.0, 404);
    let none_alg = {
        use base64::Engine;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            e.encode(r#"{"alg":"none","typ":"JWT"}"#),
            e.encode(r#"{"sub":"x","exp":9999999999}"#)
        )
    };
    for auth in [
        None,
        Some("Bearer".to_string()),
        Some("Basic dXNlcjpwYXNz".to_string()),
        Some(format!("Bearer {}", jwt("wrong-secret-0123456789", 300))),
        Some(format!("Bearer {}", jwt(SECRET, -60))),
        Some(format!("Bearer {none_alg}")),
    ] {
        let (st, v) = stream_info(&s, "acme", "ch001", auth.clone()).await;
        assert_eq!(
            (st, v),
            (401, json!({"error":"Missing or invalid JWT token"})),
            "{auth:?}"
        );
    }
}

#[tokio::test]
async fn player_walks_the_stream_through_the_proxy() {
    let Setup {
        s,
        origin,
        twin: _twin,
        _api,
    } = setup();
    let (_, v) = stream_info(
        &s,
        "acme",
        "ch001",
        Some(format!("Bearer {}", jwt(SECRET, 300))),
    )
    .await;
    let c = client();
    let get = |path: String| {
        let c = c.clone();
        let url = s.edge_url(&path);
        async move {
            let r = c.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string());
            (ct, r.bytes().await.unwrap())
        }
    };
    // Master: every URI now points back through the proxy with the same ctx.
    let master_url = v["url"].as_str().unwrap().to_string();
    let (_, ctx) = unwrap(&master_url);
    let (ct, master) = get(master_url).await;
    assert_eq!(ct.as_deref(), Some("application/vnd.apple.mpegurl"));
    let master = String::from_utf8(master.to_vec()).unwrap();
    let lines: Vec<&str> = master.lines().collect();
    assert!(lines[2].contains("URI=\"/api/proxy?url="), "{master}");
    let variant = lines
        .iter()
        .find(|l| l.starts_with("/api/proxy"))
        .unwrap()
        .to_string();
    let (vurl, vctx) = unwrap(&variant);
    assert_eq!(vctx, ctx);
    assert_eq!(
        vurl,
        format!(
            "http://{}/live/ch001/video/720.m3u8?hdnts=exp%3D9~hmac%3Dab",
            origin.addr
        )
    );
    // Media playlist (served as octet-stream: detected by sniffing) → key, init, segments.
    let (_, media) = get(variant).await;
    let media = String::from_utf8(media.to_vec()).unwrap();
    let uris: Vec<String> = media
        .lines()
        .filter_map(|l| {
            if let Some(i) = l.find("URI=\"") {
                let rest = &l[i + 5..];
                Some(rest[..rest.find('"').unwrap()].to_string())
            } else if l.starts_with('/') {
                Some(l.to_string())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(uris.len(), 4, "{media}");
    // An inline (data:) segment is left as it is, and does not fail the playlist.
    assert!(
        media.lines().any(|l| l == "data:video/mp2t;base64,AA"),
        "{media}"
    );
    let mut fetched = Vec::new();
    for u in &uris {
        let (target, c2) = unwrap(u);
        assert_eq!(c2, ctx);
        let (_, body) = get(u.clone()).await;
        fetched.push((target, body.len()));
    }
    let a = origin.addr;
    assert_eq!(
        fetched,
        vec![
            (format!("http://{a}/live/ch001/keys/k1.key"), 16),
            (format!("http://{a}/live/ch001/video/init.mp4"), 800),
            (format!("http://{a}/live/ch001/video/seg_1.m4s"), 50_000),
            (format!("http://{a}/live/ch001/video/seg_2.m4s"), 50_000),
        ]
    );
    // The origin saw the provider's headers and cookies on every request, key and init too.
    let seen = origin.requests();
    assert_eq!(seen.len(), 6);
    for r in &seen {
        assert_eq!(
            r.headers.get("referer").map(String::as_str),
            Some("https://acme.example/"),
            "{r:?}"
        );
        assert_eq!(
            r.headers.get("x-provider-key").map(String::as_str),
            Some("k-123")
        );
        let cookie = r.headers.get("cookie").cloned().unwrap_or_default();
        assert!(cookie.contains("cf_clearance=abc"), "{r:?}");
        assert!(
            !r.path_and_query.contains("ctx="),
            "ctx leaked upstream: {r:?}"
        );
    }
    // The hdnts URL parameter travelled as a cookie, merged with the configured one.
    let variant_req = seen
        .iter()
        .find(|r| r.path_and_query.starts_with("/live/ch001/video/720.m3u8"))
        .unwrap();
    assert_eq!(variant_req.path_and_query, "/live/ch001/video/720.m3u8");
    assert_eq!(
        variant_req.headers["cookie"],
        "hdnts=exp=9~hmac=ab; cf_clearance=abc"
    );

    // Segments are cached by upstream URL; a second viewer with another ctx hits the cache.
    let (_, v2) = stream_info(
        &s,
        "acme",
        "ch001",
        Some(format!("Bearer {}", jwt(SECRET, 300))),
    )
    .await;
    let (_, ctx2) = unwrap(v2["url"].as_str().unwrap());
    assert_ne!(ctx2, ctx);
    let seg = sluice::rewrite::proxy_url(
        &url::Url::parse(&format!("http://{a}/live/ch001/video/seg_1.m4s")).unwrap(),
        &ctx2,
    );
    let r = c.get(s.edge_url(&seg)).send().await.unwrap();
    assert_eq!(r.headers()["x-cache-status"], "hit");
    assert_eq!(origin.hits("/live/ch001/video/seg_1.m4s"), 1);
    // The master is cached too, but each viewer gets it rewritten with their own ctx.
    let (_, m2) = get(v2["url"].as_str().unwrap().to_string()).await;
    let m2 = String::from_utf8(m2.to_vec()).unwrap();
    assert!(
        m2.contains(&format!("ctx={ctx2}")) && !m2.contains(&format!("ctx={ctx}")),
        "{m2}"
    );
}

#[tokio::test]
async fn dash_manifest_and_redirects_are_rewritten() {
    let Setup {
        s,
        origin,
        twin: _twin,
        _api,
    } = setup();
    let auth = Some(format!("Bearer {}", jwt(SECRET, 300)));
    let (_, v) = stream_info(&s, "acme", "ch002", auth.clone()).await;
    let r = client()
        .get(s.edge_url(v["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mpd = r.text().await.unwrap();
    assert!(mpd.contains("/api/proxy?url="), "{mpd}");
    assert!(
        mpd.contains("$Number$"),
        "template placeholders must survive: {mpd}"
    );
    // The player substitutes a Representation id with a `+` into the proxied template after
    // sluice encoded it: the `+` reaches the origin as a `+` (it became a space: 404).
    let at = mpd.find("media=\"").expect("a media template") + 7;
    let template = mpd[at..].split('"').next().unwrap().replace("&amp;", "&");
    let asked = template
        .replace("seg_%24Number%24", "seg_v+1_%24Number%24")
        .replace("seg_$Number$", "seg_v+1_$Number$")
        .replace("%24Number%24", "3")
        .replace("$Number$", "3");
    assert!(asked.contains("v+1_3"), "{template} -> {asked}");
    let r = client().get(s.edge_url(&asked)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{asked}");
    assert_eq!(origin.hits("/live/ch001/dash/seg_v+1_3.m4s"), 1);
    // A redirect's Location comes back through the proxy.
    let (_, v) = stream_info(&s, "acme", "redirecting", auth).await;
    let r = client()
        .get(s.edge_url(v["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap();
    assert_eq!(
        unwrap(loc).0,
        format!("http://{}/live/ch001/master.m3u8", origin.addr)
    );
}

#[tokio::test]
async fn proxy_parameter_errors() {
    let Setup {
        s,
        origin: _o,
        twin: _t,
        _api,
    } = setup();
    let c = client();
    for (q, status) in [
        ("/api/proxy", 400),
        ("/api/proxy?url=http%3A%2F%2F127.0.0.2%2Fx", 400),
        ("/api/proxy?ctx=abc", 400),
        ("/api/proxy?url=http%3A%2F%2F127.0.0.2%2Fx&ctx=unknown", 404),
        (
            "/api/proxy?url=http%3A%2F%2F127.0.0.2%2Fx&ctx=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            404,
        ),
    ] {
        let r = c.get(s.edge_url(q)).send().await.unwrap();
        assert_eq!(r.status(), status, "{q}");
        assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    }
}

#[tokio::test]
async fn ssrf_table_never_reaches_private_addresses() {
    let Setup {
        s, twin, origin, ..
    } = setup();
    let auth = Some(format!("Bearer {}", jwt(SECRET, 300)));
    let (_, locked) = stream_info(&s, "locked", "ch", auth.clone()).await;
    let (_, lctx) = unwrap(locked["url"].as_str().unwrap());
    let (_, open) = stream_info(&s, "acme", "ch001", auth).await;
    let (_, actx) = unwrap(open["url"].as_str().unwrap());
    let t = twin.addr.port();
    let o = origin.addr;
    let locked_cases = vec![
        format!("http://127.0.0.1:{t}/x.m3u8"),
        format!("http://2130706433:{t}/x.m3u8"),
        format!("http://0x7f000001:{t}/x.m3u8"),
        format!("http://0177.0.0.1:{t}/x.m3u8"),
        format!("http://0x7f.0.0.1:{t}/x.m3u8"),
        format!("http://127.1:{t}/x.m3u8"),
        format!("http://[::ffff:127.0.0.1]:{t}/x.m3u8"),
        format!("http://[::1]:{t}/x.m3u8"),
        format!("http://localhost:{t}/x.m3u8"),
        format!("http://0.0.0.0:{t}/x.m3u8"),
        format!("http://0:{t}/x.m3u8"),
        "http://10.0.0.1/x.m3u8".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://192.168.1.1/x".to_string(),
        "http://172.16.0.1/x".to_string(),
        "http://100.64.0.1/x".to_string(),
        "http://[fd00::1]/x".to_string(),
        "http://[fe80::1]/x".to_string(),
        "file:///etc/passwd".to_string(),
        "gopher://127.0.0.1:70/x".to_string(),
        format!("ftp://127.0.0.1:{t}/x"),
        format!("http://user:pass@127.0.0.1:{t}/x"),
        format!("http://evil.example@127.0.0.1:{t}/x"),
    ];
    let c = client();
    let mut checked = 0;
    for u in &locked_cases {
        let url = format!("/api/proxy?url={}&ctx={lctx}", urlencode(u));
        let r = c.get(s.edge_url(&url)).send().await.unwrap();
        assert!(
            matches!(r.status().as_u16(), 400 | 403),
            "{u}: {}",
            r.status()
        );
        checked += 1;
    }
    // The open context reaches its own host only: not the twin on another address, not
    // through a redirect, not through a playlist that points there.
    for u in [
        format!("http://127.0.0.1:{t}/x.m3u8"),
        format!("http://localhost:{t}/x.m3u8"),
    ] {
        let url = format!("/api/proxy?url={}&ctx={actx}", urlencode(&u));
        assert_eq!(
            c.get(s.edge_url(&url)).send().await.unwrap().status(),
            403,
            "{u}"
        );
        checked += 1;
    }
    origin.set_route(
        "/to-twin.m3u8",
        Reply::status(302).header("location", &format!("http://127.0.0.1:{t}/x.m3u8")),
    );
    origin.set_route(
        "/meta.m3u8",
        Reply::status(301).header("location", "http://169.254.169.254/latest/"),
    );
    for p in ["/to-twin.m3u8", "/meta.m3u8"] {
        let url = format!(
            "/api/proxy?url={}&ctx={actx}",
            urlencode(&format!("http://{o}{p}"))
        );
        let r = c.get(s.edge_url(&url)).send().await.unwrap();
        assert_eq!(r.status(), 403, "{p}");
        assert!(r.headers().get("location").is_none());
        checked += 1;
    }
    origin.set_route(
        "/evil.m3u8",
        Reply::ok(
            format!("#EXTM3U\n#EXTINF:2,\nhttp://127.0.0.1:{t}/x.m3u8\n"),
            "application/vnd.apple.mpegurl",
        ),
    );
    let url = format!(
        "/api/proxy?url={}&ctx={actx}",
        urlencode(&format!("http://{o}/evil.m3u8"))
    );
    let pl = c
        .get(s.edge_url(&url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let inner = pl
        .lines()
        .find(|l| l.starts_with("/api/proxy"))
        .unwrap()
        .to_string();
    assert_eq!(
        c.get(s.edge_url(&inner)).send().await.unwrap().status(),
        403
    );
    checked += 1;
    assert!(checked >= 20);
    assert_eq!(
        twin.total_hits(),
        0,
        "the private twin was contacted: {:?}",
        twin.requests()
    );
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

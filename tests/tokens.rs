//! stream-token-api.txt over real HTTP against the binary: issuing, verifying, revoking
//! stream tokens, DRM license forwarding, and the edge gate on `/stream/{hash}/…` (expiry,
//! max uses under concurrency, IP binding with and without a trusted proxy, device binding,
//! revocation).

mod common;

use base64::Engine as _;
use common::{admin_key, client, Reply, Sluice, TestOrigin};
use serde_json::{json, Value};

const STREAM_SECRET: &str = "stream-secret-0123456789abcdef";
const JWT_SECRET: &str = "user-jwt-secret-0123456789abcdef";
const MASTER: &str = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nvideo/playlist.m3u8\n";

fn origin() -> common::RunningOrigin {
    let mut o = TestOrigin::new();
    for hash in ["movie-free", "movie-premium", "movie-open"] {
        o = o
            .route(
                &format!("/{hash}/master.m3u8"),
                Reply::ok(MASTER, "application/vnd.apple.mpegurl"),
            )
            .route(
                &format!("/{hash}/video/playlist.m3u8"),
                Reply::ok(
                    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg_1.m4s\n",
                    "application/vnd.apple.mpegurl",
                ),
            )
            .route(
                &format!("/{hash}/video/seg_1.m4s"),
                Reply::ok(vec![7u8; 1000], "video/iso.segment"),
            );
    }
    o.route(
        "/license/wv",
        Reply::ok(vec![1u8, 2, 3, 4], "application/octet-stream"),
    )
    .route("/license/broken", Reply::status(500))
    .start()
}

fn config(origin: &common::RunningOrigin, extra: &str) -> String {
    format!(
        r#"origins:
  bucket: {url}
streaming:
  secret: {STREAM_SECRET}
  jwt:
    secret: {JWT_SECRET}
    issuer: https://auth.example.com
  contents:
    - id: 6a1f0c1e-free
      type: MOVIE
      hash: movie-free
      qualities: [auto, 720p, 1080p]
      token_required: true
    - id: 9b2e-premium
      type: MOVIE
      hash: movie-premium
      subscription_required: true
      token_required: true
      max_uses: 3
      drm:
        widevine:
          url: {url}/license/wv
          headers: {{X-License-Key: lic-123}}
        playready:
          url: {url}/license/broken
{extra}"#,
        url = origin.url()
    )
}

fn user_jwt(sub: &str, subscription: Value) -> String {
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "iss": "https://auth.example.com", "exp": now + 600, "subscription": subscription}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

async fn post(url: String, bearer: Option<&str>, body: Value, xff: Option<&str>) -> (u16, Value) {
    let mut r = client().post(url).json(&body);
    if let Some(b) = bearer {
        r = r.header("authorization", format!("Bearer {b}"));
    }
    if let Some(x) = xff {
        r = r.header("x-forwarded-for", x);
    }
    let resp = r.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut r = client().get(url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v, h)
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn nest(status: u16, message: &str, error: &str) -> Value {
    json!({"statusCode": status, "message": message, "error": error})
}

async fn issue(s: &Sluice, bearer: &str, content: &str, xff: Option<&str>) -> Value {
    let (st, v) = post(
        s.edge_url("/api/v2/streaming/token"),
        Some(bearer),
        json!({"contentId": content, "contentType": "MOVIE", "quality": "auto"}),
        xff,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v
}

#[tokio::test]
async fn issue_verify_and_play() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let user = user_jwt("user-42", json!(false));
    let (st, v) = post(
        s.edge_url("/api/v2/streaming/token"),
        Some(&user),
        json!({"contentId": "6a1f0c1e-free", "contentType": "MOVIE", "quality": "1080p", "deviceId": "dev-1", "profileId": "prof-1"}),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["expiresAt", "maxUses", "streamToken", "streamUrl"]);
    assert_eq!(v["maxUses"], 5);
    let token = v["streamToken"].as_str().unwrap();
    assert_eq!(
        v["streamUrl"],
        format!(
            "http://{}/stream/movie-free/master.m3u8?token={token}",
            s.edge
        )
    );
    // The token: HS256 with exactly the document's claims.
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "HS256");
    let c = claims_of(token);
    let mut names: Vec<&str> = c.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "contentId",
            "contentType",
            "deviceId",
            "exp",
            "iat",
            "ipAddress",
            "jti",
            "maxUses",
            "profileId",
            "quality",
            "sub"
        ]
    );
    assert_eq!(c["sub"], "user-42");
    assert_eq!(c["ipAddress"], "127.0.0.1");
    assert_eq!(c["quality"], "1080p");
    assert_eq!(c["deviceId"], "dev-1");
    let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
    assert!(exp - iat <= 3600 && exp > iat);
    let expires = v["expiresAt"].as_str().unwrap();
    assert_eq!(
        expires,
        chrono::DateTime::from_timestamp(exp, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S.000Z")
            .to_string()
    );

    // Verify: unused, five left.
    let verify = s.edge_url(&format!("/api/v2/streaming/verify?token={token}"));
    let (st, v, _) = get(&verify, &[]).await;
    assert_eq!(st, 200);
    assert_eq!(
        v,
        json!({"valid": true, "contentId": "6a1f0c1e-free", "contentType": "MOVIE", "quality": "1080p", "remainingUses": 5, "expiresAt": expires})
    );

    // Play: the entry playlist spends a use (the token names a device: its header is
    // needed on this load); every URI of the content it returns carries a playback
    // credential, never the token.
    let url = format!(
        "http://{}/stream/movie-free/master.m3u8?token={token}",
        s.edge
    );
    let (st, v, _) = get(&url, &[]).await;
    assert_eq!((st, v), (403, nest(403, "Device mismatch", "Forbidden")));
    let dev = [("x-device-id", "dev-1")];
    let (st, body, h) = get(&url, &dev).await;
    assert_eq!(st, 200);
    let text = body.as_str().unwrap().to_string();
    assert!(!text.contains(token), "{text}");
    let child = text
        .lines()
        .find(|l| l.starts_with("/stream/movie-free/video/playlist.m3u8?pc="))
        .unwrap_or_else(|| panic!("{text}"))
        .to_string();
    assert_eq!(h["cache-control"], "private, no-store");
    assert!(h.get("set-cookie").is_none());
    let (_, v, _) = get(&verify, &[]).await;
    assert_eq!(v["remainingUses"], 4);
    // Media playlist reloads (what a live player does) spend nothing, need no header, and
    // their segment URIs carry a credential too.
    let mut seg_url = String::new();
    for _ in 0..3 {
        let r = reqwest::get(s.edge_url(&child)).await.unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        seg_url = text
            .lines()
            .find(|l| l.starts_with("/stream/movie-free/video/seg_1.m4s?pc="))
            .unwrap_or_else(|| panic!("{text}"))
            .to_string();
    }
    for _ in 0..3 {
        let (st, _, _) = get(&s.edge_url(&seg_url), &[]).await;
        assert_eq!(st, 200);
    }
    let (_, v, _) = get(&verify, &[]).await;
    assert_eq!(v["remainingUses"], 4);

    // Refusals in the document's shape.
    let seg = s.edge_url("/stream/movie-free/video/seg_1.m4s");
    let (st, v, _) = get(&seg, &[]).await;
    assert_eq!((st, v), (401, nest(401, "Token required", "Unauthorized")));
    let mut bad = token.to_string();
    bad.push('x');
    let (st, v, _) = get(&format!("{seg}?token={bad}"), &[]).await;
    assert_eq!((st, v), (401, nest(401, "Invalid token", "Unauthorized")));
    // The raw token opens only the entry playlist.
    let (st, v, _) = get(&format!("{seg}?token={token}"), &dev).await;
    assert_eq!(
        (st, v),
        (403, nest(403, "Playback credential required", "Forbidden"))
    );
    let (st, v, _) = get(&s.edge_url(&seg_url), &[("x-device-id", "dev-2")]).await;
    assert_eq!((st, v), (403, nest(403, "Device mismatch", "Forbidden")));
    let (st, _, _) = get(&s.edge_url(&seg_url), &dev).await;
    assert_eq!(st, 200);
    // A token for one content does not open another.
    let (st, _, _) = get(
        &s.edge_url(&format!("/stream/movie-premium/master.m3u8?token={token}")),
        &[],
    )
    .await;
    assert_eq!(st, 401);
    // Ungated hashes stay open.
    let (st, _, _) = get(&s.edge_url("/stream/movie-open/master.m3u8"), &[]).await;
    assert_eq!(st, 200);
    // The origin never saw a token.
    assert!(o
        .requests()
        .iter()
        .all(|r| !r.path_and_query.contains("token") && !r.headers.contains_key("cookie")));
}

#[tokio::test]
async fn issuing_rules_and_auth() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let url = s.edge_url("/api/v2/streaming/token");
    let body = |id: &str, q: &str| json!({"contentId": id, "contentType": "MOVIE", "quality": q});
    let free_user = user_jwt("u1", json!("free"));
    let subscriber = user_jwt("u2", json!("premium"));

    let (st, v) = post(url.clone(), None, body("6a1f0c1e-free", "auto"), None).await;
    assert_eq!((st, v), (401, nest(401, "Unauthorized", "Unauthorized")));
    let (st, _) = post(
        url.clone(),
        Some("not-a-key"),
        body("6a1f0c1e-free", "auto"),
        None,
    )
    .await;
    assert_eq!(st, 401);
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "x", "iss": "https://auth.example.com", "exp": chrono::Utc::now().timestamp() + 60}),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-entirely-000"),
    )
    .unwrap();
    let (st, _) = post(
        url.clone(),
        Some(&forged),
        body("6a1f0c1e-free", "auto"),
        None,
    )
    .await;
    assert_eq!(st, 401);

    let (st, v) = post(url.clone(), Some(&free_user), body("nope", "auto"), None).await;
    assert_eq!((st, v), (404, nest(404, "Content not found", "Not Found")));
    let (st, v) = post(
        url.clone(),
        Some(&free_user),
        body("9b2e-premium", "auto"),
        None,
    )
    .await;
    assert_eq!(
        (st, v),
        (403, nest(403, "Subscription required", "Forbidden"))
    );
    let (st, v) = post(
        url.clone(),
        Some(&subscriber),
        body("9b2e-premium", "4k"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["maxUses"], 3);
    let (st, v) = post(
        url.clone(),
        Some(&free_user),
        body("6a1f0c1e-free", "4k"),
        None,
    )
    .await;
    assert_eq!((st, v["statusCode"].clone()), (400, json!(400)));
    let (st, _) = post(
        url.clone(),
        Some(&free_user),
        body("6a1f0c1e-free", "8k"),
        None,
    )
    .await;
    assert_eq!(st, 400);

    // An operator API key (write or above) may issue, on either listener.
    let key = admin_key(&s);
    let (st, v) = post(
        s.admin_url("/api/v2/streaming/token"),
        Some(&key),
        body("9b2e-premium", "auto"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        claims_of(v["streamToken"].as_str().unwrap())["sub"],
        "apikey:1"
    );

    // Expired tokens: 401 "Token expired" at verify and at the edge.
    let now = chrono::Utc::now().timestamp();
    let mut claims = sluice::auth::stream_token::new_claims(
        "u1",
        "6a1f0c1e-free",
        "MOVIE",
        "auto",
        "",
        "",
        "127.0.0.1".parse().unwrap(),
        5,
        60,
        now - 120,
    );
    claims.exp = now - 10;
    let old = sluice::auth::stream_token::StreamTokenSigner::new(STREAM_SECRET.as_bytes())
        .sign(&claims)
        .unwrap();
    let (st, v, _) = get(
        &s.edge_url(&format!("/api/v2/streaming/verify?token={old}")),
        &[],
    )
    .await;
    assert_eq!((st, v), (401, nest(401, "Token expired", "Unauthorized")));
    let (st, v, _) = get(
        &s.edge_url(&format!("/stream/movie-free/master.m3u8?token={old}")),
        &[],
    )
    .await;
    assert_eq!((st, v), (401, nest(401, "Token expired", "Unauthorized")));
}

#[tokio::test]
async fn max_uses_exact_under_50_concurrent_playlist_loads() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let v = issue(&s, &user_jwt("u", json!(true)), "9b2e-premium", None).await;
    assert_eq!(v["maxUses"], 3);
    let url = v["streamUrl"].as_str().unwrap().to_string();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url, &[]).await })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (st, v, _) = t.await.unwrap();
        match st {
            200 => ok += 1,
            403 => {
                assert_eq!(v, nest(403, "Max uses exceeded", "Forbidden"));
                refused += 1
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!((ok, refused), (3, 47));
    let token = v["streamToken"].as_str().unwrap();
    let (st, v, _) = get(
        &s.edge_url(&format!("/api/v2/streaming/verify?token={token}")),
        &[],
    )
    .await;
    assert_eq!((st, v), (403, nest(403, "Max uses exceeded", "Forbidden")));
    // An exhausted token plays by no other path either: segments need the credential
    // that only an admitted entry load hands out.
    let (st, v, _) = get(
        &s.edge_url(&format!(
            "/stream/movie-premium/video/seg_1.m4s?token={token}"
        )),
        &[],
    )
    .await;
    assert_eq!(
        (st, v),
        (403, nest(403, "Playback credential required", "Forbidden"))
    );
}

#[tokio::test]
async fn ip_binding_direct_and_behind_a_trusted_proxy() {
    let o = origin();
    let user = user_jwt("u", json!(false));
    // Direct: X-Forwarded-For from an untrusted peer is ignored both ways.
    let s = Sluice::start(&config(&o, ""));
    let v = issue(&s, &user, "6a1f0c1e-free", Some("203.0.113.7")).await;
    assert_eq!(
        claims_of(v["streamToken"].as_str().unwrap())["ipAddress"],
        "127.0.0.1"
    );
    let url = v["streamUrl"].as_str().unwrap().to_string();
    let (st, _, _) = get(&url, &[("x-forwarded-for", "198.51.100.1")]).await;
    assert_eq!(st, 200);
    drop(s);

    // Behind a trusted proxy: the client is the X-Forwarded-For hop.
    let s = Sluice::start(&config(&o, "trusted_proxies: [127.0.0.1]\n"));
    let v = issue(&s, &user, "6a1f0c1e-free", Some("203.0.113.7")).await;
    let token = v["streamToken"].as_str().unwrap();
    assert_eq!(claims_of(token)["ipAddress"], "203.0.113.7");
    let url = v["streamUrl"].as_str().unwrap().to_string();
    let (st, _, _) = get(&url, &[("x-forwarded-for", "203.0.113.7")]).await;
    assert_eq!(st, 200);
    let (st, v, _) = get(&url, &[("x-forwarded-for", "198.51.100.1")]).await;
    assert_eq!((st, v), (403, nest(403, "IP mismatch", "Forbidden")));
    // The proxy itself (no header) is not the client the token was issued to.
    let (st, v, _) = get(&url, &[]).await;
    assert_eq!((st, v), (403, nest(403, "IP mismatch", "Forbidden")));
    // A refused request spent no use.
    let (_, v, _) = get(
        &s.edge_url(&format!("/api/v2/streaming/verify?token={token}")),
        &[],
    )
    .await;
    assert_eq!(v["remainingUses"], 4);
}

#[tokio::test]
async fn revoke_then_reuse_is_gone_even_after_restart() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let owner = user_jwt("owner", json!(false));
    let v = issue(&s, &owner, "6a1f0c1e-free", None).await;
    let token = v["streamToken"].as_str().unwrap().to_string();
    let url = v["streamUrl"].as_str().unwrap().to_string();
    assert_eq!(get(&url, &[]).await.0, 200);

    let revoke = s.edge_url("/api/v2/streaming/revoke");
    let (st, _) = post(revoke.clone(), None, json!({"streamToken": token}), None).await;
    assert_eq!(st, 401);
    let (st, _) = post(
        revoke.clone(),
        Some(&user_jwt("someone-else", json!(false))),
        json!({"streamToken": token}),
        None,
    )
    .await;
    assert_eq!(st, 403);
    let (st, v) = post(
        revoke.clone(),
        Some(&owner),
        json!({"streamToken": token}),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["revoked"], true);

    let gone = nest(410, "Token revoked", "Gone");
    let (st, v, _) = get(&url, &[]).await;
    assert_eq!((st, v), (410, gone.clone()));
    let (st, v, _) = get(
        &s.edge_url(&format!("/stream/movie-free/video/seg_1.m4s?token={token}")),
        &[],
    )
    .await;
    assert_eq!((st, v), (410, gone.clone()));
    let verify = s.edge_url(&format!("/api/v2/streaming/verify?token={token}"));
    let (st, v, _) = get(&verify, &[]).await;
    assert_eq!((st, v), (410, gone.clone()));

    let cfg = config(&o, "");
    let dir = s.stop_keep_dir();
    let s = Sluice::start_in(dir, &cfg, &[]);
    let url = url.replace(&url[7..url.find("/stream").unwrap()], &s.edge.to_string());
    let (st, v, _) = get(&url, &[]).await;
    assert_eq!((st, v), (410, gone));
}

#[tokio::test]
async fn drm_license_is_forwarded() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let url = s.edge_url("/api/v2/streaming/drm/license");
    let sub = user_jwt("u", json!(true));
    let challenge = base64::engine::general_purpose::STANDARD.encode(b"CHALLENGE");
    let (st, v) = post(
        url.clone(),
        Some(&sub),
        json!({"contentId": "9b2e-premium", "drmType": "widevine", "challenge": challenge}),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["license"],
        base64::engine::general_purpose::STANDARD.encode([1u8, 2, 3, 4])
    );
    let seen = o
        .requests()
        .into_iter()
        .find(|r| r.path_and_query == "/license/wv")
        .unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.headers.get("x-license-key").map(String::as_str),
        Some("lic-123")
    );
    assert_eq!(
        seen.headers.get("content-length").map(String::as_str),
        Some("9")
    );

    // Upstream failure: 502 in the surface's shape.
    let (st, v) = post(
        url.clone(),
        Some(&sub),
        json!({"contentId": "9b2e-premium", "drmType": "playready", "challenge": challenge}),
        None,
    )
    .await;
    assert_eq!(
        (st, v),
        (502, nest(502, "License server error", "Bad Gateway"))
    );
    // Not configured for this content, no auth, no subscription.
    let (st, _) = post(
        url.clone(),
        Some(&sub),
        json!({"contentId": "9b2e-premium", "drmType": "fairplay", "challenge": challenge}),
        None,
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = post(
        url.clone(),
        None,
        json!({"contentId": "9b2e-premium", "drmType": "widevine", "challenge": challenge}),
        None,
    )
    .await;
    assert_eq!(st, 401);
    let (st, v) = post(
        url,
        Some(&user_jwt("u", json!(false))),
        json!({"contentId": "9b2e-premium", "drmType": "widevine", "challenge": challenge}),
        None,
    )
    .await;
    assert_eq!(
        (st, v),
        (403, nest(403, "Subscription required", "Forbidden"))
    );
}

//! The stream-token gate under attack (issue 10): every gate question is decided on the
//! canonical path that is fetched, a stream token opens only the entry playlist, what it
//! links to needs the playback credential minted into that playlist, failed loads and HEADs
//! spend nothing, revocations outlive the leeway, device binding needs the header on the
//! entry load, stream-id aliases cannot unlock gated content, and the token's quality limits
//! the variants a player can reach.

mod common;

use std::time::Duration;

use common::{admin_key, client, Reply, Sluice, TestOrigin};
use serde_json::{json, Value};

const STREAM_SECRET: &str = "gate-stream-secret-0123456789";

const MASTER: &str = "#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360
v360/playlist.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720
v720/playlist.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080
v1080/playlist.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=14000000,RESOLUTION=3840x2160
v2160/playlist.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=9000000
vnores/playlist.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=200000,RESOLUTION=1280x720,URI=\"v720/iframes.m3u8\"
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=400000,RESOLUTION=1920x1080,URI=\"v1080/iframes.m3u8\"
";

fn media_playlist() -> &'static str {
    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2,\nseg_1.m4s\n#EXT-X-ENDLIST\n"
}

const VARIANTS: [&str; 5] = ["v360", "v720", "v1080", "v2160", "vnores"];

fn origin() -> common::RunningOrigin {
    let hls = "application/vnd.apple.mpegurl";
    let mut o = TestOrigin::new();
    for hash in ["movie-gated", "movie-open", "movie-dash"] {
        o = o.route(&format!("/{hash}/master.m3u8"), Reply::ok(MASTER, hls));
        for v in VARIANTS {
            o = o
                .route(
                    &format!("/{hash}/{v}/playlist.m3u8"),
                    Reply::ok(media_playlist(), hls),
                )
                .route(
                    &format!("/{hash}/{v}/iframes.m3u8"),
                    Reply::ok(media_playlist(), hls),
                )
                .route(
                    &format!("/{hash}/{v}/seg_1.m4s"),
                    Reply::ok(vec![1u8; 500], "video/iso.segment"),
                )
                .route(
                    &format!("/{hash}/{v}/init.mp4"),
                    Reply::ok(vec![2u8; 100], "video/mp4"),
                );
        }
    }
    o.route(
        "/movie-dash/manifest.mpd",
        Reply::ok(
            "<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"static\"><Period><AdaptationSet><SegmentTemplate media=\"v720/seg_$Number$.m4s\" initialization=\"v720/init.mp4\" startNumber=\"1\"/><Representation id=\"a\" bandwidth=\"1\"/></AdaptationSet></Period></MPD>\n",
            "application/dash+xml",
        ),
    )
    .route(
        "/movie-dash/v720/seg_1.m4s",
        Reply::ok(vec![3u8; 300], "video/iso.segment"),
    )
    .start()
}

/// A content whose entry is a DASH manifest (appended to `streaming.contents`).
const DASH_CONTENT: &str = "    - id: dash\n      hash: movie-dash\n      entry: manifest.mpd\n      token_required: true\n";

fn config(origin: &common::RunningOrigin, extra: &str) -> String {
    format!(
        r#"origins:
  bucket: {url}
trusted_proxies: [127.0.0.1]
streaming:
  secret: {STREAM_SECRET}
  contents:
    - id: gated
      hash: movie-gated
      token_required: true
      max_uses: 2
    - id: missing
      hash: movie-missing
      token_required: true
      max_uses: 1
{extra}"#,
        url = origin.url()
    )
}

async fn issue(s: &Sluice, content: &str, body: Value, headers: &[(&str, &str)]) -> Value {
    let key = admin_key(s);
    let mut b = json!({"contentId": content});
    if let (Some(o), Some(extra)) = (b.as_object_mut(), body.as_object()) {
        for (k, v) in extra {
            o.insert(k.clone(), v.clone());
        }
    }
    let mut r = client()
        .post(s.edge_url("/api/v2/streaming/token"))
        .bearer_auth(&key)
        .json(&b);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

async fn token(s: &Sluice, content: &str) -> String {
    issue(s, content, json!({}), &[]).await["streamToken"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn get(s: &Sluice, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut r = client().get(s.edge_url(path));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn status(s: &Sluice, path: &str) -> u16 {
    get(s, path, &[]).await.0
}

async fn remaining(s: &Sluice, token: &str) -> Value {
    let (st, body) = get(s, &format!("/api/v2/streaming/verify?token={token}"), &[]).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    if st == 200 {
        v["remainingUses"].clone()
    } else {
        v["message"].clone()
    }
}

/// URIs of a playlist: URI lines and `URI="…"` attributes, in order.
fn uris(playlist: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in playlist.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(i) = line.find("URI=\"") {
            let rest = &line[i + 5..];
            out.push(rest[..rest.find('"').unwrap()].to_string());
        } else if !line.starts_with('#') {
            out.push(line.to_string());
        }
    }
    out
}

fn absolute(base: &str, uri: &str) -> String {
    let base = url::Url::parse(&format!("http://x{base}")).unwrap();
    let u = base.join(uri).unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

/// Play as a player would: the entry playlist with the token, then every linked playlist
/// and every segment with the URIs the playlists give. Returns the master's text.
async fn play(s: &Sluice, token: &str, headers: &[(&str, &str)]) -> String {
    let entry = format!("/stream/movie-gated/master.m3u8?token={token}");
    let (st, master) = get(s, &entry, headers).await;
    assert_eq!(st, 200, "{master}");
    for u in uris(&master) {
        assert!(
            !u.contains("token="),
            "raw token leaked into a child URI: {u}"
        );
        assert!(
            u.contains("pc="),
            "child URI without a playback credential: {u}"
        );
        let child = absolute("/stream/movie-gated/master.m3u8", &u);
        let (st, media) = get(s, &child, &[]).await;
        assert_eq!(st, 200, "{child}: {media}");
        for su in uris(&media) {
            let seg = absolute(child.split('?').next().unwrap(), &su);
            assert!(seg.contains("pc="), "{seg}");
            assert_eq!(status(s, &seg).await, 200, "{seg}");
        }
    }
    master
}

#[tokio::test]
async fn entry_spellings_all_spend_the_same_uses() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let t = token(&s, "gated").await;
    assert_eq!(
        status(&s, &format!("/stream/movie-gated/master.m3u8?token={t}")).await,
        200
    );
    assert_eq!(remaining(&s, &t).await, json!(1));
    assert_eq!(
        status(&s, &format!("/stream/movie-gated/master%2Em3u8?token={t}")).await,
        200
    );
    assert_eq!(remaining(&s, &t).await, json!("Max uses exceeded"));
    for spelling in [
        "/stream/movie-gated/master.m3u8",
        "/stream/MOVIE-GATED/master.m3u8",
        "/stream/movie-gated/master%2Em3u8",
        "/stream/movie-gated/maste%72.m3u8",
        "/stream/movie-gated/%6Daster.m3u8",
        "/stream/movie-g%61ted/master.m3u8",
        "/stream/%6Dovie-gated/master.m3u8",
    ] {
        let (st, body) = get(&s, &format!("{spelling}?token={t}"), &[]).await;
        assert_eq!(st, 403, "{spelling} served with an exhausted token: {body}");
        assert!(body.contains("Max uses exceeded"), "{spelling}: {body}");
    }
}

#[tokio::test]
async fn a_raw_token_opens_only_the_entry_playlist() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    // Never started: no child, no segment, whatever the spelling.
    let fresh = token(&s, "gated").await;
    for path in [
        "/stream/movie-gated/v720/playlist.m3u8",
        "/stream/movie-gated/v720/seg_1.m4s",
        "/stream/movie-gated/v720/init.mp4",
        "/stream/movie-g%61ted/v720/seg_1.m4s",
    ] {
        let st = status(&s, &format!("{path}?token={fresh}")).await;
        assert_eq!(st, 403, "{path} served to a never-started token");
        let st = get(&s, path, &[("cookie", &format!("stream_token={fresh}"))])
            .await
            .0;
        assert_eq!(st, 403, "{path} served to a token in a cookie");
    }
    assert_eq!(remaining(&s, &fresh).await, json!(2));

    // Exhausted: two playbacks, then nothing plays by any path.
    play(&s, &fresh, &[]).await;
    play(&s, &fresh, &[]).await;
    assert_eq!(remaining(&s, &fresh).await, json!("Max uses exceeded"));
    for path in [
        "/stream/movie-gated/master.m3u8",
        "/stream/movie-gated/v720/playlist.m3u8",
        "/stream/movie-gated/v720/seg_1.m4s",
    ] {
        assert_eq!(
            status(&s, &format!("{path}?token={fresh}")).await,
            403,
            "{path}"
        );
    }
    // A forged or altered credential is refused.
    let (_, master) = get(
        &s,
        &format!(
            "/stream/movie-gated/master.m3u8?token={}",
            token(&s, "gated").await
        ),
        &[],
    )
    .await;
    let child = uris(&master).remove(0);
    let child = absolute("/stream/movie-gated/master.m3u8", &child);
    assert_eq!(status(&s, &child).await, 200);
    let mut tampered = child.clone().into_bytes();
    let at = tampered.len() - 3;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    assert_eq!(status(&s, &String::from_utf8(tampered).unwrap()).await, 403);
    assert_eq!(status(&s, child.split('?').next().unwrap()).await, 401);
}

#[tokio::test]
async fn failed_and_head_loads_spend_nothing_and_counting_is_exact() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    // The origin has no master for this content: a 404 spends nothing.
    let t = token(&s, "missing").await;
    for _ in 0..3 {
        assert_eq!(
            status(&s, &format!("/stream/movie-missing/master.m3u8?token={t}")).await,
            404
        );
    }
    assert_eq!(remaining(&s, &t).await, json!(1));
    // HEAD spends nothing either.
    let t = token(&s, "gated").await;
    for _ in 0..3 {
        let r = client()
            .head(s.edge_url(&format!("/stream/movie-gated/master.m3u8?token={t}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    assert_eq!(remaining(&s, &t).await, json!(2));
    // 40 concurrent starts of a 2-use token: exactly 2 play.
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let url = s.edge_url(&format!("/stream/movie-gated/master.m3u8?token={t}"));
        tasks.push(tokio::spawn(async move {
            client().get(url).send().await.unwrap().status().as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 2);
    assert_eq!(remaining(&s, &t).await, json!("Max uses exceeded"));
}

#[tokio::test]
async fn revocation_holds_through_the_leeway_and_a_restart() {
    let o = origin();
    let cfg = config(&o, "  token_ttl: 1s\n  leeway: 60s\n");
    let s = Sluice::start(&cfg);
    let key = admin_key(&s);
    let t = token(&s, "gated").await;
    let r = client()
        .post(s.edge_url("/api/v2/streaming/revoke"))
        .bearer_auth(&key)
        .json(&json!({"streamToken": t}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Past exp, inside the leeway: still revoked.
    assert_eq!(
        status(&s, &format!("/stream/movie-gated/master.m3u8?token={t}")).await,
        410
    );
    let dir = s.stop_keep_dir();
    let s = Sluice::start_in(dir, &cfg, &[]);
    assert_eq!(
        status(&s, &format!("/stream/movie-gated/master.m3u8?token={t}")).await,
        410
    );
}

#[tokio::test]
async fn device_bound_tokens_need_the_header_on_the_entry_load() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let bound = issue(&s, "gated", json!({"deviceId": "dev-1"}), &[]).await["streamToken"]
        .as_str()
        .unwrap()
        .to_string();
    let entry = format!("/stream/movie-gated/master.m3u8?token={bound}");
    let (st, body) = get(&s, &entry, &[]).await;
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("Device mismatch"), "{body}");
    assert_eq!(get(&s, &entry, &[("x-device-id", "dev-2")]).await.0, 403);
    assert_eq!(remaining(&s, &bound).await, json!(2));
    // With the header on the entry load only, the whole playback works.
    let master = play(&s, &bound, &[("x-device-id", "dev-1")]).await;
    // A child load announcing another device is refused.
    let child = absolute("/stream/movie-gated/master.m3u8", &uris(&master)[0]);
    assert_eq!(get(&s, &child, &[("x-device-id", "dev-2")]).await.0, 403);
    // A token minted without a device is not bound.
    let free = token(&s, "gated").await;
    play(&s, &free, &[]).await;
}

#[tokio::test]
async fn stream_id_aliases_cannot_skip_the_gate_or_shadow_content() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let key = admin_key(&s);
    let add = |publisher: &str, player: &str| {
        let key = key.clone();
        let url = s.admin_url("/api/stream-ids");
        let body = json!({"publisher": publisher, "player": player});
        async move {
            let r = client()
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(add("movie-gated", "alias").await.0, 200);
    // The alias resolves to gated content: the gate applies.
    assert_eq!(status(&s, "/stream/alias/master.m3u8").await, 401);
    assert_eq!(status(&s, "/stream/alias/v720/seg_1.m4s").await, 401);
    let t = token(&s, "gated").await;
    let (st, master) = get(&s, &format!("/stream/alias/master.m3u8?token={t}"), &[]).await;
    assert_eq!(st, 200, "{master}");
    assert_eq!(remaining(&s, &t).await, json!(1));
    let child = absolute("/stream/alias/master.m3u8", &uris(&master)[0]);
    assert_eq!(status(&s, &child).await, 200, "{child}");
    // A player id may not shadow a configured content or a registered publisher.
    let (st, body) = add("movie-open", "movie-gated").await;
    assert_eq!(st, 409, "{body}");
    assert!(body.contains("movie-gated"), "{body}");
    assert_eq!(add("movie-open", "movie-missing").await.0, 409);
    assert_eq!(add("somewhere", "movie-gated-not").await.0, 200);
    let (st, body) = add("movie-open", "somewhere").await;
    assert_eq!(st, 409, "{body}");
    // The content is still gated at its own hash, in any case spelling (an origin may
    // ignore case), and a player id may not shadow it in another case either.
    assert_eq!(status(&s, "/stream/movie-gated/master.m3u8").await, 401);
    assert_eq!(status(&s, "/stream/Movie-Gated/master.m3u8").await, 401);
    assert_eq!(add("movie-open", "MOVIE-GATED").await.0, 409);
}

#[tokio::test]
async fn a_stream_id_cannot_take_over_an_existing_folder_of_a_dir_bucket() {
    let media = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(media.path().join("existing")).unwrap();
    std::fs::write(media.path().join("existing/a.m3u8"), "#EXTM3U\n").unwrap();
    let s = Sluice::start(&format!(
        "origins:\n  bucket: dir:{}\n",
        media.path().display()
    ));
    let key = admin_key(&s);
    let r = client()
        .post(s.admin_url("/api/stream-ids"))
        .bearer_auth(&key)
        .json(&json!({"publisher": "other", "player": "existing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert_eq!(status(&s, "/stream/existing/a.m3u8").await, 200);
}

#[tokio::test]
async fn quality_limits_the_variants_a_token_reaches() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let t = issue(&s, "gated", json!({"quality": "720p"}), &[]).await["streamToken"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, master) = get(
        &s,
        &format!("/stream/movie-gated/master.m3u8?token={t}"),
        &[],
    )
    .await;
    assert_eq!(st, 200);
    let listed: Vec<String> = uris(&master)
        .iter()
        .map(|u| {
            let p = u.split('?').next().unwrap();
            p.strip_prefix("/stream/movie-gated/")
                .unwrap_or(p)
                .to_string()
        })
        .collect();
    assert_eq!(
        listed,
        [
            "v360/playlist.m3u8",
            "v720/playlist.m3u8",
            "v720/iframes.m3u8"
        ],
        "{master}"
    );
    assert!(
        !master.contains("1920x1080") && !master.contains("BANDWIDTH=9000000"),
        "{master}"
    );
    // The excluded variants cannot be reached with any credential and proof of this master.
    for u in uris(&master) {
        let cred = u.split_once('?').unwrap().1.to_string();
        for v in ["v1080", "v2160", "vnores"] {
            for f in ["playlist.m3u8", "seg_1.m4s", "iframes.m3u8"] {
                let p = format!("/stream/movie-gated/{v}/{f}?{cred}");
                assert_eq!(status(&s, &p).await, 403, "{p}");
            }
        }
    }
    // The allowed ones can, down to their segments.
    let (st, media) = get(
        &s,
        &absolute("/stream/movie-gated/master.m3u8", &uris(&master)[1]),
        &[],
    )
    .await;
    assert_eq!(st, 200);
    for u in uris(&media) {
        let p = absolute("/stream/movie-gated/v720/playlist.m3u8", &u);
        assert_eq!(status(&s, &p).await, 200, "{p}");
    }
    // The segment credential of one variant does not open another.
    let seg_cred = uris(&media)[1].split_once('?').unwrap().1.to_string();
    assert_eq!(
        status(
            &s,
            &format!("/stream/movie-gated/v1080/seg_1.m4s?{seg_cred}")
        )
        .await,
        403
    );
    // `auto` lists everything.
    let all = issue(&s, "gated", json!({"quality": "auto"}), &[]).await["streamToken"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, master) = get(
        &s,
        &format!("/stream/movie-gated/master.m3u8?token={all}"),
        &[],
    )
    .await;
    assert_eq!(uris(&master).len(), 7, "{master}");
}

#[tokio::test]
async fn a_playback_outlives_its_token_but_not_a_revocation() {
    let o = origin();
    let s = Sluice::start(&config(&o, "  token_ttl: 2s\n"));
    let key = admin_key(&s);
    let t = token(&s, "gated").await;
    let (_, master) = get(
        &s,
        &format!("/stream/movie-gated/master.m3u8?token={t}"),
        &[],
    )
    .await;
    let child = absolute("/stream/movie-gated/master.m3u8", &uris(&master)[1]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The token is expired: no new playback, but the started one goes on.
    assert_eq!(
        status(&s, &format!("/stream/movie-gated/master.m3u8?token={t}")).await,
        401
    );
    let (st, media) = get(&s, &child, &[]).await;
    assert_eq!(st, 200, "{media}");
    let seg = absolute(child.split('?').next().unwrap(), &uris(&media)[1]);
    assert_eq!(status(&s, &seg).await, 200);
    // Revoking an expired token still ends its playbacks.
    let t2 = token(&s, "gated").await;
    let (_, master2) = get(
        &s,
        &format!("/stream/movie-gated/master.m3u8?token={t2}"),
        &[],
    )
    .await;
    let child2 = absolute("/stream/movie-gated/master.m3u8", &uris(&master2)[1]);
    assert_eq!(status(&s, &child2).await, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = client()
        .post(s.edge_url("/api/v2/streaming/revoke"))
        .bearer_auth(&key)
        .json(&json!({"streamToken": t2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    assert_eq!(status(&s, &child2).await, 410);
}

#[tokio::test]
async fn a_content_names_its_own_entry() {
    let o = origin();
    let s = Sluice::start(&config(&o, DASH_CONTENT));
    let v = issue(&s, "dash", json!({}), &[]).await;
    let url = v["streamUrl"].as_str().unwrap();
    assert!(
        url.contains("/stream/movie-dash/manifest.mpd?token="),
        "{url}"
    );
    let t = v["streamToken"].as_str().unwrap();
    // master.m3u8 is not this content's entry: a raw token does not open it.
    assert_eq!(
        status(&s, &format!("/stream/movie-dash/master.m3u8?token={t}")).await,
        403
    );
    let (st, mpd) = get(
        &s,
        &format!("/stream/movie-dash/manifest.mpd?token={t}"),
        &[],
    )
    .await;
    assert_eq!(st, 200, "{mpd}");
    assert_eq!(remaining(&s, t).await, json!(4));
    // The manifest's segment template carries the credential, and it opens the segments.
    let media = mpd
        .split("media=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(media.contains("pc="), "{mpd}");
    let seg = absolute(
        "/stream/movie-dash/manifest.mpd",
        &media.replace("$Number$", "1").replace("&amp;", "&"),
    );
    assert_eq!(status(&s, &seg).await, 200, "{seg}");
}

#[tokio::test]
async fn forwarded_for_is_read_from_every_header_line() {
    // Behind a proxy that appends its own X-Forwarded-For line, a client cannot pick its
    // address by sending one first: the token binds the address the proxy saw.
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let v = issue(
        &s,
        "gated",
        json!({}),
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ],
    )
    .await;
    let claims = v["streamToken"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_string();
    use base64::Engine as _;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["ipAddress"], "198.51.100.7");
}

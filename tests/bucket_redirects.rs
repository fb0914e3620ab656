//! The bucket's redirects on `/stream` (issue 22, "Connections and redirects"), against the
//! real binary with a real origin: sluice follows a redirect that stays on the bucket's origin
//! and in the content asked for (bounded hops, the same path rules) and stores the answer under the URL the player asked
//! for; it refuses any other with a `502` in the playback error shape, logged with the
//! target's host only. Players never see a `3xx`. Every request that asks the bucket obeys:
//! a player's miss (HTTP/1.1 and HTTP/2, whose fill runs apart from the viewer), a gated
//! playlist's fill and prefetch (and a fleet owner's fetch: `tests/fleet.rs`,
//! `an_owner_follows_the_buckets_redirect_for_the_fleet`).
//!
//! Before: the `3xx` went to the player as the bucket sent it — an absolute `Location` showed
//! the bucket's address and sent players around sluice, a relative one resolved against
//! `/stream/…` to a 404, and redirects were never cached (each play asked the bucket again).

mod common;

use std::time::Duration;

use common::{client, h2_connect, random_bytes, Reply, Sluice, TestOrigin};

fn redirect(status: u16, location: &str) -> Reply {
    Reply::status(status).header("location", location)
}

async fn get(s: &Sluice, path: &str) -> (u16, reqwest::header::HeaderMap, bytes::Bytes) {
    let r = client().get(s.edge_url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap())
}

/// Absolute, relative and chained redirects on the bucket's origin are followed; players get
/// the object at the URL they asked for, and the second play is a hit: neither the redirect
/// nor its target is asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_follows_the_buckets_own_redirects_and_caches_the_answer_under_the_asked_url() {
    let seg1 = random_bytes(200_000, 1);
    let seg2 = random_bytes(50_000, 2);
    let seg3 = random_bytes(30_000, 3);
    let o = TestOrigin::new()
        .route(
            "/media/h/store/seg_1.m4s",
            Reply::ok(seg1.clone(), "video/iso.segment"),
        )
        // Relative, from a 301 (permanent: the kind players were told to remember).
        .route("/media/h/v/seg_2.m4s", redirect(301, "../store/seg_2.m4s"))
        .route(
            "/media/h/store/seg_2.m4s",
            Reply::ok(seg2.clone(), "video/iso.segment"),
        )
        // A chain: 307 → 308 → 303 → object, with the bucket's own query on the way.
        .route(
            "/media/h/v/seg_3.m4s",
            redirect(307, "/media/h/a/seg_3.m4s"),
        )
        .route(
            "/media/h/a/seg_3.m4s",
            redirect(308, "/media/h/b/seg_3.m4s?versionId=7"),
        )
        .route(
            "/media/h/b/seg_3.m4s",
            redirect(303, "/media/h/store/seg_3.m4s"),
        )
        .route(
            "/media/h/store/seg_3.m4s",
            Reply::ok(seg3.clone(), "video/iso.segment"),
        )
        // A playlist moved within its directory: its relative URIs still mean the same.
        .route("/media/h/v/index.m3u8", redirect(302, "index_v2.m3u8"))
        .route(
            "/media/h/v/index_v2.m3u8",
            Reply::ok(
                "#EXTM3U\n#EXTINF:2,\nseg_1.m4s\n",
                "application/vnd.apple.mpegurl",
            ),
        )
        .start();
    // Absolute, naming the bucket by its own address (what S3 website redirects send).
    o.set_route(
        "/media/h/v/seg_1.m4s",
        redirect(302, &format!("{}/media/h/store/seg_1.m4s", o.url())),
    );
    let s = Sluice::start(&format!("origins:\n  bucket: {}/media\n", o.url()));
    for (name, want) in [("seg_1", &seg1), ("seg_2", &seg2), ("seg_3", &seg3)] {
        for play in 0..2 {
            let (status, h, body) = get(&s, &format!("/stream/h/v/{name}.m4s")).await;
            assert_eq!(status, 200, "{name}, play {play}: {h:?}");
            assert!(h.get("location").is_none(), "{name}: {h:?}");
            assert_eq!(body.len(), want.len(), "{name}, play {play}");
            assert!(body == *want, "{name}, play {play}: not the object's bytes");
            let cache = h["x-cache-status"].to_str().unwrap();
            assert_eq!(cache, if play == 0 { "miss" } else { "hit" }, "{name}");
        }
    }
    let (status, h, body) = get(&s, "/stream/h/v/index.m3u8").await;
    assert_eq!(status, 200, "{h:?}");
    assert_eq!(&body[..], b"#EXTM3U\n#EXTINF:2,\nseg_1.m4s\n");
    for p in [
        "/media/h/v/index.m3u8",
        "/media/h/v/index_v2.m3u8",
        "/media/h/v/seg_1.m4s",
        "/media/h/store/seg_1.m4s",
        "/media/h/v/seg_2.m4s",
        "/media/h/store/seg_2.m4s",
        "/media/h/v/seg_3.m4s",
        "/media/h/a/seg_3.m4s",
        "/media/h/b/seg_3.m4s",
        "/media/h/store/seg_3.m4s",
    ] {
        assert_eq!(o.hits(p), 1, "{p} asked again");
    }
    // The bucket's own query went with its redirect; the player's Host never did.
    let reqs = o.requests();
    assert!(reqs
        .iter()
        .any(|r| r.path_and_query == "/media/h/b/seg_3.m4s?versionId=7"));
}

/// Redirects sluice does not follow are a `502` JSON answer, and the target is never asked:
/// off the bucket's origin (another host — with a signature in its query, which the log must
/// not show —, the bucket's host on another scheme), outside the bucket's prefix, a path
/// `/stream` refuses, another kind of object, no `Location`, a loop past the hop bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_refuses_other_redirects_with_a_502_and_never_asks_their_target() {
    let elsewhere = TestOrigin::new()
        .route(
            "/media/h/x.m4s",
            Reply::ok(random_bytes(1000, 9), "video/iso.segment"),
        )
        .start_on("127.0.0.2");
    let o = TestOrigin::new()
        .route(
            "/media/h/off.m4s",
            redirect(
                302,
                &format!(
                    "{}/media/h/x.m4s?X-Amz-Signature=SECRETSIG",
                    elsewhere.url()
                ),
            ),
        )
        .route("/media/h/outside.m4s", redirect(302, "/private/h/x.m4s"))
        .route(
            "/private/h/x.m4s",
            Reply::ok("private", "video/iso.segment"),
        )
        .route("/media/h/badpath.m4s", redirect(302, "/media/h/passwd"))
        .route("/media/h/passwd", Reply::ok("root:x", "text/plain"))
        .route("/media/h/kind.m4s", redirect(302, "/media/h/live.m3u8"))
        .route(
            "/media/h/live.m3u8",
            Reply::ok("#EXTM3U\n", "application/vnd.apple.mpegurl"),
        )
        .route("/media/h/nolocation.m4s", Reply::status(302))
        // Another content's object (gated, maybe): the gate decided on `h`.
        .route("/media/h/other.m4s", redirect(302, "/media/gated/x.m4s"))
        .route(
            "/media/gated/x.m4s",
            Reply::ok("gated", "video/iso.segment"),
        )
        // A playlist moved to another directory: served at the asked URL, its relative URIs
        // would name other objects.
        .route("/media/h/moved.m3u8", redirect(302, "v2/moved.m3u8"))
        .route(
            "/media/h/v2/moved.m3u8",
            Reply::ok("#EXTM3U\n", "application/vnd.apple.mpegurl"),
        )
        .route("/media/h/loop_a.m4s", redirect(302, "loop_b.m4s"))
        .route("/media/h/loop_b.m4s", redirect(302, "loop_a.m4s"))
        .start();
    o.set_route(
        "/media/h/scheme.m4s",
        redirect(302, &format!("https://{}/media/h/x.m4s", o.addr)),
    );
    let s = Sluice::start(&format!("origins:\n  bucket: {}/media\n", o.url()));
    for name in [
        "off.m4s",
        "scheme.m4s",
        "outside.m4s",
        "badpath.m4s",
        "kind.m4s",
        "nolocation.m4s",
        "other.m4s",
        "loop_a.m4s",
        "moved.m3u8",
    ] {
        let (status, h, body) = get(&s, &format!("/stream/h/{name}")).await;
        assert_eq!(status, 502, "{name}: {h:?}");
        assert!(h.get("location").is_none(), "{name}: {h:?}");
        assert_eq!(h["content-type"], "application/json", "{name}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["error"].is_string(), "{name}: {v}");
    }
    assert_eq!(elsewhere.total_hits(), 0, "a refused target was asked");
    for p in [
        "/private/h/x.m4s",
        "/media/h/passwd",
        "/media/h/live.m3u8",
        "/media/h/v2/moved.m3u8",
        "/media/gated/x.m4s",
    ] {
        assert_eq!(o.hits(p), 0, "{p} was asked");
    }
    // The loop: the first request and five followed hops, then refused.
    assert_eq!(
        o.hits("/media/h/loop_a.m4s") + o.hits("/media/h/loop_b.m4s"),
        6
    );
    // A refusal is not stored: asked again, the bucket is asked again.
    let (status, _, _) = get(&s, "/stream/h/off.m4s").await;
    assert_eq!(status, 502);
    assert_eq!(o.hits("/media/h/off.m4s"), 2);
    // Logged with the target's host, never its query.
    let log = s.log();
    assert!(
        log.contains("redirected off its origin (to host 127.0.0.2)"),
        "{log}"
    );
    assert!(!log.contains("SECRETSIG"), "the signature was logged");
}

/// An HTTP/2 viewer's object is filled apart from it (a background fill): that fill follows
/// the bucket's redirect too, and the viewer reads the target's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_viewers_fill_follows_the_buckets_redirect() {
    let p = common::pki();
    let seg = random_bytes(300_000, 4);
    let o = TestOrigin::new()
        .route("/h/v/seg_1.m4s", redirect(302, "/h/store/seg_1.m4s"))
        .route(
            "/h/store/seg_1.m4s",
            Reply::ok(seg.clone(), "video/iso.segment"),
        )
        .start();
    let port = common::free_port();
    let s = Sluice::start_with_listen(
        &p.edge_tls(port),
        &format!("origins:\n  bucket: {}\n", o.url()),
    );
    for play in 0..2 {
        let send = h2_connect(&p, port).await;
        let mut send = send.ready().await.unwrap();
        let req = http::Request::get(format!("https://localhost:{port}/stream/h/v/seg_1.m4s"))
            .body(())
            .unwrap();
        let (resp, _) = send.send_request(req, true).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), resp)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), 200, "play {play}: {:?}", resp.headers());
        assert!(resp.headers().get("location").is_none());
        let mut body = resp.into_body();
        let mut got = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            got.extend_from_slice(&chunk);
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        assert!(got == seg, "play {play}: {} bytes", got.len());
    }
    assert_eq!(o.hits("/h/v/seg_1.m4s"), 1);
    assert_eq!(o.hits("/h/store/seg_1.m4s"), 1);
    drop(s);
}

/// Prefetch of a live playlist's newest segment follows the bucket's redirect: the player's
/// request for it is then a hit, and the bucket was asked once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_follows_the_buckets_redirect() {
    let live = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.0,\ns7.ts\n#EXTINF:2.0,\ns8.ts\n";
    let s8 = random_bytes(4096, 8);
    let o = TestOrigin::new()
        .route(
            "/h/v/live.m3u8",
            Reply::ok(live, "application/vnd.apple.mpegurl"),
        )
        .route("/h/v/s7.ts", Reply::ok(random_bytes(4096, 7), "video/mp2t"))
        .route("/h/v/s8.ts", redirect(302, "/h/moved/s8.ts"))
        .route("/h/moved/s8.ts", Reply::ok(s8.clone(), "video/mp2t"))
        .start();
    let s = Sluice::start(&format!("origins:\n  bucket: {}\n", o.url()));
    let (status, _, _) = get(&s, "/stream/h/v/live.m3u8").await;
    assert_eq!(status, 200);
    common::wait_for(
        "the newest segment prefetched through its redirect",
        Duration::from_secs(5),
        || o.hits("/h/moved/s8.ts") >= 1,
    );
    // The fill is stored once its body is in: the player's request is a hit (or waits on the
    // fill's lock), never a second trip to the bucket.
    let (status, h, body) = get(&s, "/stream/h/v/s8.ts").await;
    assert_eq!(status, 200, "{h:?}");
    assert!(body == s8);
    assert_eq!(o.hits("/h/v/s8.ts"), 1);
    assert_eq!(o.hits("/h/moved/s8.ts"), 1);
}

/// A gated playlist is answered from a fill subrequest and rewritten with the viewer's
/// credential: the fill follows the bucket's redirect (within the playlist's directory), and
/// the rewritten playlist's URIs open the objects beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_playlists_fill_follows_the_buckets_redirect() {
    let o = TestOrigin::new()
        .route("/movie/master.m3u8", redirect(302, "master_v2.m3u8"))
        .route(
            "/movie/master_v2.m3u8",
            Reply::ok(
                "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nv/index.m3u8\n",
                "application/vnd.apple.mpegurl",
            ),
        )
        .route(
            "/movie/v/index.m3u8",
            Reply::ok(
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns0.ts\n#EXT-X-ENDLIST\n",
                "application/vnd.apple.mpegurl",
            ),
        )
        .route(
            "/movie/v/s0.ts",
            Reply::ok(random_bytes(5000, 5), "video/mp2t"),
        )
        .start();
    let s = Sluice::start(&format!(
        "origins:\n  bucket: {}\nstreaming:\n  secret: bucket-redirect-secret-0123456789\n  contents:\n    - {{id: movie, hash: movie, entry: master.m3u8, token_required: true, max_uses: 4}}\n",
        o.url()
    ));
    let minted: serde_json::Value = client()
        .post(s.edge_url("/api/v2/streaming/token"))
        .bearer_auth(common::admin_key(&s))
        .json(&serde_json::json!({"contentId": "movie"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = minted["streamUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("{minted}"));
    let entry = url::Url::parse(entry)
        .map(|u| format!("{}?{}", u.path(), u.query().unwrap_or("")))
        .unwrap_or_else(|_| entry.to_string());
    let (status, h, body) = get(&s, &entry).await;
    assert_eq!(status, 200, "{h:?}");
    assert!(h.get("location").is_none(), "{h:?}");
    let master = String::from_utf8(body.to_vec()).unwrap();
    let variant = master
        .lines()
        .find(|l| l.contains("index.m3u8"))
        .unwrap_or_else(|| panic!("{master}"));
    let variant = if variant.starts_with('/') {
        variant.to_string()
    } else {
        format!("/stream/movie/{variant}")
    };
    let (status, h, body) = get(&s, &variant).await;
    assert_eq!(status, 200, "{variant}: {h:?}");
    assert!(String::from_utf8_lossy(&body).contains("s0.ts"));
    assert_eq!(o.hits("/movie/master.m3u8"), 1);
    assert_eq!(o.hits("/movie/master_v2.m3u8"), 1);
}

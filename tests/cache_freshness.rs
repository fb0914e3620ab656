//! Freshness as RFC 9111 says (issue 22), against the real binary with a real origin: what
//! players are told about an object's freshness, how an upstream `Age` counts, and which
//! objects may never be served stale.

mod common;

use std::time::Duration;

use common::{client, random_bytes, Reply, Sluice, TestOrigin};

fn cfg(origin: &common::RunningOrigin) -> String {
    format!("origins:\n  bucket: {}\n", origin.url())
}

/// What one GET answered: status, `Cache-Control`, `Age`, `x-cache-status`.
struct Seen {
    status: u16,
    cc: String,
    age: Option<u64>,
    cache: String,
}

async fn get(s: &Sluice, path: &str) -> Seen {
    let r = client().get(s.edge_url(path)).send().await.unwrap();
    let h = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let seen = Seen {
        status: r.status().as_u16(),
        cc: h("cache-control").unwrap_or_default(),
        age: h("age").map(|a| a.parse().expect("Age is delta-seconds")),
        cache: h("x-cache-status").unwrap_or_default(),
    };
    r.bytes().await.unwrap();
    seen
}

/// The `max-age` in a players' `Cache-Control`, if any.
fn max_age(cc: &str) -> Option<u64> {
    cc.split(',')
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .map(|v| v.parse().expect("max-age is delta-seconds"))
        .next()
}

/// An origin that says a segment is stale at once, or fresh for a while, is never contradicted:
/// players are told at most the origin's lifetime, never `immutable` (before: `max-age=0`,
/// a past `Expires` and `max-age=10` all went out as `public, max-age=31536000, immutable`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_are_never_told_an_object_is_fresher_than_the_origin_said() {
    let past = httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(3600));
    // (origin headers, the most max-age players may be told, a directive players must see)
    type Case<'a> = (Vec<(&'a str, &'a str)>, u64, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (vec![("cache-control", "max-age=0")], 0, None),
        (vec![("cache-control", "public, max-age=0")], 0, None),
        (vec![("expires", past.as_str())], 0, None),
        (vec![("expires", "0")], 0, None),
        (vec![("cache-control", "max-age=10")], 10, None),
        (
            vec![("cache-control", "max-age=30, must-revalidate")],
            30,
            Some("must-revalidate"),
        ),
        (vec![("cache-control", "no-cache")], 0, Some("no-cache")),
        (vec![("cache-control", "no-store")], 0, Some("no-store")),
        (
            vec![("cache-control", "private, max-age=600")],
            0,
            Some("private"),
        ),
    ];
    let mut origin = TestOrigin::new().route(
        "/h/v/plain.ts",
        Reply::ok(random_bytes(4096, 99), "video/mp2t"),
    );
    for (i, (headers, _, _)) in cases.iter().enumerate() {
        let mut reply = Reply::ok(random_bytes(4096, i as u64), "video/mp2t");
        for (k, v) in headers {
            reply = reply.header(k, v);
        }
        origin = origin.route(&format!("/h/v/c{i}.ts"), reply);
    }
    let o = origin.start();
    let s = Sluice::start(&cfg(&o));
    for (i, (headers, most, must)) in cases.iter().enumerate() {
        // Twice: the first answer (a miss) and the second (a hit, or another miss).
        for round in 0..2 {
            let seen = get(&s, &format!("/stream/h/v/c{i}.ts")).await;
            assert_eq!(seen.status, 200);
            let cc = &seen.cc;
            assert!(
                !cc.contains("immutable"),
                "{headers:?} round {round}: told {cc}"
            );
            if let Some(m) = max_age(cc) {
                assert!(m <= *most, "{headers:?} round {round}: told {cc}");
            } else {
                assert!(
                    cc.contains("no-cache") || cc.contains("no-store"),
                    "{headers:?} round {round}: told {cc}"
                );
            }
            if let Some(d) = must {
                assert!(cc.contains(d), "{headers:?} round {round}: told {cc}");
            }
        }
    }
    // Stale at once: never stored, each request goes to the origin.
    for i in 0..4 {
        assert_eq!(o.hits(&format!("/h/v/c{i}.ts")), 2, "case {i}");
    }
    // An origin that says nothing about freshness: the segment is immutable (playback-api).
    let seen = get(&s, "/stream/h/v/plain.ts").await;
    assert_eq!(seen.cc, "public, max-age=31536000, immutable");
}

/// An answer that was already `Age` seconds old upstream is fresh for `max-age - Age`, not
/// `max-age` (before: an `Age: 55, max-age=60` segment was served from the cache for 60 s);
/// one as old as its lifetime is not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_age_counts_against_freshness() {
    let o = TestOrigin::new()
        .route(
            "/h/v/aged.ts",
            Reply::ok(random_bytes(8192, 1), "video/mp2t")
                .header("cache-control", "max-age=60")
                .header("age", "57"),
        )
        .route(
            "/h/v/spent.ts",
            Reply::ok(random_bytes(8192, 2), "video/mp2t")
                .header("cache-control", "max-age=60")
                .header("age", "60"),
        )
        .start();
    let s = Sluice::start(&cfg(&o));
    assert_eq!(get(&s, "/stream/h/v/aged.ts").await.cache, "miss");
    // Stored: fresh for about 3 s more.
    assert_eq!(get(&s, "/stream/h/v/aged.ts").await.cache, "hit");
    assert_eq!(o.hits("/h/v/aged.ts"), 1);
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let seen = get(&s, "/stream/h/v/aged.ts").await;
    assert_ne!(seen.cache, "hit", "still fresh after max-age - Age");
    assert_eq!(o.hits("/h/v/aged.ts"), 2);

    for _ in 0..3 {
        assert_ne!(get(&s, "/stream/h/v/spent.ts").await.cache, "hit");
    }
    assert_eq!(
        o.hits("/h/v/spent.ts"),
        3,
        "an object as old as its lifetime is stale"
    );
}

/// The `Age` players see includes the upstream's and never goes backwards (before: `8` on the
/// miss, then `0`, `1`, … on hits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_age_players_see_includes_the_upstreams_and_never_decreases() {
    let o = TestOrigin::new()
        .route(
            "/h/v/a.ts",
            Reply::ok(random_bytes(8192, 3), "video/mp2t")
                .header("cache-control", "max-age=600")
                .header("age", "8"),
        )
        .start();
    let s = Sluice::start(&cfg(&o));
    let mut last = 0;
    for i in 0..4 {
        let seen = get(&s, "/stream/h/v/a.ts").await;
        assert_eq!(seen.status, 200);
        let age = seen.age.expect("an Age");
        assert!(age >= 8, "round {i} ({}): Age {age}", seen.cache);
        assert!(
            age >= last,
            "round {i} ({}): Age {age} after {last}",
            seen.cache
        );
        last = age;
        if i == 2 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    assert!(
        last >= 9,
        "a second later the object is a second older: {last}"
    );
    assert_eq!(o.hits("/h/v/a.ts"), 1);
}

/// `must-revalidate`, `proxy-revalidate` and `s-maxage` objects are never served stale once
/// expired, not even when the origin fails (RFC 9111 §4.2.4, §5.2.2.2, §5.2.2.8, §5.2.2.10);
/// `s-maxage` overrides `max-age` for sluice. Before (as nginx does): served `stale` on a 503.
/// An object without them is still served stale on an origin error (`cache.stale_if_error`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidate_and_s_maxage_objects_are_never_served_stale() {
    let strict = [
        ("must", "max-age=1, must-revalidate"),
        ("proxy", "max-age=1, proxy-revalidate"),
        ("shared", "s-maxage=1, max-age=600"),
    ];
    let mut origin = TestOrigin::new().route(
        "/h/v/lax.ts",
        Reply::ok(random_bytes(8192, 9), "video/mp2t").header("cache-control", "max-age=1"),
    );
    for (i, (name, cc)) in strict.iter().enumerate() {
        origin = origin.route(
            &format!("/h/v/{name}.ts"),
            Reply::ok(random_bytes(8192, i as u64), "video/mp2t").header("cache-control", cc),
        );
    }
    let o = origin.start();
    let s = Sluice::start(&cfg(&o));
    for name in ["lax", "must", "proxy", "shared"] {
        let path = format!("/stream/h/v/{name}.ts");
        assert_eq!(get(&s, &path).await.cache, "miss", "{name}");
        assert_eq!(get(&s, &path).await.cache, "hit", "{name}");
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;
    for name in ["lax", "must", "proxy", "shared"] {
        o.set_route(&format!("/h/v/{name}.ts"), Reply::status(503));
    }
    for (name, _) in strict {
        let seen = get(&s, &format!("/stream/h/v/{name}.ts")).await;
        assert_ne!(seen.cache, "stale", "{name} served stale");
        assert!(seen.status >= 500, "{name}: {}", seen.status);
        // Expired: the origin was asked (s-maxage=1 won over max-age=600).
        assert_eq!(o.hits(&format!("/h/v/{name}.ts")), 2, "{name}");
    }
    let seen = get(&s, "/stream/h/v/lax.ts").await;
    assert_eq!((seen.status, seen.cache.as_str()), (200, "stale"));
}

/// A live playlist the cache holds for half its target duration is never announced to players
/// as fresh for longer than the cache still holds it (before: `max-age=2`,
/// `stream.playlist_max_age`, for a playlist sluice itself refetches after 0.5 s — a browser
/// cache replayed it to hls.js for up to 2 s). A VOD playlist keeps `playlist_max_age`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_playlist_hit_is_never_announced_fresher_than_the_cache_holds_it() {
    let o = TestOrigin::new()
        .route(
            "/h/live.m3u8",
            Reply::ok(
                "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:1,\ns3.ts\n",
                "application/vnd.apple.mpegurl",
            ),
        )
        .route(
            "/h/vod.m3u8",
            Reply::ok(
                "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\ns1.ts\n#EXT-X-ENDLIST\n",
                "application/vnd.apple.mpegurl",
            ),
        )
        .start();
    let s = Sluice::start(&cfg(&o));
    for _ in 0..2 {
        get(&s, "/stream/h/live.m3u8").await;
        get(&s, "/stream/h/vod.m3u8").await;
    }
    let vod = get(&s, "/stream/h/vod.m3u8").await;
    assert_eq!((vod.status, vod.cache.as_str()), (200, "hit"));
    assert_eq!(max_age(&vod.cc), Some(2), "{}", vod.cc);
    // Every hit of the live copy (fresh for under a second) says so; a refetch (the copy
    // expired between two requests on a slow machine) may say `playlist_max_age`.
    let mut hits = 0;
    for _ in 0..5 {
        let live = get(&s, "/stream/h/live.m3u8").await;
        assert_eq!(live.status, 200);
        if live.cache == "hit" {
            hits += 1;
            assert_eq!(max_age(&live.cc), Some(0), "{}", live.cc);
        }
    }
    assert!(hits > 0, "no hit of the live playlist in five requests");
}

//! Ranges that never refetch the world (issue 22), against the real binary with origins that
//! answer ranges as real ones do, each case over HTTP/1.1 and HTTP/2.
//!
//! A miss is fetched whole into the cache only when the cache will keep it: a range of an
//! object not known to fit (`cache.max_object_bytes`) goes to the origin as a range and is not
//! stored, and a segment its live LL-HLS playlist says is still being written is never stored
//! at its partial size.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::{random_bytes, Pki, Reply, RunningOrigin, Sluice, TestOrigin};

const SECRET: &str = "ranges-provider-secret-0123456789";

#[derive(Debug, Clone, Copy)]
enum Proto {
    Http11,
    Http2,
}

const PROTOS: [Proto; 2] = [Proto::Http11, Proto::Http2];

impl Proto {
    fn tag(self) -> &'static str {
        match self {
            Proto::Http11 => "h1",
            Proto::Http2 => "h2",
        }
    }
}

/// One sluice with a plain (HTTP/1.1) and a TLS (HTTP/2) edge listener.
struct Edge {
    s: Sluice,
    pki: Pki,
    tls_port: u16,
}

struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

impl Edge {
    fn start(extra: &str) -> Edge {
        let pki = common::pki();
        let tls_port = common::free_port();
        let s = Sluice::start_with_listen(&pki.edge_tls(tls_port), extra);
        Edge { s, pki, tls_port }
    }

    async fn get(&self, proto: Proto, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.request(proto, http::Method::GET, path, headers).await
    }

    async fn request(
        &self,
        proto: Proto,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        match proto {
            Proto::Http11 => {
                let mut r = common::client().request(method, self.s.edge_url(path));
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                let resp = r.send().await.unwrap();
                let status = resp.status().as_u16();
                let headers = resp
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                let body = resp.bytes().await.unwrap();
                Answer {
                    status,
                    headers,
                    body,
                }
            }
            Proto::Http2 => {
                let send = common::h2_connect(&self.pki, self.tls_port).await;
                let mut send = send.ready().await.expect("stream slot");
                let mut req = http::Request::builder()
                    .method(method)
                    .uri(format!("https://localhost:{}{path}", self.tls_port));
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                let (resp, _) = send
                    .send_request(req.body(()).expect("request"), true)
                    .expect("send request");
                let resp = resp.await.expect("response header");
                let status = resp.status().as_u16();
                let headers = resp
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                let mut body = resp.into_body();
                let mut got = Vec::new();
                while let Some(chunk) = body.data().await {
                    let chunk = chunk.expect("body chunk");
                    got.extend_from_slice(&chunk);
                    let _ = body.flow_control().release_capacity(chunk.len());
                }
                Answer {
                    status,
                    headers,
                    body: got.into(),
                }
            }
        }
    }
}

/// An origin answering `reply` at `/{tag}{path}` for each protocol's tag (each protocol's
/// case gets its own cold object).
fn per_protocol(path: &str, reply: Reply) -> TestOrigin {
    PROTOS.iter().fold(TestOrigin::new(), |o, p| {
        o.route(&format!("/{}{path}", p.tag()), reply.clone())
    })
}

/// The `Range` headers the origin saw for `path`, in order (`""`: none).
fn ranges_asked(o: &RunningOrigin, path: &str) -> Vec<String> {
    o.requests()
        .into_iter()
        .filter(|r| r.path_and_query == path)
        .map(|r| r.headers.get("range").cloned().unwrap_or_default())
        .collect()
}

/// A range of an object larger than `cache.max_object_bytes` is asked of the origin as that
/// range, every time (before: Pingora dropped the `Range` on the miss, so each request made
/// the origin send the whole object — 3 MiB for 100 bytes, again and again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_of_an_object_too_large_to_cache_is_asked_of_the_origin_as_a_range() {
    const LEN: usize = 3 * 1024 * 1024;
    let body = random_bytes(LEN, 7);
    let o = per_protocol("/v/big.mp4", Reply::ok(body.clone(), "video/mp4").ranges()).start();
    let e = Edge::start(&format!(
        "origins:\n  bucket: {}\ncache:\n  max_object_bytes: 1MiB\n",
        o.url()
    ));
    for p in PROTOS {
        let path = format!("/{}/v/big.mp4", p.tag());
        let before = o.body_bytes();
        for _ in 0..3 {
            let a = e
                .get(p, &format!("/stream{path}"), &[("range", "bytes=-100")])
                .await;
            assert_eq!(a.status, 206, "{p:?}");
            assert_eq!(a.body, body.slice(LEN - 100..), "{p:?}");
            assert_eq!(
                a.header("content-range"),
                format!("bytes {}-{}/{LEN}", LEN - 100, LEN - 1),
                "{p:?}"
            );
        }
        assert_eq!(
            ranges_asked(&o, &path),
            ["bytes=-100"; 3],
            "{p:?}: each range asked as a range"
        );
        assert_eq!(o.body_bytes() - before, 300, "{p:?}: what the origin sent");
    }
}

/// A `HEAD` of an object not known to fit the cache is asked of the origin as a `HEAD`: no
/// body is fetched to answer it (before: Pingora turned the miss into a whole-object `GET`,
/// every time, for an object it could not keep).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_of_an_object_too_large_to_cache_fetches_no_body() {
    const LEN: usize = 3 * 1024 * 1024;
    let o = per_protocol(
        "/v/big.mp4",
        Reply::ok(random_bytes(LEN, 6), "video/mp4").ranges(),
    )
    .start();
    let e = Edge::start(&format!(
        "origins:\n  bucket: {}\ncache:\n  max_object_bytes: 1MiB\n",
        o.url()
    ));
    for p in PROTOS {
        let before = o.body_bytes();
        for _ in 0..3 {
            let a = e
                .request(
                    p,
                    http::Method::HEAD,
                    &format!("/stream/{}/v/big.mp4", p.tag()),
                    &[],
                )
                .await;
            assert_eq!(a.status, 200, "{p:?}");
            assert_eq!(a.header("content-length"), LEN.to_string(), "{p:?}");
            assert!(a.body.is_empty(), "{p:?}");
        }
        assert_eq!(o.body_bytes() - before, 0, "{p:?}: what the origin sent");
    }
}

/// A range of an object whose length sluice does not know goes to the origin as a range (it
/// may be too large to keep); the answer teaches its length, and once it is known to fit the
/// next range fills the cache with the whole object and later ranges are hits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_of_an_unknown_object_is_asked_as_a_range_and_teaches_its_length() {
    const LEN: usize = 200 * 1024;
    let body = random_bytes(LEN, 8);
    let o = per_protocol(
        "/v/small.mp4",
        Reply::ok(body.clone(), "video/mp4").ranges(),
    )
    .start();
    let e = Edge::start(&format!("origins:\n  bucket: {}\n", o.url()));
    for p in PROTOS {
        let path = format!("/{}/v/small.mp4", p.tag());
        for (i, (first, last)) in [(0, 99), (100, 199), (1000, 1999), (LEN - 10, LEN - 1)]
            .into_iter()
            .enumerate()
        {
            let a = e
                .get(
                    p,
                    &format!("/stream{path}"),
                    &[("range", &format!("bytes={first}-{last}"))],
                )
                .await;
            assert_eq!(a.status, 206, "{p:?} request {i}");
            assert_eq!(a.body, body.slice(first..last + 1), "{p:?} request {i}");
            assert_eq!(
                a.header("content-range"),
                format!("bytes {first}-{last}/{LEN}"),
                "{p:?} request {i}"
            );
        }
        // The first as asked; the second fetched the whole object into the cache (known to
        // fit); the rest were hits.
        assert_eq!(ranges_asked(&o, &path), ["bytes=0-99", ""], "{p:?}");
    }
}

/// An object its origin sent chunked (no `Content-Length`), held whole: its ranges are
/// answered from the cache (before: never — a `200` of the whole object to every range).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_object_held_whole_answers_ranges() {
    const LEN: usize = 150 * 1024;
    let body = random_bytes(LEN, 9);
    let o = per_protocol(
        "/v/chunked.m4s",
        Reply::ok(body.clone(), "video/iso.segment").unannounced_length(),
    )
    .start();
    let e = Edge::start(&format!("origins:\n  bucket: {}\n", o.url()));
    for p in PROTOS {
        let url = format!("/stream/{}/v/chunked.m4s", p.tag());
        let whole = e.get(p, &url, &[]).await;
        assert_eq!((whole.status, whole.body.len()), (200, LEN), "{p:?}");
        let a = e.get(p, &url, &[("range", "bytes=10-19")]).await;
        assert_eq!(a.status, 206, "{p:?}: {:?}", a.headers);
        assert_eq!(a.body, body.slice(10..20), "{p:?}");
        assert_eq!(
            a.header("content-range"),
            format!("bytes 10-19/{LEN}"),
            "{p:?}"
        );
        let tail = e.get(p, &url, &[("range", "bytes=-5")]).await;
        assert_eq!(
            (tail.status, tail.body.clone()),
            (206, body.slice(LEN - 5..)),
            "{p:?}"
        );
        assert_eq!(o.hits(&format!("/{}/v/chunked.m4s", p.tag())), 1, "{p:?}");
    }
}

/// A proxied URL without a known media extension (`/video/blob`) answers a range (before: it
/// was taken for a possible playlist, fetched whole and relayed as a `200`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_url_without_a_media_extension_answers_ranges() {
    const LEN: usize = 100 * 1024;
    let body = random_bytes(LEN, 10);
    let mut origin = TestOrigin::new().route(
        "/live/index.m3u8",
        Reply::ok(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg.ts\n#EXT-X-ENDLIST\n",
            "application/vnd.apple.mpegurl",
        ),
    );
    for p in PROTOS {
        origin = origin.route(
            &format!("/video/{}/blob", p.tag()),
            Reply::ok(body.clone(), "video/mp4").ranges(),
        );
    }
    let cdn = origin.start();
    let a = cdn.addr;
    let e = Edge::start(&format!(
        r#"providers:
  p1:
    allow_private: true
    channels:
      live: {{url: "http://{a}/live/index.m3u8", type: hls}}
provider_auth:
  jwt_secret: {SECRET}
"#
    ));
    let ctx = common::stream_info_ctx(&e.s, "p1", "live", &common::provider_jwt(SECRET, "v")).await;
    for p in PROTOS {
        let u = format!("http://{a}/video/{}/blob", p.tag());
        let url = format!(
            "/api/proxy?url={}&ctx={ctx}",
            url::form_urlencoded::byte_serialize(u.as_bytes()).collect::<String>()
        );
        let r = e.get(p, &url, &[("range", "bytes=0-99")]).await;
        assert_eq!(r.status, 206, "{p:?}: {:?}", r.headers);
        assert_eq!(r.body, body.slice(0..100), "{p:?}");
        assert_eq!(
            r.header("content-range"),
            format!("bytes 0-99/{LEN}"),
            "{p:?}"
        );
        // Without a range it is still judged by its content (and relayed whole).
        let whole = e.get(p, &url, &[]).await;
        assert_eq!((whole.status, whole.body.len()), (200, LEN), "{p:?}");
    }
}

fn live_playlist(segment_listed: bool) -> String {
    let mut p = String::from(
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n#EXT-X-PART-INF:PART-TARGET=0.5\n\
         #EXT-X-MEDIA-SEQUENCE:9\n#EXTINF:1,\nseg9.mp4\n",
    );
    p.push_str("#EXT-X-PART:DURATION=0.5,URI=\"seg10.mp4\",BYTERANGE=\"1000@0\",INDEPENDENT=YES\n");
    p.push_str("#EXT-X-PART:DURATION=0.5,URI=\"seg10.mp4\",BYTERANGE=\"1000@1000\"\n");
    if segment_listed {
        p.push_str("#EXTINF:1,\nseg10.mp4\n");
        p.push_str("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg11.mp4\",BYTERANGE-START=0\n");
    } else {
        p.push_str("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg10.mp4\",BYTERANGE-START=2000\n");
    }
    p
}

/// An LL-HLS segment still being written (its live playlist announces byte-range parts of it
/// and does not list it yet) is passed through, never stored at its partial size; once the
/// playlist lists it whole it is cached (before: the first fetch stored the 1000 bytes the
/// origin had, for the segment's whole lifetime, and the parts announced later got `416`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_llhls_segment_is_never_stored_at_its_partial_size() {
    let full = random_bytes(3000, 11);
    let mut origin = TestOrigin::new();
    for p in PROTOS {
        let t = p.tag();
        origin = origin
            .route(
                &format!("/{t}/index.m3u8"),
                Reply::ok(live_playlist(false), "application/vnd.apple.mpegurl"),
            )
            .route(
                &format!("/{t}/seg9.mp4"),
                Reply::ok(random_bytes(500, 12), "video/mp4"),
            )
            .route(
                &format!("/{t}/seg10.mp4"),
                Reply::ok(full.slice(..1000), "video/mp4").ranges(),
            );
    }
    let o = origin.start();
    let e = Edge::start(&format!("origins:\n  bucket: {}\n", o.url()));
    for p in PROTOS {
        let t = p.tag();
        let seg = format!("/stream/{t}/seg10.mp4");
        let pl = e.get(p, &format!("/stream/{t}/index.m3u8"), &[]).await;
        assert_eq!(pl.status, 200, "{p:?}");
        // Let any prefetch the playlist started finish.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let first = e.get(p, &seg, &[("range", "bytes=0-999")]).await;
        assert_eq!(
            (first.status, first.body.clone()),
            (206, full.slice(..1000)),
            "{p:?}"
        );
        // The origin writes the second part.
        o.set_route(
            &format!("/{t}/seg10.mp4"),
            Reply::ok(full.slice(..2000), "video/mp4").ranges(),
        );
        let second = e.get(p, &seg, &[("range", "bytes=1000-1999")]).await;
        assert_eq!(second.status, 206, "{p:?}: {:?}", second.headers);
        assert_eq!(second.body, full.slice(1000..2000), "{p:?}");
        let whole = e.get(p, &seg, &[]).await;
        assert_eq!(
            (whole.status, whole.body.len()),
            (200, 2000),
            "{p:?}: as it is now"
        );
        // The segment is complete and listed.
        o.set_route(
            &format!("/{t}/seg10.mp4"),
            Reply::ok(full.clone(), "video/mp4").ranges(),
        );
        o.set_route(
            &format!("/{t}/index.m3u8"),
            Reply::ok(live_playlist(true), "application/vnd.apple.mpegurl"),
        );
        // The stored playlist expires after half its target duration.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let asked = o.hits(&format!("/{t}/seg10.mp4"));
        let pl = e.get(p, &format!("/stream/{t}/index.m3u8"), &[]).await;
        assert!(
            String::from_utf8_lossy(&pl.body).contains("#EXTINF:1,\nseg10.mp4"),
            "{p:?}: the new playlist"
        );
        for _ in 0..2 {
            let a = e.get(p, &seg, &[]).await;
            assert_eq!((a.status, a.body.clone()), (200, full.clone()), "{p:?}");
        }
        let tail = e.get(p, &seg, &[("range", "bytes=2000-2999")]).await;
        assert_eq!(
            (tail.status, tail.body.clone()),
            (206, full.slice(2000..)),
            "{p:?}"
        );
        assert_eq!(
            o.hits(&format!("/{t}/seg10.mp4")),
            asked + 1,
            "{p:?}: the complete segment is fetched once, then held"
        );
    }
}

/// A prefetch of an object too large to keep is stopped at its header (before: it read the
/// whole object from the origin for nobody — prefetches are for the cache only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetch_of_an_object_too_large_to_keep_stops_at_its_header() {
    const LEN: usize = 3 * 1024 * 1024;
    let o = TestOrigin::new()
        .route(
            "/live/index.m3u8",
            Reply::ok(
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:2,\nbig.ts\n",
                "application/vnd.apple.mpegurl",
            ),
        )
        .route(
            "/live/big.ts",
            Reply::ok(random_bytes(LEN, 13), "video/mp2t").trickle(30, Duration::from_secs(3)),
        )
        .start();
    let e = Edge::start(&format!(
        "origins:\n  bucket: {}\ncache:\n  max_object_bytes: 1MiB\n",
        o.url()
    ));
    let pl = e.get(Proto::Http11, "/stream/live/index.m3u8", &[]).await;
    assert_eq!(pl.status, 200);
    common::wait_for("the prefetch", Duration::from_secs(5), || {
        o.hits("/live/big.ts") == 1
    });
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(
        o.body_bytes() < LEN / 3,
        "the origin sent {} of {LEN} bytes for a prefetch nobody reads",
        o.body_bytes()
    );
}

//! HTTP caching as RFC 9110/9111 say (issue 22), against the real binary with a real origin:
//! what a connection is told after conditional and stale answers.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{random_bytes, Reply, Sluice, TestOrigin};

/// One response read by its framing from a kept-alive socket: status, lowercased head, body.
fn read_response(sock: &mut TcpStream, head_only: bool) -> Option<(u16, String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        sock.read_exact(&mut byte).ok()?;
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).ok()?.to_ascii_lowercase();
    let status: u16 = head.get(9..12)?.parse().ok()?;
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    if head_only || status == 304 || status == 204 {
        return Some((status, head, Vec::new()));
    }
    let mut body = vec![0u8; len?];
    sock.read_exact(&mut body).ok()?;
    Some((status, head, body))
}

/// After an answer with `head` on `c`: unless it said `Connection: close`, the next request
/// on the connection is answered (`200` from `/health`).
fn next_request_is_answered_unless_closed(c: &mut TcpStream, head: &str, what: &str) {
    let closing = head.contains("connection: close");
    c.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let next = read_response(c, false);
    if !closing {
        let (st, h, _) = next.unwrap_or_else(|| {
            panic!("{what}: the answer kept the connection open, the next request got nothing:\n{head}")
        });
        assert_eq!(st, 200, "{h}");
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// A 304 answered to a conditional request on a cache miss: if the answer says the connection
/// stays open, the next request on it is answered (before: `Connection: keep-alive`, then
/// silence, 7 times out of 8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_on_a_miss_leaves_a_usable_connection_or_closes_it() {
    let mut origin = TestOrigin::new();
    for i in 0..8 {
        origin = origin.route(
            &format!("/h/v/e{i}.ts"),
            Reply::ok(random_bytes(256 * 1024, i), "video/mp2t").header("etag", "\"v1\""),
        );
    }
    let o = origin.start();
    let s = Sluice::start(&format!("origins:\n  bucket: {}\n", o.url()));
    for i in 0..8 {
        let mut c = connect(s.edge);
        write!(
            c,
            "GET /stream/h/v/e{i}.ts HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"v1\"\r\n\r\n"
        )
        .unwrap();
        let (status, head, _) = read_response(&mut c, false).expect("an answer");
        assert!(status == 304 || status == 200, "{head}");
        next_request_is_answered_unless_closed(&mut c, &head, &format!("trial {i}"));
    }
}

/// An expired object served stale because the origin now answers 503 (`cache.stale_if_error`):
/// the next request on that connection is answered, or the answer said it closes (before:
/// `Connection: keep-alive`, then silence, up to 3 times in 8; only origin connection errors
/// were covered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_answer_on_an_origin_5xx_leaves_a_usable_connection_or_closes_it() {
    let mut origin = TestOrigin::new();
    for i in 0..4 {
        origin = origin.route(
            &format!("/h/v/s{i}.ts"),
            Reply::ok(random_bytes(64 * 1024, i), "video/mp2t")
                .header("cache-control", "max-age=1"),
        );
    }
    let o = origin.start();
    let s = Sluice::start(&format!("origins:\n  bucket: {}\n", o.url()));
    for i in 0..4 {
        let mut c = connect(s.edge);
        write!(c, "GET /stream/h/v/s{i}.ts HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut c, false).expect("stored").0, 200);
    }
    std::thread::sleep(Duration::from_millis(2200));
    for i in 0..4 {
        o.set_route(&format!("/h/v/s{i}.ts"), Reply::status(503));
    }
    for i in 0..4 {
        let mut c = connect(s.edge);
        write!(c, "GET /stream/h/v/s{i}.ts HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let (status, head, body) = read_response(&mut c, false).expect("an answer");
        assert_eq!(status, 200, "served stale: {head}");
        assert_eq!(body.len(), 64 * 1024);
        assert!(head.contains("x-cache-status: stale"), "{head}");
        next_request_is_answered_unless_closed(&mut c, &head, &format!("trial {i} (stale)"));
    }
}

/// A multi-range request of a stored object: `206` as `multipart/byteranges` with its boundary,
/// each part framed by it (before: typed as the media, `application/octet-stream` or
/// `video/mp2t`, and the boundary lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_range_answer_keeps_its_multipart_type_and_boundary() {
    let body = random_bytes(64 * 1024, 77);
    let o = TestOrigin::new()
        .route("/h/v/m.ts", Reply::ok(body.clone(), "video/mp2t"))
        .start();
    let s = Sluice::start(&format!("origins:\n  bucket: {}\n", o.url()));
    let url = s.edge_url("/stream/h/v/m.ts");
    let c = common::client();
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    let r = c
        .get(&url)
        .header("range", "bytes=0-9,100-109")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let boundary = ct
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .unwrap_or_else(|| panic!("no boundary in {ct:?}"))
        .trim_matches('"')
        .to_string();
    assert!(ct.starts_with("multipart/byteranges"), "{ct}");
    let got = r.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches(&format!("--{boundary}")).count(), 3, "{text}");
    assert!(
        text.contains("Content-Range: bytes 0-9/65536")
            || text
                .to_ascii_lowercase()
                .contains("content-range: bytes 0-9/65536"),
        "{text}"
    );
    for (start, end) in [(0usize, 10usize), (100, 110)] {
        let part = &body[start..end];
        assert!(
            got.windows(part.len()).any(|w| w == part),
            "part {start}-{end} missing"
        );
    }
}

fn gzip(text: &str) -> bytes::Bytes {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    bytes::Bytes::from(e.finish().unwrap())
}

/// `text` as an origin that compresses playlists unasked sends it.
fn gzip_playlist(text: &str) -> Reply {
    Reply {
        body: gzip(text),
        ..Reply::ok("", "application/vnd.apple.mpegurl")
    }
    .header("content-encoding", "gzip")
}

/// A live HLS playlist the origin sends gzip-encoded (unasked, as many do) is judged from its
/// text: TARGETDURATION 1 is held at most ~0.5 s, so a reload 1.5 s later goes to the origin
/// (before: judged from the compressed bytes, held as an ordinary object, 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_live_playlist_is_judged_from_its_text() {
    let live = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:1.0,\ns7.ts\n#EXTINF:1.0,\ns8.ts\n";
    let o = TestOrigin::new()
        .route("/h/v/live.m3u8", gzip_playlist(live))
        .start();
    let s = Sluice::start(&format!("origins:\n  bucket: {}\n", o.url()));
    let url = s.edge_url("/stream/h/v/live.m3u8");
    let c = common::client();
    for _ in 0..2 {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // Passed on as the origin encoded it.
        assert_eq!(
            r.headers().get("content-encoding").map(|v| v.as_bytes()),
            Some(&b"gzip"[..])
        );
        assert_eq!(r.bytes().await.unwrap(), gzip(live));
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert_eq!(
        o.hits("/h/v/live.m3u8"),
        2,
        "a 1 s live playlist was held past its reload"
    );
}

/// The same gzip live playlist announces its newest segments to prefetch like a plain one
/// (before: its first bytes were not `#EXT`, so nothing was prefetched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_live_playlist_prefetches_what_it_announces() {
    let live = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.0,\ns7.ts\n#EXTINF:2.0,\ns8.ts\n";
    let o = TestOrigin::new()
        .route("/h/v/live.m3u8", gzip_playlist(live))
        .route("/h/v/s7.ts", Reply::ok(random_bytes(4096, 7), "video/mp2t"))
        .route("/h/v/s8.ts", Reply::ok(random_bytes(4096, 8), "video/mp2t"))
        .start();
    let s = Sluice::start(&format!("origins:\n  bucket: {}\n", o.url()));
    let c = common::client();
    let r = c
        .get(s.edge_url("/stream/h/v/live.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    common::wait_for(
        "the newest segment prefetched",
        Duration::from_secs(5),
        || o.hits("/h/v/s8.ts") >= 1,
    );
    let r = c.get(s.edge_url("/stream/h/v/s8.ts")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache-status"], "hit");
    assert_eq!(o.hits("/h/v/s8.ts"), 1);
}

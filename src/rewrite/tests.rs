//! Unit and property tests for the playlist rewriters: realistic fixtures with exact
//! expected output, malicious inputs, `detect`, and proptest round trips through
//! [`unwrap_proxy_url`].

use super::*;
use proptest::prelude::*;
use url::Url;

const CTX: &str = "c1";

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

fn proxy_map() -> impl FnMut(&Url) -> Result<String, String> {
    |u: &Url| Ok(proxy_url(u, CTX))
}

/// A map that keeps URLs readable in expected outputs.
fn readable_map() -> impl FnMut(&Url) -> Result<String, String> {
    |u: &Url| Ok(format!("/p/{u}"))
}

fn hls(input: &str, base: &str) -> Result<String, RewriteError> {
    rewrite_hls(input, &url(base), &mut proxy_map())
}

fn dash(input: &str, base: &str) -> Result<String, RewriteError> {
    rewrite_dash(input, &url(base), &mut readable_map())
}

/// Lines of an HLS playlist that are not URI lines, with their line endings.
fn non_uri_lines(s: &str) -> Vec<&str> {
    s.split_inclusive('\n')
        .filter(|l| {
            let t = l.trim().trim_start_matches('\u{FEFF}');
            t.is_empty() || t.starts_with('#')
        })
        .collect()
}

/// Lines with URI attributes differ by design; everything else must be identical.
fn assert_untouched_lines_identical(before: &str, after: &str) {
    let b = non_uri_lines(before);
    let a = non_uri_lines(after);
    assert_eq!(b.len(), a.len());
    for (b, a) in b.iter().zip(&a) {
        if !b.contains("URI=\"") {
            assert_eq!(b, a);
        }
    }
}

fn unwrap_to_upstream(rewritten: &str) -> String {
    let (u, ctx) =
        unwrap_proxy_url(rewritten).unwrap_or_else(|| panic!("not proxied: {rewritten}"));
    assert_eq!(ctx, CTX);
    u
}

// ---------------------------------------------------------------------------------------
// proxy_url / unwrap_proxy_url

#[test]
fn proxy_url_uses_strict_component_encoding() {
    let u = url("https://cdn.example.com/a b/seg(1)*!'~.ts?x=1&y=a/b");
    assert_eq!(
        proxy_url(&u, "ab c&d"),
        "/api/proxy?url=https%3A%2F%2Fcdn.example.com%2Fa%2520b%2Fseg%281%29%2A%21%27~.ts%3Fx%3D1%26y%3Da%2Fb&ctx=ab%20c%26d"
    );
}

#[test]
fn proxy_url_matches_seed_example() {
    let u = url("https://cdn.example.com/live/ch001.m3u8");
    assert_eq!(
        proxy_url(&u, "abc123"),
        "/api/proxy?url=https%3A%2F%2Fcdn.example.com%2Flive%2Fch001.m3u8&ctx=abc123"
    );
}

#[test]
fn unwrap_inverts_proxy_url() {
    let u = url("https://cdn.example.com/p/ä%20x.ts?a=1+2&b=%2F");
    let p = proxy_url(&u, "ctx/+=");
    assert_eq!(
        unwrap_proxy_url(&p),
        Some((u.to_string(), "ctx/+=".to_owned()))
    );
    let abs = format!("https://edge.example.org{p}");
    assert_eq!(
        unwrap_proxy_url(&abs),
        Some((u.to_string(), "ctx/+=".to_owned()))
    );
}

#[test]
fn unwrap_rejects_other_paths_and_missing_params() {
    assert_eq!(unwrap_proxy_url("/api/other?url=a&ctx=b"), None);
    assert_eq!(unwrap_proxy_url("/api/proxy?url=a"), None);
    assert_eq!(unwrap_proxy_url("/api/proxy?ctx=a"), None);
    assert_eq!(unwrap_proxy_url("/api/proxy"), None);
    assert_eq!(unwrap_proxy_url("/api/proxy?url=%FF&ctx=a"), None);
    assert_eq!(
        unwrap_proxy_url("/api/proxy?ctx=k&other=1&url=x"),
        Some(("x".to_owned(), "k".to_owned()))
    );
}

// ---------------------------------------------------------------------------------------
// detect

#[test]
fn detect_by_content_type() {
    use PlaylistKind::*;
    for ct in [
        "application/vnd.apple.mpegurl",
        "Application/X-MpegURL; charset=utf-8",
        "audio/mpegurl",
        "audio/x-mpegurl",
    ] {
        assert_eq!(detect(Some(ct), "/x", b""), Some(Hls), "{ct}");
    }
    for ct in ["application/dash+xml", "APPLICATION/DASH+XML;profiles=x"] {
        assert_eq!(detect(Some(ct), "/x", b""), Some(Dash), "{ct}");
    }
    assert_eq!(detect(Some("video/mp2t"), "/seg.ts", b""), None);
    assert_eq!(detect(Some("video/mp4"), "/a.m3u8", b""), None);
}

#[test]
fn detect_by_sniffing_wins_over_generic_types() {
    use PlaylistKind::*;
    assert_eq!(
        detect(Some("application/octet-stream"), "/x", b"#EXTM3U\n"),
        Some(Hls)
    );
    assert_eq!(
        detect(Some("text/plain"), "/x", b"\xEF\xBB\xBF \r\n#EXTM3U\r\n"),
        Some(Hls)
    );
    assert_eq!(detect(None, "/x", b"<MPD xmlns=\"urn\">"), Some(Dash));
    let prolog = b"\xEF\xBB\xBF<?xml version=\"1.0\"?>\n<!-- made by x -->\n<!DOCTYPE MPD>\n<MPD>";
    assert_eq!(detect(Some("application/xml"), "/x", prolog), Some(Dash));
    assert_eq!(detect(None, "/x", b"<mpd:MPD xmlns:mpd=\"u\">"), Some(Dash));
    // Sniffing beats a specific but wrong type.
    assert_eq!(detect(Some("video/mp2t"), "/x", b"#EXTM3U"), Some(Hls));
    assert_eq!(
        detect(Some("application/vnd.apple.mpegurl"), "/x", b"<MPD>"),
        Some(Dash)
    );
}

#[test]
fn detect_path_hint_only_when_undecided() {
    use PlaylistKind::*;
    assert_eq!(detect(None, "/live/index.M3U8?t=1", b""), Some(Hls));
    assert_eq!(
        detect(Some("application/octet-stream"), "/a/b.mpd", b""),
        Some(Dash)
    );
    // A prefix too short to decide still allows the hint.
    assert_eq!(detect(None, "/x.m3u8", b"#EXT"), Some(Hls));
    assert_eq!(detect(None, "/x.mpd", b"<?xml version"), Some(Dash));
    // A body that is clearly something else overrules the path.
    assert_eq!(detect(None, "/x.m3u8", b"\x47\x40\x00\x10"), None);
    assert_eq!(detect(None, "/x.mpd", b"<html>"), None);
    assert_eq!(detect(None, "/seg.ts", b""), None);
    assert_eq!(detect(None, "/noext", b"#EXTINF:1"), None);
}

// ---------------------------------------------------------------------------------------
// HLS fixtures

const MULTIVARIANT: &str = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-INDEPENDENT-SEGMENTS
## a comment that looks like a URI: http://ignored.example/x.m3u8
#EXT-X-CONTENT-STEERING:SERVER-URI=\"/steer?video=1\",PATHWAY-ID=\"CDN-A\"
#EXT-X-SESSION-DATA:DATA-ID=\"com.example.title\",VALUE=\"Title, with comma\"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/en/index.m3u8\"
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"Deutsch, Untertitel\",LANGUAGE=\"de\",URI=\"/subs/de.m3u8\"
#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID=\"cc\",NAME=\"CC1\",INSTREAM-ID=\"CC1\"

#EXT-X-STREAM-INF:BANDWIDTH=2000000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,AUDIO=\"aud\",SUBTITLES=\"subs\",CLOSED-CAPTIONS=\"cc\"
720p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS=\"avc1.4d401e,mp4a.40.2\",RESOLUTION=640x360,AUDIO=\"aud\",SUBTITLES=\"subs\",CLOSED-CAPTIONS=\"cc\"
https://other.example.net/360p.m3u8?token=a%2Fb&x=1
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,CODECS=\"avc1.64001f\",URI=\"720p/iframes.m3u8\"
";

const MULTIVARIANT_EXPECTED: &str = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-INDEPENDENT-SEGMENTS
## a comment that looks like a URI: http://ignored.example/x.m3u8
#EXT-X-CONTENT-STEERING:SERVER-URI=\"/api/proxy?url=https%3A%2F%2Fcdn.example.com%2Fsteer%3Fvideo%3D1&ctx=c1\",PATHWAY-ID=\"CDN-A\"
#EXT-X-SESSION-DATA:DATA-ID=\"com.example.title\",VALUE=\"Title, with comma\"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"/api/proxy?url=https%3A%2F%2Fcdn.example.com%2Flive%2Faudio%2Fen%2Findex.m3u8&ctx=c1\"
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"Deutsch, Untertitel\",LANGUAGE=\"de\",URI=\"/api/proxy?url=https%3A%2F%2Fcdn.example.com%2Fsubs%2Fde.m3u8&ctx=c1\"
#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID=\"cc\",NAME=\"CC1\",INSTREAM-ID=\"CC1\"

#EXT-X-STREAM-INF:BANDWIDTH=2000000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,AUDIO=\"aud\",SUBTITLES=\"subs\",CLOSED-CAPTIONS=\"cc\"
/api/proxy?url=https%3A%2F%2Fcdn.example.com%2Flive%2F720p%2Findex.m3u8&ctx=c1
#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS=\"avc1.4d401e,mp4a.40.2\",RESOLUTION=640x360,AUDIO=\"aud\",SUBTITLES=\"subs\",CLOSED-CAPTIONS=\"cc\"
/api/proxy?url=https%3A%2F%2Fother.example.net%2F360p.m3u8%3Ftoken%3Da%252Fb%26x%3D1&ctx=c1
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,CODECS=\"avc1.64001f\",URI=\"/api/proxy?url=https%3A%2F%2Fcdn.example.com%2Flive%2F720p%2Fiframes.m3u8&ctx=c1\"
";

const MASTER_BASE: &str = "https://cdn.example.com/live/master.m3u8";

#[test]
fn multivariant_exact_output() {
    let out = hls(MULTIVARIANT, MASTER_BASE).unwrap();
    assert_eq!(out, MULTIVARIANT_EXPECTED);
    assert_untouched_lines_identical(MULTIVARIANT, &out);
    assert_eq!(hls_uris(MULTIVARIANT).len(), 6);
}

const MEDIA_KEYS: &str = "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:6
#EXT-X-MEDIA-SEQUENCE:1042
#EXT-X-MAP:URI=\"init.mp4\",BYTERANGE=\"720@0\"
#EXT-X-KEY:METHOD=AES-128,URI=\"https://keys.example.com/k/1?kid=7\",IV=0x1A2B3C4D5E6F70818293A4B5C6D7E8F9
#EXTINF:6.006,
seg1042.ts
#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"../keys/2.key\",KEYFORMAT=\"identity\"
#EXTINF:6.006,title, with comma
seg1043.ts
#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://fairplay-key-id-1234\",KEYFORMAT=\"com.apple.streamingkeydelivery\",KEYFORMATVERSIONS=\"1\"
#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI=\"data:text/plain;base64,AAAA\",KEYFORMAT=\"urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed\"
#EXTINF:5.005,
#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:12.012Z
//edge2.example.com/live/seg1044.ts
#EXT-X-KEY:METHOD=NONE
#EXT-X-DISCONTINUITY
#EXTINF:4.0,
/ads/ad1.ts?campaign=x&n=1
";

#[test]
fn media_playlist_keys_and_map() {
    let base = "https://cdn.example.com/live/720p/index.m3u8";
    let out = hls(MEDIA_KEYS, base).unwrap();
    assert_untouched_lines_identical(MEDIA_KEYS, &out);
    let before = hls_uris(MEDIA_KEYS);
    let after = hls_uris(&out);
    assert_eq!(before.len(), 9);
    assert_eq!(after.len(), 9);
    let upstream: Vec<String> = after
        .iter()
        .filter(|u| u.starts_with("/api/proxy"))
        .map(|u| unwrap_to_upstream(u))
        .collect();
    assert_eq!(
        upstream,
        [
            "https://cdn.example.com/live/720p/init.mp4",
            "https://keys.example.com/k/1?kid=7",
            "https://cdn.example.com/live/720p/seg1042.ts",
            "https://cdn.example.com/live/keys/2.key",
            "https://cdn.example.com/live/720p/seg1043.ts",
            "https://edge2.example.com/live/seg1044.ts",
            "https://cdn.example.com/ads/ad1.ts?campaign=x&n=1",
        ]
    );
    // FairPlay key IDs and data: URIs are identifiers, not fetches: untouched.
    assert!(out.contains("URI=\"skd://fairplay-key-id-1234\",KEYFORMAT"));
    assert!(out.contains("URI=\"data:text/plain;base64,AAAA\""));
    assert!(out.contains("\n#EXT-X-KEY:METHOD=NONE\n"));
    // Other attributes of rewritten tags are byte-identical.
    assert!(out.contains(",IV=0x1A2B3C4D5E6F70818293A4B5C6D7E8F9\n"));
    assert!(out.contains("#EXT-X-MAP:URI=\"/api/proxy?url=https%3A%2F%2Fcdn.example.com%2Flive%2F720p%2Finit.mp4&ctx=c1\",BYTERANGE=\"720@0\"\n"));
}

const LL_HLS: &str = "#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-VERSION:9
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.0,CAN-SKIP-UNTIL=24.0
#EXT-X-PART-INF:PART-TARGET=0.33334
#EXT-X-MEDIA-SEQUENCE:266
#EXT-X-MAP:URI=\"init.mp4\"
#EXTINF:4.00008,
fileSequence266.mp4
#EXT-X-PART:DURATION=0.33334,URI=\"filePart267.0.mp4\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.33334,URI=\"filePart267.1.mp4\"
#EXT-X-PART:DURATION=0.33334,URI=\"fileSequence267.mp4\",BYTERANGE=\"20000@0\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"filePart267.3.mp4\"
#EXT-X-RENDITION-REPORT:URI=\"../1M/waitForMSN.php\",LAST-MSN=273,LAST-PART=2
#EXT-X-RENDITION-REPORT:URI=\"../4M/waitForMSN.php\",LAST-MSN=273,LAST-PART=1
";

#[test]
fn ll_hls_parts_hints_and_reports() {
    let base = "https://ll.example.com/2M/playlist.m3u8?_HLS_msn=273&_HLS_part=2";
    let out = hls(LL_HLS, base).unwrap();
    assert_untouched_lines_identical(LL_HLS, &out);
    assert!(out.contains(
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.0,CAN-SKIP-UNTIL=24.0\n"
    ));
    let upstream: Vec<String> = hls_uris(&out)
        .iter()
        .map(|u| unwrap_to_upstream(u))
        .collect();
    assert_eq!(
        upstream,
        [
            "https://ll.example.com/2M/init.mp4",
            "https://ll.example.com/2M/fileSequence266.mp4",
            "https://ll.example.com/2M/filePart267.0.mp4",
            "https://ll.example.com/2M/filePart267.1.mp4",
            "https://ll.example.com/2M/fileSequence267.mp4",
            "https://ll.example.com/2M/filePart267.3.mp4",
            "https://ll.example.com/1M/waitForMSN.php",
            "https://ll.example.com/4M/waitForMSN.php",
        ]
    );
    assert!(out.contains(",LAST-MSN=273,LAST-PART=2\n"));
    assert!(out.contains(",BYTERANGE=\"20000@0\"\n"));
    assert!(out.contains(",INDEPENDENT=YES\n"));
}

const BYTE_RANGE: &str = "#EXTM3U
#EXT-X-TARGETDURATION:10
#EXT-X-VERSION:4
#EXT-X-MEDIA-SEQUENCE:0
#EXTINF:10.0,
#EXT-X-BYTERANGE:75232@0
media.ts
#EXTINF:10.0,
#EXT-X-BYTERANGE:82112@75232
media.ts
#EXTINF:10.0,
#EXT-X-BYTERANGE:69864
media.ts
#EXT-X-ENDLIST
";

#[test]
fn byte_range_playlist_keeps_ranges() {
    let out = hls(BYTE_RANGE, "http://vod.example.com/movie/index.m3u8").unwrap();
    let line = "/api/proxy?url=http%3A%2F%2Fvod.example.com%2Fmovie%2Fmedia.ts&ctx=c1\n";
    assert_eq!(out, BYTE_RANGE.replace("media.ts\n", line));
}

#[test]
fn crlf_playlist_keeps_crlf() {
    let input = MEDIA_KEYS.replace('\n', "\r\n");
    let out = hls(&input, "https://cdn.example.com/live/720p/index.m3u8").unwrap();
    assert_untouched_lines_identical(&input, &out);
    assert_eq!(out.matches("\r\n").count(), input.matches("\r\n").count());
    assert_eq!(out.matches('\n').count(), input.matches('\n').count());
    let lf = hls(MEDIA_KEYS, "https://cdn.example.com/live/720p/index.m3u8").unwrap();
    assert_eq!(out, lf.replace('\n', "\r\n"));
}

#[test]
fn bom_and_whitespace_and_missing_final_newline() {
    let input = "\u{FEFF}#EXTM3U\n#EXTINF:2,\n  seg1.ts \t\n\n#EXTINF:2,\nseg2.ts";
    let out = hls(input, "https://h.example/a/b.m3u8").unwrap();
    assert_eq!(
        out,
        "\u{FEFF}#EXTM3U\n#EXTINF:2,\n  /api/proxy?url=https%3A%2F%2Fh.example%2Fa%2Fseg1.ts&ctx=c1 \t\n\n#EXTINF:2,\n/api/proxy?url=https%3A%2F%2Fh.example%2Fa%2Fseg2.ts&ctx=c1"
    );
    // A BOM-prefixed first line is still a tag, not a URI.
    assert_eq!(hls_uris(input), ["seg1.ts", "seg2.ts"]);
}

#[test]
fn resolution_forms() {
    let base = url("https://cdn.example.com/a/b/index.m3u8?token=t");
    let input = "#EXTM3U\nrel.ts\n../up.ts\n/root.ts\n//other.example.org/p.ts\nhttp://abs.example/x.ts?q=1\n?only=query\nsub/dir/s.ts#frag\n";
    let out = rewrite_hls(input, &base, &mut proxy_map()).unwrap();
    let got: Vec<String> = hls_uris(&out)
        .iter()
        .map(|u| unwrap_to_upstream(u))
        .collect();
    let want: Vec<String> = hls_uris(input)
        .iter()
        .map(|u| base.join(u).unwrap().to_string())
        .collect();
    assert_eq!(got, want);
    assert_eq!(want[3], "https://other.example.org/p.ts");
}

#[test]
fn rewrite_dispatches_by_kind() {
    let out = rewrite(
        PlaylistKind::Hls,
        BYTE_RANGE.as_bytes(),
        &url("http://vod.example.com/movie/index.m3u8"),
        &mut proxy_map(),
    )
    .unwrap();
    assert_eq!(
        out,
        hls(BYTE_RANGE, "http://vod.example.com/movie/index.m3u8")
            .unwrap()
            .into_bytes()
    );
    let out = rewrite(
        PlaylistKind::Dash,
        MPD_NO_URLS.as_bytes(),
        &url("http://vod.example.com/a.mpd"),
        &mut proxy_map(),
    )
    .unwrap();
    assert_eq!(out, MPD_NO_URLS.as_bytes());
}

// ---------------------------------------------------------------------------------------
// HLS: hostile and broken inputs

fn hls_err(input: &str, map: &mut dyn FnMut(&Url) -> Result<String, String>) -> RewriteError {
    rewrite_hls(input, &url("https://cdn.example.com/x/i.m3u8"), map).unwrap_err()
}

#[test]
fn lone_cr_in_uri_line_is_refused() {
    let e = hls_err("#EXTM3U\nseg.ts\r#EXT-X-KEY:URI=\"x\"\n", &mut proxy_map());
    assert!(matches!(e, RewriteError::BadUri(_)), "{e:?}");
    let e = hls_err("#EXTM3U\nseg\r.ts\r\n", &mut proxy_map());
    assert!(matches!(e, RewriteError::BadUri(_)), "{e:?}");
}

#[test]
fn cr_or_control_in_attribute_uri_is_refused() {
    let e = hls_err("#EXTM3U\n#EXT-X-MAP:URI=\"a\rb.mp4\"\n", &mut proxy_map());
    assert!(matches!(e, RewriteError::BadUri(_)), "{e:?}");
    let e = hls_err(
        "#EXTM3U\n#EXT-X-MAP:URI=\"a\u{0}b.mp4\"\n",
        &mut proxy_map(),
    );
    assert!(matches!(e, RewriteError::BadUri(_)), "{e:?}");
}

#[test]
fn map_output_with_crlf_is_refused() {
    for evil in ["/x\r\n#EXT-X-ENDLIST", "/x\n", "/x\r"] {
        let e = hls_err("#EXTM3U\nseg.ts\n", &mut |_| Ok(evil.to_owned()));
        assert!(matches!(e, RewriteError::CrLfInOutput), "{e:?}");
    }
}

#[test]
fn map_output_that_breaks_the_line_is_refused() {
    let e = hls_err("#EXTM3U\n#EXT-X-MAP:URI=\"i.mp4\"\n", &mut |_| {
        Ok("/x\",URI=\"http://evil".to_owned())
    });
    assert!(matches!(e, RewriteError::BadUri(_)), "{e:?}");
    let e = hls_err(
        "#EXTM3U\nseg.ts\n",
        &mut |_| Ok("#EXT-X-ENDLIST".to_owned()),
    );
    assert!(matches!(e, RewriteError::BadUri(_)), "{e:?}");
    let e = hls_err("#EXTM3U\nseg.ts\n", &mut |_| Ok(String::new()));
    assert!(matches!(e, RewriteError::BadUri(_)), "{e:?}");
}

#[test]
fn map_refusal_propagates() {
    let e = hls_err("#EXTM3U\nhttp://169.254.169.254/latest\n", &mut |u| {
        Err(format!("blocked {}", u.host_str().unwrap_or("")))
    });
    match e {
        RewriteError::BadUri(msg) => assert!(msg.contains("blocked 169.254.169.254"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn non_http_uri_lines_are_refused() {
    for line in ["file:///etc/passwd", "ftp://x.example/a.ts"] {
        let e = hls_err(&format!("#EXTM3U\n{line}\n"), &mut proxy_map());
        assert!(matches!(e, RewriteError::BadUri(_)), "{line}: {e:?}");
    }
}

#[test]
fn data_uri_lines_are_left_as_they_are() {
    // An inline segment (an ad slate, a filler) among fetched ones: the playlist is still
    // rewritten, the data: line untouched (it was a 502 for the whole playlist).
    let input =
        "#EXTM3U\n#EXTINF:1,\ndata:video/mp2t;base64,AA\n#EXTINF:1,\nseg1.ts\nDATA:video/mp2t,x\n";
    let base = Url::parse("https://cdn.example/live/index.m3u8").unwrap();
    let out = rewrite_hls(input, &base, &mut proxy_map()).expect("rewritten");
    assert!(out.contains("\ndata:video/mp2t;base64,AA\n"), "{out}");
    assert!(out.contains("\nDATA:video/mp2t,x\n"), "{out}");
    assert!(
        !out.contains("\nseg1.ts\n"),
        "the fetched segment is rewritten: {out}"
    );
}

#[test]
fn malformed_attribute_lists_are_errors_not_panics() {
    for tag in [
        "#EXT-X-MAP:URI=\"unterminated",
        "#EXT-X-MAP:URI=init.mp4",
        "#EXT-X-MAP:BYTERANGE",
        "#EXT-X-MAP:URI=\"a\"BYTERANGE=\"1@0\"",
    ] {
        let e = hls_err(&format!("#EXTM3U\n{tag}\n"), &mut proxy_map());
        assert!(matches!(e, RewriteError::Malformed(_)), "{tag}: {e:?}");
    }
    // Tags that carry no URIs are never parsed, however odd.
    let odd = "#EXTM3U\n#EXT-X-WHATEVER:\"\"\"\n#EXTINF:,,,\n";
    assert_eq!(hls(odd, "https://h.example/").unwrap(), odd);
}

#[test]
fn too_large_and_not_utf8_are_errors() {
    let big = vec![b'#'; MAX_PLAYLIST_BYTES + 1];
    let base = url("https://h.example/");
    for kind in [PlaylistKind::Hls, PlaylistKind::Dash] {
        let e = rewrite(kind, &big, &base, &mut proxy_map()).unwrap_err();
        assert!(matches!(e, RewriteError::TooLarge(_)), "{e:?}");
        let e = rewrite(kind, b"#EXTM3U\n\xff\xfe.ts\n", &base, &mut proxy_map()).unwrap_err();
        assert!(matches!(e, RewriteError::NotUtf8), "{e:?}");
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let base = url("https://h.example/a/");
    let samples: [&[u8]; 6] = [
        b"",
        b"\n\n\r\n",
        b"#EXT-X-KEY:URI=\"",
        b"#EXT-X-KEY:=,=,\"",
        b"<MPD><BaseURL>",
        b"<MPD><BaseURL><![CDATA[x]]></BaseURL></MPD>",
    ];
    for s in samples {
        for kind in [PlaylistKind::Hls, PlaylistKind::Dash] {
            let _ = rewrite(kind, s, &base, &mut proxy_map());
        }
    }
}

// ---------------------------------------------------------------------------------------
// DASH fixtures

const MPD_LIVE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- packaged by a test; <BaseURL>in a comment</BaseURL> is not a URL -->
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" xmlns:xlink="http://www.w3.org/1999/xlink" type="dynamic" profiles="urn:mpeg:dash:profile:isoff-live:2011" minimumUpdatePeriod="PT2S">
  <BaseURL>https://cdn.example.com/dash/</BaseURL>
  <Location>manifest.mpd?session=1&amp;x=2</Location>
  <Period id="p0" start="PT0S">
    <BaseURL>period0/</BaseURL>
    <AdaptationSet mimeType="video/mp4" segmentAlignment="true">
      <SegmentTemplate timescale="90000" duration="180000" startNumber="1" media="$RepresentationID$/seg-$Number%05d$.m4s" initialization='$RepresentationID$/init.mp4'/>
      <Representation id="v720" bandwidth="3000000" width="1280" height="720"/>
      <Representation id="v360" bandwidth="800000" width="640" height="360">
        <BaseURL> /alt/ </BaseURL>
      </Representation>
    </AdaptationSet>
    <AdaptationSet mimeType="audio/mp4" lang="en">
      <Representation id="a1" bandwidth="128000">
        <BaseURL>audio/en/</BaseURL>
        <SegmentList timescale="1000" duration="2000">
          <Initialization sourceURL="init.mp4"/>
          <SegmentURL media="s1.m4s"/>
          <SegmentURL media="s2.m4s?a=1&amp;b=2" mediaRange="0-999"/>
        </SegmentList>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"#;

const MPD_LIVE_EXPECTED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- packaged by a test; <BaseURL>in a comment</BaseURL> is not a URL -->
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" xmlns:xlink="http://www.w3.org/1999/xlink" type="dynamic" profiles="urn:mpeg:dash:profile:isoff-live:2011" minimumUpdatePeriod="PT2S">
  <BaseURL>/p/https://cdn.example.com/dash/</BaseURL>
  <Location>/p/https://origin.example.com/manifests/manifest.mpd?session=1&amp;x=2</Location>
  <Period id="p0" start="PT0S">
    <BaseURL>/p/https://cdn.example.com/dash/period0/</BaseURL>
    <AdaptationSet mimeType="video/mp4" segmentAlignment="true">
      <SegmentTemplate timescale="90000" duration="180000" startNumber="1" media="/p/https://cdn.example.com/dash/period0/$RepresentationID$/seg-$Number%05d$.m4s" initialization='/p/https://cdn.example.com/dash/period0/$RepresentationID$/init.mp4'/>
      <Representation id="v720" bandwidth="3000000" width="1280" height="720"/>
      <Representation id="v360" bandwidth="800000" width="640" height="360">
        <BaseURL> /p/https://cdn.example.com/alt/ </BaseURL>
      <SegmentTemplate media="/p/https://cdn.example.com/alt/$RepresentationID$/seg-$Number%05d$.m4s" initialization="/p/https://cdn.example.com/alt/$RepresentationID$/init.mp4"/></Representation>
    </AdaptationSet>
    <AdaptationSet mimeType="audio/mp4" lang="en">
      <Representation id="a1" bandwidth="128000">
        <BaseURL>/p/https://cdn.example.com/dash/period0/audio/en/</BaseURL>
        <SegmentList timescale="1000" duration="2000">
          <Initialization sourceURL="/p/https://cdn.example.com/dash/period0/audio/en/init.mp4"/>
          <SegmentURL media="/p/https://cdn.example.com/dash/period0/audio/en/s1.m4s"/>
          <SegmentURL media="/p/https://cdn.example.com/dash/period0/audio/en/s2.m4s?a=1&amp;b=2" mediaRange="0-999"/>
        </SegmentList>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"#;

const MPD_BASE: &str = "https://origin.example.com/manifests/live.mpd";

#[test]
fn mpd_exact_output_with_base_url_hierarchy() {
    let out = dash(MPD_LIVE, MPD_BASE).unwrap();
    assert_eq!(out, MPD_LIVE_EXPECTED);
}

#[test]
fn mpd_uris_listed_in_document_order() {
    assert_eq!(
        dash_uris(MPD_LIVE),
        [
            "https://cdn.example.com/dash/",
            "manifest.mpd?session=1&x=2",
            "period0/",
            "$RepresentationID$/seg-$Number%05d$.m4s",
            "$RepresentationID$/init.mp4",
            "/alt/",
            "audio/en/",
            "init.mp4",
            "s1.m4s",
            "s2.m4s?a=1&b=2",
        ]
    );
}

/// What a player does with a template: substitute the identifiers (§5.3.9.4.4).
fn substitute(template: &str, rep: &str, number: u64) -> String {
    let mut out = template.to_owned();
    for token in super::dash::placeholders(template) {
        let inner = &token[1..token.len() - 1];
        let (ident, format) = inner.split_once('%').unwrap_or((inner, ""));
        let value = match ident {
            "" => "$".to_owned(),
            "RepresentationID" => rep.to_owned(),
            _ => {
                let width: usize = format.trim_end_matches('d').parse().unwrap_or(0);
                format!("{number:0width$}")
            }
        };
        out = out.replace(token, &value);
    }
    out
}

#[test]
fn template_placeholders_survive_proxying() {
    let base = url(MPD_BASE);
    let out = rewrite_dash(MPD_LIVE, &base, &mut proxy_map()).unwrap();
    let uris = dash_uris(&out);
    let media = &uris[3];
    assert!(
        media.contains("%2F$RepresentationID$%2Fseg-$Number%05d$.m4s&ctx=c1"),
        "{media}"
    );
    let played = substitute(media, "v720", 42);
    assert_eq!(
        unwrap_to_upstream(&played),
        "https://cdn.example.com/dash/period0/v720/seg-00042.m4s"
    );
    // The copy given to the Representation with its own BaseURL resolves against it.
    let alt_media = uris
        .iter()
        .find(|u| u.contains("alt%2F%24") || u.contains("alt%2F$"))
        .unwrap();
    assert_eq!(
        unwrap_to_upstream(&substitute(alt_media, "v360", 7)),
        "https://cdn.example.com/alt/v360/seg-00007.m4s"
    );
    // XML escaping: the `&` between url and ctx is written as `&amp;`.
    assert!(out.contains("&amp;ctx=c1\""));
    assert!(!out.contains("&ctx=c1\""));
}

const MPD_NO_URLS: &str = "\u{FEFF}<?xml version='1.0'?>\r\n<!DOCTYPE MPD>\r\n<!-- no urls -->\r\n<mpd:MPD xmlns:mpd=\"urn:mpeg:dash:schema:mpd:2011\"   type='static'\r\n    mediaPresentationDuration=\"PT10S\" >\r\n  <mpd:Period><mpd:AdaptationSet contentType=\"video\" par=\"16:9\">\r\n    <mpd:SegmentTemplate timescale=\"1000\" duration=\"2000\" />\r\n    <mpd:Representation id=\"a&amp;b\" bandwidth=\"1\"><![CDATA[ <BaseURL>x</BaseURL> ]]></mpd:Representation>\r\n    <?pi data?><mpd:EssentialProperty schemeIdUri=\"urn:x\" value=\"&#x41;&lt;\"/>\r\n  </mpd:AdaptationSet></mpd:Period>\r\n</mpd:MPD>\r\n";

#[test]
fn mpd_without_urls_round_trips_byte_identically() {
    let out = rewrite_dash(MPD_NO_URLS, &url(MPD_BASE), &mut |_| {
        Err("map must not be called".to_owned())
    })
    .unwrap();
    assert_eq!(out, MPD_NO_URLS);
}

#[test]
fn mpd_prefixed_namespace_and_template_copy_use_prefix() {
    let input = r#"<m:MPD xmlns:m="urn:mpeg:dash:schema:mpd:2011"><m:Period><m:AdaptationSet><m:SegmentTemplate media="$Number$.m4s"/><m:Representation id="r"><m:BaseURL>r/</m:BaseURL></m:Representation></m:AdaptationSet></m:Period></m:MPD>"#;
    let out = dash(input, "https://o.example/x/a.mpd").unwrap();
    assert_eq!(
        out,
        r#"<m:MPD xmlns:m="urn:mpeg:dash:schema:mpd:2011"><m:Period><m:AdaptationSet><m:SegmentTemplate media="/p/https://o.example/x/$Number$.m4s"/><m:Representation id="r"><m:BaseURL>/p/https://o.example/x/r/</m:BaseURL><m:SegmentTemplate media="/p/https://o.example/x/r/$Number$.m4s"/></m:Representation></m:AdaptationSet></m:Period></m:MPD>"#
    );
}

#[test]
fn mpd_inherited_template_merges_into_lower_template() {
    // The Representation overrides `media` but inherits `initialization`, which must be
    // re-resolved against its own BaseURL.
    let input = r#"<MPD><Period><AdaptationSet><SegmentTemplate media="a-$Number$.m4s" initialization="init.mp4"/><Representation id="r"><BaseURL>r/</BaseURL><SegmentTemplate media="b-$Number$.m4s"></SegmentTemplate></Representation></AdaptationSet></Period></MPD>"#;
    let out = dash(input, "https://o.example/m.mpd").unwrap();
    assert!(
        out.contains(r#"<SegmentTemplate media="/p/https://o.example/r/b-$Number$.m4s" initialization="/p/https://o.example/r/init.mp4"></SegmentTemplate>"#),
        "{out}"
    );
}

#[test]
fn mpd_adaptation_set_base_with_period_template_gets_copy_before_representations() {
    let input = r#"<MPD><Period><SegmentTemplate media="$Number$.m4s"/><AdaptationSet><BaseURL>v/</BaseURL><Representation id="1"/></AdaptationSet></Period></MPD>"#;
    let out = dash(input, "https://o.example/m.mpd").unwrap();
    assert!(
        out.contains(r#"<BaseURL>/p/https://o.example/v/</BaseURL><SegmentTemplate media="/p/https://o.example/v/$Number$.m4s"/><Representation id="1"/>"#),
        "{out}"
    );
}

#[test]
fn mpd_first_of_several_base_urls_decides_and_all_are_rewritten() {
    let input = r#"<MPD><BaseURL>https://a.example/x/</BaseURL><BaseURL>https://b.example/y/</BaseURL><Period><SegmentList><SegmentURL media="s.m4s"/></SegmentList></Period></MPD>"#;
    let out = dash(input, "https://o.example/m.mpd").unwrap();
    assert_eq!(
        out,
        r#"<MPD><BaseURL>/p/https://a.example/x/</BaseURL><BaseURL>/p/https://b.example/y/</BaseURL><Period><SegmentList><SegmentURL media="/p/https://a.example/x/s.m4s"/></SegmentList></Period></MPD>"#
    );
}

#[test]
fn mpd_on_demand_segment_base_and_xlink() {
    let input = r#"<MPD xmlns:xlink="http://www.w3.org/1999/xlink"><Period xlink:href="remote-period.xml" xlink:actuate="onLoad"/><Period xlink:href="urn:mpeg:dash:resolve-to-zero:2013"/><Period><AdaptationSet><Representation id="1"><BaseURL>video.mp4</BaseURL><SegmentBase indexRange="800-1999"><Initialization range="0-799"/><RepresentationIndex sourceURL="video.sidx"/></SegmentBase></Representation></AdaptationSet></Period></MPD>"#;
    let out = dash(input, "https://o.example/vod/m.mpd").unwrap();
    assert_eq!(
        out,
        r#"<MPD xmlns:xlink="http://www.w3.org/1999/xlink"><Period xlink:href="/p/https://o.example/vod/remote-period.xml" xlink:actuate="onLoad"/><Period xlink:href="urn:mpeg:dash:resolve-to-zero:2013"/><Period><AdaptationSet><Representation id="1"><BaseURL>/p/https://o.example/vod/video.mp4</BaseURL><SegmentBase indexRange="800-1999"><Initialization range="0-799"/><RepresentationIndex sourceURL="/p/https://o.example/vod/video.sidx"/></SegmentBase></Representation></AdaptationSet></Period></MPD>"#
    );
}

#[test]
fn mpd_base_url_out_of_schema_order_is_an_error() {
    let input = r#"<MPD><Period><SegmentList><SegmentURL media="s.m4s"/></SegmentList><BaseURL>x/</BaseURL></Period></MPD>"#;
    let e = dash(input, MPD_BASE).unwrap_err();
    assert!(matches!(e, RewriteError::Xml(_)), "{e:?}");
}

#[test]
fn mpd_hostile_inputs() {
    // Mismatched tags.
    let e = dash("<MPD><Period></MPD>", MPD_BASE).unwrap_err();
    assert!(matches!(e, RewriteError::Xml(_)), "{e:?}");
    // Markup inside BaseURL.
    let e = dash("<MPD><BaseURL><![CDATA[a/]]></BaseURL></MPD>", MPD_BASE).unwrap_err();
    assert!(matches!(e, RewriteError::Xml(_)), "{e:?}");
    // Map output with a newline.
    let e = rewrite_dash(
        "<MPD><BaseURL>a/</BaseURL></MPD>",
        &url(MPD_BASE),
        &mut |_| Ok("/x\n".to_owned()),
    )
    .unwrap_err();
    assert!(matches!(e, RewriteError::CrLfInOutput), "{e:?}");
    // Map output with markup is escaped, never injected.
    let out = rewrite_dash(
        r#"<MPD><BaseURL>a/</BaseURL><Period><SegmentList><SegmentURL media="s"/></SegmentList></Period></MPD>"#,
        &url(MPD_BASE),
        &mut |_| Ok(r#"/x"><evil a='&'/>"#.to_owned()),
    )
    .unwrap();
    assert!(!out.contains("<evil"), "{out}");
    assert!(out.contains("&lt;evil"), "{out}");
    // A map that drops the placeholder cannot be used for templates.
    let e = rewrite_dash(
        r#"<MPD><Period><SegmentTemplate media="$Number$.m4s"/></Period></MPD>"#,
        &url(MPD_BASE),
        &mut |_| Ok("/signed/opaque".to_owned()),
    )
    .unwrap_err();
    assert!(matches!(e, RewriteError::BadUri(_)), "{e:?}");
}

#[test]
fn placeholder_parsing() {
    use super::dash::placeholders;
    assert_eq!(
        placeholders("a/$RepresentationID$/$Number%05d$-$Time$-$Bandwidth$.m4s"),
        [
            "$RepresentationID$",
            "$Number%05d$",
            "$Time$",
            "$Bandwidth$"
        ]
    );
    assert_eq!(placeholders("$x$Number$"), ["$Number$"]);
    assert_eq!(placeholders("cost$$.m4s"), ["$$"]);
    assert!(placeholders("$Number%5$ $Foo$ $").is_empty());
}

// ---------------------------------------------------------------------------------------
// Property tests

fn segment_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-]{1,12}\\.(ts|m4s|mp4|aac)"
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "\\?[a-z]{1,5}=[a-zA-Z0-9%~._-]{0,10}(&[a-z]{1,5}=[a-zA-Z0-9._-]{0,8}){0,2}",
    ]
}

fn uri() -> impl Strategy<Value = String> {
    let dirs = "([a-z0-9]{1,6}/){0,3}";
    prop_oneof![
        (segment_name(), query()).prop_map(|(s, q)| format!("{s}{q}")),
        (dirs, segment_name(), query()).prop_map(|(d, s, q)| format!("{d}{s}{q}")),
        ("(\\.\\./){1,2}", segment_name()).prop_map(|(u, s)| format!("{u}{s}")),
        (dirs, segment_name()).prop_map(|(d, s)| format!("/{d}{s}")),
        ("[a-z]{1,8}\\.example", segment_name(), query())
            .prop_map(|(h, s, q)| format!("//{h}/{s}{q}")),
        (
            "https?",
            "[a-z]{1,8}\\.example(:[0-9]{2,4})?",
            dirs,
            segment_name(),
            query()
        )
            .prop_map(|(sch, h, d, s, q)| format!("{sch}://{h}/{d}{s}{q}")),
    ]
}

#[derive(Debug, Clone)]
enum Line {
    Segment(f32, String),
    Key(String),
    Map(String),
    Part(String),
    Comment(String),
    Blank,
    Tag(String),
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        6 => (0.1f32..10.0, uri()).prop_map(|(d, u)| Line::Segment(d, u)),
        1 => uri().prop_map(Line::Key),
        1 => uri().prop_map(Line::Map),
        1 => uri().prop_map(Line::Part),
        1 => "[ -~]{0,30}".prop_map(Line::Comment),
        1 => Just(Line::Blank),
        1 => "(EXT-X-DISCONTINUITY|EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00Z|EXT-X-BYTERANGE:100@0|EXT-X-GAP)".prop_map(Line::Tag),
    ]
}

fn playlist() -> impl Strategy<Value = String> {
    (prop::collection::vec(line(), 0..40), any::<bool>(), any::<bool>()).prop_map(
        |(lines, crlf, final_newline)| {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut s = format!("#EXTM3U{nl}#EXT-X-TARGETDURATION:10{nl}");
            for l in lines {
                match l {
                    Line::Segment(d, u) => s.push_str(&format!("#EXTINF:{d:.3},{nl}{u}{nl}")),
                    Line::Key(u) => s.push_str(&format!(
                        "#EXT-X-KEY:METHOD=AES-128,URI=\"{u}\",IV=0x00000000000000000000000000000001{nl}"
                    )),
                    Line::Map(u) => s.push_str(&format!("#EXT-X-MAP:URI=\"{u}\",BYTERANGE=\"1@2\"{nl}")),
                    Line::Part(u) => s.push_str(&format!(
                        "#EXT-X-PART:DURATION=0.5,URI=\"{u}\",INDEPENDENT=YES{nl}"
                    )),
                    Line::Comment(c) => s.push_str(&format!("# {c}{nl}")),
                    Line::Blank => s.push_str(nl),
                    Line::Tag(t) => s.push_str(&format!("#{t}{nl}")),
                }
            }
            if !final_newline {
                s.truncate(s.len() - nl.len());
            }
            s
        },
    )
}

fn base_url() -> impl Strategy<Value = Url> {
    (
        "https?",
        "[a-z]{1,8}\\.example",
        "([a-z0-9]{1,6}/){0,3}",
        query(),
    )
        .prop_map(|(sch, h, d, q)| url(&format!("{sch}://{h}/{d}index.m3u8{q}")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn hls_rewrite_round_trips(input in playlist(), base in base_url()) {
        let out = rewrite_hls(&input, &base, &mut proxy_map()).unwrap();
        let before = hls_uris(&input);
        let after = hls_uris(&out);
        // (1) Same number of URIs.
        prop_assert_eq!(before.len(), after.len());
        // (2) Each rewritten URI unwraps to base.join(original).
        for (orig, new) in before.iter().zip(&after) {
            let (up, ctx) = unwrap_proxy_url(new).unwrap();
            prop_assert_eq!(ctx, CTX);
            prop_assert_eq!(up, base.join(orig).unwrap().to_string());
        }
        // (3) Tags, comments and blank lines without URIs are byte-identical, and the
        // line structure (count and endings) is unchanged.
        let lines_in: Vec<&str> = input.split_inclusive('\n').collect();
        let lines_out: Vec<&str> = out.split_inclusive('\n').collect();
        prop_assert_eq!(lines_in.len(), lines_out.len());
        for (a, b) in lines_in.iter().zip(&lines_out) {
            prop_assert_eq!(a.ends_with("\r\n"), b.ends_with("\r\n"));
            if a.trim().is_empty() || (a.starts_with('#') && !a.contains("URI=")) {
                prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn dash_hierarchy_and_templates_round_trip(
        doc_base in base_url(),
        mpd_base in prop::option::of(uri_dir()),
        period_base in prop::option::of(uri_dir()),
        rep_base in prop::option::of(uri_dir()),
        segments in prop::collection::vec(segment_name(), 1..5),
        template in "[a-z]{0,4}/?(\\$RepresentationID\\$/)?seg-\\$Number(%0[1-9]d)?\\$\\.m4s",
        number in 0u64..1_000_000,
    ) {
        let el = |name: &str, v: &Option<String>| {
            v.as_ref().map(|v| format!("<{name}>{v}</{name}>")).unwrap_or_default()
        };
        let list: String = segments
            .iter()
            .map(|s| format!("<SegmentURL media=\"{s}\"/>"))
            .collect();
        let input = format!(
            "<MPD>{}<Period>{}<AdaptationSet><Representation id=\"r1\">{}<SegmentList>{list}</SegmentList></Representation><Representation id=\"r2\"><SegmentTemplate media=\"{template}\"/></Representation></AdaptationSet></Period></MPD>",
            el("BaseURL", &mpd_base), el("BaseURL", &period_base), el("BaseURL", &rep_base),
        );
        let out = rewrite_dash(&input, &doc_base, &mut proxy_map()).unwrap();
        let join = |b: &Url, v: &Option<String>| v.as_ref().map_or(b.clone(), |v| b.join(v).unwrap());
        let mpd = join(&doc_base, &mpd_base);
        let period = join(&mpd, &period_base);
        let rep = join(&period, &rep_base);
        let before = dash_uris(&input);
        let after = dash_uris(&out);
        prop_assert_eq!(before.len(), after.len());
        let n = before.len();
        // SegmentURLs resolve against the innermost BaseURL.
        for (i, s) in segments.iter().enumerate() {
            let new = &after[n - 1 - segments.len() + i];
            prop_assert_eq!(unwrap_to_upstream(new), rep.join(s).unwrap().to_string());
        }
        // The template, once the player substitutes, unwraps to the substituted upstream URL.
        let played = substitute(&after[n - 1], "r2", number);
        prop_assert_eq!(
            unwrap_to_upstream(&played),
            period.join(&substitute(&template, "r2", number)).unwrap().to_string()
        );
        // Everything outside the URLs is unchanged.
        let skeleton_in = skeleton(&input, &before);
        let escaped: Vec<String> = after.iter().map(|u| u.replace('&', "&amp;")).collect();
        let skeleton_out = skeleton(&out, &escaped);
        prop_assert_eq!(skeleton_in, skeleton_out);
    }

    #[test]
    fn proxy_url_round_trips(u in uri(), base in base_url(), ctx in "[ -~]{0,20}") {
        let abs = base.join(&u).unwrap();
        let p = proxy_url(&abs, &ctx);
        prop_assert!(p.bytes().all(|b| b.is_ascii_graphic()));
        prop_assert_eq!(unwrap_proxy_url(&p), Some((abs.to_string(), ctx)));
    }

    #[test]
    fn rewrite_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300), dash in any::<bool>()) {
        let kind = if dash { PlaylistKind::Dash } else { PlaylistKind::Hls };
        let _ = rewrite(kind, &bytes, &url("https://h.example/a/"), &mut proxy_map());
        let _ = detect(None, "/x.m3u8", &bytes);
    }
}

/// `doc` with each of `parts` (found in order, left to right) replaced by a marker.
fn skeleton(doc: &str, parts: &[String]) -> String {
    let mut out = String::new();
    let mut rest = doc;
    for p in parts {
        let i = rest.find(p.as_str()).unwrap();
        out.push_str(&rest[..i]);
        out.push('\u{1}');
        rest = &rest[i + p.len()..];
    }
    out.push_str(rest);
    out
}

fn uri_dir() -> impl Strategy<Value = String> {
    prop_oneof![
        "([a-z0-9]{1,6}/){1,2}",
        "/([a-z0-9]{1,6}/){1,2}",
        "(\\.\\./)?[a-z]{1,5}/",
        "https://[a-z]{1,8}\\.example/([a-z0-9]{1,6}/){0,2}",
    ]
}

// ---------------------------------------------------------------------------------------
// `rewrite_proxied` (the edge's fast path) must equal `rewrite` with the edge's map.

fn generic_proxied(kind: PlaylistKind, input: &str, base: &Url) -> Result<Vec<u8>, String> {
    let mapper = ProxyMapper::new(base, CTX);
    rewrite(kind, input.as_bytes(), base, &mut |u| mapper.map(u)).map_err(|e| e.to_string())
}

fn fast_proxied(kind: PlaylistKind, input: &str, base: &Url) -> Result<Vec<u8>, String> {
    rewrite_proxied(kind, input.as_bytes(), base, CTX, base).map_err(|e| e.to_string())
}

#[test]
fn fast_path_matches_generic_on_edge_cases() {
    let uris = [
        "seg.ts",
        "a/b/seg.m4s",
        "./seg.ts",
        "../seg.ts",
        "a/../seg.ts",
        "a//seg.ts",
        "a/./seg.ts",
        ".",
        "..",
        "...",
        "a/",
        "-_~.ts",
        "seg%20x.ts",
        "seg x.ts",
        "x:y.ts",
        "seg.ts?x=1",
        "seg.ts#f",
        "SEG.TS",
        "/abs.ts",
        "a\\b.ts",
        "ü.ts",
    ];
    let bases = [
        "https://cdn.example.com/live/index.m3u8",
        "https://cdn.example.com/live/index.m3u8?token=a/b#frag",
        "http://cdn.example.com:8081/a%20b/c/",
        "http://cdn.example.com",
        "https://user:pw@cdn.example.com/x/y.m3u8",
        "http://[::1]:9/a/b.m3u8",
    ];
    for base in bases {
        let base = url(base);
        for u in uris {
            for input in [
                format!("#EXTM3U\n#EXTINF:2,\n{u}\n"),
                format!("#EXTM3U\n#EXT-X-MAP:URI=\"{u}\"\n#EXTINF:2,\nok.ts\r\n"),
            ] {
                assert_eq!(
                    fast_proxied(PlaylistKind::Hls, &input, &base),
                    generic_proxied(PlaylistKind::Hls, &input, &base),
                    "{base} {input:?}"
                );
            }
        }
    }
    // Non-http(s) bases never take the fast path (and are refused like before).
    let input = "#EXTM3U\n#EXTINF:2,\nseg.ts\n";
    let base = url("ftp://h.example/a/index.m3u8");
    assert_eq!(
        fast_proxied(PlaylistKind::Hls, input, &base),
        generic_proxied(PlaylistKind::Hls, input, &base)
    );
    assert!(fast_proxied(PlaylistKind::Hls, input, &base).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn fast_path_matches_generic(input in playlist(), base in base_url()) {
        prop_assert_eq!(
            fast_proxied(PlaylistKind::Hls, &input, &base),
            generic_proxied(PlaylistKind::Hls, &input, &base)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Issue 11: image streams, UTCTiming, EXT-X-DEFINE variables

#[test]
fn image_streams_are_rewritten() {
    let input = "#EXTM3U\n#EXT-X-IMAGE-STREAM-INF:BANDWIDTH=12000,RESOLUTION=320x180,CODECS=\"jpeg\",URI=\"thumbs/t.m3u8\"\n";
    let out = hls(input, "https://cdn.example.com/live/master.m3u8").unwrap();
    let uri = out
        .split("URI=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(
        unwrap_to_upstream(uri),
        "https://cdn.example.com/live/thumbs/t.m3u8"
    );
}

#[test]
fn define_variables_in_uris_survive() {
    let input = "#EXTM3U\n#EXT-X-DEFINE:NAME=\"p\",VALUE=\"abc\"\n#EXT-X-MAP:URI=\"init-{$p}.mp4\"\n#EXTINF:2,\nseg_{$p}_1.ts?auth={$p}\n";
    let out = hls(input, "https://cdn.example.com/live/index.m3u8").unwrap();
    assert!(!out.contains("%7B") && !out.contains("%257B"), "{out}");
    let seg = out.lines().last().unwrap();
    assert!(
        seg.contains("seg_{$p}_1.ts") && seg.contains("auth%3D{$p}"),
        "{seg}"
    );
    // After the player substitutes the variable, the proxied URL decodes to the upstream one.
    let substituted = seg.replace("{$p}", "abc");
    assert_eq!(
        unwrap_to_upstream(&substituted),
        "https://cdn.example.com/live/seg_abc_1.ts?auth=abc"
    );
    let map = out.lines().nth(2).unwrap();
    assert!(map.contains("init-{$p}.mp4"), "{map}");
}

/// The edge's rewrite of `input` fetched from `base`, the player having asked for
/// `requested`.
fn edge_hls(input: &str, base: &str, requested: &str) -> Result<String, RewriteError> {
    let out = rewrite_proxied(
        PlaylistKind::Hls,
        input.as_bytes(),
        &url(base),
        CTX,
        &url(requested),
    )?;
    Ok(String::from_utf8(out).unwrap())
}

/// What a player substitutes: hls.js's `{$name}` replacement over one line.
fn player_substitutes(line: &str, vars: &[(&str, &str)]) -> String {
    let mut out = line.to_string();
    for (n, v) in vars {
        out = out.replace(&format!("{{${n}}}"), v);
    }
    out
}

/// The upstream URL a proxied URI (query or path form) stands for, as the edge reads it.
fn upstream_of(proxied: &str) -> String {
    if let Some(u) = unwrap_proxy_url(proxied) {
        return u.0;
    }
    let (path, query) = match proxied.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (proxied, None),
    };
    unwrap_proxy_path(path, query).unwrap().0
}

#[test]
fn proxied_variables_sluice_knows_are_substituted_by_sluice() {
    // VALUE and QUERYPARAM (from the URL the player asked for, not sluice's) with the bytes
    // that break a query: `&`, `=`, `+`, `%`, `#`.
    let input = "#EXTM3U\n#EXT-X-DEFINE:NAME=\"p\",VALUE=\"a&b=c+d%2F\"\n#EXT-X-DEFINE:QUERYPARAM=\"token\"\n#EXT-X-MAP:URI=\"init-{$p}.mp4\"\n#EXTINF:2,\nseg_1.ts?auth={$token}&p={$p}\n";
    let out = edge_hls(
        input,
        "https://cdn.example.com/live/index.m3u8",
        "https://cdn.example.com/live/index.m3u8?token=x%26y%3Dz%2B1&other=1",
    )
    .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[1], "#EXT-X-DEFINE:NAME=\"p\",VALUE=\"a&b=c+d%2F\"");
    // The player finds the value in the playlist itself, never in sluice's query.
    assert_eq!(lines[2], "#EXT-X-DEFINE:NAME=\"token\",VALUE=\"x&y=z+1\"");
    assert!(!out.contains("{$"), "{out}");
    assert_eq!(
        upstream_of(lines[5]),
        "https://cdn.example.com/live/seg_1.ts?auth=x&y=z+1&p=a&b=c+d%2F"
    );
    let map = lines[3].split('"').nth(1).unwrap();
    assert_eq!(
        upstream_of(map),
        "https://cdn.example.com/live/init-a&b=c+d%2F.mp4"
    );
    // A QUERYPARAM the URL does not have stays for the player (who fails as it would
    // against the origin), and so do its references.
    let out = edge_hls(
        "#EXTM3U\n#EXT-X-DEFINE:QUERYPARAM=\"token\"\n#EXTINF:2,\nseg.ts?t={$token}\n",
        "https://cdn.example.com/live/index.m3u8",
        "https://cdn.example.com/live/index.m3u8",
    )
    .unwrap();
    assert!(
        out.contains("#EXT-X-DEFINE:QUERYPARAM=\"token\"\n"),
        "{out}"
    );
    assert!(out.lines().last().unwrap().contains("{$token}"), "{out}");
    // A value that cannot be a quoted string is refused, never written.
    assert!(edge_hls(
        "#EXTM3U\n#EXT-X-DEFINE:QUERYPARAM=\"q\"\n",
        "https://cdn.example.com/i.m3u8",
        "https://cdn.example.com/i.m3u8?q=a%22b",
    )
    .is_err());
}

#[test]
fn proxied_imported_variables_are_left_to_the_player_in_the_path_form() {
    let input = "#EXTM3U\n#EXT-X-DEFINE:IMPORT=\"auth\"\n#EXT-X-DEFINE:NAME=\"v\",VALUE=\"720\"\n#EXT-X-MAP:URI=\"{$v}/init.mp4?a={$auth}\"\n#EXTINF:2,\n{$v}/seg 1.ts?a={$auth}&k=1\n#EXTINF:2,\nhttps://other.example/{$auth}/x.ts\n";
    let out = edge_hls(
        input,
        "https://cdn.example.com/live/index.m3u8?s=1",
        "https://cdn.example.com/live/index.m3u8?s=1",
    )
    .unwrap();
    assert!(out.contains("#EXT-X-DEFINE:IMPORT=\"auth\"\n"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let seg = lines[5];
    assert!(
        seg.starts_with(&format!("/api/proxy/{CTX}/https/cdn.example.com/live/720/")),
        "{seg}"
    );
    // Whatever the player substitutes means in the upstream URL what it would mean there.
    for value in ["plain", "x&y=z", "a+b", "100%25", "a#frag", "t=1&u=2"] {
        let fetched = player_substitutes(seg, &[("auth", value)]);
        assert_eq!(
            upstream_of(&fetched),
            format!("https://cdn.example.com/live/720/seg%201.ts?a={value}&k=1"),
            "{value}"
        );
    }
    let map = lines[3].split('"').nth(1).unwrap();
    assert_eq!(
        upstream_of(&player_substitutes(map, &[("auth", "q&r")])),
        "https://cdn.example.com/live/720/init.mp4?a=q&r"
    );
    let other = player_substitutes(lines[7], &[("auth", "dir")]);
    assert_eq!(upstream_of(&other), "https://other.example/dir/x.ts");
}

#[test]
fn proxied_asset_lists_and_steering_manifests_are_hinted() {
    let input = "#EXTM3U\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"steer.json\",PATHWAY-ID=\"A\"\n#EXT-X-DATERANGE:ID=\"ad1\",CLASS=\"com.apple.hls.interstitial\",START-DATE=\"2026-01-01T00:00:00Z\",X-ASSET-LIST=\"https://ads.example/list?s=1\"\n#EXT-X-DATERANGE:ID=\"ad2\",CLASS=\"com.apple.hls.interstitial\",START-DATE=\"2026-01-01T00:00:10Z\",X-ASSET-URI=\"ad.m3u8\"\n";
    let base = "https://cdn.example.com/live/master.m3u8";
    let out = edge_hls(input, base, base).unwrap();
    let uris = hls_uris(&out);
    assert!(
        uris[0].ends_with(&format!("&ctx={CTX}&doc=steering")),
        "{out}"
    );
    assert_eq!(
        upstream_of(&uris[0]),
        "https://cdn.example.com/live/steer.json"
    );
    assert!(uris[1].ends_with("&doc=asset-list"), "{out}");
    assert_eq!(upstream_of(&uris[1]), "https://ads.example/list?s=1");
    // An asset URI is a playlist: no hint.
    assert!(uris[2].ends_with(&format!("&ctx={CTX}")), "{out}");
    // The generic rewrite (gated /stream playlists) adds none.
    let plain = hls(input, base).unwrap();
    assert!(!plain.contains("doc="), "{plain}");
}

#[test]
fn utc_timing_urls_are_rewritten_for_http_schemes_only() {
    let input = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic"><UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-xsdate:2014" value="https://time.example.com/now https://time2.example.com/now"/><UTCTiming schemeIdUri="urn:mpeg:dash:utc:direct:2014" value="2026-11-29T20:00:00Z"/><Period/></MPD>
"#;
    let out = dash(input, "https://cdn.example.com/live/manifest.mpd").unwrap();
    assert!(
        out.contains(r#"value="/p/https://time.example.com/now /p/https://time2.example.com/now""#),
        "{out}"
    );
    assert!(out.contains(r#"value="2026-11-29T20:00:00Z""#), "{out}");
}

#[test]
fn alternative_base_urls_keep_failover_through_the_proxy() {
    let input = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static"><BaseURL>https://cdn1.example.com/live/</BaseURL><BaseURL>https://cdn2.example.com:8443/live/</BaseURL><Period><AdaptationSet><Representation id="v" bandwidth="1"><SegmentTemplate media="v/seg_$Number$.m4s" initialization="v/init.mp4"/></Representation></AdaptationSet></Period><Location>https://origin.example.com/live/manifest.mpd</Location></MPD>
"#;
    assert!(dash::has_alternative_base_urls(input));
    let base = url("https://origin.example.com/live/manifest.mpd");
    let out = String::from_utf8(
        rewrite_proxied(PlaylistKind::Dash, input.as_bytes(), &base, CTX, &base).unwrap(),
    )
    .unwrap();
    // Both BaseURLs in path form, relative children untouched.
    assert!(
        out.contains("<BaseURL>/api/proxy/c1/https/cdn1.example.com/live/</BaseURL>"),
        "{out}"
    );
    assert!(
        out.contains("<BaseURL>/api/proxy/c1/https/cdn2.example.com:8443/live/</BaseURL>"),
        "{out}"
    );
    assert!(out.contains(r#"media="v/seg_$Number$.m4s""#), "{out}");
    // A player resolving against either BaseURL lands on a proxied URL of that CDN.
    let second = url("http://sluice/api/proxy/c1/https/cdn2.example.com:8443/live/");
    let seg = second.join("v/seg_7.m4s").unwrap();
    assert_eq!(
        unwrap_proxy_path(seg.path(), seg.query()),
        Some((
            "https://cdn2.example.com:8443/live/v/seg_7.m4s".into(),
            "c1".into()
        ))
    );
    // The document-level Location is still query-form.
    assert!(out.contains("<Location>/api/proxy?url="), "{out}");
    // One BaseURL per level: the usual absolute rewrite.
    let single = input.replace("<BaseURL>https://cdn2.example.com:8443/live/</BaseURL>", "");
    assert!(!dash::has_alternative_base_urls(&single));
    let out = String::from_utf8(
        rewrite_proxied(PlaylistKind::Dash, single.as_bytes(), &base, CTX, &base).unwrap(),
    )
    .unwrap();
    assert!(out.contains("media=\"/api/proxy?url="), "{out}");
}

// ---------------------------------------------------------------------------------------
// Issue 14: the DASH fast path is byte-identical to the generic rewrite

fn template_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("$RepresentationID$/seg-$Number%05d$.m4s".to_string()),
        Just("seg_$Number$.m4s".to_string()),
        Just("$$x.m4s".to_string()),
        Just("seg$Time$".to_string()),
        Just("a/$Bandwidth$/b.m4s".to_string()),
        Just("$Number$$Time$.m4s".to_string()),
        Just("x$Unknown$.m4s".to_string()),
        Just("seg_$Number.m4s".to_string()),
        Just("../seg_$Number$.m4s".to_string()),
        Just("https://o.example/$Number$.m4s".to_string()),
        Just("a//$Number$.m4s".to_string()),
        Just("./$Number$.m4s".to_string()),
        Just("$RepresentationID$/".to_string()),
        Just("seg %20$Number$.m4s".to_string()),
        Just("seg&amp;$Number$.m4s".to_string()),
        ("[a-z0-9_.~-]{1,8}", "(/[a-z0-9]{1,4}){0,2}")
            .prop_map(|(a, b)| format!("{a}{b}_$Number%0{}d$.m4s", a.len() % 9)),
    ]
}

fn base_element() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("<BaseURL>https://cdn.example/d/</BaseURL>".to_string()),
        Just("<BaseURL>sub/</BaseURL>".to_string()),
        Just("<BaseURL>../up/</BaseURL>".to_string()),
        Just("<BaseURL>plain</BaseURL>".to_string()),
        uri().prop_map(|u| format!("<BaseURL>{}</BaseURL>", u.replace('&', "&amp;"))),
    ]
}

fn mpd() -> impl Strategy<Value = String> {
    (
        base_element(),
        base_element(),
        template_value(),
        template_value(),
        prop::collection::vec(uri(), 0..6),
        base_element(),
    )
        .prop_map(|(mpd_base, period_base, media, init, urls, rep_base)| {
            let esc = |s: &str| s.replace('&', "&amp;");
            let mut s = format!(
                "<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\">{mpd_base}<Location>manifest.mpd</Location><Period>{period_base}<AdaptationSet><SegmentTemplate media=\"{}\" initialization=\"{}\"/><Representation id=\"v1\">{rep_base}</Representation></AdaptationSet><AdaptationSet><Representation id=\"a\"><SegmentList><Initialization sourceURL=\"init.mp4\"/>",
                esc(&media),
                esc(&init)
            );
            for u in urls {
                s.push_str(&format!("<SegmentURL media=\"{}\"/>", esc(&u)));
            }
            s.push_str("</SegmentList></Representation></AdaptationSet></Period></MPD>\n");
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn dash_fast_path_matches_generic(input in mpd(), base in base_url()) {
        prop_assert_eq!(
            fast_proxied(PlaylistKind::Dash, &input, &base),
            generic_proxied(PlaylistKind::Dash, &input, &base)
        );
    }
}

#[test]
fn dash_fast_path_matches_generic_on_the_bench_shapes() {
    let base = url("https://origin.example.com/live/channel1/manifest.mpd");
    for media in [
        "$RepresentationID$/seg-$Number%05d$.m4s",
        "$$x.m4s",
        "seg$Time$",
        "x$Unknown$.m4s",
        "seg_$Number.m4s",
    ] {
        let input = format!(
            "<MPD><BaseURL>https://cdn.example.com/dash/</BaseURL><Period><BaseURL>p0/</BaseURL><AdaptationSet><SegmentTemplate media=\"{media}\" initialization=\"$RepresentationID$/init.mp4\"/><Representation id=\"v\"/></AdaptationSet><AdaptationSet><Representation id=\"a\"><BaseURL>audio/en/</BaseURL><SegmentList><Initialization sourceURL=\"init.mp4\"/><SegmentURL media=\"s1.m4s\"/></SegmentList></Representation></AdaptationSet></Period></MPD>"
        );
        assert_eq!(
            fast_proxied(PlaylistKind::Dash, &input, &base),
            generic_proxied(PlaylistKind::Dash, &input, &base),
            "{media}"
        );
    }
}

/// What the edge did before the one-pass alternative detection: a separate parse to find
/// alternative BaseURLs, then the failover or the generic rewrite.
fn two_pass_proxied(input: &str, base: &Url) -> Result<Vec<u8>, String> {
    let mapper = ProxyMapper::new(base, CTX);
    if dash::has_alternative_base_urls(input) {
        dash::rewrite_dash_failover(input, base, &mut |u| mapper.map(u), &mut |u| {
            Ok(super::proxy_path_url(u, CTX))
        })
        .map(String::into_bytes)
        .map_err(|e| e.to_string())
    } else {
        generic_proxied(PlaylistKind::Dash, input, base)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn alternative_base_urls_are_found_in_the_same_pass(
        input in mpd(),
        extra in base_element(),
        base in base_url(),
    ) {
        // A second BaseURL beside the Period's first one (or none).
        let input = input.replacen("<Period>", &format!("<Period>{extra}"), 1);
        prop_assert_eq!(
            fast_proxied(PlaylistKind::Dash, &input, &base),
            two_pass_proxied(&input, &base)
        );
    }
}

/// quick-xml steps over a UTF-8 BOM without counting it in its offsets: every splice located
/// by an offset (BaseURL text, inserted templates) once landed 3 bytes early and the output
/// was broken XML, answered as a success.
#[test]
fn an_mpd_with_a_bom_is_spliced_where_its_urls_are() {
    let mpd = "\u{FEFF}<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\"><BaseURL>https://cdn.example/x/</BaseURL><Period><AdaptationSet><BaseURL>a/</BaseURL><Representation id=\"r\" bandwidth=\"1\"><SegmentTemplate media=\"s_$Number$.m4s\"/></Representation></AdaptationSet></Period></MPD>";
    let base = Url::parse("https://o.example/m.mpd").unwrap();
    let mut map = |u: &Url| Ok(format!("/p?u={}", u.as_str().replace('&', "%26")));
    let out = rewrite_dash(mpd, &base, &mut map).unwrap();
    assert!(out.starts_with("\u{FEFF}<MPD "), "{out}");
    assert!(
        out.contains("<BaseURL>/p?u=https://cdn.example/x/</BaseURL>"),
        "{out}"
    );
    assert!(
        out.contains("<BaseURL>/p?u=https://cdn.example/x/a/</BaseURL>"),
        "{out}"
    );
    assert!(
        out.contains("media=\"/p?u=https://cdn.example/x/a/s_$Number$.m4s\""),
        "{out}"
    );
    // Well-formed: the same document shape as without the BOM.
    let plain = rewrite_dash(&mpd[3..], &base, &mut map).unwrap();
    assert_eq!(&out[3..], plain);
}

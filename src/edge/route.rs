//! First step of every edge request: which route is this, and for media paths, is the path
//! safe to fetch. Pure functions; nothing here does I/O.
//!
//! A `/stream/{hash}/{rest}` path is decoded exactly once and then judged segment by segment.
//! Anything that could change meaning under a second decoding or on a different file system
//! is refused before the origin is ever contacted: `..` and `.` segments in any encoding,
//! encoded slashes and backslashes, a `%` left after decoding (double encoding), NUL and other
//! control bytes, invalid or overlong UTF-8, empty segments and absolute paths.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use crate::media::{self, MediaKind};

/// Where an edge request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/stream/{hash}/{rest}`: proxied (and cached) from the bucket.
    Stream(StreamPath),
    /// `/api/proxy?url&ctx`: proxied for a provider context.
    ProviderProxy,
    /// Everything else: the in-process API router.
    Api,
}

/// Why a media path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRejection {
    /// Traversal, bad encoding, control bytes, empty segments: 400.
    Malformed(&'static str),
    /// An extension that is not in `stream.extensions`: 403.
    ExtensionNotAllowed,
}

/// A validated media path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPath {
    /// The `{hash}` (or registered player id), decoded.
    pub hash: String,
    /// The decoded segments after the hash.
    pub rest: Vec<String>,
    pub kind: MediaKind,
}

impl StreamPath {
    /// `rest` re-encoded as a URL path (no leading slash).
    pub fn rest_encoded(&self) -> String {
        encode_segments(&self.rest)
    }

    /// The path below `/stream/{hash}/`, decoded, for logs and stats.
    pub fn rest_joined(&self) -> String {
        self.rest.join("/")
    }
}

/// Characters escaped when a decoded segment goes back into a URL path.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'\\');

pub fn encode_segments(segments: &[String]) -> String {
    let mut out = String::new();
    for (i, s) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.extend(utf8_percent_encode(s, SEGMENT));
    }
    out
}

/// Classify a request path (the URI path only, query excluded).
pub fn classify(path: &str, allowed_ext: &[String]) -> Result<Route, PathRejection> {
    if let Some(rest) = path.strip_prefix("/stream/") {
        return parse_stream_path(rest, allowed_ext).map(Route::Stream);
    }
    if path == "/stream" {
        return Err(PathRejection::Malformed("missing media path"));
    }
    if path == "/api/proxy" {
        return Ok(Route::ProviderProxy);
    }
    Ok(Route::Api)
}

const MAX_PATH: usize = 2048;

/// Parse what follows `/stream/`.
pub fn parse_stream_path(raw: &str, allowed_ext: &[String]) -> Result<StreamPath, PathRejection> {
    use PathRejection::Malformed;
    if raw.len() > MAX_PATH {
        return Err(Malformed("path too long"));
    }
    // Refuse, on the raw form, what would change the segment structure once decoded.
    let lower = raw.to_ascii_lowercase();
    for bad in ["%2f", "%5c", "%00", "%25"] {
        if lower.contains(bad) {
            return Err(Malformed("encoded separator, NUL or percent"));
        }
    }
    if raw.contains('\\') {
        return Err(Malformed("backslash"));
    }
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Malformed("invalid UTF-8"))?;
    if decoded.contains('%') {
        return Err(Malformed("percent after decoding"));
    }
    if decoded.starts_with('/') {
        return Err(Malformed("absolute path"));
    }
    let mut segments = Vec::new();
    for seg in decoded.split('/') {
        if seg.is_empty() {
            return Err(Malformed("empty path segment"));
        }
        if seg == "." || seg == ".." {
            return Err(Malformed("dot segment"));
        }
        // Dot-led segments (`...`, `..;`, `.hidden`) are traversal or hidden files on some
        // servers; no published media object needs one.
        if seg.starts_with('.') {
            return Err(Malformed("dot segment"));
        }
        if seg
            .chars()
            .any(|c| c.is_control() || c == '\\' || c == '\u{FEFF}')
        {
            return Err(Malformed("control character"));
        }
        // Windows drive letters and alternate data streams.
        if seg.contains(':') {
            return Err(Malformed("colon in path segment"));
        }
        segments.push(seg.to_string());
    }
    if segments.len() < 2 {
        return Err(Malformed("expected /stream/{hash}/{file}"));
    }
    let hash = segments.remove(0);
    if !media::valid_hash(&hash) {
        return Err(Malformed("invalid media hash"));
    }
    let last = segments.last().map(String::as_str).unwrap_or_default();
    let ext = media::extension(last).ok_or(PathRejection::ExtensionNotAllowed)?;
    let ext_lower = ext.to_ascii_lowercase();
    if !allowed_ext.contains(&ext_lower) {
        return Err(PathRejection::ExtensionNotAllowed);
    }
    Ok(StreamPath {
        hash,
        rest: segments,
        kind: MediaKind::from_extension(&ext_lower),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exts() -> Vec<String> {
        [
            "m3u8", "m4s", "mp4", "jpg", "webp", "ts", "aac", "vtt", "mpd",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn ok(p: &str) -> StreamPath {
        match classify(p, &exts()) {
            Ok(Route::Stream(s)) => s,
            other => panic!("{p}: {other:?}"),
        }
    }

    #[test]
    fn accepts_documented_paths() {
        let s = ok("/stream/movie-2026-04-01/master.m3u8");
        assert_eq!(s.hash, "movie-2026-04-01");
        assert_eq!(s.rest, vec!["master.m3u8"]);
        assert_eq!(s.kind, MediaKind::HlsPlaylist);
        let s = ok("/stream/h/video/r1080_h264/seg_1.m4s");
        assert_eq!(s.rest_encoded(), "video/r1080_h264/seg_1.m4s");
        assert_eq!(s.kind, MediaKind::Segment);
        let s = ok("/stream/h/audio/und_aac_2ch/playlist.m3u8");
        assert_eq!(s.rest.len(), 3);
        // A space survives decode and is re-encoded once.
        let s = ok("/stream/h/my%20file.ts");
        assert_eq!(s.rest_encoded(), "my%20file.ts");
    }

    #[test]
    fn refuses_disallowed_extensions() {
        for p in [
            "/stream/h/x.php",
            "/stream/h/passwd",
            "/stream/h/x.m3u8.exe",
        ] {
            assert_eq!(
                classify(p, &exts()),
                Err(PathRejection::ExtensionNotAllowed),
                "{p}"
            );
        }
    }

    #[test]
    fn refuses_traversal_in_every_encoding() {
        let cases = [
            "/stream/h/../../etc/passwd.ts",
            "/stream/../h/x.ts",
            "/stream/h/%2e%2e/x.ts",
            "/stream/h/%2E%2E/x.ts",
            "/stream/h/.%2e/x.ts",
            "/stream/h/%2e./x.ts",
            "/stream/h/%252e%252e/x.ts",
            "/stream/h/..%2fx.ts",
            "/stream/h/..%2Fx.ts",
            "/stream/h/%2e%2e%2fx.ts",
            "/stream/h/..\\x.ts",
            "/stream/h/..%5cx.ts",
            "/stream/h/%5c..%5cx.ts",
            "/stream/h/x%00.ts",
            "/stream/h/%c0%ae%c0%ae/x.ts",
            "/stream/h/%c0%af/x.ts",
            "/stream/h/%e0%80%ae%e0%80%ae/x.ts",
            "/stream/h//x.ts",
            "/stream//etc/passwd.ts",
            "/stream/h/./x.ts",
            "/stream/h/.../x.ts",
            "/stream/%2e%2e/x.ts",
            "/stream/h/C:/x.ts",
            "/stream/h/x.ts::$DATA.ts",
            "/stream/h/%0d%0aSet-Cookie:x.ts",
            "/stream/h/%09.ts",
            "/stream/h%2f..%2f/x.ts",
            "/stream/h/",
            "/stream/x.ts",
            "/stream/h/%ff.ts",
            "/stream/h/..;/x.ts",
            "/stream/h/.hidden.ts",
        ];
        assert!(cases.len() >= 25);
        for p in cases {
            assert!(
                matches!(classify(p, &exts()), Err(PathRejection::Malformed(_))),
                "{p} was not refused as malformed: {:?}",
                classify(p, &exts())
            );
        }
    }

    #[test]
    fn other_routes() {
        assert_eq!(classify("/api/proxy", &exts()), Ok(Route::ProviderProxy));
        assert_eq!(classify("/health", &exts()), Ok(Route::Api));
        assert_eq!(classify("/api/key/x", &exts()), Ok(Route::Api));
    }
}

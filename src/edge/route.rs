//! First step of every edge request: which route is this. The media routes and the prefixes
//! they own come from the route table ([`crate::api::routes::media_at`]); media paths are
//! parsed by [`crate::media::path`]; nothing here does I/O.

use crate::api::routes::{self, Media};
pub use crate::media::path::{encode_segments, parse_stream_path, PathRejection, StreamPath};

/// Where an edge request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/stream/{hash}/{rest}`: proxied (and cached) from the bucket.
    Stream(StreamPath),
    /// `/api/proxy?url&ctx`, and its path form `/api/proxy/{ctx}/{scheme}/{authority}/…`:
    /// proxied for a provider context.
    ProviderProxy,
    /// Everything else: the in-process API router.
    Api,
}

/// Classify a request path (the URI path only, query excluded).
pub fn classify(path: &str, allowed_ext: &[String]) -> Result<Route, PathRejection> {
    match routes::media_at(path) {
        Some((Media::Stream, rest)) => match rest.strip_prefix('/') {
            Some(rest) => parse_stream_path(rest, allowed_ext).map(Route::Stream),
            None => Err(PathRejection::Malformed("missing media path")),
        },
        Some((Media::Proxy, _)) => Ok(Route::ProviderProxy),
        None => Ok(Route::Api),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::MediaKind;

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
        assert_eq!(
            classify("/api/proxy/c/https/cdn.example/x.m4s", &exts()),
            Ok(Route::ProviderProxy)
        );
        assert_eq!(classify("/api/proxyx", &exts()), Ok(Route::Api));
        assert_eq!(classify("/streamx/h/x.ts", &exts()), Ok(Route::Api));
        assert_eq!(
            classify("/stream", &exts()),
            Err(PathRejection::Malformed("missing media path"))
        );
        assert_eq!(classify("/health", &exts()), Ok(Route::Api));
        assert_eq!(classify("/api/key/x", &exts()), Ok(Route::Api));
    }
}

//! What a media object is, from its name: which drives content type, cache TTL and
//! the `Cache-Control` players see (rendered by `edge/headers.rs`). [`path`] parses and validates `/stream/…` paths.

pub mod hls;
pub mod llhls;

/// Sample-entry codes of video codecs (RFC 6381 `codecs` first component; ISO/IEC 14496-15,
/// Dolby Vision, VP, AV1, VVC, EVC, MPEG-4 Part 2, H.263, protected `encv`), for the HLS
/// model's `CODECS` and DASH's `@codecs`.
const VIDEO_CODECS: [&str; 28] = [
    "avc1", "avc2", "avc3", "avc4", "dvav", "dva1", "mvc1", "mvc2", "hvc1", "hev1", "hvc2", "hev2",
    "lhv1", "lhe1", "dvh1", "dvhe", "dav1", "vp08", "vp09", "vp8", "vp9", "av01", "vvc1", "vvi1",
    "evc1", "mp4v", "s263", "encv",
];

/// Whether one entry of a `codecs` list (`avc1.64001f`) is a video codec.
pub fn is_video_codec(entry: &str) -> bool {
    let code = entry.trim().split('.').next().unwrap_or_default();
    VIDEO_CODECS.iter().any(|c| code.eq_ignore_ascii_case(c))
}
pub mod path;

/// The kinds of object a streaming proxy serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// HLS playlist (`.m3u8`): master or media, live or VOD.
    HlsPlaylist,
    /// DASH manifest (`.mpd`).
    DashManifest,
    /// Media segments and init segments (`.m4s`, `.mp4`, `.ts`, `.aac`).
    Segment,
    /// Subtitles (`.vtt`).
    Subtitle,
    /// Thumbnails and posters (`.jpg`, `.webp`).
    Image,
    /// Anything else an operator allowed.
    Other,
}

impl MediaKind {
    pub fn from_extension(ext: &str) -> MediaKind {
        match ext.to_ascii_lowercase().as_str() {
            "m3u8" | "m3u" => MediaKind::HlsPlaylist,
            "mpd" => MediaKind::DashManifest,
            "m4s" | "mp4" | "m4a" | "m4v" | "ts" | "aac" | "cmfv" | "cmfa" | "mp3" => {
                MediaKind::Segment
            }
            "vtt" | "webvtt" => MediaKind::Subtitle,
            "jpg" | "jpeg" | "webp" | "png" => MediaKind::Image,
            _ => MediaKind::Other,
        }
    }

    /// Playlists and manifests change while a stream is live: never `immutable`.
    pub fn is_manifest(self) -> bool {
        matches!(self, MediaKind::HlsPlaylist | MediaKind::DashManifest)
    }
}

/// A media `{hash}` (or player id): 1–128 of `[A-Za-z0-9._-]`, not starting with `.`. It is
/// a path segment of `/stream/{hash}/…` and of bucket paths, so the set is strict.
pub fn valid_hash(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The extension of the last path segment, if any.
pub fn extension(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next()?;
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then_some(ext)
}

/// The content type for a file name, by extension.
pub fn content_type(path: &str) -> &'static str {
    match extension(path).map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("m3u8") | Some("m3u") => "application/vnd.apple.mpegurl",
        Some("mpd") => "application/dash+xml",
        Some("m4s") => "video/iso.segment",
        Some("mp4") | Some("m4v") | Some("cmfv") => "video/mp4",
        Some("m4a") | Some("cmfa") => "audio/mp4",
        Some("ts") => "video/mp2t",
        Some("aac") => "audio/aac",
        Some("mp3") => "audio/mpeg",
        Some("vtt") | Some("webvtt") => "text/vtt",
        Some("jpg") | Some("jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_types() {
        assert_eq!(MediaKind::from_extension("M3U8"), MediaKind::HlsPlaylist);
        assert_eq!(MediaKind::from_extension("m4s"), MediaKind::Segment);
        assert!(MediaKind::DashManifest.is_manifest());
        assert!(!MediaKind::Segment.is_manifest());
        assert_eq!(content_type("a/b/seg_1.m4s"), "video/iso.segment");
        assert_eq!(content_type("master.m3u8"), "application/vnd.apple.mpegurl");
        assert_eq!(content_type("noext"), "application/octet-stream");
        assert_eq!(extension("dir.x/file"), None);
        assert_eq!(extension(".hidden"), None);
        assert_eq!(extension("a/b.ts"), Some("ts"));
    }
}

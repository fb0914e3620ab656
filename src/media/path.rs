//! Media paths: `/stream/{hash}/{rest}` decoded exactly once and judged segment by segment.
//! Pure functions; nothing here does I/O. Every gate, cache-key and upstream decision on a
//! media path is made on the [`StreamPath`] this returns, never on the raw request text.
//!
//! Anything that could change meaning under a second decoding or on a different file system
//! is refused before the origin is ever contacted: `..` and `.` segments in any encoding,
//! encoded slashes and backslashes, a `%` left after decoding (double encoding), NUL and other
//! control bytes, invalid or overlong UTF-8, empty segments and absolute paths.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use super::{extension, valid_hash, MediaKind};

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
    if !valid_hash(&hash) {
        return Err(Malformed("invalid media hash"));
    }
    let last = segments.last().map(String::as_str).unwrap_or_default();
    let ext = extension(last).ok_or(PathRejection::ExtensionNotAllowed)?;
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

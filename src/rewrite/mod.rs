//! Playlist rewriting: the pure (no I/O) half of `response_body_filter`.
//!
//! When the edge proxies an HLS or DASH manifest, every URI in it must point back through
//! `/api/proxy` with the viewer's `ctx`, or the player would fetch segments and keys straight
//! from the upstream CDN (bypassing headers, cookies, tokens and the cache). The edge calls
//! [`detect`] on the response head and first body bytes, buffers up to
//! [`MAX_PLAYLIST_BYTES`], then calls [`rewrite`] with a `map` closure that applies the SSRF
//! policy and builds the proxied form with [`proxy_url`].
//!
//! Both rewriters work by *splicing*: they parse the document only to find the byte ranges
//! that hold URIs and copy every other byte of the input unchanged. That is what makes
//! "everything except the URIs is byte-identical" a property of the design rather than of
//! careful re-serialisation. The rewrite runs per request, after the cache (the cache
//! stores the upstream playlist), because its output embeds one viewer's ctx.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

pub mod dash;
pub mod dash_quality;
pub mod encoding;
pub mod hls;
pub mod json;
pub mod quality;

pub use dash::{dash_uris, rewrite_dash};
pub use hls::{hls_uris, rewrite_hls};

/// Largest playlist the edge will buffer for rewriting. Real multivariant and VOD
/// playlists are well under 1 MiB even at 10,000 segments; the cap bounds the memory one
/// hostile origin can make us hold per request.
pub const MAX_PLAYLIST_BYTES: usize = 8 * 1024 * 1024;

/// Path of the proxy route that rewritten URIs point at (see the provider proxy API).
const PROXY_PATH: &str = "/api/proxy";

/// Which manifest format a response holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistKind {
    /// HLS (`.m3u8`, RFC 8216 and its LL-HLS extensions).
    Hls,
    /// MPEG-DASH MPD (`.mpd`, ISO/IEC 23009-1).
    Dash,
}

/// Why a playlist could not be rewritten. Every variant means "do not serve a partially
/// rewritten playlist": the edge answers 502 instead.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The upstream body exceeds [`MAX_PLAYLIST_BYTES`].
    #[error("playlist is {0} bytes, larger than the {MAX_PLAYLIST_BYTES}-byte rewrite cap")]
    TooLarge(usize),
    /// The body is not UTF-8 (both HLS, RFC 8216 §4.1, and our XML parsing require it).
    #[error("playlist is not valid UTF-8")]
    NotUtf8,
    /// The MPD is not well-formed XML (or uses something we refuse to guess about).
    #[error("invalid MPD XML: {0}")]
    Xml(String),
    /// A JSON document an HLS attribute points at is not the shape it should be.
    #[error("invalid JSON document: {0}")]
    Json(String),
    /// The HLS playlist is malformed where a URI should be (e.g. a broken attribute list).
    #[error("malformed playlist: {0}")]
    Malformed(String),
    /// A URI could not be resolved, was refused by `map` (e.g. SSRF policy), or cannot be
    /// represented safely in the output.
    #[error("refused URI: {0}")]
    BadUri(String),
    /// `map` produced a string containing CR or LF; writing it would let an upstream or a
    /// ctx inject playlist lines.
    #[error("rewritten URI contains CR or LF")]
    CrLfInOutput,
    /// Nothing the playlist offers is within the playback's quality ceiling: not an upstream
    /// fault, the viewer's answer (403).
    #[error("nothing in this playlist is within quality {0}")]
    NotAllowed(&'static str),
}

/// Percent-encode everything except RFC 3986 unreserved characters. This is
/// `encodeURIComponent` plus `! ' ( ) *`: a strict set means the encoded URL survives any
/// query-string parser unchanged, and the DASH template logic can predict exactly how a
/// `$Number$` token was encoded (see `dash.rs`).
pub(crate) const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Decide whether a response is a playlist, and which kind.
///
/// Order of evidence:
/// 1. The body prefix: `#EXTM3U` (after an optional UTF-8 BOM and whitespace) means HLS;
///    a `<MPD` root (optionally prefixed, after `<?xml …?>`, comments and whitespace) means
///    DASH. The body wins over the headers, because origins often serve playlists as
///    `application/octet-stream` or `text/plain`.
/// 2. A playlist content type (case-insensitive, parameters ignored).
/// 3. Only if the content type is generic or missing *and* the body prefix is too short to
///    tell (e.g. deciding on headers alone): a `.m3u8` / `.mpd` path hint.
///
/// A non-empty body that is clearly neither (e.g. starts with a TS sync byte) is not a
/// playlist even if the path says so: an HLS playlist must start with `#EXTM3U`.
pub fn detect(
    content_type: Option<&str>,
    path_hint: &str,
    body_prefix: &[u8],
) -> Option<PlaylistKind> {
    match sniff(body_prefix) {
        Sniff::Is(kind) => return Some(kind),
        Sniff::Undecided | Sniff::Not => {}
    }
    let mime = content_type
        .map(|ct| ct.split(';').next().unwrap_or("").trim())
        .unwrap_or("");
    if let Some(kind) = kind_from_mime(mime) {
        return Some(kind);
    }
    if !is_generic_mime(mime) {
        return None;
    }
    if matches!(sniff(body_prefix), Sniff::Not) {
        return None;
    }
    kind_from_path(path_hint)
}

/// The one content type sluice sends for a playlist whose origin type is any of the HLS or
/// DASH spellings.
pub fn playlist_mime(mime: &str) -> Option<&'static str> {
    kind_from_mime(mime).map(PlaylistKind::content_type)
}

impl PlaylistKind {
    /// The content type sluice answers a playlist of this kind with.
    pub fn content_type(self) -> &'static str {
        match self {
            PlaylistKind::Hls => "application/vnd.apple.mpegurl",
            PlaylistKind::Dash => "application/dash+xml",
        }
    }
}

fn kind_from_mime(mime: &str) -> Option<PlaylistKind> {
    const HLS: [&str; 7] = [
        "application/vnd.apple.mpegurl",
        "application/x-mpegurl",
        "application/mpegurl",
        "audio/mpegurl",
        "audio/x-mpegurl",
        "video/mpegurl",
        "video/x-mpegurl",
    ];
    const DASH: [&str; 2] = ["application/dash+xml", "video/vnd.mpeg.dash.mpd"];
    if HLS.iter().any(|m| mime.eq_ignore_ascii_case(m)) {
        Some(PlaylistKind::Hls)
    } else if DASH.iter().any(|m| mime.eq_ignore_ascii_case(m)) {
        Some(PlaylistKind::Dash)
    } else {
        None
    }
}

/// Content types that say nothing about the format, so the path may decide.
fn is_generic_mime(mime: &str) -> bool {
    const GENERIC: [&str; 6] = [
        "",
        "application/octet-stream",
        "binary/octet-stream",
        "text/plain",
        "application/xml",
        "text/xml",
    ];
    GENERIC.iter().any(|m| mime.eq_ignore_ascii_case(m))
}

/// The kind a URL path's extension names (`.m3u8`, `.m3u`, `.mpd`).
pub fn kind_from_path(path: &str) -> Option<PlaylistKind> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let ext = path.rsplit_once('.').map(|(_, e)| e)?;
    if ext.eq_ignore_ascii_case("m3u8") || ext.eq_ignore_ascii_case("m3u") {
        Some(PlaylistKind::Hls)
    } else if ext.eq_ignore_ascii_case("mpd") {
        Some(PlaylistKind::Dash)
    } else {
        None
    }
}

/// What a body prefix says about being a playlist.
#[derive(Debug, PartialEq, Eq)]
pub enum Sniff {
    Is(PlaylistKind),
    /// The prefix ends before the evidence does (e.g. empty, or `<?xml` cut short).
    Undecided,
    Not,
}

/// Judge a body prefix: `#EXTM3U`, or an XML document whose root is `MPD`.
pub fn sniff(body: &[u8]) -> Sniff {
    let mut rest = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    rest = trim_ascii_ws(rest);
    if rest.is_empty() {
        return Sniff::Undecided;
    }
    if rest.first() == Some(&b'#') {
        return prefix_match(rest, b"#EXTM3U", PlaylistKind::Hls);
    }
    // Skip the XML prolog: declaration, comments, processing instructions, doctype.
    loop {
        rest = trim_ascii_ws(rest);
        let skip_to: &[u8] = if rest.starts_with(b"<?") {
            b"?>"
        } else if rest.starts_with(b"<!--") {
            b"-->"
        } else if rest.starts_with(b"<!") {
            b">"
        } else {
            break;
        };
        match find(rest, skip_to) {
            Some(i) => rest = &rest[i + skip_to.len()..],
            None => return Sniff::Undecided,
        }
    }
    if rest.is_empty() {
        return Sniff::Undecided;
    }
    if rest[0] != b'<' {
        return Sniff::Not;
    }
    // The root element name, allowing a namespace prefix (`<mpd:MPD`).
    let name_end = rest[1..]
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')
        .map(|i| i + 1);
    let Some(name_end) = name_end else {
        // Name not finished yet: still a possible `<MPD`.
        let partial = &rest[1..];
        let local = partial.rsplit(|b| *b == b':').next().unwrap_or(partial);
        return if b"MPD".starts_with(local) {
            Sniff::Undecided
        } else {
            Sniff::Not
        };
    };
    let name = &rest[1..name_end];
    let local = name.rsplit(|b| *b == b':').next().unwrap_or(name);
    if local == b"MPD" {
        Sniff::Is(PlaylistKind::Dash)
    } else {
        Sniff::Not
    }
}

fn prefix_match(rest: &[u8], magic: &[u8], kind: PlaylistKind) -> Sniff {
    if rest.starts_with(magic) {
        Sniff::Is(kind)
    } else if magic.starts_with(rest) {
        Sniff::Undecided
    } else {
        Sniff::Not
    }
}

fn trim_ascii_ws(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    &b[start..]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The proxied form of an absolute upstream URL: `/api/proxy?url=<enc>&ctx=<enc>`, both
/// encoded with the strict component set (see [`COMPONENT`]).
pub fn proxy_url(absolute: &url::Url, ctx: &str) -> String {
    let url = absolute.as_str();
    // Encoding grows at most 3x; reserving for the common case (≈1.3x) avoids regrowth on
    // the per-segment hot path.
    let mut out = String::with_capacity(PROXY_PATH.len() + 10 + url.len() * 4 / 3 + ctx.len());
    out.push_str(PROXY_PATH);
    out.push_str("?url=");
    out.extend(utf8_percent_encode(url, COMPONENT));
    out.push_str("&ctx=");
    out.extend(utf8_percent_encode(ctx, COMPONENT));
    out
}

/// The path form of a proxied URL, `/api/proxy/{ctx}/{scheme}/{authority}{path}[?query]`:
/// a URL that relative references can be resolved against (a DASH `BaseURL` with
/// alternatives, whose relative children the player resolves itself). The query form is
/// used everywhere else.
pub fn proxy_path_url(absolute: &url::Url, ctx: &str) -> String {
    let mut out = String::with_capacity(absolute.as_str().len() + ctx.len() + 16);
    out.push_str(PROXY_PATH);
    out.push('/');
    out.extend(utf8_percent_encode(ctx, COMPONENT));
    out.push('/');
    out.push_str(absolute.scheme());
    out.push('/');
    if let Some(host) = absolute.host_str() {
        out.push_str(host);
    }
    if let Some(port) = absolute.port() {
        out.push(':');
        out.push_str(&port.to_string());
    }
    out.push_str(absolute.path());
    if let Some(q) = absolute.query() {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Inverse of [`proxy_path_url`] for a request path and query: `(upstream url, ctx)`.
pub fn unwrap_proxy_path(path: &str, query: Option<&str>) -> Option<(String, String)> {
    let rest = path.strip_prefix(PROXY_PATH)?.strip_prefix('/')?;
    let (ctx, rest) = rest.split_once('/')?;
    let (scheme, rest) = rest.split_once('/')?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() {
        return None;
    }
    let ctx = percent_decode_str(ctx).decode_utf8().ok()?.into_owned();
    let mut url = format!("{scheme}://{rest}");
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Some((url, ctx))
}

/// [`proxy_url`] precomputed for one playlist: the edge's `map`, with a fast path for the
/// common URI shape.
///
/// Measured (issue 7): on a 1,000-segment VOD playlist the generic path spent ~340 ns per
/// URI, most of it in `Url::join` and in the `String` that `map` returns. Almost every
/// segment line is a plain relative name (`seg_00042.ts`, `720p/seg.m4s`), and for those
/// `Url::join` is "base directory + name": no dot segments, no query or fragment, nothing
/// to percent-encode. [`ProxyMapper::write_plain`] writes the proxied form of such a name
/// straight into the output: the encoded `/api/proxy?url=<base dir>` prefix and the
/// `&ctx=<ctx>` suffix are encoded once per playlist, and the name itself needs only
/// `/` → `%2F` (every other byte it may hold is unreserved). Anything else takes the
/// generic path, so the output is byte-identical to [`rewrite`] with
/// `map = |u| proxy_url(u, ctx)` (a property test checks that).
pub struct ProxyMapper<'a> {
    ctx: &'a str,
    /// `/api/proxy?url=` + the encoded base up to and including the last `/` of its path;
    /// `None` when the base is not a plain http(s) URL (then every URI is generic).
    prefix: Option<String>,
    /// `&ctx=` + the encoded ctx.
    suffix: String,
}

impl<'a> ProxyMapper<'a> {
    pub fn new(base: &url::Url, ctx: &'a str) -> ProxyMapper<'a> {
        let mut suffix = String::from("&ctx=");
        suffix.extend(utf8_percent_encode(ctx, COMPONENT));
        ProxyMapper {
            ctx,
            prefix: Self::prefix_for(base),
            suffix,
        }
    }

    /// `/api/proxy?url=` + the encoded directory of `base` (everything a plain relative
    /// reference keeps), or `None` when `base` is not a plain http(s) URL. DASH asks for each
    /// `BaseURL` level's own.
    pub(crate) fn prefix_for(base: &url::Url) -> Option<String> {
        (is_fetchable(base) && !base.cannot_be_a_base()).then(|| {
            let s = base.as_str();
            // The serialisation is `scheme://authority/path[?query][#fragment]`; a relative
            // reference replaces the last path segment and drops query and fragment.
            let tail = base.query().map_or(0, |q| q.len() + 1)
                + base.fragment().map_or(0, |f| f.len() + 1);
            let path_end = s.len() - tail;
            let dir_end = s[..path_end].rfind('/').map_or(path_end, |i| i + 1);
            let mut p = String::with_capacity(PROXY_PATH.len() + 5 + dir_end * 3 / 2);
            p.push_str(PROXY_PATH);
            p.push_str("?url=");
            p.extend(utf8_percent_encode(&s[..dir_end], COMPONENT));
            p
        })
    }

    /// The path form of `absolute` ([`proxy_path_url`]): for a URI that keeps variable
    /// references for the player, who substitutes into it as into the upstream URL.
    pub(crate) fn path_form(&self, absolute: &url::Url) -> Result<String, String> {
        match absolute.scheme() {
            "http" | "https" => Ok(proxy_path_url(absolute, self.ctx)),
            other => Err(format!("scheme {other} is not proxied")),
        }
    }

    /// `&ctx=` + the encoded ctx: what follows every proxied URL.
    pub(crate) fn suffix(&self) -> &str {
        &self.suffix
    }

    /// The generic mapping: what the edge's `map` closure returns for a resolved URL.
    pub fn map(&self, absolute: &url::Url) -> Result<String, String> {
        match absolute.scheme() {
            "http" | "https" => Ok(proxy_url(absolute, self.ctx)),
            other => Err(format!("scheme {other} is not proxied")),
        }
    }

    /// Whether `raw` takes the fast path: a plain relative path (only `[A-Za-z0-9._~-]`
    /// and `/`, not starting with `/`, no empty, `.` or `..` segment) under an http(s) base.
    pub(crate) fn accepts(&self, raw: &str) -> bool {
        self.prefix.is_some() && is_plain_relative(raw)
    }

    /// Append the proxied form of `raw`, which [`Self::accepts`] said yes to.
    pub(crate) fn write_plain(&self, raw: &str, out: &mut String) {
        let prefix = self.prefix.as_deref().unwrap_or_default();
        write_proxied_plain(prefix, raw, &self.suffix, out);
    }
}

/// `prefix` + `raw` (a plain relative path, [`is_plain_relative`]) encoded as a query
/// component + `suffix`.
pub(crate) fn write_proxied_plain(prefix: &str, raw: &str, suffix: &str, out: &mut String) {
    out.reserve(prefix.len() + raw.len() + 8 + suffix.len());
    out.push_str(prefix);
    push_plain_encoded(raw, out);
    out.push_str(suffix);
}

/// A plain path as a query component: every byte is unreserved except `/`.
pub(crate) fn push_plain_encoded(raw: &str, out: &mut String) {
    let mut run = 0;
    for i in memchr::memchr_iter(b'/', raw.as_bytes()) {
        out.push_str(&raw[run..i]);
        out.push_str("%2F");
        run = i + 1;
    }
    out.push_str(&raw[run..]);
}

/// `seg.ts`, `720p/seg_001.m4s`, `sub/`: resolving these against a base is pure
/// concatenation. Allowed bytes only (`[A-Za-z0-9._~-]` and `/`; one branch-free table pass,
/// the hot loop of a VOD rewrite), then the segments (few): none empty except a trailing one
/// (a directory), none `.` or `..`.
pub(crate) fn is_plain_relative(raw: &str) -> bool {
    let b = raw.as_bytes();
    if b.is_empty() || !b.iter().fold(true, |ok, &c| ok & PLAIN[usize::from(c)]) {
        return false;
    }
    let mut start = 0;
    for i in memchr::memchr_iter(b'/', b) {
        if matches!(&b[start..i], b"" | b"." | b"..") {
            return false;
        }
        start = i + 1;
    }
    !matches!(&b[start..], b"." | b"..")
}

/// Bytes of a plain relative path: RFC 3986 unreserved, and `/`.
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~' | b'.' | b'/');
        c += 1;
    }
    t
};

/// [`rewrite`] with the edge's mapping (every URI through `/api/proxy` with `ctx`), using
/// [`ProxyMapper`]'s fast path for HLS. Same output and errors as
/// `rewrite(kind, input, base, &mut |u| ProxyMapper::new(base, ctx).map(u))` for a playlist
/// without `EXT-X-DEFINE` variables or interstitial/steering documents; for those, HLS takes
/// the proxy path's forms (see [`hls`]'s module doc), with `QUERYPARAM` values read from
/// `requested`, the upstream URL as the player named it.
///
/// # Errors
/// As [`rewrite`].
pub fn rewrite_proxied(
    kind: PlaylistKind,
    input: &[u8],
    base: &url::Url,
    ctx: &str,
    requested: &url::Url,
) -> Result<Vec<u8>, RewriteError> {
    check_size(input.len())?;
    let text = std::str::from_utf8(input).map_err(|_| RewriteError::NotUtf8)?;
    let mapper = ProxyMapper::new(base, ctx);
    let out = match kind {
        PlaylistKind::Hls => {
            let forms = hls::ProxyForms {
                mapper: &mapper,
                requested,
            };
            hls::rewrite_hls_with(text, base, &mut |u| mapper.map(u), Some(&forms))?
        }
        PlaylistKind::Dash => match dash::rewrite_dash_fast(text, base, &mapper)? {
            Some(out) => out,
            // Alternative BaseURLs keep their failover: path-form BaseURLs, relative children.
            None => {
                dash::rewrite_dash_failover(text, base, &mut |u| mapper.map(u), &mut |u| match u
                    .scheme()
                {
                    "http" | "https" => Ok(proxy_path_url(u, ctx)),
                    other => Err(format!("scheme {other} is not proxied")),
                })?
            }
        },
    };
    Ok(out.into_bytes())
}

/// Inverse of [`proxy_url`]: `"/api/proxy?url=..&ctx=.."` (optionally with a scheme and
/// host in front) → `(upstream url, ctx)`. `None` if the path is not the proxy route, a
/// parameter is missing, or a value does not decode to UTF-8.
///
/// `+` is kept literally rather than read as a space: [`proxy_url`] never emits `+`, and an
/// upstream URL may legitimately contain one.
pub fn unwrap_proxy_url(s: &str) -> Option<(String, String)> {
    let (path, query) = s.split_once('?')?;
    let path = match path.find("://") {
        Some(i) => {
            let after = &path[i + 3..];
            &after[after.find('/')?..]
        }
        None => path,
    };
    if path != PROXY_PATH {
        return None;
    }
    let query = query.split('#').next().unwrap_or(query);
    let (mut url, mut ctx) = (None, None);
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            "url" => &mut url,
            "ctx" => &mut ctx,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(percent_decode_str(v).decode_utf8().ok()?.into_owned());
        }
    }
    Some((url?, ctx?))
}

/// Rewrite a playlist of `kind`: every URI is resolved against `base` (the final upstream
/// URL, after redirects) and replaced by `map(&resolved)`.
///
/// `map` sees only absolute `http`/`https` URLs; returning `Err` refuses the URI (SSRF
/// policy) and fails the whole rewrite. See [`rewrite_hls`] and [`rewrite_dash`] for what
/// counts as a URI in each format.
///
/// # Errors
/// [`RewriteError::TooLarge`] over [`MAX_PLAYLIST_BYTES`], [`RewriteError::NotUtf8`], and
/// whatever the format's rewriter reports.
pub fn rewrite(
    kind: PlaylistKind,
    input: &[u8],
    base: &url::Url,
    map: &mut dyn FnMut(&url::Url) -> Result<String, String>,
) -> Result<Vec<u8>, RewriteError> {
    check_size(input.len())?;
    let text = std::str::from_utf8(input).map_err(|_| RewriteError::NotUtf8)?;
    let out = match kind {
        PlaylistKind::Hls => rewrite_hls(text, base, map)?,
        PlaylistKind::Dash => rewrite_dash(text, base, map)?,
    };
    Ok(out.into_bytes())
}

pub(crate) fn check_size(len: usize) -> Result<(), RewriteError> {
    if len > MAX_PLAYLIST_BYTES {
        Err(RewriteError::TooLarge(len))
    } else {
        Ok(())
    }
}

/// True for schemes the proxy fetches. Anything else in an attribute (`skd://` FairPlay key
/// IDs, `data:` URIs, `urn:` identifiers) is an identifier the player handles itself.
pub(crate) fn is_fetchable(url: &url::Url) -> bool {
    matches!(url.scheme(), "http" | "https")
}

/// The scheme of `s` if it starts with one (RFC 3986 §3.1), so non-fetchable absolute
/// URIs can be left alone without trying to resolve them (some, like `data:`, are huge).
pub(crate) fn scheme_of(s: &str) -> Option<&str> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    if first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        Some(scheme)
    } else {
        None
    }
}

/// Run `map` and check its output can be written into a playlist verbatim.
pub(crate) fn map_checked(
    map: &mut dyn FnMut(&url::Url) -> Result<String, String>,
    resolved: &url::Url,
) -> Result<String, RewriteError> {
    let out = map(resolved).map_err(|why| RewriteError::BadUri(format!("{resolved}: {why}")))?;
    if out.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(RewriteError::CrLfInOutput);
    }
    if out.is_empty() || out.bytes().any(|b| b.is_ascii_control()) {
        return Err(RewriteError::BadUri(format!(
            "{resolved}: map produced an empty or control-character URI"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

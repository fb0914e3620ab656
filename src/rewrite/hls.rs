//! HLS playlist rewriting (RFC 8216 plus the LL-HLS, content steering and interstitial
//! tags): finds every URI in a multivariant or media playlist and splices in `map`'s output,
//! leaving every other byte — tags, comments, blank lines, `\n` vs `\r\n` — untouched.
//!
//! The playlist is read with the one HLS model ([`crate::media::hls`]): its line splitter,
//! its table of the tags that carry URIs and its attribute-list parser (§4.2: quoted strings
//! may contain commas); only the URI value is replaced. The rewriter keeps its own pass over
//! the lines (no per-line allocation) because it runs on every playlist answer.
//!
//! `EXT-X-DEFINE` variable references (`{$name}`) inside URIs are carried through literally:
//! they are set aside before the URI is resolved and mapped (resolution would percent-encode
//! the braces) and put back into the output, so the player still substitutes them.

use std::ops::Range;

use url::Url;

use super::{check_size, is_fetchable, map_checked, scheme_of, RewriteError};
use crate::media::hls::{lines, parse_attributes, uri_attributes, AttrError};

/// Where a URI sits, which decides how strictly it is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Site {
    /// A URI line (media segment, or variant stream after `EXT-X-STREAM-INF`): the player
    /// fetches it, so it must resolve to http(s) and go through the proxy.
    Line,
    /// A quoted attribute value. These may be identifiers rather than fetchable URLs
    /// (`skd://` FairPlay key IDs, `data:` URIs), which are left exactly as they are.
    Attribute,
}

/// Walk `input` and report the byte range of every URI (without quotes) with its site.
/// Stops at the first error from `f` or from parsing.
fn scan(
    input: &str,
    mut f: impl FnMut(Range<usize>, Site) -> Result<(), RewriteError>,
) -> Result<(), RewriteError> {
    // The BOM is not whitespace to `trim`, so step over it; splicing keeps it in the output.
    let mut offset = if input.starts_with('\u{FEFF}') { 3 } else { 0 };
    for (line_no, raw) in lines(&input[offset..]).enumerate() {
        let start = offset;
        offset += raw.len();
        let content = raw.strip_suffix('\n').unwrap_or(raw);
        let content = content.strip_suffix('\r').unwrap_or(content);
        // Fast path (issue 7): a line that starts and ends with a visible ASCII byte needs no
        // trimming; `str::trim` (Unicode whitespace) only runs on the rest.
        let (trimmed, lead) = match content.as_bytes() {
            [first, .., last] if first.is_ascii_graphic() && last.is_ascii_graphic() => {
                (content, 0)
            }
            _ => (content.trim(), content.len() - content.trim_start().len()),
        };
        if trimmed.is_empty() {
            continue;
        }
        let at = start + lead;
        if let Some(tag) = trimmed.strip_prefix('#') {
            if !tag.starts_with("EXT") {
                continue; // a comment
            }
            let (name, attrs) = match memchr::memchr(b':', tag.as_bytes()) {
                Some(i) => (&tag[..i], &tag[i + 1..]),
                None => (tag, ""),
            };
            let wanted = uri_attributes(name);
            if wanted.is_empty() {
                continue;
            }
            let attrs_at = at + 1 + name.len() + 1;
            parse_attributes(attrs, |attr, value, quoted| {
                if !wanted.contains(&attr) {
                    return Ok(());
                }
                if !quoted {
                    return Err(RewriteError::Malformed(format!(
                        "line {}: {name} {attr} must be a quoted string",
                        line_no + 1
                    )));
                }
                f(
                    attrs_at + value.start..attrs_at + value.end,
                    Site::Attribute,
                )
            })
            .map_err(|e| match e {
                AttrError::Syntax(why) => {
                    RewriteError::Malformed(format!("line {}: {name}: {why}", line_no + 1))
                }
                AttrError::Visitor(e) => e,
            })?;
        } else {
            // A lone CR inside a URI line could hide a second line from a player that
            // treats CR as a terminator (e.g. "a.ts\r#EXT-X-KEY:…"); refuse it.
            if content.as_bytes().contains(&b'\r') {
                return Err(RewriteError::BadUri(format!(
                    "line {}: URI contains a carriage return",
                    line_no + 1
                )));
            }
            f(at..at + trimmed.len(), Site::Line)?;
        }
    }
    Ok(())
}

/// Rewrite an HLS playlist: each URI is resolved with `base.join` (relative, root-relative,
/// protocol-relative and absolute all work) and replaced by `map(&resolved)`.
///
/// Attribute values whose scheme is not http(s) (`skd://`, `data:`), and `data:` URI lines, are
/// left untouched.
///
/// # Errors
/// - [`RewriteError::TooLarge`] over [`super::MAX_PLAYLIST_BYTES`].
/// - [`RewriteError::BadUri`] if a URI line (not `data:`) does not resolve to an http(s) URL, contains a
///   CR or control character, `map` refuses a URI, or `map`'s output would break the line
///   (a `"` inside an attribute, a leading `#` on a URI line).
/// - [`RewriteError::CrLfInOutput`] if `map` returns CR or LF.
/// - [`RewriteError::Malformed`] for a broken attribute list in a URI-carrying tag.
pub fn rewrite_hls(
    input: &str,
    base: &Url,
    map: &mut dyn FnMut(&Url) -> Result<String, String>,
) -> Result<String, RewriteError> {
    rewrite_hls_with(input, base, map, None)
}

/// [`rewrite_hls`], with `fast` writing plain relative URIs itself (see
/// [`super::ProxyMapper`]). `map` must then be `fast`'s own mapping.
pub(crate) fn rewrite_hls_with(
    input: &str,
    base: &Url,
    map: &mut dyn FnMut(&Url) -> Result<String, String>,
    fast: Option<&super::ProxyMapper<'_>>,
) -> Result<String, RewriteError> {
    check_size(input.len())?;
    // Proxied URIs are several times longer than typical relative segment names; starting
    // at 2x saves most regrowth without over-reserving for URI-light multivariant lists.
    let mut out = String::with_capacity(input.len().saturating_mul(2));
    let mut copied = 0;
    scan(input, |range, site| {
        let raw = &input[range.clone()];
        if let Some(fast) = fast.filter(|f| f.accepts(raw)) {
            // A plain relative name has no control bytes, no scheme and resolves to
            // http(s) under an http(s) base, so none of `rewrite_one`'s checks can fail.
            out.push_str(&input[copied..range.start]);
            fast.write_plain(raw, &mut out);
            copied = range.end;
            return Ok(());
        }
        let Some(replacement) = rewrite_one(raw, site, base, map)? else {
            return Ok(());
        };
        out.push_str(&input[copied..range.start]);
        out.push_str(&replacement);
        copied = range.end;
        Ok(())
    })?;
    out.push_str(&input[copied..]);
    Ok(out)
}

/// Set `{$name}` variable references aside: each becomes a token that survives resolution
/// and percent-encoding unchanged. Returns the protected text and `(token, reference)` pairs.
fn protect_variables(raw: &str) -> (String, Vec<(String, String)>) {
    let mut out = String::with_capacity(raw.len());
    let mut refs = Vec::new();
    let mut rest = raw;
    while let Some(open) = rest.find("{$") {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        let name = &rest[open + 2..close];
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            break;
        }
        let token = format!("sluicevar{}x7q", refs.len());
        out.push_str(&rest[..open]);
        out.push_str(&token);
        refs.push((token, rest[open..=close].to_string()));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    (out, refs)
}

/// The replacement for one URI, or `None` to leave it as it is.
fn rewrite_one(
    raw: &str,
    site: Site,
    base: &Url,
    map: &mut dyn FnMut(&Url) -> Result<String, String>,
) -> Result<Option<String>, RewriteError> {
    if raw.contains("{$") {
        let (protected, refs) = protect_variables(raw);
        if !refs.is_empty() {
            let Some(mut out) = rewrite_plain(&protected, site, base, map)? else {
                return Ok(None);
            };
            for (token, reference) in refs {
                if !out.contains(&token) {
                    return Err(RewriteError::BadUri(format!(
                        "{raw:?}: variable reference lost in mapping"
                    )));
                }
                out = out.replace(&token, &reference);
            }
            return Ok(Some(out));
        }
    }
    rewrite_plain(raw, site, base, map)
}

fn rewrite_plain(
    raw: &str,
    site: Site,
    base: &Url,
    map: &mut dyn FnMut(&Url) -> Result<String, String>,
) -> Result<Option<String>, RewriteError> {
    if raw.bytes().any(|b| b.is_ascii_control()) {
        return Err(RewriteError::BadUri(format!("{raw:?}: control character")));
    }
    if let Some(scheme) = scheme_of(raw) {
        let fetched = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
        // An attribute's other schemes are identifiers (`skd://`, `urn:`); a `data:` URI, in an
        // attribute or on a segment line, carries its content inline: nothing is fetched, by
        // sluice or by the player, so it is left exactly as it is (one such line used to make
        // the whole playlist a 502).
        if !fetched && (site == Site::Attribute || scheme.eq_ignore_ascii_case("data")) {
            return Ok(None);
        }
    }
    let resolved = base
        .join(raw)
        .map_err(|e| RewriteError::BadUri(format!("{raw:?}: {e}")))?;
    if !is_fetchable(&resolved) {
        return match site {
            Site::Attribute => Ok(None),
            Site::Line => Err(RewriteError::BadUri(format!(
                "{raw:?} resolves to non-http(s) {resolved}"
            ))),
        };
    }
    let mapped = map_checked(map, &resolved)?;
    let breaks_line = match site {
        Site::Attribute => mapped.contains('"'),
        Site::Line => mapped.starts_with('#') || mapped.trim() != mapped,
    };
    if breaks_line {
        return Err(RewriteError::BadUri(format!(
            "{resolved}: map output {mapped:?} cannot be written here"
        )));
    }
    Ok(Some(mapped))
}

/// Every URI in `input`, in document order, exactly as written (attribute values without
/// their quotes, `skd://` and `data:` ones included). Stops at the first malformed tag.
pub fn hls_uris(input: &str) -> Vec<String> {
    let mut uris = Vec::new();
    // Errors only truncate the list; callers use this to inspect output, not to validate.
    let _ = scan(input, |range, _| {
        uris.push(input[range].to_owned());
        Ok(())
    });
    uris
}

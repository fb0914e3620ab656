//! HLS playlist rewriting (RFC 8216 plus the LL-HLS, content steering and interstitial
//! tags): finds every URI in a multivariant or media playlist and splices in `map`'s output,
//! leaving every other byte — tags, comments, blank lines, `\n` vs `\r\n` — untouched.
//!
//! The playlist is read with the one HLS model ([`crate::media::hls`]): its line splitter,
//! its table of the tags that carry URIs and its attribute-list parser (§4.2: quoted strings
//! may contain commas); only the URI value is replaced. The rewriter keeps its own pass over
//! the lines (no per-line allocation) because it runs on every playlist answer.
//!
//! # Variables (`EXT-X-DEFINE`, `{$name}`)
//!
//! A player substitutes variable references into the URI *sluice wrote*. In the query form
//! `/api/proxy?url=<encoded upstream>&ctx=…` a substituted `&`, `#`, `%`, `+` or `=` is not
//! data any more (a value `a&b` cut the upstream URL at the `&`), and a `QUERYPARAM`
//! definition is read by the player from the URL *it* fetched — sluice's, whose query has
//! only `url` and `ctx` (fatal in hls.js). So on the proxy path (`ProxyForms`):
//!
//! - every variable sluice can know is substituted by sluice itself, before the URI is
//!   resolved and proxied: `VALUE` definitions, and `QUERYPARAM` ones, read from the upstream
//!   URL the player asked for (`ProxyForms::requested`, form-decoded as `URLSearchParams`
//!   does). A `QUERYPARAM` definition is rewritten to `NAME="…",VALUE="…"` with the value it
//!   has, so the player's own substitutions (other attributes, `IMPORT` in the playlists it
//!   loads next) see the same value and never look at sluice's query;
//! - a reference sluice cannot know (`IMPORT`, which comes from the multivariant playlist
//!   the player loaded, or an undefined name) stays for the player, and its URI is written in
//!   the path form `/api/proxy/{ctx}/{scheme}/{authority}{path}?{query}` (see
//!   [`super::proxy_path_url`]), which carries the upstream URL verbatim: whatever the player
//!   substitutes means exactly what it means in the origin's URL.
//!
//! Elsewhere (the generic [`rewrite_hls`], gated `/stream` playlists whose URIs are
//! sluice's own paths) references are carried through literally: set aside before the URI
//! is resolved and mapped (resolution would percent-encode the braces) and put back.
//!
//! # Documents behind attributes
//!
//! On the proxy path an `X-ASSET-LIST` (interstitials) or `SERVER-URI` (content steering)
//! URI gets `&doc=asset-list` / `&doc=steering` after its ctx: the edge then reads the JSON
//! that URL answers and rewrites the URIs in it ([`super::json`]).

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
    /// A quoted attribute value, by attribute name. These may be identifiers rather than
    /// fetchable URLs (`skd://` FairPlay key IDs, `data:` URIs), which are left exactly as
    /// they are.
    Attribute(&'static str),
}

impl Site {
    /// The proxied URL's document hint for a URI here (see the module doc).
    fn document(self) -> Option<super::json::Document> {
        match self {
            Site::Attribute("X-ASSET-LIST") => Some(super::json::Document::AssetList),
            Site::Attribute("SERVER-URI") => Some(super::json::Document::Steering),
            _ => None,
        }
    }
}

/// An `EXT-X-DEFINE` (RFC 8216bis §4.4.2.3), as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Definition<'a> {
    /// `NAME="n",VALUE="v"`.
    Value { name: &'a str, value: &'a str },
    /// `IMPORT="n"`: the value the multivariant playlist gave `n`.
    Import(&'a str),
    /// `QUERYPARAM="n"`: the value of query parameter `n` of this playlist's URL.
    QueryParam(&'a str),
}

/// What [`scan`] reports.
enum Found<'a> {
    /// A URI: its byte range (without quotes) and site.
    Uri(Range<usize>, Site),
    /// An `EXT-X-DEFINE` tag: the byte range of its attribute list and what it defines.
    Define(Range<usize>, Definition<'a>),
}

/// The definition an `EXT-X-DEFINE` attribute list makes, `None` if it makes none we can
/// read (the player judges it).
fn definition(attrs: &str) -> Option<Definition<'_>> {
    let (mut name, mut value, mut import, mut query) = (None, None, None, None);
    parse_attributes(attrs, |attr, range, quoted| {
        let v = &attrs[range];
        match attr {
            "NAME" if quoted => name = Some(v),
            "VALUE" if quoted => value = Some(v),
            "IMPORT" if quoted => import = Some(v),
            "QUERYPARAM" if quoted => query = Some(v),
            _ => {}
        }
        Ok::<(), ()>(())
    })
    .ok()?;
    match (name, import, query) {
        (Some(name), None, None) => Some(Definition::Value {
            name,
            value: value.unwrap_or(""),
        }),
        (None, Some(n), None) => Some(Definition::Import(n)),
        (None, None, Some(n)) => Some(Definition::QueryParam(n)),
        _ => None,
    }
}

/// Walk `input` and report the byte range of every URI (without quotes) with its site, and
/// every `EXT-X-DEFINE`. Stops at the first error from `f` or from parsing.
fn scan<'a>(
    input: &'a str,
    mut f: impl FnMut(Found<'a>) -> Result<(), RewriteError>,
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
            let attrs_at = at + 1 + name.len() + 1;
            if name == "EXT-X-DEFINE" {
                if let Some(def) = definition(attrs) {
                    f(Found::Define(attrs_at..attrs_at + attrs.len(), def))?;
                }
                continue;
            }
            let wanted = uri_attributes(name);
            if wanted.is_empty() {
                continue;
            }
            parse_attributes(attrs, |attr, value, quoted| {
                let Some(attr) = wanted.iter().copied().find(|w| *w == attr) else {
                    return Ok(());
                };
                if !quoted {
                    return Err(RewriteError::Malformed(format!(
                        "line {}: {name} {attr} must be a quoted string",
                        line_no + 1
                    )));
                }
                f(Found::Uri(
                    attrs_at + value.start..attrs_at + value.end,
                    Site::Attribute(attr),
                ))
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
            f(Found::Uri(at..at + trimmed.len(), Site::Line))?;
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

/// The proxy path's forms of a rewritten URI (see the module doc): the fast path for plain
/// relative names, the path form for URIs that keep references for the player, the
/// document hints, and the URL the player asked for, where `QUERYPARAM` values come from.
pub(crate) struct ProxyForms<'a> {
    pub mapper: &'a super::ProxyMapper<'a>,
    /// The upstream URL as the player named it (`url=`, or the path form's), before sluice
    /// moved any parameter into a cookie.
    pub requested: &'a Url,
}

impl ProxyForms<'_> {
    /// `proxied` with the document hint of `site`, if it has one.
    fn hinted(&self, mut proxied: String, site: Site) -> String {
        if let Some(doc) = site.document() {
            proxied.push_str("&doc=");
            proxied.push_str(doc.name());
        }
        proxied
    }
}

/// The variables of one playlist as sluice knows them while rewriting it: a value, or `None`
/// for one only the player knows (`IMPORT`, an absent `QUERYPARAM`). The first definition of
/// a name wins (a second one is an error the player reports).
#[derive(Default)]
struct Variables(Vec<(String, Option<String>)>);

impl Variables {
    fn define(&mut self, name: &str, value: Option<String>) {
        if !self.0.iter().any(|(n, _)| n == name) {
            self.0.push((name.to_string(), value));
        }
    }

    /// `raw` with every reference to a known value replaced by it (hls.js's reference
    /// grammar, `{$[A-Za-z0-9_-]+}`), and whether none is left for the player.
    fn substitute(&self, raw: &str) -> (String, bool) {
        let mut out = String::with_capacity(raw.len());
        let mut complete = true;
        let mut rest = raw;
        while let Some(open) = rest.find("{$") {
            out.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            let len = after
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
                .count();
            if len == 0 || after.as_bytes().get(len) != Some(&b'}') {
                out.push_str("{$");
                rest = after;
                continue;
            }
            let name = &after[..len];
            match self.0.iter().find(|(n, _)| n == name) {
                Some((_, Some(value))) => out.push_str(value),
                _ => {
                    out.push_str(&rest[open..open + 3 + len]);
                    complete = false;
                }
            }
            rest = &after[len + 1..];
        }
        out.push_str(rest);
        (out, complete)
    }
}

/// A `QUERYPARAM` definition as sluice writes it: `NAME="n",VALUE="v"` (§4.4.2.3), or an
/// error when `v` cannot be a quoted string.
fn value_definition(name: &str, value: &str) -> Result<String, RewriteError> {
    if value.bytes().any(|b| b == b'"' || b.is_ascii_control()) {
        return Err(RewriteError::BadUri(format!(
            "QUERYPARAM {name:?}: its value cannot be written as a quoted string"
        )));
    }
    Ok(format!("NAME=\"{name}\",VALUE=\"{value}\""))
}

/// [`rewrite_hls`] on the proxy path: `forms` (see [`ProxyForms`]) writes plain relative URIs
/// itself, substitutes the variables sluice knows and adds document hints. `map` must then be
/// `forms.mapper`'s own mapping.
pub(crate) fn rewrite_hls_with(
    input: &str,
    base: &Url,
    map: &mut dyn FnMut(&Url) -> Result<String, String>,
    forms: Option<&ProxyForms<'_>>,
) -> Result<String, RewriteError> {
    check_size(input.len())?;
    // Proxied URIs are several times longer than typical relative segment names; starting
    // at 2x saves most regrowth without over-reserving for URI-light multivariant lists.
    let mut out = String::with_capacity(input.len().saturating_mul(2));
    let mut copied = 0;
    let mut vars = Variables::default();
    scan(input, |found| {
        let (range, site) = match found {
            Found::Uri(range, site) => (range, site),
            Found::Define(range, def) => {
                let Some(forms) = forms else {
                    return Ok(());
                };
                match def {
                    Definition::Value { name, value } => vars.define(name, Some(value.into())),
                    Definition::Import(name) => vars.define(name, None),
                    Definition::QueryParam(name) => {
                        let value = forms
                            .requested
                            .query_pairs()
                            .find(|(k, _)| k == name)
                            .map(|(_, v)| v.into_owned());
                        if let Some(value) = &value {
                            out.push_str(&input[copied..range.start]);
                            out.push_str(&value_definition(name, value)?);
                            copied = range.end;
                        }
                        vars.define(name, value);
                    }
                }
                return Ok(());
            }
        };
        let raw = &input[range.clone()];
        if let Some(forms) = forms.filter(|f| f.mapper.accepts(raw)) {
            // A plain relative name has no control bytes, no scheme and resolves to
            // http(s) under an http(s) base, so none of `rewrite_one`'s checks can fail.
            out.push_str(&input[copied..range.start]);
            let from = out.len();
            forms.mapper.write_plain(raw, &mut out);
            if site.document().is_some() {
                let written = out.split_off(from);
                out.push_str(&forms.hinted(written, site));
            }
            copied = range.end;
            return Ok(());
        }
        let replacement = match forms {
            Some(forms) => rewrite_proxied_one(raw, site, base, map, forms, &vars)?,
            None => rewrite_one(raw, site, base, map)?,
        };
        let Some(replacement) = replacement else {
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

/// The replacement for one URI, or `None` to leave it as it is; variable references are
/// carried through for the player.
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

/// [`rewrite_one`] on the proxy path: the variables sluice knows substituted; a URI that
/// still holds references (for the player) in the path form, which carries it verbatim.
fn rewrite_proxied_one(
    raw: &str,
    site: Site,
    base: &Url,
    map: &mut dyn FnMut(&Url) -> Result<String, String>,
    forms: &ProxyForms<'_>,
    vars: &Variables,
) -> Result<Option<String>, RewriteError> {
    if raw.contains("{$") {
        let (text, complete) = vars.substitute(raw);
        if !complete {
            return rewrite_one(&text, site, base, &mut |u| forms.mapper.path_form(u));
        }
        let out = rewrite_plain(&text, site, base, map)?;
        return Ok(out.map(|u| forms.hinted(u, site)));
    }
    let out = rewrite_plain(raw, site, base, map)?;
    Ok(out.map(|u| forms.hinted(u, site)))
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
        if !fetched && (site != Site::Line || scheme.eq_ignore_ascii_case("data")) {
            return Ok(None);
        }
    }
    let resolved = base
        .join(raw)
        .map_err(|e| RewriteError::BadUri(format!("{raw:?}: {e}")))?;
    if !is_fetchable(&resolved) {
        return match site {
            Site::Attribute(_) => Ok(None),
            Site::Line => Err(RewriteError::BadUri(format!(
                "{raw:?} resolves to non-http(s) {resolved}"
            ))),
        };
    }
    let mapped = map_checked(map, &resolved)?;
    let breaks_line = match site {
        Site::Attribute(_) => mapped.contains('"'),
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
    let _ = scan(input, |found| {
        if let Found::Uri(range, _) = found {
            uris.push(input[range].to_owned());
        }
        Ok(())
    });
    uris
}

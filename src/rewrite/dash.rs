//! DASH MPD rewriting (ISO/IEC 23009-1): finds every URL the player will fetch and splices
//! in `map`'s output, leaving every other byte of the document untouched.
//!
//! quick-xml's streaming reader finds the elements; edits are byte-range splices into the
//! original text, so attribute order, quoting, namespaces, comments and whitespace survive
//! exactly, and a document without URLs round-trips byte-identically.
//!
//! Rewritten: `BaseURL`, `Location` and `PatchLocation` text; `SegmentTemplate@media`,
//! `@initialization`, `@index`; `SegmentURL@media`, `@index`; `Initialization`,
//! `RepresentationIndex` and `BitstreamSwitching` `@sourceURL`; `xlink:href` (remote
//! elements); `UTCTiming@value` of the HTTP timing schemes (`http-xsdate`, `http-iso`,
//! `http-ntp`, `http-head`: the player fetches the clock from there; a white-space separated
//! list of URLs, each rewritten). Left alone: DRM license URLs in `ContentProtection` (the
//! stream API hands the player its license URL separately) and the `direct`/`ntp` timing
//! schemes (a value or a host, not a URL).
//!
//! # How relative URLs are resolved
//! DASH resolves a relative URL against the nearest enclosing `BaseURL`, each level resolved
//! against its parent (MPD → Period → AdaptationSet → Representation), the document URL at
//! the top. We keep a stack of *upstream* effective bases, one per open element. Every URL
//! is resolved against the upstream base and written as an absolute proxy URL — never left
//! relative — because once a `BaseURL` is rewritten to `/api/proxy?url=…`, a relative child
//! resolved against it by the player would land on `/api/<child>`, not upstream. `BaseURL`
//! elements are rewritten too: the player uses them directly when no child URL overrides
//! them (e.g. `SegmentBase` on-demand profiles, where the `BaseURL` *is* the media file), and
//! combining a root-relative proxy URL with our root-relative proxy children is harmless.
//!
//! A `SegmentTemplate` is inherited by lower levels, and the player resolves it against the
//! *lower* level's base. When an AdaptationSet or Representation has its own `BaseURL` and
//! inherits a template defined above it, one absolute rewrite cannot be right for both
//! levels, so we give the lower level its own copy of the template's URL attributes (added
//! to its `SegmentTemplate`, or as a new `<SegmentTemplate …/>`); DASH merges template
//! attributes across levels (§5.3.9.1), so the other attributes still come from above.
//!
//! `SegmentBase` and `SegmentList` are inherited the same way, their URL-bearing children
//! (`Initialization`, `RepresentationIndex`, `BitstreamSwitching`, the `SegmentURL` list) each
//! taken from the lowest level that has one (as Shaka and dash.js read them), and resolved
//! against the base of the Representation that uses them. A level with its own `BaseURL`
//! that inherits one resolved against another base gets its own copy, rewritten against its
//! own base: the whole element (attributes, `SegmentTimeline` and all) when it has none, or
//! the children it lacks appended to its own element when it has one. (A chain of partial
//! merges across three levels copies the nearest level's element with the children merged
//! into it.)

use std::borrow::Cow;
use std::ops::Range;
use std::rc::Rc;

use percent_encoding::utf8_percent_encode;
use quick_xml::escape::{escape, partial_escape, unescape};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use url::Url;

use super::{check_size, is_fetchable, map_checked, scheme_of, RewriteError, COMPONENT};

/// `SegmentTemplate` attributes that are URL templates, in the order we (re)emit them.
const TEMPLATE_ATTRS: [&str; 3] = ["media", "initialization", "index"];

/// How a URL is embedded, which decides escaping and template handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Embed {
    /// Element text (`BaseURL`, `Location`): XML text escaping.
    Text,
    /// A plain URL attribute.
    Attr,
    /// A `SegmentTemplate` attribute with `$Number$`-style placeholders.
    Template,
    /// A white-space separated list of URLs (`UTCTiming@value`).
    AttrList,
}

/// One change the scanner asks for. Positions are byte offsets into the input.
enum Edit<'s> {
    /// Replace `range`, which holds the (escaped) form of `value`.
    Replace {
        range: Range<usize>,
        value: &'s str,
        base: &'s Url,
        embed: Embed,
        /// Resolved against a base a `BaseURL` established (not the document URL), or is
        /// itself a `BaseURL`.
        site: Site,
        /// A second (or later) `BaseURL` of one element: an alternative location.
        alternative: bool,
    },
    /// Replace `range` (empty: insert at its start) by `parts`: literal text, and pieces of
    /// the input rewritten as fragments of the MPD against `base` (copies of an inherited
    /// `SegmentBase`/`SegmentList`, see the module doc).
    Copy {
        range: Range<usize>,
        parts: Vec<Part>,
        base: &'s Url,
    },
    /// Insert ` name="template"` attributes (into an existing `SegmentTemplate` tag), or a
    /// whole `<{prefix}SegmentTemplate …/>` element when `element_prefix` is set.
    Insert {
        at: usize,
        element_prefix: Option<&'s str>,
        attrs: Vec<(&'static str, &'s str)>,
        base: &'s Url,
        site: Site,
    },
}

/// A piece of a [`Edit::Copy`].
#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    /// A range of the input, rewritten as an MPD fragment.
    Rewrite(Range<usize>),
    /// An empty-element tag of the input, rewritten, written as a start tag (`/>` → `>`).
    RewriteAsStart(Range<usize>),
}

/// The two inherited segment-information elements that carry URLs in children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SegKind {
    Base = 0,
    List = 1,
}

impl SegKind {
    fn of(local: &[u8]) -> Option<SegKind> {
        match local {
            b"SegmentBase" => Some(SegKind::Base),
            b"SegmentList" => Some(SegKind::List),
            _ => None,
        }
    }
}

/// The URL-bearing children of a `SegmentBase`/`SegmentList`, each inherited on its own.
const SEG_CHILDREN: [&[u8]; 4] = [
    b"Initialization",
    b"RepresentationIndex",
    b"BitstreamSwitching",
    b"SegmentURL",
];

/// A `SegmentBase`/`SegmentList` in effect at a level: where its text is, which URL-bearing
/// children it has, and the base its URLs were resolved against.
#[derive(Debug)]
struct SegmentInfo {
    /// The start tag (an empty-element tag when `inner` is `None`).
    open: Range<usize>,
    /// The content between its tags.
    inner: Option<Range<usize>>,
    /// The qualified name, for a closing tag.
    name: String,
    /// URL-bearing children of its own: `(index into SEG_CHILDREN, range)`.
    children: Vec<(usize, Range<usize>)>,
    /// Children it inherited from above and had copied in.
    merged: Vec<(usize, Range<usize>)>,
    base: usize,
}

impl SegmentInfo {
    fn has_urls(&self) -> bool {
        !self.children.is_empty() || !self.merged.is_empty()
    }

    /// The element again, whole, as a copy for a lower level.
    fn copy_parts(&self) -> Vec<Part> {
        let mut parts = Vec::new();
        match &self.inner {
            Some(inner) => {
                parts.push(Part::Rewrite(self.open.clone()));
                parts.push(Part::Rewrite(inner.clone()));
            }
            None => parts.push(Part::RewriteAsStart(self.open.clone())),
        }
        parts.extend(self.merged.iter().map(|(_, r)| Part::Rewrite(r.clone())));
        parts.push(Part::Literal(format!("</{}>", self.name)));
        parts
    }
}

/// A `SegmentBase`/`SegmentList` being read.
#[derive(Debug)]
struct OpenSegment {
    kind: SegKind,
    /// The stack index of the level that declares it.
    owner: usize,
    open: Range<usize>,
    name: String,
    children: Vec<(usize, Range<usize>)>,
    /// A URL-bearing child element that is not empty: `(child, start, its stack depth)`.
    child: Option<(usize, usize, usize)>,
    base: usize,
}

/// Where a URL sits with respect to `BaseURL`s (failover mode keeps relative URLs below a
/// `BaseURL` relative, see [`rewrite_dash_failover`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Site {
    /// Resolved against the document URL.
    Document,
    /// Resolved against a base a `BaseURL` established.
    BelowBase,
    /// A `BaseURL` element's own text.
    BaseUrl,
}

fn site_of(base_index: usize) -> Site {
    if base_index == 0 {
        Site::Document
    } else {
        Site::BelowBase
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    AdaptationSet,
    Representation,
    Other,
}

/// The `SegmentTemplate` URL attributes in effect at a level, and the base they were
/// resolved against (an index into the scanner's `bases`).
#[derive(Debug)]
struct Template {
    urls: [Option<String>; 3],
    base: usize,
}

/// Per open element: its effective base and template inheritance state.
#[derive(Debug)]
struct Frame {
    level: Level,
    /// Namespace prefix with its colon (`"mpd:"`), for elements we may insert into.
    prefix: String,
    /// Base in effect for this element's own `BaseURL` children.
    inherited: usize,
    /// Base in effect for everything else inside this element.
    effective: usize,
    has_base: bool,
    /// A URL was already resolved against `effective`; a `BaseURL` arriving now (against
    /// the schema's element order) would have changed it, so it is an error, not a guess.
    used: bool,
    template: Option<Rc<Template>>,
    /// This level inherits a template resolved against a different base (see module doc).
    needs_template: bool,
    /// The `SegmentBase` and `SegmentList` in effect (by [`SegKind`]).
    segments: [Option<Rc<SegmentInfo>>; 2],
    /// This level inherits one resolved against a different base and has none of its own yet.
    needs_segments: [bool; 2],
}

impl Frame {
    fn child(&self, level: Level, prefix: String) -> Frame {
        Frame {
            level,
            prefix,
            inherited: self.effective,
            effective: self.effective,
            has_base: false,
            used: false,
            template: self.template.clone(),
            needs_template: false,
            segments: self.segments.clone(),
            needs_segments: [false; 2],
        }
    }
}

/// Text elements being captured: `(kind, start of content)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextUrl {
    BaseUrl,
    /// `Location` / `PatchLocation`: resolved against the document URL, not `BaseURL`s.
    Location,
}

fn xml_err(e: impl std::fmt::Display) -> RewriteError {
    RewriteError::Xml(e.to_string())
}

/// Walk the MPD and report every edit. `base` is the document URL.
fn scan(
    input: &str,
    base: &Url,
    mut f: impl FnMut(Edit<'_>) -> Result<(), RewriteError>,
) -> Result<(), RewriteError> {
    // quick-xml steps over a UTF-8 BOM without counting it in its positions: read past it
    // ourselves, and add it back to every position (splices are made on `input`).
    let bom = if input.starts_with('\u{FEFF}') { 3 } else { 0 };
    let mut reader = Reader::from_str(&input[bom..]);
    // Splicing needs the text exactly as written.
    reader.config_mut().trim_text(false);
    let mut bases: Vec<Url> = vec![base.clone()];
    let mut stack: Vec<Frame> = vec![Frame {
        level: Level::Other,
        prefix: String::new(),
        inherited: 0,
        effective: 0,
        has_base: false,
        used: false,
        template: None,
        needs_template: false,
        segments: [None, None],
        needs_segments: [false; 2],
    }];
    let mut capture: Option<(TextUrl, usize)> = None;
    let mut segment: Option<OpenSegment> = None;
    loop {
        let before = pos(&reader)? + bom;
        let event = reader.read_event().map_err(xml_err)?;
        let after = pos(&reader)? + bom;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                if capture.is_some() {
                    return Err(xml_err("element inside BaseURL/Location"));
                }
                let local = e.local_name();
                let local = local.as_ref();
                let level = match local {
                    b"AdaptationSet" => Level::AdaptationSet,
                    b"Representation" => Level::Representation,
                    _ => Level::Other,
                };
                // An AdaptationSet that needed its own template copy and has not got one by
                // its first Representation gets it here, where the schema puts it.
                if level == Level::Representation {
                    insert_pending_template(&mut stack, &bases, before, &mut f)?;
                    insert_pending_segments(&mut stack, &bases, before, &mut f)?;
                }
                element_urls(
                    input, &reader, e, local, &mut stack, &bases, after, empty, &mut f,
                )?;
                // (One nested inside another is no schema's: the outer one is tracked only.)
                if let (Some(kind), None) = (SegKind::of(local), &segment) {
                    let open = OpenSegment {
                        kind,
                        owner: stack.len() - 1,
                        open: before..after,
                        name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                        children: Vec::new(),
                        child: None,
                        base: top(&stack)?.effective,
                    };
                    if empty {
                        close_segment(input, open, None, &mut stack, &bases, &mut f)?;
                    } else {
                        segment = Some(open);
                    }
                } else if let Some(open) = segment.as_mut() {
                    let child = SEG_CHILDREN.iter().position(|c| *c == local);
                    // Only direct children count (`stack.len() - 1` is the segment element).
                    if let (Some(c), true) = (child, stack.len() == open.owner + 2) {
                        if empty {
                            open.children.push((c, before..after));
                        } else {
                            open.child = Some((c, before, stack.len() + 1));
                        }
                    }
                }
                if !empty {
                    let prefix = match e.name().prefix() {
                        Some(p) if level != Level::Other => {
                            format!("{}:", String::from_utf8_lossy(p.as_ref()))
                        }
                        _ => String::new(),
                    };
                    let frame = top(&stack)?.child(level, prefix);
                    stack.push(frame);
                    capture = match local {
                        b"BaseURL" => Some((TextUrl::BaseUrl, after)),
                        b"Location" | b"PatchLocation" => Some((TextUrl::Location, after)),
                        _ => None,
                    };
                }
            }
            Event::End(_) => {
                if let Some((kind, start)) = capture.take() {
                    stack.pop();
                    text_url(input, start..before, kind, &mut stack, &mut bases, &mut f)?;
                    continue;
                }
                if let Some(open) = segment.as_mut() {
                    if let Some((c, start, depth)) = open.child {
                        if stack.len() == depth {
                            open.children.push((c, start..after));
                            open.child = None;
                        }
                    }
                    if stack.len() == open.owner + 2 {
                        if let Some(open) = segment.take() {
                            let inner = open.open.end..before;
                            close_segment(input, open, Some(inner), &mut stack, &bases, &mut f)?;
                        }
                    }
                }
                insert_pending_template(&mut stack, &bases, before, &mut f)?;
                insert_pending_segments(&mut stack, &bases, before, &mut f)?;
                stack.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(())
}

fn pos(reader: &Reader<&[u8]>) -> Result<usize, RewriteError> {
    usize::try_from(reader.buffer_position()).map_err(xml_err)
}

fn top(stack: &[Frame]) -> Result<&Frame, RewriteError> {
    stack.last().ok_or_else(|| xml_err("unbalanced end tag"))
}

fn top_mut(stack: &mut [Frame]) -> Result<&mut Frame, RewriteError> {
    stack
        .last_mut()
        .ok_or_else(|| xml_err("unbalanced end tag"))
}

/// The URL attributes of one start/empty tag; `tag_end` is the offset just past its `>`.
#[allow(clippy::too_many_arguments)]
fn element_urls<'s>(
    input: &'s str,
    reader: &Reader<&[u8]>,
    e: &BytesStart<'_>,
    local: &[u8],
    stack: &mut [Frame],
    bases: &'s [Url],
    tag_end: usize,
    empty: bool,
    f: &mut impl FnMut(Edit<'_>) -> Result<(), RewriteError>,
) -> Result<(), RewriteError> {
    let is_template = local == b"SegmentTemplate";
    // `UTCTiming@value` is a URL only for the HTTP timing schemes.
    let http_timing = local == b"UTCTiming"
        && e.try_get_attribute("schemeIdUri")
            .ok()
            .flatten()
            .is_some_and(|a| {
                let v = String::from_utf8_lossy(&a.value).to_ascii_lowercase();
                v.starts_with("urn:mpeg:dash:utc:http-")
            });
    let mut own: [Option<String>; 3] = [None, None, None];
    let base_index = top(stack)?.effective;
    let mut any_url = false;
    // Most elements (`S`, `Representation`, `ContentProtection`, …) carry no URL attribute:
    // skip parsing their attributes unless they are a URL element or may hold `xlink:href`.
    let url_element = matches!(
        local,
        b"SegmentTemplate"
            | b"SegmentURL"
            | b"Initialization"
            | b"RepresentationIndex"
            | b"BitstreamSwitching"
            | b"UTCTiming"
    );
    if !url_element && memchr::memmem::find(e.as_ref(), b"href").is_none() {
        return Ok(());
    }
    for attr in e.attributes() {
        let attr = attr.map_err(xml_err)?;
        let key = attr.key.as_ref();
        let embed = match (local, key) {
            (b"SegmentTemplate", b"media" | b"initialization" | b"index") => Embed::Template,
            (b"SegmentURL", b"media" | b"index") => Embed::Attr,
            (b"Initialization" | b"RepresentationIndex" | b"BitstreamSwitching", b"sourceURL") => {
                Embed::Attr
            }
            (b"UTCTiming", b"value") if http_timing => Embed::AttrList,
            _ if attr.key.local_name().as_ref() == b"href" && attr.key.prefix().is_some() => {
                Embed::Attr
            }
            _ => continue,
        };
        let range = span_in(input, &attr.value)?;
        let value = attr
            .decode_and_unescape_value(reader.decoder())
            .map_err(xml_err)?;
        any_url = true;
        if is_template {
            if let Some(i) = TEMPLATE_ATTRS.iter().position(|a| a.as_bytes() == key) {
                own[i] = Some(value.clone().into_owned());
            }
        }
        f(Edit::Replace {
            range,
            value: &value,
            base: &bases[base_index],
            embed,
            site: site_of(base_index),
            alternative: false,
        })?;
    }
    if any_url {
        // Any open element could still (wrongly) receive a BaseURL that changes this base.
        for frame in stack.iter_mut() {
            frame.used = true;
        }
    }
    if !is_template {
        return Ok(());
    }
    let parent = top_mut(stack)?;
    // This level now has a template of its own; fill in URL attributes it inherits but
    // whose inherited resolution was against another base.
    let inherited = parent.template.clone();
    let mut missing: Vec<(&'static str, String)> = Vec::new();
    let mut urls = own;
    if let Some(up) = inherited.as_deref() {
        for (i, slot) in urls.iter_mut().enumerate() {
            if slot.is_none() {
                if let Some(v) = &up.urls[i] {
                    if up.base != base_index {
                        missing.push((TEMPLATE_ATTRS[i], v.clone()));
                    }
                    *slot = Some(v.clone());
                }
            }
        }
    }
    parent.template = Some(Rc::new(Template {
        urls,
        base: base_index,
    }));
    parent.needs_template = false;
    if !missing.is_empty() {
        // Just before `/>` or `>`.
        let at = tag_end - if empty { 2 } else { 1 };
        f(Edit::Insert {
            at,
            element_prefix: None,
            attrs: missing.iter().map(|(k, v)| (*k, v.as_str())).collect(),
            base: &bases[base_index],
            site: site_of(base_index),
        })?;
    }
    Ok(())
}

/// If the innermost element inherits a template resolved against another base and has not
/// declared its own, insert `<SegmentTemplate …/>` at `at`.
fn insert_pending_template(
    stack: &mut [Frame],
    bases: &[Url],
    at: usize,
    f: &mut impl FnMut(Edit<'_>) -> Result<(), RewriteError>,
) -> Result<(), RewriteError> {
    let frame = top_mut(stack)?;
    if !frame.needs_template {
        return Ok(());
    }
    frame.needs_template = false;
    let Some(up) = frame.template.clone() else {
        return Ok(());
    };
    let attrs: Vec<(&'static str, &str)> = TEMPLATE_ATTRS
        .iter()
        .zip(up.urls.iter())
        .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
        .collect();
    frame.template = Some(Rc::new(Template {
        urls: up.urls.clone(),
        base: frame.effective,
    }));
    f(Edit::Insert {
        at,
        element_prefix: Some(&frame.prefix),
        attrs,
        base: &bases[frame.effective],
        site: site_of(frame.effective),
    })
}

/// A `SegmentBase`/`SegmentList` element ended (`inner` is its content; `None` for an empty
/// element tag). It is now the one in effect at its level. When the level inherits one of the
/// same kind resolved against another base, the URL-bearing children this one lacks (which
/// the player takes from above, against this level's base) are copied into it, rewritten
/// against this level's base.
fn close_segment(
    input: &str,
    open: OpenSegment,
    inner: Option<Range<usize>>,
    stack: &mut [Frame],
    bases: &[Url],
    f: &mut impl FnMut(Edit<'_>) -> Result<(), RewriteError>,
) -> Result<(), RewriteError> {
    let k = open.kind as usize;
    let owner = stack
        .get_mut(open.owner)
        .ok_or_else(|| xml_err("unbalanced end tag"))?;
    let mut info = SegmentInfo {
        open: open.open.clone(),
        inner: inner.clone(),
        name: open.name.clone(),
        children: open.children,
        merged: Vec::new(),
        base: open.base,
    };
    if let Some(up) = owner.segments[k].as_deref() {
        if up.base != open.base {
            info.merged = up
                .children
                .iter()
                .chain(up.merged.iter())
                .filter(|(c, _)| !info.children.iter().any(|(own, _)| own == c))
                .cloned()
                .collect();
        }
    }
    owner.needs_segments[k] = false;
    if !info.merged.is_empty() {
        let mut parts: Vec<Part> = info
            .merged
            .iter()
            .map(|(_, r)| Part::Rewrite(r.clone()))
            .collect();
        let range = match &inner {
            // Just before the end tag.
            Some(inner) => inner.end..inner.end,
            // `<SegmentBase …/>` becomes `<SegmentBase …>children</SegmentBase>`.
            None => {
                let tag = &input[open.open.clone()];
                let kept = tag.trim_end_matches('>').trim_end_matches('/').len();
                parts.insert(0, Part::Literal(">".into()));
                parts.push(Part::Literal(format!("</{}>", open.name)));
                open.open.start + kept..open.open.end
            }
        };
        f(Edit::Copy {
            range,
            parts,
            base: &bases[open.base],
        })?;
    }
    owner.segments[k] = Some(Rc::new(info));
    Ok(())
}

/// If the innermost element inherits a `SegmentBase`/`SegmentList` resolved against another
/// base and has not declared its own, insert a copy of it at `at`, rewritten against this
/// level's base.
fn insert_pending_segments(
    stack: &mut [Frame],
    bases: &[Url],
    at: usize,
    f: &mut impl FnMut(Edit<'_>) -> Result<(), RewriteError>,
) -> Result<(), RewriteError> {
    let frame = top_mut(stack)?;
    for k in 0..2 {
        if !std::mem::take(&mut frame.needs_segments[k]) {
            continue;
        }
        let Some(up) = frame.segments[k].clone() else {
            continue;
        };
        f(Edit::Copy {
            range: at..at,
            parts: up.copy_parts(),
            base: &bases[frame.effective],
        })?;
        // Below here it is this level's copy, resolved against this level's base.
        let (open, inner) = match &up.inner {
            Some(inner) => (up.open.clone(), Some(inner.clone())),
            None => (up.open.clone(), None),
        };
        frame.segments[k] = Some(Rc::new(SegmentInfo {
            open,
            inner,
            name: up.name.clone(),
            children: up.children.clone(),
            merged: up.merged.clone(),
            base: frame.effective,
        }));
    }
    Ok(())
}

/// A `BaseURL` / `Location` element closed; `range` is its raw content. The element's own
/// frame is already popped, so the top of `stack` is its parent.
fn text_url(
    input: &str,
    range: Range<usize>,
    kind: TextUrl,
    stack: &mut [Frame],
    bases: &mut Vec<Url>,
    f: &mut impl FnMut(Edit<'_>) -> Result<(), RewriteError>,
) -> Result<(), RewriteError> {
    let raw = &input[range.clone()];
    if raw.contains('<') {
        return Err(xml_err("CDATA or comment inside BaseURL/Location"));
    }
    // xs:anyURI allows surrounding whitespace; keep it and replace only the URL.
    let lead = raw.len() - raw.trim_start().len();
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(());
    }
    let range = range.start + lead..range.start + lead + trimmed.len();
    let value = unescape(trimmed).map_err(xml_err)?;
    let parent = top_mut(stack)?;
    let against = match kind {
        TextUrl::Location => 0,
        TextUrl::BaseUrl => parent.inherited,
    };
    f(Edit::Replace {
        range,
        value: &value,
        base: &bases[against],
        embed: Embed::Text,
        site: match kind {
            TextUrl::BaseUrl => Site::BaseUrl,
            TextUrl::Location => Site::Document,
        },
        alternative: kind == TextUrl::BaseUrl && parent.has_base,
    })?;
    if kind == TextUrl::Location || parent.has_base {
        // Only the first of several alternative BaseURLs decides resolution.
        return Ok(());
    }
    if parent.used {
        return Err(xml_err(
            "BaseURL after URLs that it would change (out of schema order)",
        ));
    }
    let resolved = bases[against]
        .join(&value)
        .map_err(|e| RewriteError::BadUri(format!("BaseURL {value:?}: {e}")))?;
    bases.push(resolved);
    parent.effective = bases.len() - 1;
    parent.has_base = true;
    if let Some(t) = &parent.template {
        parent.needs_template =
            matches!(parent.level, Level::AdaptationSet | Level::Representation)
                && t.base != parent.effective;
    }
    for k in 0..2 {
        if let Some(up) = &parent.segments[k] {
            parent.needs_segments[k] =
                matches!(parent.level, Level::AdaptationSet | Level::Representation)
                    && up.base != parent.effective
                    && up.has_urls();
        }
    }
    Ok(())
}

/// Byte range of `part` inside `input`. quick-xml borrows attribute values from the input
/// when reading from a `&str`, so this is pointer arithmetic on two safe slices, checked.
// The `Cow` (not `&[u8]`) is the point: only a borrowed value has a position in the input.
#[allow(clippy::ptr_arg)]
fn span_in(input: &str, part: &Cow<'_, [u8]>) -> Result<Range<usize>, RewriteError> {
    let Cow::Borrowed(part) = part else {
        return Err(xml_err("attribute value not borrowed from input"));
    };
    let start = (part.as_ptr() as usize)
        .checked_sub(input.as_ptr() as usize)
        .ok_or_else(|| xml_err("attribute value outside input"))?;
    let end = start + part.len();
    if input.as_bytes().get(start..end) != Some(*part) {
        return Err(xml_err("attribute value outside input"));
    }
    Ok(start..end)
}

/// Rewrite a DASH MPD: every URL (see the module doc for which) is resolved against its
/// upstream effective base and replaced by `map(&resolved)`, XML-escaped.
///
/// `SegmentTemplate` placeholders (`$Number$`, `$Number%05d$`, `$Time$`,
/// `$RepresentationID$`, `$Bandwidth$`, `$SubNumber$`, `$$`) are kept literal in the output
/// so the player can still substitute them; see [`restore_placeholders`].
///
/// Values with a non-http(s) scheme (`urn:mpeg:dash:resolve-to-zero:2013`, `data:`) are left
/// untouched.
///
/// # Errors
/// [`RewriteError::TooLarge`], [`RewriteError::Xml`] for malformed XML or URLs in places we
/// will not guess about, [`RewriteError::BadUri`] / [`RewriteError::CrLfInOutput`] as for
/// HLS, and `BadUri` when `map`'s output does not carry a template placeholder through.
pub fn rewrite_dash(
    input: &str,
    base: &Url,
    map: &mut dyn FnMut(&Url) -> Result<String, String>,
) -> Result<String, RewriteError> {
    rewrite_dash_with(input, base, map, None, None, false).map(|o| o.unwrap_or_default())
}

/// [`rewrite_dash`] with the edge's mapping (every URL through `/api/proxy` with the
/// mapper's ctx), writing plain relative URLs and plain `SegmentTemplate` values straight
/// into the output under their level's encoded base (no `Url::join`, no re-encoding of the
/// whole URL, no escaping pass: see [`super::ProxyMapper`]). Byte-identical to
/// `rewrite_dash(input, base, |u| mapper.map(u))` (a property test checks that).
///
/// # Errors
/// As [`rewrite_dash`].
/// `None` when the MPD has alternative `BaseURL`s (found in the same pass, instead of a
/// separate parse): those need [`rewrite_dash_failover`].
pub(crate) fn rewrite_dash_fast(
    input: &str,
    base: &Url,
    mapper: &super::ProxyMapper<'_>,
) -> Result<Option<String>, RewriteError> {
    rewrite_dash_with(
        input,
        base,
        &mut |u| mapper.map(u),
        None,
        Some(mapper),
        false,
    )
}

/// A `SegmentTemplate` value that is a plain relative path with `$…$` identifiers in it
/// (`$RepresentationID$/seg-$Number%05d$.m4s`): resolving it is concatenation, and its
/// proxied form is the plain encoding with each identifier written literally (what
/// [`restore_placeholders`] makes of the generic output).
fn is_plain_template(value: &str) -> bool {
    let mut shape = String::with_capacity(value.len());
    let mut parts = 0;
    for (i, part) in value.split('$').enumerate() {
        parts += 1;
        if i % 2 == 0 {
            shape.push_str(part);
        } else if part.is_empty() || !is_placeholder(part) {
            return false;
        } else {
            shape.push('x');
        }
    }
    parts % 2 == 1 && super::is_plain_relative(&shape)
}

fn push_template_encoded(value: &str, out: &mut String) {
    for (i, part) in value.split('$').enumerate() {
        if i % 2 == 0 {
            super::push_plain_encoded(part, out);
        } else {
            out.push('$');
            out.push_str(part);
            out.push('$');
        }
    }
}

/// Whether some element of the MPD has several `BaseURL` children (alternative locations a
/// player fails over between).
pub fn has_alternative_base_urls(input: &str) -> bool {
    let mut reader = Reader::from_str(input);
    let mut counts: Vec<usize> = vec![0];
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                if e.local_name().as_ref() == b"BaseURL" {
                    if let Some(c) = counts.last_mut() {
                        *c += 1;
                        if *c > 1 {
                            return true;
                        }
                    }
                }
                counts.push(0);
            }
            Ok(Event::End(_)) => {
                counts.pop();
            }
            Ok(Event::Eof) | Err(_) => return false,
            _ => {}
        }
    }
}

/// [`rewrite_dash`] for an MPD with alternative `BaseURL`s, keeping failover working through
/// the proxy: every `BaseURL` becomes `base_map`'s output — a proxy URL *relative URLs can be
/// resolved against* (the path-form `/api/proxy/{ctx}/{scheme}/{authority}/{path}`) — and every
/// relative URL below a `BaseURL` is left relative, so the player resolves it against
/// whichever `BaseURL` it is using. Absolute URLs and URLs resolved against the document are
/// rewritten with `map` as usual.
///
/// # Errors
/// As [`rewrite_dash`].
pub fn rewrite_dash_failover(
    input: &str,
    base: &Url,
    map: &mut dyn FnMut(&Url) -> Result<String, String>,
    base_map: &mut dyn FnMut(&Url) -> Result<String, String>,
) -> Result<String, RewriteError> {
    rewrite_dash_with(input, base, map, Some(base_map), None, false).map(|o| o.unwrap_or_default())
}

/// A URL mapping (see [`rewrite_dash`]).
type Map<'a> = &'a mut dyn FnMut(&Url) -> Result<String, String>;

/// `fragment`: `input` is a piece of an MPD copied below a `BaseURL` (see [`Edit::Copy`]):
/// its URLs are resolved against that level's base, not the document's.
fn rewrite_dash_with(
    input: &str,
    base: &Url,
    map: Map<'_>,
    mut base_map: Option<Map<'_>>,
    fast: Option<&super::ProxyMapper<'_>>,
    fragment: bool,
) -> Result<Option<String>, RewriteError> {
    check_size(input.len())?;
    let below = |site: Site| match site {
        Site::Document if fragment => Site::BelowBase,
        other => other,
    };
    // In fast mode, alternative BaseURLs end the pass (`Ok(None)`): the caller redoes it in
    // failover mode.
    let mut alternatives = false;
    let mut out = String::with_capacity(input.len().saturating_mul(2));
    let mut copied = 0;
    // The fast path's pieces: `&ctx=…` escaped for XML (the only XML-special byte a proxied
    // URL holds is that `&`), and each level's encoded base directory, by base URL.
    let suffix_xml = fast.map(|f| f.suffix().replace('&', "&amp;"));
    let mut prefixes: Vec<(String, Option<String>)> = Vec::new();
    let scanned = scan(input, base, |edit| match edit {
        Edit::Replace {
            range,
            value,
            base,
            embed,
            site,
            alternative,
        } => {
            let site = below(site);
            if alternative && fast.is_some() && base_map.is_none() {
                alternatives = true;
                return Err(RewriteError::Malformed("alternative BaseURLs".into()));
            }
            if let (Some(suffix), None) = (&suffix_xml, &base_map) {
                let template = match embed {
                    Embed::Attr | Embed::Text if super::is_plain_relative(value) => Some(false),
                    Embed::Template if is_plain_template(value) => Some(true),
                    _ => None,
                };
                if let Some(template) = template {
                    let at = match prefixes.iter().position(|(b, _)| b == base.as_str()) {
                        Some(i) => i,
                        None => {
                            prefixes.push((
                                base.as_str().to_owned(),
                                super::ProxyMapper::prefix_for(base),
                            ));
                            prefixes.len() - 1
                        }
                    };
                    if let Some(prefix) = &prefixes[at].1 {
                        out.push_str(&input[copied..range.start]);
                        out.push_str(prefix);
                        if template {
                            push_template_encoded(value, &mut out);
                        } else {
                            super::push_plain_encoded(value, &mut out);
                        }
                        out.push_str(suffix);
                        copied = range.end;
                        return Ok(());
                    }
                }
            }
            let failover = base_map.is_some();
            if failover && site == Site::BelowBase && scheme_of(value).is_none() {
                // Resolved by the player against the (path-form) BaseURL it chose.
                return Ok(());
            }
            if let (Some(bm), Site::BaseUrl) = (base_map.as_mut(), site) {
                let Some(new) = rewrite_one(value, base, Embed::Text, *bm)? else {
                    return Ok(());
                };
                out.push_str(&input[copied..range.start]);
                out.push_str(&partial_escape(new.as_str()));
                copied = range.end;
                return Ok(());
            }
            let new = if embed == Embed::AttrList {
                let mut parts = Vec::new();
                for url in value.split_ascii_whitespace() {
                    parts.push(
                        rewrite_one(url, base, Embed::Attr, map)?
                            .unwrap_or_else(|| url.to_string()),
                    );
                }
                Some(parts.join(" "))
            } else {
                rewrite_one(value, base, embed, map)?
            };
            let Some(new) = new else {
                return Ok(());
            };
            out.push_str(&input[copied..range.start]);
            match embed {
                Embed::Text => out.push_str(&partial_escape(new.as_str())),
                Embed::Attr | Embed::Template | Embed::AttrList => {
                    out.push_str(&escape(new.as_str()))
                }
            }
            copied = range.end;
            Ok(())
        }
        Edit::Insert {
            at,
            element_prefix,
            attrs,
            base,
            site,
        } => {
            let keep_relative = base_map.is_some() && below(site) == Site::BelowBase;
            out.push_str(&input[copied..at]);
            copied = at;
            if let Some(prefix) = element_prefix {
                out.push('<');
                out.push_str(prefix);
                out.push_str("SegmentTemplate");
            }
            for (name, value) in attrs {
                // An untouched (non-http) value is copied as it was; so is a relative one
                // the player resolves against its BaseURL (failover mode).
                let new = if keep_relative && scheme_of(value).is_none() {
                    value.to_owned()
                } else {
                    rewrite_one(value, base, Embed::Template, map)?
                        .unwrap_or_else(|| value.to_owned())
                };
                out.push(' ');
                out.push_str(name);
                out.push_str("=\"");
                out.push_str(&escape(new.as_str()));
                out.push('"');
            }
            if element_prefix.is_some() {
                out.push_str("/>");
            }
            Ok(())
        }
        Edit::Copy { range, parts, base } => {
            out.push_str(&input[copied..range.start]);
            copied = range.end;
            for part in parts {
                let (piece, as_start) = match part {
                    Part::Literal(text) => {
                        out.push_str(&text);
                        continue;
                    }
                    Part::Rewrite(r) => (r, false),
                    Part::RewriteAsStart(r) => (r, true),
                };
                // A copy holds no `BaseURL`: failover mode only needs to know it is on (to
                // keep relative URLs relative), never to map one.
                let mut no_base_url =
                    |_: &Url| -> Result<String, String> { Err("no BaseURL in a copy".into()) };
                let failover: Option<Map<'_>> = match base_map {
                    Some(_) => Some(&mut no_base_url),
                    None => None,
                };
                let rewritten =
                    rewrite_dash_with(&input[piece], base, &mut *map, failover, fast, true)?
                        .ok_or_else(|| xml_err("BaseURL inside SegmentBase/SegmentList"))?;
                if as_start {
                    let tag = rewritten.trim_end_matches('>').trim_end_matches('/');
                    out.push_str(tag);
                    out.push('>');
                } else {
                    out.push_str(&rewritten);
                }
            }
            Ok(())
        }
    });
    match scanned {
        Err(_) if alternatives => return Ok(None),
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    out.push_str(&input[copied..]);
    Ok(Some(out))
}

fn rewrite_one(
    value: &str,
    base: &Url,
    embed: Embed,
    map: &mut dyn FnMut(&Url) -> Result<String, String>,
) -> Result<Option<String>, RewriteError> {
    if let Some(scheme) = scheme_of(value) {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Ok(None);
        }
    }
    let resolved = base
        .join(value)
        .map_err(|e| RewriteError::BadUri(format!("{value:?}: {e}")))?;
    if !is_fetchable(&resolved) {
        return Ok(None);
    }
    let mapped = map_checked(map, &resolved)?;
    if embed != Embed::Template {
        return Ok(Some(mapped));
    }
    let tokens = placeholders(value);
    if placeholders(resolved.as_str()) != tokens {
        return Err(RewriteError::BadUri(format!(
            "{value:?}: resolution changed its template placeholders"
        )));
    }
    restore_placeholders(mapped, &tokens, &resolved).map(Some)
}

/// Put `$…$` placeholder tokens back into `map`'s output.
///
/// The player substitutes `$Number$` etc. in the string it finds in the MPD. `map` (via
/// [`super::proxy_url`]) percent-encodes the whole upstream URL, turning `$Number%05d$` into
/// `%24Number%2505d%24`, which the player would not recognise. Because the component set is
/// strict and fixed, each token's encoded form is predictable, so we replace it with the
/// literal token. After substitution the proxy URL's `url=` parameter then decodes to the
/// resolved upstream URL with the same substitution applied (substituted values are digits
/// or a Representation@id, which is `[A-Za-z0-9_-]`-ish and survives unencoded).
///
/// A `map` whose output contains neither the token nor its encoded form (e.g. one that signs or
/// re-encodes the URL) cannot be used for templates; that is an error rather than a
/// silently unplayable stream.
fn restore_placeholders(
    mut mapped: String,
    tokens: &[&str],
    resolved: &Url,
) -> Result<String, RewriteError> {
    for token in tokens {
        if mapped.contains(token) {
            continue; // a map that does not encode (e.g. in tests) keeps tokens as they are
        }
        let encoded: String = utf8_percent_encode(token, COMPONENT).collect();
        if !mapped.contains(&encoded) {
            return Err(RewriteError::BadUri(format!(
                "{resolved}: map output does not carry placeholder {token}"
            )));
        }
        mapped = mapped.replace(&encoded, token);
    }
    Ok(mapped)
}

/// The distinct DASH template identifiers in `s` (§5.3.9.4.4), in order of appearance.
pub(crate) fn placeholders(s: &str) -> Vec<&str> {
    let mut found: Vec<&str> = Vec::new();
    let mut i = 0;
    while let Some(open) = s[i..].find('$').map(|p| i + p) {
        let Some(close) = s[open + 1..].find('$').map(|p| open + 1 + p) else {
            break;
        };
        let token = &s[open..=close];
        if is_placeholder(&token[1..token.len() - 1]) {
            if !found.contains(&token) {
                found.push(token);
            }
            i = close + 1;
        } else {
            // The closing `$` may open the next token (`$x$Number$`).
            i = close;
        }
    }
    found
}

fn is_placeholder(inner: &str) -> bool {
    if inner.is_empty() {
        return true; // `$$`, an escaped dollar
    }
    let (ident, format) = inner.split_once('%').unwrap_or((inner, ""));
    let known = matches!(
        ident,
        "Number" | "Time" | "RepresentationID" | "Bandwidth" | "SubNumber"
    );
    let format_ok = format.is_empty()
        || (format.len() >= 2
            && format.starts_with('0')
            && format[..format.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_digit())
            && matches!(
                format.as_bytes()[format.len() - 1],
                b'd' | b'i' | b'u' | b'x' | b'X' | b'o'
            ));
    known && format_ok
}

/// Every URL in the MPD, in document order, unescaped, as written (not resolved; templates
/// with their placeholders). Stops at the first XML error.
pub fn dash_uris(input: &str) -> Vec<String> {
    let mut uris = Vec::new();
    let Ok(dummy) = Url::parse("http://dash-uris.invalid/") else {
        return uris;
    };
    // Errors only truncate the list; callers use this to inspect output, not to validate.
    let _ = scan(input, &dummy, |edit| {
        if let Edit::Replace { value, .. } = edit {
            uris.push(value.to_owned());
        }
        Ok(())
    });
    uris
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(input: &str) -> String {
        let base = Url::parse("https://o.example/vod/manifest.mpd").unwrap();
        rewrite_dash(input, &base, &mut |u: &Url| Ok(format!("/p/{u}"))).unwrap()
    }

    /// The attribute URLs inside one Representation of the output (its `BaseURL` text left
    /// out): the output's URLs are absolute (`/p/…`), so the player
    /// takes them as they are, from the lowest level that has them (as Shaka and dash.js do).
    fn urls_of(out: &str, rep: &str) -> Vec<String> {
        let start = out.find(&format!("<Representation id=\"{rep}\"")).unwrap();
        let rest = &out[start..];
        let end = rest.find("</Representation>").unwrap_or(rest.len());
        let mut found: Vec<String> = rest[..end]
            .split('"')
            .filter(|p| p.starts_with("/p/"))
            .map(str::to_string)
            .collect();
        found.retain(|u| !u.ends_with('/'));
        found
    }

    #[test]
    fn an_inherited_segment_list_is_copied_under_a_lower_base_url() {
        let input = r#"<MPD><BaseURL>https://cdn.example/v/</BaseURL><Period><AdaptationSet><SegmentList duration="2"><SegmentTimeline><S d="2"/></SegmentTimeline><Initialization sourceURL="init.mp4"/><SegmentURL media="s1.m4s"/><SegmentURL media="s2.m4s?a=1&amp;b=2"/></SegmentList><Representation id="a"/><Representation id="b"><BaseURL>b/</BaseURL></Representation></AdaptationSet></Period></MPD>"#;
        assert_eq!(
            readable(input),
            r#"<MPD><BaseURL>/p/https://cdn.example/v/</BaseURL><Period><AdaptationSet><SegmentList duration="2"><SegmentTimeline><S d="2"/></SegmentTimeline><Initialization sourceURL="/p/https://cdn.example/v/init.mp4"/><SegmentURL media="/p/https://cdn.example/v/s1.m4s"/><SegmentURL media="/p/https://cdn.example/v/s2.m4s?a=1&amp;b=2"/></SegmentList><Representation id="a"/><Representation id="b"><BaseURL>/p/https://cdn.example/v/b/</BaseURL><SegmentList duration="2"><SegmentTimeline><S d="2"/></SegmentTimeline><Initialization sourceURL="/p/https://cdn.example/v/b/init.mp4"/><SegmentURL media="/p/https://cdn.example/v/b/s1.m4s"/><SegmentURL media="/p/https://cdn.example/v/b/s2.m4s?a=1&amp;b=2"/></SegmentList></Representation></AdaptationSet></Period></MPD>"#
        );
    }

    #[test]
    fn a_period_segment_base_is_copied_to_an_adaptation_set_and_its_representations() {
        // Period SegmentBase; the AdaptationSet has its own BaseURL (copy before its first
        // Representation), one Representation another (a copy of its own).
        let input = r#"<MPD><Period><SegmentBase indexRange="0-99"><Initialization sourceURL="init.mp4" range="0-9"/><RepresentationIndex sourceURL="idx.sidx"/></SegmentBase><AdaptationSet><BaseURL>audio/</BaseURL><Representation id="a1"><BaseURL>a1.mp4</BaseURL></Representation><Representation id="a2"><BaseURL>en/a2.mp4</BaseURL></Representation></AdaptationSet></Period></MPD>"#;
        let out = readable(input);
        // a1's base is `audio/a1.mp4`: its children resolve in `audio/`.
        assert_eq!(
            urls_of(&out, "a1"),
            [
                "/p/https://o.example/vod/audio/init.mp4",
                "/p/https://o.example/vod/audio/idx.sidx",
            ],
            "{out}"
        );
        assert!(out.contains(r#"<AdaptationSet><BaseURL>/p/https://o.example/vod/audio/</BaseURL><SegmentBase indexRange="0-99"><Initialization sourceURL="/p/https://o.example/vod/audio/init.mp4" range="0-9"/><RepresentationIndex sourceURL="/p/https://o.example/vod/audio/idx.sidx"/></SegmentBase><Representation id="a1">"#), "{out}");
        assert_eq!(
            urls_of(&out, "a2"),
            [
                "/p/https://o.example/vod/audio/en/init.mp4",
                "/p/https://o.example/vod/audio/en/idx.sidx",
            ],
            "{out}"
        );
        // The Period's own stays resolved against the document.
        assert!(out.contains(r#"<Period><SegmentBase indexRange="0-99"><Initialization sourceURL="/p/https://o.example/vod/init.mp4" range="0-9"/>"#), "{out}");
    }

    #[test]
    fn a_lower_segment_list_gets_the_children_it_inherits() {
        // The Representation has its own SegmentList with SegmentURLs but takes the
        // Initialization from above: copied into its list, against its base. An empty
        // `<SegmentBase …/>` that inherits an Initialization is opened to hold it.
        let input = r#"<MPD><Period><AdaptationSet><SegmentList><Initialization sourceURL="init.mp4"/><SegmentURL media="up.m4s"/></SegmentList><SegmentBase><Initialization sourceURL="binit.mp4"/></SegmentBase><Representation id="r"><BaseURL>r/</BaseURL><SegmentBase indexRange="5-9" /><SegmentList duration="4"><SegmentURL media="s1.m4s"/></SegmentList></Representation></AdaptationSet></Period></MPD>"#;
        let out = readable(input);
        assert!(out.contains(r#"<Representation id="r"><BaseURL>/p/https://o.example/vod/r/</BaseURL><SegmentBase indexRange="5-9" ><Initialization sourceURL="/p/https://o.example/vod/r/binit.mp4"/></SegmentBase><SegmentList duration="4"><SegmentURL media="/p/https://o.example/vod/r/s1.m4s"/><Initialization sourceURL="/p/https://o.example/vod/r/init.mp4"/></SegmentList></Representation>"#), "{out}");
        // Its own SegmentURLs win: the upper ones are not copied in.
        assert!(
            !urls_of(&out, "r").iter().any(|u| u.contains("up.m4s")),
            "{out}"
        );
    }

    #[test]
    fn a_merged_empty_segment_base_is_copied_whole_further_down() {
        // The AdaptationSet's empty SegmentBase takes the Period's Initialization (opened to
        // hold it); the Representation below, with a BaseURL of its own, gets the merged
        // element as a copy.
        let input = r#"<MPD><Period><SegmentBase><Initialization sourceURL="init.mp4"/></SegmentBase><AdaptationSet><BaseURL>a/</BaseURL><SegmentBase indexRange="0-9"/><Representation id="r"><BaseURL>r/</BaseURL></Representation></AdaptationSet></Period></MPD>"#;
        assert_eq!(
            readable(input),
            r#"<MPD><Period><SegmentBase><Initialization sourceURL="/p/https://o.example/vod/init.mp4"/></SegmentBase><AdaptationSet><BaseURL>/p/https://o.example/vod/a/</BaseURL><SegmentBase indexRange="0-9"><Initialization sourceURL="/p/https://o.example/vod/a/init.mp4"/></SegmentBase><Representation id="r"><BaseURL>/p/https://o.example/vod/a/r/</BaseURL><SegmentBase indexRange="0-9"><Initialization sourceURL="/p/https://o.example/vod/a/r/init.mp4"/></SegmentBase></Representation></AdaptationSet></Period></MPD>"#
        );
    }

    #[test]
    fn nothing_is_copied_where_the_base_is_the_same() {
        // No lower BaseURL, or a SegmentList with no URLs, or a Representation's own: the
        // document is rewritten in place, nothing added.
        for input in [
            r#"<MPD><Period><AdaptationSet><SegmentList><SegmentURL media="s.m4s"/></SegmentList><Representation id="a"/></AdaptationSet></Period></MPD>"#,
            r#"<MPD><Period><AdaptationSet><SegmentBase indexRange="0-9"/><Representation id="a"><BaseURL>a.mp4</BaseURL></Representation></AdaptationSet></Period></MPD>"#,
            r#"<MPD><Period><AdaptationSet><Representation id="a"><BaseURL>a/</BaseURL><SegmentList><SegmentURL media="s.m4s"/></SegmentList></Representation></AdaptationSet></Period></MPD>"#,
        ] {
            let out = readable(input);
            assert_eq!(
                out.matches("<SegmentList").count() + out.matches("<SegmentBase").count(),
                input.matches("<SegmentList").count() + input.matches("<SegmentBase").count(),
                "{out}"
            );
        }
    }

    #[test]
    fn copies_keep_a_namespace_prefix_and_the_fast_path_agrees() {
        let input = r#"<mpd:MPD xmlns:mpd="urn:mpeg:dash:schema:mpd:2011"><mpd:Period><mpd:AdaptationSet><mpd:SegmentList><mpd:SegmentURL media="s.m4s"/></mpd:SegmentList><mpd:Representation id="a"><mpd:BaseURL>a/</mpd:BaseURL></mpd:Representation></mpd:AdaptationSet></mpd:Period></mpd:MPD>"#;
        let out = readable(input);
        assert!(out.contains(r#"<mpd:BaseURL>/p/https://o.example/vod/a/</mpd:BaseURL><mpd:SegmentList><mpd:SegmentURL media="/p/https://o.example/vod/a/s.m4s"/></mpd:SegmentList></mpd:Representation>"#), "{out}");
        let base = Url::parse("https://o.example/vod/manifest.mpd").unwrap();
        let mapper = super::super::ProxyMapper::new(&base, "c1");
        let fast = rewrite_dash_fast(input, &base, &mapper).unwrap().unwrap();
        let generic = rewrite_dash(input, &base, &mut |u| mapper.map(u)).unwrap();
        assert_eq!(fast, generic);
        assert!(
            fast.contains("url=https%3A%2F%2Fo.example%2Fvod%2Fa%2Fs.m4s"),
            "{fast}"
        );
    }

    #[test]
    fn failover_keeps_relative_copies_relative() {
        // Alternative BaseURLs at the Representation: its copy of the document-level list
        // stays relative, so the player resolves it against whichever BaseURL it uses.
        let input = r#"<MPD><Period><AdaptationSet><SegmentList><SegmentURL media="s.m4s"/></SegmentList><Representation id="a"><BaseURL>https://a.example/x/</BaseURL><BaseURL>https://b.example/y/</BaseURL></Representation></AdaptationSet></Period></MPD>"#;
        let base = Url::parse("https://o.example/vod/manifest.mpd").unwrap();
        let out = rewrite_dash_failover(
            input,
            &base,
            &mut |u: &Url| Ok(format!("/q/{u}")),
            &mut |u: &Url| Ok(format!("/p/{u}")),
        )
        .unwrap();
        assert_eq!(
            out,
            r#"<MPD><Period><AdaptationSet><SegmentList><SegmentURL media="/q/https://o.example/vod/s.m4s"/></SegmentList><Representation id="a"><BaseURL>/p/https://a.example/x/</BaseURL><BaseURL>/p/https://b.example/y/</BaseURL><SegmentList><SegmentURL media="s.m4s"/></SegmentList></Representation></AdaptationSet></Period></MPD>"#
        );
    }
}

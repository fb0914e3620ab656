//! One model of an HLS playlist (RFC 8216bis, with the LL-HLS, content-steering and
//! interstitial tags): what a line is, how an attribute list reads, which tags carry URIs,
//! whether a playlist is multivariant or VOD, and what a multivariant playlist offers.
//!
//! Every part of sluice that reads HLS asks this module: the rewriter (which URIs to splice,
//! [`lines`], [`parse_attributes`], [`uri_attributes`]), the quality filter (variants, rendition
//! groups, I-frame and image streams: [`Multivariant`]), the cache policy (VOD or live and the
//! target duration: [`Playlist::liveness`]) and LL-HLS prefetch ([`Playlist::announced`]). One
//! definition each, so they cannot disagree (the cache policy and prefetch once did on what
//! a VOD playlist is). Pure; nothing here does I/O.

use std::ops::Range;
use std::time::Duration;

/// `s` split after each `\n` (terminators kept), with `memchr`: the char searcher's per-call
/// setup was ~30% of a VOD rewrite (playlist lines are short), a plain byte loop still ~25%.
pub fn lines(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = memchr::memchr(b'\n', rest.as_bytes()).map_or(rest.len(), |i| i + 1);
        // `\n` is ASCII, so `end` is a char boundary.
        let (line, tail) = rest.split_at(end);
        rest = tail;
        Some(line)
    })
}

/// Why an attribute list could not be read, or the error a visitor returned.
#[derive(Debug)]
pub enum AttrError<E> {
    Syntax(&'static str),
    Visitor(E),
}

/// Parse an attribute list (RFC 8216 §4.2), calling `f(name, value_range, quoted)` for each
/// attribute; `value_range` is relative to `list` and excludes the quotes. Lenient about
/// whitespace around names, `=` and commas, which some packagers emit.
///
/// # Errors
/// [`AttrError::Syntax`] for a broken list, [`AttrError::Visitor`] with `f`'s own error.
pub fn parse_attributes<'l, E>(
    list: &'l str,
    mut f: impl FnMut(&'l str, Range<usize>, bool) -> Result<(), E>,
) -> Result<(), AttrError<E>> {
    let b = list.as_bytes();
    let skip_ws = |mut i: usize| {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        i
    };
    let mut i = skip_ws(0);
    while i < b.len() {
        let name_start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        if i == b.len() || b[i] != b'=' {
            return Err(AttrError::Syntax("attribute without a value"));
        }
        let name = list[name_start..i].trim_end();
        i = skip_ws(i + 1);
        let (value, quoted) = if b.get(i) == Some(&b'"') {
            let open = i + 1;
            let close = b[open..]
                .iter()
                .position(|c| *c == b'"')
                .map(|p| open + p)
                .ok_or(AttrError::Syntax("unterminated quoted string"))?;
            i = close + 1;
            (open..close, true)
        } else {
            let v_start = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            let v_end = v_start + list[v_start..i].trim_end().len();
            (v_start..v_end, false)
        };
        f(name, value, quoted).map_err(AttrError::Visitor)?;
        i = skip_ws(i);
        if i < b.len() {
            if b[i] != b',' {
                return Err(AttrError::Syntax("expected a comma between attributes"));
            }
            i = skip_ws(i + 1);
        }
    }
    Ok(())
}

/// The attributes of a list as `(name, value)` pairs (quotes removed); a broken list yields
/// the attributes before the break.
pub fn attributes(list: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let _ = parse_attributes::<()>(list, |name, range, _| {
        out.push((name, &list[range]));
        Ok(())
    });
    out
}

/// Attribute names that hold a URI, per tag. Tags not listed have no URIs.
pub fn uri_attributes(tag: &str) -> &'static [&'static str] {
    match tag {
        "EXT-X-KEY"
        | "EXT-X-SESSION-KEY"
        | "EXT-X-MAP"
        | "EXT-X-MEDIA"
        | "EXT-X-I-FRAME-STREAM-INF"
        | "EXT-X-IMAGE-STREAM-INF"
        | "EXT-X-PART"
        | "EXT-X-PRELOAD-HINT"
        | "EXT-X-RENDITION-REPORT"
        | "EXT-X-SESSION-DATA" => &["URI"],
        "EXT-X-CONTENT-STEERING" => &["SERVER-URI"],
        // HLS Interstitials (Apple, 2021): the ad/asset the player fetches mid-stream.
        "EXT-X-DATERANGE" => &["X-ASSET-URI", "X-ASSET-LIST"],
        _ => &[],
    }
}

/// What one line of a playlist is (RFC 8216 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind<'a> {
    /// `#EXT…`: the tag name and what follows its `:` (empty when none).
    Tag {
        name: &'a str,
        value: &'a str,
    },
    /// A URI line.
    Uri,
    /// Any other `#…` line.
    Comment,
    Blank,
}

/// One line: where it starts in the text, its content without the terminator and without
/// surrounding whitespace, and what it is.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    /// Byte range of the whole line in the text, terminator included.
    pub span: Range<usize>,
    pub text: &'a str,
    pub kind: LineKind<'a>,
}

fn classify(text: &str) -> LineKind<'_> {
    if text.is_empty() {
        return LineKind::Blank;
    }
    let Some(tag) = text.strip_prefix('#') else {
        return LineKind::Uri;
    };
    if !tag.starts_with("EXT") {
        return LineKind::Comment;
    }
    match tag.split_once(':') {
        Some((name, value)) => LineKind::Tag { name, value },
        None => LineKind::Tag {
            name: tag,
            value: "",
        },
    }
}

/// Whether a playlist ends, as far as caching and prefetching are concerned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Liveness {
    /// Will not change: `#EXT-X-ENDLIST`, `#EXT-X-PLAYLIST-TYPE:VOD`, or a multivariant
    /// playlist (it lists streams, not segments).
    Vod,
    /// A live media playlist, with its `#EXT-X-TARGETDURATION` when it has a sane one.
    Live(Option<Duration>),
}

/// A parsed playlist: its lines, classified once.
#[derive(Debug)]
pub struct Playlist<'a> {
    text: &'a str,
    lines: Vec<Line<'a>>,
}

impl<'a> Playlist<'a> {
    /// Classify every line of `text` (a UTF-8 BOM is stepped over). Never fails: what is
    /// not a tag or a comment is a URI line, as a player reads it.
    pub fn parse(text: &'a str) -> Playlist<'a> {
        let mut offset = if text.starts_with('\u{FEFF}') { 3 } else { 0 };
        let mut out = Vec::new();
        for raw in lines(&text[offset..]) {
            let start = offset;
            offset += raw.len();
            let content = raw.trim_end_matches(['\n', '\r']).trim();
            out.push(Line {
                span: start..offset,
                text: content,
                kind: classify(content),
            });
        }
        Playlist { text, lines: out }
    }

    pub fn text(&self) -> &'a str {
        self.text
    }

    pub fn lines(&self) -> &[Line<'a>] {
        &self.lines
    }

    fn tags(&self) -> impl Iterator<Item = (usize, &'a str, &'a str)> + '_ {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match l.kind {
                LineKind::Tag { name, value } => Some((i, name, value)),
                _ => None,
            })
    }

    /// A multivariant ("master") playlist lists variant streams (RFC 8216 §4.4.6).
    pub fn is_multivariant(&self) -> bool {
        let (mut variants, mut trick, mut segments) = (false, false, false);
        for (_, name, _) in self.tags() {
            match name {
                "EXT-X-STREAM-INF" => variants = true,
                "EXT-X-I-FRAME-STREAM-INF" | "EXT-X-IMAGE-STREAM-INF" => trick = true,
                "EXTINF" => segments = true,
                _ => {}
            }
        }
        variants || (trick && !segments)
    }

    /// VOD or live: the one definition the cache policy and prefetch share.
    pub fn liveness(&self) -> Liveness {
        let mut target = None;
        for (_, name, value) in self.tags() {
            match name {
                "EXT-X-ENDLIST" => return Liveness::Vod,
                "EXT-X-PLAYLIST-TYPE" if value.trim() == "VOD" => return Liveness::Vod,
                "EXT-X-TARGETDURATION" => {
                    target = value
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
                        .map(Duration::from_secs_f64);
                }
                _ => {}
            }
        }
        if self.is_multivariant() {
            Liveness::Vod
        } else {
            Liveness::Live(target)
        }
    }

    /// What a live media playlist announces as coming next: the part preload hint, then the
    /// newest parts, then the newest segments — at most `n` URIs as written, newest first.
    /// Nothing for a VOD or multivariant playlist. A byte-range part is a range of a segment
    /// still being written ([`Self::growing`]): it is not announced (the whole of it does
    /// not exist yet).
    pub fn announced(&self, n: usize) -> Vec<&'a str> {
        if !matches!(self.liveness(), Liveness::Live(_)) {
            return Vec::new();
        }
        let mut hints = Vec::new();
        let mut parts = Vec::new();
        let mut segments = Vec::new();
        for line in &self.lines {
            match line.kind {
                LineKind::Tag {
                    name: "EXT-X-PRELOAD-HINT",
                    value,
                } => {
                    let attrs = attributes(value);
                    if is_part_hint(&attrs) && attr(&attrs, "BYTERANGE-START").is_none() {
                        hints.extend(attr(&attrs, "URI"));
                    }
                }
                LineKind::Tag {
                    name: "EXT-X-PART",
                    value,
                } => {
                    let attrs = attributes(value);
                    if attr(&attrs, "BYTERANGE").is_none() {
                        parts.extend(attr(&attrs, "URI"));
                    }
                }
                LineKind::Uri => segments.push(line.text),
                _ => {}
            }
        }
        hints
            .into_iter()
            .chain(parts.into_iter().rev())
            .chain(segments.into_iter().rev())
            .take(n)
            .collect()
    }

    /// The segments a live media playlist says are still being written: those its byte-range
    /// parts (`EXT-X-PART` with `BYTERANGE`) and part preload hints (with `BYTERANGE-START`)
    /// point into and that it does not yet list whole (as a URI line), as written; and the
    /// segments it lists whole. Nothing for a VOD or multivariant playlist.
    pub fn growing(&self) -> (Vec<&'a str>, Vec<&'a str>) {
        if !matches!(self.liveness(), Liveness::Live(_)) {
            return (Vec::new(), Vec::new());
        }
        let mut ranged = Vec::new();
        let mut whole = Vec::new();
        for line in &self.lines {
            match line.kind {
                LineKind::Tag { name, value }
                    if name == "EXT-X-PART" || name == "EXT-X-PRELOAD-HINT" =>
                {
                    let attrs = attributes(value);
                    let into_parent = if name == "EXT-X-PART" {
                        attr(&attrs, "BYTERANGE").is_some()
                    } else {
                        is_part_hint(&attrs) && attr(&attrs, "BYTERANGE-START").is_some()
                    };
                    if into_parent {
                        ranged.extend(attr(&attrs, "URI"));
                    }
                }
                LineKind::Uri => whole.push(line.text),
                _ => {}
            }
        }
        ranged.retain(|u| !whole.contains(u));
        ranged.sort_unstable();
        ranged.dedup();
        (ranged, whole)
    }

    /// The streams a multivariant playlist offers; `None` for a media playlist.
    pub fn multivariant(&self) -> Option<Multivariant<'a>> {
        if !self.is_multivariant() {
            return None;
        }
        let mut m = Multivariant::default();
        for (i, name, value) in self.tags() {
            match name {
                "EXT-X-STREAM-INF" => {
                    // The URI is the next line that is neither blank nor a tag/comment.
                    let Some(uri_line) =
                        (i + 1..self.lines.len()).find(|&j| self.lines[j].kind == LineKind::Uri)
                    else {
                        continue;
                    };
                    let attrs = attributes(value);
                    m.variants.push(Variant {
                        tag_line: i,
                        uri_line,
                        uri: self.lines[uri_line].text,
                        stream: StreamAttrs::of(&attrs),
                        groups: GROUP_TYPES
                            .iter()
                            .filter_map(|&(attr_name, ty)| {
                                attr(&attrs, attr_name)
                                    .filter(|g| !g.is_empty() && *g != "NONE")
                                    .map(|g| (ty, g))
                            })
                            .collect(),
                    });
                }
                "EXT-X-MEDIA" => {
                    let attrs = attributes(value);
                    let ty = attr(&attrs, "TYPE").and_then(MediaType::parse);
                    m.renditions.push(Rendition {
                        line: i,
                        media_type: ty,
                        group: attr(&attrs, "GROUP-ID").unwrap_or(""),
                        uri: attr(&attrs, "URI"),
                    });
                }
                "EXT-X-I-FRAME-STREAM-INF" | "EXT-X-IMAGE-STREAM-INF" => {
                    let attrs = attributes(value);
                    m.trick_streams.push(TrickStream {
                        line: i,
                        image: name == "EXT-X-IMAGE-STREAM-INF",
                        uri: attr(&attrs, "URI").unwrap_or(""),
                        stream: StreamAttrs::of(&attrs),
                        video_group: attr(&attrs, "VIDEO").filter(|g| !g.is_empty()),
                    });
                }
                _ => {}
            }
        }
        Some(m)
    }
}

/// The value of attribute `name`, if present.
fn is_part_hint(attrs: &[(&str, &str)]) -> bool {
    attrs.iter().any(|(k, v)| *k == "TYPE" && *v == "PART")
}

pub fn attr<'a>(attrs: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    attrs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

/// The rendition group types and the variant attribute that names each.
const GROUP_TYPES: [(&str, MediaType); 4] = [
    ("AUDIO", MediaType::Audio),
    ("VIDEO", MediaType::Video),
    ("SUBTITLES", MediaType::Subtitles),
    ("CLOSED-CAPTIONS", MediaType::ClosedCaptions),
];

/// `EXT-X-MEDIA` `TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    Audio,
    Video,
    Subtitles,
    ClosedCaptions,
}

impl MediaType {
    fn parse(s: &str) -> Option<MediaType> {
        GROUP_TYPES.iter().find(|(n, _)| *n == s).map(|(_, t)| *t)
    }
}

/// The attributes that say how demanding a stream is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamAttrs<'a> {
    pub bandwidth: Option<u64>,
    pub resolution: Option<(u64, u64)>,
    pub codecs: Option<&'a str>,
}

impl<'a> StreamAttrs<'a> {
    fn of(attrs: &[(&str, &'a str)]) -> StreamAttrs<'a> {
        StreamAttrs {
            bandwidth: attr(attrs, "BANDWIDTH").and_then(|v| v.trim().parse().ok()),
            resolution: attr(attrs, "RESOLUTION").and_then(|v| {
                let (w, h) = v.split_once(['x', 'X'])?;
                Some((w.trim().parse().ok()?, h.trim().parse().ok()?))
            }),
            codecs: attr(attrs, "CODECS"),
        }
    }

    /// The video codecs named in `CODECS` (sample-entry codes, `avc1`, `hvc1`, …).
    pub fn video_codecs(&self) -> Vec<&'a str> {
        self.codecs
            .map(|c| {
                c.split(',')
                    .filter(|s| super::is_video_codec(s))
                    .map(|s| s.trim().split('.').next().unwrap_or(""))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// An `EXT-X-STREAM-INF` and its URI line.
#[derive(Debug, Clone)]
pub struct Variant<'a> {
    pub tag_line: usize,
    pub uri_line: usize,
    pub uri: &'a str,
    pub stream: StreamAttrs<'a>,
    /// The rendition groups it references, by type.
    pub groups: Vec<(MediaType, &'a str)>,
}

/// An `EXT-X-MEDIA` rendition.
#[derive(Debug, Clone)]
pub struct Rendition<'a> {
    pub line: usize,
    /// `None` for a `TYPE` this model does not know.
    pub media_type: Option<MediaType>,
    pub group: &'a str,
    pub uri: Option<&'a str>,
}

/// An `EXT-X-I-FRAME-STREAM-INF` or `EXT-X-IMAGE-STREAM-INF`.
#[derive(Debug, Clone)]
pub struct TrickStream<'a> {
    pub line: usize,
    pub image: bool,
    pub uri: &'a str,
    pub stream: StreamAttrs<'a>,
    /// `VIDEO`: the video rendition group it is an I-frame stream of.
    pub video_group: Option<&'a str>,
}

/// What a multivariant playlist offers.
#[derive(Debug, Clone, Default)]
pub struct Multivariant<'a> {
    pub variants: Vec<Variant<'a>>,
    pub renditions: Vec<Rendition<'a>>,
    pub trick_streams: Vec<TrickStream<'a>>,
}

/// The directory part of a URI (up to and including its last `/`, query stripped).
pub fn dir_of(uri: &str) -> &str {
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    path.rfind('/').map_or("", |i| &path[..=i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_kinds() {
        let p = Playlist::parse("\u{FEFF}#EXTM3U\r\n\n# hi\n#EXTINF:2,\n seg.ts \n#EXT-X-ENDLIST");
        let kinds: Vec<_> = p.lines().iter().map(|l| l.kind).collect();
        assert_eq!(
            kinds,
            vec![
                LineKind::Tag {
                    name: "EXTM3U",
                    value: ""
                },
                LineKind::Blank,
                LineKind::Comment,
                LineKind::Tag {
                    name: "EXTINF",
                    value: "2,"
                },
                LineKind::Uri,
                LineKind::Tag {
                    name: "EXT-X-ENDLIST",
                    value: ""
                },
            ]
        );
        assert_eq!(p.lines()[4].text, "seg.ts");
        assert_eq!(p.lines()[0].span, 3..12);
    }

    #[test]
    fn one_definition_of_vod() {
        let live = Playlist::parse("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n");
        assert_eq!(
            live.liveness(),
            Liveness::Live(Some(Duration::from_secs(4)))
        );
        for vod in [
            "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n#EXT-X-ENDLIST\n",
            "#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n",
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n",
        ] {
            assert_eq!(Playlist::parse(vod).liveness(), Liveness::Vod, "{vod}");
            assert!(Playlist::parse(vod).announced(3).is_empty(), "{vod}");
        }
        let junk = Playlist::parse("#EXTM3U\n#EXT-X-TARGETDURATION:NaN\n#EXTINF:2,\na.ts\n");
        assert_eq!(junk.liveness(), Liveness::Live(None));
        // An EVENT playlist is live until it ends.
        let event = Playlist::parse("#EXTM3U\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXTINF:2,\na.ts\n");
        assert!(matches!(event.liveness(), Liveness::Live(_)));
    }

    #[test]
    fn byte_range_parts_name_growing_segments_and_are_not_announced() {
        let live = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART-INF:PART-TARGET=0.5\n\
            #EXT-X-PART:DURATION=0.5,URI=\"seg9.mp4\",BYTERANGE=\"100@0\"\n\
            #EXTINF:2,\nseg9.mp4\n\
            #EXT-X-PART:DURATION=0.5,URI=\"seg10.mp4\",BYTERANGE=\"100@0\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.5,URI=\"seg10.mp4\",BYTERANGE=\"100@100\"\n\
            #EXT-X-PART:DURATION=0.5,URI=\"p10.3.mp4\"\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg11.mp4\",BYTERANGE-START=0\n";
        let p = Playlist::parse(live);
        let (growing, whole) = p.growing();
        assert_eq!(growing, ["seg10.mp4", "seg11.mp4"]);
        assert_eq!(whole, ["seg9.mp4"]);
        // The whole segment is announced; its byte-range parts and hint are not.
        assert_eq!(p.announced(10), ["p10.3.mp4", "seg9.mp4"]);
        let vod = format!("{live}#EXT-X-ENDLIST\n");
        assert_eq!(Playlist::parse(&vod).growing(), (vec![], vec![]));
    }

    #[test]
    fn announced_newest_first() {
        let p = Playlist::parse("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nseg_8.m4s\n#EXTINF:1,\nseg_9.m4s\n#EXT-X-PART:DURATION=0.2,URI=\"part_10.0.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.2,URI=\"part_10.1.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_10.2.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=MAP,URI=\"init.mp4\"\n");
        assert_eq!(
            p.announced(4),
            vec![
                "part_10.2.m4s",
                "part_10.1.m4s",
                "part_10.0.m4s",
                "seg_9.m4s"
            ]
        );
    }

    #[test]
    fn the_multivariant_model() {
        let text = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/en.m3u8\"\n#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID=\"cc\",NAME=\"c\",INSTREAM-ID=\"CC1\"\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS=\"avc1.4d401e,mp4a.40.2\",AUDIO=\"a\",CLOSED-CAPTIONS=NONE\n\n# note\nv360/p.m3u8\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,CODECS=\"avc1.4d401e\",URI=\"v360/i.m3u8\"\n";
        let p = Playlist::parse(text);
        assert!(p.is_multivariant());
        let m = p.multivariant().unwrap();
        assert_eq!(m.variants.len(), 1);
        let v = &m.variants[0];
        assert_eq!((v.tag_line, v.uri_line, v.uri), (3, 6, "v360/p.m3u8"));
        assert_eq!(v.stream.resolution, Some((640, 360)));
        assert_eq!(v.stream.bandwidth, Some(800_000));
        assert_eq!(v.stream.video_codecs(), vec!["avc1"]);
        assert_eq!(v.groups, vec![(MediaType::Audio, "a")]);
        assert_eq!(m.renditions.len(), 2);
        assert_eq!(m.renditions[0].uri, Some("audio/en.m3u8"));
        assert_eq!(m.renditions[1].media_type, Some(MediaType::ClosedCaptions));
        assert_eq!(m.trick_streams[0].uri, "v360/i.m3u8");
        assert!(Playlist::parse("#EXTM3U\n#EXTINF:2,\na.ts\n")
            .multivariant()
            .is_none());
    }

    #[test]
    fn attribute_lists_with_quoted_commas() {
        let a = attributes("CODECS=\"avc1,mp4a\", RESOLUTION=1280x720,BANDWIDTH=5");
        assert_eq!(attr(&a, "CODECS"), Some("avc1,mp4a"));
        assert_eq!(attr(&a, "RESOLUTION"), Some("1280x720"));
        assert_eq!(dir_of("a/b/c.m3u8?x=1/2"), "a/b/");
        assert_eq!(dir_of("c.m3u8"), "");
        assert!(matches!(
            parse_attributes::<()>("A=\"x", |_, _, _| Ok(())),
            Err(AttrError::Syntax(_))
        ));
    }
}

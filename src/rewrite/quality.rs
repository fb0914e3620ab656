//! The stream token's `quality` at the edge: a gated multivariant playlist lists only the
//! variants the token allows (stream-token-api, "Qualites disponibles").
//!
//! | quality | resolution   | bitrate (document) | a variant without `RESOLUTION` is allowed when `BANDWIDTH` ≤ |
//! |---------|--------------|--------------------|------------------------------------------|
//! | `480p`  | ≤ 854×480    | ~1.5 Mbps          | 2.25 Mbps (half-way to 720p's 3 Mbps)    |
//! | `720p`  | ≤ 1280×720   | ~3 Mbps            | 4.5 Mbps                                 |
//! | `1080p` | ≤ 1920×1080  | ~6 Mbps            | 10.5 Mbps                                |
//! | `4k`, `auto` | all     |                    |                                          |
//!
//! A variant is judged by `RESOLUTION` when it has one, else by `BANDWIDTH`. I-frame and
//! image streams follow their variant: one whose URI lies in the directory of a listed
//! variant shares that variant's fate; otherwise an I-frame stream is judged like a variant
//! and an image (thumbnail) stream is kept. Pure; the edge calls [`filter_variants`] on the
//! entry playlist before rewriting its URIs.

/// A quality ceiling; `None` from [`Quality::limit`] means every variant is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quality {
    max_width: u64,
    max_height: u64,
    max_bandwidth: u64,
}

impl Quality {
    /// The ceiling of a token's `quality` claim; `None` for `auto`, `4k` and anything else.
    pub fn limit(quality: &str) -> Option<Quality> {
        let (w, h, bw) = match quality.to_ascii_lowercase().as_str() {
            "480p" => (854, 480, 2_250_000),
            "720p" => (1280, 720, 4_500_000),
            "1080p" => (1920, 1080, 10_500_000),
            _ => return None,
        };
        Some(Quality {
            max_width: w,
            max_height: h,
            max_bandwidth: bw,
        })
    }

    fn allows(&self, attrs: &Attrs) -> bool {
        match (attrs.resolution, attrs.bandwidth) {
            (Some((w, h)), _) => w <= self.max_width && h <= self.max_height,
            (None, Some(bw)) => bw <= self.max_bandwidth,
            // Nothing to judge by: not provably within the ceiling.
            (None, None) => false,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Attrs {
    resolution: Option<(u64, u64)>,
    bandwidth: Option<u64>,
}

fn attrs_of(list: &str) -> Attrs {
    let mut a = Attrs::default();
    for (k, v) in attribute_pairs(list) {
        match k {
            "RESOLUTION" => {
                a.resolution = v
                    .split_once(['x', 'X'])
                    .and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)));
            }
            "BANDWIDTH" => a.bandwidth = v.trim().parse().ok(),
            _ => {}
        }
    }
    a
}

/// `NAME=value` pairs of an attribute list, quotes stripped (commas inside quotes kept).
fn attribute_pairs(list: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let b = list.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let name_start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let name = list[name_start..i].trim();
        if i >= b.len() || b[i] != b'=' {
            i += 1;
            continue;
        }
        i += 1;
        let value = if b.get(i) == Some(&b'"') {
            let open = i + 1;
            let close = list[open..].find('"').map_or(b.len(), |p| open + p);
            i = (close + 1).min(b.len());
            &list[open..close.min(b.len())]
        } else {
            let start = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            &list[start..i]
        };
        out.push((name, value));
        while i < b.len() && b[i] != b',' {
            i += 1;
        }
        i += 1;
    }
    out
}

/// The directory part of a URI (up to and including its last `/`, query stripped).
fn dir_of(uri: &str) -> &str {
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    path.rfind('/').map_or("", |i| &path[..=i])
}

#[derive(Debug)]
enum Line<'a> {
    /// `#EXT-X-STREAM-INF` and the URI line it applies to (indices into `lines`).
    Variant {
        tag: usize,
        uri: usize,
        attrs: Attrs,
        uri_text: &'a str,
    },
    /// `#EXT-X-I-FRAME-STREAM-INF` / `#EXT-X-IMAGE-STREAM-INF` with its `URI` attribute.
    Trick {
        line: usize,
        attrs: Attrs,
        uri_text: &'a str,
        image: bool,
    },
}

/// Remove from a multivariant playlist the variants `quality` does not allow (with the
/// I-frame and image streams that follow them). Every other byte is kept. A playlist with
/// no `EXT-X-STREAM-INF` (a media playlist) is returned unchanged.
pub fn filter_variants(playlist: &str, quality: Quality) -> String {
    let lines: Vec<&str> = playlist.split_inclusive('\n').collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let t = trimmed(lines[i]);
        if let Some(list) = t.strip_prefix("#EXT-X-STREAM-INF:") {
            // The URI is the next line that is neither blank nor a tag/comment.
            let mut j = i + 1;
            while j < lines.len()
                && (trimmed(lines[j]).is_empty() || trimmed(lines[j]).starts_with('#'))
            {
                j += 1;
            }
            if j < lines.len() {
                found.push(Line::Variant {
                    tag: i,
                    uri: j,
                    attrs: attrs_of(list),
                    uri_text: trimmed(lines[j]),
                });
            }
        } else if let Some((list, image)) = t
            .strip_prefix("#EXT-X-I-FRAME-STREAM-INF:")
            .map(|l| (l, false))
            .or_else(|| {
                t.strip_prefix("#EXT-X-IMAGE-STREAM-INF:")
                    .map(|l| (l, true))
            })
        {
            let uri_text = attribute_pairs(list)
                .into_iter()
                .find(|(k, _)| *k == "URI")
                .map_or("", |(_, v)| v);
            found.push(Line::Trick {
                line: i,
                attrs: attrs_of(list),
                uri_text,
                image,
            });
        }
        i += 1;
    }
    if !found.iter().any(|l| matches!(l, Line::Variant { .. })) {
        return playlist.to_string();
    }
    let mut drop = vec![false; lines.len()];
    let mut kept_dirs = Vec::new();
    let mut dropped_dirs = Vec::new();
    for l in &found {
        if let Line::Variant {
            tag,
            uri,
            attrs,
            uri_text,
        } = l
        {
            let dir = dir_of(uri_text);
            if quality.allows(attrs) {
                kept_dirs.push(dir);
            } else {
                drop[*tag] = true;
                drop[*uri] = true;
                dropped_dirs.push(dir);
            }
        }
    }
    for l in &found {
        if let Line::Trick {
            line,
            attrs,
            uri_text,
            image,
        } = l
        {
            let dir = dir_of(uri_text);
            let keep = if !dir.is_empty() && kept_dirs.contains(&dir) {
                true
            } else if !dir.is_empty() && dropped_dirs.contains(&dir) {
                false
            } else {
                *image || quality.allows(attrs)
            };
            drop[*line] = !keep;
        }
    }
    lines
        .iter()
        .zip(drop)
        .filter(|(_, d)| !d)
        .map(|(l, _)| *l)
        .collect()
}

fn trimmed(l: &str) -> &str {
    l.trim_end_matches(['\n', '\r']).trim()
}

/// Whether an HLS playlist is multivariant (lists variant streams).
pub fn is_multivariant(playlist: &str) -> bool {
    playlist.contains("#EXT-X-STREAM-INF")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "#EXTM3U\r\n#EXT-X-VERSION:6\r\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/en.m3u8\"\r\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS=\"avc1.4d401e,mp4a.40.2\",AUDIO=\"a\"\r\nv360/p.m3u8\r\n#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720\r\n\r\nv720/p.m3u8\r\n#EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080\r\nv1080/p.m3u8\r\n#EXT-X-STREAM-INF:BANDWIDTH=4000000\r\nnores-a/p.m3u8\r\n#EXT-X-STREAM-INF:BANDWIDTH=9000000\r\nnores-b/p.m3u8\r\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI=\"v720/i.m3u8\"\r\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI=\"v1080/i.m3u8\"\r\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000000,RESOLUTION=3840x2160,URI=\"elsewhere/i4k.m3u8\"\r\n#EXT-X-IMAGE-STREAM-INF:BANDWIDTH=1,RESOLUTION=320x180,URI=\"thumbs/t.m3u8\"\r\n#EXT-X-IMAGE-STREAM-INF:BANDWIDTH=1,RESOLUTION=320x180,URI=\"v1080/t.m3u8\"\r\n";

    fn q(s: &str) -> Quality {
        Quality::limit(s).unwrap()
    }

    #[test]
    fn limits() {
        assert_eq!(Quality::limit("auto"), None);
        assert_eq!(Quality::limit("4k"), None);
        assert!(Quality::limit("720P").is_some());
    }

    #[test]
    fn keeps_what_the_quality_allows() {
        let out = filter_variants(MASTER, q("720p"));
        assert!(
            out.contains("v360/p.m3u8\r\n") && out.contains("v720/p.m3u8\r\n"),
            "{out}"
        );
        assert!(
            out.contains("nores-a/p.m3u8"),
            "4 Mbps is within 720p: {out}"
        );
        assert!(
            !out.contains("v1080/p.m3u8") && !out.contains("nores-b"),
            "{out}"
        );
        assert!(
            !out.contains("1920x1080") && !out.contains("BANDWIDTH=9000000"),
            "{out}"
        );
        // Trick streams follow their variant; an unattached one is judged on its own.
        assert!(
            out.contains("v720/i.m3u8") && !out.contains("v1080/i.m3u8"),
            "{out}"
        );
        assert!(!out.contains("i4k.m3u8"), "{out}");
        assert!(
            out.contains("thumbs/t.m3u8") && !out.contains("v1080/t.m3u8"),
            "{out}"
        );
        // Renditions and every other byte survive.
        assert!(
            out.starts_with("#EXTM3U\r\n#EXT-X-VERSION:6\r\n#EXT-X-MEDIA:"),
            "{out}"
        );
        assert!(out.contains(
            "#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720\r\n\r\nv720/p.m3u8\r\n"
        ));
        let low = filter_variants(MASTER, q("480p"));
        assert!(
            low.contains("v360/p.m3u8") && !low.contains("v720/p.m3u8"),
            "{low}"
        );
        let hd = filter_variants(MASTER, q("1080p"));
        assert!(hd.contains("v1080/p.m3u8") && hd.contains("nores-b") && !hd.contains("i4k"));
    }

    #[test]
    fn media_playlists_pass_unchanged() {
        let media = "#EXTM3U\n#EXTINF:2,\nseg.ts\n";
        assert_eq!(filter_variants(media, q("480p")), media);
        assert!(!is_multivariant(media));
        assert!(is_multivariant(MASTER));
    }

    #[test]
    fn attribute_lists_with_quoted_commas() {
        let a = attrs_of("CODECS=\"avc1,mp4a\",RESOLUTION=1280x720,BANDWIDTH=5");
        assert_eq!(a.resolution, Some((1280, 720)));
        assert_eq!(a.bandwidth, Some(5));
        assert_eq!(attrs_of("RESOLUTION=junk").resolution, None);
        assert_eq!(dir_of("a/b/c.m3u8?x=1/2"), "a/b/");
        assert_eq!(dir_of("c.m3u8"), "");
    }
}

//! The stream token's `quality` at the edge: a gated multivariant playlist lists only what the
//! token's ceiling allows (stream-token-api, "Qualites disponibles"), decided on the model of
//! the master ([`crate::media::hls::Multivariant`]), not line by line.
//!
//! | quality | resolution   | bitrate (document) | a stream without `RESOLUTION` is allowed when `BANDWIDTH` ≤ |
//! |---------|--------------|--------------------|------------------------------------------|
//! | `480p`  | ≤ 854×480    | ~1.5 Mbps          | 2.25 Mbps (half-way to 720p's 3 Mbps)    |
//! | `720p`  | ≤ 1280×720   | ~3 Mbps            | 4.5 Mbps                                 |
//! | `1080p` | ≤ 1920×1080  | ~6 Mbps            | 10.5 Mbps                                |
//! | `4k`, `auto` | all     |                    |                                          |
//!
//! What is kept:
//! - a **variant** (`EXT-X-STREAM-INF`, content-steering pathway clones included) when its
//!   `RESOLUTION` is within the ceiling, else (no `RESOLUTION`) its `BANDWIDTH`; neither: not
//!   provably within, removed;
//! - a **rendition** (`EXT-X-MEDIA`) when its group is referenced by a kept variant — for a
//!   `VIDEO` group, only when *every* variant referencing it is kept (its renditions are those
//!   variants' video); unknown `TYPE`s and unreferenced groups are removed;
//! - an **I-frame or image stream** only when it is tied to kept variants and to no removed
//!   one, and its own `RESOLUTION` (if any) is within the ceiling. It is tied by the most
//!   specific evidence present: its `VIDEO` group; else a variant URI whose file name it
//!   extends in the same directory (`v720.m3u8` → `v720_iframes.m3u8`); else the variants of
//!   its directory, narrowed to those of the same `RESOLUTION` and video codec when any; else
//!   the variants of its `RESOLUTION` and codec; else (I-frames only) the variants of its video
//!   codec whose `BANDWIDTH` is 2–50× its own. An I-frame stream addresses its variant's full
//!   segments (byte ranges), so an untied one is never judged on its own small `BANDWIDTH`.
//!
//! Everything else in the master (session data and keys, the steering manifest URI, every
//! byte of the kept lines) is kept. What the kept lines name is then all a restricted
//! credential can open: the rewrite mints one proof per URI ([`crate::auth::playback`]).

use crate::media::hls::{self, MediaType, Multivariant, Playlist, StreamAttrs};

/// A quality ceiling; `None` from [`Quality::limit`] means every variant is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quality {
    label: &'static str,
    max_width: u64,
    max_height: u64,
    max_bandwidth: u64,
}

impl Quality {
    /// The ceiling of a token's `quality` claim; `None` for `auto`, `4k` and anything else.
    pub fn limit(quality: &str) -> Option<Quality> {
        let (label, w, h, bw) = match quality.to_ascii_lowercase().as_str() {
            "480p" => ("480p", 854, 480, 2_250_000),
            "720p" => ("720p", 1280, 720, 4_500_000),
            "1080p" => ("1080p", 1920, 1080, 10_500_000),
            _ => return None,
        };
        Some(Quality {
            label,
            max_width: w,
            max_height: h,
            max_bandwidth: bw,
        })
    }

    /// The canonical name (`720p`), as a credential carries it.
    pub fn label(&self) -> &'static str {
        self.label
    }

    pub fn max_height(&self) -> u64 {
        self.max_height
    }

    pub fn max_bandwidth(&self) -> u64 {
        self.max_bandwidth
    }

    /// An HLS stream: by `RESOLUTION` when it has one, else by `BANDWIDTH`.
    pub fn allows(&self, s: &StreamAttrs<'_>) -> bool {
        match (s.resolution, s.bandwidth) {
            (Some((w, h)), _) => w <= self.max_width && h <= self.max_height,
            (None, Some(bw)) => bw <= self.max_bandwidth,
            // Nothing to judge by: not provably within the ceiling.
            (None, None) => false,
        }
    }
}

/// A multivariant playlist restricted to a ceiling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restricted {
    /// The playlist without what the ceiling excludes; every other byte kept.
    pub text: String,
    /// The playlist URIs kept (variants, renditions, I-frame and image streams), as written.
    pub playlists: Vec<String>,
    /// How many variants are left (0: nothing of this content is within the ceiling).
    pub variants: usize,
}

/// Restrict a multivariant playlist to `quality`; `None` for a media playlist.
pub fn restrict_master(playlist: &str, quality: Quality) -> Option<Restricted> {
    let model = Playlist::parse(playlist);
    let m = model.multivariant()?;
    let keep_variant: Vec<bool> = m
        .variants
        .iter()
        .map(|v| quality.allows(&v.stream))
        .collect();
    let mut drop = vec![false; model.lines().len()];
    let mut playlists = Vec::new();
    for (v, keep) in m.variants.iter().zip(&keep_variant) {
        if *keep {
            playlists.push(v.uri.to_string());
        } else {
            drop[v.tag_line] = true;
            drop[v.uri_line] = true;
        }
    }
    // A URI a removed variant uses is that variant's, whatever else lists it.
    let removed: Vec<&str> = m
        .variants
        .iter()
        .zip(&keep_variant)
        .filter(|(_, k)| !**k)
        .map(|(v, _)| v.uri)
        .collect();
    for r in &m.renditions {
        let keep = r
            .media_type
            .is_some_and(|ty| group_allowed(&m, &keep_variant, ty, r.group))
            && r.uri.is_none_or(|u| !removed.contains(&u));
        if keep {
            playlists.extend(r.uri.map(str::to_string));
        } else {
            drop[r.line] = true;
        }
    }
    for t in &m.trick_streams {
        let tied = tied_variants(&m, t);
        let keep = !tied.is_empty()
            && tied.iter().all(|&i| keep_variant[i])
            && !removed.contains(&t.uri)
            && t.stream
                .resolution
                .is_none_or(|_| quality.allows(&t.stream));
        if keep {
            playlists.push(t.uri.to_string());
        } else {
            drop[t.line] = true;
        }
    }
    let mut text = String::with_capacity(playlist.len());
    let mut copied = 0;
    for (line, dropped) in model.lines().iter().zip(&drop) {
        if *dropped {
            text.push_str(&playlist[copied..line.span.start]);
            copied = line.span.end;
        }
    }
    text.push_str(&playlist[copied..]);
    Some(Restricted {
        text,
        playlists,
        variants: keep_variant.iter().filter(|k| **k).count(),
    })
}

/// Whether the rendition group `(ty, id)` serves kept variants only as it should: any kept
/// variant for audio and text, every referencing variant kept for video.
fn group_allowed(m: &Multivariant<'_>, keep: &[bool], ty: MediaType, id: &str) -> bool {
    let mut users = m
        .variants
        .iter()
        .zip(keep)
        .filter(|(v, _)| v.groups.contains(&(ty, id)))
        .map(|(_, k)| *k)
        .peekable();
    users.peek().is_some()
        && if ty == MediaType::Video {
            users.all(|k| k)
        } else {
            users.any(|k| k)
        }
}

/// The variants (indices) an I-frame or image stream belongs to, by the most specific
/// evidence present (module doc); empty when nothing ties it.
fn tied_variants(m: &Multivariant<'_>, t: &hls::TrickStream<'_>) -> Vec<usize> {
    let all = || 0..m.variants.len();
    if let Some(group) = t.video_group {
        return all()
            .filter(|&i| m.variants[i].groups.contains(&(MediaType::Video, group)))
            .collect();
    }
    let dir = hls::dir_of(t.uri);
    // A variant's name: its file stem when that tells the variants apart, else its
    // directory's last component when that does (`v720/index.m3u8`).
    let names: Vec<String> = {
        let stems: Vec<&str> = m.variants.iter().map(|v| stem_of(v.uri)).collect();
        let dirs: Vec<&str> = m.variants.iter().map(|v| last_dir_of(v.uri)).collect();
        let unique =
            |all: &[&str], x: &str| !x.is_empty() && all.iter().filter(|y| **y == x).count() == 1;
        (0..m.variants.len())
            .map(|i| {
                if unique(&stems, stems[i]) {
                    stems[i].to_string()
                } else if unique(&dirs, dirs[i]) {
                    dirs[i].to_string()
                } else {
                    String::new()
                }
            })
            .collect()
    };
    let t_path = t.uri.split(['?', '#']).next().unwrap_or(t.uri);
    let named: Vec<(usize, usize)> = all()
        .filter(|&i| !names[i].is_empty() && t_path.contains(names[i].as_str()))
        .map(|i| (i, names[i].len()))
        .collect();
    let longest = named.iter().map(|(_, l)| *l).max().unwrap_or(0);
    let by_name: Vec<usize> = named
        .into_iter()
        .filter(|(_, l)| *l == longest)
        .map(|(i, _)| i)
        .collect();
    if !by_name.is_empty() {
        return by_name;
    }
    let same_dir: Vec<usize> = all()
        .filter(|&i| hls::dir_of(m.variants[i].uri) == dir)
        .collect();
    let codecs = t.stream.video_codecs();
    let same_codec = |i: usize| {
        let vc = m.variants[i].stream.video_codecs();
        codecs.is_empty() || vc.is_empty() || codecs.iter().any(|c| vc.contains(c))
    };
    let same_picture = |i: usize| {
        t.stream.resolution.is_some()
            && m.variants[i].stream.resolution == t.stream.resolution
            && same_codec(i)
    };
    if !same_dir.is_empty() {
        let narrowed: Vec<usize> = same_dir
            .iter()
            .copied()
            .filter(|&i| same_picture(i))
            .collect();
        return if narrowed.is_empty() {
            same_dir
        } else {
            narrowed
        };
    }
    let pictured: Vec<usize> = all().filter(|&i| same_picture(i)).collect();
    if !pictured.is_empty() || t.image {
        return pictured;
    }
    // Last: every variant of its codec that could carry it — up to 200× its bandwidth (an
    // I-frame stream is a few percent of its variant). A wide window ties to more variants,
    // which only ever removes more.
    let Some(bw) = t.stream.bandwidth.filter(|b| *b > 0) else {
        return Vec::new();
    };
    all()
        .filter(|&i| {
            same_codec(i)
                && m.variants[i]
                    .stream
                    .bandwidth
                    .is_some_and(|v| v >= bw && v <= bw.saturating_mul(200))
        })
        .collect()
}

/// A URI's file name without its extension.
fn stem_of(uri: &str) -> &str {
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    let name = &path[hls::dir_of(uri).len().min(path.len())..];
    name.rsplit_once('.').map_or(name, |(s, _)| s)
}

/// The last directory component of a URI (`v720` of `a/v720/index.m3u8`).
fn last_dir_of(uri: &str) -> &str {
    let dir = hls::dir_of(uri).trim_end_matches('/');
    dir.rsplit('/').next().unwrap_or(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "#EXTM3U\r\n#EXT-X-VERSION:6\r\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/en.m3u8\"\r\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS=\"avc1.4d401e,mp4a.40.2\",AUDIO=\"a\"\r\nv360/p.m3u8\r\n#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720\r\n\r\nv720/p.m3u8\r\n#EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080\r\nv1080/p.m3u8\r\n#EXT-X-STREAM-INF:BANDWIDTH=4000000\r\nnores-a/p.m3u8\r\n#EXT-X-STREAM-INF:BANDWIDTH=9000000\r\nnores-b/p.m3u8\r\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI=\"v720/i.m3u8\"\r\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI=\"v1080/i.m3u8\"\r\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000000,RESOLUTION=3840x2160,URI=\"elsewhere/i4k.m3u8\"\r\n#EXT-X-IMAGE-STREAM-INF:BANDWIDTH=1,RESOLUTION=320x180,URI=\"thumbs/t.m3u8\"\r\n#EXT-X-IMAGE-STREAM-INF:BANDWIDTH=1,RESOLUTION=320x180,URI=\"v1080/t.m3u8\"\r\n";

    fn q(s: &str) -> Quality {
        Quality::limit(s).unwrap()
    }

    fn restrict(text: &str, quality: &str) -> Restricted {
        restrict_master(text, q(quality)).unwrap()
    }

    #[test]
    fn limits() {
        assert_eq!(Quality::limit("auto"), None);
        assert_eq!(Quality::limit("4k"), None);
        assert_eq!(Quality::limit("720P").map(|q| q.label()), Some("720p"));
    }

    #[test]
    fn keeps_what_the_quality_allows() {
        let r = restrict(MASTER, "720p");
        let out = &r.text;
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
        // Trick streams follow their variant; an untied one is not allowed.
        assert!(
            out.contains("v720/i.m3u8") && !out.contains("v1080/i.m3u8"),
            "{out}"
        );
        assert!(
            !out.contains("i4k.m3u8") && !out.contains("thumbs/t.m3u8"),
            "{out}"
        );
        assert!(!out.contains("v1080/t.m3u8"), "{out}");
        // The audio group of a kept variant and every other byte survive.
        assert!(
            out.starts_with("#EXTM3U\r\n#EXT-X-VERSION:6\r\n#EXT-X-MEDIA:"),
            "{out}"
        );
        assert!(out.contains(
            "#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720\r\n\r\nv720/p.m3u8\r\n"
        ));
        assert_eq!(r.variants, 3);
        assert_eq!(
            r.playlists,
            vec![
                "v360/p.m3u8",
                "v720/p.m3u8",
                "nores-a/p.m3u8",
                "audio/en.m3u8",
                "v720/i.m3u8"
            ]
        );
        let low = restrict(MASTER, "480p");
        assert!(low.text.contains("v360/p.m3u8") && !low.text.contains("v720/p.m3u8"));
        let hd = restrict(MASTER, "1080p");
        assert!(hd.text.contains("v1080/p.m3u8") && hd.text.contains("nores-b"));
        assert!(!hd.text.contains("i4k"));
    }

    #[test]
    fn rendition_groups_of_every_type() {
        let m = "#EXTM3U\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud-lo\",NAME=\"en\",URI=\"a/lo.m3u8\"\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud-hi\",NAME=\"en\",URI=\"a/atmos.m3u8\"\n\
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"fr\",URI=\"s/fr.m3u8\"\n\
#EXT-X-MEDIA:TYPE=VIDEO,GROUP-ID=\"cam-720\",NAME=\"angle2\",URI=\"angle2/720.m3u8\"\n\
#EXT-X-MEDIA:TYPE=VIDEO,GROUP-ID=\"cam-1080\",NAME=\"angle2\",URI=\"angle2/1080.m3u8\"\n\
#EXT-X-MEDIA:TYPE=VIDEO,GROUP-ID=\"shared\",NAME=\"angle3\",URI=\"angle3/any.m3u8\"\n\
#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID=\"cc\",NAME=\"en\",INSTREAM-ID=\"CC1\"\n\
#EXT-X-MEDIA:TYPE=FUTURE,GROUP-ID=\"x\",NAME=\"x\",URI=\"future/x.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720,AUDIO=\"aud-lo\",SUBTITLES=\"subs\",VIDEO=\"cam-720\",CLOSED-CAPTIONS=\"cc\"\n\
v720.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=3100000,RESOLUTION=1280x720,VIDEO=\"shared\"\n\
v720b.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=8000000,RESOLUTION=1920x1080,AUDIO=\"aud-hi\",SUBTITLES=\"subs\",VIDEO=\"cam-1080\"\n\
v1080.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=8100000,RESOLUTION=1920x1080,VIDEO=\"shared\"\n\
v1080b.m3u8\n";
        let r = restrict(m, "720p");
        for kept in [
            "a/lo.m3u8",
            "s/fr.m3u8",
            "angle2/720.m3u8",
            "INSTREAM-ID=\"CC1\"",
        ] {
            assert!(r.text.contains(kept), "{kept}: {}", r.text);
        }
        for gone in [
            "a/atmos.m3u8",
            "angle2/1080.m3u8",
            // A video group shared with a 1080p variant is that variant's video too.
            "angle3/any.m3u8",
            "future/x.m3u8",
            "v1080.m3u8",
        ] {
            assert!(!r.text.contains(gone), "{gone}: {}", r.text);
        }
        assert!(!r
            .playlists
            .iter()
            .any(|p| p.contains("1080") || p.contains("angle3")));
    }

    #[test]
    fn trick_streams_are_tied_to_their_variant() {
        let m = "#EXTM3U\n\
#EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720,CODECS=\"avc1.64001f\"\n\
video_720p.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=6000000,RESOLUTION=1920x1080,CODECS=\"avc1.640028\"\n\
video_1080p.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=15000000,RESOLUTION=3840x2160,CODECS=\"hvc1.2.4.L150\"\n\
uhd/p.m3u8\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=200000,CODECS=\"avc1.64001f\",URI=\"video_720p_iframes.m3u8\"\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,CODECS=\"avc1.640028\",URI=\"video_1080p_iframes.m3u8\"\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=150000,RESOLUTION=640x360,URI=\"iframes_low.m3u8\"\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=400000,CODECS=\"hvc1.2.4.L150\",URI=\"tricks/uhd_i.m3u8\"\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100000,CODECS=\"avc1.64001f\",URI=\"tricks/avc_i.m3u8\"\n\
#EXT-X-IMAGE-STREAM-INF:BANDWIDTH=10000,RESOLUTION=1280x720,CODECS=\"jpeg\",URI=\"thumbs/720.m3u8\"\n";
        let r = restrict(m, "720p");
        // By file name in a shared directory, whatever the I-frame's own small BANDWIDTH.
        assert!(r.text.contains("video_720p_iframes.m3u8"), "{}", r.text);
        assert!(!r.text.contains("video_1080p_iframes.m3u8"), "{}", r.text);
        // The root directory holds a removed variant and nothing narrows it: removed.
        assert!(!r.text.contains("iframes_low.m3u8"), "{}", r.text);
        // By codec and bandwidth (a variant up to 200× the I-frame stream): the hevc one ties
        // to the 4k variant, the avc one to both the 720p and the 1080p variant.
        assert!(!r.text.contains("uhd_i.m3u8") && !r.text.contains("avc_i.m3u8"));
        // An image stream of the 720p picture.
        assert!(r.text.contains("thumbs/720.m3u8"), "{}", r.text);
        let hd = restrict(m, "1080p");
        assert!(hd.text.contains("tricks/avc_i.m3u8") && !hd.text.contains("uhd_i"));
    }

    #[test]
    fn a_removed_variants_playlist_is_not_kept_under_another_name() {
        let m = "#EXTM3U\n\
#EXT-X-MEDIA:TYPE=VIDEO,GROUP-ID=\"v\",NAME=\"alt\",URI=\"v1080/p.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720,VIDEO=\"v\"\nv720/p.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=8000000,RESOLUTION=1920x1080\nv1080/p.m3u8\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=300000,RESOLUTION=1280x720,VIDEO=\"v\",URI=\"v1080/p.m3u8\"\n";
        let r = restrict(m, "720p");
        assert_eq!(r.playlists, vec!["v720/p.m3u8"], "{}", r.text);
        assert!(!r.text.contains("v1080"), "{}", r.text);
    }

    #[test]
    fn many_renditions_never_crowd_out_a_variant() {
        let mut m = String::from("#EXTM3U\n");
        for i in 0..20 {
            m.push_str(&format!(
                "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"l{i}\",URI=\"audio/{i}.m3u8\"\n"
            ));
        }
        for i in 0..45 {
            m.push_str(&format!(
                "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"s\",NAME=\"s{i}\",URI=\"subs/{i}.m3u8\"\n"
            ));
        }
        for (h, w) in [(360, 640), (720, 1280), (1080, 1920)] {
            m.push_str(&format!(
                "#EXT-X-STREAM-INF:BANDWIDTH={},RESOLUTION={w}x{h},AUDIO=\"a\",SUBTITLES=\"s\"\nv{h}/p.m3u8\n",
                h * 5000
            ));
        }
        let r = restrict(&m, "720p");
        assert_eq!(r.variants, 2);
        assert_eq!(r.playlists.len(), 2 + 20 + 45);
        assert!(r.playlists.contains(&"v720/p.m3u8".to_string()));
    }

    #[test]
    fn media_playlists_are_not_restricted_here() {
        let media = "#EXTM3U\n#EXTINF:2,\nseg.ts\n";
        assert_eq!(restrict_master(media, q("480p")), None);
        assert!(!Playlist::parse(media).is_multivariant());
        assert!(Playlist::parse(MASTER).is_multivariant());
        let none = restrict(
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=9000000,RESOLUTION=3840x2160\nuhd.m3u8\n",
            "480p",
        );
        assert_eq!(none.variants, 0);
        assert!(none.playlists.is_empty());
    }
}

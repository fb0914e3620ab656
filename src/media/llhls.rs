//! LL-HLS delivery directives (RFC 8216bis §6.2.5): `_HLS_msn`, `_HLS_part` and `_HLS_skip`
//! on a playlist request ask the origin for a *future* version of the playlist (blocking
//! reload) or a delta update.
//!
//! They belong to live playlists that advertise them (`EXT-X-SERVER-CONTROL`:
//! `CAN-BLOCK-RELOAD=YES` for `_HLS_msn`/`_HLS_part`, `CAN-SKIP-UNTIL` for `_HLS_skip`, §4.4.3.8).
//! Honoured directives are forwarded upstream and are part of that playlist request's cache
//! key, so N players blocked on the same `_HLS_msn`/`_HLS_part` share one upstream request
//! (the cache lock). Directives a playlist does not advertise are dropped from the key and
//! from the upstream request: otherwise every value on a VOD playlist (or any URL) was one more
//! origin fetch and one more stored copy. [`judge`] is the one rule; the edge feeds it what
//! the playlist last advertised ([`Advertised::of`]).

use super::hls::{attributes, LineKind, Liveness, Playlist};

/// Whether a query names any delivery directive at all.
pub fn asks(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| is_directive_name(&k))
    })
}

/// `_HLS_*`: the names RFC 8216bis reserves for delivery directives (all are removed from
/// what goes upstream unless honoured; unknown ones never are).
pub fn is_directive_name(name: &str) -> bool {
    name.starts_with("_HLS_")
}

/// What a playlist offers its clients, as its `EXT-X-SERVER-CONTROL` says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Advertised {
    /// `CAN-BLOCK-RELOAD=YES`: `_HLS_msn` / `_HLS_part` are served.
    pub block_reload: bool,
    /// `CAN-SKIP-UNTIL`: `_HLS_skip=YES` is served.
    pub skip: bool,
    /// `CAN-SKIP-DATERANGES=YES` (with `CAN-SKIP-UNTIL`): `_HLS_skip=v2` too.
    pub skip_dateranges: bool,
}

impl Advertised {
    /// Everything: a fleet peer's request, whose node judged the directives already.
    pub const ALL: Advertised = Advertised {
        block_reload: true,
        skip: true,
        skip_dateranges: true,
    };

    /// What a playlist advertises. Nothing for a VOD or multivariant playlist, whatever its
    /// tags say: it will not change, so there is nothing to block on or skip.
    pub fn of(playlist: &Playlist<'_>) -> Advertised {
        if !matches!(playlist.liveness(), Liveness::Live(_)) {
            return Advertised::default();
        }
        let mut adv = Advertised::default();
        for line in playlist.lines() {
            if let LineKind::Tag {
                name: "EXT-X-SERVER-CONTROL",
                value,
            } = line.kind
            {
                for (k, v) in attributes(value) {
                    match k {
                        "CAN-BLOCK-RELOAD" => adv.block_reload = v == "YES",
                        "CAN-SKIP-UNTIL" => {
                            adv.skip = v.parse::<f64>().is_ok_and(|s| s.is_finite() && s > 0.0)
                        }
                        "CAN-SKIP-DATERANGES" => adv.skip_dateranges = v == "YES",
                        _ => {}
                    }
                }
            }
        }
        adv.skip_dateranges &= adv.skip;
        adv
    }
}

/// What to do with a request's delivery directives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// None asked, or none the playlist advertises: fetch and key the playlist itself.
    Drop,
    /// Forward these (canonical: `_HLS_msn=N[&_HLS_part=M][&_HLS_skip=YES|v2]`) and key on
    /// them.
    Honour(String),
    /// A directive the playlist advertises, asked malformed: `400` (RFC 8216bis §6.2.5).
    Refuse(&'static str),
}

/// The one rule for delivery directives: those the playlist advertises are validated
/// (RFC 8216bis §6.2.5.1–2: `_HLS_msn` and `_HLS_part` decimal-integers, `_HLS_part` only
/// with `_HLS_msn`, `_HLS_skip` `YES` or `v2` — `v2` only where date ranges may be skipped —
/// none twice) and honoured; the others are dropped, malformed or not.
pub fn judge(query: Option<&str>, adv: Advertised) -> Verdict {
    let (mut msn, mut part, mut skip) = (Vec::new(), Vec::new(), Vec::new());
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "_HLS_msn" => msn.push(v),
            "_HLS_part" => part.push(v),
            "_HLS_skip" => skip.push(v),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if adv.block_reload && !(msn.is_empty() && part.is_empty()) {
        if msn.len() > 1 || part.len() > 1 {
            return Verdict::Refuse("a delivery directive is repeated");
        }
        let Some(m) = msn.first() else {
            return Verdict::Refuse("_HLS_part without _HLS_msn");
        };
        let Some(m) = decimal_integer(m) else {
            return Verdict::Refuse("_HLS_msn is not a decimal-integer");
        };
        out.push(format!("_HLS_msn={m}"));
        if let Some(p) = part.first() {
            let Some(p) = decimal_integer(p) else {
                return Verdict::Refuse("_HLS_part is not a decimal-integer");
            };
            out.push(format!("_HLS_part={p}"));
        }
    }
    if adv.skip && !skip.is_empty() {
        if skip.len() > 1 {
            return Verdict::Refuse("a delivery directive is repeated");
        }
        match skip[0].as_ref() {
            "YES" => out.push("_HLS_skip=YES".to_string()),
            "v2" if adv.skip_dateranges => out.push("_HLS_skip=v2".to_string()),
            "v2" => {
                return Verdict::Refuse("_HLS_skip=v2 on a playlist without CAN-SKIP-DATERANGES")
            }
            _ => return Verdict::Refuse("_HLS_skip is neither YES nor v2"),
        }
    }
    if out.is_empty() {
        Verdict::Drop
    } else {
        Verdict::Honour(out.join("&"))
    }
}

/// A decimal-integer (RFC 8216 §4.2: digits only, 0 to 2^64−1), without a sign, spaces or
/// leading `+`.
fn decimal_integer(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Whether honoured directives make a blocking reload (the origin may hold it for a while).
pub fn is_blocking(directives: &str) -> bool {
    directives.starts_with("_HLS_msn=")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL: Advertised = Advertised {
        block_reload: true,
        skip: true,
        skip_dateranges: false,
    };

    fn honour(s: &str) -> Verdict {
        Verdict::Honour(s.to_string())
    }

    #[test]
    fn advertised_directives_are_canonical() {
        assert_eq!(
            judge(Some("_HLS_part=2&x=1&_HLS_msn=10&pc=abc"), LL),
            honour("_HLS_msn=10&_HLS_part=2")
        );
        assert_eq!(judge(Some("_HLS_skip=YES"), LL), honour("_HLS_skip=YES"));
        assert_eq!(
            judge(Some("_HLS_skip=YES&_HLS_msn=007"), LL),
            honour("_HLS_msn=7&_HLS_skip=YES")
        );
        assert_eq!(judge(Some("x=1&_HLS_foo=2"), LL), Verdict::Drop);
        assert_eq!(judge(None, LL), Verdict::Drop);
        assert!(is_blocking("_HLS_msn=3"));
        assert!(!is_blocking("_HLS_skip=YES"));
    }

    #[test]
    fn malformed_advertised_directives_are_refused() {
        for q in [
            "_HLS_part=2",
            "_HLS_msn=-1",
            "_HLS_msn=+1",
            "_HLS_msn=1%0A",
            "_HLS_msn=",
            "_HLS_msn=1.5",
            "_HLS_msn=99999999999999999999999",
            "_HLS_msn=1&_HLS_part=x",
            "_HLS_msn=1&_HLS_msn=2",
            "_HLS_msn=1&_HLS_part=1&_HLS_part=1",
            "_HLS_skip=maybe",
            "_HLS_skip=yes",
            "_HLS_skip=YES&_HLS_skip=YES",
            "_HLS_skip=v2",
        ] {
            assert!(matches!(judge(Some(q), LL), Verdict::Refuse(_)), "{q}");
        }
        let dateranges = Advertised {
            skip_dateranges: true,
            ..LL
        };
        assert_eq!(
            judge(Some("_HLS_skip=v2"), dateranges),
            honour("_HLS_skip=v2")
        );
    }

    #[test]
    fn directives_not_advertised_are_dropped_malformed_or_not() {
        let none = Advertised::default();
        for q in [
            "_HLS_msn=5",
            "_HLS_msn=-1",
            "_HLS_part=2",
            "_HLS_skip=YES",
            "_HLS_skip=no",
        ] {
            assert_eq!(judge(Some(q), none), Verdict::Drop, "{q}");
        }
        let block_only = Advertised {
            block_reload: true,
            ..none
        };
        assert_eq!(
            judge(Some("_HLS_msn=5&_HLS_skip=bad"), block_only),
            honour("_HLS_msn=5")
        );
        let skip_only = Advertised { skip: true, ..none };
        assert_eq!(
            judge(Some("_HLS_msn=x&_HLS_skip=YES"), skip_only),
            honour("_HLS_skip=YES")
        );
    }

    #[test]
    fn what_a_playlist_advertises() {
        let live = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6.0,PART-HOLD-BACK=0.6\n#EXTINF:1,\na.m4s\n";
        assert_eq!(
            Advertised::of(&Playlist::parse(live)),
            Advertised {
                block_reload: true,
                skip: true,
                skip_dateranges: false
            }
        );
        let dr = live.replace("6.0,", "6.0,CAN-SKIP-DATERANGES=YES,");
        assert!(Advertised::of(&Playlist::parse(&dr)).skip_dateranges);
        // VOD, whatever its server control says; live without one; a multivariant playlist.
        let vod = format!("{live}#EXT-X-ENDLIST\n");
        assert_eq!(
            Advertised::of(&Playlist::parse(&vod)),
            Advertised::default()
        );
        let plain = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\na.m4s\n";
        assert_eq!(
            Advertised::of(&Playlist::parse(plain)),
            Advertised::default()
        );
        let no = live.replace("CAN-BLOCK-RELOAD=YES", "CAN-BLOCK-RELOAD=NO");
        assert!(!Advertised::of(&Playlist::parse(&no)).block_reload);
        let master = "#EXTM3U\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n";
        assert_eq!(
            Advertised::of(&Playlist::parse(master)),
            Advertised::default()
        );
    }
}

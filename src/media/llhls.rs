//! LL-HLS delivery directives (RFC 8216bis §6.2.5): `_HLS_msn`, `_HLS_part` and `_HLS_skip`
//! on a playlist request ask the origin for a *future* version of the playlist (blocking
//! reload) or a delta update. They are forwarded upstream and are part of that playlist
//! request's cache key, so N players blocked on the same `_HLS_msn`/`_HLS_part` share one
//! upstream request (the cache lock) and each gets the answer the moment it arrives.

/// The canonical directives of a query (`_HLS_msn=N[&_HLS_part=M][&_HLS_skip=YES|v2]`), or
/// `None`. Malformed values are dropped (a `_HLS_part` without `_HLS_msn` too), never passed on.
pub fn directives(query: Option<&str>) -> Option<String> {
    let (mut msn, mut part, mut skip) = (None, None, None);
    for (k, v) in url::form_urlencoded::parse(query?.as_bytes()) {
        match k.as_ref() {
            "_HLS_msn" if msn.is_none() => msn = v.parse::<u64>().ok(),
            "_HLS_part" if part.is_none() => part = v.parse::<u64>().ok(),
            "_HLS_skip" if skip.is_none() => {
                skip = match v.as_ref() {
                    "YES" => Some("YES"),
                    "v2" => Some("v2"),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(m) = msn {
        out.push(format!("_HLS_msn={m}"));
        if let Some(p) = part {
            out.push(format!("_HLS_part={p}"));
        }
    }
    if let Some(s) = skip {
        out.push(format!("_HLS_skip={s}"));
    }
    (!out.is_empty()).then(|| out.join("&"))
}

/// Whether directives make a blocking reload (the origin may hold it for a while).
pub fn is_blocking(directives: &str) -> bool {
    directives.starts_with("_HLS_msn=")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_directives() {
        assert_eq!(
            directives(Some("_HLS_part=2&x=1&_HLS_msn=10&pc=abc")).as_deref(),
            Some("_HLS_msn=10&_HLS_part=2")
        );
        assert_eq!(
            directives(Some("_HLS_skip=YES")).as_deref(),
            Some("_HLS_skip=YES")
        );
        assert_eq!(directives(Some("_HLS_part=2")), None);
        assert_eq!(directives(Some("_HLS_msn=-1&_HLS_skip=maybe")), None);
        assert_eq!(directives(Some("_HLS_msn=1%0A")), None);
        assert_eq!(directives(None), None);
        assert!(is_blocking("_HLS_msn=3"));
        assert!(!is_blocking("_HLS_skip=YES"));
    }
}

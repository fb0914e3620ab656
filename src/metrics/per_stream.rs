//! Per-stream metrics without unbounded cardinality: requests, egress bytes, cache lookups
//! and hits, and origin fetches, labelled by `route` (`stream`, `proxy`) and `stream`.
//!
//! A player chooses the path, so a label taken from the path would let any client mint
//! series (request 10⁶ invented hashes, get 10⁶ series and a Prometheus that falls over).
//! The `stream` label is therefore one of:
//! - a **known name**: a content hash configured under `streaming.contents` (spelled as
//!   configured, whatever case the request used) or a registered stream id — names the
//!   operator created, bounded by the operator;
//! - one of at most `metrics.top_streams` **admitted names**: another hash (on `/api/proxy`:
//!   `provider/channel`) takes a free slot the first time it is *served successfully*
//!   (2xx or 304 — an invented hash the origin answers 404 never takes one), and keeps it
//!   until the process restarts (a series that came and went would break `rate()`);
//! - `other` for everything else.
//!
//! So a route has at most known + `top_streams` + 1 series per family, whatever clients send.
//! Admission is first-come among successful names, not a true top-N by traffic: a name
//! cannot be evicted without resetting its counters. With `top_streams` a little above the
//! number of busy unconfigured streams between restarts, the busy ones are all admitted.

use std::collections::HashSet;

use once_cell::sync::{Lazy, OnceCell};
use parking_lot::RwLock;
use prometheus::{register_int_counter_vec, IntCounterVec};

/// The label of everything not known or admitted.
pub const OTHER: &str = "other";

/// The longest admitted name (a hash is a path component; content hashes are far shorter).
const MAX_LABEL_LEN: usize = 64;

/// Requests answered, by route and stream.
pub static REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_stream_requests_total",
        "Media requests answered, by route (stream, proxy) and stream (bounded: known, top N, other)",
        &["route", "stream"]
    )
    .expect("metric registers once")
});

/// Response body bytes sent to players, by route and stream.
pub static BYTES_OUT: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_stream_bytes_out_total",
        "Response body bytes sent to players, by route and stream",
        &["route", "stream"]
    )
    .expect("metric registers once")
});

/// Cache lookups, by route and stream (the hit ratio's denominator).
pub static CACHE_LOOKUPS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_stream_cache_lookups_total",
        "Cache lookups of media requests, by route and stream",
        &["route", "stream"]
    )
    .expect("metric registers once")
});

/// Cache hits, by route and stream (the hit ratio's numerator).
pub static CACHE_HITS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_stream_cache_hits_total",
        "Cache lookups answered from the cache, by route and stream",
        &["route", "stream"]
    )
    .expect("metric registers once")
});

/// Requests sent to the origin (not to a fleet owner), by route and stream.
pub static ORIGIN_FETCHES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "sluice_stream_origin_fetches_total",
        "Requests sent to the origin (misses, revalidations, fills, prefetches), by route and stream",
        &["route", "stream"]
    )
    .expect("metric registers once")
});

/// The route label values.
pub const ROUTES: [&str; 2] = ["stream", "proxy"];

/// Names admitted to a label beyond the known ones, at most `capacity` of them.
#[derive(Debug)]
pub struct BoundedLabels {
    capacity: usize,
    admitted: RwLock<HashSet<String>>,
}

impl BoundedLabels {
    pub fn new(capacity: usize) -> BoundedLabels {
        BoundedLabels {
            capacity,
            admitted: RwLock::new(HashSet::new()),
        }
    }

    /// The label for `name`: itself once admitted, else [`OTHER`]. With `admit` (the request
    /// was served successfully) a well-formed name takes a free slot.
    pub fn label(&self, name: &str, admit: bool) -> String {
        self.label_with(name, admit, |_| {})
    }

    /// [`Self::label`], calling `admitted` once when `name` takes its slot.
    pub fn label_with(&self, name: &str, admit: bool, admitted: impl FnOnce(&str)) -> String {
        if self.admitted.read().contains(name) {
            return name.to_string();
        }
        if !admit || !well_formed(name) {
            return OTHER.to_string();
        }
        let mut set = self.admitted.write();
        if set.contains(name) {
            return name.to_string();
        }
        if set.len() < self.capacity {
            set.insert(name.to_string());
            drop(set);
            admitted(name);
            return name.to_string();
        }
        OTHER.to_string()
    }

    /// Names admitted so far.
    pub fn len(&self) -> usize {
        self.admitted.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `name` may be a label value: short, and only the characters of a hash or a
/// provider/channel id (no control characters, quotes or spaces to surprise a query).
pub fn well_formed(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LABEL_LEN
        && name != OTHER
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b':'))
}

/// The admitted sets of the two routes, sized at start (`metrics.top_streams`).
struct Admitted {
    stream: BoundedLabels,
    proxy: BoundedLabels,
}

static ADMITTED: OnceCell<Admitted> = OnceCell::new();

fn admitted() -> &'static Admitted {
    ADMITTED.get_or_init(|| Admitted {
        stream: BoundedLabels::new(crate::config::DEFAULT_TOP_STREAMS),
        proxy: BoundedLabels::new(crate::config::DEFAULT_TOP_STREAMS),
    })
}

/// Size the admitted sets and create the series of the known names (and `other`) at zero,
/// so each exists before its first request.
pub fn init(top_streams: usize, known: impl IntoIterator<Item = String>) {
    let _ = ADMITTED.set(Admitted {
        stream: BoundedLabels::new(top_streams),
        proxy: BoundedLabels::new(top_streams),
    });
    for route in ROUTES {
        touch(route, OTHER);
    }
    for name in known {
        touch("stream", &name);
    }
}

fn touch(route: &str, stream: &str) {
    for family in [
        &*REQUESTS,
        &*BYTES_OUT,
        &*CACHE_LOOKUPS,
        &*CACHE_HITS,
        &*ORIGIN_FETCHES,
    ] {
        family.with_label_values(&[route, stream]);
    }
}

/// The `stream` label of a `/stream/{hash}/…` request. `known`: the hash as configured, or
/// the registered stream id, when it is one.
pub fn stream_label(hash: &str, known: Option<&str>, admit: bool) -> String {
    match known {
        Some(k) => k.to_string(),
        // An admitted name gets all its series at once (a hit ratio needs both counters).
        None => admitted()
            .stream
            .label_with(hash, admit, |n| touch("stream", n)),
    }
}

/// The `stream` label of an `/api/proxy` request: `provider/channel`, admitted like a hash.
pub fn proxy_label(provider: &str, channel: &str, admit: bool) -> String {
    admitted()
        .proxy
        .label(&format!("{provider}/{channel}"), admit)
}

/// One answered media request.
pub struct Served<'a> {
    pub route: &'static str,
    pub stream: &'a str,
    pub bytes: u64,
    /// The cache was consulted, and whether it answered.
    pub lookup: Option<bool>,
    pub origin_fetch: bool,
}

pub fn record(s: &Served<'_>) {
    let labels = [s.route, s.stream];
    REQUESTS.with_label_values(&labels).inc();
    BYTES_OUT.with_label_values(&labels).inc_by(s.bytes);
    if let Some(hit) = s.lookup {
        CACHE_LOOKUPS.with_label_values(&labels).inc();
        if hit {
            CACHE_HITS.with_label_values(&labels).inc();
        }
    }
    if s.origin_fetch {
        ORIGIN_FETCHES.with_label_values(&labels).inc();
    }
}

/// An origin fetch made by a fill (a playlist's body, a prefetch), which no player's request
/// records.
pub fn record_fill_fetch(route: &'static str, stream: &str) {
    ORIGIN_FETCHES.with_label_values(&[route, stream]).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_capacity_then_other() {
        let l = BoundedLabels::new(2);
        assert_eq!(l.label("a", true), "a");
        assert_eq!(l.label("b", true), "b");
        assert_eq!(l.label("c", true), OTHER);
        // Admitted names stay, with or without a success.
        assert_eq!(l.label("a", false), "a");
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn admission_is_announced_once() {
        let l = BoundedLabels::new(1);
        let mut calls = Vec::new();
        l.label_with("a", true, |n| calls.push(n.to_string()));
        l.label_with("a", true, |n| calls.push(n.to_string()));
        l.label_with("b", true, |n| calls.push(n.to_string()));
        assert_eq!(calls, ["a"]);
    }

    #[test]
    fn only_a_success_admits() {
        let l = BoundedLabels::new(2);
        assert_eq!(l.label("invented", false), OTHER);
        assert!(l.is_empty());
        assert_eq!(l.label("real", true), "real");
    }

    #[test]
    fn zero_capacity_admits_nothing() {
        let l = BoundedLabels::new(0);
        assert_eq!(l.label("a", true), OTHER);
    }

    #[test]
    fn malformed_names_are_never_admitted() {
        let l = BoundedLabels::new(10);
        for bad in ["", "other", "a b", "a\"b", "é", "x\ny", &"a".repeat(65)] {
            assert_eq!(l.label(bad, true), OTHER, "{bad:?}");
        }
        assert!(l.is_empty());
        assert!(well_formed("movie-2026.v1"));
        assert!(well_formed("acme/ch001"));
    }

    #[test]
    fn many_invented_names_stay_bounded() {
        let l = BoundedLabels::new(5);
        let mut seen = HashSet::new();
        for i in 0..1000 {
            seen.insert(l.label(&format!("h{i}"), i % 3 == 0));
        }
        assert_eq!(seen.len(), 6);
        assert!(seen.contains(OTHER));
    }
}

//! What the cache knows of objects it does not hold: how long each one is (learned from the
//! origin's answers) and which are LL-HLS segments still being written. From these it
//! decides how a miss is fetched ([`Known::plan`]): whole, into the cache, or passed
//! through to the origin as the player asked, and not stored.
//!
//! Why: a miss is filled whole (Pingora drops the player's `Range` before asking the
//! origin), which is right for an object the cache will keep, and wrong for one it will not.
//! A range (or a `HEAD`) of an object larger than `cache.max_object_bytes` was a
//! whole-object origin fetch every time (one player could make the origin send an 80 MiB
//! file over and over),
//! and a segment fetched while its origin was still writing it was stored at its partial
//! size, so the parts announced later got `416`. So a range goes to the origin as a range
//! unless the object is known to be small enough to keep, and a growing segment is never
//! stored until its playlist lists it whole.
//!
//! Both maps are bounded: lengths are forgotten all at once when [`MAX_ENTRIES`] is reached
//! (forgetting only makes a range go to the origin as a range, never a whole fetch), and a
//! growing mark lapses after [`GROWING_FOR`] unless a newer playlist renews it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::StatusCode;
use parking_lot::Mutex;
use pingora_cache::key::CacheKey;
use pingora_cache::lock::{CacheKeyLock, CacheLock, LockStatus, Locked, WritePermit};
use pingora_http::ResponseHeader;

/// Most objects each map remembers.
pub const MAX_ENTRIES: usize = 65_536;

/// How long a playlist's word that a segment is still growing holds without a newer one
/// (live playlists are reloaded every part or target duration while anyone watches).
pub const GROWING_FOR: Duration = Duration::from_secs(30);

/// How a miss is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// Whole, into the cache (ranges are then answered from it).
    Whole,
    /// The player's range asked of the origin, the cache still on: a `206` is not stored, a
    /// whole `200` (an origin that ignores ranges) is if it fits ([`RANGE_OF_UNKNOWN`]).
    AsRange,
    /// As the player asked, straight through, the cache off: why.
    Bypass(&'static str),
}

/// What a request asks of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// The whole object (`GET`).
    Whole,
    /// A `GET` with a `Range`.
    Range,
    /// Its header (`HEAD`).
    Head,
}

/// Why a miss is passed through: a range of an object not known to fit the cache.
pub const RANGE_OF_UNKNOWN: &str = "range_of_unknown_or_large";
/// Why a miss is passed through: a `HEAD` of an object not known to fit the cache.
pub const HEAD_OF_UNKNOWN: &str = "head_of_unknown_or_large";
/// Why a miss is passed through: a segment its playlist says is still being written.
pub const GROWING: &str = "growing_segment";

/// Pingora's cache lock, except that a miss passed through lets its waiters compete for the
/// lock again instead of sending each of them to the origin uncached (Pingora's default for
/// a reason of ours): a player's range gives no word on whether the object is cacheable, and
/// the whole-object requests waiting behind it are one fill, not a herd.
pub struct FetchLock(CacheLock);

impl FetchLock {
    pub fn new(timeout: Duration) -> FetchLock {
        FetchLock(CacheLock::new(timeout))
    }
}

impl CacheKeyLock for FetchLock {
    fn lock(&self, key: &CacheKey, stale_writer: bool) -> Locked {
        self.0.lock(key, stale_writer)
    }

    fn release(&self, key: &CacheKey, permit: WritePermit, reason: LockStatus) {
        self.0.release(key, permit, reason)
    }

    fn custom_lock_status(&self, reason: &'static str) -> LockStatus {
        if [RANGE_OF_UNKNOWN, HEAD_OF_UNKNOWN, GROWING].contains(&reason) {
            LockStatus::TransientError
        } else {
            self.0.custom_lock_status(reason)
        }
    }
}

#[derive(Default)]
pub struct Known {
    lengths: Mutex<HashMap<String, u64>>,
    growing: Mutex<HashMap<String, Instant>>,
}

impl Known {
    /// How a miss of `primary` asked as `ask` is fetched.
    pub fn plan(&self, primary: &str, ask: Ask, max_object_bytes: usize) -> Fetch {
        if self.is_growing(primary) {
            return Fetch::Bypass(GROWING);
        }
        let unknown = match ask {
            Ask::Whole => return Fetch::Whole,
            Ask::Range => Fetch::AsRange,
            Ask::Head => Fetch::Bypass(HEAD_OF_UNKNOWN),
        };
        match self.lengths.lock().get(primary) {
            Some(&len) if len <= max_object_bytes as u64 => Fetch::Whole,
            _ => unknown,
        }
    }

    /// Learn `primary`'s complete length from an origin's answer, when it says it.
    pub fn learn(&self, primary: &str, resp: &ResponseHeader) {
        let Some(len) = complete_length(resp) else {
            return;
        };
        let mut lengths = self.lengths.lock();
        if lengths.len() >= MAX_ENTRIES && !lengths.contains_key(primary) {
            lengths.clear();
        }
        lengths.insert(primary.to_string(), len);
    }

    /// The complete length learned for `primary`, if any.
    pub fn length(&self, primary: &str) -> Option<u64> {
        self.lengths.lock().get(primary).copied()
    }

    /// A live playlist says `primary` is still being written (its byte-range parts are
    /// announced, the segment is not yet listed).
    pub fn mark_growing(&self, primary: &str) {
        let now = Instant::now();
        let mut growing = self.growing.lock();
        if growing.len() >= MAX_ENTRIES && !growing.contains_key(primary) {
            growing.retain(|_, since| now.duration_since(*since) < GROWING_FOR);
            if growing.len() >= MAX_ENTRIES {
                growing.clear();
            }
        }
        growing.insert(primary.to_string(), now);
        // Its length so far is not its length.
        self.lengths.lock().remove(primary);
    }

    /// A playlist lists `primary` as a whole segment: it has stopped growing.
    pub fn mark_complete(&self, primary: &str) {
        self.growing.lock().remove(primary);
    }

    pub fn is_growing(&self, primary: &str) -> bool {
        self.growing
            .lock()
            .get(primary)
            .is_some_and(|since| since.elapsed() < GROWING_FOR)
    }
}

/// The complete length of the object an answer is (part of), when the answer says it: a
/// `200`'s `Content-Length`, a `206`'s or a `416`'s `Content-Range` total (RFC 9110 §14.4;
/// `*`, an unknown total, says nothing). A `206` of several ranges says it in each part, not
/// in its header: nothing learned.
pub fn complete_length(resp: &ResponseHeader) -> Option<u64> {
    let header = |name| {
        resp.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    match resp.status {
        StatusCode::OK => header(http::header::CONTENT_LENGTH)?.parse().ok(),
        StatusCode::PARTIAL_CONTENT | StatusCode::RANGE_NOT_SATISFIABLE => {
            content_range_total(header(http::header::CONTENT_RANGE)?)
        }
        _ => None,
    }
}

/// The total of `bytes first-last/total` or `bytes */total`.
fn content_range_total(value: &str) -> Option<u64> {
    let rest = value.strip_prefix("bytes")?;
    if !rest.starts_with(' ') {
        return None;
    }
    let (range, total) = rest.trim_start().split_once('/')?;
    let total: u64 = total.trim().parse().ok()?;
    if range.trim() == "*" {
        return Some(total);
    }
    let (first, last) = range.trim().split_once('-')?;
    let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
    (first <= last && last < total).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn lengths_come_from_what_the_origin_says() {
        assert_eq!(
            complete_length(&resp(200, &[("content-length", "1234")])),
            Some(1234)
        );
        assert_eq!(complete_length(&resp(200, &[])), None);
        assert_eq!(
            complete_length(&resp(206, &[("content-range", "bytes 0-99/5000")])),
            Some(5000)
        );
        assert_eq!(
            complete_length(&resp(416, &[("content-range", "bytes */5000")])),
            Some(5000)
        );
        // Unknown total, impossible ranges, other units, other statuses: nothing.
        for bad in [
            "bytes 0-99/*",
            "bytes 100-99/5000",
            "bytes 0-5000/5000",
            "items 0-1/5",
            "bytes0-1/5",
            "bytes -1-2/5",
        ] {
            assert_eq!(
                complete_length(&resp(206, &[("content-range", bad)])),
                None,
                "{bad}"
            );
        }
        assert_eq!(
            complete_length(&resp(404, &[("content-length", "10")])),
            None
        );
    }

    #[test]
    fn a_range_is_fetched_whole_only_when_the_object_is_known_to_fit() {
        let k = Known::default();
        assert_eq!(k.plan("a", Ask::Whole, 100), Fetch::Whole);
        assert_eq!(k.plan("a", Ask::Range, 100), Fetch::AsRange);
        assert_eq!(k.plan("a", Ask::Head, 100), Fetch::Bypass(HEAD_OF_UNKNOWN));
        k.learn("a", &resp(206, &[("content-range", "bytes 0-9/100")]));
        assert_eq!(k.plan("a", Ask::Range, 100), Fetch::Whole);
        assert_eq!(k.plan("a", Ask::Head, 100), Fetch::Whole);
        k.learn("b", &resp(200, &[("content-length", "101")]));
        assert_eq!(k.plan("b", Ask::Range, 100), Fetch::AsRange);
        assert_eq!(k.plan("b", Ask::Whole, 100), Fetch::Whole);
    }

    #[test]
    fn a_growing_segment_passes_through_until_it_is_listed_whole() {
        let k = Known::default();
        k.learn("s", &resp(200, &[("content-length", "10")]));
        k.mark_growing("s");
        assert_eq!(k.plan("s", Ask::Whole, 100), Fetch::Bypass(GROWING));
        assert_eq!(k.plan("s", Ask::Range, 100), Fetch::Bypass(GROWING));
        assert_eq!(k.length("s"), None, "a growing length is not its length");
        k.mark_complete("s");
        assert_eq!(k.plan("s", Ask::Whole, 100), Fetch::Whole);
    }

    #[test]
    fn the_maps_stay_bounded() {
        let k = Known::default();
        for i in 0..MAX_ENTRIES + 10 {
            k.learn(&i.to_string(), &resp(200, &[("content-length", "1")]));
            k.mark_growing(&format!("g{i}"));
        }
        assert!(k.lengths.lock().len() <= MAX_ENTRIES);
        assert!(k.growing.lock().len() <= MAX_ENTRIES);
    }
}

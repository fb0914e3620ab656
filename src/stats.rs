//! Per-player delivery statistics behind admin-api.md's `GET /stats/{player_id}`.
//!
//! The document comes from an SRT server; sluice is an HTTP edge, so each documented field is
//! mapped to the closest thing an HTTP edge measures (see README "Stats"):
//!
//! | field          | sluice meaning                                                        |
//! |----------------|-----------------------------------------------------------------------|
//! | `bitrate`      | egress to players, kbit/s, over the last 10 s (sliding window)        |
//! | `buffer`       | KiB of this player's objects held in the cache right now               |
//! | `dropped_pkts` | upstream (origin) failures: connect errors, timeouts, 5xx              |
//! | `rtt`          | mean upstream time-to-header of the last fetches, ms                   |
//! | `uptime`       | seconds since the first request for this player                       |
//! | `latency`      | mean player-perceived request duration of the last requests, ms       |
//!
//! Recording is one short mutex hold per finished media request; the table is bounded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// One-second buckets kept for the bitrate window.
const WINDOW_SECS: usize = 10;
/// Players tracked at most; the least recently seen is dropped beyond it.
const MAX_PLAYERS: usize = 10_000;
/// Weight of a new sample in the moving averages (exponential smoothing).
const EWMA: f64 = 0.2;

#[derive(Debug, Clone)]
struct PlayerStats {
    first_seen: Instant,
    last_seen: Instant,
    /// Egress bytes per second, ring indexed by (seconds since `epoch`) % WINDOW_SECS.
    window: [u64; WINDOW_SECS],
    window_second: u64,
    bytes: u64,
    requests: u64,
    upstream_errors: u64,
    upstream_ms: Option<f64>,
    request_ms: Option<f64>,
    cache_hits: u64,
}

/// What one finished request contributes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub bytes: u64,
    pub duration: Duration,
    pub upstream: Option<Duration>,
    pub upstream_error: bool,
    pub cache_hit: bool,
}

/// A snapshot for the API (and for the fleet's other nodes, which sum them).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub bitrate_kbps: u64,
    pub bytes: u64,
    pub requests: u64,
    pub upstream_errors: u64,
    pub rtt_ms: f64,
    pub latency_ms: f64,
    pub uptime_secs: u64,
    pub cache_hits: u64,
}

pub struct StatsTable {
    epoch: Instant,
    players: Mutex<HashMap<String, PlayerStats>>,
}

impl Default for StatsTable {
    fn default() -> Self {
        Self::new()
    }
}

impl StatsTable {
    pub fn new() -> StatsTable {
        StatsTable {
            epoch: Instant::now(),
            players: Mutex::new(HashMap::new()),
        }
    }

    fn second(&self, at: Instant) -> u64 {
        at.duration_since(self.epoch).as_secs()
    }

    pub fn record(&self, player: &str, s: Sample) {
        self.record_at(player, s, Instant::now());
    }

    pub fn record_at(&self, player: &str, s: Sample, now: Instant) {
        let sec = self.second(now);
        let mut players = self.players.lock();
        if !players.contains_key(player) && players.len() >= MAX_PLAYERS {
            evict_least_recent(&mut players);
        }
        let p = players
            .entry(player.to_string())
            .or_insert_with(|| PlayerStats {
                first_seen: now,
                last_seen: now,
                window: [0; WINDOW_SECS],
                window_second: sec,
                bytes: 0,
                requests: 0,
                upstream_errors: 0,
                upstream_ms: None,
                request_ms: None,
                cache_hits: 0,
            });
        advance(p, sec);
        p.window[(sec as usize) % WINDOW_SECS] += s.bytes;
        p.last_seen = now;
        p.bytes += s.bytes;
        p.requests += 1;
        p.upstream_errors += u64::from(s.upstream_error);
        p.cache_hits += u64::from(s.cache_hit);
        if let Some(u) = s.upstream {
            p.upstream_ms = Some(smooth(p.upstream_ms, u.as_secs_f64() * 1000.0));
        }
        p.request_ms = Some(smooth(p.request_ms, s.duration.as_secs_f64() * 1000.0));
    }

    pub fn snapshot(&self, player: &str) -> Option<Snapshot> {
        self.snapshot_at(player, Instant::now())
    }

    pub fn snapshot_at(&self, player: &str, now: Instant) -> Option<Snapshot> {
        let sec = self.second(now);
        let mut players = self.players.lock();
        let p = players.get_mut(player)?;
        advance(p, sec);
        // Average over the buckets the window covers (fewer while the player is new).
        let total: u64 = p.window.iter().sum();
        let span = (now.duration_since(p.first_seen).as_secs() + 1).min(WINDOW_SECS as u64) as f64;
        Some(Snapshot {
            bitrate_kbps: ((total as f64 * 8.0 / 1000.0) / span).round() as u64,
            bytes: p.bytes,
            requests: p.requests,
            upstream_errors: p.upstream_errors,
            rtt_ms: round1(p.upstream_ms.unwrap_or(0.0)),
            latency_ms: round1(p.request_ms.unwrap_or(0.0)),
            uptime_secs: now.duration_since(p.first_seen).as_secs(),
            cache_hits: p.cache_hits,
        })
    }

    /// Forget a player's counters (`?reset`).
    pub fn reset(&self, player: &str) {
        self.players.lock().remove(player);
    }
}

/// Drop the least recently seen tenth of the table in one pass. A scan per new player (the
/// table full of invented hashes) would cost O(n) under the lock on every media request;
/// this is O(n) once per n/10 new players.
fn evict_least_recent(players: &mut HashMap<String, PlayerStats>) {
    let mut seen: Vec<Instant> = players.values().map(|p| p.last_seen).collect();
    let cut = (seen.len() / 10).max(1);
    let (_, nth, _) = seen.select_nth_unstable(cut - 1);
    let threshold = *nth;
    let mut left = cut;
    players.retain(|_, p| {
        if left > 0 && p.last_seen <= threshold {
            left -= 1;
            false
        } else {
            true
        }
    });
}

/// Zero the buckets of seconds that passed without traffic.
fn advance(p: &mut PlayerStats, sec: u64) {
    if sec <= p.window_second {
        return;
    }
    let gap = (sec - p.window_second).min(WINDOW_SECS as u64);
    for i in 1..=gap {
        p.window[((p.window_second + i) as usize) % WINDOW_SECS] = 0;
    }
    p.window_second = sec;
}

fn smooth(prev: Option<f64>, sample: f64) -> f64 {
    match prev {
        None => sample,
        Some(p) => p + EWMA * (sample - p),
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrate_over_sliding_window() {
        let t = StatsTable::new();
        let start = t.epoch + Duration::from_secs(100);
        // 10 seconds of 125,000 bytes/s = 1,000 kbit/s.
        for i in 0..10 {
            t.record_at(
                "p",
                Sample {
                    bytes: 125_000,
                    duration: Duration::from_millis(5),
                    ..Default::default()
                },
                start + Duration::from_secs(i),
            );
        }
        let s = t.snapshot_at("p", start + Duration::from_secs(9)).unwrap();
        assert!((900..=1100).contains(&s.bitrate_kbps), "{s:?}");
        assert_eq!(s.bytes, 1_250_000);
        assert_eq!(s.requests, 10);
        assert_eq!(s.uptime_secs, 9);
        // After the window passes with no traffic the bitrate falls to zero.
        let s = t.snapshot_at("p", start + Duration::from_secs(30)).unwrap();
        assert_eq!(s.bitrate_kbps, 0);
        assert_eq!(s.bytes, 1_250_000);
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_recent_players() {
        let t = StatsTable::new();
        let t0 = t.epoch;
        for i in 0..(MAX_PLAYERS + 2_500) {
            t.record_at(
                &format!("p{i}"),
                Sample::default(),
                t0 + Duration::from_millis(i as u64),
            );
        }
        let n = t.players.lock().len();
        assert!(n <= MAX_PLAYERS, "{n}");
        assert!(t.snapshot(&format!("p{}", MAX_PLAYERS + 2_499)).is_some());
        assert!(t.snapshot("p0").is_none());
    }

    #[test]
    fn errors_latency_and_reset() {
        let t = StatsTable::new();
        t.record(
            "p",
            Sample {
                bytes: 10,
                duration: Duration::from_millis(20),
                upstream: Some(Duration::from_millis(8)),
                upstream_error: true,
                cache_hit: false,
            },
        );
        let s = t.snapshot("p").unwrap();
        assert_eq!(s.upstream_errors, 1);
        assert_eq!(s.rtt_ms, 8.0);
        assert_eq!(s.latency_ms, 20.0);
        assert!(t.snapshot("other").is_none());
        t.reset("p");
        assert!(t.snapshot("p").is_none());
    }
}

//! `MemoryStorage`: sluice's production in-memory storage for pingora-cache.
//!
//! pingora-cache ships only `MemCache`, which its own docs call "for testing only": one global
//! lock, the meta stored serialized (zstd-compressed headers decompressed on every hit), the
//! whole body copied on every hit, panics on several paths, and partial readers that see a
//! silently short body when the origin fails mid-transfer. This storage keeps `MemCache`'s
//! protocol (temp objects, streaming partial writes, write tags) and guarantees:
//!
//! - **Sharded, no global lock on hits.** Keys map to one of N shards by their cache hash; a
//!   hit takes one shard's read lock for the time it takes to clone a header and a `Bytes`.
//! - **No serialized meta.** The response header and the freshness times are kept as values
//!   and a [`CacheMeta`] is rebuilt with [`CacheMeta::new`] per hit.
//! - **Zero-copy hits.** A complete body is one exact-size [`Bytes`]; hits hand out slices of
//!   it (at most [`HIT_CHUNK_BYTES`] each) and can seek to a range.
//! - **Streaming partial writes.** While a miss is written, lookups get a reader that yields
//!   bytes as they arrive (and can seek, waiting for the range to arrive). A lookup prefers an
//!   in-flight write over an older complete object, so a refreshed asset is visible at once.
//! - **Failures are errors, never short bodies.** A write dropped without `finish()` (origin
//!   failed) and a body whose length differs from its `Content-Length` are not committed, and
//!   every partial reader gets an error.
//! - **In-flight writes are inside the budget, and make room for themselves.** A write
//!   reserves its entry overhead and one step ([`RESERVE_STEP_BYTES`]) when it starts, and
//!   grows its reservation as bytes arrive, a step ahead (never past its `Content-Length`):
//!   what has arrived, not what was announced, so fills that stall hold what they have and
//!   never the budget. With an eviction manager ([`MemoryStorage::with_eviction`]) each step
//!   is admitted to it under the write's key, so a fill into a full cache evicts the coldest
//!   objects instead of being refused; complete objects plus reservations never pass the
//!   budget given to [`MemoryStorage::new`]. A write with no room even then is refused at
//!   `get_miss_handler` (pingora streams the response through uncached) or, mid-stream,
//!   becomes a pass-through that its viewers keep reading.
//! - **Too large or over budget mid-stream: pass-through, never a cut body.** A body of unknown
//!   length that outgrows the per-object limit, or whose growth the budget cannot take, turns
//!   into a *pass-through*: it is never committed, no new reader can join it, and the bytes
//!   its current readers have all read are dropped, so it holds at most its window
//!   ([`MemoryStorage::passthrough_window`]) while the readers get the whole body. (Pingora's own
//!   `max_file_size` check would fail the response instead, so sluice leaves it unset.) A
//!   reader that falls further behind than the window gets [`StorageError::ReaderFellBehind`].
//!   The window, too, lives inside the budget: when evicting cold objects makes no room for a
//!   pass-through's unread bytes, it keeps what it already holds and a reader further behind
//!   is cut, instead of being counted past the budget (before, 512 stalled HTTP/2 streams on
//!   64 cold 2 MB objects pinned 123 MB under a 16 MiB budget).
//! - **Accounting without scans.** [`MemoryStorage::bytes_stored`] and
//!   [`MemoryStorage::objects`] are atomics kept in step with the maps. A committed entry
//!   weighs `body + header estimate`; the same number is returned to pingora as
//!   `MissFinishType::Created` and as the hit's eviction weight, so pingora's eviction manager
//!   and this storage agree on what is stored.
//!
//! Eviction is pingora's: its eviction manager (e.g. `eviction::lru::Manager`) decides, and
//! either pingora calls [`Storage::purge`] with [`PurgeType::Eviction`] (after a commit) or
//! this storage removes what the manager chose as a fill grows. Set the eviction manager's
//! limit below the budget: the difference is slack for what the manager does not see (the
//! window of a pass-through, a stalled fill whose entry it already chose).
//!
//! Out of scope: variants (`Vary`) beyond keeping the key's combined hash, and entry ids
//! (entries are identified by key only, like `MemCache`).

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;
use pingora_cache::eviction::{CacheEntryKey, CacheEntryKeyRef, EvictionManager};
use pingora_cache::key::{CacheHashKey, CompactCacheKey, HashBinary};
use pingora_cache::max_file_size::ERR_RESPONSE_TOO_LARGE;
use pingora_cache::storage::streaming_write::U64WriteId;
use pingora_cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType, Storage,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, CacheMeta};
use pingora_error::{Error, ErrorType};
use pingora_http::ResponseHeader;
use thiserror::Error;
use tokio::sync::watch;

/// Largest slice a complete hit returns per `read_body`. Slices are zero-copy; the cap only
/// keeps one write to the downstream bounded (h2 flow control, write timeouts).
pub const HIT_CHUNK_BYTES: usize = 1 << 20;

/// Per-object limit when [`MemoryStorage::with_max_object_bytes`] is not called (and the budget
/// is larger). Media segments are a few MB; a 64 MiB object is almost certainly not one.
pub const DEFAULT_MAX_OBJECT_BYTES: usize = 64 << 20;

/// Least number of unread bytes a pass-through write keeps for its slowest reader; the window
/// is the per-object limit when that is larger (a pass-through holds at most what one cached
/// object may). Generous for a player that keeps up with its connection; a stalled one is cut
/// there rather than letting one object's unread tail grow without bound.
pub const PASSTHROUGH_MIN_WINDOW_BYTES: usize = 16 << 20;

/// How far ahead of the bytes that have arrived a write reserves (capped by its
/// `Content-Length`): one budget check and one eviction-manager call per step, not per chunk.
/// A fill reserves what has arrived, not what it announced, so fills that stall (an origin
/// that trickles, a viewer that stops reading) hold what they have and never the budget.
pub const RESERVE_STEP_BYTES: usize = 256 << 10;

/// Fixed memory an entry costs besides its body and headers: the map slot, the compact key,
/// the times, the `ResponseHeader` struct. An estimate; what matters is that it is the same
/// number in `bytes_stored()` and in the eviction manager.
const ENTRY_OVERHEAD_BYTES: usize = 256;

/// Per header field overhead on top of name and value bytes (the `HeaderMap` entry and the
/// case-preserving name map `ResponseHeader` keeps).
const HEADER_FIELD_OVERHEAD_BYTES: usize = 32;

/// Why the storage refused or abandoned an operation.
///
/// Converted to a pingora [`Error`] at the trait boundary; the variant travels as its cause,
/// so logs say which limit or which side failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StorageError {
    /// The object is (or grew) larger than the per-object limit.
    #[error("object of {size} bytes exceeds the {max} byte per-object limit")]
    ObjectTooLarge { size: usize, max: usize },
    /// `bytes_stored()` reached the budget: the eviction manager is missing or behind.
    #[error("cache storage holds {stored} bytes, at its {budget} byte budget")]
    OverBudget { stored: usize, budget: usize },
    /// The finished body's length differs from the stored `Content-Length`.
    #[error("body is {actual} bytes but Content-Length says {expected}")]
    LengthMismatch { expected: usize, actual: usize },
    /// The writer was dropped without `finish()`: the origin body failed mid-transfer.
    #[error("cache fill abandoned before the body was complete")]
    WriterDropped,
    /// An invalidation purged the key while the write was in flight; it is not committed.
    #[error("purged while being written; not committed")]
    PurgedWhileWriting,
    /// An operator purge came after this fill's request went out ([`FillStarted`]).
    #[error("purged after its request went out; not stored")]
    PurgedMeanwhile,
    /// Body bytes arrived after the writer was told end of stream.
    #[error("body written after end of stream")]
    WriteAfterEof,
    /// A streaming write tag that this storage did not issue.
    #[error("streaming write tag must be 8 bytes, got {0}")]
    BadWriteTag(usize),
    /// `seek` start at or past the end of the body.
    #[error("seek start {start} is not within the {len} byte body")]
    SeekOutOfRange { start: usize, len: usize },
    /// A reader of a pass-through write is further behind the origin than the window
    /// ([`MemoryStorage::passthrough_window`]): the bytes it needs next were dropped.
    #[error("reader at byte {pos} fell behind a pass-through write that kept bytes from {kept}")]
    ReaderFellBehind { pos: usize, kept: usize },
}

/// Why an object was not cached (the `reason` label of `sluice_cache_uncached_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UncachedReason {
    /// Larger than the per-object limit (by `Content-Length`, or as it streamed).
    TooLarge,
    /// The budget had no room for it (when it started, or as it grew).
    OverBudget,
    /// Its request went out before a purge: it may be the purged version.
    Purged,
}

/// A cacheable response's [`CacheMeta`] extension: how many operator purges this storage
/// had seen ([`MemoryStorage::purges`]) when its request went to the upstream. A purge
/// after that (the answer may be the version it removed: an owner or an origin not purged
/// yet, bytes already on their way) makes the write refuse itself at its start; a purge
/// after its start detaches it (it never commits). Either way the purge's answer holds: no
/// fill that began before it stores anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillStarted(pub u64);

impl UncachedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            UncachedReason::TooLarge => "too_large",
            UncachedReason::OverBudget => "over_budget",
            UncachedReason::Purged => "purged",
        }
    }
}

impl From<StorageError> for Box<Error> {
    fn from(e: StorageError) -> Self {
        // Same error type as pingora's own max-file-size check, so both read alike in logs.
        let etype = match e {
            StorageError::ObjectTooLarge { .. } => ERR_RESPONSE_TOO_LARGE,
            _ => ErrorType::InternalError,
        };
        // A dropped writer or a short body is the origin's failure, not ours.
        let upstream = matches!(
            e,
            StorageError::WriterDropped | StorageError::LengthMismatch { .. }
        );
        let err = Error::because(etype, "memory cache storage", e);
        if upstream {
            err.into_up()
        } else {
            err
        }
    }
}

/// A point-in-time copy of the storage's counters, for the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Complete objects' weight (body + header estimate) plus in-flight reservations.
    pub bytes_stored: usize,
    /// Complete objects.
    pub objects: usize,
    /// Bytes reserved by writes in flight: each write's weight once committed (its
    /// `Content-Length` or bytes written, whichever is larger, plus the entry overhead), and
    /// the kept window of pass-through writes.
    pub inflight_bytes: usize,
    /// Writes in flight.
    pub inflight_writes: usize,
    /// Purges with [`PurgeType::Eviction`] that removed an object.
    pub evictions: u64,
    /// Weight removed by those evictions.
    pub evicted_bytes: u64,
    /// Objects removed by invalidation (`purge`, `purge_prefix`, `purge_exact_primary`).
    pub invalidations: u64,
    /// Writes refused at `get_miss_handler` (too large, over budget).
    pub refused_writes: u64,
    /// Writes not committed (origin failed, length mismatch, purged).
    pub abandoned_writes: u64,
    /// Writes turned into pass-throughs mid-stream (too large or over budget).
    pub passthrough_writes: u64,
    /// Objects not cached because they were too large (refused or passed through).
    pub uncached_too_large: u64,
    /// Objects not cached because the budget had no room (refused or passed through).
    pub uncached_over_budget: u64,
    /// Answers not cached because a purge came after their request went out.
    pub uncached_purged: u64,
}

/// What a hit needs to rebuild its [`CacheMeta`], kept as values instead of serialized.
#[derive(Clone)]
struct StoredMeta {
    header: ResponseHeader,
    fresh_until: SystemTime,
    /// `CacheMeta::updated()`: admission, or the last revalidation. `CacheMeta::new` has no
    /// separate `updated` argument (it sets `updated = created`), and pingora reads age and
    /// `fresh_sec` from `updated`, so the rebuilt meta uses this as its `created`. The original
    /// admission time is only read for `Vary` tombstones, which sluice does not use.
    updated: SystemTime,
    stale_while_revalidate_sec: u32,
    stale_if_error_sec: u32,
    epoch_override: Option<SystemTime>,
    variance: Option<HashBinary>,
}

impl StoredMeta {
    fn capture(meta: &CacheMeta) -> Self {
        StoredMeta {
            header: meta.response_header_copy(),
            fresh_until: meta.fresh_until(),
            updated: meta.updated(),
            stale_while_revalidate_sec: meta.stale_while_revalidate_sec(),
            stale_if_error_sec: meta.stale_if_error_sec(),
            epoch_override: meta.epoch_override(),
            variance: meta.variance(),
        }
    }

    fn to_cache_meta(&self) -> CacheMeta {
        let mut meta = CacheMeta::new(
            self.fresh_until,
            self.updated,
            self.stale_while_revalidate_sec,
            self.stale_if_error_sec,
            self.header.clone(),
        );
        if let Some(epoch) = self.epoch_override {
            meta.set_epoch_override(epoch);
        }
        if let Some(variance) = self.variance {
            meta.set_variance(variance);
        }
        meta
    }

    fn content_length(&self) -> Option<usize> {
        self.header
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    }

    /// Estimated memory of everything but the body.
    fn overhead(&self, primary: Option<&str>) -> usize {
        let fields: usize = self
            .header
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + HEADER_FIELD_OVERHEAD_BYTES)
            .sum();
        ENTRY_OVERHEAD_BYTES + primary.map_or(0, str::len) + fields
    }
}

/// A committed object.
struct StoredObject {
    meta: StoredMeta,
    /// Exact-size copy of the body (see `MemoryMissHandler::finish`).
    body: Bytes,
    key: CompactCacheKey,
    primary: Option<Box<str>>,
    /// `body + header estimate` charged at commit. Not re-weighed on `update_meta`, because
    /// pingora does not re-admit after a revalidation: storage and eviction manager stay equal.
    weight: usize,
}

/// How far a write has got, broadcast to its partial readers.
#[derive(Debug, Clone)]
enum Progress {
    /// `len` bytes are readable; more may come.
    Writing(usize),
    /// The body is complete at `len` bytes (the writer finished).
    Complete(usize),
    /// The write failed after `len` bytes; readers that need more get `reason`.
    Failed { len: usize, reason: StorageError },
}

/// The body of a write in flight: the origin's chunks as they arrived, zero-copy. A
/// pass-through drops its front (bytes every reader has read).
#[derive(Default)]
struct Chunks {
    chunks: VecDeque<Bytes>,
    /// `starts[i]` is the body offset of `chunks[i]`.
    starts: VecDeque<usize>,
    len: usize,
}

impl Chunks {
    fn push(&mut self, data: Bytes) {
        self.starts.push_back(self.len);
        self.len += data.len();
        self.chunks.push_back(data);
    }

    /// Offset of the first byte still kept.
    fn kept_from(&self) -> usize {
        self.starts.front().copied().unwrap_or(self.len)
    }

    /// Drop whole chunks that end at or before `pos`.
    fn drop_before(&mut self, pos: usize) {
        while let (Some(&start), Some(chunk)) = (self.starts.front(), self.chunks.front()) {
            if start + chunk.len() > pos {
                break;
            }
            self.starts.pop_front();
            self.chunks.pop_front();
        }
    }

    /// Replace the chunks by one exact-size body (at commit: readers still streaming then
    /// share the stored object's memory instead of keeping the chunks alive).
    fn replace_with(&mut self, body: Bytes) {
        self.chunks.clear();
        self.starts.clear();
        self.len = body.len();
        if !body.is_empty() {
            self.starts.push_back(0);
            self.chunks.push_back(body);
        }
    }

    /// The bytes from `pos` up to `limit`, within one chunk (so zero-copy).
    fn slice(&self, pos: usize, limit: usize) -> Option<Bytes> {
        let idx = self.starts.partition_point(|&s| s <= pos).checked_sub(1)?;
        let chunk = self.chunks.get(idx)?;
        let offset = pos - self.starts.get(idx)?;
        let end = chunk.len().min(offset + limit.saturating_sub(pos));
        (offset < end).then(|| chunk.slice(offset..end))
    }

    /// One exact-size contiguous copy of the body.
    fn concat(&self) -> Bytes {
        let mut body = BytesMut::with_capacity(self.len);
        for chunk in &self.chunks {
            body.extend_from_slice(chunk);
        }
        body.freeze()
    }
}

/// A write in flight (pingora's "temp object"), shared by its writer and its partial readers.
struct InflightWrite {
    id: u64,
    meta: StoredMeta,
    key: CompactCacheKey,
    primary: Option<Box<str>>,
    /// `meta.overhead(primary)`, computed once.
    overhead: usize,
    body: RwLock<Chunks>,
    progress: watch::Sender<Progress>,
    /// Set (under the shard lock) by an invalidation: the write keeps feeding the readers it
    /// has but must not be committed, since the purge came after it started.
    purged: AtomicBool,
    /// Where each reader is (`usize::MAX` once done), for a pass-through to drop what all
    /// have read.
    readers: parking_lot::Mutex<Vec<Weak<AtomicUsize>>>,
}

impl InflightWrite {
    /// The lowest position of a live reader, or `None` when no reader is left.
    fn slowest_reader(&self) -> Option<usize> {
        let mut readers = self.readers.lock();
        readers.retain(|r| r.strong_count() > 0);
        readers
            .iter()
            .filter_map(Weak::upgrade)
            .map(|p| p.load(Ordering::Relaxed))
            .min()
    }
}

#[derive(Default)]
struct ShardMaps {
    complete: HashMap<HashBinary, StoredObject>,
    /// Writes in flight per key, oldest first. More than one only when the cache lock is off
    /// or timed out.
    inflight: HashMap<HashBinary, Vec<Arc<InflightWrite>>>,
}

impl ShardMaps {
    /// Remove the write `id` from the in-flight index; `true` if it was there.
    fn unlink(&mut self, hash: &HashBinary, id: u64) -> bool {
        let Some(writes) = self.inflight.get_mut(hash) else {
            return false;
        };
        let before = writes.len();
        writes.retain(|w| w.id != id);
        let found = writes.len() != before;
        if writes.is_empty() {
            self.inflight.remove(hash);
        }
        found
    }

    /// Detach every write in flight for `hash` so none of them commits.
    fn purge_inflight(&mut self, hash: &HashBinary) -> bool {
        match self.inflight.remove(hash) {
            Some(writes) => {
                for write in &writes {
                    write.purged.store(true, Ordering::Relaxed);
                }
                true
            }
            None => false,
        }
    }
}

/// One shard. Complete and in-flight maps share one lock so a commit (unlink the write,
/// insert the object) is atomic: a lookup never sees neither.
struct Shard {
    maps: RwLock<ShardMaps>,
}

#[derive(Default)]
struct Counters {
    complete_bytes: AtomicUsize,
    objects: AtomicUsize,
    /// Reservations of writes in flight (see [`StorageStats::inflight_bytes`]).
    inflight_bytes: AtomicUsize,
    inflight_writes: AtomicUsize,
    evictions: AtomicU64,
    evicted_bytes: AtomicU64,
    invalidations: AtomicU64,
    refused_writes: AtomicU64,
    abandoned_writes: AtomicU64,
    passthrough_writes: AtomicU64,
    uncached_too_large: AtomicU64,
    uncached_over_budget: AtomicU64,
    uncached_purged: AtomicU64,
}

/// Sharded, bounded in-memory cache storage for pingora-cache. See the module docs for what
/// it guarantees.
///
/// pingora takes storage as `&'static`: build it once (`Box::leak` or a `Lazy` static).
pub struct MemoryStorage {
    shards: Box<[Shard]>,
    /// `shards.len() - 1`; the shard count is a power of two.
    shard_mask: usize,
    budget_bytes: usize,
    max_object_bytes: usize,
    next_write_id: AtomicU64,
    /// Operator purges so far ([`MemoryStorage::purges`]): a fill whose request went out
    /// before a purge is never stored ([`FillStarted`]).
    purges: AtomicU64,
    counters: Counters,
    /// The disk tier behind this one (`cache.disk`), if configured.
    disk: Option<super::disk::DiskTier>,
    /// The eviction manager pingora admits committed objects to, told of writes in flight
    /// too so that a fill makes room by evicting cold objects ([`MemoryStorage::with_eviction`]).
    eviction: Option<&'static dyn EvictionManager>,
}

impl MemoryStorage {
    /// A storage with `shards` shards (rounded up to a power of two, at least 1) and a hard
    /// budget of `budget_bytes`, at which new writes are refused.
    pub fn new(shards: usize, budget_bytes: usize) -> MemoryStorage {
        let count = shards.max(1).next_power_of_two();
        MemoryStorage {
            shards: (0..count)
                .map(|_| Shard {
                    maps: RwLock::new(ShardMaps::default()),
                })
                .collect(),
            shard_mask: count - 1,
            budget_bytes,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES.min(budget_bytes),
            next_write_id: AtomicU64::new(0),
            purges: AtomicU64::new(0),
            counters: Counters::default(),
            disk: None,
            eviction: None,
        }
    }

    /// Track writes in flight in `eviction` (the manager given to `HttpCache::enable`), so a
    /// fill makes room for itself: as its bytes arrive, its weight so far is admitted under its
    /// key and the manager evicts the coldest objects past its limit, which this storage
    /// removes at once. When the fill commits, pingora admits the same key with its final
    /// weight (the same number), so nothing is counted twice. Without a manager, a fill only
    /// gets what the budget has free.
    pub fn with_eviction(mut self, eviction: &'static dyn EvictionManager) -> Self {
        self.eviction = Some(eviction);
        self
    }

    /// Put a disk tier behind this storage: misses look there (a verified object is promoted
    /// into memory), committed objects worth keeping are written there, invalidations remove
    /// them there too. Memory evictions leave the disk copy.
    pub fn with_disk(mut self, disk: super::disk::DiskTier) -> Self {
        self.disk = Some(disk);
        self
    }

    /// The disk tier, if any.
    pub fn disk(&self) -> Option<&super::disk::DiskTier> {
        self.disk.as_ref()
    }

    /// A complete object read back from disk, promoted into memory when the budget has room
    /// (otherwise served from the loaded bytes alone).
    fn promote(
        &self,
        key: &CacheKey,
        hash: HashBinary,
        loaded: super::disk::DiskObject,
        purges: u64,
    ) -> Option<(CacheMeta, HitHandler)> {
        let meta = StoredMeta::capture(&loaded.meta);
        let primary: Option<Box<str>> = key.primary_key_str().map(Into::into);
        let weight = loaded.body.len() + meta.overhead(primary.as_deref());
        let mut maps = self.shard(&hash).maps.write();
        // A write that started meanwhile is newer than the file.
        if let Some(write) = maps.inflight.get(&hash).and_then(|w| w.last()) {
            return Some(Self::partial_hit(write));
        }
        // A purge while the file was read may have been of this file: a miss.
        if self.purges() != purges {
            return None;
        }
        let fits = self.bytes_stored() + weight <= self.budget_bytes;
        let hit = CompleteHit {
            body: loaded.body.clone(),
            pos: 0,
            end: loaded.body.len(),
            weight,
            tracked: fits,
        };
        if fits {
            let obj = StoredObject {
                meta: meta.clone(),
                body: loaded.body,
                key: key.to_compact(),
                primary,
                weight,
            };
            let replaced = maps.complete.insert(hash, obj);
            self.count_object(weight, replaced.as_ref());
        }
        Some((meta.to_cache_meta(), Box::new(MemoryHit::Complete(hit))))
    }

    /// Operator purges so far (memory and disk); a [`FillStarted`] records it.
    pub fn purges(&self) -> u64 {
        self.purges.load(Ordering::SeqCst)
    }

    /// Refuse objects whose body is larger than `n` bytes: at `get_miss_handler` when the
    /// `Content-Length` says so, otherwise as soon as the body outgrows it (the write is
    /// abandoned and its readers get an error). Keep pingora's `set_max_file_size_bytes` at or
    /// below this, so pingora's check runs first and remembers the asset as uncacheable.
    pub fn with_max_object_bytes(mut self, n: usize) -> Self {
        self.max_object_bytes = n;
        self
    }

    /// The hard budget given to [`MemoryStorage::new`].
    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }

    /// The per-object body limit.
    pub fn max_object_bytes(&self) -> usize {
        self.max_object_bytes
    }

    /// Most unread bytes a pass-through keeps: the per-object limit, at least
    /// [`PASSTHROUGH_MIN_WINDOW_BYTES`].
    pub fn passthrough_window(&self) -> usize {
        self.max_object_bytes.max(PASSTHROUGH_MIN_WINDOW_BYTES)
    }

    /// Complete objects' weight (body + header estimate) plus in-flight reservations.
    pub fn bytes_stored(&self) -> usize {
        self.counters.complete_bytes.load(Ordering::Relaxed)
            + self.counters.inflight_bytes.load(Ordering::Relaxed)
    }

    /// Number of complete objects (writes in flight are not counted).
    pub fn objects(&self) -> usize {
        self.counters.objects.load(Ordering::Relaxed)
    }

    /// Number of purges with [`PurgeType::Eviction`] that removed an object.
    pub fn evictions(&self) -> u64 {
        self.counters.evictions.load(Ordering::Relaxed)
    }

    /// All counters at once.
    pub fn stats(&self) -> StorageStats {
        let c = &self.counters;
        let inflight_bytes = c.inflight_bytes.load(Ordering::Relaxed);
        StorageStats {
            bytes_stored: c.complete_bytes.load(Ordering::Relaxed) + inflight_bytes,
            objects: c.objects.load(Ordering::Relaxed),
            inflight_bytes,
            inflight_writes: c.inflight_writes.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            evicted_bytes: c.evicted_bytes.load(Ordering::Relaxed),
            invalidations: c.invalidations.load(Ordering::Relaxed),
            refused_writes: c.refused_writes.load(Ordering::Relaxed),
            abandoned_writes: c.abandoned_writes.load(Ordering::Relaxed),
            passthrough_writes: c.passthrough_writes.load(Ordering::Relaxed),
            uncached_too_large: c.uncached_too_large.load(Ordering::Relaxed),
            uncached_over_budget: c.uncached_over_budget.load(Ordering::Relaxed),
            uncached_purged: c.uncached_purged.load(Ordering::Relaxed),
        }
    }

    /// Count an object that is not cached, for `sluice_cache_uncached_total{reason}`. The
    /// storage counts its own refusals and pass-throughs; the edge counts the objects it
    /// declines before asking (a `Content-Length` over the limit).
    pub fn note_uncached(&self, reason: UncachedReason) {
        let counter = match reason {
            UncachedReason::TooLarge => &self.counters.uncached_too_large,
            UncachedReason::OverBudget => &self.counters.uncached_over_budget,
            UncachedReason::Purged => &self.counters.uncached_purged,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reserve `need` in-flight bytes if complete objects plus reservations stay within the
    /// budget (a reservation of 0 needs the budget not to be full). `false`: no room.
    fn try_reserve(&self, need: usize) -> bool {
        let c = &self.counters;
        let mut reserved = c.inflight_bytes.load(Ordering::Relaxed);
        loop {
            let total = c.complete_bytes.load(Ordering::Relaxed) + reserved;
            let fits = match need {
                0 => total < self.budget_bytes,
                n => total.saturating_add(n) <= self.budget_bytes,
            };
            if !fits {
                return false;
            }
            match c.inflight_bytes.compare_exchange_weak(
                reserved,
                reserved + need,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => reserved = now,
            }
        }
    }

    /// Grow a write's reservation from `from` to `to` bytes, making room first: the write's
    /// weight so far is admitted to the eviction manager under its key, and the manager evicts
    /// the coldest entries past its limit, which are removed here at once. `false`: no room
    /// even then (the budget is taken by other writes in flight).
    ///
    /// The manager may choose another write's entry (a cold one: a fill that stopped
    /// growing); that write keeps its bytes and its reservation here, and is tracked again
    /// when it grows or when pingora admits it at commit. The budget stays the hard bound.
    fn grow_reservation(&self, write: &InflightWrite, from: usize, to: usize) -> bool {
        if let Some(eviction) = self.eviction {
            let evicted = eviction.admit(
                CacheEntryKey::KeyOnly(write.key.clone()),
                to,
                write.meta.fresh_until,
            );
            self.evict_now(&evicted);
        }
        self.try_reserve(to.saturating_sub(from))
    }

    /// Evict cold objects for a pass-through's window of `kept` unread bytes: tracked under
    /// its key only for the moment the manager evicts, then forgotten again (it never commits).
    fn make_room(&self, write: &InflightWrite, kept: usize) {
        let Some(eviction) = self.eviction else {
            return;
        };
        let evicted = eviction.admit(
            CacheEntryKey::KeyOnly(write.key.clone()),
            kept,
            write.meta.fresh_until,
        );
        self.evict_now(&evicted);
        eviction.remove(CacheEntryKeyRef::KeyOnly(&write.key));
    }

    /// Stop tracking a write that will not commit: the manager goes back to the weight of the
    /// complete object under the same key, if there is one (a refresh), or forgets the key.
    fn untrack(&self, hash: &HashBinary, write: &InflightWrite) {
        let Some(eviction) = self.eviction else {
            return;
        };
        let complete = self
            .shard(hash)
            .maps
            .read()
            .complete
            .get(hash)
            .map(|o| (o.weight, o.meta.fresh_until));
        match complete {
            Some((weight, fresh_until)) => {
                let evicted = eviction.admit(
                    CacheEntryKey::KeyOnly(write.key.clone()),
                    weight,
                    fresh_until,
                );
                self.evict_now(&evicted);
            }
            None => eviction.remove(CacheEntryKeyRef::KeyOnly(&write.key)),
        }
    }

    /// Remove the complete objects the eviction manager chose, as [`Storage::purge`] with
    /// [`PurgeType::Eviction`] does (writes in flight under those keys are left alone).
    fn evict_now(&self, entries: &[CacheEntryKey]) {
        for entry in entries {
            // Entries are never given ids: an identified one is not ours.
            if let CacheEntryKey::KeyOnly(key) = entry {
                self.evict_complete(&key.combined_bin());
            }
        }
    }

    /// Remove the complete object under `hash` as an eviction; whether there was one.
    fn evict_complete(&self, hash: &HashBinary) -> bool {
        let removed = {
            let mut maps = self.shard(hash).maps.write();
            let removed = maps.complete.remove(hash);
            if let Some(obj) = &removed {
                self.uncount_object(obj);
            }
            removed
        };
        match removed {
            Some(obj) => {
                self.counters.evictions.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .evicted_bytes
                    .fetch_add(obj.weight as u64, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Remove every complete object whose primary key string starts with `prefix`, and stop
    /// writes in flight for such keys from committing (their current readers still finish).
    /// Returns the number of complete objects removed.
    ///
    /// This is not pingora's purge path, so pingora's eviction manager would keep tracking
    /// (and counting the weight of) the removed entries. Pass the manager given to
    /// `HttpCache::enable` as `eviction` and each removed key is `remove`d from it; with
    /// `None` the manager's total stays high until it evicts the ghosts itself (their purge
    /// finds nothing).
    ///
    /// Scans every shard, one shard lock at a time: an operator action, not a hot path.
    /// Keys whose primary is not UTF-8 never match.
    pub fn purge_prefix(&self, prefix: &str, eviction: Option<&dyn EvictionManager>) -> usize {
        self.purges.fetch_add(1, Ordering::SeqCst);
        let matches = |primary: &Option<Box<str>>| {
            primary
                .as_deref()
                .is_some_and(|p: &str| p.starts_with(prefix))
        };
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut purged_keys = Vec::new();
            {
                let mut maps = shard.maps.write();
                for (_, obj) in maps.complete.extract_if(|_, obj| matches(&obj.primary)) {
                    self.uncount_object(&obj);
                    purged_keys.push(obj.key);
                }
                maps.inflight.retain(|_, writes| {
                    let purge = writes.iter().any(|w| matches(&w.primary));
                    if purge {
                        for write in writes.iter() {
                            write.purged.store(true, Ordering::Relaxed);
                        }
                    }
                    !purge
                });
            }
            removed += purged_keys.len();
            if let Some(eviction) = eviction {
                for key in &purged_keys {
                    eviction.remove(CacheEntryKeyRef::KeyOnly(key));
                }
            }
        }
        if let Some(disk) = &self.disk {
            disk.remove_prefix(prefix);
        }
        self.counters
            .invalidations
            .fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// Bytes (body + header estimate) of complete objects whose primary key starts with
    /// `prefix`: one player's share of the cache, for `/stats`. A scan; not for the hot path.
    pub fn bytes_with_prefix(&self, prefix: &str) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .maps
                    .read()
                    .complete
                    .values()
                    .filter(|o| o.primary.as_deref().is_some_and(|p| p.starts_with(prefix)))
                    .map(|o| o.weight)
                    .sum::<usize>()
            })
            .sum()
    }

    /// The committed copy of an object (in memory, else on disk): its meta and whole body,
    /// never a write in flight, whose body is not all there yet. The edge reads what a
    /// playlist last advertised from it (LL-HLS delivery directives, `crate::media::llhls`).
    pub async fn committed(&'static self, key: &CacheKey) -> Option<(CacheMeta, Bytes)> {
        let hash = key.combined_bin();
        {
            let maps = self.shard(&hash).maps.read();
            if let Some(obj) = maps.complete.get(&hash) {
                return Some((obj.meta.to_cache_meta(), obj.body.clone()));
            }
        }
        let span = pingora_cache::trace::Span::inactive().handle();
        let (meta, hit) = self.lookup(key, &span).await.ok()??;
        let body = complete_body(hit.as_ref())?;
        Some((meta, body))
    }

    /// Remove the object whose primary key is exactly `primary` (as given to
    /// `CacheKey::new`, no variance), and stop a write in flight for it from committing.
    /// Returns whether a complete object was removed. `eviction` as in
    /// [`MemoryStorage::purge_prefix`].
    pub fn purge_exact_primary(
        &self,
        primary: &str,
        eviction: Option<&dyn EvictionManager>,
    ) -> bool {
        self.purges.fetch_add(1, Ordering::SeqCst);
        let hash = CacheKey::new(primary, "").combined_bin();
        let on_disk = self.disk.as_ref().is_some_and(|d| d.remove(&hash));
        let removed = {
            let mut maps = self.shard(&hash).maps.write();
            maps.purge_inflight(&hash);
            let removed = maps.complete.remove(&hash);
            if let Some(obj) = &removed {
                self.uncount_object(obj);
            }
            removed
        };
        match removed {
            Some(obj) => {
                self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
                if let Some(eviction) = eviction {
                    eviction.remove(CacheEntryKeyRef::KeyOnly(&obj.key));
                }
                true
            }
            None => on_disk,
        }
    }

    fn shard(&self, hash: &HashBinary) -> &Shard {
        let mut low = [0u8; 8];
        low.copy_from_slice(&hash[..8]);
        // The hash is blake2 output, so any 8 bytes are uniformly spread.
        let index = u64::from_le_bytes(low) as usize & self.shard_mask;
        // In range: the mask is `len - 1` and the length a power of two.
        &self.shards[index]
    }

    /// Call with the shard lock held, so the counters move with the map.
    fn count_object(&self, weight: usize, replaced: Option<&StoredObject>) {
        let c = &self.counters;
        c.complete_bytes.fetch_add(weight, Ordering::Relaxed);
        match replaced {
            Some(old) => {
                c.complete_bytes.fetch_sub(old.weight, Ordering::Relaxed);
            }
            None => {
                c.objects.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Call with the shard lock held, so the counters move with the map.
    fn uncount_object(&self, obj: &StoredObject) {
        self.counters
            .complete_bytes
            .fetch_sub(obj.weight, Ordering::Relaxed);
        self.counters.objects.fetch_sub(1, Ordering::Relaxed);
    }

    fn partial_hit(write: &Arc<InflightWrite>) -> (CacheMeta, HitHandler) {
        let seen = Arc::new(AtomicUsize::new(0));
        {
            let mut readers = write.readers.lock();
            if readers.len() >= 64 {
                readers.retain(|r| r.strong_count() > 0);
            }
            readers.push(Arc::downgrade(&seen));
        }
        let hit = PartialHit {
            write: write.clone(),
            progress: write.progress.subscribe(),
            pos: 0,
            end: None,
            seek_start: None,
            seen,
        };
        (
            write.meta.to_cache_meta(),
            Box::new(MemoryHit::Partial(hit)),
        )
    }

    fn refuse(&self, e: StorageError) -> Box<Error> {
        self.counters.refused_writes.fetch_add(1, Ordering::Relaxed);
        e.into()
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> pingora_error::Result<Option<(CacheMeta, HitHandler)>> {
        let hash = key.combined_bin();
        {
            let maps = self.shard(&hash).maps.read();
            // Prefer the newest write in flight: otherwise a refreshed asset stays invisible
            // behind its expired predecessor until the whole body has arrived.
            if let Some(write) = maps.inflight.get(&hash).and_then(|w| w.last()) {
                return Ok(Some(Self::partial_hit(write)));
            }
            if let Some(obj) = maps.complete.get(&hash) {
                // Built under the (shared) read lock: the header is cloned once, straight
                // into the meta, and the body is a reference count.
                let hit = CompleteHit {
                    body: obj.body.clone(),
                    pos: 0,
                    end: obj.body.len(),
                    weight: obj.weight,
                    tracked: true,
                };
                return Ok(Some((
                    obj.meta.to_cache_meta(),
                    Box::new(MemoryHit::Complete(hit)),
                )));
            }
        }
        let Some(disk) = &self.disk else {
            return Ok(None);
        };
        let purges = self.purges();
        let Some(loaded) = disk.load(&hash).await else {
            return Ok(None);
        };
        if loaded.primary.as_deref() != key.primary_key_str() {
            return Ok(None);
        }
        Ok(self.promote(key, hash, loaded, purges))
    }

    async fn lookup_streaming_write(
        &'static self,
        key: &CacheKey,
        streaming_write_tag: Option<&[u8]>,
        trace: &SpanHandle,
    ) -> pingora_error::Result<Option<(CacheMeta, HitHandler)>> {
        let Some(tag) = streaming_write_tag else {
            return self.lookup(key, trace).await;
        };
        let id: u64 = U64WriteId::try_from(tag)
            .map_err(|_| StorageError::BadWriteTag(tag.len()))?
            .into();
        let hash = key.combined_bin();
        let maps = self.shard(&hash).maps.read();
        // Only this write, or nothing (it was purged already): another write's body would
        // not match the header the caller is about to send.
        Ok(maps
            .inflight
            .get(&hash)
            .and_then(|writes| writes.iter().find(|w| w.id == id))
            .map(Self::partial_hit))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> pingora_error::Result<MissHandler> {
        let stored = StoredMeta::capture(meta);
        let length = stored.content_length();
        if let Some(length) = length {
            if length > self.max_object_bytes {
                self.note_uncached(UncachedReason::TooLarge);
                return Err(self.refuse(StorageError::ObjectTooLarge {
                    size: length,
                    max: self.max_object_bytes,
                }));
            }
        }
        let hash = key.combined_bin();
        let primary: Option<Box<str>> = key.primary_key_str().map(Into::into);
        let overhead = stored.overhead(primary.as_deref());
        let id = self.next_write_id.fetch_add(1, Ordering::Relaxed);
        let (progress, _) = watch::channel(Progress::Writing(0));
        let write = Arc::new(InflightWrite {
            id,
            meta: stored,
            key: key.to_compact(),
            primary,
            overhead,
            body: RwLock::new(Chunks::default()),
            progress,
            purged: AtomicBool::new(false),
            readers: parking_lot::Mutex::new(Vec::new()),
        });
        // Only the entry's overhead and a first step are reserved now, and the body as it
        // arrives ([`RESERVE_STEP_BYTES`] ahead): reserving the announced length up front let fills
        // that stall hold the whole budget while they held almost nothing. Each step makes
        // room by evicting cold objects ([`MemoryStorage::grow_reservation`]).
        let reserved = overhead + length.map_or(RESERVE_STEP_BYTES, |l| l.min(RESERVE_STEP_BYTES));
        if !self.grow_reservation(&write, 0, reserved) {
            self.untrack(&hash, &write);
            self.note_uncached(UncachedReason::OverBudget);
            return Err(self.refuse(StorageError::OverBudget {
                stored: self.bytes_stored(),
                budget: self.budget_bytes,
            }));
        }
        {
            let mut maps = self.shard(&hash).maps.write();
            // Checked under the shard lock a purge takes after counting itself: either this
            // write is refused here or the purge finds it in flight and detaches it.
            let started = meta.extensions().get::<FillStarted>().map(|f| f.0);
            if started.is_some_and(|s| s != self.purges()) {
                drop(maps);
                self.untrack(&hash, &write);
                self.note_uncached(UncachedReason::Purged);
                return Err(self.refuse(StorageError::PurgedMeanwhile));
            }
            maps.inflight.entry(hash).or_default().push(write.clone());
        }
        self.counters
            .inflight_writes
            .fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(MemoryMissHandler {
            storage: self,
            hash,
            write,
            tag: id.into(),
            written: 0,
            reserved,
            floor: 0,
            passthrough: false,
            eof: false,
            ended: false,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> pingora_error::Result<PurgeOutcome> {
        // Entries are never given ids, so an identified target cannot be ours.
        if matches!(target, PurgeTarget::Exact(CacheEntryKey::Identified { .. })) {
            return Ok(PurgeOutcome::NotFound);
        }
        // An eviction pingora decided when it admitted another object runs later, in a task
        // of its own. If the manager tracks the key again by then, it chose an entry that has
        // since come back — typically a fill in flight at the time that has committed since
        // (the commit admits it, below): removing it would drop a fresh object the manager
        // counts, and send its next viewers to the origin.
        if matches!(purge_type, PurgeType::Eviction) {
            if let (Some(eviction), PurgeTarget::Exact(entry)) = (self.eviction, &target) {
                if eviction.peek(entry) {
                    return Ok(PurgeOutcome::NotFound);
                }
            }
        }
        let hash = target.key().combined_bin();
        let (removed, inflight_purged) = {
            let mut maps = self.shard(&hash).maps.write();
            // An eviction concerns the committed object the manager tracks; a write in flight
            // is not tracked yet and will be admitted when it finishes, so leave it. An
            // invalidation must also stop in-flight writes, which began before it.
            let inflight_purged = match purge_type {
                PurgeType::Eviction => false,
                PurgeType::Invalidation => maps.purge_inflight(&hash),
            };
            let removed = maps.complete.remove(&hash);
            if let Some(obj) = &removed {
                self.uncount_object(obj);
            }
            (removed, inflight_purged)
        };
        if let Some(obj) = &removed {
            match purge_type {
                PurgeType::Eviction => {
                    self.counters.evictions.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .evicted_bytes
                        .fetch_add(obj.weight as u64, Ordering::Relaxed);
                }
                PurgeType::Invalidation => {
                    self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let on_disk = match (purge_type, &self.disk) {
            (PurgeType::Invalidation, Some(disk)) => disk.remove(&hash),
            _ => false,
        };
        if removed.is_some() || inflight_purged || on_disk {
            Ok(PurgeOutcome::Purged(None))
        } else {
            Ok(PurgeOutcome::NotFound)
        }
    }

    async fn expire(
        &'static self,
        target: PurgeTarget<'_>,
        _trace: &SpanHandle,
    ) -> pingora_error::Result<PurgeOutcome> {
        if matches!(target, PurgeTarget::Exact(CacheEntryKey::Identified { .. })) {
            return Ok(PurgeOutcome::NotFound);
        }
        let hash = target.key().combined_bin();
        // An expired object must not come back fresh from disk after a restart.
        if let Some(disk) = &self.disk {
            disk.remove(&hash);
        }
        // Writes in flight are left alone: they carry a fresh response.
        let mut maps = self.shard(&hash).maps.write();
        match maps.complete.get_mut(&hash) {
            Some(obj) => {
                // Only ever earlier, as `CacheMeta::expire_at` does, so the serve-stale windows
                // are measured from the moment the object went out of service.
                obj.meta.fresh_until = obj.meta.fresh_until.min(SystemTime::now());
                Ok(PurgeOutcome::Expired)
            }
            None => Ok(PurgeOutcome::NotFound),
        }
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> pingora_error::Result<bool> {
        let hash = key.combined_bin();
        let stored = StoredMeta::capture(meta);
        let mut maps = self.shard(&hash).maps.write();
        match maps.complete.get_mut(&hash) {
            Some(obj) => {
                obj.meta = stored;
                Ok(true)
            }
            // Evicted or purged while revalidating: nothing to update.
            None => Ok(false),
        }
    }

    fn support_streaming_partial_write(&self) -> bool {
        true
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// The hit handler this storage returns.
pub enum MemoryHit {
    Complete(CompleteHit),
    Partial(PartialHit),
}

/// A hit on a committed object: zero-copy slices of its body.
/// The whole body behind a hit handler of this storage, when it is a complete object
/// (zero-copy). The edge reads playlists this way to judge their liveness on a hit.
pub fn complete_body(hit: &(dyn HandleHit + Send + Sync)) -> Option<Bytes> {
    match hit.as_any().downcast_ref::<MemoryHit>()? {
        MemoryHit::Complete(c) => Some(c.body.clone()),
        MemoryHit::Partial(_) => None,
    }
}

pub struct CompleteHit {
    body: Bytes,
    pos: usize,
    end: usize,
    weight: usize,
    /// In the memory maps (so the eviction manager should track it); `false` for a disk hit
    /// the budget had no room to promote.
    tracked: bool,
}

impl CompleteHit {
    fn read(&mut self) -> Option<Bytes> {
        if self.pos >= self.end {
            return None;
        }
        let take = (self.end - self.pos).min(HIT_CHUNK_BYTES);
        let chunk = self.body.slice(self.pos..self.pos + take);
        self.pos += take;
        Some(chunk)
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<(), StorageError> {
        let len = self.body.len();
        if start >= len {
            return Err(StorageError::SeekOutOfRange { start, len });
        }
        self.pos = start;
        // `end` is exclusive; past the body just means "to the end".
        self.end = end.map_or(len, |end| end.min(len));
        Ok(())
    }
}

/// A hit on a write in flight: yields bytes as they arrive, ends when the writer commits,
/// errors when the write fails.
pub struct PartialHit {
    write: Arc<InflightWrite>,
    progress: watch::Receiver<Progress>,
    pos: usize,
    /// Exclusive end of a seeked range.
    end: Option<usize>,
    /// Start of a seeked range, checked against the length once it is known.
    seek_start: Option<usize>,
    /// `pos` as the writer sees it (`usize::MAX` once done), for a pass-through.
    seen: Arc<AtomicUsize>,
}

impl PartialHit {
    async fn read(&mut self) -> Result<Option<Bytes>, StorageError> {
        let read = self.read_next().await;
        let seen = match &read {
            Ok(Some(_)) => self.pos,
            _ => usize::MAX,
        };
        self.seen.store(seen, Ordering::Relaxed);
        read
    }

    async fn read_next(&mut self) -> Result<Option<Bytes>, StorageError> {
        loop {
            let progress = self.progress.borrow_and_update().clone();
            let (available, finished, failure) = match progress {
                Progress::Writing(len) => (len, None, None),
                Progress::Complete(len) => (len, Some(len), None),
                Progress::Failed { len, reason } => (len, None, Some(reason)),
            };
            if self.end.is_some_and(|end| self.pos >= end) {
                return Ok(None);
            }
            let limit = self.end.map_or(available, |end| end.min(available));
            if self.pos < limit {
                let body = self.write.body.read();
                let kept = body.kept_from();
                if self.pos < kept {
                    return Err(StorageError::ReaderFellBehind {
                        pos: self.pos,
                        kept,
                    });
                }
                if let Some(chunk) = body.slice(self.pos, limit) {
                    self.pos += chunk.len();
                    return Ok(Some(chunk));
                }
            }
            if let Some(reason) = failure {
                return Err(reason);
            }
            if let Some(len) = finished {
                return match self.seek_start {
                    Some(start) if start >= len => Err(StorageError::SeekOutOfRange { start, len }),
                    _ => Ok(None),
                };
            }
            // The sender lives in `self.write`, so this only fails if that invariant breaks;
            // even then, an error beats a silently short body.
            if self.progress.changed().await.is_err() {
                return Err(StorageError::WriterDropped);
            }
        }
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<(), StorageError> {
        if let Progress::Complete(len) = *self.progress.borrow() {
            if start >= len {
                return Err(StorageError::SeekOutOfRange { start, len });
            }
        }
        // Not complete yet: whether `start` exists is known only at the end; `read` checks.
        self.pos = start;
        self.end = end;
        self.seek_start = Some(start);
        self.seen.store(start, Ordering::Relaxed);
        Ok(())
    }
}

#[async_trait]
impl HandleHit for MemoryHit {
    async fn read_body(&mut self) -> pingora_error::Result<Option<Bytes>> {
        match self {
            MemoryHit::Complete(hit) => Ok(hit.read()),
            MemoryHit::Partial(hit) => Ok(hit.read().await?),
        }
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> pingora_error::Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> pingora_error::Result<()> {
        match self {
            MemoryHit::Complete(hit) => Ok(hit.seek(start, end)?),
            MemoryHit::Partial(hit) => Ok(hit.seek(start, end)?),
        }
    }

    fn should_count_access(&self) -> bool {
        // A partial hit's weight is unknown; the write is admitted with its size on finish.
        matches!(self, MemoryHit::Complete(hit) if hit.tracked)
    }

    fn get_eviction_weight(&self) -> usize {
        match self {
            MemoryHit::Complete(hit) => hit.weight,
            MemoryHit::Partial(_) => 0,
        }
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Writes one miss into the storage. Dropped without `finish()`, the write fails: it is not
/// committed and its readers get [`StorageError::WriterDropped`].
pub struct MemoryMissHandler {
    storage: &'static MemoryStorage,
    hash: HashBinary,
    write: Arc<InflightWrite>,
    tag: U64WriteId,
    /// Body bytes written.
    written: usize,
    /// This write's share of `inflight_bytes`: its entry overhead plus
    /// `max(Content-Length, written)` (what it will weigh once committed), or for a
    /// pass-through the bytes it still keeps.
    reserved: usize,
    /// Least a pass-through keeps reserved (see [`Self::start_passthrough`]).
    floor: usize,
    /// Too large or over budget mid-stream: feeding its readers, never committed.
    passthrough: bool,
    eof: bool,
    /// Committed or abandoned: in-flight accounting released, readers told.
    ended: bool,
}

impl MemoryMissHandler {
    /// Give the in-flight accounting back. Once per write.
    fn release(&mut self) {
        self.ended = true;
        let c = &self.storage.counters;
        c.inflight_bytes.fetch_sub(self.reserved, Ordering::Relaxed);
        self.reserved = 0;
        c.inflight_writes.fetch_sub(1, Ordering::Relaxed);
    }

    /// Stop caching this write but keep feeding its readers: unlink it (no new reader joins,
    /// nothing commits) and give its reservation back; [`Self::keep_window`] then accounts
    /// for what it keeps.
    fn start_passthrough(&mut self, reason: UncachedReason) {
        self.passthrough = true;
        self.write.purged.store(true, Ordering::Relaxed);
        self.storage
            .shard(&self.hash)
            .maps
            .write()
            .unlink(&self.hash, self.write.id);
        // Out of budget, it keeps (up to) one step of its reservation for its window: its
        // next chunks then fit in what it held, instead of every fill that ran out at once
        // counting its newest chunk on top of a budget the others already took. Too large,
        // it keeps just its window (the budget had room for it).
        self.floor = match reason {
            UncachedReason::OverBudget => {
                self.reserved.min(self.write.overhead + RESERVE_STEP_BYTES)
            }
            UncachedReason::TooLarge | UncachedReason::Purged => 0,
        };
        let c = &self.storage.counters;
        c.passthrough_writes.fetch_add(1, Ordering::Relaxed);
        self.storage.note_uncached(reason);
        self.storage.untrack(&self.hash, &self.write);
    }

    /// A pass-through keeps only what its slowest reader has not read, at most its window of
    /// it, and only as much as the budget has room for (after evicting cold objects); what
    /// it keeps counts as in flight. Past that room, it keeps what it already holds (at least
    /// `newest`, the chunk just written, which every reader still needs) and a reader further
    /// behind is cut ([`StorageError::ReaderFellBehind`]): the fill never waits for its
    /// slowest viewer, and viewers that stop reading (an HTTP/2 stream with no window, a
    /// socket nobody drains) cannot pin unread bytes past the budget, however many there are.
    fn keep_window(&mut self, newest: usize) {
        let len = self.written;
        let floor = len.saturating_sub(self.storage.passthrough_window());
        let mut from = self.write.slowest_reader().unwrap_or(len).clamp(floor, len);
        let c = &self.storage.counters;
        let wanted = (len - from).max(self.floor);
        if wanted > self.reserved {
            let grow = wanted - self.reserved;
            let fits = self.storage.try_reserve(grow) || {
                self.storage.make_room(&self.write, wanted);
                self.storage.try_reserve(grow)
            };
            if fits {
                self.reserved = wanted;
            } else {
                let allowed = self.reserved.max(newest);
                from = from.max(len.saturating_sub(allowed));
                if allowed > self.reserved {
                    // The newest chunk is in memory whatever the budget says: counted.
                    c.inflight_bytes
                        .fetch_add(allowed - self.reserved, Ordering::Relaxed);
                    self.reserved = allowed;
                }
            }
        }
        let kept = {
            let mut body = self.write.body.write();
            body.drop_before(from);
            len - body.kept_from()
        };
        let kept = kept.max(self.floor);
        if kept > self.reserved {
            c.inflight_bytes
                .fetch_add(kept - self.reserved, Ordering::Relaxed);
        } else {
            c.inflight_bytes
                .fetch_sub(self.reserved - kept, Ordering::Relaxed);
        }
        self.reserved = kept;
    }

    /// Fail the write: unlink it, tell readers why, release its accounting.
    fn abandon(&mut self, reason: StorageError) -> StorageError {
        if self.ended {
            return reason;
        }
        self.storage
            .shard(&self.hash)
            .maps
            .write()
            .unlink(&self.hash, self.write.id);
        self.write.progress.send_replace(Progress::Failed {
            len: self.written,
            reason: reason.clone(),
        });
        self.storage
            .counters
            .abandoned_writes
            .fetch_add(1, Ordering::Relaxed);
        self.release();
        if !self.passthrough {
            self.storage.untrack(&self.hash, &self.write);
        }
        reason
    }

    /// What this write reserves once `size` body bytes have arrived: those, the entry's
    /// overhead, and up to [`RESERVE_STEP_BYTES`] more, but not past the announced length
    /// or the per-object limit.
    fn reservation_for(&self, size: usize) -> usize {
        let ahead = size + RESERVE_STEP_BYTES;
        let cap = match self.write.meta.content_length() {
            Some(len) if len >= size => len,
            _ => self.storage.max_object_bytes.max(size),
        };
        self.write.overhead + ahead.min(cap)
    }

    /// Why this write already ended, for calls after it did.
    fn ended_error(&self) -> StorageError {
        match &*self.write.progress.borrow() {
            Progress::Failed { reason, .. } => reason.clone(),
            _ => StorageError::WriteAfterEof,
        }
    }
}

#[async_trait]
impl HandleMiss for MemoryMissHandler {
    async fn write_body(&mut self, data: Bytes, eof: bool) -> pingora_error::Result<()> {
        if self.ended {
            return Err(self.ended_error().into());
        }
        if self.eof && !data.is_empty() {
            return Err(self.abandon(StorageError::WriteAfterEof).into());
        }
        self.eof |= eof;
        if data.is_empty() {
            return Ok(());
        }
        let size = self.written + data.len();
        if !self.passthrough {
            if size > self.storage.max_object_bytes {
                self.start_passthrough(UncachedReason::TooLarge);
            } else if size + self.write.overhead > self.reserved {
                let need = self.reservation_for(size);
                if self
                    .storage
                    .grow_reservation(&self.write, self.reserved, need)
                {
                    self.reserved = need;
                } else {
                    self.start_passthrough(UncachedReason::OverBudget);
                }
            }
        }
        let newest = data.len();
        self.write.body.write().push(data);
        self.written = size;
        if self.passthrough {
            self.keep_window(newest);
        }
        // Readers learn of the end only in `finish`, after the length is checked.
        self.write.progress.send_replace(Progress::Writing(size));
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> pingora_error::Result<MissFinishType> {
        if self.ended {
            return Err(self.ended_error().into());
        }
        let len = self.written;
        if self.passthrough {
            // Readers get the end of the whole body; nothing is stored. `Created(0)` rather
            // than an error: pingora disables the cache on a finish error, which would cut
            // the writer's own viewer, still reading this write.
            self.write.progress.send_replace(Progress::Complete(len));
            self.release();
            return Ok(MissFinishType::Created(0));
        }
        if let Some(expected) = self.write.meta.content_length() {
            if expected != len {
                return Err(self
                    .abandon(StorageError::LengthMismatch {
                        expected,
                        actual: len,
                    })
                    .into());
            }
        }
        // One copy per fill into an exact-size buffer, paid once and not per hit: origin
        // chunks are often 16 KiB slices of larger read buffers, which would both multiply
        // the downstream writes of every hit and keep unaccounted memory alive.
        let body = self.write.body.read().concat();
        self.write.body.write().replace_with(body.clone());
        let weight = body.len() + self.write.overhead;
        let committed = {
            let storage = self.storage;
            let mut maps = storage.shard(&self.hash).maps.write();
            maps.unlink(&self.hash, self.write.id);
            // Read under the shard lock, which purges hold while setting it.
            if self.write.purged.load(Ordering::Relaxed) {
                false
            } else {
                let obj = StoredObject {
                    meta: self.write.meta.clone(),
                    body: body.clone(),
                    key: self.write.key.clone(),
                    primary: self.write.primary.clone(),
                    weight,
                };
                let replaced = maps.complete.insert(self.hash, obj);
                storage.count_object(weight, replaced.as_ref());
                true
            }
        };
        if let (true, Some(eviction)) = (committed, self.storage.eviction) {
            // Tracked at its final weight from the moment it is stored (pingora admits it
            // again after `finish`, with the same weight), so a late eviction decided while it
            // was in flight is recognised as stale (see `purge`).
            let evicted = eviction.admit(
                CacheEntryKey::KeyOnly(self.write.key.clone()),
                weight,
                self.write.meta.fresh_until,
            );
            self.storage.evict_now(&evicted);
        }
        if let (true, Some(disk)) = (committed, &self.storage.disk) {
            disk.store(
                self.hash,
                self.write.primary.as_deref(),
                self.write.meta.to_cache_meta(),
                body,
            );
        }
        // Readers of a purged write still get the whole, correct body they started on.
        self.write.progress.send_replace(Progress::Complete(len));
        self.release();
        if committed {
            Ok(MissFinishType::Created(weight))
        } else {
            self.storage.untrack(&self.hash, &self.write);
            self.storage
                .counters
                .abandoned_writes
                .fetch_add(1, Ordering::Relaxed);
            Err(StorageError::PurgedWhileWriting.into())
        }
    }

    fn streaming_write_tag(&self) -> Option<&[u8]> {
        Some(self.tag.as_bytes())
    }
}

impl Drop for MemoryMissHandler {
    fn drop(&mut self) {
        if !self.ended {
            self.abandon(StorageError::WriterDropped);
        }
    }
}

//! The disk tier (`cache.disk`): a bounded, crash-safe second level behind
//! [`super::MemoryStorage`], so a restart or an upgrade does not send the working set back
//! to the origins.
//!
//! Where it sits: the memory storage asks it on a miss (a complete object found here is
//! promoted into memory and served as a hit) and hands it every object it commits that is
//! worth keeping (`200`, fresh for at least [`MIN_FRESH_FOR_DISK`]); invalidations remove the
//! file. Memory evictions leave the disk copy alone: that is the point of a second tier.
//!
//! Guarantees:
//! - **A torn or altered file is never served.** Files are written to `tmp/`, `fsync`ed and
//!   renamed into place (then the directory is `fsync`ed), so a crash leaves either the old
//!   file, the new one, or nothing. Every file carries its section lengths and an
//!   HMAC-SHA256 tag, under the tier's own key ([`DiskKey`], kept in the state directory,
//!   never with the files), of its fixed header, its cache key hash (the file's name), its
//!   primary key, its stored response header and its body: everything its answer depends
//!   on. A file whose size or tag does not match is deleted and treated as a miss, so
//!   someone who can write the cache directory but cannot read the key cannot make sluice
//!   serve bytes it did not store for that key (recomputing a checksum does not help: there
//!   is none without the key). What a MAC cannot tell: a file sluice itself wrote earlier for
//!   the same key, put back after a purge removed it, verifies (a replay).
//! - **Files under another key are dropped unread**: a lost or replaced key file (a new key is
//!   created), or a file of the CRC-32 format of earlier versions, is deleted at start (or
//!   when asked for), counted as `foreign`, and is a miss.
//! - **Bounded.** The files' total size stays within `cache.disk.bytes`: each write evicts
//!   the least recently used files past it. The index (key → size, last use) lives in
//!   memory, built at start by reading every file's fixed header.
//! - **Off the request path.** Writes go through one writer thread with a bounded queue (a
//!   full queue drops the write, never blocks a fill); reads run on tokio's blocking pool.
//!
//! One process writes a directory at a time (the state lock); during a graceful upgrade the
//! new process sees the files that existed when it started.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use pingora_cache::key::HashBinary;
use pingora_cache::CacheMeta;
use rand::RngCore;
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// Objects fresh for less than this are not written (live playlists, `404`s): they would be
/// stale by the time a restart reads them.
pub const MIN_FRESH_FOR_DISK: Duration = Duration::from_secs(600);

/// Writes queued for the writer thread; past this a write is dropped.
const QUEUE: usize = 256;
/// Body bytes queued for the writer thread (each one keeps its body alive, possibly after the
/// memory tier evicted it); past this a write is dropped, so a slow disk cannot hold memory
/// outside the cache budget without bound.
const QUEUE_BYTES: usize = 64 << 20;

const MAGIC: &[u8; 8] = b"SLUICE\x02\n";
/// The CRC-32 format of earlier versions: dropped unread.
const OLD_MAGIC: &[u8; 8] = b"SLUICE\x01\n";
/// Where the key id starts: after the magic, 3 × u32 section lengths and the u64 body length.
const KEY_ID_AT: usize = 8 + 4 * 3 + 8;
/// Where the tag starts: after the 8-byte key id.
const TAG_AT: usize = KEY_ID_AT + 8;
/// magic, 3 × u32 section lengths, u64 body length, key id, HMAC-SHA256 tag.
const FIXED_HEADER: usize = TAG_AT + 32;
/// What the tag is computed over starts with this (a tag of anything else never matches).
const MAC_LABEL: &[u8] = b"sluice disk cache file v2\0";
/// The key's id (stored in every file, so files under another key are told apart without
/// reading them) is the HMAC of this under the key.
const KEY_ID_LABEL: &[u8] = b"sluice disk cache key id";

/// The disk tier's key file, in the state directory (the parent of `state.sqlite`).
pub const KEY_FILE: &str = "disk-cache.key";

/// The key the disk tier's files are authenticated with: 32 random bytes created once in the
/// state directory ([`KEY_FILE`], `0600`), not in `cache.disk.path`, so whoever can write the
/// cache files cannot also forge their tags unless they can read sluice's state. Not derived
/// from a configured secret: sluice may have none, and rotating a token secret should not
/// throw the disk tier away (nor a disk tier leak anything about a token secret).
pub struct DiskKey {
    key: Zeroizing<[u8; 32]>,
    id: [u8; 8],
}

impl std::fmt::Debug for DiskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskKey")
            .field("id", &hex::encode(self.id))
            .finish_non_exhaustive()
    }
}

impl DiskKey {
    pub fn from_bytes(key: [u8; 32]) -> DiskKey {
        let key = Zeroizing::new(key);
        let mut id = [0u8; 8];
        let mut mac = Self::hmac(&key);
        mac.update(KEY_ID_LABEL);
        id.copy_from_slice(&mac.finalize().into_bytes()[..8]);
        DiskKey { key, id }
    }

    fn hmac(key: &[u8; 32]) -> HmacSha256 {
        // HMAC takes a key of any length: this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
    }

    fn mac(&self) -> HmacSha256 {
        Self::hmac(&self.key)
    }

    /// Read `{state_dir}/disk-cache.key`, or create it (32 random bytes, `0600`) when absent.
    /// A new key means the files already in `cache.disk.path` are dropped unread.
    ///
    /// # Errors
    /// [`DiskError::Key`] when the file cannot be read or created, or is not 32 bytes.
    pub fn load_or_create(state_dir: &Path) -> Result<DiskKey, DiskError> {
        let path = state_dir.join(KEY_FILE);
        let key_err = |reason: String| DiskError::Key {
            path: path.clone(),
            reason,
        };
        let parse = |bytes: Vec<u8>| -> Result<DiskKey, DiskError> {
            let bytes = Zeroizing::new(bytes);
            let key: [u8; 32] = bytes[..].try_into().map_err(|_| {
                key_err(format!(
                    "is {} bytes, must be 32 (delete it and sluice creates a new key; the disk \
                     tier's files are then dropped)",
                    bytes.len()
                ))
            })?;
            Ok(DiskKey::from_bytes(key))
        };
        match fs::read(&path) {
            Ok(bytes) => return parse(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(key_err(e.to_string())),
        }
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut key[..]);
        // Written whole under a temporary name, then linked into place: a process that reads
        // the key file (the other one of a graceful upgrade) never sees a partial key, and of
        // two processes creating it at once the second one reads the first one's.
        let tmp = state_dir.join(format!("{KEY_FILE}.{}.tmp", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&key[..])?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(key_err(e.to_string()));
        }
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                File::open(state_dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| key_err(e.to_string()))?;
                tracing::info!(
                    file = %path.display(),
                    "disk cache key created: files written under another key will be dropped"
                );
                Ok(DiskKey::from_bytes(*key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                parse(fs::read(&path).map_err(|e| key_err(e.to_string()))?)
            }
            Err(e) => Err(key_err(e.to_string())),
        }
    }
}

/// Why the disk tier could not open, read or write.
#[derive(Debug, Error)]
pub enum DiskError {
    #[error("cache.disk.path `{path}`: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("disk cache I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a sluice cache file")]
    BadMagic,
    #[error("file is {actual} bytes but its header says {expected}")]
    LengthMismatch { expected: u64, actual: u64 },
    #[error("authentication tag mismatch (altered, or not written by sluice)")]
    Tag,
    #[error("written under another key (the disk cache key file was replaced)")]
    OtherKey,
    #[error("written by an earlier sluice (CRC-32 format, not authenticated)")]
    OldFormat,
    #[error("disk cache key `{path}`: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("stored response header unreadable: {0}")]
    Meta(String),
}

/// A point-in-time copy of the tier's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub bytes: u64,
    pub files: usize,
    /// Objects read back (promoted into memory).
    pub hits: u64,
    pub writes: u64,
    /// Writes dropped (queue full, object larger than the tier) or failed.
    pub dropped: u64,
    /// Files deleted because their size or authentication tag did not match.
    pub corrupt: u64,
    /// Files deleted unread: written under another key, or in the CRC-32 format of earlier
    /// versions.
    pub foreign: u64,
    pub evictions: u64,
}

/// An object read back from disk.
pub struct DiskObject {
    pub meta: CacheMeta,
    pub body: Bytes,
    pub primary: Option<String>,
    /// File size less the fixed header.
    stored_len: usize,
}

struct Entry {
    size: u64,
    tick: u64,
    primary: Option<Box<str>>,
}

/// Which files exist, their sizes and recency (least recent first in `order`).
#[derive(Default)]
struct Index {
    entries: HashMap<HashBinary, Entry>,
    order: BTreeMap<u64, HashBinary>,
    tick: u64,
    bytes: u64,
    /// Invalidations since the writer's queue was last empty: a queued write older than one
    /// of these must not bring the object back.
    removed: HashMap<HashBinary, u64>,
    removed_prefixes: Vec<(String, u64)>,
}

impl Index {
    fn touch(&mut self, hash: &HashBinary) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(e) = self.entries.get_mut(hash) {
            self.order.remove(&e.tick);
            e.tick = tick;
            self.order.insert(tick, *hash);
        }
    }

    fn insert(&mut self, hash: HashBinary, size: u64, primary: Option<Box<str>>) {
        self.remove(&hash);
        self.tick += 1;
        let tick = self.tick;
        self.order.insert(tick, hash);
        self.entries.insert(
            hash,
            Entry {
                size,
                tick,
                primary,
            },
        );
        self.bytes += size;
    }

    fn remove(&mut self, hash: &HashBinary) -> bool {
        match self.entries.remove(hash) {
            Some(e) => {
                self.order.remove(&e.tick);
                self.bytes -= e.size;
                true
            }
            None => false,
        }
    }

    /// The least recently used entry other than `keep`.
    fn oldest_except(&self, keep: &HashBinary) -> Option<HashBinary> {
        self.order.values().find(|h| *h != keep).copied()
    }
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    writes: AtomicU64,
    dropped: AtomicU64,
    corrupt: AtomicU64,
    foreign: AtomicU64,
    evictions: AtomicU64,
    /// Writes queued and not yet done.
    pending: AtomicUsize,
    /// Their body bytes.
    pending_bytes: AtomicUsize,
    /// Invalidation epoch: bumped by every removal.
    epoch: AtomicU64,
}

struct Inner {
    root: PathBuf,
    budget: u64,
    key: DiskKey,
    index: Mutex<Index>,
    counters: Counters,
}

struct WriteJob {
    hash: HashBinary,
    primary: Option<String>,
    meta: CacheMeta,
    body: Bytes,
    epoch: u64,
}

/// The disk tier; see the module docs.
pub struct DiskTier {
    inner: Arc<Inner>,
    queue: SyncSender<WriteJob>,
}

impl DiskTier {
    /// Open (creating it if needed) the tier at `root`, bounded to `budget` bytes of files
    /// authenticated with `key`: index the files there (deleting torn temp files, files that
    /// are not ours and files under another key) and start the writer thread.
    ///
    /// # Errors
    /// [`DiskError::Open`] when the directory cannot be created or read.
    pub fn open(root: &Path, budget: u64, key: DiskKey) -> Result<DiskTier, DiskError> {
        let open_err = |source| DiskError::Open {
            path: root.to_path_buf(),
            source,
        };
        private_dir(root).map_err(open_err)?;
        private_dir(&root.join("tmp")).map_err(open_err)?;
        // Temp files are writes a crash interrupted: never renamed, never valid.
        for entry in fs::read_dir(root.join("tmp")).map_err(open_err)?.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        let inner = Arc::new(Inner {
            root: root.to_path_buf(),
            budget,
            key,
            index: Mutex::new(Index::default()),
            counters: Counters::default(),
        });
        inner.scan().map_err(open_err)?;
        let (queue, jobs) = sync_channel::<WriteJob>(QUEUE);
        let writer = inner.clone();
        std::thread::Builder::new()
            .name("sluice-disk-cache".into())
            .spawn(move || {
                for job in jobs {
                    let len = job.body.len();
                    writer.write(job);
                    writer
                        .counters
                        .pending_bytes
                        .fetch_sub(len, Ordering::AcqRel);
                    if writer.counters.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                        // Nothing queued is older than the removals recorded so far.
                        let mut index = writer.index.lock();
                        index.removed.clear();
                        index.removed_prefixes.clear();
                    }
                }
            })
            .map_err(open_err)?;
        Ok(DiskTier { inner, queue })
    }

    /// Queue `body` under `hash` if it is worth keeping. Never blocks.
    pub fn store(&self, hash: HashBinary, primary: Option<&str>, meta: CacheMeta, body: Bytes) {
        let fresh_for = meta
            .fresh_until()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        if meta.response_header().status != 200 || fresh_for < MIN_FRESH_FOR_DISK {
            return;
        }
        let c = &self.inner.counters;
        let len = body.len();
        let queued = c.pending_bytes.fetch_add(len, Ordering::AcqRel);
        if len as u64 >= self.inner.budget || queued + len > QUEUE_BYTES.max(len) {
            c.pending_bytes.fetch_sub(len, Ordering::AcqRel);
            c.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let job = WriteJob {
            hash,
            primary: primary.map(str::to_string),
            meta,
            body,
            epoch: c.epoch.load(Ordering::Acquire),
        };
        c.pending.fetch_add(1, Ordering::AcqRel);
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                c.pending.fetch_sub(1, Ordering::AcqRel);
                c.pending_bytes.fetch_sub(len, Ordering::AcqRel);
                c.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Read `hash` back, verified. `None` when there is no such file, or it was torn or
    /// altered (then it is deleted).
    ///
    /// A file the index does not know is looked for too: during a graceful upgrade the old
    /// process keeps writing after this one indexed the directory. (A miss costs one failed
    /// `open` on the blocking pool, small beside the origin fetch that follows.)
    pub async fn load(&self, hash: &HashBinary) -> Option<DiskObject> {
        let inner = self.inner.clone();
        let hash = *hash;
        let read = tokio::task::spawn_blocking(move || {
            let path = inner.path_of(&hash);
            let result = read_object(&path, &hash, &inner.key);
            (inner.clone(), hash, result, path)
        })
        .await
        .ok()?;
        let (inner, hash, result, path) = read;
        match result {
            Ok(obj) => {
                let mut index = inner.index.lock();
                if index.entries.contains_key(&hash) {
                    index.touch(&hash);
                } else {
                    let size = (FIXED_HEADER + obj.stored_len) as u64;
                    index.insert(hash, size, obj.primary.as_deref().map(Into::into));
                }
                drop(index);
                inner.counters.hits.fetch_add(1, Ordering::Relaxed);
                Some(obj)
            }
            Err(e) => {
                let missing =
                    matches!(&e, DiskError::Io(io) if io.kind() == std::io::ErrorKind::NotFound);
                if !missing {
                    tracing::warn!(file = %path.display(), error = %e, "disk cache file dropped");
                    let counter = match e {
                        DiskError::OtherKey | DiskError::OldFormat => &inner.counters.foreign,
                        _ => &inner.counters.corrupt,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    let _ = fs::remove_file(&path);
                }
                inner.index.lock().remove(&hash);
                None
            }
        }
    }

    /// Delete the file of `hash` (an invalidation). Returns whether there was one.
    pub fn remove(&self, hash: &HashBinary) -> bool {
        let epoch = self.inner.counters.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let had = {
            let mut index = self.inner.index.lock();
            index.removed.insert(*hash, epoch);
            index.remove(hash)
        };
        let _ = fs::remove_file(self.inner.path_of(hash));
        had
    }

    /// Delete every file whose primary key starts with `prefix`. Returns how many.
    pub fn remove_prefix(&self, prefix: &str) -> usize {
        let epoch = self.inner.counters.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let doomed: Vec<HashBinary> = {
            let mut index = self.inner.index.lock();
            index.removed_prefixes.push((prefix.to_string(), epoch));
            let doomed: Vec<HashBinary> = index
                .entries
                .iter()
                .filter(|(_, e)| e.primary.as_deref().is_some_and(|p| p.starts_with(prefix)))
                .map(|(h, _)| *h)
                .collect();
            for h in &doomed {
                index.remove(h);
            }
            doomed
        };
        for h in &doomed {
            let _ = fs::remove_file(self.inner.path_of(h));
        }
        doomed.len()
    }

    pub fn stats(&self) -> DiskStats {
        let c = &self.inner.counters;
        let index = self.inner.index.lock();
        DiskStats {
            bytes: index.bytes,
            files: index.entries.len(),
            hits: c.hits.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            corrupt: c.corrupt.load(Ordering::Relaxed),
            foreign: c.foreign.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
        }
    }

    /// Wait (at most `limit`) until queued writes are on disk. For tests and shutdown.
    pub fn flush(&self, limit: Duration) -> bool {
        let start = std::time::Instant::now();
        while self.inner.counters.pending.load(Ordering::Acquire) > 0 {
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// The file an object is stored in (for tests that damage one).
    pub fn path_of(&self, hash: &HashBinary) -> PathBuf {
        self.inner.path_of(hash)
    }
}

impl Inner {
    fn path_of(&self, hash: &HashBinary) -> PathBuf {
        let name = hex::encode(hash);
        self.root.join(&name[..2]).join(name)
    }

    /// Index the files present, oldest modification first; delete what is not a cache file.
    fn scan(&self) -> std::io::Result<()> {
        let mut found = Vec::new();
        let mut foreign = 0u64;
        for dir in fs::read_dir(&self.root)?.flatten() {
            let name = dir.file_name();
            let name = name.to_string_lossy();
            if name == "tmp" || !dir.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(files) = fs::read_dir(dir.path()) else {
                continue;
            };
            for file in files.flatten() {
                let path = file.path();
                match index_entry(&path, &self.key) {
                    Ok((hash, size, modified, primary)) => {
                        found.push((modified, hash, size, primary))
                    }
                    Err(e) => {
                        if matches!(e, DiskError::OtherKey | DiskError::OldFormat) {
                            foreign += 1;
                        }
                        let _ = fs::remove_file(&path);
                    }
                }
            }
        }
        if foreign > 0 {
            self.counters.foreign.fetch_add(foreign, Ordering::Relaxed);
            tracing::warn!(
                files = foreign,
                dir = %self.root.display(),
                "disk cache files written under another key or by an earlier sluice (CRC-32 \
                 format) dropped unread"
            );
        }
        found.sort_by_key(|(modified, ..)| *modified);
        let mut index = self.index.lock();
        for (_, hash, size, primary) in found {
            index.insert(hash, size, primary);
        }
        while index.bytes > self.budget {
            let Some(oldest) = index.order.values().next().copied() else {
                break;
            };
            index.remove(&oldest);
            let _ = fs::remove_file(self.path_of(&oldest));
        }
        Ok(())
    }

    fn write(&self, job: WriteJob) {
        match self.write_file(&job) {
            Ok(Some(size)) => {
                self.counters.writes.fetch_add(1, Ordering::Relaxed);
                self.make_room(&job.hash, size);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "disk cache write failed");
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Write one object crash-safely; `None` when an invalidation came after it was queued.
    fn write_file(&self, job: &WriteJob) -> Result<Option<u64>, DiskError> {
        let (internal, header) = job
            .meta
            .serialize()
            .map_err(|e| DiskError::Meta(e.to_string()))?;
        let primary = job.primary.as_deref().unwrap_or("").as_bytes();
        let mut fixed = Vec::with_capacity(FIXED_HEADER);
        fixed.extend_from_slice(MAGIC);
        for len in [primary.len(), internal.len(), header.len()] {
            let len = u32::try_from(len).map_err(|_| DiskError::Meta("section too long".into()))?;
            fixed.extend_from_slice(&len.to_le_bytes());
        }
        fixed.extend_from_slice(&(job.body.len() as u64).to_le_bytes());
        fixed.extend_from_slice(&self.key.id);
        let tag = tag(
            &self.key,
            &fixed,
            &job.hash,
            [primary, &internal[..], &header[..], &job.body[..]],
        );
        fixed.extend_from_slice(&tag);
        let name = hex::encode(job.hash);
        let tmp = self.root.join("tmp").join(format!(
            "{name}.{}",
            self.counters.writes.load(Ordering::Relaxed)
        ));
        {
            // Cached media may be gated content: owner only, whatever the umask.
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            for part in [
                &fixed[..],
                primary,
                &internal[..],
                &header[..],
                &job.body[..],
            ] {
                f.write_all(part)?;
            }
            f.sync_all()?;
        }
        let size = (FIXED_HEADER + primary.len() + internal.len() + header.len()) as u64
            + job.body.len() as u64;
        let dest = self.path_of(&job.hash);
        let dir = self.root.join(&name[..2]);
        private_dir(&dir)?;
        // Checked and renamed under the index lock, so an invalidation either sees the file
        // (and deletes it) or is seen here (and the write is dropped).
        let mut index = self.index.lock();
        let removed_later = index.removed.get(&job.hash).is_some_and(|&e| e > job.epoch)
            || index.removed_prefixes.iter().any(|(p, e)| {
                *e > job.epoch && job.primary.as_deref().is_some_and(|k| k.starts_with(p))
            });
        if removed_later {
            drop(index);
            let _ = fs::remove_file(&tmp);
            return Ok(None);
        }
        if let Err(e) = fs::rename(&tmp, &dest) {
            drop(index);
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        index.insert(job.hash, size, job.primary.as_deref().map(Into::into));
        drop(index);
        // The rename itself survives a crash only once the directory is synced.
        File::open(&dir)?.sync_all()?;
        Ok(Some(size))
    }

    /// Evict least recently used files until the tier is within its budget.
    fn make_room(&self, keep: &HashBinary, _added: u64) {
        loop {
            let victim = {
                let mut index = self.index.lock();
                if index.bytes <= self.budget {
                    return;
                }
                let Some(victim) = index.oldest_except(keep) else {
                    return;
                };
                index.remove(&victim);
                victim
            };
            let _ = fs::remove_file(self.path_of(&victim));
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The HMAC-SHA256 tag of a file: over a label, its fixed header up to the tag (magic,
/// section lengths, key id), the cache key hash it is stored under, and its sections
/// (primary key, Pingora's internal meta, the response header, the body).
fn tag(key: &DiskKey, fixed: &[u8], hash: &HashBinary, sections: [&[u8]; 4]) -> [u8; 32] {
    let mut mac = key.mac();
    mac.update(MAC_LABEL);
    mac.update(&fixed[..TAG_AT]);
    mac.update(hash);
    for part in sections {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Lengths of a file's sections from its fixed header.
struct Sections {
    primary: usize,
    internal: usize,
    header: usize,
    body: u64,
}

impl Sections {
    /// The fixed header's lengths, once it is known to be this format under `key`.
    fn parse(fixed: &[u8], key: &DiskKey) -> Result<Sections, DiskError> {
        if fixed.starts_with(OLD_MAGIC) {
            return Err(DiskError::OldFormat);
        }
        if fixed.len() < FIXED_HEADER || &fixed[..8] != MAGIC {
            return Err(DiskError::BadMagic);
        }
        if fixed[KEY_ID_AT..TAG_AT] != key.id {
            return Err(DiskError::OtherKey);
        }
        let u32_at = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&fixed[i..i + 4]);
            u32::from_le_bytes(b)
        };
        let mut body = [0u8; 8];
        body.copy_from_slice(&fixed[20..28]);
        Ok(Sections {
            primary: u32_at(8) as usize,
            internal: u32_at(12) as usize,
            header: u32_at(16) as usize,
            body: u64::from_le_bytes(body),
        })
    }

    fn total(&self) -> u64 {
        (FIXED_HEADER + self.primary + self.internal + self.header) as u64 + self.body
    }
}

/// Read a whole file and verify it is what this sluice stored under `hash` (its tag, in
/// constant time).
fn read_object(path: &Path, hash: &HashBinary, key: &DiskKey) -> Result<DiskObject, DiskError> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let s = Sections::parse(&data, key)?;
    if s.total() != data.len() as u64 {
        return Err(DiskError::LengthMismatch {
            expected: s.total(),
            actual: data.len() as u64,
        });
    }
    let p0 = FIXED_HEADER;
    let (p1, p2, p3) = (
        p0 + s.primary,
        p0 + s.primary + s.internal,
        p0 + s.primary + s.internal + s.header,
    );
    let mut mac = key.mac();
    mac.update(MAC_LABEL);
    mac.update(&data[..TAG_AT]);
    mac.update(hash);
    mac.update(&data[p0..]);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&data[TAG_AT..FIXED_HEADER])
        .map_err(|_| DiskError::Tag)?;
    let data = Bytes::from(data);
    let meta = CacheMeta::deserialize(&data[p1..p2], &data[p2..p3])
        .map_err(|e| DiskError::Meta(e.to_string()))?;
    let primary = match s.primary {
        0 => None,
        _ => Some(String::from_utf8_lossy(&data[p0..p1]).into_owned()),
    };
    Ok(DiskObject {
        meta,
        body: data.slice(p3..),
        primary,
        stored_len: data.len() - FIXED_HEADER,
    })
}

/// A file's cache key hash, size, modification time and primary key.
type IndexEntry = (HashBinary, u64, SystemTime, Option<Box<str>>);

/// A file's index entry from its name and fixed header; an error if it is not a complete
/// cache file of ours under `key` (checked by size and key id; the tag is checked when it is
/// read).
fn index_entry(path: &Path, key: &DiskKey) -> Result<IndexEntry, DiskError> {
    let mut hash: HashBinary = Default::default();
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|name| hex::decode_to_slice(name, &mut hash).ok())
        .ok_or(DiskError::BadMagic)?;
    let mut f = File::open(path)?;
    let meta = f.metadata()?;
    let mut fixed = Vec::with_capacity(FIXED_HEADER);
    (&mut f).take(FIXED_HEADER as u64).read_to_end(&mut fixed)?;
    let s = Sections::parse(&fixed, key)?;
    if s.total() != meta.len() {
        return Err(DiskError::LengthMismatch {
            expected: s.total(),
            actual: meta.len(),
        });
    }
    let mut primary = vec![0u8; s.primary];
    f.read_exact(&mut primary)?;
    let primary = (!primary.is_empty())
        .then(|| String::from_utf8(primary).ok().map(String::into_boxed_str))
        .flatten();
    Ok((hash, meta.len(), meta.modified()?, primary))
}

/// Create `dir` (and its missing parents) `0700` whatever the umask: the disk tier's files
/// are the cache's bodies, for sluice alone. A directory that exists keeps its mode.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::key::CacheHashKey;
    use pingora_cache::CacheKey;
    use pingora_http::ResponseHeader;

    fn meta(fresh_for: Duration) -> CacheMeta {
        let mut h = ResponseHeader::build(200, None).expect("status");
        h.insert_header("content-type", "video/mp4")
            .expect("header");
        let now = SystemTime::now();
        CacheMeta::new(now + fresh_for, now, 0, 0, h)
    }

    const KEY: [u8; 32] = [7u8; 32];

    fn open(dir: &Path, budget: u64) -> Result<DiskTier, DiskError> {
        DiskTier::open(dir, budget, DiskKey::from_bytes(KEY))
    }

    fn hash(path: &str) -> HashBinary {
        CacheKey::new(path.to_string(), "").combined_bin()
    }

    fn store(tier: &DiskTier, path: &str, body: &[u8]) {
        tier.store(
            hash(path),
            Some(path),
            meta(Duration::from_secs(3600)),
            Bytes::copy_from_slice(body),
        );
        assert!(tier.flush(Duration::from_secs(10)));
    }

    #[tokio::test]
    async fn round_trip_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let tier = open(dir.path(), 1 << 20).expect("open");
        store(&tier, "/a", b"hello");
        let obj = tier.load(&hash("/a")).await.expect("stored");
        assert_eq!(&obj.body[..], b"hello");
        assert_eq!(obj.primary.as_deref(), Some("/a"));
        assert_eq!(obj.meta.response_header().status, 200);
        drop(tier);
        let again = open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(again.stats().files, 1);
        assert_eq!(
            &again.load(&hash("/a")).await.expect("kept").body[..],
            b"hello"
        );
    }

    #[tokio::test]
    async fn short_lived_and_non_200_objects_are_not_written() {
        let dir = tempfile::tempdir().expect("tmp");
        let tier = open(dir.path(), 1 << 20).expect("open");
        tier.store(
            hash("/live"),
            Some("/live"),
            meta(Duration::from_secs(5)),
            Bytes::from_static(b"x"),
        );
        assert!(tier.flush(Duration::from_secs(10)));
        assert_eq!(tier.stats().files, 0);
    }

    #[tokio::test]
    async fn damaged_files_are_deleted_and_missed() {
        let dir = tempfile::tempdir().expect("tmp");
        let tier = open(dir.path(), 1 << 20).expect("open");
        store(&tier, "/cut", &[7u8; 5000]);
        store(&tier, "/flip", &[7u8; 5000]);
        let cut = tier.path_of(&hash("/cut"));
        let len = fs::metadata(&cut).expect("file").len();
        File::options()
            .write(true)
            .open(&cut)
            .expect("open")
            .set_len(len - 1)
            .expect("truncate");
        let flip = tier.path_of(&hash("/flip"));
        let mut data = fs::read(&flip).expect("read");
        let i = data.len() - 1;
        data[i] ^= 1;
        fs::write(&flip, data).expect("write");
        assert!(tier.load(&hash("/cut")).await.is_none());
        assert!(tier.load(&hash("/flip")).await.is_none());
        assert_eq!(tier.stats().corrupt, 2);
        assert!(!cut.exists() && !flip.exists());
        assert_eq!(tier.stats().files, 0);
    }

    #[tokio::test]
    async fn bounded_by_evicting_the_least_recently_used() {
        let dir = tempfile::tempdir().expect("tmp");
        let tier = open(dir.path(), 4000).expect("open");
        store(&tier, "/1", &[1u8; 1000]);
        store(&tier, "/2", &[2u8; 1000]);
        store(&tier, "/3", &[3u8; 1000]);
        // Reading /1 makes /2 the least recently used.
        assert!(tier.load(&hash("/1")).await.is_some());
        store(&tier, "/4", &[4u8; 1000]);
        let stats = tier.stats();
        assert!(stats.bytes <= 4000, "{stats:?}");
        assert!(stats.evictions >= 1);
        assert!(tier.load(&hash("/2")).await.is_none());
        assert!(tier.load(&hash("/1")).await.is_some());
        assert!(tier.load(&hash("/4")).await.is_some());
        // Reopened, the bound still holds and torn temp files are gone.
        fs::write(dir.path().join("tmp").join("x.1"), b"torn").expect("tmp file");
        drop(tier);
        let again = open(dir.path(), 2500).expect("reopen");
        assert!(again.stats().bytes <= 2500);
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).expect("tmp").count(),
            0
        );
    }

    #[tokio::test]
    async fn removals_win_over_queued_writes() {
        let dir = tempfile::tempdir().expect("tmp");
        let tier = open(dir.path(), 1 << 20).expect("open");
        store(&tier, "/p/a", b"a");
        store(&tier, "/p/b", b"b");
        store(&tier, "/q/c", b"c");
        assert_eq!(tier.remove_prefix("/p/"), 2);
        assert!(tier.remove(&hash("/q/c")));
        assert_eq!(tier.stats().files, 0);
        // A write queued before an invalidation does not bring the object back.
        tier.store(
            hash("/r"),
            Some("/r"),
            meta(Duration::from_secs(3600)),
            Bytes::from_static(b"r"),
        );
        tier.remove(&hash("/r"));
        assert!(tier.flush(Duration::from_secs(10)));
        assert!(tier.load(&hash("/r")).await.is_none());
    }
    /// A file of the CRC-32 format of earlier versions, as they wrote it.
    fn write_old_format(path: &Path, primary: &str, body: &[u8]) {
        let (internal, header) = meta(Duration::from_secs(3600)).serialize().expect("meta");
        let mut rest = Vec::new();
        for part in [primary.as_bytes(), &internal[..], &header[..], body] {
            rest.extend_from_slice(part);
        }
        let mut data = OLD_MAGIC.to_vec();
        for len in [primary.len(), internal.len(), header.len()] {
            data.extend_from_slice(&(len as u32).to_le_bytes());
        }
        data.extend_from_slice(&(body.len() as u64).to_le_bytes());
        data.extend_from_slice(&crc32fast::hash(&rest).to_le_bytes());
        data.extend_from_slice(&rest);
        fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        fs::write(path, data).expect("write");
    }

    #[tokio::test]
    async fn altered_files_with_every_unkeyed_check_recomputed_are_refused() {
        use sha2::Digest;
        let dir = tempfile::tempdir().expect("tmp");
        let tier = open(dir.path(), 1 << 20).expect("open");
        for p in ["/body", "/header", "/primary", "/lengths"] {
            store(&tier, p, &[7u8; 5000]);
        }
        // Each file changed in a different part, then its tag replaced by what someone
        // without the key can compute (SHA-256 of the rest, an HMAC under a guessed key).
        let forge = |p: &str, at: fn(&[u8]) -> usize, guessed: bool| {
            let path = tier.path_of(&hash(p));
            let mut data = fs::read(&path).expect("read");
            let i = at(&data);
            data[i] ^= 1;
            let new_tag: [u8; 32] = if guessed {
                let mut m = DiskKey::from_bytes([0u8; 32]).mac();
                m.update(MAC_LABEL);
                m.update(&data[..TAG_AT]);
                m.update(&hash(p));
                m.update(&data[FIXED_HEADER..]);
                m.finalize().into_bytes().into()
            } else {
                let mut h = sha2::Sha256::new();
                h.update(&data[..TAG_AT]);
                h.update(&data[FIXED_HEADER..]);
                h.finalize().into()
            };
            data[TAG_AT..FIXED_HEADER].copy_from_slice(&new_tag);
            fs::write(&path, data).expect("write");
        };
        forge("/body", |d| d.len() - 1, false);
        forge("/header", |d| d.len() - 5000 - 3, true);
        forge("/primary", |_| FIXED_HEADER + 1, false);
        // Lengths: the primary one byte shorter, the header one byte longer (same total).
        let path = tier.path_of(&hash("/lengths"));
        let mut data = fs::read(&path).expect("read");
        data[8] -= 1;
        data[16] += 1;
        fs::write(&path, data).expect("write");
        for p in ["/body", "/header", "/primary", "/lengths"] {
            assert!(tier.load(&hash(p)).await.is_none(), "{p} served");
            assert!(!tier.path_of(&hash(p)).exists(), "{p} kept");
        }
        assert_eq!(tier.stats().corrupt, 4);
        assert_eq!(tier.stats().files, 0);
    }

    #[tokio::test]
    async fn a_file_copied_to_another_key_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let tier = open(dir.path(), 1 << 20).expect("open");
        store(&tier, "/paid", b"premium");
        store(&tier, "/free", b"free");
        fs::copy(tier.path_of(&hash("/paid")), tier.path_of(&hash("/free"))).expect("copy");
        assert!(tier.load(&hash("/free")).await.is_none());
        assert_eq!(tier.stats().corrupt, 1);
        assert_eq!(
            &tier.load(&hash("/paid")).await.expect("kept").body[..],
            b"premium"
        );
    }

    #[tokio::test]
    async fn files_under_another_key_or_the_old_format_are_dropped_unread() {
        let dir = tempfile::tempdir().expect("tmp");
        let tier = open(dir.path(), 1 << 20).expect("open");
        store(&tier, "/a", b"a");
        store(&tier, "/b", b"b");
        let old = tier.path_of(&hash("/old"));
        let tiny = tier.path_of(&hash("/tiny"));
        drop(tier);
        write_old_format(&old, "/old", &[1u8; 3000]);
        // Shorter than this format's fixed header.
        write_old_format(&tiny, "/tiny", b"");
        // Reopened under another key: nothing is indexed, everything is deleted and counted.
        let other =
            DiskTier::open(dir.path(), 1 << 20, DiskKey::from_bytes([9u8; 32])).expect("open");
        let stats = other.stats();
        assert_eq!((stats.files, stats.foreign, stats.corrupt), (0, 4, 0));
        for p in ["/a", "/b", "/old", "/tiny"] {
            assert!(!other.path_of(&hash(p)).exists(), "{p} kept");
        }
        // Found later (written by the other process of an upgrade): dropped when asked for.
        write_old_format(&old, "/old", &[1u8; 3000]);
        assert!(other.load(&hash("/old")).await.is_none());
        assert!(!old.exists());
        assert_eq!(other.stats().foreign, 5);
        // And the new key's own files are served.
        store(&other, "/c", b"c");
        assert_eq!(&other.load(&hash("/c")).await.expect("ours").body[..], b"c");
    }

    #[test]
    fn the_key_is_created_once_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::tempdir().expect("tmp");
        let first = DiskKey::load_or_create(state.path()).expect("created");
        let path = state.path().join(KEY_FILE);
        let mode = fs::metadata(&path).expect("key file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::read(&path).expect("read").len(), 32);
        let again = DiskKey::load_or_create(state.path()).expect("read back");
        assert_eq!(first.id, again.id);
        assert_eq!(first.key[..], again.key[..]);
        // Never shown.
        assert!(!format!("{first:?}").contains(&hex::encode(&first.key[..])));
        // No temporary file left behind.
        assert_eq!(fs::read_dir(state.path()).expect("dir").count(), 1);
        // Another directory, another key.
        let other = tempfile::tempdir().expect("tmp");
        assert_ne!(
            DiskKey::load_or_create(other.path()).expect("new").id,
            first.id
        );
        // A damaged key file is an error naming it, not a silent new key.
        fs::write(&path, b"short").expect("write");
        let e = DiskKey::load_or_create(state.path()).expect_err("refused");
        assert!(e.to_string().contains(KEY_FILE), "{e}");
        assert!(e.to_string().contains("32"), "{e}");
    }
}

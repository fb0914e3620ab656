//! Unit tests for [`MemoryStorage`], driven through pingora-cache's own traits the way
//! `HttpCache` drives them.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::FutureExt;
use pingora_cache::eviction::lru::Manager;
use pingora_cache::eviction::{CacheEntryId, CacheEntryKey, EvictionManager};
use pingora_cache::storage::{
    HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget, PurgeType, Storage,
};
use pingora_cache::trace::{Span, SpanHandle};
use pingora_cache::{CacheKey, CacheMeta};
use pingora_http::ResponseHeader;

use super::storage::{HIT_CHUNK_BYTES, PASSTHROUGH_MIN_WINDOW_BYTES};
use super::*;

fn leak(storage: MemoryStorage) -> &'static MemoryStorage {
    Box::leak(Box::new(storage))
}

fn new_storage() -> &'static MemoryStorage {
    leak(MemoryStorage::new(4, 64 << 20))
}

fn span() -> SpanHandle {
    Span::inactive().handle()
}

/// Keys as the proxy builds them: scheme, upstream host and path.
fn key(path: &str) -> CacheKey {
    CacheKey::new(format!("https://origin.test{path}"), "")
}

fn header(content_length: Option<usize>) -> ResponseHeader {
    let mut header = ResponseHeader::build(200, None).expect("valid status");
    header
        .insert_header("content-type", "video/mp2t")
        .expect("valid header");
    if let Some(len) = content_length {
        header
            .insert_header("content-length", len.to_string())
            .expect("valid header");
    }
    header
}

fn fresh_meta(content_length: Option<usize>) -> CacheMeta {
    let now = SystemTime::now();
    CacheMeta::new(
        now + Duration::from_secs(300),
        now,
        30,
        30,
        header(content_length),
    )
}

async fn miss(storage: &'static MemoryStorage, key: &CacheKey, meta: &CacheMeta) -> MissHandler {
    storage
        .get_miss_handler(key, meta, &span())
        .await
        .expect("miss handler")
}

/// Write `body` in `chunk`-sized pieces with a Content-Length, finish, return the weight.
async fn store(storage: &'static MemoryStorage, key: &CacheKey, body: &[u8]) -> usize {
    let mut writer = miss(storage, key, &fresh_meta(Some(body.len()))).await;
    for chunk in body.chunks(7) {
        writer
            .write_body(Bytes::copy_from_slice(chunk), false)
            .await
            .expect("write");
    }
    writer.write_body(Bytes::new(), true).await.expect("eof");
    match writer.finish().await.expect("finish") {
        MissFinishType::Created(size) => size,
        MissFinishType::Appended(..) => panic!("a new object is created, not appended"),
    }
}

async fn lookup(
    storage: &'static MemoryStorage,
    key: &CacheKey,
) -> Option<(CacheMeta, HitHandler)> {
    storage.lookup(key, &span()).await.expect("lookup")
}

async fn read_all(hit: &mut HitHandler) -> pingora_error::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = hit.read_body().await? {
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn storage_error(e: &pingora_error::Error) -> Option<&StorageError> {
    e.root_cause().downcast_ref::<StorageError>()
}

fn body_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn write_then_read() {
    let storage = new_storage();
    let k = key("/seg/1.ts");
    assert!(lookup(storage, &k).await.is_none());

    let body = body_of(100);
    let weight = store(storage, &k, &body).await;

    let (meta, mut hit) = lookup(storage, &k).await.expect("stored");
    assert!(meta.is_fresh(SystemTime::now()));
    assert_eq!(meta.response_header().status, 200);
    assert_eq!(
        meta.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"video/mp2t"[..])
    );
    assert_eq!(read_all(&mut hit).await.expect("body"), body);
    assert!(hit.read_body().await.expect("eof").is_none());

    // One number for the eviction manager, the hit and the accounting.
    assert!(weight > body.len(), "weight includes a header estimate");
    assert_eq!(hit.get_eviction_weight(), weight);
    assert!(hit.should_count_access());
    assert_eq!(storage.bytes_stored(), weight);
    assert_eq!(storage.objects(), 1);
}

#[tokio::test]
async fn complete_hits_are_returned_in_bounded_zero_copy_slices() {
    let storage = new_storage();
    let k = key("/seg/big.ts");
    let body = body_of(HIT_CHUNK_BYTES * 2 + 10);
    store(storage, &k, &body).await;

    let (_, mut hit) = lookup(storage, &k).await.expect("stored");
    let first = hit.read_body().await.expect("read").expect("chunk");
    assert_eq!(first.len(), HIT_CHUNK_BYTES);
    let (_, mut again) = lookup(storage, &k).await.expect("stored");
    let same = again.read_body().await.expect("read").expect("chunk");
    assert_eq!(
        first.as_ptr(),
        same.as_ptr(),
        "two hits share the stored bytes instead of copying them"
    );
}

#[tokio::test]
async fn seek_reads_only_the_range() {
    let storage = new_storage();
    let k = key("/seg/range.ts");
    store(storage, &k, b"test1test2").await;

    let (_, mut hit) = lookup(storage, &k).await.expect("stored");
    assert!(hit.can_seek());
    let err = hit
        .seek(10, None)
        .expect_err("start at the length is out of range");
    assert_eq!(
        storage_error(&err),
        Some(&StorageError::SeekOutOfRange { start: 10, len: 10 })
    );

    hit.seek(5, None).expect("seek");
    assert_eq!(read_all(&mut hit).await.expect("body"), b"test2");

    hit.seek(4, Some(5)).expect("seek");
    assert_eq!(read_all(&mut hit).await.expect("body"), b"1");

    // An end past the body is clamped.
    hit.seek(8, Some(1000)).expect("seek");
    assert_eq!(read_all(&mut hit).await.expect("body"), b"t2");
}

#[tokio::test]
async fn partial_reader_sees_every_byte_in_order_while_the_writer_streams() {
    let storage = new_storage();
    let k = key("/seg/live.ts");
    let chunks: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 1000]).collect();
    let total: usize = chunks.iter().map(Vec::len).sum();
    let mut writer = miss(storage, &k, &fresh_meta(Some(total))).await;

    let (meta, mut hit) = lookup(storage, &k).await.expect("partial hit");
    assert!(meta.is_fresh(SystemTime::now()));
    assert!(!hit.should_count_access());
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(chunk) = hit.read_body().await.expect("no error") {
            seen.push(chunk);
        }
        seen
    });

    for chunk in &chunks {
        tokio::time::sleep(Duration::from_millis(10)).await;
        writer
            .write_body(Bytes::from(chunk.clone()), false)
            .await
            .expect("write");
    }
    writer.write_body(Bytes::new(), true).await.expect("eof");
    writer.finish().await.expect("finish");

    let seen = reader.await.expect("reader task");
    assert!(
        seen.len() > 1,
        "bytes arrived while the write was in flight"
    );
    assert_eq!(seen.concat(), chunks.concat());
}

#[tokio::test]
async fn partial_reader_waits_at_end_of_written_bytes_until_finish() {
    let storage = new_storage();
    let k = key("/seg/waits.ts");
    let mut writer = miss(storage, &k, &fresh_meta(None)).await;
    let (_, mut hit) = lookup(storage, &k).await.expect("partial hit");

    assert!(
        hit.read_body().now_or_never().is_none(),
        "nothing written yet"
    );
    writer
        .write_body(Bytes::from_static(b"abc"), true)
        .await
        .expect("write");
    assert_eq!(
        hit.read_body().await.expect("read").as_deref(),
        Some(&b"abc"[..])
    );
    // End of stream was written, but the write is not committed until finish.
    assert!(hit.read_body().now_or_never().is_none());
    writer.finish().await.expect("finish");
    assert!(hit.read_body().await.expect("eof").is_none());
}

#[tokio::test]
async fn partial_reader_gets_an_error_when_the_writer_is_dropped() {
    let storage = new_storage();
    let k = key("/seg/broken.ts");
    let mut writer = miss(storage, &k, &fresh_meta(None)).await;
    let (_, mut hit) = lookup(storage, &k).await.expect("partial hit");

    writer
        .write_body(Bytes::from_static(b"first"), false)
        .await
        .expect("write");
    assert_eq!(
        hit.read_body().await.expect("read").as_deref(),
        Some(&b"first"[..])
    );
    let reader = tokio::spawn(async move { hit.read_body().await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(writer); // the origin failed mid-body

    let err = reader
        .await
        .expect("reader task")
        .expect_err("a short body must not look complete");
    assert_eq!(storage_error(&err), Some(&StorageError::WriterDropped));
    assert!(lookup(storage, &k).await.is_none(), "nothing committed");
    assert_eq!(
        storage.stats(),
        StorageStats {
            abandoned_writes: 1,
            ..StorageStats::default()
        }
    );
}

#[tokio::test]
async fn lookup_prefers_a_write_in_flight_over_the_older_object() {
    let storage = new_storage();
    let k = key("/live/index.m3u8");
    store(storage, &k, b"old").await;

    let mut meta = fresh_meta(None);
    meta.response_header_mut()
        .insert_header("x-version", "2")
        .expect("valid header");
    let mut writer = miss(storage, &k, &meta).await;

    let (seen, mut hit) = lookup(storage, &k).await.expect("hit");
    assert_eq!(
        seen.headers().get("x-version").map(|v| v.as_bytes()),
        Some(&b"2"[..]),
        "the refreshed header is served, not the old one"
    );
    writer
        .write_body(Bytes::from_static(b"new"), true)
        .await
        .expect("write");
    writer.finish().await.expect("finish");
    assert_eq!(read_all(&mut hit).await.expect("body"), b"new");

    let (_, mut hit) = lookup(storage, &k).await.expect("hit");
    assert_eq!(read_all(&mut hit).await.expect("body"), b"new");
    assert_eq!(storage.objects(), 1, "replaced, not added");
}

#[tokio::test]
async fn streaming_write_tag_finds_only_its_own_write() {
    let storage = new_storage();
    let k = key("/seg/tagged.ts");
    let mut first = miss(storage, &k, &fresh_meta(None)).await;
    let second = miss(storage, &k, &fresh_meta(None)).await;
    let tag = first.streaming_write_tag().expect("tag").to_vec();
    assert_ne!(Some(&tag[..]), second.streaming_write_tag());

    let (_, mut own) = storage
        .lookup_streaming_write(&k, Some(&tag), &span())
        .await
        .expect("lookup")
        .expect("own write");
    first
        .write_body(Bytes::from_static(b"mine"), false)
        .await
        .expect("write");
    assert_eq!(
        own.read_body().await.expect("read").as_deref(),
        Some(&b"mine"[..])
    );

    let unknown = 999_999u64.to_be_bytes();
    assert!(storage
        .lookup_streaming_write(&k, Some(&unknown), &span())
        .await
        .expect("lookup")
        .is_none());
    let err = storage
        .lookup_streaming_write(&k, Some(b"bad"), &span())
        .await
        .err()
        .expect("a malformed tag is an error, not a panic");
    assert_eq!(storage_error(&err), Some(&StorageError::BadWriteTag(3)));
}

#[tokio::test]
async fn partial_hit_can_seek_and_waits_for_the_range() {
    let storage = new_storage();
    let k = key("/seg/partial-range.ts");
    let mut writer = miss(storage, &k, &fresh_meta(Some(10))).await;
    let (_, mut hit) = lookup(storage, &k).await.expect("partial hit");
    assert!(hit.can_seek());
    hit.seek(3, Some(8)).expect("seek before the bytes exist");

    let reader = tokio::spawn(async move { read_all(&mut hit).await });
    for chunk in [&b"tes"[..], b"t1te", b"st2"] {
        tokio::time::sleep(Duration::from_millis(5)).await;
        writer
            .write_body(Bytes::from_static(chunk), false)
            .await
            .expect("write");
    }
    // The range is satisfied before the write finishes.
    assert_eq!(reader.await.expect("task").expect("body"), b"t1tes");
    writer.finish().await.expect("finish");

    // A start past the final length is an error once the length is known.
    let mut writer = miss(storage, &key("/seg/short.ts"), &fresh_meta(None)).await;
    let (_, mut hit) = lookup(storage, &key("/seg/short.ts")).await.expect("hit");
    hit.seek(20, None).expect("length unknown yet");
    writer
        .write_body(Bytes::from_static(b"0123456789"), true)
        .await
        .expect("write");
    writer.finish().await.expect("finish");
    let err = hit.read_body().await.expect_err("start beyond the body");
    assert_eq!(
        storage_error(&err),
        Some(&StorageError::SeekOutOfRange { start: 20, len: 10 })
    );
}

#[tokio::test]
async fn purge_removes_complete_and_in_flight_objects_and_accounting_drops_to_zero() {
    let storage = new_storage();
    let done = key("/seg/done.ts");
    let writing = key("/seg/writing.ts");
    store(storage, &done, &body_of(500)).await;
    let mut writer = miss(storage, &writing, &fresh_meta(None)).await;
    writer
        .write_body(Bytes::from(body_of(300)), false)
        .await
        .expect("write");
    assert!(storage.bytes_stored() > 800);

    for k in [&done, &writing] {
        let outcome = storage
            .purge(
                PurgeTarget::Active(&k.to_compact()),
                PurgeType::Invalidation,
                &span(),
            )
            .await
            .expect("purge");
        assert_eq!(outcome, PurgeOutcome::Purged(None));
    }
    assert!(lookup(storage, &done).await.is_none());
    assert!(lookup(storage, &writing).await.is_none());
    assert_eq!(storage.objects(), 0);

    // The purged write is never committed, and its bytes go when it ends.
    let err = writer.finish().await.err().expect("purged write fails");
    assert_eq!(storage_error(&err), Some(&StorageError::PurgedWhileWriting));
    assert!(lookup(storage, &writing).await.is_none());
    assert_eq!(storage.bytes_stored(), 0);
    assert_eq!(storage.stats().invalidations, 1);

    let again = storage
        .purge(
            PurgeTarget::Active(&done.to_compact()),
            PurgeType::Invalidation,
            &span(),
        )
        .await
        .expect("purge");
    assert_eq!(again, PurgeOutcome::NotFound);
}

#[tokio::test]
async fn readers_of_a_write_purged_in_flight_still_get_the_whole_body() {
    let storage = new_storage();
    let k = key("/seg/purged-mid-write.ts");
    let mut writer = miss(storage, &k, &fresh_meta(Some(6))).await;
    let (_, mut hit) = lookup(storage, &k).await.expect("partial hit");
    writer
        .write_body(Bytes::from_static(b"abc"), false)
        .await
        .expect("write");
    assert!(!storage.purge_exact_primary("https://origin.test/seg/purged-mid-write.ts", None));
    assert!(
        lookup(storage, &k).await.is_none(),
        "purged write is hidden"
    );
    writer
        .write_body(Bytes::from_static(b"def"), true)
        .await
        .expect("write");
    assert!(writer.finish().await.is_err());
    assert_eq!(read_all(&mut hit).await.expect("body"), b"abcdef");
    assert!(lookup(storage, &k).await.is_none());
}

#[tokio::test]
async fn exact_identified_targets_are_not_found() {
    let storage = new_storage();
    let k = key("/seg/identified.ts");
    store(storage, &k, b"body").await;
    let entry = CacheEntryKey::identified(k.to_compact(), CacheEntryId::new(1));
    let outcome = storage
        .purge(PurgeTarget::Exact(&entry), PurgeType::Eviction, &span())
        .await
        .expect("purge");
    assert_eq!(outcome, PurgeOutcome::NotFound);
    assert_eq!(storage.objects(), 1);

    let entry = CacheEntryKey::key_only(k.to_compact());
    let outcome = storage
        .purge(PurgeTarget::Exact(&entry), PurgeType::Eviction, &span())
        .await
        .expect("purge");
    assert_eq!(outcome, PurgeOutcome::Purged(None));
    assert_eq!(storage.evictions(), 1);
    assert_eq!(storage.bytes_stored(), 0);
}

#[tokio::test]
async fn eviction_purge_leaves_a_write_in_flight_alone() {
    let storage = new_storage();
    let k = key("/seg/refilling.ts");
    store(storage, &k, b"old").await;
    let mut writer = miss(storage, &k, &fresh_meta(None)).await;
    let entry = CacheEntryKey::key_only(k.to_compact());
    storage
        .purge(PurgeTarget::Exact(&entry), PurgeType::Eviction, &span())
        .await
        .expect("purge");
    writer
        .write_body(Bytes::from_static(b"new"), true)
        .await
        .expect("write");
    writer.finish().await.expect("the refill commits");
    let (_, mut hit) = lookup(storage, &k).await.expect("hit");
    assert_eq!(read_all(&mut hit).await.expect("body"), b"new");
}

#[tokio::test]
async fn purge_prefix_removes_only_matching_keys_and_untracks_them() {
    let storage = new_storage();
    let manager = Manager::<1>::with_capacity(usize::MAX, 16);
    let paths = [
        "/live/a/1.ts",
        "/live/a/2.ts",
        "/live/a/index.m3u8",
        "/live/b/1.ts",
        "/vod/a/1.ts",
    ];
    for path in paths {
        let k = key(path);
        let weight = store(storage, &k, path.as_bytes()).await;
        manager.admit(
            CacheEntryKey::key_only(k.to_compact()),
            weight,
            SystemTime::now(),
        );
    }

    let removed = storage.purge_prefix("https://origin.test/live/a/", Some(&manager));
    assert_eq!(removed, 3);
    for path in &paths[..3] {
        assert!(lookup(storage, &key(path)).await.is_none(), "{path} purged");
    }
    for path in &paths[3..] {
        assert!(lookup(storage, &key(path)).await.is_some(), "{path} kept");
    }
    assert_eq!(storage.objects(), 2);
    assert_eq!(manager.total_items(), 2);
    assert_eq!(
        manager.total_size(),
        storage.bytes_stored(),
        "the eviction manager stops counting what was purged"
    );

    assert!(storage.purge_exact_primary("https://origin.test/vod/a/1.ts", Some(&manager)));
    assert!(!storage.purge_exact_primary("https://origin.test/vod/a/1.ts", Some(&manager)));
    assert_eq!(storage.objects(), 1);
    assert_eq!(manager.total_size(), storage.bytes_stored());
}

#[tokio::test]
async fn expire_makes_the_object_stale_but_keeps_the_body() {
    let storage = new_storage();
    let k = key("/vod/index.m3u8");
    store(storage, &k, b"#EXTM3U").await;

    let outcome = storage
        .expire(PurgeTarget::Active(&k.to_compact()), &span())
        .await
        .expect("expire");
    assert_eq!(outcome, PurgeOutcome::Expired);
    let (meta, mut hit) = lookup(storage, &k).await.expect("still stored");
    assert!(!meta.is_fresh(SystemTime::now() + Duration::from_secs(1)));
    assert!(
        meta.serve_stale_while_revalidate(SystemTime::now()),
        "the serve-stale windows are kept"
    );
    assert_eq!(read_all(&mut hit).await.expect("body"), b"#EXTM3U");

    let absent = storage
        .expire(PurgeTarget::Active(&key("/nope").to_compact()), &span())
        .await
        .expect("expire");
    assert_eq!(absent, PurgeOutcome::NotFound);
}

#[tokio::test]
async fn update_meta_replaces_header_and_times_and_reports_absence() {
    let storage = new_storage();
    let k = key("/vod/revalidated.m3u8");
    assert!(!storage
        .update_meta(&k, &fresh_meta(None), &span())
        .await
        .expect("no panic when absent"));

    store(storage, &k, b"#EXTM3U").await;
    let weight = storage.bytes_stored();
    // As pingora builds it after a 304: admitted long ago, revalidated now.
    let long_ago = SystemTime::now() - Duration::from_secs(3600);
    let mut meta = CacheMeta::new(long_ago, long_ago, 0, 0, header(Some(7)));
    meta.update_freshness(SystemTime::now() + Duration::from_secs(60), 5, 6);
    meta.response_header_mut()
        .insert_header("etag", "\"v2\"")
        .expect("valid header");
    assert!(storage
        .update_meta(&k, &meta, &span())
        .await
        .expect("update"));

    let (seen, mut hit) = lookup(storage, &k).await.expect("stored");
    assert!(seen.is_fresh(SystemTime::now()));
    assert!(
        seen.age() < Duration::from_secs(60),
        "age counts from the revalidation"
    );
    assert_eq!(seen.stale_while_revalidate_sec(), 5);
    assert_eq!(seen.stale_if_error_sec(), 6);
    assert_eq!(
        seen.headers().get("etag").map(|v| v.as_bytes()),
        Some(&b"\"v2\""[..])
    );
    assert_eq!(read_all(&mut hit).await.expect("body"), b"#EXTM3U");
    assert_eq!(storage.bytes_stored(), weight, "weight is fixed at commit");
}

#[tokio::test]
async fn oversize_objects_are_refused_or_passed_through() {
    let storage = leak(MemoryStorage::new(2, 1 << 20).with_max_object_bytes(10));
    assert_eq!(storage.max_object_bytes(), 10);

    // Known too large from Content-Length: refused up front.
    let err = storage
        .get_miss_handler(&key("/big-cl.ts"), &fresh_meta(Some(11)), &span())
        .await
        .err()
        .expect("refused");
    assert_eq!(
        storage_error(&err),
        Some(&StorageError::ObjectTooLarge { size: 11, max: 10 })
    );

    // Chunked: when it outgrows the limit it becomes a pass-through. Its readers get every
    // byte and a clean end; nothing is committed and no new reader can join.
    let k = key("/big-chunked.ts");
    let mut writer = miss(storage, &k, &fresh_meta(None)).await;
    let (_, mut hit) = lookup(storage, &k).await.expect("partial hit");
    writer
        .write_body(Bytes::from_static(b"12345678"), false)
        .await
        .expect("within the limit");
    writer
        .write_body(Bytes::from_static(b"9ab"), false)
        .await
        .expect("over the limit: passed through, not an error");
    assert!(lookup(storage, &k).await.is_none(), "no reader joins now");
    writer
        .write_body(Bytes::from_static(b"cdef"), true)
        .await
        .expect("more");
    assert!(matches!(
        writer
            .finish()
            .await
            .expect("a pass-through finishes cleanly"),
        MissFinishType::Created(0)
    ));
    assert_eq!(
        read_all(&mut hit).await.expect("whole body"),
        b"123456789abcdef"
    );
    assert!(lookup(storage, &k).await.is_none(), "never committed");
    let stats = storage.stats();
    assert_eq!(
        (
            stats.bytes_stored,
            stats.inflight_bytes,
            stats.inflight_writes,
            stats.refused_writes,
            stats.passthrough_writes,
            stats.uncached_too_large,
        ),
        (0, 0, 0, 1, 1, 2)
    );
}

#[tokio::test]
async fn a_pass_through_keeps_only_what_its_readers_have_not_read() {
    let storage = leak(MemoryStorage::new(1, 64 << 20).with_max_object_bytes(1 << 20));
    let k = key("/window.ts");
    let mut writer = miss(storage, &k, &fresh_meta(None)).await;
    let (_, mut fast) = lookup(storage, &k).await.expect("partial hit");
    let (_, mut stalled) = lookup(storage, &k).await.expect("partial hit");
    let chunk = Bytes::from(body_of(1 << 20));
    let (mut sent, mut read) = (0usize, 0usize);
    // Past the object limit at once; the fast reader keeps up, the other reads nothing.
    while sent <= PASSTHROUGH_MIN_WINDOW_BYTES + (2 << 20) {
        writer
            .write_body(chunk.clone(), false)
            .await
            .expect("write");
        sent += chunk.len();
        while read < sent {
            read += fast.read_body().await.expect("read").expect("bytes").len();
        }
        // Once passed through, the stalled reader pins what it has not read (counted as in
        // flight), up to the window.
        if sent > 1 << 20 {
            assert_eq!(
                storage.stats().inflight_bytes,
                sent.min(PASSTHROUGH_MIN_WINDOW_BYTES)
            );
        }
    }
    // Past the window the stalled reader is cut, not the writer nor the fast reader.
    let err = stalled.read_body().await.expect_err("fell behind");
    assert!(matches!(
        storage_error(&err),
        Some(StorageError::ReaderFellBehind { pos: 0, .. })
    ));
    drop(stalled);
    // With only the fast reader left, nothing unread is kept.
    writer
        .write_body(chunk.clone(), false)
        .await
        .expect("write");
    assert_eq!(storage.stats().inflight_bytes, chunk.len());
    writer.write_body(Bytes::new(), true).await.expect("eof");
    writer.finish().await.expect("finish");
    assert_eq!(storage.stats().inflight_bytes, 0);
    let mut rest = 0;
    while let Some(b) = fast.read_body().await.expect("read") {
        rest += b.len();
    }
    assert_eq!(rest, chunk.len());
}

/// Readers that stop reading cannot pin a pass-through's unread bytes past the budget: with
/// no room left, the pass-through keeps what it holds and the stalled reader is cut, while the
/// writer and a reader that keeps up go on (before: the stalled reader pinned its whole window,
/// counted over the budget, for as many pass-throughs as there were stalled viewers).
#[tokio::test]
async fn a_pass_through_window_stays_within_the_budget() {
    let budget = 1 << 20;
    let chunk_len = 64 << 10;
    let storage = leak(MemoryStorage::new(1, budget).with_max_object_bytes(512 << 10));
    let k = key("/over-budget.ts");
    let mut writer = miss(storage, &k, &fresh_meta(None)).await;
    let (_, mut fast) = lookup(storage, &k).await.expect("partial hit");
    let (_, mut stalled) = lookup(storage, &k).await.expect("partial hit");
    let chunk = Bytes::from(body_of(chunk_len));
    let (mut sent, mut read) = (0usize, 0usize);
    // Past the object limit (a pass-through) and then past the budget, 64 KiB at a time.
    while sent < 3 << 20 {
        writer
            .write_body(chunk.clone(), false)
            .await
            .expect("the writer never waits for or fails on a stalled reader");
        sent += chunk.len();
        while read < sent {
            read += fast.read_body().await.expect("read").expect("bytes").len();
        }
        let inflight = storage.stats().inflight_bytes;
        assert!(
            inflight <= budget + chunk_len,
            "{inflight} bytes in flight at {sent} written, budget {budget}"
        );
    }
    let err = stalled.read_body().await.expect_err("cut");
    assert!(matches!(
        storage_error(&err),
        Some(StorageError::ReaderFellBehind { pos: 0, .. })
    ));
    writer.write_body(Bytes::new(), true).await.expect("eof");
    writer.finish().await.expect("finish");
    assert_eq!(storage.stats().inflight_bytes, 0);
    assert_eq!(read, sent);
}

#[tokio::test]
async fn in_flight_writes_reserve_what_has_arrived_within_the_budget() {
    let step = super::storage::RESERVE_STEP_BYTES;
    let budget = 2 << 20;
    let storage = leak(MemoryStorage::new(1, budget));
    // Announced 1 MiB, nothing arrived: the entry's overhead and one step are reserved, not
    // the announced length, so a fill that stalls does not hold what it announced.
    let mut first = miss(storage, &key("/r1.ts"), &fresh_meta(Some(1 << 20))).await;
    let overhead = storage.stats().inflight_bytes - step;
    assert!(
        overhead > 0 && overhead < 1000,
        "entry overhead: {overhead}"
    );
    // What arrives is reserved, a step ahead.
    first
        .write_body(Bytes::from(body_of(300 << 10)), false)
        .await
        .expect("write");
    assert_eq!(
        storage.stats().inflight_bytes,
        overhead + (300 << 10) + step
    );
    // A second fill starts beside it, and passes through once its bytes do not fit.
    let k = key("/r2.ts");
    let mut second = miss(storage, &k, &fresh_meta(None)).await;
    let (_, mut hit) = lookup(storage, &k).await.expect("partial hit");
    let big = body_of(budget);
    second
        .write_body(Bytes::from(big.clone()), false)
        .await
        .expect("past the budget: passed through");
    second.write_body(Bytes::new(), true).await.expect("eof");
    second.finish().await.expect("finish");
    assert_eq!(read_all(&mut hit).await.expect("whole"), big);
    drop(first);
    let stats = storage.stats();
    assert_eq!((stats.inflight_bytes, stats.inflight_writes), (0, 0));
    assert_eq!(stats.uncached_over_budget, 1);
    assert_eq!(stats.passthrough_writes, 1);
}

/// Store `body` under `k` as `HttpCache` does with an eviction manager: admit the finished
/// size and purge what the manager evicts.
async fn store_admitted(
    storage: &'static MemoryStorage,
    manager: &'static Manager<1>,
    k: &CacheKey,
    body: &[u8],
) {
    let meta = fresh_meta(Some(body.len()));
    let mut writer = miss(storage, k, &meta).await;
    writer
        .write_body(Bytes::copy_from_slice(body), true)
        .await
        .expect("write");
    let MissFinishType::Created(size) = writer.finish().await.expect("finish") else {
        panic!("created");
    };
    let evicted = manager.admit(
        CacheEntryKey::key_only(k.to_compact()),
        size,
        meta.fresh_until(),
    );
    for item in evicted {
        storage
            .purge(PurgeTarget::Exact(&item), PurgeType::Eviction, &span())
            .await
            .expect("purge");
    }
}

#[tokio::test]
async fn a_fill_at_the_high_water_mark_evicts_cold_objects_to_make_room() {
    let budget = 80_000;
    let limit = budget - budget / 8;
    let manager: &'static Manager<1> = Box::leak(Box::new(Manager::with_capacity(limit, 64)));
    let storage = leak(MemoryStorage::new(2, budget).with_eviction(manager));
    for i in 0..20 {
        store_admitted(
            storage,
            manager,
            &key(&format!("/cold/{i}.ts")),
            &body_of(5000),
        )
        .await;
    }
    let before = storage.bytes_stored();
    assert!(
        before <= limit && before + 20_000 > budget,
        "at high water: {before}"
    );
    // 20000 bytes do not fit in what is left: the fill evicts the coldest objects as its
    // bytes arrive, and commits.
    let k = key("/new/seg.ts");
    store_admitted(storage, manager, &k, &body_of(20_000)).await;
    let (_, mut hit) = lookup(storage, &k)
        .await
        .expect("the new segment is cached");
    assert_eq!(read_all(&mut hit).await.expect("body"), body_of(20_000));
    assert!(storage.evictions() >= 3, "{:?}", storage.stats());
    assert!(
        lookup(storage, &key("/cold/0.ts")).await.is_none(),
        "the coldest object made room"
    );
    assert!(lookup(storage, &key("/cold/19.ts")).await.is_some());
    let stats = storage.stats();
    assert_eq!(stats.uncached_over_budget, 0);
    assert_eq!(stats.inflight_bytes, 0);
    assert!(stats.bytes_stored <= limit);
    // One number for both: what the storage holds is what the manager tracks.
    assert_eq!(stats.bytes_stored, manager.total_size());
    assert_eq!(stats.objects, manager.total_items());
}

#[tokio::test]
async fn an_abandoned_fill_is_no_longer_tracked_by_the_eviction_manager() {
    let manager: &'static Manager<1> = Box::leak(Box::new(Manager::with_capacity(usize::MAX, 64)));
    let storage = leak(MemoryStorage::new(1, 1 << 20).with_eviction(manager));
    let old = key("/kept.ts");
    store_admitted(storage, manager, &old, &body_of(3000)).await;
    let tracked = manager.total_size();
    // A fill that fails mid-body, and a refresh of a stored object that fails.
    for k in [key("/failed.ts"), old.clone()] {
        let mut writer = miss(storage, &k, &fresh_meta(Some(9000))).await;
        writer
            .write_body(Bytes::from(body_of(4000)), false)
            .await
            .expect("write");
        assert!(manager.total_size() > tracked, "a growing fill is tracked");
        drop(writer);
        assert_eq!(manager.total_size(), tracked, "and forgotten when it fails");
    }
    assert_eq!(manager.total_size(), storage.bytes_stored());
    assert_eq!(manager.total_items(), 1);
}

#[tokio::test]
async fn body_shorter_than_content_length_is_not_committed() {
    let storage = new_storage();
    let k = key("/seg/short-body.ts");
    let mut writer = miss(storage, &k, &fresh_meta(Some(10))).await;
    let (_, mut hit) = lookup(storage, &k).await.expect("partial hit");
    writer
        .write_body(Bytes::from_static(b"12345"), true)
        .await
        .expect("write");
    let err = writer.finish().await.err().expect("length mismatch");
    assert_eq!(
        storage_error(&err),
        Some(&StorageError::LengthMismatch {
            expected: 10,
            actual: 5
        })
    );
    let err = read_all(&mut hit)
        .await
        .expect_err("reader never sees a short body as complete");
    assert_eq!(
        storage_error(&err),
        Some(&StorageError::LengthMismatch {
            expected: 10,
            actual: 5
        })
    );
    assert!(lookup(storage, &k).await.is_none());
    assert_eq!(storage.bytes_stored(), 0);
}

#[tokio::test]
async fn writes_are_refused_once_the_budget_is_reached() {
    let storage = leak(MemoryStorage::new(1, 2000));
    store(storage, &key("/fills-budget.ts"), &body_of(1500)).await;
    let err = storage
        .get_miss_handler(&key("/next.ts"), &fresh_meta(Some(600)), &span())
        .await
        .err()
        .expect("over budget");
    assert!(matches!(
        storage_error(&err),
        Some(StorageError::OverBudget { budget: 2000, .. })
    ));
    assert_eq!(storage.stats().refused_writes, 1);
    assert!(storage.bytes_stored() <= 2000);
}

#[tokio::test]
async fn write_after_end_of_stream_is_an_error_not_a_panic() {
    let storage = new_storage();
    let k = key("/seg/eof.ts");
    let mut writer = miss(storage, &k, &fresh_meta(None)).await;
    writer
        .write_body(Bytes::from_static(b"a"), true)
        .await
        .expect("write");
    let err = writer
        .write_body(Bytes::from_static(b"b"), false)
        .await
        .expect_err("after eof");
    assert_eq!(storage_error(&err), Some(&StorageError::WriteAfterEof));
    assert!(writer.finish().await.is_err());
    assert_eq!(storage.bytes_stored(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_readers_keep_accounting_consistent() {
    let storage = leak(MemoryStorage::new(8, 64 << 20));
    let mut tasks = Vec::new();
    for task in 0..32usize {
        tasks.push(tokio::spawn(async move {
            let mut kept = 0;
            for i in 0..20usize {
                let k = key(&format!("/smoke/{task}/{i}.ts"));
                let body = body_of(100 + task * 7 + i);
                let weight = store(storage, &k, &body).await;
                let (_, mut hit) = lookup(storage, &k).await.expect("own write visible");
                assert_eq!(read_all(&mut hit).await.expect("body"), body);
                if i % 2 == 0 {
                    let outcome = storage
                        .purge(
                            PurgeTarget::Active(&k.to_compact()),
                            PurgeType::Invalidation,
                            &span(),
                        )
                        .await
                        .expect("purge");
                    assert_eq!(outcome, PurgeOutcome::Purged(None));
                } else {
                    kept += weight;
                }
                tokio::task::yield_now().await;
            }
            kept
        }));
    }
    let mut expected = 0;
    for task in tasks {
        expected += task.await.expect("task");
    }
    let stats = storage.stats();
    assert_eq!(stats.objects, 32 * 10);
    assert_eq!(stats.bytes_stored, expected);
    assert_eq!(stats.inflight_bytes, 0);
    assert_eq!(stats.inflight_writes, 0);
    assert_eq!(stats.invalidations, 32 * 10);
}

#[tokio::test]
async fn pingora_lru_manager_keeps_the_storage_within_its_limit() {
    let storage = leak(MemoryStorage::new(4, 1 << 20));
    let limit = 20_000;
    let manager = Manager::<4>::with_capacity(limit, 64);
    let mut admitted = 0;
    for i in 0..50 {
        let k = key(&format!("/lru/{i}.ts"));
        let meta = fresh_meta(Some(1000));
        // As HttpCache::finish_miss_handler does: admit the finished size, purge the evicted.
        let mut writer = miss(storage, &k, &meta).await;
        writer
            .write_body(Bytes::from(body_of(1000)), true)
            .await
            .expect("write");
        let MissFinishType::Created(size) = writer.finish().await.expect("finish") else {
            panic!("created");
        };
        admitted += size;
        let evicted = manager.admit(
            CacheEntryKey::key_only(k.to_compact()),
            size,
            meta.fresh_until(),
        );
        for item in evicted {
            storage
                .purge(PurgeTarget::Exact(&item), PurgeType::Eviction, &span())
                .await
                .expect("purge");
        }
    }
    assert!(admitted > limit);
    assert!(storage.bytes_stored() <= limit);
    assert_eq!(storage.bytes_stored(), manager.total_size());
    assert_eq!(storage.objects(), manager.total_items());
    assert_eq!(storage.evictions() as usize, manager.evicted_items());
    assert_eq!(
        storage.stats().evicted_bytes as usize,
        manager.evicted_size()
    );
}

#[tokio::test]
async fn a_late_eviction_of_a_fill_that_has_committed_since_is_ignored() {
    use pingora_cache::eviction::CacheEntryKeyRef;
    let manager: &'static super::eviction::NewestKept<1> = Box::leak(Box::new(
        super::eviction::NewestKept::with_capacity(usize::MAX, 64),
    ));
    let storage = leak(MemoryStorage::new(1, 1 << 20).with_eviction(manager));
    let k = key("/seg/late.ts");
    let entry = CacheEntryKey::key_only(k.to_compact());
    // Pingora chose this key's entry while it was a fill in flight (admitting another
    // object); the fill commits, and only then does pingora's purge task run.
    let mut writer = miss(storage, &k, &fresh_meta(Some(100))).await;
    writer
        .write_body(Bytes::from(body_of(100)), true)
        .await
        .expect("write");
    writer.finish().await.expect("finish");
    assert!(manager.peek(&entry), "tracked from its commit");
    let outcome = storage
        .purge(PurgeTarget::Exact(&entry), PurgeType::Eviction, &span())
        .await
        .expect("purge");
    assert_eq!(outcome, PurgeOutcome::NotFound);
    assert!(
        lookup(storage, &k).await.is_some(),
        "the fresh object stays"
    );
    // An eviction the manager stands by (it no longer tracks the key) removes it.
    manager.remove(CacheEntryKeyRef::KeyOnly(&k.to_compact()));
    let outcome = storage
        .purge(PurgeTarget::Exact(&entry), PurgeType::Eviction, &span())
        .await
        .expect("purge");
    assert_eq!(outcome, PurgeOutcome::Purged(None));
    assert!(lookup(storage, &k).await.is_none());
    assert_eq!(storage.bytes_stored(), manager.total_size());
}

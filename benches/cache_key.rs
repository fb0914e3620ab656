//! Cost of the cache key of a `/stream` request: path classification, the origin path
//! (`Upstream::object_path`), the primary string (`Upstream::cache_primary`), the
//! `CacheKey` (`CacheRuntime::key`) and its hash (`combined_bin`, which the storage and the
//! cache lock compute on every lookup).
//!
//! Run: `cargo bench --bench cache_key -- --warm-up-time 1 --measurement-time 2`.
//! Throughput is in keys per second.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pingora_cache::key::CacheHashKey;
use sluice::cache::runtime::CacheRuntime;
use sluice::config::{parse_bucket, Origins};
use sluice::edge::route::{classify, Route};
use sluice::upstream::Upstream;

fn bench(c: &mut Criterion) {
    let origins = Origins {
        bucket: parse_bucket("http://bucket.example.internal:9000/media").unwrap(),
        connect_timeout: Duration::from_secs(3),
        read_timeout: Duration::from_secs(15),
        host_header: None,
        resolve: Vec::new(),
    };
    let upstream = Upstream::new(&origins, PathBuf::new());
    let exts: Vec<String> = ["m3u8", "m4s", "mp4", "ts", "aac", "vtt", "mpd"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let path = "/stream/a1b2c3d4e5f6/video/1080p/segment_184032.m4s";

    let mut group = c.benchmark_group("cache_key");
    group.throughput(Throughput::Elements(1));
    group.bench_function("classify_path", |b| {
        b.iter(|| classify(black_box(path), &exts).unwrap())
    });
    let Ok(Route::Stream(sp)) = classify(path, &exts) else {
        panic!("not a stream path")
    };
    let rest = sp.rest_encoded();
    group.bench_function("object_path", |b| {
        b.iter(|| upstream.object_path(black_box(&sp.hash), black_box(&rest)))
    });
    let object = upstream.object_path(&sp.hash, &rest);
    group.bench_function("cache_primary", |b| {
        b.iter(|| upstream.cache_primary(black_box(&object)))
    });
    let primary = upstream.cache_primary(&object);
    group.bench_function("key", |b| b.iter(|| CacheRuntime::key(black_box(&primary))));
    group.bench_function("key_combined_hash", |b| {
        b.iter(|| CacheRuntime::key(black_box(&primary)).combined_bin())
    });
    group.bench_function("whole_request", |b| {
        b.iter(|| {
            let Ok(Route::Stream(sp)) = classify(black_box(path), &exts) else {
                unreachable!()
            };
            let object = upstream.object_path(&sp.hash, &sp.rest_encoded());
            CacheRuntime::key(&upstream.cache_primary(&object)).combined_bin()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Cost of verifying each token scheme (`sluice::auth`), the check that runs on every
//! key request, signed-channel call, gated media request and provider API call.
//!
//! Run: `cargo bench --bench tokens -- --warm-up-time 1 --measurement-time 2`.
//! Each case verifies one valid token (the success path does all the work: MAC, decode,
//! parse, claim checks); throughput is in verifications per second.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use jsonwebtoken::{EncodingKey, Header};
use sluice::auth::{jwt, key_token, request_sig, stream_token};

const SECRET: &[u8] = b"bench-secret-0123456789abcdef0123456789abcdef";
const NOW: i64 = 1_714_564_800;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("token_verify");
    group.throughput(Throughput::Elements(1));

    let key = key_token::mint(SECRET, "a1b2c3d4e5f6", NOW + 300);
    group.bench_function("key_token", |b| {
        b.iter(|| key_token::verify(SECRET, black_box(&key), "a1b2c3d4e5f6", NOW).unwrap())
    });

    let path = "/api/v1/channels/sports-1/stream";
    let sig = request_sig::sign(SECRET, NOW, path);
    let ts = NOW.to_string();
    group.bench_function("request_sig", |b| {
        b.iter(|| request_sig::verify(SECRET, black_box(&sig), &ts, path, NOW, 300).unwrap())
    });

    let signer = stream_token::StreamTokenSigner::new(SECRET);
    let claims = stream_token::new_claims(
        "user-42",
        "movie-1234",
        "MOVIE",
        "1080p",
        "device-abc",
        "profile-1",
        "203.0.113.7".parse().unwrap(),
        5,
        3600,
        NOW,
    );
    let st = signer.sign(&claims).unwrap();
    group.bench_function("stream_token", |b| {
        b.iter(|| signer.verify(black_box(&st), NOW).unwrap())
    });

    let verifier = jwt::BearerVerifier::new(SECRET, Some("issuer.example".into()), None);
    let bearer = jsonwebtoken::encode(
        &Header::default(),
        &serde_json::json!({"sub": "provider-7", "iss": "issuer.example", "exp": NOW + 600}),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    group.bench_function("jwt_bearer", |b| {
        b.iter(|| verifier.verify_at(black_box(&bearer), NOW).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

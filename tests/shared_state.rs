//! A fleet behaves as one (issue 13): three real sluice processes sharing one real
//! `redis-server` (`state.redis`). A revocation answered by one node is refused by the others,
//! `maxUses` is exact across nodes under concurrency, a ctx minted on one node plays through
//! another, admin writes on one node route on the others (and survive a `kill -9` of
//! redis-server, AOF `appendfsync always`), rate limits count across nodes, a Redis outage
//! fails closed and heals without restarting sluice, and `sluice state migrate` moves a
//! single node's state to Redis and back. Propagation and staleness are measured, printed
//! (`cargo test --test shared_state -- --nocapture`), and bounded.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::gated::{admin, child_of, entry, get, health, token, until, MASTER, MEDIA};
use common::{
    client, fleet_admin_key, metric, metrics, random_bytes, sluice_bin, RedisServer, Reply,
    RunningOrigin, Sluice, TestOrigin,
};
use serde_json::{json, Value};

const STREAM_SECRET: &str = "fleet-stream-secret-0123456789";
const KEY_SECRET: &str = "fleet-key-token-secret-0123456789";
const PROVIDER_SECRET: &str = "fleet-provider-jwt-secret-012345";
const KEK: &str = "3333333333333333333333333333333333333333333333333333333333333333";
/// The staleness bound sluice promises for credential checks (pub/sub + heartbeat).
const STALENESS_BOUND: Duration = Duration::from_secs(1);

fn env() -> Vec<(&'static str, &'static str)> {
    vec![("KEY_TOKEN_SECRET", KEY_SECRET), ("FLEET_KEK", KEK)]
}

fn origin() -> RunningOrigin {
    let hls = "application/vnd.apple.mpegurl";
    TestOrigin::new()
        .route("/movie-gated/master.m3u8", Reply::ok(MASTER, hls))
        .route("/movie-gated/v720/playlist.m3u8", Reply::ok(MEDIA, hls))
        .route(
            "/movie-gated/v720/seg_1.m4s",
            Reply::ok(random_bytes(4000, 1), "video/iso.segment"),
        )
        .route(
            "/movie-open/seg.m4s",
            Reply::ok(random_bytes(3000, 2), "video/iso.segment"),
        )
        .route("/live/ch1/master.m3u8", Reply::ok(MEDIA, hls))
        .route(
            "/live/ch1/seg_1.m4s",
            Reply::ok(random_bytes(2000, 3), "video/iso.segment"),
        )
        .start_on("127.0.0.2")
}

/// Every node's config (the harness adds listen, state and server). One test server plays
/// the bucket (by the name `bucket.test`, pinned to its address) and the provider's CDN (by
/// its address): a provider may never name the bucket's origin.
fn config(o: &RunningOrigin, rate_limit_api: u32) -> String {
    let a = o.addr;
    let (ip, port) = (a.ip(), a.port());
    format!(
        r#"origins:
  bucket: http://bucket.test:{port}
  resolve: [{ip}]
admin:
  rate_limit_api: {rate_limit_api}
streaming:
  secret: {STREAM_SECRET}
  contents:
    - id: gated
      hash: movie-gated
      token_required: true
      max_uses: 5
kek:
  current: {{id: k1, env: FLEET_KEK}}
provider_auth:
  jwt_secret: {PROVIDER_SECRET}
  ctx_per_subject: 2
providers:
  acme:
    allowed_hosts: ["127.0.0.2"]
    allow_private: true
    ctx_ttl: 2s
    channels:
      ch1: {{url: "http://{a}/live/ch1/master.m3u8", type: hls}}
"#
    )
}

struct Fleet {
    redis: RedisServer,
    _origin: RunningOrigin,
    nodes: Vec<Sluice>,
    key: String,
}

impl Fleet {
    /// `states[i]`: extra `state:` lines of node i.
    fn start(states: &[&str]) -> Fleet {
        Self::start_limited(states, 1000)
    }

    fn start_limited(states: &[&str], rate_limit_api: u32) -> Fleet {
        let redis = RedisServer::start();
        let origin = origin();
        let cfg = config(&origin, rate_limit_api);
        let nodes: Vec<Sluice> = states
            .iter()
            .map(|st| Sluice::start_node(&redis, st, &cfg, &env()))
            .collect();
        let key = fleet_admin_key(&nodes.iter().collect::<Vec<_>>());
        Fleet {
            redis,
            _origin: origin,
            nodes,
            key,
        }
    }
}

async fn verify_message(s: &Sluice, t: &str) -> Value {
    let (_, body) = get(s, &format!("/api/v2/streaming/verify?token={t}")).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    v.get("remainingUses")
        .cloned()
        .unwrap_or_else(|| v["message"].clone())
}

fn cli(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(sluice_bin())
        .args(args)
        .arg("-c")
        .arg(config)
        .envs(env())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn revoke_on_a_is_refused_on_b_and_c() {
    let f = Fleet::start(&["", "", ""]);
    let (a, b, c) = (&f.nodes[0], &f.nodes[1], &f.nodes[2]);
    let t = token(a, &f.key).await;
    // Started on B, its credential works on every node.
    let (st, master) = get(b, &entry(&t)).await;
    assert_eq!(st, 200, "{master}");
    let child = child_of(&master);
    for n in &f.nodes {
        assert_eq!(get(n, &child).await.0, 200, "credential refused on a node");
    }
    let r = client()
        .post(a.edge_url("/api/v2/streaming/revoke"))
        .bearer_auth(&f.key)
        .json(&json!({"streamToken": t}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let revoked = Instant::now();
    // An entry load asks Redis: refused at once on every node, no polling.
    for n in [b, c] {
        let (st, body) = get(n, &entry(&t)).await;
        assert_eq!(st, 410, "{body}");
        assert!(body.contains("Token revoked"), "{body}");
        assert_eq!(verify_message(n, &t).await, json!("Token revoked"));
    }
    // A credential is checked against each node's pub/sub-fed copy: measured.
    let mut seen = Vec::new();
    let child = child.as_str();
    for (name, n) in [("B", b), ("C", c)] {
        until(
            "credential refused after the revoke",
            Duration::from_secs(3),
            || async move { get(n, child).await.0 == 410 },
        )
        .await;
        seen.push((name, revoked.elapsed()));
    }
    eprintln!(
        "measured: revocation on A refused credentials on {seen:?} after the revoke answered"
    );
    for (name, d) in &seen {
        assert!(
            *d <= STALENESS_BOUND,
            "node {name} trusted a stale revocation set for {d:?}"
        );
    }
}

#[tokio::test]
async fn max_uses_exact_across_nodes_under_concurrency() {
    let f = Fleet::start(&["", "", ""]);
    let t = token(&f.nodes[0], &f.key).await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let url = f.nodes[i % 3].edge_url(&entry(&t));
        tasks.push(tokio::spawn(async move {
            let r = client().get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let (st, body) = task.await.unwrap();
        match st {
            200 => ok += 1,
            403 => assert!(body.contains("Max uses exceeded"), "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(
        ok, 5,
        "60 concurrent starts on 3 nodes of a maxUses 5 token"
    );
    for n in &f.nodes {
        assert_eq!(verify_message(n, &t).await, json!("Max uses exceeded"));
    }
    // A fresh token: uses spent on different nodes add up.
    let t = token(&f.nodes[1], &f.key).await;
    for n in &f.nodes {
        assert_eq!(get(n, &entry(&t)).await.0, 200);
    }
    for n in &f.nodes {
        assert_eq!(verify_message(n, &t).await, json!(2));
    }
}

fn provider_jwt(sub: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(PROVIDER_SECRET.as_bytes()),
    )
    .unwrap()
}

async fn stream_info(s: &Sluice, sub: &str) -> String {
    let resp = client()
        .get(s.edge_url("/api/providers/acme/channels/ch1/stream"))
        .bearer_auth(provider_jwt(sub))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.unwrap();
    v["url"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn ctx_minted_on_a_plays_through_b() {
    let f = Fleet::start(&["", "", ""]);
    let (a, b, c) = (&f.nodes[0], &f.nodes[1], &f.nodes[2]);
    let url = stream_info(a, "viewer-1").await;
    let (st, playlist) = get(b, &url).await;
    assert_eq!(st, 200, "{playlist}");
    let seg = playlist
        .lines()
        .find(|l| l.starts_with("/api/proxy?"))
        .unwrap_or_else(|| panic!("not rewritten: {playlist}"))
        .to_string();
    assert_eq!(get(c, &seg).await.0, 200);
    // Sliding expiry across nodes: used every 0.7 s on alternating nodes, the 2 s ctx
    // outlives its idle lifetime...
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(get(&f.nodes[i % 3], &url).await.0, 200, "use {i}");
    }
    // ...and, left idle past it, is gone on every node.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    for n in &f.nodes {
        let (st, body) = get(n, &url).await;
        assert_eq!(st, 404, "{body}");
    }
    // The per-subject quota (2) is fleet-wide: a third ctx minted on C replaces the one
    // minted on A, on every node.
    let first = stream_info(a, "viewer-2").await;
    let _second = stream_info(b, "viewer-2").await;
    for n in &f.nodes {
        assert_eq!(get(n, &first).await.0, 200);
    }
    let _third = stream_info(c, "viewer-2").await;
    let mut gone = Vec::new();
    let first = first.as_str();
    for n in &f.nodes {
        gone.push(
            until(
                "replaced ctx refused",
                Duration::from_secs(3),
                || async move { get(n, first).await.0 == 404 },
            )
            .await,
        );
    }
    eprintln!("measured: a replaced ctx was refused on every node within {gone:?}");
}

#[tokio::test]
async fn admin_writes_on_a_route_on_c() {
    let mut f = Fleet::start(&["", "", ""]);
    let key = f.key.clone();
    // A player id registered on A routes on C: measured.
    let (st, v) = admin(
        &f.nodes[0],
        "POST",
        "/api/stream-ids",
        &key,
        Some(json!({"publisher": "movie-open", "player": "alias1"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let written = Instant::now();
    let mut routed = Vec::new();
    for n in &f.nodes[1..] {
        until(
            "stream id routed on another node",
            Duration::from_secs(5),
            || async move { get(n, "/stream/alias1/seg.m4s").await.0 == 200 },
        )
        .await;
        routed.push(written.elapsed());
    }
    eprintln!("measured: stream id added on A routed on B, C after {routed:?}");
    for d in &routed {
        assert!(*d <= STALENESS_BOUND, "admin write took {d:?} to propagate");
    }
    let (st, v) = admin(&f.nodes[1], "GET", "/api/stream-ids", &key, None).await;
    assert_eq!(st, 200);
    assert_eq!(v["data"][0]["player"], "alias1", "{v}");
    // Its publisher is taken: shadowing is judged fleet-wide.
    let (st, _) = admin(
        &f.nodes[2],
        "POST",
        "/api/stream-ids",
        &key,
        Some(json!({"publisher": "x", "player": "alias1"})),
    )
    .await;
    assert_eq!(st, 409);

    // An API key made on A works on C at once (keys are read from Redis, never cached).
    let (st, v) = admin(
        &f.nodes[0],
        "POST",
        "/api/keys",
        &key,
        Some(json!({"name": "reader", "permissions": "read"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let reader = v["api_key"].as_str().unwrap().to_string();
    assert_eq!(
        admin(&f.nodes[2], "GET", "/api/stream-ids", &reader, None)
            .await
            .0,
        200
    );

    // A content key stored on A is delivered by C.
    let (st, v) = admin(
        &f.nodes[0],
        "PUT",
        "/api/content-keys/movie-1",
        &key,
        Some(json!({"generate": true})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let key_hex = v["key_hex"].as_str().unwrap().to_string();
    let kt = sluice::auth::key_token::mint(
        KEY_SECRET.as_bytes(),
        "movie-1",
        chrono::Utc::now().timestamp() + 600,
    );
    let fetch = |n: usize| {
        let url = f.nodes[n].edge_url("/api/key/movie-1");
        let kt = kt.clone();
        async move {
            let r = client().get(url).bearer_auth(kt).send().await.unwrap();
            (r.status().as_u16(), hex::encode(r.bytes().await.unwrap()))
        }
    };
    assert_eq!(fetch(2).await, (200, key_hex.clone()));

    // The CLI works on the fleet's Redis: a key made with B's config works on C, and
    // revoked from the CLI it is refused on A.
    let (ok, out, err) = cli(
        &f.nodes[1].config_path,
        &["keys", "create", "--name", "cli", "--permissions", "read"],
    );
    assert!(ok, "{err}");
    assert_eq!(
        admin(&f.nodes[2], "GET", "/api/stream-ids", &out, None)
            .await
            .0,
        200
    );
    let (ok, list, err) = cli(&f.nodes[2].config_path, &["keys", "list"]);
    assert!(ok, "{err}");
    assert!(list.contains("cli") && list.contains("reader"), "{list}");
    let prefix = &out[..8];
    let (ok, _, err) = cli(&f.nodes[0].config_path, &["keys", "revoke", prefix]);
    assert!(ok, "{err}");
    assert_eq!(
        admin(&f.nodes[0], "GET", "/api/stream-ids", &out, None)
            .await
            .0,
        401
    );
    let (ok, _, err) = cli(
        &f.nodes[0].config_path,
        &[
            "content-key",
            "import",
            "--hash",
            "movie-2",
            "--key-hex",
            "00112233445566778899aabbccddeeff",
        ],
    );
    assert!(ok, "{err}");

    // Deleted on B, unrouted on A and C: measured.
    assert_eq!(
        admin(&f.nodes[1], "DELETE", "/api/stream-ids/alias1", &key, None)
            .await
            .0,
        200
    );
    let deleted = Instant::now();
    for n in [&f.nodes[0], &f.nodes[2]] {
        until(
            "stream id removed on another node",
            Duration::from_secs(5),
            || async move { get(n, "/stream/alias1/seg.m4s").await.0 == 404 },
        )
        .await;
    }
    eprintln!(
        "measured: stream id deleted on B unrouted on A and C after {:?}",
        deleted.elapsed()
    );

    // Acknowledged writes survive kill -9 of redis-server (AOF, appendfsync always), and the
    // nodes reconnect by themselves.
    let (st, _) = admin(
        &f.nodes[0],
        "POST",
        "/api/stream-ids",
        &key,
        Some(json!({"publisher": "movie-open", "player": "alias2"})),
    )
    .await;
    assert_eq!(st, 200);
    f.redis.restart();
    for n in &f.nodes {
        until(
            "node healthy after redis restart",
            Duration::from_secs(10),
            || async move { health(n).await["status"] == "ok" },
        )
        .await;
    }
    assert_eq!(get(&f.nodes[2], "/stream/alias2/seg.m4s").await.0, 200);
    assert_eq!(
        admin(&f.nodes[1], "GET", "/api/stream-ids", &reader, None)
            .await
            .0,
        200
    );
    assert_eq!(fetch(1).await, (200, key_hex));
    let t = sluice::auth::key_token::mint(
        KEY_SECRET.as_bytes(),
        "movie-2",
        chrono::Utc::now().timestamp() + 600,
    );
    let r = client()
        .get(f.nodes[2].edge_url("/api/key/movie-2"))
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    assert_eq!(
        hex::encode(r.bytes().await.unwrap()),
        "00112233445566778899aabbccddeeff"
    );
    // Only one node ever made (and printed) the default key.
    assert_eq!(fleet_admin_key(&f.nodes.iter().collect::<Vec<_>>()), key);
}

#[tokio::test]
async fn rate_limit_counted_across_nodes() {
    let f = Fleet::start_limited(&["", "", ""], 9);
    // admin.rate_limit_api: 9 per client per minute, for the whole fleet.
    for _ in 0..3 {
        for n in &f.nodes {
            assert_eq!(
                admin(n, "GET", "/api/stream-ids", &f.key, None).await.0,
                200
            );
        }
    }
    for n in &f.nodes {
        let (st, v) = admin(n, "GET", "/api/stream-ids", &f.key, None).await;
        assert_eq!(st, 429, "{v}");
        assert_eq!(
            v,
            json!({"status": "error", "message": "Rate limit exceeded"})
        );
    }
    let m = metrics(&f.nodes[0]).await;
    assert!(
        metric(
            &m,
            "sluice_redis_ops_total{op=\"rate_limit\",outcome=\"ok\"}"
        ) >= 3.0,
        "{m}"
    );
}

#[tokio::test]
async fn redis_kill9_fails_closed_then_recovers() {
    // A and B fail closed (the default); C lets playback and key delivery fail open.
    let mut f = Fleet::start(&["", "", "  redis_fail_open: [playback, key_delivery]\n"]);
    let (st, v) = admin(
        &f.nodes[0],
        "PUT",
        "/api/content-keys/movie-1",
        &f.key,
        Some(json!({"generate": true})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let kt = sluice::auth::key_token::mint(
        KEY_SECRET.as_bytes(),
        "movie-1",
        chrono::Utc::now().timestamp() + 600,
    );
    let key_status = |n: usize| {
        let url = f.nodes[n].edge_url("/api/key/movie-1");
        let kt = kt.clone();
        async move {
            let r = client().get(url).bearer_auth(kt).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    assert_eq!(key_status(2).await.0, 200);
    let t1 = token(&f.nodes[0], &f.key).await;
    let t2 = token(&f.nodes[0], &f.key).await;
    let (st, master) = get(&f.nodes[0], &entry(&t1)).await;
    assert_eq!(st, 200);
    let child = child_of(&master);
    assert_eq!(get(&f.nodes[0], "/stream/movie-open/seg.m4s").await.0, 200);

    f.redis.kill9();
    let killed = Instant::now();
    let a = &f.nodes[0];
    // Credentials: refused once the local revocation set can no longer be trusted.
    let child_path = child.as_str();
    let stale = until(
        "credential refused without redis",
        Duration::from_secs(3),
        || async move { get(a, child_path).await.0 == 503 },
    )
    .await;
    eprintln!("measured: credentials failed closed {stale:?} after redis-server was killed");
    let mut slowest = Duration::ZERO;
    let mut timed = |d: Duration| slowest = slowest.max(d);
    let t0 = Instant::now();
    let (st, body) = get(a, &entry(&t2)).await;
    timed(t0.elapsed());
    assert_eq!(st, 503, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"statusCode": 503, "message": "Service temporarily unavailable", "error": "Service Unavailable"})
    );
    let t0 = Instant::now();
    let (st, body) = key_status(1).await;
    timed(t0.elapsed());
    assert_eq!(
        (st, body.as_str()),
        (503, r#"{"error":"Service temporarily unavailable"}"#)
    );
    let t0 = Instant::now();
    let (st, v) = admin(a, "GET", "/api/stream-ids", &f.key, None).await;
    timed(t0.elapsed());
    assert_eq!(st, 503);
    assert_eq!(
        v,
        json!({"status": "error", "message": "Service temporarily unavailable"})
    );
    // Non-gated media keeps serving; the node says it is degraded, not down.
    assert_eq!(get(a, "/stream/movie-open/seg.m4s").await.0, 200);
    until(
        "health says redis is unavailable",
        Duration::from_secs(3),
        || async move { health(a).await["redis"] == "unavailable" },
    )
    .await;
    let resp = client().get(a.edge_url("/health")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let h: Value = resp.json().await.unwrap();
    assert_eq!(
        (h["status"].as_str(), h["redis"].as_str()),
        (Some("degraded"), Some("unavailable"))
    );
    assert_eq!(metric(&metrics(a).await, "sluice_redis_up"), 0.0);
    // C fails open where told to: playback on its own knowledge, the key it last read.
    let c = &f.nodes[2];
    assert_eq!(get(c, &entry(&t2)).await.0, 200);
    assert_eq!(get(c, &child).await.0, 200);
    assert_eq!(key_status(2).await.0, 200);
    eprintln!("measured: slowest fail-closed answer without redis {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "a request waited {slowest:?} on a dead redis"
    );

    // Back after an outage long enough for the reconnect backoff to reach its ceiling:
    // every node heals without a restart, and says so.
    let down_for = Duration::from_secs(3).saturating_sub(killed.elapsed());
    tokio::time::sleep(down_for).await;
    f.redis.restart();
    let back = Instant::now();
    for n in &f.nodes {
        until("healthy again", Duration::from_secs(10), || async move {
            health(n).await["status"] == "ok"
        })
        .await;
    }
    eprintln!(
        "measured: fleet healthy {:?} after redis-server restarted",
        back.elapsed()
    );
    assert_eq!(get(a, &entry(&t2)).await.0, 200);
    assert_eq!(get(a, &child).await.0, 200);
    assert_eq!(key_status(1).await.0, 200);
    assert!(a.log().contains("redis reconnected"), "{}", a.log());
    assert!(
        metric(
            &metrics(a).await,
            "sluice_redis_reconnects_total{connection=\"command\"}"
        ) >= 1.0
    );
}

#[tokio::test]
async fn state_migrate_sqlite_to_redis_and_back() {
    let redis = RedisServer::start();
    let o = origin();
    let cfg = config(&o, 1000);
    // One node on SQLite, with a key, a stream id, a content key and a revocation.
    let single = Sluice::start_with_env(&cfg, &env());
    let key = common::admin_key(&single);
    let (st, _) = admin(
        &single,
        "POST",
        "/api/stream-ids",
        &key,
        Some(json!({"publisher": "movie-open", "player": "alias1"})),
    )
    .await;
    assert_eq!(st, 200);
    let (st, v) = admin(
        &single,
        "PUT",
        "/api/content-keys/movie-1",
        &key,
        Some(json!({"key_hex": "00112233445566778899aabbccddeeff"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let revoked = token(&single, &key).await;
    let r = client()
        .post(single.edge_url("/api/v2/streaming/revoke"))
        .bearer_auth(&key)
        .json(&json!({"streamToken": revoked}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let dir = single.stop_keep_dir();

    let both = |sqlite: &std::path::Path| {
        format!(
            "state:\n  sqlite: {}\n  redis: {}\n{cfg}",
            sqlite.display(),
            redis.url()
        )
    };
    let migrate_cfg = dir.path().join("migrate.yaml");
    std::fs::write(&migrate_cfg, both(&dir.path().join("state/sluice.db"))).unwrap();
    let (ok, out, err) = cli(
        &migrate_cfg,
        &["state", "migrate", "--from", "sqlite", "--to", "redis"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("1 stream id(s)")
            && out.contains("1 content key(s)")
            && out.contains("1 revocation(s)"),
        "{out}"
    );

    // A fleet node on Redis (its own empty SQLite file) has it all, and makes no new key.
    let check = |s: &Sluice| {
        let key = key.clone();
        let revoked = revoked.clone();
        let edge = s.edge_url("");
        let adm = s.admin_url("");
        async move {
            let r = client()
                .get(format!("{adm}/api/stream-ids"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            let st = client()
                .get(format!("{edge}/stream/alias1/seg.m4s"))
                .send()
                .await
                .unwrap();
            assert_eq!(st.status().as_u16(), 200);
            let kt = sluice::auth::key_token::mint(
                KEY_SECRET.as_bytes(),
                "movie-1",
                chrono::Utc::now().timestamp() + 600,
            );
            let k = client()
                .get(format!("{edge}/api/key/movie-1"))
                .bearer_auth(kt)
                .send()
                .await
                .unwrap();
            assert_eq!(
                hex::encode(k.bytes().await.unwrap()),
                "00112233445566778899aabbccddeeff"
            );
            let e = client()
                .get(format!(
                    "{edge}/stream/movie-gated/master.m3u8?token={revoked}"
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(e.status().as_u16(), 410);
        }
    };
    let node = Sluice::start_node(&redis, "", &cfg, &env());
    check(&node).await;
    assert!(
        !node.log().contains("Generated default admin API key"),
        "{}",
        node.log()
    );
    drop(node);

    // And back, into a fresh SQLite file; a single node on it has it all again.
    let back = tempfile::tempdir().unwrap();
    let back_cfg = back.path().join("migrate.yaml");
    std::fs::write(&back_cfg, both(&back.path().join("state/sluice.db"))).unwrap();
    let (ok, out, err) = cli(
        &back_cfg,
        &["state", "migrate", "--from", "redis", "--to", "sqlite"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("1 stream id(s)"), "{out}");
    let single = Sluice::start_in(back, &cfg, &env());
    check(&single).await;
    assert!(!single.log().contains("Generated default admin API key"));
}

#[tokio::test]
async fn a_hung_redis_costs_at_most_the_timeout() {
    let f = Fleet::start(&[""]);
    let a = &f.nodes[0];
    let hung = token(a, &f.key).await;
    let later = token(a, &f.key).await;
    f.redis.pause();
    // Every answer that needs Redis comes back 503 within state.redis_timeout (200 ms) plus
    // the request's own work, never later.
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let t0 = Instant::now();
        let (st, body) = get(a, &entry(&hung)).await;
        slowest = slowest.max(t0.elapsed());
        assert_eq!(st, 503, "{body}");
    }
    eprintln!(
        "measured: slowest gated answer while redis-server was stopped (SIGSTOP): {slowest:?}"
    );
    assert!(
        slowest < Duration::from_millis(700),
        "a request waited {slowest:?} on a hung redis (timeout 200 ms)"
    );
    until(
        "health says redis is unavailable",
        Duration::from_secs(5),
        || async move { health(a).await["redis"] == "unavailable" },
    )
    .await;
    f.redis.resume();
    until("healthy again", Duration::from_secs(10), || async move {
        health(a).await["status"] == "ok"
    })
    .await;
    assert_eq!(get(a, &entry(&later)).await.0, 200);
}

#[tokio::test]
async fn the_redis_password_never_reaches_a_log() {
    const PW: &str = "fleet-redis-pw-s3cr3t";
    let redis = RedisServer::start_with_password(Some(PW));
    let o = origin();
    let cfg = config(&o, 1000);
    let mut with_pw = env();
    with_pw.push(("FLEET_REDIS_PW", PW));
    let shown = format!("redis://127.0.0.1:{}/0", redis.port);
    // From the environment on A, in the URL on B; a wrong one on C.
    let start = |state: String, env: &[(&str, &str)]| {
        Sluice::start_in_with_state(
            tempfile::tempdir().unwrap(),
            &cfg,
            env,
            common::QUICK_STOP,
            "",
            &state,
        )
    };
    let a = start(
        format!(
            "  redis: {}\n  redis_password_env: FLEET_REDIS_PW\n",
            redis.url()
        ),
        &with_pw,
    );
    let b = start(
        format!("  redis: redis://:{PW}@127.0.0.1:{}/0\n", redis.port),
        &env(),
    );
    let c = start(
        format!(
            "  redis: redis://:wrong-pw-{PW}@127.0.0.1:{}/0\n",
            redis.port
        ),
        &env(),
    );
    let key = fleet_admin_key(&[&a, &b]);
    let t = token(&a, &key).await;
    assert_eq!(get(&b, &entry(&t)).await.0, 200);
    assert_eq!(get(&c, &entry(&t)).await.0, 503);
    assert_eq!(health(&c).await["status"], "degraded");
    let (ok, out, err) = cli(&b.config_path, &["check"]);
    assert!(ok, "{err}");
    for (name, text) in [
        ("A", a.log()),
        ("B", b.log()),
        ("C", c.log()),
        ("check", format!("{out}{err}")),
    ] {
        assert!(
            !text.contains(PW),
            "{name} printed the redis password:\n{text}"
        );
    }
    assert!(a.log().contains(&shown), "{}", a.log());
    assert!(
        c.log().contains(&shown) && c.log().contains("redis unreachable"),
        "{}",
        c.log()
    );
}

#[tokio::test]
async fn rediss_with_a_private_ca() {
    // A private CA and a certificate for localhost and 127.0.0.1.
    let pki = common::pki();
    let (ca_pem, cert_pem, key_pem) = (pki.ca.clone(), pki.cert.clone(), pki.key.clone());
    let redis = RedisServer::start_tls(&cert_pem, &key_pem);
    let tls_port = redis.tls_port.unwrap();
    let o = origin();
    let cfg = config(&o, 1000);
    let state = format!("  redis: rediss://localhost:{tls_port}/0\n");
    let start = |env: &[(&str, &str)]| {
        Sluice::start_in_with_state(
            tempfile::tempdir().unwrap(),
            &cfg,
            env,
            common::QUICK_STOP,
            "",
            &state,
        )
    };
    // Trusting the private CA (SSL_CERT_FILE, as for any rustls-native-certs client).
    let mut trusting = env();
    let ca_path = ca_pem.display().to_string();
    trusting.push(("SSL_CERT_FILE", &ca_path));
    let a = start(&trusting);
    let key = fleet_admin_key(&[&a]);
    let t = token(&a, &key).await;
    assert_eq!(get(&a, &entry(&t)).await.0, 200);
    assert!(
        a.log().contains(&format!(
            "redis connected redis=rediss://localhost:{tls_port}/0"
        )) || a
            .log()
            .contains(&format!("rediss://localhost:{tls_port}/0")),
        "{}",
        a.log()
    );
    // Without it the server's certificate is not trusted: no connection, fail closed.
    let b = start(&env());
    assert_eq!(health(&b).await["redis"], "unavailable");
    assert_eq!(get(&b, &entry(&t)).await.0, 503);
    assert!(b.log().contains("redis unreachable"), "{}", b.log());
}

/// Strangers cannot fill Redis through `verify`: a token without this deployment's signature
/// spends its client's budget, never a key of its own (before: each invented token made a
/// rate-limit key in Redis, ~290 bytes for 60 s — 6,000 requests, 6,000 keys). A token sluice
/// signed keeps its own budget (backends verify for many viewers from one address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_of_invented_tokens_makes_no_key_per_token() {
    let f = Fleet::start(&[""]);
    let count = |pattern: &str| -> usize {
        f.redis
            .command(&["EVAL", "return #redis.call('KEYS', ARGV[1])", "0", pattern])
            .and_then(|v| v.parse().ok())
            .expect("a key count")
    };
    for i in 0..40 {
        let (status, _) = get(
            &f.nodes[0],
            &format!("/api/v2/streaming/verify?token=eyJhbGciOiJIUzI1NiJ9.invented-{i}.sig"),
        )
        .await;
        assert!(status < 500, "{status}");
    }
    assert_eq!(
        count("sluice:rl:*verify:token:*"),
        0,
        "keys made per invented token"
    );
    assert_eq!(count("sluice:rl:*verify:ip:*"), 1);
    // A token sluice signed is limited by itself.
    let t = token(&f.nodes[0], &f.key).await;
    let (status, body) = get(&f.nodes[0], &format!("/api/v2/streaming/verify?token={t}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count("sluice:rl:*verify:token:*"), 1);
}

/// The same for every per-credential budget: invented bearers on key delivery, the streaming
/// routes and Stream Info make no key each (they spend the client's budgets); a credential
/// that was answered as valid gets a budget of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_bearers_make_no_key_per_bearer() {
    let f = Fleet::start(&[""]);
    let n = &f.nodes[0];
    let count = |pattern: &str| -> usize {
        f.redis
            .command(&["EVAL", "return #redis.call('KEYS', ARGV[1])", "0", pattern])
            .and_then(|v| v.parse().ok())
            .expect("a key count")
    };
    // The stranger, at an address of its own (its flood spends its budgets, not ours).
    let c = reqwest::Client::builder()
        .local_address("127.0.0.7".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    for i in 0..20 {
        let bearer = format!("invented-{i}.c2lnbmF0dXJl");
        let answers = [
            c.get(n.edge_url("/api/key/movie-gated"))
                .bearer_auth(&bearer),
            c.get(n.edge_url(&format!("/api/key/nonexistent-{i}")))
                .bearer_auth(&bearer),
            c.post(n.edge_url("/api/v2/streaming/token"))
                .bearer_auth(&bearer)
                .json(&json!({"contentId": "gated"})),
            c.post(n.edge_url("/api/v2/streaming/revoke"))
                .bearer_auth(&bearer)
                .body("not json"),
            c.get(n.edge_url("/api/providers/acme/channels/ch1/stream"))
                .bearer_auth(format!("eyJhbGciOiJIUzI1NiJ9.{i}.x")),
        ];
        for r in answers {
            let status = r.send().await.unwrap().status().as_u16();
            assert!(status < 500, "{status}");
        }
    }
    let per_credential =
        count("sluice:rl:*:token:*") + count("sluice:rl:*:bearer:*") - count("sluice:rl:*verify:*");
    assert_eq!(per_credential, 0, "keys made per invented bearer");
    // A credential answered as valid has its own budget from then on.
    for _ in 0..2 {
        token(n, &f.key).await;
    }
    assert_eq!(count("sluice:rl:*streaming:bearer:*"), 1);
}

/// Redis reachable but refusing writes (out of memory under `noeviction`): a revoke fails
/// closed with the store-outage answer, `503`, and the operator sees Redis's own words in the
/// log (before: `500`, as if sluice had a bug). Once Redis takes writes again, it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_refusing_writes_is_an_outage_not_a_bug() {
    let f = Fleet::start(&[""]);
    let n = &f.nodes[0];
    let t = token(n, &f.key).await;
    let revoke = || async {
        let r = client()
            .post(n.edge_url("/api/v2/streaming/revoke"))
            .bearer_auth(&f.key)
            .json(&json!({"streamToken": t}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    f.redis
        .command(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    f.redis.command(&["CONFIG", "SET", "maxmemory", "1"]);
    let (status, body) = revoke().await;
    assert_eq!(status, 503, "{body}");
    // Every write the same: a stream id, a content key, a new API key.
    for (method, path, body) in [
        (
            "POST",
            "/api/stream-ids",
            json!({"publisher": "movie-open", "player": "oom-1"}),
        ),
        (
            "PUT",
            "/api/content-keys/movie-oom",
            json!({"generate": true}),
        ),
        (
            "POST",
            "/api/keys",
            json!({"name": "oom", "permissions": "read"}),
        ),
    ] {
        let (st, v) = admin(n, method, path, &f.key, Some(body)).await;
        assert_eq!(st, 503, "{method} {path}: {v}");
    }
    common::wait_for("Redis's words in the log", Duration::from_secs(5), || {
        n.log().contains("OOM")
    });
    f.redis.command(&["CONFIG", "SET", "maxmemory", "0"]);
    let (status, body) = revoke().await;
    assert_eq!(status, 200, "{body}");
}

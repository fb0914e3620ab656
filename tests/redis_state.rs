//! A fleet's Redis refusing or losing its state (issue 23), with real sluice processes and a
//! real `redis-server`:
//!
//! - Redis out of memory under `noeviction` refuses writes: `/health` says `degraded`
//!   (`"redis":"refusing writes","reason":"OOM"`) until it takes writes again;
//! - a Redis user without `EVALSHA` or `SUBSCRIBE`: Redis's `NOPERM` at warn (once, not once
//!   per retry) and on `/health`, never "redis not reachable yet";
//! - an emptied Redis (`FLUSHALL`) is noticed by every node through the epoch marker, and the
//!   fleet recovers to the stated state: tokens and credentials from before the loss refused
//!   as revoked, new ones working, the default admin key made again by exactly one node,
//!   stream ids and content keys put back (deleted ones not), one epoch change per node.

mod common;

use std::time::{Duration, Instant};

use common::gated::{admin, child_of, entry, get, origin, token, until};
use common::{client, fleet_admin_key, metric, metrics, RedisServer, RunningOrigin, Sluice};
use serde_json::{json, Value};

const STREAM_SECRET: &str = "epoch-stream-secret-0123456789";
const KEY_SECRET: &str = "epoch-key-token-secret-0123456789";
const KEK: &str = "4444444444444444444444444444444444444444444444444444444444444444";
const REDIS_PW: &str = "epoch-redis-user-pw";
const EPOCH_CHANGES: &str = "sluice_redis_epoch_changes_total";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("KEY_TOKEN_SECRET", KEY_SECRET),
        ("EPOCH_KEK", KEK),
        ("EPOCH_REDIS_PW", REDIS_PW),
    ]
}

fn config(o: &RunningOrigin) -> String {
    let (ip, port) = (o.addr.ip(), o.addr.port());
    format!(
        r#"origins:
  bucket: http://bucket.test:{port}
  resolve: [{ip}]
streaming:
  secret: {STREAM_SECRET}
  contents:
    - id: gated
      hash: movie-gated
      token_required: true
      max_uses: 5
kek:
  current: {{id: k1, env: EPOCH_KEK}}
"#
    )
}

/// A fleet node whose edge listens on its own loopback address (`127.0.0.2`, `.3`, …), so
/// players (at 127.0.0.1) are never at a node's address.
fn node_at(ip: &str, redis: &RedisServer, cfg: &str) -> Sluice {
    let edge = format!("{ip}:{}", common::free_port_on(ip))
        .parse()
        .unwrap();
    Sluice::start_mode(
        common::Mode::from_env(),
        tempfile::tempdir().unwrap(),
        cfg,
        &env(),
        common::QUICK_STOP,
        "",
        &format!("  redis: {}\n", redis.url()),
        Some(edge),
    )
}

async fn health(s: &Sluice) -> (u16, Value) {
    let r = client().get(s.edge_url("/health")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Log lines at WARN containing every one of `needles`.
fn warn_lines(s: &Sluice, needles: &[&str]) -> usize {
    s.log()
        .lines()
        .filter(|l| l.contains("WARN") && needles.iter().all(|n| l.contains(n)))
        .count()
}

/// Redis out of memory under `noeviction`: writes fail closed with 503 (as before) and now
/// `/health` says so — proactively, by the supervisor's probe write, not only after a request
/// failed — and is `ok` again once Redis takes writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_refusing_writes_is_not_healthy() {
    let redis = RedisServer::start();
    let o = origin();
    let n = Sluice::start_node(&redis, "", &config(&o), &env());
    let key = fleet_admin_key(&[&n]);
    let t = token(&n, &key).await;
    assert_eq!(health(&n).await.1["status"], "ok");

    redis.command(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis.command(&["CONFIG", "SET", "maxmemory", "1"]);
    // No request yet: the node notices by itself.
    until(
        "health says redis refuses writes",
        Duration::from_secs(5),
        || async { health(&n).await.1["redis"] == "refusing writes" },
    )
    .await;
    let revoke = || async {
        let r = client()
            .post(n.edge_url("/api/v2/streaming/revoke"))
            .bearer_auth(&key)
            .json(&json!({"streamToken": t}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let (status, body) = revoke().await;
    assert_eq!(status, 503, "{body}");
    let (status, h) = health(&n).await;
    // Kept by load balancers (non-gated media still serves), in the unavailable shape.
    assert_eq!(status, 200);
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["redis"], "refusing writes", "{h}");
    assert_eq!(h["reason"], "OOM", "{h}");
    assert_eq!(get(&n, "/stream/movie-open/seg.m4s").await.0, 200);
    // Said at warn, not once per refused request.
    let (_, _) = revoke().await;
    let (_, _) = revoke().await;
    assert_eq!(
        warn_lines(&n, &["redis refused the operation", "revoke", "OOM"]),
        1,
        "{}",
        n.log()
    );

    redis.command(&["CONFIG", "SET", "maxmemory", "0"]);
    until("healthy again", Duration::from_secs(5), || async {
        health(&n).await.1["status"] == "ok"
    })
    .await;
    assert_eq!(health(&n).await.1.get("reason"), None);
    let (status, body) = revoke().await;
    assert_eq!(status, 200, "{body}");
}

/// Redis users without `EVALSHA`/`EVAL`, without `SUBSCRIBE`, without `PUBLISH`: each node says what
/// Redis refused at warn, once, and `/health` names the refusal (before: "redis not reachable
/// yet" and the `NOPERM` at debug level only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_user_without_a_command_is_named() {
    let redis = RedisServer::start();
    let pw = format!(">{REDIS_PW}");
    for (user, minus) in [
        ("noeval", &["-eval", "-evalsha"][..]),
        ("nosub", &["-subscribe"][..]),
        ("nopub", &["-publish"][..]),
    ] {
        let mut args = vec![
            "ACL",
            "SETUSER",
            user,
            "on",
            pw.as_str(),
            "~*",
            "&*",
            "+@all",
        ];
        args.extend_from_slice(minus);
        assert_eq!(redis.command(&args).as_deref(), Some("OK"));
    }
    let o = origin();
    let cfg = config(&o);
    let node = |user: &str| {
        Sluice::start_in_with_state(
            tempfile::tempdir().unwrap(),
            &cfg,
            &env(),
            common::QUICK_STOP,
            "",
            &format!(
                "  redis: redis://{user}@127.0.0.1:{}/0\n  redis_password_env: EPOCH_REDIS_PW\n",
                redis.port
            ),
        )
    };
    let a = node("noeval");
    let b = node("nosub");
    let c = node("nopub");
    for (s, command) in [(&a, "evalsha"), (&b, "subscribe"), (&c, "publish")] {
        let start = Instant::now();
        while warn_lines(s, &["NOPERM", command]) == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no NOPERM for {command} at warn:\n{}",
                s.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (status, h) = health(s).await;
        assert_eq!(status, 200);
        assert_eq!(h["status"], "degraded", "{h}");
        assert_eq!(h["redis"], "refusing commands", "{h}");
        assert_eq!(h["reason"], "NOPERM", "{h}");
        assert!(h["op"].as_str().is_some_and(|op| !op.is_empty()), "{h}");
    }
    assert_eq!(health(&b).await.1["op"], "subscribe");
    assert_eq!(health(&c).await.1["op"], "heartbeat");
    // The subscription is retried every second, the epoch marker read every second: the
    // warning is not repeated (once per distinct answer: per operation here).
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (s, command) in [(&a, "evalsha"), (&b, "subscribe"), (&c, "publish")] {
        let log = s.log();
        let ops: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("NOPERM") && l.contains(command))
            .filter_map(|l| l.split(" op=").nth(1)?.split(' ').next())
            .collect();
        let distinct: std::collections::HashSet<&&str> = ops.iter().collect();
        assert!(!ops.is_empty(), "{log}");
        assert_eq!(
            ops.len(),
            distinct.len(),
            "a refusal repeated at warn:\n{log}"
        );
        assert!(!log.contains("redis not reachable yet"), "{log}");
    }
}

/// `FLUSHALL` under a running fleet of two nodes: every node notices within a few seconds
/// and the fleet recovers to the stated state (README "Running a fleet", "Redis emptied").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_redis_is_noticed_and_the_fleet_recovers() {
    let redis = RedisServer::start();
    let o = origin();
    let cfg = config(&o);
    let nodes = [
        node_at("127.0.0.3", &redis, &cfg),
        node_at("127.0.0.4", &redis, &cfg),
    ];
    let (a, b) = (&nodes[0], &nodes[1]);
    let old_key = fleet_admin_key(&[a, b]);

    // Before the loss: a stream id (and one deleted again), a content key, a playback.
    for player in ["alias1", "alias2"] {
        let (st, v) = admin(
            a,
            "POST",
            "/api/stream-ids",
            &old_key,
            Some(json!({"publisher": "movie-open", "player": player})),
        )
        .await;
        assert_eq!(st, 200, "{v}");
    }
    let (st, _) = admin(b, "DELETE", "/api/stream-ids/alias2", &old_key, None).await;
    assert_eq!(st, 200);
    let (st, v) = admin(
        a,
        "PUT",
        "/api/content-keys/movie-1",
        &old_key,
        Some(json!({"generate": true})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let key_hex = v["key_hex"].as_str().unwrap().to_string();
    let old_token = token(a, &old_key).await;
    let (st, master) = get(a, &entry(&old_token)).await;
    assert_eq!(st, 200, "{master}");
    let old_child = child_of(&master);
    assert_eq!(get(b, &old_child).await.0, 200);
    for n in &nodes {
        assert_eq!(metric(&metrics(n).await, EPOCH_CHANGES), 0.0);
    }
    // Each node vouches for its copies at its next epoch check (every second).
    tokio::time::sleep(Duration::from_millis(2500)).await;

    assert_eq!(redis.command(&["FLUSHALL"]).as_deref(), Some("OK"));
    let flushed = Instant::now();
    let mut noticed = Vec::new();
    for n in &nodes {
        until("the loss noticed", Duration::from_secs(10), || async {
            metric(&metrics(n).await, EPOCH_CHANGES) >= 1.0
        })
        .await;
        noticed.push(flushed.elapsed());
    }
    eprintln!("measured: FLUSHALL noticed by the two nodes after {noticed:?}");

    // Tokens and credentials from before the loss: refused as revoked, on every node.
    for n in &nodes {
        let (st, body) = get(n, &entry(&old_token)).await;
        assert_eq!(st, 410, "{body}");
        assert!(!body.contains("pc="), "{body}");
        assert_eq!(get(n, &old_child).await.0, 410);
        let (st, body) = get(n, &format!("/api/v2/streaming/verify?token={old_token}")).await;
        assert_eq!(st, 410, "{body}");
    }

    // The default admin key, made again and printed by exactly one node.
    let printed = || -> Vec<String> {
        nodes
            .iter()
            .flat_map(|n| {
                n.log()
                    .lines()
                    .filter_map(|l| l.strip_prefix("Generated default admin API key: "))
                    .map(|k| k.trim().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let start = Instant::now();
    while printed().len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no new default admin key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both nodes have recovered (the change is counted before recovery ends): a second
    // print would be there by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let printed = printed();
    assert_eq!(printed.len(), 2, "made once at start, once after the loss");
    let new_key = printed
        .iter()
        .find(|k| **k != old_key)
        .expect("a new key")
        .clone();
    assert_eq!(
        admin(a, "GET", "/api/stream-ids", &old_key, None).await.0,
        401
    );
    let (st, v) = admin(b, "GET", "/api/stream-ids", &new_key, None).await;
    assert_eq!(st, 200, "{v}");

    // Stream ids and content keys are back in Redis: a deleted one is not.
    assert!(redis
        .command(&["HGET", "sluice:stream-ids", "alias1"])
        .is_some_and(|v| v.contains("movie-open")));
    assert_eq!(
        redis.command(&["HGET", "sluice:stream-ids", "alias2"]),
        None
    );
    for n in &nodes {
        assert_eq!(get(n, "/stream/alias1/seg.m4s").await.0, 200);
        assert_eq!(get(n, "/stream/alias2/seg.m4s").await.0, 404);
        let kt = sluice::auth::key_token::mint(
            KEY_SECRET.as_bytes(),
            "movie-1",
            chrono::Utc::now().timestamp() + 600,
        );
        let r = client()
            .get(n.edge_url("/api/key/movie-1"))
            .bearer_auth(kt)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(hex::encode(r.bytes().await.unwrap()), key_hex);
    }

    // A token issued in the new epoch plays on every node.
    let since: i64 = redis
        .command(&["HGET", "sluice:{epoch}", "since"])
        .and_then(|v| v.parse().ok())
        .expect("the new epoch's since");
    while chrono::Utc::now().timestamp() < since {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new_token = token(b, &new_key).await;
    for n in &nodes {
        let (st, body) = get(n, &entry(&new_token)).await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(get(n, &child_of(&body)).await.0, 200);
    }

    // One epoch change per node, each said at warn.
    for n in &nodes {
        assert_eq!(metric(&metrics(n).await, EPOCH_CHANGES), 1.0);
        assert_eq!(
            warn_lines(n, &["redis state lost (epoch"]),
            1,
            "{}",
            n.log()
        );
    }
}

/// Redis restarted without persistence under a running fleet: each node notices on its
/// reconnection, before the new connection serves a request — a player retrying a token
/// from before the loss through the outage is never admitted again (it was `200` before,
/// `503` while Redis is down, then `410`, never `200` in between) — and the fleet recovers
/// as after `FLUSHALL`: one new default admin key, the stream id put back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_is_noticed_before_it_serves() {
    let mut redis = RedisServer::start();
    let o = origin();
    let cfg = config(&o);
    let nodes = [
        node_at("127.0.0.3", &redis, &cfg),
        node_at("127.0.0.4", &redis, &cfg),
    ];
    let (a, b) = (&nodes[0], &nodes[1]);
    let old_key = fleet_admin_key(&[a, b]);
    let (st, v) = admin(
        a,
        "POST",
        "/api/stream-ids",
        &old_key,
        Some(json!({"publisher": "movie-open", "player": "alias1"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let old_token = token(a, &old_key).await;
    let head = |n: &Sluice| {
        let url = n.edge_url(&entry(&old_token));
        async move {
            client()
                .head(url)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    assert_eq!(head(a).await, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // A player keeps asking through the restart.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asking = {
        let url = a.edge_url(&entry(&old_token));
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let st = client()
                    .head(&url)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                if seen.last() != Some(&st) {
                    seen.push(st);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.restart_empty();
    for n in &nodes {
        until("the loss noticed", Duration::from_secs(10), || async {
            metric(&metrics(n).await, EPOCH_CHANGES) >= 1.0
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = asking.await.unwrap();
    let first_refusal = seen.iter().position(|s| *s != 200).expect("a refusal");
    assert!(
        !seen[first_refusal..].contains(&200),
        "a token from before the loss was admitted again: statuses {seen:?}"
    );
    assert_eq!(seen.last(), Some(&410), "{seen:?}");
    for n in &nodes {
        assert_eq!(head(n).await, 410);
        assert_eq!(get(n, "/stream/alias1/seg.m4s").await.0, 200);
        assert_eq!(metric(&metrics(n).await, EPOCH_CHANGES), 1.0);
    }
    assert!(redis
        .command(&["HGET", "sluice:stream-ids", "alias1"])
        .is_some_and(|v| v.contains("movie-open")));
    let printed: usize = nodes
        .iter()
        .map(|n| {
            n.log()
                .lines()
                .filter(|l| l.starts_with("Generated default admin API key: "))
                .count()
        })
        .sum();
    assert_eq!(printed, 2, "made once at start, once after the loss");
}

/// A node cut off while Redis was emptied (stopped past the 10 s restore window) puts
/// nothing back when it wakes — its copy would undo what the fleet did since (here: a stream
/// id the operator deleted after the recovery) — and lists what it held at warn, counted as
/// missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_notices_late_puts_nothing_back_and_says_so() {
    let redis = RedisServer::start();
    let o = origin();
    let cfg = config(&o);
    let a = node_at("127.0.0.3", &redis, &cfg);
    let c = node_at("127.0.0.4", &redis, &cfg);
    let old_key = fleet_admin_key(&[&a, &c]);
    let (st, v) = admin(
        &a,
        "POST",
        "/api/stream-ids",
        &old_key,
        Some(json!({"publisher": "movie-open", "player": "alias1"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = admin(
        &a,
        "PUT",
        "/api/content-keys/movie-1",
        &old_key,
        Some(json!({"generate": true})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    tokio::time::sleep(Duration::from_millis(2500)).await;

    common::signal(c.pid(), "-STOP");
    assert_eq!(redis.command(&["FLUSHALL"]).as_deref(), Some("OK"));
    until("A noticed", Duration::from_secs(10), || async {
        metric(&metrics(&a).await, EPOCH_CHANGES) >= 1.0
    })
    .await;
    let start = Instant::now();
    let new_key = loop {
        let keys: Vec<String> = a
            .log()
            .lines()
            .filter_map(|l| l.strip_prefix("Generated default admin API key: "))
            .map(|k| k.trim().to_string())
            .filter(|k| *k != old_key)
            .collect();
        if let Some(k) = keys.first() {
            break k.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{}", a.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // A put alias1 back; the operator deletes it in the new epoch.
    assert_eq!(
        admin(&a, "DELETE", "/api/stream-ids/alias1", &new_key, None)
            .await
            .0,
        200
    );
    tokio::time::sleep(Duration::from_secs(11)).await;
    common::signal(c.pid(), "-CONT");
    until("C noticed", Duration::from_secs(10), || async {
        metric(&metrics(&c).await, EPOCH_CHANGES) >= 1.0
    })
    .await;
    let start = Instant::now();
    while warn_lines(&c, &["not restored"]) == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", c.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = c.log();
    let line = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("not restored"))
        .unwrap();
    assert!(
        line.contains("alias1") && line.contains("movie-1"),
        "{line}"
    );
    let m = metrics(&c).await;
    for kind in ["stream_ids", "content_keys"] {
        let series =
            format!("sluice_redis_epoch_restores_total{{kind=\"{kind}\",outcome=\"missing\"}}");
        assert_eq!(metric(&m, &series), 1.0, "{series}");
        let series =
            format!("sluice_redis_epoch_restores_total{{kind=\"{kind}\",outcome=\"restored\"}}");
        assert_eq!(metric(&m, &series), 0.0, "{series}");
    }
    // Nothing undone: the deleted stream id stays deleted, on C too.
    assert_eq!(
        redis.command(&["HGET", "sluice:stream-ids", "alias1"]),
        None
    );
    until("C's snapshot retaken", Duration::from_secs(5), || async {
        get(&c, "/stream/alias1/seg.m4s").await.0 == 404
    })
    .await;
    // The content key A put back is there (from A's copy).
    assert!(redis
        .command(&["HGET", "sluice:content-keys", "movie-1"])
        .is_some());
}

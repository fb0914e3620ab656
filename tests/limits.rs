//! Rate limits and refusals under attack (issue 10): each class admits at most its number in
//! any 60-second window, oversized bodies count, the public routes have limits keyed by
//! credential first and by IP when anonymous, credential failures spend a per-IP budget, the
//! ctx store cannot be flooded into evicting other viewers, and every admin refusal reaches
//! `access_logs` (floods aggregated) — flushed on a graceful shutdown.

mod common;

use std::time::Duration;

use common::{admin_key, client, Sluice};
use serde_json::{json, Value};

const JWT_SECRET: &str = "provider-jwt-secret-0123456789";
const SIG_SECRET: &str = "signed-channel-secret-0123456789";

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Value, Option<String>) {
    let mut r = client().get(url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, resp.json().await.unwrap_or(Value::Null), retry)
}

fn rows(s: &Sluice, sql: &str) -> Vec<(Option<i64>, String, i64, i64)> {
    let conn = rusqlite::Connection::open(s.state_dir().join("state/sluice.db")).unwrap();
    let mut st = conn.prepare(sql).unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test]
async fn a_minute_admits_at_most_its_number() {
    let s = Sluice::start("admin:\n  rate_limit_api: 60\n");
    let key = admin_key(&s);
    let url = s.admin_url("/api/stream-ids");
    for i in 0..60 {
        let (st, _, _) = get(&url, &[("authorization", &format!("Bearer {key}"))]).await;
        assert_eq!(st, 200, "request {i}");
    }
    let (st, v, retry) = get(&url, &[("authorization", &format!("Bearer {key}"))]).await;
    assert_eq!(st, 429);
    assert_eq!(
        v,
        json!({"status": "error", "message": "Rate limit exceeded"})
    );
    let retry: u64 = retry.unwrap().parse().unwrap();
    assert!((50..=60).contains(&retry), "Retry-After {retry}");
    // A token bucket refills one per second here; a 60-second window does not.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..3 {
        let (st, _, _) = get(&url, &[("authorization", &format!("Bearer {key}"))]).await;
        assert_eq!(st, 429);
    }
}

#[tokio::test]
async fn oversized_bodies_count_against_the_limit() {
    let s = Sluice::start("admin:\n  rate_limit_api: 5\n");
    let key = admin_key(&s);
    let big = vec![b'x'; 1024 * 1024];
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = client()
            .post(s.admin_url("/api/stream-ids"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [413, 413, 413, 413, 413, 429, 429, 429]);
}

fn channels_config() -> String {
    format!(
        "trusted_proxies: [127.0.0.1]\nrate_limits:\n  auth_failures: 5\nsigned_channels:\n  secret: {SIG_SECRET}\n  channels:\n    - {{key: wctveng, name: W, url: 'https://example.com/s.mpd', type: dash}}\n"
    )
}

fn signed(path: &str, secret: &str) -> (String, String) {
    use hmac::{Hmac, Mac};
    let ts = chrono::Utc::now().timestamp().to_string();
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(format!("{ts}:{path}").as_bytes());
    (hex::encode(m.finalize().into_bytes()), ts)
}

#[tokio::test]
async fn signature_failures_spend_a_per_ip_budget() {
    let s = Sluice::start(&channels_config());
    let path = "/api/v1/channels/wctveng/stream";
    let url = s.edge_url(path);
    let (bad, ts) = signed(path, "not-the-secret-at-all-0000");
    for _ in 0..5 {
        let (st, _, _) = get(
            &url,
            &[
                ("x-signature-token", &bad),
                ("x-signature-timestamp", &ts),
                ("x-forwarded-for", "198.51.100.1"),
            ],
        )
        .await;
        assert_eq!(st, 403);
    }
    // The budget is spent: even a good signature from that address waits.
    let (good, ts) = signed(path, SIG_SECRET);
    let (st, v, retry) = get(
        &url,
        &[
            ("x-signature-token", &good),
            ("x-signature-timestamp", &ts),
            ("x-forwarded-for", "198.51.100.1"),
        ],
    )
    .await;
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["success"], false);
    assert_eq!(v["error"]["code"], "HTTP_429");
    assert!(retry.is_some());
    // Another client is unaffected, and successes spend nothing.
    for _ in 0..10 {
        let (good, ts) = signed(path, SIG_SECRET);
        let (st, _, _) = get(
            &url,
            &[
                ("x-signature-token", &good),
                ("x-signature-timestamp", &ts),
                ("x-forwarded-for", "198.51.100.2"),
            ],
        )
        .await;
        assert_eq!(st, 200);
    }
}

#[tokio::test]
async fn key_token_guessing_is_limited_per_ip_whatever_the_token() {
    let s = Sluice::start(
        "rate_limits:\n  auth_failures: 4\nkey_delivery:\n  secret: key-token-secret-0123456789\n",
    );
    let mut statuses = Vec::new();
    for i in 0..6 {
        let (st, _, _) = get(
            &s.edge_url("/api/key/movie"),
            &[("authorization", &format!("Bearer guess{i}.sig{i}"))],
        )
        .await;
        statuses.push(st);
    }
    assert_eq!(statuses, [403, 403, 403, 403, 429, 429]);
}

fn jwt(sub: &str) -> String {
    common::provider_jwt(JWT_SECRET, sub)
}

fn provider_config(extra: &str) -> String {
    format!(
        "provider_auth:\n  jwt_secret: {JWT_SECRET}\n{extra}providers:\n  acme:\n    allow_private: true\n    channels:\n      ch1: {{url: 'http://127.0.0.1:9/live.m3u8', type: hls}}\n"
    )
}

#[tokio::test]
async fn stream_info_is_limited_per_caller() {
    let s = Sluice::start(&provider_config(
        "  ctx_per_subject: 100\nrate_limits:\n  stream_info: 3\n",
    ));
    let url = s.edge_url("/api/providers/acme/channels/ch1/stream");
    let (alice, bob) = (jwt("alice"), jwt("bob"));
    for _ in 0..3 {
        assert_eq!(
            get(&url, &[("authorization", &format!("Bearer {alice}"))])
                .await
                .0,
            200
        );
    }
    let (st, v, _) = get(&url, &[("authorization", &format!("Bearer {alice}"))]).await;
    assert_eq!((st, v), (429, json!({"error": "Rate limit exceeded"})));
    assert_eq!(
        get(&url, &[("authorization", &format!("Bearer {bob}"))])
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn one_caller_cannot_evict_other_viewers_contexts() {
    let s = Sluice::start(&provider_config(
        "  ctx_per_subject: 3\n  ctx_capacity: 5\n",
    ));
    let url = s.edge_url("/api/providers/acme/channels/ch1/stream");
    let ctx_of = |v: &Value| {
        let u = v["url"].as_str().unwrap().to_string();
        u.split("ctx=").nth(1).unwrap().to_string()
    };
    let (_, v, _) = get(
        &url,
        &[("authorization", &format!("Bearer {}", jwt("victim")))],
    )
    .await;
    let victim = ctx_of(&v);
    let flooder = jwt("flooder");
    let mut theirs = Vec::new();
    for _ in 0..20 {
        let (st, v, _) = get(&url, &[("authorization", &format!("Bearer {flooder}"))]).await;
        assert_eq!(st, 200, "{v}");
        theirs.push(ctx_of(&v));
    }
    let live = |ctx: &str| {
        let u = s.edge_url(&format!(
            "/api/proxy?url=http%3A%2F%2F127.0.0.1%3A9%2Fx.ts&ctx={ctx}"
        ));
        async move { client().get(u).send().await.unwrap().status().as_u16() != 404 }
    };
    assert!(live(&victim).await, "the victim's context was evicted");
    assert!(!live(&theirs[0]).await && live(&theirs[19]).await);
    // The store is full of live contexts of other subjects: a newcomer is refused, nobody
    // is evicted.
    let (_, v, _) = get(&url, &[("authorization", &format!("Bearer {}", jwt("b")))]).await;
    let _ = ctx_of(&v);
    let (st, v, _) = get(&url, &[("authorization", &format!("Bearer {}", jwt("c")))]).await;
    assert_eq!(st, 503, "{v}");
    assert!(live(&victim).await);
}

#[tokio::test]
async fn streaming_routes_are_limited_per_bearer_and_verify_per_token() {
    let s = Sluice::start(
        "rate_limits:\n  streaming: 3\n  verify: 2\nstreaming:\n  secret: stream-secret-0123456789abcdef\n  contents:\n    - {id: c1, hash: movie, token_required: true}\n",
    );
    let key = admin_key(&s);
    let mint = || {
        let r = client()
            .post(s.edge_url("/api/v2/streaming/token"))
            .bearer_auth(&key)
            .json(&json!({"contentId": "c1"}));
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let (st, v) = mint().await;
        assert_eq!(st, 200);
        tokens.push(v["streamToken"].as_str().unwrap().to_string());
    }
    let (st, v) = mint().await;
    assert_eq!(
        (st, v),
        (
            429,
            json!({"statusCode": 429, "message": "Rate limit exceeded", "error": "Too Many Requests"})
        )
    );
    for _ in 0..2 {
        let u = s.edge_url(&format!("/api/v2/streaming/verify?token={}", tokens[0]));
        assert_eq!(get(&u, &[]).await.0, 200);
    }
    let u = s.edge_url(&format!("/api/v2/streaming/verify?token={}", tokens[0]));
    assert_eq!(get(&u, &[]).await.0, 429);
    let u = s.edge_url(&format!("/api/v2/streaming/verify?token={}", tokens[1]));
    assert_eq!(get(&u, &[]).await.0, 200);
}

#[tokio::test]
async fn refusals_reach_access_logs_and_floods_are_aggregated() {
    let s = Sluice::start("admin:\n  rate_limit_api: 1000\n  rate_limit_config: 1\n");
    let key = admin_key(&s);
    // 401 (no key matched), 403 (insufficient), 429.
    assert_eq!(
        get(
            &s.admin_url("/api/stream-ids"),
            &[("authorization", "Bearer wrong")]
        )
        .await
        .0,
        401
    );
    let read = {
        let r = client()
            .post(s.admin_url("/api/keys"))
            .bearer_auth(&key)
            .json(&json!({"name": "ro", "permissions": "read"}))
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["api_key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let r = client()
        .delete(s.admin_url("/api/stream-ids/x"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = client()
        .post(s.admin_url("/api/keys"))
        .bearer_auth(&key)
        .json(&json!({"name": "x", "permissions": "read"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    // A flood: 300 unauthenticated requests from one address.
    for _ in 0..300 {
        let _ = get(&s.admin_url("/api/stream-ids"), &[]).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let logged = rows(
        &s,
        "SELECT api_key_id, endpoint, response_code, count FROM access_logs ORDER BY id",
    );
    assert!(
        logged.contains(&(None, "/api/stream-ids".into(), 401, 1)),
        "{logged:?}"
    );
    // A key that matched but lacked the permission is named; a request refused by the
    // rate limit was never authenticated.
    assert!(
        logged.contains(&(Some(2), "/api/stream-ids/x".into(), 403, 1)),
        "{logged:?}"
    );
    assert!(
        logged.contains(&(None, "/api/keys".into(), 429, 1)),
        "{logged:?}"
    );
    // A bounded number of rows for the flood (the rest is counted; the aggregate row of
    // the current minute is written when the minute ends or at shutdown).
    let refusal_rows = logged.iter().filter(|r| r.0.is_none()).count();
    assert!(refusal_rows <= 21, "{refusal_rows} rows for a flood");
}

#[tokio::test]
async fn a_graceful_shutdown_writes_every_queued_entry() {
    let mut s = Sluice::start("admin:\n  rate_limit_api: 1000\n");
    let key = admin_key(&s);
    for _ in 0..5 {
        assert_eq!(
            get(
                &s.admin_url("/api/stream-ids"),
                &[("authorization", &format!("Bearer {key}"))]
            )
            .await
            .0,
            200
        );
    }
    for _ in 0..50 {
        let _ = get(&s.admin_url("/api/stream-ids"), &[]).await;
    }
    // SIGTERM at once, before the writer's next tick.
    unsafe_sigterm(s.pid());
    s.wait_exit(Duration::from_secs(15));
    let logged = rows(
        &s,
        "SELECT api_key_id, endpoint, response_code, count FROM access_logs",
    );
    assert_eq!(
        logged.iter().filter(|r| r.0.is_some()).count(),
        5,
        "{logged:?}"
    );
    let refused: i64 = logged.iter().filter(|r| r.0.is_none()).map(|r| r.3).sum();
    assert_eq!(refused, 50, "{logged:?}");
}

fn unsafe_sigterm(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

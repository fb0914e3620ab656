//! admin-api.md over real HTTP against the binary: keys, permissions, stream ids, rate limits,
//! access logs, stats, durability, and the document's own client examples.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{admin_key, client, random_bytes, sluice_bin, Reply, Sluice, TestOrigin};
use serde_json::{json, Value};

fn create_key(s: &Sluice, perm: &str) -> String {
    let out = Command::new(sluice_bin())
        .args(["keys", "-c"])
        .arg(&s.config_path)
        .args(["create", "--name", perm, "--permissions", perm])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn call(
    method: reqwest::Method,
    url: String,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = client().request(method, url);
    if let Some(k) = key {
        r = r.header("authorization", format!("Bearer {k}"));
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn default_key_printed_once_and_only_hash_stored() {
    let s = Sluice::start("");
    let key = admin_key(&s);
    assert_eq!(key.len(), 32);
    assert!(s
        .log()
        .contains("IMPORTANT: Save this key securely. It will not be shown again."));
    let db_path = s.state_dir().join("state/sluice.db");
    let dir = s.stop_keep_dir();
    // The key itself is nowhere in the database files; its SHA-256 is.
    let mut all = Vec::new();
    for f in ["sluice.db", "sluice.db-wal"] {
        all.extend(std::fs::read(dir.path().join("state").join(f)).unwrap_or_default());
    }
    assert!(
        !all.windows(key.len()).any(|w| w == key.as_bytes()),
        "clear key in database"
    );
    let conn = rusqlite::Connection::open(&db_path).unwrap();
    let hash: String = conn
        .query_row("SELECT key_hash FROM api_keys WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(hash, sluice::auth::api_keys::hash(&key));
    drop(conn);
    // A restart prints nothing new, and the old key still works.
    let s = Sluice::start_in(dir, "", &[]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !s.log().contains("Generated default admin API key"),
        "{}",
        s.log()
    );
    let (st, _) = call(
        reqwest::Method::GET,
        s.admin_url("/api/stream-ids"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn stream_id_crud_and_status_codes() {
    let origin = TestOrigin::new()
        .route(
            "/studio_1/seg.ts",
            Reply::ok(random_bytes(5000, 1), "video/mp2t"),
        )
        .start();
    let s = Sluice::start(&format!("origins:\n  bucket: {}\n", origin.url()));
    let key = admin_key(&s);
    let k = Some(key.as_str());
    let url = s.admin_url("/api/stream-ids");
    use reqwest::Method as M;

    assert_eq!(
        call(M::GET, url.clone(), k, None).await,
        (200, json!({"status":"success","data":[]}))
    );
    let add =
        json!({"publisher":"studio_1","player":"live_stream","description":"Main studio feed"});
    assert_eq!(
        call(M::POST, url.clone(), k, Some(add.clone())).await,
        (
            200,
            json!({"status":"success","message":"Stream ID added successfully"})
        )
    );
    let (st, v) = call(M::POST, url.clone(), k, Some(add)).await;
    assert_eq!((st, v["status"].as_str()), (409, Some("error")));
    assert_eq!(
        v["message"],
        "Stream ID with player 'live_stream' already exists"
    );
    let (_, v) = call(M::GET, url.clone(), k, None).await;
    assert_eq!(
        v["data"],
        json!([{"publisher":"studio_1","player":"live_stream","description":"Main studio feed"}])
    );

    // The registry feeds /stream routing at once: player id → publisher prefix.
    let r = client()
        .get(s.edge_url("/stream/live_stream/seg.ts"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(origin.hits("/studio_1/seg.ts"), 1);

    // Bad bodies name the field; nothing is a 500.
    for (body, field) in [
        (json!({"player":"x"}), "publisher"),
        (json!({"publisher":"a","player":5}), "player"),
        (
            json!({"publisher":"a'; DROP TABLE stream_ids;--","player":"x"}),
            "publisher",
        ),
        (json!({"publisher":"a","player":"x\u{0}y"}), "player"),
        (json!({"publisher":"a","player":"\"quoted\""}), "player"),
    ] {
        let (st, v) = call(M::POST, url.clone(), k, Some(body)).await;
        assert_eq!(st, 400);
        assert!(v["message"].as_str().unwrap().contains(field), "{v}");
    }
    let r = client()
        .post(&url)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("Invalid JSON"));
    let r = client()
        .post(&url)
        .header("authorization", format!("Bearer {key}"))
        .body(vec![b'a'; 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "error");

    // Delete: 404 for unknown, 200 then gone.
    let (st, v) = call(M::DELETE, s.admin_url("/api/stream-ids/nope"), k, None).await;
    assert_eq!(
        (st, v),
        (
            404,
            json!({"status":"error","message":"Stream ID not found"})
        )
    );
    let (st, v) = call(
        M::DELETE,
        s.admin_url("/api/stream-ids/live_stream"),
        k,
        None,
    )
    .await;
    assert_eq!(
        (st, v),
        (
            200,
            json!({"status":"success","message":"Stream ID deleted successfully"})
        )
    );
    assert_eq!(
        call(M::GET, url.clone(), k, None).await.1["data"],
        json!([])
    );

    // Missing and wrong keys.
    let (st, v) = call(M::GET, url.clone(), None, None).await;
    assert_eq!(
        (st, v),
        (
            401,
            json!({"status":"error","message":"Missing or invalid Authorization header"})
        )
    );
    assert_eq!(call(M::GET, url.clone(), Some("wrong"), None).await.0, 401);
}

#[tokio::test]
async fn permissions_matrix() {
    let s = Sluice::start("");
    let admin = admin_key(&s);
    let write = create_key(&s, "write");
    let read = create_key(&s, "read");
    use reqwest::Method as M;
    // (method, path, body, minimum permission)
    let routes: Vec<(M, &str, Option<Value>, u8)> = vec![
        (M::GET, "/api/stream-ids", None, 0),
        (
            M::POST,
            "/api/stream-ids",
            Some(json!({"publisher":"p","player":"PLAYER"})),
            1,
        ),
        (M::DELETE, "/api/stream-ids/PLAYER", None, 2),
        (
            M::POST,
            "/api/keys",
            Some(json!({"name":"n","permissions":"read"})),
            2,
        ),
        (M::POST, "/api/cache/purge", Some(json!({"hash":"h"})), 1),
    ];
    for (rank, key) in [(0u8, &read), (1, &write), (2, &admin)] {
        for (i, (m, path, body, need)) in routes.iter().enumerate() {
            // Unique player ids per key so POST/DELETE pairs do not collide.
            let path = path.replace("PLAYER", &format!("p{rank}"));
            let body = body.clone().map(|b| {
                serde_json::from_str::<Value>(&b.to_string().replace("PLAYER", &format!("p{rank}")))
                    .unwrap()
            });
            let (st, v) = call(m.clone(), s.admin_url(&path), Some(key), body).await;
            if rank >= *need {
                assert!(st == 200, "route {i} {path} with rank {rank}: {st} {v}");
            } else {
                assert_eq!(
                    (st, v["message"].as_str()),
                    (403, Some("Insufficient permissions")),
                    "route {i} rank {rank}"
                );
            }
        }
    }
    // A created key works, and a revoked one stops working on the next request.
    let (st, v) = call(
        M::POST,
        s.admin_url("/api/keys"),
        Some(&admin),
        Some(json!({"name":"fe","permissions":"read"})),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        v["message"],
        "Save this key securely. It cannot be retrieved again."
    );
    let new_key = v["api_key"].as_str().unwrap().to_string();
    assert_eq!(
        call(M::GET, s.admin_url("/api/stream-ids"), Some(&new_key), None)
            .await
            .0,
        200
    );
    let prefix = &new_key[..8];
    let out = Command::new(sluice_bin())
        .args(["keys", "-c"])
        .arg(&s.config_path)
        .args(["revoke", prefix])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        call(M::GET, s.admin_url("/api/stream-ids"), Some(&new_key), None)
            .await
            .0,
        401
    );
    let (st, v) = call(
        M::POST,
        s.admin_url("/api/keys"),
        Some(&admin),
        Some(json!({"name":"x","permissions":"root"})),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    // `keys list` shows prefixes, never keys.
    let out = Command::new(sluice_bin())
        .args(["keys", "-c"])
        .arg(&s.config_path)
        .arg("list")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains(prefix) && !listing.contains(&new_key),
        "{listing}"
    );
}

#[tokio::test]
async fn rate_limits_per_class_and_client() {
    let s = Sluice::start("");
    let key = admin_key(&s);
    let c = client();
    let mut last = 0;
    for i in 0..31 {
        let r = c
            .get(s.admin_url("/api/stream-ids"))
            .header("authorization", format!("Bearer {key}"))
            // An untrusted peer cannot buy a fresh bucket with a spoofed header.
            .header("x-forwarded-for", format!("10.9.8.{i}"))
            .send()
            .await
            .unwrap();
        last = r.status().as_u16();
        if i < 30 {
            assert_eq!(last, 200, "request {i}");
        } else {
            assert!(r.headers().contains_key("retry-after"));
            assert_eq!(
                r.json::<Value>().await.unwrap(),
                json!({"status":"error","message":"Rate limit exceeded"})
            );
        }
    }
    assert_eq!(last, 429);
    // The stats class has its own bucket.
    let r = c.get(s.admin_url("/stats/anything")).send().await.unwrap();
    assert_ne!(r.status(), 429);
}

#[tokio::test]
async fn trusted_proxy_forwarded_for_gets_its_own_bucket() {
    let s = Sluice::start("trusted_proxies: [127.0.0.1]\nadmin:\n  rate_limit_api: 2\n");
    let key = admin_key(&s);
    let c = client();
    let get = |xff: &'static str| {
        c.get(s.admin_url("/api/stream-ids"))
            .header("authorization", format!("Bearer {key}"))
            .header("x-forwarded-for", xff)
            .send()
    };
    assert_eq!(get("203.0.113.1").await.unwrap().status(), 200);
    assert_eq!(get("203.0.113.1").await.unwrap().status(), 200);
    assert_eq!(get("203.0.113.1").await.unwrap().status(), 429);
    assert_eq!(get("203.0.113.2").await.unwrap().status(), 200);
}

#[tokio::test]
async fn acknowledged_stream_id_survives_kill_9() {
    let s = Sluice::start("");
    let key = admin_key(&s);
    let (st, _) = call(
        reqwest::Method::POST,
        s.admin_url("/api/stream-ids"),
        Some(&key),
        Some(json!({"publisher":"pub","player":"durable"})),
    )
    .await;
    assert_eq!(st, 200);
    let mut s = s;
    s.kill9();
    let dir = s.stop_keep_dir();
    let s = Sluice::start_in(dir, "", &[]);
    let (_, v) = call(
        reqwest::Method::GET,
        s.admin_url("/api/stream-ids"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(v["data"][0]["player"], "durable");
}

#[tokio::test]
async fn access_logs_and_stats() {
    let origin = TestOrigin::new()
        .route(
            "/pub/a.ts",
            Reply::ok(random_bytes(50_000, 2), "video/mp2t"),
        )
        .start();
    let s = Sluice::start(&format!("origins:\n  bucket: {}\n", origin.url()));
    let key = admin_key(&s);
    use reqwest::Method as M;
    call(
        M::POST,
        s.admin_url("/api/stream-ids"),
        Some(&key),
        Some(json!({"publisher":"pub","player":"live"})),
    )
    .await;
    call(M::GET, s.admin_url("/api/stream-ids"), Some("bogus"), None).await;
    for _ in 0..3 {
        client()
            .get(s.edge_url("/stream/live/a.ts"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    // Counted in the logging phase, which may run just after the player has its last byte.
    let started = std::time::Instant::now();
    let (mut st, mut v) = call(M::GET, s.admin_url("/stats/live"), None, None).await;
    while v["publisher"]["bytes_sent"] != 150_000 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        (st, v) = call(M::GET, s.admin_url("/stats/live"), None, None).await;
    }
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "ok");
    let p = &v["publisher"];
    for f in [
        "bitrate",
        "buffer",
        "dropped_pkts",
        "rtt",
        "uptime",
        "latency",
    ] {
        assert!(p.get(f).is_some(), "missing {f}: {v}");
    }
    assert_eq!(p["bytes_sent"], 150_000);
    assert!(p["bitrate"].as_u64().unwrap() > 0);
    assert!(p["buffer"].as_u64().unwrap() >= 48, "cache KiB: {v}");
    let (_, v) = call(
        M::GET,
        s.admin_url("/stats/live?legacy=1&reset"),
        None,
        None,
    )
    .await;
    assert_eq!(v["publishers"]["live"]["bytes_sent"], 150_000);
    let (_, v) = call(M::GET, s.admin_url("/stats/live"), None, None).await;
    assert_eq!(v["publisher"]["bytes_sent"], 0);
    assert_eq!(
        call(M::GET, s.admin_url("/stats/unknown"), None, None)
            .await
            .0,
        404
    );

    // The authenticated requests reach access_logs (batched within about a second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let conn = rusqlite::Connection::open(s.state_dir().join("state/sluice.db")).unwrap();
    let rows: Vec<(Option<i64>, String, String, i64)> = conn
        .prepare("SELECT api_key_id, endpoint, method, response_code FROM access_logs ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                Some(1),
                "/api/stream-ids".to_string(),
                "POST".to_string(),
                200
            ),
            // A refusal is logged too, with no key.
            (None, "/api/stream-ids".to_string(), "GET".to_string(), 401),
        ]
    );
    let last_used: Option<String> = conn
        .query_row("SELECT last_used FROM api_keys WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(last_used.is_some());
}

/// The document's own examples, with only the host and key substituted.
#[tokio::test]
async fn document_examples_work_unchanged() {
    let s = Sluice::start("");
    let key = admin_key(&s);
    let base = format!("http://{}", s.admin);
    let doc = common::seed("admin-api.md");
    let subst = |code: &str| {
        code.replace("http://hostname:8080", &base)
            .replace("YOUR_API_KEY", &key)
            .replace("your_api_key_here", &key)
    };

    // Bash/cURL: the three commands between "# Get all stream IDs" and the Python section.
    let start = doc.find("# Get all stream IDs").expect("curl section");
    let end = doc[start..].find("Python").map(|e| start + e).unwrap();
    let script = subst(&doc[start..end]);
    let out = Command::new("bash")
        .arg("-ec")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(r#""status":"success""#), "{stdout}");

    // Python: the block from "import requests" to the JavaScript section, printing results.
    let start = doc.find("import requests").expect("python section");
    let end = doc[start..].find("JavaScript").map(|e| start + e).unwrap();
    let py = subst(&doc[start..end])
        + "\nprint(stream_ids)\nprint(response.status_code, response.json())\n";
    let out = Command::new("python3").arg("-c").arg(&py).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("409") || stdout.contains("200"), "{stdout}");

    // JavaScript fetch (Node's global fetch).
    let start = doc.find("const API_KEY").expect("js section");
    let end = doc[start..]
        .find("Security Considerations")
        .map(|e| start + e)
        .unwrap();
    let js = subst(&doc[start..end]);
    let out = Command::new("node").arg("-e").arg(&js).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("success") || stdout.contains("already exists"),
        "{stdout}"
    );

    let (_, v) = call(
        reqwest::Method::GET,
        s.admin_url("/api/stream-ids"),
        Some(&key),
        None,
    )
    .await;
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["player"] == "live_stream"),
        "{v}"
    );
}

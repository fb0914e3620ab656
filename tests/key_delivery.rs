//! playback-api.txt `GET /api/key/{hash}` over real HTTP against the binary: statuses, rate
//! limit, content-key import (admin route and CLI), KEK rotation across restarts, an
//! hls.js-style key fetch, and the document's own shell recipe run verbatim.

mod common;

use std::process::Command;

use common::{admin_key, client, sluice_bin, Reply, Sluice, TestOrigin};
use serde_json::{json, Value};

/// The document's own example secret, so its recipe runs with nothing changed but the host.
const SECRET: &str = "replace-with-key-token-secret";
const KEK_A: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const KEK_B: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const KEY_HEX: &str = "00112233445566778899aabbccddeeff";

fn env_ab() -> Vec<(&'static str, &'static str)> {
    vec![
        ("KEY_TOKEN_SECRET", SECRET),
        ("KEK_A", KEK_A),
        ("KEK_B", KEK_B),
    ]
}

const KEK_ONLY_A: &str = "kek:\n  current: {id: kek-a, env: KEK_A}\n";
const KEK_B_PREV_A: &str =
    "kek:\n  current: {id: kek-b, env: KEK_B}\n  previous:\n    - {id: kek-a, env: KEK_A}\n";
const KEK_ONLY_B: &str = "kek:\n  current: {id: kek-b, env: KEK_B}\n";

fn cli(s: &Sluice, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(sluice_bin())
        .args(args)
        .arg("-c")
        .arg(&s.config_path)
        .envs(env_ab())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mint(hash: &str, exp: i64) -> String {
    sluice::auth::key_token::mint(SECRET.as_bytes(), hash, exp)
}

fn later() -> i64 {
    chrono::Utc::now().timestamp() + 600
}

async fn fetch_key(
    s: &Sluice,
    hash: &str,
    token: Option<&str>,
) -> (u16, Vec<u8>, reqwest::header::HeaderMap) {
    let mut r = client().get(s.edge_url(&format!("/api/key/{hash}")));
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    let resp = r.send().await.unwrap();
    let st = resp.status().as_u16();
    let h = resp.headers().clone();
    (st, resp.bytes().await.unwrap().to_vec(), h)
}

async fn put_key(s: &Sluice, key: &str, hash: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .put(s.admin_url(&format!("/api/content-keys/{hash}")))
        .header("authorization", format!("Bearer {key}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn key_endpoint_statuses_and_rate_limit() {
    let s = Sluice::start_with_env(
        &format!("{KEK_ONLY_A}key_delivery:\n  rate_limit: 6\n"),
        &env_ab(),
    );
    let admin = admin_key(&s);
    let (st, v) = put_key(&s, &admin, "movie-1", json!({"key_hex": KEY_HEX})).await;
    assert_eq!(
        (st, v),
        (
            200,
            json!({"status": "success", "hash": "movie-1", "kek_id": "kek-a"})
        )
    );
    let (st, v) = put_key(&s, &admin, "movie-2", json!({"generate": true})).await;
    assert_eq!(st, 200);
    let generated = hex::decode(v["key_hex"].as_str().unwrap()).unwrap();
    assert_eq!(generated.len(), 16);
    for bad in [
        json!({"key_hex": "0011"}),
        json!({"generate": false}),
        json!({}),
    ] {
        assert_eq!(put_key(&s, &admin, "movie-3", bad).await.0, 400);
    }
    assert_eq!(
        put_key(&s, &admin, ".hidden", json!({"generate": true}))
            .await
            .0,
        400
    );
    assert_eq!(
        put_key(&s, "wrong-key", "movie-3", json!({"generate": true}))
            .await
            .0,
        401
    );

    let (st, body, h) = fetch_key(&s, "movie-1", Some(&mint("movie-1", later()))).await;
    assert_eq!(st, 200);
    assert_eq!(body, hex::decode(KEY_HEX).unwrap());
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(h["cache-control"], "no-store");
    let (_, body, _) = fetch_key(&s, "movie-2", Some(&mint("movie-2", later()))).await;
    assert_eq!(body, generated);

    // 401 missing; 403 bad signature, expired, other hash; 404 no key. Nothing leaks the key.
    let (st, body, _) = fetch_key(&s, "movie-1", None).await;
    assert_eq!(st, 401);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"error": "Missing Authorization: Bearer token"})
    );
    let forged = sluice::auth::key_token::mint(b"not-the-secret-at-all", "movie-1", later());
    let past = mint("movie-1", chrono::Utc::now().timestamp() - 1);
    for t in [
        forged.as_str(),
        past.as_str(),
        &mint("movie-2", later()),
        "garbage",
    ] {
        let (st, body, _) = fetch_key(&s, "movie-1", Some(t)).await;
        assert_eq!(st, 403, "{t}");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            json!({"error": "Forbidden"})
        );
    }
    let (st, _, _) = fetch_key(&s, "no-such-key", Some(&mint("no-such-key", later()))).await;
    assert_eq!(st, 404);

    // 6 per minute per token: the 7th with the same token is refused, another token is not.
    let t = mint("movie-1", later() + 1);
    for i in 0..6 {
        assert_eq!(
            fetch_key(&s, "movie-1", Some(&t)).await.0,
            200,
            "request {i}"
        );
    }
    let (st, body, h) = fetch_key(&s, "movie-1", Some(&t)).await;
    assert_eq!(st, 429);
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"],
        "Rate limit exceeded"
    );
    assert_eq!(
        fetch_key(&s, "movie-1", Some(&mint("movie-1", later() + 2)))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn kek_rotation_keeps_every_key_readable() {
    let s = Sluice::start_with_env(KEK_ONLY_A, &env_ab());
    let hashes = ["rot-1", "rot-2", "rot-3"];
    let mut keys = Vec::new();
    for h in hashes {
        let (ok, out, err) = cli(&s, &["content-key", "generate", "--hash", h]);
        assert!(ok, "{err}");
        keys.push(hex::decode(out).unwrap());
    }
    let (ok, _, err) = cli(
        &s,
        &[
            "content-key",
            "import",
            "--hash",
            "rot-4",
            "--key-hex",
            KEY_HEX,
        ],
    );
    assert!(ok, "{err}");
    keys.push(hex::decode(KEY_HEX).unwrap());
    let all: Vec<&str> = hashes.iter().copied().chain(["rot-4"]).collect();
    let check = |s: &Sluice| {
        let s_edge = s.edge;
        let all = all.clone();
        let keys = keys.clone();
        async move {
            for (h, k) in all.iter().zip(&keys) {
                let resp = client()
                    .get(format!("http://{s_edge}/api/key/{h}"))
                    .header("authorization", format!("Bearer {}", mint(h, later())))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "{h}");
                assert_eq!(&resp.bytes().await.unwrap()[..], &k[..], "{h}");
            }
        }
    };
    check(&s).await;

    // Restart with B current and A previous: still readable; rotate; restart with only B.
    let dir = s.stop_keep_dir();
    let s = Sluice::start_in(dir, KEK_B_PREV_A, &env_ab());
    check(&s).await;
    let dir = s.stop_keep_dir();
    // Before rotating, B alone cannot open A's records: a 500 with nothing leaked.
    let s = Sluice::start_in(dir, KEK_ONLY_B, &env_ab());
    let (st, body, _) = fetch_key(&s, "rot-1", Some(&mint("rot-1", later()))).await;
    assert_eq!(st, 500);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"error": "Internal server error"})
    );
    let dir = s.stop_keep_dir();
    let s = Sluice::start_in(dir, KEK_B_PREV_A, &env_ab());
    let (ok, out, err) = cli(&s, &["keys", "rotate-kek"]);
    assert!(ok, "{err}");
    assert_eq!(out, "re-sealed 4 of 4 content key(s) under KEK kek-b");
    let dir = s.stop_keep_dir();
    let s = Sluice::start_in(dir, KEK_ONLY_B, &env_ab());
    check(&s).await;
    let db = rusqlite::Connection::open(s.state_dir().join("state/sluice.db")).unwrap();
    let ids: Vec<String> = db
        .prepare("SELECT DISTINCT kek_id FROM content_keys")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids, ["kek-b"]);
    // The CLI token helper mints what the endpoint accepts.
    let (ok, token, err) = cli(&s, &["token", "key", "--hash", "rot-4", "--ttl", "60"]);
    assert!(ok, "{err}");
    assert_eq!(
        fetch_key(&s, "rot-4", Some(&token)).await.1,
        hex::decode(KEY_HEX).unwrap()
    );
}

/// An hls.js-style flow: the playlist comes through `/stream`, its `EXT-X-KEY` URI is
/// resolved against the playlist URL and fetched with the bearer header.
#[tokio::test]
async fn hls_player_flow_fetches_the_key() {
    let hash = "movie-enc";
    let playlist = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-KEY:METHOD=AES-128,URI=\"/api/key/{hash}\",IV=0x00000000000000000000000000000001\n#EXTINF:4.0,\nseg_0.ts\n#EXT-X-ENDLIST\n"
    );
    let o = TestOrigin::new()
        .route(
            &format!("/{hash}/video/playlist.m3u8"),
            Reply::ok(playlist, "application/vnd.apple.mpegurl"),
        )
        .start();
    let s = Sluice::start_with_env(
        &format!("{KEK_ONLY_A}origins:\n  bucket: {}\n", o.url()),
        &env_ab(),
    );
    let (ok, _, err) = cli(
        &s,
        &[
            "content-key",
            "import",
            "--hash",
            hash,
            "--key-hex",
            KEY_HEX,
        ],
    );
    assert!(ok, "{err}");
    let playlist_url =
        url::Url::parse(&s.edge_url(&format!("/stream/{hash}/video/playlist.m3u8"))).unwrap();
    let text = client()
        .get(playlist_url.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key_line = text.lines().find(|l| l.starts_with("#EXT-X-KEY:")).unwrap();
    let uri = key_line
        .split("URI=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let key_url = playlist_url.join(uri).unwrap();
    // The browser's CORS preflight for a bearer header, then the key request itself.
    let pre = client()
        .request(reqwest::Method::OPTIONS, key_url.clone())
        .header("origin", "https://player.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-allow-origin"], "*");
    assert!(pre.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("Authorization"));
    let (ok, token, err) = cli(&s, &["token", "key", "--hash", hash, "--ttl", "3600"]);
    assert!(ok, "{err}");
    let resp = client()
        .get(key_url)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        &resp.bytes().await.unwrap()[..],
        &hex::decode(KEY_HEX).unwrap()[..]
    );
}

/// playback-api.txt's shell token recipe and curl examples, verbatim but for the host.
#[tokio::test]
async fn document_shell_recipe_prints_16() {
    let s = Sluice::start_with_env(KEK_ONLY_A, &env_ab());
    let (ok, _, err) = cli(
        &s,
        &[
            "content-key",
            "import",
            "--hash",
            "movie-2026-04-01",
            "--key-hex",
            KEY_HEX,
        ],
    );
    assert!(ok, "{err}");
    let doc = common::seed("playback-api.txt");
    let start = doc.find("shell token generation example").unwrap();
    let recipe_start = start + doc[start..].find("MEDIA_HASH=").unwrap();
    let recipe_end = recipe_start + doc[recipe_start..].find("curl examples").unwrap();
    let curl_start = recipe_end + doc[recipe_end..].find("curl -i").unwrap();
    let curl_end = curl_start + doc[curl_start..].find("On success").unwrap();
    let script = format!(
        "{}\n{}",
        &doc[recipe_start..recipe_end],
        &doc[curl_start..curl_end]
    )
    .replace("http://localhost:3000", &format!("http://{}", s.edge));
    let out = Command::new("bash")
        .arg("-ec")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The first curl (no header) shows the 401, whose JSON body has no final newline, so
    // the last command's `wc -c` output follows it on the same line: 16 bytes of key.
    assert!(stdout.contains("HTTP/1.1 401"), "{stdout}");
    assert!(
        stdout
            .trim_end()
            .ends_with(r#"{"error":"Missing Authorization: Bearer token"}16"#),
        "{stdout}"
    );
}

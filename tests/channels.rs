//! signed-channel-api.txt over real HTTP against the binary: the anonymous catalog routes,
//! the HMAC-protected stream route (exact success shape, missing headers, bad signature,
//! stale timestamp, replay on another path), and the document's Python and Node clients run
//! verbatim against the admin listener (their `http://localhost:8000`).

mod common;

use std::process::Command;

use common::{client, Sluice};
use serde_json::{json, Value};

/// The document's own example secret.
const SECRET: &str = "your-hmac-secret-key-here";
const KEK: &str = "3333333333333333333333333333333333333333333333333333333333333333";
const KID: &str = "834fae2345ef01a88bb3d2345eaf12bc";
const KEY: &str = "a12d34bf56ea7890bcde12345fae9812";

fn config(sealed_key: &str) -> String {
    format!(
        r#"kek:
  current: {{id: kek-1, env: SLUICE_KEK}}
signed_channels:
  secret_env: CHANNEL_SECRET
  skew: 300s
  channels:
    - key: fifatv
      name: FIFA CTV
      url: https://example.com/stream.mpd
      type: dash
      drm: clearkey
      keys:
        {KID}: "{sealed_key}"
    - key: wctveng
      name: WC TV English
      url: https://example.com/wctv/master.m3u8
      type: hls
      drm: clearkey
      keys:
        {KID}: {KEY}
  matches:
    - id: final
      title: Final
      start: 2000-01-01T00:00:00Z
      channels: [fifatv, wctveng]
    - id: next
      title: Next season opener
      start: 2999-01-01T00:00:00Z
      channels: [wctveng]
    - id: over
      title: Long ago
      start: 2000-01-01T00:00:00Z
      end: 2000-01-01T02:00:00Z
"#
    )
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![("CHANNEL_SECRET", SECRET), ("SLUICE_KEK", KEK)]
}

/// Seal the ClearKey key with the CLI, as an operator would, then start.
fn start() -> Sluice {
    let s = Sluice::start_with_env(&config(KEY), &env());
    let out = Command::new(common::sluice_bin())
        .args([
            "secret",
            "seal-clearkey",
            "--kid",
            KID,
            "--key-hex",
            KEY,
            "-c",
        ])
        .arg(&s.config_path)
        .envs(env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let envelope = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(envelope.starts_with("v2:kek-1:"), "{envelope}");
    let dir = s.stop_keep_dir();
    let cfg = config(&envelope);
    assert!(!cfg.contains(&format!("{KID}: \"{KEY}\"")));
    Sluice::start_in(dir, &cfg, &env())
}

fn sign(ts: i64, path: &str) -> String {
    sluice::auth::request_sig::sign(SECRET.as_bytes(), ts, path)
}

async fn get(url: String, headers: &[(&str, String)]) -> (u16, Value) {
    let mut r = client().get(url);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    let resp = r.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

fn err(code: u16, message: &str) -> Value {
    json!({"success": false, "data": null, "error": {"code": format!("HTTP_{code}"), "message": message}})
}

#[tokio::test]
async fn signed_stream_shape_and_refusals() {
    let s = start();
    let path = "/api/v1/channels/fifatv/stream";
    let now = chrono::Utc::now().timestamp();
    let signed = |ts: i64, p: &str| {
        vec![
            ("X-Signature-Token", sign(ts, p)),
            ("X-Signature-Timestamp", ts.to_string()),
        ]
    };
    // Exactly the document's success example, on both listeners.
    let expected = json!({
        "success": true,
        "data": {
            "key": "fifatv",
            "name": "FIFA CTV",
            "url": "https://example.com/stream.mpd",
            "type": "dash",
            "drm": "clearkey",
            "clearkey": {"keys": {KID: KEY}}
        },
        "error": null
    });
    for url in [s.edge_url(path), s.admin_url(path)] {
        assert_eq!(get(url, &signed(now, path)).await, (200, expected.clone()));
    }
    // Field order too, as the document prints it.
    let text = client()
        .get(s.edge_url(path))
        .headers(
            signed(now, path)
                .into_iter()
                .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
                .collect(),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        text,
        format!(
            r#"{{"success":true,"data":{{"key":"fifatv","name":"FIFA CTV","url":"https://example.com/stream.mpd","type":"dash","drm":"clearkey","clearkey":{{"keys":{{"{KID}":"{KEY}"}}}}}},"error":null}}"#
        )
    );
    // The same signed request again, inside the window: accepted (documented trade-off).
    assert_eq!(get(s.edge_url(path), &signed(now, path)).await.0, 200);

    let missing = err(401, "Secure session credentials missing");
    assert_eq!(get(s.edge_url(path), &[]).await, (401, missing.clone()));
    assert_eq!(
        get(
            s.edge_url(path),
            &[("X-Signature-Timestamp", now.to_string())]
        )
        .await,
        (401, missing)
    );
    let mut bad = signed(now, path);
    bad[0].1 = sign(now, "/api/v1/channels/fifatv/streamX");
    assert_eq!(
        get(s.edge_url(path), &bad).await,
        (403, err(403, "Invalid signature"))
    );
    let mut wrong_secret = signed(now, path);
    wrong_secret[0].1 = sluice::auth::request_sig::sign(b"another-secret-xxxxxxxx", now, path);
    assert_eq!(get(s.edge_url(path), &wrong_secret).await.0, 403);
    // Stale and future timestamps, correctly signed, are refused. Read the clock again and
    // keep a margin past the ±300 s window: on a loaded machine a second or more passes
    // between the start of this test and this request, and `now + 301` was once inside it.
    let now = chrono::Utc::now().timestamp();
    for ts in [now - 310, now + 310] {
        let (st, v) = get(s.edge_url(path), &signed(ts, path)).await;
        assert_eq!(
            (st, v["error"]["code"].clone()),
            (401, json!("HTTP_401")),
            "{v}"
        );
    }
    // A captured signature replayed on another path is refused.
    let other = "/api/v1/channels/wctveng/stream";
    assert_eq!(get(s.edge_url(other), &signed(now, path)).await.0, 403);
    assert_eq!(get(s.edge_url(other), &signed(now, other)).await.0, 200);
    // Unknown channel (validly signed): 404 in the envelope.
    let nope = "/api/v1/channels/nope/stream";
    assert_eq!(
        get(s.edge_url(nope), &signed(now, nope)).await,
        (404, err(404, "Channel not found"))
    );
}

#[tokio::test]
async fn anonymous_catalog_routes() {
    let s = start();
    let (st, v) = get(s.edge_url("/api/v1/channels"), &[]).await;
    assert_eq!(st, 200);
    assert_eq!(
        v,
        json!({"success": true, "data": [
            {"key": "fifatv", "name": "FIFA CTV", "type": "dash", "drm": "clearkey"},
            {"key": "wctveng", "name": "WC TV English", "type": "hls", "drm": "clearkey"}
        ], "error": null})
    );
    assert!(!v.to_string().contains(KEY) && !v.to_string().contains(KID));
    let (st, v) = get(s.admin_url("/api/v1/matches"), &[]).await;
    assert_eq!(st, 200);
    let list = v["data"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    assert_eq!(list[0]["id"], "final");
    assert_eq!(list[0]["status"], "live");
    assert_eq!(list[1]["status"], "upcoming");
    assert_eq!(list[1]["start_time"], "2999-01-01T00:00:00Z");
    let (st, v) = get(s.edge_url("/api/v1/stats"), &[]).await;
    assert_eq!(st, 200);
    assert_eq!(v["data"]["channels"], 2);
    assert_eq!(v["data"]["live_matches"], 1);
    assert_eq!(v["data"]["upcoming_matches"], 1);
    let (st, v) = get(s.edge_url("/api/v1/health"), &[]).await;
    assert_eq!(
        (st, v["success"].clone(), v["data"]["status"].clone()),
        (200, json!(true), json!("ok"))
    );
}

fn doc() -> String {
    common::seed("signed-channel-api.txt")
}

/// The Python and Node clients of the document, with only the host changed (their
/// `localhost:8000` is sluice's admin listener; the tests' listener has another port).
#[tokio::test]
async fn document_clients_work_unchanged() {
    let s = start();
    let doc = doc();
    let base = format!("http://{}", s.admin);
    let subst = |code: &str| code.replace("http://localhost:8000", &base);

    let start_py = doc.find("import time").expect("python snippet");
    let end_py = start_py
        + doc[start_py..].find("print(response.json())").unwrap()
        + "print(response.json())".len();
    let py = subst(&doc[start_py..end_py]);
    let out = Command::new("python3").arg("-c").arg(&py).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("'success': True"), "{stdout}");
    assert!(stdout.contains(&format!("'{KID}': '{KEY}'")), "{stdout}");

    let start_js = doc
        .find("const crypto = require('crypto');")
        .expect("node snippet");
    let tail = ".catch(err => console.error(\"Error:\", err.message));";
    let end_js = start_js + doc[start_js..].find(tail).unwrap() + tail.len();
    let js = subst(&doc[start_js..end_js]);
    let out = Command::new("node")
        .arg("-e")
        .arg(&js)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("Decrypted stream:"), "{stdout}\n{stderr}");
    // Node prints nested objects only two levels deep; the keys were checked above.
    assert!(
        stdout.contains("success: true") && stdout.contains("key: 'wctveng'"),
        "{stdout}"
    );
}

//! Tokens, secrets, answer shapes and the process under attack (issue 10): secrets that must
//! differ, identities in separate namespaces, `streamUrl` that a client cannot steer, JOSE
//! `crit`, every answer in its document's shape (405, 404, 413, HEAD, CONNECT, preflights,
//! `no-store`), strict bodies, and a process that fails loudly instead of half-running.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{admin_key, client, free_port, sluice_bin, Reply, Sluice, TestOrigin};
use serde_json::{json, Value};

const STREAM_SECRET: &str = "stream-secret-0123456789abcdef";
const JWT_SECRET: &str = "user-jwt-secret-0123456789abcdef";
const PROVIDER_SECRET: &str = "provider-jwt-secret-0123456789";

fn config(extra: &str) -> String {
    format!(
        "streaming:\n  secret: {STREAM_SECRET}\n  jwt:\n    secret: {JWT_SECRET}\n  contents:\n    - {{id: c1, hash: movie, token_required: true}}\n{extra}"
    )
}

fn user_jwt(claims: Value, header: Option<&str>) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let header = b64(header.unwrap_or(r#"{"alg":"HS256","typ":"JWT"}"#));
    let payload = b64(&claims.to_string());
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(JWT_SECRET.as_bytes()).unwrap();
    m.update(format!("{header}.{payload}").as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{header}.{payload}.{sig}")
}

fn exp() -> i64 {
    chrono::Utc::now().timestamp() + 600
}

async fn send(r: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = r.send().await.unwrap();
    let st = resp.status().as_u16();
    let h = resp.headers().clone();
    (st, h, resp.text().await.unwrap())
}

fn check(config_text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, config_text).unwrap();
    let out = Command::new(sluice_bin())
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_refuses_shared_secrets_and_unknown_server_keys() {
    let (code, out) = check(&format!(
        "streaming:\n  secret: {STREAM_SECRET}\n  jwt:\n    secret: {STREAM_SECRET}\n"
    ));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("streaming.jwt.secret") && out.contains("must differ"),
        "{out}"
    );
    let (code, out) = check(&format!(
        "provider_auth:\n  jwt_secret: {STREAM_SECRET}\nkey_delivery:\n  secret: {STREAM_SECRET}\n"
    ));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("provider_auth.jwt_secret"), "{out}");
    let (code, out) = check("server:\n  thredas: 2\n");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("server.thredas") && out.contains("line 2"),
        "{out}"
    );
    // Valid, with a note on what production needs.
    let (code, out) = check(&config(""));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("public_base_url"), "{out}");
}

#[tokio::test]
async fn a_user_cannot_take_an_api_keys_identity() {
    let s = Sluice::start(&config(""));
    let key = admin_key(&s);
    let (st, _, body) = send(
        client()
            .post(s.edge_url("/api/v2/streaming/token"))
            .bearer_auth(&key)
            .json(&json!({"contentId": "c1"})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let token = serde_json::from_str::<Value>(&body).unwrap()["streamToken"]
        .as_str()
        .unwrap()
        .to_string();
    let impostor = user_jwt(json!({"sub": "apikey:1", "exp": exp()}), None);
    let (st, _, body) = send(
        client()
            .post(s.edge_url("/api/v2/streaming/revoke"))
            .bearer_auth(&impostor)
            .json(&json!({"streamToken": token})),
    )
    .await;
    assert_eq!(st, 401, "{body}");
    let (st, _, _) = send(
        client()
            .post(s.edge_url("/api/v2/streaming/token"))
            .bearer_auth(&impostor)
            .json(&json!({"contentId": "c1"})),
    )
    .await;
    assert_eq!(st, 401);
    // A stream token is not a user bearer, and a JWT with `crit` is refused.
    let (st, _, _) = send(
        client()
            .post(s.edge_url("/api/v2/streaming/token"))
            .bearer_auth(&token)
            .json(&json!({"contentId": "c1"})),
    )
    .await;
    assert_eq!(st, 401);
    let crit = user_jwt(
        json!({"sub": "u", "exp": exp()}),
        Some(r#"{"alg":"HS256","typ":"JWT","crit":["exp"]}"#),
    );
    let (st, _, _) = send(
        client()
            .post(s.edge_url("/api/v2/streaming/token"))
            .bearer_auth(&crit)
            .json(&json!({"contentId": "c1"})),
    )
    .await;
    assert_eq!(st, 401);
    let fine = user_jwt(json!({"sub": "u", "exp": exp()}), None);
    let (st, _, _) = send(
        client()
            .post(s.edge_url("/api/v2/streaming/token"))
            .bearer_auth(&fine)
            .json(&json!({"contentId": "c1"})),
    )
    .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn provider_jwts_with_crit_are_refused() {
    let s = Sluice::start(&format!(
        "provider_auth:\n  jwt_secret: {PROVIDER_SECRET}\nproviders:\n  acme:\n    allow_private: true\n    channels:\n      ch1: {{url: 'http://127.0.0.1:9/live.m3u8', type: hls}}\n"
    ));
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let sign = |header: &str| {
        use hmac::{Hmac, Mac};
        let h = b64(header);
        let p = b64(&json!({"sub": "u", "exp": exp()}).to_string());
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(PROVIDER_SECRET.as_bytes()).unwrap();
        m.update(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", b64_bytes(&m.finalize().into_bytes()))
    };
    let url = s.edge_url("/api/providers/acme/channels/ch1/stream");
    let (st, h, _) = send(client().get(&url).bearer_auth(sign(r#"{"alg":"HS256"}"#))).await;
    assert_eq!(st, 200);
    assert_eq!(h["cache-control"], "no-store");
    let (st, _, body) = send(
        client()
            .get(&url)
            .bearer_auth(sign(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#)),
    )
    .await;
    assert_eq!(st, 401, "{body}");
}

fn b64_bytes(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Mint a token with an admin key, sending `headers`; the `streamUrl` sluice answered.
async fn stream_url(s: &Sluice, headers: &[(&str, &str)]) -> String {
    let mut r = client()
        .post(s.edge_url("/api/v2/streaming/token"))
        .bearer_auth(admin_key(s))
        .json(&json!({"contentId": "c1"}));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let (_, _, body) = send(r).await;
    serde_json::from_str::<Value>(&body).unwrap()["streamUrl"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn stream_url_is_not_steered_by_the_client() {
    let forwarded = [
        ("host", "cdn.example.com"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
    ];
    // The peer is not a trusted proxy: its forwarding headers are not believed.
    let s = Sluice::start(&config("trusted_proxies: [127.0.0.2]\n"));
    let url = stream_url(&s, &forwarded).await;
    assert!(
        url.starts_with("http://cdn.example.com/stream/movie/master.m3u8?token="),
        "{url}"
    );
    drop(s);
    // From a trusted proxy they are.
    let s = Sluice::start(&config("trusted_proxies: [127.0.0.1]\n"));
    let url = stream_url(&s, &forwarded).await;
    assert!(
        url.starts_with("https://evil.example/stream/movie/master.m3u8?token="),
        "{url}"
    );
    drop(s);
    // Configured: always the public base, whatever the request says.
    let s = Sluice::start(&config("  public_base_url: https://media.example.net\n"));
    let url = stream_url(&s, &forwarded).await;
    assert!(
        url.starts_with("https://media.example.net/stream/movie/master.m3u8?token="),
        "{url}"
    );
}

#[tokio::test]
async fn every_answer_in_its_documents_shape() {
    let s = Sluice::start(&config(""));
    let key = admin_key(&s);
    // 405s.
    let (st, h, body) = send(client().get(s.edge_url("/api/v2/streaming/token"))).await;
    assert_eq!(st, 405);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"statusCode": 405, "message": "Method Not Allowed", "error": "Method Not Allowed"})
    );
    assert_eq!(h["content-type"], "application/json");
    let (st, _, body) = send(client().get(s.admin_url("/api/keys")).bearer_auth(&key)).await;
    assert_eq!(st, 405);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "error", "message": "Method Not Allowed"})
    );
    let (st, _, body) = send(client().post(s.edge_url("/api/v1/health"))).await;
    assert_eq!(st, 405);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        "HTTP_405"
    );
    // Unknown signed-channel route: the envelope.
    let (st, _, body) = send(client().get(s.edge_url("/api/v1/nope"))).await;
    assert_eq!(st, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"success": false, "data": null, "error": {"code": "HTTP_404", "message": "Not found"}})
    );
    // 413 on the stream-token surface is NestJS-shaped.
    let (st, _, body) = send(
        client()
            .post(s.edge_url("/api/v2/streaming/token"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(vec![b' '; 100 * 1024]),
    )
    .await;
    assert_eq!(st, 413);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["statusCode"].clone(), v["error"].clone()),
        (json!(413), json!("Payload Too Large"))
    );
    // Body errors name no internal type.
    let (st, _, body) = send(
        client()
            .post(s.edge_url("/api/v2/streaming/token"))
            .bearer_auth(&key)
            .json(&json!([])),
    )
    .await;
    assert_eq!(st, 400);
    assert!(
        !body.contains("TokenRequest") && !body.contains("struct"),
        "{body}"
    );
    // HEAD answers with the GET's length.
    let get_len = send(client().get(s.edge_url("/health"))).await.2.len();
    let (st, h, body) = send(client().head(s.edge_url("/health"))).await;
    assert_eq!((st, body.len()), (200, 0));
    assert_eq!(h["content-length"], get_len.to_string());
    let (_, h, _) = send(
        client()
            .head(s.admin_url("/api/stream-ids"))
            .bearer_auth(&key),
    )
    .await;
    let get_len = send(
        client()
            .get(s.admin_url("/api/stream-ids"))
            .bearer_auth(&key),
    )
    .await
    .2
    .len();
    assert_eq!(h["content-length"], get_len.to_string());
    // Unknown fields on POST /api/keys are refused, naming the field.
    let (st, _, body) = send(
        client()
            .post(s.admin_url("/api/keys"))
            .bearer_auth(&key)
            .json(&json!({"name": "x", "permissions": "read", "active": false})),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("'active'"), "{body}");
    // CONNECT is answered by sluice in JSON, never tunnelled.
    let mut sock = std::net::TcpStream::connect(s.edge).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = sock.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("CONNECT is not supported"), "{text}");
}

#[tokio::test]
async fn player_routes_answer_preflights_and_are_never_cached() {
    let s = Sluice::start(&config(""));
    let key = admin_key(&s);
    for (path, wanted) in [
        ("/api/v2/streaming/token", "X-Device-Id"),
        ("/api/v2/streaming/verify", "Authorization"),
        ("/api/v1/channels/wctveng/stream", "X-Signature-Token"),
        ("/api/providers/acme/channels/ch1/stream", "Authorization"),
    ] {
        let (st, h, _) = send(
            client()
                .request(reqwest::Method::OPTIONS, s.edge_url(path))
                .header("origin", "https://player.example")
                .header("access-control-request-method", "POST"),
        )
        .await;
        assert_eq!(st, 204, "{path}");
        assert_eq!(h["access-control-allow-origin"], "*", "{path}");
        let allowed = h["access-control-allow-headers"].to_str().unwrap();
        assert!(allowed.contains(wanted), "{path}: {allowed}");
        assert!(h.get("access-control-allow-credentials").is_none());
    }
    let (st, h, body) = send(
        client()
            .post(s.edge_url("/api/v2/streaming/token"))
            .bearer_auth(&key)
            .json(&json!({"contentId": "c1"})),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["access-control-allow-origin"], "*");
    let token = serde_json::from_str::<Value>(&body).unwrap()["streamToken"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, h, _) =
        send(client().get(s.edge_url(&format!("/api/v2/streaming/verify?token={token}")))).await;
    assert_eq!(st, 200);
    assert_eq!(h["cache-control"], "no-store");
}

#[tokio::test]
async fn license_answers_are_bounded_while_they_stream() {
    // A license server that streams without end (no Content-Length): refused at the cap,
    // at once, not after reading everything.
    let endless = vec![7u8; 64 * 1024 * 1024];
    let o = TestOrigin::new()
        .route(
            "/license",
            Reply::ok(endless, "application/octet-stream")
                .trickle(64, Duration::from_secs(60))
                .unannounced_length(),
        )
        .start();
    let s = Sluice::start(&format!(
        "streaming:\n  secret: {STREAM_SECRET}\n  license_timeout: 30s\n  contents:\n    - id: c1\n      hash: movie\n      drm:\n        widevine: {{url: '{}/license'}}\n",
        o.url()
    ));
    let key = admin_key(&s);
    let started = Instant::now();
    let (st, _, body) = send(
        client()
            .post(s.edge_url("/api/v2/streaming/drm/license"))
            .bearer_auth(&key)
            .json(&json!({"contentId": "c1", "drmType": "widevine", "challenge": "AAEC"})),
    )
    .await;
    assert_eq!(st, 502, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Start `sluice serve` on a config and wait for it to exit by itself.
fn serve_until_exit(config_text: &str, dir: &std::path::Path) -> (Option<i32>, String) {
    let path = dir.join("c.yaml");
    std::fs::write(&path, config_text).unwrap();
    let mut child = Command::new(sluice_bin())
        .args(["serve", "-c"])
        .arg(&path)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            return (status.code(), out);
        }
        if start.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            return (None, "still running after 15 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_listener_that_cannot_bind_ends_the_process() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "listen:\n  edge: 127.0.0.1:{}\n  admin: {admin}\nstate:\n  sqlite: {}\nserver:\n  grace_period_seconds: 0\n",
        free_port(),
        dir.path().join("state/s.db").display()
    );
    let (code, out) = serve_until_exit(&text, dir.path());
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}: {out}");
    assert!(
        out.contains("listen.admin") && out.contains(&admin.to_string()),
        "{out}"
    );
}

#[tokio::test]
async fn one_state_directory_one_process_and_private_state_files() {
    let s = Sluice::start("");
    assert_eq!(
        client()
            .get(s.edge_url("/stream/demo/master.m3u8"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The same state directory, other ports: refused, and the first keeps serving.
    let text = std::fs::read_to_string(&s.config_path).unwrap();
    let text = text
        .replace(&s.edge.to_string(), &format!("127.0.0.1:{}", free_port()))
        .replace(&s.admin.to_string(), &format!("127.0.0.1:{}", free_port()));
    let other = tempfile::tempdir().unwrap();
    let (code, out) = serve_until_exit(&text, other.path());
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}: {out}");
    assert!(out.contains("already running"), "{out}");
    for _ in 0..3 {
        let r = client()
            .get(s.edge_url("/stream/demo/master.m3u8"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: std::path::PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    let state = s.state_dir().join("state");
    assert_eq!(mode(state.join("sluice.db")), 0o600);
    assert_eq!(mode(state.join("run")), 0o700);
    assert_eq!(mode(state.join("run/origin.sock")) & 0o077, 0);
}

#[tokio::test]
async fn an_upgrade_takes_the_state_lock_over() {
    let mut old = Sluice::start("");
    let lock = old.state_dir().join("state/sluice.lock");
    let pid_in_lock = || {
        std::fs::read_to_string(&lock)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert_eq!(pid_in_lock(), old.pid().to_string());
    // As the unit does it: SIGQUIT, then the new process, which the old one hands the
    // sockets to (in either mode the harness runs: the daemon started is the new process).
    assert!(Command::new("kill")
        .args(["-QUIT", &old.pid().to_string()])
        .status()
        .unwrap()
        .success());
    let new_log = old.state_dir().join("new.log");
    let mut new = common::spawn_sluice(old.mode, &old.config_path, &["--upgrade"], &new_log, &[])
        .expect("the new process starts");
    old.wait_exit(Duration::from_secs(20));
    let start = Instant::now();
    while pid_in_lock() != new.pid().to_string() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the new process did not take the lock: {}\n{}",
            pid_in_lock(),
            std::fs::read_to_string(old.state_dir().join("new.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = client()
        .get(old.edge_url("/stream/demo/master.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    new.kill();
}

//! The logs an operator reads, from the real binary: access lines on both listeners with
//! the same fields (`client` included) and the body bytes really sent, also for answers
//! sluice writes itself; every line logged while a request is handled naming its
//! `request_id`; `log.access_log` as `false`, `stdout` or a file of JSON lines kept out of
//! the main log, reopened on SIGHUP after logrotate moved it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{client, free_port, sluice_bin, Reply, RunningOrigin, Sluice, TestOrigin};
use serde_json::{json, Value};

const STREAM_SECRET: &str = "logs-test-stream-secret-0123456789abcdef";
const PROVIDER_SECRET: &str = "logs-test-provider-jwt-secret-0123456789";

fn origin() -> RunningOrigin {
    TestOrigin::new()
        .route(
            "/movie-open/seg1.ts",
            Reply::ok(vec![7u8; 4000], "video/mp2t"),
        )
        // The provider's API fails: its stream endpoint logs a WARN line.
        .route("/channels/broken", Reply::status(500))
        .start()
}

/// An origin address nothing listens on (connections refused: a proxy failure).
fn closed_port() -> u16 {
    free_port()
}

fn config(origin: &RunningOrigin, log: &str) -> String {
    format!(
        "origins:\n  bucket: {url}\nstreaming:\n  secret: {STREAM_SECRET}\n  contents:\n    - id: open\n      hash: movie-open\n    - id: gated\n      hash: movie-gated\n      token_required: true\nprovider_auth:\n  jwt_secret: {PROVIDER_SECRET}\nproviders:\n  acme:\n    allow_private: true\n    allowed_hosts: [\"127.0.0.1\"]\n    channels:\n      broken: {{api: \"{url}/channels/broken\", type: hls}}\n{log}",
        url = origin.url()
    )
}

fn provider_jwt() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "user-1", "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(PROVIDER_SECRET.as_bytes()),
    )
    .unwrap()
}

/// Send `method url` with `id` as its `X-Request-Id`; the status and the body bytes received.
async fn send(method: &str, url: String, id: &str) -> (u16, usize) {
    let r = client()
        .request(method.parse().unwrap(), url)
        .header("x-request-id", id)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap().len())
}

/// Wait until `text()` has a line containing every one of `needles`; that line.
fn wait_line(what: &str, text: impl Fn() -> String, needles: &[&str]) -> String {
    let start = Instant::now();
    loop {
        let t = text();
        if let Some(l) = t.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return l.to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no {what} line with {needles:?}:\n{t}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The access line of request `id` in the main log.
fn access_line(s: &Sluice, id: &str) -> String {
    let tag = format!("request_id={id}");
    wait_line("access", || s.log(), &["sluice::access", &tag])
}

/// `key=value` of a text line (the value up to the next space).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let at = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line}"));
    let rest = &line[at + key.len() + 2..];
    rest.split(' ').next().unwrap_or("")
}

#[tokio::test]
async fn admin_access_lines_name_the_client_like_edge_lines() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    send("GET", s.admin_url("/health"), "admin-client-1").await;
    send("GET", s.edge_url("/health"), "edge-client-1").await;
    let admin = access_line(&s, "admin-client-1");
    let edge = access_line(&s, "edge-client-1");
    assert_eq!(field(&admin, "client"), "127.0.0.1", "{admin}");
    assert_eq!(field(&edge, "client"), "127.0.0.1", "{edge}");
    // The same fields on both listeners.
    let keys = |l: &str| -> Vec<String> {
        l.split(' ')
            .filter_map(|w| w.split_once('=').map(|(k, _)| k.to_string()))
            .collect()
    };
    assert_eq!(keys(&admin), keys(&edge), "{admin}\n{edge}");
}

#[tokio::test]
async fn access_lines_count_the_body_bytes_of_answers_sluice_writes_itself() {
    let o = origin();
    // Media comes from a port nothing listens on: every media fetch fails (502).
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let s = Sluice::start(&config(&o, "").replace(&o.url(), &dead));
    let cases = [
        ("GET", s.edge_url("/health"), "bytes-edge-health", 200),
        // An API answer (a refusal in the streaming API's shape).
        (
            "GET",
            s.edge_url("/api/v2/streaming/verify?token=nonsense"),
            "bytes-edge-api",
            401,
        ),
        // A local refusal at the gate.
        (
            "GET",
            s.edge_url("/stream/movie-gated/master.m3u8"),
            "bytes-edge-gate",
            401,
        ),
        // A proxy failure's error body.
        (
            "GET",
            s.edge_url("/stream/movie-open/seg1.ts"),
            "bytes-edge-502",
            502,
        ),
        ("GET", s.admin_url("/health"), "bytes-admin-health", 200),
        ("GET", s.admin_url("/metrics"), "bytes-admin-metrics", 200),
        (
            "GET",
            s.admin_url("/api/stream-ids"),
            "bytes-admin-401",
            401,
        ),
    ];
    for (method, url, id, want) in &cases {
        let (status, len) = send(method, url.clone(), id).await;
        assert_eq!(status, *want, "{url}");
        assert!(len > 0, "{url}: an empty body proves nothing");
        let line = access_line(&s, id);
        assert_eq!(field(&line, "status"), want.to_string(), "{line}");
        assert_eq!(field(&line, "bytes"), len.to_string(), "{url}: {line}");
    }
    // HEAD sends the GET's header and no body.
    for (url, id) in [
        (s.edge_url("/health"), "bytes-edge-head"),
        (s.admin_url("/health"), "bytes-admin-head"),
    ] {
        let (status, len) = send("HEAD", url, id).await;
        assert_eq!((status, len), (200, 0));
        assert_eq!(field(&access_line(&s, id), "bytes"), "0");
    }
}

#[tokio::test]
async fn lines_logged_while_handling_a_request_carry_its_request_id() {
    let o = origin();
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let s = Sluice::start(
        &config(&o, "").replace(&format!("bucket: {}", o.url()), &format!("bucket: {dead}")),
    );
    let tag = |id: &str| format!("request_id={id}");

    // An origin error on /stream: sluice's WARN and Pingora's own ERROR line.
    let (status, _) = send(
        "GET",
        s.edge_url("/stream/movie-open/seg1.ts"),
        "origin-down-1",
    )
    .await;
    assert_eq!(status, 502);
    let warn = wait_line(
        "WARN",
        || s.log(),
        &["WARN", "proxy failed", &tag("origin-down-1")],
    );
    assert!(!warn.contains("sluice::access"), "{warn}");
    wait_line(
        "Pingora ERROR",
        || s.log(),
        &["ERROR", "Fail to proxy", &tag("origin-down-1")],
    );

    // A WARN from an API handler, on either listener: the provider's API fails.
    let jwt = provider_jwt();
    for (url, id) in [
        (
            s.edge_url("/api/providers/acme/channels/broken/stream"),
            "provider-edge-1",
        ),
        (
            s.admin_url("/api/providers/acme/channels/broken/stream"),
            "provider-admin-1",
        ),
    ] {
        let r = client()
            .get(url)
            .bearer_auth(&jwt)
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        wait_line(
            "WARN",
            || s.log(),
            &["WARN", "provider API error", &tag(id)],
        );
    }
    // Each WARN line names its own request, not another.
    let log = s.log();
    let provider_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("provider API error"))
        .collect();
    assert_eq!(provider_lines.len(), 2, "{log}");
    assert!(provider_lines
        .iter()
        .all(|l| l.matches("request_id=").count() == 1));
}

/// JSON lines of a file (each line one object), waiting for at least `min`.
/// The complete JSON lines of `path` once it holds a line for each of `ids` (a line still
/// being written, without its newline, is not read).
fn json_lines(path: &Path, ids: &[&str]) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        let lines: Vec<Value> = complete
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))
            })
            .collect();
        if ids.iter().all(|id| with_id(&lines, id).is_some()) {
            return lines;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} has no line for some of {ids:?}:\n{text}",
            path.display(),
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn with_id<'a>(lines: &'a [Value], id: &str) -> Option<&'a Value> {
    lines.iter().find(|l| l["request_id"] == id)
}

#[tokio::test]
async fn access_log_to_a_file_is_json_lines_kept_out_of_the_main_log_and_reopened_on_sighup() {
    use std::os::unix::fs::PermissionsExt;
    let o = origin();
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("access.log");
    let s = Sluice::start(&config(
        &o,
        &format!("log:\n  format: json\n  access_log: {}\n", path.display()),
    ));
    let (_, seg) = send("GET", s.edge_url("/stream/movie-open/seg1.ts"), "file-1").await;
    let (_, health) = send("GET", s.admin_url("/health"), "file-2").await;
    let lines = json_lines(&path, &["file-1", "file-2"]);
    let edge = with_id(&lines, "file-1").expect("edge line");
    assert_eq!(edge["target"], "sluice::access", "{edge}");
    assert_eq!(edge["listener"], "edge", "{edge}");
    assert_eq!(edge["client"], "127.0.0.1", "{edge}");
    assert_eq!(edge["method"], "GET", "{edge}");
    assert_eq!(edge["path"], "/stream/movie-open/seg1.ts", "{edge}");
    assert_eq!(edge["status"], 200, "{edge}");
    assert_eq!(edge["bytes"], seg as u64, "{edge}");
    assert!(edge["duration_ms"].as_f64().is_some(), "{edge}");
    let admin = with_id(&lines, "file-2").expect("admin line");
    assert_eq!(admin["listener"], "admin", "{admin}");
    assert_eq!(admin["client"], "127.0.0.1", "{admin}");
    assert_eq!(admin["bytes"], health as u64, "{admin}");
    // Created without access for others (0640, narrowed by the umask).
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & !0o640, 0, "access log mode {mode:o}");
    // The main log is JSON too, and has none of the access lines.
    let main = s.log();
    assert!(!main.contains("sluice::access"), "{main}");
    assert!(
        !main.contains("file-1") && !main.contains("file-2"),
        "{main}"
    );
    assert!(main
        .lines()
        .filter(|l| l.starts_with('{'))
        .any(|l| serde_json::from_str::<Value>(l).is_ok()));

    // logrotate: move the file away, then SIGHUP; new lines go to a new file at the path.
    let rotated = logs.path().join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    send("GET", s.edge_url("/health"), "file-3-before-hup").await;
    // Written (by the logging thread, through the descriptor opened before the rename) before
    // the reopen is asked for: a line still queued at the SIGHUP goes to the new file.
    json_lines(&rotated, &["file-3-before-hup"]);
    assert!(Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .unwrap()
        .success());
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "SIGHUP did not reopen the access log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    send("GET", s.edge_url("/health"), "file-4-after-hup").await;
    let new = json_lines(&path, &["file-4-after-hup"]);
    assert!(with_id(&new, "file-4-after-hup").is_some(), "{new:?}");
    assert!(with_id(&new, "file-1").is_none(), "{new:?}");
    let old = json_lines(&rotated, &["file-1", "file-2", "file-3-before-hup"]);
    for id in ["file-1", "file-2", "file-3-before-hup"] {
        assert!(with_id(&old, id).is_some(), "{id} not in the rotated file");
    }
    assert!(with_id(&old, "file-4-after-hup").is_none());
    // Still serving, and the main log says what happened.
    assert_eq!(send("GET", s.edge_url("/health"), "file-5").await.0, 200);
    wait_line("reopen", || s.log(), &["access log reopened"]);
}

#[tokio::test]
async fn access_log_false_writes_no_access_lines() {
    let o = origin();
    let s = Sluice::start(&config(&o, "log:\n  access_log: false\n"));
    send("GET", s.edge_url("/stream/movie-open/seg1.ts"), "off-1").await;
    send("GET", s.admin_url("/health"), "off-2").await;
    // A later line proves the log was written after those requests.
    send("GET", s.edge_url("/stream/movie-gated/nope.ts"), "off-3").await;
    std::thread::sleep(Duration::from_millis(300));
    let log = s.log();
    assert!(!log.contains("sluice::access"), "{log}");
    assert!(log.contains("starting sluice"), "{log}");
}

/// `log.access_log: stdout`: access lines on stdout, everything else on stderr.
#[tokio::test]
async fn access_log_stdout_separates_the_two_streams() {
    let o = origin();
    let dir = tempfile::tempdir().unwrap();
    let edge = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let conf = dir.path().join("sluice.yaml");
    std::fs::write(
        &conf,
        format!(
            "listen:\n  edge: {edge}\n  admin: {admin}\nstate:\n  sqlite: {db}\nserver:\n  threads: 1\n  pid_file: {pid}\n  upgrade_sock: {sock}\n{quick}{rest}",
            db = dir.path().join("state/sluice.db").display(),
            pid = dir.path().join("sluice.pid").display(),
            sock = dir.path().join("upgrade.sock").display(),
            quick = common::QUICK_STOP,
            rest = config(&o, "log:\n  access_log: stdout\n"),
        ),
    )
    .unwrap();
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(sluice_bin())
        .args(["serve", "-c"])
        .arg(&conf)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(std::fs::File::create(&out_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err_path).unwrap()))
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut child);
    let start = Instant::now();
    loop {
        if let Ok(r) = client().get(format!("http://{admin}/health")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "sluice did not start:\n{}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send(
        "GET",
        format!("http://{edge}/stream/movie-open/seg1.ts"),
        "stdout-1",
    )
    .await;
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let line = wait_line(
        "stdout access",
        || read(&out_path),
        &["sluice::access", "request_id=stdout-1"],
    );
    assert_eq!(field(&line, "client"), "127.0.0.1", "{line}");
    let err = read(&err_path);
    assert!(err.contains("starting sluice"), "{err}");
    assert!(!err.contains("sluice::access"), "{err}");
    // Nothing but access lines on stdout (the default key banner aside).
    assert!(read(&out_path)
        .lines()
        .filter(|l| l.contains(" INFO ") || l.contains(" WARN ") || l.contains(" ERROR "))
        .all(|l| l.contains("sluice::access")));
}

/// `logrotate` as Debian installs it; a missing binary fails the test.
fn logrotate() -> Command {
    let bin = ["/usr/sbin/logrotate", "/sbin/logrotate"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("logrotate is not installed (scripts/ensure-test-deps.sh installs it)")
        });
    Command::new(bin)
}

/// The shipped `systemd/sluice.logrotate`, run by the real logrotate against a running
/// sluice: its glob covers the access log, `maxsize` rotates a file past 100 MB before the
/// day is out, and its postrotate SIGHUP makes sluice write to a new file.
#[tokio::test]
async fn the_shipped_logrotate_file_rotates_the_access_log_by_size() {
    let o = origin();
    let logs = tempfile::tempdir().unwrap();
    let dir = logs.path().join("sluice");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("access.log");
    let s = Sluice::start(&config(
        &o,
        &format!("log:\n  access_log: {}\n", path.display()),
    ));
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/sluice.logrotate"),
    )
    .unwrap();
    assert!(shipped.contains("/var/log/sluice/*.log {"), "{shipped}");
    assert!(shipped.contains("systemctl kill --signal=HUP --kill-whom=main sluice.service"));
    // The same file, pointed at this test's directory and process.
    let conf = logs.path().join("sluice.logrotate");
    std::fs::write(
        &conf,
        shipped
            .replace("/var/log/sluice/", &format!("{}/", dir.display()))
            .replace(
                "systemctl kill --signal=HUP --kill-whom=main sluice.service",
                &format!("kill -HUP {}", s.pid()),
            ),
    )
    .unwrap();
    let state = logs.path().join("logrotate.state");
    let run = || {
        let out = logrotate()
            .arg("--state")
            .arg(&state)
            .arg(&conf)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "logrotate: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    send("GET", s.edge_url("/health"), "rotate-1").await;
    access_file_line(&path, "rotate-1");
    // A small file, seen for the first time: not rotated (daily counts from now).
    run();
    assert!(!dir.join("access.log.1").exists());
    // Past maxsize (a sparse 101 MiB; sluice's lines append after it): rotated now.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(101 << 20)
        .unwrap();
    send("GET", s.edge_url("/health"), "rotate-2").await;
    access_file_line(&path, "rotate-2");
    run();
    let rotated = dir.join("access.log.1");
    assert!(rotated.exists(), "not rotated by size");
    // postrotate's SIGHUP: sluice reopened the path; new lines go to the new file.
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no new access log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    send("GET", s.edge_url("/health"), "rotate-3").await;
    let new = access_file_line(&path, "rotate-3");
    assert!(new.contains("sluice::access"), "{new}");
    let new_text = std::fs::read_to_string(&path).unwrap();
    assert!(!new_text.contains("rotate-2"), "{new_text}");
    assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
}

/// The access line of request `id` in a text access-log file (reading past any sparse
/// zeros).
fn access_file_line(path: &Path, id: &str) -> String {
    let tag = format!("request_id={id}");
    wait_line(
        "access file",
        || String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned(),
        &["sluice::access", &tag],
    )
}

/// `access_logs` rows older than `admin.access_log_retention` are deleted soon after start
/// (and every 10 minutes after); younger ones stay.
#[tokio::test]
async fn access_logs_rows_past_their_retention_are_pruned_at_start() {
    let o = origin();
    let extra = format!("{}admin:\n  access_log_retention: 2d\n", config(&o, ""));
    let s = Sluice::start(&extra);
    let dir = s.stop_keep_dir();
    let db = dir.path().join("state/sluice.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        for (endpoint, age) in [("/old", "-3 days"), ("/young", "-1 days")] {
            c.execute(
                "INSERT INTO access_logs (endpoint, method, ip_address, response_code, timestamp) \
                 VALUES (?1, 'GET', '192.0.2.1', 401, strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?2))",
                [endpoint, age],
            )
            .unwrap();
        }
    }
    let s = Sluice::start_in(dir, &extra, &[]);
    let rows = || -> Vec<String> {
        let c = rusqlite::Connection::open(&db).unwrap();
        let mut q = c
            .prepare(
                "SELECT endpoint FROM access_logs WHERE ip_address = '192.0.2.1' ORDER BY endpoint",
            )
            .unwrap();
        q.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let start = Instant::now();
    while rows() != ["/young"] {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "rows: {:?}\n{}",
            rows(),
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

//! The shipped mode is the tested mode. `systemd/sluice.service` runs sluice with
//! `server.daemon: true`; every behaviour that needs sluice's own threads, runtimes and handles
//! (the SQLite thread behind the admin API and key delivery, the access-log writer, the disk
//! tier's writer, the Redis runtime, the state lock's waiter after an upgrade) and every stop
//! (SIGINT, SIGTERM) runs here in that mode and, as a control, in the foreground.
//! `tests/systemd_unit.rs` runs the unit's own command lines.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    admin_key, client, signal, wait_for, Mode, RedisServer, Reply, Sluice, TestOrigin, QUICK_STOP,
};
use serde_json::{json, Value};

const KEY_SECRET: &str = "daemon-test-key-token-secret";
const KEK: &str = "3333333333333333333333333333333333333333333333333333333333333333";
const KEY_HEX: &str = "00112233445566778899aabbccddeeff";

fn start(mode: Mode, extra: &str, env: &[(&str, &str)]) -> Sluice {
    start_in(mode, tempfile::tempdir().unwrap(), extra, env, QUICK_STOP)
}

fn start_in(
    mode: Mode,
    dir: tempfile::TempDir,
    extra: &str,
    env: &[(&str, &str)],
    server: &str,
) -> Sluice {
    Sluice::start_mode(mode, dir, extra, env, server, "", "", None)
}

async fn admin_get(s: &Sluice, key: &str, path: &str) -> (u16, Value) {
    let r = client()
        .get(s.admin_url(path))
        .header("authorization", format!("Bearer {key}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path} in {:?} mode: {e}\n{}", s.mode, s.log()));
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Admin requests and `GET /api/key/{hash}` go through the SQLite thread: both answer, and the
/// admin requests reach `access_logs` (written by the access-log writer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_key_delivery_and_access_logs_work_in_both_modes() {
    for mode in Mode::ALL {
        let s = start(
            mode,
            "kek:\n  current: {id: kek-a, env: DAEMON_KEK}\n",
            &[("KEY_TOKEN_SECRET", KEY_SECRET), ("DAEMON_KEK", KEK)],
        );
        let key = admin_key(&s);
        let (st, v) = admin_get(&s, &key, "/api/stream-ids").await;
        assert_eq!((st, &v), (200, &json!({"status": "success", "data": []})));
        let r = client()
            .put(s.admin_url("/api/content-keys/movie-d"))
            .header("authorization", format!("Bearer {key}"))
            .json(&json!({"key_hex": KEY_HEX}))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{mode:?}");
        let token = sluice::auth::key_token::mint(
            KEY_SECRET.as_bytes(),
            "movie-d",
            chrono::Utc::now().timestamp() + 600,
        );
        let r = client()
            .get(s.edge_url("/api/key/movie-d"))
            .header("authorization", format!("Bearer {token}"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{mode:?}");
        assert_eq!(
            r.bytes().await.unwrap().to_vec(),
            hex::decode(KEY_HEX).unwrap()
        );
        // The admin requests are in access_logs within a few seconds.
        let db = s.state_dir().join("state/sluice.db");
        let rows = || -> i64 {
            rusqlite::Connection::open(&db)
                .and_then(|c| {
                    c.query_row(
                        "SELECT COUNT(*) FROM access_logs WHERE endpoint LIKE '/api/%'",
                        [],
                        |r| r.get(0),
                    )
                })
                .unwrap_or(0)
        };
        wait_for("access_logs rows", Duration::from_secs(10), || rows() >= 2);
    }
}

/// The disk tier's writer thread writes a cached object's file, `0600` in a `0700` directory
/// whatever the umask it was started with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_tier_writes_private_files_in_both_modes() {
    for mode in Mode::ALL {
        let body = common::random_bytes(100_000, 7);
        let origin = TestOrigin::new()
            .route("/m/seg1.ts", Reply::ok(body.clone(), "video/mp2t"))
            .start();
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk-cache");
        let s = start_in(
            mode,
            dir,
            &format!(
                "origins:\n  bucket: {}\ncache:\n  disk:\n    path: {}\n    bytes: 67108864\n",
                origin.url(),
                disk.display()
            ),
            &[],
            QUICK_STOP,
        );
        let r = client()
            .get(s.edge_url("/stream/m/seg1.ts"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap(), body);
        let files = || files_under(&disk);
        wait_for(
            &format!("a disk-tier file ({mode:?})"),
            Duration::from_secs(10),
            || {
                files().iter().any(|(p, len)| {
                    *len > 100_000 && !p.starts_with(&disk.join("tmp").display().to_string())
                })
            },
        );
        let mode_of = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for (p, _) in files() {
            assert_eq!(mode_of(Path::new(&p)), 0o600, "{p}");
            assert_eq!(
                mode_of(Path::new(&p).parent().unwrap()),
                0o700,
                "{p}'s directory"
            );
        }
        assert_eq!(mode_of(&disk), 0o700);
        assert_eq!(mode_of(&s.state_dir().join("state")), 0o700);
        assert_eq!(mode_of(&s.state_dir().join("state/sluice.db")), 0o600);
    }
}

fn files_under(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if let Ok(m) = e.metadata() {
            out.push((p.display().to_string(), m.len()));
        }
    }
    out
}

/// With shared state on Redis the Redis runtime runs in the serving process: `/health` is
/// `ok` (not `degraded`) and the admin API answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_state_is_reached_in_both_modes() {
    let redis = RedisServer::start();
    for mode in Mode::ALL {
        let s = Sluice::start_mode(
            mode,
            tempfile::tempdir().unwrap(),
            "",
            &[],
            QUICK_STOP,
            "",
            &format!("  redis: {}\n", redis.url()),
            None,
        );
        let r = client().get(s.edge_url("/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"], "ok", "{mode:?}: {v}\n{}", s.log());
        // The fleet's default admin key was printed by the first node that reached Redis.
        let key = match mode {
            Mode::Foreground => admin_key(&s),
            Mode::Daemon => redis_admin_key(&redis, &s),
        };
        let (st, _) = admin_get(&s, &key, "/api/stream-ids").await;
        assert_eq!(st, 200, "{mode:?}");
    }
}

/// The daemon started second on the same Redis prints no key: make one with the CLI.
fn redis_admin_key(_redis: &RedisServer, s: &Sluice) -> String {
    let out = std::process::Command::new(common::sluice_bin())
        .args([
            "keys",
            "create",
            "--name",
            "daemon-test",
            "--permissions",
            "admin",
            "-c",
        ])
        .arg(&s.config_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A graceful upgrade hands the state lock to the new process: once the old one has exited, a
/// second `sluice serve` on the same state directory is refused.
#[test]
fn the_state_lock_survives_an_upgrade_in_both_modes() {
    for mode in Mode::ALL {
        let s = start(mode, "", &[]);
        let old = s.pid();
        let log = s.state_dir().join("upgrade.log");
        signal(old, "-QUIT");
        let mut new = common::spawn_sluice(mode, &s.config_path, &["--upgrade"], &log, &[])
            .unwrap_or_else(|| {
                panic!(
                    "{mode:?}: the upgrade did not start:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        let mut s = s;
        let status = s.wait_exit(Duration::from_secs(30));
        assert!(status.success(), "{mode:?}: old process {status}");
        let lock = s.state_dir().join("state/sluice.lock");
        wait_for(
            "the lock to name the new process",
            Duration::from_secs(10),
            || std::fs::read_to_string(&lock).is_ok_and(|p| p.trim() == new.pid().to_string()),
        );
        // Serving, and holding the lock: a second start on the state directory is refused.
        assert_eq!(health(s.edge), Some(200), "{mode:?}");
        let second = std::process::Command::new(common::sluice_bin())
            .args(["serve", "-c"])
            .arg(&s.config_path)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            !second.status.success(),
            "{mode:?}: a second sluice started"
        );
        let err = String::from_utf8_lossy(&second.stderr);
        assert!(
            err.contains("another sluice is already running")
                && err.contains(&new.pid().to_string()),
            "{mode:?}: {err}"
        );
        new.kill();
    }
}

fn health(addr: std::net::SocketAddr) -> Option<u16> {
    common::status_of(addr, "/health")
}

/// Clients opening connections as fast as they can, until stopped; counts answers.
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: std::net::SocketAddr, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let threads = (0..workers)
            .map(|_| {
                let (stop, answered) = (stop.clone(), answered.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if health(addr).is_some() {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            answered,
            threads,
        }
    }

    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        self.answered.load(Ordering::Relaxed)
    }
}

/// SIGINT under load: the process exits at once, and no accept loop is left spinning on a
/// runtime that was shut down (`Accept() failed` at ~90 MB/s of log, never exiting).
#[test]
fn sigint_under_load_exits_at_once_in_both_modes() {
    for mode in Mode::ALL {
        for round in 0..3 {
            let mut s = start(mode, "", &[]);
            let load = Load::start(s.edge, 16);
            wait_for("load to be answered", Duration::from_secs(10), || {
                load.answered.load(Ordering::Relaxed) > 200
            });
            signal(s.pid(), "-INT");
            let status = s.wait_exit(Duration::from_secs(10));
            let answered = load.stop();
            assert!(status.success(), "{mode:?} round {round}: {status}");
            let log = s.log();
            let spins = log.matches("Accept() failed").count();
            assert!(
                spins < 10,
                "{mode:?} round {round}: {spins} accept failures"
            );
            assert!(answered > 200);
            assert!(
                !s.state_dir().join("sluice.pid").exists(),
                "{mode:?}: the pid file outlived the process"
            );
        }
    }
}

/// SIGTERM drains and exits 0 (in-flight work is covered in tests/lifecycle.rs).
#[test]
fn sigterm_stops_in_both_modes() {
    for mode in Mode::ALL {
        let mut s = start_in(
            mode,
            tempfile::tempdir().unwrap(),
            "",
            &[],
            "  grace_period_seconds: 20\n  graceful_shutdown_timeout_seconds: 1\n",
        );
        let load = Load::start(s.edge, 4);
        wait_for("load", Duration::from_secs(10), || {
            load.answered.load(Ordering::Relaxed) > 50
        });
        let t = Instant::now();
        signal(s.pid(), "-TERM");
        let status = s.wait_exit(Duration::from_secs(15));
        load.stop();
        assert!(status.success(), "{mode:?}: {status}");
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{mode:?}: waited out the grace period"
        );
        assert!(s.log().contains("drained"), "{mode:?}:\n{}", s.log());
    }
}

/// A daemon that cannot serve makes its starter fail with the reason (systemd's start and
/// reload then fail instead of reporting a service that is not there).
#[test]
fn a_daemon_that_cannot_start_fails_its_starter_with_the_reason() {
    let s = start(Mode::Foreground, "", &[]);
    // Same state directory, so the lock is held; other ports.
    let dir = s.state_dir();
    let config = dir.join("second.yaml");
    let text = std::fs::read_to_string(&s.config_path).unwrap();
    let text = text
        .replace(
            &s.edge.to_string(),
            &format!("127.0.0.1:{}", common::free_port()),
        )
        .replace(
            &s.admin.to_string(),
            &format!("127.0.0.1:{}", common::free_port()),
        )
        .replace("server:\n", "server:\n  daemon: true\n");
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(common::sluice_bin())
        .args(["serve", "-c"])
        .arg(&config)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another sluice is already running"), "{err}");
    assert!(err.contains("stopped before it was ready"), "{err}");
}

/// A request whose header is still arriving when a drain begins is answered, not reset
/// (Pingora gives up a header read when its service shuts down; sluice hands it a connection
/// only once the first header is complete).
#[test]
fn a_request_header_split_across_a_drain_is_answered_in_both_modes() {
    let origin = TestOrigin::new()
        .route(
            "/m/a.m3u8",
            Reply::ok("#EXTM3U\n#EXT-X-ENDLIST\n", "application/vnd.apple.mpegurl"),
        )
        .start();
    for mode in Mode::ALL {
        let mut s = start_in(
            mode,
            tempfile::tempdir().unwrap(),
            &format!("origins:\n  bucket: {}\n", origin.url()),
            &[],
            "  grace_period_seconds: 10\n  graceful_shutdown_timeout_seconds: 1\n",
        );
        let mut c = TcpStream::connect(s.edge).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET /stream/m/a.m3u8 HTTP/1.1\r\nHost: t\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        signal(s.pid(), "-TERM");
        std::thread::sleep(Duration::from_millis(500));
        c.write_all(b"Connection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "{mode:?}: {answer:?}\n{}",
            s.log()
        );
        assert!(answer.ends_with("#EXTM3U\n#EXT-X-ENDLIST\n"), "{answer}");
        assert!(s.wait_exit(Duration::from_secs(15)).success());
    }
}

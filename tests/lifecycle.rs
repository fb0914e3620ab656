//! Stopping and upgrading without cutting viewers, against the real binary: SIGTERM drains
//! in-flight downloads (and a request still waiting on its origin) and exits once they are
//! done; a graceful upgrade under load fails no request and lets long downloads finish;
//! SIGQUIT with no successor keeps serving; SIGHUP reopens the log file (logrotate).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client, random_bytes, signal, sluice_bin, wait_for, Reply, Sluice, TestOrigin};

const DRAIN: &str = "  grace_period_seconds: 30\n  graceful_shutdown_timeout_seconds: 5\n";

fn cfg(origin: &common::RunningOrigin, extra: &str) -> String {
    format!(
        "origins:\n  bucket: {}\n  read_timeout: 20s\n{extra}",
        origin.url()
    )
}

/// One request on a kept-alive socket, answered with a Content-Length body.
fn get_on(sock: &mut TcpStream, path: &str) -> (u16, String) {
    write!(sock, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        sock.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len: usize = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body).unwrap();
    (
        head[9..12].parse().unwrap(),
        String::from_utf8_lossy(&body).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_responses_then_exits() {
    let long = random_bytes(6 * 1024 * 1024, 3);
    let late = random_bytes(64 * 1024, 4);
    let o = TestOrigin::new()
        .route(
            "/h/v/long.ts",
            Reply::ok(long.clone(), "video/mp2t").trickle(60, Duration::from_secs(5)),
        )
        .route(
            "/h/v/late.ts",
            Reply::ok(late.clone(), "video/mp2t").delay(Duration::from_secs(3)),
        )
        .start();
    let mut s = Sluice::start_with_server(&cfg(&o, ""), DRAIN);
    // An operator's (or load balancer's) kept-alive health connection.
    let mut health = TcpStream::connect(s.admin).unwrap();
    health
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(get_on(&mut health, "/health").0, 200);

    let started = Arc::new(AtomicUsize::new(0));
    let mut downloads = Vec::new();
    for i in 0..6 {
        let url = s.edge_url(if i < 4 {
            "/stream/h/v/long.ts"
        } else {
            "/stream/h/v/late.ts"
        });
        let started = started.clone();
        downloads.push(tokio::spawn(async move {
            let r = client().get(&url).send().await.unwrap();
            started.fetch_add(1, Ordering::SeqCst);
            assert_eq!(r.status(), 200);
            r.bytes().await.map(|b| b.len()).unwrap_or(0)
        }));
    }
    // The long downloads are streaming and the late ones are waiting on their origin.
    let waiting = Instant::now();
    while !(started.load(Ordering::SeqCst) >= 4 && o.hits("/h/v/late.ts") >= 1) {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "downloads did not start"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let stopped_at = Instant::now();
    signal(s.pid(), "-TERM");

    // The health check now says draining, so load balancers move away.
    let (status, body) = get_on(&mut health, "/health");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");

    let mut sizes = Vec::new();
    for d in downloads {
        sizes.push(d.await.unwrap());
    }
    let done_at = Instant::now();
    assert_eq!(
        sizes,
        vec![
            long.len(),
            long.len(),
            long.len(),
            long.len(),
            late.len(),
            late.len()
        ],
        "a download in flight was cut"
    );
    let status = s.wait_exit(Duration::from_secs(25));
    assert!(status.success(), "{status:?}");
    // Exited once nothing was in flight, not at the end of the 30 s grace period.
    assert!(
        done_at.elapsed() < Duration::from_secs(5),
        "exit {:?} after the last download",
        done_at.elapsed()
    );
    assert!(stopped_at.elapsed() < Duration::from_secs(20));
    let log = s.log();
    assert!(log.contains("draining"), "{log}");
    assert!(log.contains("drained: nothing in flight"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_under_load_fails_nothing_and_lets_downloads_finish() {
    let long = random_bytes(8 * 1024 * 1024, 5);
    let o = TestOrigin::new()
        .route(
            "/h/v/long.ts",
            Reply::ok(long.clone(), "video/mp2t").trickle(80, Duration::from_secs(8)),
        )
        .route(
            "/h/v/seg.ts",
            Reply::ok(random_bytes(16 * 1024, 6), "video/mp2t"),
        )
        .start();
    let mut old = Sluice::start_with_server(&cfg(&o, ""), DRAIN);

    // Long downloads on the old process.
    let started = Arc::new(AtomicUsize::new(0));
    let mut downloads = Vec::new();
    for _ in 0..3 {
        let url = old.edge_url("/stream/h/v/long.ts");
        let started = started.clone();
        downloads.push(tokio::spawn(async move {
            let r = client().get(&url).send().await.unwrap();
            started.fetch_add(1, Ordering::SeqCst);
            r.bytes().await.map(|b| b.len()).unwrap_or(0)
        }));
    }
    // Steady load: 16 workers, a new connection per request (no pooled connection can
    // race the old process's close).
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..16 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let url = old.edge_url("/stream/h/v/seg.ts");
        load.push(tokio::spawn(async move {
            let c = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap();
            while !stop.load(Ordering::SeqCst) {
                let outcome = match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => match r.bytes().await {
                        Ok(b) if b.len() == 16 * 1024 => Ok(()),
                        other => Err(format!("body: {other:?}")),
                    },
                    other => Err(format!("{other:?}")),
                };
                match outcome {
                    Ok(()) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        eprintln!("failed during upgrade: {e}");
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
        }));
    }
    let s2 = started.clone();
    tokio::task::spawn_blocking(move || {
        wait_for("downloads started", Duration::from_secs(10), || {
            s2.load(Ordering::SeqCst) >= 3
        })
    })
    .await
    .unwrap();

    // The new process first (it waits for the sockets), then SIGQUIT to the old one.
    let new_log = old.state_dir().join("new.log");
    let log = std::fs::File::create(&new_log).unwrap();
    let mut new = Command::new(sluice_bin())
        .args(["serve", "--upgrade", "-c"])
        .arg(&old.config_path)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    signal(old.pid(), "-QUIT");
    let quit_at = Instant::now();

    let mut sizes = Vec::new();
    for d in downloads {
        sizes.push(d.await.unwrap());
    }
    assert_eq!(
        sizes,
        vec![long.len(); 3],
        "a download was cut by the upgrade"
    );
    let status = tokio::task::spawn_blocking(move || {
        let st = old.wait_exit(Duration::from_secs(40));
        (st, old)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{:?}\n{}", status.0, status.1.log());
    // Keep the load on the new process a moment longer.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert_eq!(
        failed,
        0,
        "{failed} requests failed during the upgrade ({ok} ok)\nnew:\n{}",
        std::fs::read_to_string(&new_log).unwrap_or_default()
    );
    assert!(ok > 50, "too little load to mean anything: {ok}");
    assert!(quit_at.elapsed() < Duration::from_secs(30));
    let _ = new.kill();
    let _ = new.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigquit_without_a_successor_keeps_serving() {
    let o = TestOrigin::new()
        .route(
            "/h/v/seg.ts",
            Reply::ok(random_bytes(1024, 7), "video/mp2t"),
        )
        .start();
    let mut s = Sluice::start_with_server(&cfg(&o, "shutdown:\n  upgrade_wait: 1s\n"), DRAIN);
    signal(s.pid(), "-QUIT");
    let start = Instant::now();
    while !s
        .log()
        .contains("no new process listens on the upgrade socket")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for the no-successor error"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Still serving, on new connections.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..3 {
        let r = reqwest::Client::new()
            .get(s.edge_url("/stream/h/v/seg.ts"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let h = reqwest::get(s.admin_url("/health")).await.unwrap();
    assert_eq!(h.status(), 200, "not draining");
    signal(s.pid(), "-TERM");
    assert!(s.wait_exit(Duration::from_secs(20)).success());
}

#[test]
fn sighup_reopens_the_daemons_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let edge = format!("127.0.0.1:{}", common::free_port());
    let admin = format!("127.0.0.1:{}", common::free_port());
    let err_log = dir.path().join("sluice.err.log");
    let pid_file = dir.path().join("sluice.pid");
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "listen:\n  edge: {edge}\n  admin: {admin}\nstate:\n  sqlite: {}\nserver:\n  daemon: true\n  \
             pid_file: {}\n  error_log: {}\n  upgrade_sock: {}\n  grace_period_seconds: 5\n",
            dir.path().join("state/sluice.db").display(),
            pid_file.display(),
            err_log.display(),
            dir.path().join("upgrade.sock").display(),
        ),
    )
    .unwrap();
    let status = Command::new(sluice_bin())
        .args(["serve", "-c"])
        .arg(&config)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the daemonizing parent failed");
    wait_for("the pid file", Duration::from_secs(15), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| !p.trim().is_empty())
    });
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // A zombie counts as exited: when another test of this binary made the test process a
    // child subreaper (the harness's daemon mode), the daemon is reparented to it.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
    };
    let health = |addr: &str| {
        TcpStream::connect(addr).ok().and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            Some(get_on(&mut c, "/health").0)
        })
    };
    wait_for("the daemon to serve", Duration::from_secs(15), || {
        health(&admin) == Some(200)
    });
    // logrotate: move the file away, then SIGHUP.
    let rotated = dir.path().join("sluice.err.log.1");
    std::fs::rename(&err_log, &rotated).unwrap();
    signal(pid, "-HUP");
    wait_for(
        "the log file to be reopened",
        Duration::from_secs(10),
        || std::fs::read_to_string(&err_log).is_ok_and(|t| t.contains("log file reopened")),
    );
    assert!(alive(), "SIGHUP killed sluice");
    assert_eq!(health(&edge), Some(200));
    // What was written before the rotation stays in the rotated file.
    let before = std::fs::read_to_string(&rotated).unwrap();
    assert!(
        before.contains("SIGHUP") || before.contains("INFO"),
        "{before}"
    );
    assert!(!before.contains("log file reopened"), "{before}");
    signal(pid, "-TERM");
    wait_for("the daemon to exit", Duration::from_secs(20), || !alive());
}

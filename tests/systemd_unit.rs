//! The shipped unit is the tested unit: `systemd/sluice.service`'s own command lines, read
//! from the file, run against `conf/production.example.yaml` the way systemd runs them —
//! `ExecStartPre`, `ExecStart` (Type=forking: it returns once the daemon serves, which wrote
//! `PIDFile`), each `ExecReload` in order with `$MAINPID` (a graceful upgrade under load, then
//! `PIDFile` read again), and the stop (`KillSignal` to the main process, at most
//! `TimeoutStopSec`), all under the unit's `UMask`. Only paths are mapped: the binary, the
//! config and the directories systemd would create (`/var/lib/sluice`, `/var/cache/sluice`,
//! `/var/log/sluice`, `/run/sluice`) move into a temporary directory. If the unit, the example
//! config and the binary drift apart, this fails.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_for, Reply, TestOrigin};

const UNIT: &str = include_str!("../systemd/sluice.service");
const EXAMPLE: &str = include_str!("../conf/production.example.yaml");

/// The `[Service]` section: every `Key=value`, repeated keys in order.
fn service_section(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_service = false;
    for line in unit.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service || line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.entry(k.trim().to_string())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    out
}

/// Paths the unit and the example config name, and where this test puts them.
struct Host {
    root: tempfile::TempDir,
    config: PathBuf,
}

impl Host {
    fn map(&self, text: &str) -> String {
        let r = self.root.path().display().to_string();
        text.replace("/usr/local/bin/sluice", &common::sluice_bin())
            .replace(
                "/etc/sluice/sluice.yaml",
                &self.config.display().to_string(),
            )
            .replace("/var/lib/sluice", &format!("{r}/var/lib/sluice"))
            .replace("/var/cache/sluice", &format!("{r}/var/cache/sluice"))
            .replace("/var/log/sluice", &format!("{r}/var/log/sluice"))
            .replace("/run/sluice", &format!("{r}/run/sluice"))
    }

    fn path(&self, unit_path: &str) -> PathBuf {
        PathBuf::from(self.map(unit_path))
    }
}

/// Run one `Exec*=` line as systemd would (no shell; `$MAINPID` substituted; a leading `-`
/// means its failure is ignored), under `umask`.
fn exec(host: &Host, line: &str, main_pid: Option<u32>, umask: u32, log: &Path) -> bool {
    let (ignore_failure, line) = match line.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let line = host.map(line);
    let line = match main_pid {
        Some(pid) => line.replace("$MAINPID", &pid.to_string()),
        None => line,
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = Command::new(words[0]);
    cmd.args(&words[1..])
        .current_dir(host.root.path().join("var/lib/sluice"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log));
    // SAFETY: umask(2) only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(umask as libc::mode_t);
            Ok(())
        });
    }
    let ok = cmd.status().unwrap().success();
    ok || ignore_failure
}

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("PIDFile {}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

fn alive(pid: u32) -> bool {
    // A zombie is gone for our purpose: this test process reaps what it is parent of.
    let mut status = 0;
    // SAFETY: waitpid(2) with WNOHANG on a pid this process may reap; never blocks.
    unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
}

fn health(addr: SocketAddr) -> Option<u16> {
    status(addr, "/health")
}

fn status(addr: SocketAddr, path: &str) -> Option<u16> {
    common::status_of(addr, path)
}

fn seconds(v: &str) -> u64 {
    v.trim_end_matches('s').parse().unwrap()
}

#[test]
fn the_units_own_command_lines_start_reload_and_stop_sluice() {
    common::become_subreaper();
    let unit = service_section(UNIT);
    let one = |k: &str| -> String {
        let v = unit
            .get(k)
            .unwrap_or_else(|| panic!("the unit has no {k}="));
        assert_eq!(v.len(), 1, "{k}= given more than once");
        v[0].clone()
    };
    assert_eq!(one("Type"), "forking");
    let umask = u32::from_str_radix(&one("UMask"), 8).unwrap();

    let origin = TestOrigin::new()
        .route(
            "/hls/movie/master.m3u8",
            Reply::ok("#EXTM3U\n#EXT-X-ENDLIST\n", "application/vnd.apple.mpegurl"),
        )
        .start();
    let root = tempfile::tempdir().unwrap();
    let host = Host {
        config: root.path().join("etc/sluice/sluice.yaml"),
        root,
    };
    // What systemd creates before starting the unit (StateDirectory= and the rest), 0700.
    for (key, dir) in [
        ("StateDirectory", "/var/lib/sluice"),
        ("CacheDirectory", "/var/cache/sluice"),
        ("LogsDirectory", "/var/log/sluice"),
        ("RuntimeDirectory", "/run/sluice"),
    ] {
        assert_eq!(one(key), "sluice", "{key}= names {dir}");
        let d = host.path(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::create_dir_all(host.config.parent().unwrap()).unwrap();
    assert_eq!(
        host.map(&one("WorkingDirectory")),
        host.path("/var/lib/sluice").display().to_string()
    );

    // The example config as shipped, with this host's paths, ports and origin.
    let edge: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let config = host
        .map(EXAMPLE)
        .replace("0.0.0.0:8080", &edge.to_string())
        .replace("127.0.0.1:8000", &admin.to_string())
        .replace(
            "https://media-bucket.example.com/hls",
            &format!("{}/hls", origin.url()),
        );
    assert!(
        config.contains("daemon: true"),
        "the example runs as the unit expects"
    );
    std::fs::write(&host.config, &config).unwrap();
    // The unit's PIDFile is the config's server.pid_file.
    let pid_file = host.path(&one("PIDFile"));
    assert!(
        config.contains(&format!("pid_file: {}", pid_file.display())),
        "PIDFile={} is not server.pid_file in the example config",
        one("PIDFile")
    );
    let log = host.root.path().join("systemd.log");
    let show_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let error_log =
        || std::fs::read_to_string(host.path("/var/log/sluice/sluice.log")).unwrap_or_default();

    // systemctl start: ExecStartPre, then ExecStart returns once the daemon serves.
    for line in unit.get("ExecStartPre").into_iter().flatten() {
        assert!(
            exec(&host, line, None, umask, &log),
            "ExecStartPre={line}\n{}",
            show_log()
        );
    }
    assert!(
        exec(&host, &one("ExecStart"), None, umask, &log),
        "ExecStart failed\n{}",
        show_log()
    );
    let first = read_pid(&pid_file);
    assert!(alive(first));
    assert_eq!(health(edge), Some(200));
    assert_eq!(health(admin), Some(200));
    assert_eq!(
        status(edge, "/stream/movie/master.m3u8"),
        Some(200),
        "{}",
        error_log()
    );
    // The first-start banner reached the starter's output (the journal under systemd).
    assert!(
        show_log().contains("Generated default admin API key"),
        "{}",
        show_log()
    );
    // Files made under the unit's umask keep their documented modes.
    let mode = |p: PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(host.path("/var/lib/sluice/sluice.db")), 0o600);
    assert_eq!(mode(host.path("/var/lib/sluice/sluice.lock")), 0o600);
    // The daemon writes its log where the config says.
    wait_for("the error log", Duration::from_secs(5), || {
        error_log().contains("ready: every listener is listening")
    });

    // systemctl reload, under players' load: every ExecReload line in order, then PIDFile again.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                // Media, not /health: the old process answers /health 503 while it drains.
                while !stop.load(Ordering::Relaxed) {
                    match status(edge, "/stream/movie/master.m3u8") {
                        Some(200) => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            eprintln!(
                                "failed during the reload: {other:?} at {:?}",
                                std::time::SystemTime::now()
                            );
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    wait_for("load", Duration::from_secs(10), || {
        ok.load(Ordering::Relaxed) > 50
    });
    let reload = unit.get("ExecReload").cloned().unwrap_or_default();
    assert!(reload.len() >= 2, "ExecReload lines: {reload:?}");
    for line in &reload {
        assert!(
            exec(&host, line, Some(first), umask, &log),
            "ExecReload={line}\n{}\n{}",
            show_log(),
            error_log()
        );
    }
    let second = read_pid(&pid_file);
    assert_ne!(
        second, first,
        "PIDFile names the new process after a reload"
    );
    assert!(alive(second));
    wait_for("the old process to exit", Duration::from_secs(30), || {
        !alive(first)
    });
    let served_after = ok.load(Ordering::Relaxed);
    wait_for("load on the new process", Duration::from_secs(10), || {
        ok.load(Ordering::Relaxed) > served_after + 50
    });
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the reload\n{}",
        error_log()
    );
    // The new process holds the state lock.
    assert_eq!(
        std::fs::read_to_string(host.path("/var/lib/sluice/sluice.lock"))
            .unwrap()
            .trim(),
        second.to_string()
    );

    // systemctl stop: KillSignal to the main process; it must be gone within TimeoutStopSec.
    let signal = one("KillSignal");
    assert!(Command::new("kill")
        .args([
            format!("-{}", signal.trim_start_matches("SIG")),
            second.to_string()
        ])
        .status()
        .unwrap()
        .success());
    let limit = Duration::from_secs(seconds(&one("TimeoutStopSec")));
    let t = Instant::now();
    wait_for("the stop", limit, || !alive(second));
    assert!(t.elapsed() < limit);
    assert!(!pid_file.exists(), "the pid file outlived the process");
}

/// `systemd-analyze` accepts the unit and rates its exposure as it was (1.6, "OK").
#[test]
fn systemd_analyze_verifies_the_unit() {
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("sluice.service");
    std::fs::write(
        &unit,
        UNIT.replace("/usr/local/bin/sluice", &common::sluice_bin()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (scripts/ensure-test-deps.sh installs systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let level = text
        .lines()
        .find_map(|l| l.split("exposure level for sluice.service: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(level <= 2.0, "exposure {level}\n{text}");
}

//! Stopping and upgrading without cutting viewers: signals, draining, and the exit once
//! nothing is in flight.
//!
//! | signal | what sluice does |
//! |---|---|
//! | `SIGTERM` | graceful stop: stop accepting, `/health` answers `503 draining`, in-flight responses finish (up to `server.grace_period_seconds`, default 30), then exit — as soon as nothing is in flight |
//! | `SIGQUIT` | graceful upgrade: once a new `sluice serve --upgrade` listens on `server.upgrade_sock`, hand it the listening sockets, then drain as for `SIGTERM`. If none listens within `shutdown.upgrade_wait` (30 s), keep serving and log an error (never probe by connecting: the new process accepts exactly once) |
//! | `SIGHUP` | reopen `server.error_log` (daemon mode) and a `log.access_log` file for logrotate; configuration reloads go through the graceful upgrade |
//! | `SIGINT` | fast stop: the access log is flushed (at most 2 s) and the process exits at once, without waiting for in-flight responses — also during a drain or after an upgrade's handover |
//!
//! Pingora broadcasts the shutdown and then sleeps the whole grace period; the drain watcher
//! here ends the process as soon as the listeners are closed and no request is in flight
//! (counted by the connection guards, [`crate::conn::guard`]), after the access-log writer
//! has flushed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, watch};

static DRAINING: AtomicBool = AtomicBool::new(false);

/// The process is stopping: `/health` says so and new work is not taken.
pub fn draining() -> bool {
    DRAINING.load(Ordering::Acquire)
}

/// Requests in flight now, on every listener (and open HTTP/2 connections, whose streams
/// end with the connection's GOAWAY). The count is the `sluice_requests_in_flight` gauge
/// itself: one counter, which the drain waits on and Prometheus reads.
pub fn in_flight() -> i64 {
    crate::metrics::IN_FLIGHT.get()
}

/// Count one unit of in-flight work (paired with [`work_done`]).
pub fn work_started() {
    crate::metrics::IN_FLIGHT.inc();
}

pub fn work_done() {
    crate::metrics::IN_FLIGHT.dec();
}

/// `server.pid_file` once this process wrote it ([`crate::daemon`]): removed on exit unless a
/// successor has written its own pid there since.
static PID_FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Remember the pid file this process wrote, for [`exit_process`].
pub fn own_pid_file(path: PathBuf) {
    let _ = PID_FILE.set(path);
}

/// Write this process's pid to `path` (atomically: a reader never sees a half-written file).
pub fn write_pid_file(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(format!("{}\n", std::process::id()).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Remove the pid file if it still names this process (after an upgrade it names the
/// successor, which keeps it).
pub fn remove_pid_file_if_ours(path: &Path) {
    let ours = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

/// End the process now: the one way sluice exits once it serves. The pid file goes (when it
/// still names this process), and nothing waits on Pingora's runtimes: a runtime shut down
/// under load can leave an accept loop spinning on `Accept() failed` forever, and the
/// process with it (Pingora's fast shutdown never tells the accept loops to stop).
pub fn exit_process(code: i32) -> ! {
    if let Some(p) = PID_FILE.get() {
        remove_pid_file_if_ours(p);
    }
    std::process::exit(code)
}

/// SIGINT: flush the access log (at most 2 s), then exit without draining.
fn fast_stop() -> ! {
    tracing::info!("SIGINT: fast stop; flushing the access log and exiting");
    drained_channel().send_replace(true);
    wait_flushed(Duration::from_secs(2));
    tracing::info!("exiting");
    exit_process(0)
}

fn wait_flushed(limit: Duration) {
    let mut flushed = flushed_channel().subscribe();
    let deadline = Instant::now() + limit;
    while !*flushed.borrow_and_update() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Set once the process has drained: the access-log writer flushes and stops on it.
fn drained_channel() -> &'static watch::Sender<bool> {
    static CH: std::sync::OnceLock<watch::Sender<bool>> = std::sync::OnceLock::new();
    CH.get_or_init(|| watch::channel(false).0)
}

/// Resolves when the process has drained (or is stopping without a drain).
pub async fn drained() {
    let mut rx = drained_channel().subscribe();
    let _ = rx.wait_for(|d| *d).await;
}

/// Set by the access-log writer once its last rows are written.
fn flushed_channel() -> &'static watch::Sender<bool> {
    static CH: std::sync::OnceLock<watch::Sender<bool>> = std::sync::OnceLock::new();
    CH.get_or_init(|| watch::channel(false).0)
}

/// The access-log writer has written everything it will write.
pub fn logs_flushed() {
    flushed_channel().send_replace(true);
}

/// Whether a Unix socket at `path` is listening, read from `/proc/net/unix` (`Flags`
/// `00010000` is `__SO_ACCEPTCON`): no connection is made to find out.
pub fn listening_in(proc_net_unix: &str, path: &Path) -> bool {
    let want = path.to_string_lossy();
    proc_net_unix.lines().skip(1).any(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        cols.len() >= 8 && cols[3] == "00010000" && cols[7..].join(" ") == want
    })
}

fn upgrade_listener_present(sock: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    if listening_in(&text, sock) {
        return true;
    }
    std::fs::canonicalize(sock).is_ok_and(|p| listening_in(&text, &p))
}

/// sluice's signal handling for Pingora's main loop (see the module docs).
pub struct Signals {
    upgrade_sock: PathBuf,
    /// `server.error_log` when daemonized (stderr goes there).
    error_log: Option<PathBuf>,
    upgrade_wait: Duration,
    phases: parking_lot::Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

impl Signals {
    pub fn new(
        upgrade_sock: PathBuf,
        error_log: Option<PathBuf>,
        upgrade_wait: Duration,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> Signals {
        Signals {
            upgrade_sock,
            error_log,
            upgrade_wait,
            phases: parking_lot::Mutex::new(Some(phases)),
        }
    }

    /// Start draining: `/health` turns 503 and the watcher ends the process once nothing
    /// is in flight after the listeners closed.
    fn begin_drain(&self, why: &'static str) {
        DRAINING.store(true, Ordering::Release);
        crate::metrics::DRAINING.set(1);
        crate::metrics::LIFECYCLE_EVENTS
            .with_label_values(&["drain_started"])
            .inc();
        tracing::info!(
            reason = why,
            in_flight = in_flight(),
            "draining: no new connections once the listeners close; in-flight responses finish"
        );
        let Some(phases) = self.phases.lock().take() else {
            return;
        };
        // Pingora stops listening for signals once it has one: SIGINT stays a fast stop
        // while the drain runs.
        let interrupt = std::thread::Builder::new()
            .name("sluice-sigint".into())
            .spawn(watch_interrupt);
        if let Err(e) = interrupt {
            tracing::error!(error = %e, "cannot watch for SIGINT during the drain");
        }
        let started = std::thread::Builder::new()
            .name("sluice-drain".into())
            .spawn(move || watch_drain(phases));
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the drain watcher; the grace period applies");
        }
    }

    fn reopen_logs(&self) {
        crate::logging::reopen();
        let Some(path) = &self.error_log else {
            tracing::info!(
                "SIGHUP: logs go to stderr (the journal under systemd), nothing to reopen; \
                 configuration reloads go through the graceful upgrade (systemctl reload)"
            );
            return;
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        match file.map(|f| nix::unistd::dup2_stderr(&f)) {
            Ok(Ok(())) => tracing::info!(file = %path.display(), "SIGHUP: log file reopened"),
            Ok(Err(e)) => {
                tracing::error!(file = %path.display(), error = %e, "SIGHUP: cannot reopen the log file")
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "SIGHUP: cannot reopen the log file")
            }
        }
    }

    async fn wait_for_successor(&self) -> bool {
        let start = Instant::now();
        while start.elapsed() < self.upgrade_wait {
            if upgrade_listener_present(&self.upgrade_sock) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        loop {
            tokio::select! {
                _ = quit.recv() => {
                    tracing::info!(
                        upgrade_sock = %self.upgrade_sock.display(),
                        "SIGQUIT: waiting for the new process to listen on the upgrade socket"
                    );
                    if self.wait_for_successor().await {
                        crate::metrics::LIFECYCLE_EVENTS
                            .with_label_values(&["upgrade_handover"])
                            .inc();
                        self.begin_drain("upgrade");
                        return ShutdownSignal::GracefulUpgrade;
                    }
                    crate::metrics::LIFECYCLE_EVENTS
                        .with_label_values(&["upgrade_no_successor"])
                        .inc();
                    tracing::error!(
                        upgrade_sock = %self.upgrade_sock.display(),
                        waited = ?self.upgrade_wait,
                        "SIGQUIT: no new process listens on the upgrade socket; still serving \
                         (start `sluice serve --upgrade` with the same server.upgrade_sock)"
                    );
                }
                _ = term.recv() => {
                    self.begin_drain("SIGTERM");
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = int.recv() => {
                    // Off the runtime: the flush it waits for runs on a runtime too.
                    let _ = tokio::task::spawn_blocking(|| fast_stop()).await;
                    return ShutdownSignal::FastShutdown;
                }
                _ = hup.recv() => self.reopen_logs(),
            }
        }
    }
}

/// During a drain: SIGINT ends the process at once (its own small runtime: Pingora's main
/// loop no longer polls the signal once the drain began).
fn watch_interrupt() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch for SIGINT during the drain");
            return;
        }
    };
    let got = rt.block_on(async {
        match signal(SignalKind::interrupt()) {
            Ok(mut int) => int.recv().await.is_some(),
            Err(e) => {
                tracing::error!(error = %e, "cannot watch for SIGINT during the drain");
                false
            }
        }
    });
    if got {
        fast_stop();
    }
}

/// Wait for the listeners to close, then for the last in-flight request; flush the access
/// log and exit. Pingora's grace period stays the upper bound.
fn watch_drain(mut phases: broadcast::Receiver<ExecutionPhase>) {
    // The shutdown broadcast (listeners closing) comes right after SIGTERM, and after the
    // sockets are handed over (plus Pingora's few seconds) on an upgrade.
    loop {
        match phases.blocking_recv() {
            Ok(ExecutionPhase::ShutdownStarted) | Ok(ExecutionPhase::ShutdownGracePeriod) => break,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
    // Let the accept loops see the broadcast.
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    let mut last_report = Instant::now();
    while in_flight() > 0 {
        if last_report.elapsed() >= Duration::from_secs(5) {
            tracing::info!(
                in_flight = in_flight(),
                draining_for = ?start.elapsed(),
                "draining: waiting for in-flight responses"
            );
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!(
        drained_in = ?start.elapsed(),
        "drained: nothing in flight; flushing the access log and exiting"
    );
    drained_channel().send_replace(true);
    wait_flushed(Duration::from_secs(5));
    tracing::info!("exiting");
    exit_process(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC: &str = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 41234 /run/sluice/upgrade.sock
0000000000000000: 00000003 00000000 00000000 0001 03 41240 /run/sluice/other.sock
0000000000000000: 00000002 00000000 00010000 0001 01 41250 @abstract
0000000000000000: 00000003 00000000 00000000 0001 03 41260
";

    #[test]
    fn a_listening_socket_is_found_by_its_path() {
        assert!(listening_in(PROC, Path::new("/run/sluice/upgrade.sock")));
    }

    #[test]
    fn a_connected_or_absent_socket_is_not_listening() {
        assert!(!listening_in(PROC, Path::new("/run/sluice/other.sock")));
        assert!(!listening_in(PROC, Path::new("/run/sluice/none.sock")));
        assert!(!listening_in(PROC, Path::new("")));
    }

    #[test]
    fn the_pid_file_is_written_whole_and_removed_only_by_its_process() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.pid");
        write_pid_file(&p).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{}\n", std::process::id())
        );
        std::fs::write(&p, "1\n").unwrap();
        remove_pid_file_if_ours(&p);
        assert!(p.exists(), "another process's pid file stays");
        write_pid_file(&p).unwrap();
        remove_pid_file_if_ours(&p);
        assert!(!p.exists());
    }
}

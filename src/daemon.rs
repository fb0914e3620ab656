//! Running in the background, as the shipped systemd unit does (`server.daemon: true`,
//! `Type=forking`, `PIDFile=server.pid_file`).
//!
//! A fork keeps only the thread that called it. Pingora's own daemon mode forks inside
//! `Server::run`, after sluice has opened its state: the SQLite, Redis, disk-writer,
//! access-log and lock-waiter threads would be gone in the daemon (admin requests hung, no
//! audit rows, no disk tier, no state lock after an upgrade). So sluice detaches *first*, by
//! starting itself again — a fresh process, not a fork — before anything is opened, and runs
//! Pingora with `daemon: false`: every thread, runtime and handle is created in the process
//! that serves.
//!
//! ```text
//! sluice serve (parent)          sluice serve --detached (the daemon)
//!   load + validate config  ──▶    new session (setsid), stdin /dev/null
//!   spawn, relay its stdout         open state, build services, serve
//!   wait for `ready` / exit  ◀──   listeners listening → pid file → `ready`
//!   exit 0 (or 1 + reason)          stdout/stderr → server.error_log
//! ```
//!
//! The parent stays until the daemon is ready, so `systemctl start` and `systemctl reload`
//! fail when the daemon cannot serve (a held state lock, a port in use, an unreadable state
//! file): its reason is on the parent's stderr and the parent exits 1. Until it is ready the
//! daemon writes to the parent's stdout and stderr (the first-start admin key banner and any
//! start-up error reach whoever started it); from then on to `server.error_log` when set
//! (else they stay where they were: the journal under systemd).
//!
//! The daemon keeps the umask it was started with (the unit's `UMask=0077`): Pingora's daemon
//! mode forced `0007`. Files with a documented mode get it explicitly anyway.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The line the daemon writes on its stdout once it serves; the parent exits 0 on it.
const READY_LINE: &str = "sluice-daemon-ready";

/// The hidden `serve` flag that marks the detached process.
pub const DETACHED_FLAG: &str = "--detached";

/// How long the daemon may take from start to every listener listening.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the daemon's output goes and where it runs, from the `server:` section.
#[derive(Debug, Clone, Default)]
pub struct DaemonSettings {
    /// `server.error_log`: stdout and stderr once ready (appended, `0640`).
    pub error_log: Option<PathBuf>,
    /// `server.working_directory`.
    pub working_directory: Option<PathBuf>,
}

impl DaemonSettings {
    pub fn from_server_conf(c: &pingora_core::server::configuration::ServerConf) -> Self {
        DaemonSettings {
            error_log: c.error_log.as_ref().map(PathBuf::from),
            working_directory: c.working_directory.as_ref().map(PathBuf::from),
        }
    }
}

/// Start the daemon and wait until it serves. Runs in the process the operator (or systemd)
/// started; returns its exit code: success once the daemon said it is ready, failure (with
/// the reason on stderr) when it could not start or exited first.
///
/// `args` are this process's arguments after the program name; the daemon gets the same ones
/// plus [`DETACHED_FLAG`].
pub fn detach(settings: &DaemonSettings, args: &[std::ffi::OsString]) -> ExitCode {
    match spawn_and_wait(settings, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e}");
            ExitCode::FAILURE
        }
    }
}

fn spawn_and_wait(settings: &DaemonSettings, args: &[std::ffi::OsString]) -> Result<(), String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this program to start the daemon: {e}"))?;
    // Opened here so a log that cannot be written is reported before anything starts.
    if let Some(path) = &settings.error_log {
        open_log(path).map_err(|e| format!("server.error_log {}: {e}", path.display()))?;
    }
    let mut cmd = Command::new(&exe);
    cmd.args(args)
        .arg(DETACHED_FLAG)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(dir) = &settings.working_directory {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the daemon ({}): {e}", exe.display()))?;
    let Some(out) = child.stdout.take() else {
        return Err("the daemon's stdout was not captured".into());
    };
    // Relay what the daemon prints before it is ready (the admin key banner), and wait for
    // its ready line; end of file means it exited (or closed stdout) without being ready.
    let mut stdout = std::io::stdout().lock();
    for line in std::io::BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        if line == READY_LINE {
            let _ = stdout.flush();
            return Ok(());
        }
        let _ = writeln!(stdout, "{line}");
    }
    let _ = stdout.flush();
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for the daemon: {e}"))?;
    Err(format!(
        "the daemon (pid {}) stopped before it was ready ({status}); its reason is above{}",
        child.id(),
        settings
            .error_log
            .as_ref()
            .map(|p| format!(" or in {}", p.display()))
            .unwrap_or_default()
    ))
}

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// What the serving process owes whoever started it: the ready report (daemon) and the pid
/// file (both modes).
#[derive(Debug)]
pub struct Startup {
    /// Running as the detached daemon.
    detached: bool,
    error_log: Option<PathBuf>,
    pid_file: PathBuf,
    listeners: Vec<(&'static str, SocketAddr)>,
}

impl Startup {
    /// `detached`: this is the daemon [`detach`] started (the `--detached` flag).
    pub fn new(
        detached: bool,
        settings: &DaemonSettings,
        pid_file: PathBuf,
        listeners: Vec<(&'static str, SocketAddr)>,
    ) -> Startup {
        if detached {
            // Its own session: no terminal's hangup reaches the daemon.
            let _ = nix::unistd::setsid();
        }
        Startup {
            detached,
            error_log: settings.error_log.clone(),
            pid_file,
            listeners,
        }
    }

    pub fn detached(&self) -> bool {
        self.detached
    }

    /// Start-up failed: say why (on stderr, which the daemon shares with its parent until it
    /// is ready) and exit.
    pub fn fail(&self, reason: &str) -> ExitCode {
        eprintln!("sluice: {reason}");
        ExitCode::FAILURE
    }

    /// Wait (on a thread of its own) until every listener listens in this process, then write
    /// the pid file and, as the daemon, tell the parent and move output to the error log.
    /// Past [`READY_TIMEOUT`] the process exits 1 naming the listener that never came up.
    pub fn report_when_listening(self) {
        let spawned = std::thread::Builder::new()
            .name("sluice-ready".into())
            .spawn(move || self.wait_listening());
        if let Err(e) = spawned {
            eprintln!("sluice: cannot start the readiness watcher: {e}");
            crate::lifecycle::exit_process(1);
        }
    }

    fn wait_listening(self) {
        let start = Instant::now();
        let addrs: Vec<SocketAddr> = self.listeners.iter().map(|(_, a)| *a).collect();
        loop {
            let missing = missing_listeners(&addrs);
            if missing.is_empty() {
                break;
            }
            if start.elapsed() > READY_TIMEOUT {
                let names: Vec<String> = self
                    .listeners
                    .iter()
                    .filter(|(_, a)| missing.contains(a))
                    .map(|(n, a)| format!("{n} {a}"))
                    .collect();
                eprintln!(
                    "sluice: not listening on {} after {READY_TIMEOUT:?}; stopping",
                    names.join(", ")
                );
                crate::lifecycle::exit_process(1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Err(e) = crate::lifecycle::write_pid_file(&self.pid_file) {
            eprintln!(
                "sluice: cannot write server.pid_file {}: {e}; stopping",
                self.pid_file.display()
            );
            crate::lifecycle::exit_process(1);
        }
        crate::lifecycle::own_pid_file(self.pid_file.clone());
        // The daemon's output moves to the error log before the parent is told (whatever
        // happens to the log once it is — a rotation — happens to the file the daemon
        // writes); the parent's pipe is kept aside for the one line it waits for.
        let parent = if self.detached {
            let _ = std::io::stdout().flush();
            let pipe = nix::unistd::dup(std::io::stdout())
                .ok()
                .map(std::fs::File::from);
            self.redirect_output();
            pipe
        } else {
            None
        };
        // As the daemon, the first line of server.error_log.
        tracing::info!(
            pid = std::process::id(),
            pid_file = %self.pid_file.display(),
            daemon = self.detached,
            "ready: every listener is listening"
        );
        if let Some(mut pipe) = parent {
            let _ = writeln!(pipe, "{READY_LINE}");
            let _ = pipe.flush();
        }
    }

    /// Once ready, the daemon's output leaves the parent's pipe: stdout to the error log (or
    /// /dev/null), stderr to the error log when there is one.
    fn redirect_output(&self) {
        let log = self.error_log.as_deref().and_then(|p| open_log(p).ok());
        let out = match &log {
            Some(f) => f.try_clone().ok(),
            None => std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .ok(),
        };
        if let Some(f) = out {
            let _ = nix::unistd::dup2_stdout(&f);
        }
        if let Some(f) = log {
            let _ = nix::unistd::dup2_stderr(&f);
        }
    }
}

/// The listeners of `want` that no socket of this process listens on yet.
fn missing_listeners(want: &[SocketAddr]) -> Vec<SocketAddr> {
    let ours = own_socket_inodes();
    let mut listening = Vec::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            listening.extend(
                listening_sockets(&text)
                    .into_iter()
                    .filter(|(_, inode)| ours.contains(inode))
                    .map(|(a, _)| a),
            );
        }
    }
    want.iter()
        .filter(|a| !listening.iter().any(|l| same_listener(l, a)))
        .copied()
        .collect()
}

/// An IPv4 listener shows in `tcp6` as a mapped address when bound dual-stack.
fn same_listener(listening: &SocketAddr, wanted: &SocketAddr) -> bool {
    let canon = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    listening.port() == wanted.port() && canon(listening.ip()) == canon(wanted.ip())
}

/// Inodes of the sockets this process holds open (`/proc/self/fd/* -> socket:[N]`).
fn own_socket_inodes() -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The listening sockets of a `/proc/net/tcp` or `tcp6` table: address and inode.
pub fn listening_sockets(table: &str) -> Vec<(SocketAddr, u64)> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != LISTEN {
                return None;
            }
            let addr = proc_addr(cols[1])?;
            let inode = cols[9].parse().ok()?;
            Some((addr, inode))
        })
        .collect()
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:port` (IPv6): each 32-bit word in host order.
fn proc_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Option<Vec<u32>> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect();
    let words = words?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes.as_slice()).ok()?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41234 1 0000000000000000 100 0 0 10 0
   1: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41235 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 41236 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 51234 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 51235 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listening_ipv4_sockets_and_their_inodes() {
        let l = listening_sockets(TCP);
        assert_eq!(
            l,
            vec![
                ("127.0.0.1:8080".parse().unwrap(), 41234),
                ("0.0.0.0:8000".parse().unwrap(), 41235)
            ],
            "an established connection is not a listener"
        );
    }

    #[test]
    fn listening_ipv6_sockets_and_mapped_ipv4() {
        let l = listening_sockets(TCP6);
        assert_eq!(l[0], ("[::1]:8080".parse().unwrap(), 51234));
        assert!(same_listener(&l[1].0, &"127.0.0.1:9000".parse().unwrap()));
        assert!(!same_listener(&l[1].0, &"127.0.0.1:9001".parse().unwrap()));
    }

    #[test]
    fn a_real_listener_of_this_process_is_found() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert!(missing_listeners(&[addr]).is_empty());
        drop(l);
        assert_eq!(missing_listeners(&[addr]), vec![addr]);
    }
}

//! Test harness: a real origin server that records what it receives, and the real `sluice`
//! binary started on ephemeral loopback ports with a config written for the test.
#![allow(dead_code)]

pub mod gated;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use parking_lot::Mutex;

/// One request as the origin saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path_and_query: String,
    pub headers: HashMap<String, String>,
}

/// What the origin answers for one path.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
    pub headers: Vec<(String, String)>,
    /// Send the body in this many chunks spread over this duration.
    pub trickle: Option<(usize, Duration)>,
    /// Wait this long before answering at all.
    pub delay: Option<Duration>,
    /// Send no `Content-Length` (a chunked body of unannounced length).
    pub unannounced_length: bool,
    /// Answer a single `Range: bytes=…` as real origins do (`206`, `416`).
    pub ranges: bool,
}

impl Reply {
    pub fn ok(body: impl Into<Bytes>, content_type: &str) -> Reply {
        Reply {
            status: 200,
            body: body.into(),
            headers: vec![("content-type".into(), content_type.into())],
            trickle: None,
            delay: None,
            unannounced_length: false,
            ranges: false,
        }
    }

    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            body: Bytes::from_static(b"origin says no"),
            headers: vec![("content-type".into(), "text/plain".into())],
            trickle: None,
            delay: None,
            unannounced_length: false,
            ranges: false,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn trickle(mut self, chunks: usize, over: Duration) -> Reply {
        self.trickle = Some((chunks.max(1), over));
        self
    }

    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = Some(d);
        self
    }

    pub fn unannounced_length(mut self) -> Reply {
        self.unannounced_length = true;
        self
    }

    /// Answer ranges: a single `bytes=first-last`, `first-` or `-suffix` gets a `206` of those
    /// bytes (`416` when none of them exist); several ranges get the whole object.
    pub fn ranges(mut self) -> Reply {
        self.ranges = true;
        self
    }
}

/// The bytes a single `bytes=…` range names in an object of `len` bytes: `Some(None)` when
/// none of them exist, `None` when the header is not a single byte range.
fn single_range(value: &str, len: usize) -> Option<Option<std::ops::Range<usize>>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.trim().split_once('-')?;
    let range = if first.is_empty() {
        let n: usize = last.parse().ok()?;
        len.saturating_sub(n)..len
    } else {
        let first: usize = first.parse().ok()?;
        let end = if last.is_empty() {
            len
        } else {
            last.parse::<usize>().ok()?.saturating_add(1).min(len)
        };
        first..end
    };
    Some((range.start < range.end).then_some(range))
}

#[derive(Default)]
struct OriginState {
    routes: Mutex<HashMap<String, Reply>>,
    hits: Mutex<HashMap<String, usize>>,
    /// Body bytes answered, all paths.
    body_bytes: std::sync::atomic::AtomicUsize,
    log: Mutex<Vec<Recorded>>,
}

/// Builder for a test origin.
#[derive(Default)]
pub struct TestOrigin {
    routes: HashMap<String, Reply>,
}

impl TestOrigin {
    pub fn new() -> TestOrigin {
        TestOrigin::default()
    }

    pub fn route(mut self, path: &str, reply: Reply) -> TestOrigin {
        self.routes.insert(path.to_string(), reply);
        self
    }

    /// Start on an ephemeral loopback port, on a thread with its own runtime.
    pub fn start(self) -> RunningOrigin {
        self.start_on("127.0.0.1")
    }

    /// Start on an ephemeral port of another loopback address (e.g. `127.0.0.2`).
    pub fn start_on(self, ip: &str) -> RunningOrigin {
        self.start_at(&format!("{ip}:0"))
    }

    /// Start on `addr` (`ip:port`; port 0 for an ephemeral one): e.g. a second host on the
    /// port of another origin, as a CDN's other name would be.
    pub fn start_at(self, addr: &str) -> RunningOrigin {
        let state = Arc::new(OriginState::default());
        *state.routes.lock() = self.routes;
        let listener = TcpListener::bind(addr).expect("bind origin");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("origin runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(move |req: Request| {
                    let st = st.clone();
                    async move { answer(st, req).await }
                });
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = stop_rx => {}
                }
            });
            // Dropping the runtime closes every socket: the origin is now "down".
            rt.shutdown_background();
        });
        RunningOrigin {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

async fn answer(st: Arc<OriginState>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| path.clone());
    st.log.lock().push(Recorded {
        method: req.method().to_string(),
        path_and_query: pq.clone(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    });
    *st.hits.lock().entry(path.clone()).or_default() += 1;
    // A route for the exact path and query wins over one for the path.
    let reply = {
        let routes = st.routes.lock();
        routes.get(&pq).or_else(|| routes.get(&path)).cloned()
    };
    let Some(reply) = reply else {
        return Response::builder()
            .status(404)
            .header("content-type", "text/plain")
            .body(Body::from("no such object"))
            .expect("response");
    };
    if let Some(d) = reply.delay {
        tokio::time::sleep(d).await;
    }
    let mut reply = reply;
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .filter(|_| reply.ranges && reply.status == 200)
        .and_then(|v| single_range(v, reply.body.len()));
    let mut extra = Vec::new();
    match range {
        Some(Some(r)) => {
            extra.push((
                "content-range".to_string(),
                format!("bytes {}-{}/{}", r.start, r.end - 1, reply.body.len()),
            ));
            reply.status = 206;
            reply.body = reply.body.slice(r);
        }
        Some(None) => {
            extra.push((
                "content-range".to_string(),
                format!("bytes */{}", reply.body.len()),
            ));
            reply.status = 416;
            reply.body = Bytes::new();
        }
        None => {}
    }
    let head = req.method() == axum::http::Method::HEAD;
    if !head && reply.trickle.is_none() {
        st.body_bytes
            .fetch_add(reply.body.len(), std::sync::atomic::Ordering::SeqCst);
    }
    let mut b = Response::builder().status(reply.status);
    for (k, v) in reply.headers.iter().chain(&extra) {
        b = b.header(k, v);
    }
    if !reply.unannounced_length {
        b = b.header("content-length", reply.body.len());
    }
    let body = match reply.trickle {
        // A body of known size would get its Content-Length from hyper: stream it instead.
        None if reply.unannounced_length => Body::from_stream(futures::stream::iter(
            reply
                .body
                .chunks(64 * 1024)
                .map(|c| Ok::<Bytes, std::io::Error>(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        )),
        None => Body::from(reply.body.clone()),
        Some((chunks, over)) => {
            let step = reply.body.len().div_ceil(chunks).max(1);
            let pause = over / chunks as u32;
            let data = reply.body.clone();
            let st = st.clone();
            let stream = futures::stream::unfold(0usize, move |off| {
                let (data, st) = (data.clone(), st.clone());
                async move {
                    if off >= data.len() {
                        return None;
                    }
                    if off > 0 {
                        tokio::time::sleep(pause).await;
                    }
                    let end = (off + step).min(data.len());
                    // Counted as it is handed over: a reader that went away stops the count.
                    if !head {
                        st.body_bytes
                            .fetch_add(end - off, std::sync::atomic::Ordering::SeqCst);
                    }
                    Some((Ok::<Bytes, std::io::Error>(data.slice(off..end)), end))
                }
            });
            Body::from_stream(stream)
        }
    };
    b.body(body).expect("response")
}

pub struct RunningOrigin {
    pub addr: SocketAddr,
    state: Arc<OriginState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningOrigin {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests seen for a path (query excluded).
    pub fn hits(&self, path: &str) -> usize {
        self.state.hits.lock().get(path).copied().unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        self.state.hits.lock().values().sum()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.log.lock().clone()
    }

    /// Body bytes answered so far (what the origin was made to send).
    pub fn body_bytes(&self) -> usize {
        self.state
            .body_bytes
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn set_route(&self, path: &str, reply: Reply) {
        self.state.routes.lock().insert(path.to_string(), reply);
    }

    /// Stop answering: every connection is closed and new ones are refused.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningOrigin {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A port that was free on `ip` (another loopback address) a moment ago.
pub fn free_port_on(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Whether process `pid` holds the socket listening on `addr` (`/proc/net/tcp*` for the
/// listening sockets' inodes, `/proc/{pid}/fd` for its own).
pub fn listens_on(pid: u32, addr: SocketAddr) -> bool {
    let local = match addr {
        SocketAddr::V4(a) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(a.ip().octets()),
            a.port()
        ),
        SocketAddr::V6(a) => format!(":{:04X}", a.port()),
    };
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && f[1].ends_with(&local) {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .ok()
            .is_some_and(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str()))
    })
}

/// The binary under test: this build's, or `SLUICE_BIN` (to show a new test fails on an
/// older build).
pub fn sluice_bin() -> String {
    std::env::var("SLUICE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sluice").to_string())
}

/// A running `sluice serve`, killed on drop.
/// Tests stop sluice at once unless they test stopping.
pub const QUICK_STOP: &str = "  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n";

/// How the harness runs sluice: in the foreground (a child of the test), or as the shipped
/// unit does, `server.daemon: true` (the started process exits once its daemon serves).
/// `SLUICE_TEST_MODE=daemon` runs every harness start of a test binary as a daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Foreground,
    Daemon,
}

impl Mode {
    /// The mode of this run: `SLUICE_TEST_MODE` (`daemon` or `foreground`, default).
    pub fn from_env() -> Mode {
        match std::env::var("SLUICE_TEST_MODE").as_deref() {
            Ok("daemon") => Mode::Daemon,
            _ => Mode::Foreground,
        }
    }

    /// Both modes, for tests parametrized over them.
    pub const ALL: [Mode; 2] = [Mode::Foreground, Mode::Daemon];
}

/// A sluice process: the test's child (foreground) or the daemon its child started.
pub enum Proc {
    Child(Child),
    /// The daemon, reparented to this test process (a child subreaper), so it can be waited for;
    /// `None` once reaped.
    Daemon(i32, Option<std::process::ExitStatus>),
}

impl Proc {
    pub fn pid(&self) -> u32 {
        match self {
            Proc::Child(c) => c.id(),
            Proc::Daemon(pid, _) => *pid as u32,
        }
    }

    pub fn kill(&mut self) {
        match self {
            Proc::Child(c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            Proc::Daemon(_, Some(_)) => {}
            Proc::Daemon(pid, exited) => {
                // SAFETY: kill(2) and waitpid(2) on a pid this process reaps (not yet reaped).
                unsafe {
                    if libc::kill(*pid, libc::SIGKILL) == 0 {
                        let mut status = 0;
                        libc::waitpid(*pid, &mut status, 0);
                        *exited = Some(std::os::unix::process::ExitStatusExt::from_raw(status));
                    }
                }
            }
        }
    }

    /// The exit status, once the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        match self {
            Proc::Child(c) => c.try_wait().ok().flatten(),
            Proc::Daemon(_, Some(status)) => Some(*status),
            Proc::Daemon(pid, exited) => {
                let mut status = 0;
                // SAFETY: waitpid(2) on a pid this process reaps; WNOHANG never blocks.
                let r = unsafe { libc::waitpid(*pid, &mut status, libc::WNOHANG) };
                if r == *pid {
                    *exited = Some(std::process::ExitStatus::from_raw(status));
                }
                *exited
            }
        }
    }
}

/// Make this test process the reaper of its orphaned descendants: a daemon whose starting
/// process exited becomes its child, so its exit status can be read.
pub fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl(2) with PR_SET_CHILD_SUBREAPER takes an integer argument.
        let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(r, 0, "prctl(PR_SET_CHILD_SUBREAPER)");
    });
}

/// Start `sluice serve -c config` in `mode`; its stdout and stderr (and, as a daemon, what it
/// printed before it was ready) go to `log`. A daemon start waits for the starting process to
/// exit and returns the daemon it started; `None` when it failed.
pub fn spawn_sluice(
    mode: Mode,
    config: &Path,
    extra_args: &[&str],
    log: &Path,
    env: &[(&str, &str)],
) -> Option<Proc> {
    let log = std::fs::File::create(log).expect("log file");
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("serve")
        .arg("-c")
        .arg(config)
        .args(extra_args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(log.try_clone().expect("dup log")))
        .stderr(Stdio::from(log));
    for (k, v) in env {
        cmd.env(k, v);
    }
    if mode == Mode::Foreground {
        return Some(Proc::Child(cmd.spawn().expect("spawn sluice")));
    }
    become_subreaper();
    let mut parent = cmd.spawn().expect("spawn sluice");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = parent.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = parent.kill();
            let _ = parent.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if !status.success() {
        return None;
    }
    let pid_file = pid_file_of(config);
    let read_pid = || -> i32 {
        std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("the daemon is ready but {}: {e}", pid_file.display()))
            .trim()
            .parse()
            .expect("pid file holds a pid")
    };
    // An upgrade's pid file may still name the process it replaces for a moment: the daemon
    // returned is the one this call started (else the test kills the old one and the new one
    // outlives the test, holding its ports).
    let upgrade = extra_args.contains(&"--upgrade");
    let mut pid = read_pid();
    let since = Instant::now();
    while upgrade && !runs_with(pid, b"--upgrade") && since.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
        pid = read_pid();
    }
    Some(Proc::Daemon(pid, None))
}

/// Whether process `pid` was started with the argument `arg`.
fn runs_with(pid: i32, arg: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg))
}

/// `server.pid_file` of a harness config (the line the harness writes).
fn pid_file_of(config: &Path) -> PathBuf {
    let text = std::fs::read_to_string(config).expect("config");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("pid_file: "))
        .map(PathBuf::from)
        .expect("pid_file in the config")
}

pub struct Sluice {
    proc: Proc,
    pub mode: Mode,
    pub edge: SocketAddr,
    pub admin: SocketAddr,
    dir: Option<tempfile::TempDir>,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
}

impl Sluice {
    /// Start with `extra` YAML appended after the generated `listen`, `state` and `server`
    /// sections (so `extra` must not contain those keys).
    pub fn start(extra: &str) -> Sluice {
        Self::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Sluice {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, extra, env)
    }

    /// Start in an existing state directory (for restart tests).
    pub fn start_in(dir: tempfile::TempDir, extra: &str, env: &[(&str, &str)]) -> Sluice {
        Self::start_in_with_server(dir, extra, env, QUICK_STOP)
    }

    /// Start with `server` as the `server:` section's settings after threads, pid file and
    /// upgrade socket (indented two spaces), e.g. a real grace period for drain tests.
    pub fn start_with_server(extra: &str, server: &str) -> Sluice {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in_with_server(dir, extra, &[], server)
    }

    /// Start with more keys under `listen:` (indented two spaces), e.g. `edge_tls`.
    pub fn start_with_listen(listen: &str, extra: &str) -> Sluice {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in_full(dir, extra, &[], QUICK_STOP, listen)
    }

    pub fn start_in_with_server(
        dir: tempfile::TempDir,
        extra: &str,
        env: &[(&str, &str)],
        server: &str,
    ) -> Sluice {
        Self::start_in_full(dir, extra, env, server, "")
    }

    pub fn start_in_full(
        dir: tempfile::TempDir,
        extra: &str,
        env: &[(&str, &str)],
        server: &str,
        listen: &str,
    ) -> Sluice {
        Self::start_inner(dir, extra, env, server, listen, "", None)
    }

    /// One node of a fleet: `state.redis` set to `redis`, plus `state` lines (indented two
    /// spaces, e.g. `  redis_fail_open: [playback]\n`), in a fresh state directory.
    pub fn start_node(
        redis: &RedisServer,
        state: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Sluice {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = format!("  redis: {}\n{state}", redis.url());
        Self::start_inner(dir, extra, env, QUICK_STOP, "", &state, None)
    }

    /// One node of a fleet on Redis behind `sentinels` (`state.redis_sentinel`), plus `state`
    /// lines as for [`Self::start_node`].
    pub fn start_sentinel_node(
        sentinels: &Sentinels,
        state: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Sluice {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = format!(
            "  redis_sentinel:\n    master: {}\n    sentinels: {}\n{state}",
            sentinels.name,
            sentinels.yaml_list()
        );
        Self::start_inner(dir, extra, env, QUICK_STOP, "", &state, None)
    }

    /// Start with more keys under `state:` (indented two spaces) as well.
    pub fn start_in_with_state(
        dir: tempfile::TempDir,
        extra: &str,
        env: &[(&str, &str)],
        server: &str,
        listen: &str,
        state: &str,
    ) -> Sluice {
        Self::start_inner(dir, extra, env, server, listen, state, None)
    }

    /// Start with the edge listening on `edge`: a fleet node, whose address every node's
    /// `fleet.peers` names before any of them starts.
    pub fn start_at(edge: SocketAddr, extra: &str, env: &[(&str, &str)]) -> Sluice {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_inner(dir, extra, env, QUICK_STOP, "", "", Some(edge))
    }

    #[allow(clippy::too_many_arguments)]
    fn start_inner(
        dir: tempfile::TempDir,
        extra: &str,
        env: &[(&str, &str)],
        server: &str,
        listen: &str,
        state: &str,
        fixed_edge: Option<SocketAddr>,
    ) -> Sluice {
        Self::start_mode(
            Mode::from_env(),
            dir,
            extra,
            env,
            server,
            listen,
            state,
            fixed_edge,
        )
    }

    /// Start in `mode` (see [`Mode`]); the other arguments as for [`Sluice::start_in_full`].
    #[allow(clippy::too_many_arguments)]
    pub fn start_mode(
        mode: Mode,
        mut dir: tempfile::TempDir,
        extra: &str,
        env: &[(&str, &str)],
        server: &str,
        listen: &str,
        state: &str,
        fixed_edge: Option<SocketAddr>,
    ) -> Sluice {
        let daemon_lines = match mode {
            Mode::Foreground => String::new(),
            Mode::Daemon => format!(
                "  daemon: true\n  error_log: {}\n",
                dir.path().join("sluice-error.log").display()
            ),
        };
        // A restart in the same directory starts with an empty log.
        let _ = std::fs::remove_file(dir.path().join("sluice-error.log"));
        let server = format!("{daemon_lines}{server}");
        let server = server.as_str();
        for attempt in 0..3 {
            let edge: SocketAddr = fixed_edge
                .unwrap_or_else(|| format!("127.0.0.1:{}", free_port()).parse().expect("addr"));
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let config_path = dir.path().join("sluice.yaml");
            let text = format!(
                "listen:\n  edge: {edge}\n  admin: {admin}\n{listen}state:\n  sqlite: {db}\n{state}server:\n  threads: 2\n  pid_file: {pid}\n  upgrade_sock: {sock}\n{server}{extra}\n",
                db = dir.path().join("state/sluice.db").display(),
                pid = dir.path().join("sluice.pid").display(),
                sock = dir.path().join("upgrade.sock").display(),
            );
            // `{EDGE}` in the test's YAML is this instance's own edge address.
            let text = text.replace("{EDGE}", &edge.to_string());
            std::fs::write(&config_path, text).expect("write config");
            let log_path = dir.path().join(format!("sluice-{attempt}.log"));
            let Some(proc) = spawn_sluice(mode, &config_path, &[], &log_path, env) else {
                eprintln!(
                    "sluice (daemon) did not start (attempt {attempt}):\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
                continue;
            };
            let mut s = Sluice {
                proc,
                mode,
                edge,
                admin,
                dir: Some(dir),
                config_path,
                log_path,
            };
            if s.wait_ready(Duration::from_secs(15)) {
                return s;
            }
            s.proc.kill();
            eprintln!("sluice did not start (attempt {attempt}):\n{}", s.log());
            dir = s.take_dir();
        }
        panic!("sluice failed to start three times");
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        self.proc.kill();
        self.dir.take().expect("state dir present until taken")
    }

    /// Both listeners answer, and they are this process's: `free_port` hands out a port that
    /// was free a moment ago, and a test running beside this one may have bound it since. Then
    /// this sluice cannot bind it, the other one answers on it, and this test would talk to a
    /// stranger (seen as a content key `404` right after its `PUT`): start again elsewhere.
    fn wait_ready(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        let mut answered_by_another: Option<Instant> = None;
        while start.elapsed() < limit {
            if self.proc.try_wait().is_some() {
                return false;
            }
            if http_ok(self.edge) && http_ok(self.admin) {
                let pid = self.proc.pid();
                if listens_on(pid, self.edge) && listens_on(pid, self.admin) {
                    return true;
                }
                let since = *answered_by_another.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(2) {
                    eprintln!("another process answers on {} or {}", self.edge, self.admin);
                    return false;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn edge_url(&self, path: &str) -> String {
        format!("http://{}{}", self.edge, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Everything sluice wrote: its stdout and stderr, and as a daemon its `server.error_log`.
    pub fn log(&self) -> String {
        let mut log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        if self.mode == Mode::Daemon {
            if let Some(dir) = &self.dir {
                log.push_str(
                    &std::fs::read_to_string(dir.path().join("sluice-error.log"))
                        .unwrap_or_default(),
                );
            }
        }
        log
    }

    pub fn state_dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("state dir present until taken")
            .path()
    }

    /// SIGKILL, no cleanup: for durability tests.
    pub fn kill9(&mut self) {
        self.proc.kill();
    }

    /// Stop and hand back the state directory for a restart.
    pub fn stop_keep_dir(self) -> tempfile::TempDir {
        self.take_dir()
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Wait for the process to exit by itself (after a signal); panics past `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.proc.try_wait() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "sluice did not exit within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        self.proc.kill();
        // A graceful upgrade the test ran hands this instance's sockets and pid file to a new
        // process, which in daemon mode is no child the test holds (it outlived every test
        // that upgraded, holding its ports): stop whatever process serves this config now.
        let Ok(text) = std::fs::read_to_string(pid_file_of(&self.config_path)) else {
            return;
        };
        let Ok(pid) = text.trim().parse::<i32>() else {
            return;
        };
        let ours = runs_with(pid, self.config_path.as_os_str().as_encoded_bytes());
        if pid as u32 != self.proc.pid() && ours {
            // SAFETY: kill(2) on a process started with this instance's config; waitpid(2)
            // reaps it when it is this (subreaper) process's, and returns at once otherwise.
            unsafe {
                if libc::kill(pid, libc::SIGKILL) == 0 {
                    let mut status = 0;
                    libc::waitpid(pid, &mut status, 0);
                }
            }
        }
    }
}

/// Plain blocking GET /health used while waiting for start-up.
fn http_ok(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200")
}

/// A reqwest client that never pools across tests and has a sane timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Deterministic pseudo-random bytes (so origin bodies are not trivially compressible).
pub fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

/// A scrape of the admin listener's `/metrics`.
pub async fn metrics(s: &Sluice) -> String {
    client()
        .get(s.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of a metric line (exact label string) in Prometheus text, or 0.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|r| r.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

/// The default admin key, as printed on first start.
pub fn admin_key(s: &Sluice) -> String {
    for _ in 0..50 {
        if let Some(k) = s
            .log()
            .lines()
            .find_map(|l| l.strip_prefix("Generated default admin API key: "))
        {
            return k.trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no admin key printed:\n{}", s.log());
}

/// A seed document from `shared/seeds/` (beside the repository, as CI places it).
pub fn seed(name: &str) -> String {
    let beside = format!("{}/../shared/seeds/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&beside)
        .or_else(|_| std::fs::read_to_string(format!("/work/shared/seeds/{name}")))
        .unwrap_or_else(|e| panic!("seed document {name} not found beside the repository: {e}"))
}

/// A real `redis-server` (the `redis-server` package; `REDIS_SERVER` names another binary) on
/// a free loopback port, with its own directory and AOF `appendfsync always` — the durability
/// README recommends for a fleet. Killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    bin: String,
    password: Option<String>,
    /// Its TLS port, when started with [`Self::start_tls`] (the plain port stays for the
    /// harness).
    pub tls_port: Option<u16>,
    tls: Vec<String>,
    /// The master's port, for a replica ([`Self::start_replica_of`]).
    replica_of: Option<u16>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with_password(None)
    }

    /// With `requirepass` set: clients must authenticate.
    pub fn start_with_password(password: Option<&str>) -> RedisServer {
        let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let mut r = RedisServer {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            bin,
            password: password.map(String::from),
            tls_port: None,
            tls: Vec::new(),
            replica_of: None,
        };
        r.spawn();
        r
    }

    /// A replica of `master` (`--replicaof`), once its replication link is up.
    pub fn start_replica_of(master: &RedisServer) -> RedisServer {
        let mut r = Self::start_with_password(None);
        r.replica_of = Some(master.port);
        r.restart();
        wait_for(
            "the replica's link to its master",
            Duration::from_secs(15),
            || {
                r.command(&["INFO", "replication"])
                    .is_some_and(|i| i.contains("master_link_status:up"))
            },
        );
        r
    }

    /// Also listening for TLS (`rediss://`) with this certificate and key; clients are not
    /// asked for certificates.
    pub fn start_tls(cert: &Path, key: &Path) -> RedisServer {
        let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let tls_port = free_port();
        let mut r = RedisServer {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            bin,
            password: None,
            tls_port: Some(tls_port),
            tls: vec![
                "--tls-port".into(),
                tls_port.to_string(),
                "--tls-cert-file".into(),
                cert.display().to_string(),
                "--tls-key-file".into(),
                key.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
            replica_of: None,
        };
        r.spawn();
        r
    }

    /// `SIGSTOP`: the process keeps its sockets but answers nothing (a hung Redis).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// `SIGCONT` after [`Self::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("redis-server running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {pid} failed");
    }

    fn spawn(&mut self) {
        let log = self.dir.path().join("redis.log");
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .args(
                self.password
                    .iter()
                    .flat_map(|p| ["--requirepass".to_string(), p.clone()]),
            )
            .args(&self.tls)
            .args(
                self.replica_of
                    .iter()
                    .flat_map(|p| ["--replicaof".to_string(), "127.0.0.1".into(), p.to_string()]),
            )
            .arg("--logfile")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `{}`: {e}. The fleet tests need a real Redis: install the \
                     redis-server package (scripts/ensure-test-deps.sh does) or set REDIS_SERVER \
                     to a redis-server binary",
                    self.bin
                )
            });
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if self.command(&["PING"]).as_deref() == Some("PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server did not answer PING on port {} within 15 s:\n{}",
            self.port,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `kill -9`: no shutdown, no final write.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port and directory (its AOF is replayed).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Start again on the same port with nothing: a restart without persistence (its AOF and
    /// RDB files are removed first; its log stays).
    pub fn restart_empty(&mut self) {
        self.kill9();
        for e in std::fs::read_dir(self.dir.path())
            .expect("redis dir")
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p).expect("remove redis data");
            } else if e.file_name() != "redis.log" {
                std::fs::remove_file(&p).expect("remove redis data");
            }
        }
        self.spawn();
    }

    /// One command over a plain RESP connection: the reply as text (integers and strings as
    /// themselves, arrays one element per line, nil as `None`).
    pub fn command(&self, args: &[&str]) -> Option<String> {
        resp_command(self.port, self.password.as_deref(), args)
    }
}

/// One command to `127.0.0.1:port` (see [`RedisServer::command`]).
pub fn resp_command(port: u16, password: Option<&str>, args: &[&str]) -> Option<String> {
    use std::io::{BufRead, BufReader, Read, Write};
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let encode = |args: &[&str]| {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        req
    };
    fn read(r: &mut BufReader<&std::net::TcpStream>) -> Option<Option<String>> {
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1.min(line.len()));
        match kind {
            "+" | ":" => Some(Some(rest.to_string())),
            "-" => Some(Some(format!("ERR {rest}"))),
            "$" => {
                let n: i64 = rest.parse().ok()?;
                if n < 0 {
                    return Some(None);
                }
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf).ok()?;
                buf.truncate(n as usize);
                Some(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
            "*" => {
                let n: i64 = rest.parse().ok()?;
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(read(r)?.unwrap_or_default());
                }
                Some(Some(items.join("\n")))
            }
            _ => None,
        }
    }
    let mut reader = BufReader::new(&s);
    if let Some(p) = password {
        (&s).write_all(encode(&["AUTH", p]).as_bytes()).ok()?;
        read(&mut reader)?;
    }
    (&s).write_all(encode(args).as_bytes()).ok()?;
    read(&mut reader)?
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Real Redis Sentinels (`redis-server <conf> --sentinel`) on free loopback ports, watching
/// one master as `name` (quorum 2, down after 1 s, failover timeout 3 s). Killed on drop.
pub struct Sentinels {
    pub name: String,
    pub ports: Vec<u16>,
    /// Their TLS ports, when started with [`Self::start_tls`] (the plain ones stay for the
    /// harness).
    pub tls_ports: Vec<u16>,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Sentinels {
    /// `count` Sentinels watching `master`, once they all see each other and its replicas
    /// (`replicas` of them): a failover can be decided.
    pub fn start(name: &str, master: &RedisServer, count: usize, replicas: usize) -> Sentinels {
        Self::start_with(name, master.port, count, replicas, None, "")
    }

    /// One Sentinel with its own password (`requirepass`), watching `master` (started with
    /// its password, which the Sentinel is given as `auth-pass`).
    pub fn start_with_password(name: &str, master: &RedisServer, password: &str) -> Sentinels {
        let auth = format!(
            "requirepass {password}\nsentinel auth-pass {name} {}\n",
            master.password.as_deref().unwrap_or("")
        );
        Self::start_with(name, master.port, 1, 0, None, &auth)
    }

    /// One Sentinel that also listens for TLS and watches `master` on its TLS port
    /// (`tls-replication yes`), trusting `pki`'s CA; clients are not asked for certificates.
    pub fn start_tls(name: &str, master: &RedisServer, pki: &Pki) -> Sentinels {
        let port = master.tls_port.expect("a master started with start_tls");
        Self::start_with(name, port, 1, 0, Some(pki), "")
    }

    fn start_with(
        name: &str,
        master: u16,
        count: usize,
        replicas: usize,
        tls: Option<&Pki>,
        after_monitor: &str,
    ) -> Sentinels {
        let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let mut s = Sentinels {
            name: name.into(),
            ports: Vec::new(),
            tls_ports: Vec::new(),
            children: Vec::new(),
            _dir: tempfile::tempdir().expect("tempdir"),
        };
        let dir = s._dir.path().to_path_buf();
        for i in 0..count {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{i}.conf"));
            let tls_lines = match tls {
                Some(pki) => {
                    let tls_port = free_port();
                    s.tls_ports.push(tls_port);
                    format!(
                        "tls-port {tls_port}\ntls-cert-file {}\ntls-key-file {}\n\
                         tls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
                        pki.cert.display(),
                        pki.key.display(),
                        pki.ca.display()
                    )
                }
                None => String::new(),
            };
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
                     logfile {dir}/sentinel-{i}.log\n{tls_lines}\
                     sentinel monitor {name} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {name} 1000\n\
                     sentinel failover-timeout {name} 3000\n\
                     sentinel parallel-syncs {name} 1\n{after_monitor}",
                    dir = dir.display(),
                ),
            )
            .expect("write sentinel.conf");
            let child = Command::new(&bin)
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run `{bin} --sentinel`: {e}"));
            s.ports.push(port);
            s.children.push(child);
        }
        for &port in &s.ports {
            wait_for(
                "every Sentinel to see the others and the replicas",
                Duration::from_secs(30),
                || {
                    let names = |cmd: &str| {
                        resp_command(port, None, &["SENTINEL", cmd, name])
                            .map(|t| t.lines().filter(|l| *l == "name").count())
                    };
                    let (others, seen) = (names("SENTINELS"), names("REPLICAS"));
                    others.is_some_and(|o| o + 1 >= count) && seen.is_some_and(|r| r >= replicas)
                },
            );
        }
        s
    }

    /// `["127.0.0.1:p", …]`, as `state.redis_sentinel.sentinels` takes them.
    pub fn yaml_list(&self) -> String {
        let v: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        format!("[{}]", v.join(", "))
    }

    /// The master's port as Sentinel `i` names it now.
    pub fn master_port(&self, i: usize) -> Option<u16> {
        let a = resp_command(
            self.ports[i],
            None,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.name],
        )?;
        a.lines().nth(1)?.parse().ok()
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The default admin key of a fleet: printed once, by whichever node made it.
pub fn fleet_admin_key(nodes: &[&Sluice]) -> String {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let found: Vec<String> = nodes
            .iter()
            .flat_map(|s| {
                s.log()
                    .lines()
                    .filter_map(|l| l.strip_prefix("Generated default admin API key: "))
                    .map(|k| k.trim().to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        if let Some(k) = found.first() {
            assert_eq!(
                found.len(),
                1,
                "the default admin key was made more than once"
            );
            return k.clone();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no node printed the default admin key");
}

/// A test CA and an edge certificate it issued for `localhost` and 127.0.0.1.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// base64 SHA-256 of the edge certificate's SubjectPublicKeyInfo (Chromium's pin).
    pub spki: String,
    pub ca_der: Vec<u8>,
}

impl Pki {
    /// `listen:` lines (indented two spaces) for a TLS edge listener on 127.0.0.1:`port` with
    /// this PKI's edge certificate.
    pub fn edge_tls(&self, port: u16) -> String {
        format!(
            "  edge_tls:\n    address: 127.0.0.1:{port}\n    cert: {}\n    key: {}\n",
            self.cert.display(),
            self.key.display()
        )
    }
}

pub fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sluice test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let (ca_path, cert_path, key_path) = (
        dir.path().join("ca.pem"),
        dir.path().join("edge.pem"),
        dir.path().join("edge.key"),
    );
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let spki = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(key.public_key_der()))
    };
    Pki {
        ca: ca_path,
        cert: cert_path,
        key: key_path,
        spki,
        ca_der: ca.der().to_vec(),
        _dir: dir,
    }
}

/// Send `sig` (as `kill` spells it: `-TERM`, `-QUIT`, …) to `pid`.
pub fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs")
        .success());
}

/// Poll `cond` every 25 ms; panics naming `what` past `limit`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The status of one `GET path` on a new connection, written in one send; `None` when the
/// connection fails or closes first.
pub fn status_of(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = [0u8; 12];
    c.read_exact(&mut buf).ok()?;
    std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
}

/// A TLS connection to the TLS edge offering `alpn` (the test CA trusted), for tests that
/// write raw frames themselves.
pub async fn tls_connect(
    p: &Pki,
    port: u16,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(p.ca_der.clone()))
        .expect("test CA");
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the TLS edge");
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}

/// An HTTP/2 connection to the TLS edge (ALPN `h2`, the test CA trusted), for tests that drive
/// streams and flow control themselves.
pub async fn h2_connect(p: &Pki, port: u16) -> h2::client::SendRequest<Bytes> {
    let tls = tls_connect(p, port, b"h2").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// A viewer's bearer JWT for the providers' Stream Info endpoint (`provider_auth.jwt_secret`
/// = `secret`; HS256, `sub`, ten minutes).
pub fn provider_jwt(secret: &str, sub: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": sub, "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a JWT")
}

/// The `/api/proxy` URL the Stream Info endpoint gives `jwt`'s viewer for `provider`'s
/// `channel`.
pub async fn stream_info_url(s: &Sluice, provider: &str, channel: &str, jwt: &str) -> String {
    let v: serde_json::Value = client()
        .get(s.edge_url(&format!(
            "/api/providers/{provider}/channels/{channel}/stream"
        )))
        .bearer_auth(jwt)
        .send()
        .await
        .expect("Stream Info answers")
        .json()
        .await
        .expect("Stream Info JSON");
    v["url"]
        .as_str()
        .unwrap_or_else(|| panic!("no url: {v}"))
        .to_string()
}

/// The ctx of that URL.
pub async fn stream_info_ctx(s: &Sluice, provider: &str, channel: &str, jwt: &str) -> String {
    let url = stream_info_url(s, provider, channel, jwt).await;
    sluice::rewrite::unwrap_proxy_url(&url)
        .expect("a proxy URL")
        .1
}

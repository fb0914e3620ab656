//! What `serve` needs of the host it runs on, checked without side effects: by `sluice check`
//! (unless `--offline`, for a config meant for another host) and by `serve` before it starts,
//! through the same function ([`Config::load_for_this_host`]), so both refuse the same things
//! with the same `file: line N: key `x`: message`.
//!
//! Refused: a state directory (the parent of `state.sqlite`) or `cache.disk.path` that cannot
//! be created or written by this user, an existing state file that cannot be read and written,
//! a listen address or `fleet.self` whose IP is not an address of this machine. A port already
//! in use is *not* refused: `ExecReload` runs `sluice check` while the old process holds it.
//! TLS files are read by the file checks already ([`super::Validator`]).
//!
//! Warned about (what only run time can tell): Redis not reachable now (with Sentinels: each
//! unreachable Sentinel, a master name they do not know, the master they name unreachable), a
//! `dir:` bucket that does not exist, a missing directory of `server.upgrade_sock` (and, in
//! daemon mode, of `server.pid_file` and `server.error_log`), which systemd may create only
//! when it starts the service.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{access, AccessFlags};

use super::redis::{RedisEndpoint, SentinelConfig};
use super::{Bucket, Config, ConfigError, Validator};

/// How long `sluice check` waits for Redis to accept a connection before warning.
const REDIS_PROBE: Duration = Duration::from_secs(1);

/// The first thing this host cannot give `serve`: `(dotted key, message)`.
pub fn problems(c: &Config) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let state_dir = parent_dir(&c.sqlite_path);
    if let Err(m) = writable_dir(&state_dir) {
        out.push(("state.sqlite", format!("state directory {m}")));
    } else if let Err(m) = writable_file_if_present(&c.sqlite_path) {
        out.push(("state.sqlite", m));
    }
    if let Some(d) = &c.cache.disk {
        if let Err(m) = writable_dir(&d.path) {
            out.push(("cache.disk.path", m));
        }
    }
    let mut listeners = vec![("listen.edge", c.edge_addr), ("listen.admin", c.admin_addr)];
    if let Some(t) = &c.edge_tls {
        listeners.push(("listen.edge_tls.address", t.addr));
    }
    for (key, addr) in listeners {
        if let Err(m) = local_ip(addr.ip()) {
            out.push((key, m));
        }
    }
    if let Some(f) = &c.fleet {
        if let Err(m) = local_ip(f.this.ip()) {
            out.push((
                "fleet.self",
                format!("{m}: fleet.self must be this node's own address"),
            ));
        }
    }
    out
}

/// What may fail at run time though the config is sound: printed by `sluice check` as
/// `warning: …`, never a refusal.
pub fn warnings(c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    match c.redis.as_ref().map(|r| &r.endpoint) {
        Some(RedisEndpoint::Url(url)) => {
            // The URL's Display never holds the password.
            let target = format!("{}:{}", url.host, url.port);
            if let Err(e) = reachable(&target, REDIS_PROBE) {
                out.push(format!(
                    "state.redis: {url} is not reachable from this host now ({e}); serve starts, \
                     and what needs Redis fails closed until it is"
                ));
            }
        }
        Some(RedisEndpoint::Sentinel(s)) => out.extend(sentinel_warnings(s)),
        None => {}
    }
    // Pingora creates none of these directories; systemd's RuntimeDirectory=/LogsDirectory=
    // usually do, when the service starts (so a check before then may see them missing).
    let conf = c.server_conf();
    let mut files = vec![("server.upgrade_sock", Some(conf.upgrade_sock.clone()))];
    if conf.daemon {
        files.push(("server.pid_file", Some(conf.pid_file.clone())));
        files.push(("server.error_log", conf.error_log.clone()));
    }
    for (key, file) in files {
        let Some(file) = file.filter(|f| !f.is_empty()) else {
            continue;
        };
        let dir = parent_dir(Path::new(&file));
        if !dir.is_dir() {
            out.push(format!(
                "{key}: directory `{}` does not exist (Pingora does not create it)",
                dir.display()
            ));
        } else if let Err(e) = access(&dir, AccessFlags::W_OK | AccessFlags::X_OK) {
            out.push(format!(
                "{key}: directory `{}` is not writable by this user: {}",
                dir.display(),
                e.desc()
            ));
        }
    }
    if let Bucket::Dir(d) = &c.origins.bucket {
        if !d.is_dir() {
            out.push(format!(
                "origins.bucket: directory `{}` does not exist; every /stream request will \
                 be a 404",
                d.display()
            ));
        }
    }
    out
}

impl Config {
    /// [`Config::load`], then refuse what this host cannot give `serve` ([`problems`]): what
    /// `serve` and `sluice check` (without `--offline`) load.
    pub fn load_for_this_host(path: &Path) -> Result<Config, ConfigError> {
        let (name, text) = super::read_file(path)?;
        let config = Self::from_str_named(&text, &name, &|v| std::env::var(v).ok())?;
        let v = Validator {
            file: &name,
            text: &text,
        };
        match problems(&config).into_iter().next() {
            Some((key, message)) => Err(v.err(key, message)),
            None => Ok(config),
        }
    }
}

/// The directory a file is in (`.` for a bare file name).
fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether `dir` exists as a directory this user can write, or could be created: its first
/// existing ancestor is a directory this user can write. Nothing is created.
pub fn writable_dir(dir: &Path) -> Result<(), String> {
    let mut p = dir.to_path_buf();
    loop {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => {
                let created = if p == dir {
                    String::new()
                } else {
                    format!(" (where `{}` would be created)", dir.display())
                };
                return access(&p, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| {
                    format!(
                        "`{}`{created} is not writable by this user: {}",
                        p.display(),
                        e.desc()
                    )
                });
            }
            Ok(_) => {
                return Err(if p == dir {
                    format!("`{}` exists and is not a directory", p.display())
                } else {
                    format!(
                        "`{}` cannot be created: `{}` is not a directory",
                        dir.display(),
                        p.display()
                    )
                })
            }
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                match p.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => p = parent.to_path_buf(),
                    // A relative path whose first component is missing: the working directory.
                    _ if p.is_relative() && p != Path::new(".") => p = PathBuf::from("."),
                    _ => return Err(format!("`{}`: {e}", dir.display())),
                }
            }
            Err(e) => return Err(format!("`{}`: {e}", p.display())),
        }
    }
}

/// An existing file must be a file this user can read and write.
fn writable_file_if_present(file: &Path) -> Result<(), String> {
    match std::fs::metadata(file) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => Err(format!("`{}` is a directory", file.display())),
        Ok(_) => access(file, AccessFlags::R_OK | AccessFlags::W_OK).map_err(|e| {
            format!(
                "`{}` is not readable and writable by this user: {}",
                file.display(),
                e.desc()
            )
        }),
    }
}

/// Whether `ip` is an address of this machine: a socket can be bound to it (port 0, closed at
/// once; the port `serve` will use is not touched, so a running sluice holding it is fine).
pub fn local_ip(ip: IpAddr) -> Result<(), String> {
    if ip.is_unspecified() {
        return Ok(());
    }
    match TcpListener::bind(SocketAddr::new(ip, 0)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AddrNotAvailable => {
            Err(format!("{ip} is not an address of this machine"))
        }
        Err(e) => Err(format!("{ip}: cannot listen on it: {e}")),
    }
}

/// Whether something accepts TCP connections at `host:port` within `limit`.
/// Each Sentinel that cannot be reached; then what the first reachable one says of the
/// master: not known by that name (a typo `serve` would retry forever), or not reachable.
fn sentinel_warnings(s: &SentinelConfig) -> Vec<String> {
    let mut out = Vec::new();
    let mut asked = None;
    for (host, port) in &s.sentinels {
        let shown = SentinelConfig::shown_sentinel(host, *port);
        match reachable(&shown, REDIS_PROBE) {
            Ok(()) => {
                if asked.is_none() {
                    asked = Some((shown, master_by_name(s, host, *port)));
                }
            }
            Err(e) => out.push(format!(
                "state.redis_sentinel.sentinels: {shown} is not reachable from this host now ({e})"
            )),
        }
    }
    match asked {
        None => out.push(format!(
            "state.redis_sentinel: no Sentinel is reachable from this host now; serve starts, \
             and what needs Redis fails closed until one names the master `{}`",
            s.master
        )),
        Some((sentinel, Ok(None))) => out.push(format!(
            "state.redis_sentinel.master: Sentinel {sentinel} monitors no master named `{}`",
            s.master
        )),
        Some((sentinel, Err(e))) => out.push(format!(
            "state.redis_sentinel: Sentinel {sentinel} did not name the master `{}`: {e}",
            s.master
        )),
        Some((sentinel, Ok(Some((host, port))))) => {
            let master = SentinelConfig::shown_sentinel(&host, port);
            if let Err(e) = reachable(&master, REDIS_PROBE) {
                out.push(format!(
                    "state.redis_sentinel: the master `{}` is at {master} (Sentinel {sentinel}), \
                     not reachable from this host now ({e})",
                    s.master
                ));
            }
        }
    }
    out
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME` on one Sentinel, bounded by [`REDIS_PROBE`].
fn master_by_name(
    s: &SentinelConfig,
    host: &str,
    port: u16,
) -> Result<Option<(String, u16)>, String> {
    let client =
        redis::Client::open(s.sentinel_connection_info(host, port)).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_connection_with_timeout(REDIS_PROBE)
        .map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(REDIS_PROBE))
        .map_err(|e| e.to_string())?;
    redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(&s.master)
        .query::<Option<(String, u16)>>(&mut conn)
        .map_err(|e| e.to_string())
}

fn reachable(target: &str, limit: Duration) -> Result<(), String> {
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    let mut last = "no address".to_string();
    for a in addrs {
        match TcpStream::connect_timeout(&a, limit) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_walk_up_to_the_first_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        assert!(writable_dir(base).is_ok());
        assert!(writable_dir(&base.join("a/b/c")).is_ok());
        // Nothing was created.
        assert!(!base.join("a").exists());
        let file = base.join("file");
        std::fs::write(&file, "x").unwrap();
        let e = writable_dir(&file).unwrap_err();
        assert!(e.contains("not a directory"), "{e}");
        let e = writable_dir(&file.join("state")).unwrap_err();
        assert!(e.contains("cannot be created") && e.contains("file"), "{e}");
        assert!(writable_file_if_present(&file).is_ok());
        assert!(writable_file_if_present(&base.join("missing")).is_ok());
        assert!(writable_file_if_present(base).is_err());
        assert_eq!(parent_dir(Path::new("sluice.db")), PathBuf::from("."));
        assert!(writable_dir(Path::new("no-such-dir-here/x")).is_ok());
    }

    #[test]
    fn addresses_of_this_machine() {
        assert!(local_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(local_ip("0.0.0.0".parse().unwrap()).is_ok());
        // TEST-NET-3 (RFC 5737): never configured on a host.
        let e = local_ip("203.0.113.7".parse().unwrap()).unwrap_err();
        assert!(e.contains("not an address of this machine"), "{e}");
    }

    #[test]
    fn missing_runtime_directories_are_warnings() {
        let c = Config::from_str_named(
            "origins:\n  bucket: http://h\nserver:\n  daemon: true\n  pid_file: /nonexistent-sluice/p.pid\n  upgrade_sock: /tmp/u.sock\n",
            "t.yaml",
            &|_| None,
        )
        .unwrap();
        let w = warnings(&c);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("server.pid_file: directory `/nonexistent-sluice`"));
        assert!(problems(&c).is_empty());
    }

    #[test]
    fn problems_name_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let text = format!(
            "listen:\n  edge: 127.0.0.1:1\n  admin: 203.0.113.7:2\nstate:\n  sqlite: {}/state/sluice.db\ncache:\n  disk:\n    path: {}/disk\n    bytes: 1GiB\nfleet:\n  peers: [\"203.0.113.9:8080\"]\n  self: 203.0.113.9:8080\n  secret_env: F\n",
            file.display(),
            file.display()
        );
        let c = Config::from_str_named(&text, "t.yaml", &|v| {
            (v == "F").then(|| "fleet-secret-0123456789".to_string())
        })
        .unwrap();
        let keys: Vec<&str> = problems(&c).iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "state.sqlite",
                "cache.disk.path",
                "listen.admin",
                "fleet.self"
            ]
        );
    }
}

//! One state directory, one running sluice.
//!
//! Two processes on one state directory would share the SQLite file's writers, fight over
//! the built-in dir origin's socket (the second replaces it and the first's media breaks),
//! and each print its own "default admin key". A lock file in the state directory settles it:
//! the second `sluice serve` refuses to start, naming the directory and the running pid. A
//! graceful upgrade (`serve --upgrade`) is the one exception: the new process starts while the
//! old one drains, and takes the lock over the moment the old one exits.
//!
//! Also here: the state directory's private run directory (the dir origin's socket lives there,
//! `0700`, so no other local user can reach the origin behind the gate).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Held for the life of the process; dropping it releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

/// Take the state directory's lock. Without `upgrade`, fail at once when another sluice holds
/// it; with `upgrade`, wait for it in the background (the old process is draining).
///
/// # Errors
/// A message naming the directory (and the running pid when known).
pub fn acquire(state_dir: &Path, upgrade: bool) -> Result<InstanceLock, String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(|e| format!("cannot create state directory {}: {e}", state_dir.display()))?;
    let path = state_dir.join("sluice.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot open lock file {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            write_pid(&mut file);
            Ok(InstanceLock { _file: file })
        }
        Err(TryLockError::WouldBlock) if upgrade => {
            let mut waiting = file
                .try_clone()
                .map_err(|e| format!("cannot duplicate lock file {}: {e}", path.display()))?;
            std::thread::Builder::new()
                .name("sluice-lock".into())
                .spawn(move || match waiting.lock() {
                    Ok(()) => {
                        write_pid(&mut waiting);
                        tracing::info!(
                            "upgrade: the previous process exited; state lock taken over"
                        );
                        // Keep the lock for the life of the process.
                        std::mem::forget(waiting);
                    }
                    Err(e) => tracing::error!(error = %e, "upgrade: cannot take the state lock"),
                })
                .map_err(|e| format!("cannot start the lock thread: {e}"))?;
            Ok(InstanceLock { _file: file })
        }
        Err(TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            let pid = pid.trim();
            Err(format!(
                "another sluice is already running on state directory {}{} \
                 (one state directory, one process; to replace it without dropping \
                 connections send it SIGQUIT and start the new one with --upgrade)",
                state_dir.display(),
                if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                }
            ))
        }
        Err(TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

fn write_pid(file: &mut File) {
    let _ = file.set_len(0);
    let _ = file.write_all(format!("{}\n", std::process::id()).as_bytes());
}

/// `{state_dir}/run`, created (or tightened to) `0700`: where private sockets live.
///
/// # Errors
/// When the directory cannot be created or its mode set.
pub fn private_run_dir(state_dir: &Path) -> Result<PathBuf, String> {
    let dir = state_dir.join("run");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot make {} private: {e}", dir.display()))?;
    Ok(dir)
}

/// Check that each listener address can be bound before any service starts: Pingora binds
/// inside its service threads, where a failure only ends that thread and the process would
/// go on serving without, say, its admin API.
///
/// # Errors
/// `listen.<name> <addr>: <reason>` for the first address that cannot be bound.
pub fn check_listeners(addrs: &[(&str, std::net::SocketAddr)]) -> Result<(), String> {
    for (name, addr) in addrs {
        std::net::TcpListener::bind(addr)
            .map(drop)
            .map_err(|e| format!("cannot listen on {name} {addr}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_per_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), false).unwrap();
        let err = acquire(dir.path(), false).unwrap_err();
        assert!(err.contains("already running"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        assert!(acquire(dir.path(), false).is_ok());
    }

    #[test]
    fn the_run_directory_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let run = private_run_dir(dir.path()).unwrap();
        let mode = std::fs::metadata(&run).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_taken_port_is_reported() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let err = check_listeners(&[("listen.admin", addr)]).unwrap_err();
        assert!(
            err.contains("listen.admin") && err.contains(&addr.to_string()),
            "{err}"
        );
    }
}

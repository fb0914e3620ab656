//! Logging: one `tracing` subscriber for sluice's own lines and Pingora's (through the
//! `log` bridge), every line passing the credential redactor ([`crate::redact`]).
//!
//! Two streams. The main log (stderr; `server.error_log` in daemon mode) takes every
//! line at `log.level`. The access log — one line per request ([`access`]) — goes where
//! `log.access_log` says: into the main log on target `sluice::access` (`true`), nowhere
//! (`false`), to stdout, or to a file of its own (opened for appending, mode 0640 narrowed by
//! the umask, reopened by [`reopen`] on SIGHUP so logrotate can move it). A separate access
//! log takes every request's line whatever `log.level` is, and its lines never reach the
//! main log. `log.format: json` makes both JSON lines; an access line is then one flat
//! object (`{"timestamp":…,"level":"INFO","listener":"edge","client":…,"status":200,…}`).
//!
//! Every line emitted while a request is handled carries its `request_id`: each listener
//! runs the request's phases inside [`request_span`] (text: `request{request_id=…}: …`;
//! JSON: the `span` object), and Pingora's own per-request lines name it through the
//! request summary.
//!
//! Colours only where a person reads them: when the stream is a terminal and `NO_COLOR` is
//! not set (<https://no-color.org>). Files, pipes and journald get plain text; JSON never
//! carries escape codes.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use once_cell::sync::OnceCell;
use thiserror::Error;
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::{AccessLogSink, LogConfig};

/// The target of access-log lines.
pub const ACCESS_TARGET: &str = "sluice::access";

/// Logging could not start.
#[derive(Debug, Error)]
pub enum LogError {
    #[error("log.access_log: cannot open {path} for appending: {source}")]
    Open { path: String, source: io::Error },
    #[error("cannot install the log subscriber: {0}")]
    Install(String),
}

/// Whether text lines get ANSI colours: a terminal, and no `NO_COLOR` (any non-empty value).
pub fn colours(stream_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stream_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The access-log file of `log.access_log: PATH`, swapped by [`reopen`].
struct AccessFile {
    path: PathBuf,
    file: ArcSwap<File>,
}

static ACCESS_FILE: OnceCell<AccessFile> = OnceCell::new();

/// Open `path` for appending, creating it with mode 0640 (the umask may narrow it).
fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// One access line's writer: the file as it was when the line began. Each line is one
/// `write` on an `O_APPEND` descriptor, so lines from many threads never interleave.
struct FileWriter(Arc<File>);

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct FileSink(&'static AccessFile);

impl<'a> MakeWriter<'a> for FileSink {
    type Writer = crate::redact::Redacting<FileWriter>;
    fn make_writer(&'a self) -> Self::Writer {
        crate::redact::Redacting::new(FileWriter(self.0.file.load_full()))
    }
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The access log's own layer: only `sluice::access` lines, whatever `log.level` is.
fn access_layer<W>(writer: W, json: bool, ansi: bool) -> BoxedLayer
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let only_access = Targets::new().with_target(ACCESS_TARGET, tracing::Level::INFO);
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    if json {
        layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_ansi(false)
            .with_filter(only_access)
            .boxed()
    } else {
        layer.with_ansi(ansi).with_filter(only_access).boxed()
    }
}

/// Install the process-wide subscriber: `RUST_LOG` wins over `log.level`; `log.format:
/// json` for JSON lines; the access log where `log.access_log` says.
///
/// # Errors
/// The access-log file cannot be opened, or a subscriber is already installed.
pub fn init(log: &LogConfig) -> Result<(), LogError> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let no_color = std::env::var_os("NO_COLOR");
    let ansi = colours(std::io::stderr().is_terminal(), no_color.as_deref());
    // Every line passes the redactor, whoever wrote it (Pingora's own lines included).
    let main = tracing_subscriber::fmt::layer()
        .with_writer(|| crate::redact::Redacting::new(std::io::stderr()));
    let main: BoxedLayer = if log.json {
        main.json().with_ansi(false).boxed()
    } else {
        main.with_ansi(ansi).boxed()
    };
    let access: Option<BoxedLayer> = match &log.access_log {
        AccessLogSink::Off | AccessLogSink::MainLog => None,
        AccessLogSink::Stdout => {
            let ansi = colours(std::io::stdout().is_terminal(), no_color.as_deref());
            Some(access_layer(
                || crate::redact::Redacting::new(std::io::stdout()),
                log.json,
                ansi,
            ))
        }
        AccessLogSink::File(path) => {
            let file = open_append(path).map_err(|source| LogError::Open {
                path: path.display().to_string(),
                source,
            })?;
            let sink = ACCESS_FILE.get_or_init(|| AccessFile {
                path: path.clone(),
                file: ArcSwap::from_pointee(file),
            });
            Some(access_layer(FileSink(sink), log.json, false))
        }
    };
    let layers: Vec<BoxedLayer> = match access {
        Some(access) => {
            // Access lines have their own stream: keep them out of the main log.
            let not_access = filter_fn(|m| m.target() != ACCESS_TARGET);
            vec![main.with_filter(filter.and(not_access)).boxed(), access]
        }
        None => vec![main.with_filter(filter).boxed()],
    };
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| LogError::Install(e.to_string()))
}

/// Reopen the access-log file (`log.access_log: PATH`) at its path: after logrotate moved
/// it, new lines go to a new file. Lines already begun finish in the old one. Called on
/// SIGHUP ([`crate::lifecycle`]); nothing to do for other sinks.
pub fn reopen() {
    let Some(sink) = ACCESS_FILE.get() else {
        return;
    };
    match open_append(&sink.path) {
        Ok(file) => {
            sink.file.store(Arc::new(file));
            tracing::info!(file = %sink.path.display(), "SIGHUP: access log reopened");
        }
        Err(e) => tracing::error!(
            file = %sink.path.display(),
            error = %e,
            "SIGHUP: cannot reopen the access log; lines still go to the old file"
        ),
    }
}

/// The span a request's handling runs in, so every line logged meanwhile names it.
///
/// At ERROR level, so it is on whenever warnings and errors are logged; one span with one
/// field per request (a slab slot and the formatted id), entered per poll of each phase.
pub fn request_span(request_id: &str) -> tracing::Span {
    tracing::error_span!("request", request_id = %request_id)
}

/// One request's access-log line; both listeners write the same fields.
pub struct AccessLine<'a> {
    pub listener: &'static str,
    /// The address every decision uses (PROXY protocol and trusted `X-Forwarded-For`
    /// applied: [`crate::client::client_of`]).
    pub client: IpAddr,
    pub version: http::Version,
    pub method: &'a http::Method,
    /// The request path; the query is never logged (it carries tokens and credentials)
    /// and a path-form ctx is redacted here.
    pub path: &'a str,
    pub status: u16,
    /// Response body bytes sent to the client (0 for `HEAD`).
    pub bytes: usize,
    pub duration: Duration,
    /// The cache result (`none` when the cache was not consulted).
    pub cache: &'a str,
    pub class: &'a str,
    pub request_id: &'a str,
}

/// Write one access-log line (when `log.access_log` is not `false`: the caller checks).
pub fn access(line: &AccessLine<'_>) {
    // A root event: the line has its own `request_id` and no span prefix.
    tracing::info!(
        target: ACCESS_TARGET,
        parent: None,
        listener = line.listener,
        client = %line.client,
        version = ?line.version,
        method = %line.method,
        path = %crate::redact::redact_path(line.path),
        status = line.status,
        bytes = line.bytes,
        duration_ms = line.duration.as_secs_f64() * 1000.0,
        cache = %line.cache,
        class = %line.class,
        request_id = %line.request_id,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours(true, None));
        assert!(colours(true, Some(OsStr::new(""))));
        assert!(!colours(true, Some(OsStr::new("1"))));
        assert!(!colours(false, None));
    }

    #[test]
    fn access_file_is_created_for_appending_without_other_access() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, "kept\n").unwrap();
        {
            let mut f = open_append(&path).unwrap();
            f.write_all(b"added\n").unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "kept\nadded\n");
        let fresh = dir.path().join("fresh.log");
        drop(open_append(&fresh).unwrap());
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "{mode:o}");
    }
}

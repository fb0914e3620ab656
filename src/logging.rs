//! Logging: one `tracing` subscriber for sluice's own lines and Pingora's (through the
//! `log` bridge), every line passing the credential redactor ([`crate::redact`]).
//!
//! Colours only where a person reads them: when stderr is a terminal and `NO_COLOR` is not
//! set (<https://no-color.org>). Files, pipes and journald get plain text; `log.format:
//! json` never carries escape codes.

use std::io::IsTerminal;

/// Whether text lines get ANSI colours: a terminal, and no `NO_COLOR` (any non-empty value).
pub fn colours(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Install the process-wide subscriber: `RUST_LOG` wins over `level`; `json` for JSON lines.
pub fn init(level: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = colours(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    // Every line passes the redactor, whoever wrote it (Pingora's own lines included).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::redact::Redacting::new(std::io::stderr()));
    if json {
        builder.json().with_ansi(false).init();
    } else {
        builder.with_ansi(ansi).init();
    }
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
}

//! No credential in any log line. Queries carry them (`token=`, `pc=`, `ctx=`, provider
//! tokens inside `url=`), and not every log line is sluice's own: Pingora's error lines and
//! pingora-core's HTTP app (the admin listener, which also serves `verify?token=`) write
//! request summaries themselves. So the log writer redacts, whatever wrote the line:
//! [`redact`] replaces the value of every credential-carrying query parameter.

use std::borrow::Cow;
use std::io::{self, Write};

/// Query parameters whose values are never logged (`url` because it carries the upstream
/// URL's own credentials).
const SECRET_PARAMS: [&str; 14] = [
    "token",
    "pc",
    "ctx",
    "url",
    "hdnts",
    "hdnea",
    "hdntl",
    "Policy",
    "Signature",
    "Key-Pair-Id",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "sig",
    "auth",
];

fn is_boundary(b: u8) -> bool {
    matches!(
        b,
        b'?' | b'&' | b';' | b' ' | b'"' | b'\'' | b'(' | b'[' | b','
    )
}

fn ends_value(b: u8) -> bool {
    matches!(
        b,
        b'&' | b' ' | b'"' | b'\'' | b',' | b')' | b']' | b'>' | b'\n' | b'\r' | b'\t'
    )
}

/// The ctx of a path-form proxy URL (`/api/proxy/{ctx}/…`) replaced by `[redacted]`.
pub fn redact_path(text: &str) -> Cow<'_, str> {
    const MARK: &str = "/api/proxy/";
    if !text.contains(MARK) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(MARK) {
        let start = i + MARK.len();
        out.push_str(&rest[..start]);
        let seg_end = rest[start..]
            .find(|c: char| c == '/' || c == '?' || c.is_whitespace() || c == '"')
            .map_or(rest.len(), |e| start + e);
        if seg_end > start {
            out.push_str("[redacted]");
        }
        rest = &rest[seg_end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `line` with the values of [`SECRET_PARAMS`] (and path-form proxy ctxs) replaced by
/// `[redacted]`.
pub fn redact(line: &str) -> Cow<'_, str> {
    match redact_path(line) {
        Cow::Borrowed(l) => redact_params(l),
        Cow::Owned(l) => Cow::Owned(redact_params(&l).into_owned()),
    }
}

fn redact_params(line: &str) -> Cow<'_, str> {
    let bytes = line.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let at_boundary = i == 0 || is_boundary(bytes[i - 1]);
        let hit = at_boundary
            .then(|| {
                SECRET_PARAMS
                    .iter()
                    .find(|p| line[i..].starts_with(*p) && bytes.get(i + p.len()) == Some(&b'='))
            })
            .flatten();
        let Some(param) = hit else {
            i += 1;
            continue;
        };
        let start = i + param.len() + 1;
        let mut end = start;
        while end < bytes.len() && !ends_value(bytes[end]) {
            end += 1;
        }
        if end > start {
            let o = out.get_or_insert_with(|| String::with_capacity(line.len()));
            o.push_str(&line[copied..start]);
            o.push_str("[redacted]");
            copied = end;
        }
        i = end.max(i + 1);
    }
    match out {
        None => Cow::Borrowed(line),
        Some(mut o) => {
            o.push_str(&line[copied..]);
            Cow::Owned(o)
        }
    }
}

/// A log writer that redacts each line before it reaches `W`.
pub struct Redacting<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> Redacting<W> {
    pub fn new(inner: W) -> Redacting<W> {
        Redacting {
            inner,
            buf: Vec::with_capacity(256),
        }
    }
}

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return self.inner.flush();
        }
        let text = String::from_utf8_lossy(&self.buf);
        let clean = redact(&text);
        self.inner.write_all(clean.as_bytes())?;
        self.buf.clear();
        self.inner.flush()
    }
}

impl<W: Write> Drop for Redacting<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        let line = "WARN Fail to proxy: GET /api/proxy?url=http%3A%2F%2Fcdn%2Fx.ts%3Fhdnts%3Dabc&ctx=SECRETCTX, Host: t";
        let r = redact(line);
        assert!(!r.contains("SECRETCTX") && !r.contains("abc"), "{r}");
        assert!(r.contains("url=[redacted]&ctx=[redacted]"), "{r}");
        let r = redact("GET /stream/h/master.m3u8?token=eyJ.a.b&x=1 HTTP/1.1");
        assert_eq!(r, "GET /stream/h/master.m3u8?token=[redacted]&x=1 HTTP/1.1");
        let r = redact("path=\"/a?pc=cred.sig\" status=200");
        assert_eq!(r, "path=\"/a?pc=[redacted]\" status=200");
        // Not a parameter: untouched, and nothing allocated.
        assert!(matches!(redact("mytoken=1 tokens=2"), Cow::Borrowed(_)));
        let r = redact("GET /api/proxy/CTXSECRET/https/cdn.example/live/seg.m4s?token=x, Host: t");
        assert_eq!(
            r,
            "GET /api/proxy/[redacted]/https/cdn.example/live/seg.m4s?token=[redacted], Host: t"
        );
    }

    #[test]
    fn the_writer_redacts_what_it_is_given() {
        let mut sink = Vec::new();
        {
            let mut w = Redacting::new(&mut sink);
            write!(w, "a token=").unwrap();
            writeln!(w, "secret b").unwrap();
        }
        assert_eq!(String::from_utf8(sink).unwrap(), "a token=[redacted] b\n");
    }
}

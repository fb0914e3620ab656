//! Playlist rewriting for `/api/proxy`, as a Pingora downstream HTTP module.
//!
//! Why a module and not `response_body_filter`: a response served through the cache (hit, or
//! a miss streamed through the cache) ends with a separate `Done` task that never reaches the
//! proxy's body filter, so a filter that waits for end-of-stream would never emit. Modules get
//! `response_done_filter` for exactly that case.
//!
//! The module runs after the cache: the stored object is the upstream playlist, and every
//! request rewrites it with its own ctx (DESIGN.md "Rewriting"). The proxy path arms it per
//! request with [`PlaylistRewrite::arm`]; unarmed, it passes bodies through untouched.
//! Because the rewritten length is only known at the end, the rewritten response is sent
//! without `Content-Length` (chunked), never with the upstream's now-wrong length.

use std::any::Any;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora_core::modules::http::{HttpModule, HttpModuleBuilder, Module};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use url::Url;

use crate::rewrite::{self, PlaylistKind, MAX_PLAYLIST_BYTES};

/// Bytes looked at before deciding whether a body of a generic type is a playlist.
const SNIFF_BYTES: usize = 512;

/// What the proxy path asks of the module for one response.
#[derive(Debug, Clone)]
pub struct RewriteJob {
    pub content_type: Option<String>,
    /// The upstream path, as a hint (`.m3u8`, `.mpd`).
    pub path_hint: String,
    /// The URL relative URIs resolve against.
    pub base: Url,
    pub mapping: UriMapping,
}

/// What each resolved URI becomes.
#[derive(Debug, Clone)]
pub enum UriMapping {
    /// `/api/proxy?url=<absolute>&ctx=<ctx>` (provider streams).
    Proxy { ctx: String },
    /// A token-gated `/stream` playlist: URIs under `/stream/` on sluice itself carry the
    /// viewer's stream token as `?token=`, so players that cannot send the cookie
    /// cross-origin still reach segments and variants. `base` is then
    /// `http://sluice.local/stream/…` and other URIs are left absolute and untouched.
    StreamToken { token: String },
}

/// The host standing for sluice itself in [`UriMapping::StreamToken`] bases.
pub const LOCAL_HOST: &str = "sluice.local";

/// A URI of a token-gated playlist: paths under `/stream/` on sluice get `?token=`.
fn with_stream_token(abs: &Url, token: &str) -> String {
    if abs.host_str() != Some(LOCAL_HOST) {
        return abs.to_string();
    }
    let path = abs.path();
    if !path.starts_with("/stream/") {
        return path.to_string();
    }
    let mut out = String::with_capacity(path.len() + token.len() + 16);
    out.push_str(path);
    out.push('?');
    for (k, v) in abs.query_pairs().filter(|(k, _)| k != "token") {
        out.extend(url::form_urlencoded::byte_serialize(k.as_bytes()));
        out.push('=');
        out.extend(url::form_urlencoded::byte_serialize(v.as_bytes()));
        out.push('&');
    }
    out.push_str("token=");
    out.extend(url::form_urlencoded::byte_serialize(token.as_bytes()));
    out
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Idle,
    /// Collecting the first bytes to decide.
    Sniffing(RewriteJob),
    /// A playlist: buffering the whole body.
    Buffering(RewriteJob, PlaylistKind),
    /// Not a playlist after all: everything passes.
    Passthrough,
    Finished,
}

/// The per-request module state.
#[derive(Debug, Default)]
pub struct PlaylistRewrite {
    state: State,
    buf: BytesMut,
}

/// Whether a response may be a playlist, from its header alone.
pub fn may_be_playlist(content_type: Option<&str>, path: &str) -> bool {
    if rewrite::detect(content_type, path, b"").is_some() {
        return true;
    }
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    // Media types that are never playlists skip the module entirely (segments stream as is).
    !(mime.starts_with("video/")
        || mime.starts_with("audio/")
        || mime.starts_with("image/")
        || mime == "text/vtt")
}

impl PlaylistRewrite {
    /// Rewrite this response's body if it turns out to be a playlist.
    pub fn arm(&mut self, job: RewriteJob) {
        self.state = State::Sniffing(job);
    }

    pub fn armed(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    fn rewrite_all(job: &RewriteJob, kind: PlaylistKind, body: &[u8]) -> Result<Bytes> {
        match &job.mapping {
            // `rewrite_proxied` is `rewrite` with the `proxy_url(abs, ctx)` map (non-http(s)
            // refused) plus a fast path for plain relative URIs; see `rewrite::ProxyMapper`.
            UriMapping::Proxy { ctx } => rewrite::rewrite_proxied(kind, body, &job.base, ctx),
            UriMapping::StreamToken { token } => {
                let mut map = |abs: &Url| Ok(with_stream_token(abs, token));
                rewrite::rewrite(kind, body, &job.base, &mut map)
            }
        }
        .map(Bytes::from)
        .map_err(|e| {
            crate::metrics::UPSTREAM_ERRORS
                .with_label_values(&["rewrite"])
                .inc();
            Error::because(ErrorType::InternalError, "playlist rewrite failed", e)
        })
    }

    /// Move from sniffing to buffering or passthrough once enough bytes (or the end) are here.
    fn decide(&mut self, end: bool) {
        if let State::Sniffing(job) = &self.state {
            if self.buf.len() < SNIFF_BYTES && !end {
                return;
            }
            let kind = rewrite::detect(job.content_type.as_deref(), &job.path_hint, &self.buf);
            self.state = match kind {
                Some(k) => State::Buffering(job.clone(), k),
                None => State::Passthrough,
            };
        }
    }

    fn finish(&mut self) -> Result<Option<Bytes>> {
        self.decide(true);
        let state = std::mem::replace(&mut self.state, State::Finished);
        let body = self.buf.split().freeze();
        match state {
            State::Buffering(job, kind) => Self::rewrite_all(&job, kind, &body).map(Some),
            State::Passthrough | State::Sniffing(_) => Ok((!body.is_empty()).then_some(body)),
            State::Idle | State::Finished => Ok(None),
        }
    }
}

#[async_trait]
impl HttpModule for PlaylistRewrite {
    async fn response_header_filter(
        &mut self,
        resp: &mut ResponseHeader,
        _end: bool,
    ) -> Result<()> {
        if self.armed() {
            resp.remove_header(&http::header::CONTENT_LENGTH);
        }
        Ok(())
    }

    fn response_body_filter(
        &mut self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
    ) -> Result<()> {
        match self.state {
            State::Idle | State::Finished => return Ok(()),
            State::Passthrough => {
                // Flush what was held back while sniffing, ahead of this chunk.
                if !self.buf.is_empty() {
                    let mut out = self.buf.split();
                    if let Some(b) = body.take() {
                        out.extend_from_slice(&b);
                    }
                    *body = Some(out.freeze());
                }
                return Ok(());
            }
            State::Sniffing(_) | State::Buffering(..) => {}
        }
        if let Some(b) = body.take() {
            if self.buf.len() + b.len() > MAX_PLAYLIST_BYTES
                && matches!(self.state, State::Buffering(..))
            {
                return Error::e_explain(
                    ErrorType::InternalError,
                    "playlist larger than the rewrite cap",
                );
            }
            self.buf.extend_from_slice(&b);
        }
        self.decide(end_of_stream);
        if matches!(self.state, State::Passthrough) {
            *body = Some(self.buf.split().freeze());
            return Ok(());
        }
        if end_of_stream {
            *body = self.finish()?;
        }
        Ok(())
    }

    fn response_done_filter(&mut self) -> Result<Option<Bytes>> {
        self.finish()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Registers [`PlaylistRewrite`] on the edge's downstream modules.
pub struct PlaylistRewriteBuilder;

impl HttpModuleBuilder for PlaylistRewriteBuilder {
    fn init(&self) -> Module {
        Box::new(PlaylistRewrite::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> RewriteJob {
        RewriteJob {
            content_type: Some("application/octet-stream".into()),
            path_hint: "/live/x".into(),
            base: Url::parse("https://cdn.example.com/live/index.m3u8").unwrap(),
            mapping: UriMapping::Proxy { ctx: "CTX".into() },
        }
    }

    #[test]
    fn stream_token_mapping_keeps_paths_local() {
        let mut m = PlaylistRewrite::default();
        m.arm(RewriteJob {
            content_type: Some("application/vnd.apple.mpegurl".into()),
            path_hint: "/stream/h/master.m3u8".into(),
            base: Url::parse("http://sluice.local/stream/h/master.m3u8").unwrap(),
            mapping: UriMapping::StreamToken {
                token: "a.b-c_d".into(),
            },
        });
        let input = "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"/api/key/h\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\nvideo/p.m3u8?x=1\n#EXTINF:2,\nhttps://other.cdn/seg.ts\n";
        let out = String::from_utf8(run(&mut m, &[input.as_bytes()], true)).unwrap();
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"/api/key/h\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\n/stream/h/video/p.m3u8?x=1&token=a.b-c_d\n#EXTINF:2,\nhttps://other.cdn/seg.ts\n"
        );
    }

    fn run(m: &mut PlaylistRewrite, chunks: &[&[u8]], end_on_last: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let mut b = Some(Bytes::copy_from_slice(c));
            let end = end_on_last && i + 1 == chunks.len();
            m.response_body_filter(&mut b, end).unwrap();
            if let Some(b) = b {
                out.extend_from_slice(&b);
            }
        }
        if !end_on_last {
            if let Some(b) = m.response_done_filter().unwrap() {
                out.extend_from_slice(&b);
            }
        }
        out
    }

    #[test]
    fn sniffed_playlist_is_rewritten_on_done() {
        let mut m = PlaylistRewrite::default();
        m.arm(job());
        let out = run(&mut m, &[b"#EXTM3U\n#EXTINF:2,\n", b"seg1.ts\n"], false);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("/api/proxy?url=https%3A%2F%2Fcdn.example.com%2Flive%2Fseg1.ts&ctx=CTX"),
            "{text}"
        );
    }

    #[test]
    fn non_playlist_passes_unchanged() {
        let mut m = PlaylistRewrite::default();
        m.arm(job());
        let big = vec![0x47u8; 4000];
        let out = run(&mut m, &[&big[..100], &big[100..]], true);
        assert_eq!(out, big);
    }

    #[test]
    fn unarmed_is_transparent_and_header_keeps_length() {
        let mut m = PlaylistRewrite::default();
        let out = run(&mut m, &[b"#EXTM3U\n"], true);
        assert_eq!(out, b"#EXTM3U\n");
    }

    #[test]
    fn header_hints() {
        assert!(may_be_playlist(Some("application/vnd.apple.mpegurl"), "/x"));
        assert!(may_be_playlist(Some("application/octet-stream"), "/x"));
        assert!(may_be_playlist(None, "/x.m3u8"));
        assert!(!may_be_playlist(Some("video/mp2t"), "/seg.ts"));
        assert!(!may_be_playlist(Some("video/iso.segment"), "/seg.m4s"));
    }
}

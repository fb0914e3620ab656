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

use crate::auth::playback::{PlaybackClaims, PlaybackKey};
use crate::rewrite::quality::Quality;
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
    /// A token-gated `/stream` playlist: URIs of the same content on sluice itself carry a
    /// playback credential (`?pc=`) minted for this response. `base` is then
    /// `http://sluice.local/stream/{hash}/…` and other URIs keep their form.
    Playback(Box<PlaybackMapping>),
}

/// How a gated playlist's URIs get their playback credential.
#[derive(Debug, Clone)]
pub struct PlaybackMapping {
    pub key: std::sync::Arc<PlaybackKey>,
    /// The playback this response belongs to (scope as admitted).
    pub claims: PlaybackClaims,
    /// Set on an entry load of a restricted-quality token: variants above it are removed
    /// and the credential's scope lists what remains.
    pub quality: Option<Quality>,
    /// The `{hash}` of the request path (a stream id or the content hash): URIs below
    /// `/stream/{hash}/` are this content's.
    pub hash: String,
    /// `stream.extensions`, to read URIs back into canonical media paths.
    pub extensions: std::sync::Arc<Vec<String>>,
}

/// The host standing for sluice itself in [`UriMapping::Playback`] bases.
pub const LOCAL_HOST: &str = "sluice.local";

impl PlaybackMapping {
    /// The canonical path below `/stream/{hash}/` of a resolved URI, if it is this
    /// content's (on sluice itself, under the same hash, a valid media path).
    fn own_path(&self, abs: &Url) -> Option<crate::media::path::StreamPath> {
        if abs.host_str() != Some(LOCAL_HOST) {
            return None;
        }
        let rest = abs.path().strip_prefix("/stream/")?;
        let sp = crate::media::path::parse_stream_path(rest, &self.extensions).ok()?;
        (sp.hash == self.hash).then_some(sp)
    }

    /// Rewrite a gated playlist: filter variants (entry loads of restricted tokens), widen
    /// the scope with what this playlist links to, mint one credential, put it on every URI
    /// of this content.
    fn rewrite(
        &self,
        kind: PlaylistKind,
        body: &[u8],
        base: &Url,
    ) -> Result<Vec<u8>, rewrite::RewriteError> {
        rewrite::check_size(body.len())?;
        let text = std::str::from_utf8(body).map_err(|_| rewrite::RewriteError::NotUtf8)?;
        let mut text = std::borrow::Cow::Borrowed(text);
        let mut claims = self.claims.clone();
        if kind == PlaylistKind::Hls {
            let multivariant = rewrite::quality::is_multivariant(&text);
            if let (Some(q), true) = (self.quality, multivariant) {
                text = std::borrow::Cow::Owned(rewrite::quality::filter_variants(&text, q));
                claims.scope = Some(Vec::new());
            }
            if claims.scope.is_some() {
                // A multivariant playlist opens exactly the playlists it still lists; a media
                // playlist adds the directories of its segments (never playlists).
                let mut extra = Vec::new();
                for uri in rewrite::hls_uris(&text) {
                    let Some(sp) = base.join(&uri).ok().and_then(|abs| self.own_path(&abs)) else {
                        continue;
                    };
                    let rest = sp.rest_joined();
                    if multivariant && sp.kind.is_manifest() {
                        extra.push(rest);
                    } else if !multivariant && !sp.kind.is_manifest() {
                        extra.push(match rest.rfind('/') {
                            Some(i) => rest[..=i].to_string(),
                            // A segment beside the playlist at the content root.
                            None => rest,
                        });
                    }
                }
                claims = claims.widened(extra);
            }
        }
        let credential = self.key.sign(&claims);
        let mut map = |abs: &Url| Ok(self.map(abs, &credential));
        rewrite::rewrite(kind, text.as_bytes(), base, &mut map)
    }

    /// A URI of this content on sluice gets `pc=` (any `token=`/`pc=` it had removed); other
    /// URIs on sluice keep path and query; URIs elsewhere stay absolute and untouched.
    fn map(&self, abs: &Url, credential: &str) -> String {
        if abs.host_str() != Some(LOCAL_HOST) {
            return abs.to_string();
        }
        let path = abs.path();
        let mut out = String::with_capacity(path.len() + credential.len() + 16);
        out.push_str(path);
        let own = self.own_path(abs).is_some();
        let mut sep = '?';
        for (k, v) in abs.query_pairs() {
            if own && (k == "token" || k == "pc") {
                continue;
            }
            out.push(sep);
            sep = '&';
            out.extend(url::form_urlencoded::byte_serialize(k.as_bytes()));
            out.push('=');
            out.extend(url::form_urlencoded::byte_serialize(v.as_bytes()));
        }
        if own {
            out.push(sep);
            out.push_str("pc=");
            out.extend(url::form_urlencoded::byte_serialize(credential.as_bytes()));
        }
        out
    }
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
            UriMapping::Playback(m) => m.rewrite(kind, body, &job.base),
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

    fn playback(quality: Option<&str>, scope: Option<Vec<String>>) -> PlaybackMapping {
        PlaybackMapping {
            key: std::sync::Arc::new(PlaybackKey::derive(b"0123456789abcdef")),
            claims: PlaybackClaims {
                jti: "j".into(),
                dir: "h".into(),
                ip: "192.0.2.1".into(),
                device: String::new(),
                start: 1,
                exp: i64::MAX,
                scope,
            },
            quality: quality.and_then(Quality::limit),
            hash: "h".into(),
            extensions: std::sync::Arc::new(
                ["m3u8", "m4s", "mp4", "ts"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
        }
    }

    fn credential_of(uri: &str) -> PlaybackClaims {
        let pc = url::Url::parse(&format!("http://x{uri}"))
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "pc")
            .unwrap()
            .1
            .into_owned();
        PlaybackKey::derive(b"0123456789abcdef")
            .verify(&pc, 2)
            .unwrap()
    }

    #[test]
    fn playback_mapping_puts_a_credential_on_own_uris_only() {
        let mut m = PlaylistRewrite::default();
        m.arm(RewriteJob {
            content_type: Some("application/vnd.apple.mpegurl".into()),
            path_hint: "/stream/h/master.m3u8".into(),
            base: Url::parse("http://sluice.local/stream/h/master.m3u8").unwrap(),
            mapping: UriMapping::Playback(Box::new(playback(None, None))),
        });
        let input = "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"/api/key/h?x=1\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\nvideo/p.m3u8?x=1&token=old\n#EXTINF:2,\nhttps://other.cdn/seg.ts\n#EXTINF:2,\n/stream/other/seg.ts\n";
        let out = String::from_utf8(run(&mut m, &[input.as_bytes()], true)).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "#EXT-X-KEY:METHOD=AES-128,URI=\"/api/key/h?x=1\"");
        assert!(
            lines[3].starts_with("/stream/h/video/p.m3u8?x=1&pc="),
            "{out}"
        );
        assert!(!lines[3].contains("token="), "{out}");
        assert_eq!(lines[5], "https://other.cdn/seg.ts");
        assert_eq!(lines[7], "/stream/other/seg.ts");
        assert_eq!(credential_of(lines[3]).scope, None);
    }

    #[test]
    fn restricted_quality_filters_and_scopes() {
        let mapping = playback(Some("720p"), None);
        let base = Url::parse("http://sluice.local/stream/h/master.m3u8").unwrap();
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=1280x720\nv720/p.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=1920x1080\nv1080/p.m3u8\n";
        let out = String::from_utf8(
            mapping
                .rewrite(PlaylistKind::Hls, master.as_bytes(), &base)
                .unwrap(),
        )
        .unwrap();
        let uri = out.lines().nth(2).unwrap();
        assert!(!out.contains("v1080"), "{out}");
        let c = credential_of(uri);
        assert_eq!(c.scope, Some(vec!["v720/p.m3u8".to_string()]));
        // The media playlist, loaded with that credential, widens it with its segments' dir.
        let media_map = PlaybackMapping {
            claims: c,
            quality: None,
            ..playback(None, None)
        };
        let base = Url::parse("http://sluice.local/stream/h/v720/p.m3u8").unwrap();
        let media = "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2,\nseg/1.m4s\n";
        let out = String::from_utf8(
            media_map
                .rewrite(PlaylistKind::Hls, media.as_bytes(), &base)
                .unwrap(),
        )
        .unwrap();
        let seg = out.lines().nth(3).unwrap();
        let c = credential_of(seg);
        assert_eq!(
            c.scope,
            Some(vec![
                "v720/p.m3u8".to_string(),
                "v720/".to_string(),
                "v720/seg/".to_string()
            ])
        );
        assert!(c.allows("v720/seg/1.m4s", false) && !c.allows("v1080/seg/1.m4s", false));
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

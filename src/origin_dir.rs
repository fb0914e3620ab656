//! The built-in file origin behind `origins.bucket: dir:PATH`.
//!
//! A Pingora listening service on a Unix socket in the state directory, so the default config
//! works with nothing else running and the edge proxies to it exactly as it would to a bucket
//! (same phases, same cache). It serves `GET`/`HEAD` of regular files below its root and nothing
//! else; the edge has already refused traversal, and this service refuses it again on its own.

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use http::{Response, StatusCode};
use percent_encoding::percent_decode_str;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

pub struct DirOrigin {
    root: PathBuf,
}

impl DirOrigin {
    pub fn new(root: PathBuf) -> DirOrigin {
        DirOrigin { root }
    }

    /// The file a URL path names, if it stays below the root.
    pub fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
        let decoded = percent_decode_str(url_path).decode_utf8().ok()?;
        let rel = Path::new(decoded.trim_start_matches('/'));
        if rel.as_os_str().is_empty() {
            return None;
        }
        rel.components()
            .all(|c| matches!(c, Component::Normal(_)))
            .then(|| root.join(rel))
    }
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

#[async_trait]
impl ServeHttp for DirOrigin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let head = session.req_header();
        let is_head = head.method == http::Method::HEAD;
        if head.method != http::Method::GET && !is_head {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "application/json",
                br#"{"error":"method not allowed"}"#.to_vec(),
            );
        }
        let path = head.uri.path().to_string();
        let Some(file) = Self::resolve(&self.root, &path) else {
            return reply(
                StatusCode::NOT_FOUND,
                "application/json",
                br#"{"error":"not found"}"#.to_vec(),
            );
        };
        match tokio::fs::metadata(&file).await {
            Ok(m) if m.is_file() => {}
            _ => {
                return reply(
                    StatusCode::NOT_FOUND,
                    "application/json",
                    br#"{"error":"not found"}"#.to_vec(),
                )
            }
        }
        match tokio::fs::read(&file).await {
            Ok(body) => {
                let ct = crate::media::content_type(&path);
                if is_head {
                    let mut r = reply(StatusCode::OK, ct, Vec::new());
                    r.headers_mut()
                        .insert(http::header::CONTENT_LENGTH, body.len().into());
                    r
                } else {
                    reply(StatusCode::OK, ct, body)
                }
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "dir origin read failed");
                reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "application/json",
                    br#"{"error":"read failed"}"#.to_vec(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_stays_below_root() {
        let root = Path::new("/srv/media");
        assert_eq!(
            DirOrigin::resolve(root, "/demo/master.m3u8"),
            Some(PathBuf::from("/srv/media/demo/master.m3u8"))
        );
        assert_eq!(DirOrigin::resolve(root, "/demo/../../etc/passwd"), None);
        assert_eq!(DirOrigin::resolve(root, "/demo/%2e%2e/x"), None);
        assert_eq!(DirOrigin::resolve(root, "/"), None);
        assert_eq!(
            DirOrigin::resolve(root, "/a/./b"),
            Some(PathBuf::from("/srv/media/a/b"))
        );
    }
}

//! The control plane's HTTP client (DRM license servers, provider APIs): never on the media
//! path. Built once, with its timeouts and no redirects, or start-up fails with the reason —
//! never a silent fallback to a client without them. Bodies are read with a bound enforced
//! while they stream, so a hostile or broken upstream cannot make sluice buffer more.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

/// A client with `timeout` for the whole exchange (connect capped at 5 s) and redirects off.
///
/// # Errors
/// When the TLS backend cannot be initialised.
pub fn control_plane(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the control-plane HTTP client: {e}"))
}

/// Why a bounded read stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
}

/// Read `resp`'s body, refusing (and dropping the connection) once it passes `max` bytes.
///
/// # Errors
/// [`ReadError::TooLarge`] as soon as the declared or received length passes `max`.
pub async fn read_bounded(mut resp: reqwest::Response, max: usize) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(ReadError::TooLarge(max));
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > max {
            return Err(ReadError::TooLarge(max));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

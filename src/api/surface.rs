//! The five surfaces and their error shapes: the one place that decides how an error looks.
//!
//! Handlers return typed errors ([`super::ApiError`]); the API layer ([`super::handle`])
//! renders every error answer — the handlers', the router's own 404 and 405, a 413 or 429
//! decided before any handler runs — through [`Surface::error_body`] for the surface the
//! path belongs to, so each document's clients always get their own shape:
//!
//! | surface | error body |
//! |---|---|
//! | stream-token-api | `{"statusCode", "message", "error"}` (NestJS) |
//! | signed-channel-api | `{"success": false, "data": null, "error": {"code": "HTTP_<status>", "message"}}` |
//! | playback-api | `{"error": "…"}` |
//! | provider-proxy-api | `{"error": "…"}` |
//! | admin-api | `{"status": "error", "message": "…"}` |
//!
//! Which surface a path belongs to is its route's, in the route table
//! ([`super::routes::surface_of`]).

use axum::http::StatusCode;
use serde_json::{json, Value};

/// Which document a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Admin,
    Streaming,
    Channels,
    Playback,
    Provider,
}

impl Surface {
    /// The surface of a path: its route's in [`super::routes::ROUTES`], else that of the path
    /// family it falls under ([`super::routes::FAMILIES`]).
    pub fn of(path: &str) -> Surface {
        super::routes::surface_of(path)
    }

    /// The document this surface's routes come from.
    pub fn document(self) -> &'static str {
        match self {
            Surface::Admin => "admin-api.md",
            Surface::Streaming => "stream-token-api.txt",
            Surface::Channels => "signed-channel-api.txt",
            Surface::Playback => "playback-api.txt",
            Surface::Provider => "provider-proxy-api.txt",
        }
    }

    /// The error body of this surface.
    pub fn error_body(self, status: StatusCode, message: &str) -> Value {
        match self {
            Surface::Streaming => nest_error(status, message),
            Surface::Channels => envelope_error(status, message),
            Surface::Playback | Surface::Provider => json!({ "error": message }),
            Surface::Admin => json!({"status": "error", "message": message}),
        }
    }

    /// The request headers browsers may send cross-origin on this surface, for players on
    /// another origin (`None`: no CORS, operator routes).
    pub fn cors_allow_headers(self) -> Option<&'static str> {
        match self {
            Surface::Streaming => Some("Authorization, Content-Type, X-Device-Id"),
            Surface::Channels => {
                Some("X-Signature-Token, X-Signature-Timestamp, Content-Type, Authorization")
            }
            Surface::Playback | Surface::Provider => Some("Authorization, X-Device-Id"),
            Surface::Admin => None,
        }
    }
}

/// The NestJS-style error body of the stream-token surface:
/// `{"statusCode": 401, "message": "Token expired", "error": "Unauthorized"}`.
pub fn nest_error(status: StatusCode, message: &str) -> Value {
    json!({
        "statusCode": status.as_u16(),
        "message": message,
        "error": status.canonical_reason().unwrap_or("Error"),
    })
}

/// The signed-channel document's error envelope.
pub fn envelope_error(status: StatusCode, message: &str) -> Value {
    json!({
        "success": false,
        "data": null,
        "error": {"code": format!("HTTP_{}", status.as_u16()), "message": message},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_to_surfaces() {
        assert_eq!(Surface::of("/api/v2/streaming/token"), Surface::Streaming);
        assert_eq!(Surface::of("/api/v2/streaming"), Surface::Streaming);
        assert_eq!(Surface::of("/api/v2/streamingx"), Surface::Admin);
        assert_eq!(Surface::of("/api/v1/nope"), Surface::Channels);
        assert_eq!(Surface::of("/api/key/h"), Surface::Playback);
        assert_eq!(Surface::of("/api/keys"), Surface::Admin);
        assert_eq!(
            Surface::of("/api/providers/p/channels/c/stream"),
            Surface::Provider
        );
        assert_eq!(Surface::of("/api/stream-ids"), Surface::Admin);
    }

    #[test]
    fn shapes() {
        let s = StatusCode::UNAUTHORIZED;
        assert_eq!(
            Surface::Streaming.error_body(s, "Token expired"),
            json!({"statusCode": 401, "message": "Token expired", "error": "Unauthorized"})
        );
        assert_eq!(
            Surface::Channels.error_body(s, "Secure session credentials missing"),
            json!({"success": false, "data": null, "error": {"code": "HTTP_401", "message": "Secure session credentials missing"}})
        );
        assert_eq!(Surface::Playback.error_body(s, "x"), json!({"error": "x"}));
        assert_eq!(
            Surface::Admin.error_body(s, "x"),
            json!({"status": "error", "message": "x"})
        );
    }
}

//! Typed API errors and their mapping to HTTP status and message. Handlers return
//! [`ApiError`]; its response carries an [`ErrorReply`] and no body, and the API layer renders
//! the body in the shape of the path's surface ([`super::surface`]) — mapped once, at the edge.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Missing or invalid Authorization header")]
    Unauthorized,
    /// A valid API key without the permission the route needs (logged with the key's id).
    #[error("Insufficient permissions")]
    InsufficientPermissions { key_id: i64 },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The request body did not arrive within `limits.header_timeout` of the request's start.
    #[error("Request body not received in time")]
    RequestTimeout,
    #[error("Rate limit exceeded")]
    RateLimited { retry_after_secs: u64 },
    #[error("upstream error: {0}")]
    BadGateway(String),
    /// The message is logged, never sent: clients see a fixed text.
    #[error("internal error: {0}")]
    Internal(String),
    /// Any other refusal a document defines: its status and its message.
    #[error("{message}")]
    Refused { status: StatusCode, message: String },
    /// The shared state (Redis) cannot answer: fail closed, the cause logged, not sent.
    #[error("Service temporarily unavailable")]
    Unavailable(String),
}

/// What an error response says, for the surface renderer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    pub message: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::InsufficientPermissions { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Refused { status, .. } => *status,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A refusal with the document's status and message.
    pub fn refused(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError::Refused {
            status,
            message: message.into(),
        }
    }

    /// The text a client may see.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "Internal server error".into()
            }
            ApiError::BadGateway(detail) => {
                tracing::warn!(error = %detail, "upstream error");
                "Upstream error".into()
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "shared state unavailable: refused (fail closed)");
                "Service temporarily unavailable".into()
            }
            other => other.to_string(),
        }
    }

    /// The status, `Retry-After` when rate limited, and an [`ErrorReply`] for the surface
    /// renderer; no body.
    pub fn into_reply(self) -> Response {
        let status = self.status();
        let retry = match &self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        };
        let key = match &self {
            ApiError::InsufficientPermissions { key_id } => Some(*key_id),
            _ => None,
        };
        let mut resp = status.into_response();
        resp.extensions_mut().insert(ErrorReply {
            message: self.public_message(),
        });
        if let Some(id) = key {
            resp.extensions_mut().insert(super::admin::AuthedKey(id));
        }
        if let Some(secs) = retry {
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(secs.max(1)),
            );
        }
        resp
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_unavailable() {
            ApiError::Unavailable(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_reply()
    }
}

/// Fallback for unknown routes.
pub async fn not_found() -> Response {
    ApiError::NotFound("Not found".into()).into_reply()
}

/// Parse a JSON request body into `T`, with messages that name the JSON problem or the
/// field, never an internal type (`expected struct TokenRequest`).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(json_error_message(&e)))
}

/// A client-facing description of a JSON body error.
pub fn json_error_message(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => "Invalid JSON body".into(),
        Category::Data => {
            let text = e.to_string();
            let text = text.split(" at line ").next().unwrap_or(&text);
            if text.contains("expected struct") || text.contains("expected a map") {
                return "Request body must be a JSON object".into();
            }
            // Any other type name (`enum X`) is replaced by what it means to a client.
            let mut out = String::with_capacity(text.len());
            let mut words = text.split(' ').peekable();
            while let Some(w) = words.next() {
                if w == "enum" && words.peek().is_some() {
                    words.next();
                    out.push_str("one of the allowed values");
                } else {
                    out.push_str(w);
                }
                out.push(' ');
            }
            format!("Invalid request body: {}", out.trim_end())
        }
    }
}

/// Turn an axum response into one with a complete body.
pub async fn into_bytes_response(resp: Response) -> http::Response<Bytes> {
    let (parts, body): (_, Body) = resp.into_parts();
    http::Response::from_parts(parts, super::collect_body(body).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct TokenRequest {
        content_id: String,
    }

    #[test]
    fn body_errors_name_no_internal_type() {
        let msg = |b: &[u8]| parse_json::<TokenRequest>(b).unwrap_err().to_string();
        assert_eq!(msg(b"[]"), "Request body must be a JSON object");
        assert_eq!(msg(b"\"x\""), "Request body must be a JSON object");
        assert_eq!(msg(b"{"), "Invalid JSON body");
        assert_eq!(
            msg(b"{}"),
            "Invalid request body: missing field `contentId`"
        );
        assert!(msg(br#"{"contentId":"a","x":1}"#).contains("unknown field `x`"));
        assert!(msg(br#"{"contentId":5}"#).contains("expected a string"));
        for m in [msg(b"[]"), msg(b"{}"), msg(b"1")] {
            assert!(!m.contains("TokenRequest") && !m.contains("line"), "{m}");
        }
    }
}

//! Typed API errors and their mapping to HTTP. Each seed surface wraps [`ApiError`] in its
//! own response shape; the generic shape (used by the admin surface and unknown routes) is
//! admin-api.md's `{"status":"error","message":…}`.

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
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("Rate limit exceeded")]
    RateLimited { retry_after_secs: u64 },
    #[error("upstream error: {0}")]
    BadGateway(String),
    /// The message is logged, never sent: clients see a fixed text.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
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
            other => other.to_string(),
        }
    }

    /// `{"status":"error","message":…}` with the right status and headers.
    pub fn into_response_generic(self) -> Response {
        let status = self.status();
        let retry = match &self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        };
        let body = serde_json::json!({"status": "error", "message": self.public_message()});
        let mut resp = (status, axum::Json(body)).into_response();
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
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_response_generic()
    }
}

/// Fallback for unknown routes.
pub async fn not_found() -> Response {
    ApiError::NotFound("Not found".into()).into_response_generic()
}

/// Turn an axum response into one with a complete body.
pub async fn into_bytes_response(resp: Response) -> http::Response<Bytes> {
    let (parts, body): (_, Body) = resp.into_parts();
    http::Response::from_parts(parts, super::collect_body(body).await)
}

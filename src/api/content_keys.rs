//! `PUT /api/content-keys/{hash}` (admin listener, `admin` permission): import or generate
//! the content key that `GET /api/key/{hash}` serves. The key is sealed under the current
//! KEK before it is stored ([`crate::store::content_keys`]).
//!
//! Body `{"key_hex": "<32 hex>"}` imports; `{"generate": true}` draws a random key and
//! returns it once as `key_hex` (the packager needs it to encrypt the media). Errors use the
//! admin surface's `{"status":"error","message":…}`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, AppState};
use crate::store::content_keys::{self, ContentKeyError};

impl From<ContentKeyError> for ApiError {
    fn from(e: ContentKeyError) -> Self {
        match e {
            ContentKeyError::BadKey | ContentKeyError::BadHash => {
                ApiError::BadRequest(e.to_string())
            }
            ContentKeyError::NoKeyring => ApiError::Conflict(
                "No KEK configured: set kek.current to store content keys".into(),
            ),
            ContentKeyError::Store(e) => ApiError::from(e),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// `PUT /api/content-keys/{hash}`, behind the route's `admin` key check ([`super::routes`]).
pub(super) async fn put_key(
    State(state): State<AppState>,
    Path(hash): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    store_key(&state, hash, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn store_key(state: &AppState, hash: String, body: &[u8]) -> Result<Response, ApiError> {
    // Stored under the content's one spelling, which key delivery looks up.
    let hash = state.streams.canonical(&hash);
    let v: Value = super::error::parse_json(body)?;
    let (key, generated) = match (v.get("key_hex"), v.get("generate")) {
        (Some(Value::String(h)), None) => (content_keys::parse_key_hex(h)?, false),
        (None, Some(Value::Bool(true))) => (content_keys::generate(), true),
        _ => {
            return Err(ApiError::BadRequest(
                "Send either {\"key_hex\": \"<32 hex>\"} or {\"generate\": true}".into(),
            ))
        }
    };
    let ring = state
        .config
        .access
        .keyring
        .as_ref()
        .ok_or(ContentKeyError::NoKeyring)?;
    let sealed = content_keys::seal(ring, &hash, &key)?;
    let kek_id = sealed.kek_id.clone();
    state.content_keys.put(&hash, &sealed).await?;
    let mut out = json!({"status": "success", "hash": hash, "kek_id": kek_id});
    if generated {
        out["key_hex"] = Value::String(hex::encode(key.as_slice()));
    }
    Ok(Json(out).into_response())
}

//! Stream-token admission: the state and rules shared by the stream-token API
//! ([`crate::api::streaming`]) and the edge gate on `/stream/{hash}/…` ([`crate::edge::gate`]).
//!
//! The checks are stream-token-api's "Verifications avant diffusion", in this order:
//!
//! 1. signature (HS256, `alg` pinned) → `401 Invalid token`; expiry → `401 Token expired`;
//! 2. the token's `contentId` is configured → `404 Content not found`;
//! 3. not revoked → `410 Token revoked`;
//! 4. the content is the one of the requested hash → `401 Invalid token`; IP binding (the client IP as resolved through `trusted_proxies`) → `403 IP mismatch`;
//!    device binding (`X-Device-Id`, when sent) → `403 Device mismatch`;
//! 5. uses (`count < maxUses`), counted only for loads of the entry playlist (`streaming.stream_path`, the
//!    file the token's `streamUrl` names) → `403 Max uses exceeded`.
//!
//! Uses are counted last so that a refused request never spends one. "Abonnement actif" is
//! checked when the token is issued (the token is the proof of entitlement for its life).

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::StatusCode;

use crate::auth::stream_token::{StreamClaims, StreamTokenError, StreamTokenSigner};
use crate::config::tokens::{AccessConfig, Content};
use crate::store::revocations::RevocationStore;
use crate::store::use_counts::{UseCounter, UseOutcome};

/// Why a stream token was not accepted; each has the document's status and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token in the query (`token=`) or cookie (`stream_token=`).
    Missing,
    /// Malformed, bad signature, wrong algorithm, or for another content.
    Invalid,
    Expired,
    SubscriptionRequired,
    MaxUses,
    IpMismatch,
    DeviceMismatch,
    ContentNotFound,
    Revoked,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Missing | Refusal::Invalid | Refusal::Expired => StatusCode::UNAUTHORIZED,
            Refusal::SubscriptionRequired
            | Refusal::MaxUses
            | Refusal::IpMismatch
            | Refusal::DeviceMismatch => StatusCode::FORBIDDEN,
            Refusal::ContentNotFound => StatusCode::NOT_FOUND,
            Refusal::Revoked => StatusCode::GONE,
        }
    }

    /// The document's message ("Codes d'erreur"), or ours where it has none.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => "Token required",
            Refusal::Invalid => "Invalid token",
            Refusal::Expired => "Token expired",
            Refusal::SubscriptionRequired => "Subscription required",
            Refusal::MaxUses => "Max uses exceeded",
            Refusal::IpMismatch => "IP mismatch",
            Refusal::DeviceMismatch => "Device mismatch",
            Refusal::ContentNotFound => "Content not found",
            Refusal::Revoked => "Token revoked",
        }
    }

    /// Label for `sluice_auth_rejections_total{reason}`.
    pub fn metric_label(self) -> &'static str {
        match self {
            Refusal::Missing => "stream_token_missing",
            Refusal::Invalid => "stream_token_invalid",
            Refusal::Expired => "stream_token_expired",
            Refusal::SubscriptionRequired => "subscription_required",
            Refusal::MaxUses => "stream_token_max_uses",
            Refusal::IpMismatch => "stream_token_ip",
            Refusal::DeviceMismatch => "stream_token_device",
            Refusal::ContentNotFound => "content_not_found",
            Refusal::Revoked => "stream_token_revoked",
        }
    }
}

/// The NestJS-style error body of the stream-token surface:
/// `{"statusCode": 401, "message": "Token expired", "error": "Unauthorized"}`.
pub fn error_body(status: StatusCode, message: &str) -> serde_json::Value {
    serde_json::json!({
        "statusCode": status.as_u16(),
        "message": message,
        "error": status.canonical_reason().unwrap_or("Error"),
    })
}

/// The long-lived pieces of token admission.
pub struct AccessState {
    pub signer: Option<StreamTokenSigner>,
    pub revocations: Arc<dyn RevocationStore>,
    pub uses: Arc<dyn UseCounter>,
    /// For `POST /drm/license` forwarding.
    pub http: reqwest::Client,
}

impl AccessState {
    pub fn new(
        cfg: &AccessConfig,
        revocations: Arc<dyn RevocationStore>,
        uses: Arc<dyn UseCounter>,
    ) -> AccessState {
        let signer =
            cfg.streaming.secret.as_ref().map(|s| {
                StreamTokenSigner::new(s.as_bytes()).with_leeway(cfg.streaming.leeway_secs)
            });
        let http = reqwest::Client::builder()
            .timeout(cfg.streaming.license_timeout)
            .connect_timeout(
                cfg.streaming
                    .license_timeout
                    .min(std::time::Duration::from_secs(5)),
            )
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        AccessState {
            signer,
            revocations,
            uses,
            http,
        }
    }

    /// Signature and expiry only.
    pub fn verify(&self, token: &str, now: i64) -> Result<StreamClaims, Refusal> {
        let signer = self.signer.as_ref().ok_or(Refusal::Invalid)?;
        signer.verify(token, now).map_err(|e| match e {
            StreamTokenError::Expired => Refusal::Expired,
            _ => Refusal::Invalid,
        })
    }

    /// The full admission of a media request on `hash`, counting a use when `playlist`.
    pub async fn admit(
        &self,
        cfg: &AccessConfig,
        req: &MediaRequest<'_>,
        now: i64,
    ) -> Result<StreamClaims, Refusal> {
        let token = req.token.ok_or(Refusal::Missing)?;
        let claims = self.verify(token, now)?;
        let content = cfg
            .streaming
            .content(&claims.content_id)
            .ok_or(Refusal::ContentNotFound)?;
        // Fail closed: a revocation store that cannot answer refuses the request.
        if self
            .revocations
            .is_revoked(&claims.jti)
            .await
            .unwrap_or(true)
        {
            return Err(Refusal::Revoked);
        }
        check_binding(&claims, content, req)?;
        if req.playlist {
            match self
                .uses
                .try_use(&claims.jti, claims.max_uses, claims.exp)
                .await
            {
                UseOutcome::Allowed { .. } => {}
                UseOutcome::Exhausted => return Err(Refusal::MaxUses),
            }
        }
        Ok(claims)
    }
}

/// What a media request presents.
#[derive(Debug, Clone)]
pub struct MediaRequest<'a> {
    pub hash: &'a str,
    pub token: Option<&'a str>,
    pub client_ip: IpAddr,
    /// `X-Device-Id`, when sent.
    pub device_id: Option<&'a str>,
    /// A load of the entry playlist (`streaming.stream_path`): the only request that spends a use.
    pub playlist: bool,
}

/// Content, IP and device binding (pure).
pub fn check_binding(
    claims: &StreamClaims,
    content: &Content,
    req: &MediaRequest<'_>,
) -> Result<(), Refusal> {
    if content.hash != req.hash {
        return Err(Refusal::Invalid);
    }
    let bound = claims
        .ip_address
        .parse::<IpAddr>()
        .map(crate::client::canonical_ip)
        .map_err(|_| Refusal::IpMismatch)?;
    if bound != crate::client::canonical_ip(req.client_ip) {
        return Err(Refusal::IpMismatch);
    }
    if let Some(dev) = req.device_id {
        if dev != claims.device_id {
            return Err(Refusal::DeviceMismatch);
        }
    }
    Ok(())
}

/// The stream token of a media request: query `token=` first, then cookie `stream_token=`.
pub fn token_from_request<'a>(query: Option<&'a str>, cookies: Option<&'a str>) -> Option<&'a str> {
    let from_query = query.and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v)
    });
    let from_cookie = || {
        cookies.and_then(|c| {
            c.split(';')
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| *k == "stream_token")
                .map(|(_, v)| v.trim_matches('"'))
        })
    };
    from_query.or_else(from_cookie).filter(|t| !t.is_empty())
}

/// ISO 8601 with milliseconds and `Z`, as the document's `expiresAt`.
pub fn iso_millis(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::stream_token::new_claims;
    use std::collections::BTreeMap;

    fn content() -> Content {
        Content {
            id: "c1".into(),
            content_type: "MOVIE".into(),
            hash: "movie-1".into(),
            qualities: vec!["auto".into()],
            subscription_required: false,
            token_required: true,
            max_uses: 5,
            drm: BTreeMap::new(),
        }
    }

    fn req<'a>(ip: &str, dev: Option<&'a str>) -> MediaRequest<'a> {
        MediaRequest {
            hash: "movie-1",
            token: Some("t"),
            client_ip: ip.parse().unwrap(),
            device_id: dev,
            playlist: true,
        }
    }

    #[test]
    fn bindings() {
        let c = new_claims(
            "u",
            "c1",
            "MOVIE",
            "auto",
            "dev-1",
            "p",
            "192.0.2.1".parse().unwrap(),
            5,
            60,
            0,
        );
        assert_eq!(
            check_binding(&c, &content(), &req("192.0.2.1", None)),
            Ok(())
        );
        assert_eq!(
            check_binding(&c, &content(), &req("::ffff:192.0.2.1", Some("dev-1"))),
            Ok(())
        );
        assert_eq!(
            check_binding(&c, &content(), &req("192.0.2.2", None)),
            Err(Refusal::IpMismatch)
        );
        assert_eq!(
            check_binding(&c, &content(), &req("192.0.2.1", Some("dev-2"))),
            Err(Refusal::DeviceMismatch)
        );
        let mut other = content();
        other.hash = "movie-2".into();
        assert_eq!(
            check_binding(&c, &other, &req("192.0.2.1", None)),
            Err(Refusal::Invalid)
        );
    }

    #[test]
    fn statuses_and_messages_are_the_documents() {
        for (r, code, msg) in [
            (Refusal::Expired, 401, "Token expired"),
            (Refusal::SubscriptionRequired, 403, "Subscription required"),
            (Refusal::MaxUses, 403, "Max uses exceeded"),
            (Refusal::IpMismatch, 403, "IP mismatch"),
            (Refusal::ContentNotFound, 404, "Content not found"),
            (Refusal::Revoked, 410, "Token revoked"),
        ] {
            assert_eq!((r.status().as_u16(), r.message()), (code, msg));
        }
        assert_eq!(
            error_body(StatusCode::GONE, "Token revoked"),
            serde_json::json!({"statusCode": 410, "message": "Token revoked", "error": "Gone"})
        );
    }

    #[test]
    fn token_sources() {
        assert_eq!(token_from_request(Some("a=1&token=abc"), None), Some("abc"));
        assert_eq!(
            token_from_request(Some("a=1"), Some("x=1; stream_token=def")),
            Some("def")
        );
        assert_eq!(token_from_request(Some("token="), None), None);
        assert_eq!(token_from_request(None, None), None);
        assert_eq!(iso_millis(1_736_937_000), "2025-01-15T10:30:00.000Z");
    }
}

//! stream-token-api.txt: `/api/v2/streaming/*` on both listeners (routes, rate classes and
//! the permission an operator's API key needs: [`super::routes::ROUTES`]). A bearer is a user
//! JWT or an API key (a user revokes only their own tokens); `verify` takes the token in its
//! query.
//!
//! Errors use the NestJS shape the document's backend answers with,
//! `{"statusCode": 403, "message": "Max uses exceeded", "error": "Forbidden"}`, with the
//! document's messages ("Codes d'erreur"); [`StreamingError`] is the one mapping.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::routes::Matched;
use super::{ApiError, AppState, Client};
use crate::access::{iso_millis, Refusal};
use crate::auth::stream_token::{new_claims, StreamTokenError};
use crate::config::tokens::{Content, PlanQualities, QualityTier, DRM_TYPES, QUALITIES};

/// An error of this surface: a status and the message clients see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamingError {
    pub status: StatusCode,
    pub message: String,
}

impl StreamingError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> StreamingError {
        StreamingError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> StreamingError {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn unauthorized() -> StreamingError {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized")
    }
}

impl From<Refusal> for StreamingError {
    fn from(r: Refusal) -> Self {
        crate::metrics::refused(crate::metrics::GateSurface::Api, r.metric_label());
        StreamingError::new(r.status(), r.message())
    }
}

impl From<ApiError> for StreamingError {
    fn from(e: ApiError) -> Self {
        StreamingError::new(e.status(), e.public_message())
    }
}

impl IntoResponse for StreamingError {
    /// Rendered in the NestJS shape by the API layer ([`super::surface`]).
    fn into_response(self) -> Response {
        ApiError::refused(self.status, self.message).into_reply()
    }
}

/// The `sub` namespace of tokens minted by operator API keys; user JWTs may not use it.
pub const OPERATOR_SUB_PREFIX: &str = "apikey:";

/// Who called an authenticated route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A user bearer JWT: its `sub`, whether its entitlement claim grants subscriber content,
    /// and the quality ceiling of its plan (`streaming.jwt.plan_qualities`).
    User {
        sub: String,
        entitled: bool,
        ceiling: Option<QualityTier>,
    },
    /// An operator API key with `write` permission: entitled to everything, no ceiling (the
    /// operator's backend decides what it asks for).
    Operator { key_id: i64 },
}

impl Caller {
    fn sub(&self) -> String {
        match self {
            Caller::User { sub, .. } => sub.clone(),
            Caller::Operator { key_id } => format!("{OPERATOR_SUB_PREFIX}{key_id}"),
        }
    }

    fn entitled(&self) -> bool {
        match self {
            Caller::User { entitled, .. } => *entitled,
            Caller::Operator { .. } => true,
        }
    }

    fn ceiling(&self) -> Option<QualityTier> {
        match self {
            Caller::User { ceiling, .. } => *ceiling,
            Caller::Operator { .. } => None,
        }
    }
}

/// What a user JWT's entitlement claim (`streaming.jwt.entitlement_claim`) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlement {
    /// Whether it grants `subscription_required` content.
    pub granted: bool,
    /// The plan it names, when the claim is a string (trimmed): the key into
    /// `plan_qualities`. `true`, a list or no claim name no plan.
    pub plan: Option<String>,
}

impl Entitlement {
    /// Read the claim, granting only what is plainly granted: `true`, a plan name that is
    /// not a word for "no" ([`is_granted_plan`]), or a list holding at least one of those.
    /// Everything else — `false`, `null`, numbers, `"false"`, `[]`, `[false]`, `[""]`,
    /// objects, no claim — grants nothing.
    pub fn of(claim: Option<&Value>) -> Entitlement {
        let granted_item = |v: &Value| match v {
            Value::Bool(b) => *b,
            Value::String(s) => is_granted_plan(s),
            _ => false,
        };
        match claim {
            Some(Value::String(s)) => Entitlement {
                granted: is_granted_plan(s),
                plan: Some(s.trim().to_string()),
            },
            Some(Value::Array(items)) => Entitlement {
                granted: items.iter().any(granted_item),
                plan: None,
            },
            Some(v) => Entitlement {
                granted: granted_item(v),
                plan: None,
            },
            None => Entitlement {
                granted: false,
                plan: None,
            },
        }
    }

    /// The quality ceiling this entitlement has under `plans`: the plan's own entry, else
    /// the `default` entry, else none.
    pub fn ceiling(&self, plans: &PlanQualities) -> Option<QualityTier> {
        plans.ceiling(self.plan.as_deref())
    }
}

/// Words an identity provider writes for "no subscription" in a string claim, compared
/// trimmed and without ASCII case (`free`: the free tier is no subscription).
const NOT_GRANTED: [&str; 7] = ["", "false", "no", "none", "0", "off", "free"];

/// Whether a plan string grants subscriber content: non-empty and not one of [`NOT_GRANTED`].
pub fn is_granted_plan(s: &str) -> bool {
    let s = s.trim();
    !NOT_GRANTED.iter().any(|w| w.eq_ignore_ascii_case(s))
}

/// The quality a stream token is issued with: the highest quality the content offers that is
/// above neither `requested` nor the plan's `ceiling` (`auto` requested: the ceiling).
///
/// `requested` is one of the content's `offered` qualities (checked before). With no ceiling
/// the request stands (`auto` stays `auto`). A lowered quality the content does not list is
/// replaced by the highest one it lists below it, or — when it offers `auto`, adaptive over
/// whatever variants it has — kept as that adaptive stream's ceiling. `None` when the content
/// offers nothing within the ceiling.
pub fn issued_quality(
    requested: &str,
    ceiling: Option<QualityTier>,
    offered: &[String],
) -> Option<String> {
    let limit = match (QualityTier::parse(requested), ceiling) {
        (None, None) => return Some(requested.to_string()),
        (Some(r), None) => return Some(r.as_str().to_string()),
        (None, Some(c)) => c,
        (Some(r), Some(c)) => r.min(c),
    };
    offered
        .iter()
        .filter_map(|q| QualityTier::parse(q))
        .filter(|t| *t <= limit)
        .max()
        .or_else(|| offered.iter().any(|q| q == "auto").then_some(limit))
        .map(|t| t.as_str().to_string())
}

/// The verifier of the streaming routes' user JWTs (`streaming.jwt`), if configured: the
/// routes' authentication and the rate limiter's check of a bearer use the same one.
pub(super) fn user_jwt_verifier(state: &AppState) -> Option<crate::auth::jwt::BearerVerifier> {
    let jwt = state.config.access.streaming.jwt.as_ref()?;
    Some(
        crate::auth::jwt::BearerVerifier::new(
            jwt.secret.as_bytes(),
            jwt.issuer.clone(),
            jwt.audience.clone(),
        )
        .with_leeway(jwt.leeway_secs),
    )
}

/// A JWT has two dots; an API key (32 alphanumerics) has none. A key needs the permission
/// the route's entry names ([`super::routes::Auth::JwtOrApiKey`]).
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    Matched(route): Matched,
) -> Result<Caller, StreamingError> {
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::jwt::bearer_from_header)
        .ok_or_else(StreamingError::unauthorized)?;
    let cfg = &state.config.access.streaming;
    if token.matches('.').count() == 2 {
        let Some(verifier) = user_jwt_verifier(state) else {
            return Err(StreamingError::unauthorized());
        };
        let claims = verifier.verify(token).map_err(|e| {
            crate::metrics::refused(crate::metrics::GateSurface::Api, "bad_bearer_jwt");
            tracing::debug!(error = %e, "streaming bearer refused");
            StreamingError::unauthorized()
        })?;
        let sub = claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or_else(StreamingError::unauthorized)?;
        // `apikey:N` names the tokens an operator key minted: a user may not take that name
        // (and with it the right to revoke them).
        if sub.starts_with(OPERATOR_SUB_PREFIX) {
            crate::metrics::refused(crate::metrics::GateSurface::Api, "bad_bearer_jwt");
            return Err(StreamingError::unauthorized());
        }
        let entitlement = Entitlement::of(claims.extra.get(&cfg.entitlement_claim));
        return Ok(Caller::User {
            sub,
            entitled: entitlement.granted,
            ceiling: entitlement.ceiling(&cfg.plan_qualities),
        });
    }
    let needed = route
        .auth
        .permission()
        .ok_or_else(StreamingError::unauthorized)?;
    let key = super::admin::authorize(state, headers, needed).await?;
    Ok(Caller::Operator { key_id: key.0 })
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, StreamingError> {
    super::error::parse_json(body).map_err(StreamingError::from)
}

/// Longest `deviceId` accepted at issuance.
pub const MAX_DEVICE_ID_LEN: usize = 128;

/// `deviceId` (the body's, else the `X-Device-Id` header's; empty: unbound). The edge compares
/// it with the `X-Device-Id` header of every load, so it must be something a header carries
/// unchanged: 1 to 128 visible ASCII characters (`!` to `~`; no space, which proxies may fold
/// or trim). A header value that is not even text is refused too, never read as "no device"
/// (that would mint an unbound token).
fn device_id(
    body: Option<String>,
    header: Option<&http::HeaderValue>,
) -> Result<String, StreamingError> {
    let refuse = || {
        StreamingError::bad_request(format!(
            "deviceId must be at most {MAX_DEVICE_ID_LEN} visible ASCII characters (no spaces)"
        ))
    };
    let v = match (body, header) {
        (Some(b), _) => b,
        (None, Some(h)) => h.to_str().map_err(|_| refuse())?.to_string(),
        (None, None) => String::new(),
    };
    if v.len() > MAX_DEVICE_ID_LEN || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refuse());
    }
    Ok(v)
}

/// Optional free-text ids (`profileId`): bounded, printable.
fn id_field(name: &str, v: Option<String>) -> Result<String, StreamingError> {
    let v = v.unwrap_or_default();
    if v.len() > 128 || v.chars().any(char::is_control) {
        return Err(StreamingError::bad_request(format!(
            "{name} must be at most 128 printable characters"
        )));
    }
    Ok(v)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    content_id: String,
    content_type: Option<String>,
    quality: Option<String>,
    device_id: Option<String>,
    profile_id: Option<String>,
}

fn find_content<'a>(
    state: &'a AppState,
    id: &str,
    content_type: Option<&str>,
) -> Result<&'a Content, StreamingError> {
    let content = state
        .config
        .access
        .streaming
        .content(id)
        .ok_or(Refusal::ContentNotFound)?;
    if let Some(t) = content_type {
        if !t.eq_ignore_ascii_case(&content.content_type) {
            return Err(Refusal::ContentNotFound.into());
        }
    }
    Ok(content)
}

pub(super) async fn issue_token(
    State(state): State<AppState>,
    Extension(route): Extension<Matched>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, StreamingError> {
    let caller = authenticate(&state, &headers, route).await?;
    let req: TokenRequest = parse_body(&body)?;
    let content = find_content(&state, &req.content_id, req.content_type.as_deref())?;
    let quality = req
        .quality
        .unwrap_or_else(|| "auto".into())
        .to_ascii_lowercase();
    if !QUALITIES.contains(&quality.as_str()) {
        return Err(StreamingError::bad_request(
            "quality must be one of auto, 480p, 720p, 1080p, 4k",
        ));
    }
    if !content.qualities.contains(&quality) {
        return Err(StreamingError::bad_request(format!(
            "Quality {quality} is not available for this content"
        )));
    }
    if content.subscription_required && !caller.entitled() {
        return Err(Refusal::SubscriptionRequired.into());
    }
    // The plan's ceiling lowers what was asked; a plan that reaches nothing this content
    // offers is the document's "Subscription required".
    let quality = issued_quality(&quality, caller.ceiling(), &content.qualities)
        .ok_or(Refusal::SubscriptionRequired)?;
    let device_id = device_id(req.device_id, headers.get("x-device-id"))?;
    let profile_id = id_field("profileId", req.profile_id)?;
    let cfg = &state.config.access.streaming;
    let signer = state.access.signer.as_ref().ok_or_else(|| {
        StreamingError::from(ApiError::Internal(
            "no stream token secret configured".into(),
        ))
    })?;
    let now = chrono::Utc::now().timestamp();
    let claims = new_claims(
        &caller.sub(),
        &content.id,
        &content.content_type,
        &quality,
        &device_id,
        &profile_id,
        client.ip,
        content.max_uses,
        cfg.token_ttl.as_secs() as i64,
        now,
    );
    let token = signer
        .sign(&claims)
        .map_err(|e: StreamTokenError| StreamingError::from(ApiError::Internal(e.to_string())))?;
    let base = match &cfg.public_base_url {
        Some(b) => b.clone(),
        None => request_base(&headers, &client),
    };
    let stream_url = format!("{base}{}?token={token}", cfg.entry_url_path(content));
    Ok(Json(json!({
        "streamToken": token,
        "expiresAt": iso_millis(claims.exp),
        "maxUses": claims.max_uses,
        "streamUrl": stream_url,
    }))
    .into_response())
}

/// `scheme://host` of `streamUrl` when `streaming.public_base_url` is not set
/// ([`crate::client::request_base`]; the router does not see the connection's TLS, so `http`
/// unless a trusted proxy says `https`).
fn request_base(headers: &HeaderMap, client: &Client) -> String {
    crate::client::request_base(headers, None, client, false)
}

#[derive(Debug, Deserialize)]
pub(super) struct VerifyQuery {
    token: Option<String>,
}

/// Signature, expiry, content, revocation and remaining uses; no IP check (the caller is
/// typically a CDN or backend asking on the player's behalf) and no use is spent.
pub(super) async fn verify(
    State(state): State<AppState>,
    Query(q): Query<VerifyQuery>,
) -> Result<Response, StreamingError> {
    let token = q.token.filter(|t| !t.is_empty()).ok_or(Refusal::Missing)?;
    let now = chrono::Utc::now().timestamp();
    let claims = state.access.verify(&token, now)?;
    if state
        .config
        .access
        .streaming
        .content(&claims.content_id)
        .is_none()
    {
        return Err(Refusal::ContentNotFound.into());
    }
    state.access.check_vouched(claims.iat)?;
    // A store that cannot answer says so (503): `verify` never guesses.
    let unavailable = |e: crate::store::StoreError| {
        tracing::warn!(error = %e, "verify: shared state unavailable");
        StreamingError::from(Refusal::Unavailable)
    };
    if state
        .access
        .revocations
        .is_revoked(&claims.jti)
        .await
        .map_err(unavailable)?
    {
        return Err(Refusal::Revoked.into());
    }
    let used = state
        .access
        .uses
        .used(&claims.jti)
        .await
        .map_err(unavailable)?;
    if used >= claims.max_uses {
        return Err(Refusal::MaxUses.into());
    }
    Ok(Json(json!({
        "valid": true,
        "contentId": claims.content_id,
        "contentType": claims.content_type,
        "quality": claims.quality,
        "remainingUses": claims.max_uses - used,
        "expiresAt": iso_millis(claims.exp),
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevokeRequest {
    stream_token: String,
}

pub(super) async fn revoke(
    State(state): State<AppState>,
    Extension(route): Extension<Matched>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, StreamingError> {
    let caller = authenticate(&state, &headers, route).await?;
    let req: RevokeRequest = parse_body(&body)?;
    let now = chrono::Utc::now().timestamp();
    let cfg = &state.config.access.streaming;
    // An expired token is still revoked: playbacks it started run on credentials until
    // the revocation horizon.
    let claims = state
        .access
        .signer
        .as_ref()
        .and_then(|s| s.verify_signature(&req.stream_token, now).ok())
        .ok_or_else(|| StreamingError::bad_request("Invalid token"))?;
    // The longest credential life any config of this state minted with (not only this one's).
    let reach = state
        .access
        .revocations
        .credential_reach(cfg.credential_reach())
        .await
        .map_err(|e| StreamingError::from(ApiError::from(e)))?;
    let horizon = cfg.revocation_horizon(claims.exp, reach);
    if horizon <= now {
        // Nothing it opened can still be used: nothing to revoke, and saying so is harmless.
        return Ok(Json(json!({"revoked": true, "expired": true})).into_response());
    }
    if let Caller::User { sub, .. } = &caller {
        if *sub != claims.sub {
            return Err(StreamingError::new(
                StatusCode::FORBIDDEN,
                "Token belongs to another user",
            ));
        }
    }
    state
        .access
        .revocations
        .revoke(&claims.jti, horizon)
        .await
        .map_err(|e| StreamingError::from(ApiError::from(e)))?;
    tracing::info!(jti = %claims.jti, "stream token revoked");
    Ok(Json(json!({
        "revoked": true,
        "jti": claims.jti,
        "revokedAt": iso_millis(now),
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LicenseRequest {
    content_id: String,
    drm_type: String,
    challenge: String,
}

/// Largest license answer relayed.
const MAX_LICENSE_BYTES: usize = 1024 * 1024;

pub(super) async fn drm_license(
    State(state): State<AppState>,
    Extension(route): Extension<Matched>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, StreamingError> {
    let caller = authenticate(&state, &headers, route).await?;
    let req: LicenseRequest = parse_body(&body)?;
    let drm_type = req.drm_type.to_ascii_lowercase();
    if !DRM_TYPES.contains(&drm_type.as_str()) {
        return Err(StreamingError::bad_request(
            "drmType must be one of widevine, playready, fairplay",
        ));
    }
    let content = find_content(&state, &req.content_id, None)?;
    if content.subscription_required && !caller.entitled() {
        return Err(Refusal::SubscriptionRequired.into());
    }
    let server = content.drm.get(&drm_type).ok_or_else(|| {
        StreamingError::bad_request(format!("{drm_type} is not available for this content"))
    })?;
    let challenge = decode_b64(&req.challenge)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| StreamingError::bad_request("challenge must be base64"))?;
    let mut up = state
        .access
        .http
        .post(&server.url)
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .body(challenge);
    for (k, v) in &server.headers {
        up = up.header(k.as_str(), v.as_str());
    }
    let bad_gateway = |why: String| {
        tracing::warn!(content = %content.id, drm = %drm_type, error = %why, "license server failed");
        StreamingError::new(StatusCode::BAD_GATEWAY, "License server error")
    };
    let resp = up.send().await.map_err(|e| bad_gateway(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(bad_gateway(format!("status {}", resp.status())));
    }
    // Bounded while it streams: a license server sending without end stops at the cap.
    let license = crate::http_client::read_bounded(resp, MAX_LICENSE_BYTES)
        .await
        .map_err(|e| bad_gateway(e.to_string()))?;
    Ok(Json(json!({
        "contentId": content.id,
        "drmType": drm_type,
        "license": base64::engine::general_purpose::STANDARD.encode(&license),
    }))
    .into_response())
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    let s = s.trim();
    [STANDARD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entitlement_values() {
        // (claim, grants subscriber content, plan looked up in plan_qualities)
        let table: Vec<(Option<Value>, bool, Option<&str>)> = vec![
            (Some(json!(true)), true, None),
            (Some(json!("premium")), true, Some("premium")),
            (Some(json!("  Basic ")), true, Some("Basic")),
            (Some(json!("yes")), true, Some("yes")),
            (Some(json!("1")), true, Some("1")),
            (Some(json!(["sport"])), true, None),
            (Some(json!([false, "sport"])), true, None),
            (Some(json!([true])), true, None),
            (Some(json!(false)), false, None),
            (Some(json!(null)), false, None),
            (Some(json!(0)), false, None),
            (Some(json!(1)), false, None),
            (Some(json!(1.5)), false, None),
            (Some(json!("false")), false, Some("false")),
            (Some(json!("FALSE")), false, Some("FALSE")),
            (Some(json!("no")), false, Some("no")),
            (Some(json!(" No ")), false, Some("No")),
            (Some(json!("none")), false, Some("none")),
            (Some(json!("0")), false, Some("0")),
            (Some(json!("off")), false, Some("off")),
            (Some(json!("free")), false, Some("free")),
            (Some(json!("")), false, Some("")),
            (Some(json!("   ")), false, Some("")),
            (Some(json!([])), false, None),
            (Some(json!([false])), false, None),
            (Some(json!([""])), false, None),
            (Some(json!(["no", "off", null, 0])), false, None),
            (Some(json!([["premium"]])), false, None),
            (Some(json!([{"plan": "premium"}])), false, None),
            (Some(json!({"plan": "premium"})), false, None),
            (None, false, None),
        ];
        for (claim, granted, plan) in table {
            let e = Entitlement::of(claim.as_ref());
            assert_eq!(e.granted, granted, "{claim:?}");
            assert_eq!(e.plan.as_deref(), plan, "{claim:?}");
        }
    }

    #[test]
    fn issued_quality_is_the_lower_of_request_and_plan() {
        use QualityTier::{K4, P1080, P480, P720};
        let all: Vec<String> = QUALITIES.iter().map(|q| q.to_string()).collect();
        let some = |qs: &[&str]| qs.iter().map(|q| q.to_string()).collect::<Vec<_>>();
        // (requested, ceiling, offered, issued)
        type Case<'a> = (&'a str, Option<QualityTier>, Vec<String>, Option<&'a str>);
        let table: Vec<Case> = vec![
            ("auto", None, all.clone(), Some("auto")),
            ("4k", None, all.clone(), Some("4k")),
            ("1080p", None, all.clone(), Some("1080p")),
            ("4k", Some(P720), all.clone(), Some("720p")),
            ("1080p", Some(P720), all.clone(), Some("720p")),
            ("720p", Some(P720), all.clone(), Some("720p")),
            ("480p", Some(P720), all.clone(), Some("480p")),
            ("auto", Some(P720), all.clone(), Some("720p")),
            ("auto", Some(K4), all.clone(), Some("4k")),
            ("1080p", Some(K4), all.clone(), Some("1080p")),
            ("auto", Some(P480), all.clone(), Some("480p")),
            // The highest offered quality within the limit.
            (
                "4k",
                Some(P1080),
                some(&["480p", "720p", "4k"]),
                Some("720p"),
            ),
            (
                "auto",
                Some(P720),
                some(&["auto", "480p", "1080p"]),
                Some("480p"),
            ),
            // Adaptive content with no listed quality within the limit: adaptive up to it.
            ("auto", Some(P720), some(&["auto", "1080p"]), Some("720p")),
            ("1080p", Some(P720), some(&["auto", "1080p"]), Some("720p")),
            // Nothing offered within the plan.
            ("1080p", Some(P720), some(&["1080p", "4k"]), None),
        ];
        for (requested, ceiling, offered, want) in table {
            assert_eq!(
                issued_quality(requested, ceiling, &offered).as_deref(),
                want,
                "{requested} under {ceiling:?} of {offered:?}"
            );
        }
    }

    #[test]
    fn device_ids_are_what_a_header_carries() {
        let hv = |b: &[u8]| http::HeaderValue::from_bytes(b).unwrap();
        assert_eq!(device_id(None, None).unwrap(), "");
        assert_eq!(device_id(Some(String::new()), None).unwrap(), "");
        assert_eq!(
            device_id(Some("dev-1:A_b.~".into()), Some(&hv(b"other"))).unwrap(),
            "dev-1:A_b.~"
        );
        assert_eq!(device_id(None, Some(&hv(b"dev-2"))).unwrap(), "dev-2");
        let longest = "d".repeat(MAX_DEVICE_ID_LEN);
        assert_eq!(device_id(Some(longest.clone()), None).unwrap(), longest);
        for bad in [
            "téléphone",
            "dev 1",
            " dev",
            "dev\t1",
            "dev\n",
            "dev\u{7f}",
            "\u{202e}dev",
            "ｄｅｖ",
        ] {
            assert!(device_id(Some(bad.into()), None).is_err(), "{bad:?}");
        }
        assert!(device_id(Some("d".repeat(MAX_DEVICE_ID_LEN + 1)), None).is_err());
        let e = device_id(None, Some(&hv("téléphone".as_bytes()))).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("deviceId"), "{}", e.message);
    }

    #[test]
    fn error_shape() {
        let e: StreamingError = Refusal::MaxUses.into();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        let e: StreamingError = ApiError::Internal("secret detail".into()).into();
        assert_eq!(e.message, "Internal server error");
        assert_eq!(
            crate::api::surface::nest_error(e.status, &e.message),
            json!({"statusCode": 500, "message": "Internal server error", "error": "Internal Server Error"})
        );
    }

    #[test]
    fn challenge_base64_forms() {
        assert_eq!(decode_b64("AAE=").unwrap(), vec![0, 1]);
        assert_eq!(decode_b64("_-8").unwrap(), vec![0xff, 0xef]);
        assert!(decode_b64("not base64!").is_none());
    }
}

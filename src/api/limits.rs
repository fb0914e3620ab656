//! The rate-limit layer: which class a request belongs to and whose budget it spends.
//! Applied by [`super::handle`] to every API request the same way, before the body is read.
//!
//! Each route's class, and which of its answers spend the auth-failure budget, are in the route
//! table ([`super::routes::ROUTES`]); the key a class spends:
//!
//! | class | keyed by |
//! |---|---|
//! | `api`, `stats`, `config` | client IP |
//! | `key` | the key token (digest) when it carries our signature, else client IP (`key_delivery.rate_limit_key`) |
//! | `streaming` | a user JWT (digest) that verifies, or an API key (digest) once vouched for; else client IP |
//! | `verify` | the token (digest) when it carries our signature, else client IP |
//! | `stream_info` | the bearer JWT (digest) when it verifies, else client IP |
//!
//! *Vouched for*: an earlier request with the same API key was answered with success on this
//! node ([`crate::ratelimit::Vouched`]; its first request spends the client's budget and is
//! then counted in the key's own). A credential that proves nothing spends its client's
//! budgets: a stranger inventing credentials makes no key of its own in the fleet's shared
//! windows.
//!
//! Backends call `/token` and `verify` for many viewers from one address, so those are keyed
//! by credential first. Guessing credentials is throttled separately: an answer that says
//! "this credential is not valid" spends the client IP's `auth_failures` budget — 401/403 of
//! key delivery and of the signed-channel stream route (bad or missing key token, signature),
//! 401 of the streaming routes and Stream Info (bad bearer). The slot is reserved up front
//! and given back when the answer was something else; legitimate verdicts (`verify` saying a
//! token is expired or used up, `403 Subscription required`) spend nothing. Keys hold
//! digests, never credentials.

use axum::http::{HeaderMap, Method};

use super::routes::{Failures, NONE};
use crate::auth::api_keys;
use crate::client::Client;
use crate::config::tokens::RateKey;
use crate::ratelimit::RateClass;
use crate::state::AppState;

/// The budgets a request spent at admission.
#[derive(Debug, Default)]
pub struct Spent {
    failures: Option<(String, Failures, crate::ratelimit::Admitted)>,
    /// An API key's class and key, to be vouched for by a success.
    credential: Option<(RateClass, String)>,
}

/// The class of a request, and which of its answers spend the auth-failure budget: those of
/// its route ([`super::routes::route_for`]). Preflights are never limited.
pub fn classify(method: &Method, path: &str) -> (Option<RateClass>, Failures) {
    if method == Method::OPTIONS {
        return (None, NONE);
    }
    match super::routes::route_for(method, path) {
        Some(route) => (route.rate.class(), route.failures),
        None => (None, NONE),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::jwt::bearer_from_header)
}

fn query_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .filter(|t| !t.is_empty())
}

/// Whether `token` carries this deployment's signature (expiry, uses and revocation are the
/// route's verdicts, not the limiter's).
fn signed_by_us(state: &AppState, token: &str) -> bool {
    let now = chrono::Utc::now().timestamp();
    state
        .access
        .signer
        .as_ref()
        .is_some_and(|s| s.verify_signature(token, now).is_ok())
}

/// A request's credential in a per-credential class: its key there, and whether it proves
/// itself offline (a signature sluice can check: a stream token, a key token, a JWT).
struct Credential {
    key: String,
    signed: bool,
}

/// Whether `t` is a key token under this deployment's secret (expired or for another hash
/// are the route's verdicts: the signature is what matters here).
fn key_token_signed(state: &AppState, t: &str) -> bool {
    let secret = state
        .config
        .access
        .key_delivery
        .secret
        .as_ref()
        .map_or(&b""[..], |s| s.as_bytes());
    let now = chrono::Utc::now().timestamp();
    use crate::auth::key_token::{verify, KeyTokenError};
    matches!(
        verify(secret, t, "", now),
        Ok(_) | Err(KeyTokenError::Expired | KeyTokenError::HashMismatch)
    )
}

/// Whether `t` is a streaming user JWT that verifies (an API key has no dots: it is checked
/// against the key store by the route, and vouched for after).
fn streaming_jwt_signed(state: &AppState, t: &str) -> bool {
    t.matches('.').count() == 2
        && super::streaming::user_jwt_verifier(state).is_some_and(|v| v.verify(t).is_ok())
}

fn credential(
    state: &AppState,
    class: RateClass,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Option<Credential> {
    let digest = |kind: &str, secret: &str| format!("{kind}:{}", api_keys::hash(secret));
    match class {
        RateClass::Key => match (
            state.config.access.key_delivery.rate_limit_key,
            bearer(headers),
        ) {
            (RateKey::Token, Some(t)) => Some(Credential {
                key: digest("token", t),
                signed: key_token_signed(state, t),
            }),
            _ => None,
        },
        RateClass::Streaming => bearer(headers).map(|b| Credential {
            key: digest("bearer", b),
            signed: streaming_jwt_signed(state, b),
        }),
        RateClass::StreamInfo => bearer(headers).map(|b| Credential {
            key: digest("bearer", b),
            signed: state
                .provider_jwt
                .as_ref()
                .is_some_and(|v| v.verify(b).is_ok()),
        }),
        RateClass::Verify => query_token(query).map(|t| Credential {
            key: digest("token", &t),
            signed: signed_by_us(state, &t),
        }),
        RateClass::Api | RateClass::Stats | RateClass::Config | RateClass::AuthFailures => None,
    }
}

/// The key a request spends in `class`. A per-credential key is made only for a credential
/// that proved itself: one whose signature sluice checked (stream token, key token, JWT), or
/// one an earlier request was answered with success for (an API key,
/// [`crate::ratelimit::Vouched`]). Anything else — every credential a stranger invents —
/// spends the client's key: no stranger makes keys in the shared store by inventing them.
/// The second value: the credential to vouch for if this request succeeds.
fn key_for(
    state: &AppState,
    class: RateClass,
    client: &Client,
    headers: &HeaderMap,
    query: Option<&str>,
) -> (String, Option<String>) {
    let ip = || format!("ip:{}", client.ip);
    match credential(state, class, headers, query) {
        Some(c) if c.signed || state.rate_limits.vouched(&c.key) => (c.key, None),
        // Only an API key (no signature to check) can be vouched for by its route.
        Some(c) if class == RateClass::Streaming => (ip(), Some(c.key)),
        _ => (ip(), None),
    }
}

/// Admit a request through its class's limit and, where refusals count, the client's
/// auth-failure budget. `Err(retry_after_secs)` when either is spent.
pub async fn admit(
    state: &AppState,
    method: &Method,
    path: &str,
    client: &Client,
    headers: &HeaderMap,
    query: Option<&str>,
    from_node: bool,
) -> Result<Spent, u64> {
    // A fleet node carries every player of the node that sent it: a request it signed
    // (checked once at the request's start, edge listener only) is not limited per client.
    // Never by address: a node's address without its signature is any client.
    if from_node {
        return Ok(Spent::default());
    }
    let (class, failures) = classify(method, path);
    let refuse = |class: RateClass, wait: std::time::Duration| {
        crate::metrics::RATE_LIMITED
            .with_label_values(&[class.as_str()])
            .inc();
        wait.as_secs_f64().ceil().max(1.0) as u64
    };
    let mut spent = Spent::default();
    if !failures.is_empty() {
        let (key, _) = key_for(state, RateClass::AuthFailures, client, headers, query);
        let admitted = state
            .rate_limits
            .admit(RateClass::AuthFailures, &key)
            .await
            .map_err(|w| refuse(RateClass::AuthFailures, w))?;
        spent.failures = Some((key, failures, admitted));
    }
    if let Some(class) = class {
        let (key, unproven) = key_for(state, class, client, headers, query);
        spent.credential = unproven.map(|c| (class, c));
        if let Err(w) = state.rate_limits.admit(class, &key).await {
            settle(state, &spent, 0).await;
            return Err(refuse(class, w));
        }
    }
    Ok(spent)
}

/// After the answer: the failure slot reserved at admission stays spent only for a refusal.
pub async fn settle(state: &AppState, spent: &Spent, status: u16) {
    if let Some((class, credential)) = &spent.credential {
        if (200..300).contains(&status) {
            state.rate_limits.vouch(credential);
            // Its first request went to the client's budget: count it in its own too, so
            // the credential's limit stays exact.
            let _ = state.rate_limits.admit(*class, credential).await;
        }
    }
    if let Some((key, failures, admitted)) = &spent.failures {
        if !failures.contains(&status) {
            state
                .rate_limits
                .give_back(RateClass::AuthFailures, key, admitted)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::routes::{BAD_BEARER, BAD_CREDENTIAL};

    #[test]
    fn route_classes() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(
            classify(&get, "/api/stream-ids"),
            (Some(RateClass::Api), NONE)
        );
        assert_eq!(
            classify(&post, "/api/keys"),
            (Some(RateClass::Config), NONE)
        );
        assert_eq!(
            classify(&get, "/stats/live"),
            (Some(RateClass::Stats), NONE)
        );
        assert_eq!(
            classify(&get, "/api/key/h"),
            (Some(RateClass::Key), BAD_CREDENTIAL)
        );
        assert_eq!(
            classify(&post, "/api/v2/streaming/drm/license"),
            (Some(RateClass::Streaming), BAD_BEARER)
        );
        // verify's refusals are verdicts about a token, not guesses.
        assert_eq!(
            classify(&get, "/api/v2/streaming/verify"),
            (Some(RateClass::Verify), NONE)
        );
        assert_eq!(
            classify(&get, "/api/providers/p/channels/c/stream"),
            (Some(RateClass::StreamInfo), BAD_BEARER)
        );
        assert_eq!(
            classify(&get, "/api/v1/channels/x/stream"),
            (None, BAD_CREDENTIAL)
        );
        assert_eq!(classify(&get, "/api/v1/channels"), (None, NONE));
        assert_eq!(classify(&get, "/health"), (None, NONE));
        // Preflights are never limited.
        assert_eq!(classify(&Method::OPTIONS, "/api/key/h"), (None, NONE));
    }
}

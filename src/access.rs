//! Stream-token admission: the state and rules shared by the stream-token API
//! ([`crate::api::streaming`]) and the edge gate on `/stream/{hash}/…` (`edge::gate`).
//!
//! Every decision is made on canonical values: the decoded, validated path the fetch uses
//! ([`crate::media::path`]), the bucket directory it resolves to (stream-id aliases
//! included), and the client address from [`crate::client`]. Two things open gated media:
//!
//! **A stream token** (query `token=` or cookie `stream_token=`) opens only its content's
//! entry playlist (`streaming.stream_path`, or the content's `entry`), checked in the order
//! of stream-token-api's "Verifications avant diffusion":
//!
//! 1. signature (HS256, `alg` pinned) → `401 Invalid token`; expiry (`exp + leeway`) →
//!    `401 Token expired`;
//! 2. the token's `contentId` is configured → `404 Content not found`;
//! 3. not revoked → `410 Token revoked`;
//! 4. the content is the one the path resolves to → `401 Invalid token`; the path is the
//!    entry → `403 Playback credential required`; IP binding → `403 IP mismatch`; device
//!    binding (a token minted with a `deviceId` needs the same `X-Device-Id`) →
//!    `403 Device mismatch`;
//! 5. uses (`count < maxUses`) → `403 Max uses exceeded`. A `GET` reserves a use here; the
//!    edge gives it back when the answer is not a success (origin 404/5xx, refused), and a
//!    `HEAD` only checks. Reserving at admission keeps counting exact under concurrency.
//!
//! **A playback credential** (`pc=`, [`crate::auth::playback`]) minted into the playlist the
//! entry load returned opens what that playlist links to: signature and expiry, the same
//! content directory, not revoked, the bound address and device, and — when the token's
//! quality set a ceiling — the object proof its playlist minted for exactly that object.
//!
//! On a fleet the stores are Redis ([`crate::store::redis::tokens`]): an entry load asks the
//! revocation and counts the use in one round trip; a credential checks this node's copy of
//! the revocation set, kept current through pub/sub. A store that cannot answer refuses
//! (`503`, [`Refusal::Unavailable`]) unless `state.redis_fail_open` lists `playback`.
//!
//! "Abonnement actif" is checked when the token is issued (the token is the proof of
//! entitlement for its life).

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::StatusCode;

use crate::auth::playback::{
    new_playback_id, CredentialError, ObjectProof, PlaybackClaims, PlaybackKey,
};
use crate::auth::stream_token::{StreamClaims, StreamTokenError, StreamTokenSigner};
use crate::client::canonical_ip;
use crate::config::tokens::{AccessConfig, Content, StreamingConfig};
use crate::media::MediaKind;
use crate::rewrite::quality::Quality;
use crate::store::revocations::RevocationStore;
use crate::store::use_counts::{EntryOutcome, UseCounter};

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
    /// Issued (a credential: minted) before the shared state was lost: its revocation and
    /// use count cannot be vouched for, so it is refused as a revoked token is, until it
    /// expires ([`crate::store::redis::epoch`]).
    LostState,
    /// A raw stream token on anything but the entry playlist.
    NotEntry,
    /// A playback credential that is malformed, forged, or for another content.
    BadCredential,
    /// A valid credential for an object outside its scope (a variant the quality excludes).
    OutOfScope,
    /// The shared state (Redis) cannot answer the revocation or use-count question: fail
    /// closed, unless `state.redis_fail_open` lists `playback`.
    Unavailable,
}

/// Create the `sluice_auth_rejections_total` series of every refusal, on the surfaces that
/// check stream tokens (`stream` and `api`), so each exists (at zero) from the start. Called
/// at start.
pub fn init_metrics() {
    use crate::metrics::{GateSurface, AUTH_REJECTIONS};
    for surface in [GateSurface::Stream, GateSurface::Api] {
        for r in Refusal::ALL {
            AUTH_REJECTIONS.with_label_values(&[surface.as_str(), r.metric_label()]);
        }
    }
}

impl Refusal {
    /// Every refusal, for creating its metric series at start.
    pub const ALL: [Refusal; 14] = [
        Refusal::Missing,
        Refusal::Invalid,
        Refusal::Expired,
        Refusal::SubscriptionRequired,
        Refusal::MaxUses,
        Refusal::IpMismatch,
        Refusal::DeviceMismatch,
        Refusal::ContentNotFound,
        Refusal::Revoked,
        Refusal::LostState,
        Refusal::NotEntry,
        Refusal::BadCredential,
        Refusal::OutOfScope,
        Refusal::Unavailable,
    ];

    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Missing | Refusal::Invalid | Refusal::Expired => StatusCode::UNAUTHORIZED,
            Refusal::SubscriptionRequired
            | Refusal::MaxUses
            | Refusal::IpMismatch
            | Refusal::DeviceMismatch
            | Refusal::NotEntry
            | Refusal::BadCredential
            | Refusal::OutOfScope => StatusCode::FORBIDDEN,
            Refusal::ContentNotFound => StatusCode::NOT_FOUND,
            Refusal::Revoked | Refusal::LostState => StatusCode::GONE,
            Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
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
            Refusal::Revoked | Refusal::LostState => "Token revoked",
            Refusal::NotEntry => "Playback credential required",
            Refusal::BadCredential => "Invalid playback credential",
            Refusal::OutOfScope => "Not allowed by this token's quality",
            Refusal::Unavailable => "Service temporarily unavailable",
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
            Refusal::LostState => "stream_token_lost_state",
            Refusal::NotEntry => "stream_token_not_entry",
            Refusal::BadCredential => "playback_credential_invalid",
            Refusal::OutOfScope => "playback_scope",
            Refusal::Unavailable => "state_unavailable",
        }
    }
}

/// The long-lived pieces of token admission.
pub struct AccessState {
    pub signer: Option<StreamTokenSigner>,
    /// Signs and checks playback credentials (derived from the stream-token secret).
    pub playback: Option<Arc<PlaybackKey>>,
    pub revocations: Arc<dyn RevocationStore>,
    pub uses: Arc<dyn UseCounter>,
    /// For `POST /drm/license` forwarding.
    pub http: reqwest::Client,
    /// `state.redis_fail_open` lists `playback`: admit on this node's own knowledge while
    /// the shared state cannot answer.
    pub fail_open: bool,
}

impl AccessState {
    /// # Errors
    /// When the license client cannot be built (TLS backend initialisation).
    pub fn new(
        cfg: &AccessConfig,
        revocations: Arc<dyn RevocationStore>,
        uses: Arc<dyn UseCounter>,
    ) -> Result<AccessState, String> {
        let signer =
            cfg.streaming.secret.as_ref().map(|s| {
                StreamTokenSigner::new(s.as_bytes()).with_leeway(cfg.streaming.leeway_secs)
            });
        let playback = cfg
            .streaming
            .secret
            .as_ref()
            .map(|s| Arc::new(PlaybackKey::derive(s.as_bytes())));
        let http = crate::http_client::control_plane(cfg.streaming.license_timeout)?;
        Ok(AccessState {
            signer,
            playback,
            revocations,
            uses,
            http,
            fail_open: false,
        })
    }

    /// Signature and expiry only.
    pub fn verify(&self, token: &str, now: i64) -> Result<StreamClaims, Refusal> {
        let signer = self.signer.as_ref().ok_or(Refusal::Invalid)?;
        signer.verify(token, now).map_err(|e| match e {
            StreamTokenError::Expired => Refusal::Expired,
            _ => Refusal::Invalid,
        })
    }

    /// A token issued (a credential minted) at `issued` is refused when the shared state that
    /// could vouch for it was lost since (an emptied Redis: fail closed until it expires).
    pub fn check_vouched(&self, issued: i64) -> Result<(), Refusal> {
        if issued < self.revocations.vouched_since() {
            return Err(Refusal::LostState);
        }
        Ok(())
    }

    /// Fail closed: a revocation store that cannot answer refuses the request (503), unless
    /// the operator let playback fail open — then this node's own knowledge decides.
    ///
    /// What this node knows is revoked stays revoked whatever the store answers: a shared
    /// store that lost data (Redis restarted without persistence, evicted, flushed) says
    /// "not revoked" for a token this node saw revoked.
    async fn check_revoked(&self, jti: &str) -> Result<(), Refusal> {
        match self.revocations.is_revoked(jti).await {
            Ok(false) if self.revocations.known_revoked(jti) => Err(Refusal::Revoked),
            Ok(false) => Ok(()),
            Ok(true) => Err(Refusal::Revoked),
            Err(e) => {
                self.fail_open_or_refuse(&e)?;
                if self.revocations.known_revoked(jti) {
                    return Err(Refusal::Revoked);
                }
                Ok(())
            }
        }
    }

    /// A store error: `Ok` when playback may fail open (counted, logged at debug), else the
    /// fail-closed refusal (a store that answered wrongly is never an "open").
    fn fail_open_or_refuse(&self, e: &crate::store::StoreError) -> Result<(), Refusal> {
        if self.fail_open && e.is_unavailable() {
            crate::metrics::REDIS_FALLBACKS
                .with_label_values(&["fail_open_playback"])
                .inc();
            tracing::debug!(error = %e, "gated playback admitted without the shared state (state.redis_fail_open)");
            return Ok(());
        }
        tracing::warn!(error = %e, "gated playback refused: shared state unavailable (fail closed)");
        Err(Refusal::Unavailable)
    }

    /// The shared store lost a revocation this node knows (it answered an entry load as if
    /// the token were not revoked): give back the use it just counted, and write the
    /// revocation back with this node's horizon, so that every node — those started after
    /// the loss too — refuses the token again. Telling that the whole store was emptied is
    /// the fleet's business; here the node only never contradicts what it knows.
    async fn restore_revocation(&self, jti: &str, counted: bool) {
        tracing::warn!(
            jti,
            "the shared state had lost a revocation this node knows (Redis restarted without \
             persistence, evicted or flushed?): entry load refused, revocation written back"
        );
        if counted {
            self.release(jti).await;
        }
        if let Some(horizon) = self.revocations.known_horizon(jti) {
            if let Err(e) = self.revocations.revoke(jti, horizon).await {
                tracing::warn!(jti, error = %e, "a lost revocation could not be written back");
            }
        }
    }

    /// The full admission of a request for gated media of `content`.
    pub async fn admit(
        &self,
        cfg: &StreamingConfig,
        content: &Content,
        req: &MediaRequest<'_>,
        now: i64,
    ) -> Result<Admission, Refusal> {
        match req.presented {
            Presented::Credential(c) => self.admit_credential(content, req, c, now).await,
            Presented::Token(t) => self.admit_token(cfg, content, req, t, now).await,
            Presented::Nothing => Err(Refusal::Missing),
        }
    }

    async fn admit_token(
        &self,
        cfg: &StreamingConfig,
        content: &Content,
        req: &MediaRequest<'_>,
        token: &str,
        now: i64,
    ) -> Result<Admission, Refusal> {
        let claims = self.verify(token, now)?;
        let issued_for = cfg
            .content(&claims.content_id)
            .ok_or(Refusal::ContentNotFound)?;
        if let Err(lost) = self.check_vouched(claims.iat) {
            // A revocation this node knows is still written back, for nodes that do not know
            // the loss yet (one started after it may have taken the new epoch for a new fleet).
            if self.revocations.known_revoked(&claims.jti) {
                self.restore_revocation(&claims.jti, false).await;
                return Err(Refusal::Revoked);
            }
            return Err(lost);
        }
        // The checks that need no state, in the document's order after revocation.
        let local = if issued_for.hash != content.hash {
            Err(Refusal::Invalid)
        } else if req.rest != content.entry {
            Err(Refusal::NotEntry)
        } else {
            check_token_binding(&claims, req)
        };
        let ip = match local {
            Ok(ip) => ip,
            Err(refusal) => {
                // Revocation is answered first, as it always was.
                self.check_revoked(&claims.jti).await?;
                return Err(refusal);
            }
        };
        // Revocation and use count in one step: one round trip on a shared store.
        let reserve = req.spend == Spend::Reserve;
        let outcome = self
            .uses
            .admit_entry(
                self.revocations.as_ref(),
                &claims.jti,
                claims.max_uses,
                cfg.use_count_horizon(claims.exp),
                reserve,
            )
            .await;
        let reserved = match outcome {
            Ok(EntryOutcome::Revoked) => return Err(Refusal::Revoked),
            // The store says "not revoked", this node knows better: never a new playback.
            Ok(other) if self.revocations.known_revoked(&claims.jti) => {
                let counted = other == EntryOutcome::Admitted && reserve;
                self.restore_revocation(&claims.jti, counted).await;
                return Err(Refusal::Revoked);
            }
            Ok(EntryOutcome::Admitted) => reserve,
            Ok(EntryOutcome::Exhausted) => return Err(Refusal::MaxUses),
            Err(e) => {
                // Failing open admits without counting: there is nowhere to count.
                self.fail_open_or_refuse(&e)?;
                if self.revocations.known_revoked(&claims.jti) {
                    return Err(Refusal::Revoked);
                }
                false
            }
        };
        Ok(Admission {
            reserved: reserved.then(|| claims.jti.clone()),
            playback: PlaybackClaims {
                version: 2,
                playback_id: new_playback_id(),
                jti: claims.jti,
                dir: content.hash.clone(),
                ip: ip.to_string(),
                device: claims.device_id,
                start: now,
                exp: now.saturating_add(cfg.playback_max_secs),
                quality: Quality::limit(&claims.quality).map(|q| q.label().to_string()),
            },
        })
    }

    async fn admit_credential(
        &self,
        content: &Content,
        req: &MediaRequest<'_>,
        text: &str,
        now: i64,
    ) -> Result<Admission, Refusal> {
        let key = self.playback.as_ref().ok_or(Refusal::BadCredential)?;
        let claims = key.verify(text, now).map_err(|e| match e {
            CredentialError::Expired => Refusal::Expired,
            CredentialError::Invalid(_) => Refusal::BadCredential,
        })?;
        if claims.dir != content.hash {
            return Err(Refusal::BadCredential);
        }
        self.check_vouched(claims.start)?;
        self.check_revoked(&claims.jti).await?;
        let bound: IpAddr = claims.ip.parse().map_err(|_| Refusal::BadCredential)?;
        if canonical_ip(bound) != canonical_ip(req.client_ip) {
            return Err(Refusal::IpMismatch);
        }
        // Players need not repeat the header (browsers would preflight every segment), but
        // a request announcing another device is not this playback's.
        if let Some(dev) = req.device_id {
            if !claims.device.is_empty() && dev != claims.device {
                return Err(Refusal::DeviceMismatch);
            }
        }
        // A quality ceiling: the object must be one the playback's own playlists listed.
        if claims.quality.is_some() && !key.proves(text, req.rest, req.proof) {
            return Err(Refusal::OutOfScope);
        }
        Ok(Admission {
            reserved: None,
            playback: claims,
        })
    }

    /// Give back a use reserved by [`Self::admit`] (the answer was not a success). A store
    /// that cannot answer keeps the use spent (the safe side).
    pub async fn release(&self, jti: &str) {
        if let Err(e) = self.uses.release(jti).await {
            tracing::warn!(error = %e, "a reserved use could not be given back");
        }
    }
}

/// What a gated request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    Credential(&'a str),
    Token(&'a str),
    Nothing,
}

/// Whether an admitted entry load spends a use now or only checks one is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// `GET`: reserve a use (given back if the answer fails).
    Reserve,
    /// `HEAD`: spends nothing.
    CheckOnly,
}

/// A request for gated media, in canonical form.
#[derive(Debug, Clone)]
pub struct MediaRequest<'a> {
    /// The decoded path below `/stream/{hash}/`.
    pub rest: &'a str,
    pub kind: MediaKind,
    pub presented: Presented<'a>,
    pub client_ip: IpAddr,
    /// `X-Device-Id`, when sent.
    pub device_id: Option<&'a str>,
    pub spend: Spend,
    /// The object proof shown with a credential (`ps=`, or a template proof).
    pub proof: &'a ObjectProof,
}

/// An admitted request: what the edge needs to finish it.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The `jti` whose use was reserved, to give back if the answer fails.
    pub reserved: Option<String>,
    /// The playback this request belongs to: credentials in the playlist it returns are
    /// minted from it.
    pub playback: PlaybackClaims,
}

/// IP and device binding of a stream token on its entry load; the bound address.
pub fn check_token_binding(
    claims: &StreamClaims,
    req: &MediaRequest<'_>,
) -> Result<IpAddr, Refusal> {
    let bound = claims
        .ip_address
        .parse::<IpAddr>()
        .map(canonical_ip)
        .map_err(|_| Refusal::IpMismatch)?;
    if bound != canonical_ip(req.client_ip) {
        return Err(Refusal::IpMismatch);
    }
    // A token minted for a device opens nothing without that device's header.
    if !claims.device_id.is_empty() && req.device_id != Some(claims.device_id.as_str()) {
        return Err(Refusal::DeviceMismatch);
    }
    Ok(bound)
}

/// What a gated media request presents: the playback credential (`pc=`), else the stream
/// token (query `token=`, then cookie `stream_token=`). Query parameters are decoded
/// (`form_urlencoded`); the first occurrence of a name counts.
pub fn presented<'a>(query: Option<&'a str>, cookies: Option<&'a str>) -> PresentedOwned {
    let mut pc = None;
    let mut token = None;
    if let Some(q) = query {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            match k.as_ref() {
                "pc" if pc.is_none() => pc = Some(v.into_owned()),
                "token" if token.is_none() => token = Some(v.into_owned()),
                _ => {}
            }
        }
    }
    if token.is_none() {
        token = cookies.and_then(|c| {
            c.split(';')
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| *k == "stream_token")
                .map(|(_, v)| v.trim_matches('"').to_string())
        });
    }
    match (
        pc.filter(|p| !p.is_empty()),
        token.filter(|t| !t.is_empty()),
    ) {
        (Some(p), _) => PresentedOwned::Credential(p),
        (None, Some(t)) => PresentedOwned::Token(t),
        (None, None) => PresentedOwned::Nothing,
    }
}

/// [`presented`]'s answer, owning the decoded text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresentedOwned {
    Credential(String),
    Token(String),
    Nothing,
}

impl PresentedOwned {
    pub fn as_ref(&self) -> Presented<'_> {
        match self {
            PresentedOwned::Credential(c) => Presented::Credential(c),
            PresentedOwned::Token(t) => Presented::Token(t),
            PresentedOwned::Nothing => Presented::Nothing,
        }
    }
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

    fn req<'a>(ip: &str, dev: Option<&'a str>) -> MediaRequest<'a> {
        MediaRequest {
            rest: "master.m3u8",
            kind: MediaKind::HlsPlaylist,
            presented: Presented::Token("t"),
            client_ip: ip.parse().unwrap(),
            device_id: dev,
            spend: Spend::Reserve,
            proof: &ObjectProof::None,
        }
    }

    fn claims(device: &str) -> StreamClaims {
        new_claims(
            "u",
            "c1",
            "MOVIE",
            "auto",
            device,
            "p",
            "192.0.2.1".parse().unwrap(),
            5,
            60,
            0,
        )
    }

    #[test]
    fn bindings() {
        let c = claims("dev-1");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            check_token_binding(&c, &req("192.0.2.1", Some("dev-1"))),
            Ok(ip)
        );
        assert_eq!(
            check_token_binding(&c, &req("::ffff:192.0.2.1", Some("dev-1"))),
            Ok(ip)
        );
        assert_eq!(
            check_token_binding(&c, &req("192.0.2.2", Some("dev-1"))),
            Err(Refusal::IpMismatch)
        );
        assert_eq!(
            check_token_binding(&c, &req("192.0.2.1", Some("dev-2"))),
            Err(Refusal::DeviceMismatch)
        );
        // Bound to a device: the header is required.
        assert_eq!(
            check_token_binding(&c, &req("192.0.2.1", None)),
            Err(Refusal::DeviceMismatch)
        );
        // Not bound: any header, or none.
        let free = claims("");
        assert_eq!(check_token_binding(&free, &req("192.0.2.1", None)), Ok(ip));
        assert_eq!(
            check_token_binding(&free, &req("192.0.2.1", Some("x"))),
            Ok(ip)
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
            (Refusal::LostState, 410, "Token revoked"),
        ] {
            assert_eq!((r.status().as_u16(), r.message()), (code, msg));
        }
    }

    #[test]
    fn what_a_request_presents() {
        use PresentedOwned::*;
        assert_eq!(presented(Some("a=1&token=abc"), None), Token("abc".into()));
        assert_eq!(
            presented(Some("a=1"), Some("x=1; stream_token=def")),
            Token("def".into())
        );
        assert_eq!(presented(Some("token=a%2Eb"), None), Token("a.b".into()));
        assert_eq!(
            presented(Some("token=t&pc=c"), None),
            Credential("c".into())
        );
        assert_eq!(presented(Some("token="), None), Nothing);
        assert_eq!(presented(None, None), Nothing);
        assert_eq!(iso_millis(1_736_937_000), "2025-01-15T10:30:00.000Z");
    }
}

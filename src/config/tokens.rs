//! Configuration of the token surfaces: the KEK keyring (`kek:`), key delivery
//! (`key_delivery:`, playback-api), stream tokens and their contents (`streaming:`,
//! stream-token-api) and the signed-channel catalog (`signed_channels:`, signed-channel-api).
//!
//! Same two layers as the rest of [`super`]: [`file`] mirrors the YAML, [`validate`] turns it
//! into [`AccessConfig`], with errors naming file, line and key. Secrets are read here, once,
//! from the environment (`*_env` keys, or `${NAME}` expansion in a `secret:` value) and never
//! appear in `Debug` output. ClearKey keys written as "v2" envelopes are unsealed here with the
//! keyring, so a config file can be committed without its keys in clear.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{ConfigError, Validator};
use crate::crypto::{Kek, Keyring, Sealed};

/// The document's quality list (stream-token-api "Qualites disponibles").
pub const QUALITIES: [&str; 5] = ["auto", "480p", "720p", "1080p", "4k"];
/// A concrete quality of the document's list, ordered `480p < 720p < 1080p < 4k` (`auto`, the
/// adaptive choice, is no tier: it means "no limit").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QualityTier {
    P480,
    P720,
    P1080,
    K4,
}

impl QualityTier {
    pub const ALL: [QualityTier; 4] = [
        QualityTier::P480,
        QualityTier::P720,
        QualityTier::P1080,
        QualityTier::K4,
    ];

    /// The tier a quality names (ASCII case ignored); `None` for `auto` and anything else.
    pub fn parse(s: &str) -> Option<QualityTier> {
        QualityTier::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }

    /// The document's spelling (`480p`, `720p`, `1080p`, `4k`).
    pub fn as_str(self) -> &'static str {
        match self {
            QualityTier::P480 => "480p",
            QualityTier::P720 => "720p",
            QualityTier::P1080 => "1080p",
            QualityTier::K4 => "4k",
        }
    }
}

/// `streaming.jwt.plan_qualities`: the quality ceiling of each subscription plan.
///
/// Plan names are kept trimmed and lowercase, and looked up the same way: an identity
/// provider writing `Premium` and a config writing `premium` mean one plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanQualities {
    plans: BTreeMap<String, QualityTier>,
    default: Option<QualityTier>,
}

impl PlanQualities {
    /// The ceiling of `plan` (`None`: no plan name, e.g. a `true` or list claim): its own
    /// entry, else the `default` entry, else no ceiling.
    pub fn ceiling(&self, plan: Option<&str>) -> Option<QualityTier> {
        plan.and_then(|p| self.plans.get(&p.trim().to_ascii_lowercase()))
            .copied()
            .or(self.default)
    }
}

/// The DRM systems of stream-token-api's DRM table.
pub const DRM_TYPES: [&str; 3] = ["widevine", "playready", "fairplay"];
/// Shortest secret accepted for an HMAC key.
pub const MIN_SECRET_LEN: usize = 16;

/// The YAML shape of the token sections.
pub mod file {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Default, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Kek {
        /// The KEK new records are sealed with.
        pub current: Option<KekRef>,
        /// KEKs still accepted to open older records (until `sluice keys rotate-kek`).
        pub previous: Vec<KekRef>,
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct KekRef {
        pub id: String,
        /// Environment variable holding 64 hex characters or base64 of 32 bytes.
        pub env: String,
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct KeyDelivery {
        pub secret: Option<String>,
        pub secret_env: Option<String>,
        /// Requests per minute on `GET /api/key/{hash}`.
        pub rate_limit: u32,
        /// `token` (the bearer token, else the client IP) or `ip`.
        pub rate_limit_key: String,
    }

    impl Default for KeyDelivery {
        fn default() -> Self {
            KeyDelivery {
                secret: None,
                secret_env: None,
                rate_limit: 120,
                rate_limit_key: "token".into(),
            }
        }
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Streaming {
        pub secret: Option<String>,
        pub secret_env: Option<String>,
        #[serde(with = "humantime_serde")]
        pub token_ttl: Duration,
        pub max_uses: u32,
        #[serde(with = "humantime_serde")]
        pub leeway: Duration,
        pub public_base_url: Option<String>,
        pub stream_path: String,
        #[serde(with = "humantime_serde")]
        pub license_timeout: Duration,
        pub jwt: StreamingJwt,
        pub contents: Vec<Content>,
        /// How long a started playback may go on (its credential's life from the start).
        #[serde(with = "humantime_serde")]
        pub playback_max: Duration,
    }

    impl Default for Streaming {
        fn default() -> Self {
            Streaming {
                secret: None,
                secret_env: None,
                token_ttl: Duration::from_secs(3600),
                max_uses: 5,
                leeway: Duration::ZERO,
                public_base_url: None,
                stream_path: "/stream/{hash}/master.m3u8".into(),
                license_timeout: Duration::from_secs(10),
                jwt: StreamingJwt::default(),
                contents: Vec::new(),
                playback_max: Duration::from_secs(6 * 3600),
            }
        }
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct StreamingJwt {
        pub secret: Option<String>,
        pub secret_env: Option<String>,
        pub issuer: Option<String>,
        pub audience: Option<String>,
        #[serde(with = "humantime_serde")]
        pub leeway: Duration,
        pub entitlement_claim: String,
        /// Plan value of the entitlement claim → quality ceiling (`default`: any other plan).
        pub plan_qualities: BTreeMap<String, String>,
    }

    impl Default for StreamingJwt {
        fn default() -> Self {
            StreamingJwt {
                secret: None,
                secret_env: None,
                issuer: None,
                audience: None,
                leeway: Duration::ZERO,
                entitlement_claim: "subscription".into(),
                plan_qualities: BTreeMap::new(),
            }
        }
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Content {
        pub id: String,
        #[serde(rename = "type", default = "movie")]
        pub content_type: String,
        pub hash: String,
        #[serde(default)]
        pub qualities: Option<Vec<String>>,
        #[serde(default)]
        pub subscription_required: bool,
        #[serde(default)]
        pub token_required: bool,
        #[serde(default)]
        pub max_uses: Option<u32>,
        #[serde(default)]
        pub drm: BTreeMap<String, DrmServer>,
        /// The entry playlist below `/stream/{hash}/` (default: from `streaming.stream_path`).
        #[serde(default)]
        pub entry: Option<String>,
    }

    fn movie() -> String {
        "MOVIE".into()
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct DrmServer {
        pub url: String,
        #[serde(default)]
        pub headers: BTreeMap<String, String>,
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct SignedChannels {
        pub secret: Option<String>,
        pub secret_env: Option<String>,
        #[serde(with = "humantime_serde")]
        pub skew: Duration,
        pub channels: Vec<Channel>,
        pub matches: Vec<Match>,
    }

    impl Default for SignedChannels {
        fn default() -> Self {
            SignedChannels {
                secret: None,
                secret_env: None,
                skew: Duration::from_secs(300),
                channels: Vec::new(),
                matches: Vec::new(),
            }
        }
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Channel {
        pub key: String,
        pub name: String,
        pub url: String,
        #[serde(rename = "type", default = "hls")]
        pub kind: String,
        #[serde(default = "none")]
        pub drm: String,
        /// ClearKey `kid → key`: 32 hex characters each, the key either plain hex (dev) or a
        /// "v2" envelope from `sluice secret seal-clearkey`.
        #[serde(default)]
        pub keys: BTreeMap<String, String>,
    }

    fn hls() -> String {
        "hls".into()
    }
    fn none() -> String {
        "none".into()
    }

    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Match {
        pub id: String,
        pub title: String,
        /// `upcoming` or `live`; derived from `start`/`end` when absent.
        #[serde(default)]
        pub status: Option<String>,
        /// RFC 3339.
        #[serde(default)]
        pub start: Option<String>,
        #[serde(default)]
        pub end: Option<String>,
        #[serde(default)]
        pub channels: Vec<String>,
    }
}

/// A secret read from config or the environment; zeroed on drop, never printed.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Everything the token surfaces and the edge gate are configured with.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// `None` when `kek.current` is not configured: content keys can be neither imported
    /// nor served (a 500 on `/api/key`), and sealed ClearKey keys are refused at load.
    pub keyring: Option<Keyring>,
    pub key_delivery: KeyDeliveryConfig,
    pub streaming: StreamingConfig,
    pub channels: ChannelsConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateKey {
    /// The bearer token when one is sent, else the client IP (playback-api's default).
    #[default]
    Token,
    Ip,
}

#[derive(Debug, Clone)]
pub struct KeyDeliveryConfig {
    /// `None`: every key token is refused (fail closed).
    pub secret: Option<Secret>,
    pub rate_limit: u32,
    pub rate_limit_key: RateKey,
}

impl Default for KeyDeliveryConfig {
    fn default() -> Self {
        KeyDeliveryConfig {
            secret: None,
            rate_limit: 120,
            rate_limit_key: RateKey::Token,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StreamingConfig {
    /// HS256 secret of stream tokens; `None` disables issuing (and every gated path is 401).
    pub secret: Option<Secret>,
    pub token_ttl: Duration,
    pub max_uses: u32,
    pub leeway_secs: u32,
    /// `scheme://host[:port]` without a trailing slash; `None`: the request's `Host`.
    pub public_base_url: Option<String>,
    /// Contains `{hash}`.
    pub stream_path: String,
    pub license_timeout: Duration,
    pub jwt: Option<StreamingJwtConfig>,
    pub entitlement_claim: String,
    /// Quality ceilings by the entitlement claim's plan value (user JWTs only).
    pub plan_qualities: PlanQualities,
    pub contents: Vec<Content>,
    /// `contents` by ASCII-lowercased hash, built once at load ([`HashIndex::of`]).
    by_hash: HashIndex,
    /// Seconds a playback may run after its entry load (the credential's life).
    pub playback_max_secs: i64,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            secret: None,
            token_ttl: Duration::from_secs(3600),
            max_uses: 5,
            leeway_secs: 0,
            public_base_url: None,
            stream_path: "/stream/{hash}/master.m3u8".into(),
            license_timeout: Duration::from_secs(10),
            jwt: None,
            entitlement_claim: "subscription".into(),
            plan_qualities: PlanQualities::default(),
            contents: Vec::new(),
            by_hash: HashIndex::default(),
            playback_max_secs: 6 * 3600,
        }
    }
}

impl StreamingConfig {
    pub fn content(&self, id: &str) -> Option<&Content> {
        self.contents.iter().find(|c| c.id == id)
    }

    /// The content a bucket directory holds. Compared without ASCII case: on an origin that
    /// ignores case (some object stores and CDNs do), `MOVIE-1` *is* `movie-1`, and a
    /// spelling must never be a way around the gate. Hashes equal without ASCII case are
    /// refused at load, so every spelling has exactly one answer; what is fetched is the
    /// answer's configured `hash` (buckets are case-sensitive).
    pub fn content_by_hash(&self, hash: &str) -> Option<&Content> {
        self.by_hash.get(hash).and_then(|i| self.contents.get(i))
    }

    /// How long a use count must be kept: tokens are accepted until `exp + leeway`.
    pub fn use_count_horizon(&self, exp: i64) -> i64 {
        exp.saturating_add(i64::from(self.leeway_secs))
    }

    /// How long after a token's `exp` a playback credential minted for it may still be used
    /// under this config: the token opens entry loads until `exp + leeway`, and each
    /// credential lives `playback_max` from its entry load.
    pub fn credential_reach(&self) -> i64 {
        i64::from(self.leeway_secs).saturating_add(self.playback_max_secs)
    }

    /// How long a revocation must be kept for a token expiring at `exp`: until the last
    /// credential minted for it has expired. `reach_hwm` is the largest
    /// [`Self::credential_reach`] the state has run with
    /// ([`crate::store::revocations::RevocationStore::credential_reach`]): a credential
    /// minted before the operator lowered `playback_max` or `leeway` and restarted lives by
    /// the longer values, so the current config alone would purge its revocation too early.
    pub fn revocation_horizon(&self, exp: i64, reach_hwm: i64) -> i64 {
        exp.saturating_add(self.credential_reach().max(reach_hwm))
    }

    /// The `streamUrl` path of a content: `/stream/{hash}/{entry}`.
    pub fn entry_url_path(&self, content: &Content) -> String {
        format!(
            "/stream/{}/{}",
            content.hash,
            crate::media::path::encode_segments(
                &content
                    .entry
                    .split('/')
                    .map(String::from)
                    .collect::<Vec<_>>()
            )
        )
    }
}

#[derive(Debug, Clone)]
pub struct StreamingJwtConfig {
    pub secret: Secret,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_secs: u32,
}

/// One playable content of the stream-token surface.
#[derive(Debug, Clone)]
pub struct Content {
    pub id: String,
    /// As configured (e.g. `MOVIE`); compared case-insensitively with requests.
    pub content_type: String,
    /// The media hash under `/stream/`.
    pub hash: String,
    /// Lowercase, each one of [`QUALITIES`].
    pub qualities: Vec<String>,
    pub subscription_required: bool,
    pub token_required: bool,
    pub max_uses: u32,
    /// Lowercase DRM type → license server.
    pub drm: BTreeMap<String, DrmServer>,
    /// The entry playlist, decoded, below `/stream/{hash}/` (`master.m3u8`): the one object a
    /// stream token opens, and whose load spends a use.
    pub entry: String,
}

/// Positions in `streaming.contents` by ASCII-lowercased hash: the one canonical lookup of a
/// `/stream/{hash}` spelling.
#[derive(Debug, Clone, Default)]
struct HashIndex(HashMap<String, usize>);

impl HashIndex {
    /// The index of `contents`, whose hashes are unique without ASCII case (validated).
    fn of(contents: &[Content]) -> HashIndex {
        HashIndex(
            contents
                .iter()
                .enumerate()
                .map(|(i, c)| (c.hash.to_ascii_lowercase(), i))
                .collect(),
        )
    }

    fn get(&self, hash: &str) -> Option<usize> {
        self.0.get(&hash.to_ascii_lowercase()).copied()
    }
}

#[derive(Clone)]
pub struct DrmServer {
    pub url: String,
    /// Sent with every license request; values may be credentials, so `Debug` shows names only.
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for DrmServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("DrmServer")
            .field("url", &self.url)
            .field("headers", &names)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct ChannelsConfig {
    pub secret: Option<Secret>,
    pub skew_secs: i64,
    pub channels: Vec<Channel>,
    pub matches: Vec<Match>,
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        ChannelsConfig {
            secret: None,
            skew_secs: 300,
            channels: Vec::new(),
            matches: Vec::new(),
        }
    }
}

#[derive(Clone)]
pub struct Channel {
    pub key: String,
    pub name: String,
    pub url: String,
    /// `hls` or `dash`.
    pub kind: String,
    /// `none`, `clearkey`, `widevine`, `playready` or `fairplay`.
    pub drm: String,
    /// ClearKey `kid → key`, lowercase hex, unsealed.
    pub keys: Vec<(String, Zeroizing<String>)>,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("key", &self.key)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("drm", &self.drm)
            .field("keys", &self.keys.len())
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Match {
    pub id: String,
    pub title: String,
    pub status: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub channels: Vec<String>,
}

/// The raw token sections, taken out of the file struct before the main validation.
#[derive(Debug, Default)]
pub struct AccessFile {
    pub kek: file::Kek,
    pub key_delivery: file::KeyDelivery,
    pub streaming: file::Streaming,
    pub signed_channels: file::SignedChannels,
}

impl AccessFile {
    pub fn take(raw: &mut super::file::ConfigFile) -> AccessFile {
        AccessFile {
            kek: std::mem::take(&mut raw.kek),
            key_delivery: std::mem::take(&mut raw.key_delivery),
            streaming: std::mem::take(&mut raw.streaming),
            signed_channels: std::mem::take(&mut raw.signed_channels),
        }
    }
}

impl Validator<'_> {
    /// An error on `field` of the list entry of `list` (last key element) whose identifying
    /// line contains `ident`: the line is the field's, else the entry's.
    fn entry_err(
        &self,
        list: &str,
        ident: &str,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let lines: Vec<&str> = self.text.lines().collect();
        let list_line = self.line_of(list);
        let entry = lines
            .iter()
            .enumerate()
            .skip(list_line)
            .find(|(_, l)| !ident.is_empty() && l.contains(ident))
            .map(|(i, _)| i);
        let line = match entry {
            Some(e) => {
                let needle = format!("{field}:");
                lines
                    .iter()
                    .enumerate()
                    .skip(e)
                    .take(40)
                    .find(|(_, l)| l.trim_start().trim_start_matches("- ").starts_with(&needle))
                    .map(|(i, _)| i + 1)
                    .unwrap_or(e + 1)
            }
            None => list_line,
        };
        ConfigError::Invalid {
            file: self.file.into(),
            line,
            key: format!("{list}[{ident}].{field}"),
            message: message.into(),
        }
    }

    /// `secret:` (literal, usually `${VAR}`), `secret_env:` (a variable name), or neither
    /// (then `default_env`, when set). An explicitly named variable must exist.
    fn secret(
        &self,
        section: &str,
        literal: Option<String>,
        env_name: Option<String>,
        default_env: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, ConfigError> {
        let value = match (literal, env_name) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    &format!("{section}.secret_env"),
                    "set either secret or secret_env, not both",
                ))
            }
            (Some(s), None) => Some((s, format!("{section}.secret"))),
            (None, Some(name)) => {
                let v = env(&name).ok_or_else(|| {
                    self.err(
                        &format!("{section}.secret_env"),
                        format!("environment variable `{name}` is not set"),
                    )
                })?;
                Some((v, format!("{section}.secret_env")))
            }
            (None, None) => env(default_env)
                .filter(|v| !v.is_empty())
                .map(|v| (v, format!("{section}.secret_env (default {default_env})"))),
        };
        match value {
            None => Ok(None),
            Some((v, key)) => {
                if v.len() < MIN_SECRET_LEN {
                    return Err(self.err(
                        &key,
                        format!("secret must be at least {MIN_SECRET_LEN} bytes"),
                    ));
                }
                Ok(Some(Secret::new(v.into_bytes())))
            }
        }
    }
}

/// Validate the token sections. `env` resolves `*_env` keys (as `${NAME}` is resolved).
pub(super) fn validate(
    v: &Validator<'_>,
    raw: AccessFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AccessConfig, ConfigError> {
    let keyring = keyring(v, raw.kek, env)?;
    let key_delivery = key_delivery(v, raw.key_delivery, env)?;
    let streaming = streaming(v, raw.streaming, env)?;
    let channels = signed_channels(v, raw.signed_channels, keyring.as_ref(), env)?;
    Ok(AccessConfig {
        keyring,
        key_delivery,
        streaming,
        channels,
    })
}

fn keyring(
    v: &Validator<'_>,
    raw: file::Kek,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Keyring>, ConfigError> {
    let Some(current) = raw.current else {
        if !raw.previous.is_empty() {
            return Err(v.err("kek.current", "previous KEKs need a current one"));
        }
        return Ok(None);
    };
    let load = |key: &str, r: &file::KekRef| -> Result<Kek, ConfigError> {
        let material = env(&r.env)
            .ok_or_else(|| v.err(key, format!("environment variable `{}` is not set", r.env)))?;
        Kek::parse(&r.id, &material).map_err(|e| v.err(key, e.to_string()))
    };
    let cur = load("kek.current.env", &current)?;
    let mut previous = Vec::new();
    for p in &raw.previous {
        previous.push(load("kek.previous.env", p)?);
    }
    Keyring::new(cur, previous)
        .map(Some)
        .map_err(|e| v.err("kek.previous", e.to_string()))
}

fn key_delivery(
    v: &Validator<'_>,
    raw: file::KeyDelivery,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<KeyDeliveryConfig, ConfigError> {
    let secret = v.secret(
        "key_delivery",
        raw.secret,
        raw.secret_env,
        "KEY_TOKEN_SECRET",
        env,
    )?;
    if raw.rate_limit == 0 {
        return Err(v.err(
            "key_delivery.rate_limit",
            "must be at least 1 request per minute",
        ));
    }
    let rate_limit_key = match raw.rate_limit_key.as_str() {
        "token" => RateKey::Token,
        "ip" => RateKey::Ip,
        other => {
            return Err(v.err(
                "key_delivery.rate_limit_key",
                format!("`{other}`: use token or ip"),
            ))
        }
    };
    Ok(KeyDeliveryConfig {
        secret,
        rate_limit: raw.rate_limit,
        rate_limit_key,
    })
}

/// Media hashes and stream ids share one character set: they end up in URLs and bucket paths.
use crate::media::valid_hash;

fn http_url(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("`{s}`: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!("`{s}` is not an http(s) URL"));
    }
    Ok(u)
}

fn streaming(
    v: &Validator<'_>,
    raw: file::Streaming,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<StreamingConfig, ConfigError> {
    let secret = v.secret(
        "streaming",
        raw.secret,
        raw.secret_env,
        "STREAM_TOKEN_SECRET",
        env,
    )?;
    let ttl = raw.token_ttl.as_secs();
    if !(1..=3600).contains(&ttl) {
        return Err(v.err(
            "streaming.token_ttl",
            "must be between 1s and 1h (stream tokens live at most one hour)",
        ));
    }
    if raw.max_uses == 0 {
        return Err(v.err("streaming.max_uses", "must be at least 1"));
    }
    if raw.leeway > Duration::from_secs(60) {
        return Err(v.err("streaming.leeway", "must be at most 60s"));
    }
    let public_base_url = match raw.public_base_url {
        None => None,
        Some(s) => {
            let u = http_url(&s).map_err(|m| v.err("streaming.public_base_url", m))?;
            if u.query().is_some() || u.fragment().is_some() {
                return Err(v.err("streaming.public_base_url", "takes no query or fragment"));
            }
            Some(s.trim_end_matches('/').to_string())
        }
    };
    // The entry every content defaults to: what follows `/stream/{hash}/`, canonical.
    let default_entry = raw
        .stream_path
        .strip_prefix("/stream/{hash}/")
        .ok_or_else(|| {
            v.err(
                "streaming.stream_path",
                "must be /stream/{hash}/<entry playlist> (e.g. /stream/{hash}/master.m3u8)",
            )
        })
        .and_then(|rest| canonical_entry(rest).map_err(|m| v.err("streaming.stream_path", m)))?;
    let playback_max = raw.playback_max.as_secs();
    if !(60..=7 * 86400).contains(&playback_max) {
        return Err(v.err("streaming.playback_max", "must be between 1m and 7d"));
    }
    if raw.license_timeout.is_zero() {
        return Err(v.err("streaming.license_timeout", "must be above zero"));
    }
    let j = raw.jwt;
    let jwt_secret = v.secret(
        "streaming.jwt",
        j.secret,
        j.secret_env,
        "STREAMING_JWT_SECRET",
        env,
    )?;
    if j.leeway > Duration::from_secs(300) {
        return Err(v.err("streaming.jwt.leeway", "must be at most 300s"));
    }
    if j.entitlement_claim.is_empty() {
        return Err(v.err("streaming.jwt.entitlement_claim", "must be a claim name"));
    }
    let plan_qualities = plan_qualities(v, j.plan_qualities)?;
    let jwt = jwt_secret.map(|secret| StreamingJwtConfig {
        secret,
        issuer: j.issuer,
        audience: j.audience,
        leeway_secs: j.leeway.as_secs() as u32,
    });

    let mut contents = Vec::new();
    // Ids and hashes are unique without ASCII case: the gate resolves every spelling of a
    // hash to one content, so `Movie-1` and `movie-1` cannot be two contents.
    let (mut ids, mut hashes) = (HashMap::new(), HashMap::new());
    for c in raw.contents {
        let list = "streaming.contents";
        if c.id.is_empty() || c.id.len() > 128 || c.id.chars().any(char::is_control) {
            return Err(v.entry_err(list, &c.id, "id", "must be 1 to 128 printable characters"));
        }
        if let Some(other) = ids.insert(c.id.to_ascii_lowercase(), c.id.clone()) {
            return Err(v.entry_err(
                list,
                &c.id,
                "id",
                format!(
                    "`{}` appears twice (ids are compared without ASCII case: `{other}` is taken)",
                    c.id
                ),
            ));
        }
        if !valid_hash(&c.hash) {
            return Err(v.entry_err(
                list,
                &c.id,
                "hash",
                "1 to 128 of A-Z a-z 0-9 - _ . (not starting with .)",
            ));
        }
        if let Some(other) = hashes.insert(c.hash.to_ascii_lowercase(), c.id.clone()) {
            return Err(v.entry_err(
                list,
                &c.id,
                "hash",
                format!(
                    "`{}` is the hash of content `{other}` (hashes are compared without ASCII case)",
                    c.hash
                ),
            ));
        }
        if c.content_type.is_empty() {
            return Err(v.entry_err(list, &c.id, "type", "must not be empty"));
        }
        let qualities: Vec<String> = match c.qualities {
            None => QUALITIES.iter().map(|q| q.to_string()).collect(),
            Some(qs) => {
                let mut out = Vec::new();
                for q in qs {
                    let q = q.to_ascii_lowercase();
                    if !QUALITIES.contains(&q.as_str()) {
                        return Err(v.entry_err(
                            list,
                            &c.id,
                            "qualities",
                            format!("`{q}`: use auto, 480p, 720p, 1080p or 4k"),
                        ));
                    }
                    out.push(q);
                }
                if out.is_empty() {
                    return Err(v.entry_err(list, &c.id, "qualities", "must not be empty"));
                }
                out
            }
        };
        if c.max_uses == Some(0) {
            return Err(v.entry_err(list, &c.id, "max_uses", "must be at least 1"));
        }
        let mut drm = BTreeMap::new();
        for (kind, server) in c.drm {
            let kind = kind.to_ascii_lowercase();
            if !DRM_TYPES.contains(&kind.as_str()) {
                return Err(v.entry_err(
                    list,
                    &c.id,
                    "drm",
                    format!("`{kind}`: use widevine, playready or fairplay"),
                ));
            }
            http_url(&server.url).map_err(|m| v.entry_err(list, &c.id, "url", m))?;
            let mut headers = Vec::new();
            for (name, value) in server.headers {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                    || http::HeaderValue::from_str(&value).is_err()
                {
                    return Err(v.entry_err(
                        list,
                        &c.id,
                        "headers",
                        format!("`{name}` is not a valid header"),
                    ));
                }
                headers.push((name, value));
            }
            drm.insert(
                kind,
                DrmServer {
                    url: server.url,
                    headers,
                },
            );
        }
        if c.token_required && secret.is_none() {
            return Err(v.entry_err(
                list,
                &c.id,
                "token_required",
                "needs a stream token secret (streaming.secret_env, default STREAM_TOKEN_SECRET)",
            ));
        }
        let entry = match &c.entry {
            None => default_entry.clone(),
            Some(e) => canonical_entry(e).map_err(|m| v.entry_err(list, &c.id, "entry", m))?,
        };
        contents.push(Content {
            entry,
            id: c.id,
            content_type: c.content_type,
            hash: c.hash,
            qualities,
            subscription_required: c.subscription_required,
            token_required: c.token_required,
            max_uses: c.max_uses.unwrap_or(raw.max_uses),
            drm,
        });
    }
    Ok(StreamingConfig {
        secret,
        token_ttl: raw.token_ttl,
        max_uses: raw.max_uses,
        leeway_secs: raw.leeway.as_secs() as u32,
        public_base_url,
        stream_path: raw.stream_path,
        license_timeout: raw.license_timeout,
        jwt,
        entitlement_claim: j.entitlement_claim,
        plan_qualities,
        by_hash: HashIndex::of(&contents),
        contents,
        playback_max_secs: playback_max as i64,
    })
}

/// `streaming.jwt.plan_qualities`: every value a concrete quality (`auto` is no ceiling: leave
/// the plan out instead), plan names non-empty and distinct without case.
fn plan_qualities(
    v: &Validator<'_>,
    raw: BTreeMap<String, String>,
) -> Result<PlanQualities, ConfigError> {
    let mut out = PlanQualities::default();
    for (name, quality) in raw {
        let key = format!("streaming.jwt.plan_qualities.{name}");
        let plan = name.trim().to_ascii_lowercase();
        if plan.is_empty() || plan.len() > 128 || plan.chars().any(char::is_control) {
            return Err(v.err(&key, "a plan name is 1 to 128 printable characters"));
        }
        let tier = QualityTier::parse(quality.trim()).ok_or_else(|| {
            v.err(
                &key,
                format!("`{quality}`: a ceiling is one of 480p, 720p, 1080p, 4k"),
            )
        })?;
        if plan == "default" {
            if out.default.replace(tier).is_some() {
                return Err(v.err(&key, "appears twice (plan names ignore case)"));
            }
        } else if out.plans.insert(plan, tier).is_some() {
            return Err(v.err(&key, "appears twice (plan names ignore case)"));
        }
    }
    Ok(out)
}

/// An entry path below `/stream/{hash}/`, decoded and validated exactly as a request's
/// path is, so the gate can compare canonical forms.
fn canonical_entry(rest: &str) -> Result<String, String> {
    let all: Vec<String> = crate::config::file::Stream::default().extensions;
    match crate::media::path::parse_stream_path(
        &format!("h/{}", rest.trim_start_matches('/')),
        &all,
    ) {
        Ok(p) if p.kind.is_manifest() => Ok(p.rest_joined()),
        Ok(_) => Err(format!("`{rest}` is not a playlist (.m3u8 or .mpd)")),
        Err(e) => Err(format!("`{rest}` is not a valid media path: {e:?}")),
    }
}

/// The associated data a ClearKey key is sealed with in the config file.
pub fn clearkey_aad(kid: &str) -> Vec<u8> {
    format!("clearkey:{kid}").into_bytes()
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn signed_channels(
    v: &Validator<'_>,
    raw: file::SignedChannels,
    keyring: Option<&Keyring>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ChannelsConfig, ConfigError> {
    let secret = v.secret(
        "signed_channels",
        raw.secret,
        raw.secret_env,
        "SIGNED_CHANNEL_SECRET",
        env,
    )?;
    let skew = raw.skew.as_secs();
    if !(1..=3600).contains(&skew) {
        return Err(v.err("signed_channels.skew", "must be between 1s and 1h"));
    }
    let list = "signed_channels.channels";
    let mut channels = Vec::new();
    let mut keys_seen = HashSet::new();
    for c in raw.channels {
        if c.key.is_empty()
            || c.key.len() > 64
            || !c
                .key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err(v.entry_err(list, &c.key, "key", "1 to 64 of A-Z a-z 0-9 - _"));
        }
        if !keys_seen.insert(c.key.clone()) {
            return Err(v.entry_err(list, &c.key, "key", "appears twice"));
        }
        if c.name.trim().is_empty() {
            return Err(v.entry_err(list, &c.key, "name", "must not be empty"));
        }
        http_url(&c.url).map_err(|m| v.entry_err(list, &c.key, "url", m))?;
        let kind = c.kind.to_ascii_lowercase();
        if !matches!(kind.as_str(), "hls" | "dash") {
            return Err(v.entry_err(list, &c.key, "type", "use hls or dash"));
        }
        let drm = c.drm.to_ascii_lowercase();
        if !matches!(
            drm.as_str(),
            "none" | "clearkey" | "widevine" | "playready" | "fairplay"
        ) {
            return Err(v.entry_err(
                list,
                &c.key,
                "drm",
                "use none, clearkey, widevine, playready or fairplay",
            ));
        }
        if drm != "clearkey" && !c.keys.is_empty() {
            return Err(v.entry_err(list, &c.key, "keys", "only a clearkey channel has keys"));
        }
        let mut keys = Vec::new();
        for (kid, key) in c.keys {
            let kid = kid.to_ascii_lowercase();
            if !is_hex32(&kid) {
                return Err(v.entry_err(list, &c.key, "keys", "a kid is 32 hex characters"));
            }
            let key = key.trim();
            let clear = if key.starts_with("v2:") {
                let ring = keyring.ok_or_else(|| {
                    v.entry_err(list, &c.key, "keys", "a sealed key needs kek.current")
                })?;
                let sealed = Sealed::from_envelope(key)
                    .map_err(|e| v.entry_err(list, &c.key, "keys", e.to_string()))?;
                let plain = ring
                    .open(&sealed, &clearkey_aad(&kid))
                    .map_err(|e| v.entry_err(list, &c.key, "keys", format!("kid {kid}: {e}")))?;
                Zeroizing::new(hex::encode(plain.as_slice()))
            } else if is_hex32(key) {
                Zeroizing::new(key.to_ascii_lowercase())
            } else {
                return Err(v.entry_err(
                    list,
                    &c.key,
                    "keys",
                    "a key is 32 hex characters or a v2 envelope",
                ));
            };
            if clear.len() != 32 {
                return Err(v.entry_err(list, &c.key, "keys", "a key is 16 bytes"));
            }
            keys.push((kid, clear));
        }
        channels.push(Channel {
            key: c.key,
            name: c.name,
            url: c.url,
            kind,
            drm,
            keys,
        });
    }
    let mlist = "signed_channels.matches";
    let mut matches = Vec::new();
    let mut ids = HashSet::new();
    for m in raw.matches {
        if m.id.is_empty() || !ids.insert(m.id.clone()) {
            return Err(v.entry_err(mlist, &m.id, "id", "must be non-empty and unique"));
        }
        let time = |field: &str, s: &Option<String>| -> Result<Option<i64>, ConfigError> {
            match s {
                None => Ok(None),
                Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                    .map(|t| Some(t.timestamp()))
                    .map_err(|_| {
                        v.entry_err(mlist, &m.id, field, format!("`{s}` is not RFC 3339"))
                    }),
            }
        };
        let start = time("start", &m.start)?;
        let end = time("end", &m.end)?;
        if let Some(s) = &m.status {
            if !matches!(s.as_str(), "upcoming" | "live") {
                return Err(v.entry_err(mlist, &m.id, "status", "use upcoming or live"));
            }
        }
        for ch in &m.channels {
            if !keys_seen.contains(ch) {
                return Err(v.entry_err(
                    mlist,
                    &m.id,
                    "channels",
                    format!("`{ch}` is not a configured channel"),
                ));
            }
        }
        matches.push(Match {
            id: m.id,
            title: m.title,
            status: m.status,
            start,
            end,
            channels: m.channels,
        });
    }
    Ok(ChannelsConfig {
        secret,
        skew_secs: skew as i64,
        channels,
        matches,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    const KEK_A: &str = "0000000000000000000000000000000000000000000000000000000000000001";

    fn parse_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_str_named(text, "t.yaml", &move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_without_sections() {
        let c = parse_env("", &[]).unwrap();
        let a = &c.access;
        assert!(a.keyring.is_none());
        assert!(a.key_delivery.secret.is_none());
        assert_eq!(a.key_delivery.rate_limit, 120);
        assert_eq!(a.streaming.max_uses, 5);
        assert_eq!(a.streaming.token_ttl.as_secs(), 3600);
        assert_eq!(a.channels.skew_secs, 300);
        // The documented default variables are picked up when set.
        let c = parse_env("", &[("KEY_TOKEN_SECRET", "0123456789abcdef0")]).unwrap();
        assert_eq!(
            c.access.key_delivery.secret.unwrap().as_bytes(),
            b"0123456789abcdef0"
        );
    }

    #[test]
    fn secrets_from_env_and_literal() {
        let c = parse_env(
            "key_delivery:\n  secret_env: MY_SECRET\n  rate_limit: 7\n  rate_limit_key: ip\n",
            &[("MY_SECRET", "a-long-enough-secret")],
        )
        .unwrap();
        assert_eq!(c.access.key_delivery.rate_limit, 7);
        assert_eq!(c.access.key_delivery.rate_limit_key, super::RateKey::Ip);
        assert!(!format!("{:?}", c.access).contains("a-long-enough-secret"));
        let e = parse_env("key_delivery:\n  secret_env: NOPE\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("key_delivery.secret_env") && e.contains("line 2"),
            "{e}"
        );
        let e = parse_env("streaming:\n  secret: short\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("streaming.secret") && e.contains("16"), "{e}");
    }

    #[test]
    fn contents_validated_with_entry_names() {
        let ok = "streaming:\n  secret: stream-secret-0123456789\n  contents:\n    - id: c1\n      type: MOVIE\n      hash: movie-1\n      qualities: [auto, 1080P]\n      token_required: true\n      drm:\n        widevine: {url: 'http://lic.example/wv', headers: {X-Key: abc}}\n";
        let c = parse_env(ok, &[]).unwrap();
        let content = c.access.streaming.content("c1").unwrap();
        assert_eq!(content.qualities, vec!["auto", "1080p"]);
        assert_eq!(content.max_uses, 5);
        assert!(content.drm.contains_key("widevine"));
        assert!(c.access.streaming.content_by_hash("movie-1").is_some());

        let bad = ok.replace("1080P", "8k");
        let e = parse_env(&bad, &[]).unwrap_err().to_string();
        assert!(
            e.contains("streaming.contents[c1].qualities") && e.contains("line 7"),
            "{e}"
        );
        let bad = ok.replace("hash: movie-1", "hash: ../x");
        let e = parse_env(&bad, &[]).unwrap_err().to_string();
        assert!(e.contains("[c1].hash") && e.contains("line 6"), "{e}");
        // A gated content without a signing secret would refuse everyone: refused at load.
        let bad = ok.replace("  secret: stream-secret-0123456789\n", "");
        let e = parse_env(&bad, &[]).unwrap_err().to_string();
        assert!(e.contains("token_required"), "{e}");
        let bad = ok.replace("widevine:", "clearkey:");
        assert!(parse_env(&bad, &[]).is_err());
        assert!(parse_env(&ok.replace("token_required", "token_requird"), &[]).is_err());
    }

    #[test]
    fn quality_tiers_are_ordered() {
        use super::QualityTier;
        let tiers: Vec<QualityTier> = ["480p", "720P", "1080p", "4K"]
            .iter()
            .map(|q| QualityTier::parse(q).unwrap())
            .collect();
        assert!(tiers.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(tiers, QualityTier::ALL);
        for q in ["auto", "", "8k", "720", " 720p"] {
            assert_eq!(QualityTier::parse(q), None, "{q}");
        }
    }

    #[test]
    fn plan_qualities_validated_and_looked_up() {
        use super::QualityTier::{K4, P480, P720};
        let base = "streaming:\n  jwt:\n    plan_qualities:\n      basic: 720p\n      Premium: 4K\n      default: 480p\n";
        let c = parse_env(base, &[]).unwrap();
        let p = &c.access.streaming.plan_qualities;
        assert_eq!(p.ceiling(Some("basic")), Some(P720));
        assert_eq!(p.ceiling(Some(" BASIC ")), Some(P720));
        assert_eq!(p.ceiling(Some("premium")), Some(K4));
        assert_eq!(p.ceiling(Some("gold")), Some(P480));
        assert_eq!(p.ceiling(None), Some(P480));
        let c = parse_env(
            "streaming:\n  jwt:\n    plan_qualities: {basic: 720p}\n",
            &[],
        )
        .unwrap();
        let p = &c.access.streaming.plan_qualities;
        assert_eq!(p.ceiling(Some("basic")), Some(P720));
        assert_eq!(p.ceiling(Some("gold")), None);
        assert_eq!(p.ceiling(None), None);
        // Absent: no ceiling for anyone.
        let c = parse_env("", &[]).unwrap();
        assert_eq!(
            c.access.streaming.plan_qualities.ceiling(Some("basic")),
            None
        );

        for (bad, key, line) in [
            (base.replace("720p", "8k"), "plan_qualities.basic", 4),
            (base.replace("720p", "auto"), "plan_qualities.basic", 4),
            (base.replace("480p", "\"\""), "plan_qualities.default", 6),
            (base.replace("Premium", "BASIC"), "plan_qualities.basic", 4),
            (base.replace("Premium", "\" \""), "plan_qualities. ", 3),
        ] {
            let e = parse_env(&bad, &[]).unwrap_err().to_string();
            assert!(
                e.contains(&format!("streaming.jwt.{key}")) && e.contains("t.yaml"),
                "{e}"
            );
            assert!(e.contains(&format!("line {line}")), "{bad}: {e}");
        }
        // The values are 480p, 720p, 1080p and 4k; the message says so.
        let e = parse_env(&base.replace("720p", "8k"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("480p, 720p, 1080p, 4k") && e.contains("`8k`"),
            "{e}"
        );
        assert!(parse_env(&base.replace("720p", "[720p]"), &[]).is_err());
    }

    #[test]
    fn one_content_per_spelling() {
        let two = "streaming:\n  secret: stream-secret-0123456789\n  contents:\n    - id: gated\n      hash: Movie-1\n      token_required: true\n    - id: open\n      hash: movie-1\n";
        let e = parse_env(two, &[]).unwrap_err().to_string();
        assert!(
            e.contains("streaming.contents[open].hash") && e.contains("line 8"),
            "{e}"
        );
        assert!(e.contains("`gated`"), "{e}");
        let ids = two
            .replace("id: open", "id: GATED")
            .replace("hash: movie-1", "hash: other");
        let e = parse_env(&ids, &[]).unwrap_err().to_string();
        assert!(
            e.contains("streaming.contents[GATED].id") && e.contains("line 7"),
            "{e}"
        );
        // One content: every spelling finds it, and it keeps its configured spelling.
        let one = two.replace("hash: movie-1", "hash: other");
        let c = parse_env(&one, &[]).unwrap();
        for spelling in ["Movie-1", "MOVIE-1", "movie-1", "mOVIE-1"] {
            let found = c.access.streaming.content_by_hash(spelling).unwrap();
            assert_eq!(
                (found.id.as_str(), found.hash.as_str()),
                ("gated", "Movie-1")
            );
        }
        assert_eq!(
            c.access.streaming.content_by_hash("OTHER").unwrap().id,
            "open"
        );
        assert!(c.access.streaming.content_by_hash("movie-2").is_none());
    }

    #[test]
    fn kek_and_sealed_clearkey_keys() {
        let ring = crate::crypto::Keyring::new(
            crate::crypto::Kek::from_hex("kek-a", KEK_A).unwrap(),
            vec![],
        )
        .unwrap();
        let kid = "834fae2345ef01a88bb3d2345eaf12bc";
        let key = hex::decode("a12d34bf56ea7890bcde12345fae9812").unwrap();
        let env = ring
            .seal(&key, &super::clearkey_aad(kid))
            .unwrap()
            .to_envelope();
        let text = format!(
            "kek:\n  current: {{id: kek-a, env: KEK_A}}\nsigned_channels:\n  secret: channel-secret-0123456789\n  channels:\n    - key: fifatv\n      name: FIFA CTV\n      url: https://example.com/stream.mpd\n      type: dash\n      drm: clearkey\n      keys:\n        {kid}: \"{env}\"\n  matches:\n    - id: m1\n      title: Final\n      start: 2026-07-19T19:00:00Z\n      channels: [fifatv]\n"
        );
        let c = parse_env(&text, &[("KEK_A", KEK_A)]).unwrap();
        let ch = &c.access.channels.channels[0];
        assert_eq!(ch.keys[0].0, kid);
        assert_eq!(ch.keys[0].1.as_str(), "a12d34bf56ea7890bcde12345fae9812");
        assert!(!format!("{:?}", c.access).contains("a12d34bf"));
        // Missing KEK variable names the key.
        let e = parse_env(&text, &[]).unwrap_err().to_string();
        assert!(e.contains("kek.current.env") && e.contains("KEK_A"), "{e}");
        // The envelope moved to another kid fails authentication.
        let moved = text.replacen(kid, "00000000000000000000000000000000", 1);
        let e = parse_env(&moved, &[("KEK_A", KEK_A)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("signed_channels.channels[fifatv].keys"), "{e}");
        // A match naming an unknown channel.
        let bad = text.replace("channels: [fifatv]", "channels: [nope]");
        assert!(parse_env(&bad, &[("KEK_A", KEK_A)]).is_err());
    }

    #[test]
    fn a_revocation_outlives_every_credential_the_state_has_minted() {
        let mut c = super::StreamingConfig {
            leeway_secs: 60,
            playback_max_secs: 3600,
            ..Default::default()
        };
        assert_eq!(c.credential_reach(), 3660);
        assert_eq!(c.revocation_horizon(1000, 0), 4660);
        // Lowered and restarted: the high-water mark of what ran before decides.
        c.leeway_secs = 0;
        c.playback_max_secs = 60;
        assert_eq!(c.revocation_horizon(1000, 3660), 4660);
        // Never shorter than this config's own reach.
        assert_eq!(c.revocation_horizon(1000, 10), 1060);
        assert_eq!(c.revocation_horizon(i64::MAX, 3660), i64::MAX);
    }
}

//! `sluice check -c FILE --dump`: the effective configuration as YAML, what `nginx -T` gives an
//! operator. Every key at the value `serve` would use — defaults included, `${VAR}` substituted,
//! Pingora's `server:` settings with sluice's defaults — and every secret replaced by
//! [`REDACTED`].
//!
//! Redacted: the HMAC and JWT secrets, passwords inside any URL (`state.redis`, a bucket
//! or provider URL) and credential-like query parameters, provider header and cookie values,
//! DRM license-server header values, ClearKey keys. Variable *names* (`*_env`, `kek.*.env`)
//! are shown; their values never are. As a last guard, every secret the configuration resolved
//! (whatever key or variable it came from) is replaced wherever it would appear in the text.
//!
//! The dump is itself a config `sluice check --offline` accepts, except where a secret was
//! written inline or by `${VAR}`: there it reads `REDACTED`, which is no valid secret.

use std::path::Path;

use serde_yaml::Value;

use super::{Config, ConfigError};

/// What a redacted value reads.
pub const REDACTED: &str = "REDACTED";

/// Query parameters whose values are credentials (signed-URL tokens of the common CDNs too).
const CREDENTIAL_PARAMS: [&str; 12] = [
    "token",
    "access_token",
    "auth",
    "key",
    "secret",
    "password",
    "signature",
    "sig",
    "policy",
    "key-pair-id",
    "hdnts",
    "hdnea",
];

/// The secret sections: `(section path, variable sluice reads when neither key is set)`.
const SECRET_SECTIONS: [(&[&str], &str); 4] = [
    (&["key_delivery"], "KEY_TOKEN_SECRET"),
    (&["streaming"], "STREAM_TOKEN_SECRET"),
    (&["streaming", "jwt"], "STREAMING_JWT_SECRET"),
    (&["signed_channels"], "SIGNED_CHANNEL_SECRET"),
];

impl Config {
    /// The effective configuration of `path` as YAML, secrets redacted. Fails as
    /// [`Config::load`] does.
    pub fn dump(path: &Path) -> Result<String, ConfigError> {
        let (name, text) = super::read_file(path)?;
        dump_str(&text, &name, &|v| std::env::var(v).ok())
    }
}

/// [`Config::dump`] of a text; `env` resolves `${NAME}` and `*_env`.
pub fn dump_str(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let (config, raw) = Config::read(text, file, env)?;
    let err = |e: serde_yaml::Error| ConfigError::Invalid {
        file: file.into(),
        line: 0,
        key: String::new(),
        message: format!("cannot write the configuration: {e}"),
    };
    let mut doc = serde_yaml::to_value(&raw).map_err(err)?;
    // Gather what must never appear before anything is replaced.
    let mut secrets = resolved_secrets(&config);
    collect_env_values(&doc, env, &mut secrets);
    if let Value::Mapping(m) = &mut doc {
        m.insert("server".into(), config.server.clone());
    }
    effective_secret_sources(&mut doc, env);
    redact(&mut doc);
    let mut out = format!(
        "# sluice check --dump: effective configuration of {file} (defaults included, secrets \
         {REDACTED})\n"
    );
    out.push_str(&serde_yaml::to_string(&doc).map_err(err)?);
    Ok(scrub(out, &secrets))
}

/// The values of every variable the file names (`*_env`, `kek.*.env`): secrets by nature.
fn collect_env_values(v: &Value, env: &dyn Fn(&str) -> Option<String>, out: &mut Vec<Vec<u8>>) {
    match v {
        Value::Mapping(m) => {
            for (k, val) in m {
                let is_env_key = k
                    .as_str()
                    .is_some_and(|k| k == "env" || k.ends_with("_env"));
                if let (true, Some(name)) = (is_env_key, val.as_str()) {
                    if let Some(secret) = env(name) {
                        out.push(secret.into_bytes());
                    }
                }
                collect_env_values(val, env, out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|x| collect_env_values(x, env, out)),
        _ => {}
    }
}

/// Every secret the validated configuration holds.
fn resolved_secrets(c: &Config) -> Vec<Vec<u8>> {
    let a = &c.access;
    let mut v: Vec<Vec<u8>> = Vec::new();
    for s in [
        a.key_delivery.secret.as_ref(),
        a.streaming.secret.as_ref(),
        a.streaming.jwt.as_ref().map(|j| &j.secret),
        a.channels.secret.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        v.push(s.as_bytes().to_vec());
    }
    v.extend(c.provider_auth.jwt_secret.iter().map(|s| s.0.clone()));
    v.extend(c.fleet.iter().map(|f| f.secret.0.clone()));
    v.extend(
        c.redis
            .iter()
            .flat_map(|r| r.endpoint.secrets())
            .map(|p| p.0.clone()),
    );
    for ch in &a.channels.channels {
        v.extend(ch.keys.iter().map(|(_, k)| k.as_bytes().to_vec()));
    }
    for content in &a.streaming.contents {
        for server in content.drm.values() {
            v.extend(server.headers.iter().map(|(_, h)| h.as_bytes().to_vec()));
        }
    }
    for p in c.providers.by_id.values() {
        v.extend(p.headers.iter().map(|(_, h)| h.as_bytes().to_vec()));
        v.extend(p.cookies.iter().map(|(_, h)| h.as_bytes().to_vec()));
    }
    v
}

/// Replace every occurrence of a secret (long enough not to match ordinary words; shorter
/// ones are only ever where [`redact`] already put `REDACTED`).
fn scrub(mut text: String, secrets: &[Vec<u8>]) -> String {
    for s in secrets {
        let Ok(s) = std::str::from_utf8(s) else {
            continue;
        };
        if s.len() >= 8 && text.contains(s) {
            text = text.replace(s, REDACTED);
        }
    }
    text
}

fn get_mut<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, k| v.get_mut(*k))
}

/// Where neither `secret` nor `secret_env` is written, sluice reads the section's default
/// variable when it is set: the dump says so.
fn effective_secret_sources(doc: &mut Value, env: &dyn Fn(&str) -> Option<String>) {
    for (path, default) in SECRET_SECTIONS {
        let Some(Value::Mapping(m)) = get_mut(doc, path) else {
            continue;
        };
        let unset = |k: &str| m.get(k).is_none_or(Value::is_null);
        if unset("secret") && unset("secret_env") && env(default).is_some_and(|v| !v.is_empty()) {
            m.insert("secret_env".into(), default.into());
        }
    }
}

fn redact_value(v: &mut Value) {
    if !v.is_null() {
        *v = REDACTED.into();
    }
}

/// Every value of a `name: value` map (headers, cookies, ClearKey keys).
fn redact_map_values(v: Option<&mut Value>) {
    if let Some(Value::Mapping(m)) = v {
        m.values_mut().for_each(redact_value);
    }
}

/// Every list entry (or map value) of `v`, as `f` sees fit.
fn each_entry(v: Option<&mut Value>, mut f: impl FnMut(&mut Value)) {
    match v {
        Some(Value::Sequence(s)) => s.iter_mut().for_each(&mut f),
        Some(Value::Mapping(m)) => m.values_mut().for_each(&mut f),
        _ => {}
    }
}

/// Replace every secret-bearing value by [`REDACTED`].
pub fn redact(doc: &mut Value) {
    for path in [
        &["key_delivery", "secret"][..],
        &["streaming", "secret"],
        &["streaming", "jwt", "secret"],
        &["signed_channels", "secret"],
        &["provider_auth", "jwt_secret"],
    ] {
        if let Some(v) = get_mut(doc, path) {
            redact_value(v);
        }
    }
    each_entry(get_mut(doc, &["providers"]), |p| {
        redact_map_values(p.get_mut("headers"));
        redact_map_values(p.get_mut("cookies"));
        each_entry(p.get_mut("channels"), |ch| {
            if let Some(drm) = ch.get_mut("drm") {
                redact_map_values(drm.get_mut("headers"));
            }
        });
    });
    each_entry(get_mut(doc, &["streaming", "contents"]), |content| {
        each_entry(content.get_mut("drm"), |server| {
            redact_map_values(server.get_mut("headers"));
        });
    });
    each_entry(get_mut(doc, &["signed_channels", "channels"]), |ch| {
        redact_map_values(ch.get_mut("keys"));
    });
    redact_urls(doc);
}

/// Passwords and credential query parameters of every URL-looking string.
fn redact_urls(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Some(clean) = redact_url(s) {
                *s = clean;
            }
        }
        Value::Mapping(m) => m.values_mut().for_each(redact_urls),
        Value::Sequence(seq) => seq.iter_mut().for_each(redact_urls),
        Value::Tagged(t) => redact_urls(&mut t.value),
        _ => {}
    }
}

/// `Some(redacted)` when `s` is a URL carrying a password or a credential parameter.
fn redact_url(s: &str) -> Option<String> {
    if !s.contains("://") {
        return None;
    }
    let mut url = url::Url::parse(s).ok()?;
    let mut changed = false;
    if url.password().is_some() {
        url.set_password(Some(REDACTED)).ok()?;
        changed = true;
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let secret = CREDENTIAL_PARAMS.contains(&k.to_ascii_lowercase().as_str());
                changed |= secret;
                (
                    k.into_owned(),
                    if secret {
                        REDACTED.into()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        if changed {
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
    changed.then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_passwords_and_credential_parameters() {
        assert_eq!(
            redact_url("redis://user:pw-secret@h:6379/0").as_deref(),
            Some("redis://user:REDACTED@h:6379/0")
        );
        assert_eq!(
            redact_url("https://cdn.example/a.m3u8?Token=abc&x=1").as_deref(),
            Some("https://cdn.example/a.m3u8?Token=REDACTED&x=1")
        );
        assert_eq!(redact_url("https://cdn.example/a.m3u8?x=1"), None);
        assert_eq!(redact_url("dir:./demo"), None);
    }

    #[test]
    fn defaults_show_and_secrets_do_not() {
        let secret = "inline-secret-0123456789";
        let out = dump_str(
            &format!("key_delivery:\n  secret: {secret}\nstreaming:\n  secret: ${{S}}\n"),
            "t.yaml",
            &|v| match v {
                "S" => Some("env-secret-0123456789".into()),
                "SIGNED_CHANNEL_SECRET" => Some("default-var-secret-0123".into()),
                _ => None,
            },
        )
        .unwrap();
        assert!(
            !out.contains(secret) && !out.contains("env-secret"),
            "{out}"
        );
        assert!(!out.contains("default-var-secret"), "{out}");
        assert!(out.contains("memory_bytes: 268435456"), "{out}");
        assert!(out.contains("secret_env: SIGNED_CHANNEL_SECRET"), "{out}");
        assert!(out.contains("work_stealing: false"), "{out}");
        // The dump reads back as the same configuration.
        let again = dump_str(&out, "t.yaml", &|v| {
            (v == "SIGNED_CHANNEL_SECRET").then(|| "default-var-secret-0123".into())
        });
        assert!(again.is_err(), "REDACTED is no valid secret");
        let plain = dump_str("", "t.yaml", &|_| None).unwrap();
        let body = |s: &str| s.split_once('\n').map(|(_, b)| b.to_string()).unwrap();
        assert_eq!(
            body(&dump_str(&plain, "t.yaml", &|_| None).unwrap()),
            body(&plain)
        );
    }
}

//! The config says what it will do (issue 19): `${VAR}` substituted into parsed values only,
//! `log.level` validated, `sluice check` refusing what `serve` could not run on this host (and
//! `--offline` for a config meant for another host), `sluice check --dump` with every default
//! shown and every secret redacted, byte sizes with units. Over the real binary.

mod common;

use std::path::Path;
use std::process::Command;

use common::{admin_key, client, free_port, sluice_bin, Sluice};
use serde_json::json;

const KEK_A: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const KEY_HEX: &str = "00112233445566778899aabbccddeeff";

/// Run `sluice check -c FILE ARGS…` with `env`: (success, stdout, stderr).
fn check(config: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(sluice_bin())
        .arg("check")
        .arg("-c")
        .arg(config)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run sluice check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Serve with `key_delivery.secret` from `${KT_SECRET}`, import a content key, and fetch it
/// with a token signed with `secret` itself (not with anything sluice read).
async fn key_delivered_with(secret: &str, comment: &str) -> (u16, Vec<u8>) {
    let extra = format!(
        "{comment}kek:\n  current: {{id: kek-a, env: KEK_A}}\nkey_delivery:\n  secret: ${{KT_SECRET}} # from the environment\n"
    );
    let s = Sluice::start_with_env(&extra, &[("KT_SECRET", secret), ("KEK_A", KEK_A)]);
    let admin = admin_key(&s);
    let r = client()
        .put(s.admin_url("/api/content-keys/movie-1"))
        .header("authorization", format!("Bearer {admin}"))
        .json(&json!({ "key_hex": KEY_HEX }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let exp = chrono::Utc::now().timestamp() + 600;
    let token = sluice::auth::key_token::mint(secret.as_bytes(), "movie-1", exp);
    let r = client()
        .get(s.edge_url("/api/key/movie-1"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap().to_vec())
}

/// A secret containing ` #` (YAML's comment start) reaches the key verbatim: a token signed
/// with the whole secret opens the key. (The text substitution cut it at ` #`, and every token
/// signed with the real secret was refused.)
#[tokio::test]
async fn substituted_secret_with_hash_sign_is_kept_whole() {
    let (status, body) = key_delivered_with("key-token-secret-0123 #x: [1", "").await;
    assert_eq!(status, 200);
    assert_eq!(hex::encode(body), KEY_HEX);
}

/// `${VAR}` in a comment is not substituted: an unset one does not stop `serve`.
#[tokio::test]
async fn unset_variable_in_a_comment_does_not_stop_serve() {
    let comment = "# the key token secret comes from ${SLUICE_TEST_UNSET_IN_COMMENT}, see README\n";
    let (status, body) = key_delivered_with("key-token-secret-0123 #x: [1", comment).await;
    assert_eq!(status, 200);
    assert_eq!(hex::encode(body), KEY_HEX);
}

/// A misspelt level used to pass `check` and turn logging off (EnvFilter reads a bare word as
/// a target); it is refused, naming `log.level` and the line.
#[test]
fn check_refuses_a_log_level_that_is_not_a_level() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("level.yaml");
    std::fs::write(&path, "log:\n  format: json\n  level: warning\n").unwrap();
    let (ok, _, err) = check(&path, &[], &[]);
    assert!(!ok, "passed: {err}");
    assert!(
        err.contains("level.yaml")
            && err.contains("line 3")
            && err.contains("log.level")
            && err.contains("`warning`"),
        "{err}"
    );
    std::fs::write(&path, "log:\n  level: info,sluice=debug\n").unwrap();
    let (ok, _, err) = check(&path, &[], &[]);
    assert!(ok, "{err}");
}

/// Run `sluice serve -c FILE` on a config it must refuse: its stderr.
fn serve_refused(config: &Path, env: &[(&str, &str)]) -> String {
    let out = Command::new(sluice_bin())
        .arg("serve")
        .arg("-c")
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .expect("run sluice serve");
    assert!(!out.status.success(), "serve started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `sluice check` refuses what `serve` could not run on this host, naming file, line and key;
/// `--offline` passes the same file (meant for another host); `serve` refuses it at start with
/// the same message.
#[test]
fn check_refuses_what_this_host_cannot_give_serve() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where a directory would have to be created.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let fleet_env = [("FLEET_SECRET", "fleet-secret-0123456789")];
    let admin = free_port();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "state.yaml",
            format!(
                "listen:\n  edge: 127.0.0.1:{}\n  admin: 127.0.0.1:{admin}\nstate:\n  sqlite: {}/state/sluice.db\n",
                free_port(),
                file.display()
            ),
            "line 5: key `state.sqlite`",
        ),
        (
            "disk.yaml",
            format!(
                "listen:\n  edge: 127.0.0.1:{}\n  admin: 127.0.0.1:{admin}\nstate:\n  sqlite: {}/ok/sluice.db\ncache:\n  disk:\n    path: {}/disk\n    bytes: 1GiB\n",
                free_port(),
                dir.path().display(),
                file.display()
            ),
            "line 8: key `cache.disk.path`",
        ),
        (
            "fleet.yaml",
            format!(
                "listen:\n  edge: 127.0.0.1:{}\n  admin: 127.0.0.1:{admin}\nstate:\n  sqlite: {}/ok/sluice.db\nfleet:\n  peers: [\"127.0.0.1:8080\", \"203.0.113.7:8080\"]\n  self: 203.0.113.7:8080\n  secret_env: FLEET_SECRET\n",
                free_port(),
                dir.path().display(),
            ),
            "line 8: key `fleet.self`",
        ),
        (
            "listen.yaml",
            format!(
                "listen:\n  edge: 127.0.0.1:{}\n  admin: 203.0.113.8:{admin}\nstate:\n  sqlite: {}/ok/sluice.db\n",
                free_port(),
                dir.path().display(),
            ),
            "line 3: key `listen.admin`",
        ),
    ];
    for (name, text, needle) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (ok, _, err) = check(&path, &[], &fleet_env);
        assert!(!ok, "{name} passed");
        assert!(err.contains(name) && err.contains(needle), "{name}: {err}");
        let (ok, _, err) = check(&path, &["--offline"], &fleet_env);
        assert!(ok, "{name} --offline: {err}");
        let (_, _, check_err) = check(&path, &[], &fleet_env);
        let refused = serve_refused(&path, &fleet_env);
        assert!(
            refused.contains(check_err.trim()),
            "{name}: serve and check differ:\n{refused}\n{check_err}"
        );
        // Nothing was created while checking.
        assert!(!dir.path().join("ok").exists(), "{name}");
    }
}

/// What `check` must not refuse: a listen port held by a running process (`ExecReload` runs
/// check while sluice holds it), a Redis that is down now (a warning, without its password).
#[test]
fn check_passes_a_busy_port_and_warns_about_an_unreachable_redis() {
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let redis_port = free_port();
    let path = dir.path().join("busy.yaml");
    std::fs::write(
        &path,
        format!(
            "listen:\n  edge: {}\n  admin: 127.0.0.1:{}\nstate:\n  sqlite: {}/state/sluice.db\n  redis: redis://:redis-pass-0123@127.0.0.1:{redis_port}/0\n",
            held.local_addr().unwrap(),
            free_port(),
            dir.path().display()
        ),
    )
    .unwrap();
    let (ok, out, err) = check(&path, &[], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("busy.yaml: ok"), "{out}");
    let warning = err
        .lines()
        .find(|l| l.starts_with("warning: state.redis:"))
        .unwrap_or_else(|| panic!("no Redis warning: {err}"));
    assert!(
        warning.contains(&format!("127.0.0.1:{redis_port}")),
        "{warning}"
    );
    assert!(!format!("{out}{err}").contains("redis-pass"), "{err}");
    // Offline: no host checks, so no warning either.
    let (ok, _, err) = check(&path, &["--offline"], &[]);
    assert!(ok && !err.contains("warning:"), "{err}");
}

/// Sizes with units are accepted by `check` and `serve`; a bad one names the key and line.
#[tokio::test]
async fn sizes_take_units() {
    let s = Sluice::start(
        "cache:\n  memory_bytes: 64MiB\n  max_object_bytes: 8 MiB\nlimits:\n  max_header_bytes: 16KiB\n",
    );
    let budget = common::metric(
        &common::metrics(&s).await,
        "sluice_cache_memory_budget_bytes",
    );
    assert_eq!(budget, (64u64 << 20) as f64);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("size.yaml");
    std::fs::write(
        &path,
        "cache:\n  memory_bytes: 256MiB\n  max_object_bytes: 1 zillion\n",
    )
    .unwrap();
    let (ok, _, err) = check(&path, &["--offline"], &[]);
    assert!(!ok);
    assert!(
        err.contains("line 3") && err.contains("cache.max_object_bytes") && err.contains("256MiB"),
        "{err}"
    );
}

/// `--dump` prints every key at its effective value and no secret, however it was given
/// (inline, `${VAR}`, `*_env`, a default variable, inside a URL, a header, a cookie, a
/// ClearKey key, the KEK); variable names are shown.
#[test]
fn dump_shows_defaults_and_redacts_every_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        ("inline key token", "inline-key-token-secret-01"),
        ("${VAR} stream token", "var-stream-token-secret-02"),
        ("jwt secret_env", "jwt-env-secret-value-03"),
        ("default SIGNED_CHANNEL_SECRET", "default-channel-secret-04"),
        ("provider jwt", "provider-jwt-secret-05"),
        ("fleet", "fleet-node-secret-06"),
        ("redis password", "redis-url-password-07"),
        ("provider header", "hdr-provider-key-08"),
        ("provider cookie", "cookie-clearance-09"),
        ("provider drm header", "Bearer drm-provider-token-10"),
        ("content drm header", "content-drm-header-11"),
        ("clearkey key", "a12d34bf56ea7890bcde12345fae9812"),
        ("kek", KEK_A),
        ("bucket password", "bucket-pass-12"),
        ("url token", "url-query-token-13"),
    ];
    let edge = format!("127.0.0.1:{}", free_port());
    let text = format!(
        "listen:\n  edge: {edge}\n  admin: 127.0.0.1:{admin}\nstate:\n  sqlite: {dir}/state/sluice.db\n  redis: redis://:redis-url-password-07@127.0.0.1:{redis}/0\n\
origins:\n  bucket: https://reader:bucket-pass-12@bucket.example/media\n\
kek:\n  current: {{id: kek-a, env: KEK_A}}\n\
key_delivery:\n  secret: inline-key-token-secret-01\n\
streaming:\n  secret: ${{STREAM_VAR}}\n  jwt: {{secret_env: JWT_VAR}}\n  contents:\n    - id: c1\n      hash: movie-1\n      drm:\n        widevine: {{url: 'https://lic.example/wv', headers: {{X-Key: content-drm-header-11}}}}\n\
signed_channels:\n  channels:\n    - key: ck\n      name: CK\n      url: https://example.com/ck.mpd?token=url-query-token-13\n      type: dash\n      drm: clearkey\n      keys:\n        834fae2345ef01a88bb3d2345eaf12bc: a12d34bf56ea7890bcde12345fae9812\n\
provider_auth:\n  jwt_secret: provider-jwt-secret-05\n\
providers:\n  acme:\n    headers: {{X-Provider-Key: hdr-provider-key-08}}\n    cookies: {{cf_clearance: cookie-clearance-09}}\n    channels:\n      ch1:\n        url: https://cdn.acme.example/live/ch1.mpd\n        type: dash\n        drm: {{system: widevine, license_url: 'https://license.example.com/wv', headers: {{Authorization: 'Bearer drm-provider-token-10'}}}}\n\
fleet:\n  peers: [\"{edge}\"]\n  self: {edge}\n  secret_env: FLEET_VAR\n",
        admin = free_port(),
        redis = free_port(),
        dir = dir.path().display(),
    );
    let path = dir.path().join("secrets.yaml");
    std::fs::write(&path, &text).unwrap();
    let env = [
        ("STREAM_VAR", "var-stream-token-secret-02"),
        ("JWT_VAR", "jwt-env-secret-value-03"),
        ("SIGNED_CHANNEL_SECRET", "default-channel-secret-04"),
        ("FLEET_VAR", "fleet-node-secret-06"),
        ("KEK_A", KEK_A),
    ];
    // The config is valid and holds every secret (so the dump had them to leak).
    let (ok, _, err) = check(&path, &[], &env);
    assert!(ok, "{err}");
    let (ok, out, err) = check(&path, &["--dump"], &env);
    assert!(ok, "{err}");
    for (what, secret) in secrets {
        assert!(!out.contains(secret), "{what} in the dump:\n{out}");
        assert!(!err.contains(secret), "{what} on stderr:\n{err}");
    }
    // Defaults are there, every one, at its effective value.
    for line in [
        "  memory_bytes: 268435456",
        "  max_object_bytes: 67108864",
        "  segment_ttl: 1day",
        "  write_buffer: 4096",
        "  max_header_bytes: 65536",
        "  rate_limit_api: 30",
        "  work_stealing: false",
        "  listener_tasks_per_fd: 4",
        "  level: info",
    ] {
        assert!(out.lines().any(|l| l == line), "`{line}` missing:\n{out}");
    }
    // Variable names are shown (the default one sluice read too), values never.
    for line in [
        "    secret_env: JWT_VAR",
        "  secret_env: SIGNED_CHANNEL_SECRET",
        "  secret_env: FLEET_VAR",
        "    env: KEK_A",
        "  secret: REDACTED",
        "  jwt_secret: REDACTED",
        "  redis: redis://:REDACTED@127.0.0.1:",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(line)),
            "`{line}` missing:\n{out}"
        );
    }
    // It reads back: with the inline and ${VAR} secrets restored, the dump is the same config.
    let back = dir.path().join("back.yaml");
    let restored = out
        .replacen(
            "jwt_secret: REDACTED",
            "jwt_secret: provider-jwt-secret-05",
            1,
        )
        .replacen(
            " secret: REDACTED",
            " secret: inline-key-token-secret-01",
            1,
        )
        .replacen(" secret: REDACTED", " secret: ${STREAM_VAR}", 1)
        .replace("redis://:REDACTED@", "redis://:redis-url-password-07@")
        .replace("reader:REDACTED@", "reader:bucket-pass-12@")
        .replace("token=REDACTED", "token=url-query-token-13")
        .replace(
            "834fae2345ef01a88bb3d2345eaf12bc: REDACTED",
            "834fae2345ef01a88bb3d2345eaf12bc: a12d34bf56ea7890bcde12345fae9812",
        )
        .replace("X-Key: REDACTED", "X-Key: content-drm-header-11")
        .replace(
            "X-Provider-Key: REDACTED",
            "X-Provider-Key: hdr-provider-key-08",
        )
        .replace(
            "cf_clearance: REDACTED",
            "cf_clearance: cookie-clearance-09",
        )
        .replace(
            "Authorization: REDACTED",
            "Authorization: Bearer drm-provider-token-10",
        );
    assert!(
        !restored
            .lines()
            .any(|l| !l.starts_with('#') && l.contains("REDACTED")),
        "{restored}"
    );
    std::fs::write(&back, restored).unwrap();
    let (ok, _, err) = check(&back, &["--offline"], &env);
    assert!(ok, "the dump does not read back: {err}");
}

/// A dump of a config without inline secrets reads back as itself.
#[test]
fn dump_reads_back_as_the_same_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.yaml");
    std::fs::write(
        &path,
        "cache:\n  memory_bytes: 128MiB\nkey_delivery:\n  secret_env: KT\nserver:\n  threads: 3\n",
    )
    .unwrap();
    let env = [("KT", "key-token-secret-0123456")];
    let (ok, first, err) = check(&path, &["--dump", "--offline"], &env);
    assert!(ok, "{err}");
    assert!(first.contains("  memory_bytes: 134217728\n"), "{first}");
    assert!(first.contains("  threads: 3\n"), "{first}");
    let again = dir.path().join("b.yaml");
    std::fs::write(&again, &first).unwrap();
    let (ok, second, err) = check(&again, &["--dump", "--offline"], &env);
    assert!(ok, "{err}");
    let body = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&first), body(&second));
}

//! One content, one spelling; providers never reach the bucket (issue 20), over the real binary.
//!
//! - Contents whose hashes (or ids) are equal without ASCII case are refused at load, by
//!   `sluice check` and `serve`, naming file, line and key.
//! - Every spelling of a gated hash is the one content: it needs the token, and what is
//!   fetched is the configured spelling (buckets are case-sensitive); stats, per-stream
//!   metrics, content keys and purge agree on that one name. Stream ids resolve the same way.
//! - Stream ids equal without ASCII case to another one or to a content hash are refused
//!   (409), on SQLite and on Redis — atomically, across two nodes.
//! - A provider channel URL, allowed host or (derived) `api_base` on the bucket's origin is
//!   refused at load; `/api/proxy` refuses the bucket in any spelling, after a redirect, and
//!   through a playlist's URIs (403, `{"error": …}`); a provider API answering a bucket URL
//!   hands out no ctx.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    admin_key, client, fleet_admin_key, free_port, metric, metrics, random_bytes, sluice_bin,
    RedisServer, Reply, RunningOrigin, Sluice, TestOrigin,
};
use serde_json::{json, Value};

const STREAM_SECRET: &str = "spell-stream-secret-0123456789";
const PROVIDER_SECRET: &str = "spell-provider-jwt-secret-0123456";
const KEY_SECRET: &str = "spell-key-token-secret-0123456789";
const KEK: &str = "4444444444444444444444444444444444444444444444444444444444444444";
const HLS: &str = "application/vnd.apple.mpegurl";

const MASTER: &str =
    "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720\nv720/playlist.m3u8\n";
const MEDIA: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2,\nseg_1.m4s\n#EXT-X-ENDLIST\n";

// ---------------------------------------------------------------------------------------
// helpers

/// Run `sluice check -c FILE`: (success, stderr).
fn check(config: &Path) -> (bool, String) {
    let out = Command::new(sluice_bin())
        .arg("check")
        .arg("-c")
        .arg(config)
        .output()
        .expect("run sluice check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run `sluice serve -c FILE` on a config it must refuse; its stderr. A serve that starts is
/// killed and fails the test.
fn serve_refused(config: &Path) -> String {
    let dir = config.parent().expect("config dir");
    let err_path = dir.join("serve.err");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let mut child = Command::new(sluice_bin())
        .arg("serve")
        .arg("-c")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::from(err))
        .spawn()
        .expect("spawn sluice serve");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve started with a config it must refuse");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "serve exited 0");
    std::fs::read_to_string(&err_path).unwrap_or_default()
}

/// A config file for `check`/`serve` in `dir`: free listen ports, a state file in `dir`, then
/// `extra`. Returns its path and the line number of `extra`'s first line.
fn write_config(dir: &Path, name: &str, extra: &str) -> (std::path::PathBuf, usize) {
    let head = format!(
        "listen:\n  edge: 127.0.0.1:{}\n  admin: 127.0.0.1:{}\nstate:\n  sqlite: {}/state/sluice.db\n",
        free_port(),
        free_port(),
        dir.display()
    );
    let path = dir.join(name);
    std::fs::write(&path, format!("{head}{extra}")).expect("write config");
    (path, head.lines().count() + 1)
}

async fn get(s: &Sluice, path: &str) -> (u16, Vec<u8>) {
    let resp = client().get(s.edge_url(path)).send().await.unwrap();
    let st = resp.status().as_u16();
    (st, resp.bytes().await.unwrap().to_vec())
}

async fn get_text(s: &Sluice, path: &str) -> (u16, String) {
    let (st, body) = get(s, path).await;
    (st, String::from_utf8_lossy(&body).into_owned())
}

async fn admin_call(
    s: &Sluice,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = client()
        .request(method.parse().unwrap(), s.admin_url(path))
        .bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let st = resp.status().as_u16();
    (st, resp.json().await.unwrap_or(Value::Null))
}

async fn add_stream_id(s: &Sluice, key: &str, publisher: &str, player: &str) -> (u16, Value) {
    admin_call(
        s,
        "POST",
        "/api/stream-ids",
        key,
        Some(json!({"publisher": publisher, "player": player})),
    )
    .await
}

/// A stream token for content `id`, minted with the admin key.
async fn stream_token(s: &Sluice, id: &str) -> String {
    let resp = client()
        .post(s.edge_url("/api/v2/streaming/token"))
        .bearer_auth(admin_key(s))
        .json(&json!({"contentId": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["streamToken"].as_str().unwrap().to_string()
}

/// Poll `probe` (every 25 ms, at most 5 s) until it reports done; its last value.
async fn until<T, F, Fut>(mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (bool, T)>,
{
    let start = Instant::now();
    loop {
        let (done, value) = probe().await;
        if done || start.elapsed() > Duration::from_secs(5) {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// URIs of a playlist: URI lines and `URI="…"` attributes, in order.
fn uris(playlist: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in playlist.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(i) = line.find("URI=\"") {
            let rest = &line[i + 5..];
            out.push(rest[..rest.find('"').unwrap()].to_string());
        } else if !line.starts_with('#') {
            out.push(line.to_string());
        }
    }
    out
}

/// `uri` as a path (and query) on the edge, resolved against the playlist at `base`.
fn absolute(base: &str, uri: &str) -> String {
    let base = url::Url::parse(&format!("http://edge{base}")).unwrap();
    let u = base.join(uri).unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

/// The bucket of the gated content `Movie-1` (and an open directory), as a case-sensitive
/// bucket spells them.
fn bucket() -> RunningOrigin {
    TestOrigin::new()
        .route("/Movie-1/master.m3u8", Reply::ok(MASTER, HLS))
        .route("/Movie-1/v720/playlist.m3u8", Reply::ok(MEDIA, HLS))
        .route(
            "/Movie-1/v720/seg_1.m4s",
            Reply::ok(random_bytes(4000, 1), "video/iso.segment"),
        )
        .route(
            "/Movie-1/v720/init.mp4",
            Reply::ok(random_bytes(300, 2), "video/mp4"),
        )
        .route(
            "/open-dir/seg.m4s",
            Reply::ok(random_bytes(2000, 3), "video/iso.segment"),
        )
        .start()
}

fn gate_config(bucket: &RunningOrigin) -> String {
    format!(
        r#"origins:
  bucket: {url}
streaming:
  secret: {STREAM_SECRET}
  contents:
    - id: film
      hash: Movie-1
      token_required: true
kek:
  current: {{id: k1, env: SPELL_KEK}}
key_delivery:
  secret: {KEY_SECRET}
"#,
        url = bucket.url()
    )
}

fn gate_env() -> Vec<(&'static str, &'static str)> {
    vec![("SPELL_KEK", KEK)]
}

// ---------------------------------------------------------------------------------------
// contents

/// Two contents `Movie-1` (gated) and `movie-1` (open): the gate resolved the first match,
/// so the open one served the gated one's objects with no token. Refused at load, by `check`
/// and by `serve`, naming file, line and key; so are ids equal without case.
#[test]
fn contents_equal_without_case_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let contents = format!(
        "streaming:\n  secret: {STREAM_SECRET}\n  contents:\n    - id: gated-film\n      hash: Movie-1\n      token_required: true\n    - id: open-film\n      hash: movie-1\n"
    );
    let (path, first) = write_config(dir.path(), "two-spellings.yaml", &contents);
    let (ok, err) = check(&path);
    assert!(
        !ok,
        "sluice check accepted two spellings of one hash: {err}"
    );
    let line = first + 7; // `hash: movie-1`
    for needle in [
        "two-spellings.yaml".to_string(),
        format!("line {line}"),
        "streaming.contents[open-film].hash".to_string(),
        "gated-film".to_string(),
    ] {
        assert!(err.contains(&needle), "{needle} not in: {err}");
    }
    let err = serve_refused(&path);
    assert!(
        err.contains("streaming.contents[open-film].hash"),
        "serve: {err}"
    );

    // Reversed order: the same refusal, on the later entry.
    let reversed = contents
        .replace("hash: Movie-1", "hash: MOVIE-X")
        .replace("hash: movie-1", "hash: Movie-1")
        .replace("hash: MOVIE-X", "hash: movie-1");
    let (path, _) = write_config(dir.path(), "reversed.yaml", &reversed);
    let (ok, err) = check(&path);
    assert!(
        !ok && err.contains("streaming.contents[open-film].hash"),
        "{err}"
    );

    // Ids equal without case.
    let ids = contents
        .replace("id: open-film", "id: GATED-film")
        .replace("hash: movie-1", "hash: trailer-1");
    let (path, first) = write_config(dir.path(), "ids.yaml", &ids);
    let (ok, err) = check(&path);
    assert!(!ok, "sluice check accepted two spellings of one id: {err}");
    let line = first + 6; // `- id: GATED-film`
    assert!(
        err.contains("streaming.contents[GATED-film].id") && err.contains(&format!("line {line}")),
        "{err}"
    );

    // Distinct hashes and ids pass.
    let fine = contents.replace("hash: movie-1", "hash: movie-2");
    let (path, _) = write_config(dir.path(), "fine.yaml", &fine);
    let (ok, err) = check(&path);
    assert!(ok, "{err}");
}

/// One gated content `Movie-1`: every spelling needs the token, and a token plays through
/// any spelling while the bucket is only ever asked for `Movie-1`. Stats, per-stream metrics,
/// content keys and purge all know the one name.
#[tokio::test]
async fn every_spelling_of_a_gated_hash_is_one_content() {
    let b = bucket();
    let s = Sluice::start_with_env(&gate_config(&b), &gate_env());
    let spellings = [
        "Movie-1",
        "MOVIE-1",
        "movie-1",
        "mOVIE-1",
        "M%4Fvie-1",
        "movie%2D1",
    ];
    for hash in spellings {
        for rest in [
            "master.m3u8",
            "v720/playlist.m3u8",
            "v720/seg_1.m4s",
            "v720/init.mp4",
        ] {
            let path = format!("/stream/{hash}/{rest}");
            let (st, body) = get_text(&s, &path).await;
            assert_eq!(st, 401, "{path} without a token: {body}");
        }
    }
    assert_eq!(b.total_hits(), 0, "the bucket was asked without a token");

    // A token plays through any spelling; the bucket sees the configured spelling only.
    let token = stream_token(&s, "film").await;
    let mut requests = 0;
    for hash in ["movie-1", "MOVIE-1"] {
        let entry = format!("/stream/{hash}/master.m3u8");
        let (st, master) = get_text(&s, &format!("{entry}?token={token}")).await;
        assert_eq!(st, 200, "{entry}: {master}");
        requests += 1;
        for u in uris(&master) {
            let child = absolute(&entry, &u);
            let (st, media) = get_text(&s, &child).await;
            assert_eq!(st, 200, "{child}: {media}");
            requests += 1;
            for su in uris(&media) {
                let seg = absolute(child.split('?').next().unwrap(), &su);
                let (st, body) = get(&s, &seg).await;
                assert_eq!(st, 200, "{seg}");
                if seg.contains("seg_1.m4s") {
                    assert_eq!(body, random_bytes(4000, 1).to_vec(), "{seg}");
                }
                requests += 1;
            }
        }
    }
    for r in b.requests() {
        assert!(
            r.path_and_query.starts_with("/Movie-1/"),
            "bucket asked for {}",
            r.path_and_query
        );
    }
    assert!(b.hits("/Movie-1/v720/seg_1.m4s") >= 1);

    // Stats and per-stream metrics: one name, whatever the spelling asked (counted in the
    // logging phase, which may end just after the player has its answer).
    let series = r#"sluice_stream_requests_total{route="stream",stream="Movie-1"}"#;
    let (counts, text) = until(|| async {
        let mut counts = Vec::new();
        for name in ["Movie-1", "movie-1", "MOVIE-1"] {
            let v: Value = client()
                .get(s.admin_url(&format!("/stats/{name}")))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            counts.push(v["publisher"]["requests"].as_u64().unwrap_or(0));
        }
        let text = metrics(&s).await;
        let done =
            counts.iter().all(|c| *c >= requests) && metric(&text, series) >= requests as f64;
        (done, (counts, text))
    })
    .await;
    assert!(
        counts.iter().all(|c| *c == counts[0]) && counts[0] >= requests,
        "stats by spelling: {counts:?}, requests made: {requests}"
    );
    assert!(metric(&text, series) >= requests as f64, "{text}");
    for other in ["movie-1", "MOVIE-1"] {
        assert!(
            !text.contains(&format!("stream=\"{other}\"")),
            "a second series for {other}"
        );
    }

    // A content key imported under one spelling is delivered under another.
    let key = admin_key(&s);
    let (st, v) = admin_call(
        &s,
        "PUT",
        "/api/content-keys/MOVIE-1",
        &key,
        Some(json!({"key_hex": "00112233445566778899aabbccddeeff"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let exp = chrono::Utc::now().timestamp() + 600;
    let kt = sluice::auth::key_token::mint(KEY_SECRET.as_bytes(), "movie-1", exp);
    let resp = client()
        .get(s.edge_url("/api/key/movie-1"))
        .bearer_auth(&kt)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        hex::encode(resp.bytes().await.unwrap()),
        "00112233445566778899aabbccddeeff"
    );

    // A purge by any spelling drops the content's cached objects.
    let (st, v) = admin_call(
        &s,
        "POST",
        "/api/cache/purge",
        &key,
        Some(json!({"hash": "movie-1"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["purged"].as_u64().unwrap_or(0) >= 1, "{v}");
}

/// Stream ids resolve without case too: `/stream/LIVE` is the stream id `live`, and an alias
/// whose publisher spells a gated content (`movie-1`) is that content: gated, and fetched as
/// `Movie-1`.
#[tokio::test]
async fn stream_ids_resolve_to_one_spelling() {
    let b = bucket();
    let s = Sluice::start_with_env(&gate_config(&b), &gate_env());
    let key = admin_key(&s);
    assert_eq!(add_stream_id(&s, &key, "open-dir", "live").await.0, 200);
    assert_eq!(add_stream_id(&s, &key, "movie-1", "trailer").await.0, 200);
    for path in [
        "/stream/live/seg.m4s",
        "/stream/LIVE/seg.m4s",
        "/stream/Live/seg.m4s",
    ] {
        let (st, body) = get(&s, path).await;
        assert_eq!(st, 200, "{path}");
        assert_eq!(body, random_bytes(2000, 3).to_vec(), "{path}");
    }
    for path in [
        "/stream/trailer/master.m3u8",
        "/stream/TRAILER/master.m3u8",
        "/stream/Trailer/v720/seg_1.m4s",
    ] {
        assert_eq!(get(&s, path).await.0, 401, "{path} without a token");
    }
    let token = stream_token(&s, "film").await;
    let (st, body) = get_text(&s, &format!("/stream/TRAILER/master.m3u8?token={token}")).await;
    assert_eq!(st, 200, "{body}");
    for r in b.requests() {
        assert!(
            r.path_and_query.starts_with("/Movie-1/") || r.path_and_query.starts_with("/open-dir/"),
            "bucket asked for {}",
            r.path_and_query
        );
    }
    let series = r#"sluice_stream_requests_total{route="stream",stream="live"}"#;
    let text = until(|| async {
        let text = metrics(&s).await;
        (metric(&text, series) >= 3.0, text)
    })
    .await;
    assert!(metric(&text, series) >= 3.0, "{text}");
    assert!(!text.contains("stream=\"LIVE\"") && !text.contains("stream=\"Live\""));
}

/// The 409 of admin-api ("Stream ID with the given player ID already exists"), in its
/// `{status, message}` shape, for another spelling of a stream id or of a content hash.
async fn spellings_refused(node_a: &Sluice, node_b: &Sluice, key: &str) {
    let (st, v) = add_stream_id(node_a, key, "studio_1", "live").await;
    assert_eq!(st, 200, "{v}");
    // Straight after, on the other node (on a fleet its snapshot may not know yet).
    for (node, player) in [(node_b, "LIVE"), (node_a, "Live"), (node_b, "live")] {
        let (st, v) = add_stream_id(node, key, "studio_2", player).await;
        assert_eq!(st, 409, "{player}: {v}");
        assert_eq!(v["status"], "error", "{v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap_or("")
                .contains("already exists"),
            "{v}"
        );
    }
    for player in ["movie-1", "MOVIE-1"] {
        let (st, v) = add_stream_id(node_b, key, "elsewhere", player).await;
        assert_eq!(st, 409, "{player} shadows the content Movie-1: {v}");
        assert_eq!(v["status"], "error", "{v}");
    }
    for node in [node_a, node_b] {
        let (st, v) = admin_call(node, "GET", "/api/stream-ids", key, None).await;
        assert_eq!(st, 200);
        let players: Vec<&str> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["player"].as_str().unwrap())
            .collect();
        assert_eq!(players, vec!["live"], "{v}");
    }
}

#[tokio::test]
async fn stream_ids_equal_without_case_are_refused_on_sqlite() {
    let b = bucket();
    let s = Sluice::start_with_env(&gate_config(&b), &gate_env());
    let key = admin_key(&s);
    spellings_refused(&s, &s, &key).await;
}

#[tokio::test]
async fn stream_ids_equal_without_case_are_refused_on_redis() {
    let redis = RedisServer::start();
    let b = bucket();
    let cfg = gate_config(&b);
    let a = Sluice::start_node(&redis, "", &cfg, &gate_env());
    let c = Sluice::start_node(&redis, "", &cfg, &gate_env());
    let key = fleet_admin_key(&[&a, &c]);
    spellings_refused(&a, &c, &key).await;
    // Two nodes registering two spellings at once: exactly one wins.
    for round in 0..5 {
        let lower = format!("race-{round}");
        let upper = lower.to_ascii_uppercase();
        let (x, y) = tokio::join!(
            add_stream_id(&a, &key, "p1", &lower),
            add_stream_id(&c, &key, "p2", &upper)
        );
        let mut statuses = [x.0, y.0];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "round {round}: {x:?} {y:?}");
    }
}

// ---------------------------------------------------------------------------------------
// providers

fn jwt() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "viewer-1", "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(PROVIDER_SECRET.as_bytes()),
    )
    .unwrap()
}

/// A config with `bucket` and the provider `acme` whose settings are `providers`.
fn provider_yaml(bucket: &str, providers: &str) -> String {
    format!(
        "origins:\n  bucket: {bucket}\nprovider_auth:\n  jwt_secret: {PROVIDER_SECRET}\nproviders:\n  acme:\n{providers}"
    )
}

/// A channel URL, allowed host or derived `api_base` on the bucket's origin — in any
/// spelling of host and port — is refused by `check` and `serve`, naming the key.
#[test]
fn providers_on_the_bucket_origin_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let p = free_port();
    let refused = [
        (
            format!("http://localhost:{p}"),
            format!("    channels:\n      ch: {{url: 'http://LOCALHOST.:{p}/live/x.m3u8', type: hls}}\n"),
            "providers.acme.channels.ch.url",
        ),
        (
            "https://media.example.com/".to_string(),
            "    channels:\n      ch: {url: 'https://Media.Example.COM:443/a.m3u8', type: hls}\n".to_string(),
            "providers.acme.channels.ch.url",
        ),
        (
            "https://xn--mdia-bpa.example".to_string(),
            "    channels:\n      ch: {url: 'https://MÉDIA.example/a.m3u8', type: hls}\n".to_string(),
            "providers.acme.channels.ch.url",
        ),
        (
            format!("http://127.0.0.1:{p}/"),
            format!("    allowed_hosts: ['cdn.example.com', '127.0.0.1:{p}']\n    channels:\n      ch: {{url: 'https://cdn.example.com/a.m3u8', type: hls}}\n"),
            "providers.acme.allowed_hosts",
        ),
        (
            format!("http://localhost:{p}/media"),
            format!("    allowed_hosts: ['localhost:{p}']\n    channels:\n      ch: {{url: 'http://localhost:{p}/Media/movie-1/master.m3u8', type: hls}}\n"),
            "providers.acme.channels.ch.url",
        ),
        (
            format!("http://localhost:{p}"),
            format!("    api_base: 'http://Localhost:{p}/'\n    channels:\n      ch: {{api: '/api/ch', type: hls}}\n"),
            "providers.acme.api_base",
        ),
    ];
    for (i, (bucket, providers, key)) in refused.iter().enumerate() {
        let text = provider_yaml(bucket, providers);
        let (path, _) = write_config(dir.path(), &format!("p{i}.yaml"), &text);
        let (ok, err) = check(&path);
        assert!(
            !ok,
            "check accepted a provider on the bucket:\n{text}\n{err}"
        );
        assert!(
            err.contains(key) && err.contains(&format!("p{i}.yaml")) && err.contains("line "),
            "{key} not named:\n{text}\n{err}"
        );
        assert!(err.contains("bucket"), "{err}");
    }
    let (path, _) = write_config(
        dir.path(),
        "serve.yaml",
        &provider_yaml(&refused[0].0, &refused[0].1),
    );
    let err = serve_refused(&path);
    assert!(
        err.contains("providers.acme.channels.ch.url"),
        "serve: {err}"
    );

    // Not the bucket: another port of its host, and the rest of a host it shares below a
    // path prefix.
    for (bucket, providers) in [
        (
            format!("http://localhost:{p}"),
            format!("    channels:\n      ch: {{url: 'http://localhost:{}/live/x.m3u8', type: hls}}\n", p + 1),
        ),
        (
            format!("http://localhost:{p}/media"),
            format!("    allowed_hosts: ['localhost:{p}']\n    channels:\n      ch: {{url: 'http://localhost:{p}/live/x.m3u8', type: hls}}\n"),
        ),
    ] {
        let text = provider_yaml(&bucket, &providers);
        let (path, _) = write_config(dir.path(), "fine.yaml", &text);
        let (ok, err) = check(&path);
        assert!(ok, "{text}\n{err}");
    }
}

/// A bucket sharing its host with a provider, below `/media`: `/api/proxy` with a valid ctx
/// never fetches from it — in any spelling, after a redirect from the allowed part of the
/// host, or through a URI of a provider playlist — while the provider's own objects play.
#[tokio::test]
async fn proxy_never_reaches_the_bucket() {
    // One origin: the bucket below /media, the provider's channel beside it.
    let gated = random_bytes(4000, 7);
    let origin = TestOrigin::new()
        .route(
            "/media/Movie-1/v720/seg_1.m4s",
            Reply::ok(gated, "video/iso.segment"),
        )
        .route("/media/Movie-1/master.m3u8", Reply::ok(MASTER, HLS))
        .route(
            "/live/ok.m4s",
            Reply::ok(random_bytes(1000, 8), "video/iso.segment"),
        )
        .route(
            "/live/redirect.m3u8",
            Reply::status(302).header("location", "/media/Movie-1/master.m3u8"),
        )
        .start();
    let port = origin.addr.port();
    let host = format!("localhost:{port}");
    origin.set_route(
        "/live/ch.m3u8",
        Reply::ok(
            format!(
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nok.m4s\n#EXTINF:2,\n../media/Movie-1/v720/seg_1.m4s\n#EXTINF:2,\nhttp://LOCALHOST:{port}/MEDIA/Movie-1/v720/seg_1.m4s\n#EXT-X-ENDLIST\n"
            ),
            HLS,
        ),
    );
    origin.set_route(
        "/live/redirect.m4s",
        Reply::status(302).header(
            "location",
            &format!("http://{host}/media/Movie-1/v720/seg_1.m4s"),
        ),
    );
    origin.set_route(
        "/api/ch",
        Reply::ok(
            format!(r#"{{"url":"http://{host}/media/Movie-1/master.m3u8"}}"#),
            "application/json",
        ),
    );
    let cfg = format!(
        r#"origins:
  bucket: http://{host}/media
streaming:
  secret: {STREAM_SECRET}
  contents:
    - id: film
      hash: Movie-1
      token_required: true
provider_auth:
  jwt_secret: {PROVIDER_SECRET}
providers:
  acme:
    allowed_hosts: ["{host}"]
    allow_private: true
    channels:
      ch: {{url: "http://{host}/live/ch.m3u8", type: hls}}
      fromapi: {{api: "http://{host}/api/ch", type: hls}}
"#
    );
    let s = Sluice::start(&cfg);
    // The gated content itself needs its token.
    assert_eq!(get(&s, "/stream/Movie-1/v720/seg_1.m4s").await.0, 401);

    let resp = client()
        .get(s.edge_url("/api/providers/acme/channels/ch/stream"))
        .bearer_auth(jwt())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let info: Value = resp.json().await.unwrap();
    let (_, ctx) = sluice::rewrite::unwrap_proxy_url(info["url"].as_str().unwrap()).unwrap();
    let proxy = |url: &str| {
        format!(
            "/api/proxy?url={}&ctx={ctx}",
            url::form_urlencoded::byte_serialize(url.as_bytes()).collect::<String>()
        )
    };

    // The provider's own objects play.
    let (st, body) = get(&s, &proxy(&format!("http://{host}/live/ok.m4s"))).await;
    assert_eq!((st, body), (200, random_bytes(1000, 8).to_vec()));

    let refused_as_bucket = |st: u16, body: &[u8], what: &str| {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        assert_eq!(st, 403, "{what}: {}", String::from_utf8_lossy(body));
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains("bucket")),
            "{what}: {v}"
        );
    };
    for target in [
        format!("http://{host}/media/Movie-1/v720/seg_1.m4s"),
        format!("http://LOCALHOST:{port}/media/Movie-1/v720/seg_1.m4s"),
        format!("http://localhost.:{port}/media/Movie-1/v720/seg_1.m4s"),
        format!("http://{host}/MEDIA/Movie-1/v720/seg_1.m4s"),
        format!("http://{host}//media/Movie-1/v720/seg_1.m4s"),
        format!("http://{host}/live/../media/Movie-1/v720/seg_1.m4s"),
        format!("http://{host}/live/%2e%2e/media/Movie-1/v720/seg_1.m4s"),
        format!("http://{host}/%6Dedia/Movie-1/v720/seg_1.m4s"),
        format!("http://{host}/media/Movie-1/master.m3u8"),
    ] {
        let (st, body) = get(&s, &proxy(&target)).await;
        refused_as_bucket(st, &body, &target);
    }

    // A redirect from the allowed part of the host into the bucket.
    for start in ["live/redirect.m4s", "live/redirect.m3u8"] {
        let (st, body) = get(&s, &proxy(&format!("http://{host}/{start}"))).await;
        refused_as_bucket(st, &body, start);
    }

    // A provider playlist pointing into the bucket: its rewritten URIs are refused when
    // fetched; the provider's own segment plays.
    let (st, text) = get_text(&s, &proxy(&format!("http://{host}/live/ch.m3u8"))).await;
    assert_eq!(st, 200, "{text}");
    let lines = uris(&text);
    assert_eq!(lines.len(), 3, "{text}");
    for (i, u) in lines.iter().enumerate() {
        let (upstream, _) = sluice::rewrite::unwrap_proxy_url(u).unwrap_or_default();
        let (st, body) = get(&s, &absolute("/api/proxy", u)).await;
        if i == 0 {
            assert_eq!(st, 200, "{upstream}");
        } else {
            refused_as_bucket(st, &body, &upstream);
        }
    }

    // A provider API answering a bucket URL hands out no ctx for it.
    let resp = client()
        .get(s.edge_url("/api/providers/acme/channels/fromapi/stream"))
        .bearer_auth(jwt())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        400,
        "{}",
        resp.text().await.unwrap_or_default()
    );

    assert_eq!(
        origin.hits("/media/Movie-1/v720/seg_1.m4s") + origin.hits("/media/Movie-1/master.m3u8"),
        0,
        "the bucket's gated objects were fetched for a provider"
    );
}

/// The bucket on its scheme's default port, named with the port spelled out: refused
/// before any connection (nothing needs to listen on port 80).
#[tokio::test]
async fn proxy_refuses_the_bucket_with_an_explicit_default_port() {
    let cfg = format!(
        r#"origins:
  bucket: http://localhost/media
provider_auth:
  jwt_secret: {PROVIDER_SECRET}
providers:
  acme:
    allowed_hosts: [localhost]
    allow_private: true
    channels:
      ch: {{url: "http://localhost/live/ch.m3u8", type: hls}}
"#
    );
    let s = Sluice::start(&cfg);
    let resp = client()
        .get(s.edge_url("/api/providers/acme/channels/ch/stream"))
        .bearer_auth(jwt())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let info: Value = resp.json().await.unwrap();
    let (_, ctx) = sluice::rewrite::unwrap_proxy_url(info["url"].as_str().unwrap()).unwrap();
    for target in [
        "http://localhost:80/media/Movie-1/seg.m4s",
        "http://LocalHost:80/media/x.m4s",
        "https://localhost:443/media/x.m4s",
    ] {
        let path = format!(
            "/api/proxy?url={}&ctx={ctx}",
            url::form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>()
        );
        let (st, body) = get_text(&s, &path).await;
        assert_eq!(st, 403, "{target}: {body}");
        assert!(body.contains("bucket"), "{target}: {body}");
    }
}

//! Revocations and uses that last (issue 20), against the real binary:
//!
//! - a revocation outlives every credential minted for its token, even after the operator
//!   lowered `streaming.playback_max` (and `streaming.leeway`) and restarted — on SQLite and
//!   on Redis;
//! - on Redis, after Redis lost its data (`FLUSHALL`), a node that knows a token is revoked
//!   never admits it again, and writes the revocation back so a node started after the loss
//!   refuses it too; a `maxmemory-policy` that may evict is warned about (at start and on
//!   every reconnection), and a policy that cannot be read is said to be unchecked;
//! - an entry load the player abandoned before the playlist was written gives its use back,
//!   and the access log does not say 200 for it.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{admin_key, client, fleet_admin_key, RedisServer, Reply, Sluice, TestOrigin};
use serde_json::{json, Value};

const STREAM_SECRET: &str = "revocations-stream-secret-0123456789";

const MASTER: &str =
    "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720\nv720/playlist.m3u8\n";
const MEDIA: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg_1.m4s\n#EXT-X-ENDLIST\n";
const HLS: &str = "application/vnd.apple.mpegurl";

fn origin() -> common::RunningOrigin {
    TestOrigin::new()
        .route("/movie-gated/master.m3u8", Reply::ok(MASTER, HLS))
        .route("/movie-gated/v720/playlist.m3u8", Reply::ok(MEDIA, HLS))
        .route(
            "/movie-gated/v720/seg_1.m4s",
            Reply::ok(vec![7u8; 400], "video/iso.segment"),
        )
        // An origin slow to answer the entry playlist: a player may give up meanwhile.
        .route(
            "/movie-slow/master.m3u8",
            Reply::ok(MASTER, HLS).delay(Duration::from_millis(1500)),
        )
        .route("/movie-slow/v720/playlist.m3u8", Reply::ok(MEDIA, HLS))
        .start()
}

/// `streaming` lines (indented two spaces) go after the secret.
fn config(o: &common::RunningOrigin, streaming: &str, extra: &str) -> String {
    format!(
        r#"origins:
  bucket: {url}
streaming:
  secret: {STREAM_SECRET}
{streaming}  contents:
    - id: gated
      hash: movie-gated
      token_required: true
      max_uses: 5
    - id: slow
      hash: movie-slow
      token_required: true
      max_uses: 1
{extra}"#,
        url = o.url()
    )
}

/// A stream token for `gated` as a conforming issuer would have minted it, expiring at
/// `exp` (which may be in the past: the leeway still accepts it), bound to 127.0.0.1.
fn token_expiring_at(exp: i64) -> (String, String) {
    let jti = format!("revocation-test-{exp}-{}", rand_suffix());
    let claims = json!({
        "sub": "user-1",
        "iat": now().min(exp - 1),
        "exp": exp,
        "contentId": "gated",
        "contentType": "MOVIE",
        "quality": "auto",
        "deviceId": "",
        "profileId": "p",
        "ipAddress": "127.0.0.1",
        "maxUses": 5,
        "jti": jti,
    });
    let t = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(STREAM_SECRET.as_bytes()),
    )
    .unwrap();
    (t, jti)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn get(s: &Sluice, path: &str) -> (u16, String) {
    let resp = client().get(s.edge_url(path)).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn entry(hash: &str, t: &str) -> String {
    format!("/stream/{hash}/master.m3u8?token={t}")
}

/// The child playlist URL (with its playback credential) of an entry playlist.
fn child_of(hash: &str, master: &str) -> String {
    let line = master
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no URI in {master}"));
    let base = url::Url::parse(&format!("http://x/stream/{hash}/master.m3u8")).unwrap();
    let u = base.join(line.trim()).unwrap();
    format!("{}?{}", u.path(), u.query().unwrap_or(""))
}

/// Start a playback: the entry load, and the credentialed child URL it hands out.
async fn start_playback(s: &Sluice, t: &str) -> String {
    let (st, master) = get(s, &entry("movie-gated", t)).await;
    assert_eq!(st, 200, "{master}");
    let child = child_of("movie-gated", &master);
    assert_eq!(get(s, &child).await.0, 200, "the fresh credential plays");
    child
}

async fn revoke(s: &Sluice, key: &str, t: &str) -> Value {
    let r = client()
        .post(s.edge_url("/api/v2/streaming/revoke"))
        .bearer_auth(key)
        .json(&json!({"streamToken": t}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

/// `verify`'s remaining uses, or its error message.
async fn verify(s: &Sluice, t: &str) -> (u16, Value) {
    let (st, body) = get(s, &format!("/api/v2/streaming/verify?token={t}")).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let shown = if st == 200 {
        v["remainingUses"].clone()
    } else {
        v["message"].clone()
    };
    (st, shown)
}

async fn sleep_until(unix: i64) {
    let wait = unix - now();
    if wait > 0 {
        tokio::time::sleep(Duration::from_secs(wait as u64)).await;
    }
}

/// The first run: a long reach (`leeway` 60 s, `playback_max` 1 h).
const LONG: &str = "  leeway: 60s\n  playback_max: 1h\n";
/// After the operator shortened both: a credential minted before still lives an hour.
const SHORT: &str = "  leeway: 0s\n  playback_max: 1m\n";

/// Where the state lives between restarts: a SQLite file, or a Redis every run shares.
enum Backing {
    Sqlite,
    Redis(RedisServer),
}

impl Backing {
    fn start(&self, cfg: &str, dir: Option<tempfile::TempDir>) -> Sluice {
        match self {
            Backing::Sqlite => match dir {
                Some(d) => Sluice::start_in(d, cfg, &[]),
                None => Sluice::start(cfg),
            },
            Backing::Redis(r) => Sluice::start_node(r, "", cfg, &[]),
        }
    }

    fn key(&self, s: &Sluice) -> String {
        match self {
            Backing::Sqlite => admin_key(s),
            Backing::Redis(_) => fleet_admin_key(&[s]),
        }
    }
}

/// Two playbacks start under the long reach; the operator shortens it and restarts. Token A
/// is revoked at once, token B only once the short horizon (`exp + 0 + 60 s`) has passed.
/// Past that horizon, and after another restart, neither credential plays again.
async fn shortened_reach_keeps_revocations(backing: Backing) {
    let o = origin();
    // Expired 40 s ago: the 60 s leeway still opens it, for 20 s more.
    let exp = now() - 40;
    let (ta, _) = token_expiring_at(exp);
    let (tb, _) = token_expiring_at(exp);
    let s = backing.start(&config(&o, LONG, ""), None);
    let key = backing.key(&s);
    let child_a = start_playback(&s, &ta).await;
    let child_b = start_playback(&s, &tb).await;
    let dir = match &backing {
        Backing::Sqlite => Some(s.stop_keep_dir()),
        Backing::Redis(_) => {
            drop(s);
            None
        }
    };

    let short = config(&o, SHORT, "");
    let s = backing.start(&short, dir);
    // Minted for an hour: the shorter playback_max does not cut a credential already out.
    assert_eq!(get(&s, &child_a).await.0, 200);
    let v = revoke(&s, &key, &ta).await;
    assert_eq!(v["revoked"], json!(true), "{v}");
    assert_eq!(get(&s, &child_a).await.0, 410);
    // Past the horizon the short config computes (exp + 0 + 60 s), then a restart: a purge
    // at start and a purge at the horizon both had their chance.
    sleep_until(exp + 60 + 2).await;
    let dir = match &backing {
        Backing::Sqlite => Some(s.stop_keep_dir()),
        Backing::Redis(_) => {
            drop(s);
            None
        }
    };
    let s = backing.start(&short, dir);
    let (st, body) = get(&s, &child_a).await;
    assert_eq!(
        st, 410,
        "a revoked playback's older credential plays again: {body}"
    );
    // B's credential still lives: revoking B now is a revocation, not "already expired".
    assert_eq!(get(&s, &child_b).await.0, 200);
    let v = revoke(&s, &key, &tb).await;
    assert_eq!(v["expired"], Value::Null, "{v}");
    assert_eq!(v["revoked"], json!(true), "{v}");
    assert_eq!(get(&s, &child_b).await.0, 410);
}

#[tokio::test]
async fn a_shortened_reach_keeps_revocations_on_sqlite() {
    shortened_reach_keeps_revocations(Backing::Sqlite).await;
}

#[tokio::test]
async fn a_shortened_reach_keeps_revocations_on_redis() {
    shortened_reach_keeps_revocations(Backing::Redis(RedisServer::start())).await;
}

/// `playback_max` alone lowered (1 h → 1 m, the smallest it may be), the leeway kept: the
/// shorter horizon is `exp + 60 s + 60 s`, so this test waits a little over a minute.
#[tokio::test]
async fn a_lower_playback_max_alone_keeps_revocations() {
    let o = origin();
    let exp = now() - 55;
    let (t, _) = token_expiring_at(exp);
    let s = Sluice::start(&config(&o, LONG, ""));
    let key = admin_key(&s);
    let child = start_playback(&s, &t).await;
    let dir = s.stop_keep_dir();
    let lower = config(&o, "  leeway: 60s\n  playback_max: 1m\n", "");
    let s = Sluice::start_in(dir, &lower, &[]);
    revoke(&s, &key, &t).await;
    assert_eq!(get(&s, &child).await.0, 410);
    sleep_until(exp + 60 + 60 + 2).await;
    let s = Sluice::start_in(s.stop_keep_dir(), &lower, &[]);
    let (st, body) = get(&s, &child).await;
    assert_eq!(
        st, 410,
        "a revoked playback's older credential plays again: {body}"
    );
}

#[tokio::test]
async fn after_redis_lost_its_data_a_node_never_admits_what_it_knows_is_revoked() {
    let redis = RedisServer::start();
    let o = origin();
    let cfg = config(&o, "", "");
    let a = Sluice::start_node(&redis, "", &cfg, &[]);
    let key = fleet_admin_key(&[&a]);
    let (t, _) = token_expiring_at(now() + 600);
    let child = start_playback(&a, &t).await;
    revoke(&a, &key, &t).await;
    assert_eq!(get(&a, &entry("movie-gated", &t)).await.0, 410);
    assert_eq!(verify(&a, &t).await, (410, json!("Token revoked")));

    // Redis restarted without persistence, evicted, or was flushed.
    assert_eq!(redis.command(&["FLUSHALL"]).as_deref(), Some("OK"));
    // A node started after the loss knows nothing of the revocation.
    let b = Sluice::start_node(&redis, "", &cfg, &[]);

    // A still knows: no new playback, no fresh credentials, verify says revoked.
    let (st, body) = get(&a, &entry("movie-gated", &t)).await;
    assert_eq!(
        st, 410,
        "a node admitted a token it knows is revoked: {body}"
    );
    assert!(!body.contains("pc="), "{body}");
    assert_eq!(verify(&a, &t).await, (410, json!("Token revoked")));
    assert_eq!(get(&a, &child).await.0, 410);

    // A wrote what it knows back: B refuses the token too, entry load and verify.
    let (st, body) = get(&b, &entry("movie-gated", &t)).await;
    assert_eq!(st, 410, "a node started after the loss admitted it: {body}");
    assert_eq!(verify(&b, &t).await, (410, json!("Token revoked")));
    let deadline = Instant::now() + Duration::from_secs(3);
    while get(&b, &child).await.0 != 410 {
        assert!(
            Instant::now() < deadline,
            "B still plays the revoked credential"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

fn wait_log(s: &Sluice, what: &str, needle: &str, n: usize) {
    let start = Instant::now();
    while count(&s.log(), needle) < n {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what}: {n} line(s) with {needle:?} expected:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn an_evicting_maxmemory_policy_is_warned_at_start_and_on_reconnect() {
    let o = origin();
    let cfg = config(&o, "", "");

    let lru = RedisServer::start();
    assert_eq!(
        lru.command(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])
            .as_deref(),
        Some("OK")
    );
    let s = Sluice::start_node(&lru, "", &cfg, &[]);
    wait_log(&s, "at start", "maxmemory-policy is allkeys-lru", 1);
    // Every normal connection dropped (the harness's own is spared): sluice reconnects and
    // checks again.
    lru.command(&["CLIENT", "KILL", "TYPE", "normal"]);
    wait_log(&s, "on reconnect", "maxmemory-policy is allkeys-lru", 2);

    // A Redis whose ACL refuses CONFIG: sluice says it could not check.
    let acl = RedisServer::start();
    assert_eq!(
        acl.command(&["ACL", "SETUSER", "default", "-config"])
            .as_deref(),
        Some("OK")
    );
    let s = Sluice::start_node(&acl, "", &cfg, &[]);
    wait_log(&s, "CONFIG refused", "could not check maxmemory-policy", 1);

    // The policy a fleet needs: no warning.
    let good = RedisServer::start();
    let s = Sluice::start_node(&good, "", &cfg, &[]);
    wait_log(&s, "checked", "maxmemory-policy is noeviction", 1);
    let log = s.log();
    assert_eq!(count(&log, "could not check maxmemory-policy"), 0, "{log}");
    assert_eq!(count(&log, "may evict"), 0, "{log}");
}

#[tokio::test]
async fn an_entry_load_abandoned_before_the_playlist_gives_its_use_back() {
    let o = origin();
    let s = Sluice::start(&config(&o, "", "log:\n  format: json\n"));
    let key = admin_key(&s);
    let r = client()
        .post(s.edge_url("/api/v2/streaming/token"))
        .bearer_auth(&key)
        .json(&json!({"contentId": "slow"}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let t = v["streamToken"].as_str().unwrap().to_string();
    assert_eq!(verify(&s, &t).await, (200, json!(1)));

    // The player asks for the entry playlist and goes away while the origin takes its time.
    let mut conn = std::net::TcpStream::connect(s.edge).unwrap();
    write!(
        conn,
        "GET {} HTTP/1.1\r\nHost: sluice\r\nX-Request-Id: abandoned-entry\r\n\r\n",
        entry("movie-slow", &t)
    )
    .unwrap();
    let start = Instant::now();
    while o.hits("/movie-slow/master.m3u8") == 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "no fill started");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(conn);

    // Its use comes back (once the gate has seen the player gone).
    let start = Instant::now();
    loop {
        let v = verify(&s, &t).await;
        if v == (200, json!(1)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the abandoned entry load kept its use: verify says {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // maxUses 1: the player's retry plays, and spends the one use.
    let (st, body) = get(&s, &entry("movie-slow", &t)).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("pc="), "{body}");
    assert_eq!(verify(&s, &t).await, (403, json!("Max uses exceeded")));

    // The access log does not say the abandoned answer went out.
    let line = access_line(&s, "abandoned-entry");
    assert_eq!(line["status"], json!(0), "{line}");
    assert_eq!(line["bytes"], json!(0), "{line}");
}

/// The access line of the request with this `X-Request-Id` (JSON log), once written.
fn access_line(s: &Sluice, request_id: &str) -> Value {
    let needle = format!("\"request_id\":\"{request_id}\"");
    let start = Instant::now();
    loop {
        if let Some(l) = s
            .log()
            .lines()
            .find(|l| l.contains(&needle) && l.contains("\"sluice::access\""))
        {
            let v: Value = serde_json::from_str(l).unwrap();
            // The main log nests an event's fields.
            return v.get("fields").cloned().unwrap_or(v);
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// sluice with a TLS listener (HTTP/2 by ALPN) beside the cleartext one, a `slow` token
/// (maxUses 1), and curl over HTTP/2 for its entry load.
struct OverHttp2 {
    s: Sluice,
    o: common::RunningOrigin,
    p: common::Pki,
    port: u16,
    token: String,
}

impl OverHttp2 {
    async fn start() -> OverHttp2 {
        let p = common::pki();
        let o = origin();
        let port = common::free_port();
        let listen = p.edge_tls(port);
        let s = Sluice::start_with_listen(&listen, &config(&o, "", "log:\n  format: json\n"));
        let key = admin_key(&s);
        let r = client()
            .post(s.edge_url("/api/v2/streaming/token"))
            .bearer_auth(&key)
            .json(&json!({"contentId": "slow"}))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        let token = v["streamToken"].as_str().unwrap().to_string();
        OverHttp2 {
            s,
            o,
            p,
            port,
            token,
        }
    }

    /// The entry load over HTTP/2, given up after `max_time`: (exited 0, `version status`,
    /// body).
    fn entry(&self, max_time: &str, request_id: &str) -> (bool, String, String) {
        let body = self.s.state_dir().join(format!("{request_id}.body"));
        let out = std::process::Command::new("curl")
            .args(["-sS", "--http2", "--max-time", max_time])
            .args(["--cacert", &self.p.ca.to_string_lossy()])
            .args(["--resolve", &format!("localhost:{}:127.0.0.1", self.port)])
            .args(["-H", &format!("X-Request-Id: {request_id}")])
            .arg("-o")
            .arg(&body)
            .args(["-w", "%{http_version} %{http_code}"])
            .arg(format!(
                "https://localhost:{}{}",
                self.port,
                entry("movie-slow", &self.token)
            ))
            .output()
            .expect("curl runs (scripts/ensure-test-deps.sh installs it)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            std::fs::read_to_string(&body).unwrap_or_default(),
        )
    }
}

#[tokio::test]
async fn a_gated_playlist_is_served_over_http2() {
    let h = OverHttp2::start().await;
    let (ok, status, body) = h.entry("20", "h2-entry");
    assert!(ok && status == "2 200", "{status}: {body}");
    assert!(body.contains("pc="), "{body}");
    let child = child_of("movie-slow", &body);
    assert_eq!(get(&h.s, &child).await.0, 200);
    assert_eq!(
        verify(&h.s, &h.token).await,
        (403, json!("Max uses exceeded"))
    );
}

/// Over HTTP/2 the player leaving is a stream reset or a closed connection (here: curl
/// giving up): the same give-back, the same status 0.
#[tokio::test]
async fn over_http2_an_abandoned_entry_load_gives_its_use_back() {
    let h = OverHttp2::start().await;
    // The origin answers after 1.5 s; the player gives up after 0.7 s.
    let (ok, status, _) = h.entry("0.7", "h2-abandoned");
    assert!(!ok, "curl did not give up: {status}");
    assert_eq!(h.o.hits("/movie-slow/master.m3u8"), 1, "no fill started");
    let line = access_line(&h.s, "h2-abandoned");
    assert_eq!(line["status"], json!(0), "{line}");
    assert_eq!(line["version"], json!("HTTP/2.0"), "{line}");
    assert_eq!(verify(&h.s, &h.token).await, (200, json!(1)));
    // maxUses 1: a player that waits plays, and spends the use.
    let (ok, status, body) = h.entry("20", "h2-kept");
    assert!(ok && status == "2 200", "{status}: {body}");
    assert_eq!(access_line(&h.s, "h2-kept")["status"], json!(200));
    assert_eq!(
        verify(&h.s, &h.token).await,
        (403, json!("Max uses exceeded"))
    );
}

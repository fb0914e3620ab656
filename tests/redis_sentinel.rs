//! Redis without a single point of failure (issue 23): a fleet on `state.redis_sentinel`
//! follows the master the Sentinels name — when the master is killed and a replica promoted,
//! and when a live master is demoted — without a restart. Real processes: a master
//! redis-server, a replica (`--replicaof`), three Sentinels (`redis-server <conf>
//! --sentinel`), two sluice nodes. The failover time (kill to the first gated start that
//! succeeds again) is measured and printed (`cargo test --test redis_sentinel --
//! --nocapture`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::gated::{entry, get, health, origin, token, until};
use common::{client, fleet_admin_key, sluice_bin, RedisServer, RunningOrigin, Sentinels, Sluice};
use serde_json::{json, Value};

const NAME: &str = "sluice-state";
const STREAM_SECRET: &str = "sentinel-stream-secret-0123456789";
const KEY_SECRET: &str = "sentinel-key-token-secret-0123456";
const KEK: &str = "4444444444444444444444444444444444444444444444444444444444444444";
/// Generous for a debug build on a shared machine: Sentinel itself needs ~1 s to see the
/// master down, then an election and a promotion.
const FAILOVER_BOUND: Duration = Duration::from_secs(30);

fn env() -> Vec<(&'static str, &'static str)> {
    vec![("KEY_TOKEN_SECRET", KEY_SECRET), ("FLEET_KEK", KEK)]
}

fn config(o: &RunningOrigin) -> String {
    let (ip, port) = (o.addr.ip(), o.addr.port());
    format!(
        r#"origins:
  bucket: http://bucket.test:{port}
  resolve: [{ip}]
streaming:
  secret: {STREAM_SECRET}
  contents:
    - id: gated
      hash: movie-gated
      token_required: true
      max_uses: 5
kek:
  current: {{id: k1, env: FLEET_KEK}}
"#
    )
}

/// A master, its replica, three Sentinels and two sluice nodes on them.
struct Fleet {
    master: RedisServer,
    replica: RedisServer,
    sentinels: Sentinels,
    _origin: RunningOrigin,
    a: Sluice,
    b: Sluice,
    key: String,
}

impl Fleet {
    fn start() -> Fleet {
        let master = RedisServer::start();
        let replica = RedisServer::start_replica_of(&master);
        let sentinels = Sentinels::start(NAME, &master, 3, 1);
        let origin = origin();
        let cfg = config(&origin);
        let a = Sluice::start_sentinel_node(&sentinels, "", &cfg, &env());
        let b = Sluice::start_sentinel_node(&sentinels, "", &cfg, &env());
        let key = fleet_admin_key(&[&a, &b]);
        Fleet {
            master,
            replica,
            sentinels,
            _origin: origin,
            a,
            b,
            key,
        }
    }

    fn nodes(&self) -> [&Sluice; 2] {
        [&self.a, &self.b]
    }

    /// Wait until the replica has applied everything the master has: what follows is not
    /// about what asynchronous replication can lose (README says; this test measures the
    /// failover).
    fn replica_caught_up(&self) {
        let offset = |r: &RedisServer| {
            r.command(&["INFO", "replication"]).and_then(|i| {
                i.lines()
                    .find_map(|l| l.strip_prefix("master_repl_offset:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
        };
        common::wait_for("the replica to catch up", Duration::from_secs(10), || {
            let m = offset(&self.master);
            m.is_some() && m == offset(&self.replica)
        });
    }
}

async fn revoke(s: &Sluice, key: &str, t: &str) -> u16 {
    client()
        .post(s.edge_url("/api/v2/streaming/revoke"))
        .bearer_auth(key)
        .json(&json!({"streamToken": t}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn verify_message(s: &Sluice, t: &str) -> Value {
    let (_, body) = get(s, &format!("/api/v2/streaming/verify?token={t}")).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    v.get("remainingUses")
        .cloned()
        .unwrap_or_else(|| v["message"].clone())
}

/// Wait until `n` refuses `t`'s entry load as revoked (`410`); meanwhile it may only fail
/// closed (`503`: not yet on the master the Sentinels name).
async fn revoked_on(n: &Sluice, t: &str) {
    until("the revocation refused", FAILOVER_BOUND, || async move {
        let st = get(n, &entry(t)).await.0;
        assert!(st == 410 || st == 503, "entry load answered {st}");
        st == 410
    })
    .await;
}

fn master_line(port: u16) -> String {
    format!("redis master {NAME} at 127.0.0.1:{port}")
}

/// Both nodes healthy (connected, subscribed, fresh) and the writes of one seen by the other,
/// on whichever master the Sentinels name now.
async fn fleet_works(f: &Fleet) {
    for n in f.nodes() {
        until("the node healthy", FAILOVER_BOUND, || async move {
            let h = health(n).await;
            h["status"] == "ok" && h["redis"] == "ok"
        })
        .await;
    }
    // A use counted on A is counted on B; a revocation on A is refused on B.
    let t = token(&f.a, &f.key).await;
    assert_eq!(get(&f.a, &entry(&t)).await.0, 200);
    assert_eq!(verify_message(&f.b, &t).await, json!(4));
    assert_eq!(get(&f.b, &entry(&t)).await.0, 200);
    assert_eq!(verify_message(&f.a, &t).await, json!(3));
    assert_eq!(revoke(&f.a, &f.key, &t).await, 200);
    let (st, body) = get(&f.b, &entry(&t)).await;
    assert_eq!(st, 410, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_followed_by_every_node() {
    let mut f = Fleet::start();
    let first = master_line(f.master.port);
    for n in f.nodes() {
        assert!(n.log().contains(&first), "{}", n.log());
    }
    fleet_works(&f).await;
    // State written before the failover, replicated: a use count and a revocation.
    let used = token(&f.a, &f.key).await;
    assert_eq!(get(&f.b, &entry(&used)).await.0, 200);
    let revoked = token(&f.a, &f.key).await;
    assert_eq!(revoke(&f.a, &f.key, &revoked).await, 200);
    let (ta, tb) = (token(&f.a, &f.key).await, token(&f.b, &f.key).await);
    f.replica_caught_up();

    f.master.kill9();
    // Each node fails closed meanwhile (503, never another answer), then serves a gated
    // start again: both polled at once, each timed from the kill.
    let served_again = |n: &'static str, s: &Sluice, path: &str| {
        let (s, path) = (s.edge_url(path), path.to_string());
        async move {
            until(n, FAILOVER_BOUND, || {
                let s = s.clone();
                let path = path.clone();
                async move {
                    let r = client().get(&s).send().await.unwrap();
                    let st = r.status().as_u16();
                    assert!(st == 200 || st == 503, "{path}: {st}");
                    st == 200
                }
            })
            .await
        }
    };
    let sentinels = &f.sentinels;
    let promoted_port = f.replica.port;
    let named = until(
        "the Sentinels to name the replica",
        FAILOVER_BOUND,
        || async move { sentinels.master_port(0) == Some(promoted_port) },
    );
    let (named, on_a, on_b) = tokio::join!(
        named,
        served_again("a gated start on A", &f.a, &entry(&ta)),
        served_again("a gated start on B", &f.b, &entry(&tb))
    );
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    eprintln!(
        "measured: master killed -> Sentinel names the replica after {named:?}; first gated \
         start served again: A after {on_a:?}, B after {on_b:?} (Sentinel \
         down-after-milliseconds 1000, failover-timeout 3000; debug build; {cpu})"
    );
    // Both follow the promoted replica, and say so.
    assert_eq!(f.sentinels.master_port(0), Some(f.replica.port));
    let promoted = master_line(f.replica.port);
    for n in f.nodes() {
        assert!(n.log().contains(&promoted), "{}", n.log());
        assert!(!n.log().contains("s3cret"));
    }
    // What was replicated before the kill is still true.
    assert_eq!(verify_message(&f.b, &used).await, json!(4));
    assert_eq!(get(&f.a, &entry(&revoked)).await.0, 410);
    fleet_works(&f).await;
    // The CLI finds the new master the same way: the fleet's default key is listed.
    let out = Command::new(sluice_bin())
        .args(["keys", "list", "-c"])
        .arg(&f.a.config_path)
        .envs(env())
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && list.contains(&f.key[..8]),
        "{list}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_master_is_left_for_the_promoted_one() {
    let f = Fleet::start();
    fleet_works(&f).await;
    let t = token(&f.a, &f.key).await;
    f.replica_caught_up();
    // A failover with the old master alive: it turns replica and refuses writes (READONLY).
    let asked = common::resp_command(f.sentinels.ports[0], None, &["SENTINEL", "FAILOVER", NAME]);
    assert_eq!(asked.as_deref(), Some("OK"));
    let started = Instant::now();
    common::wait_for("the Sentinels to name the replica", FAILOVER_BOUND, || {
        f.sentinels.master_port(0) == Some(f.replica.port)
    });
    let named = started.elapsed();
    let a = &f.a;
    let key = f.key.as_str();
    let t = t.as_str();
    // A write through A: refused (503, never 500) while A is on the demoted node, then done.
    let written = until("a revocation through A", FAILOVER_BOUND, || async move {
        let st = revoke(a, key, t).await;
        assert!(st == 200 || st == 503, "revoke answered {st}");
        st == 200
    })
    .await;
    eprintln!(
        "measured: demoted master: Sentinels named the replica after {named:?}, a write \
         through A succeeded {written:?} later"
    );
    revoked_on(&f.b, t).await;
    let promoted = master_line(f.replica.port);
    let promoted = promoted.as_str();
    for n in f.nodes() {
        until(
            "the node names the promoted master",
            FAILOVER_BOUND,
            || async move { n.log().contains(promoted) },
        )
        .await;
    }
    // The subscriptions moved too: Sentinel's reconfiguration kills a demoted node's normal
    // clients but not its subscribers, which would otherwise stay on the old node.
    common::wait_for(
        "both subscriptions on the promoted master, none left on the demoted one",
        FAILOVER_BOUND,
        || sluice_subscribers(&f.replica) == 2 && sluice_subscribers(&f.master) == 0,
    );
    fleet_works(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_demoted_under_its_clients_is_left() {
    let f = Fleet::start();
    fleet_works(&f).await;
    let t = token(&f.a, &f.key).await;
    f.replica_caught_up();
    // A demotion Sentinel's failover does not make: no client of the old master is killed
    // (Sentinel's own reconfiguration kills them, which reconnects the nodes anyway). The
    // replica is promoted by hand, the master made its replica, and the Sentinels told.
    let port = f.replica.port.to_string();
    assert_eq!(
        f.replica.command(&["REPLICAOF", "NO", "ONE"]).as_deref(),
        Some("OK")
    );
    assert_eq!(
        f.master
            .command(&["REPLICAOF", "127.0.0.1", &port])
            .as_deref(),
        Some("OK")
    );
    let demoted = Instant::now();
    for &s in &f.sentinels.ports {
        for cmd in [
            vec!["SENTINEL", "REMOVE", NAME],
            vec!["SENTINEL", "MONITOR", NAME, "127.0.0.1", &port, "2"],
        ] {
            assert_eq!(
                common::resp_command(s, None, &cmd).as_deref(),
                Some("OK"),
                "{cmd:?}"
            );
        }
    }
    let a = &f.a;
    let key = f.key.as_str();
    let t = t.as_str();
    // A write through A: refused (503, the node it holds answers READONLY) until A has left
    // the demoted node for the one the Sentinels name.
    let written = until("a revocation through A", FAILOVER_BOUND, || async move {
        let st = revoke(a, key, t).await;
        assert!(st == 200 || st == 503, "revoke answered {st}");
        st == 200
    })
    .await;
    eprintln!(
        "measured: master demoted under its clients: a write through A succeeded after {written:?}"
    );
    // B sees it once it too has left the demoted node (there, the entry's count is refused).
    revoked_on(&f.b, t).await;
    let promoted = master_line(f.replica.port);
    let promoted = promoted.as_str();
    for n in f.nodes() {
        until(
            "the node names the promoted master",
            FAILOVER_BOUND,
            || async move { n.log().contains(promoted) },
        )
        .await;
        assert!(n.log().contains("is no longer the master"), "{}", n.log());
    }
    // The old node still answers and still receives every PUBLISH (it replicates them):
    // only the move of the master takes the subscriptions off it.
    common::wait_for(
        "both subscriptions on the promoted master, none left on the demoted one",
        FAILOVER_BOUND,
        || sluice_subscribers(&f.replica) == 2 && sluice_subscribers(&f.master) == 0,
    );
    eprintln!(
        "measured: both nodes on the promoted master, subscriptions too, {:?} after the demotion",
        demoted.elapsed()
    );
    fleet_works(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_and_master_over_tls() {
    // A private CA and a certificate for localhost and 127.0.0.1 (Sentinels name nodes by IP).
    let pki = common::pki();
    let master = RedisServer::start_tls(&pki.cert, &pki.key);
    let sentinels = Sentinels::start_tls(NAME, &master, &pki);
    let origin = origin();
    let cfg = config(&origin);
    let state = format!(
        "  redis_sentinel:\n    master: {NAME}\n    sentinels: [\"127.0.0.1:{}\"]\n    tls: true\n",
        sentinels.tls_ports[0]
    );
    let start = |env: &[(&str, &str)]| {
        Sluice::start_in_with_state(
            tempfile::tempdir().unwrap(),
            &cfg,
            env,
            common::QUICK_STOP,
            "",
            &state,
        )
    };
    let ca = pki.ca.display().to_string();
    let mut trusting = env();
    trusting.push(("SSL_CERT_FILE", &ca));
    let a = start(&trusting);
    let key = fleet_admin_key(&[&a]);
    let t = token(&a, &key).await;
    assert_eq!(get(&a, &entry(&t)).await.0, 200);
    let tls_master = master_line(master.tls_port.unwrap());
    assert!(a.log().contains(&tls_master), "{}", a.log());
    // Not trusting the CA: neither the Sentinel nor the master is believed, fail closed.
    let b = start(&env());
    assert_eq!(health(&b).await["redis"], "unavailable");
    assert_eq!(get(&b, &entry(&t)).await.0, 503);
    assert!(!b.log().contains(&tls_master), "{}", b.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_and_master_passwords_come_from_the_environment_and_stay_out_of_logs() {
    const DATA_PW: &str = "data-pw-never-logged-5d1e";
    const SENTINEL_PW: &str = "sentinel-pw-never-logged-77c2";
    let master = RedisServer::start_with_password(Some(DATA_PW));
    let sentinels = Sentinels::start_with_password(NAME, &master, SENTINEL_PW);
    let origin = origin();
    let cfg = config(&origin);
    let state = format!(
        "  redis_password_env: FLEET_REDIS_PW\n  redis_sentinel:\n    master: {NAME}\n    \
         sentinels: {}\n    sentinel_password_env: FLEET_SENTINEL_PW\n",
        sentinels.yaml_list()
    );
    let start = |sentinel_pw: &str| {
        let mut env = env();
        env.push(("FLEET_REDIS_PW", DATA_PW));
        env.push(("FLEET_SENTINEL_PW", sentinel_pw));
        Sluice::start_in_with_state(
            tempfile::tempdir().unwrap(),
            &cfg,
            &env,
            common::QUICK_STOP,
            "",
            &state,
        )
    };
    let a = start(SENTINEL_PW);
    let key = fleet_admin_key(&[&a]);
    let t = token(&a, &key).await;
    assert_eq!(get(&a, &entry(&t)).await.0, 200);
    assert!(a.log().contains(&master_line(master.port)), "{}", a.log());
    // A wrong Sentinel password: the master is never resolved, everything gated fails closed,
    // and the log says why without either password.
    let b = start("not-the-sentinel-password");
    assert_eq!(health(&b).await["redis"], "unavailable");
    assert_eq!(get(&b, &entry(&t)).await.0, 503);
    assert!(b.log().contains("redis unreachable"), "{}", b.log());
    for (n, log) in [("A", a.log()), ("B", b.log())] {
        for pw in [DATA_PW, SENTINEL_PW, "not-the-sentinel-password"] {
            assert!(!log.contains(pw), "node {n} logged a password:\n{log}");
        }
    }
}

/// Pub/sub clients of `r` that are sluice's (unnamed, subscribed to its two channels; the
/// Sentinels' own are named).
fn sluice_subscribers(r: &RedisServer) -> usize {
    r.command(&["CLIENT", "LIST", "TYPE", "pubsub"])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" name= ") && l.contains(" sub=2 "))
        .count()
}

fn check(config: &std::path::Path, offline: bool) -> (bool, String) {
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("check").arg("-c").arg(config);
    if offline {
        cmd.arg("--offline");
    }
    let out = cmd.envs(env()).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn redis_and_redis_sentinel_together_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(
        &path,
        format!(
            "state:\n  sqlite: {}\n  redis: redis://127.0.0.1:6379/0\n  redis_sentinel:\n    \
             master: m\n    sentinels: [\"127.0.0.1:26379\"]\n",
            dir.path().join("s.db").display()
        ),
    )
    .unwrap();
    let (ok, out) = check(&path, true);
    assert!(!ok, "{out}");
    assert!(
        out.contains("line 4: key `state.redis_sentinel`") && out.contains("exclude each other"),
        "{out}"
    );
    // Sentinels without the master's name: the key that is missing is named.
    std::fs::write(
        &path,
        format!(
            "state:\n  sqlite: {}\n  redis_sentinel:\n    sentinels: [\"127.0.0.1:26379\"]\n",
            dir.path().join("s.db").display()
        ),
    )
    .unwrap();
    let (ok, out) = check(&path, true);
    assert!(!ok, "{out}");
    assert!(
        out.contains("key `state.redis_sentinel.master`") && out.contains("required"),
        "{out}"
    );
}

#[test]
fn sluice_check_asks_the_sentinels() {
    let master = RedisServer::start();
    let sentinels = Sentinels::start(NAME, &master, 1, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    // Port 1 (tcpmux): privileged, so no test process listens there.
    let dead = 1;
    let write = |name: &str, list: &str| {
        std::fs::write(
            &path,
            format!(
                "listen:\n  edge: 127.0.0.1:{}\n  admin: 127.0.0.1:{}\nstate:\n  sqlite: {}\n  \
                 redis_sentinel:\n    master: {name}\n    sentinels: {list}\n",
                common::free_port(),
                common::free_port(),
                dir.path().join("s.db").display()
            ),
        )
        .unwrap()
    };
    write(NAME, &sentinels.yaml_list());
    let (ok, out) = check(&path, false);
    assert!(ok && !out.contains("warning"), "{out}");
    // A name the Sentinels do not monitor (a typo serve would retry forever), and a dead
    // Sentinel, are warned about.
    let list = format!(
        "[\"127.0.0.1:{dead}\", \"127.0.0.1:{}\"]",
        sentinels.ports[0]
    );
    write("sluice-stat", &list);
    let (ok, out) = check(&path, false);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "warning: state.redis_sentinel.sentinels: 127.0.0.1:{dead} is not reachable"
        )) && out.contains(&format!(
            "warning: state.redis_sentinel.master: Sentinel 127.0.0.1:{} monitors no master \
             named `sluice-stat`",
            sentinels.ports[0]
        )),
        "{out}"
    );
}

//! The cache fleet (issue 13), against real processes: three `sluice` nodes on their own
//! loopback addresses (127.0.0.2–4, so players from 127.0.0.1 are told apart from nodes) in
//! front of one real counting origin. Every object's owner is computed with the same ring
//! the nodes use, so each test knows which node must fetch what.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{
    admin_key, client, free_port_on, metric, metrics, random_bytes, Reply, RunningOrigin, Sluice,
    TestOrigin,
};
use futures::StreamExt;
use sluice::fleet::auth;
use sluice::fleet::ring::Ring;

/// Fleets started by this test binary (each gets its own secret).
static FLEETS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const NODE_IPS: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
const SEGMENT: &str = "video/iso.segment";

/// Three nodes and the ring they share.
struct Nodes {
    nodes: Vec<Sluice>,
    addrs: Vec<SocketAddr>,
    ring: Ring,
    origin_host: String,
    /// This fleet's own secret: a node of another test's fleet (which may reuse a port a
    /// killed node freed) refuses this one's requests instead of answering them.
    secret: String,
}

impl Nodes {
    /// Start three nodes; `fleet_extra` goes under `fleet:` (indented two spaces), `extra`
    /// at the top level.
    fn start(origin: &RunningOrigin, fleet_extra: &str, extra: &str) -> Nodes {
        let addrs: Vec<SocketAddr> = NODE_IPS
            .iter()
            .map(|ip| format!("{ip}:{}", free_port_on(ip)).parse().unwrap())
            .collect();
        let secret = format!(
            "fleet-secret-{}-{}",
            std::process::id(),
            FLEETS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let starts: Vec<_> = addrs
            .iter()
            .map(|&this| {
                let cfg = node_config(origin, &addrs, this, fleet_extra, extra);
                let secret = secret.clone();
                std::thread::spawn(move || {
                    Sluice::start_at(this, &cfg, &[("FLEET_SECRET", secret.as_str())])
                })
            })
            .collect();
        Nodes {
            nodes: starts.into_iter().map(|t| t.join().unwrap()).collect(),
            ring: Ring::new(&addrs),
            addrs,
            origin_host: origin.addr.to_string(),
            secret,
        }
    }

    /// A node's signature of a `GET` it sends `to`, made with the fleet secret as that node
    /// would.
    fn signed_as(&self, node: SocketAddr, to: SocketAddr, path: &str, at: i64) -> String {
        auth::sign(
            self.secret.as_bytes(),
            &auth::Signed {
                method: "GET",
                path_and_query: path,
                body: b"",
            },
            &auth::Hop {
                sender: node,
                receiver: to,
                ts: at,
                nonce: rand::random(),
            },
        )
        .unwrap()
    }

    /// The header node `from` sends with a `GET` of `path` to node `to`, now.
    fn signed_for(&self, from: usize, to: usize, path: &str) -> String {
        self.signed_as(self.addrs[from], self.addrs[to], path, unix_now())
    }

    /// Which node owns `/stream/{path}` (the bucket is the origin's root).
    fn owner_of(&self, path: &str) -> usize {
        let primary = format!("http://{}/{path}", self.origin_host);
        let owner = self.ring.owner(&primary).unwrap();
        self.addrs.iter().position(|a| *a == owner).unwrap()
    }

    /// The first `{dir}/seg_{i}.m4s` that node `owner` owns.
    fn object_owned_by(&self, owner: usize, dir: &str) -> String {
        (0..1000)
            .map(|i| format!("{dir}/seg_{i}.m4s"))
            .find(|p| self.owner_of(p) == owner)
            .unwrap()
    }

    fn url(&self, node: usize, path: &str) -> String {
        self.nodes[node].edge_url(path)
    }
}

fn node_config(
    origin: &RunningOrigin,
    addrs: &[SocketAddr],
    this: SocketAddr,
    fleet_extra: &str,
    extra: &str,
) -> String {
    let peers: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "origins:\n  bucket: {}\n  read_timeout: 10s\nfleet:\n  peers: [{}]\n  self: \"{this}\"\n  secret_env: FLEET_SECRET\n{fleet_extra}{extra}",
        origin.url(),
        peers.join(", "),
    )
}

async fn fleet_metric(s: &Sluice, series: &str) -> f64 {
    metric(&metrics(s).await, series)
}

/// GET; status, `x-cache-status`, body.
async fn get(url: &str) -> (u16, String, bytes::Bytes) {
    let r = client().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("x-cache-status")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, cache, r.bytes().await.unwrap())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_300_players_one_cold_segment_one_origin_fetch() {
    let body = random_bytes(256 * 1024, 13);
    let origin = TestOrigin::new().start();
    let nodes = Nodes::start(&origin, "", "");
    // Any segment: its owner is whichever node the ring says.
    let path = "live/v/seg_1.m4s";
    let owner = nodes.owner_of(path);
    // Latency and a slow body, so all 300 arrive while the one fetch is in flight.
    origin.set_route(
        &format!("/{path}"),
        Reply::ok(body.clone(), SEGMENT)
            .delay(Duration::from_millis(300))
            .trickle(8, Duration::from_millis(400)),
    );
    let c = client();
    let started = Instant::now();
    let players: Vec<_> = (0..300)
        .map(|i| {
            let url = nodes.url(i % 3, &format!("/stream/{path}"));
            let c = c.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let r = c.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let b = r.bytes().await.unwrap();
                (b, t.elapsed())
            })
        })
        .collect();
    let mut took = Vec::new();
    for p in players {
        let (b, t) = p.await.unwrap();
        assert_eq!(b.len(), body.len());
        assert_eq!(b, body);
        took.push(t);
    }
    took.sort();
    eprintln!(
        "fleet: 300 players on 3 nodes, one cold 256 KiB segment (origin: 300 ms + 400 ms body): \
         origin fetches {}, last byte p50 {:?} max {:?}, all done in {:?}",
        origin.hits(&format!("/{path}")),
        percentile(&took, 0.5),
        percentile(&took, 1.0),
        started.elapsed()
    );
    assert_eq!(
        origin.hits(&format!("/{path}")),
        1,
        "the fleet fetched the segment more than once"
    );
    // Each other node asked the owner once (its own players coalesced on its cache lock)…
    assert_eq!(
        fleet_metric(
            &nodes.nodes[owner],
            "sluice_fleet_peer_requests_total{result=\"served\"}"
        )
        .await,
        2.0
    );
    for n in (0..3).filter(|n| *n != owner) {
        assert_eq!(
            fleet_metric(
                &nodes.nodes[n],
                "sluice_fleet_owner_fetches_total{result=\"answered\"}"
            )
            .await,
            1.0
        );
    }
    // …and the node-to-node header never reached the origin.
    for r in origin.requests() {
        assert!(!r.headers.contains_key(auth::HEADER), "{r:?}");
    }
    // Every node now holds its own copy.
    for n in 0..3 {
        let (status, cache, b) = get(&nodes.url(n, &format!("/stream/{path}"))).await;
        assert_eq!((status, cache.as_str(), b.len()), (200, "hit", body.len()));
    }
    assert_eq!(origin.hits(&format!("/{path}")), 1);

    // What a miss costs, by where the object is (one request each, no origin delay).
    let cold = nodes.object_owned_by(owner, "lat");
    origin.set_route(
        &format!("/{cold}"),
        Reply::ok(random_bytes(64 * 1024, 3), SEGMENT),
    );
    let others: Vec<usize> = (0..3).filter(|n| *n != owner).collect();
    let time = |node: usize| {
        let url = nodes.url(node, &format!("/stream/{cold}"));
        async move {
            let t = Instant::now();
            let (status, cache, _) = get(&url).await;
            assert_eq!(status, 200);
            (cache, t.elapsed())
        }
    };
    let (c1, cold_via_owner) = time(others[0]).await;
    let (c2, owner_hit) = time(others[1]).await;
    let (c3, local_hit) = time(owner).await;
    assert_eq!(
        (c1.as_str(), c2.as_str(), c3.as_str()),
        ("miss", "miss", "hit")
    );
    assert_eq!(origin.hits(&format!("/{cold}")), 1);
    eprintln!(
        "fleet latency (64 KiB, debug build, loopback): non-owner miss + owner miss (origin) {cold_via_owner:?}, \
         non-owner miss + owner hit {owner_hit:?}, owner local hit {local_hit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owner_killed_players_still_served_from_the_origin() {
    let origin = TestOrigin::new().start();
    let mut nodes = Nodes::start(&origin, "", "");
    let body = random_bytes(128 * 1024, 21);
    let path = nodes.object_owned_by(0, "k");
    origin.set_route(
        &format!("/{path}"),
        Reply::ok(body.clone(), SEGMENT).delay(Duration::from_millis(200)),
    );
    nodes.nodes[0].kill9();
    let started = Instant::now();
    let c = client();
    let players: Vec<_> = (0..60)
        .map(|i| {
            let url = nodes.url(1 + i % 2, &format!("/stream/{path}"));
            let c = c.clone();
            tokio::spawn(async move {
                let r = c.get(&url).send().await.unwrap();
                (r.status().as_u16(), r.bytes().await.unwrap())
            })
        })
        .collect();
    for p in players {
        let (status, b) = p.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(b, body);
    }
    let took = started.elapsed();
    // Each surviving node fetched it once from the origin (its players coalesced locally).
    assert_eq!(origin.hits(&format!("/{path}")), 2);
    assert!(took < Duration::from_secs(5), "{took:?}");
    for n in [1, 2] {
        assert_eq!(
            fleet_metric(
                &nodes.nodes[n],
                "sluice_fleet_owner_fetches_total{result=\"connect_failed\"}"
            )
            .await,
            1.0
        );
    }
    // The dead owner is skipped for a while: its next object goes to the origin at once.
    let next = nodes.object_owned_by(0, "k2");
    origin.set_route(&format!("/{next}"), Reply::ok(body.clone(), SEGMENT));
    let (status, _, b) = get(&nodes.url(1, &format!("/stream/{next}"))).await;
    assert_eq!((status, b.len()), (200, body.len()));
    let m = metrics(&nodes.nodes[1]).await;
    assert_eq!(
        metric(
            &m,
            "sluice_fleet_owner_fetches_total{result=\"skipped_down\"}"
        ),
        1.0,
        "{m}\n{}",
        nodes.nodes[1].log()
    );
    eprintln!("fleet: owner killed, 60 players on the other two nodes served in {took:?}, origin fetches 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owner_failure_after_its_body_started_aborts_without_caching() {
    let origin = TestOrigin::new().start();
    let mut nodes = Nodes::start(&origin, "", "");
    let body = random_bytes(1024 * 1024, 5);
    let path = nodes.object_owned_by(0, "mid");
    origin.set_route(
        &format!("/{path}"),
        Reply::ok(body.clone(), SEGMENT).trickle(40, Duration::from_secs(4)),
    );
    let r = client()
        .get(nodes.url(1, &format!("/stream/{path}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut got = 0usize;
    let mut broke = false;
    let mut killed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => got += c.len(),
            Err(_) => {
                broke = true;
                break;
            }
        }
        if got > 0 && !killed {
            // The owner's body has started: kill it.
            nodes.nodes[0].kill9();
            killed = true;
        }
    }
    assert!(killed);
    assert!(
        broke || got < body.len(),
        "the player got a whole body from a killed owner ({got} bytes)"
    );
    assert_eq!(
        fleet_metric(
            &nodes.nodes[1],
            "sluice_fleet_owner_fetches_total{result=\"aborted\"}"
        )
        .await,
        1.0
    );
    // Nothing truncated was stored: the next request is a miss, fetched whole from the origin.
    origin.set_route(&format!("/{path}"), Reply::ok(body.clone(), SEGMENT));
    let (status, cache, b) = get(&nodes.url(1, &format!("/stream/{path}"))).await;
    assert_eq!(
        (status, cache.as_str()),
        (200, "miss"),
        "{}\n{:?}",
        nodes.nodes[1].log(),
        origin.requests()
    );
    assert_eq!(b, body);
    assert_eq!(origin.hits(&format!("/{path}")), 2);
    let (_, cache, b) = get(&nodes.url(1, &format!("/stream/{path}"))).await;
    assert_eq!((cache.as_str(), b.len()), ("hit", body.len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_owner_is_bypassed_after_owner_timeout() {
    let origin = TestOrigin::new().start();
    let nodes = Nodes::start(&origin, "  owner_timeout: 500ms\n", "");
    let body = random_bytes(32 * 1024, 8);
    let path = nodes.object_owned_by(0, "hung");
    origin.set_route(&format!("/{path}"), Reply::ok(body.clone(), SEGMENT));
    // Stopped, not dead: its kernel still accepts connections, nothing answers them.
    let pid = nodes.nodes[0].pid().to_string();
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(stop.success());
    let t = Instant::now();
    let (status, _, b) = get(&nodes.url(1, &format!("/stream/{path}"))).await;
    let took = t.elapsed();
    // (Left stopped: resumed, it would still answer the request it was sent, from the
    // origin. SIGKILL ends it at the end of the test.)
    assert_eq!(
        (status, b.len()),
        (200, body.len()),
        "{}",
        nodes.nodes[1].log()
    );
    assert_eq!(b, body);
    assert_eq!(origin.hits(&format!("/{path}")), 1);
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(4),
        "{took:?}\n{}",
        nodes.nodes[1].log()
    );
    assert_eq!(
        fleet_metric(
            &nodes.nodes[1],
            "sluice_fleet_owner_fetches_total{result=\"timed_out\"}"
        )
        .await,
        1.0
    );
    eprintln!(
        "fleet: hung owner (SIGSTOP), owner_timeout 500ms: served from the origin in {took:?}"
    );
}

const GATED: &str = "streaming:\n  secret: fleet-test-stream-secret-0123456789\n  contents:\n    - id: gated\n      hash: movie-gated\n      token_required: true\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn players_cannot_pass_as_nodes() {
    let origin = TestOrigin::new().start();
    let nodes = Nodes::start(&origin, "", GATED);
    let seg = "/stream/movie-gated/v/seg_1.m4s";
    origin.set_route(
        "/movie-gated/v/seg_1.m4s",
        Reply::ok(random_bytes(1000, 1), SEGMENT),
    );
    let c = client();
    // From node 1's address: each check below is refused for its own reason.
    let from_node = client_from(NODE_IPS[1]);
    let send = |node: usize, path: &str, header: Option<String>| {
        let mut r = from_node.get(nodes.url(node, path));
        if let Some(h) = header {
            r = r.header(auth::HEADER, h);
        }
        async move {
            let r = r.send().await.unwrap();
            let refused = r.headers().contains_key("x-sluice-fleet-refused");
            (r.status().as_u16(), refused)
        }
    };
    let now = unix_now();
    // No header: the gate.
    let (status, _) = send(0, seg, None).await;
    assert!(status == 401 || status == 403, "{status}");
    // A made-up MAC in another node's name.
    let forged = format!(
        "v2 {} {now} {} {}",
        nodes.addrs[1],
        "0".repeat(32),
        "0".repeat(64)
    );
    assert_eq!(send(0, seg, Some(forged)).await, (403, true));
    // A real signature of another object, replayed on this one.
    let other = nodes.signed_as(
        nodes.addrs[1],
        nodes.addrs[0],
        "/stream/movie-gated/v/seg_2.m4s",
        now,
    );
    assert_eq!(send(0, seg, Some(other)).await, (403, true));
    // A real signature for this object, too old.
    let stale = nodes.signed_as(nodes.addrs[1], nodes.addrs[0], seg, now - 120);
    assert_eq!(send(0, seg, Some(stale)).await, (403, true));
    // A real, fresh signature in the name of the receiving node itself.
    let own = nodes.signed_as(nodes.addrs[0], nodes.addrs[0], seg, now);
    assert_eq!(send(0, seg, Some(own)).await, (403, true));
    // Garbage.
    assert_eq!(send(0, seg, Some("v1 x".into())).await, (403, true));
    assert_eq!(
        origin.total_hits(),
        0,
        "a refused request reached the origin"
    );
    assert_eq!(
        fleet_metric(
            &nodes.nodes[0],
            "sluice_auth_rejections_total{reason=\"fleet_signature\",surface=\"fleet\"}"
        )
        .await,
        5.0
    );

    // A player the gate admits on a node that does not own the entry playlist gets it through
    // the owner, which trusts the node's signature instead of a token it never saw.
    origin.set_route(
        "/movie-gated/master.m3u8",
        Reply::ok(
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nv/playlist.m3u8\n",
            "application/vnd.apple.mpegurl",
        ),
    );
    let owner = nodes.owner_of("movie-gated/master.m3u8");
    let asker = (owner + 1) % 3;
    let key = admin_key(&nodes.nodes[asker]);
    let token: serde_json::Value = c
        .post(nodes.url(asker, "/api/v2/streaming/token"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"contentId": "gated"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["streamToken"].as_str().unwrap();
    let r = c
        .get(nodes.url(
            asker,
            &format!("/stream/movie-gated/master.m3u8?token={token}"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("pc="), "not rewritten for the player: {text}");
    assert_eq!(origin.hits("/movie-gated/master.m3u8"), 1);
    assert_eq!(
        fleet_metric(
            &nodes.nodes[owner],
            "sluice_fleet_peer_requests_total{result=\"served\"}"
        )
        .await,
        1.0
    );
    // The owner itself still gates its players.
    let (status, _) = send(owner, "/stream/movie-gated/master.m3u8", None).await;
    assert!(status == 401 || status == 403, "{status}");
}

/// A client whose connections come from `ip` (a node's address, or a player's).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .no_proxy()
        .build()
        .unwrap()
}

/// A real node signature captured on the wire opens nothing else: not from a player's
/// address, not a second time, not at another node than the one it was made for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_captured_node_signature_works_once_from_its_node_for_its_receiver() {
    let origin = TestOrigin::new().start();
    let nodes = Nodes::start(&origin, "", GATED);
    let seg = "/stream/movie-gated/v/seg_7.m4s";
    origin.set_route(
        "/movie-gated/v/seg_7.m4s",
        Reply::ok(random_bytes(1000, 7), SEGMENT),
    );
    let send = |from: &str, node: usize, header: String| {
        let r = client_from(from)
            .get(nodes.url(node, seg))
            .header(auth::HEADER, header);
        async move { r.send().await.unwrap().status().as_u16() }
    };
    // Node 1 asks node 0; the header is captured.
    let captured = nodes.signed_for(1, 0, seg);
    // From a player's address, inside the window: refused.
    assert_eq!(send("127.0.0.1", 0, captured.clone()).await, 403);
    // From node 1's own address it is the real request: served once ...
    assert_eq!(send(NODE_IPS[1], 0, captured.clone()).await, 200);
    // ... and a replay of it, even from node 1's address, is refused.
    assert_eq!(send(NODE_IPS[1], 0, captured.clone()).await, 403);
    // At a third node it opens nothing, from anywhere.
    assert_eq!(send(NODE_IPS[1], 2, captured.clone()).await, 403);
    assert_eq!(send("127.0.0.1", 2, captured).await, 403);
    assert_eq!(origin.hits("/movie-gated/v/seg_7.m4s"), 1);
}

/// The same for a node's purge (signed over its body, checked by its handler).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_captured_node_purge_is_applied_once_from_its_node() {
    let origin = TestOrigin::new().start();
    let nodes = Nodes::start(&origin, "", "");
    let body = serde_json::to_vec(&serde_json::json!({"ops": [{"prefix": ""}]})).unwrap();
    let captured = auth::sign(
        nodes.secret.as_bytes(),
        &auth::Signed {
            method: "POST",
            path_and_query: "/_fleet/purge",
            body: &body,
        },
        &auth::Hop {
            sender: nodes.addrs[1],
            receiver: nodes.addrs[0],
            ts: unix_now(),
            nonce: rand::random(),
        },
    )
    .unwrap();
    let send = |from: &str, node: usize| {
        let r = client_from(from)
            .post(nodes.url(node, "/_fleet/purge"))
            .header(auth::HEADER, captured.clone())
            .header("content-type", "application/json")
            .body(body.clone());
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send("127.0.0.1", 0).await, 403);
    assert_eq!(send(NODE_IPS[1], 2).await, 403);
    assert_eq!(send(NODE_IPS[1], 0).await, 200);
    assert_eq!(send(NODE_IPS[1], 0).await, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_request_is_served_locally_and_never_forwarded() {
    let origin = TestOrigin::new().start();
    let nodes = Nodes::start(&origin, "", "");
    let body = random_bytes(4096, 2);
    // Owned by node 0, asked of node 1 as if node 2 (whose ring differs, mid-reload) sent it.
    let path = nodes.object_owned_by(0, "fw");
    origin.set_route(&format!("/{path}"), Reply::ok(body.clone(), SEGMENT));
    let stream_path = format!("/stream/{path}");
    let r = client_from(NODE_IPS[2])
        .get(nodes.url(1, &stream_path))
        .header(auth::HEADER, nodes.signed_for(2, 1, &stream_path))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache-status"], "miss");
    // The object as the origin sent it: the asking node adds its players' headers itself.
    assert!(
        r.headers().get("cache-control").is_none(),
        "{:?}",
        r.headers()
    );
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert_eq!(r.bytes().await.unwrap(), body);
    assert_eq!(origin.hits(&format!("/{path}")), 1);
    // A hit tells the asking node how old the copy is (its copy expires with this one).
    let r = client_from(NODE_IPS[2])
        .get(nodes.url(1, &stream_path))
        .header(auth::HEADER, nodes.signed_for(2, 1, &stream_path))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-cache-status"], "hit");
    assert!(r.headers().contains_key("age"), "{:?}", r.headers());
    let owner_metrics = metrics(&nodes.nodes[0]).await;
    assert_eq!(
        metric(
            &owner_metrics,
            "sluice_fleet_peer_requests_total{result=\"served\"}"
        ),
        0.0,
        "node 1 forwarded a node's request to the owner"
    );
    // Counted as a node's request (after its answer: polled, bounded).
    let series = "sluice_requests_total{class=\"fleet\",listener=\"edge\",status=\"200\"}";
    let deadline = Instant::now() + Duration::from_secs(5);
    while fleet_metric(&nodes.nodes[1], series).await != 2.0 {
        assert!(
            Instant::now() < deadline,
            "{}",
            metrics(&nodes.nodes[1]).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_on_one_node_purges_every_node() {
    let origin = TestOrigin::new().start();
    let nodes = Nodes::start(&origin, "", "");
    let body = random_bytes(2048, 4);
    let path = "h/v/seg_1.m4s";
    origin.set_route(&format!("/{path}"), Reply::ok(body.clone(), SEGMENT));
    origin.set_route("/h/v/seg_2.m4s", Reply::ok(body.clone(), SEGMENT));
    for n in 0..3 {
        for p in [path, "h/v/seg_2.m4s"] {
            let (status, _, _) = get(&nodes.url(n, &format!("/stream/{p}"))).await;
            assert_eq!(status, 200);
        }
    }
    assert_eq!(origin.hits(&format!("/{path}")), 1);
    // On whichever node: here one that owns neither object, or the first that does not own
    // this one.
    let at = (0..3).find(|n| *n != nodes.owner_of(path)).unwrap();
    let key = admin_key(&nodes.nodes[at]);
    let purge = |body: serde_json::Value| {
        let url = nodes.nodes[at].admin_url("/api/cache/purge");
        let key = key.clone();
        async move {
            let r = client()
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (status, answer) = purge(serde_json::json!({"path": format!("/stream/{path}")})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["purged"], 3, "{answer}");
    for a in &nodes.addrs {
        assert_eq!(answer["nodes"][a.to_string()], 1, "{answer}");
    }
    // Every node misses it now; the fleet fetches it once more (the owner first: a node
    // that asks it fills it).
    let owner = nodes.owner_of(path);
    for n in std::iter::once(owner).chain((0..3).filter(|n| *n != owner)) {
        let (status, cache, b) = get(&nodes.url(n, &format!("/stream/{path}"))).await;
        assert_eq!((status, cache.as_str(), b.len()), (200, "miss", body.len()));
    }
    assert_eq!(origin.hits(&format!("/{path}")), 2);
    // The other object was left alone.
    for n in 0..3 {
        let (_, cache, _) = get(&nodes.url(n, "/stream/h/v/seg_2.m4s")).await;
        assert_eq!(cache, "hit");
    }
    // By hash, everywhere.
    let (status, answer) = purge(serde_json::json!({"hash": "h"})).await;
    assert_eq!(
        (status, answer["purged"].as_u64()),
        (200, Some(6)),
        "{answer}"
    );

    // The fleet route itself: only for signed purges.
    let r = client()
        .post(nodes.url(0, "/_fleet/purge"))
        .json(&serde_json::json!({"ops": [{"prefix": ""}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// A purge answers success only when no node can serve the old bytes: not the node it was
/// sent to (whose players refetch the object at once, from an owner not purged yet), not
/// the owner (whose fill of the old version may still be on its way), not a third node.
/// Players hammer the object on every node while it changes at the origin and is purged at
/// a node that does not own it, ten times.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purge_of_a_busy_object_leaves_the_old_bytes_nowhere() {
    let origin = TestOrigin::new().start();
    let nodes = std::sync::Arc::new(Nodes::start(&origin, "", ""));
    let path = nodes.object_owned_by(0, "busy");
    let url_path = format!("/stream/{path}");
    let version = |v: u64| random_bytes(4096, 1000 + v);
    origin.set_route(&format!("/{path}"), Reply::ok(version(0), SEGMENT));
    let at = 1;
    let key = admin_key(&nodes.nodes[at]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let players: Vec<_> = (0..6)
        .map(|i| {
            let (nodes, stop, url_path) = (nodes.clone(), stop.clone(), url_path.clone());
            tokio::spawn(async move {
                let c = client();
                // Mostly at the purged node, some at the others.
                let node = if i < 4 { at } else { [0, 2][i % 2] };
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = c.get(nodes.url(node, &url_path)).send().await;
                }
            })
        })
        .collect();
    let c = client();
    let mut stale = Vec::new();
    for v in 1..=10u64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        origin.set_route(&format!("/{path}"), Reply::ok(version(v), SEGMENT));
        let r = c
            .post(nodes.nodes[at].admin_url("/api/cache/purge"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"path": url_path}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        for n in 0..3 {
            let (status, cache, body) = get(&nodes.url(n, &url_path)).await;
            assert_eq!(status, 200);
            if body != version(v) {
                stale.push(format!("purge {v}: node {n} served old bytes ({cache})"));
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in players {
        p.await.unwrap();
    }
    assert!(stale.is_empty(), "{stale:#?}");
}

/// Nodes are exempt from per-client limits by their signature, never by their address
/// (tests/peer_trust.rs has the refusals): a node's signed requests hold as many connections
/// as it needs; the same address unsigned is any client, and so is every address on the
/// admin listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_are_exempt_from_per_client_limits_by_signature() {
    let origin = TestOrigin::new()
        .route("/v/seg.m4s", Reply::ok(random_bytes(1024, 9), SEGMENT))
        .start();
    let nodes = Nodes::start(
        &origin,
        "",
        "limits:\n  max_connections_per_ip: 2\nadmin:\n  rate_limit_stats: 2\n",
    );
    let edge = nodes.nodes[0].edge;
    // Connections that have sent a whole request and been answered, held open.
    async fn open_from(
        local: &str,
        to: SocketAddr,
        target: &str,
        header: &str,
    ) -> (tokio::net::TcpStream, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{local}:0").parse().unwrap()).unwrap();
        let mut s = sock.connect(to).await.unwrap();
        s.write_all(format!("GET {target} HTTP/1.1\r\nHost: t\r\n{header}\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        (s, String::from_utf8_lossy(&buf[..n]).into_owned())
    }
    // A player: two connections, the third refused.
    let mut held = Vec::new();
    for _ in 0..2 {
        let (s, head) = open_from("127.0.0.1", edge, "/health", "").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(s);
    }
    let (_, head) = open_from("127.0.0.1", edge, "/health", "").await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    // Another node, signing its requests: as many as it needs.
    let target = "/stream/v/seg.m4s";
    for _ in 0..6 {
        let sig = nodes.signed_for(1, 0, target);
        let header = format!("{}: {sig}\r\n", auth::HEADER);
        let (s, head) = open_from(NODE_IPS[1], edge, target, &header).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(s);
    }
    // Its address unsigned is any client: its share of 2, then refused.
    let mut heads = Vec::new();
    for _ in 0..3 {
        let (s, head) = open_from(NODE_IPS[1], edge, "/health", "").await;
        heads.push(head.get(..12).unwrap_or_default().to_string());
        held.push(s);
    }
    assert_eq!(heads, ["HTTP/1.1 200", "HTTP/1.1 200", "HTTP/1.1 503"]);
    // Rate limits on the admin listener: a node's address is limited like a player's.
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let stats = nodes.nodes[0].admin_url("/stats/p");
    for ip in [NODE_IPS[2], "127.0.0.1"] {
        let client = from(ip);
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(client.get(&stats).send().await.unwrap().status().as_u16());
        }
        assert_eq!(statuses[2], 429, "{ip}: {statuses:?}");
    }
}

/// A process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peers_change_by_graceful_upgrade_without_a_cold_fleet() {
    let origin = TestOrigin::new().start();
    let mut nodes = Nodes::start(&origin, "", "");
    // Node 1 is upgraded to a fleet without node 2.
    let after = Ring::new(&nodes.addrs[..2]);
    let owner_after = |p: &str| {
        let primary = format!("http://{}/{p}", nodes.origin_host);
        after.owner(&primary).unwrap()
    };
    let pick = |before: usize| {
        (0..1000)
            .map(|i| format!("up/seg_{i}.m4s"))
            .find(|p| nodes.owner_of(p) == before && owner_after(p) == nodes.addrs[0])
            .unwrap()
    };
    // Owned by node 0 before and after; owned by node 2 before, node 0 after.
    let (kept, moved) = (pick(0), pick(2));
    let body = random_bytes(8192, 7);
    for p in [&kept, &moved] {
        origin.set_route(&format!("/{p}"), Reply::ok(body.clone(), SEGMENT));
    }
    let (status, cache, _) = get(&nodes.url(1, &format!("/stream/{kept}"))).await;
    assert_eq!((status, cache.as_str()), (200, "miss"));
    let served = "sluice_fleet_peer_requests_total{result=\"served\"}";
    assert_eq!(fleet_metric(&nodes.nodes[0], served).await, 1.0);

    // The new configuration, then Pingora's graceful upgrade: the new process takes the
    // listening sockets over, the old one exits.
    let path = nodes.nodes[1].config_path.clone();
    let text = std::fs::read_to_string(&path).unwrap();
    let old_peers: Vec<String> = nodes.addrs.iter().map(|a| format!("\"{a}\"")).collect();
    let new_peers: Vec<String> = nodes.addrs[..2]
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect();
    let text = text.replace(&old_peers.join(", "), &new_peers.join(", "));
    std::fs::write(&path, text).unwrap();
    let log = std::fs::File::create(nodes.nodes[1].state_dir().join("upgraded.log")).unwrap();
    let _upgraded = KillOnDrop(
        std::process::Command::new(common::sluice_bin())
            .args(["serve", "--upgrade", "-c"])
            .arg(&path)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("RUST_LOG", "info")
            .env("FLEET_SECRET", &nodes.secret)
            .stdout(std::process::Stdio::from(log.try_clone().unwrap()))
            .stderr(std::process::Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let pid = nodes.nodes[1].pid().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-QUIT", &pid])
        .status()
        .unwrap()
        .success());
    let old = &mut nodes.nodes[1];
    tokio::task::block_in_place(|| old.wait_exit(Duration::from_secs(20)));

    // The upgraded node starts with an empty memory cache, and its owner still has the
    // object: no origin fetch.
    let (status, cache, b) = get(&nodes.url(1, &format!("/stream/{kept}"))).await;
    assert_eq!((status, cache.as_str(), b.len()), (200, "miss", body.len()));
    assert_eq!(
        origin.hits(&format!("/{kept}")),
        1,
        "the upgrade made the fleet cold"
    );
    assert_eq!(fleet_metric(&nodes.nodes[0], served).await, 2.0);
    // The new ring is in force: what node 2 owned is node 0's now, for this node.
    let (status, _, _) = get(&nodes.url(1, &format!("/stream/{moved}"))).await;
    assert_eq!(status, 200);
    assert_eq!(fleet_metric(&nodes.nodes[0], served).await, 3.0);
    assert_eq!(fleet_metric(&nodes.nodes[2], served).await, 0.0);
    assert_eq!(origin.hits(&format!("/{moved}")), 1);

    // Node 2, not upgraded yet, still asks node 1 for what node 1 owns in the old ring; node
    // 1 no longer lists it. Its player is served from the origin, and node 2 counts the
    // difference of lists apart from a refused signature (`refused` stays 0: it means
    // secrets or clocks differ).
    let theirs = (0..1000)
        .map(|i| format!("roll/seg_{i}.m4s"))
        .find(|p| nodes.owner_of(p) == 1)
        .unwrap();
    origin.set_route(&format!("/{theirs}"), Reply::ok(body.clone(), SEGMENT));
    let (status, _, b) = get(&nodes.url(2, &format!("/stream/{theirs}"))).await;
    assert_eq!((status, b.len()), (200, body.len()));
    let fetches = |r: &str| format!("sluice_fleet_owner_fetches_total{{result=\"{r}\"}}");
    assert_eq!(
        fleet_metric(&nodes.nodes[2], &fetches("not_a_peer")).await,
        1.0
    );
    assert_eq!(
        fleet_metric(&nodes.nodes[2], &fetches("refused")).await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stats_report_the_fleets_figures() {
    let origin = TestOrigin::new().start();
    let nodes = Nodes::start(&origin, "", "");
    let body = random_bytes(1000, 9);
    origin.set_route("/st/v/seg_1.m4s", Reply::ok(body.clone(), SEGMENT));
    // One player's requests, spread over the three nodes (as a load balancer would).
    for i in 0..9 {
        let (status, _, _) = get(&nodes.url(i % 3, "/stream/st/v/seg_1.m4s")).await;
        assert_eq!(status, 200);
    }
    let key = admin_key(&nodes.nodes[0]);
    let stats = |q: &'static str| {
        let url = nodes.nodes[0].admin_url(&format!("/stats/st{q}"));
        let key = key.clone();
        async move {
            let r = client().get(url).bearer_auth(key).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    // Figures are recorded once each answer is done: polled, bounded.
    let deadline = Instant::now() + Duration::from_secs(5);
    let answer = loop {
        let (status, v) = stats("").await;
        if status == 200 && v["publisher"]["requests"] == 9 {
            break v;
        }
        assert!(Instant::now() < deadline, "{status} {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        answer["publisher"]["bytes_sent"],
        9 * body.len(),
        "{answer}"
    );
    assert_eq!(
        answer["fleet"],
        serde_json::json!({"nodes": 3, "answered": 3})
    );
    assert_eq!(answer["status"], "ok");
    // A reset clears every node's figures.
    assert_eq!(stats("?reset").await.0, 200);
    assert_eq!(stats("").await.0, 404);
    // Only nodes may ask a node for its figures.
    let r = client()
        .get(nodes.url(1, "/_fleet/stats/st"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heads_and_ranges_through_an_owner() {
    let origin = TestOrigin::new().start();
    let nodes = Nodes::start(&origin, "", "");
    let body = random_bytes(100_000, 12);
    let head_path = nodes.object_owned_by(0, "hd");
    let range_path = nodes.object_owned_by(0, "rg");
    for p in [&head_path, &range_path] {
        origin.set_route(&format!("/{p}"), Reply::ok(body.clone(), SEGMENT));
    }
    // A HEAD of a cold object on a node that does not own it.
    let r = client()
        .head(nodes.url(1, &format!("/stream/{head_path}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], body.len().to_string());
    // A range of a cold object on a node that does not own it, then of its copy.
    for _ in 0..2 {
        let r = client()
            .get(nodes.url(2, &format!("/stream/{range_path}")))
            .header("range", "bytes=1000-1999")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.bytes().await.unwrap(), body.slice(1000..2000));
    }
    let (status, _, b) = get(&nodes.url(2, &format!("/stream/{range_path}"))).await;
    assert_eq!((status, b), (200, body.clone()));
    assert_eq!(origin.hits(&format!("/{range_path}")), 1);
    assert_eq!(origin.hits(&format!("/{head_path}")), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocking_playlist_reload_is_held_at_its_owner_not_timed_out() {
    let origin = TestOrigin::new().start();
    // An owner_timeout far below how long the origin holds the reload.
    // (No prefetch of the parts: it would ask their owners too.)
    let nodes = Nodes::start(
        &origin,
        "  owner_timeout: 300ms\n",
        "stream:\n  prefetch: 0\n",
    );
    let q = "_HLS_msn=5&_HLS_part=0";
    let playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES\n#EXT-X-PART-INF:PART-TARGET=0.5\n#EXTINF:2,\nseg_4.m4s\n#EXT-X-PART:DURATION=0.5,URI=\"part_5.0.m4s\"\n";
    origin.set_route(
        "/ll/index.m3u8",
        Reply::ok(playlist, "application/vnd.apple.mpegurl"),
    );
    origin.set_route(
        &format!("/ll/index.m3u8?{q}"),
        Reply::ok(playlist, "application/vnd.apple.mpegurl").delay(Duration::from_millis(1200)),
    );
    let owner = nodes.owner_of(&format!("ll/index.m3u8?{q}"));
    let asker = (owner + 1) % 3;
    // The asker has seen the playlist advertise blocking reloads (as a player loads it first).
    let (status, _, _) = get(&nodes.url(asker, "/stream/ll/index.m3u8")).await;
    assert_eq!(status, 200);
    // That load went to its own owner (which may be another node): count from here.
    let answered = |m: &str| metric(m, "sluice_fleet_owner_fetches_total{result=\"answered\"}");
    let before = answered(&metrics(&nodes.nodes[asker]).await);
    let (status, _, b) = get(&nodes.url(asker, &format!("/stream/ll/index.m3u8?{q}"))).await;
    assert_eq!((status, b.as_ref()), (200, playlist.as_bytes()));
    assert_eq!(origin.hits("/ll/index.m3u8"), 2);
    let m = metrics(&nodes.nodes[asker]).await;
    assert_eq!(answered(&m) - before, 1.0, "{m}");
    assert_eq!(
        metric(&m, "sluice_fleet_owner_fetches_total{result=\"timed_out\"}"),
        0.0
    );
}

/// A player's answer relayed from the owner is told what any player answer is
/// (`src/edge/headers.rs`): the asking node renders the origin's freshness itself — never more
/// than the origin said — with the one CORS set, and an origin's error as its own JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_relayed_from_the_owner_carry_the_players_headers() {
    let origin = TestOrigin::new().start();
    let nodes = Nodes::start(&origin, "", "");
    let silent = nodes.object_owned_by(0, "hd");
    let stale = nodes.object_owned_by(0, "hd0");
    let missing = nodes.object_owned_by(0, "hd404");
    origin.set_route(
        &format!("/{silent}"),
        Reply::ok(random_bytes(2048, 1), SEGMENT),
    );
    origin.set_route(
        &format!("/{stale}"),
        Reply::ok(random_bytes(2048, 2), SEGMENT).header("cache-control", "max-age=0"),
    );
    let cases = [
        // (`video/iso.segment` goes out as `video/mp4`: `headers::media_content_type`.)
        (
            &silent,
            200,
            "public, max-age=31536000, immutable",
            "video/mp4",
        ),
        (&stale, 200, "public, max-age=0", "video/mp4"),
        (&missing, 404, "no-store", "application/json"),
    ];
    for (path, status, cc, ct) in cases {
        let r = client()
            .get(nodes.url(1, &format!("/stream/{path}")))
            .send()
            .await
            .unwrap();
        let h = r.headers().clone();
        assert_eq!(r.status().as_u16(), status, "{path}");
        r.bytes().await.unwrap();
        let v = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(v("cache-control").as_deref(), Some(cc), "{path}");
        assert_eq!(v("content-type").as_deref(), Some(ct), "{path}");
        assert_eq!(v("access-control-allow-origin").as_deref(), Some("*"));
        assert_eq!(v("timing-allow-origin").as_deref(), Some("*"));
        assert_eq!(
            v("access-control-expose-headers").as_deref(),
            Some("Content-Length, Content-Range, Accept-Ranges, x-cache-status")
        );
        assert_eq!(v("x-content-type-options").as_deref(), Some("nosniff"));
        assert!(v("x-cache-status").is_some(), "{path}");
    }
    // Each fetched by the owner, once.
    let owner_fetches = metric(
        &metrics(&nodes.nodes[1]).await,
        "sluice_fleet_owner_fetches_total{result=\"answered\"}",
    );
    assert_eq!(owner_fetches, 3.0);
}

/// The bucket's redirect of an object is followed by its owner (issue 22): a node that does
/// not own it gets the object, never the `3xx`, and the bucket is asked once for the redirect
/// and once for its target however many nodes serve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_owner_follows_the_buckets_redirect_for_the_fleet() {
    let origin = TestOrigin::new().start();
    let nodes = Nodes::start(&origin, "", "");
    let body = random_bytes(60_000, 13);
    let path = nodes.object_owned_by(0, "rd");
    origin.set_route(
        &format!("/{path}"),
        Reply::status(302).header("location", "/rd/store/moved.m4s"),
    );
    origin.set_route("/rd/store/moved.m4s", Reply::ok(body.clone(), SEGMENT));
    for node in [1, 2, 0, 1] {
        let r = client()
            .get(nodes.url(node, &format!("/stream/{path}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "node {node}: {:?}", r.headers());
        assert!(r.headers().get("location").is_none());
        assert!(r.bytes().await.unwrap() == body, "node {node}");
    }
    assert_eq!(origin.hits(&format!("/{path}")), 1);
    assert_eq!(origin.hits("/rd/store/moved.m4s"), 1);
}

/// An owner over its connection share answers its peers `503` (marked `x-sluice-busy`): the
/// asking node fetches from the origin and skips the owner for a while, so its players are
/// served (before: `503 Upstream error` for every object the flooded node owns — one
/// overloaded node was an outage of its share of the fleet). An origin's own `503`, relayed by
/// a healthy owner, still reaches players as a `503`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_owner_is_skipped_and_the_origin_asked() {
    let origin = TestOrigin::new().start();
    let nodes = Nodes::start(&origin, "", "limits:\n  max_connections: 4\n");
    let busy = nodes.object_owned_by(0, "busy");
    let body = random_bytes(20_000, 23);
    origin.set_route(&format!("/{busy}"), Reply::ok(body.clone(), SEGMENT));
    // An origin `503` through a healthy owner (node 2) is the origin's answer, even one that
    // claims to be a busy node's.
    let failing = nodes.object_owned_by(2, "down");
    origin.set_route(
        &format!("/{failing}"),
        Reply::status(503).header("x-sluice-busy", "1"),
    );
    let r = client()
        .get(nodes.url(1, &format!("/stream/{failing}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    // Node 0 at its share: idle connections hold all of its places.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(std::net::TcpStream::connect(nodes.addrs[0]).unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        common::status_of(nodes.addrs[0], "/health"),
        Some(503),
        "node 0 should be over its share"
    );
    for _ in 0..2 {
        let r = client()
            .get(nodes.url(1, &format!("/stream/{busy}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.headers());
        assert!(r.bytes().await.unwrap() == body);
    }
    // Fetched from the origin once (then a hit on node 1); the owner was asked once, then
    // skipped.
    assert_eq!(origin.hits(&format!("/{busy}")), 1);
    let m = metrics(&nodes.nodes[1]).await;
    assert_eq!(
        metric(&m, "sluice_fleet_owner_fetches_total{result=\"busy\"}"),
        1.0,
        "{m}"
    );
    drop(held);
}

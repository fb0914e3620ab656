//! LL-HLS through sluice (issue 11): a live origin publishing real CMAF parts (200 ms
//! moof+mdat fragments cut by ffmpeg, `tests/fixtures/llhls`) with blocking playlist reload
//! and preload hints; delivery directives forwarded and coalesced, preload-hinted parts one
//! upstream request, prefetch warming new parts, and hls.js in low-latency mode playing
//! through `/stream` and `/api/proxy` (its distance behind the live edge is printed).

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use common::{client, Sluice};
use parking_lot::Mutex;
use serde_json::Value;

const PARTS: usize = 100;
const PART_MS: u64 = 200;
const PER_SEGMENT: usize = 5;
/// Parts available when the origin starts (3 s of content).
const PRELOADED: usize = 15;

struct Live {
    started: Instant,
    init: Bytes,
    parts: Vec<Bytes>,
    hits: Mutex<HashMap<String, usize>>,
}

impl Live {
    fn published(&self) -> usize {
        let grown = (self.started.elapsed().as_millis() as u64 / PART_MS) as usize;
        (PRELOADED + grown).min(PARTS)
    }

    async fn wait_for(&self, parts: usize, limit: Duration) {
        let until = Instant::now() + limit;
        while self.published() < parts && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn playlist(&self) -> String {
        let published = self.published();
        let complete = published / PER_SEGMENT;
        let first = complete.saturating_sub(4);
        let mut p = String::from(
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6\n#EXT-X-PART-INF:PART-TARGET=0.2\n",
        );
        p.push_str(&format!(
            "#EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-MAP:URI=\"init.mp4\"\n"
        ));
        let part_line = |k: usize| {
            format!(
                "#EXT-X-PART:DURATION=0.2,URI=\"part_{k}.m4s\"{}\n",
                if k.is_multiple_of(PER_SEGMENT) {
                    ",INDEPENDENT=YES"
                } else {
                    ""
                }
            )
        };
        for seg in first..complete {
            if seg + 2 >= complete {
                for k in seg * PER_SEGMENT..(seg + 1) * PER_SEGMENT {
                    p.push_str(&part_line(k));
                }
            }
            p.push_str(&format!("#EXTINF:1.0,\nseg_{seg}.m4s\n"));
        }
        if published == PARTS {
            p.push_str("#EXT-X-ENDLIST\n");
        } else {
            for k in complete * PER_SEGMENT..published {
                p.push_str(&part_line(k));
            }
            p.push_str(&format!(
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_{published}.m4s\"\n"
            ));
        }
        p
    }
}

async fn answer(live: Arc<Live>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let key = if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    };
    *live.hits.lock().entry(key).or_default() += 1;
    let name = path.rsplit('/').next().unwrap_or("");
    let ok = |body: Bytes, ct: &str| {
        Response::builder()
            .status(200)
            .header("content-type", ct)
            .header("content-length", body.len())
            .body(Body::from(body))
            .unwrap()
    };
    let not_found = || Response::builder().status(404).body(Body::empty()).unwrap();
    if name == "index.m3u8" {
        let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        if let Some(msn) = q.get("_HLS_msn").and_then(|m| m.parse::<usize>().ok()) {
            // Blocking reload: hold until the asked-for part (or whole segment) exists.
            let want = match q.get("_HLS_part").and_then(|p| p.parse::<usize>().ok()) {
                Some(part) => msn * PER_SEGMENT + part + 1,
                None => (msn + 1) * PER_SEGMENT,
            };
            live.wait_for(want.min(PARTS), Duration::from_secs(3)).await;
        }
        return ok(
            Bytes::from(live.playlist()),
            "application/vnd.apple.mpegurl",
        );
    }
    if name == "init.mp4" {
        return ok(live.init.clone(), "video/mp4");
    }
    if let Some(k) = name
        .strip_prefix("part_")
        .and_then(|n| n.strip_suffix(".m4s"))
        .and_then(|n| n.parse::<usize>().ok())
    {
        if k >= PARTS {
            return not_found();
        }
        // A preload-hinted part is held until it is published.
        if k == live.published() {
            live.wait_for(k + 1, Duration::from_secs(2)).await;
        }
        if k < live.published() {
            return ok(live.parts[k].clone(), "video/iso.segment");
        }
        return not_found();
    }
    if let Some(n) = name
        .strip_prefix("seg_")
        .and_then(|n| n.strip_suffix(".m4s"))
        .and_then(|n| n.parse::<usize>().ok())
    {
        if (n + 1) * PER_SEGMENT <= live.published() {
            let body: Vec<u8> = live.parts[n * PER_SEGMENT..(n + 1) * PER_SEGMENT]
                .iter()
                .flat_map(|p| p.iter().copied())
                .collect();
            return ok(Bytes::from(body), "video/iso.segment");
        }
        return not_found();
    }
    not_found()
}

struct LiveOrigin {
    addr: SocketAddr,
    live: Arc<Live>,
    _thread: std::thread::JoinHandle<()>,
}

impl LiveOrigin {
    fn start() -> LiveOrigin {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llhls");
        let init = Bytes::from(std::fs::read(dir.join("init.mp4")).expect("fixture"));
        let parts = (0..PARTS)
            .map(|k| {
                Bytes::from(std::fs::read(dir.join(format!("part_{k}.m4s"))).expect("fixture"))
            })
            .collect();
        let live = Arc::new(Live {
            started: Instant::now(),
            init,
            parts,
            hits: Mutex::new(HashMap::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let l = live.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(move |req: Request| {
                    let l = l.clone();
                    async move { answer(l, req).await }
                });
                let _ = axum::serve(listener, app).await;
            });
        });
        LiveOrigin {
            addr,
            live,
            _thread: thread,
        }
    }

    fn hits(&self, key: &str) -> usize {
        self.live.hits.lock().get(key).copied().unwrap_or(0)
    }

    fn hits_matching(&self, f: impl Fn(&str) -> bool) -> usize {
        self.live
            .hits
            .lock()
            .iter()
            .filter(|(k, _)| f(k))
            .map(|(_, n)| n)
            .sum()
    }
}

const SECRET: &str = "provider-jwt-secret-0123456789";

/// One server plays the bucket (by the name `localhost`, pinned to its address) and the
/// provider's CDN (by its address): a provider may never name the bucket's origin.
fn config(o: &LiveOrigin, proxy_prefetch: bool) -> String {
    format!(
        "origins:\n  bucket: http://localhost:{port}\n  resolve: [127.0.0.1]\nprovider_auth:\n  jwt_secret: {SECRET}\nproviders:\n  live:\n    allow_private: true\n{p}    channels:\n      ll: {{url: \"http://{a}/ll/index.m3u8\", type: hls}}\n",
        a = o.addr,
        port = o.addr.port(),
        p = if proxy_prefetch { "    prefetch: 3\n" } else { "" }
    )
}

async fn stream_info(s: &Sluice) -> String {
    common::stream_info_url(s, "live", "ll", &common::provider_jwt(SECRET, "viewer")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocking_reloads_and_preload_hints_are_one_upstream_request() {
    let o = LiveOrigin::start();
    let s = Sluice::start(&config(&o, false));
    // Players load the playlist before they use the directives it advertises (RFC 8216bis
    // §6.2.5); sluice honours them only for a live playlist that does.
    let r = client()
        .get(s.edge_url("/stream/ll/index.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ahead = o.live.published() + 3;
    let (msn, part) = (ahead / PER_SEGMENT, ahead % PER_SEGMENT);
    // 20 players blocked on the same future part: one upstream request, every player gets
    // the playlist with that part.
    let url = s.edge_url(&format!(
        "/stream/ll/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"
    ));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let r = client().get(url).send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    for t in tasks {
        let (st, body) = t.await.unwrap();
        assert_eq!(st, 200);
        assert!(body.contains(&format!("part_{ahead}.m4s")), "{body}");
    }
    let key = format!("/ll/index.m3u8?_HLS_msn={msn}&_HLS_part={part}");
    assert_eq!(o.hits(&key), 1, "blocking reloads were not coalesced");

    // A preload-hinted part, asked for before it exists by 20 players: one upstream request,
    // every player gets its bytes.
    let next = o.live.published();
    let url = s.edge_url(&format!("/stream/ll/part_{next}.m4s"));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let r = client().get(url).send().await.unwrap();
                (r.status().as_u16(), r.bytes().await.unwrap())
            })
        })
        .collect();
    for t in tasks {
        let (st, body) = t.await.unwrap();
        assert_eq!(st, 200);
        assert_eq!(body, o.live.parts[next]);
    }
    assert_eq!(o.hits(&format!("/ll/part_{next}.m4s")), 1);
    // The same through /api/proxy: directives forwarded, coalesced.
    let proxied = stream_info(&s).await;
    let r = client().get(s.edge_url(&proxied)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ahead = o.live.published() + 3;
    let (msn, part) = (ahead / PER_SEGMENT, ahead % PER_SEGMENT);
    let url = s.edge_url(&format!("{proxied}&_HLS_msn={msn}&_HLS_part={part}"));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                client()
                    .get(url)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        let body = t.await.unwrap();
        assert!(body.contains(&format!("part_{ahead}.m4s")), "{body}");
    }
    assert_eq!(
        o.hits(&format!("/ll/index.m3u8?_HLS_msn={msn}&_HLS_part={part}")),
        1
    );
}

#[tokio::test]
async fn prefetch_puts_new_parts_in_the_cache_before_players_ask() {
    let o = LiveOrigin::start();
    let s = Sluice::start(&config(&o, false));
    let (st, _) = (
        client()
            .get(s.edge_url("/stream/ll/index.m3u8"))
            .send()
            .await
            .unwrap()
            .status(),
        (),
    );
    assert_eq!(st, 200);
    let newest = o.live.published() - 1;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = client()
        .get(s.edge_url(&format!("/stream/ll/part_{newest}.m4s")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-cache-status"],
        "hit",
        "the newest part was not prefetched"
    );
    assert_eq!(o.hits(&format!("/ll/part_{newest}.m4s")), 1);
}

/// Play `url` with hls.js in low-latency mode; the player's report.
fn play_ll(url: &str, secs: u32) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/player/run.js");
    let out = std::process::Command::new("node")
        .arg(script)
        .arg(url)
        .arg(secs.to_string())
        .arg("ll")
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "player failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

fn assert_low_latency(route: &str, r: &Value) {
    let fatal: Vec<&Value> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.as_str().unwrap_or("").ends_with(":fatal"))
        .collect();
    assert!(fatal.is_empty(), "{route}: {r}");
    assert!(
        r["parts"].as_u64().unwrap_or(0) >= 10,
        "{route}: played no parts: {r}"
    );
    assert!(
        r["currentTime"].as_f64().unwrap_or(0.0) > 2.0,
        "{route}: {r}"
    );
    let samples: Vec<f64> = r["latency"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert!(!samples.is_empty(), "{route}: no latency samples: {r}");
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    let max = r["latencyMax"].as_f64().unwrap_or(f64::MAX);
    // Printed for the README and the closing note (1 s segments, 200 ms parts).
    println!(
        "LL-HLS via {route}: behind live edge mean {mean:.2} s, max {max:.2} s, {} parts",
        r["parts"]
    );
    assert!(mean < 2.5, "{route}: mean latency {mean:.2} s: {r}");
}

#[test]
fn hls_js_plays_ll_hls_in_low_latency_mode_through_both_routes() {
    let o = LiveOrigin::start();
    let s = Sluice::start(&config(&o, true));
    let r = play_ll(&s.edge_url("/stream/ll/index.m3u8"), 8);
    assert_low_latency("/stream", &r);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxied = rt.block_on(stream_info(&s));
    let r = play_ll(&s.edge_url(&proxied), 8);
    assert_low_latency("/api/proxy", &r);
    assert!(
        o.hits_matching(|k| k.contains("_HLS_msn=")) > 0,
        "no blocking reload reached the origin"
    );
}

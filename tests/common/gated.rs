//! The gated stream every Redis fleet test plays (`shared_state`, `redis_state`,
//! `redis_sentinel`): one origin holding a gated master, its media playlist and segment, and
//! an open segment; and the requests those tests make of a node.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{client, random_bytes, Reply, RunningOrigin, Sluice, TestOrigin};

pub const MASTER: &str =
    "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720\nv720/playlist.m3u8\n";

pub const MEDIA: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg_1.m4s\n#EXT-X-ENDLIST\n";

pub fn origin() -> RunningOrigin {
    let hls = "application/vnd.apple.mpegurl";
    TestOrigin::new()
        .route("/movie-gated/master.m3u8", Reply::ok(MASTER, hls))
        .route("/movie-gated/v720/playlist.m3u8", Reply::ok(MEDIA, hls))
        .route(
            "/movie-gated/v720/seg_1.m4s",
            Reply::ok(random_bytes(4000, 1), "video/iso.segment"),
        )
        .route(
            "/movie-open/seg.m4s",
            Reply::ok(random_bytes(3000, 2), "video/iso.segment"),
        )
        .start_on("127.0.0.2")
}

pub async fn get(s: &Sluice, path: &str) -> (u16, String) {
    let resp = client().get(s.edge_url(path)).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

pub async fn admin(
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
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

pub async fn token(s: &Sluice, key: &str) -> String {
    let resp = client()
        .post(s.edge_url("/api/v2/streaming/token"))
        .bearer_auth(key)
        .json(&json!({"contentId": "gated"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.unwrap();
    v["streamToken"].as_str().unwrap().to_string()
}

pub fn entry(t: &str) -> String {
    format!("/stream/movie-gated/master.m3u8?token={t}")
}

/// The child playlist URL (with its playback credential) of an entry playlist.
pub fn child_of(master: &str) -> String {
    let line = master
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no URI in {master}"));
    let base = url::Url::parse("http://x/stream/movie-gated/master.m3u8").unwrap();
    let u = base.join(line.trim()).unwrap();
    format!("{}?{}", u.path(), u.query().unwrap_or(""))
}

/// A node's `/health` answer.
pub async fn health(s: &Sluice) -> Value {
    client()
        .get(s.edge_url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Poll `f` until it is true; how long that took, or a panic naming `what` past `limit`.
pub async fn until<F, Fut>(what: &str, limit: Duration, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

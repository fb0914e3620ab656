//! Real HLS forms through `/api/proxy`, over real HTTP against the binary, the test acting as
//! the player (hls.js's own steps: variable substitution, the `_HLS_*` parameters it adds,
//! pathway clone URI replacement): `EXT-X-DEFINE` variables whose values hold `&`, `=`, `+`;
//! HLS Interstitials asset lists; content steering manifests with a relative `RELOAD-URI`
//! and pathway clones. The origins' own request logs show what reached them.

mod common;

use common::{client, provider_jwt, stream_info_url, Reply, RunningOrigin, Sluice, TestOrigin};
use serde_json::Value;

const SECRET: &str = "proxy-forms-jwt-secret-0123456789";
const HLS: &str = "application/vnd.apple.mpegurl";

/// sluice with provider `p`: channels on `127.0.0.2:{port}`, hosts `127.0.0.2` and
/// `127.0.0.3` on that port allowed, anything else (127.0.0.1) refused.
fn sluice(port: u16, channels: &[(&str, String)]) -> Sluice {
    let mut chans = String::new();
    for (name, url) in channels {
        chans.push_str(&format!("      {name}: {{url: \"{url}\", type: hls}}\n"));
    }
    Sluice::start(&format!(
        "provider_auth:\n  jwt_secret: {SECRET}\nproviders:\n  p:\n    allowed_hosts: [\"127.0.0.2:{port}\", \"127.0.0.3:{port}\"]\n    allow_private: true\n    channels:\n{chans}"
    ))
}

async fn entry(s: &Sluice, channel: &str) -> String {
    stream_info_url(s, "p", channel, &provider_jwt(SECRET, "viewer")).await
}

/// GET a sluice URL (absolute, or an absolute path, as rewritten): status, content type,
/// body.
async fn get(s: &Sluice, path: &str) -> (u16, String, String) {
    let url = match path.starts_with("http") {
        true => path.to_string(),
        false => s.edge_url(path),
    };
    let r = client().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

fn origin_saw(o: &RunningOrigin, path_and_query: &str) -> bool {
    o.requests()
        .iter()
        .any(|r| r.path_and_query == path_and_query)
}

fn upstream(proxied: &str) -> String {
    sluice::rewrite::unwrap_proxy_url(proxied)
        .unwrap_or_else(|| panic!("not a query-form proxy URL: {proxied}"))
        .0
}

/// The first value of attribute `attr` on the line starting with `tag`.
fn attribute(playlist: &str, tag: &str, attr: &str) -> String {
    let line = playlist
        .lines()
        .find(|l| l.starts_with(tag))
        .unwrap_or_else(|| panic!("no {tag} in {playlist}"));
    line.split(&format!("{attr}=\""))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no {attr} in {line}"))
        .to_string()
}

/// hls.js's `{$name}` substitution.
fn substitute(uri: &str, name: &str, value: &str) -> String {
    uri.replace(&format!("{{${name}}}"), value)
}

/// A media playlist (`#EXTM3U`, one segment) sluice must rewrite.
fn media(extra: &str, seg: &str) -> String {
    format!("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n{extra}#EXTINF:2,\n{seg}\n#EXT-X-ENDLIST\n")
}

/// `EXT-X-DEFINE`: a `QUERYPARAM` of the entry URL and a `VALUE` that hold `&`, `=` and `+`
/// reach the origin as the player would have sent them directly, and so does a variable the
/// media playlist `IMPORT`s from the multivariant one. (Before: the `QUERYPARAM` definition
/// reached hls.js unchanged — fatal, sluice's URL has no `auth` — and a substituted `&` cut
/// the upstream URL inside `url=`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn define_queryparam_and_reserved_bytes_reach_the_origin_as_the_player_meant_them() {
    let master = "#EXTM3U\n#EXT-X-VERSION:11\n#EXT-X-DEFINE:QUERYPARAM=\"auth\"\n#EXT-X-DEFINE:NAME=\"tier\",VALUE=\"hd&x=1\"\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nmedia.m3u8?auth={$auth}&tier={$tier}\n";
    let origin = TestOrigin::new()
        .route("/v/master.m3u8", Reply::ok(master, HLS))
        .route(
            "/v/media.m3u8",
            Reply::ok(
                media(
                    "#EXT-X-DEFINE:IMPORT=\"auth\"\n#EXT-X-MAP:URI=\"init.mp4?auth={$auth}\"\n",
                    "seg_1.m4s?auth={$auth}",
                ),
                HLS,
            ),
        )
        .route("/v/init.mp4", Reply::ok("init", "video/mp4"))
        .route("/v/seg_1.m4s", Reply::ok("segment", "video/iso.segment"))
        .start_on("127.0.0.2");
    let s = sluice(
        origin.addr.port(),
        &[(
            "defs",
            format!("http://{}/v/master.m3u8?auth=a%26b%3Dc%2Bd", origin.addr),
        )],
    );
    let (status, _, master) = get(&s, &entry(&s, "defs").await).await;
    assert_eq!(status, 200, "{master}");
    // The player reads `auth` from the playlist, never from sluice's query.
    assert!(
        master.contains("#EXT-X-DEFINE:NAME=\"auth\",VALUE=\"a&b=c+d\"\n"),
        "{master}"
    );
    assert!(!master.contains("QUERYPARAM"), "{master}");
    let variant = master.lines().last().unwrap();
    assert_eq!(
        upstream(variant),
        format!(
            "http://{}/v/media.m3u8?auth=a&b=c+d&tier=hd&x=1",
            origin.addr
        )
    );
    let (status, _, media) = get(&s, variant).await;
    assert_eq!(status, 200, "{media}");
    assert!(origin_saw(
        &origin,
        "/v/media.m3u8?auth=a&b=c+d&tier=hd&x=1"
    ));
    // `auth` is imported: the player substitutes the master's value into what sluice wrote.
    assert!(media.contains("#EXT-X-DEFINE:IMPORT=\"auth\"\n"), "{media}");
    let seg = media.lines().find(|l| l.starts_with('/')).unwrap();
    let init = attribute(&media, "#EXT-X-MAP", "URI");
    for (uri, upstream_pq, body) in [
        (seg.to_string(), "/v/seg_1.m4s?auth=a&b=c+d", "segment"),
        (init, "/v/init.mp4?auth=a&b=c+d", "init"),
    ] {
        let fetched = substitute(&uri, "auth", "a&b=c+d");
        let (status, _, got) = get(&s, &fetched).await;
        assert_eq!((status, got.as_str()), (200, body), "{fetched}");
        assert!(
            origin_saw(&origin, upstream_pq),
            "{upstream_pq} not in {:?}",
            origin.requests()
        );
    }
}

/// HLS Interstitials: the asset list an `X-ASSET-LIST` points at is rewritten — its asset
/// URIs resolve against the list's URL and go through `/api/proxy` — the `_HLS_*` parameters
/// hls.js adds reach the ad server, and an asset outside `allowed_hosts` is refused and never
/// fetched. (Before: the JSON passed through and hls.js fetched the ad from the CDN itself.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interstitial_asset_lists_are_rewritten_through_the_proxy() {
    let stranger = TestOrigin::new()
        .route("/evil.m3u8", Reply::ok(media("", "e.ts"), HLS))
        .start();
    let list = format!(
        r#"{{"ASSETS":[{{"URI":"ad1/ad.m3u8","DURATION":5.0}},{{"URI":"http://{}/evil.m3u8","DURATION":5.0}}],"X-TRACKING":"kept"}}"#,
        stranger.addr
    );
    let primary = media(
        "#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n#EXT-X-DATERANGE:ID=\"ad1\",CLASS=\"com.apple.hls.interstitial\",START-DATE=\"2026-01-01T00:00:02.000Z\",DURATION=10,X-ASSET-LIST=\"ads/list.json\"\n",
        "seg_1.ts",
    );
    let origin = TestOrigin::new()
        .route("/live/media.m3u8", Reply::ok(primary, HLS))
        .route("/live/ads/list.json", Reply::ok(list, "application/json"))
        .route(
            "/live/ads/ad1/ad.m3u8",
            Reply::ok(media("", "ad_1.ts"), HLS),
        )
        .route(
            "/live/ads/broken.json",
            Reply::ok("<html>no</html>", "text/html"),
        )
        .start_on("127.0.0.2");
    let s = sluice(
        origin.addr.port(),
        &[("ads", format!("http://{}/live/media.m3u8", origin.addr))],
    );
    let (status, _, playlist) = get(&s, &entry(&s, "ads").await).await;
    assert_eq!(status, 200, "{playlist}");
    let list_uri = attribute(&playlist, "#EXT-X-DATERANGE", "X-ASSET-LIST");
    assert!(list_uri.ends_with("&doc=asset-list"), "{list_uri}");
    assert_eq!(
        upstream(&list_uri),
        format!("http://{}/live/ads/list.json", origin.addr)
    );
    // hls.js adds its session id and start offset to the list's URL.
    let (status, ct, body) = get(
        &s,
        &format!("{list_uri}&_HLS_primary_id=sess-1&_HLS_start_offset=0"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with("application/json"), "{ct}");
    assert!(
        origin_saw(
            &origin,
            "/live/ads/list.json?_HLS_primary_id=sess-1&_HLS_start_offset=0"
        ),
        "{:?}",
        origin.requests()
    );
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["X-TRACKING"], "kept");
    // Absolute, on sluice as the player reached it: hls.js loads an asset's URI as it is.
    let ad = doc["ASSETS"][0]["URI"].as_str().unwrap();
    assert!(ad.starts_with(&s.edge_url("/api/proxy?url=")), "{ad}");
    assert_eq!(
        upstream(ad),
        format!("http://{}/live/ads/ad1/ad.m3u8", origin.addr)
    );
    let (status, _, ad_playlist) = get(&s, ad).await;
    assert_eq!(status, 200, "{ad_playlist}");
    assert!(
        ad_playlist.contains("/api/proxy?url=") && ad_playlist.contains("ad_1.ts"),
        "{ad_playlist}"
    );
    // The asset on a host the provider does not allow: refused, never fetched.
    let evil = doc["ASSETS"][1]["URI"].as_str().unwrap();
    assert!(evil.starts_with(&s.edge_url("/api/proxy?url=")), "{evil}");
    assert_eq!(get(&s, evil).await.0, 403);
    assert_eq!(stranger.total_hits(), 0);
    // What is not an asset list where one is expected is an error, never relayed.
    let broken = list_uri.replace("list.json", "broken.json");
    assert_eq!(get(&s, &broken).await.0, 502, "{broken}");
}

/// Content steering: the manifest `SERVER-URI` points at is rewritten — its relative
/// `RELOAD-URI` resolves against the manifest's URL, the `_HLS_pathway`/`_HLS_throughput`
/// hls.js adds reach the steering server — and a pathway clone's `HOST`/`PARAMS`
/// replacement, applied by the player to sluice's URL, reaches the cloned host through
/// sluice, inside `allowed_hosts` only. (Before: the JSON passed through, the relative
/// `RELOAD-URI` resolved to a sluice 404, and a clone sent the player past sluice.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steering_manifests_and_pathway_clones_go_through_the_proxy() {
    let master = "#EXTM3U\n#EXT-X-VERSION:11\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"steer/manifest.json\",PATHWAY-ID=\"A\"\n#EXT-X-STREAM-INF:BANDWIDTH=800000,PATHWAY-ID=\"A\",STABLE-VARIANT-ID=\"v1\"\nv1/media.m3u8\n";
    let manifest = r#"{"VERSION":1,"TTL":10,"RELOAD-URI":"next.json?session=a+b%20c","PATHWAY-PRIORITY":["B","A"],"PATHWAY-CLONES":[{"BASE-ID":"A","ID":"B","URI-REPLACEMENT":{"HOST":"127.0.0.3","PARAMS":{"cdn":"b&1"}}}]}"#;
    let origin = TestOrigin::new()
        .route("/s/master.m3u8", Reply::ok(master, HLS))
        .route(
            "/s/steer/manifest.json",
            Reply::ok(manifest, "application/json"),
        )
        .route(
            "/s/steer/next.json",
            Reply::ok(
                r#"{"VERSION":1,"TTL":10,"PATHWAY-PRIORITY":["A"]}"#,
                "application/json",
            ),
        )
        .route("/s/v1/media.m3u8", Reply::ok(media("", "seg_a.ts"), HLS))
        .start_on("127.0.0.2");
    // Pathway B: the same CDN path on another host (same port, as a CDN's other name).
    let clone = TestOrigin::new()
        .route("/s/v1/media.m3u8", Reply::ok(media("", "seg_b.ts"), HLS))
        .start_at(&format!("127.0.0.3:{}", origin.addr.port()));
    let s = sluice(
        origin.addr.port(),
        &[("steered", format!("http://{}/s/master.m3u8", origin.addr))],
    );
    let (status, _, master) = get(&s, &entry(&s, "steered").await).await;
    assert_eq!(status, 200, "{master}");
    let server_uri = attribute(&master, "#EXT-X-CONTENT-STEERING", "SERVER-URI");
    assert!(server_uri.ends_with("&doc=steering"), "{server_uri}");
    // hls.js adds the pathway it is on and its throughput.
    let (status, ct, body) = get(
        &s,
        &format!("{server_uri}&_HLS_pathway=A&_HLS_throughput=5000000"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with("application/json"), "{ct}");
    assert!(origin_saw(
        &origin,
        "/s/steer/manifest.json?_HLS_pathway=A&_HLS_throughput=5000000"
    ));
    let doc: Value = serde_json::from_str(&body).unwrap();
    let reload = doc["RELOAD-URI"].as_str().unwrap();
    assert!(
        reload.starts_with(&s.edge_url("/api/proxy?url=")),
        "{reload}"
    );
    assert_eq!(
        upstream(reload),
        format!("http://{}/s/steer/next.json?session=a+b%20c", origin.addr)
    );
    let (status, _, next) = get(&s, &format!("{reload}&_HLS_pathway=B")).await;
    assert_eq!(status, 200, "{next}");
    assert!(origin_saw(
        &origin,
        "/s/steer/next.json?session=a+b%20c&_HLS_pathway=B"
    ));
    // The clone: what hls.js's performUriReplacement does to the variant URL it holds
    // (sluice's): the hostname replaced by HOST (none is left), each PARAMS key set.
    let rep = &doc["PATHWAY-CLONES"][0]["URI-REPLACEMENT"];
    assert!(rep.get("HOST").is_none(), "{rep}");
    let params = rep["PARAMS"].as_object().unwrap();
    let variant = master.lines().last().unwrap();
    let mut keys: Vec<&String> = params.keys().collect();
    keys.sort();
    // encodeURIComponent's set.
    const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'!')
        .remove(b'~')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    let mut cloned = variant.to_string();
    for k in keys {
        let v = params[k].as_str().unwrap();
        cloned.push_str(&format!(
            "&{}={}",
            percent_encoding::utf8_percent_encode(k, COMPONENT),
            percent_encoding::utf8_percent_encode(v, COMPONENT)
        ));
    }
    let (status, _, cloned_media) = get(&s, &cloned).await;
    assert_eq!(status, 200, "{cloned_media}");
    assert!(
        origin_saw(&clone, "/s/v1/media.m3u8?cdn=b%261"),
        "{:?}",
        clone.requests()
    );
    let seg = cloned_media.lines().find(|l| l.starts_with('/')).unwrap();
    assert_eq!(
        upstream(seg),
        format!("http://127.0.0.3:{}/s/v1/seg_b.ts", origin.addr.port())
    );
    // A clone host the provider does not allow is refused like any other URL.
    let outside = cloned.replace("127.0.0.3", "127.0.0.1");
    assert_eq!(get(&s, &outside).await.0, 403, "{outside}");
}

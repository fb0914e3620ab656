//! Real media forms through `/api/proxy` (issue 22), against the real binary with a real
//! provider origin: a DASH `SegmentList` defined above a Representation with its own
//! `BaseURL` is fetched from where the player resolves it, and an fMP4 segment the origin types
//! `video/iso.segment` reaches players under a type their MediaSource takes.

mod common;

use common::{client, provider_jwt, random_bytes, Reply, RunningOrigin, Sluice, TestOrigin};

const SECRET: &str = "media-forms-jwt-secret-0123456789";

fn start(origin: &RunningOrigin, channel_path: &str, kind: &str) -> Sluice {
    Sluice::start(&format!(
        "provider_auth:\n  jwt_secret: {SECRET}\nproviders:\n  acme:\n    allowed_hosts: [\"127.0.0.2\"]\n    allow_private: true\n    channels:\n      ch: {{url: \"http://{o}{channel_path}\", type: {kind}}}\n",
        o = origin.addr
    ))
}

/// The values of `attr="…"` in `xml`, XML-unescaped (`&amp;` is the only escape sluice writes
/// in a proxied URL).
fn attr_values(xml: &str, attr: &str) -> Vec<String> {
    let needle = format!(" {attr}=\"");
    xml.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &xml[at + needle.len()..];
            rest[..rest.find('"').unwrap()].replace("&amp;", "&")
        })
        .collect()
}

/// The text of one `<Representation id="{id}" …>…</Representation>` of `mpd`.
fn representation<'a>(mpd: &'a str, id: &str) -> &'a str {
    let at = mpd
        .find(&format!("<Representation id=\"{id}\""))
        .unwrap_or_else(|| panic!("no Representation {id}: {mpd}"));
    let rest = &mpd[at..];
    let tag_end = rest.find('>').unwrap() + 1;
    if rest[..tag_end].ends_with("/>") {
        return &rest[..tag_end];
    }
    &rest[..rest
        .find("</Representation>")
        .map_or(rest.len(), |e| e + 17)]
}

/// An AdaptationSet's `SegmentList` (a `SegmentTimeline`, an `Initialization`, two
/// `SegmentURL`s) used by two Representations: one in the AdaptationSet's directory, one with
/// its own `BaseURL` (`hi/`), where the player resolves the list's URLs — and where the origin
/// has that Representation's objects. Every URL a player would fetch for each Representation
/// answers from the right directory (before: the `hi/` Representation's URLs were those
/// resolved above it, the low-rate objects — a known gap in a source comment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_list_above_a_base_url_is_fetched_where_the_player_resolves_it() {
    let mpd = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT4S" profiles="urn:mpeg:dash:profile:full:2011">
  <BaseURL>media/</BaseURL>
  <Period>
    <AdaptationSet mimeType="video/mp4" codecs="avc1.64001f">
      <SegmentList timescale="1000" duration="2000">
        <SegmentTimeline><S d="2000" r="1"/></SegmentTimeline>
        <Initialization sourceURL="init.mp4"/>
        <SegmentURL media="s1.m4s"/>
        <SegmentURL media="s2.m4s"/>
      </SegmentList>
      <Representation id="lo" bandwidth="300000"/>
      <Representation id="hi" bandwidth="3000000">
        <BaseURL>hi/</BaseURL>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"#;
    let mut origin =
        TestOrigin::new().route("/vod/manifest.mpd", Reply::ok(mpd, "application/dash+xml"));
    let mut bodies = Vec::new();
    for (i, dir) in ["/vod/media/", "/vod/media/hi/"].iter().enumerate() {
        for (j, name) in ["init.mp4", "s1.m4s", "s2.m4s"].iter().enumerate() {
            let body = random_bytes(2000 + j, (10 * i + j) as u64);
            origin = origin.route(
                &format!("{dir}{name}"),
                Reply::ok(body.clone(), "video/mp4"),
            );
            bodies.push((format!("{dir}{name}"), body));
        }
    }
    let origin = origin.start_on("127.0.0.2");
    let s = start(&origin, "/vod/manifest.mpd", "dash");
    let jwt = provider_jwt(SECRET, "viewer");
    let entry = common::stream_info_url(&s, "acme", "ch", &jwt).await;
    let r = client().get(s.edge_url(&entry)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let out = r.text().await.unwrap();
    for (rep, dir) in [("lo", "/vod/media/"), ("hi", "/vod/media/hi/")] {
        // The lowest SegmentList in effect for the Representation: its own, else the
        // AdaptationSet's (as Shaka and dash.js take it).
        let own = representation(&out, rep);
        let list = if own.contains("SegmentList") {
            own.to_string()
        } else {
            let set = &out[out.find("<AdaptationSet").unwrap()..];
            set[..set.find("<Representation").unwrap()].to_string()
        };
        let mut urls = attr_values(&list, "sourceURL");
        urls.extend(attr_values(&list, "media"));
        assert_eq!(urls.len(), 3, "{rep}: {list}");
        for u in urls {
            let (upstream, _) = sluice::rewrite::unwrap_proxy_url(&u)
                .unwrap_or_else(|| panic!("{rep}: not proxied: {u}"));
            let path = url::Url::parse(&upstream).unwrap().path().to_string();
            let file = path.rsplit('/').next().unwrap();
            assert_eq!(
                path,
                format!("{dir}{file}"),
                "{rep} fetches {path}, not in {dir}"
            );
            let r = client().get(s.edge_url(&u)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{rep}: {u}");
            let want = &bodies.iter().find(|(p, _)| *p == path).unwrap().1;
            assert!(r.bytes().await.unwrap() == *want, "{rep}: {path}");
        }
    }
    for (p, _) in &bodies {
        assert_eq!(
            origin.hits(p),
            1,
            "{p}: {:?}",
            origin
                .requests()
                .iter()
                .map(|r| r.path_and_query.clone())
                .collect::<Vec<_>>()
        );
    }
}

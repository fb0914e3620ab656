//! The JSON documents HLS attributes point at, rewritten like playlists: every URI in them
//! is resolved against the document's own URL and pointed back through `/api/proxy` with the
//! same ctx (a URL outside the provider's `allowed_hosts` is refused when the player asks for
//! it, never fetched, as for a playlist's URIs).
//!
//! - [`Document::AssetList`]: an HLS Interstitials asset list (`X-ASSET-LIST` on
//!   `EXT-X-DATERANGE`): `{"ASSETS": [{"URI": …, "DURATION": …}], …}`.
//! - [`Document::Steering`]: a content steering manifest (`EXT-X-CONTENT-STEERING`
//!   `SERVER-URI`): `RELOAD-URI` (often relative to the manifest: resolved here, since the
//!   player would resolve it against sluice's URL) and each of `PATHWAY-CLONES`'
//!   `URI-REPLACEMENT`. A clone's `PER-VARIANT-URIS` / `PER-RENDITION-URIS` are URIs like any
//!   other. Its `HOST` and `PARAMS` are applied by the player to the URL it holds — sluice's:
//!   a `HOST` would send it past sluice and `PARAMS` would land in sluice's query (a `ctx`
//!   key would replace the viewer's ctx). So they become `PARAMS` addressed to sluice,
//!   [`CLONE_HOST`] and [`CLONE_PARAM`]`<name>`, which the edge applies to the upstream URL
//!   before its checks ([`apply_clone`]).
//!
//! How the edge knows a body is one of these: the HLS rewriter adds `&doc=asset-list` or
//! `&doc=steering` to the proxied URL of such an attribute ([`super::hls`]), and a steering
//! manifest's `RELOAD-URI` carries it on. A content type would not do: `application/json`
//! is also session data, license answers and APIs sluice has no business rewriting, and the
//! decision to buffer is made before the answer arrives. The cache stores the origin's
//! body; the rewrite (which embeds the viewer's ctx) runs per request after it.
//!
//! The edge writes these URIs absolute, on sluice as the player reached it: hls.js loads an
//! asset's `URI` as it is (a path would be resolved against the page).
//!
//! The documents are parsed and re-serialised with serde_json (`preserve_order`: members
//! keep their order); every member other than the URIs is kept as it was.

use serde_json::{Map, Value};
use url::Url;

use percent_encoding::utf8_percent_encode;

use super::{check_size, is_fetchable, scheme_of, RewriteError, COMPONENT};

/// The `PARAMS` key that stands for a clone's `HOST` in a rewritten steering manifest.
pub const CLONE_HOST: &str = "clone-host";
/// The prefix of the `PARAMS` keys that stand for a clone's own `PARAMS`.
pub const CLONE_PARAM: &str = "clone-param.";

/// A JSON document kind sluice rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// HLS Interstitials asset list.
    AssetList,
    /// HLS content steering manifest.
    Steering,
}

impl Document {
    /// Its name in a proxied URL's `doc=` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Document::AssetList => "asset-list",
            Document::Steering => "steering",
        }
    }

    /// The kind a `doc=` value names.
    pub fn from_name(name: &str) -> Option<Document> {
        match name {
            "asset-list" => Some(Document::AssetList),
            "steering" => Some(Document::Steering),
            _ => None,
        }
    }
}

/// The mapping of one resolved URI: `map(url, what it points at)`; the document kind when it
/// is one of these documents itself (a steering manifest's `RELOAD-URI`).
pub type DocumentMap<'m> = dyn FnMut(&Url, Option<Document>) -> Result<String, String> + 'm;

/// Rewrite a document of `kind` fetched from `base`.
///
/// # Errors
/// [`RewriteError::TooLarge`] over the playlist cap, [`RewriteError::Json`] for a body that is
/// not the document's JSON shape, [`RewriteError::BadUri`] for a URI that does not resolve to
/// http(s) (`data:` ones are left as they are) or that `map` refuses.
pub fn rewrite_document(
    kind: Document,
    input: &[u8],
    base: &Url,
    map: &mut DocumentMap<'_>,
) -> Result<Vec<u8>, RewriteError> {
    check_size(input.len())?;
    let mut doc: Value = serde_json::from_slice(input)
        .map_err(|e| RewriteError::Json(format!("{}: {e}", kind.name())))?;
    let Value::Object(top) = &mut doc else {
        return Err(RewriteError::Json(format!(
            "{}: not a JSON object",
            kind.name()
        )));
    };
    match kind {
        Document::AssetList => asset_list(top, base, map)?,
        Document::Steering => steering(top, base, map)?,
    }
    serde_json::to_vec(&doc).map_err(|e| RewriteError::Json(e.to_string()))
}

fn asset_list(
    top: &mut Map<String, Value>,
    base: &Url,
    map: &mut DocumentMap<'_>,
) -> Result<(), RewriteError> {
    let Some(Value::Array(assets)) = top.get_mut("ASSETS") else {
        return Err(RewriteError::Json("asset list without ASSETS".into()));
    };
    for asset in assets {
        if let Some(uri) = asset.get_mut("URI") {
            rewrite_uri(uri, base, map, None)?;
        }
    }
    Ok(())
}

fn steering(
    top: &mut Map<String, Value>,
    base: &Url,
    map: &mut DocumentMap<'_>,
) -> Result<(), RewriteError> {
    if let Some(uri) = top.get_mut("RELOAD-URI") {
        rewrite_uri(uri, base, map, Some(Document::Steering))?;
    }
    let Some(Value::Array(clones)) = top.get_mut("PATHWAY-CLONES") else {
        return Ok(());
    };
    for clone in clones {
        let Some(Value::Object(rep)) = clone.get_mut("URI-REPLACEMENT") else {
            continue;
        };
        for key in ["PER-VARIANT-URIS", "PER-RENDITION-URIS"] {
            if let Some(Value::Object(uris)) = rep.get_mut(key) {
                for uri in uris.values_mut() {
                    rewrite_uri(uri, base, map, None)?;
                }
            }
        }
        let mut ours = Map::new();
        match rep.remove("HOST") {
            Some(Value::String(host)) => {
                ours.insert(CLONE_HOST.into(), Value::String(host));
            }
            Some(_) => return Err(RewriteError::Json("clone HOST is not a string".into())),
            None => {}
        }
        if let Some(params) = rep.remove("PARAMS") {
            let Value::Object(params) = params else {
                return Err(RewriteError::Json("clone PARAMS is not an object".into()));
            };
            for (k, v) in params {
                let v = match v {
                    Value::String(s) => s,
                    Value::Number(_) | Value::Bool(_) => v.to_string(),
                    _ => return Err(RewriteError::Json(format!("clone PARAMS {k:?}"))),
                };
                ours.insert(format!("{CLONE_PARAM}{k}"), Value::String(v));
            }
        }
        if !ours.is_empty() {
            rep.insert("PARAMS".into(), Value::Object(ours));
        }
    }
    Ok(())
}

/// Replace the URI string `value` by its mapped form.
fn rewrite_uri(
    value: &mut Value,
    base: &Url,
    map: &mut DocumentMap<'_>,
    points_at: Option<Document>,
) -> Result<(), RewriteError> {
    let Value::String(raw) = value else {
        return Err(RewriteError::Json("a URI that is not a string".into()));
    };
    // Inline content is fetched by nobody.
    if scheme_of(raw).is_some_and(|s| s.eq_ignore_ascii_case("data")) {
        return Ok(());
    }
    if raw.bytes().any(|b| b.is_ascii_control()) {
        return Err(RewriteError::BadUri(format!("{raw:?}: control character")));
    }
    let resolved = base
        .join(raw)
        .map_err(|e| RewriteError::BadUri(format!("{raw:?}: {e}")))?;
    if !is_fetchable(&resolved) {
        return Err(RewriteError::BadUri(format!(
            "{raw:?} resolves to non-http(s) {resolved}"
        )));
    }
    let mapped = map(&resolved, points_at)
        .map_err(|why| RewriteError::BadUri(format!("{resolved}: {why}")))?;
    *value = Value::String(mapped);
    Ok(())
}

/// Why a cloned pathway's replacement could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {CLONE_HOST} {0:?}")]
pub struct BadClone(pub String);

/// Apply a cloned pathway's replacement, as the player would have applied it to the origin's
/// URL (hls.js `performUriReplacement`): [`CLONE_HOST`] replaces the host name (the port is
/// kept), each [`CLONE_PARAM`]`name` sets `name` in the query (replacing its first occurrence,
/// else appended). `pairs` are the proxied URL's own query pairs. Returns whether anything
/// changed.
///
/// # Errors
/// [`BadClone`] when the host is not a host name.
pub fn apply_clone<'p>(
    url: &mut Url,
    pairs: impl IntoIterator<Item = (&'p str, &'p str)>,
) -> Result<bool, BadClone> {
    let mut changed = false;
    let mut params: Vec<(&str, &str)> = Vec::new();
    for (k, v) in pairs {
        if k == CLONE_HOST {
            if v.is_empty() || v.contains([':', '/', '@', '?', '#']) {
                return Err(BadClone(v.to_string()));
            }
            url.set_host(Some(v)).map_err(|_| BadClone(v.to_string()))?;
            changed = true;
        } else if let Some(name) = k.strip_prefix(CLONE_PARAM).filter(|n| !n.is_empty()) {
            params.push((name, v));
        }
    }
    if params.is_empty() {
        return Ok(changed);
    }
    // hls.js `setQueryParam`: the first `name=` replaced (later ones dropped), else appended;
    // the rest of the query kept byte for byte.
    let mut query: Vec<String> = url
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    for (name, v) in params {
        let key: String = utf8_percent_encode(name, COMPONENT).collect();
        let pair = format!("{key}={}", utf8_percent_encode(v, COMPONENT));
        let is_key = |p: &String| *p == key || p.starts_with(&format!("{key}="));
        match query.iter().position(is_key) {
            Some(i) => {
                query[i] = pair;
                let mut j = i + 1;
                while j < query.len() {
                    if is_key(&query[j]) {
                        query.remove(j);
                    } else {
                        j += 1;
                    }
                }
            }
            None => query.push(pair),
        }
    }
    url.set_query(Some(&query.join("&")));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxied(u: &Url, doc: Option<Document>) -> Result<String, String> {
        let mut out = super::super::proxy_url(u, "c1");
        if let Some(d) = doc {
            out.push_str("&doc=");
            out.push_str(d.name());
        }
        Ok(out)
    }

    fn rewrite(kind: Document, input: &str, base: &str) -> Result<Value, RewriteError> {
        let base = Url::parse(base).unwrap();
        let out = rewrite_document(kind, input.as_bytes(), &base, &mut proxied)?;
        Ok(serde_json::from_slice(&out).unwrap())
    }

    fn upstream(proxied: &Value) -> String {
        super::super::unwrap_proxy_url(proxied.as_str().unwrap())
            .unwrap()
            .0
    }

    #[test]
    fn asset_list_uris_resolve_against_the_list_and_go_through_the_proxy() {
        let input = r#"{"ASSETS":[{"URI":"ads/ad1.m3u8","DURATION":15.0},{"URI":"https://ads.example/ad2.m3u8?x=1&y=2","DURATION":10},{"URI":"data:application/x-mpegURL;base64,AA","DURATION":1}],"X-OTHER":"kept"}"#;
        let out = rewrite(
            Document::AssetList,
            input,
            "https://cdn.example/live/list.json?_HLS_primary_id=p",
        )
        .unwrap();
        let assets = out["ASSETS"].as_array().unwrap();
        assert_eq!(
            upstream(&assets[0]["URI"]),
            "https://cdn.example/live/ads/ad1.m3u8"
        );
        assert_eq!(
            upstream(&assets[1]["URI"]),
            "https://ads.example/ad2.m3u8?x=1&y=2"
        );
        assert!(assets[1]["URI"].as_str().unwrap().ends_with("&ctx=c1"));
        assert_eq!(assets[2]["URI"], "data:application/x-mpegURL;base64,AA");
        assert_eq!(assets[0]["DURATION"], 15.0);
        assert_eq!(out["X-OTHER"], "kept");
        // Members keep their order.
        let text = String::from_utf8(
            rewrite_document(
                Document::AssetList,
                input.as_bytes(),
                &Url::parse("https://cdn.example/l.json").unwrap(),
                &mut proxied,
            )
            .unwrap(),
        )
        .unwrap();
        assert!(text.find("ASSETS").unwrap() < text.find("X-OTHER").unwrap());
    }

    #[test]
    fn steering_reload_uri_and_clones() {
        let input = r#"{"VERSION":1,"TTL":300,"RELOAD-URI":"steer2.json?session=a%2Bb","PATHWAY-PRIORITY":["CDN-C","CDN-A"],"PATHWAY-CLONES":[{"BASE-ID":"CDN-A","ID":"CDN-C","URI-REPLACEMENT":{"HOST":"cdn-c.example","PARAMS":{"token":"t&1","n":2},"PER-VARIANT-URIS":{"v1":"/c/v1.m3u8"},"PER-RENDITION-URIS":{"a1":"https://cdn-c.example/a1.m3u8"}}}]}"#;
        let out = rewrite(
            Document::Steering,
            input,
            "https://cdn.example/steer/steer.json?_HLS_pathway=CDN-A",
        )
        .unwrap();
        let reload = out["RELOAD-URI"].as_str().unwrap();
        assert!(reload.ends_with("&ctx=c1&doc=steering"), "{reload}");
        assert_eq!(
            upstream(&out["RELOAD-URI"]),
            "https://cdn.example/steer/steer2.json?session=a%2Bb"
        );
        let rep = &out["PATHWAY-CLONES"][0]["URI-REPLACEMENT"];
        assert!(rep.get("HOST").is_none(), "{rep}");
        assert_eq!(
            rep["PARAMS"],
            serde_json::json!({"clone-host": "cdn-c.example", "clone-param.token": "t&1", "clone-param.n": "2"})
        );
        assert_eq!(
            upstream(&rep["PER-VARIANT-URIS"]["v1"]),
            "https://cdn.example/c/v1.m3u8"
        );
        assert_eq!(
            upstream(&rep["PER-RENDITION-URIS"]["a1"]),
            "https://cdn-c.example/a1.m3u8"
        );
        assert_eq!(
            out["PATHWAY-PRIORITY"],
            serde_json::json!(["CDN-C", "CDN-A"])
        );
        // A manifest without clones or reload is left as it is.
        let plain = rewrite(
            Document::Steering,
            r#"{"VERSION":1,"TTL":10}"#,
            "https://a/s",
        )
        .unwrap();
        assert_eq!(plain, serde_json::json!({"VERSION":1,"TTL":10}));
    }

    #[test]
    fn what_is_refused() {
        let base = "https://cdn.example/x.json";
        for (kind, input) in [
            (Document::AssetList, "not json"),
            (Document::AssetList, "[1]"),
            (Document::AssetList, r#"{"X":1}"#),
            (Document::AssetList, r#"{"ASSETS":[{"URI":5}]}"#),
            (
                Document::AssetList,
                r#"{"ASSETS":[{"URI":"ftp://h/a.m3u8"}]}"#,
            ),
            (
                Document::Steering,
                r#"{"RELOAD-URI":"javascript:alert(1)"}"#,
            ),
            (
                Document::Steering,
                r#"{"PATHWAY-CLONES":[{"URI-REPLACEMENT":{"HOST":7}}]}"#,
            ),
        ] {
            assert!(rewrite(kind, input, base).is_err(), "{input}");
        }
        // A refusal by the mapping fails the document.
        let err = rewrite_document(
            Document::AssetList,
            br#"{"ASSETS":[{"URI":"a.m3u8"}]}"#,
            &Url::parse(base).unwrap(),
            &mut |_, _| Err("not allowed".into()),
        );
        assert!(matches!(err, Err(RewriteError::BadUri(_))));
    }

    #[test]
    fn clones_apply_to_the_upstream_url() {
        let mut u =
            Url::parse("http://cdn-a.example:8080/v/1.m3u8?token=old&x=a+b%7E&token=2").unwrap();
        let changed = apply_clone(
            &mut u,
            [
                ("url", "ignored"),
                (CLONE_HOST, "cdn-c.example"),
                ("clone-param.token", "a&b"),
                ("clone-param.new", "n"),
            ],
        )
        .unwrap();
        assert!(changed);
        assert_eq!(
            u.as_str(),
            "http://cdn-c.example:8080/v/1.m3u8?token=a%26b&x=a+b%7E&new=n"
        );
        let mut u = Url::parse("http://a/x").unwrap();
        assert!(!apply_clone(&mut u, [("ctx", "c")]).unwrap());
        assert_eq!(u.as_str(), "http://a/x");
        for bad in ["", "evil.example:22", "a/b", "u@h", "a b"] {
            let mut u = Url::parse("http://a/x").unwrap();
            assert!(apply_clone(&mut u, [(CLONE_HOST, bad)]).is_err(), "{bad}");
        }
    }
}

//! Providers (provider-proxy-api.txt): upstream CDNs whose streams sluice proxies with
//! injected headers and cookies, and the channels each one offers.
//!
//! Their configuration (the YAML shape and the validated [`Provider`]s `Config` holds) is
//! [`crate::config::providers`]; this is what the stream endpoint and the `/api/proxy` path do
//! with one: the cache key of what it fetches and the `Cookie` header it sends.

use url::Url;

use crate::config::providers::Provider;

impl Provider {
    /// The cache key of an object proxied for this provider: the provider, then the URL
    /// without fragment and without the provider's credential query parameters (`hdnts`,
    /// `Policy`, …), the others in the order sent. Objects fetched with one provider's
    /// credentials are never served to another's contexts.
    pub fn cache_primary(&self, url: &Url) -> String {
        let mut key_url = url.clone();
        key_url.set_fragment(None);
        if key_url.query().is_some() {
            let kept: Vec<(String, String)> = key_url
                .query_pairs()
                .filter(|(k, _)| !self.cache_key_ignore.iter().any(|i| i == k.as_ref()))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if kept.is_empty() {
                key_url.set_query(None);
            } else {
                key_url.query_pairs_mut().clear().extend_pairs(kept);
            }
        }
        format!("proxy:{}:{key_url}", self.id)
    }
}

/// A `Cookie` header value for these pairs (`a=1; b=2`), or `None` when there are none.
pub fn cookie_header<'a>(pairs: impl IntoIterator<Item = &'a (String, String)>) -> Option<String> {
    let joined = pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    (!joined.is_empty()).then_some(joined)
}

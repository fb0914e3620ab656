//! The route table: every route of both listeners, once. An entry says its methods, path,
//! listeners, error surface, rate class (and which answers spend the client's auth-failure
//! budget), authentication (with the API-key permission it needs), whether it is written to
//! `access_logs`, and its handler. Everything that asks "which route is this" reads
//! [`ROUTES`]:
//!
//! | derived | by |
//! |---|---|
//! | each listener's axum router | [`mount`], called by [`super::router`] |
//! | the API-key check before an operator handler runs | [`Auth::ApiKey`], applied by [`super::router`] |
//! | the permission a handler that also takes a JWT checks keys with | [`Auth::JwtOrApiKey`], via [`Matched`] |
//! | the rate class and the answers that spend `auth_failures` | [`route_for`], read by [`super::limits::classify`] |
//! | the `access_logs` check | [`audited`], read by [`super::handle`] |
//! | a path's error surface | [`surface_of`], read by [`super::Surface::of`] |
//! | which edge paths are media (proxied, never routed) | [`media_at`], read by [`crate::edge::route`] |
//! | README's "Routes" table | [`markdown`]; a unit test fails when README differs |
//!
//! Adding a route is adding an entry here. The tests below refuse an entry with neither a
//! rate class nor a reason for having none, an operator write without a permission or the
//! audit, and a router that does not dispatch an entry to its own handler.
//!
//! Paths are matched the way the router matches them — the raw URI path, percent-encoding
//! untouched, by `matchit`, the matcher inside axum's router — so the classifier, the audit
//! check and the surface judge exactly the route the router dispatches (a test compares the
//! two on awkward spellings). The judgement is the same on both listeners: a route that is not
//! mounted on a listener is that listener's 404, yet it is charged, logged and shaped like the
//! route — stricter, never looser. A media route owns every path under the literal part of its
//! pattern (`/stream`, `/api/proxy`): the edge proxies all of them, and the media parsers
//! refuse what the pattern does not fit, in the route's error shape.

use std::fmt::{self, Write as _};
use std::sync::LazyLock;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use http::Method;

use super::{admin, channels, content_keys, fleet, health, playback, provider, purge, streaming};
use super::{AppState, Listener, Surface};
use crate::auth::api_keys::Permission;
use crate::ratelimit::RateClass;

/// One route of the table.
#[derive(Debug)]
pub struct Route {
    /// The methods it answers (a `GET` route answers `HEAD` too: `HEAD` runs as `GET`).
    pub methods: &'static [Verb],
    /// The path pattern as axum writes it: `{name}` is one segment, `{*name}` the rest.
    pub path: &'static str,
    /// The query it takes, shown in README only.
    pub query: &'static str,
    pub listeners: Listeners,
    /// The document whose error shape its answers take ([`Surface::error_body`]).
    pub surface: Surface,
    pub auth: Auth,
    pub rate: Rate,
    /// The answers that mean "this credential is not valid": each spends the client IP's
    /// `auth_failures` budget (a slot reserved before the handler runs, given back otherwise).
    pub failures: Failures,
    /// Written to `access_logs` ([`super::admin::log_access`]).
    pub audited: bool,
    pub handler: Handler,
    /// What it answers, for README.
    pub what: &'static str,
}

/// The HTTP methods routes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Head,
    Options,
    Post,
    Put,
    Delete,
}

impl Verb {
    pub fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Head => Method::HEAD,
            Verb::Options => Method::OPTIONS,
            Verb::Post => Method::POST,
            Verb::Put => Method::PUT,
            Verb::Delete => Method::DELETE,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Head => "HEAD",
            Verb::Options => "OPTIONS",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Delete => "DELETE",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Head => MethodFilter::HEAD,
            Verb::Options => MethodFilter::OPTIONS,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Delete => MethodFilter::DELETE,
        }
    }

    /// Whether the method changes state (an operator write must be audited).
    pub fn writes(self) -> bool {
        matches!(self, Verb::Post | Verb::Put | Verb::Delete)
    }
}

/// Where a route is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listeners {
    Edge,
    Admin,
    Both,
    /// The edge, only when this node is part of a cache fleet (`fleet:` set).
    FleetEdge,
}

impl Listeners {
    pub fn serves(self, listener: Listener, fleet: bool) -> bool {
        match self {
            Listeners::Edge => listener == Listener::Edge,
            Listeners::Admin => listener == Listener::Admin,
            Listeners::Both => true,
            Listeners::FleetEdge => listener == Listener::Edge && fleet,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Listeners::Edge => "edge",
            Listeners::Admin => "admin",
            Listeners::Both => "edge, admin",
            Listeners::FleetEdge => "edge (fleet only)",
        }
    }
}

/// What a request must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Nothing.
    None,
    /// `Authorization: Bearer <API key>` holding at least this permission, checked by the
    /// router before the handler runs (`401`, or `403 Insufficient permissions`).
    ApiKey(Permission),
    /// A user JWT, or an API key holding at least this permission: the handler tells them
    /// apart and checks a key with this permission ([`Matched`]).
    JwtOrApiKey(Permission),
    /// playback-api's key token, `Bearer b64url(json).b64url(hmac)`.
    KeyToken,
    /// provider-proxy-api's `Bearer <JWT>`.
    ProviderJwt,
    /// signed-channel-api's `X-Signature-Token` over `"{ts}:{path}"`.
    Signature,
    /// Another fleet node's signature.
    FleetSignature,
    /// A ctx token minted by Stream Info.
    CtxToken,
    /// A stream token when the content is gated; nothing otherwise.
    StreamToken,
}

impl Auth {
    /// The permission an API key needs to open the route (`None`: no API key opens it).
    pub fn permission(self) -> Option<Permission> {
        match self {
            Auth::ApiKey(p) | Auth::JwtOrApiKey(p) => Some(p),
            _ => None,
        }
    }

    fn label(self) -> String {
        match self {
            Auth::None => "—".into(),
            Auth::ApiKey(p) => format!("API key: {}", p.as_str()),
            Auth::JwtOrApiKey(p) => format!("user JWT, or API key: {}", p.as_str()),
            Auth::KeyToken => "`Bearer` key token".into(),
            Auth::ProviderJwt => "`Bearer <JWT>`".into(),
            Auth::Signature => "HMAC `X-Signature-Token`".into(),
            Auth::FleetSignature => "another node's signature".into(),
            Auth::CtxToken => "ctx token".into(),
            Auth::StreamToken => "— (stream token when gated)".into(),
        }
    }
}

/// A route's request budget per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// Limited in this class ([`super::limits::key_for`] says whose budget it spends).
    Class(RateClass),
    /// Not limited, and why.
    Unlimited(&'static str),
}

impl Rate {
    pub fn class(self) -> Option<RateClass> {
        match self {
            Rate::Class(c) => Some(c),
            Rate::Unlimited(_) => None,
        }
    }
}

/// Answers that spend the client's auth-failure budget.
pub type Failures = &'static [u16];
pub const NONE: Failures = &[];
/// Key delivery and the signed-channel stream: a bad, expired or missing credential.
pub const BAD_CREDENTIAL: Failures = &[401, 403];
/// A bad bearer (the streaming routes, Stream Info); their 403s are verdicts.
pub const BAD_BEARER: Failures = &[401];

/// The router's endpoint for a route: its handler mounted for the given methods.
pub type ApiHandler = fn(MethodFilter) -> MethodRouter<AppState>;

/// Who answers a route.
#[derive(Clone, Copy)]
pub enum Handler {
    /// An API handler, called through the router.
    Api(ApiHandler),
    /// A media path, proxied (and cached) by the edge's phases; never reaches the router.
    Media(Media),
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Handler::Api(_) => f.write_str("Api"),
            Handler::Media(m) => write!(f, "Media({m:?})"),
        }
    }
}

/// The edge's media paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// `/stream/{hash}/…` from the bucket ([`crate::media::path`]).
    Stream,
    /// `/api/proxy` for a provider context ([`crate::edge::proxy`]).
    Proxy,
}

impl Route {
    /// Whether the route answers `method` (`HEAD` where it answers `GET`).
    pub fn answers(&self, method: &Method) -> bool {
        self.methods
            .iter()
            .any(|v| v.method() == method || (v == &Verb::Get && method == Method::HEAD))
    }

    fn method_filter(&self) -> Option<MethodFilter> {
        self.methods
            .iter()
            .map(|v| v.filter())
            .reduce(MethodFilter::or)
    }

    /// The pattern up to its first parameter: what a media route owns (`/stream`).
    fn literal_prefix(&self) -> &'static str {
        match self.path.find("/{") {
            Some(i) => &self.path[..i],
            None => self.path,
        }
    }
}

macro_rules! api {
    ($handler:path) => {
        Handler::Api(|methods| axum::routing::on(methods, $handler))
    };
}

use Listeners::{Admin, Both, Edge, FleetEdge};
use Rate::{Class, Unlimited};

const GET: &[Verb] = &[Verb::Get];
const POST: &[Verb] = &[Verb::Post];
const PUT: &[Verb] = &[Verb::Put];
const DELETE: &[Verb] = &[Verb::Delete];
const MEDIA: &[Verb] = &[Verb::Get, Verb::Head, Verb::Options];
const MEDIA_RATE: Rate = Unlimited(
    "media, bounded by the per-client connection share (`limits.max_connections_per_ip`)",
);
const CATALOGUE: Rate =
    Unlimited("a public catalogue answered from memory, no credential to guess");

/// Every route, in README's order.
#[rustfmt::skip]
pub static ROUTES: &[Route] = &[
    Route { methods: GET, path: "/health", query: "", listeners: Both, surface: Surface::Admin,
        auth: Auth::None, rate: Unlimited("load balancers' probes; answered from memory"),
        failures: NONE, audited: false, handler: api!(health::health),
        what: "`{\"status\":\"ok\",\"service\":\"sluice\",\"version\":\"…\"}` (`503` draining)" },
    Route { methods: GET, path: "/metrics", query: "", listeners: Admin, surface: Surface::Admin,
        auth: Auth::None, rate: Unlimited("Prometheus scrapes, on the operators' listener"),
        failures: NONE, audited: false, handler: api!(health::metrics),
        what: "Prometheus text" },
    Route { methods: MEDIA, path: "/stream/{hash}/{*path}", query: "", listeners: Edge,
        surface: Surface::Playback, auth: Auth::StreamToken, rate: MEDIA_RATE,
        failures: NONE, audited: false, handler: Handler::Media(Media::Stream),
        what: "media from the bucket, cached" },
    Route { methods: GET, path: "/api/providers/{id}/channels/{channel_id}/stream", query: "",
        listeners: Both, surface: Surface::Provider, auth: Auth::ProviderJwt,
        rate: Class(RateClass::StreamInfo), failures: BAD_BEARER, audited: false,
        handler: api!(provider::stream),
        what: "Stream Info object (a ctx-token URL for `/api/proxy`)" },
    Route { methods: MEDIA, path: "/api/proxy", query: "?url=&ctx=", listeners: Edge,
        surface: Surface::Provider, auth: Auth::CtxToken, rate: MEDIA_RATE,
        failures: NONE, audited: false, handler: Handler::Media(Media::Proxy),
        what: "provider media, injected headers/cookies, rewritten playlists" },
    Route { methods: MEDIA, path: "/api/proxy/{ctx}/{scheme}/{authority}/{*path}", query: "",
        listeners: Edge, surface: Surface::Provider, auth: Auth::CtxToken, rate: MEDIA_RATE,
        failures: NONE, audited: false, handler: Handler::Media(Media::Proxy),
        what: "the path form rewritten DASH `BaseURL`s and HLS URIs with `IMPORT`ed variables point at (the query is the upstream's)" },
    Route { methods: GET, path: "/api/stream-ids", query: "", listeners: Admin,
        surface: Surface::Admin, auth: Auth::ApiKey(Permission::Read),
        rate: Class(RateClass::Api), failures: NONE, audited: true,
        handler: api!(admin::list_stream_ids),
        what: "list stream ids" },
    Route { methods: POST, path: "/api/stream-ids", query: "", listeners: Admin,
        surface: Surface::Admin, auth: Auth::ApiKey(Permission::Write),
        rate: Class(RateClass::Api), failures: NONE, audited: true,
        handler: api!(admin::add_stream_id),
        what: "add `{publisher, player, description?}`" },
    Route { methods: DELETE, path: "/api/stream-ids/{player_id}", query: "",
        listeners: Admin, surface: Surface::Admin, auth: Auth::ApiKey(Permission::Admin),
        rate: Class(RateClass::Api), failures: NONE, audited: true,
        handler: api!(admin::delete_stream_id),
        what: "remove a stream id" },
    Route { methods: POST, path: "/api/keys", query: "", listeners: Admin,
        surface: Surface::Admin, auth: Auth::ApiKey(Permission::Admin),
        rate: Class(RateClass::Config), failures: NONE, audited: true,
        handler: api!(admin::create_key),
        what: "create an API key `{name, permissions}`" },
    Route { methods: GET, path: "/stats/{player_id}", query: "[?reset][&legacy=1]",
        listeners: Admin, surface: Surface::Admin, auth: Auth::None,
        rate: Class(RateClass::Stats), failures: NONE, audited: true,
        handler: api!(admin::player_stats),
        what: "per-player delivery stats" },
    Route { methods: POST, path: "/api/cache/purge", query: "", listeners: Admin,
        surface: Surface::Admin, auth: Auth::ApiKey(Permission::Write),
        rate: Class(RateClass::Api), failures: NONE, audited: true,
        handler: api!(purge::purge),
        what: "`{\"path\": \"/stream/h/x.m4s\"}`, `{\"hash\": \"h\"}` or `{\"url\": \"https://…\"}`" },
    Route { methods: PUT, path: "/api/content-keys/{hash}", query: "", listeners: Admin,
        surface: Surface::Admin, auth: Auth::ApiKey(Permission::Admin),
        rate: Class(RateClass::Config), failures: NONE, audited: true,
        handler: api!(content_keys::put_key),
        what: "import (`{\"key_hex\":…}`) or generate (`{\"generate\":true}`) a content key" },
    Route { methods: GET, path: "/api/key/{hash}", query: "", listeners: Both,
        surface: Surface::Playback, auth: Auth::KeyToken,
        rate: Class(RateClass::Key), failures: BAD_CREDENTIAL, audited: false,
        handler: api!(playback::key),
        what: "16-byte content key" },
    Route { methods: POST, path: "/api/v2/streaming/token", query: "", listeners: Both,
        surface: Surface::Streaming, auth: Auth::JwtOrApiKey(Permission::Write),
        rate: Class(RateClass::Streaming), failures: BAD_BEARER, audited: false,
        handler: api!(streaming::issue_token),
        what: "issue a stream token" },
    Route { methods: GET, path: "/api/v2/streaming/verify", query: "?token=", listeners: Both,
        surface: Surface::Streaming, auth: Auth::None,
        rate: Class(RateClass::Verify), failures: NONE, audited: false,
        handler: api!(streaming::verify),
        what: "a stream token's verdict (spends no use)" },
    Route { methods: POST, path: "/api/v2/streaming/revoke", query: "", listeners: Both,
        surface: Surface::Streaming, auth: Auth::JwtOrApiKey(Permission::Write),
        rate: Class(RateClass::Streaming), failures: BAD_BEARER, audited: false,
        handler: api!(streaming::revoke),
        what: "revoke a stream token" },
    Route { methods: POST, path: "/api/v2/streaming/drm/license", query: "", listeners: Both,
        surface: Surface::Streaming, auth: Auth::JwtOrApiKey(Permission::Write),
        rate: Class(RateClass::Streaming), failures: BAD_BEARER, audited: false,
        handler: api!(streaming::drm_license),
        what: "a DRM license from the content's license server" },
    Route { methods: GET, path: "/api/v1/health", query: "", listeners: Both,
        surface: Surface::Channels, auth: Auth::None, rate: CATALOGUE,
        failures: NONE, audited: false, handler: api!(channels::health),
        what: "signed-channel service health" },
    Route { methods: GET, path: "/api/v1/matches", query: "", listeners: Both,
        surface: Surface::Channels, auth: Auth::None, rate: CATALOGUE,
        failures: NONE, audited: false, handler: api!(channels::matches),
        what: "matches and their channels" },
    Route { methods: GET, path: "/api/v1/channels", query: "", listeners: Both,
        surface: Surface::Channels, auth: Auth::None, rate: CATALOGUE,
        failures: NONE, audited: false, handler: api!(channels::channels),
        what: "channels (never their URLs or keys)" },
    Route { methods: GET, path: "/api/v1/stats", query: "", listeners: Both,
        surface: Surface::Channels, auth: Auth::None, rate: CATALOGUE,
        failures: NONE, audited: false, handler: api!(channels::stats),
        what: "catalogue counts" },
    Route { methods: GET, path: "/api/v1/channels/{key}/stream", query: "", listeners: Both,
        surface: Surface::Channels, auth: Auth::Signature,
        rate: Unlimited("only a valid signature opens it"),
        failures: BAD_CREDENTIAL, audited: false, handler: api!(channels::stream),
        what: "a channel's stream URL (and ClearKey keys)" },
    Route { methods: POST, path: "/_fleet/purge", query: "", listeners: FleetEdge,
        surface: Surface::Admin, auth: Auth::FleetSignature,
        rate: Unlimited("fleet nodes only, each carrying all of its players"),
        failures: NONE, audited: false, handler: api!(fleet::purge),
        what: "a purge another node of the [cache fleet](#cache-fleet) resolved, applied here only (`403` for anyone else)" },
    Route { methods: GET, path: "/_fleet/stats/{player}", query: "[?reset]", listeners: FleetEdge,
        surface: Surface::Admin, auth: Auth::FleetSignature,
        rate: Unlimited("fleet nodes only, each carrying all of its players"),
        failures: NONE, audited: false, handler: api!(fleet::player_stats),
        what: "this node's figures for a player, for the node reporting the fleet's" },
];

/// The surface of a path no route matches — an unknown route's 404 takes the shape of its
/// neighbours: the document whose path family it falls under; anything else is admin-api's.
/// (Media routes own their prefixes already.) A test checks every route lies in the family of
/// its own surface.
pub const FAMILIES: &[(&str, Surface)] = &[
    ("/api/v2/streaming", Surface::Streaming),
    ("/api/v1", Surface::Channels),
    ("/api/key", Surface::Playback),
    ("/api/providers", Surface::Provider),
];

/// The route a request was dispatched to, in the request's and the response's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Matched(pub &'static Route);

/// The table indexed for lookups.
struct Index {
    /// The router's routes, by pattern (one entry per method).
    api: matchit::Router<Vec<&'static Route>>,
    /// The media routes, by the prefix they own.
    media: Vec<(&'static str, Vec<&'static Route>)>,
}

fn index() -> Result<Index, matchit::InsertError> {
    let mut by_path: Vec<(&'static str, Vec<&'static Route>)> = Vec::new();
    let mut media: Vec<(&'static str, Vec<&'static Route>)> = Vec::new();
    for route in ROUTES {
        let (groups, key) = match route.handler {
            Handler::Api(_) => (&mut by_path, route.path),
            Handler::Media(_) => (&mut media, route.literal_prefix()),
        };
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, routes)) => routes.push(route),
            None => groups.push((key, vec![route])),
        }
    }
    let mut api = matchit::Router::new();
    for (path, routes) in by_path {
        api.insert(path, routes)?;
    }
    Ok(Index { api, media })
}

/// Built by [`mount`] when the routers are built at start (where axum would refuse the same
/// conflicting patterns), so never first by a request; `tests::the_table_indexes` builds it.
static INDEX: LazyLock<Index> =
    LazyLock::new(|| index().expect("the route table's patterns do not conflict"));

/// `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Every route whose pattern matches `path`: the router's routes at that path (one per
/// method), or the media routes that own it (judged as one: a test holds them alike).
pub fn routes_at(path: &str) -> &'static [&'static Route] {
    let index: &'static Index = &INDEX;
    if let Some((_, routes)) = index.media.iter().find(|(prefix, _)| under(path, prefix)) {
        return routes;
    }
    index.api.at(path).map_or(&[], |m| m.value.as_slice())
}

/// The route a request is judged by: the one answering its method at its path, else (the
/// router answers `405`) the first route at its path.
pub fn route_for(method: &Method, path: &str) -> Option<&'static Route> {
    let at = routes_at(path);
    at.iter()
        .find(|r| r.answers(method))
        .or_else(|| at.first())
        .copied()
}

/// Whether a request is written to `access_logs`.
pub fn audited(method: &Method, path: &str) -> bool {
    route_for(method, path).is_some_and(|r| r.audited)
}

/// The surface a path's errors take: its route's, else its family's ([`FAMILIES`]).
pub fn surface_of(path: &str) -> Surface {
    match routes_at(path).first() {
        Some(route) => route.surface,
        None => family(path),
    }
}

/// The surface of the path family `path` falls under (admin-api's outside every family).
fn family(path: &str) -> Surface {
    FAMILIES
        .iter()
        .find(|(prefix, _)| under(path, prefix))
        .map_or(Surface::Admin, |(_, surface)| *surface)
}

/// The media route owning an edge path, and the path after the prefix it owns (`""` or
/// `/…`); `None`: an API path, for the router.
pub fn media_at(path: &str) -> Option<(Media, &str)> {
    INDEX
        .media
        .iter()
        .find_map(|(prefix, routes)| match routes.first()?.handler {
            Handler::Media(media) if under(path, prefix) => Some((media, &path[prefix.len()..])),
            _ => None,
        })
}

/// The router of one listener: every API route of the table that `listener` serves, mounted
/// for its methods as `endpoint` wraps its handler, each marked with its entry ([`Matched`]);
/// anything else is the surface's 404.
pub fn mount<S>(
    listener: Listener,
    fleet: bool,
    mut endpoint: impl FnMut(&'static Route, ApiHandler, MethodFilter) -> MethodRouter<S>,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    LazyLock::force(&INDEX);
    let mut router = Router::new();
    for route in ROUTES {
        let (Handler::Api(handler), Some(methods)) = (route.handler, route.method_filter()) else {
            continue;
        };
        if !route.listeners.serves(listener, fleet) {
            continue;
        }
        let endpoint = endpoint(route, handler, methods).route_layer(axum::middleware::from_fn(
            move |req: Request, next: Next| mark(route, req, next),
        ));
        router = router.route(route.path, endpoint);
    }
    router.fallback(super::error::not_found)
}

async fn mark(route: &'static Route, mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(Matched(route));
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(Matched(route));
    resp
}

/// README's "Routes" table.
pub fn markdown() -> String {
    let mut out = String::from(
        "| listener | route | auth | rate limit | `access_logs` | errors | what |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in ROUTES {
        let methods: Vec<&str> = r.methods.iter().map(|v| v.as_str()).collect();
        let path = r.path.replace("{*", "{");
        let mut rate = match r.rate {
            Rate::Class(c) => format!("`{}`", c.as_str()),
            Rate::Unlimited(why) => format!("none: {why}"),
        };
        if !r.failures.is_empty() {
            let codes: Vec<String> = r.failures.iter().map(u16::to_string).collect();
            let verb = if codes.len() == 1 { "spends" } else { "spend" };
            let _ = write!(rate, "; {} {verb} `auth_failures`", codes.join("/"));
        }
        let cells = [
            r.listeners.label().to_string(),
            format!("`{} {path}{}`", methods.join("/"), r.query),
            r.auth.label(),
            rate,
            if r.audited { "✓" } else { "" }.to_string(),
            r.surface.document().to_string(),
            r.what.to_string(),
        ];
        let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// A request path that matches `pattern`, every parameter filled in (`x`, and `x/y.m4s` for a
/// catch-all): how the tests reach each route of the table.
pub fn example_path(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|seg| {
            if seg.starts_with("{*") {
                "x/y.m4s"
            } else if seg.starts_with('{') {
                "x"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests;

//! The route table's own rules, and that what is derived from it (routers, classifier, audit,
//! surfaces, media prefixes, README) agrees with it.

use std::collections::HashSet;

use axum::body::Body;
use axum::http::StatusCode;
use tower::ServiceExt;

use super::*;

/// A request path matching `pattern` (see [`example_path`]).
fn example(pattern: &str) -> String {
    example_path(pattern)
}

fn is_api(r: &Route) -> bool {
    matches!(r.handler, Handler::Api(_))
}

fn same(a: &Route, b: &Route) -> bool {
    std::ptr::eq(a, b)
}

fn name(r: &Route) -> String {
    let methods: Vec<&str> = r.methods.iter().map(|v| v.as_str()).collect();
    format!("{} {}", methods.join("/"), r.path)
}

#[test]
fn the_table_indexes() {
    if let Err(e) = index() {
        panic!("the route table's patterns conflict: {e}");
    }
}

#[test]
fn every_route_is_limited_or_says_why() {
    for r in ROUTES {
        match r.rate {
            Rate::Class(c) => assert_ne!(
                c,
                RateClass::AuthFailures,
                "{}: auth_failures is spent through `failures`, never as a route's class",
                name(r)
            ),
            Rate::Unlimited(why) => assert!(
                why.split_whitespace().count() >= 4,
                "{}: an unlimited route says why ({why:?})",
                name(r)
            ),
        }
        // A credential a stranger could guess is throttled: by the route's class, or by its
        // refusals spending the client's auth-failure budget.
        if matches!(
            r.auth,
            Auth::ApiKey(_)
                | Auth::JwtOrApiKey(_)
                | Auth::KeyToken
                | Auth::ProviderJwt
                | Auth::Signature
        ) {
            assert!(
                r.rate.class().is_some() || !r.failures.is_empty(),
                "{}: checks a guessable credential with no limit",
                name(r)
            );
        }
        if !r.failures.is_empty() {
            assert_ne!(r.auth, Auth::None, "{}: no credential to fail", name(r));
            assert!(r.failures.iter().all(|s| matches!(s, 401 | 403)));
        }
    }
}

#[test]
fn operator_writes_are_audited_and_need_a_permission() {
    let mut writes = 0;
    for r in ROUTES {
        if r.listeners == Listeners::Admin && r.methods.iter().any(|v| v.writes()) {
            writes += 1;
            assert!(r.audited, "{}: an operator write is audited", name(r));
            assert!(
                matches!(r.auth, Auth::ApiKey(_)),
                "{}: an operator write needs an API-key permission",
                name(r)
            );
        }
        if matches!(r.auth, Auth::ApiKey(_)) {
            assert!(r.audited, "{}: a key-only route is audited", name(r));
        }
        if r.audited {
            assert_eq!(r.listeners, Listeners::Admin, "{}", name(r));
        }
        if let Auth::JwtOrApiKey(p) | Auth::ApiKey(p) = r.auth {
            assert_eq!(r.auth.permission(), Some(p));
        }
    }
    assert_eq!(
        writes, 5,
        "stream-id add and delete, keys, purge, content keys"
    );
}

#[test]
fn one_path_one_surface_and_each_method_once() {
    let mut seen = HashSet::new();
    for r in ROUTES {
        for v in r.methods {
            assert!(
                seen.insert((r.path, v.as_str())),
                "{} {} twice",
                v.as_str(),
                r.path
            );
        }
        for other in ROUTES.iter().filter(|o| o.path == r.path) {
            assert_eq!(other.surface, r.surface, "{}", r.path);
            assert_eq!(other.listeners, r.listeners, "{}", r.path);
        }
    }
}

#[test]
fn media_routes_sharing_a_prefix_are_alike() {
    for r in ROUTES.iter().filter(|r| !is_api(r)) {
        for o in ROUTES.iter().filter(|o| !is_api(o)) {
            if o.literal_prefix() == r.literal_prefix() {
                assert_eq!(
                    (
                        o.surface,
                        o.auth,
                        o.rate,
                        o.failures,
                        o.audited,
                        o.listeners
                    ),
                    (
                        r.surface,
                        r.auth,
                        r.rate,
                        r.failures,
                        r.audited,
                        r.listeners
                    ),
                    "{} and {}",
                    name(o),
                    name(r)
                );
            }
        }
    }
}

#[test]
fn every_route_is_found_at_its_own_path() {
    for r in ROUTES {
        let path = example(r.path);
        for v in r.methods {
            let found = route_for(&v.method(), &path);
            // Media routes sharing a prefix are one route to the lookups.
            let own = |f: &Route| match r.handler {
                Handler::Api(_) => f.path == r.path,
                Handler::Media(_) => f.literal_prefix() == r.literal_prefix(),
            };
            assert!(
                found.is_some_and(|f| own(f) && f.answers(&v.method())),
                "{} {path}: found {found:?}",
                v.as_str()
            );
        }
        assert_eq!(surface_of(&path), r.surface, "{path}");
    }
}

#[test]
fn lookups() {
    let get = Method::GET;
    let post = Method::POST;
    assert!(audited(&post, "/api/keys"));
    assert!(audited(&get, "/api/stream-ids"));
    assert!(audited(&Method::DELETE, "/api/stream-ids/p"));
    assert!(audited(&get, "/stats/live"));
    assert!(audited(&Method::PUT, "/api/content-keys/h"));
    assert!(audited(&post, "/api/cache/purge"));
    assert!(!audited(&get, "/api/key/h"));
    assert!(!audited(&post, "/api/v2/streaming/token"));
    assert!(!audited(&get, "/health"));
    assert!(!audited(&get, "/api/keys/x"));
    // A method the path does not answer (the router's 405) is judged by the path's route.
    let put = route_for(&Method::PUT, "/api/stream-ids").map(|r| r.rate);
    assert_eq!(put, Some(Rate::Class(RateClass::Api)));
    assert!(audited(&Method::PUT, "/api/stream-ids"));
    // HEAD is answered where GET is.
    assert!(route_for(&Method::HEAD, "/api/key/h").is_some_and(|r| r.answers(&Method::GET)));
    // Raw paths, as the router sees them: an empty parameter or a trailing slash is no route.
    assert!(route_for(&get, "/api/key/").is_none());
    assert!(route_for(&get, "/stats/").is_none());
    assert!(route_for(&get, "/api/keys").is_some());
    assert!(route_for(&get, "/api/v1/channels/").is_none());
    assert!(route_for(&get, "/API/keys").is_none());
    // Media routes own their prefixes.
    assert_eq!(media_at("/stream"), Some((Media::Stream, "")));
    assert_eq!(media_at("/stream/"), Some((Media::Stream, "/")));
    assert_eq!(media_at("/stream/h/x.ts"), Some((Media::Stream, "/h/x.ts")));
    assert_eq!(media_at("/api/proxy"), Some((Media::Proxy, "")));
    assert_eq!(
        media_at("/api/proxy/c/https/cdn/x"),
        Some((Media::Proxy, "/c/https/cdn/x"))
    );
    assert_eq!(media_at("/streams"), None);
    assert_eq!(media_at("/api/proxyx"), None);
    assert_eq!(media_at("/api/key/h"), None);
    assert!(route_for(&get, "/stream/").is_some_and(|r| r.surface == Surface::Playback));
}

#[test]
fn unmatched_paths_take_their_neighbours_surface() {
    for r in ROUTES {
        if is_api(r) {
            // The 404 next to a route (a typo of it) has the route's shape.
            assert_eq!(family(&example(r.path)), r.surface, "{}", name(r));
            assert_eq!(surface_of(&format!("{}/typo", example(r.path))), r.surface);
        } else {
            let prefix = r.literal_prefix();
            assert_eq!(surface_of(prefix), r.surface, "{prefix}");
            assert_eq!(surface_of(&format!("{prefix}/../x")), r.surface, "{prefix}");
        }
    }
    assert_eq!(surface_of("/api/v1/nope"), Surface::Channels);
    assert_eq!(surface_of("/api/v2/streaming"), Surface::Streaming);
    assert_eq!(surface_of("/api/v2/streamingx"), Surface::Admin);
    assert_eq!(surface_of("/nope"), Surface::Admin);
}

#[test]
fn media_prefixes_own_no_api_route() {
    for r in ROUTES.iter().filter(|r| is_api(r)) {
        assert_eq!(media_at(r.path), None, "{}", name(r));
        assert_eq!(media_at(&example(r.path)), None, "{}", name(r));
    }
    for r in ROUTES.iter().filter(|r| !is_api(r)) {
        assert_eq!(r.listeners, Listeners::Edge, "media is the edge's");
        assert!(media_at(&example(r.path)).is_some(), "{}", name(r));
    }
}

#[test]
fn fleet_routes_are_where_the_fleet_client_sends() {
    let purge = route_for(&Method::POST, crate::fleet::purge::PATH);
    assert!(purge.is_some_and(|r| r.listeners == Listeners::FleetEdge && r.answers(&Method::POST)));
    let stats = route_for(&Method::GET, &crate::fleet::stats::path("live", true));
    assert!(stats.is_some_and(|r| r.listeners == Listeners::FleetEdge && r.answers(&Method::GET)));
    let fleet_routes = ROUTES
        .iter()
        .filter(|r| r.listeners == Listeners::FleetEdge)
        .count();
    assert_eq!(fleet_routes, 2);
}

/// A router mounted from the table whose every endpoint answers `204`: what it dispatches and
/// to which entry ([`Matched`]), with no state behind it.
fn probe_router(listener: Listener, fleet: bool) -> Router {
    mount(listener, fleet, |_, _, methods| {
        axum::routing::on(methods, || async { StatusCode::NO_CONTENT })
    })
}

async fn send(router: &Router, method: Method, path: &str) -> Response {
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .expect("request");
    match router.clone().oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

fn matched(resp: &Response) -> Option<&'static Route> {
    resp.extensions().get::<Matched>().map(|m| m.0)
}

const LISTENERS: [(Listener, bool); 4] = [
    (Listener::Edge, false),
    (Listener::Edge, true),
    (Listener::Admin, false),
    (Listener::Admin, true),
];

#[tokio::test]
async fn each_listener_dispatches_each_of_its_routes_to_its_entry() {
    for (listener, fleet) in LISTENERS {
        let router = probe_router(listener, fleet);
        for r in ROUTES {
            let path = example(r.path);
            let mut methods: Vec<Method> = r.methods.iter().map(|v| v.method()).collect();
            if r.answers(&Method::HEAD) {
                methods.push(Method::HEAD);
            }
            for method in methods {
                let resp = send(&router, method.clone(), &path).await;
                let what = format!("{method} {path} on {listener:?} (fleet {fleet})");
                if is_api(r) && r.listeners.serves(listener, fleet) {
                    assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{what}");
                    assert!(matched(&resp).is_some_and(|m| same(m, r)), "{what}");
                } else {
                    // Not this listener's (or media, which the edge proxies before the
                    // router): the router's own 404.
                    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{what}");
                    assert!(matched(&resp).is_none(), "{what}");
                    let reply = resp.extensions().get::<super::super::error::ErrorReply>();
                    assert_eq!(reply.map(|r| r.message.as_str()), Some("Not found"));
                }
            }
        }
    }
}

/// Spellings around each route's path that a matcher could judge differently.
fn awkward(pattern: &str) -> Vec<String> {
    let path = example(pattern);
    let segments: Vec<&str> = pattern.split('/').collect();
    let emptied = segments
        .iter()
        .map(|s| if s.starts_with('{') { "" } else { s })
        .collect::<Vec<_>>()
        .join("/");
    let mut out = vec![
        path.clone(),
        format!("{path}/"),
        format!("/{path}"),
        format!("{path}/more"),
        path.replace("/x", "/a%2Fb"),
        path.to_ascii_uppercase(),
        emptied,
        format!("{path}x"),
    ];
    if let Some((parent, _)) = path.rsplit_once('/') {
        out.push(parent.to_string());
        out.push(format!("{parent}/"));
    }
    out.retain(|p| p.starts_with('/'));
    out
}

#[tokio::test]
async fn lookups_judge_exactly_what_the_router_dispatches() {
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
    ];
    let paths: Vec<String> = ROUTES.iter().flat_map(|r| awkward(r.path)).collect();
    for (listener, fleet) in LISTENERS {
        let router = probe_router(listener, fleet);
        for path in &paths {
            let here: Vec<&'static Route> = routes_at(path)
                .iter()
                .copied()
                .filter(|r| is_api(r) && r.listeners.serves(listener, fleet))
                .collect();
            for method in &methods {
                let resp = send(&router, method.clone(), path).await;
                let what = format!("{method} {path} on {listener:?} (fleet {fleet})");
                let answering = here.iter().copied().find(|r| r.answers(method));
                match (resp.status(), matched(&resp)) {
                    (StatusCode::NO_CONTENT, Some(m)) => {
                        assert!(answering.is_some_and(|a| same(a, m)), "{what}");
                        let judged = route_for(method, path);
                        assert!(judged.is_some_and(|j| same(j, m)), "{what}");
                    }
                    (StatusCode::METHOD_NOT_ALLOWED, None) => {
                        assert!(!here.is_empty() && answering.is_none(), "{what}");
                    }
                    (StatusCode::NOT_FOUND, None) => assert!(here.is_empty(), "{what}"),
                    (status, m) => panic!("{what}: {status} {m:?}"),
                }
            }
        }
    }
}

#[test]
fn markdown_has_a_row_per_route() {
    let md = markdown();
    assert_eq!(md.lines().count(), ROUTES.len() + 2);
    assert!(md.contains(
        "| admin | `DELETE /api/stream-ids/{player_id}` | API key: admin | `api` | ✓ | admin-api.md | remove a stream id |"
    ));
    assert!(md.contains("| edge, admin | `GET /api/key/{hash}` | `Bearer` key token | `key`; 401/403 spend `auth_failures` |"));
    assert!(md.contains("`GET/HEAD/OPTIONS /stream/{hash}/{path}`"));
    for line in md.lines() {
        // Every cell separator is a real one: escaped pipes inside cells do not count.
        let cells = line.replace("\\|", "").matches('|').count();
        assert_eq!(cells, 8, "{line}");
    }
}

/// README's "Routes" table: the lines starting with `|` after the section's heading.
fn readme_table(readme: &str) -> Option<(usize, usize)> {
    let section = readme.find("\n## Routes\n")?;
    let mut start = None;
    let mut offset = section + 1;
    for line in readme[section + 1..].split_inclusive('\n') {
        match (start, line.starts_with('|')) {
            (None, true) => start = Some(offset),
            (Some(s), false) => return Some((s, offset)),
            (None, false) if line.starts_with("## ") && offset > section + 1 => return None,
            _ => {}
        }
        offset += line.len();
    }
    start.map(|s| (s, readme.len()))
}

#[test]
fn readme_routes_table_is_rendered_from_the_table() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(file).expect("README.md");
    let Some((start, end)) = readme_table(&readme) else {
        panic!("README.md has no table under \"## Routes\"");
    };
    let expected = markdown();
    if readme[start..end] == expected {
        return;
    }
    if std::env::var_os("SLUICE_BLESS_README").is_some() {
        let updated = format!("{}{expected}{}", &readme[..start], &readme[end..]);
        std::fs::write(file, updated).expect("write README.md");
        return;
    }
    panic!(
        "README.md's \"Routes\" table is not the route table (src/api/routes.rs). Regenerate it \
         with `SLUICE_BLESS_README=1 cargo test --lib api::routes::tests::readme`, or paste:\n\n\
         {expected}"
    );
}

//! The route table (`src/api/routes.rs`) against the real binary over real HTTP: every API
//! route in it reaches its handler on the listeners it names and is the router's own 404 on the
//! others; every route an API key opens refuses a key below the permission its entry names;
//! exactly the audited routes are written to `access_logs`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{admin_key, client, sluice_bin, Sluice};
use serde_json::Value;
use sluice::api::routes::{Auth, Handler, Route, ROUTES};
use sluice::api::Listener;
use sluice::auth::api_keys::Permission;

/// A request path matching `pattern` (the table's own filler).
fn example(pattern: &str) -> String {
    sluice::api::routes::example_path(pattern)
}

fn api_routes() -> impl Iterator<Item = &'static Route> {
    ROUTES
        .iter()
        .filter(|r| matches!(r.handler, Handler::Api(_)))
}

/// The message of an error body, in whichever surface's shape.
fn message(v: &Value) -> Option<&str> {
    v.pointer("/error/message")
        .or_else(|| v.get("message"))
        .or_else(|| v.get("error"))
        .and_then(Value::as_str)
}

async fn send(method: &str, url: &str, key: Option<&str>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client().request(method.clone(), url);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if method == reqwest::Method::POST || method == reqwest::Method::PUT {
        req = req.header("content-type", "application/json").body("{}");
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn create_key(s: &Sluice, perm: &str) -> String {
    let out = Command::new(sluice_bin())
        .args(["keys", "-c"])
        .arg(&s.config_path)
        .args(["create", "--name", perm, "--permissions", perm])
        .output()
        .expect("sluice keys create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

#[tokio::test]
async fn every_table_route_reaches_its_handler_on_its_listeners_only() {
    // A one-node fleet, so the fleet-only edge routes are mounted too.
    let s = Sluice::start_with_env(
        "fleet:\n  peers: [\"{EDGE}\"]\n  self: \"{EDGE}\"\n  secret_env: FLEET_SECRET\n",
        &[("FLEET_SECRET", "route-table-fleet-secret-0123456789")],
    );
    let mut checked = 0;
    for r in api_routes() {
        let path = example(r.path);
        for verb in r.methods {
            for listener in [Listener::Edge, Listener::Admin] {
                let url = match listener {
                    Listener::Edge => s.edge_url(&path),
                    Listener::Admin => s.admin_url(&path),
                };
                let (status, body) = send(verb.as_str(), &url, None).await;
                let what = format!(
                    "{} {path} on {}: {status} {body}",
                    verb.as_str(),
                    listener.as_str()
                );
                let routers_404 = status == 404 && message(&body) == Some("Not found");
                if r.listeners.serves(listener, true) {
                    assert!(!routers_404 && status != 405, "not routed: {what}");
                    checked += 1;
                } else {
                    assert!(
                        routers_404,
                        "routed where the table does not mount it: {what}"
                    );
                }
            }
        }
    }
    assert!(checked >= 25, "{checked} routes reached");
}

#[tokio::test]
async fn key_routes_need_their_permission_and_exactly_audited_routes_are_logged() {
    let s = Sluice::start("");
    let keys = [
        (Permission::Read, create_key(&s, "read")),
        (Permission::Write, create_key(&s, "write")),
        (Permission::Admin, admin_key(&s)),
    ];
    // Routes that are not audited write nothing, whatever they answer (sent first: once the
    // audited requests' rows are in, any row of these would be too).
    let mut unaudited = Vec::new();
    for r in api_routes().filter(|r| !r.audited && r.listeners.serves(Listener::Admin, false)) {
        let path = example(r.path);
        for verb in r.methods {
            send(verb.as_str(), &s.admin_url(&path), Some("not-a-key")).await;
            unaudited.push(path.clone());
        }
    }
    assert!(unaudited.len() >= 12);

    let mut expected_rows = Vec::new();
    for r in api_routes() {
        let Auth::ApiKey(needed) = r.auth else {
            continue;
        };
        let path = example(r.path);
        for verb in r.methods {
            let url = s.admin_url(&path);
            let what = format!("{} {path}", verb.as_str());
            let (status, body) = send(verb.as_str(), &url, None).await;
            assert_eq!(
                (status, message(&body)),
                (401, Some("Missing or invalid Authorization header")),
                "{what} without a key"
            );
            for (held, key) in &keys {
                let (status, body) = send(verb.as_str(), &url, Some(key)).await;
                if held.allows(needed) {
                    // The handler ran: its own answer to an empty body or unknown id.
                    let routers_404 = status == 404 && message(&body) == Some("Not found");
                    assert!(
                        !matches!(status, 401 | 403 | 405) && !routers_404,
                        "{what} with a {} key: {status} {body}",
                        held.as_str()
                    );
                } else {
                    assert_eq!(
                        (status, message(&body)),
                        (403, Some("Insufficient permissions")),
                        "{what} with a {} key",
                        held.as_str()
                    );
                }
            }
            expected_rows.push((path.clone(), verb.as_str().to_string(), 1 + keys.len()));
        }
    }
    assert_eq!(expected_rows.len(), 6, "{expected_rows:?}");
    // Rows are written in batches off the request path: wait for the last expected one.
    let db = rusqlite::Connection::open(s.state_dir().join("state/sluice.db")).expect("db");
    let count = |endpoint: &str, method: Option<&str>| -> usize {
        let n: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM access_logs WHERE endpoint = ?1 AND (?2 IS NULL OR method = ?2)",
                rusqlite::params![endpoint, method],
                |row| row.get(0),
            )
            .expect("count");
        n as usize
    };
    let started = Instant::now();
    while expected_rows.iter().any(|(p, m, n)| count(p, Some(m)) < *n) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "access_logs rows missing: {:?}",
            expected_rows
                .iter()
                .map(|(p, m, n)| (p, m, n, count(p, Some(m))))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (p, m, n) in &expected_rows {
        assert_eq!(count(p, Some(m)), *n, "{m} {p}");
    }
    for path in &unaudited {
        assert_eq!(count(path, None), 0, "{path} is not audited");
    }
}

//! Fleet nodes are trusted by their signature, never by their address. A node under test
//! names `127.0.0.2` as another node of its fleet; this test is that address, once signing
//! its requests as the node would and once not:
//! - rate limits exempt only requests with a valid fleet signature, on the edge; the admin
//!   listener exempts no one;
//! - a connection from a node's address is admitted uncounted until its first request
//!   without a valid signature (then counted under its address, refused over its share), and
//!   at once when it speaks HTTP/2 — on cleartext HTTP/1.1 and on TLS with ALPN `h2`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::{admin_key, pki, Pki, Reply, Sluice, TestOrigin};
use sluice::fleet::auth;

const NODE_IP: &str = "127.0.0.2";
const SECRET: &str = "peer-trust-fleet-secret";

struct Node {
    s: Sluice,
    /// The other node's configured address: this test speaks from its IP.
    other: SocketAddr,
    tls_port: u16,
    _origin: common::RunningOrigin,
    _pki: Pki,
}

fn node() -> Node {
    let origin = TestOrigin::new()
        .route(
            "/movie/seg_1.m4s",
            Reply::ok(common::random_bytes(4096, 1), "video/iso.segment"),
        )
        .start();
    let pki = pki();
    let edge: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let other: SocketAddr = format!("{NODE_IP}:{}", common::free_port_on(NODE_IP))
        .parse()
        .unwrap();
    let tls_port = common::free_port();
    let listen = pki.edge_tls(tls_port);
    let extra = format!(
        "origins:\n  bucket: {}\nfleet:\n  peers: [\"{edge}\", \"{other}\"]\n  self: \"{edge}\"\n  \
         secret_env: FLEET_SECRET\nlimits:\n  max_connections_per_ip: 2\nadmin:\n  rate_limit_api: 5\n\
         rate_limits:\n  verify: 5\n",
        origin.url()
    );
    let s = Sluice::start_mode(
        common::Mode::from_env(),
        tempfile::tempdir().unwrap(),
        &extra,
        &[("FLEET_SECRET", SECRET)],
        common::QUICK_STOP,
        &listen,
        "",
        Some(edge),
    );
    Node {
        s,
        other,
        tls_port,
        _origin: origin,
        _pki: pki,
    }
}

/// A connection to `to` from `ip`.
fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        sock.connect(to).await.unwrap()
    });
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn signature(node: &Node, method: &str, target: &str) -> String {
    auth::sign(
        SECRET.as_bytes(),
        &auth::Signed {
            method,
            path_and_query: target,
            body: b"",
        },
        &auth::Hop {
            sender: node.other,
            receiver: node.s.edge,
            ts: chrono::Utc::now().timestamp(),
            nonce: rand::random(),
        },
    )
    .unwrap()
}

/// One kept-alive request; the status, or `None` if the connection was closed.
fn request(c: &mut impl ReadWrite, target: &str, headers: &str) -> Option<u16> {
    write!(c, "GET {target} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match c.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let len: usize = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).ok()?;
    text.get(9..12)?.parse().ok()
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[test]
fn a_nodes_address_without_its_signature_is_rate_limited_on_both_listeners() {
    let n = node();
    let key = admin_key(&n.s);
    // The admin listener: a node's address is any client (class api: 5/min).
    let mut admin = connect_from(NODE_IP, n.s.admin);
    let statuses: Vec<_> = (0..8)
        .map(|_| {
            request(
                &mut admin,
                "/api/stream-ids",
                &format!("Authorization: Bearer {key}\r\n"),
            )
        })
        .collect();
    assert!(statuses.contains(&Some(429)), "admin: {statuses:?}");
    // The edge without a signature: limited (class verify: 5/min per token).
    let target = "/api/v2/streaming/verify?token=abc";
    let mut edge = connect_from(NODE_IP, n.s.edge);
    let statuses: Vec<_> = (0..8).map(|_| request(&mut edge, target, "")).collect();
    assert!(
        statuses.contains(&Some(429)),
        "edge, unsigned: {statuses:?}"
    );
    // The same route signed by the node: not limited per client.
    let target = "/api/v2/streaming/verify?token=signed";
    let statuses: Vec<_> = (0..8)
        .map(|_| {
            let mut c = connect_from(NODE_IP, n.s.edge);
            request(
                &mut c,
                target,
                &format!("{}: {}\r\n", auth::HEADER, signature(&n, "GET", target)),
            )
        })
        .collect();
    assert!(
        statuses.iter().all(|s| s.is_some() && *s != Some(429)),
        "edge, signed: {statuses:?}"
    );
}

#[test]
fn a_nodes_address_holds_connections_only_while_it_signs() {
    let n = node();
    let target = "/stream/movie/seg_1.m4s";
    // Four signed connections from the node's address, share 2: all served, held open.
    let mut signed: Vec<TcpStream> = (0..4).map(|_| connect_from(NODE_IP, n.s.edge)).collect();
    for c in &mut signed {
        let sig = signature(&n, "GET", target);
        assert_eq!(
            request(c, target, &format!("{}: {sig}\r\n", auth::HEADER)),
            Some(200)
        );
    }
    // Unsigned requests from the same address: counted from their first request — two fit
    // the share, the third is refused and closed.
    let mut unsigned: Vec<TcpStream> = (0..3).map(|_| connect_from(NODE_IP, n.s.edge)).collect();
    let statuses: Vec<_> = unsigned
        .iter_mut()
        .map(|c| request(c, "/health", ""))
        .collect();
    assert_eq!(
        statuses,
        vec![Some(200), Some(200), Some(503)],
        "{}",
        n.s.log()
    );
    // A signed connection whose next request is unsigned loses its exemption: over the
    // share, refused.
    assert_eq!(request(&mut signed[0], "/health", ""), Some(503));
    // The others still carry signed requests.
    let sig = signature(&n, "GET", target);
    assert_eq!(
        request(
            &mut signed[1],
            target,
            &format!("{}: {sig}\r\n", auth::HEADER)
        ),
        Some(200)
    );
}

#[test]
fn the_admin_listener_never_exempts_a_nodes_address() {
    let n = node();
    // Share 2: the third connection is refused at once (503 written, closed).
    let held: Vec<TcpStream> = (0..2).map(|_| connect_from(NODE_IP, n.s.admin)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = connect_from(NODE_IP, n.s.admin);
    let mut answer = String::new();
    let _ = third.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    drop(held);
}

/// A TLS connection with ALPN `h2` from `ip`, handshake done.
fn h2_from(
    ip: &str,
    port: u16,
    ca_der: &[u8],
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der.to_vec()))
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = connect_from(ip, format!("127.0.0.1:{port}").parse().unwrap());
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

#[test]
fn http2_from_a_nodes_address_is_counted_at_once() {
    let n = node();
    // Nodes talk HTTP/1.1: an h2 connection is counted from its handshake. Share 2.
    let mut conns: Vec<_> = (0..3)
        .map(|_| h2_from(NODE_IP, n.tls_port, &n._pki.ca_der))
        .collect();
    let closed: Vec<bool> = conns
        .iter_mut()
        .map(|c| {
            c.sock
                .set_read_timeout(Some(Duration::from_millis(700)))
                .unwrap();
            let mut b = [0u8; 64];
            // An open h2 connection waits for our preface (read times out); a refused one is
            // closed (end of file or an error other than the timeout).
            match c.read(&mut b) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            }
        })
        .collect();
    // Exactly one over the share is refused. Which one depends on the order sluice's tasks
    // finish the three handshakes, which a loaded machine does not keep.
    assert_eq!(
        closed.iter().filter(|c| **c).count(),
        1,
        "{closed:?} {}",
        n.s.log()
    );
    drop(conns);
    // And HTTP/2 requests from the node's address meet the rate limit (verify: 5/min).
    let url = format!(
        "https://localhost:{}/api/v2/streaming/verify?token=h2",
        n.tls_port
    );
    let ca = n._pki.ca.display().to_string();
    let resolve = format!("localhost:{}:127.0.0.1", n.tls_port);
    let mut codes = Vec::new();
    for _ in 0..8 {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
                "--http2",
                "--interface",
                NODE_IP,
                "--cacert",
                &ca,
                "--resolve",
                &resolve,
                &url,
            ])
            .output()
            .unwrap();
        codes.push(String::from_utf8_lossy(&out.stdout).to_string());
    }
    assert!(codes.iter().all(|c| c.ends_with(" 2")), "{codes:?}");
    assert!(codes.iter().any(|c| c.starts_with("429")), "{codes:?}");
}

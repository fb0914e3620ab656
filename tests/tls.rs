//! The edge over TLS (HTTP/2 and HTTP/1.1, ALPN) with a test CA, and the PROXY protocol
//! from an L4 load balancer in `trusted_proxies`, against the real binary: curl `--http2`,
//! a raw PROXY-protocol client (before cleartext and before TLS), and hls.js in headless
//! Chromium over HTTP/2.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{pki, random_bytes, Pki, Reply, Sluice, TestOrigin};

fn tls_listen(p: &Pki, port: u16) -> String {
    p.edge_tls(port)
}

/// sluice with the TLS listener (on a free port) beside the cleartext one.
fn start_tls(p: &Pki, extra: &str, listen_extra: &str) -> (Sluice, u16) {
    let port = common::free_port();
    let s = Sluice::start_with_listen(&format!("{}{listen_extra}", tls_listen(p, port)), extra);
    (s, port)
}

fn curl(args: &[&str]) -> (String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs (scripts/ensure-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (String::from_utf8_lossy(&out.stderr).into(), out.stdout)
}

#[test]
fn the_tls_edge_speaks_http2_and_http11() {
    let p = pki();
    let body = random_bytes(300 * 1024, 11);
    let o = TestOrigin::new()
        .route("/h/v/seg.ts", Reply::ok(body.clone(), "video/mp2t"))
        .start();
    let (s, port) = start_tls(&p, &format!("origins:\n  bucket: {}\n", o.url()), "");
    let url = format!("https://localhost:{port}/stream/h/v/seg.ts");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let ca = p.ca.to_string_lossy().to_string();
    for (flag, want) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                flag,
                "--cacert",
                &ca,
                "--resolve",
                &resolve,
            ])
            .args([
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code} %{size_download}",
            ])
            .arg(&url)
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            line,
            format!("{want} 200 {}", body.len()),
            "{flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // HTTP/2's header list is bounded like an HTTP/1 header (limits.max_header_bytes).
    let big = format!("X-Big: {}", "b".repeat(100 * 1024));
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "--http2",
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
        ])
        .args(["-H", &big, "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(&url)
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    assert_ne!(code, "200", "a 100 KiB header list was served over HTTP/2");
    assert_eq!(
        o.hits("/h/v/seg.ts"),
        1,
        "the oversized request reached the origin"
    );
    // The bytes are the origin's, over HTTP/2.
    let (_, got) = curl(&["--http2", "--cacert", &ca, "--resolve", &resolve, &url]);
    assert_eq!(got, body.to_vec());
    // An untrusted certificate is refused by the client (the CA is what makes it work).
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--resolve", &resolve, &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    // Cleartext still served, and the log says which HTTP version each request used.
    let r = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(s.edge_url("/stream/h/v/seg.ts"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "200");
    let start = std::time::Instant::now();
    while !plain(&s.log()).contains("version=HTTP/2.0") {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{}",
            plain(&s.log())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_certificate_that_cannot_be_used_is_named_at_check() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "listen:\n  edge_tls:\n    address: 127.0.0.1:8443\n    cert: {}\n    key: {}\n",
            dir.path().join("missing.pem").display(),
            p.key.display()
        ),
    )
    .unwrap();
    let out = Command::new(common::sluice_bin())
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("listen.edge_tls.cert") && err.contains("missing.pem"),
        "{err}"
    );
    // A key that is not the certificate's.
    let other = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
    let wrong_key = dir.path().join("wrong.key");
    std::fs::write(&wrong_key, other.key_pair.serialize_pem()).unwrap();
    std::fs::write(
        &config,
        format!(
            "listen:\n  edge_tls:\n    address: 127.0.0.1:8443\n    cert: {}\n    key: {}\n",
            p.cert.display(),
            wrong_key.display()
        ),
    )
    .unwrap();
    let out = Command::new(common::sluice_bin())
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen.edge_tls"));
}

/// A log without its terminal colours.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn proxy_v1(client: &str) -> String {
    format!("PROXY TCP4 {client} 127.0.0.1 40000 443\r\n")
}

fn proxy_v2(client: [u8; 4]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&40000u16.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

/// Status of one request on `sock` (the answer read to its end by Content-Length).
fn request(sock: &mut (impl Read + Write), path: &str) -> u16 {
    write!(sock, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if sock.read(&mut b).unwrap_or(0) == 0 {
            return 0;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let len: usize = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body).unwrap();
    head[9..12].parse().unwrap()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[test]
fn the_proxy_protocol_declares_the_client_for_trusted_peers_only() {
    let p = pki();
    let o = TestOrigin::new()
        .route(
            "/h/v/seg.ts",
            Reply::ok(random_bytes(1024, 12), "video/mp2t"),
        )
        .start();
    let (s, tls_port) = start_tls(
        &p,
        &format!(
            "origins:\n  bucket: {}\ntrusted_proxies: [127.0.0.1]\nlimits:\n  max_connections_per_ip: 1\n",
            o.url()
        ),
        "  proxy_protocol: true\n",
    );
    // v1 then a request: the access log names the declared client.
    let mut c = connect(s.edge);
    c.write_all(proxy_v1("203.0.113.50").as_bytes()).unwrap();
    assert_eq!(request(&mut c, "/stream/h/v/seg.ts"), 200);
    // v2 likewise.
    let mut c2 = connect(s.edge);
    c2.write_all(&proxy_v2([198, 51, 100, 9])).unwrap();
    assert_eq!(request(&mut c2, "/stream/h/v/seg.ts"), 200);
    // The balancer's own health check, without a header, is served as itself.
    let mut hc = connect(s.edge);
    assert_eq!(request(&mut hc, "/health"), 200);
    // Each declared client holds its own share: 203.0.113.50 already holds its one
    // connection (c is still open), so a second one declaring it is refused.
    let mut c3 = connect(s.edge);
    c3.write_all(proxy_v1("203.0.113.50").as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = c3.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");

    // PROXY before TLS, on the TLS listener.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(p.ca_der.clone()))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut tcp = connect(format!("127.0.0.1:{tls_port}").parse().unwrap());
    tcp.write_all(proxy_v1("192.0.2.77").as_bytes()).unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    assert_eq!(request(&mut tls, "/stream/h/v/seg.ts"), 200);

    // The access line is written after the answer went out: wait for it.
    for client in ["203.0.113.50", "198.51.100.9", "192.0.2.77"] {
        let logged = || {
            plain(&s.log())
                .lines()
                .any(|l| l.contains("sluice::access") && l.contains(&format!("client={client}")))
        };
        let start = std::time::Instant::now();
        while !logged() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{client} not in the access log:\n{}",
                plain(&s.log())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop((c, c2, hc));

    // Without 127.0.0.1 in trusted_proxies the header is not believed: it is not HTTP.
    let s2 = Sluice::start_with_listen(
        "  proxy_protocol: true\n",
        &format!("origins:\n  bucket: {}\n", o.url()),
    );
    let mut c = connect(s2.edge);
    c.write_all(proxy_v1("203.0.113.50").as_bytes()).unwrap();
    assert_eq!(request(&mut c, "/stream/h/v/seg.ts"), 400);
    assert!(!plain(&s2.log()).contains("client=203.0.113.50"));
}

#[test]
fn hls_js_plays_over_tls_and_http2() {
    let p = pki();
    let (_s, port) = start_tls(&p, "origins:\n  bucket: dir:./demo/media\n", "");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/player/run.js");
    let out = Command::new("node")
        .arg(script)
        .arg(format!("https://localhost:{port}/stream/demo/master.m3u8"))
        .arg("6")
        .env("SPKI_PINS", &p.spki)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "player failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert!(r["frags"].as_u64().unwrap_or(0) >= 4, "{r}");
    assert!(r["currentTime"].as_f64().unwrap_or(0.0) > 2.0, "{r}");
    assert!(
        r["protocols"]
            .as_array()
            .is_some_and(|p| p.iter().any(|v| v == "h2")),
        "media not fetched over HTTP/2: {r}"
    );
}

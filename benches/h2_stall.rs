//! HTTP/2 clients that open streams and never read them, for `benches/load/fill_budget.sh`'s
//! HTTP/2 row: what sluice holds per stalled stream.
//!
//! ```text
//! cargo bench --bench h2_stall -- pki DIR
//!     writes DIR/cert.pem and DIR/key.pem (an edge certificate for `localhost`, 127.0.0.1)
//!     and DIR/ca.der (the CA that signed it)
//! cargo bench --bench h2_stall -- load ADDR DIR CONNS STREAMS PATH HOLD_SECS
//!     CONNS HTTP/2 connections to the TLS edge at ADDR, each opening STREAMS streams
//!     `GET PATH` (`{i}` in PATH: the stream's index on its connection) with a zero
//!     flow-control window; waits for their response headers, holds everything HOLD_SECS
//!     without reading a byte of body, and prints how the streams were answered
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

type Fail = Box<dyn std::error::Error + Send + Sync>;

fn pki(dir: &Path) -> Result<(), Fail> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()])?;
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse()?));
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key)?;
    std::fs::write(dir.join("cert.pem"), leaf_cert.pem())?;
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem())?;
    std::fs::write(dir.join("ca.der"), ca_cert.der().as_ref())?;
    Ok(())
}

async fn connect(addr: &str, ca: &[u8]) -> Result<h2::client::SendRequest<Bytes>, Fail> {
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .max_concurrent_reset_streams(0)
        .handshake::<_, Bytes>(tls)
        .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

async fn load(
    addr: String,
    dir: &Path,
    conns: usize,
    streams: usize,
    path: String,
    hold: Duration,
) -> Result<(), Fail> {
    let ca = std::fs::read(dir.join("ca.der"))?;
    let mut answers: Vec<tokio::task::JoinHandle<(String, Option<h2::RecvStream>)>> = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..conns {
        let send = connect(&addr, &ca).await?;
        for i in 0..streams {
            let url = format!("https://localhost{}", path.replace("{i}", &i.to_string()));
            let send = send.clone();
            answers.push(tokio::spawn(async move {
                let Ok(mut send) = send.ready().await else {
                    return ("connection closed".to_string(), None);
                };
                let req = match http::Request::get(&url).body(()) {
                    Ok(r) => r,
                    Err(e) => return (format!("bad request: {e}"), None),
                };
                let Ok((resp, _)) = send.send_request(req, true) else {
                    return ("not sent".to_string(), None);
                };
                match tokio::time::timeout(Duration::from_secs(60), resp).await {
                    Ok(Ok(r)) => (r.status().as_u16().to_string(), Some(r.into_body())),
                    Ok(Err(e)) => (
                        format!(
                            "reset: {}",
                            e.reason().map_or("-".into(), |r| format!("{r:?}"))
                        ),
                        None,
                    ),
                    Err(_) => ("no header in 60 s".to_string(), None),
                }
            }));
        }
        senders.push(send);
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut held = Vec::new();
    for a in answers {
        let (what, body) = a.await?;
        *counts.entry(what).or_default() += 1;
        held.extend(body);
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!(
        "streams answered ({}): {}",
        conns * streams,
        summary.join(", ")
    );
    tokio::time::sleep(hold).await;
    drop(held);
    drop(senders);
    Ok(())
}

fn main() -> Result<(), Fail> {
    // `cargo bench` passes `--bench`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rt = tokio::runtime::Runtime::new()?;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["pki", dir] => pki(Path::new(dir)),
        ["load", addr, dir, conns, streams, path, hold] => rt.block_on(load(
            addr.to_string(),
            Path::new(dir),
            conns.parse()?,
            streams.parse()?,
            path.to_string(),
            Duration::from_secs(hold.parse()?),
        )),
        // Run by `cargo bench` without arguments (all benches): nothing to measure alone.
        [] => Ok(()),
        _ => Err("usage: h2_stall pki DIR | load ADDR DIR CONNS STREAMS PATH HOLD_SECS".into()),
    }
}

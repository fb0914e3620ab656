//! The edge's TLS: certificate and key from PEM files, ALPN `h2` then `http/1.1`, on the
//! rustls Pingora is built with. Loaded at start (a graceful upgrade starts a new process,
//! which reads the files again: renewed certificates take effect on `systemctl reload`).
//!
//! A leaf below both of its users: the config validator loads the pair to refuse a bad
//! `listen.edge_tls` before serving, and the edge's connections ([`crate::conn`]) terminate
//! TLS with it.

use std::path::Path;
use std::sync::Arc;

use pingora_core::listeners::tls::Acceptor;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key cannot be used (the config validator names the key).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} holds no PEM certificate")]
    NoCertificate(String),
    #[error("{0} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey(String),
    #[error("certificate and key do not go together: {0}")]
    Mismatch(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read(path.display().to_string(), e))
}

/// The certificate chain in `path` (PEM).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.display().to_string()));
    }
    Ok(certs)
}

/// The private key in `path` (PEM).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::NoKey(path.display().to_string()))
}

/// A server configuration for the edge: TLS 1.2 and 1.3, ALPN `h2`, `http/1.1`.
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let certs = certificates(cert)?;
    let key = private_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Pingora's acceptor for the edge's TLS listener.
pub fn acceptor(cert: &Path, key: &Path) -> Result<Acceptor, TlsError> {
    Ok(Acceptor::from_server_config(Arc::new(server_config(
        cert, key,
    )?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            server_config(&missing, &empty),
            Err(TlsError::Read(p, _)) if p.contains("missing.pem")
        ));
        assert!(matches!(
            server_config(&empty, &empty),
            Err(TlsError::NoCertificate(p)) if p.contains("empty.pem")
        ));
    }

    #[test]
    fn a_generated_pair_gives_h2_and_http11() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        let c = server_config(&cert, &key).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        // A key of another certificate does not go with it.
        let other = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        std::fs::write(&key, other.key_pair.serialize_pem()).unwrap();
        assert!(matches!(
            server_config(&cert, &key),
            Err(TlsError::Mismatch(_))
        ));
    }
}

//! The PROXY protocol (v1 text, v2 binary) from an L4 load balancer in `trusted_proxies`:
//! the client's address survives the hop and becomes the connection's peer address, which
//! every decision then reads ([`crate::client`]).
//!
//! Only a peer in `trusted_proxies` may declare an address; from anyone else the bytes are
//! left alone (to HTTP they are a malformed request, answered 400). From a trusted peer the
//! header is optional (a health check may connect without one): when the first bytes are
//! not a PROXY signature they are put back unread. `LOCAL` (v2) and `UNKNOWN` (v1) keep the
//! socket's own peer address. Parsing is the `ppp` crate's; this module only reads exactly
//! the header's bytes, never more.

use std::net::SocketAddr;

use pingora_core::protocols::l4::stream::Stream as L4Stream;
use tokio::io::AsyncReadExt;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 header is at most 107 bytes (spec §2.1).
const V1_MAX: usize = 107;
/// Header plus addresses and TLVs: v2 allows 16 + 65535; a load balancer sends far less.
const V2_MAX: usize = 16 + 4096;

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("PROXY header: {0}")]
    Malformed(String),
    #[error("PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// What a complete header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// The client's address.
    Client(SocketAddr),
    /// `LOCAL` / `UNKNOWN`: the connection is the balancer's own (a health check).
    Local,
}

/// Parse one complete header (pure).
pub fn parse(header: &[u8]) -> Result<Declared, ProxyHeaderError> {
    if header.starts_with(V2_SIGNATURE) {
        let h = ppp::v2::Header::try_from(header)
            .map_err(|e| ProxyHeaderError::Malformed(format!("{e:?}")))?;
        if h.command == ppp::v2::Command::Local {
            return Ok(Declared::Local);
        }
        return match h.addresses {
            ppp::v2::Addresses::IPv4(a) => Ok(Declared::Client(SocketAddr::from((
                a.source_address,
                a.source_port,
            )))),
            ppp::v2::Addresses::IPv6(a) => Ok(Declared::Client(SocketAddr::from((
                a.source_address,
                a.source_port,
            )))),
            _ => Ok(Declared::Local),
        };
    }
    let text = std::str::from_utf8(header)
        .map_err(|_| ProxyHeaderError::Malformed("v1 header is not text".into()))?;
    let h = ppp::v1::Header::try_from(text)
        .map_err(|e| ProxyHeaderError::Malformed(format!("{e:?}")))?;
    Ok(match h.addresses {
        ppp::v1::Addresses::Tcp4(a) => {
            Declared::Client(SocketAddr::from((a.source_address, a.source_port)))
        }
        ppp::v1::Addresses::Tcp6(a) => {
            Declared::Client(SocketAddr::from((a.source_address, a.source_port)))
        }
        ppp::v1::Addresses::Unknown => Declared::Local,
    })
}

/// Read a PROXY header if `stream` starts with one (`None`: it does not; the bytes looked
/// at are put back).
pub async fn read(stream: &mut L4Stream) -> Result<Option<Declared>, ProxyHeaderError> {
    let mut buf = vec![0u8; V1_PREFIX.len()];
    stream.read_exact(&mut buf).await?;
    if buf == V1_PREFIX {
        // Up to and including CRLF, one byte at a time (the stream is buffered): nothing
        // after the header is consumed.
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= V1_MAX {
                return Err(ProxyHeaderError::Malformed("v1 header too long".into()));
            }
            stream.read_exact(&mut byte).await?;
            buf.push(byte[0]);
        }
        return parse(&buf).map(Some);
    }
    if buf[..] == V2_SIGNATURE[..buf.len()] {
        buf.resize(16, 0);
        stream.read_exact(&mut buf[V1_PREFIX.len()..]).await?;
        if &buf[..12] != V2_SIGNATURE {
            return Err(ProxyHeaderError::Malformed("bad v2 signature".into()));
        }
        let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
        if 16 + len > V2_MAX {
            return Err(ProxyHeaderError::Malformed("v2 header too long".into()));
        }
        buf.resize(16 + len, 0);
        stream.read_exact(&mut buf[16..]).await?;
        return parse(&buf).map(Some);
    }
    stream.rewind(&buf);
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_tcp4_and_tcp6_declare_the_client() {
        assert_eq!(
            parse(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n").unwrap(),
            Declared::Client("203.0.113.7:51000".parse().unwrap())
        );
        assert_eq!(
            parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n").unwrap(),
            Declared::Client("[2001:db8::7]:51000".parse().unwrap())
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), Declared::Local);
    }

    #[test]
    fn v2_proxy_and_local() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12]);
        h.extend_from_slice(&[198, 51, 100, 9, 10, 0, 0, 1]);
        h.extend_from_slice(&40000u16.to_be_bytes());
        h.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(
            parse(&h).unwrap(),
            Declared::Client("198.51.100.9:40000".parse().unwrap())
        );
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local).unwrap(), Declared::Local);
    }

    #[test]
    fn garbage_is_refused_not_guessed() {
        assert!(parse(b"PROXY TCP4 nonsense\r\n").is_err());
        assert!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n").is_err());
    }
}

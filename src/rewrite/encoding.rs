//! Content codings of upstream playlists. sluice asks origins for identity bodies, but many
//! compress anyway; a playlist is rewritten from its decoded text, always. Decoding is
//! bounded: a compression bomb stops at the rewrite cap like any other oversized playlist.

use std::borrow::Cow;
use std::io::Read;

use super::{RewriteError, MAX_PLAYLIST_BYTES};

/// A `Content-Encoding` sluice can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Deflate,
    Brotli,
}

impl Coding {
    /// The coding named by a `Content-Encoding` value (`None` for one sluice cannot decode;
    /// several codings in sequence are not supported).
    pub fn parse(value: Option<&str>) -> Option<Coding> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Some(Coding::Identity),
            Some("gzip") | Some("x-gzip") => Some(Coding::Gzip),
            Some("deflate") => Some(Coding::Deflate),
            Some("br") => Some(Coding::Brotli),
            _ => None,
        }
    }
}

/// Decode `body`, refusing more than [`MAX_PLAYLIST_BYTES`] of output.
///
/// # Errors
/// [`RewriteError::TooLarge`] past the cap, [`RewriteError::Malformed`] for a corrupt stream.
pub fn decode(coding: Coding, body: &[u8]) -> Result<Vec<u8>, RewriteError> {
    let reader: Box<dyn Read + '_> = match coding {
        Coding::Identity => {
            super::check_size(body.len())?;
            return Ok(body.to_vec());
        }
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(body)),
        // HTTP's "deflate" is zlib-wrapped; some servers send raw deflate.
        Coding::Deflate if body.first().is_some_and(|b| b & 0x0f == 8) => {
            Box::new(flate2::read::ZlibDecoder::new(body))
        }
        Coding::Deflate => Box::new(flate2::read::DeflateDecoder::new(body)),
        Coding::Brotli => Box::new(brotli::Decompressor::new(body, 4096)),
    };
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(MAX_PLAYLIST_BYTES));
    reader
        .take(MAX_PLAYLIST_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| RewriteError::Malformed(format!("cannot decode {coding:?} body: {e}")))?;
    super::check_size(out.len())?;
    Ok(out)
}

/// Decode `body` as the `Content-Encoding` in `headers` says: the one reading of a fetched
/// or stored playlist's coding (rewrite, the cache's liveness judge, LL-HLS directives). An
/// identity body is borrowed, not copied.
///
/// # Errors
/// [`RewriteError::Malformed`] for a coding sluice cannot undo or a corrupt stream,
/// [`RewriteError::TooLarge`] past the cap.
pub fn decode_body<'a>(
    headers: &http::HeaderMap,
    body: &'a [u8],
) -> Result<Cow<'a, [u8]>, RewriteError> {
    let value = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    match Coding::parse(value) {
        Some(Coding::Identity) => {
            super::check_size(body.len())?;
            Ok(Cow::Borrowed(body))
        }
        Some(c) => decode(c, body).map(Cow::Owned),
        None => Err(RewriteError::Malformed(
            "unsupported content encoding".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const TEXT: &[u8] = b"#EXTM3U\n#EXTINF:2,\nseg.ts\n";

    #[test]
    fn round_trips() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(TEXT).unwrap();
        assert_eq!(decode(Coding::Gzip, &gz.finish().unwrap()).unwrap(), TEXT);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(TEXT).unwrap();
        assert_eq!(decode(Coding::Deflate, &z.finish().unwrap()).unwrap(), TEXT);
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(TEXT).unwrap();
        assert_eq!(
            decode(Coding::Deflate, &raw.finish().unwrap()).unwrap(),
            TEXT
        );
        let mut br = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
            w.write_all(TEXT).unwrap();
        }
        assert_eq!(decode(Coding::Brotli, &br).unwrap(), TEXT);
        assert_eq!(decode(Coding::Identity, TEXT).unwrap(), TEXT);
    }

    #[test]
    fn a_body_is_decoded_as_its_header_says() {
        let mut h = http::HeaderMap::new();
        assert!(matches!(decode_body(&h, TEXT), Ok(Cow::Borrowed(b)) if b == TEXT));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(TEXT).unwrap();
        h.insert(http::header::CONTENT_ENCODING, "GZIP".parse().unwrap());
        assert_eq!(&*decode_body(&h, &gz.finish().unwrap()).unwrap(), TEXT);
        h.insert(http::header::CONTENT_ENCODING, "gzip, br".parse().unwrap());
        assert!(matches!(
            decode_body(&h, TEXT),
            Err(RewriteError::Malformed(_))
        ));
        h.remove(http::header::CONTENT_ENCODING);
        let big = vec![b'#'; MAX_PLAYLIST_BYTES + 1];
        assert!(matches!(
            decode_body(&h, &big),
            Err(RewriteError::TooLarge(_))
        ));
    }

    #[test]
    fn bombs_and_garbage_are_refused() {
        let zeros = vec![0u8; MAX_PLAYLIST_BYTES + 10];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&zeros).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 100_000);
        assert!(matches!(
            decode(Coding::Gzip, &bomb),
            Err(RewriteError::TooLarge(_))
        ));
        assert!(matches!(
            decode(Coding::Gzip, b"not gzip at all"),
            Err(RewriteError::Malformed(_))
        ));
        assert_eq!(Coding::parse(Some("GZIP")), Some(Coding::Gzip));
        assert_eq!(Coding::parse(Some("gzip, br")), None);
        assert_eq!(Coding::parse(None), Some(Coding::Identity));
    }
}

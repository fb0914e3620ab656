//! The edge's one writer for answers sluice makes itself: API answers, refusals, preflights
//! and proxy failures all leave through [`write`], which sets `Content-Length`, keeps the
//! connection reusable, and for `HEAD` sends the header of the `GET` answer without its body.

use bytes::Bytes;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// Write a complete local answer. Returns the body bytes sent.
pub async fn write(
    session: &mut Session,
    mut head: ResponseHeader,
    body: Bytes,
    head_only: bool,
) -> Result<usize> {
    head.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    echo_request_id(session, &mut head)?;
    let no_body = head_only || body.is_empty();
    session
        .write_response_header(Box::new(head), no_body)
        .await?;
    if no_body {
        return Ok(0);
    }
    let n = body.len();
    session.write_response_body(Some(body), true).await?;
    Ok(n)
}

/// The request's id ([`crate::request_id`], set on the request header at its start) on
/// an answer.
pub fn echo_request_id(session: &Session, head: &mut ResponseHeader) -> Result<()> {
    if let Some(id) = session.req_header().headers.get(crate::request_id::HEADER) {
        head.insert_header(crate::request_id::HEADER, id.clone())?;
    }
    Ok(())
}

/// A JSON answer with `status` on a media path, with what players are told of any answer
/// made here (`edge/headers.rs`: `no-store`, the CORS set).
pub async fn json(session: &mut Session, status: u16, body: Bytes) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(8))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    super::headers::told(super::headers::Answer::Local, status).write(&mut resp)?;
    if status == 405 {
        resp.insert_header(http::header::ALLOW, "GET, HEAD, OPTIONS")?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    write(session, resp, body, head_only).await.map(|_| ())
}

/// CORS preflight for media paths: any origin may fetch segments and playlists.
pub async fn preflight(session: &mut Session) -> Result<()> {
    let requested = session
        .req_header()
        .headers
        .get("access-control-request-headers")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut resp = ResponseHeader::build(204, Some(6))?;
    let answer = super::headers::Answer::Preflight {
        requested: requested.as_deref(),
    };
    super::headers::told(answer, 204).write(&mut resp)?;
    write(session, resp, Bytes::new(), true).await.map(|_| ())
}

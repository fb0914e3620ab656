//! The cache fleet in the edge's phases ([`crate::fleet`] has the design). Each function is
//! the fleet's part of one phase:
//!
//! | phase | here |
//! |---|---|
//! | `request_filter` (`/stream`) | [`arrival`]: a signed request from another node skips the gate and names the bucket directory itself; a bad signature is refused `403` |
//! | `upstream_peer` | [`owner_peer`]: on a miss, the object's owner when that is another node (never for a request that came from a node) |
//! | `upstream_request_filter` | [`to_owner`]: the owner is asked for `/stream/{dir}/{rest}`, signed |
//! | `upstream_response_filter` | [`owner_answered`]: from here on a failure aborts the response; the owner's `Age` back-dates our copy |
//! | `fail_to_connect`, `error_while_proxy` | [`owner_failed`]: before the owner's header, fall back to the origin; after it, abort |
//! | `response_cache_filter` | [`backdate`] |
//! | `response_filter` | [`to_peer`]: a node gets the object as the origin sent it (no player-facing rewrites), with its `Age` |
//!
//! A player cannot pass as a node: the `x-sluice-fleet` header is checked on every `/stream`
//! request that carries it (HMAC over method, path, time and sender; [`crate::fleet::auth`]),
//! and it never reaches an origin (the upstream header allow-list drops it; only a request
//! to an owner gets one, signed by this node).

use std::net::SocketAddr;
use std::time::Duration;

use pingora_cache::{CacheMeta, CachePhase, RespCacheable};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result, RetryType};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use super::{Edge, MediaTarget, RequestCtx};
use crate::fleet::auth::{self, AuthError};
use crate::fleet::{Owner, OWNER_FETCHES, PEER_REQUESTS};

/// Marks an owner's refusal of a node's signature (so the asking node falls back to the
/// origin instead of passing a `403` on to its player).
pub const REFUSED_HEADER: &str = "x-sluice-fleet-refused";

/// A request's part in the fleet.
#[derive(Debug, Default)]
pub struct Hop {
    /// The request's fleet signature, checked at its start.
    pub signature: Signature,
    /// The node this request came from (signature checked): served here, never forwarded.
    pub from_peer: Option<SocketAddr>,
    /// The owner this attempt asks, and the path it is asked for.
    pub owner: Option<(SocketAddr, String)>,
    /// The owner's response header arrived: a failure now aborts the response.
    pub owner_answered: bool,
    /// Gave up on the owner: this request goes to the origin.
    pub fallback: bool,
    /// How old the owner's copy was (its `Age`).
    pub age: Option<Duration>,
}

/// What a request's `x-sluice-fleet` header says: checked once, at the request's start
/// ([`signature`]), and read by every decision that trusts a node — its connection's share
/// ([`crate::conn::admission`]), the rate limits ([`crate::api::limits`]), the gate
/// ([`arrival`]) and the fleet's own routes ([`crate::api::fleet`]). A node is trusted by
/// this, never by its address; and by this only from its address.
#[derive(Debug, Default, Clone)]
pub enum Signature {
    /// No header (or no `fleet:`, where the header means nothing).
    #[default]
    Absent,
    /// Signed by this node of the fleet, over the method, the target and an empty body, for
    /// this node, from the node's address, first use.
    Valid(SocketAddr),
    /// A request that may carry a body (not `GET`/`HEAD`: a purge): its signature covers
    /// the body, so its handler checks it once the body is read. Nothing trusts it before.
    OverBody,
    Invalid(AuthError),
}

impl Signature {
    pub fn is_valid(&self) -> bool {
        matches!(self, Signature::Valid(_))
    }

    /// The node that signed, when valid.
    pub fn node(&self) -> Option<SocketAddr> {
        match self {
            Signature::Valid(n) => Some(*n),
            _ => None,
        }
    }
}

/// `early_request_filter`: check a request's fleet header — once: a signature is accepted
/// once ([`crate::fleet::auth::Replays`]).
pub(super) fn signature(edge: &Edge, session: &Session) -> Signature {
    let req = session.req_header();
    let (Some(fleet), Some(header)) = (&edge.state.fleet, req.headers.get(auth::HEADER)) else {
        return Signature::Absent;
    };
    if req.method != http::Method::GET && req.method != http::Method::HEAD {
        return Signature::OverBody;
    }
    // The connection's own peer: a forwarded address never vouches for a node.
    let peer = session
        .as_downstream()
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| crate::client::canonical_ip(a.ip()));
    let path_and_query = req.uri.path_and_query().map_or("/", |p| p.as_str());
    match header
        .to_str()
        .map_err(|_| AuthError::Malformed)
        .and_then(|h| fleet.verify(h, req.method.as_str(), path_and_query, b"", peer))
    {
        Ok(peer) => Signature::Valid(peer),
        Err(e) => Signature::Invalid(e),
    }
}

/// Who sent a `/stream` request.
pub(super) enum Arrival {
    Player,
    Peer(SocketAddr),
    Refused,
}

/// `request_filter`: a `/stream` request carrying `x-sluice-fleet` is another node's, or
/// refused. Without `fleet:` the header means nothing (and never goes upstream).
pub(super) fn arrival(signature: &Signature, session: &Session) -> Arrival {
    match signature {
        Signature::Absent => Arrival::Player,
        Signature::Valid(peer) => {
            PEER_REQUESTS.with_label_values(&["served"]).inc();
            Arrival::Peer(*peer)
        }
        Signature::Invalid(_) | Signature::OverBody => {
            let reason = match signature {
                Signature::Invalid(e) => e.as_str(),
                _ => "not_get",
            };
            PEER_REQUESTS.with_label_values(&["refused"]).inc();
            crate::metrics::refused(crate::metrics::GateSurface::Fleet, "fleet_signature");
            let from = session
                .as_downstream()
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.to_string())
                .unwrap_or_default();
            tracing::warn!(reason, %from, "fleet request refused");
            Arrival::Refused
        }
    }
}

/// The answer to a refused fleet header: `403` in the media shape, marked for a node.
pub(super) async fn refuse(session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
    ctx.local_status = Some(403);
    let mut head = ResponseHeader::build(403, Some(8))?;
    head.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    super::headers::told(super::headers::Answer::Local, 403).write(&mut head)?;
    // Say so when the sender is not in this node's `fleet.peers` (lists differ during a
    // rolling change; the asker counts it apart from a refused signature). Nothing else
    // about why is told.
    let marker = match &ctx.fleet.signature {
        Signature::Invalid(AuthError::UnknownSender) => AuthError::UnknownSender.as_str(),
        _ => "1",
    };
    head.insert_header(REFUSED_HEADER, marker)?;
    let head_only = session.req_header().method == http::Method::HEAD;
    super::respond::write(
        session,
        head,
        super::json_error_body("Forbidden"),
        head_only,
    )
    .await?;
    Ok(())
}

/// `upstream_peer` on a `/stream` miss: the owner's edge listener when the object's owner is
/// another node that has not failed lately; `None` for the origin (this node owns it, the
/// request came from a node, the owner failed for this request or lately).
pub(super) fn owner_peer(
    edge: &Edge,
    target: &MediaTarget,
    hop: &mut Hop,
) -> Option<Box<HttpPeer>> {
    let fleet = edge.state.fleet.as_ref()?;
    hop.owner = None;
    if hop.from_peer.is_some() || hop.fallback {
        return None;
    }
    let owner = match fleet.owner(&target.cache_primary) {
        Owner::This => return None,
        Owner::Down(_) => {
            OWNER_FETCHES.with_label_values(&["skipped_down"]).inc();
            hop.fallback = true;
            return None;
        }
        Owner::Peer(p) => p,
    };
    // The owner resolves nothing: it is asked for the bucket directory this node resolved
    // (and gated), so both fetch — and key — the same object.
    let path = edge.upstream.stream_path_of(&target.upstream_path)?;
    let parses = path
        .split('?')
        .next()
        .and_then(|p| p.strip_prefix("/stream/"))
        .is_some_and(|rest| crate::media::path::parse_stream_path(rest, &edge.extensions).is_ok());
    if !parses {
        return None;
    }
    let read_timeout = if target.blocking {
        // The owner holds a blocking playlist reload until the part exists.
        edge.state.config.cache.blocking_reload_timeout
    } else {
        fleet.config.owner_timeout
    };
    hop.owner = Some((owner, path));
    Some(fleet.peer(owner, read_timeout))
}

/// `upstream_request_filter`, after the origin's request is built: for an owner, the
/// `/stream` path instead of the bucket's, and this node's signature.
pub(super) fn to_owner(edge: &Edge, req: &mut RequestHeader, ctx: &RequestCtx) -> Result<()> {
    let (Some(fleet), Some((owner, path))) = (&edge.state.fleet, &ctx.fleet.owner) else {
        return Ok(());
    };
    let uri: http::Uri = path
        .parse()
        .map_err(|e| Error::because(ErrorType::InternalError, "bad fleet path", e))?;
    req.set_uri(uri);
    req.insert_header(http::header::HOST, owner.to_string())?;
    let signature = fleet
        .sign(req.method.as_str(), path, b"", *owner)
        .map_err(|e| Error::because(ErrorType::InternalError, "signing a fleet request", e))?;
    req.insert_header(auth::HEADER, signature)?;
    Ok(())
}

/// `upstream_response_filter`, first: the owner answered. An owner that refused our
/// signature (secrets or clocks differ) is an error here, before anything is stored or sent,
/// so the request falls back to the origin.
pub(super) fn owner_answered(resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
    if ctx.fleet.owner.is_none() {
        return Ok(());
    }
    if let Some(refused) = resp.headers.get(REFUSED_HEADER) {
        if refused.as_bytes() == AuthError::UnknownSender.as_str().as_bytes() {
            return Error::e_explain(
                ErrorType::HTTPStatus(421),
                "the owner node does not list this node in its fleet.peers",
            );
        }
        return Error::e_explain(
            ErrorType::HTTPStatus(403),
            "the owner node refused this node's fleet signature",
        );
    }
    // The owner's own `503` for being over its connection or request share (not an origin's
    // relayed one): an overloaded owner is skipped for a while and the object fetched from
    // the origin, as for a hung one. Before, its peers' players got `503` for every object
    // it owns: one flooded node was an outage of its share of the fleet.
    if resp.status == http::StatusCode::SERVICE_UNAVAILABLE
        && resp.headers.contains_key(crate::conn::BUSY_HEADER)
    {
        return Error::e_explain(
            ErrorType::HTTPStatus(503),
            "the owner node is over its connection share",
        );
    }
    ctx.fleet.owner_answered = true;
    OWNER_FETCHES.with_label_values(&["answered"]).inc();
    ctx.fleet.age = resp
        .headers
        .get(http::header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // Ours to decide for our players.
    resp.remove_header(&http::header::AGE);
    resp.remove_header("x-cache-status");
    Ok(())
}

/// `fail_to_connect` and `error_while_proxy` of an attempt at the owner: before its header,
/// retry against the origin (and skip the owner for a while if it did not answer); after it,
/// the response is aborted (its partial body is never stored: the storage drops a fill that
/// does not finish). `reused`: the attempt was on a pooled connection.
pub(super) fn owner_failed(
    edge: &Edge,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
    reused: bool,
) -> Box<Error> {
    let Some((owner, _)) = ctx.fleet.owner.take() else {
        return e;
    };
    if ctx.fleet.owner_answered {
        OWNER_FETCHES.with_label_values(&["aborted"]).inc();
        e.set_retry(false);
        return e;
    }
    if matches!(e.esource(), ErrorSource::Downstream) {
        // The player went away: nothing to retry for, and nothing wrong with the owner.
        e.set_retry(false);
        return e;
    }
    if reused && matches!(e.retry, RetryType::ReusedOnly) {
        // A pooled connection the owner had closed: ask it again on a new one.
        e.set_retry(true);
        return e;
    }
    let (result, down) = match e.etype() {
        ErrorType::ConnectTimedout
        | ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::SocketError
        | ErrorType::BindError => ("connect_failed", true),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => ("timed_out", true),
        ErrorType::HTTPStatus(403) => ("refused", false),
        // Peer lists differ: a rolling change of `fleet.peers` is under way.
        ErrorType::HTTPStatus(421) => ("not_a_peer", false),
        ErrorType::HTTPStatus(503) => ("busy", true),
        // A pooled connection the owner had closed, a malformed answer: this request only.
        _ => ("failed", false),
    };
    OWNER_FETCHES.with_label_values(&[result]).inc();
    if down {
        if let Some(fleet) = &edge.state.fleet {
            fleet.mark_down(owner);
        }
    }
    tracing::info!(%owner, result, error = %e, "fleet owner failed: fetching from the origin");
    ctx.fleet.fallback = true;
    e.set_retry(true);
    e
}

/// `response_cache_filter`: a copy from the owner is as old as the owner's was, so it
/// expires when the owner's does (a live playlist is not kept fresh twice as long).
pub(super) fn backdate(cacheable: RespCacheable, age: Option<Duration>) -> RespCacheable {
    let (RespCacheable::Cacheable(meta), Some(age)) = (&cacheable, age) else {
        return cacheable;
    };
    if age.is_zero() {
        return cacheable;
    }
    let created = meta.created().checked_sub(age).unwrap_or(meta.created());
    let fresh_until = meta.fresh_until().checked_sub(age).unwrap_or(created);
    RespCacheable::Cacheable(CacheMeta::new(
        fresh_until,
        created,
        meta.stale_while_revalidate_sec(),
        meta.stale_if_error_sec(),
        meta.response_header_copy(),
    ))
}

/// `response_filter` of a node's request: the object as stored (the origin's header, no
/// player-facing rewrites, which the asking node applies itself), its cache status, and
/// how old our copy is.
pub(super) fn to_peer(session: &Session, resp: &mut ResponseHeader) -> Result<()> {
    let phase = session.cache.phase();
    resp.insert_header("x-cache-status", super::cache_status(phase))?;
    if matches!(
        phase,
        CachePhase::Hit | CachePhase::Stale | CachePhase::StaleUpdating
    ) {
        if let Some(meta) = session.cache.maybe_cache_meta() {
            let age = meta
                .created()
                .elapsed()
                .map(|d| d.as_secs())
                .unwrap_or_default();
            resp.insert_header(http::header::AGE, age)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn a_copy_is_as_old_as_the_owners() {
        let now = SystemTime::now();
        let header = ResponseHeader::build(200, None).unwrap();
        let meta = CacheMeta::new(now + Duration::from_secs(60), now, 0, 300, header);
        let aged = backdate(
            RespCacheable::Cacheable(meta),
            Some(Duration::from_secs(20)),
        );
        let RespCacheable::Cacheable(m) = aged else {
            panic!("no longer cacheable")
        };
        assert_eq!(m.created(), now - Duration::from_secs(20));
        assert_eq!(m.fresh_until(), now + Duration::from_secs(40));
        assert_eq!(m.stale_if_error_sec(), 300);
        // No age: unchanged.
        let header = ResponseHeader::build(200, None).unwrap();
        let meta = CacheMeta::new(now + Duration::from_secs(60), now, 0, 300, header);
        let same = backdate(RespCacheable::Cacheable(meta), None);
        assert!(matches!(same, RespCacheable::Cacheable(m) if m.created() == now));
    }
}

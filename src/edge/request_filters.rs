//! `request_filter`: which route a request is, and everything decided before the cache.
//!
//! - The protocol rules ([`super::protocol`]): no CONNECT or upgrades, `Host` on HTTP/1.1,
//!   header size, no body on media routes; refused in the route's shape, connection closed.
//! - API routes are answered in-process ([`crate::api::handle`]).
//! - `/api/proxy`: the ctx, URL and address checks ([`super::proxy`]).
//! - `/stream/{hash}/…`: the path is parsed once ([`crate::media::path`]), the hash resolved
//!   once, without ASCII case (stream id → publisher, a configured content always itself, in
//!   its configured spelling), and that one resolution feeds the token gate
//!   ([`super::gate`]) and the fetch.
//! - LL-HLS delivery directives of both media routes are decided in one place
//!   ([`super::directives`]): honoured, dropped, or a `400`.
//! - A `/stream` request from another node of the fleet (signed) skips the gate and the
//!   stream-id resolution: its node did both ([`super::fleet`]).
//! - Playlists that must be rewritten — every `/api/proxy` answer that is or may be one, and
//!   gated `/stream` playlists — are answered by [`super::playlist::serve`] from a fill
//!   subrequest; everything else goes on to the cache phases.
//! - The fill subrequest itself arrives here with its target already decided by its parent.

use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::playlist::{self, Buffering};
use super::route::{self, PathRejection, Route};
use super::{
    directives, fleet, gate, headers, protocol, proxy, respond, Edge, MediaTarget, RequestCtx,
    RouteClass, Target,
};
use crate::media::llhls::Verdict;
use crate::{api, metrics};

pub(super) async fn request(
    edge: &Edge,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<bool> {
    if let Some(fill) = playlist::fill_of(session) {
        ctx.fill = true;
        ctx.class = fill.class;
        let target = match &fill.target {
            playlist::FillTarget::Ready(t) => t.clone(),
            playlist::FillTarget::Resolve(checked) => {
                let checked = proxy::Checked::clone(checked);
                match proxy::resolve(checked, &edge.state.config.own_listeners()).await {
                    Ok(t) => Target::Proxy(Box::new(t)),
                    Err(r) => {
                        ctx.local_status = Some(r.status);
                        respond::json(session, r.status, super::json_error_body(&r.message))
                            .await?;
                        return Ok(true);
                    }
                }
            }
        };
        ctx.target = Some(target);
        playlist::prepare_fill_request(session.req_header_mut())?;
        return Ok(false);
    }
    let path = session.req_header().uri.path().to_string();
    if ctx.over_connection_share {
        return refuse_connection(session, ctx, &path).await;
    }
    let max_header = edge.state.config.limits.max_header_bytes;
    if let Some(refusal) = protocol::check(session.req_header(), max_header) {
        return refuse(session, ctx, &path, refusal).await;
    }
    let route = route::classify(&path, &edge.state.config.stream.extensions);
    if matches!(route, Ok(Route::ProviderProxy | Route::Stream(_)) | Err(_)) {
        // HTTP/2: a stream not ended by its HEADERS carries a body (HTTP/1.1 says so in its
        // header; for it, "not done" would be true of every request before it is read).
        let downstream = session.as_downstream_mut();
        let stream_open = downstream.is_http2() && !downstream.is_body_done();
        if let Some(refusal) = protocol::check_media(session.req_header(), stream_open) {
            return refuse(session, ctx, &path, refusal).await;
        }
    }
    match route {
        Ok(Route::Api) => {
            ctx.class = RouteClass::Api;
            let from_node = ctx.fleet.signature.node();
            let answer = api::handle(
                &edge.router,
                session.as_downstream_mut(),
                &edge.state,
                from_node,
            )
            .await;
            let (parts, body) = answer.response.into_parts();
            let status = parts.status.as_u16();
            ctx.local_status = Some(status);
            let mut head: ResponseHeader = parts.into();
            // Key delivery is a player route: players fetch keys cross-origin as they fetch
            // media, so its answers carry what every player answer does (its preflight is
            // the API layer's, which allows `Authorization`).
            if api::Surface::of(&path) == api::Surface::Playback
                && session.req_header().method != http::Method::OPTIONS
            {
                headers::told(headers::Answer::Key, status).write(&mut head)?;
            }
            respond::write(session, head, body, answer.head_only).await?;
            Ok(true)
        }
        Ok(Route::ProviderProxy) => {
            ctx.class = RouteClass::Proxy;
            if method_gate(session, ctx).await? {
                return Ok(true);
            }
            let checked = proxy::check_request(
                &path,
                session.req_header().uri.query(),
                edge.state.ctx_store.as_ref(),
                &edge.state.providers,
                &edge.state.config.own_listeners(),
            )
            .await;
            let target = match checked {
                Ok(c) => {
                    let asked = c.directives.clone();
                    proxy::resolve(c, &edge.state.config.own_listeners())
                        .await
                        .map(|t| (t, asked))
                }
                Err(r) => Err(r),
            };
            let target = match target {
                Ok((mut t, asked)) => {
                    match directives::decide(edge.cache, &t.cache_primary, asked.as_deref(), false)
                        .await
                    {
                        Verdict::Drop => {}
                        Verdict::Honour(d) => t.add_directives(&d),
                        Verdict::Refuse(why) => {
                            return refuse_directives(session, ctx, why).await;
                        }
                    }
                    t
                }
                Err(r) => {
                    if r.status == 403 {
                        crate::metrics::refused(
                            crate::metrics::GateSurface::Proxy,
                            "proxy_refused",
                        );
                    }
                    ctx.local_status = Some(r.status);
                    respond::json(session, r.status, super::json_error_body(&r.message)).await?;
                    return Ok(true);
                }
            };
            let mut buffering = playlist::buffering_of_target(&target);
            // A range is asked of a media object, never of a playlist (players fetch those
            // whole): a URL that may be either is answered as the object, ranges included.
            if buffering == Buffering::Sniff
                && session
                    .req_header()
                    .headers
                    .contains_key(http::header::RANGE)
            {
                buffering = Buffering::Never;
            }
            let target = Target::Proxy(Box::new(target));
            if buffering != Buffering::Never {
                let plan = playlist::Plan::proxy(&target, buffering);
                ctx.target = Some(target);
                playlist::serve(edge, session, ctx, plan).await?;
                return Ok(true);
            }
            ctx.target = Some(target);
            Ok(false)
        }
        Ok(Route::Stream(mut sp)) => {
            ctx.class = RouteClass::Stream;
            if method_gate(session, ctx).await? {
                return Ok(true);
            }
            // Another node of the fleet names the bucket directory it resolved and has
            // gated its player already; a bad signature is refused ([`super::fleet`]).
            let from_peer = match fleet::arrival(&ctx.fleet.signature, session) {
                fleet::Arrival::Player => None,
                fleet::Arrival::Peer(p) => Some(p),
                fleet::Arrival::Refused => {
                    fleet::refuse(session, ctx).await?;
                    return Ok(true);
                }
            };
            // One resolution of the hash (stream id → publisher, configured content wins)
            // feeds both the gate and the fetch: they judge and fetch the same object. It is
            // made on the name without ASCII case, and from here on the name has its one
            // spelling (credentials, stats, metrics and cache keys agree on it).
            let publisher = match from_peer {
                Some(_) => None,
                None => {
                    let resolved = edge.state.streams.resolve(&sp.hash);
                    sp.hash = resolved.name;
                    resolved.alias.then_some(resolved.dir)
                }
            };
            let dir = publisher.clone().unwrap_or_else(|| sp.hash.clone());
            if from_peer.is_some() {
                ctx.class = RouteClass::Fleet;
                ctx.fleet.from_peer = from_peer;
            } else if gate::enforce(&edge.state, session, &sp, &dir, ctx).await? {
                return Ok(true);
            }
            // No query of the player's goes upstream or into the key, except the LL-HLS
            // delivery directives a live playlist advertises ([`directives`]).
            let mut upstream_path = edge.upstream.object_path(&dir, &sp.rest_encoded());
            let mut cache_primary = edge.upstream.cache_primary(&upstream_path);
            let mut blocking = false;
            if sp.kind == crate::media::MediaKind::HlsPlaylist {
                let query = session.req_header().uri.query();
                match directives::decide(edge.cache, &cache_primary, query, from_peer.is_some())
                    .await
                {
                    Verdict::Drop => {}
                    Verdict::Honour(d) => {
                        blocking = crate::media::llhls::is_blocking(&d);
                        upstream_path.push('?');
                        upstream_path.push_str(&d);
                        cache_primary = edge.upstream.cache_primary(&upstream_path);
                    }
                    Verdict::Refuse(why) => {
                        return refuse_directives(session, ctx, why).await;
                    }
                }
            }
            let gated_playlist = ctx.gate.is_some() && sp.kind.is_manifest();
            let target = Target::Stream(MediaTarget {
                path: sp,
                publisher,
                upstream_path,
                cache_primary,
                blocking,
            });
            if gated_playlist {
                if let Some(plan) = playlist::Plan::gated(edge, &target, ctx) {
                    ctx.target = Some(target);
                    playlist::serve(edge, session, ctx, plan).await?;
                    return Ok(true);
                }
            }
            ctx.target = Some(target);
            Ok(false)
        }
        Err(rejection) => {
            let (status, msg) = match rejection {
                PathRejection::Malformed(why) => (400, format!("invalid media path: {why}")),
                PathRejection::ExtensionNotAllowed => (403, "file type not allowed".to_string()),
            };
            crate::metrics::refused(crate::metrics::GateSurface::Stream, "bad_path");
            ctx.local_status = Some(status);
            respond::json(session, status, super::json_error_body(&msg)).await?;
            Ok(true)
        }
    }
}

/// A malformed LL-HLS delivery directive on a playlist that advertises it: `400`
/// (RFC 8216bis §6.2.5), in the media routes' JSON shape.
async fn refuse_directives(
    session: &mut Session,
    ctx: &mut RequestCtx,
    why: &'static str,
) -> Result<bool> {
    ctx.local_status = Some(400);
    let msg = format!("invalid delivery directive: {why}");
    respond::json(session, 400, super::json_error_body(&msg)).await?;
    Ok(true)
}

/// Refuse a request by the protocol rules, in the route's error shape, and close the
/// connection without reading what may follow (an upgrade's stream, an unread body).
async fn refuse(
    session: &mut Session,
    ctx: &mut RequestCtx,
    path: &str,
    refusal: protocol::Refusal,
) -> Result<bool> {
    metrics::REQUESTS_REFUSED
        .with_label_values(&[refusal.reason()])
        .inc();
    let code =
        http::StatusCode::from_u16(refusal.status()).unwrap_or(http::StatusCode::BAD_REQUEST);
    close_with(session, ctx, path, code, refusal.message()).await
}

/// A fleet node's address whose connection lost its exemption over its share: `503` in the
/// route's shape, and the connection closes (counted where the share was refused).
async fn refuse_connection(
    session: &mut Session,
    ctx: &mut RequestCtx,
    path: &str,
) -> Result<bool> {
    let code = http::StatusCode::SERVICE_UNAVAILABLE;
    close_with(session, ctx, path, code, "Too many connections").await
}

/// Answer `code` with `message` in the path's surface shape and close the connection.
async fn close_with(
    session: &mut Session,
    ctx: &mut RequestCtx,
    path: &str,
    code: http::StatusCode,
    message: &str,
) -> Result<bool> {
    ctx.local_status = Some(code.as_u16());
    session.set_keepalive(None);
    let body = api::Surface::of(path).error_body(code, message).to_string();
    respond::json(session, code.as_u16(), body.into()).await?;
    Ok(true)
}

/// The method gate shared by both media paths: GET/HEAD proxied, OPTIONS answered here.
async fn method_gate(session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    let method = &session.req_header().method;
    if method == http::Method::OPTIONS {
        ctx.local_status = Some(204);
        respond::preflight(session).await?;
        return Ok(true);
    }
    if method != http::Method::GET && method != http::Method::HEAD {
        ctx.local_status = Some(405);
        respond::json(session, 405, super::json_error_body("method not allowed")).await?;
        return Ok(true);
    }
    Ok(false)
}

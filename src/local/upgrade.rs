//! The WebSocket upgrade: `$connect` decides, then the socket is handed to its connection
//! task (accepted) or the upgrade request gets the function's status (refused).

use super::STAGE;
use super::codec::base64_decoded_len;
use super::connection;
use super::events::{self, ConnectionContext, UpgradeRequest};
use super::http::json_response;
use super::registry::Handle;
use super::state::Gateway;
use crate::time::now_ms;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// RFC 6455 §4.2.1: the client's `Sec-WebSocket-Key` nonce is 16 bytes, base64-encoded.
const WEBSOCKET_KEY_BYTES: usize = 16;

/// Whether `req` asks for a WebSocket (a GET with `Connection: upgrade`, `Upgrade: websocket`).
pub fn is_websocket_upgrade(req: &Request<Incoming>) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    req.method() == hyper::Method::GET
        && has_token(header::CONNECTION, "upgrade")
        && has_token(header::UPGRADE, "websocket")
}

/// Checks the handshake as RFC 6455 §4.2.1 asks, before `$connect` runs: HTTP/1.1 and one
/// valid `Sec-WebSocket-Key` (else 400), version 13 (else 426). Returns `Sec-WebSocket-Accept`.
fn handshake(req: &Request<Incoming>) -> Result<String, Box<Response<Full<Bytes>>>> {
    if req.version() != Version::HTTP_11 {
        return Err(Box::new(json_response(
            StatusCode::BAD_REQUEST,
            r#"{"message":"WebSocket upgrades need HTTP/1.1"}"#.into(),
        )));
    }
    let mut keys = req.headers().get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) if base64_decoded_len(k.as_bytes()) == Some(WEBSOCKET_KEY_BYTES) => k,
        _ => {
            return Err(Box::new(json_response(
                StatusCode::BAD_REQUEST,
                r#"{"message":"Sec-WebSocket-Key must be one 16-byte value, base64-encoded"}"#
                    .into(),
            )));
        }
    };
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        let mut resp = json_response(
            StatusCode::UPGRADE_REQUIRED,
            r#"{"message":"Unsupported WebSocket version"}"#.into(),
        );
        resp.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(Box::new(resp));
    }
    Ok(derive_accept_key(key.as_bytes()))
}

/// `$connect`: builds the CONNECT event, lets the function decide, then upgrades (the function
/// accepted) or answers the upgrade request with the function's status (it refused).
pub async fn accept(
    gw: Arc<Gateway>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
    done: mpsc::Sender<()>,
) -> Response<Full<Bytes>> {
    let accept_key = match handshake(&req) {
        Ok(key) => key,
        Err(refused) => return *refused,
    };
    let now = now_ms();
    let ctx = ConnectionContext {
        api_id: gw.api_id.clone(),
        domain_name: gw.domain_name.clone(),
        stage: STAGE.to_owned(),
        connection_id: gw.registry.fresh_id(&gw.ids),
        connected_at_ms: now,
        source_ip: peer.ip().to_string(),
    };
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let upgrade = UpgradeRequest {
        headers,
        query: req.uri().query().map(str::to_owned),
        port: gw.port,
    };
    let event = events::connect(&ctx, &gw.ids, &upgrade, now);
    let decision = match gw.invoke(event).await {
        Ok(r) => r,
        Err(_) => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"message":"Internal server error"}"#.into(),
            );
        }
    };
    if !(200..300).contains(&decision.status_code) {
        // API Gateway answers a refused $connect with the function's status; no upgrade.
        let status =
            StatusCode::from_u16(decision.status_code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return json_response(status, decision.body.unwrap_or_default());
    }
    let protocol = decision
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
        .and_then(|(_, v)| HeaderValue::from_str(v).ok());

    // Registered before the 101 goes out, so a push racing the upgrade is queued, not lost.
    let (handle, rx) = Handle::new(&ctx, user_agent);
    gw.registry.insert(&ctx.connection_id, handle.clone());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                connection::serve(gw, ctx, handle, TokioIo::new(upgraded), rx, done).await
            }
            Err(e) => {
                tracing::info!(error = %e, "upgrade failed after $connect");
                gw.registry.remove(&ctx.connection_id);
                let event = events::disconnect(
                    &ctx,
                    &gw.ids,
                    1006,
                    "Connection closed abnormally",
                    now_ms(),
                );
                let _ = gw.invoke(event).await;
                drop(done);
            }
        }
    });

    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept_key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    resp
}

//! `$connect`: authenticate, validate the identity, record the connection.

use super::{Handled, Invocation};
use crate::auth::{Principal, extract_token};
use crate::context::validate_id;
use crate::event::WsResponse;
use crate::identity::Identity;
use crate::limits::CONNECTION_TTL;
use crate::manager::Manager;
use crate::store::ConnectionRecord;
use crate::telemetry::metrics;
use crate::time::now_ms;
use lambda_http::aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;

/// A refused connection: the status code and body clients see, and the reason `code` only the
/// invocation's log line gets.
fn refuse(status: u16, reason: &'static str, code: &'static str) -> Handled {
    Handled {
        error_code: Some(code),
        ..Handled::from(
            WsResponse::status(status).with_body(format!(r#"{{"message":"{reason}"}}"#)),
        )
    }
}

/// Finds and verifies the caller's identity. `Err` is the refusal to send.
fn authenticate<'e>(
    mgr: &Manager,
    req: &'e ApiGatewayWebsocketProxyRequest,
) -> Result<(Principal, Option<&'e str>), Handled> {
    let fields = &req.request_context.authorizer.fields;
    if let Some(p) = fields.get("principalId").and_then(|v| v.as_str()) {
        let tenant = fields
            .get("tenant_id")
            .or_else(|| fields.get("tenantId"))
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        return Ok((
            Principal {
                user_id: p.to_owned(),
                tenant_id: tenant,
            },
            None,
        ));
    }
    let protocols = req
        .headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok());
    if let Some(found) = extract_token(req.query_string_parameters.first("token"), protocols) {
        let Some(verifier) = mgr.config().jwt.as_ref() else {
            return Err(refuse(401, "unauthorized", "jwt_not_configured"));
        };
        return match verifier.verify(found.token) {
            Ok(p) => Ok((p, found.subprotocol)),
            Err(e) => {
                tracing::info!(reason = %e, "token rejected");
                Err(refuse(401, "unauthorized", "invalid_token"))
            }
        };
    }
    if mgr.config().dev_auth
        && let Some(u) = req.query_string_parameters.first("user_id")
    {
        return Ok((
            Principal {
                user_id: u.to_owned(),
                tenant_id: None,
            },
            None,
        ));
    }
    Err(refuse(401, "unauthorized", "no_credentials"))
}

/// Handles `$connect`: 200 accept, 401 no/invalid credentials, 403 forbidden identity,
/// 503 retryable storage failure, 500 otherwise.
pub async fn handle(
    mgr: &Manager,
    req: &ApiGatewayWebsocketProxyRequest,
    inv: &Invocation<'_>,
) -> Handled {
    let (principal, subprotocol) = match authenticate(mgr, req) {
        Ok(p) => p,
        Err(refusal) => return refusal,
    };
    let mode = mgr.config().mode;
    // An identity is used exactly as issued: the id rule trims nothing, so " alice" can never
    // be handed alice's runs.
    let user_id = match validate_id("user_id", &principal.user_id, mode) {
        Ok(u) => u.to_owned(),
        Err(e) => {
            tracing::info!(reason = %e, "identity refused");
            return refuse(403, "forbidden", "invalid_user_id");
        }
    };
    let tenant_id = match principal.tenant_id.as_deref() {
        None => None,
        Some(raw) => match validate_id("tenant_id", raw, mode) {
            Ok(t) => Some(t.to_owned()),
            Err(e) => {
                tracing::info!(reason = %e, "tenant refused");
                return refuse(403, "forbidden", "invalid_tenant_id").for_user(user_id);
            }
        },
    };
    let now = now_ms();
    let record = ConnectionRecord {
        connection_id: inv.connection_id.to_owned(),
        user_id: user_id.clone(),
        tenant_id: tenant_id.clone(),
        endpoint: Some(inv.endpoint.clone()),
        connected_at: now,
        expires_at: (now + CONNECTION_TTL.as_millis() as u64) / 1000,
    };
    let store = match mgr.store() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "store unavailable");
            return refuse(500, "internal error", "init_failed").for_user(user_id);
        }
    };
    if let Err(e) = store.put_connection(&record).await {
        crate::telemetry::log_storage(&e);
        let refusal = if e.is_retryable() {
            refuse(503, "service unavailable, retry", e.code())
        } else {
            refuse(500, "internal error", e.code())
        };
        return refusal.for_user(user_id);
    }
    mgr.remember(
        inv.connection_id,
        Identity {
            user_id: user_id.clone(),
            tenant_id,
        },
    );
    metrics::connection_opened();
    let resp = WsResponse::status(200);
    let response = match subprotocol {
        // Browsers drop the connection unless the chosen subprotocol is echoed.
        Some(p) => resp.with_header("Sec-WebSocket-Protocol", p),
        None => resp,
    };
    Handled::from(response).for_user(user_id)
}

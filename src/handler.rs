//! The Lambda entry point: decode the event, dispatch to its route or the sweep, log it.

use crate::event::{EventError, Incoming, WsResponse, decode};
use crate::manager::{InitError, Manager};
use crate::protocol::ClientError;
use crate::routes::{Invocation, Route, connect, disconnect, message};
use crate::sweep::{SweepReport, sweep};
use crate::telemetry::metrics;
use crate::time::now_ms;
use serde::Serialize;
use std::time::Instant;

/// What an invocation returns to Lambda.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Output {
    /// A WebSocket route's response.
    WebSocket(WsResponse),
    /// The sweep's report.
    Sweep(SweepReport),
}

/// A failed invocation. `error_type` says whether Lambda's caller should retry.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    pub error_type: &'static str,
    pub message: String,
}

impl From<EventError> for HandlerError {
    fn from(e: EventError) -> Self {
        HandlerError {
            error_type: "NonRetryable.InvalidEvent",
            message: e.to_string(),
        }
    }
}

impl From<HandlerError> for lambda_http::lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        lambda_http::lambda_runtime::Diagnostic {
            error_type: e.error_type.to_owned(),
            error_message: e.message,
        }
    }
}

/// Handles one raw event with the instance's manager (or the reason it could not be built:
/// WebSocket events then get an error reply, and the next invocation tries again).
pub async fn handle(
    raw: &str,
    mgr: Result<&Manager, &InitError>,
    deadline_ms: Option<u64>,
) -> Result<Output, HandlerError> {
    let started = Instant::now();
    let event = decode(raw)?;
    let req = match event {
        Incoming::Scheduled => {
            let mgr = mgr.map_err(|e| HandlerError {
                error_type: "Retryable.Initialisation",
                message: e.to_string(),
            })?;
            metrics::invocation("sweep");
            let report = sweep(mgr, now_ms()).await;
            metrics::flush();
            return Ok(Output::Sweep(report));
        }
        Incoming::WebSocket(req) => req,
    };
    let ctx = &req.request_context;
    let route = Route::of(ctx).ok_or(EventError::Unsupported)?;
    let endpoint_override = mgr
        .ok()
        .and_then(|m| m.config().connections_endpoint.as_deref());
    let inv = Invocation::of(ctx, endpoint_override, deadline_ms).ok_or_else(|| HandlerError {
        error_type: "NonRetryable.InvalidEvent",
        message: "WebSocket event has no connectionId".into(),
    })?;
    metrics::invocation(route.key());
    let resp = match mgr {
        Err(e) => init_failure(route, e),
        Ok(mgr) => match route {
            Route::Connect => connect::handle(mgr, &req, &inv).await,
            Route::Default => {
                message::handle(mgr, req.body.as_deref(), req.is_base64_encoded, &inv).await
            }
            Route::Disconnect => disconnect::handle(mgr, &inv).await,
        },
    };
    tracing::info!(
        route = route.key(),
        connection_id = inv.connection_id,
        aws_request_id = inv.aws_request_id.unwrap_or(""),
        status = resp.status_code,
        duration_us = started.elapsed().as_micros() as u64,
        "invocation"
    );
    metrics::flush();
    Ok(Output::WebSocket(resp))
}

/// The reply when the manager could not be built: never internals, and retried next time.
fn init_failure(route: Route, e: &InitError) -> WsResponse {
    tracing::error!(error = %e, "initialisation failed");
    match route {
        Route::Connect => {
            WsResponse::status(500).with_body(r#"{"message":"internal error"}"#.into())
        }
        Route::Disconnect => WsResponse::status(200),
        Route::Default => {
            let frame = crate::run::driver::error_frame(None, &e.client_error());
            WsResponse::status(200).with_body(frame)
        }
    }
}

impl InitError {
    /// What a client is told about a failed initialisation.
    pub fn client_error(&self) -> ClientError {
        match self {
            InitError::Store(s) => ClientError::storage(s),
            InitError::Config(_) => ClientError::new(
                crate::protocol::ErrorCode::Internal,
                "service is misconfigured",
            ),
        }
    }
}

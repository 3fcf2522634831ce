//! The Lambda entry point: decode the event, dispatch to its route or the sweep, log and count it.

use crate::event::{EventError, Incoming, WsResponse, decode};
use crate::manager::{InitError, Manager};
use crate::protocol::ClientError;
use crate::routes::{Handled, Invocation, Route, connect, disconnect, message};
use crate::sweep::{SweepReport, sweep};
use crate::telemetry::{InvocationLog, metrics};
use crate::time::now_ms;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
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

/// What the Lambda runtime says about an invocation, besides its event.
#[derive(Clone, Copy, Debug, Default)]
pub struct LambdaContext<'a> {
    /// Lambda's request id (`aws_request_id`), for the invocation's log line.
    pub request_id: Option<&'a str>,
    /// Lambda's deadline, epoch milliseconds.
    pub deadline_ms: Option<u64>,
}

/// Handles one raw event with the instance's manager (or the reason it could not be built:
/// WebSocket events then get an error reply, and the next invocation tries again).
pub async fn handle(
    raw: &str,
    mgr: Result<&Manager, &InitError>,
    deadline_ms: Option<u64>,
) -> Result<Output, HandlerError> {
    let lambda = LambdaContext {
        request_id: None,
        deadline_ms,
    };
    handle_with(raw, mgr, lambda).await
}

/// [`handle`] with the runtime's context. Every invocation writes one log line
/// ([`InvocationLog`]) and its metrics.
pub async fn handle_with(
    raw: &str,
    mgr: Result<&Manager, &InitError>,
    lambda: LambdaContext<'_>,
) -> Result<Output, HandlerError> {
    metrics::scope(invoke(raw, mgr, lambda)).await
}

async fn invoke(
    raw: &str,
    mgr: Result<&Manager, &InitError>,
    lambda: LambdaContext<'_>,
) -> Result<Output, HandlerError> {
    let started = Instant::now();
    let mut log = InvocationLog {
        lambda_request_id: lambda.request_id,
        ..Default::default()
    };
    let req = match decode(raw) {
        Ok(Incoming::WebSocket(req)) => req,
        Ok(Incoming::Scheduled) => {
            log.route = Some(SWEEP_ROUTE);
            let result = match mgr {
                Ok(mgr) => Ok(Output::Sweep(sweep(mgr, now_ms()).await)),
                Err(e) => Err(HandlerError {
                    error_type: "Retryable.Initialisation",
                    message: e.to_string(),
                }),
            };
            finish(log, started, result.as_ref().err());
            return result;
        }
        Err(e) => return failed(log, started, e.into()),
    };
    let ctx = &req.request_context;
    let Some(route) = Route::of(ctx) else {
        return failed(log, started, EventError::Unsupported.into());
    };
    let endpoint_override = mgr
        .ok()
        .and_then(|m| m.config().connections_endpoint.as_deref());
    let Some(inv) = Invocation::of(ctx, endpoint_override, lambda.deadline_ms) else {
        let e = HandlerError {
            error_type: "NonRetryable.InvalidEvent",
            message: "WebSocket event has no connectionId".into(),
        };
        return failed(log, started, e);
    };
    let handled = match mgr {
        Err(e) => init_failure(route, e),
        Ok(mgr) => match route {
            Route::Connect => connect::handle(mgr, &req, &inv).await,
            Route::Default => {
                message::handle(mgr, req.body.as_deref(), req.is_base64_encoded, &inv).await
            }
            Route::Disconnect => disconnect::handle(mgr, &inv).await,
        },
    };
    let resp = &handled.response;
    let reply = match route {
        Route::Default => resp.body.as_deref().map(ReplyProbe::of),
        _ => None,
    };
    log.route = Some(route.key());
    log.apigw_request_id = inv.aws_request_id;
    log.connection_id = Some(inv.connection_id);
    log.user_id = handled.user_id.as_deref();
    log.status = Some(resp.status_code);
    log.reply = reply.as_ref().and_then(ReplyProbe::kind);
    log.error_code = handled
        .error_code
        .or_else(|| reply.as_ref().and_then(ReplyProbe::code));
    finish(log, started, None);
    Ok(Output::WebSocket(handled.response))
}

/// The route name of the scheduled sweep in logs and metrics.
const SWEEP_ROUTE: &str = "sweep";

/// Ends an invocation: counts it, writes its log line, then its metrics.
fn finish(mut log: InvocationLog<'_>, started: Instant, error: Option<&HandlerError>) {
    log.duration = started.elapsed();
    if let Some(route) = log.route {
        log.cold_start = metrics::invocation(route, log.duration);
    }
    if let Some(e) = error {
        log.error_code = Some(e.error_type);
    }
    log.emit();
    metrics::flush();
}

/// Ends an invocation that fails.
fn failed(
    log: InvocationLog<'_>,
    started: Instant,
    e: HandlerError,
) -> Result<Output, HandlerError> {
    finish(log, started, Some(&e));
    Err(e)
}

/// The `type` and error `code` of a direct reply, read back from the frame the client gets, so
/// the log says exactly what the client saw.
#[derive(Default, Deserialize)]
struct ReplyProbe<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payload: Option<PayloadProbe<'a>>,
}

#[derive(Deserialize)]
struct PayloadProbe<'a> {
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
}

impl<'a> ReplyProbe<'a> {
    fn of(frame: &'a str) -> Self {
        serde_json::from_str(frame).unwrap_or_default()
    }

    fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }

    fn code(&self) -> Option<&str> {
        self.payload.as_ref()?.code.as_deref()
    }
}

/// The reply when the manager could not be built: never internals, and retried next time.
fn init_failure(route: Route, e: &InitError) -> Handled {
    tracing::error!(error = %e, "initialisation failed");
    let response = match route {
        Route::Connect => {
            WsResponse::status(500).with_body(r#"{"message":"internal error"}"#.into())
        }
        Route::Disconnect => WsResponse::status(200),
        Route::Default => {
            let frame = crate::run::driver::error_frame(None, &e.client_error());
            return WsResponse::status(200).with_body(frame).into();
        }
    };
    Handled {
        response,
        user_id: None,
        error_code: Some("init_failed"),
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

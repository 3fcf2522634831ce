//! The Lambda entry point: decode the event, dispatch to its route or the sweep, log and count it.

use crate::event::{EventError, Incoming, WsResponse, decode};
use crate::manager::{InitError, Manager};
use crate::protocol::{ClientError, Reply};
use crate::routes::{Handled, Invocation, Route, connect, disconnect, message};
use crate::sweep::{SweepReport, sweep};
use crate::telemetry::{InvocationLog, metrics};
use crate::time::now_ms;
use crate::worker::WorkerOutcome;
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
    /// What a worker invocation did.
    Worker(WorkerReport),
}

/// A worker invocation's response: the run it was for and what it did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkerReport {
    pub run_id: String,
    pub outcome: WorkerOutcome,
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

pub use crate::event::LambdaContext;

/// Handles one raw event with the instance's manager (or the reason it could not be built:
/// WebSocket events then get an error reply, and the next invocation tries again).
pub async fn handle(
    raw: &str,
    mgr: Result<&Manager, &InitError>,
    deadline_ms: Option<u64>,
) -> Result<Output, HandlerError> {
    let lambda = LambdaContext {
        deadline_ms,
        ..Default::default()
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
        Ok(Incoming::Worker(ev)) => {
            log.route = Some(WORKER_ROUTE);
            let result = match mgr {
                Ok(mgr) => {
                    let claim = lambda
                        .request_id
                        .map(str::to_owned)
                        .unwrap_or_else(local_claim);
                    let outcome =
                        crate::worker::work(mgr, &ev.wsexec_worker, &claim, lambda.deadline_ms)
                            .await;
                    log.user_id = Some(&ev.wsexec_worker.user_id);
                    Ok(Output::Worker(WorkerReport {
                        run_id: ev.wsexec_worker.run_id.clone(),
                        outcome,
                    }))
                }
                Err(e) => Err(HandlerError {
                    error_type: "Retryable.Initialisation",
                    message: e.to_string(),
                }),
            };
            if let Ok(Output::Worker(r)) = &result {
                log.reply = Some(r.outcome.as_str());
            }
            finish(log, started, result.as_ref().err());
            return result;
        }
        Ok(Incoming::Scheduled) => {
            log.route = Some(SWEEP_ROUTE);
            let result = match mgr.map(Manager::run_deps) {
                Ok(Ok(deps)) => Ok(Output::Sweep(sweep(&deps, now_ms()).await)),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "sweep: store unavailable");
                    Ok(Output::Sweep(SweepReport {
                        errors: 1,
                        ..Default::default()
                    }))
                }
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
    let Some(inv) = Invocation::of(ctx, endpoint_override, lambda) else {
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
    log.route = Some(route.key());
    log.apigw_request_id = inv.aws_request_id;
    log.connection_id = Some(inv.connection_id);
    log.user_id = handled.user_id.as_deref();
    log.status = Some(handled.response.status_code);
    log.reply = handled.reply.map(|(kind, _)| kind.as_str());
    log.error_code = handled
        .error_code
        .or_else(|| handled.reply.and_then(|(_, code)| code).map(|c| c.as_str()));
    finish(log, started, None);
    Ok(Output::WebSocket(handled.response))
}

/// The route name of the scheduled sweep in logs and metrics.
const SWEEP_ROUTE: &str = "sweep";

/// The route name of a worker invocation (`RUN_DISPATCH=async`) in logs and metrics.
const WORKER_ROUTE: &str = "worker";

/// A claim token for a worker invocation with no Lambda request id (the local tool, tests):
/// unique within the process.
fn local_claim() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("local-{}-{n}", std::process::id())
}

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

/// The reply when the manager could not be built: never internals, and retried next time.
fn init_failure(route: Route, e: &InitError) -> Handled {
    tracing::error!(error = %e, "initialisation failed");
    let response = match route {
        Route::Connect => {
            WsResponse::status(500).with_body(r#"{"message":"internal error"}"#.into())
        }
        Route::Disconnect => WsResponse::status(200),
        Route::Default => return Handled::from(Some(Reply::error(None, &e.client_error()))),
    };
    Handled {
        error_code: Some("init_failed"),
        ..Handled::from(response)
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

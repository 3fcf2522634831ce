//! The Lambda entry point: decode the event, dispatch to its route, log and count it. Every
//! route (the WebSocket routes, the worker, the sweep) lives in `routes/`; this only dispatches.

use crate::event::{Incoming, decode};
use crate::manager::{InitError, Manager};
use crate::routes::{self, sweep, worker};
use crate::telemetry::{InvocationLog, metrics};
use std::time::Instant;

pub use crate::event::LambdaContext;
pub use crate::routes::{HandlerError, Output, WorkerReport};

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
    let incoming = decode(raw);
    let mut log = InvocationLog {
        lambda_request_id: lambda.request_id,
        ..Default::default()
    };
    let result = match &incoming {
        Ok(Incoming::WebSocket(req)) => routes::websocket(mgr, req, lambda, &mut log).await,
        // Boxed: a worker drives a whole run; `$connect`, `ping` and the rest stay small.
        Ok(Incoming::Worker(ev)) => {
            Box::pin(worker::handle(mgr, &ev.wsexec_worker, lambda, &mut log)).await
        }
        Ok(Incoming::Scheduled) => sweep::handle(mgr, &mut log).await,
        Err(e) => Err(HandlerError::invalid_event(e)),
    };
    finish(log, started, result.as_ref().err());
    result
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

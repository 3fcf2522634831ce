//! A worker invocation (`RUN_DISPATCH=async`): the function's own asynchronous invocation that
//! claims and drives one run.

use super::{HandlerError, Output, WorkerReport};
use crate::dispatch::WorkerRun;
use crate::event::LambdaContext;
use crate::manager::{InitError, Manager};
use crate::telemetry::{InvocationLog, log_storage};
use crate::worker::{WorkerError, work};
use std::borrow::Cow;

/// The route name of a worker invocation in logs and metrics.
pub const WORKER_ROUTE: &str = "worker";

/// Claims and drives the run `ev` names; the response says what it did. Storage that fails
/// before the claim fails the invocation (`Retryable.Storage`, or `NonRetryable.Storage` when
/// the failure's kind cannot pass), so Lambda's asynchronous retry delivers the event again.
pub async fn handle<'a>(
    mgr: Result<&Manager, &InitError>,
    ev: &'a WorkerRun,
    lambda: LambdaContext<'_>,
    log: &mut InvocationLog<'a>,
) -> Result<Output, HandlerError> {
    log.route = Some(WORKER_ROUTE);
    let mgr = mgr.map_err(HandlerError::initialisation)?;
    let claim = lambda
        .request_id
        .map(str::to_owned)
        .unwrap_or_else(local_claim);
    log.user_id = Some(Cow::Borrowed(&ev.user_id));
    let outcome = match work(mgr, ev, &claim, lambda.deadline_ms).await {
        Ok(outcome) => outcome,
        Err(WorkerError::Init(e)) => return Err(HandlerError::initialisation(&e)),
        Err(WorkerError::Storage(e)) => {
            log_storage(&e);
            return Err(HandlerError::storage(&e));
        }
    };
    log.reply = Some(outcome.as_str());
    Ok(Output::Worker(WorkerReport {
        run_id: ev.run_id.clone(),
        outcome,
    }))
}

/// A claim token for a worker invocation with no Lambda request id (the local tool, tests):
/// unique within the process.
fn local_claim() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("local-{}-{n}", std::process::id())
}

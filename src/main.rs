//! The Lambda binary (`bootstrap`): one runtime loop serving all three routes and the sweep,
//! one invocation at a time, or `AWS_LAMBDA_MAX_CONCURRENCY` at once on Managed Instances.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::value::RawValue;
use wsexec::handler::{HandlerError, LambdaContext, Output, handle_with};
use wsexec::limits::SHUTDOWN_BUDGET;
use wsexec::manager::Manager;
use wsexec::serve::Mode;

/// One invocation. Everything it knows about itself (request id, deadline, connection, the
/// run's origin, its metrics) lives in this future, so invocations running side by side share
/// only the manager.
async fn invoke(event: LambdaEvent<Box<RawValue>>) -> Result<Output, HandlerError> {
    let lambda = LambdaContext {
        request_id: Some(&event.context.request_id),
        deadline_ms: Some(event.context.deadline),
        function_arn: Some(&event.context.invoked_function_arn),
    };
    let mgr = Manager::global();
    let mgr = mgr.as_ref().map(|m| *m);
    // Boxed: `lambda_runtime` keeps one task per invocation slot with this future inline, so an
    // idle slot would hold room for the largest invocation's state for nothing. That state is
    // ~6 KiB: the routes that drive a run box their own (BENCHMARKS.md, density).
    Box::pin(handle_with(event.payload.get(), mgr, lambda)).await
}

/// With `DYNAMODB_WARMUP=1`, builds the manager and opens the DynamoDB connection during init,
/// trading init time for first-request latency. Failures are left for the first invocation
/// to report.
async fn warm_up() {
    let Ok(mgr) = Manager::global() else { return };
    if !mgr.config().dynamodb_warmup {
        return;
    }
    if let Ok(store) = mgr.store()
        && let Err(e) = store.warm_up().await
    {
        tracing::warn!(error = %e, "DynamoDB warm-up failed");
    }
}

async fn serve(mode: Mode) -> Result<(), lambda_runtime::Error> {
    wsexec::telemetry::init_for(mode != Mode::Sequential);
    // Only a configured warm-up builds the manager during init; otherwise it stays lazy.
    if std::env::var_os("DYNAMODB_WARMUP").is_some() {
        warm_up().await;
    }
    match mode {
        // Today's loop, untouched: the classic cold start must not move, and a classic
        // environment is only shut down between invocations (no run in flight).
        Mode::Sequential => lambda_runtime::run(service_fn(invoke)).await,
        Mode::Concurrent { .. } => {
            // Managed Instances stop an environment with invocations in flight: SIGTERM lets
            // their runs end cleanly instead of waiting for the sweep.
            lambda_runtime::spawn_graceful_shutdown_handler(shut_down).await;
            lambda_runtime::run_concurrent(service_fn(invoke)).await
        }
    }
}

/// On SIGTERM: every run this process drives ends within [`SHUTDOWN_BUDGET`] (see the driver's
/// `shut_down`, the one place deciding what becomes of an in-flight run).
async fn shut_down() {
    let Ok(mgr) = Manager::global() else { return };
    let left = mgr.live_runs().shut_down(SHUTDOWN_BUDGET).await;
    // MCP sessions end with a DELETE, so servers need not wait for their idle expiry.
    mgr.shut_down_agents().await;
    if left > 0 {
        tracing::warn!(
            runs = left,
            "runs still in flight at shutdown are left to the sweep"
        );
    }
}

fn main() -> Result<(), lambda_runtime::Error> {
    let mode = Mode::from_env();
    mode.runtime()?.block_on(serve(mode))
}

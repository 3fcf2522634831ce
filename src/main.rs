//! The Lambda binary (`bootstrap`): one runtime loop serving all three routes and the sweep.

use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use serde_json::value::RawValue;
use wsexec::handler::{HandlerError, LambdaContext, Output, handle_with};
use wsexec::manager::Manager;

async fn invoke(event: LambdaEvent<Box<RawValue>>) -> Result<Output, HandlerError> {
    let lambda = LambdaContext {
        request_id: Some(&event.context.request_id),
        deadline_ms: Some(event.context.deadline),
    };
    let mgr = Manager::global();
    handle_with(event.payload.get(), mgr.as_ref().map(|m| *m), lambda).await
}

// One invocation at a time per instance: a current-thread runtime is all Lambda can use.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    wsexec::telemetry::init();
    lambda_runtime::run(service_fn(invoke)).await
}

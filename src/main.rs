//! The Lambda binary (`bootstrap`): one runtime loop serving all three routes and the sweep.

use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use serde_json::value::RawValue;
use wsexec::handler::{HandlerError, Output, handle};
use wsexec::manager::Manager;

async fn invoke(event: LambdaEvent<Box<RawValue>>) -> Result<Output, HandlerError> {
    let deadline = Some(event.context.deadline);
    let mgr = Manager::global();
    handle(event.payload.get(), mgr.as_ref().map(|m| *m), deadline).await
}

// One invocation at a time per instance: a current-thread runtime is all Lambda can use.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    wsexec::telemetry::init();
    lambda_runtime::run(service_fn(invoke)).await
}

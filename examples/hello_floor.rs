//! The cold-start floor: a hello-world `lambda_runtime` function with the same runtime,
//! tokio flavour and release profile as wsexec, answering every event with a fixed response.
//! `tools/bench` builds it as a package of its own (`tools/coldstart/floor`): as an example of
//! this package it links wsexec's dev-dependencies (1.11 MB against 0.83 MB).

use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(|_e: LambdaEvent<serde_json::Value>| async {
        Ok::<_, lambda_runtime::Error>(serde_json::json!({ "statusCode": 200 }))
    }))
    .await
}

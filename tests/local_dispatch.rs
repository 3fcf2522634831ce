//! `RUN_DISPATCH=async` through `wsexec-local serve`: the function's own Lambda client invokes
//! the emulator's `Invoke` API, whose worker invocation drives the run, with a real client.
#![cfg(feature = "local")]

#[path = "support/local_harness.rs"]
mod local_harness;

use local_harness::{Gateway, dev_config, recv_json, recv_run, send_json, start_agent};
use serde_json::json;
use wsexec::dispatch::Dispatch;

/// The golden path with async dispatch: the run is handed to a worker invocation through the
/// emulated `Invoke` API and its five events reach the WebSocket client in order.
#[tokio::test]
async fn golden_path_with_async_dispatch() {
    let mut config = dev_config();
    config.dispatch = Dispatch::Async;
    let mut gw = Gateway::start(config, |_| {}).await;
    let (mut ws, _conn) = gw.connect_user("alice-01").await;
    send_json(&mut ws, start_agent("async-1", "hello worker")).await;
    let events = recv_run(&mut ws, "async-1").await;
    let run_id = events[0]["run_id"].as_str().unwrap().to_owned();
    let stored = gw.stored_run("alice-01", &run_id).await;
    assert!(
        stored.claimed_by.is_some(),
        "a worker invocation claimed it"
    );
    send_json(&mut ws, json!({"type": "get_execution", "run_id": run_id})).await;
    let got = recv_json(&mut ws).await;
    assert_eq!(got["payload"]["state"], "completed", "{got}");
    gw.stop().await;
}

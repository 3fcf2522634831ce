//! The real `wsexec` binary as a Lambda process: served by a loopback Runtime API, against
//! DynamoDB Local and a loopback `@connections` endpoint.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::dynamodb::*;
use support::runtime_api::{Outcome, Runtime};
use support::*;

const LIMIT: Duration = Duration::from_secs(20);

/// The binary under test: `WSEXEC_BIN` (the release build `tools/test` makes) or Cargo's build.
fn binary() -> String {
    std::env::var("WSEXEC_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_wsexec").to_owned())
}

/// Spawns the binary against a fresh table and a loopback `@connections` endpoint.
async fn spawn(table: Option<&str>, connections: &str) -> Runtime {
    spawn_with(table, connections, &[]).await
}

/// As [`spawn`], with extra environment variables.
async fn spawn_with(table: Option<&str>, connections: &str, extra: &[(&str, &str)]) -> Runtime {
    let mut env = vec![
        ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID".to_owned(), "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()),
        ("AWS_ENDPOINT_URL_DYNAMODB".to_owned(), endpoint()),
        ("CONNECTIONS_ENDPOINT".to_owned(), connections.to_owned()),
        ("JWT_SECRET".to_owned(), SAMPLE_SECRET.to_owned()),
        ("RUST_LOG".to_owned(), "warn".to_owned()),
    ];
    if let Some(t) = table {
        env.push(("TABLE_NAME".to_owned(), t.to_owned()));
    }
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut rt = Runtime::start().await;
    rt.spawn(&binary(), &[], &env, 128);
    rt.wait_init(LIMIT).await;
    rt
}

async fn call(rt: &mut Runtime, event: &Value) -> Value {
    rt.invoke(&event.to_string(), LIMIT).await.0.json()
}

/// The golden path through the real binary: connect (JWT), start_agent (five events pushed
/// over HTTP), get_execution completed, disconnect, and a sweep.
#[tokio::test]
async fn golden_path_through_the_lambda_binary() {
    let store = fresh_store("bin").await;
    let ep = support::connections::start().await;
    let mut rt = spawn(Some(store.table()), &ep.url).await;
    let conn = sample("connect-jwt-query.json")["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        call(&mut rt, &sample("connect-jwt-query.json")).await["statusCode"],
        200
    );
    let ping = call(&mut rt, &sample("message-ping.json")).await;
    assert!(ping["body"].as_str().unwrap().contains(r#""type":"pong""#));
    let started = call(&mut rt, &sample("message-start-agent.json")).await;
    assert_eq!(started, json!({"statusCode": 200}));
    assert_eq!(types(&ep.delivered(&conn)), FIVE_EVENTS);
    let got = call(&mut rt, &sample("message-get-execution.json")).await;
    let reply: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
    assert_eq!(reply["payload"]["state"], "completed");
    let sweep = call(&mut rt, &sample("scheduled-sweep.json")).await;
    assert_eq!(sweep["examined"], 0);
    assert_eq!(
        call(&mut rt, &sample("disconnect.json")).await["statusCode"],
        200
    );
    assert!(rt.alive());
}

/// An event that is not an API Gateway WebSocket event reaches `/error` with a classified
/// error type, and the process keeps serving.
#[tokio::test]
async fn invalid_event_reaches_error_and_process_keeps_serving() {
    let store = fresh_store("bin-err").await;
    let ep = support::connections::start().await;
    let mut rt = spawn(Some(store.table()), &ep.url).await;
    for bad in [
        json!({"Records": []}),
        json!({"requestContext": {"eventType": "MESSAGE", "connectionId": 1}}),
    ] {
        let (out, _) = rt.invoke(&bad.to_string(), LIMIT).await;
        match out {
            // lambda_runtime reports `Lambda-Runtime-Function-Error-Type: unhandled` and puts
            // the classified type in the body.
            Outcome::Error { body, .. } => {
                let b: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(b["errorType"], "NonRetryable.InvalidEvent", "{body}");
                assert!(b["errorMessage"].as_str().unwrap().contains("WebSocket"));
            }
            other => panic!("expected /error, got {other:?}"),
        }
    }
    let ping = call(&mut rt, &sample("message-ping.json")).await;
    assert!(ping["body"].as_str().unwrap().contains("pong"));
    assert!(rt.alive());
}

/// A missing TABLE_NAME is an error reply on every route, never a crash, and every
/// invocation tries to initialise again.
#[tokio::test]
async fn failed_initialisation_is_an_error_reply() {
    let ep = support::connections::start().await;
    let mut rt = spawn(None, &ep.url).await;
    let c = call(&mut rt, &sample("connect-jwt-query.json")).await;
    assert_eq!(c["statusCode"], 500);
    assert_eq!(c["body"], r#"{"message":"internal error"}"#);
    let p = call(&mut rt, &sample("message-ping.json")).await;
    assert!(
        p["body"].as_str().unwrap().contains(r#""code":"internal""#),
        "{p}"
    );
    let (sweep, _) = rt
        .invoke(&sample("scheduled-sweep.json").to_string(), LIMIT)
        .await;
    let Outcome::Error { body, .. } = sweep else {
        panic!("sweep must fail: {sweep:?}")
    };
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(b["errorType"], "Retryable.Initialisation");
    assert!(rt.alive());
}

/// `DYNAMODB_WARMUP=1` opens the connection during init; a warm-up that fails (missing
/// table) never breaks init, and the first invocation reports the failure as usual.
#[tokio::test]
async fn dynamodb_warm_up_is_optional_and_never_breaks_init() {
    let ep = support::connections::start().await;
    let store = fresh_store("bin-warm").await;
    let mut rt = spawn_with(Some(store.table()), &ep.url, &[("DYNAMODB_WARMUP", "1")]).await;
    assert_eq!(
        call(&mut rt, &sample("connect-jwt-query.json")).await["statusCode"],
        200
    );
    // The warm-up reaches DynamoDB during init, before any invocation.
    let (url, hits) = fault_endpoint(Fault::Error {
        status: 400,
        code: "ResourceNotFoundException",
        extra: "",
    })
    .await;
    let env = [
        ("DYNAMODB_WARMUP", "1"),
        ("AWS_ENDPOINT_URL_DYNAMODB", url.as_str()),
    ];
    let mut broken = spawn_with(Some("no-such-table"), &ep.url, &env).await;
    assert!(
        hits.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "warm-up ran during init"
    );
    assert!(broken.init_error().is_none());
    assert_eq!(
        call(&mut broken, &sample("connect-jwt-query.json")).await["statusCode"],
        500
    );
    assert!(broken.alive());
    // Without the flag, init touches no storage.
    let (url, hits) = fault_endpoint(Fault::Silent).await;
    let _lazy = spawn_with(
        Some("t"),
        &ep.url,
        &[("AWS_ENDPOINT_URL_DYNAMODB", url.as_str())],
    )
    .await;
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

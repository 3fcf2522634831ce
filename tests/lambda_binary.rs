//! The real `wsexec` binary as a Lambda process: served by a loopback Runtime API, against
//! DynamoDB Local and a loopback `@connections` endpoint.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::dynamodb::*;
use support::runtime_api::{Outcome, Runtime};
use support::*;
use wsexec::store::Store;

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
    let env = function_env(table, connections, extra);
    let mut rt = Runtime::start().await;
    rt.spawn(&binary(), &[], &env, 128);
    rt.wait_init(LIMIT).await;
    rt
}

/// The function's environment: DynamoDB Local, the `@connections` endpoint, the sample secret.
fn function_env(
    table: Option<&str>,
    connections: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
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
    env
}

/// `processes` execution environments of the binary with `RUN_DISPATCH=async`, whose Lambda
/// client invokes the harness's own `Invoke` API.
async fn spawn_async(
    table: &str,
    connections: &str,
    extra: &[(&str, &str)],
    processes: usize,
) -> Runtime {
    let mut rt = Runtime::start().await;
    let lambda = format!("http://{}", rt.addr);
    let mut all = vec![
        ("RUN_DISPATCH", "async"),
        ("AWS_ENDPOINT_URL_LAMBDA", lambda.as_str()),
    ];
    all.extend_from_slice(extra);
    let env = function_env(Some(table), connections, &all);
    for _ in 0..processes {
        rt.spawn(&binary(), &[], &env, 128);
    }
    rt.wait_init(LIMIT).await;
    rt
}

/// Waits (bounded) until `conn` has been pushed an event of type `kind`.
async fn wait_for_event(
    ep: &support::connections::ConnectionsEndpoint,
    conn: &str,
    kind: &str,
    limit: Duration,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let got = ep.delivered(conn);
        if got.iter().any(|e| e["type"] == kind) {
            return got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {kind} within {limit:?}: {:?}",
            types(&got)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The connection id of the sample `$connect` event (`events/connect-jwt-query.json`).
fn sample_connection() -> String {
    sample("connect-jwt-query.json")["requestContext"]["connectionId"]
        .as_str()
        .expect("the sample has a connection id")
        .to_owned()
}

fn start_event(request_id: &str, delay_ms: u64) -> Value {
    let mut e = sample("message-start-agent.json");
    e["body"] = json!(start_frame(request_id, "a long one", Some(delay_ms)).to_string());
    e
}

/// Through the release binary with async dispatch: the `$default` invocation answers at once,
/// a worker invocation of the same function drives a 40 s run with heartbeats, the client
/// gets the five events in order and the run reads `completed`.
#[tokio::test]
async fn a_forty_second_run_through_a_worker_invocation() {
    let store = fresh_store("bin-async").await;
    let ep = support::connections::start().await;
    let mut rt = spawn_async(store.table(), &ep.url, &[("RUN_TIME_LIMIT_MS", "60000")], 2).await;
    let conn = sample_connection();
    assert_eq!(
        call(&mut rt, &sample("connect-jwt-query.json")).await["statusCode"],
        200
    );
    let (out, took) = rt
        .invoke(&start_event("forty", 40_000).to_string(), LIMIT)
        .await;
    assert_eq!(out.json(), json!({"statusCode": 200}));
    assert!(
        took < Duration::from_secs(1),
        "the route answered in {took:?}"
    );
    let events = wait_for_event(&ep, &conn, "agent_completed", Duration::from_secs(60)).await;
    assert_eq!(types(&events), FIVE_EVENTS);
    assert_eq!(rt.async_invocations(), 1);
    let run_id = events[0]["run_id"].as_str().unwrap();
    let run = store
        .get_run("user-alice-01".into(), run_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.state, wsexec::ExecutionState::Completed);
    // Created, claimed, ~12 heartbeats (one per 3.3 s), completed.
    assert!(
        run.version >= 10,
        "version {} shows too few heartbeats",
        run.version
    );
    let mut get = sample("message-get-execution.json");
    get["body"] = json!(json!({"type": "get_execution", "run_id": run_id}).to_string());
    let got = call(&mut rt, &get).await;
    assert!(
        got["body"]
            .as_str()
            .unwrap()
            .contains(r#""state":"completed""#),
        "{got}"
    );
}

/// A worker killed mid-run (its environment stops answering): after the heartbeat deadline
/// the sweep hands the run to a new worker (not `dead`: see `tests/durable_binary.rs`), which
/// completes it; the owner hears no `agent_death`.
#[tokio::test]
async fn a_killed_worker_leaves_its_run_to_the_sweep() {
    let store = fresh_store("bin-kill").await;
    let ep = support::connections::start().await;
    let extra = [
        ("RUN_TIME_LIMIT_MS", "60000"),
        ("HEARTBEAT_DEADLINE_MS", "2000"),
    ];
    let mut rt = spawn_async(store.table(), &ep.url, &extra, 1).await;
    let conn = sample_connection();
    assert_eq!(
        call(&mut rt, &sample("connect-jwt-query.json")).await["statusCode"],
        200
    );
    rt.invoke(&start_event("doomed", 3_000).to_string(), LIMIT)
        .await;
    wait_for_event(&ep, &conn, "tool_executing", Duration::from_secs(20)).await;
    rt.kill_all();
    let mut rt = spawn_async(store.table(), &ep.url, &extra, 1).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let sweep = call(&mut rt, &sample("scheduled-sweep.json")).await;
    assert_eq!(
        (&sweep["dead"], &sweep["continued"]),
        (&json!(0), &json!(1)),
        "{sweep}"
    );
    let events = wait_for_event(&ep, &conn, "agent_completed", Duration::from_secs(20)).await;
    let again = call(&mut rt, &sample("scheduled-sweep.json")).await;
    assert_eq!(
        (&again["dead"], &again["continued"]),
        (&json!(0), &json!(0))
    );
    assert!(!events.iter().any(|e| e["type"] == "agent_death"));
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
    let conn = sample_connection();
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

/// A worker invocation whose storage fails before its claim (DynamoDB answering a throttling
/// body, then a refused port) fails the invocation with `Retryable.Storage` instead of
/// answering success, so Lambda's asynchronous retry can deliver it again; a non-retryable
/// failure (access denied) is `NonRetryable.Storage`. The process keeps serving.
#[tokio::test]
async fn a_worker_whose_storage_fails_before_its_claim_fails_the_invocation() {
    let ep = support::connections::start().await;
    let throttled = Fault::Error {
        status: 400,
        code: "ProvisionedThroughputExceededException",
        extra: "",
    };
    let denied = Fault::Error {
        status: 400,
        code: "AccessDeniedException",
        extra: "",
    };
    let cases = [
        (fault_endpoint(throttled).await.0, "Retryable.Storage"),
        (refused_endpoint(), "Retryable.Storage"),
        (fault_endpoint(denied).await.0, "NonRetryable.Storage"),
    ];
    let worker = json!({"wsexec_worker": {"user_id": "alice-01", "run_id": "run_x1"}});
    for (url, want) in cases {
        let extra = [("AWS_ENDPOINT_URL_DYNAMODB", url.as_str())];
        let mut rt = spawn_with(Some("t-worker"), &ep.url, &extra).await;
        let (out, _) = rt.invoke(&worker.to_string(), LIMIT).await;
        let Outcome::Error { body, .. } = out else {
            panic!("{url}: the worker must fail its invocation, got {out:?}")
        };
        let b: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(b["errorType"], want, "{url}: {body}");
        let ping = call(&mut rt, &sample("message-ping.json")).await;
        assert!(ping["body"].as_str().unwrap().contains("pong"));
        assert!(rt.alive());
    }
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

/// A `$default` event of the sample connection carrying `frame`.
fn message(frame: Value) -> Value {
    let mut e = sample("message-start-agent.json");
    e["body"] = json!(frame.to_string());
    e
}

/// A start whose echo answer is `answer_bytes` long.
fn long_start(request_id: &str, answer_bytes: usize) -> Value {
    message(
        json!({"type": "start_agent", "agent": "echo", "request_id": request_id,
        "payload": {"user_request": "ab\"c é\n", "options": {"answer_bytes": answer_bytes}}}),
    )
}

/// Through the release binary on DynamoDB Local: after 50 runs with 3 KB answers,
/// `list_executions {limit: 50}` replies within API Gateway's 131,072 bytes with fewer runs and
/// a cursor, and following the cursors returns every run exactly once (issue 21, item 1).
#[tokio::test]
async fn a_page_of_long_runs_fits_one_message_and_pages_on() {
    let store = fresh_store("bin-page").await;
    let ep = support::connections::start().await;
    let mut rt = spawn(Some(store.table()), &ep.url).await;
    call(&mut rt, &sample("connect-jwt-query.json")).await;
    for i in 0..50 {
        call(&mut rt, &long_start(&format!("page-{i}"), 3_000)).await;
    }
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let mut frame = json!({"type": "list_executions", "limit": 50});
        if let Some(c) = &cursor {
            frame["cursor"] = json!(c);
        }
        let reply = call(&mut rt, &message(frame)).await;
        let body = reply["body"].as_str().unwrap();
        assert!(body.len() <= 131_072, "a {} byte reply", body.len());
        let page: Value = serde_json::from_str(body).unwrap();
        let items = page["payload"]["items"].as_array().unwrap();
        assert!(
            items
                .iter()
                .all(|r| r["result"]["text"].as_str().unwrap().len() == 3_000)
        );
        seen.extend(
            items
                .iter()
                .map(|r| r["run_id"].as_str().unwrap().to_owned()),
        );
        pages += 1;
        match page["payload"]["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert!(pages >= 2, "one page held 50 runs of 3 KB");
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (50, 50));
}

/// Through the release binary on DynamoDB Local: a 333 KB answer: every push and the
/// `get_execution` reply fit 131,072 bytes, the deltas add up to the answer, and
/// `agent_completed.result` keeps its shape with the text marked cut (issue 21, items 1, 2).
#[tokio::test]
async fn a_long_answer_fits_every_message_and_keeps_its_shape() {
    let store = fresh_store("bin-long").await;
    let ep = support::connections::start().await;
    let mut rt = spawn(Some(store.table()), &ep.url).await;
    let conn = sample_connection();
    call(&mut rt, &sample("connect-jwt-query.json")).await;
    call(&mut rt, &long_start("long", 333_000)).await;
    let events = wait_for_event(&ep, &conn, "agent_completed", LIMIT).await;
    let sizes: Vec<usize> = ep.book.lock().unwrap().delivered[&conn]
        .iter()
        .map(String::len)
        .collect();
    assert!(sizes.iter().all(|s| *s <= 131_072), "{sizes:?}");
    let answer = delta_text(&events);
    assert_eq!(answer.len(), 333_000);
    assert!(answer.starts_with("ab\"c é\nab\"c é\n"));
    let done = events.last().unwrap();
    let result = &done["payload"]["result"];
    assert_eq!(
        (result["truncated"].as_bool(), result["text_bytes"].as_u64()),
        (Some(true), Some(333_000))
    );
    assert!(result["reply"].is_string());
    assert!(answer.starts_with(result["text"].as_str().unwrap()));
    let get = json!({"type": "get_execution", "run_id": done["run_id"]});
    let reply = call(&mut rt, &message(get)).await;
    let body = reply["body"].as_str().unwrap();
    assert!(body.len() <= 131_072, "a {} byte reply", body.len());
    let got: Value = serde_json::from_str(body).unwrap();
    assert_eq!(got["payload"]["result"]["text_bytes"], 333_000);
    assert_eq!(got["payload"]["state"], "completed");
}

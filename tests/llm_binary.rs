//! The `llm` agent on the real model through the release binary: the Lambda process under the
//! loopback Runtime API, DynamoDB Local, a loopback `@connections` endpoint, and llama.cpp's
//! server with SmolLM2-135M behind a recording proxy that passes the answer on at a slow link's
//! speed (so a stream lasts long enough to cancel).

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::connections::ConnectionsEndpoint;
use support::durable::wait_frames;
use support::dynamodb::*;
use support::llm_server::{self, Closed, Pace, Proxy};
use support::runtime_api::Runtime;
use support::*;
use wsexec::store::Store;

/// The real model on two shared cores: a first prompt evaluation, then a short answer.
const LIMIT: Duration = Duration::from_secs(60);

/// The user of the sample JWT in `events/connect-jwt-query.json`.
const USER: &str = "user-alice-01";

/// About one streamed event per 40 ms (llama.cpp's are ~240 bytes): a slow hosted model's pace,
/// so a 48-token answer spans many 100 ms flush windows.
const SLOW_LINK: Pace = Pace {
    bytes: 256,
    every: Duration::from_millis(40),
};

/// The binary under test: `WSEXEC_BIN` (the release build `tools/test` makes) or Cargo's build.
fn binary() -> String {
    std::env::var("WSEXEC_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_wsexec").to_owned())
}

/// `processes` environments of the binary with the `llm` agent on `proxy` (deterministic, no
/// tools, `max_tokens` at most) plus `extra`.
async fn spawn(
    table: &str,
    ep: &ConnectionsEndpoint,
    proxy: &Proxy,
    max_tokens: u32,
    extra: &[(&str, &str)],
    processes: usize,
) -> Runtime {
    let mut rt = Runtime::start().await;
    let lambda = format!("http://{}", rt.addr);
    let max_tokens = max_tokens.to_string();
    let mut all = vec![
        ("LLM_MODEL", "smollm2"),
        ("LLM_TEMPERATURE", "0"),
        ("LLM_TOOLS", "none"),
        ("LLM_MAX_TOKENS", max_tokens.as_str()),
    ];
    all.extend_from_slice(extra);
    let env = llm_binary_env(table, &ep.url, &lambda, &proxy.url, &all);
    for _ in 0..processes {
        rt.spawn(&binary(), &[], &env, 128);
    }
    rt.wait_init(LIMIT).await;
    rt
}

async fn call(rt: &mut Runtime, event: &Value) -> Value {
    rt.invoke(&event.to_string(), LIMIT).await.0.json()
}

/// Connects `USER` (the sample JWT) on a fresh connection id; returns it.
async fn connect(rt: &mut Runtime) -> String {
    let id = aws_id();
    let mut e = sample("connect-jwt-query.json");
    e["requestContext"]["connectionId"] = json!(id);
    assert_eq!(call(rt, &e).await["statusCode"], 200);
    id
}

/// A `start_agent` frame in `thread_id`.
fn ask(request_id: &str, thread_id: &str, text: &str) -> String {
    json!({"type": "start_agent", "request_id": request_id, "thread_id": thread_id,
           "payload": {"user_request": text}})
    .to_string()
}

/// Every `agent_delta` text of `frames`, joined.
fn streamed(frames: &[Value]) -> String {
    frames
        .iter()
        .filter(|f| f["type"] == "agent_delta")
        .map(|f| f["payload"]["text"].as_str().unwrap_or_default())
        .collect()
}

/// Through the binary on the real model: the answer streams as several `agent_delta` events
/// (numbered 1, 2, 3, …) that join to `agent_completed`'s text, and a second message in the
/// same thread sends the model the first turn's question and answer before its own.
#[tokio::test]
async fn a_streamed_answer_then_a_second_turn_that_carries_the_first() {
    let server = llm_server::server();
    let proxy = llm_server::proxy(&server.url, Some(SLOW_LINK)).await;
    let store = fresh_store("bin-llm").await;
    let ep = support::connections::start().await;
    let mut rt = spawn(store.table(), &ep, &proxy, 48, &[], 1).await;
    let conn = connect(&mut rt).await;

    let first = "Name three colors of the rainbow and say where each is seen.";
    let out = call(
        &mut rt,
        &message_event(&conn, &ask("r-1", "t-colors", first)),
    )
    .await;
    assert_eq!(out, json!({"statusCode": 200}));
    let events = ep.delivered(&conn);
    let kinds = types(&events);
    assert_eq!(kinds.first().map(String::as_str), Some("agent_started"));
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("agent_completed"),
        "{kinds:?}"
    );
    let deltas = kinds.iter().filter(|k| *k == "agent_delta").count();
    assert!(deltas >= 3, "only {deltas} deltas: {kinds:?}");
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    let result = &events.last().unwrap()["payload"]["result"];
    let answer = result["text"].as_str().unwrap().to_owned();
    eprintln!("{deltas} deltas: {answer:?}");
    assert!(!answer.trim().is_empty());
    assert_eq!(streamed(&events), answer);
    assert_eq!(result["model"], "smollm2");

    let second = "Now name one more.";
    call(
        &mut rt,
        &message_event(&conn, &ask("r-2", "t-colors", second)),
    )
    .await;
    let all = ep.delivered(&conn);
    assert_eq!(
        all.last().unwrap()["type"],
        "agent_completed",
        "{:?}",
        types(&all)
    );
    let bodies = proxy.bodies();
    assert_eq!(bodies.len(), 2);
    let pair = |role: &str, content: &str| (role.to_owned(), content.to_owned());
    assert_eq!(
        llm_server::turns(&bodies[1]),
        [
            pair("user", first),
            pair("assistant", &answer),
            pair("user", second)
        ]
    );
    assert_eq!(llm_server::turns(&bodies[0]), [pair("user", first)]);
    assert!(rt.alive());
}

/// Through the binary on the real model (async dispatch, so a second environment takes the
/// cancel while the worker streams): `cancel_agent` mid-stream ends the run `cancelled`, the
/// model's connection is closed before its answer ended, and no `agent_delta` follows
/// `agent_cancelled`.
#[tokio::test]
async fn cancel_mid_stream_closes_the_model_connection_and_ends_the_deltas() {
    let server = llm_server::server();
    let mut proxy = llm_server::proxy(&server.url, Some(SLOW_LINK)).await;
    let store = fresh_store("bin-llm-cancel").await;
    let ep = support::connections::start().await;
    // Heartbeats every 200 ms: the driver meets the cancel that soon.
    let extra = [("RUN_DISPATCH", "async"), ("HEARTBEAT_DEADLINE_MS", "600")];
    let mut rt = spawn(store.table(), &ep, &proxy, 400, &extra, 2).await;
    let (owner, other) = (connect(&mut rt).await, connect(&mut rt).await);

    let story = ask("r-story", "t-story", "Write a long story about a dragon.");
    call(&mut rt, &message_event(&owner, &story)).await;
    let delta = |fs: &[Value]| fs.iter().any(|f| f["type"] == "agent_delta");
    let before = wait_frames(&ep, &owner, LIMIT, delta).await;
    let run_id = before[0]["run_id"].as_str().unwrap().to_owned();
    let cancel = json!({"type": "cancel_agent", "run_id": run_id}).to_string();
    let reply = call(&mut rt, &message_event(&other, &cancel)).await;
    let reply: Value = serde_json::from_str(reply["body"].as_str().unwrap()).unwrap();
    assert_eq!(reply["type"], "agent_cancelled", "{reply}");
    let closed = proxy.next_closed(Duration::from_secs(3)).await;
    assert_eq!(
        closed,
        Some(Closed {
            answer_complete: false
        })
    );
    let cancelled = |fs: &[Value]| fs.iter().any(|f| f["type"] == "agent_cancelled");
    let events = wait_frames(&ep, &owner, Duration::from_secs(3), cancelled).await;
    // Anything still in flight would have landed by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events_later = ep.delivered(&owner);
    assert_eq!(
        events_later.len(),
        events.len(),
        "{:?}",
        types(&events_later)
    );
    let kinds = types(&events_later);
    let at = kinds.iter().position(|k| k == "agent_cancelled").unwrap();
    assert_eq!(at, kinds.len() - 1, "{kinds:?}");
    assert!(kinds[..at].iter().any(|k| k == "agent_delta"));
    let run = store.get_run(USER.into(), &run_id).await.unwrap().unwrap();
    assert_eq!(run.state, wsexec::ExecutionState::Cancelled);
    assert!(run.result.is_none());
}

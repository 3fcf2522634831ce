//! Usage recorded on the run: tokens (as the provider reported each round), tool calls and
//! duration persisted by whatever write ends the run (completed, cancelled, timed out, failed),
//! through the driver with the `llm` agent on a scripted loopback model.

#[path = "support/sse.rs"]
mod sse;
mod support;

// `sse.rs` reads requests with `crate::http`: the same reader the other loopback servers use.
use support::http;

use serde_json::{Value, json};
use sse::{ChatServer, Reply, Step, call, done, finish, status, text, usage};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use wsexec::ExecutionState;
use wsexec::llm::LlmAgent;
use wsexec::store::{RunRecord, RunUsage};

/// A round that calls the calculator and reports 10 input and 5 output tokens.
fn tool_round_with_usage() -> Reply {
    Reply::Stream(vec![
        Step::Send(call(
            0,
            Some("c1"),
            Some("calculator"),
            r#"{"expression":"1+1"}"#,
        )),
        Step::Send(finish("tool_calls")),
        Step::Send(usage(10, 5)),
        Step::Send(done()),
    ])
}

/// An answer round reporting 20 input and 7 output tokens.
fn answer_with_usage() -> Reply {
    Reply::Stream(vec![
        Step::Send(text("two")),
        Step::Send(finish("stop")),
        Step::Send(usage(20, 7)),
        Step::Send(done()),
    ])
}

/// A harness whose `llm` agent talks to `server`, runs limited to `limit`.
fn harness(server: &ChatServer, limit: Duration) -> Arc<Harness> {
    let env: HashMap<&str, String> = [
        ("LLM_PROVIDER", "openai".to_owned()),
        ("LLM_MODEL", "test-model".to_owned()),
        ("LLM_BASE_URL", server.url.clone()),
        ("LLM_TOOLS", "calculator".to_owned()),
    ]
    .into_iter()
    .collect();
    let agent = LlmAgent::from_lookup(|k| env.get(k).cloned())
        .unwrap()
        .unwrap();
    let mut config = test_config();
    config.run_time_limit = Some(limit);
    Arc::new(Harness::with_config(config).with_agent("llm", Arc::new(agent)))
}

fn llm_frame(request_id: &str) -> Value {
    json!({"type": "start_agent", "agent": "llm", "request_id": request_id,
           "payload": {"user_request": "what is 1+1?"}})
}

/// Starts an `llm` run on a fresh connection of alice in the background; the connection.
async fn start(h: &Arc<Harness>, request_id: &str) -> String {
    let conn = h.connect("alice-01").await;
    let (h2, c2, frame) = (h.clone(), conn.clone(), llm_frame(request_id));
    tokio::spawn(async move { h2.send_json(&c2, frame).await });
    conn
}

/// Waits (bounded) until `conn` was pushed an event of type `kind`; the frames so far.
async fn wait_for(h: &Harness, conn: &str, kind: &str) -> Vec<Value> {
    for _ in 0..400 {
        let got = h.pushed(conn);
        if got.iter().any(|e| e["type"] == kind) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no {kind}: {:?}", types(&h.pushed(conn)));
}

/// The run of `conn`'s first pushed frame, once terminal.
async fn ended_run(h: &Harness, conn: &str) -> RunRecord {
    let frames = h.pushed(conn);
    let run_id = frames[0]["run_id"].as_str().unwrap().to_owned();
    for _ in 0..400 {
        let run = h.alice_run(&run_id).await;
        if run.state.is_terminal() {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("run {run_id} never ended");
}

/// The tokens of the first (tool) round, its one tool call.
fn first_round_only(u: RunUsage) -> (u64, u64, u64) {
    (u.input_tokens, u.output_tokens, u.tool_calls)
}

/// A completed run records both rounds' tokens, its tool call and its duration, and its
/// `execution` shows them.
#[tokio::test]
async fn a_completed_run_records_every_rounds_tokens_tool_calls_and_duration() {
    let server = ChatServer::start(vec![tool_round_with_usage(), answer_with_usage()]).await;
    let h = harness(&server, Duration::from_secs(10));
    let conn = start(&h, "use-done").await;
    wait_for(&h, &conn, "agent_completed").await;
    let run = ended_run(&h, &conn).await;
    assert_eq!(run.state, ExecutionState::Completed);
    assert_eq!(first_round_only(run.usage), (30, 12, 1));
    assert!(run.usage.duration_ms > 0, "{:?}", run.usage);
    assert_eq!(
        run.usage.duration_ms,
        run.updated_at - run.created_at,
        "duration is the create-to-end time"
    );
    let got = h
        .send_json(
            &conn,
            json!({"type": "get_execution", "run_id": run.run_id}),
        )
        .await
        .unwrap();
    assert_eq!(got["payload"]["usage"]["input_tokens"], 30, "{got}");
    assert_eq!(got["payload"]["usage"]["tool_calls"], 1, "{got}");
}

/// A run cancelled while its second round stalls records what its first round consumed.
#[tokio::test]
async fn a_cancelled_run_records_what_it_consumed_so_far() {
    let server = ChatServer::start(vec![
        tool_round_with_usage(),
        Reply::Stream(vec![Step::Stall]),
    ])
    .await;
    let h = harness(&server, Duration::from_secs(20));
    let conn = start(&h, "use-cancel").await;
    let frames = wait_for(&h, &conn, "tool_completed").await;
    let run_id = frames[0]["run_id"].as_str().unwrap();
    let other = h.connect("alice-01").await;
    let reply = h
        .send_json(&other, json!({"type": "cancel_agent", "run_id": run_id}))
        .await
        .unwrap();
    assert_eq!(reply["type"], "agent_cancelled", "{reply}");
    let run = ended_run(&h, &conn).await;
    assert_eq!(run.state, ExecutionState::Cancelled);
    assert_eq!(first_round_only(run.usage), (10, 5, 1));
    assert!(run.usage.duration_ms > 0);
}

/// A run that times out while its second round stalls records its first round.
#[tokio::test]
async fn a_timed_out_run_records_what_it_consumed_so_far() {
    let server = ChatServer::start(vec![
        tool_round_with_usage(),
        Reply::Stream(vec![Step::Stall]),
    ])
    .await;
    let h = harness(&server, Duration::from_millis(1500));
    let conn = start(&h, "use-timeout").await;
    wait_for(&h, &conn, "agent_error").await;
    let run = ended_run(&h, &conn).await;
    assert_eq!(run.state, ExecutionState::Timeout);
    assert_eq!(first_round_only(run.usage), (10, 5, 1));
    assert!(run.usage.duration_ms >= 1500, "{:?}", run.usage);
}

/// A run whose second round is refused by the provider fails and records its first round.
#[tokio::test]
async fn a_failed_run_records_what_it_consumed_so_far() {
    let refused = status(400, r#"{"error":{"message":"too long"}}"#);
    let server = ChatServer::start(vec![tool_round_with_usage(), refused]).await;
    let h = harness(&server, Duration::from_secs(10));
    let conn = start(&h, "use-failed").await;
    wait_for(&h, &conn, "agent_error").await;
    let run = ended_run(&h, &conn).await;
    assert_eq!(run.state, ExecutionState::Failed);
    assert_eq!(run.error.as_ref().unwrap().code, "llm_invalid");
    assert_eq!(first_round_only(run.usage), (10, 5, 1));
}

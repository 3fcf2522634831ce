//! Tool approval in process (inline dispatch, the handler driven directly) on DynamoDB Local
//! with a scripted Chat Completions endpoint: several calls of one round wait together and the
//! round goes on once all are answered; a round mixing calls that need approval with one that
//! does not runs the latter before it suspends; malformed `approve_tool` frames get typed
//! errors; and the DynamoDB requests of a suspended and resumed run, counted.

#[path = "support/sse.rs"]
mod sse;
mod support;

// `sse.rs` reads requests with `crate::http`: the same reader the other loopback servers use.
use support::http;

use serde_json::{Value, json};
use sse::{ChatServer, Reply, Step, answer, call, done, finish, usage};
use std::collections::HashMap;
use std::sync::Arc;
use support::dynamodb::*;
use support::*;
use wsexec::ExecutionState;
use wsexec::llm::LlmAgent;

/// The `llm` agent on `server` with the built-in tools, `calculator` needing approval.
fn agent(server: &ChatServer) -> LlmAgent {
    let env: HashMap<&str, String> = [
        ("LLM_PROVIDER", "openai".to_owned()),
        ("LLM_MODEL", "test-model".to_owned()),
        ("LLM_BASE_URL", server.url.clone()),
        ("LLM_TOOLS_APPROVAL", "calculator".to_owned()),
    ]
    .into_iter()
    .collect();
    LlmAgent::from_lookup(|k| env.get(k).cloned())
        .unwrap()
        .unwrap()
}

/// A round asking for `calls` (id, name, arguments) at once.
fn asks(calls: &[(&str, &str, &str)]) -> Reply {
    let mut steps: Vec<Step> = calls
        .iter()
        .enumerate()
        .map(|(i, (id, name, args))| Step::Send(call(i as u64, Some(id), Some(name), args)))
        .collect();
    steps.extend([
        Step::Send(finish("tool_calls")),
        Step::Send(usage(10, 2)),
        Step::Send(done()),
    ]);
    Reply::Stream(steps)
}

fn approve_frame(run_id: &str, call_id: &str, approved: bool) -> Value {
    json!({"type": "approve_tool", "request_id": format!("a-{call_id}"), "run_id": run_id,
           "call_id": call_id, "approved": approved})
}

/// Starts `text` on `conn` and returns the run id once it waits for approval.
async fn start_until_waiting(h: &Harness, conn: &str, request_id: &str) -> String {
    let frame = json!({"type": "start_agent", "agent": "llm", "request_id": request_id,
                       "payload": {"user_request": "compute"}});
    assert_eq!(h.send_json(conn, frame).await, None);
    let pushed = h.pushed(conn);
    assert!(
        pushed.iter().any(|f| f["type"] == "tool_approval_required"),
        "{:?}",
        types(&pushed)
    );
    pushed[0]["run_id"].as_str().unwrap().to_owned()
}

/// Two calls of one round need approval: one event each, with consecutive `seq`s; the first
/// answer is recorded with the run still waiting (`continued: false`, nothing asked of the
/// model); the second continues it, and the model's next request carries both results in its
/// own order (the approved one computed, the denied one declined). A third call of the same
/// round that needs no approval ran before the run suspended, once.
#[tokio::test]
async fn several_calls_of_a_round_wait_together_and_go_on_when_all_are_answered() {
    let server = ChatServer::start(vec![
        asks(&[
            ("a", "calculator", r#"{"expression":"2+2"}"#),
            ("b", "current_time", "{}"),
            ("c", "calculator", r#"{"expression":"3*3"}"#),
        ]),
        answer(&["4, and no 9."]),
    ])
    .await;
    let store = Arc::new(fresh_store("approval-several").await);
    let h = Harness::on(test_config(), store).with_agent("llm", Arc::new(agent(&server)));
    let conn = h.connect("alice-01").await;
    let run_id = start_until_waiting(&h, &conn, "several-1").await;
    let pushed = h.pushed(&conn);
    let asked: Vec<&Value> = pushed
        .iter()
        .filter(|f| f["type"] == "tool_approval_required")
        .collect();
    let ids: Vec<&str> = asked
        .iter()
        .map(|f| f["payload"]["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["a", "c"]);
    assert_eq!(
        asked[1]["seq"].as_u64(),
        asked[0]["seq"].as_u64().map(|s| s + 1)
    );
    // The call that needs no approval already ran.
    let executed: Vec<&Value> = pushed
        .iter()
        .filter(|f| f["type"] == "tool_executing")
        .collect();
    assert_eq!(executed.len(), 1);
    assert_eq!(executed[0]["payload"]["tool_name"], "current_time");
    let run = h.alice_run(&run_id).await;
    assert!(run.waiting_approval() && run.state == ExecutionState::Running);

    let first = h
        .send_json(&conn, approve_frame(&run_id, "a", true))
        .await
        .unwrap();
    assert_eq!(first["type"], "approval_accepted", "{first}");
    assert_eq!(
        first["request_id"], "a-a",
        "the reply echoes the answer's request_id"
    );
    assert_eq!(first["payload"]["continued"], false);
    assert!(h.alice_run(&run_id).await.waiting_approval());
    assert_eq!(server.received().len(), 1, "nothing asked of the model yet");

    // The continuation is driven in this invocation: its events are pushed, the reply first.
    assert_eq!(
        h.send_json(&conn, approve_frame(&run_id, "c", false)).await,
        None
    );
    let after = h.pushed(&conn);
    let tail = &after[pushed.len()..];
    assert_eq!(tail[0]["type"], "approval_accepted", "{:?}", types(tail));
    assert_eq!(
        tail[0]["payload"],
        json!({"call_id": "c", "approved": false, "continued": true})
    );
    assert_eq!(
        tail.last().unwrap()["type"],
        "agent_completed",
        "{:?}",
        types(tail)
    );
    let requests = server.received();
    assert_eq!(requests.len(), 2);
    let results: Vec<(String, String)> = requests[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let order: Vec<&str> = results.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(order, vec!["a", "b", "c"]);
    assert!(results[0].1.contains('4'), "{results:?}");
    assert!(results[2].1.contains("declined"), "{results:?}");
    let done = h.alice_run(&run_id).await;
    assert_eq!(done.state, ExecutionState::Completed);
    assert_eq!(done.result.unwrap()["text"], "4, and no 9.");
    // Every seq once, in order, across the suspension.
    let seqs: Vec<u64> = after.iter().filter_map(|f| f["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

/// Malformed answers get typed errors and change nothing: `approved` missing or not a
/// boolean, `call_id` missing, a reason past its size limit; a `cancel_agent` of a waiting run
/// ends it at once (no driver to wait for) and a later answer finds it finished.
#[tokio::test]
async fn malformed_answers_are_refused_and_a_waiting_run_cancels_at_once() {
    let server =
        ChatServer::start(vec![asks(&[("a", "calculator", r#"{"expression":"1"}"#)])]).await;
    let store = Arc::new(fresh_store("approval-bad").await);
    let h = Harness::on(test_config(), store).with_agent("llm", Arc::new(agent(&server)));
    let conn = h.connect("alice-01").await;
    let run_id = start_until_waiting(&h, &conn, "bad-1").await;
    let before = h.alice_run(&run_id).await;
    let cases = [
        (
            json!({"type": "approve_tool", "run_id": run_id, "call_id": "a"}),
            "missing_field",
        ),
        (
            json!({"type": "approve_tool", "run_id": run_id, "call_id": "a", "approved": "yes"}),
            "invalid_field",
        ),
        (
            json!({"type": "approve_tool", "run_id": run_id, "approved": true}),
            "missing_field",
        ),
        (
            json!({"type": "approve_tool", "run_id": run_id, "call_id": "a", "approved": true,
                "reason": "x".repeat(3000)}),
            "field_too_large",
        ),
        (
            json!({"type": "approve_tool", "run_id": "../etc", "call_id": "a", "approved": true}),
            "invalid_id",
        ),
    ];
    for (frame, code) in cases {
        let reply = h.send_json(&conn, frame.clone()).await.unwrap();
        assert_eq!(reply["type"], "error", "{frame}: {reply}");
        assert_eq!(reply["payload"]["code"], code, "{frame}: {reply}");
    }
    assert_eq!(h.alice_run(&run_id).await, before, "nothing changed");
    // The connection is still usable.
    let pong = h.send_json(&conn, json!({"type": "ping"})).await.unwrap();
    assert_eq!(pong["type"], "pong");

    let started = std::time::Instant::now();
    let cancel = json!({"type": "cancel_agent", "run_id": run_id});
    let reply = h.send_json(&conn, cancel).await.unwrap();
    assert_eq!(reply["type"], "agent_cancelled", "{reply}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let late = h
        .send_json(&conn, approve_frame(&run_id, "a", true))
        .await
        .unwrap();
    assert_eq!(late["payload"]["code"], "run_finished", "{late}");
    assert_eq!(server.received().len(), 1);
}

/// The DynamoDB requests of a run suspended for one approval and resumed by the answer, inline,
/// counted on DynamoDB Local (the README's table): the start up to the suspension, the answer
/// with the continuation it drives.
#[tokio::test]
async fn requests_of_a_suspended_and_resumed_run_are_counted() {
    let server = ChatServer::start(vec![
        asks(&[("a", "calculator", r#"{"expression":"6*7"}"#)]),
        answer(&["42."]),
    ])
    .await;
    let store = Arc::new(fresh_store("approval-count").await);
    let counter = store.requests();
    let h = Harness::on(test_config(), store).with_agent("llm", Arc::new(agent(&server)));
    let conn = h.connect("alice-01").await;
    let before = counter.get();
    let run_id = start_until_waiting(&h, &conn, "count-1").await;
    let suspended = counter.get() - before;
    let before = counter.get();
    assert_eq!(
        h.send_json(&conn, approve_frame(&run_id, "a", true)).await,
        None
    );
    let resumed = counter.get() - before;
    assert_eq!(h.alice_run(&run_id).await.state, ExecutionState::Completed);
    eprintln!("requests: start to suspension {suspended}, answer to the end {resumed}");
    // Start: create, thread history, the round's step, the suspension write.
    // Answer: read, the answer write; continuation: read, claim, journal, history, the
    // terminal write (an inline run journals its later steps only if it suspends again).
    assert_eq!((suspended, resumed), (4, 7));
}

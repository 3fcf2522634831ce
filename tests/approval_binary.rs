//! Tool approval through the release binary (the Lambda process under the loopback Runtime API,
//! DynamoDB Local, a loopback `@connections` endpoint, a scripted Chat Completions model,
//! `RUN_DISPATCH=async`, `LLM_TOOLS_APPROVAL=calculator`): a round that asks for a tool that
//! needs approval suspends the run and its invocation returns; the answer, sent on a new
//! connection to a new environment, continues it exactly once; a denial reaches the model; an
//! unanswered approval ends the run at its deadline, once.

#[path = "support/sse.rs"]
mod sse;
mod support;

// `sse.rs` reads requests with `crate::http`: the same reader the other loopback servers use.
use support::{http, jwt};

use serde_json::{Value, json};
use sse::{ChatServer, Reply, Step, answer, call, done, finish, usage};
use std::time::{Duration, Instant};
use support::durable::*;
use support::dynamodb::*;
use support::*;
use wsexec::store::Store;

/// The settings every test here runs with: the calculator needs approval.
const APPROVAL: (&str, &str) = ("LLM_TOOLS_APPROVAL", "calculator");

/// A round that asks for the calculator (`6*7`), call id `c1`.
fn asks_calculator() -> Reply {
    Reply::Stream(vec![
        Step::Send(call(
            0,
            Some("c1"),
            Some("calculator"),
            r#"{"expression":"6*7"}"#,
        )),
        Step::Send(finish("tool_calls")),
        Step::Send(usage(11, 3)),
        Step::Send(done()),
    ])
}

/// `approve_tool` sent on `conn`; the route's reply frame.
async fn approve(
    rt: &support::runtime_api::Runtime,
    conn: &str,
    run_id: &str,
    approved: bool,
    reason: Option<&str>,
) -> Value {
    let mut frame = json!({"type": "approve_tool", "request_id": aws_id(), "run_id": run_id,
                           "call_id": "c1", "approved": approved});
    if let Some(r) = reason {
        frame["reason"] = json!(r);
    }
    let out = call_json(rt, &message_event(conn, &frame.to_string())).await;
    assert_eq!(out["statusCode"], 200, "{out}");
    serde_json::from_str(out["body"].as_str().unwrap_or("null")).unwrap()
}

/// Connects a user other than [`USER`] (an HS256 token with the sample secret).
async fn connect_other(rt: &support::runtime_api::Runtime, user: &str) -> String {
    let id = aws_id();
    let token = jwt::token(json!({"sub": user, "exp": 4102444800u64}), SAMPLE_SECRET);
    let mut e = sample("connect-jwt-query.json");
    e["requestContext"]["connectionId"] = json!(id);
    e["queryStringParameters"]["token"] = json!(token);
    e["multiValueQueryStringParameters"]["token"] = json!([token]);
    assert_eq!(call_json(rt, &e).await["statusCode"], 200);
    id
}

/// The must-show of issue 24: the first round asks for the calculator, which needs approval.
/// The run pushes `tool_approval_required` and its worker invocation returns within a second;
/// the environment is then gone and nothing runs. `approve_tool` on a new connection of the
/// same user, served by a new environment, continues the run once; it completes. The model was
/// asked the first round once, the tool ran once (one `tool_executing`, one journaled result,
/// which the second request carries), and every `seq` arrives once, in order.
#[tokio::test]
async fn an_approved_call_continues_the_suspended_run_in_a_new_environment() {
    let store = fresh_store("approval-approve").await;
    let ep = support::connections::start().await;
    let model = ChatServer::start(vec![asks_calculator(), answer(&["It is 42."])]).await;
    let mut rt = spawn_with(store.table(), &ep, &model.url, 1, &[APPROVAL]).await;
    let conn = connect(&rt).await;
    start(
        &rt,
        &conn,
        "approve-1",
        "llm",
        json!({"user_request": "What is 6*7?"}),
    )
    .await;
    let frames = until(&ep, &conn, "tool_approval_required", 1).await;
    let asked = frames.last().unwrap();
    assert_eq!(asked["payload"]["call_id"], "c1", "{asked}");
    assert_eq!(asked["payload"]["tool_name"], "calculator");
    assert_eq!(asked["payload"]["parameters"], json!({"expression": "6*7"}));
    assert!(asked["payload"]["expires_at"].is_string(), "{asked}");
    // The driving invocation returned: within a second of the event.
    let pushed_at = ep
        .delivered_at(&conn)
        .into_iter()
        .find(|(_, f)| f["type"] == "tool_approval_required")
        .map(|(t, _)| t)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while rt.async_ended_at().is_empty() {
        assert!(Instant::now() < deadline, "the worker never returned");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let returned = rt.async_ended_at()[0].saturating_duration_since(pushed_at);
    eprintln!("worker returned {returned:?} after tool_approval_required");
    assert!(returned < Duration::from_secs(1), "{returned:?}");
    assert_eq!(rt.async_outcomes()[0].json()["outcome"], "drove");
    let run = the_run(&store, &frames).await;
    assert_eq!(run.state, wsexec::ExecutionState::Running);
    assert!(
        run.waiting_approval() && run.claimed_by.is_none(),
        "{run:?}"
    );
    // The user thinks; the environment is reclaimed; nothing runs meanwhile.
    rt.kill_all();
    drop(rt);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(model.received().len(), 1);

    let rt = spawn_with(store.table(), &ep, &model.url, 1, &[APPROVAL]).await;
    let conn2 = connect(&rt).await;
    // The new connection sees what the run waits for.
    let get = json!({"type": "get_execution", "run_id": run.run_id});
    let got = call_json(&rt, &message_event(&conn2, &get.to_string())).await;
    let view: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
    assert_eq!(view["payload"]["state"], "running", "{view}");
    assert_eq!(
        view["payload"]["awaiting"]["calls"][0]["call_id"], "c1",
        "{view}"
    );
    let reply = approve(&rt, &conn2, &run.run_id, true, None).await;
    assert_eq!(reply["type"], "approval_accepted", "{reply}");
    assert_eq!(
        reply["payload"],
        json!({"call_id": "c1", "approved": true, "continued": true})
    );
    let later = until(&ep, &conn2, "agent_completed", 1).await;
    let all = until(&ep, &conn, "agent_completed", 1).await;

    let requests = model.received();
    assert_eq!(requests.len(), 2, "the first round was asked once");
    let second = requests[1].body["messages"].as_array().unwrap().clone();
    let result = second
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("a tool result");
    assert!(
        result["content"].as_str().unwrap().contains("42"),
        "{result}"
    );
    let kinds = types(&all);
    let count = |k: &str| kinds.iter().filter(|t| *t == k).count();
    assert_eq!(
        (count("tool_executing"), count("tool_completed")),
        (1, 1),
        "{kinds:?}"
    );
    assert_eq!(count("agent_started"), 1);
    let usage = json!({"input_tokens": 21, "output_tokens": 4});
    let done = completed_run(&store, &all, "It is 42.", usage).await;
    assert_seq_once_in_order(&all);
    assert_eq!((done.continuations, done.recoveries), (1, 0));
    let steps = store.steps(USER.into(), &done.run_id).await.unwrap();
    let tools = steps.iter().filter(|s| s.body["kind"] == "tool").count();
    assert_eq!(tools, 1, "the tool ran once");
    // The tool's events name the call the approval named.
    let executing = all.iter().find(|f| f["type"] == "tool_executing").unwrap();
    assert_eq!(executing["payload"]["call_id"], "c1", "{executing}");
    let completed = all.iter().find(|f| f["type"] == "tool_completed").unwrap();
    assert_eq!(completed["payload"]["call_id"], "c1", "{completed}");
    // The approving connection heard the rest of the run, the tool's result included.
    assert!(
        types(&later).contains(&"tool_completed".to_owned()),
        "{:?}",
        types(&later)
    );
}

/// A denial: the model's next request carries a result saying the user declined (with the
/// reason), the tool never runs, and the run completes with the model's answer.
#[tokio::test]
async fn a_denied_call_tells_the_model_and_the_run_completes() {
    let store = fresh_store("approval-deny").await;
    let ep = support::connections::start().await;
    let model = ChatServer::start(vec![asks_calculator(), answer(&["Fine, no maths."])]).await;
    let rt = spawn_with(store.table(), &ep, &model.url, 1, &[APPROVAL]).await;
    let conn = connect(&rt).await;
    start(
        &rt,
        &conn,
        "deny-1",
        "llm",
        json!({"user_request": "What is 6*7?"}),
    )
    .await;
    let frames = until(&ep, &conn, "tool_approval_required", 1).await;
    let run = the_run(&store, &frames).await;
    let reply = approve(&rt, &conn, &run.run_id, false, Some("not now")).await;
    assert_eq!(reply["payload"]["continued"], true, "{reply}");
    let all = until(&ep, &conn, "agent_completed", 1).await;
    let requests = model.received();
    assert_eq!(requests.len(), 2);
    let second = requests[1].body["messages"].as_array().unwrap().clone();
    let result = second
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("a tool result");
    let content = result["content"].as_str().unwrap();
    assert!(
        content.contains("declined") && content.contains("not now"),
        "{content}"
    );
    let kinds = types(&all);
    assert!(!kinds.contains(&"tool_executing".to_owned()), "{kinds:?}");
    completed_with(&all, "Fine, no maths.");
    assert_seq_once_in_order(&all);
}

/// Two approvals of the same call at once (two connections, two environments): one records it
/// and continues the run, the other gets `already_answered`; one continuation, one worker. An
/// approval by another user, or of an unknown call id, is `not_found` and changes nothing.
#[tokio::test]
async fn concurrent_approvals_continue_once_and_strangers_are_not_found() {
    let store = fresh_store("approval-race").await;
    let ep = support::connections::start().await;
    let model = ChatServer::start(vec![asks_calculator(), answer(&["42."])]).await;
    let rt = spawn_with(store.table(), &ep, &model.url, 3, &[APPROVAL]).await;
    let conn = connect(&rt).await;
    start(&rt, &conn, "race-1", "llm", json!({"user_request": "6*7?"})).await;
    let frames = until(&ep, &conn, "tool_approval_required", 1).await;
    let run = the_run(&store, &frames).await;

    let mallory = connect_other(&rt, "user-mallory-02").await;
    let stranger = approve(&rt, &mallory, &run.run_id, true, None).await;
    assert_eq!(stranger["payload"]["code"], "not_found", "{stranger}");
    let mut unknown = json!({"type": "approve_tool", "run_id": run.run_id, "call_id": "nope",
                             "approved": true});
    unknown["request_id"] = json!("unknown-call");
    let out = call_json(&rt, &message_event(&conn, &unknown.to_string())).await;
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["payload"]["code"], "not_found", "{body}");
    let unchanged = the_run(&store, &frames).await;
    assert_eq!(unchanged.version, run.version, "nothing changed");

    let tab2 = connect(&rt).await;
    let (a, b) = tokio::join!(
        approve(&rt, &conn, &run.run_id, true, None),
        approve(&rt, &tab2, &run.run_id, true, None)
    );
    let replies = [a, b];
    let accepted = replies
        .iter()
        .filter(|r| r["type"] == "approval_accepted")
        .count();
    let answered = replies
        .iter()
        .filter(|r| r["payload"]["code"] == "already_answered")
        .count();
    assert_eq!((accepted, answered), (1, 1), "{replies:?}");
    let all = until(&ep, &conn, "agent_completed", 1).await;
    completed_with(&all, "42.");
    let done = the_run(&store, &all).await;
    assert_eq!(done.continuations, 1);
    // The start's worker and the one continuation: no other.
    assert_eq!(rt.async_invocations(), 2);
    assert_eq!(model.received().len(), 2);
}

/// Nobody answers: at `APPROVAL_TIMEOUT_MS` the sweep ends the run `timeout` with
/// `approval_timeout`, and the owner hears it once; the tool never ran; a late answer finds the
/// run finished.
#[tokio::test]
async fn an_unanswered_approval_ends_the_run_at_its_deadline_once() {
    let store = fresh_store("approval-timeout").await;
    let ep = support::connections::start().await;
    let model = ChatServer::start(vec![asks_calculator()]).await;
    let extra = [APPROVAL, ("APPROVAL_TIMEOUT_MS", "1500")];
    let rt = spawn_with(store.table(), &ep, &model.url, 1, &extra).await;
    let conn = connect(&rt).await;
    start(
        &rt,
        &conn,
        "timeout-1",
        "llm",
        json!({"user_request": "6*7?"}),
    )
    .await;
    let frames = until(&ep, &conn, "tool_approval_required", 1).await;
    let run = the_run(&store, &frames).await;
    // Before the deadline the sweep leaves it waiting (no heartbeat is expected).
    let early = call_json(&rt, &sample("scheduled-sweep.json")).await;
    assert_eq!(
        (&early["timed_out"], &early["dead"], &early["continued"]),
        (&json!(0), &json!(0), &json!(0)),
        "{early}"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let report = sweep_until(&rt, "timed_out").await;
    assert_eq!(
        (&report["dead"], &report["continued"]),
        (&json!(0), &json!(0))
    );
    let again = call_json(&rt, &sample("scheduled-sweep.json")).await;
    assert_eq!(again["timed_out"], 0, "{again}");
    let all = until(&ep, &conn, "agent_error", 1).await;
    let errors: Vec<&Value> = all.iter().filter(|f| f["type"] == "agent_error").collect();
    assert_eq!(errors.len(), 1, "{:?}", types(&all));
    assert_eq!(errors[0]["payload"]["code"], "approval_timeout");
    let ended = the_run(&store, &frames).await;
    assert_eq!(ended.state, wsexec::ExecutionState::Timeout);
    assert_eq!(ended.error.unwrap().code, "approval_timeout");
    let late = approve(&rt, &conn, &run.run_id, true, None).await;
    assert_eq!(late["payload"]["code"], "run_finished", "{late}");
    assert_eq!(model.received().len(), 1);
    assert!(!types(&all).contains(&"tool_executing".to_owned()));
}

//! Hand-offs through the release binary (the Lambda process under the loopback Runtime API,
//! DynamoDB Local, a loopback `@connections` endpoint, a scripted Chat Completions endpoint):
//! a run longer than its worker invocation goes on in the next one, handed off before the
//! invocation's deadline, with one stream for the client.

#[path = "support/sse.rs"]
mod sse;
mod support;

// `sse.rs` reads requests with `crate::http`: the same reader the other loopback servers use.
use support::http;

use serde_json::{Value, json};
use sse::{ChatServer, Reply, Step, call, done, finish, text, usage};
use std::time::Duration;
use support::durable::*;
use support::dynamodb::*;
use support::*;

/// A model round of about `secs` seconds: some text, a pause, then a call of `current_time`
/// (a built-in, so the test needs no tool server).
fn tool_round(n: u32, secs: u64) -> Reply {
    let id = format!("call-{n}");
    Reply::Stream(vec![
        Step::Send(text(&format!("Step {n}, "))),
        Step::Sleep(Duration::from_secs(secs)),
        Step::Send(call(0, Some(&id), Some("current_time"), "{}")),
        Step::Send(finish("tool_calls")),
        Step::Send(usage(10, 2)),
        Step::Send(done()),
    ])
}

/// The answering round of about `secs` seconds.
fn answer_round(secs: u64) -> Reply {
    Reply::Stream(vec![
        Step::Send(text("Done ")),
        Step::Sleep(Duration::from_secs(secs)),
        Step::Send(text("at last.")),
        Step::Send(finish("stop")),
        Step::Send(usage(10, 3)),
        Step::Send(done()),
    ])
}

/// Four rounds of about `secs` seconds each: three call a tool, the fourth answers
/// "Done at last." (40 input and 9 output tokens in all).
fn four_rounds(secs: u64) -> Vec<Reply> {
    let mut rounds: Vec<Reply> = (1..=3).map(|n| tool_round(n, secs)).collect();
    rounds.push(answer_round(secs));
    rounds
}

/// A must-show of issue 23: four model rounds of about 5 s each (a tool call
/// between) under a 12 s invocation deadline complete through continuations. Each worker
/// hands the run off at a safe point before its deadline (no invocation answers late), so no
/// round is requested twice and no text is withdrawn as `redo`; the continuation replays the
/// journal (the tool results the next rounds carry are the journaled ones); every `seq`
/// arrives once, in order, with no gap; the kept text equals `result.text`; hand-offs are not
/// recoveries.
#[tokio::test]
async fn a_run_longer_than_its_invocation_completes_through_hand_offs() {
    let store = fresh_store("handoff-long").await;
    let ep = support::connections::start().await;
    let model = ChatServer::start(four_rounds(5)).await;
    let extra = [("HANDOFF_MARGIN_MS", "1000")];
    let rt = spawn_with(store.table(), &ep, &model.url, 1, &extra).await;
    rt.set_async_timeout(12_000);
    let conn = connect(&rt).await;
    let payload = json!({"user_request": "Four steps, please."});
    start(&rt, &conn, "handoff-1", "llm", payload).await;
    let frames = until(&ep, &conn, "agent_completed", 1).await;

    let requests = model.received();
    assert_eq!(requests.len(), 4, "each round requested once");
    let messages = |i: usize| requests[i].body["messages"].as_array().unwrap().clone();
    for (i, r) in requests.iter().enumerate() {
        let n = r.body["messages"].as_array().unwrap().len();
        assert_eq!(n, 1 + 2 * i, "round {} carries every earlier round", i + 1);
    }
    // Rounds 3 and 4 ran in another invocation: the earlier rounds and tool results they carry
    // came from the journal, exactly as the first invocation had them.
    assert_eq!(messages(2)[..3], messages(1)[..3]);
    assert_eq!(messages(3)[..5], messages(2)[..5]);

    let kinds = types(&frames);
    let count = |k: &str| kinds.iter().filter(|t| *t == k).count();
    assert_eq!((count("agent_started"), count("agent_completed")), (1, 1));
    assert_eq!((count("tool_executing"), count("tool_completed")), (3, 3));
    let redone = frames
        .iter()
        .filter(|f| f["type"] == "agent_text_discarded" && f["payload"]["reason"] == "redo")
        .count();
    assert_eq!(redone, 0, "{kinds:?}");
    let usage = json!({"input_tokens": 40, "output_tokens": 9});
    let run = completed_run(&store, &frames, "Done at last.", usage).await;
    assert_seq_gapless(&frames);
    assert!(run.continuations >= 1, "{run:?}");
    assert_eq!(run.recoveries, 0, "a hand-off is not a recovery");
    assert_eq!(rt.async_invocations(), 1 + run.continuations);
    assert_eq!(
        rt.late_invocations(),
        0,
        "every invocation ended before its deadline"
    );
    let outcomes: Vec<Value> = rt.async_outcomes().iter().map(|o| o.json()).collect();
    assert!(
        outcomes.iter().all(|o| o["outcome"] == "drove"),
        "{outcomes:?}"
    );
}

/// A round still streaming at the hand-off time (its invocation's deadline less the margin) is
/// cut: the run is handed off there, and the continuation requests that round again after
/// withdrawing its text (`agent_text_discarded` `redo`), as after a worker's death; the round
/// before it and its tool call are not done again; the kept text equals `result.text`, and
/// the continuation's stream follows with no gap.
#[tokio::test]
async fn a_round_still_going_at_the_deadline_is_cut_and_redone() {
    let store = fresh_store("handoff-cut").await;
    let ep = support::connections::start().await;
    let cut = Reply::Stream(vec![
        Step::Send(text("Half an ")),
        Step::Sleep(Duration::from_secs(60)),
        Step::Send(text("never sent")),
    ]);
    let model = ChatServer::start(vec![tool_round(1, 0), cut, answer_round(0)]).await;
    let extra = [("HANDOFF_MARGIN_MS", "1000")];
    let rt = spawn_with(store.table(), &ep, &model.url, 1, &extra).await;
    rt.set_async_timeout(5_000);
    let conn = connect(&rt).await;
    start(
        &rt,
        &conn,
        "cut-1",
        "llm",
        json!({"user_request": "Two steps."}),
    )
    .await;
    let frames = until(&ep, &conn, "agent_completed", 1).await;

    let requests = model.received();
    assert_eq!(requests.len(), 3, "round 1 once, round 2 twice");
    let messages = |i: usize| requests[i].body["messages"].clone();
    assert_eq!(
        messages(1),
        messages(2),
        "the tool result came from the journal"
    );
    let kinds = types(&frames);
    let count = |k: &str| kinds.iter().filter(|t| *t == k).count();
    assert_eq!((count("tool_executing"), count("tool_completed")), (1, 1));
    assert!(
        frames.iter().any(|f| f["type"] == "agent_text_discarded"
            && f["payload"] == json!({"round": 2, "reason": "redo"})),
        "{kinds:?}"
    );
    completed_with(&frames, "Done at last.");
    assert_seq_gapless(&frames);
    let run = the_run(&store, &frames).await;
    assert_eq!(run.state, wsexec::ExecutionState::Completed);
    assert_eq!((run.continuations, run.recoveries), (1, 0));
    assert_eq!(rt.late_invocations(), 0);
}

/// Sends the environment SIGTERM and asserts it exited within the shutdown window.
async fn sigterm(rt: &mut support::runtime_api::Runtime) {
    let took = rt.sigterm(Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
}

/// On Managed Instances (`AWS_LAMBDA_MAX_CONCURRENCY`) with async dispatch: starts an echo run
/// whose tool step takes 3 s, and `kill -TERM`s its environment mid-step with asynchronous
/// invocations held (so the continuation waits for another environment); asserts the process
/// exited within the shutdown window. Returns the runtime and the connection.
async fn sigterm_mid_step(
    table: &str,
    ep: &support::connections::ConnectionsEndpoint,
    model: &str,
    request_id: &str,
) -> (support::runtime_api::Runtime, String) {
    let extra = [("AWS_LAMBDA_MAX_CONCURRENCY", "4")];
    let mut rt = spawn_with(table, ep, model, 1, &extra).await;
    let conn = connect(&rt).await;
    let payload = json!({"user_request": "shut down", "delay_ms": 3_000});
    start(&rt, &conn, request_id, "echo", payload).await;
    until(ep, &conn, "tool_executing", 1).await;
    // The continuation must go to another environment: it waits until this one is gone.
    rt.hold_async(true);
    sigterm(&mut rt).await;
    (rt, conn)
}

/// SIGTERM hand-off (issue 23 item 2): on Managed Instances with async dispatch, a run in
/// flight when its environment gets SIGTERM is handed to a continuation (one write, one
/// `Invoke`, within the shutdown window) instead of failing `instance_shutdown`; another
/// environment continues it and it completes, the client hearing one stream with no error,
/// every `seq` once in order. The hand-off counts as a recovery (the graceful form of a lost
/// instance).
#[tokio::test]
async fn sigterm_hands_an_in_flight_run_to_another_environment() {
    let store = fresh_store("handoff-term").await;
    let ep = support::connections::start().await;
    let model = ChatServer::start(vec![]).await;
    let (mut rt, conn) = sigterm_mid_step(store.table(), &ep, &model.url, "term-h1").await;
    let frames = ep.delivered(&conn);
    assert!(
        frames.iter().all(|f| f["type"] != "agent_error"),
        "{:?}",
        types(&frames)
    );
    let run = the_run(&store, &frames).await;
    assert_eq!(run.state, wsexec::ExecutionState::Running);
    assert_eq!((run.continuations, run.recoveries), (1, 1));
    assert_eq!(run.claimed_by, None, "released for the continuation");
    assert_eq!(
        rt.async_invocations(),
        2,
        "the first worker and the continuation"
    );

    // Another environment like the first one takes the held continuation.
    rt.respawn();
    rt.hold_async(false);
    let frames = until(&ep, &conn, "agent_completed", 1).await;
    let kinds = types(&frames);
    let count = |k: &str| kinds.iter().filter(|t| *t == k).count();
    assert_eq!((count("agent_started"), count("agent_completed")), (1, 1));
    // The step in flight at SIGTERM is done again by the continuation.
    assert_eq!((count("tool_executing"), count("tool_completed")), (2, 1));
    assert_eq!(count("agent_error"), 0, "{kinds:?}");
    assert_seq_gapless(&frames);
    let run = the_run(&store, &frames).await;
    assert_eq!(run.state, wsexec::ExecutionState::Completed);
}

/// The fallback: when the hand-off at SIGTERM cannot be made (here `Invoke` is refused), the
/// run fails `instance_shutdown` (retryable) with a terminal write and its client is told, as
/// without durable runs.
#[tokio::test]
async fn sigterm_without_a_continuation_ends_the_run_instance_shutdown() {
    let store = fresh_store("handoff-term-fail").await;
    let ep = support::connections::start().await;
    let model = ChatServer::start(vec![]).await;
    let extra = [("AWS_LAMBDA_MAX_CONCURRENCY", "4")];
    let mut rt = spawn_with(store.table(), &ep, &model.url, 1, &extra).await;
    let conn = connect(&rt).await;
    let payload = json!({"user_request": "shut down", "delay_ms": 3_000});
    start(&rt, &conn, "term-f1", "echo", payload).await;
    until(&ep, &conn, "tool_executing", 1).await;
    rt.fail_invokes(Some((403, "AccessDeniedException")));
    sigterm(&mut rt).await;
    let frames = ep.delivered(&conn);
    let last = frames.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["payload"]["code"].as_str()),
        (Some("agent_error"), Some("instance_shutdown")),
        "{:?}",
        types(&frames)
    );
    assert_eq!(last["payload"]["retryable"], true);
    assert_seq_gapless(&frames);
    let run = the_run(&store, &frames).await;
    assert_eq!(run.state, wsexec::ExecutionState::Failed);
    assert_eq!(run.error.unwrap().code, "instance_shutdown");
}

/// `RUN_DISPATCH=auto`, a short answer: the route drives the run itself, and the function
/// never invokes itself (no `Invoke` reaches the harness).
#[tokio::test]
async fn auto_dispatch_answers_a_short_run_inline_without_an_invoke() {
    let store = fresh_store("auto-short").await;
    let ep = support::connections::start().await;
    let model = ChatServer::start(vec![answer_round(0)]).await;
    let rt = spawn_with(
        store.table(),
        &ep,
        &model.url,
        1,
        &[("RUN_DISPATCH", "auto")],
    )
    .await;
    let conn = connect(&rt).await;
    start(
        &rt,
        &conn,
        "auto-s1",
        "llm",
        json!({"user_request": "Quick."}),
    )
    .await;
    // The route returned after the run: its events are all out.
    let frames = ep.delivered(&conn);
    let usage = json!({"input_tokens": 10, "output_tokens": 3});
    let run = completed_run(&store, &frames, "Done at last.", usage).await;
    assert_seq_gapless(&frames);
    assert_eq!(rt.async_invocations(), 0, "no Invoke for a short answer");
    assert_eq!(run.continuations, 0);
}

/// `RUN_DISPATCH=auto`, a long run (the route's limit lowered to 6 s for the test, the margin
/// to 1 s): the route drives it until the next round would not fit before its limit, hands it
/// to a worker (one `Invoke`) and returns in time; the worker completes it from the journal,
/// each round requested once, one stream for the client.
#[tokio::test]
async fn auto_dispatch_hands_a_long_run_to_a_worker_before_the_route_limit() {
    let store = fresh_store("auto-long").await;
    let ep = support::connections::start().await;
    let model = ChatServer::start(four_rounds(2)).await;
    let extra = [
        ("RUN_DISPATCH", "auto"),
        ("ROUTE_TIME_LIMIT_MS", "6000"),
        ("HANDOFF_MARGIN_MS", "1000"),
    ];
    let rt = spawn_with(store.table(), &ep, &model.url, 1, &extra).await;
    let conn = connect(&rt).await;
    let frame = json!({"type": "start_agent", "request_id": "auto-l1", "agent": "llm",
                       "payload": {"user_request": "Four steps."}});
    let event = message_event(&conn, &frame.to_string()).to_string();
    let (out, took) = rt.invoke(&event, LIMIT).await;
    assert_eq!(out.json()["statusCode"], 200);
    assert!(took < Duration::from_secs(6), "the route took {took:?}");
    let frames = until(&ep, &conn, "agent_completed", 1).await;

    assert_eq!(model.received().len(), 4, "each round requested once");
    let usage = json!({"input_tokens": 40, "output_tokens": 9});
    let run = completed_run(&store, &frames, "Done at last.", usage).await;
    assert_seq_gapless(&frames);
    assert_eq!(rt.async_invocations(), 1, "one hand-off");
    assert_eq!((run.continuations, run.recoveries), (1, 0));
    let kinds = types(&frames);
    let count = |k: &str| kinds.iter().filter(|t| *t == k).count();
    assert_eq!((count("agent_started"), count("tool_completed")), (1, 3));
}

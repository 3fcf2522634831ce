//! Durable runs through the release binary (the Lambda process under the loopback Runtime API,
//! DynamoDB Local, a loopback `@connections` endpoint, `RUN_DISPATCH=async`): a worker killed
//! with `kill -9` is continued from the run's step journal in a fresh environment, a worker
//! that dies every time ends `dead` after `MAX_CONTINUATIONS`, and duplicate deliveries of a
//! continuation drive it once.

#[path = "support/sse.rs"]
mod sse;
mod support;

// `sse.rs` reads requests with `crate::http`: the same reader the other loopback servers use.
use support::http;

use serde_json::{Value, json};
use sse::{ChatServer, Reply, Step, call, done, finish, text, usage};
use std::time::{Duration, Instant};
use support::durable::*;
use support::dynamodb::*;
use support::*;
use wsexec::run::recover::MAX_CONTINUATIONS;

/// The must-show of issue 23: a run whose first round calls a tool, killed (`kill -9` of its
/// environment) during its second model round, is continued by the sweep in a fresh
/// environment and completes; the first round was requested once, the tool ran once (its
/// journaled result is what both second-round requests carry), the second round twice; the
/// interrupted round's text is withdrawn (`redo`), the client's kept text equals `result.text`,
/// every `seq` arrives once and in order, and `get_execution` shows the continuation.
#[tokio::test]
async fn a_worker_killed_mid_round_is_continued_from_its_journal() {
    let store = fresh_store("durable-kill").await;
    let ep = support::connections::start().await;
    let round1 = Reply::Stream(vec![
        Step::Send(call(0, Some("t1"), Some("current_time"), "{}")),
        Step::Send(finish("tool_calls")),
        Step::Send(usage(11, 3)),
        Step::Send(done()),
    ]);
    // Killed while it streams: it never ends.
    let round2_cut = Reply::Stream(vec![
        Step::Send(text("The time is ")),
        Step::Sleep(Duration::from_secs(120)),
        Step::Send(text("never sent")),
    ]);
    let round2 = Reply::Stream(vec![
        Step::Send(text("It is ")),
        Step::Send(text("noon.")),
        Step::Send(finish("stop")),
        Step::Send(usage(20, 4)),
        Step::Send(done()),
    ]);
    let model = ChatServer::start(vec![round1, round2_cut, round2]).await;
    let rt = spawn(store.table(), &ep, &model.url, 1).await;
    let conn = connect(&rt).await;
    start(
        &rt,
        &conn,
        "durable-1",
        "llm",
        json!({"user_request": "What time is it?"}),
    )
    .await;
    // The second round has streamed text to the client: kill -9 the environment.
    let deadline = Instant::now() + LIMIT;
    while !ep
        .delivered(&conn)
        .iter()
        .any(|f| f["type"] == "agent_delta" && f["payload"]["round"] == 2)
    {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            types(&ep.delivered(&conn))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut rt = rt;
    rt.kill_all();
    drop(rt);
    let rt = spawn(store.table(), &ep, &model.url, 1).await;
    let report = sweep_until(&rt, "continued").await;
    assert_eq!(
        (&report["continued"], &report["dead"]),
        (&json!(1), &json!(0))
    );
    let frames = until(&ep, &conn, "agent_completed", 1).await;

    let requests = model.received();
    assert_eq!(requests.len(), 3, "round 1 once, round 2 twice");
    let messages = |i: usize| requests[i].body["messages"].clone();
    assert_eq!(messages(0).as_array().unwrap().len(), 1, "{}", messages(0));
    // The tool's result came from the journal: the same timestamp in both requests.
    assert_eq!(messages(1), messages(2));
    assert_eq!(messages(1)[2]["role"], "tool");
    let kinds = types(&frames);
    let count = |k: &str| kinds.iter().filter(|t| *t == k).count();
    assert_eq!((count("agent_started"), count("tool_executing")), (1, 1));
    assert_eq!((count("tool_completed"), count("agent_completed")), (1, 1));
    assert!(
        frames.iter().any(|f| f["type"] == "agent_text_discarded"
            && f["payload"] == json!({"round": 2, "reason": "redo"})),
        "{kinds:?}"
    );
    // Usage adds up across both invocations: round 1 from the journal, round 2 as answered.
    let usage = json!({"input_tokens": 31, "output_tokens": 7});
    let run = completed_run(&store, &frames, "It is noon.", usage).await;
    assert_seq_once_in_order(&frames);
    assert_eq!((run.continuations, run.recoveries), (1, 1));
    let get = json!({"type": "get_execution", "run_id": run.run_id});
    let got = call_json(&rt, &message_event(&conn, &get.to_string())).await;
    let body: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["payload"]["continuations"], 1, "{body}");
    assert!(body["payload"]["continued_at"].is_string(), "{body}");
}

/// A run whose worker dies every time (each continuation's environment is killed too) is
/// continued `MAX_CONTINUATIONS` times and then ends `dead`; the owner hears `agent_death`
/// exactly once.
#[tokio::test]
async fn a_run_whose_worker_dies_every_time_ends_dead() {
    let store = fresh_store("durable-doomed").await;
    let ep = support::connections::start().await;
    let model = ChatServer::start(vec![]).await;
    let mut rt = spawn(store.table(), &ep, &model.url, 1).await;
    let conn = connect(&rt).await;
    let payload = json!({"user_request": "doomed", "delay_ms": 60_000});
    start(&rt, &conn, "doomed-1", "echo", payload).await;
    for n in 1..=MAX_CONTINUATIONS {
        // The tool step never completes, so every continuation starts it again.
        until(&ep, &conn, "tool_executing", n as usize).await;
        rt.kill_all();
        drop(rt);
        rt = spawn(store.table(), &ep, &model.url, 1).await;
        let report = sweep_until(&rt, "continued").await;
        assert_eq!(report["dead"], 0, "{report}");
    }
    until(&ep, &conn, "tool_executing", MAX_CONTINUATIONS as usize + 1).await;
    rt.kill_all();
    drop(rt);
    let rt = spawn(store.table(), &ep, &model.url, 1).await;
    let report = sweep_until(&rt, "dead").await;
    assert_eq!(report["continued"], 0, "{report}");
    let again = call_json(&rt, &sample("scheduled-sweep.json")).await;
    assert_eq!(
        (&again["dead"], &again["continued"]),
        (&json!(0), &json!(0))
    );
    let frames = ep.delivered(&conn);
    let deaths = frames.iter().filter(|f| f["type"] == "agent_death").count();
    assert_eq!(deaths, 1, "{:?}", types(&frames));
    let run = the_run(&store, &frames).await;
    assert_eq!(run.state, wsexec::ExecutionState::Dead);
    assert_eq!(run.recoveries, MAX_CONTINUATIONS);
    assert_seq_once_in_order(
        &frames
            .into_iter()
            .filter(|f| f["type"] != "agent_death")
            .collect::<Vec<_>>(),
    );
}

/// Duplicate and concurrent deliveries of one continuation (the sweep's own invocation, and
/// the same event delivered twice more at once to two environments): exactly one worker
/// claims and drives it, the others do nothing, and the client gets one set of events.
#[tokio::test]
async fn duplicate_continuation_deliveries_drive_it_once() {
    let store = fresh_store("durable-dup").await;
    let ep = support::connections::start().await;
    let model = ChatServer::start(vec![]).await;
    let mut rt = spawn(store.table(), &ep, &model.url, 1).await;
    let conn = connect(&rt).await;
    let payload = json!({"user_request": "twice", "delay_ms": 4_000});
    start(&rt, &conn, "dup-1", "echo", payload).await;
    let frames = until(&ep, &conn, "tool_executing", 1).await;
    rt.kill_all();
    drop(rt);
    let rt = spawn(store.table(), &ep, &model.url, 3).await;
    rt.hold_async(true);
    sweep_until(&rt, "continued").await;
    let run = the_run(&store, &frames).await;
    let event = json!({"wsexec_worker": {"user_id": USER, "run_id": run.run_id,
                                         "continuation": 1}})
    .to_string();
    let (a, b, ()) = tokio::join!(
        rt.invoke(&event, Duration::from_secs(60)),
        rt.invoke(&event, Duration::from_secs(60)),
        async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            rt.hold_async(false);
        }
    );
    let frames = until(&ep, &conn, "agent_completed", 1).await;
    // The held delivery ends too (after the run, if it is the one that drove).
    let deadline = Instant::now() + Duration::from_secs(30);
    while rt.async_outcomes().is_empty() {
        assert!(Instant::now() < deadline, "the held delivery never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut outcomes: Vec<String> = [a.0.json(), b.0.json(), rt.async_outcomes()[0].json()]
        .iter()
        .map(|o| o["outcome"].as_str().unwrap_or_default().to_owned())
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes.iter().filter(|o| *o == "drove").count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o.as_str(), "drove" | "not_claimable" | "lost_claim")),
        "{outcomes:?}"
    );
    let kinds = types(&frames);
    assert_eq!(kinds.iter().filter(|t| *t == "agent_completed").count(), 1);
    assert_eq!(kinds.iter().filter(|t| *t == "agent_started").count(), 1);
    // The killed worker's tool step, then the continuation's own: two starts, one end.
    assert_eq!(kinds.iter().filter(|t| *t == "tool_executing").count(), 2);
    assert_eq!(kinds.iter().filter(|t| *t == "tool_completed").count(), 1);
    assert_seq_once_in_order(&frames);
    let run = the_run(&store, &frames).await;
    assert_eq!(
        (run.state, run.continuations),
        (wsexec::ExecutionState::Completed, 1)
    );
}

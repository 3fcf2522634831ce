//! The run driver owns the lifecycle: an agent stuck on a future that never completes still
//! gets heartbeats, is stopped by `cancel_agent` within one heartbeat interval, and times out
//! at its deadline; agents registered by a crate user run like the built-ins.

mod support;

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::*;
use wsexec::protocol::DiscardReason;
use wsexec::run::{AgentFailure, Executor, RunInput, RunSink};

/// An agent that reports one thought, then awaits a future that never completes. Its
/// `dropped` flag is set when the driver drops it (the only way it can stop).
struct Hang {
    dropped: Arc<AtomicBool>,
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Executor for Hang {
    async fn execute(&self, _input: RunInput<'_>, sink: RunSink) -> Result<Value, AgentFailure> {
        let _guard = SetOnDrop(self.dropped.clone());
        sink.thinking("waiting for an answer that never comes")
            .await;
        std::future::pending::<()>().await;
        Ok(Value::Null)
    }
}

/// A harness whose heartbeat interval is `heartbeat / 3` and run limit `limit`, with `hang`.
fn harness(heartbeat: Duration, limit: Duration) -> (Arc<Harness>, Arc<AtomicBool>) {
    let mut config = test_config();
    config.heartbeat_deadline = heartbeat;
    config.run_time_limit = Some(limit);
    let dropped = Arc::new(AtomicBool::new(false));
    let hang = Arc::new(Hang {
        dropped: dropped.clone(),
    });
    (
        Arc::new(Harness::with_config(config).with_agent("hang", hang)),
        dropped,
    )
}

/// Waits (bounded) until the run `run_id` of alice is stored with `pred` true.
async fn wait_for(
    h: &Harness,
    run_id: &str,
    what: &str,
    pred: impl Fn(&wsexec::store::RunRecord) -> bool,
) -> wsexec::store::RunRecord {
    let store = h.mgr.store().unwrap();
    for _ in 0..200 {
        if let Some(r) = store.get_run("alice-01".into(), run_id).await.unwrap()
            && pred(&r)
        {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("run {run_id} never {what}");
}

fn hang_frame(request_id: &str) -> Value {
    json!({"type": "start_agent", "agent": "hang", "request_id": request_id, "payload": {"user_request": "x"}})
}

/// Heartbeats are written while the agent is stuck, and the deadline ends the run as `timeout`.
#[tokio::test]
async fn a_stuck_agent_is_heartbeated_then_timed_out_at_its_deadline() {
    let (h, dropped) = harness(Duration::from_millis(600), Duration::from_millis(2_000));
    let conn = h.connect("alice-01").await;
    let run_id = wsexec::run::derive_run_id("alice-01", "stuck");
    let runner = {
        let (h, conn) = (h.clone(), conn.clone());
        tokio::spawn(async move { h.send_json(&conn, hang_frame("stuck")).await })
    };
    // Created at version 1; each heartbeat (every 200 ms) is one more version.
    let beating = wait_for(&h, &run_id, "got two heartbeats", |r| r.version >= 3).await;
    assert_eq!(beating.state, wsexec::ExecutionState::Running);
    assert!(
        beating.stale_at > beating.created_at + 600,
        "stale_at was renewed"
    );
    let reply = tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .expect("the run ends at its 2 s deadline")
        .unwrap();
    assert_eq!(reply, None);
    let events = h.pushed(&conn);
    assert_eq!(
        types(&events),
        ["agent_started", "agent_thinking", "agent_error"]
    );
    assert_eq!(events[2]["payload"]["code"], "run_timeout");
    let stored = h.alice_run(&run_id).await;
    assert_eq!(stored.state, wsexec::ExecutionState::Timeout);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the agent's future was dropped"
    );
}

/// `cancel_agent` ends a stuck agent's run within one heartbeat interval, and the agent is dropped.
#[tokio::test]
async fn a_stuck_agent_is_cancelled_within_one_heartbeat_interval() {
    let interval = Duration::from_millis(400);
    let (h, dropped) = harness(interval * 3, Duration::from_secs(30));
    let conn = h.connect("alice-01").await;
    let other = h.connect("alice-01").await;
    let run_id = wsexec::run::derive_run_id("alice-01", "stuck");
    let runner = {
        let (h, conn) = (h.clone(), conn.clone());
        tokio::spawn(async move { h.send_json(&conn, hang_frame("stuck")).await })
    };
    wait_for(&h, &run_id, "was created", |_| true).await;
    let cancelled = h
        .send_json(&other, json!({"type": "cancel_agent", "run_id": run_id}))
        .await
        .unwrap();
    assert_eq!(cancelled["type"], "agent_cancelled", "{cancelled}");
    // One interval for the next heartbeat to meet the cancel, plus scheduling slack.
    tokio::time::timeout(interval + Duration::from_millis(300), runner)
        .await
        .expect("the driver stopped within one heartbeat interval")
        .unwrap();
    assert!(
        dropped.load(Ordering::SeqCst),
        "the agent's future was dropped"
    );
    let events = h.pushed(&conn);
    assert_eq!(
        types(&events),
        ["agent_started", "agent_thinking", "agent_cancelled"]
    );
    let stored = h.alice_run(&run_id).await;
    assert_eq!(stored.state, wsexec::ExecutionState::Cancelled);
}

/// An agent that streams a word every 5 ms until it is dropped.
struct Chatter {
    dropped: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl Executor for Chatter {
    async fn execute(&self, _input: RunInput<'_>, sink: RunSink) -> Result<Value, AgentFailure> {
        let _guard = SetOnDrop(self.dropped.clone());
        loop {
            sink.delta("word ").await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Starts a `chatter` run on `conn` through `driving`, and waits until `deltas` of its
/// `agent_delta` pushes went out. The run's id and the task driving it.
async fn start_chatter(
    driving: &Arc<Harness>,
    conn: &str,
    request_id: &str,
    deltas: usize,
) -> (String, tokio::task::JoinHandle<Option<Value>>) {
    let runner = {
        let (h, conn) = (driving.clone(), conn.to_owned());
        let frame = json!({"type": "start_agent", "agent": "chatter", "request_id": request_id, "payload": {"user_request": "x"}});
        tokio::spawn(async move { h.send_json(&conn, frame).await })
    };
    for _ in 0..200 {
        if delta_count(&driving.pushed(conn)) >= deltas {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (wsexec::run::derive_run_id("alice-01", request_id), runner)
}

fn delta_count(events: &[Value]) -> usize {
    types(events)
        .iter()
        .filter(|t| **t == "agent_delta")
        .count()
}

/// Cancels `run_id` from `conn` through `canceller`; asserts the driver in `driving` ended
/// within 500 ms of the reply (far under its heartbeat), its agent was dropped, and nothing
/// at all was pushed to `conn` after the reply.
async fn cancel_and_check_silence(
    driving: &Harness,
    canceller: &Harness,
    conn: &str,
    run_id: &str,
    runner: tokio::task::JoinHandle<Option<Value>>,
    dropped: &AtomicBool,
) {
    let reply = canceller
        .send_json(conn, json!({"type": "cancel_agent", "run_id": run_id}))
        .await
        .unwrap();
    assert_eq!(reply["type"], "agent_cancelled", "{reply}");
    assert!(dropped.load(Ordering::SeqCst), "stopped before the reply");
    let at_reply = driving.pushed(conn).len();
    tokio::time::timeout(Duration::from_millis(500), runner)
        .await
        .expect("the driver had ended")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let events = driving.pushed(conn);
    assert!(delta_count(&events) >= 1, "{events:?}");
    assert_eq!(events.len(), at_reply, "pushed after the reply: {events:?}");
    let stored = driving.alice_run(run_id).await;
    assert_eq!(stored.state, wsexec::ExecutionState::Cancelled);
}

fn chatter_config(heartbeat: Duration) -> (wsexec::Config, Arc<AtomicBool>, Arc<Chatter>) {
    let mut config = test_config();
    config.heartbeat_deadline = heartbeat;
    config.stream_flush = Duration::from_millis(20);
    let dropped = Arc::new(AtomicBool::new(false));
    let chatter = Arc::new(Chatter {
        dropped: dropped.clone(),
    });
    (config, dropped, chatter)
}

/// A cancel from the run's own connection, landing in the process that drives the run, stops
/// the driver at once (the heartbeat is 10 s away) and is answered only after the last
/// `agent_delta`: none reaches the canceller after its `agent_cancelled` reply.
#[tokio::test]
async fn a_cancel_in_the_driving_process_stops_the_stream_before_its_reply() {
    let (config, dropped, chatter) = chatter_config(Duration::from_secs(30));
    let h = Arc::new(Harness::with_config(config).with_agent("chatter", chatter));
    let conn = h.connect("alice-01").await;
    let (run_id, runner) = start_chatter(&h, &conn, "chatty", 3).await;
    cancel_and_check_silence(&h, &h, &conn, &run_id, runner, &dropped).await;
}

/// A cancel answered by another process (a second manager on the same store, as a second
/// Lambda execution environment) waits for the driver's next heartbeat: the driver has stopped
/// when the reply goes out, so no `agent_delta` follows the canceller's `agent_cancelled`.
#[tokio::test]
async fn a_cancel_from_another_process_replies_after_the_driver_stopped() {
    let (config, dropped, chatter) = chatter_config(Duration::from_millis(900));
    let store: Arc<dyn wsexec::store::Store> = Arc::new(wsexec::store::memory::MemoryStore::new());
    let driving =
        Arc::new(Harness::on(config.clone(), store.clone()).with_agent("chatter", chatter));
    let other = Harness::on(config, store);
    let conn = driving.connect("alice-01").await;
    let (run_id, runner) = start_chatter(&driving, &conn, "elsewhere", 1).await;
    cancel_and_check_silence(&driving, &other, &conn, &run_id, runner, &dropped).await;
}

/// Every pushed run event carries `seq` 1, 2, 3, … in the order the driver emitted them.
#[tokio::test]
async fn run_events_are_numbered_in_order() {
    let h = Harness::memory();
    let conn = h.connect("alice-01").await;
    h.send_json(&conn, start_frame("numbered", "hi", None))
        .await;
    let seqs: Vec<u64> = h
        .pushed(&conn)
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
}

/// An agent that streams its answer in many small pieces and returns the whole text.
struct Streamer;

#[async_trait::async_trait]
impl Executor for Streamer {
    async fn execute(&self, input: RunInput<'_>, sink: RunSink) -> Result<Value, AgentFailure> {
        let words: Vec<String> = (0..200).map(|i| format!("w{i} ")).collect();
        for w in &words {
            sink.delta(w).await;
            if input.text == "slow" {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        sink.tool_executing("noop", json!({})).await;
        sink.tool_completed("noop", json!({}), 0).await;
        sink.delta("end").await;
        Ok(json!({ "text": words.concat() + "end" }))
    }
}

/// Deltas are coalesced (far fewer pushes than pieces), flushed before a tool step and before
/// the terminal event, and concatenate to the result's text.
#[tokio::test]
async fn deltas_are_coalesced_and_concatenate_to_the_result() {
    let mut config = test_config();
    config.stream_flush = Duration::from_millis(50);
    let h = Harness::with_config(config).with_agent("stream", Arc::new(Streamer));
    let conn = h.connect("alice-01").await;
    let frame = json!({"type": "start_agent", "agent": "stream", "request_id": "s1", "payload": {"user_request": "slow"}});
    h.send_json(&conn, frame).await;
    let events = h.pushed(&conn);
    let kinds = types(&events);
    let deltas = kinds.iter().filter(|k| *k == "agent_delta").count();
    assert!(
        (2..60).contains(&deltas),
        "{deltas} pushes for 201 pieces: {kinds:?}"
    );
    let tool = kinds.iter().position(|k| k == "tool_executing").unwrap();
    assert_eq!(
        kinds[tool - 1],
        "agent_delta",
        "text before the tool step was flushed first"
    );
    assert_eq!(
        kinds[kinds.len() - 2],
        "agent_delta",
        "the last text precedes the terminal event"
    );
    assert_eq!(kinds.last().unwrap(), "agent_completed");
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "agent_delta")
        .map(|e| e["payload"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, events.last().unwrap()["payload"]["result"]["text"]);
}

/// An option an agent refuses is the client's `invalid_field`, and no run is created.
#[tokio::test]
async fn refused_agent_options_create_no_run() {
    let h = Harness::memory();
    let conn = h.connect("alice-01").await;
    for bad in [
        json!(60_001),
        json!(u64::MAX),
        json!(-1),
        json!("5"),
        json!(1.5),
    ] {
        let frame = json!({"type": "start_agent", "request_id": "opt", "payload": {"user_request": "x", "delay_ms": bad}});
        let r = h.send_json(&conn, frame).await.unwrap();
        assert_eq!(r["payload"]["code"], "invalid_field", "{bad}: {r}");
        assert!(
            r["payload"]["message"]
                .as_str()
                .unwrap()
                .contains("delay_ms")
        );
    }
    let page = h
        .mgr
        .store()
        .unwrap()
        .list_runs("alice-01".into(), None, 10, None)
        .await
        .unwrap();
    assert!(page.items.is_empty());
}

/// An agent whose first round streams a preamble and then turns into a tool call: it
/// withdraws round 1's text, then streams its answer as round 2 and holds the run open a while
/// (so heartbeats checkpoint the text) before returning it.
struct Preamble;

#[async_trait::async_trait]
impl Executor for Preamble {
    async fn execute(&self, _input: RunInput<'_>, sink: RunSink) -> Result<Value, AgentFailure> {
        sink.round_delta(1, "Let me ").await;
        sink.round_delta(1, "look.").await;
        sink.discard_round(1, DiscardReason::ToolCall).await;
        sink.thinking("Let me look.").await;
        sink.round_delta(2, "It is ").await;
        sink.round_delta(2, "noon.").await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        Ok(json!({ "text": "It is noon." }))
    }
}

/// `agent_text_discarded {round, reason}` follows the round's last delta with the next `seq`,
/// every `agent_delta` carries its round, the deltas a client keeps equal the result's text,
/// and the checkpointed `streamed` no longer holds the discarded text.
#[tokio::test]
async fn a_discarded_round_leaves_the_stream_and_the_checkpoint() {
    let mut config = test_config();
    config.heartbeat_deadline = Duration::from_millis(300);
    let h = Arc::new(Harness::with_config(config).with_agent("preamble", Arc::new(Preamble)));
    let conn = h.connect("alice-01").await;
    let run_id = wsexec::run::derive_run_id("alice-01", "p1");
    let runner = {
        let (h, conn) = (h.clone(), conn.clone());
        let frame = json!({"type": "start_agent", "agent": "preamble", "request_id": "p1",
                           "payload": {"user_request": "time?"}});
        tokio::spawn(async move { h.send_json(&conn, frame).await })
    };
    let stored = wait_for(&h, &run_id, "checkpointed round 2", |r| {
        r.streamed.as_deref() == Some("It is noon.")
    })
    .await;
    assert!(stored.state.is_alive());
    tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .unwrap()
        .unwrap();
    let events = h.pushed(&conn);
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    let kinds = types(&events);
    let at = kinds
        .iter()
        .position(|k| k == "agent_text_discarded")
        .unwrap();
    assert_eq!(
        events[at]["payload"],
        json!({"round": 1, "reason": "tool_call"})
    );
    assert_eq!(kinds[at - 1], "agent_delta", "{kinds:?}");
    assert_eq!(kinds[at + 1], "agent_thinking", "{kinds:?}");
    let mut kept: Vec<(u64, String)> = Vec::new();
    for e in &events {
        match e["type"].as_str().unwrap() {
            "agent_delta" => kept.push((
                e["payload"]["round"].as_u64().unwrap(),
                e["payload"]["text"].as_str().unwrap().to_owned(),
            )),
            "agent_text_discarded" => {
                let round = e["payload"]["round"].as_u64().unwrap();
                assert!(kept.iter().any(|(r, _)| *r == round));
                kept.retain(|(r, _)| *r != round);
            }
            _ => {}
        }
    }
    let text: String = kept.into_iter().map(|(_, t)| t).collect();
    assert_eq!(text, "It is noon.");
    assert_eq!(text, events.last().unwrap()["payload"]["result"]["text"]);
}

//! The driver's bounds on what a run says: every push within API Gateway's 128 KiB with the
//! result's shape kept, the agent's last words pushed whatever the ending, answer text bounded
//! per run and across the process.

mod support;

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use wsexec::limits::{MAX_MESSAGE_BYTES, MAX_RUN_TEXT_BYTES};
use wsexec::manager::Manager;
use wsexec::run::{AgentFailure, Executor, RunInput, RunSink};

/// Streams `pieces` pieces of `piece` bytes, then waits `hold`, then fails (when `fail`) or
/// answers the text.
struct Talker {
    piece: usize,
    pieces: usize,
    hold: Duration,
    fail: bool,
}

#[async_trait::async_trait]
impl Executor for Talker {
    async fn execute(&self, _input: RunInput<'_>, sink: RunSink) -> Result<Value, AgentFailure> {
        let mut text = String::new();
        let piece = "y".repeat(self.piece);
        for _ in 0..self.pieces {
            sink.delta(&piece).await;
            text.push_str(&piece);
        }
        // No await between the last delta and a failure: the report is still queued when the
        // agent's future returns.
        if !self.hold.is_zero() {
            tokio::time::sleep(self.hold).await;
        }
        if self.fail {
            return Err(AgentFailure::failed("gave up"));
        }
        Ok(json!({ "text": text, "model": "m" }))
    }
}

fn talker(piece: usize, pieces: usize, hold_ms: u64, fail: bool) -> Arc<Talker> {
    Arc::new(Talker {
        piece,
        pieces,
        hold: Duration::from_millis(hold_ms),
        fail,
    })
}

/// A harness with the `talk` agent, and the process's text budget `budget` when given.
fn harness(agent: Arc<Talker>, budget: Option<usize>) -> Arc<Harness> {
    let store = Arc::new(wsexec::store::memory::MemoryStore::new());
    let notifier = Arc::new(wsexec::notify::memory::MemoryNotifier::new());
    let mut mgr = Manager::new(test_config(), store, notifier.clone()).with_agent("talk", agent);
    if let Some(bytes) = budget {
        mgr = mgr.with_text_budget(bytes);
    }
    Arc::new(Harness { mgr, notifier })
}

fn start(request_id: &str, agent: &str, options: Value) -> Value {
    json!({"type": "start_agent", "agent": agent, "request_id": request_id,
           "payload": {"user_request": "abc\"é\n", "options": options}})
}

/// Text an agent streamed just before failing is pushed before its `agent_error` and
/// checkpointed with the failed run (issue 21, item 8).
#[tokio::test]
async fn text_sent_just_before_a_failure_is_pushed_and_checkpointed() {
    let h = harness(talker(14, 1, 0, true), None);
    let conn = h.connect("alice-01").await;
    h.send_json(&conn, start("r-fail", "talk", json!({}))).await;
    let frames = h.pushed(&conn);
    assert_eq!(
        types(&frames),
        ["agent_started", "agent_delta", "agent_error"]
    );
    assert_eq!(delta_text(&frames), "y".repeat(14));
    let run = h
        .alice_run(&wsexec::run::derive_run_id("alice-01", "r-fail"))
        .await;
    assert_eq!(run.state, wsexec::ExecutionState::Failed);
    assert_eq!(run.streamed.as_deref(), Some("y".repeat(14).as_str()));
}

/// A 333 KB answer: every push fits 128 KiB, the deltas add up to the answer, and
/// `agent_completed.result` keeps its shape (fields, a cut `text`, `truncated`, the full
/// length); `get_execution` fits too (issue 21, items 1 and 2).
#[tokio::test]
async fn a_long_answer_fits_every_push_and_keeps_the_results_shape() {
    let bytes = 333_000;
    let h = harness(talker(3_330, 100, 0, false), None);
    let conn = h.connect("alice-01").await;
    h.send_json(&conn, start("r-long", "talk", json!({}))).await;
    let raw = h.notifier.messages(&conn);
    assert!(raw.iter().all(|m| m.len() <= MAX_MESSAGE_BYTES));
    let frames = h.pushed(&conn);
    let answer = delta_text(&frames);
    assert_eq!(answer.len(), bytes);
    let done = frames.last().unwrap();
    assert_eq!(done["type"], "agent_completed");
    let result = &done["payload"]["result"];
    assert_eq!(result["truncated"], true, "{result}");
    assert_eq!(result["text_bytes"], bytes);
    assert_eq!(result["model"], "m");
    assert!(answer.starts_with(result["text"].as_str().unwrap()));
    let run_id = done["run_id"].as_str().unwrap();
    let get = json!({"type": "get_execution", "run_id": run_id}).to_string();
    let resp = h.invoke(&message_event(&conn, &get)).await;
    let body = resp["body"].as_str().unwrap();
    assert!(body.len() <= MAX_MESSAGE_BYTES, "{}", body.len());
    let reply: Value = serde_json::from_str(body).unwrap();
    assert_eq!(reply["payload"]["result"]["text_bytes"], bytes);
    assert_eq!(reply["payload"]["state"], "completed");
}

/// A run that streams past the driver's per-run bound fails `answer_too_large`, whatever the
/// agent (issue 21, item 9).
#[tokio::test]
async fn a_run_past_its_text_bound_fails_answer_too_large() {
    let piece = 1024 * 1024;
    let h = harness(
        talker(piece, MAX_RUN_TEXT_BYTES / piece + 1, 0, false),
        None,
    );
    let conn = h.connect("alice-01").await;
    h.send_json(&conn, start("r-big", "talk", json!({}))).await;
    let frames = h.pushed(&conn);
    let last = frames.last().unwrap();
    assert_eq!(last["type"], "agent_error");
    assert_eq!(last["payload"]["code"], "answer_too_large");
    assert!(delta_text(&frames).len() <= MAX_RUN_TEXT_BYTES);
}

/// Runs that together hold more answer text than the process's budget: the one that would
/// pass it fails `text_budget_exceeded` (retryable); once the others end, runs go through
/// again (issue 21, item 9).
#[tokio::test]
async fn runs_past_the_process_text_budget_fail_until_others_end() {
    let h = harness(talker(60_000, 1, 800, false), Some(100_000));
    let (a, b) = (h.connect("alice-01").await, h.connect("alice-01").await);
    let first = {
        let (h, a) = (h.clone(), a.clone());
        tokio::spawn(async move { h.send_json(&a, start("r-a", "talk", json!({}))).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.send_json(&b, start("r-b", "talk", json!({}))).await;
    let refused = h.pushed(&b);
    let last = &refused.last().unwrap()["payload"];
    assert_eq!(
        last["code"],
        "text_budget_exceeded",
        "{}",
        types(&refused).join(",")
    );
    assert_eq!(last["retryable"], true);
    first.await.unwrap();
    assert_eq!(h.pushed(&a).last().unwrap()["type"], "agent_completed");
    h.send_json(&b, start("r-c", "talk", json!({}))).await;
    assert_eq!(h.pushed(&b).last().unwrap()["type"], "agent_completed");
}

/// A shutdown of the process ends its in-flight runs within the budget: each is written
/// `failed` with `instance_shutdown` (retryable) and its client told (issue 21, item 15).
#[tokio::test]
async fn a_shutdown_ends_in_flight_runs_with_a_terminal_write() {
    let h = harness(talker(5, 1, 30_000, false), None);
    let conn = h.connect("alice-01").await;
    let run = {
        let (h, conn) = (h.clone(), conn.clone());
        tokio::spawn(async move { h.send_json(&conn, start("r-term", "talk", json!({}))).await })
    };
    while h.pushed(&conn).len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left = h
        .mgr
        .live_runs()
        .shut_down(Duration::from_millis(400))
        .await;
    assert_eq!(left, 0);
    run.await.unwrap();
    let last = h.pushed(&conn).last().cloned().unwrap();
    assert_eq!(last["payload"]["code"], "instance_shutdown", "{last}");
    let stored = h
        .alice_run(&wsexec::run::derive_run_id("alice-01", "r-term"))
        .await;
    assert_eq!(stored.state, wsexec::ExecutionState::Failed);
}

/// Streams text heavy in characters JSON escapes (60,000 control characters: 360 KB as JSON),
/// then waits; answers it.
struct Escapes;

#[async_trait::async_trait]
impl Executor for Escapes {
    async fn execute(&self, _input: RunInput<'_>, sink: RunSink) -> Result<Value, AgentFailure> {
        let text = "\u{1}".repeat(60_000);
        sink.delta(&text).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        Ok(json!({ "text": text }))
    }
}

/// A `resume` of a run whose streamed text is too long to send as JSON in one message gets a
/// snapshot without `streamed` (never a marker where a string belongs) and the run's frames
/// replayed: its text still adds up to the answer (issue 21, item 1).
#[tokio::test]
async fn a_snapshot_too_long_for_its_text_replays_it_instead() {
    let mut config = test_config();
    config.heartbeat_deadline = Duration::from_millis(300);
    let store = Arc::new(wsexec::store::memory::MemoryStore::new());
    let notifier = Arc::new(wsexec::notify::memory::MemoryNotifier::new());
    let mgr = Manager::new(config, store, notifier.clone()).with_agent("esc", Arc::new(Escapes));
    let h = Arc::new(Harness { mgr, notifier });
    let conn = h.connect("alice-01").await;
    let run = {
        let (h, conn) = (h.clone(), conn.clone());
        tokio::spawn(async move { h.send_json(&conn, start("r-esc", "esc", json!({}))).await })
    };
    let run_id = wsexec::run::derive_run_id("alice-01", "r-esc");
    // Wait for a heartbeat to checkpoint the text.
    let stored = h.mgr.store().unwrap();
    while stored
        .get_run("alice-01".into(), &run_id)
        .await
        .unwrap()
        .and_then(|r| r.streamed)
        .is_none_or(|s| s.is_empty())
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let follower = h.connect("alice-01").await;
    let resume = json!({"type": "resume", "run_id": run_id}).to_string();
    let resp = h.invoke(&message_event(&follower, &resume)).await;
    let body = resp["body"].as_str().unwrap();
    assert!(body.len() <= MAX_MESSAGE_BYTES);
    let snapshot: Value = serde_json::from_str(body).unwrap();
    let streamed = &snapshot["payload"]["streamed"];
    assert!(
        streamed.is_null() || streamed.is_string(),
        "streamed is {}",
        &streamed.to_string()[..60]
    );
    run.await.unwrap();
    let shown =
        streamed.as_str().unwrap_or_default().to_owned() + &delta_text(&h.pushed(&follower));
    assert_eq!(shown, "\u{1}".repeat(60_000));
}

//! The local gateway invokes the function for every message of one socket independently and
//! concurrently, as API Gateway does, while each run's events keep their order.
#![cfg(feature = "local")]

#[path = "support/local_harness.rs"]
mod local_harness;

use local_harness::{Gateway, RUN_EVENTS, WAIT, Ws, dev_config, recv_json, send_json};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::timeout;
use wsexec::local::MAX_IN_FLIGHT_MESSAGES;

/// A `start_agent` request whose echo step takes `delay_ms`.
fn slow_run(request_id: &str, delay_ms: u64) -> Value {
    json!({
        "type": "start_agent",
        "request_id": request_id,
        "payload": { "user_request": "hi", "delay_ms": delay_ms },
    })
}

/// Reads frames until one of `wanted` type arrives; returns it and the frames before it.
async fn recv_until(ws: &mut Ws, wanted: &str) -> (Value, Vec<Value>) {
    let mut before = Vec::new();
    let found = timeout(WAIT, async {
        loop {
            let frame = recv_json(ws).await;
            if frame["type"] == wanted {
                return frame;
            }
            before.push(frame);
        }
    })
    .await;
    match found {
        Ok(frame) => (frame, before),
        Err(_) => panic!("no {wanted} within {WAIT:?}; got {}", summary(&before)),
    }
}

/// `type:request_id` of each frame, for failure messages.
fn summary(frames: &[Value]) -> String {
    let line = |f: &Value| format!("{}:{}", f["type"], f["request_id"]).replace('"', "");
    frames.iter().map(line).collect::<Vec<_>>().join(" ")
}

/// Checks that the frames of each run (by `request_id`) are the run events in order, and
/// returns the position in `frames` of every `agent_started` and `agent_completed`.
fn check_runs(frames: &[Value]) -> (Vec<usize>, Vec<usize>) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let (mut started, mut completed) = (Vec::new(), Vec::new());
    for (at, frame) in frames.iter().enumerate() {
        let rid = frame["request_id"]
            .as_str()
            .expect("a run event has a request_id");
        let n = seen.entry(rid.to_owned()).or_default();
        assert_eq!(
            frame["type"], RUN_EVENTS[*n],
            "events of run {rid} out of order: {frame}"
        );
        *n += 1;
        match *n {
            1 => started.push(at),
            5 => completed.push(at),
            _ => {}
        }
    }
    (started, completed)
}

/// A ping sent on the socket of a running run is answered at once, before the run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_during_a_run_is_answered_before_the_run_ends() {
    let mut gw = Gateway::dev().await;
    let (mut ws, _) = gw.connect_user("alice-01").await;
    send_json(&mut ws, slow_run("r1", 3000)).await;
    recv_until(&mut ws, "tool_executing").await;
    send_json(&mut ws, json!({ "type": "ping" })).await;
    let (_, before) = recv_until(&mut ws, "pong").await;
    assert!(
        before.iter().all(|f| f["type"] != "agent_completed"),
        "the pong waited for the run: {}",
        summary(&before)
    );
    let (done, _) = recv_until(&mut ws, "agent_completed").await;
    assert_eq!(done["request_id"], "r1");
    gw.stop().await;
}

/// A cancel sent on the run's own socket gets `agent_cancelled` as its reply while the run is
/// still going, and the run then stops without completing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_the_runs_own_socket_is_answered_and_stops_the_run() {
    // A short heartbeat deadline makes the echo agent notice the cancel within a third of it.
    let config = wsexec::Config {
        heartbeat_deadline: Duration::from_secs(1),
        ..dev_config()
    };
    let mut gw = Gateway::start(config, |_| {}).await;
    let (mut ws, _) = gw.connect_user("alice-01").await;
    send_json(&mut ws, slow_run("r1", 5000)).await;
    let (started, _) = recv_until(&mut ws, "agent_started").await;
    let run_id = started["run_id"].as_str().expect("run_id").to_owned();
    send_json(
        &mut ws,
        json!({ "type": "cancel_agent", "run_id": run_id, "request_id": "c1" }),
    )
    .await;
    let (reply, before) = recv_until(&mut ws, "agent_cancelled").await;
    assert_eq!(reply["run_id"], run_id.as_str());
    assert!(
        before.iter().all(|f| f["type"] != "agent_completed"),
        "the cancel was answered only after the run: {}",
        summary(&before)
    );

    // The start_agent invocation ends once the run has stopped; all its pushes precede this.
    loop {
        let inv = gw.next_invocation("MESSAGE", None).await;
        if inv.event["body"]
            .as_str()
            .is_some_and(|b| b.contains("start_agent"))
        {
            break;
        }
    }
    send_json(
        &mut ws,
        json!({ "type": "get_execution", "run_id": run_id }),
    )
    .await;
    let (execution, before) = recv_until(&mut ws, "execution").await;
    assert!(
        before.iter().all(|f| f["type"] != "agent_completed"),
        "a cancelled run completed: {}",
        summary(&before)
    );
    assert_eq!(execution["payload"]["state"], "cancelled");
    gw.stop().await;
}

/// Ten runs started on one socket overlap: every `agent_started` arrives before the first
/// `agent_completed`, and each run's events stay in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_started_on_one_socket_overlap_and_keep_their_order() {
    let mut gw = Gateway::dev().await;
    let (mut ws, _) = gw.connect_user("alice-01").await;
    for i in 0..10 {
        send_json(&mut ws, slow_run(&format!("req-{i}"), 1000)).await;
    }
    let frames = recv_runs(&mut ws, 10).await;
    let (started, completed) = check_runs(&frames);
    assert_eq!((started.len(), completed.len()), (10, 10));
    assert!(
        started.iter().max() < completed.iter().min(),
        "runs on one socket ran one after another: {}",
        summary(&frames)
    );
    gw.stop().await;
}

/// Beyond [`MAX_IN_FLIGHT_MESSAGES`] the gateway stops reading the socket: the next run starts
/// only once an earlier invocation has finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_beyond_the_in_flight_limit_wait_for_a_free_slot() {
    let mut gw = Gateway::dev().await;
    let (mut ws, _) = gw.connect_user("alice-01").await;
    let runs = MAX_IN_FLIGHT_MESSAGES + 1;
    for i in 0..runs {
        send_json(&mut ws, slow_run(&format!("req-{i}"), 2000)).await;
    }
    let (_, before) = recv_until(&mut ws, "agent_completed").await;
    let early = before
        .iter()
        .filter(|f| f["type"] == "agent_started")
        .count();
    assert_eq!(
        early, MAX_IN_FLIGHT_MESSAGES,
        "runs started before any ended"
    );
    let (late, _) = recv_until(&mut ws, "agent_started").await;
    assert_eq!(late["request_id"], format!("req-{MAX_IN_FLIGHT_MESSAGES}"));
    gw.stop().await;
}

/// Every frame of `runs` runs, up to their last `agent_completed`.
async fn recv_runs(ws: &mut Ws, runs: usize) -> Vec<Value> {
    let mut frames = Vec::new();
    let mut completed = 0;
    while completed < runs {
        let frame = recv_json(ws).await;
        completed += usize::from(frame["type"] == "agent_completed");
        frames.push(frame);
    }
    frames
}

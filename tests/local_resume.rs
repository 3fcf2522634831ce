//! `resume` through the local gateway with real WebSocket clients: a client whose socket
//! closed mid-run follows the run again on a new socket and misses nothing, twice nothing.
#![cfg(feature = "local")]

#[path = "support/local_harness.rs"]
mod local_harness;

use futures_util::StreamExt;
use local_harness::{Gateway, dev_config, recv_json, send_json};
use serde_json::json;
use std::time::Duration;
use tokio::time::timeout;

/// A real client starts a long echo run, closes its socket after three events, reconnects and
/// resumes with the last `seq` it saw: it gets the other two once, ending with the stored result.
#[tokio::test]
async fn a_real_client_resumes_a_run_after_its_socket_closed() {
    let mut config = dev_config();
    // Heartbeats every 100 ms, so the driver learns of the follower quickly.
    config.heartbeat_deadline = Duration::from_millis(300);
    let mut gw = Gateway::start(config, |_| {}).await;
    let (mut a, a_id) = gw.connect_user("alice-01").await;
    send_json(
        &mut a,
        json!({"type": "start_agent", "request_id": "long-1",
               "payload": {"user_request": "hi", "delay_ms": 1500}}),
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(recv_json(&mut a).await);
    }
    let kinds: Vec<_> = seen.iter().map(|f| f["type"].clone()).collect();
    assert_eq!(kinds, ["agent_started", "agent_thinking", "tool_executing"]);
    let seqs: Vec<_> = seen.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
    let run_id = seen[0]["run_id"].as_str().unwrap().to_owned();
    a.close(None).await.expect("close");
    drop(a);
    gw.next_invocation("DISCONNECT", Some(&a_id)).await;

    let (mut b, _) = gw.connect_user("alice-01").await;
    send_json(
        &mut b,
        json!({"type": "resume", "run_id": run_id, "after_seq": 3}),
    )
    .await;
    let reply = recv_json(&mut b).await;
    assert_eq!(reply["type"], "execution", "{reply}");
    assert_eq!(reply["payload"]["state"], "running");
    let (done, end) = (recv_json(&mut b).await, recv_json(&mut b).await);
    assert_eq!(
        (done["type"].as_str(), done["seq"].as_u64()),
        (Some("tool_completed"), Some(4))
    );
    assert_eq!(
        (end["type"].as_str(), end["seq"].as_u64()),
        (Some("agent_completed"), Some(5))
    );
    let more = timeout(Duration::from_millis(400), b.next()).await;
    assert!(more.is_err(), "nothing after the terminal event: {more:?}");
    let stored = gw.stored_run("alice-01", &run_id).await;
    assert_eq!(stored.result.as_ref(), Some(&end["payload"]["result"]));
    assert_eq!(stored.seq, 5);
    gw.stop().await;
}

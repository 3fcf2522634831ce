//! `RUN_DISPATCH=async`: a run handed to a worker invocation of the same function, claimed
//! exactly once, cancelled through a route, and failed (then retryable) when the hand-off is
//! refused on the wire; through the handler and through the local gateway's `Invoke` API.

mod support;

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use wsexec::dispatch::Dispatch;
use wsexec::dispatch::lambda::LambdaInvoker;
use wsexec::dispatch::memory::MemoryInvoker;
use wsexec::{Config, ExecutionState};

fn async_config() -> Config {
    let mut c = test_config();
    c.dispatch = Dispatch::Async;
    c
}

/// A harness whose runs go to `invoker`'s worker invocations.
fn harness(config: Config, invoker: Arc<dyn wsexec::dispatch::Invoker>) -> Arc<Harness> {
    let Harness { mgr, notifier } = Harness::with_config(config);
    Arc::new(Harness {
        mgr: mgr.with_invoker(invoker),
        notifier,
    })
}

/// Runs a worker event through the handler; returns its outcome.
async fn work(h: &Harness, event: &str) -> String {
    let out = invoke_with(&h.mgr, &serde_json::from_str(event).unwrap()).await;
    out["outcome"].as_str().unwrap_or_default().to_owned()
}

/// The route creates the run in `starting` and returns at once; the worker claims it and
/// pushes the five events to the starting connection.
#[tokio::test]
async fn a_dispatched_run_is_claimed_and_driven_by_its_worker() {
    let invoker = Arc::new(MemoryInvoker::new());
    let h = harness(async_config(), invoker.clone());
    let conn = h.connect("alice-01").await;
    assert_eq!(
        h.send_json(&conn, start_frame("a1", "hi", None)).await,
        None
    );
    assert!(h.pushed(&conn).is_empty(), "the route pushes nothing");
    let run_id = wsexec::run::derive_run_id("alice-01", "a1");
    assert_eq!(h.alice_run(&run_id).await.state, ExecutionState::Starting);
    let sent = invoker.drain();
    assert_eq!(sent.len(), 1);
    let event: Value = serde_json::from_str(&sent[0].1).unwrap();
    assert_eq!(
        event,
        json!({"wsexec_worker": {"user_id": "alice-01", "run_id": run_id}})
    );
    assert_eq!(work(&h, &sent[0].1).await, "drove");
    assert_eq!(types(&h.pushed(&conn)), FIVE_EVENTS);
    let run = h.alice_run(&run_id).await;
    assert_eq!(run.state, ExecutionState::Completed);
    assert!(run.claimed_by.is_some());
}

/// The same worker event delivered twice, in a row and at once: one set of events, one
/// terminal write, the other deliveries change nothing.
#[tokio::test]
async fn a_worker_event_delivered_twice_drives_the_run_once() {
    let invoker = Arc::new(MemoryInvoker::new());
    let h = harness(async_config(), invoker.clone());
    let conn = h.connect("alice-01").await;
    h.send_json(&conn, start_frame("twice", "hi", Some(300)))
        .await;
    let event = invoker.drain().remove(0).1;
    let (a, b) = tokio::join!(work(&h, &event), work(&h, &event));
    let mut outcomes = [a, b];
    outcomes.sort();
    assert_eq!(outcomes[0], "drove", "{outcomes:?}");
    assert!(
        matches!(outcomes[1].as_str(), "lost_claim" | "not_claimable"),
        "{outcomes:?}"
    );
    let run_id = wsexec::run::derive_run_id("alice-01", "twice");
    let after = h.alice_run(&run_id).await;
    assert_eq!(work(&h, &event).await, "not_claimable");
    assert_eq!(
        h.alice_run(&run_id).await,
        after,
        "a late delivery changes nothing"
    );
    assert_eq!(types(&h.pushed(&conn)), FIVE_EVENTS);
    // Created at 1, claimed at 2, completed at 3 (300 ms is below the heartbeat interval).
    assert_eq!((after.state, after.version), (ExecutionState::Completed, 3));
}

/// A worker event naming another user's run, a run that does not exist, or bad ids does nothing.
#[tokio::test]
async fn forged_worker_events_do_nothing() {
    let invoker = Arc::new(MemoryInvoker::new());
    let h = harness(async_config(), invoker.clone());
    let conn = h.connect("alice-01").await;
    h.send_json(&conn, start_frame("mine", "hi", None)).await;
    let run_id = wsexec::run::derive_run_id("alice-01", "mine");
    for (user, run) in [
        ("bob-02", run_id.as_str()),
        ("alice-01", "run_nope"),
        ("alice 01", run_id.as_str()),
    ] {
        let ev = json!({"wsexec_worker": {"user_id": user, "run_id": run}}).to_string();
        assert_eq!(work(&h, &ev).await, "not_found", "{user} {run}");
    }
    assert_eq!(h.alice_run(&run_id).await.state, ExecutionState::Starting);
    assert!(h.pushed(&conn).is_empty());
}

/// `cancel_agent` sent through a route stops the worker's run within one heartbeat interval,
/// and the run's connection hears `agent_cancelled` once.
#[tokio::test]
async fn a_route_cancel_stops_the_workers_run_within_one_heartbeat() {
    let interval = Duration::from_millis(400);
    let mut config = async_config();
    config.heartbeat_deadline = interval * 3;
    config.run_time_limit = Some(Duration::from_secs(60));
    let invoker = Arc::new(MemoryInvoker::new());
    let h = harness(config, invoker.clone());
    let conn = h.connect("alice-01").await;
    let other = h.connect("alice-01").await;
    h.send_json(&conn, start_frame("long", "hi", Some(30_000)))
        .await;
    let event = invoker.drain().remove(0).1;
    let worker = {
        let h = h.clone();
        tokio::spawn(async move { work(&h, &event).await })
    };
    let run_id = wsexec::run::derive_run_id("alice-01", "long");
    for _ in 0..100 {
        if h.alice_run(&run_id).await.state == ExecutionState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = h
        .send_json(&other, json!({"type": "cancel_agent", "run_id": run_id}))
        .await
        .unwrap();
    assert_eq!(r["type"], "agent_cancelled", "{r}");
    let outcome = tokio::time::timeout(interval + Duration::from_millis(400), worker)
        .await
        .expect("the worker stopped within one heartbeat interval")
        .unwrap();
    assert_eq!(outcome, "drove");
    let kinds = types(&h.pushed(&conn));
    assert_eq!(
        kinds.iter().filter(|k| *k == "agent_cancelled").count(),
        1,
        "{kinds:?}"
    );
    assert!(!kinds.contains(&"agent_completed".to_owned()));
    assert_eq!(h.alice_run(&run_id).await.state, ExecutionState::Cancelled);
}

/// A loopback Lambda `Invoke` endpoint: answers `failures` scripted (status, error type) in
/// turn, then 202; records every accepted payload.
async fn invoke_endpoint(
    failures: Vec<(u16, &'static str)>,
) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let script = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
        failures,
    )));
    let (acc, scr) = (accepted.clone(), script.clone());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (acc, scr) = (acc.clone(), scr.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(req) = support::http::read_message(&mut sock, &mut buf).await {
                    assert_eq!(
                        req.header("x-amz-invocation-type").as_deref(),
                        Some("Event")
                    );
                    let next = scr.lock().unwrap().pop_front();
                    let resp = match next {
                        Some((status, kind)) => {
                            let body =
                                format!(r#"{{"Type":"Service","message":"injected {kind}"}}"#);
                            format!(
                                "HTTP/1.1 {status} Fault\r\nx-amzn-ErrorType: {kind}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            )
                        }
                        None => {
                            acc.lock()
                                .unwrap()
                                .push(String::from_utf8_lossy(req.body()).into_owned());
                            "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_owned()
                        }
                    };
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, accepted)
}

fn lambda_invoker(url: &str) -> Arc<LambdaInvoker> {
    let creds = aws_credential_types::Credentials::new("test", "test", None, None, "test");
    Arc::new(LambdaInvoker::new("us-east-1", creds, Some(url)))
}

/// An `Invoke` refused with 429, 500 or a refused port ends the run `failed` with the
/// classified code, the client hears `agent_error`, and a retry of the same request runs.
#[tokio::test]
async fn refused_invokes_fail_the_run_and_a_retry_runs_it() {
    // The SDK tries throttling and 5xx three times: each failure is scripted for every attempt.
    for (status, kind, code) in [
        (429, "TooManyRequestsException", "dispatch_throttled"),
        (500, "ServiceException", "dispatch_unavailable"),
    ] {
        let (url, accepted) = invoke_endpoint(vec![(status, kind); 3]).await;
        let h = harness(async_config(), lambda_invoker(&url));
        let conn = h.connect("alice-01").await;
        let r = h
            .send_json(&conn, start_frame("retry-me", "hi", None))
            .await
            .unwrap();
        assert_eq!(
            (r["type"].as_str(), r["payload"]["code"].as_str()),
            (Some("agent_error"), Some(code)),
            "{r}"
        );
        assert_eq!(r["payload"]["retryable"], true);
        let run_id = wsexec::run::derive_run_id("alice-01", "retry-me");
        let failed = h.alice_run(&run_id).await;
        assert_eq!(failed.state, ExecutionState::Failed);
        assert_eq!(failed.error.as_ref().unwrap().code, code);
        // The same request again: created anew, dispatched, driven.
        assert_eq!(
            h.send_json(&conn, start_frame("retry-me", "hi", None))
                .await,
            None
        );
        let event = accepted.lock().unwrap().pop().expect("dispatched on retry");
        assert_eq!(work(&h, &event).await, "drove");
        assert_eq!(h.alice_run(&run_id).await.state, ExecutionState::Completed);
        assert_eq!(types(&h.pushed(&conn)), FIVE_EVENTS);
    }
    let refused = support::dynamodb::refused_endpoint();
    let h = harness(async_config(), lambda_invoker(&refused));
    let conn = h.connect("alice-01").await;
    let r = h
        .send_json(&conn, start_frame("nowhere", "hi", None))
        .await
        .unwrap();
    assert_eq!(r["payload"]["code"], "dispatch_connection", "{r}");
    let run_id = wsexec::run::derive_run_id("alice-01", "nowhere");
    assert_eq!(h.alice_run(&run_id).await.state, ExecutionState::Failed);
}

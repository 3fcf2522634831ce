//! `resume`: a connection that lost its socket, or another tab, follows a running run again and
//! ends with the same text and state as one that never left, each `seq` once; other users and
//! finished runs attach nothing; inline and async dispatch alike.

mod support;

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::streamer::Streamer;
use support::*;
use wsexec::dispatch::Dispatch;
use wsexec::dispatch::memory::MemoryInvoker;
use wsexec::manager::Manager;

const USER: &str = "alice-01";

/// Heartbeats every 50 ms (so followers are picked up quickly), a 20 s limit, the streamer.
fn config(dispatch: Dispatch) -> wsexec::config::Config {
    let mut c = test_config();
    c.heartbeat_deadline = Duration::from_millis(150);
    c.run_time_limit = Some(Duration::from_secs(20));
    c.stream_flush = Duration::from_millis(20);
    c.dispatch = dispatch;
    c
}

fn harness(dispatch: Dispatch, invoker: Option<Arc<MemoryInvoker>>) -> Arc<Harness> {
    let store = Arc::new(wsexec::store::memory::MemoryStore::new());
    let notifier = Arc::new(wsexec::notify::memory::MemoryNotifier::new());
    let agent = Arc::new(Streamer {
        pieces: 30,
        gap: Duration::from_millis(30),
    });
    let mut mgr =
        Manager::new(config(dispatch), store, notifier.clone()).with_agent("stream", agent);
    if let Some(inv) = invoker {
        mgr = mgr.with_invoker(inv);
    }
    Arc::new(Harness { mgr, notifier })
}

fn start(request_id: &str) -> Value {
    json!({"type": "start_agent", "agent": "stream", "request_id": request_id,
           "payload": {"user_request": "go"}})
}

fn resume(run_id: &str, after_seq: Option<u64>) -> Value {
    match after_seq {
        Some(s) => json!({"type": "resume", "run_id": run_id, "after_seq": s}),
        None => json!({"type": "resume", "run_id": run_id}),
    }
}

/// Starts `request_id` on `conn` in the background (inline: the invocation drives the run).
fn spawn_start(h: &Arc<Harness>, conn: &str, request_id: &str) -> tokio::task::JoinHandle<()> {
    let (h, conn, frame) = (h.clone(), conn.to_owned(), start(request_id));
    tokio::spawn(async move {
        h.send_json(&conn, frame).await;
    })
}

/// Waits (bounded) until `conn` was pushed at least `n` frames.
async fn wait_pushed(h: &Harness, conn: &str, n: usize) {
    for _ in 0..400 {
        if h.pushed(conn).len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{conn} never got {n} frames");
}

/// Waits (bounded) until `conn` got a terminal event.
async fn wait_terminal(h: &Harness, conn: &str) -> Vec<Value> {
    for _ in 0..1000 {
        let frames = h.pushed(conn);
        if frames
            .last()
            .is_some_and(|f| f["type"] == "agent_completed")
        {
            return frames;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{conn} never got agent_completed: {:?}",
        types(&h.pushed(conn))
    );
}

fn seqs(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .map(|f| f["seq"].as_u64().expect("seq"))
        .collect()
}

async fn stored(h: &Harness, run_id: &str) -> wsexec::store::RunRecord {
    h.mgr
        .store()
        .unwrap()
        .get_run(USER.into(), run_id)
        .await
        .unwrap()
        .expect("stored")
}

/// A client whose socket closed mid-run resumes on a new connection with the last `seq` it saw:
/// it gets exactly the rest, each `seq` once, and its text equals the stored result.
#[tokio::test]
async fn a_reconnecting_client_gets_the_rest_of_the_run_once() {
    let h = harness(Dispatch::Inline, None);
    let a = h.connect(USER).await;
    let run_id = wsexec::run::derive_run_id(USER, "long");
    let runner = spawn_start(&h, &a, "long");
    wait_pushed(&h, &a, 6).await;
    // The socket closes: later pushes are refused, and `$disconnect` arrives.
    h.notifier.mark_gone(&a);
    h.invoke(&disconnect_event(&a)).await;
    let seen = h.pushed(&a);
    let last = *seqs(&seen).last().unwrap();
    // The run goes on while nobody listens: the new connection must be sent what it missed.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let b = h.connect(USER).await;
    let reply = h.send_json(&b, resume(&run_id, Some(last))).await.unwrap();
    assert_eq!(reply["type"], "execution", "{reply}");
    assert_eq!(reply["payload"]["state"], "running");
    let rest = wait_terminal(&h, &b).await;
    tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .unwrap()
        .unwrap();

    let want: Vec<u64> = (last + 1..=last + rest.len() as u64).collect();
    assert_eq!(seqs(&rest), want, "every seq after {last}, once, in order");
    let run = stored(&h, &run_id).await;
    assert_eq!(run.state, wsexec::ExecutionState::Completed);
    assert_eq!(run.seq, *want.last().unwrap(), "the terminal seq is stored");
    let assembled = delta_text(&seen) + &delta_text(&rest);
    assert_eq!(run.result.as_ref().unwrap()["text"], assembled.as_str());
    assert_eq!(
        rest.last().unwrap()["payload"]["result"]["text"],
        assembled.as_str()
    );
}

/// A `resume` without `after_seq` starts from the snapshot: its checkpointed text plus the
/// events after its `seq` make the whole answer.
#[tokio::test]
async fn resuming_from_the_snapshot_checkpoint_assembles_the_whole_text() {
    let h = harness(Dispatch::Inline, None);
    let a = h.connect(USER).await;
    let run_id = wsexec::run::derive_run_id(USER, "snap");
    let runner = spawn_start(&h, &a, "snap");
    wait_pushed(&h, &a, 10).await;
    let b = h.connect(USER).await;
    let reply = h.send_json(&b, resume(&run_id, None)).await.unwrap();
    let base = reply["payload"]["streamed"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let at = reply["payload"]["seq"].as_u64().unwrap();
    assert!(
        at > 0 && !base.is_empty(),
        "a checkpoint was written: {reply}"
    );
    let rest = wait_terminal(&h, &b).await;
    tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seqs(&rest)[0], at + 1);
    let run = stored(&h, &run_id).await;
    assert_eq!(
        run.result.unwrap()["text"],
        (base + &delta_text(&rest)).as_str()
    );
}

/// Three connections of one user follow one run: each gets every event after its attach, in
/// order, once; the one that goes away (410) disturbs neither the others nor the run.
#[tokio::test]
async fn three_followers_each_get_every_event_once_and_a_gone_one_is_dropped() {
    let h = harness(Dispatch::Inline, None);
    let a = h.connect(USER).await;
    let run_id = wsexec::run::derive_run_id(USER, "three");
    let runner = spawn_start(&h, &a, "three");
    wait_pushed(&h, &a, 2).await;
    let mut followers = Vec::new();
    for _ in 0..3 {
        let c = h.connect(USER).await;
        let reply = h.send_json(&c, resume(&run_id, Some(0))).await.unwrap();
        assert_eq!(reply["type"], "execution");
        followers.push(c);
    }
    wait_pushed(&h, &followers[1], 8).await;
    h.notifier.mark_gone(&followers[1]);
    for c in [&a, &followers[0], &followers[2]] {
        wait_terminal(&h, c).await;
    }
    tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .unwrap()
        .unwrap();
    let run = stored(&h, &run_id).await;
    let all = h.pushed(&a);
    let n = all.len() as u64;
    for c in [&followers[0], &followers[2]] {
        let got = h.pushed(c);
        assert_eq!(
            seqs(&got),
            (1..=n).collect::<Vec<_>>(),
            "{c}: all, once, in order"
        );
        assert_eq!(
            run.result.as_ref().unwrap()["text"],
            delta_text(&got).as_str()
        );
    }
    let gone = seqs(&h.pushed(&followers[1]));
    assert_eq!(
        gone,
        (1..=gone.len() as u64).collect::<Vec<_>>(),
        "a prefix, once"
    );
    assert!(gone.len() < n as usize);
    assert!(
        !run.followers
            .iter()
            .any(|f| f.connection_id == followers[1]),
        "the gone follower was dropped from the run"
    );
}

/// Another user's `resume` answers `not_found` exactly like an unknown run, and attaches nothing.
#[tokio::test]
async fn another_users_resume_is_not_found_and_attaches_nothing() {
    let h = harness(Dispatch::Inline, None);
    let a = h.connect(USER).await;
    let run_id = wsexec::run::derive_run_id(USER, "mine");
    let runner = spawn_start(&h, &a, "mine");
    wait_pushed(&h, &a, 2).await;
    let bob = h.connect("bob-0001").await;
    let theirs = h.send_json(&bob, resume(&run_id, Some(0))).await.unwrap();
    let unknown = h
        .send_json(&bob, resume("run-unknown-1", Some(0)))
        .await
        .unwrap();
    assert_eq!(theirs["payload"]["code"], "not_found");
    assert_eq!(untimed(theirs), untimed(unknown));
    assert!(stored(&h, &run_id).await.followers.is_empty());
    wait_terminal(&h, &a).await;
    tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .unwrap()
        .unwrap();
    assert!(h.pushed(&bob).is_empty(), "bob was pushed nothing");
}

/// `resume` of a finished run replies its final snapshot (result, terminal seq) and attaches
/// nothing: the run is not written and the connection is pushed nothing.
#[tokio::test]
async fn resuming_a_finished_run_returns_its_final_snapshot_only() {
    let h = harness(Dispatch::Inline, None);
    let a = h.connect(USER).await;
    let run_id = wsexec::run::derive_run_id(USER, "done");
    h.send_json(&a, start("done")).await;
    let events = h.pushed(&a);
    let before = stored(&h, &run_id).await;
    let b = h.connect(USER).await;
    let reply = h.send_json(&b, resume(&run_id, Some(0))).await.unwrap();
    assert_eq!(reply["type"], "execution");
    assert_eq!(reply["payload"]["state"], "completed");
    assert_eq!(reply["payload"]["seq"], events.len() as u64);
    assert_eq!(
        reply["payload"]["result"]["text"],
        delta_text(&events).as_str()
    );
    assert!(reply["payload"].get("streamed").is_none());
    assert_eq!(stored(&h, &run_id).await, before, "nothing written");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(h.pushed(&b).is_empty());
}

/// Async dispatch: a follower attached while the run waits for its worker, and one attached
/// mid-run, both end with the stored text; the worker's claim survives the attach.
#[tokio::test]
async fn async_runs_are_followed_from_before_the_claim_and_mid_run() {
    let invoker = Arc::new(MemoryInvoker::new());
    let h = harness(Dispatch::Async, Some(invoker.clone()));
    let a = h.connect(USER).await;
    let run_id = wsexec::run::derive_run_id(USER, "bg");
    assert_eq!(h.send_json(&a, start("bg")).await, None);
    let early = h.connect(USER).await;
    let reply = h.send_json(&early, resume(&run_id, None)).await.unwrap();
    assert_eq!(reply["payload"]["state"], "starting");
    let sent = invoker.drain();
    assert_eq!(sent.len(), 1);
    let worker_event: Value = serde_json::from_str(&sent[0].1).unwrap();
    let worker = {
        let h = h.clone();
        tokio::spawn(async move { h.invoke(&worker_event).await })
    };
    wait_pushed(&h, &a, 8).await;
    let late = h.connect(USER).await;
    let at = seqs(&h.pushed(&a)).last().copied().unwrap();
    h.send_json(&late, resume(&run_id, Some(at))).await.unwrap();
    let all = wait_terminal(&h, &a).await;
    let out = tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out["outcome"], "drove", "{out}");
    let run = stored(&h, &run_id).await;
    let n = all.len() as u64;
    let got = wait_terminal(&h, &early).await;
    assert_eq!(seqs(&got), (1..=n).collect::<Vec<_>>());
    assert_eq!(
        run.result.as_ref().unwrap()["text"],
        delta_text(&got).as_str()
    );
    let tail = wait_terminal(&h, &late).await;
    assert_eq!(seqs(&tail), (at + 1..=n).collect::<Vec<_>>());
}

/// A follower's `$disconnect` removes its attachment from the alive run; the run goes on.
#[tokio::test]
async fn disconnect_detaches_a_follower() {
    let h = harness(Dispatch::Inline, None);
    let a = h.connect(USER).await;
    let run_id = wsexec::run::derive_run_id(USER, "leave");
    let runner = spawn_start(&h, &a, "leave");
    wait_pushed(&h, &a, 2).await;
    let b = h.connect(USER).await;
    h.send_json(&b, resume(&run_id, Some(0))).await.unwrap();
    let attached = stored(&h, &run_id).await;
    assert!(attached.followers.iter().any(|f| f.connection_id == b));
    h.invoke(&disconnect_event(&b)).await;
    let left = stored(&h, &run_id).await;
    assert!(left.state.is_alive(), "still running");
    assert!(
        !left.followers.iter().any(|f| f.connection_id == b),
        "{:?}",
        left.followers
    );
    wait_terminal(&h, &a).await;
    tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .unwrap()
        .unwrap();
}

/// Past `MAX_RUN_FOLLOWERS` a `resume` is refused as `too_many_followers` and attaches nothing.
#[tokio::test]
async fn followers_are_bounded() {
    let h = harness(Dispatch::Inline, None);
    let a = h.connect(USER).await;
    let run_id = wsexec::run::derive_run_id(USER, "many");
    let runner = spawn_start(&h, &a, "many");
    wait_pushed(&h, &a, 1).await;
    for _ in 0..wsexec::limits::MAX_RUN_FOLLOWERS {
        let c = h.connect(USER).await;
        let reply = h.send_json(&c, resume(&run_id, Some(0))).await.unwrap();
        assert_eq!(reply["type"], "execution", "{reply}");
    }
    let extra = h.connect(USER).await;
    let reply = h.send_json(&extra, resume(&run_id, Some(0))).await.unwrap();
    assert_eq!(reply["payload"]["code"], "too_many_followers", "{reply}");
    let run = stored(&h, &run_id).await;
    assert_eq!(run.followers.len(), wsexec::limits::MAX_RUN_FOLLOWERS);
    assert!(!run.followers.iter().any(|f| f.connection_id == extra));
    wait_terminal(&h, &a).await;
    tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .unwrap()
        .unwrap();
}

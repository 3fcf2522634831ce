//! Durable runs through the handler on the memory store (`RUN_DISPATCH=async`, a recording
//! invoker): a read that finds a running run stale continues it, the continuation replays the
//! journal and numbers its events after the reservation, a stale or repeated continuation
//! event does nothing, and a refused continuation invoke is retried by the next sweep.

mod support;

use serde_json::{Value, json};
use std::sync::Arc;
use support::*;
use wsexec::dispatch::memory::MemoryInvoker;
use wsexec::dispatch::{Dispatch, DispatchErrorKind};
use wsexec::store::RunRecord;
use wsexec::time::now_ms;
use wsexec::{Config, ExecutionState};

fn harness(invoker: Arc<MemoryInvoker>) -> Harness {
    let mut c: Config = test_config();
    c.dispatch = Dispatch::Async;
    let Harness { mgr, notifier } = Harness::with_config(c);
    Harness {
        mgr: mgr.with_invoker(invoker),
        notifier,
    }
}

/// A `running` echo run of `alice-01` on `conn`, claimed by a worker that stopped
/// heartbeating a minute ago, with `seq` 7 given out and 71 reserved.
async fn stale_run(h: &Harness, conn: &str, id: &str) -> RunRecord {
    let old = now_ms() - 60_000;
    let mut r = support::contract::run("alice-01", id, old);
    r.connection_id = conn.to_owned();
    r.deadline_at = now_ms() + 60_000;
    r.claimed_by = Some("dead-worker".into());
    (r.continuations, r.recoveries, r.continued_at) = (0, 0, 0);
    (r.seq, r.seq_reserved) = (7, 71);
    r.followers.clear();
    h.mgr.store().unwrap().create_run(&r).await.unwrap();
    r
}

async fn work(h: &Harness, event: &str) -> String {
    let out = invoke_with(&h.mgr, &serde_json::from_str(event).unwrap()).await;
    out["outcome"].as_str().unwrap_or_default().to_owned()
}

/// `get_execution` of a run whose worker died hands it to continuation 1 (still `running`,
/// shown with its count and time); the continuation event is claimed once (a repeat, and an
/// event of another continuation, do nothing), replays the journaled tool step instead of
/// doing it again, and numbers its events after the 71 reserved.
#[tokio::test]
async fn a_read_continues_a_stale_run_from_its_journal() {
    let invoker = Arc::new(MemoryInvoker::new());
    let h = harness(invoker.clone());
    let conn = h.connect("alice-01").await;
    let r = stale_run(&h, &conn, "run_stale_read").await;
    let store = h.mgr.store().unwrap();
    let step = support::contract::step(&r, 1, json!({"kind": "tool", "content": {}}));
    store.put_step(&step).await.unwrap();
    let got = h
        .send_json(&conn, json!({"type": "get_execution", "run_id": r.run_id}))
        .await
        .unwrap();
    assert_eq!(got["payload"]["state"], "running", "{got}");
    assert_eq!(got["payload"]["continuations"], 1, "{got}");
    assert!(got["payload"]["continued_at"].is_string());
    let sent = invoker.drain();
    assert_eq!(sent.len(), 1);
    let event: Value = serde_json::from_str(&sent[0].1).unwrap();
    assert_eq!(
        event,
        json!({"wsexec_worker": {"user_id": "alice-01", "run_id": r.run_id, "continuation": 1}})
    );
    let other = sent[0]
        .1
        .replace("\"continuation\":1", "\"continuation\":2");
    assert_eq!(work(&h, &other).await, "not_claimable");
    assert_eq!(work(&h, &sent[0].1).await, "drove");
    assert_eq!(work(&h, &sent[0].1).await, "not_claimable");
    let frames = h.pushed(&conn);
    assert_eq!(
        types(&frames),
        ["agent_completed"],
        "the tool step is not redone"
    );
    assert_eq!(frames[0]["seq"], 72);
    let run = h.alice_run(&r.run_id).await;
    assert_eq!(run.state, ExecutionState::Completed);
    assert_eq!((run.continuations, run.recoveries), (1, 1));
    assert!(h.pushed(&conn).iter().all(|f| f["type"] != "agent_death"));
}

/// A continuation whose invoke is refused leaves the run unclaimed; the next sweep after the
/// heartbeat deadline hands it on again (counted), and the invoke that is accepted drives it.
#[tokio::test]
async fn a_refused_continuation_is_retried_by_the_next_sweep() {
    let invoker = Arc::new(MemoryInvoker::new());
    let h = harness(invoker.clone());
    let conn = h.connect("alice-01").await;
    let r = stale_run(&h, &conn, "run_stale_refused").await;
    invoker.fail_with(Some(DispatchErrorKind::Throttled));
    let report = h.invoke(&sample("scheduled-sweep.json")).await;
    assert_eq!(
        (&report["continued"], &report["dead"]),
        (&json!(1), &json!(0))
    );
    assert!(invoker.drain().is_empty());
    let run = h.alice_run(&r.run_id).await;
    assert_eq!((run.claimed_by.as_deref(), run.recoveries), (None, 1));
    // Not stale yet: the sweep leaves it.
    let report = h.invoke(&sample("scheduled-sweep.json")).await;
    assert_eq!(report["continued"], 0);
    let mut due = run.clone();
    due.stale_at = now_ms() - 1;
    due.version += 1;
    let store = h.mgr.store().unwrap();
    store
        .update_run(&due, wsexec::store::Expected::of(&run))
        .await
        .unwrap();
    invoker.fail_with(None);
    let report = h.invoke(&sample("scheduled-sweep.json")).await;
    assert_eq!(report["continued"], 1, "{report}");
    let sent = invoker.drain();
    assert!(sent[0].1.contains("\"continuation\":2"), "{sent:?}");
    assert_eq!(work(&h, &sent[0].1).await, "drove");
    let kinds = types(&h.pushed(&conn));
    assert_eq!(kinds.last().map(String::as_str), Some("agent_completed"));
    assert_eq!(h.alice_run(&r.run_id).await.recoveries, 2);
}

//! Races on DynamoDB Local (starts, cancels, two connections, sweep against heartbeat), each
//! repeated for many rounds.

mod support;

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::dynamodb::*;
use support::*;
use wsexec::state::ExecutionState;
use wsexec::store::Store;
use wsexec::store::dynamo::DynamoStore;
use wsexec::sweep::{Reaped, reap, sweep};
use wsexec::time::now_ms;

/// A harness on a fresh DynamoDB Local table.
async fn harness(config: wsexec::Config) -> (Arc<Harness>, Arc<DynamoStore>) {
    let store = Arc::new(fresh_store("races").await);
    (Arc::new(Harness::on(config, store.clone())), store)
}

/// Waits until `conn` has been pushed an `agent_started`; returns the run id.
async fn started(h: &Harness, conn: &str) -> String {
    for _ in 0..5_000 {
        if let Some(e) = h.pushed(conn).iter().find(|e| e["type"] == "agent_started") {
            return e["run_id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the run never started");
}

fn count(frames: &[Value], kind: &str) -> usize {
    frames.iter().filter(|f| f["type"] == kind).count()
}

/// 100 concurrent starts with one request_id over two connections make exactly one run, in each of 10 rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_starts_with_one_request_id_make_one_run() {
    const ROUNDS: usize = 10;
    const STARTS: usize = 100;
    let (h, store) = harness(test_config()).await;
    let conns = [h.connect("racer-01").await, h.connect("racer-01").await];
    for round in 0..ROUNDS {
        let rid = format!("same-{round}");
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..STARTS {
            let (h, conn, rid) = (h.clone(), conns[i % 2].clone(), rid.clone());
            tasks
                .spawn(async move { h.send_json(&conn, start_frame(&rid, "race", Some(0))).await });
        }
        let mut replies = Vec::new();
        while let Some(t) = tasks.join_next().await {
            replies.extend(t.unwrap());
        }
        assert_eq!(
            replies.len(),
            STARTS - 1,
            "round {round}: exactly one start ran"
        );
        let runs = store
            .list_runs("racer-01".into(), None, 50, None)
            .await
            .unwrap()
            .items;
        let run = runs.iter().find(|r| r.request_id == rid).unwrap();
        assert_eq!(runs.iter().filter(|r| r.request_id == rid).count(), 1);
        for r in &replies {
            assert_eq!(r["type"], "execution", "round {round}: {r}");
            assert_eq!(r["payload"]["deduplicated"], true);
            assert_eq!(r["run_id"], run.run_id.as_str());
        }
        let pushed: Vec<Value> = conns.iter().flat_map(|c| h.pushed(c)).collect();
        let of_run: Vec<&Value> = pushed
            .iter()
            .filter(|e| e["run_id"] == run.run_id.as_str())
            .collect();
        assert_eq!(
            of_run
                .iter()
                .filter(|e| e["type"] == "agent_started")
                .count(),
            1
        );
        assert_eq!(of_run.len(), 5, "round {round}: one run's five events");
    }
    println!("start races: {ROUNDS} rounds x {STARTS} concurrent starts, one run each");
}

/// Cancel racing completion ends in one terminal state whose events agree with it, both outcomes occurring, over 40 rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_racing_completion_has_one_outcome_and_consistent_events() {
    const ROUNDS: u64 = 40;
    let (h, store) = harness(test_config()).await;
    let (mut cancelled, mut completed) = (0, 0);
    for round in 0..ROUNDS {
        let user = format!("canceller-{round}");
        let runner = h.connect(&user).await;
        let other = h.connect(&user).await;
        // From certain cancels (a long step) to certain completions (a late cancel).
        let delay = [0, 5, 10, 20, 300][round as usize % 5];
        let jitter = Duration::from_millis(round % 7 * 4);
        let task = {
            let (h, runner) = (h.clone(), runner.clone());
            tokio::spawn(async move {
                h.send_json(&runner, start_frame("r", "race", Some(delay)))
                    .await
            })
        };
        let run_id = started(&h, &runner).await;
        tokio::time::sleep(jitter).await;
        let reply = h
            .send_json(&other, json!({"type": "cancel_agent", "run_id": run_id}))
            .await
            .unwrap();
        assert_eq!(task.await.unwrap(), None);
        let run = store
            .get_run((&user).into(), &run_id)
            .await
            .unwrap()
            .unwrap();
        let events = h.pushed(&runner);
        let terminal: Vec<&str> = events
            .iter()
            .filter_map(|e| e["type"].as_str())
            .filter(|t| {
                [
                    "agent_completed",
                    "agent_cancelled",
                    "agent_error",
                    "agent_death",
                ]
                .contains(t)
            })
            .collect();
        assert_eq!(terminal.len(), 1, "round {round}: {terminal:?}");
        match run.state {
            ExecutionState::Cancelled => {
                cancelled += 1;
                assert_eq!(reply["type"], "agent_cancelled", "round {round}");
                assert_eq!(terminal, ["agent_cancelled"], "round {round}");
                assert_eq!(run.cancelled_by.as_deref(), Some(other.as_str()));
            }
            ExecutionState::Completed => {
                completed += 1;
                assert_eq!(
                    reply["payload"]["code"], "run_finished",
                    "round {round}: {reply}"
                );
                assert_eq!(terminal, ["agent_completed"], "round {round}");
            }
            s => panic!("round {round}: {s:?}"),
        }
        assert_eq!(
            count(&h.pushed(&other), "agent_cancelled"),
            0,
            "the canceller got a reply, not a push"
        );
    }
    assert!(
        cancelled > 0 && completed > 0,
        "both outcomes: {cancelled} cancelled, {completed} completed"
    );
    println!("cancel races: {ROUNDS} rounds, {cancelled} cancelled, {completed} completed");
}

/// Two connections of one user cancelling one run: one wins, the other hears `run_finished`, the run's connection hears it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_connections_of_one_user_on_one_run() {
    const ROUNDS: usize = 20;
    // A short heartbeat deadline: the run notices the cancel at its next renewal, not at its end.
    let mut cfg = test_config();
    cfg.heartbeat_deadline = Duration::from_millis(600);
    let (h, store) = harness(cfg).await;
    let mut own_wins = 0;
    for round in 0..ROUNDS {
        let user = format!("twin-{round}");
        let a = h.connect(&user).await;
        let b = h.connect(&user).await;
        let task = {
            let (h, a) = (h.clone(), a.clone());
            tokio::spawn(async move {
                h.send_json(&a, start_frame("twin", "race", Some(2_000)))
                    .await
            })
        };
        let run_id = started(&h, &a).await;
        let cancel = json!({"type": "cancel_agent", "run_id": run_id});
        let get = json!({"type": "get_execution", "run_id": run_id});
        let (ra, rb, ga, gb) = tokio::join!(
            h.send_json(&a, cancel.clone()),
            h.send_json(&b, cancel.clone()),
            h.send_json(&a, get.clone()),
            h.send_json(&b, get.clone()),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        for g in [ga.unwrap(), gb.unwrap()] {
            assert_eq!(g["type"], "execution");
            assert!(["running", "cancelled"].contains(&g["payload"]["state"].as_str().unwrap()));
        }
        let winners = [&ra, &rb]
            .iter()
            .filter(|r| r["type"] == "agent_cancelled")
            .count();
        assert_eq!(winners, 1, "round {round}: {ra} {rb}");
        let loser = if ra["type"] == "agent_cancelled" {
            &rb
        } else {
            &ra
        };
        assert_eq!(loser["payload"]["code"], "run_finished", "round {round}");
        assert_eq!(task.await.unwrap(), None);
        let run = store
            .get_run((&user).into(), &run_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(run.state, ExecutionState::Cancelled);
        let a_heard =
            count(&h.pushed(&a), "agent_cancelled") + usize::from(ra["type"] == "agent_cancelled");
        assert_eq!(
            a_heard, 1,
            "round {round}: the run's connection hears it once"
        );
        assert_eq!(count(&h.pushed(&a), "agent_completed"), 0);
        if run.cancelled_by.as_deref() == Some(a.as_str()) {
            own_wins += 1;
        }
        let (fa, fb) = tokio::join!(h.send_json(&a, get.clone()), h.send_json(&b, get.clone()));
        assert_eq!(untimed(fa.unwrap()), untimed(fb.unwrap()));
    }
    println!("twin races: {ROUNDS} rounds, the run's own connection won {own_wins}");
}

/// The sweep, every 10 ms and acting on stale reads, never ends a run that renews its heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sweep_racing_a_live_heartbeat_never_kills_the_run() {
    const ROUNDS: usize = 20;
    let mut cfg = test_config();
    cfg.heartbeat_deadline = Duration::from_millis(900);
    let (h, store) = harness(cfg).await;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sweeper = {
        let (h, done) = (h.clone(), done.clone());
        tokio::spawn(async move {
            let (mut sweeps, mut dead) = (0, 0);
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let r = sweep(&h.mgr.run_deps().unwrap(), now_ms()).await;
                dead += r.dead + r.timed_out;
                sweeps += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (sweeps, dead)
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..ROUNDS {
        let (h, store) = (h.clone(), store.clone());
        tasks.spawn(async move {
            let user = format!("beating-{round}");
            let conn = h.connect(&user).await;
            let run = {
                let (h, conn) = (h.clone(), conn.clone());
                tokio::spawn(async move {
                    h.send_json(&conn, start_frame("beat", "race", Some(1_500)))
                        .await
                })
            };
            let run_id = started(&h, &conn).await;
            let stale_read = store
                .get_run((&user).into(), &run_id)
                .await
                .unwrap()
                .unwrap();
            // Wait for a renewal, then act on the old read as a sweep that saw it due would.
            loop {
                let now = store
                    .get_run((&user).into(), &run_id)
                    .await
                    .unwrap()
                    .unwrap();
                if now.version > stale_read.version {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let raced = reap(&h.mgr.run_deps().unwrap(), &stale_read, stale_read.stale_at)
                .await
                .unwrap();
            match &raced {
                Reaped::Raced(current) => assert!(current.state.is_alive(), "{current:?}"),
                other => panic!("round {round}: {other:?}"),
            }
            assert_eq!(run.await.unwrap(), None);
            let events = h.pushed(&conn);
            assert_eq!(types(&events), FIVE_EVENTS, "round {round}");
            let end = store
                .get_run((&user).into(), &run_id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(end.state, ExecutionState::Completed);
            assert!(
                end.version >= 4,
                "create, renewals, terminal: {}",
                end.version
            );
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sweeps, ended) = sweeper.await.unwrap();
    assert_eq!(ended, 0, "no renewing run was ended");
    assert!(sweeps >= 10, "{sweeps} sweeps");
    println!(
        "heartbeat races: {ROUNDS} runs, {sweeps} concurrent sweeps, {ROUNDS} stale-read reaps lost"
    );
}

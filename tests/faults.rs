//! Faults injected into DynamoDB (through a proxy) and `@connections` at every step of a run
//! or cancel, on DynamoDB Local.

mod support;

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::connections::STALL;
use support::dynamodb::*;
use support::proxy::{self, Injected, Proxy};
use support::*;
use wsexec::config::Config;
use wsexec::manager::Manager;
use wsexec::notify::apigw::ApiGatewayNotifier;
use wsexec::state::ExecutionState;
use wsexec::store::Store;
use wsexec::store::dynamo::{DynamoSettings, DynamoStore};
use wsexec::time::now_ms;

/// Whether `code` is one a storage failure reaches a client with.
fn is_storage_code(code: &str) -> bool {
    wsexec::store::StorageErrorKind::ALL
        .iter()
        .any(|k| k.code() == code)
}

/// A heartbeat deadline short enough that a 500 ms echo step renews it twice.
fn config() -> Config {
    let mut c = test_config();
    c.heartbeat_deadline = Duration::from_millis(450);
    c
}

/// The fault kinds of the matrix: a name, what the proxy does, and the SDK's attempts.
const KINDS: [(&str, Injected, u32); 7] = [
    (
        "throttled",
        Injected::Error {
            status: 400,
            code: "ThrottlingException",
        },
        1,
    ),
    (
        "capacity",
        Injected::Error {
            status: 400,
            code: "ProvisionedThroughputExceededException",
        },
        1,
    ),
    (
        "unavailable",
        Injected::Error {
            status: 500,
            code: "InternalServerError",
        },
        1,
    ),
    ("timeout", Injected::Stall, 1),
    ("reset", Injected::Reset, 1),
    ("lost", Injected::LoseAnswer, 1),
    // The SDK retries the attempt whose answer was lost: the retry meets the applied write.
    ("lost-retried", Injected::LoseAnswer, 2),
];

/// Client settings behind the proxy: short enough that a stalled request costs under a second,
/// long enough that DynamoDB Local under this test's load never times out by itself.
fn settings(max_attempts: u32) -> DynamoSettings {
    DynamoSettings {
        connect_timeout: Duration::from_millis(500),
        attempt_timeout: Duration::from_millis(800),
        operation_timeout: Duration::from_millis(2_500),
        max_attempts,
    }
}

/// Faulted runs in flight at once: enough to keep the test short on two cores, few enough that
/// DynamoDB Local answers every unfaulted request well within the attempt timeout.
const IN_FLIGHT: usize = 6;

/// Runs `one(label, fault, attempts)` for every fault kind injected at every step in turn, at
/// most `IN_FLIGHT` at once.
async fn at_every_step<T, F, Fut>(steps: usize, one: F) -> Vec<T>
where
    F: Fn(String, Option<(usize, Injected)>, u32) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    let mut out = Vec::new();
    for (name, fault, attempts) in KINDS {
        for step in 1..=steps {
            if tasks.len() >= IN_FLIGHT {
                out.push(tasks.join_next().await.unwrap().unwrap());
            }
            tasks.spawn(one(format!("{name}-{step}"), Some((step, fault)), attempts));
        }
    }
    while let Some(t) = tasks.join_next().await {
        out.push(t.unwrap());
    }
    out
}

/// One faulted run: what the client heard and what the proxy saw.
struct Faulted {
    label: String,
    user: String,
    reply: Option<Value>,
    pushed: Vec<Value>,
    proxy: Proxy,
}

/// Runs one `start_agent` on a cold instance whose DynamoDB requests go through a proxy that
/// injects `fault` on request `step` (1-based); the connection is made beforehand, directly.
async fn faulted_run(
    table: &str,
    label: String,
    fault: Option<(usize, Injected)>,
    attempts: u32,
) -> Faulted {
    let user = format!("u-{label}");
    let direct = Harness::on(
        config(),
        Arc::new(store_at(table, &endpoint(), Default::default())),
    );
    let conn = direct.connect(&user).await;
    let proxy = proxy::start(&endpoint()).await;
    let store = Arc::new(store_at(table, &proxy.url, settings(attempts)));
    let h = Harness::on(config(), store);
    if let Some((step, f)) = fault {
        proxy.inject(step, f);
    }
    let reply = h
        .send_json(&conn, start_frame("faulted", "x", Some(500)))
        .await;
    let pushed = h.pushed(&conn);
    Faulted {
        label,
        user,
        reply,
        pushed,
        proxy,
    }
}

/// Whether the run's create reached DynamoDB and its answer was lost.
fn create_answer_lost(f: &Faulted) -> bool {
    f.proxy.seen().iter().any(|s| {
        s.injected == Some(Injected::LoseAnswer) && s.run_write().is_some_and(|(_, v, _)| v == 1)
    })
}

/// What the client heard: the error reply's code, or the last pushed event's type and code.
fn heard(f: &Faulted) -> (String, String) {
    match &f.reply {
        Some(r) => (
            r["type"].as_str().unwrap_or("").to_owned(),
            r["payload"]["code"].as_str().unwrap_or("").to_owned(),
        ),
        None => {
            let last = f
                .pushed
                .last()
                .unwrap_or_else(|| panic!("{}: silence", f.label));
            (
                last["type"].as_str().unwrap().to_owned(),
                last["payload"]["code"].as_str().unwrap_or("").to_owned(),
            )
        }
    }
}

/// DynamoDB failing at each step of a run: the client always hears, no accepted run is lost, no write moves a run backwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_failing_at_every_step_of_a_run() {
    let table_store = fresh_store("faults").await;
    let table = table_store.table().to_owned();
    let direct = Arc::new(store_at(&table, &endpoint(), Default::default()));

    let baseline = faulted_run(&table, "baseline".into(), None, 1).await;
    assert_eq!(types(&baseline.pushed), FIVE_EVENTS);
    let ops: Vec<String> = baseline.proxy.seen().iter().map(|s| s.op.clone()).collect();
    assert_eq!(
        ops[..2],
        ["GetItem", "PutItem"],
        "identity, then the create"
    );
    assert!(
        ops.len() >= 4,
        "create, at least one heartbeat, terminal: {ops:?}"
    );
    let steps = ops.len();

    let mut runs = vec![baseline];
    runs.extend(
        at_every_step(steps, |label, fault, attempts| {
            let table = table.clone();
            async move { faulted_run(&table, label, fault, attempts).await }
        })
        .await,
    );

    // Before the sweep: what the client heard, and whether DynamoDB has the run.
    let mut before = Vec::new();
    for f in &runs {
        let (kind, code) = heard(f);
        let stored = direct
            .list_runs((&f.user).into(), None, 10, None)
            .await
            .unwrap()
            .items;
        assert!(stored.len() <= 1, "{}: one request, one run", f.label);
        let created = f
            .proxy
            .seen()
            .iter()
            .any(|s| s.run_write().is_some_and(|(_, v, _)| v == 1));
        assert_eq!(
            stored.len() == 1,
            created,
            "{}: the run exists iff DynamoDB took its create",
            f.label
        );
        match kind.as_str() {
            "error" => assert!(is_storage_code(&code), "{}: {code}", f.label),
            "agent_completed" => {
                assert_eq!(types(&f.pushed), FIVE_EVENTS, "{}", f.label);
                assert_eq!(stored[0].state, ExecutionState::Completed, "{}", f.label);
            }
            // A create whose answer was lost, retried by the SDK, meets its own write: that run
            // is driven, never answered as a deduplicated one that nothing drives.
            "execution" => panic!("{}: answered {:?}", f.label, f.reply),
            "agent_error" => {
                assert!(is_storage_code(&code), "{}: {code}", f.label);
                assert!(
                    stored[0].state.is_alive(),
                    "{}: told {code}, stored {:?}",
                    f.label,
                    stored[0].state
                );
            }
            other => panic!("{}: heard {other}", f.label),
        }
        if f.reply.is_none() {
            assert_eq!(f.pushed[0]["type"], "agent_started", "{}", f.label);
            assert_eq!(stored.len(), 1, "{}: a started run is stored", f.label);
        }
        before.push((kind, stored.into_iter().next()));
    }

    // The scheduled sweep, run as if a minute had passed, ends every run left alive.
    let notifier = Arc::new(wsexec::notify::memory::MemoryNotifier::new());
    let mgr = Manager::new(config(), direct.clone(), notifier.clone());
    let later = now_ms() + 60_000;
    let deps = mgr.run_deps().unwrap();
    let mut sweeps = 0;
    while wsexec::sweep::sweep(&deps, later).await.examined > 0 {
        sweeps += 1;
        assert!(sweeps < 100, "the sweep never drained the orphaned runs");
    }
    // The create whose answer was lost and retried: the run went on and completed.
    let retried: Vec<&Faulted> = runs
        .iter()
        .filter(|f| f.label.starts_with("lost-retried") && create_answer_lost(f))
        .collect();
    assert!(!retried.is_empty(), "a lost create answer was retried");
    for f in retried {
        assert_eq!(
            types(&f.pushed),
            FIVE_EVENTS,
            "{}: driven to its end",
            f.label
        );
    }
    let mut injected = 0;
    let mut lost_answers_applied = 0;
    for (f, (kind, was)) in runs.iter().zip(before) {
        injected += f.proxy.injected();
        let Some(was) = was else { continue };
        let now = direct
            .get_run((&f.user).into(), &was.run_id)
            .await
            .unwrap()
            .expect("run kept");
        assert!(now.state.is_terminal(), "{}: {:?}", f.label, now.state);
        match kind.as_str() {
            "agent_completed" => assert_eq!(now, was, "{}: never moved backwards", f.label),
            _ if was.state.is_terminal() => assert_eq!(now, was, "{}", f.label),
            _ => {
                assert!(
                    matches!(now.state, ExecutionState::Timeout | ExecutionState::Dead),
                    "{}: the sweep ended it: {:?}",
                    f.label,
                    now.state
                );
                assert_eq!(now.version, was.version + 1, "{}", f.label);
            }
        }
        // On the wire: consecutive versions, nothing after a terminal write.
        let writes: Vec<(u64, String)> = f
            .proxy
            .seen()
            .iter()
            .filter_map(|s| s.run_write())
            .filter(|(id, _, _)| *id == was.run_id)
            .map(|(_, v, s)| (v, s))
            .collect();
        for (i, (v, _)) in writes.iter().enumerate() {
            assert_eq!(*v, i as u64 + 1, "{}: versions {writes:?}", f.label);
        }
        let terminal = writes
            .iter()
            .position(|(_, s)| ExecutionState::parse(s).is_some_and(|s| s.is_terminal()));
        if let Some(t) = terminal {
            assert_eq!(
                t,
                writes.len() - 1,
                "{}: a write after terminal {writes:?}",
                f.label
            );
        }
        assert_eq!(writes.last().map(|w| w.0), Some(was.version), "{}", f.label);
        lost_answers_applied += f
            .proxy
            .seen()
            .iter()
            .filter(|s| s.injected == Some(Injected::LoseAnswer) && s.applied())
            .count();
    }
    assert_eq!(injected, KINDS.len() * steps, "one fault per faulted run");
    assert!(lost_answers_applied > 0);
    println!(
        "dynamodb faults: {} runs, {injected} faults injected, {lost_answers_applied} applied writes whose answer was lost, {steps} steps per run",
        runs.len()
    );
}

/// One faulted cancel: the canceller's reply, the run's own events, the run as stored.
struct FaultedCancel {
    label: String,
    reply: Value,
    runner: Vec<Value>,
    canceller: String,
    run: wsexec::store::RunRecord,
    proxy: Proxy,
}

/// Starts a long run directly, then cancels it from another connection on a cold instance whose
/// DynamoDB requests go through a proxy injecting `fault` on request `step`.
async fn faulted_cancel(
    table: &str,
    label: String,
    fault: Option<(usize, Injected)>,
    attempts: u32,
) -> FaultedCancel {
    let user = format!("c-{label}");
    let direct = Arc::new(Harness::on(
        config(),
        Arc::new(store_at(table, &endpoint(), Default::default())),
    ));
    let runner = direct.connect(&user).await;
    let canceller = direct.connect(&user).await;
    let task = {
        let (direct, runner) = (direct.clone(), runner.clone());
        let body = json!({"type": "start_agent", "request_id": "long", "payload": {"user_request": "x", "delay_ms": 1500}});
        tokio::spawn(async move { direct.send_json(&runner, body).await })
    };
    let run_id = loop {
        if let Some(e) = direct.pushed(&runner).first() {
            break e["run_id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let proxy = proxy::start(&endpoint()).await;
    let h = Harness::on(
        config(),
        Arc::new(store_at(table, &proxy.url, settings(attempts))),
    );
    if let Some((step, f)) = fault {
        proxy.inject(step, f);
    }
    let reply = h
        .send_json(
            &canceller,
            json!({"type": "cancel_agent", "run_id": run_id}),
        )
        .await
        .unwrap();
    assert_eq!(task.await.unwrap(), None);
    let run = direct
        .mgr
        .store()
        .unwrap()
        .get_run((&user).into(), &run_id)
        .await
        .unwrap()
        .unwrap();
    FaultedCancel {
        label,
        reply,
        runner: direct.pushed(&runner),
        canceller,
        run,
        proxy,
    }
}

/// DynamoDB failing at each step of a cancel: `agent_cancelled` exactly when it landed, else a classified error; events agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_failing_at_every_step_of_a_cancel() {
    let table = fresh_store("cancelfaults").await.table().to_owned();
    let baseline = faulted_cancel(&table, "baseline".into(), None, 1).await;
    assert_eq!(baseline.reply["type"], "agent_cancelled");
    let steps = baseline.proxy.count();
    assert_eq!(steps, 3, "identity, read, conditional write");
    let mut cancels = vec![baseline];
    cancels.extend(
        at_every_step(steps, |label, fault, attempts| {
            let table = table.clone();
            async move { faulted_cancel(&table, label, fault, attempts).await }
        })
        .await,
    );
    let (mut landed, mut injected) = (0, 0);
    for c in &cancels {
        injected += c.proxy.injected();
        let runner = types(&c.runner);
        match c.reply["type"].as_str() {
            Some("agent_cancelled") => {
                landed += 1;
                assert_eq!(c.run.state, ExecutionState::Cancelled, "{}", c.label);
                assert_eq!(
                    c.run.cancelled_by.as_deref(),
                    Some(c.canceller.as_str()),
                    "{}",
                    c.label
                );
                assert_eq!(
                    runner.last().map(String::as_str),
                    Some("agent_cancelled"),
                    "{}",
                    c.label
                );
                assert!(
                    !runner.contains(&"agent_completed".to_owned()),
                    "{}",
                    c.label
                );
            }
            Some("error") => {
                let code = c.reply["payload"]["code"].as_str().unwrap();
                assert!(is_storage_code(code), "{}: {code}", c.label);
                assert_eq!(
                    c.run.state,
                    ExecutionState::Completed,
                    "{}: the cancel did not land",
                    c.label
                );
                assert_eq!(runner, FIVE_EVENTS, "{}", c.label);
            }
            other => panic!("{}: {other:?} {}", c.label, c.reply),
        }
    }
    assert_eq!(injected, KINDS.len() * steps);
    println!(
        "cancel faults: {} cancels, {injected} faults injected, {landed} landed",
        cancels.len()
    );
}

/// A manager on `table` pushing through a loopback `@connections` endpoint at `endpoint_url`.
fn push_manager(store: Arc<DynamoStore>, endpoint_url: &str) -> Manager {
    let mut cfg = test_config();
    cfg.connections_endpoint = Some(endpoint_url.to_owned());
    let notifier = Arc::new(ApiGatewayNotifier::new("us-east-1", credentials()));
    Manager::new(cfg, store, notifier)
}

/// `@connections` failing at each push: the run always completes, every other event arrives, the outcome stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_endpoint_failing_at_every_push() {
    let ep = support::connections::start().await;
    let store = Arc::new(fresh_store("pushfaults").await);
    let mgr = Arc::new(push_manager(store.clone(), &ep.url));
    // Statuses the notifier retries are scripted for every attempt, so the push really fails.
    let every = wsexec::notify::apigw::PUSH_ATTEMPTS as usize;
    let kinds: [(u16, usize); 5] = [(410, 1), (403, 1), (429, every), (500, every), (STALL, 1)];
    let mut tasks = tokio::task::JoinSet::new();
    for (status, repeat) in kinds {
        for step in 1..=FIVE_EVENTS.len() {
            let (mgr, ep, store) = (mgr.clone(), ep.clone(), store.clone());
            tasks.spawn(async move {
                let user = format!("p-{status}-{step}");
                let conn = aws_id();
                let r = invoke_with(&mgr, &connect_event(&conn, &[("user_id", &user)], &[])).await;
                assert_eq!(r["statusCode"], 200);
                let mut script = vec![200; step - 1];
                script.extend(std::iter::repeat_n(status, repeat));
                ep.script(&conn, &script);
                let reply = invoke_with(
                    &mgr,
                    &message_event(&conn, &start_frame("faulted", "x", Some(500)).to_string()),
                )
                .await;
                assert!(reply.get("body").is_none(), "{reply}");
                let runs = store
                    .list_runs((&user).into(), None, 10, None)
                    .await
                    .unwrap()
                    .items;
                assert_eq!(runs.len(), 1, "{status}@{step}");
                assert_eq!(runs[0].state, ExecutionState::Completed, "{status}@{step}");
                let delivered = types(&ep.delivered(&conn));
                let mut expected: Vec<String> = FIVE_EVENTS.iter().map(|s| s.to_string()).collect();
                if status == 410 {
                    expected.truncate(step - 1);
                    assert_eq!(store.get_connection(&conn).await.unwrap(), None);
                    assert_eq!(ep.attempts(&conn), step, "no push after a 410");
                } else {
                    expected.remove(step - 1);
                    assert!(store.get_connection(&conn).await.unwrap().is_some());
                }
                assert_eq!(delivered, expected, "{status}@{step}");
                if status != 410 && step == FIVE_EVENTS.len() {
                    // The terminal event was lost: the client reads the outcome instead.
                    let body = json!({"type": "get_execution", "run_id": runs[0].run_id});
                    let got = invoke_with(&mgr, &message_event(&conn, &body.to_string())).await;
                    let got: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
                    assert_eq!(got["payload"]["state"], "completed");
                    assert_eq!(got["payload"]["result"]["reply"], "echo: x");
                }
                ep.attempts(&conn) - ep.delivered(&conn).len()
            });
        }
    }
    let mut failed_pushes = 0;
    let mut runs = 0;
    while let Some(t) = tasks.join_next().await {
        failed_pushes += t.unwrap();
        runs += 1;
    }
    // Every push refused: the run still completes and is readable.
    let refused = push_manager(store.clone(), &refused_endpoint());
    let conn = aws_id();
    invoke_with(
        &refused,
        &connect_event(&conn, &[("user_id", "p-refused")], &[]),
    )
    .await;
    invoke_with(
        &refused,
        &message_event(&conn, &start_frame("faulted", "x", Some(500)).to_string()),
    )
    .await;
    let done = store
        .list_runs("p-refused".into(), None, 10, None)
        .await
        .unwrap()
        .items;
    assert_eq!(done[0].state, ExecutionState::Completed);
    failed_pushes += FIVE_EVENTS.len();
    runs += 1;
    println!("push faults: {runs} runs, {failed_pushes} failed push attempts, every run completed");
}

/// An agent that waits for its gate, then streams `GATED_WORDS` words, one report each.
struct Gated(Arc<tokio::sync::Semaphore>);

/// Words the [`Gated`] agent streams: past two `seq` reservations.
const GATED_WORDS: usize = 150;

#[async_trait::async_trait]
impl wsexec::run::Executor for Gated {
    async fn execute(
        &self,
        _input: wsexec::run::RunInput<'_>,
        sink: wsexec::run::RunSink,
    ) -> Result<Value, wsexec::run::AgentFailure> {
        let _open = self.0.acquire().await;
        for i in 0..GATED_WORDS {
            sink.delta(&format!("w{i} ")).await;
        }
        Ok(json!("streamed"))
    }
}

/// The `seq`s pushed to `conn` so far.
fn pushed_seqs(h: &Harness, conn: &str) -> Vec<u64> {
    let frames = h.pushed(conn);
    frames.iter().filter_map(|f| f["seq"].as_u64()).collect()
}

/// A heartbeat write DynamoDB is slow to answer delays no push: the write reserving more `seq`s
/// begins while a quarter of the reservation is left and the stream goes on while it is held,
/// up to the reservation and not past it; once it lands the rest follows, numbered on, and the
/// run completes with its reservation covering every `seq` pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_heartbeat_write_delays_no_push_within_the_reservation() {
    let table = fresh_store("slowbeat").await.table().to_owned();
    let proxy = proxy::start(&endpoint()).await;
    let patient = DynamoSettings {
        attempt_timeout: Duration::from_secs(20),
        operation_timeout: Duration::from_secs(40),
        max_attempts: 1,
        ..DynamoSettings::default()
    };
    let mut c = test_config();
    c.stream_flush = Duration::ZERO;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let h = Harness::on(c, Arc::new(store_at(&table, &proxy.url, patient)))
        .with_agent("gated", Arc::new(Gated(gate.clone())));
    let h = Arc::new(h);
    let conn = h.connect("alice-01").await;
    let frame = json!({"type": "start_agent", "agent": "gated", "request_id": "g", "payload": {"user_request": "go"}});
    let run = {
        let (h, conn) = (h.clone(), conn.clone());
        tokio::spawn(async move { h.send_json(&conn, frame).await })
    };
    // The run is created (`agent_started` pushed) before any write of it is held.
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while pushed_seqs(&h, &conn).is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    waited.await.expect("agent_started");
    let reserved = wsexec::run::journal::SEQ_RESERVATION;
    proxy.hold("PutItem");
    gate.add_permits(1);
    let reached = tokio::time::timeout(Duration::from_secs(20), async {
        while pushed_seqs(&h, &conn).last() < Some(&reserved) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    reached.await.expect("the stream reaches its reservation");
    // Time for a push past the reservation to show, if the driver made one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = proxy.held();
    assert_eq!(held.len(), 1, "one heartbeat in flight: {held:?}");
    let at: u64 = held[0].body["Item"]["seq"]["N"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        at < reserved,
        "the write began before the reservation ran out, at seq {at}"
    );
    let seqs = pushed_seqs(&h, &conn);
    assert_eq!(
        seqs.last(),
        Some(&reserved),
        "pushed on while the write was held ({} frames after its seq {at}), not past the reservation",
        reserved - at
    );
    proxy.release();
    let reply = tokio::time::timeout(Duration::from_secs(20), run).await;
    assert_eq!(reply.expect("the run ends").unwrap(), None);
    let frames = h.pushed(&conn);
    let seqs = pushed_seqs(&h, &conn);
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "numbered on, none given twice");
    assert_eq!(types(&frames).last().unwrap(), "agent_completed");
    let words: String = (0..GATED_WORDS).map(|i| format!("w{i} ")).collect();
    assert_eq!(delta_text(&frames), words);
    let stored = h.alice_run(frames[0]["run_id"].as_str().unwrap()).await;
    assert_eq!(stored.state, ExecutionState::Completed);
    assert!(stored.seq_reserved >= stored.seq, "{stored:?}");
}

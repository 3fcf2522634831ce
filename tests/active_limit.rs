//! `MAX_ACTIVE_RUNS_PER_USER` through the release binary on DynamoDB Local: concurrent starts
//! take exactly the limit's slots (one `TransactWriteItems` each), the rest are refused
//! `quota_exceeded` with no run left behind, every ending gives its slot back, and a run
//! whose worker was killed keeps its slot through its continuation until it ends.

mod support;

use futures_util::future::join_all;
use serde_json::{Value, json};
use std::time::Duration;
use support::dynamodb::*;
use support::runtime_api::Runtime;
use support::*;
use wsexec::store::{Owner, Store};

const LIMIT: Duration = Duration::from_secs(30);
/// The limit under test.
const MAX_ACTIVE: &str = "4";
/// Starts sent at once by one user.
const STARTS: usize = 20;

/// The binary under test: `WSEXEC_BIN` (the release build `tools/test` makes) or Cargo's build.
fn binary() -> String {
    std::env::var("WSEXEC_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_wsexec").to_owned())
}

/// The binary against `table` and `connections`, with `slots` concurrent invocations (1: the
/// classic one-at-a-time loop) and `extra` settings.
async fn spawn(table: &str, connections: &str, slots: usize, extra: &[(&str, &str)]) -> Runtime {
    let mut rt = Runtime::start().await;
    let lambda = format!("http://{}", rt.addr);
    let mut env: Vec<(String, String)> = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("CONNECTIONS_ENDPOINT", connections),
        ("TABLE_NAME", table),
        ("RUST_LOG", "warn"),
        ("AWS_ENDPOINT_URL_LAMBDA", lambda.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.push(("AWS_ENDPOINT_URL_DYNAMODB".into(), endpoint()));
    env.push(("AWS_LAMBDA_MAX_CONCURRENCY".into(), slots.to_string()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    rt.spawn(&binary(), &[], &env, 128);
    rt.wait_init(LIMIT).await;
    if slots > 1 {
        rt.wait_polling(slots as u64, LIMIT).await;
    }
    rt
}

/// Connects `user` through an API Gateway authorizer; the connection id.
async fn connect(rt: &Runtime, user: &str) -> String {
    let conn = aws_id();
    let ev = authorizer_connect_event(&conn, user).to_string();
    assert_eq!(rt.invoke(&ev, LIMIT).await.0.json()["statusCode"], 200);
    conn
}

/// Sends a start on `conn`; the direct reply frame, if any (none: the run's events were pushed).
async fn start(rt: &Runtime, conn: &str, request_id: &str, delay_ms: u64) -> Option<Value> {
    let frame = start_frame(request_id, "hello", Some(delay_ms)).to_string();
    let out = rt
        .invoke(&message_event(conn, &frame).to_string(), LIMIT)
        .await
        .0
        .json();
    assert_eq!(out["statusCode"], 200, "{out}");
    out.get("body")
        .and_then(Value::as_str)
        .map(|b| serde_json::from_str(b).expect("the reply is JSON"))
}

/// Whether `reply` is the active-run limit's refusal.
fn is_refusal(reply: &Option<Value>) -> bool {
    reply.as_ref().is_some_and(|r| {
        r["type"] == "agent_error"
            && r["payload"]["code"] == "quota_exceeded"
            && r["payload"]["limit"] == "MAX_ACTIVE_RUNS_PER_USER"
            && r["payload"]["retryable"] == true
            && r.get("run_id").is_none()
    })
}

/// 20 concurrent starts by one user with a limit of 4, in one process serving them all at
/// once: exactly 4 runs exist and complete, 16 are refused `quota_exceeded` naming the limit;
/// once they finished every slot is back, and 4 more start.
#[tokio::test]
async fn twenty_concurrent_starts_with_a_limit_of_four_run_exactly_four() {
    let store = fresh_store("bin-quota").await;
    let ep = support::connections::start().await;
    let extra = [("MAX_ACTIVE_RUNS_PER_USER", MAX_ACTIVE)];
    let rt = spawn(store.table(), &ep.url, STARTS + 4, &extra).await;
    let conn = connect(&rt, "quota-user-01").await;
    let owner = Owner::user("quota-user-01");

    let starts = (0..STARTS).map(|i| {
        let (rt, conn) = (&rt, &conn);
        async move { start(rt, conn, &format!("burst-{i}"), 1000).await }
    });
    let replies = join_all(starts).await;
    let ran = replies.iter().filter(|r| r.is_none()).count();
    let refused = replies.iter().filter(|r| is_refusal(r)).count();
    assert_eq!((ran, refused), (4, 16), "{replies:?}");
    let runs = store.list_runs(owner, None, 50, None).await.unwrap().items;
    assert_eq!(runs.len(), 4, "no refused start left a run");
    assert!(
        runs.iter()
            .all(|r| r.state == wsexec::ExecutionState::Completed),
        "{:?}",
        runs.iter().map(|r| r.state).collect::<Vec<_>>()
    );
    assert_eq!(store.active_runs(owner).await.unwrap(), 0);

    let again = (0..4).map(|i| {
        let (rt, conn) = (&rt, &conn);
        async move { start(rt, conn, &format!("after-{i}"), 200).await }
    });
    let replies = join_all(again).await;
    assert!(replies.iter().all(Option::is_none), "{replies:?}");
    let runs = store.list_runs(owner, None, 50, None).await.unwrap().items;
    assert_eq!(runs.len(), 8);
    assert_eq!(store.active_runs(owner).await.unwrap(), 0);
}

/// A worker killed (`SIGKILL` of its environment) while its run holds the user's only slot:
/// starts are refused while the run lives, the sweep continues it (a continuation is the
/// same run, so it keeps the slot), and the write that finally ends it gives the slot back.
#[tokio::test]
async fn a_killed_workers_slot_is_held_by_its_continuation_and_freed_when_it_ends() {
    let store = fresh_store("bin-quota-kill").await;
    let ep = support::connections::start().await;
    let extra = [
        ("MAX_ACTIVE_RUNS_PER_USER", "1"),
        ("RUN_DISPATCH", "async"),
        ("RUN_TIME_LIMIT_MS", "60000"),
        ("HEARTBEAT_DEADLINE_MS", "2000"),
    ];
    let mut rt = spawn(store.table(), &ep.url, 1, &extra).await;
    let conn = connect(&rt, "quota-user-02").await;
    let owner = Owner::user("quota-user-02");
    assert_eq!(start(&rt, &conn, "doomed", 4_000).await, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ep
        .delivered(&conn)
        .iter()
        .any(|e| e["type"] == "tool_executing")
    {
        assert!(std::time::Instant::now() < deadline, "the worker never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rt.kill_all();

    let mut rt = spawn(store.table(), &ep.url, 1, &extra).await;
    assert!(is_refusal(&start(&rt, &conn, "while-held", 10).await));
    assert_eq!(store.active_runs(owner).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let sweep = rt
        .invoke(&sample("scheduled-sweep.json").to_string(), LIMIT)
        .await
        .0
        .json();
    assert_eq!(
        (&sweep["continued"], &sweep["dead"]),
        (&json!(1), &json!(0)),
        "{sweep}"
    );
    assert_eq!(
        store.active_runs(owner).await.unwrap(),
        1,
        "the continuation holds it"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let runs = store.list_runs(owner, None, 50, None).await.unwrap().items;
        if runs
            .iter()
            .all(|r| r.state == wsexec::ExecutionState::Completed)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never ended: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.active_runs(owner).await.unwrap(), 0);
    assert_eq!(start(&rt, &conn, "after-end", 10).await, None);
    let runs = store.list_runs(owner, None, 50, None).await.unwrap().items;
    assert_eq!(runs.len(), 2, "the refused start left no run: {runs:?}");
    rt.kill_all();
}

/// The refusal's frame, as a client reads it.
#[test]
fn the_refusal_names_its_limit() {
    let err = wsexec::protocol::ClientError::quota("MAX_ACTIVE_RUNS_PER_USER", "m", None);
    let v = json!(err);
    assert_eq!(v["code"], "quota_exceeded");
    assert_eq!(v["limit"], "MAX_ACTIVE_RUNS_PER_USER");
    assert!(v.get("retry_after_ms").is_none());
}

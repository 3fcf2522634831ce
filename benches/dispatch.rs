//! Dispatch latency (issue 13): time from a `start_agent` invocation to the run's
//! `agent_started` push, inline, `RUN_DISPATCH=auto` and `async`, on one loopback Runtime API (whose
//! `Invoke` API queues the worker invocation like Lambda), warm and with a cold worker
//! environment, against DynamoDB Local. Medians of rounds, and each as a ratio to inline. Then
//! what durable runs cost ([`durable`]): journaling a step, and a hand-off to a continuation.
//!
//! Run with `tools/bench` (release binary and DynamoDB Local). Writes `target/dispatch.md`.

#[path = "../tests/support/connections.rs"]
mod connections;
#[path = "../tests/support/dynamodb.rs"]
mod dynamodb;
#[path = "../tests/support/http.rs"]
mod http;
#[path = "../tests/support/proxy.rs"]
mod proxy;
#[path = "../tests/support/runtime_api.rs"]
mod runtime_api;

#[path = "dispatch/durable.rs"]
mod durable;

use runtime_api::{Runtime, median};
use serde_json::Value;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

fn sample(name: &str) -> Value {
    let p = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn start_event(conn: &str, n: u64) -> String {
    let mut e = sample("message-start-agent.json");
    e["requestContext"]["connectionId"] = conn.into();
    e["requestContext"]["messageId"] = format!("D{n:014}=").into();
    let body = serde_json::json!({"type": "start_agent", "request_id": format!("bench-{n}"),
        "payload": {"user_request": "how fast does it start?"}});
    e["body"] = body.to_string().into();
    e.to_string()
}

/// Environments of the release binary, with `dispatch`.
async fn runtime(table: &str, conns: &str, dispatch: &str, processes: usize) -> Runtime {
    let ddb = dynamodb::endpoint();
    runtime_with(table, conns, &ddb, &[("RUN_DISPATCH", dispatch)], processes).await
}

/// Environments of the release binary with DynamoDB at `ddb` and `extra` settings.
async fn runtime_with(
    table: &str,
    conns: &str,
    ddb: &str,
    extra: &[(&str, &str)],
    processes: usize,
) -> Runtime {
    let mut rt = Runtime::start().await;
    for _ in 0..processes {
        spawn_env(&mut rt, table, conns, ddb, extra);
    }
    rt.wait_init(LIMIT).await;
    rt
}

/// One more environment of the release binary under `rt`.
fn spawn_env(rt: &mut Runtime, table: &str, conns: &str, ddb: &str, extra: &[(&str, &str)]) {
    let lambda = format!("http://{}", rt.addr);
    let mut env: Vec<(String, String)> = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_ENDPOINT_URL_DYNAMODB", ddb),
        ("AWS_ENDPOINT_URL_LAMBDA", &lambda),
        ("CONNECTIONS_ENDPOINT", conns),
        ("JWT_SECRET", "wsexec-sample-secret"),
        ("TABLE_NAME", table),
        ("RUST_LOG", "warn"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let bin = std::env::var("WSEXEC_BIN")
        .unwrap_or_else(|_| format!("{}/target/release/wsexec", env!("CARGO_MANIFEST_DIR")));
    rt.spawn(&bin, &[], &env, 256);
}

/// Milliseconds from the start invocation to the `agent_started` push, per round.
async fn measure(
    rt: &mut Runtime,
    ep: &connections::ConnectionsEndpoint,
    conn: &str,
    rounds: u64,
    first: u64,
) -> Vec<f64> {
    let mut out = Vec::new();
    for n in first..first + rounds {
        let before = ep.delivered(conn).len();
        let t = Instant::now();
        rt.invoke(&start_event(conn, n), LIMIT).await;
        loop {
            let got = ep.delivered(conn);
            if got[before..].iter().any(|e| e["type"] == "agent_started") {
                break;
            }
            assert!(t.elapsed() < LIMIT, "no agent_started");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        out.push(t.elapsed().as_secs_f64() * 1000.0);
        // Let the run finish before the next round.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    out
}

#[tokio::main]
async fn main() {
    let rounds: u64 = std::env::var("DISPATCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let store = dynamodb::fresh_store("dispatch").await;
    let ep = connections::start().await;
    let conn = sample("connect-jwt-query.json")["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let connect = sample("connect-jwt-query.json").to_string();

    let mut inline = runtime(store.table(), &ep.url, "inline", 1).await;
    inline.invoke(&connect, LIMIT).await;
    let mut inline_ms = measure(&mut inline, &ep, &conn, rounds, 0).await;
    drop(inline);

    // `auto`: inline first; a short run never invokes, so this is its whole cost.
    let mut auto = runtime(store.table(), &ep.url, "auto", 1).await;
    auto.invoke(&connect, LIMIT).await;
    let mut auto_ms = measure(&mut auto, &ep, &conn, rounds, 40_000).await;
    assert_eq!(auto.async_invocations(), 0, "auto invoked for a short run");
    drop(auto);

    let mut warm = runtime(store.table(), &ep.url, "async", 2).await;
    warm.invoke(&connect, LIMIT).await;
    // Warm both environments first.
    measure(&mut warm, &ep, &conn, 4, 10_000).await;
    let mut warm_ms = measure(&mut warm, &ep, &conn, rounds, 20_000).await;
    drop(warm);

    // A cold worker: a warm environment serves the route while the worker event is held; it
    // is then killed, and a fresh environment (its init included) serves the worker.
    let mut cold_ms = Vec::new();
    for n in 0..rounds.min(10) {
        let mut rt = runtime(store.table(), &ep.url, "async", 1).await;
        rt.invoke(&connect, LIMIT).await;
        rt.hold_async(true);
        let before = ep.delivered(&conn).len();
        let t = Instant::now();
        rt.invoke(&start_event(&conn, 30_000 + n), LIMIT).await;
        rt.kill_all();
        let ddb = dynamodb::endpoint();
        spawn_env(
            &mut rt,
            store.table(),
            &ep.url,
            &ddb,
            &[("RUN_DISPATCH", "async")],
        );
        rt.hold_async(false);
        loop {
            if ep.delivered(&conn)[before..]
                .iter()
                .any(|e| e["type"] == "agent_started")
            {
                break;
            }
            assert!(t.elapsed() < LIMIT, "no agent_started from the cold worker");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        cold_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    let (i, a, w, c) = (
        median(&mut inline_ms),
        median(&mut auto_ms),
        median(&mut warm_ms),
        median(&mut cold_ms),
    );
    let report = format!(
        "| start → agent_started | median ms | ratio to inline |\n|---|---|---|\n| inline | {i:.2} | 1.00 |\n| auto (a short run: no Invoke) | {a:.2} | {:.2} |\n| async, warm worker | {w:.2} | {:.2} |\n| async, worker in a fresh process | {c:.2} | {:.2} |\n",
        a / i,
        w / i,
        c / i
    );
    let durable = durable::report(store.table(), &ep, rounds).await;
    let report = format!("{report}\n{durable}");
    println!("{report}");
    let _ = std::fs::write(
        format!("{}/target/dispatch.md", env!("CARGO_MANIFEST_DIR")),
        report,
    );
}

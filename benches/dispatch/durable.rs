//! What durable runs cost (issue 23), in the dispatch bench's setting, with DynamoDB Local
//! behind a counting proxy. An echo run (a 300 ms tool step, then its answer) is measured three
//! ways, each for the bench's rounds, in two warm environments:
//! - `inline`: nothing journaled (the baseline);
//! - `auto`, ending inline: its tool step journaled (one conditional `PutItem`);
//! - `auto`, handed off at its safe point after the tool step (`ROUTE_TIME_LIMIT_MS` 1000,
//!   `HANDOFF_MARGIN_MS` 500), the other environment taking the continuation.
//!
//! For each: the median gap from `tool_completed` to `agent_completed` as the client sees them
//! (what journaling the step, and then the continuation, add to the run), and the DynamoDB
//! requests of one run by operation, counted at the proxy.

use super::{LIMIT, connections, dynamodb, proxy, runtime_with, sample};
use crate::runtime_api::{Runtime, median};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One echo run on `conn`: the gap from `tool_completed` to `agent_completed` in ms.
async fn one_run(rt: &Runtime, ep: &connections::ConnectionsEndpoint, conn: &str, n: u64) -> f64 {
    let mut e = sample("message-start-agent.json");
    e["requestContext"]["connectionId"] = conn.into();
    e["requestContext"]["messageId"] = format!("E{n:014}=").into();
    let body = json!({"type": "start_agent", "request_id": format!("durable-{n}"),
        "agent": "echo", "payload": {"user_request": "journal me", "delay_ms": 300}});
    e["body"] = body.to_string().into();
    let before = ep.delivered(conn).len();
    rt.invoke(&e.to_string(), LIMIT).await;
    let t = Instant::now();
    loop {
        let got = ep.delivered_at(conn);
        let at = |kind: &str| {
            got[before..]
                .iter()
                .find(|(_, f)| f["type"] == kind)
                .map(|(at, _)| *at)
        };
        if let (Some(tool), Some(done)) = (at("tool_completed"), at("agent_completed")) {
            return done.duration_since(tool).as_secs_f64() * 1000.0;
        }
        assert!(t.elapsed() < LIMIT, "the run did not complete");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// `rounds` runs in a fresh runtime with `extra`: the median gap, and DynamoDB requests per run
/// by operation (after the connect).
async fn measure(
    table: &str,
    ep: &connections::ConnectionsEndpoint,
    ddb: &proxy::Proxy,
    extra: &[(&str, &str)],
    rounds: u64,
    first: u64,
) -> (f64, BTreeMap<String, f64>) {
    let rt = runtime_with(table, &ep.url, &ddb.url, extra, 2).await;
    let connect = sample("connect-jwt-query.json");
    let conn = connect["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    rt.invoke(&connect.to_string(), LIMIT).await;
    // One warm-up run per environment, not counted.
    for n in 0..2 {
        one_run(&rt, ep, &conn, first + 1000 + n).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen_before = ddb.seen().len();
    let mut gaps = Vec::new();
    for n in first..first + rounds {
        gaps.push(one_run(&rt, ep, &conn, n).await);
        // The run's last writes (a worker's settle) land before the next starts.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ops: BTreeMap<String, f64> = BTreeMap::new();
    for s in &ddb.seen()[seen_before..] {
        *ops.entry(s.op.clone()).or_default() += 1.0 / rounds as f64;
    }
    (median(&mut gaps), ops)
}

fn ops_text(ops: &BTreeMap<String, f64>) -> String {
    let parts: Vec<String> = ops.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
    parts.join(", ")
}

/// The durable-run table: the three ways, their gaps and requests, and the differences.
pub async fn report(table: &str, ep: &connections::ConnectionsEndpoint, rounds: u64) -> String {
    let ddb = proxy::start(&dynamodb::endpoint()).await;
    let inline = measure(
        table,
        ep,
        &ddb,
        &[("RUN_DISPATCH", "inline")],
        rounds,
        50_000,
    )
    .await;
    let journaled = measure(table, ep, &ddb, &[("RUN_DISPATCH", "auto")], rounds, 60_000).await;
    let handoff = [
        ("RUN_DISPATCH", "auto"),
        ("ROUTE_TIME_LIMIT_MS", "1000"),
        ("HANDOFF_MARGIN_MS", "500"),
    ];
    let handed = measure(table, ep, &ddb, &handoff, rounds, 70_000).await;
    let mut report = String::from(
        "| echo run (300 ms tool step) | tool_completed → agent_completed, median ms | DynamoDB requests per run |\n|---|---|---|\n",
    );
    for (name, (gap, ops)) in [
        ("inline: nothing journaled", &inline),
        ("auto, ends inline: its step journaled", &journaled),
        ("auto, handed off after the step", &handed),
    ] {
        report.push_str(&format!("| {name} | {gap:.2} | {} |\n", ops_text(ops)));
    }
    report.push_str(&format!(
        "\njournaling the step adds {:.2} ms; the hand-off adds {:.2} ms more (rounds: {rounds})\n",
        journaled.0 - inline.0,
        handed.0 - journaled.0
    ));
    report
}

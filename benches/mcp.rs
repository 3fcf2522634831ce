//! MCP tool figures (issue 22), each measured against its own baseline alternately in one run:
//! three 1 s tool calls in one round against one such call; an `llm` run's first tool list
//! (discovery: `initialize` + `tools/list`) against a cached one; one `tools/call` against a
//! plain HTTP round trip to the same server (`GET /plain`, answered by the same Python process
//! before the SDK). The server is the official Python SDK's (`tests/support/mcp_server.py`), the
//! model a scripted loopback Chat Completions endpoint. Medians and per-pair ratios.
//!
//! Run with `tools/bench` (it installs `mcp` from tools/requirements.txt) or
//! `cargo bench --bench mcp` with `WSEXEC_MCP_PYTHON` naming a Python that has it.
//! `MCP_BENCH_ROUNDS` sets the rounds (calls: 20x as many). Writes `target/mcp-bench.md`.

#[path = "../tests/support/http.rs"]
mod http;
#[path = "../tests/support/mcp.rs"]
mod mcp;
#[path = "../tests/support/mcp_agent.rs"]
mod mcp_agent;
#[path = "../tests/support/runtime_api.rs"]
mod runtime_api;
#[path = "../tests/support/sse.rs"]
mod sse;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use mcp::{McpServer, servers};
use mcp_agent::{agent, calls};
use runtime_api::median;
use serde_json::json;
use sse::{ChatServer, Recorder, answer};
use std::time::{Duration, Instant};
use wsexec::tools::Tool;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Medians of `(label, samples)` as a Markdown table row each.
fn rows(figures: &mut [(&str, Vec<f64>)]) -> String {
    figures
        .iter_mut()
        .map(|(label, xs)| format!("| {label} | {:.2} | {} |\n", median(xs), xs.len()))
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds: usize = std::env::var("MCP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let server = McpServer::start();
    let mcp_servers = servers(&[server.entry("t", json!({}))]);

    // Concurrency: one round asking for three 1 s sleeps, then one asking for a single one.
    let mut replies = Vec::new();
    for _ in 0..rounds {
        let sleep = |id| (id, "t__sleep", json!({"seconds": 1.0}));
        replies.push(calls(&[sleep("a"), sleep("b"), sleep("c")]));
        replies.push(answer(&["done"]));
        replies.push(calls(&[sleep("a")]));
        replies.push(answer(&["done"]));
    }
    let chat = ChatServer::start(replies).await;
    let warm = agent(&chat.url, &mcp_servers);
    let (mut three, mut one, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        warm.run("three", &[], &Recorder::default()).await.unwrap();
        let t3 = ms(t.elapsed());
        let t = Instant::now();
        warm.run("one", &[], &Recorder::default()).await.unwrap();
        let t1 = ms(t.elapsed());
        three.push(t3);
        one.push(t1);
        ratio.push(t3 / t1);
    }

    // Discovery: a fresh agent's first run lists the tools; its second uses the cached list.
    let chat = ChatServer::start((0..rounds * 2).map(|_| answer(&["hi"])).collect()).await;
    let (mut first, mut cached, mut discovery) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let fresh = agent(&chat.url, &mcp_servers);
        let t = Instant::now();
        fresh.run("first", &[], &Recorder::default()).await.unwrap();
        let f = ms(t.elapsed());
        let t = Instant::now();
        fresh
            .run("second", &[], &Recorder::default())
            .await
            .unwrap();
        let c = ms(t.elapsed());
        first.push(f);
        cached.push(c);
        discovery.push(f - c);
        fresh.shutdown().await;
    }

    // Per call: `tools/call` through wsexec's MCP client against `GET /plain` on one pooled
    // connection of the same hyper/rustls client, alternately.
    let configs = wsexec::mcp::config::parse(Some(&mcp_servers)).unwrap();
    let tools = wsexec::mcp::McpTools::new(configs);
    let listed = tools.tools().await;
    let lookup = listed
        .iter()
        .find(|t| t.name() == "t__lookup_order")
        .expect("lookup_order listed");
    let tls = wsexec::tls::client_config(wsexec::tls::Roots::Aws).unwrap();
    let plain = wsexec::tls::pooled_client::<Full<Bytes>>(&tls, None, Duration::from_secs(30));
    let plain_url: hyper::Uri = format!("http://{}/plain", server.addr).parse().unwrap();
    let (mut call, mut get, mut overhead) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds * 20 {
        let t = Instant::now();
        lookup.call(json!({"order_id": "A-1"})).await.unwrap();
        let c = ms(t.elapsed());
        let t = Instant::now();
        let response = plain.get(plain_url.clone()).await.unwrap();
        response.into_body().collect().await.unwrap();
        let g = ms(t.elapsed());
        call.push(c);
        get.push(g);
        overhead.push(c - g);
    }
    tools.shutdown().await;

    let report = format!(
        "| figure (ms unless a ratio) | median | samples |\n|---|---|---|\n{}",
        rows(&mut [
            ("three 1 s calls in one round: whole run", three),
            ("one 1 s call: whole run", one),
            ("ratio three-call run / one-call run", ratio),
            ("first run of an instance (discovery + answer)", first),
            ("second run (cached tool list + answer)", cached),
            ("discovery cost (first - second, per pair)", discovery),
            ("tools/call lookup_order through wsexec's MCP client", call),
            ("plain GET /plain round trip, same server", get),
            ("per-call overhead (call - plain, per pair)", overhead),
        ])
    );
    println!("{report}");
    let out = format!("{}/target/mcp-bench.md", env!("CARGO_MANIFEST_DIR"));
    let _ = std::fs::write(out, report);
}

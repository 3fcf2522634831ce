//! Concurrent invocations (issue 16): runs per second and peak RSS of the release binary at
//! `AWS_LAMBDA_MAX_CONCURRENCY` 1, 8 and 64, RSS growth per concurrent echo run, one CPU
//! (current-thread runtime) against two (multi-thread), and, with `WSEXEC_BASELINE_BIN`, the
//! sequential cold start against a build from before concurrency. Loopback Runtime API (one
//! `/next` long-poll per slot), DynamoDB Local, medians of rounds.
//!
//! Run with `tools/bench` (release binary and DynamoDB Local), or alone:
//! `cargo bench --bench concurrency` with `AWS_ENDPOINT_URL_DYNAMODB` set. Writes
//! `target/concurrency.md`.

#[path = "../tests/support/connections.rs"]
mod connections;
#[path = "../tests/support/dynamodb.rs"]
mod dynamodb;
#[path = "../tests/support/http.rs"]
mod http;
#[path = "../tests/support/runtime_api.rs"]
mod runtime_api;

use futures_util::future::join_all;
use runtime_api::{Runtime, median};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

/// The echo step delay of the "waiting" runs: an agent that mostly waits on its model.
const WAITING_MS: u64 = 500;

static NEXT: AtomicU64 = AtomicU64::new(1);

fn sample(name: &str) -> Value {
    let p = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn id() -> u64 {
    NEXT.fetch_add(1, Ordering::Relaxed) + std::process::id() as u64 * 10_000_000
}

fn connect_event(conn: &str, user: &str) -> String {
    let mut e = sample("connect-no-credentials.json");
    e["requestContext"]["connectionId"] = conn.into();
    e["requestContext"]["authorizer"] = json!({ "principalId": user });
    e.to_string()
}

fn start_event(conn: &str, delay_ms: u64) -> String {
    let n = id();
    let mut e = sample("message-start-agent.json");
    e["requestContext"]["connectionId"] = conn.into();
    e["requestContext"]["messageId"] = format!("C{n:014}=").into();
    let body = json!({"type": "start_agent", "request_id": format!("conc-{n}"),
        "payload": {"user_request": "how many at once?", "delay_ms": delay_ms}});
    e["body"] = body.to_string().into();
    e.to_string()
}

fn binary() -> String {
    std::env::var("WSEXEC_BIN")
        .unwrap_or_else(|_| format!("{}/target/release/wsexec", env!("CARGO_MANIFEST_DIR")))
}

fn env(table: &str, conns: &str, slots: usize) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_ENDPOINT_URL_DYNAMODB", &dynamodb::endpoint()),
        ("CONNECTIONS_ENDPOINT", conns),
        ("JWT_SECRET", "wsexec-sample-secret"),
        ("TABLE_NAME", table),
        ("RUST_LOG", "warn"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if slots > 0 {
        env.push(("AWS_LAMBDA_MAX_CONCURRENCY".into(), slots.to_string()));
    }
    env
}

/// The release binary with `slots` concurrent invocations (0: the variable unset), on every
/// CPU or (`one_cpu`) pinned to CPU 0, ready on every slot, with `slots.max(1)` connections.
async fn environment(
    table: &str,
    conns: &str,
    slots: usize,
    one_cpu: bool,
) -> (Runtime, Vec<String>) {
    let mut rt = Runtime::start().await;
    let bin = binary();
    let e = env(table, conns, slots);
    if one_cpu {
        rt.spawn("taskset", &["-c", "0", bin.as_str()], &e, 256);
    } else {
        rt.spawn(&bin, &[], &e, 256);
    }
    rt.wait_init(LIMIT).await;
    rt.wait_polling(slots.max(1) as u64, LIMIT).await;
    let users: Vec<String> = (0..slots.max(1))
        .map(|_| format!("C{:014}=", id()))
        .collect();
    let connects = users.iter().enumerate().map(|(i, c)| {
        let ev = connect_event(c, &format!("bench-user-{i:02}"));
        let rt = &rt;
        async move { rt.invoke(&ev, LIMIT).await }
    });
    join_all(connects).await;
    (rt, users)
}

/// `runs` echo runs of `delay_ms`, all queued at once, spread over the connections (the process
/// takes as many as it has slots); runs per second.
async fn throughput(rt: &Runtime, conns: &[String], runs: usize, delay_ms: u64) -> f64 {
    let t = Instant::now();
    let all = (0..runs).map(|i| {
        let ev = start_event(&conns[i % conns.len()], delay_ms);
        async move { rt.invoke(&ev, LIMIT).await }
    });
    join_all(all).await;
    runs as f64 / t.elapsed().as_secs_f64()
}

/// Per-round figures of one configuration.
#[derive(Default)]
struct Figures {
    waiting_rps: Vec<f64>,
    busy_rps: Vec<f64>,
    peak_kib: Vec<f64>,
}

async fn one_configuration(table: &str, conns: &str, slots: usize, one_cpu: bool, f: &mut Figures) {
    let (rt, users) = environment(table, conns, slots, one_cpu).await;
    let waiting_runs = (4 * slots).max(16);
    f.waiting_rps
        .push(throughput(&rt, &users, waiting_runs, WAITING_MS).await);
    f.busy_rps.push(throughput(&rt, &users, 200, 0).await);
    f.peak_kib.push(rt.peak_rss_kib() as f64);
}

/// VmHWM after one run, then after `slots` runs of 2 s at once: the growth per concurrent run.
async fn growth_per_run(table: &str, conns: &str, slots: usize) -> (f64, f64, f64) {
    let (rt, users) = environment(table, conns, slots, false).await;
    rt.invoke(&start_event(&users[0], 0), LIMIT).await;
    let one = rt.peak_rss_kib() as f64;
    throughput(&rt, &users, slots, 2000).await;
    let all = rt.peak_rss_kib() as f64;
    (one, all, (all - one) / (slots as f64 - 1.0))
}

/// Init (spawn → first `/next`) and the first `$connect` of a sequential process, in ms.
async fn cold(bin: &str, table: &str, conns: &str) -> (f64, f64) {
    let mut rt = Runtime::start().await;
    rt.spawn(bin, &[], &env(table, conns, 0), 256);
    let init = rt.wait_init(LIMIT).await;
    let (_, first) = rt
        .invoke(&sample("connect-jwt-query.json").to_string(), LIMIT)
        .await;
    (init.as_secs_f64() * 1e3, first.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds: usize = std::env::var("CONCURRENCY_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let store = dynamodb::fresh_store("concurrency").await;
    let table = store.table().to_owned();
    let ep = connections::start().await;
    let configs: [(&str, usize, bool); 5] = [
        ("unset (sequential)", 0, false),
        ("8", 8, false),
        ("64", 64, false),
        ("8, one CPU (current-thread)", 8, true),
        ("64, one CPU (current-thread)", 64, true),
    ];
    let mut figures: Vec<Figures> = configs.iter().map(|_| Figures::default()).collect();
    let mut growth = (Vec::new(), Vec::new(), Vec::new());
    let baseline = std::env::var("WSEXEC_BASELINE_BIN").ok();
    let mut colds = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        for (i, (name, slots, one_cpu)) in configs.iter().enumerate() {
            one_configuration(&table, &ep.url, *slots, *one_cpu, &mut figures[i]).await;
            eprintln!("round {round}: {name} done");
        }
        let (one, all, per) = growth_per_run(&table, &ep.url, 64).await;
        growth.0.push(one);
        growth.1.push(all);
        growth.2.push(per);
        if let Some(base) = &baseline {
            for _ in 0..3 {
                let (bi, bf) = cold(base, &table, &ep.url).await;
                let (ni, nf) = cold(&binary(), &table, &ep.url).await;
                colds.0.push(ni / bi);
                colds.1.push(nf / bf);
                colds.2.push(ni);
                colds.3.push(bi);
            }
        }
    }

    let mut md = format!(
        "Concurrency, {rounds} rounds, medians. Waiting runs: echo with delay_ms {WAITING_MS} \
         (4 per slot, at least 16); busy runs: 200 echo runs with no delay. Peak RSS is VmHWM \
         after both batches.\n\n\
         | AWS_LAMBDA_MAX_CONCURRENCY | waiting runs/s | busy runs/s | peak RSS (KiB) |\n|---|---|---|---|\n"
    );
    for ((name, _, _), f) in configs.iter().zip(figures.iter_mut()) {
        md.push_str(&format!(
            "| {name} | {:.1} | {:.1} | {:.0} |\n",
            median(&mut f.waiting_rps),
            median(&mut f.busy_rps),
            median(&mut f.peak_kib)
        ));
    }
    md.push_str(&format!(
        "\nRSS growth per concurrent echo run (64 slots): VmHWM {:.0} KiB after one run, {:.0} KiB \
         after 64 runs of 2 s at once: **{:.1} KiB per run**\n",
        median(&mut growth.0),
        median(&mut growth.1),
        median(&mut growth.2)
    ));
    if baseline.is_some() {
        md.push_str(&format!(
            "\nSequential cold start against the build before concurrency ({} pairs, alternating): \
             init {:.2} ms vs {:.2} ms, ratio **{:.3}**; first `$connect` ratio **{:.3}**\n",
            colds.0.len(),
            median(&mut colds.2),
            median(&mut colds.3),
            median(&mut colds.0),
            median(&mut colds.1)
        ));
    }
    println!("{md}");
    let _ = std::fs::write(
        format!("{}/target/concurrency.md", env!("CARGO_MANIFEST_DIR")),
        md,
    );
}

//! Streaming costs of the `llm` agent (issue 12), three measures:
//! 1. `@connections` posts per streamed answer at the default `STREAM_FLUSH_MS` (100) against one
//!    post per delta, replaying a recorded SmolLM2 answer (`tests/fixtures/smollm2-stream.jsonl`,
//!    403 events over 12.7 s) at its recorded timing from a loopback Chat Completions endpoint;
//! 2. the added latency from a chunk's arrival to the start of its push, p50 and p99, for chunks
//!    outside the flush window (spaced wider than the window, so each is pushed on arrival);
//! 3. the release binary's peak RSS (`VmHWM`) under the Runtime API harness after one echo run,
//!    then after a run that streams a 1 MB answer (DynamoDB Local, loopback `@connections`).
//!
//! 1 and 2 are also measured with 64 runs streaming at once in one process (issue 16).
//! 4. the first-token latency (issue 21 item 20): from the model's first content byte to the
//!    client's first `agent_delta`, through the release binary, tools offered and not, p50 / p99
//!    (`benches/stream/first_token.rs`); `STREAM_BEFORE_BIN` adds another build's figures,
//!    measured alternately in the same run. `STREAM_MODE=first_token` measures only this,
//!    `FIRST_TOKEN_RUNS` (default 20) runs per binary and mode.
//! 5. `STREAM_MODE=rss`: only 3, for this build and `STREAM_BEFORE_BIN` alternately (issue 27).
//! 6. `STREAM_MODE=ttft`: time to first token, cold and warm, less the model's own
//!    (`benches/stream/ttft.rs`, issue 27), `STREAM_ROUNDS` × 5 fresh environments per binary;
//!    `TTFT_POST_MS` makes every push's answer take that long (API Gateway's round trip).
//! 7. `STREAM_MODE=density`: `DENSITY_STREAMS` (default 512; a list such as `64,256,512` runs
//!    each) recorded answers streaming at once
//!    in one release binary, against one at a time: peak RSS per run, posts per answer, chunk to
//!    push (`benches/stream/density.rs`, issue 27), `STREAM_ROUNDS` rounds.
//! 8. `STREAM_MODE=peer`: the serverless-patterns Rust Bedrock streaming pattern's per-event push
//!    (config and client per invocation) reproduced beside wsexec at `STREAM_FLUSH_MS` 100 and 1:
//!    posts per answer, chunk → post arrival p50 / p99, `STREAM_ROUNDS` answers each
//!    (`benches/stream/peer.rs`, issue 27). Writes `target/stream-peer.md`.
//!
//! 1 and 2 run the library's handler on a current-thread runtime (as in Lambda) with an
//! in-memory store and a notifier that timestamps each push; the endpoint runs on its own thread.
//! Run with `tools/bench` or `cargo bench --bench stream` (`STREAM_ROUNDS`, default 3).
//! Writes `target/stream.md`.

#[path = "../tests/support/connections.rs"]
mod connections;
#[path = "../tests/support/contract.rs"]
mod contract;
#[path = "stream/density.rs"]
mod density;
#[path = "../tests/support/dynamodb.rs"]
mod dynamodb;
#[path = "stream/first_token.rs"]
mod first_token;
#[path = "../tests/support/http.rs"]
mod http;
#[path = "../tests/support/mcp.rs"]
mod mcp;
#[path = "stream/peer.rs"]
mod peer;
#[path = "../tests/support/runtime_api.rs"]
mod runtime_api;
#[path = "../tests/support/sse.rs"]
mod sse;
#[path = "../tests/support/tls.rs"]
mod tls;
#[path = "stream/ttft.rs"]
mod ttft;

use async_trait::async_trait;
use runtime_api::{Runtime, median, percentile};
use serde_json::{Value, json};
use sse::{ChatServer, Reply, Step};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wsexec::handler::handle;
use wsexec::manager::Manager;
use wsexec::notify::{Notifier, PushError, PushTarget};

const CONNECTION: &str = "L0SM9cOFvHcCIhw=";
const LIMIT: Duration = Duration::from_secs(120);

/// Chunks of the latency measure: spaced 1.5 windows apart, so none waits for a flush.
const SPACED_CHUNKS: usize = 60;
const SPACING: Duration = Duration::from_millis(150);

/// Runs streaming at once in the concurrency rerun (issue 16's 64 slots).
const CONCURRENT: usize = 64;

/// Remembers when each push started, with its connection and message.
#[derive(Default)]
struct TimedNotifier {
    pushes: Mutex<Vec<(Instant, String, String)>>,
}

#[async_trait]
impl Notifier for TimedNotifier {
    async fn push(&self, target: PushTarget<'_>, message: &str) -> Result<(), PushError> {
        let at = Instant::now();
        let conn = target.connection_id.to_owned();
        self.pushes
            .lock()
            .unwrap()
            .push((at, conn, message.to_owned()));
        Ok(())
    }
}

/// The connection of the `k`-th concurrent run.
fn connection(k: usize) -> String {
    if k == 0 {
        CONNECTION.to_owned()
    } else {
        format!("L0SM9cOFvH{k:05}=")
    }
}

fn event_json(name: &str) -> Value {
    let p = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn message_on(conn: &str, body: &str, n: u64) -> String {
    let mut e = event_json("message-ping.json");
    e["body"] = body.into();
    e["requestContext"]["connectionId"] = conn.into();
    e["requestContext"]["messageId"] = format!("S{n:015}").into();
    e.to_string()
}

fn start_on(conn: &str, n: u64, agent: &str) -> String {
    let body = json!({"type": "start_agent", "agent": agent, "request_id": format!("s-{n}"),
                      "payload": {"user_request": "Write a long story about a dragon."}});
    message_on(conn, &body.to_string(), n)
}

/// The recorded answer as endpoint steps (each event at its recorded offset), and how many of
/// its events carry text (the posts a one-post-per-delta design makes).
fn recorded() -> (Vec<Step>, usize) {
    let path = format!(
        "{}/tests/fixtures/smollm2-stream.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let (mut steps, mut texts, mut at) = (Vec::new(), 0, 0.0);
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let rec: Value = serde_json::from_str(line).unwrap();
        let (t, ev) = (
            rec["at_ms"].as_f64().unwrap(),
            rec["event"].as_str().unwrap(),
        );
        steps.push(Step::Sleep(Duration::from_secs_f64(
            (t - at).max(0.0) / 1000.0,
        )));
        steps.push(Step::Send(ev.as_bytes().to_vec()));
        at = t;
        if has_text(ev) {
            texts += 1;
        }
    }
    (steps, texts)
}

/// Whether a `data:` event of a Chat Completions stream carries answer text.
fn has_text(event: &str) -> bool {
    let data: Value =
        serde_json::from_str(event.trim().trim_start_matches("data: ")).unwrap_or(Value::Null);
    data["choices"][0]["delta"]["content"]
        .as_str()
        .is_some_and(|c| !c.is_empty())
}

/// Measure 4 alone or with the others: the build under test (`WSEXEC_BIN` or
/// target/release/wsexec) and, with `STREAM_BEFORE_BIN`, the other build, alternately.
fn first_token_report(steps: &[Step]) -> String {
    let runs = std::env::var("FIRST_TOKEN_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let mut bins = vec![("this build".to_owned(), release_bin())];
    if let Ok(before) = std::env::var("STREAM_BEFORE_BIN") {
        bins.push(("before".to_owned(), before));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = dynamodb::fresh_store("stream-first-token").await;
        let ep = connections::start().await;
        first_token::measure(&bins, runs, steps, store.table(), &ep).await
    })
}

/// Measure 7: wsexec's release binary and the peer's strategy, alternating, on one model
/// endpoint and one `@connections` endpoint. The peer runs on its own multi-thread runtime, as
/// its `#[tokio::main]` would, kept for every answer like a warm instance.
fn peer_report(rounds: usize, steps: &[Step]) -> String {
    let peer = tokio::runtime::Runtime::new().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt.block_on(async {
        let store = dynamodb::fresh_store("stream-peer").await;
        let ep = connections::start().await;
        peer::measure(
            &release_bin(),
            rounds,
            steps,
            store.table(),
            &ep,
            peer.handle(),
        )
        .await
    });
    peer.shutdown_background();
    report
}

/// The release binary measured: `WSEXEC_BIN`, else this checkout's build.
fn release_bin() -> String {
    std::env::var("WSEXEC_BIN")
        .unwrap_or_else(|_| format!("{}/target/release/wsexec", env!("CARGO_MANIFEST_DIR")))
}

/// Frames pushed to one connection, with when each push started.
type Frames = Vec<(Instant, Value)>;

/// One run of the `llm` agent against an endpoint answering `reply`, at flush window `flush`:
/// every push (start instant, frame) and the instants the endpoint wrote each chunk.
fn one_run(reply: Reply, flush: Duration, n: u64) -> (Frames, Vec<Instant>) {
    let (mut frames, sent) = runs(vec![reply], flush, n);
    let sent = sent.into_iter().map(|(t, _)| t).collect();
    (frames.remove(0), sent)
}

/// `replies.len()` runs of the `llm` agent at once, each on its own connection, in one process
/// on one current-thread runtime (as the binary runs with `AWS_LAMBDA_MAX_CONCURRENCY` set on
/// one CPU): each run's frames, and every chunk the endpoint wrote with when.
fn runs(replies: Vec<Reply>, flush: Duration, n: u64) -> (Vec<Frames>, Vec<(Instant, Vec<u8>)>) {
    let count = replies.len();
    let endpoint_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = endpoint_rt.block_on(ChatServer::start(replies));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut config = wsexec::Config::from_lookup(|_| None).unwrap();
    config.dev_auth = true;
    config.stream_flush = flush;
    config.run_time_limit = Some(Duration::from_secs(60));
    let env = [
        ("LLM_PROVIDER", "openai"),
        ("LLM_MODEL", "smollm2"),
        ("LLM_BASE_URL", server.url.as_str()),
        ("LLM_TOOLS", "none"),
    ];
    let agent = wsexec::llm::LlmAgent::from_lookup(|k| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap()
    .unwrap();
    let notifier = Arc::new(TimedNotifier::default());
    let store = Arc::new(wsexec::store::memory::MemoryStore::new());
    let mgr = Manager::new(config, store, notifier.clone()).with_agent("llm", Arc::new(agent));
    for k in 0..count {
        let mut connect = event_json("connect-no-credentials.json");
        connect["queryStringParameters"] = json!({"user_id": format!("bench-user-{k}")});
        connect["requestContext"]["connectionId"] = connection(k).into();
        rt.block_on(handle(&connect.to_string(), Ok(&mgr), None))
            .unwrap();
    }
    let starts: Vec<String> = (0..count)
        .map(|k| start_on(&connection(k), n * 1000 + k as u64, "llm"))
        .collect();
    rt.block_on(futures_util::future::join_all(
        starts.iter().map(|e| handle(e, Ok(&mgr), None)),
    ));
    let pushes = notifier.pushes.lock().unwrap().clone();
    let per_run: Vec<Frames> = (0..count)
        .map(|k| {
            let conn = connection(k);
            let frames: Frames = pushes
                .iter()
                .filter(|(_, c, _)| *c == conn)
                .map(|(t, _, m)| (*t, serde_json::from_str(m).unwrap()))
                .collect();
            let last = &frames.last().unwrap().1;
            assert_eq!(last["type"], "agent_completed", "{last}");
            let text: String = frames
                .iter()
                .filter(|(_, f)| f["type"] == "agent_delta")
                .map(|(_, f)| f["payload"]["text"].as_str().unwrap())
                .collect();
            assert_eq!(text, last["payload"]["result"]["text"].as_str().unwrap());
            frames
        })
        .collect();
    (per_run, server.sent_chunks())
}

fn deltas(frames: &[(Instant, Value)]) -> usize {
    frames
        .iter()
        .filter(|(_, f)| f["type"] == "agent_delta")
        .count()
}

/// Milliseconds from each spaced chunk's write to the start of the push carrying its text,
/// over `count` runs streaming at once.
fn spaced_latencies(n: u64, count: usize) -> Vec<f64> {
    let replies = (0..count)
        .map(|k| {
            let mut steps = Vec::new();
            for i in 0..SPACED_CHUNKS {
                steps.push(Step::Sleep(SPACING));
                steps.push(Step::Send(sse::text(&format!("k{k}c{i} "))));
            }
            steps.push(Step::Send(sse::finish("stop")));
            steps.push(Step::Send(sse::done()));
            Reply::Stream(steps)
        })
        .collect();
    let (per_run, sent) = runs(replies, wsexec::limits::DEFAULT_STREAM_FLUSH, n);
    let mut out = Vec::new();
    for frames in &per_run {
        // The endpoint answers requests in arrival order, so a run's stream is whichever one
        // its first delta names (`k{stream}c0 `).
        let first = frames
            .iter()
            .find(|(_, f)| f["type"] == "agent_delta")
            .map(|(_, f)| f["payload"]["text"].as_str().unwrap_or_default())
            .unwrap_or_default();
        let stream = first.split('c').next().unwrap_or_default().to_owned();
        for i in 0..SPACED_CHUNKS {
            let needle = format!("{stream}c{i} ");
            let (written, _) = sent
                .iter()
                .find(|(_, b)| String::from_utf8_lossy(b).contains(&needle))
                .unwrap_or_else(|| panic!("chunk {needle} was not written"));
            let (pushed, _) = frames
                .iter()
                .find(|(_, f)| {
                    f["type"] == "agent_delta" && f["payload"]["text"] == needle.as_str()
                })
                .unwrap_or_else(|| panic!("chunk {needle} was not pushed on its own"));
            out.push(pushed.duration_since(*written).as_secs_f64() * 1000.0);
        }
    }
    out
}

/// Peak RSS (KiB) of a fresh release binary after one echo run, then after a 1 MB answer.
async fn rss_round(table: &str, ep: &connections::ConnectionsEndpoint, n: u64) -> (u64, u64) {
    rss_round_of(&release_bin(), table, ep, n).await
}

/// [`rss_round`] of the binary at `bin`.
async fn rss_round_of(
    bin: &str,
    table: &str,
    ep: &connections::ConnectionsEndpoint,
    n: u64,
) -> (u64, u64) {
    let piece = "x".repeat(1023) + " ";
    let mut steps: Vec<Step> = (0..1024).map(|_| Step::Send(sse::text(&piece))).collect();
    steps.push(Step::Send(sse::finish("stop")));
    steps.push(Step::Send(sse::done()));
    let server = ChatServer::start(vec![Reply::Stream(steps)]).await;
    let mut rt = Runtime::start().await;
    let env: Vec<(String, String)> = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb::endpoint().as_str()),
        ("CONNECTIONS_ENDPOINT", ep.url.as_str()),
        ("JWT_SECRET", "wsexec-sample-secret"),
        ("TABLE_NAME", table),
        ("RUST_LOG", "warn"),
        ("LLM_PROVIDER", "openai"),
        ("LLM_MODEL", "scripted-model"),
        ("LLM_BASE_URL", server.url.as_str()),
        ("LLM_TOOLS", "none"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    rt.spawn(bin, &[], &env, 128);
    rt.wait_init(LIMIT).await;
    let connect = event_json("connect-jwt-query.json").to_string();
    rt.invoke(&connect, LIMIT).await.0.json();
    let conn = event_json("connect-jwt-query.json")["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let sample = event_json("message-start-agent.json");
    let at = |k: &str, n: u64| {
        let mut e = sample.clone();
        e["requestContext"]["messageId"] = format!("R{n:014}=").into();
        e["body"] = json!({"type": "start_agent", "agent": k, "request_id": format!("rss-{k}-{n}"),
                           "payload": {"user_request": "a long answer, please"}})
        .to_string()
        .into();
        e.to_string()
    };
    rt.invoke(&at("echo", n), LIMIT).await.0.json();
    let echo = rt.peak_rss_kib();
    rt.invoke(&at("llm", n), LIMIT).await.0.json();
    let llm = rt.peak_rss_kib();
    let got = ep.delivered(&conn);
    let last = got.last().unwrap();
    assert_eq!(last["type"], "agent_completed", "{last}");
    let streamed: usize = got
        .iter()
        .rev()
        .take_while(|f| f["type"] != "agent_started")
        .filter(|f| f["type"] == "agent_delta")
        .map(|f| f["payload"]["text"].as_str().unwrap().len())
        .sum();
    assert_eq!(streamed, 1024 * 1024, "the whole answer was pushed");
    // Ends the process as Lambda does, so a profiler wrapping the binary writes its output.
    rt.sigterm(LIMIT).await;
    (echo, llm)
}

/// Peak RSS (KiB) of a fresh environment of `bin` with `AWS_LAMBDA_MAX_CONCURRENCY` = `runs`
/// after one echo run, then after `runs` `llm` runs at once, each streaming a 100 KiB answer
/// over about a second (100 chunks of 1 KiB, 10 ms apart, so they overlap).
async fn concurrent_round(
    bin: &str,
    table: &str,
    ep: &connections::ConnectionsEndpoint,
    runs: usize,
    n: u64,
) -> (u64, u64) {
    let piece = "y".repeat(1023) + " ";
    let answer = || {
        let mut steps = Vec::new();
        for _ in 0..100 {
            steps.push(Step::Send(sse::text(&piece)));
            steps.push(Step::Sleep(Duration::from_millis(10)));
        }
        steps.push(Step::Send(sse::finish("stop")));
        steps.push(Step::Send(sse::done()));
        Reply::Stream(steps)
    };
    let server = ChatServer::start((0..runs).map(|_| answer()).collect()).await;
    let mut rt = Runtime::start().await;
    let mut env = first_token::llm_env(table, ep, &server.url, &[("LLM_TOOLS", "none")]);
    env.push(("AWS_LAMBDA_MAX_CONCURRENCY".into(), runs.to_string()));
    rt.spawn(bin, &[], &env, 128);
    rt.wait_init(LIMIT).await;
    let conn = format!("Conc{n:010}=");
    let mut connect = event_json("connect-jwt-query.json");
    connect["requestContext"]["connectionId"] = conn.clone().into();
    rt.invoke(&connect.to_string(), LIMIT).await.0.json();
    let start = |k: &str, i: usize| {
        let mut e = event_json("message-start-agent.json");
        e["requestContext"]["connectionId"] = conn.clone().into();
        e["requestContext"]["messageId"] = format!("C{n:07}{i:07}=").into();
        e["body"] = json!({"type": "start_agent", "agent": k,
                           "request_id": format!("conc-{k}-{n}-{i}"),
                           "payload": {"user_request": "a 100 KiB answer, please"}})
        .to_string()
        .into();
        e.to_string()
    };
    rt.invoke(&start("echo", 0), LIMIT).await.0.json();
    let echo = rt.peak_rss_kib();
    let events: Vec<String> = (0..runs).map(|i| start("llm", i)).collect();
    futures_util::future::join_all(events.iter().map(|e| rt.invoke(e, LIMIT))).await;
    let llm = rt.peak_rss_kib();
    let done = ep
        .delivered(&conn)
        .iter()
        .filter(|f| f["type"] == "agent_completed")
        .count();
    assert_eq!(done, runs + 1, "every run completed");
    rt.sigterm(LIMIT).await;
    (echo, llm)
}

/// Peak RSS after one echo run and after a 1 MB answer, `rounds` fresh environments of the build
/// under test and, alternating with it, of `STREAM_BEFORE_BIN` when set (medians).
fn rss_report(rounds: u64) -> String {
    let mut bins = vec![("this build", release_bin())];
    if let Ok(before) = std::env::var("STREAM_BEFORE_BIN") {
        bins.push(("before", before));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut figures: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); bins.len()];
    rt.block_on(async {
        let store = dynamodb::fresh_store("stream-rss-only").await;
        let ep = connections::start().await;
        for n in 0..rounds {
            for (i, (_, bin)) in bins.iter().enumerate() {
                let (e, l) = rss_round_of(bin, store.table(), &ep, n * 10 + i as u64).await;
                figures[i].0.push(e as f64);
                figures[i].1.push(l as f64);
            }
        }
    });
    // One 100 KiB answer, and 64 at once, in this build (issue 27: at most 2x per run).
    let (mut one, mut many) = (Vec::new(), Vec::new());
    rt.block_on(async {
        let store = dynamodb::fresh_store("stream-rss-concurrent").await;
        let ep = connections::start().await;
        for n in 0..rounds {
            let (e, l) = concurrent_round(&bins[0].1, store.table(), &ep, 1, n * 10).await;
            one.push((l - e) as f64);
            let (e, l) = concurrent_round(&bins[0].1, store.table(), &ep, 64, n * 10 + 1).await;
            many.push((l - e) as f64 / 64.0);
        }
    });
    let (one, many) = (median(&mut one), median(&mut many));
    let mut out = format!(
        "| build ({rounds} rounds, medians) | peak RSS after one echo run | after a 1 MB answer | added |\n|---|---|---|---|\n"
    );
    for ((label, _), (mut e, mut l)) in bins.iter().zip(figures) {
        let (e, l) = (median(&mut e), median(&mut l));
        out += &format!(
            "| {label} | {e:.0} KiB | {l:.0} KiB | +{:.0} KiB ({:.2}× the answer) |\n",
            l - e,
            (l - e) / 1024.0
        );
    }
    out += &format!(
        "\n| 100 KiB answers, this build | added peak RSS per run |\n|---|---|\n\
         | one run | {one:.0} KiB |\n\
         | 64 at once (`AWS_LAMBDA_MAX_CONCURRENCY=64`) | {many:.0} KiB ({:.2}× one run's) |\n",
        many / one.max(1.0)
    );
    out
}

/// Prints `report` and writes it to `target/{name}.md` (creating the checkout's `target/`, which
/// is missing when `CARGO_TARGET_DIR` points elsewhere).
fn print_and_save(name: &str, report: &str) {
    println!("{report}");
    let dir = format!("{}/target", env!("CARGO_MANIFEST_DIR"));
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(format!("{dir}/{name}.md"), report);
}

fn main() {
    let rounds: u64 = std::env::var("STREAM_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let (steps, texts) = recorded();
    if std::env::var("STREAM_MODE").as_deref() == Ok("first_token") {
        let report = format!(
            "| measure | value |\n|---|---|\n{}",
            first_token_report(&steps)
        );
        print_and_save("stream-first-token", &report);
        return;
    }
    if std::env::var("STREAM_MODE").as_deref() == Ok("ttft") {
        let mut bins = vec![("this build".to_owned(), release_bin())];
        if let Ok(before) = std::env::var("STREAM_BEFORE_BIN") {
            bins.push(("before".to_owned(), before));
        }
        let rt = tokio::runtime::Runtime::new().unwrap();
        let report = rt.block_on(async {
            let store = dynamodb::fresh_store("stream-ttft").await;
            let ep = connections::start().await;
            // `TTFT_POST_MS`: every push answered that long after it was read, as API Gateway's
            // own round trip would be (loopback answers in well under a millisecond).
            let post_ms = std::env::var("TTFT_POST_MS")
                .ok()
                .and_then(|v| v.parse().ok());
            if let Some(ms) = post_ms {
                ep.answer_after(std::time::Duration::from_millis(ms));
            }
            let mcp = mcp::McpServer::start();
            let report = ttft::measure(&bins, rounds as usize * 5, &store, &ep, &mcp).await;
            match post_ms {
                Some(ms) => format!("Every push answered {ms} ms after it was read.\n\n{report}"),
                None => report,
            }
        });
        print_and_save("stream-ttft", &report);
        return;
    }
    if std::env::var("STREAM_MODE").as_deref() == Ok("density") {
        // One round per count, one answer at a time first: "512" or "64,256,512".
        let mut counts: Vec<usize> = std::env::var("DENSITY_STREAMS")
            .unwrap_or_else(|_| "512".into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        counts.insert(0, 1);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut measured = rt.block_on(async {
            let store = dynamodb::fresh_store("stream-density").await;
            let ep = connections::start().await;
            let mut out = Vec::new();
            let bin = release_bin();
            for n in 0..rounds {
                for (i, &s) in counts.iter().enumerate() {
                    let r = density::round(&bin, s, &steps, store.table(), &ep, n * 10 + i as u64);
                    out.push(r.await);
                }
            }
            out
        });
        let report = density::report(&mut measured);
        print_and_save("stream-density", &report);
        return;
    }
    if std::env::var("STREAM_MODE").as_deref() == Ok("peer") {
        let report = peer_report(rounds as usize, &steps);
        print_and_save("stream-peer", &report);
        return;
    }
    if std::env::var("STREAM_MODE").as_deref() == Ok("rss") {
        let report = rss_report(rounds);
        print_and_save("stream-rss", &report);
        return;
    }
    let (mut at_default, mut at_zero) = (Vec::new(), Vec::new());
    let mut lat = Vec::new();
    let (mut at_default_64, mut lat_64) = (Vec::new(), Vec::new());
    for n in 0..rounds {
        let (f, _) = one_run(
            Reply::Stream(steps.clone()),
            wsexec::limits::DEFAULT_STREAM_FLUSH,
            n * 10,
        );
        at_default.push(deltas(&f) as f64);
        let (f, _) = one_run(Reply::Stream(steps.clone()), Duration::ZERO, n * 10 + 1);
        at_zero.push(deltas(&f) as f64);
        lat.extend(spaced_latencies(n * 10 + 2, 1));
        // The same at 64 runs at once in one process (issue 16).
        let (per_run, _) = runs(
            vec![Reply::Stream(steps.clone()); CONCURRENT],
            wsexec::limits::DEFAULT_STREAM_FLUSH,
            n * 10 + 3,
        );
        let mut posts: Vec<f64> = per_run.iter().map(|f| deltas(f) as f64).collect();
        at_default_64.push(median(&mut posts));
        lat_64.extend(spaced_latencies(n * 10 + 4, CONCURRENT));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut echo, mut llm) = (Vec::new(), Vec::new());
    rt.block_on(async {
        let store = dynamodb::fresh_store("stream-rss").await;
        let ep = connections::start().await;
        for n in 0..rounds {
            let (e, l) = rss_round(store.table(), &ep, n).await;
            echo.push(e as f64);
            llm.push(l as f64);
        }
    });
    let (d, z) = (median(&mut at_default), median(&mut at_zero));
    let (p50, p99) = (
        percentile(&mut lat.clone(), 50.0),
        percentile(&mut lat, 99.0),
    );
    let (e, l) = (median(&mut echo), median(&mut llm));
    let d64 = median(&mut at_default_64);
    let (p50_64, p99_64) = (
        percentile(&mut lat_64.clone(), 50.0),
        percentile(&mut lat_64, 99.0),
    );
    let report = format!(
        "| measure | median of {rounds} rounds |\n|---|---|\n\
         | text events in the recorded answer (one post per delta) | {texts} |\n\
         | `agent_delta` posts at `STREAM_FLUSH_MS=100` | {d:.0} ({:.1}× fewer) |\n\
         | `agent_delta` posts at `STREAM_FLUSH_MS=0` | {z:.0} |\n\
         | chunk arrival → push start, outside the window, p50 / p99 ({} chunks) | {p50:.3} / {p99:.3} ms |\n\
         | `agent_delta` posts per answer, {CONCURRENT} answers streaming at once | {d64:.0} |\n\
         | chunk arrival → push start, {CONCURRENT} streams at once, p50 / p99 | {p50_64:.3} / {p99_64:.3} ms |\n\
         | peak RSS after one echo run | {e:.0} KiB |\n\
         | peak RSS after a 1 MB streamed answer | {l:.0} KiB (+{:.0} KiB, {:.2}×) |\n",
        texts as f64 / d,
        lat.len(),
        l - e,
        l / e
    ) + &first_token_report(&steps);
    print_and_save("stream", &report);
}

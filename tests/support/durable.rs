//! What the durable-run tests share: environments of the release binary with async dispatch,
//! a client's connection and start, waiting for frames, and the checks of one stream (every
//! `seq` once in order, the kept text).

use super::connections::ConnectionsEndpoint;
use super::runtime_api::Runtime;
use super::{aws_id, llm_binary_env, message_event, sample, types};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wsexec::store::Store;

/// How long a test waits for an environment or a reply.
pub const LIMIT: Duration = Duration::from_secs(30);

/// The user of the sample JWT in `events/connect-jwt-query.json`.
pub const USER: &str = "user-alice-01";

/// A short heartbeat deadline, so the sweep finds a killed worker's run stale in seconds.
pub const HEARTBEAT_MS: &str = "2000";

/// The binary under test: `WSEXEC_BIN` (the release build `tools/test` makes) or Cargo's build.
pub fn binary() -> String {
    std::env::var("WSEXEC_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_wsexec").to_owned())
}

/// `processes` fresh environments of the binary with async dispatch (unless `extra` says
/// otherwise), the `llm` agent on `model`, a short heartbeat deadline, and `extra`; ready.
pub async fn spawn_with(
    table: &str,
    ep: &ConnectionsEndpoint,
    model: &str,
    processes: usize,
    extra: &[(&str, &str)],
) -> Runtime {
    let mut rt = Runtime::start().await;
    let lambda = format!("http://{}", rt.addr);
    let mut all = vec![
        ("LLM_MODEL", "scripted-model"),
        ("RUN_DISPATCH", "async"),
        ("RUN_TIME_LIMIT_MS", "120000"),
        ("HEARTBEAT_DEADLINE_MS", HEARTBEAT_MS),
    ];
    for (k, v) in extra {
        all.retain(|(key, _)| key != k);
        all.push((k, v));
    }
    let env = llm_binary_env(table, &ep.url, &lambda, model, &all);
    for _ in 0..processes {
        rt.spawn(&binary(), &[], &env, 128);
    }
    rt.wait_init(LIMIT).await;
    rt
}

/// [`spawn_with`] and nothing extra.
pub async fn spawn(
    table: &str,
    ep: &ConnectionsEndpoint,
    model: &str,
    processes: usize,
) -> Runtime {
    spawn_with(table, ep, model, processes, &[]).await
}

/// One invocation's response as JSON.
pub async fn call_json(rt: &Runtime, event: &Value) -> Value {
    rt.invoke(&event.to_string(), LIMIT).await.0.json()
}

/// Connects `USER` (the sample JWT) on a fresh connection id; returns it.
pub async fn connect(rt: &Runtime) -> String {
    let id = aws_id();
    let mut e = sample("connect-jwt-query.json");
    e["requestContext"]["connectionId"] = json!(id);
    assert_eq!(call_json(rt, &e).await["statusCode"], 200);
    id
}

/// Starts a run of `agent` with `payload` on `conn`; the route's response.
pub async fn start(
    rt: &Runtime,
    conn: &str,
    request_id: &str,
    agent: &str,
    payload: Value,
) -> Value {
    let frame = json!({"type": "start_agent", "request_id": request_id, "agent": agent,
                       "payload": payload});
    let out = call_json(rt, &message_event(conn, &frame.to_string())).await;
    assert_eq!(out["statusCode"], 200, "{out}");
    out
}

/// Waits (bounded by `within`) until the frames pushed to `conn` satisfy `done`; every frame
/// so far.
pub async fn wait_frames(
    ep: &ConnectionsEndpoint,
    conn: &str,
    within: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let got = ep.delivered(conn);
        if done(&got) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "waited in vain: {:?}",
            types(&got)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until `conn` has `n` frames of type `kind`; every frame so far.
pub async fn until(ep: &ConnectionsEndpoint, conn: &str, kind: &str, n: usize) -> Vec<Value> {
    let enough = |got: &[Value]| got.iter().filter(|f| f["type"] == kind).count() >= n;
    wait_frames(ep, conn, Duration::from_secs(60), enough).await
}

/// Sweeps (bounded) until a sweep reports `field` ≥ 1; that report.
pub async fn sweep_until(rt: &Runtime, field: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let report = call_json(rt, &sample("scheduled-sweep.json")).await;
        if report[field].as_u64() >= Some(1) {
            return report;
        }
        assert!(Instant::now() < deadline, "{report}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The text a client keeps: every `agent_delta`, less the rounds `agent_text_discarded` drops.
pub fn kept_text(frames: &[Value]) -> String {
    let mut kept: Vec<(u64, &str)> = Vec::new();
    for f in frames {
        match f["type"].as_str() {
            Some("agent_delta") => kept.push((
                f["payload"]["round"].as_u64().expect("a delta has a round"),
                f["payload"]["text"].as_str().unwrap_or_default(),
            )),
            Some("agent_text_discarded") => {
                let round = f["payload"]["round"].as_u64();
                kept.retain(|(r, _)| Some(*r) != round);
            }
            _ => {}
        }
    }
    kept.into_iter().map(|(_, t)| t).collect()
}

/// The run's last frame, asserted to be `agent_completed` whose `result.text` is `text`, which
/// is also the text the client keeps.
pub fn completed_with<'f>(frames: &'f [Value], text: &str) -> &'f Value {
    let completed = frames.last().expect("frames");
    assert_eq!(completed["type"], "agent_completed", "{:?}", types(frames));
    assert_eq!(completed["payload"]["result"]["text"], text);
    assert_eq!(kept_text(frames), text);
    completed
}

/// [`completed_with`], with `usage` as the result's usage, and the stored run `completed`.
pub async fn completed_run(
    store: &dyn Store,
    frames: &[Value],
    text: &str,
    usage: Value,
) -> wsexec::store::RunRecord {
    let completed = completed_with(frames, text);
    assert_eq!(completed["payload"]["result"]["usage"], usage);
    let run = the_run(store, frames).await;
    assert_eq!(run.state, wsexec::ExecutionState::Completed);
    run
}

/// Every frame's `seq` arrives once, in order, from 1 (a continuation may skip numbers its
/// killed predecessor reserved, never repeat one).
pub fn assert_seq_once_in_order(frames: &[Value]) {
    let seqs: Vec<u64> = frames.iter().filter_map(|f| f["seq"].as_u64()).collect();
    assert_eq!(seqs.len(), frames.len(), "every run event carries a seq");
    assert_eq!(seqs.first(), Some(&1), "the stream starts at 1");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq repeats or goes back: {seqs:?}"
    );
}

/// Every frame's `seq` is exactly 1, 2, 3, …: no repeat and no gap (a hand-off leaves none).
pub fn assert_seq_gapless(frames: &[Value]) {
    let seqs: Vec<u64> = frames.iter().filter_map(|f| f["seq"].as_u64()).collect();
    let want: Vec<u64> = (1..=frames.len() as u64).collect();
    assert_eq!(seqs, want, "{:?}", types(frames));
}

/// The run `conn` started (its only one).
pub async fn the_run(store: &dyn Store, frames: &[Value]) -> wsexec::store::RunRecord {
    let id = frames[0]["run_id"].as_str().expect("a run id");
    store.get_run(USER.into(), id).await.unwrap().unwrap()
}

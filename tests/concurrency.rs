//! Many invocations at once in one release-binary process (`AWS_LAMBDA_MAX_CONCURRENCY`, as on
//! Lambda Managed Instances), served by the loopback Runtime API with one `/next` long-poll per
//! slot, against DynamoDB Local and a loopback `@connections` endpoint: runs overlap instead of
//! queueing, and nothing of one invocation (events, replies, log lines, metrics) reaches another.

#[path = "support/sse.rs"]
mod sse;
mod support;

// `sse.rs` reads requests with `crate::http`: the same reader the other loopback servers use.
use support::http;

use futures_util::future::join_all;
use serde_json::{Value, json};
use sse::{ChatServer, Reply, Step};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use support::connections::ConnectionsEndpoint;
use support::dynamodb::*;
use support::runtime_api::{Outcome, Runtime};
use support::*;
use wsexec::store::Store;

const LIMIT: Duration = Duration::from_secs(30);

/// Runs side by side in the Must-show tests, and the slots the process is given.
const RUNS: usize = 64;

/// The echo agent's step delay in the Must-show test: long enough that 64 queued runs would
/// take over two minutes, so overlap is unmistakable.
const ECHO_DELAY_MS: u64 = 2000;

/// The binary under test: `WSEXEC_BIN` (the release build `tools/test` makes) or Cargo's build.
fn binary() -> String {
    std::env::var("WSEXEC_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_wsexec").to_owned())
}

/// The binary with `slots` concurrent invocations against `table`, ready: every slot is
/// long-polling `/next`. `stdout` receives its log and EMF lines.
async fn spawn(
    table: &str,
    ep: &ConnectionsEndpoint,
    slots: usize,
    extra: &[(&str, &str)],
    stdout: Option<std::fs::File>,
) -> Runtime {
    let mut env: Vec<(String, String)> = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("CONNECTIONS_ENDPOINT", ep.url.as_str()),
        ("TABLE_NAME", table),
        ("RUST_LOG", "warn"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.push(("AWS_ENDPOINT_URL_DYNAMODB".into(), endpoint()));
    env.push(("AWS_LAMBDA_MAX_CONCURRENCY".into(), slots.to_string()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut rt = Runtime::start().await;
    if let Some(f) = stdout {
        rt.stdout_to(f);
    }
    rt.spawn(&binary(), &[], &env, 128);
    rt.wait_init(LIMIT).await;
    rt.wait_polling(slots as u64, LIMIT).await;
    rt
}

/// Connects `n` users (`conc-user-NN`, authorised by an API Gateway authorizer), all at once;
/// their connection ids.
async fn connect_all(rt: &Runtime, n: usize) -> Vec<String> {
    let conns: Vec<String> = (0..n).map(|_| aws_id()).collect();
    let connects = conns.iter().enumerate().map(|(i, c)| async move {
        let ev = authorizer_connect_event(c, &user(i)).to_string();
        let (out, _) = rt.invoke(&ev, LIMIT).await;
        assert_eq!(out.json()["statusCode"], 200, "connect {i}");
    });
    join_all(connects).await;
    conns
}

fn user(i: usize) -> String {
    format!("conc-user-{i:02}")
}

/// A `start_agent` invocation on `conn`, with request id `request_id`.
fn start(conn: &str, request_id: &str, text: &str, delay_ms: Option<u64>) -> String {
    message_event(conn, &start_frame(request_id, text, delay_ms).to_string()).to_string()
}

/// Asserts `conn` heard exactly one whole run, the one its own request started: every frame
/// carries that request id and one run id, `seq` counts 1, 2, 3, … and the run ended
/// `agent_completed`. Returns the frames.
fn own_run(ep: &ConnectionsEndpoint, conn: &str, request_id: &str) -> Vec<Value> {
    let frames = ep.delivered(conn);
    assert!(!frames.is_empty(), "{conn} heard nothing");
    let run_id = &frames[0]["run_id"];
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f["request_id"], request_id, "{conn} heard another run: {f}");
        assert_eq!(&f["run_id"], run_id, "{conn} heard two runs: {f}");
        assert_eq!(f["seq"], i as u64 + 1, "{conn}: {:?}", types(&frames));
    }
    assert_eq!(
        frames.last().map(|f| f["type"].clone()),
        Some(json!("agent_completed")),
        "{conn}: {:?}",
        types(&frames)
    );
    frames
}

/// 64 echo runs of 2 s each, started at once in one process with 64 slots, all complete, each
/// connection hearing only its own run's five events, in less than twice one run's time
/// (queued, they would take 64 times as long).
#[tokio::test]
async fn sixty_four_echo_runs_overlap_in_one_process_each_heard_only_by_its_connection() {
    let store = fresh_store("bin-conc").await;
    let ep = support::connections::start().await;
    let rt = spawn(store.table(), &ep, RUNS, &[], None).await;
    assert!(
        rt.max_polling() >= RUNS as u64,
        "{} long-polls",
        rt.max_polling()
    );
    let conns = connect_all(&rt, RUNS + 1).await;

    // One run alone, for scale.
    let alone = Instant::now();
    let (out, _) = rt
        .invoke(
            &start(&conns[RUNS], "alone", "hello", Some(ECHO_DELAY_MS)),
            LIMIT,
        )
        .await;
    assert_eq!(out.json()["statusCode"], 200);
    let alone = alone.elapsed();
    own_run(&ep, &conns[RUNS], "alone");

    let together = Instant::now();
    let runs = (0..RUNS).map(|i| {
        let ev = start(
            &conns[i],
            &format!("conc-{i}"),
            "hello",
            Some(ECHO_DELAY_MS),
        );
        let rt = &rt;
        async move { rt.invoke(&ev, LIMIT).await.0 }
    });
    let outcomes = join_all(runs).await;
    let together = together.elapsed();

    for (i, out) in outcomes.iter().enumerate() {
        assert_eq!(out.json()["statusCode"], 200, "run {i}");
        let frames = own_run(&ep, &conns[i], &format!("conc-{i}"));
        assert_eq!(types(&frames), FIVE_EVENTS, "run {i}");
        let run_id = frames[0]["run_id"].as_str().unwrap();
        let stored = store
            .get_run((&user(i)).into(), run_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.state, wsexec::ExecutionState::Completed, "run {i}");
    }
    assert!(
        together < alone * 2,
        "{RUNS} runs together took {together:?}, one alone {alone:?}"
    );
    eprintln!("one echo run {alone:?}; {RUNS} at once {together:?}");
}

/// Reply `i` of the loopback model: ten pieces 200 ms apart (a 2 s answer), each naming `i`.
fn slow_answer(i: usize) -> (Reply, String) {
    let mut steps = Vec::new();
    let mut text = String::new();
    for k in 0..10 {
        let piece = format!("a{i}.{k} ");
        steps.push(Step::Send(sse::text(&piece)));
        steps.push(Step::Sleep(Duration::from_millis(200)));
        text.push_str(&piece);
    }
    steps.push(Step::Send(sse::finish("stop")));
    steps.push(Step::Send(sse::usage(10, 10)));
    steps.push(Step::Send(sse::done()));
    (Reply::Stream(steps), text)
}

/// 64 `llm` runs streaming slow answers from the loopback Chat Completions endpoint at once in
/// one process: each connection gets the answer to its own question (deltas that add up to its
/// `agent_completed` text), in less than twice one streamed run's time.
#[tokio::test]
async fn sixty_four_streamed_llm_runs_overlap_each_with_its_own_answer() {
    let store = fresh_store("bin-conc-llm").await;
    let ep = support::connections::start().await;
    let (replies, answers): (Vec<Reply>, Vec<String>) = (0..=RUNS).map(slow_answer).unzip();
    let server = ChatServer::start(replies).await;
    let llm = [
        ("LLM_PROVIDER", "openai"),
        ("LLM_MODEL", "m"),
        ("LLM_BASE_URL", server.url.as_str()),
        ("LLM_API_KEY", "sk-loopback"),
    ];
    let rt = spawn(store.table(), &ep, RUNS, &llm, None).await;
    let conns = connect_all(&rt, RUNS + 1).await;
    let question = |i: usize| format!("question number {i} of the batch");

    let alone = Instant::now();
    let ev = start(&conns[RUNS], "alone", &question(RUNS), None);
    assert_eq!(rt.invoke(&ev, LIMIT).await.0.json()["statusCode"], 200);
    let alone = alone.elapsed();

    let together = Instant::now();
    let runs = (0..RUNS).map(|i| {
        let ev = start(&conns[i], &format!("llm-{i}"), &question(i), None);
        let rt = &rt;
        async move { rt.invoke(&ev, LIMIT).await.0 }
    });
    let outcomes = join_all(runs).await;
    let together = together.elapsed();

    // The n-th request the model received got the n-th answer: find each run's by its question.
    let received = server.received();
    let answer_to = |q: &str| {
        let n = received
            .iter()
            .position(|r| r.body["messages"].to_string().contains(q))
            .unwrap_or_else(|| panic!("the model never got {q:?}"));
        answers[n].clone()
    };
    for (i, out) in outcomes.iter().enumerate() {
        assert_eq!(out.json()["statusCode"], 200, "run {i}");
        let frames = own_run(&ep, &conns[i], &format!("llm-{i}"));
        let want = answer_to(&format!("\"{}\"", question(i)));
        let streamed: String = frames
            .iter()
            .filter(|f| f["type"] == "agent_delta")
            .map(|f| f["payload"]["text"].as_str().unwrap_or(""))
            .collect();
        let done = frames.last().unwrap();
        assert_eq!(done["payload"]["result"]["text"], want.as_str(), "run {i}");
        assert_eq!(streamed, want, "run {i}: deltas");
    }
    assert!(
        together < alone * 2,
        "{RUNS} streamed runs together took {together:?}, one alone {alone:?}"
    );
    eprintln!("one streamed llm run {alone:?}; {RUNS} at once {together:?}");
}

/// The JSON lines of `path` (log lines and EMF documents).
fn json_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// What the isolation test sent in one invocation.
struct Sent {
    conn: String,
    user: String,
    /// `Some(delay)` for a run start, `None` for a refused `$connect`.
    delay_ms: Option<u64>,
}

/// Interleaved in one process — runs of different lengths, refused connects, pings and reads —
/// every log line written inside an invocation names that invocation (its span's request id),
/// each invocation line's connection and user are its own, each EMF document counts exactly one
/// invocation with that invocation's own durations, and each reply answers its own request.
#[tokio::test]
async fn interleaved_invocations_keep_their_own_logs_metrics_and_replies() {
    let store = fresh_store("bin-conc-iso").await;
    let ep = support::connections::start().await;
    let dir = std::env::temp_dir().join(format!("wsexec-conc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("stdout.jsonl");
    let file = std::fs::File::create(&log).unwrap();
    let slots = 32;
    let rt = spawn(
        store.table(),
        &ep,
        slots,
        &[("RUST_LOG", "info"), ("JWT_SECRET", SAMPLE_SECRET)],
        Some(file),
    )
    .await;
    let n = 24;
    let conns = connect_all(&rt, n).await;

    // Runs whose lengths differ by 40 ms, refused connects and pings, all in flight together.
    type Done = (String, Outcome, Option<Sent>);
    let mut invocations: Vec<Pin<Box<dyn Future<Output = Done> + '_>>> = Vec::new();
    for (i, conn) in conns.iter().enumerate() {
        let delay = 200 + 40 * i as u64;
        let run = start(conn, &format!("iso-{i}"), "hello", Some(delay));
        let bad = aws_id();
        let refused = connect_event(&bad, &[("token", &format!("not-a-jwt-{i}"))], &[]);
        let ping = message_event(conn, r#"{"type":"ping"}"#);
        let sends = [
            (
                run,
                Sent {
                    conn: conn.clone(),
                    user: user(i),
                    delay_ms: Some(delay),
                },
            ),
            (
                refused.to_string(),
                Sent {
                    conn: bad,
                    user: String::new(),
                    delay_ms: None,
                },
            ),
        ];
        for (ev, s) in sends {
            let rt = &rt;
            invocations.push(Box::pin(async move {
                let (id, out, _) = rt.invoke_with_id(&ev, LIMIT).await;
                (id, out, Some(s))
            }));
        }
        let rt = &rt;
        let ping = ping.to_string();
        invocations.push(Box::pin(async move {
            let (id, out, _) = rt.invoke_with_id(&ping, LIMIT).await;
            (id, out, None)
        }));
    }
    let done = join_all(invocations).await;

    // Replies: each its own request's.
    let mut by_id: HashMap<String, Sent> = HashMap::new();
    for (id, out, s) in done {
        let reply = out.json();
        match &s {
            Some(Sent {
                delay_ms: Some(_), ..
            }) => assert_eq!(reply["statusCode"], 200),
            Some(Sent { delay_ms: None, .. }) => assert_eq!(reply["statusCode"], 401),
            None => {
                let body: Value = serde_json::from_str(reply["body"].as_str().unwrap()).unwrap();
                assert_eq!(body["type"], "pong", "{reply}");
            }
        }
        if let Some(s) = s {
            by_id.insert(id, s);
        }
    }
    // Each connection heard its own run, stored under its own user with its own connection.
    for (i, conn) in conns.iter().enumerate() {
        let frames = own_run(&ep, conn, &format!("iso-{i}"));
        let run_id = frames[0]["run_id"].as_str().unwrap();
        let stored = store
            .get_run((&user(i)).into(), run_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&stored.connection_id, conn);
    }

    // Logs: flushed per line; give the process a moment, then read them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = json_lines(&log);
    let mut durations: HashMap<String, String> = HashMap::new();
    let mut rejected = 0;
    for l in &lines {
        if l.get("_aws").is_some() {
            continue;
        }
        let span_id = l["span"]["requestId"].as_str();
        if l["message"] == "invocation" {
            let id = l["lambda_request_id"].as_str().unwrap();
            assert_eq!(
                span_id,
                Some(id),
                "the line's span is another invocation's: {l}"
            );
            durations.insert(l["duration_ms"].to_string(), id.to_owned());
            let Some(s) = by_id.get(id) else { continue };
            assert_eq!(l["connection_id"], s.conn.as_str(), "{l}");
            if s.delay_ms.is_some() {
                assert_eq!(l["user_id"], s.user.as_str(), "{l}");
            } else {
                assert_eq!(l["error_code"], "invalid_token", "{l}");
            }
        } else if l["message"] == "token rejected" {
            // Written inside a refused connect: its span must be that connect's.
            let s = span_id.and_then(|id| by_id.get(id));
            assert!(
                matches!(s, Some(Sent { delay_ms: None, .. })),
                "a rejected token logged outside its connect: {l}"
            );
            rejected += 1;
        }
    }
    assert_eq!(rejected, n, "token rejected lines");

    // Metrics: each document with an invocation's duration is that invocation's alone.
    let mut runs_metered = 0;
    for doc in lines.iter().filter(|l| l.get("_aws").is_some()) {
        let Some(d) = doc.get("InvocationDuration") else {
            continue;
        };
        let id = durations
            .get(&d.to_string())
            .unwrap_or_else(|| panic!("no invocation line took {d}: {doc}"));
        let Some(s) = by_id.get(id) else { continue };
        if let Some(delay) = s.delay_ms {
            let run = doc["RunDuration"]
                .as_f64()
                .unwrap_or_else(|| panic!("one run's duration: {doc}"));
            assert!(
                run >= delay as f64 && run < delay as f64 + 1000.0,
                "run of {delay} ms metered {run} ms: another invocation's metrics? {doc}"
            );
            runs_metered += 1;
        }
    }
    assert_eq!(runs_metered, n, "EMF documents with a run's duration");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A process with one slot (`AWS_LAMBDA_MAX_CONCURRENCY=1`) stays on the single-invocation
/// loop: it holds one `/next` at a time, and two 1 s runs take one after the other.
#[tokio::test]
async fn one_slot_serves_one_invocation_at_a_time() {
    let store = fresh_store("bin-conc-one").await;
    let ep = support::connections::start().await;
    let rt = spawn(store.table(), &ep, 1, &[], None).await;
    let conns = connect_all(&rt, 2).await;
    let t = Instant::now();
    let runs = (0..2).map(|i| {
        let ev = start(&conns[i], &format!("one-{i}"), "hello", Some(1000));
        let rt = &rt;
        async move { rt.invoke(&ev, LIMIT).await.0 }
    });
    for out in join_all(runs).await {
        assert!(matches!(out, Outcome::Response(_)));
    }
    assert!(
        t.elapsed() >= Duration::from_millis(2000),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(rt.max_polling(), 1);
}

/// With `RUN_DISPATCH=async` and 16 slots, 16 starts return at once and their worker
/// invocations (queued through the harness's `Invoke` API) drive all 16 runs side by side in
/// the same process: each connection hears its own run, in well under 16 runs' time.
#[tokio::test]
async fn async_workers_drive_their_runs_side_by_side_in_one_process() {
    let store = fresh_store("bin-conc-async").await;
    let ep = support::connections::start().await;
    let slots = 16;
    // The harness is the Lambda `Invoke` API too: the function's Lambda client aims at it.
    let mut rt = Runtime::start().await;
    let lambda_url = format!("http://{}", rt.addr);
    let mut env: Vec<(String, String)> = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("CONNECTIONS_ENDPOINT", ep.url.as_str()),
        ("TABLE_NAME", store.table()),
        ("RUST_LOG", "warn"),
        ("RUN_DISPATCH", "async"),
        ("AWS_ENDPOINT_URL_LAMBDA", lambda_url.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.push(("AWS_ENDPOINT_URL_DYNAMODB".into(), endpoint()));
    env.push(("AWS_LAMBDA_MAX_CONCURRENCY".into(), slots.to_string()));
    rt.spawn(&binary(), &[], &env, 128);
    rt.wait_init(LIMIT).await;
    rt.wait_polling(slots as u64, LIMIT).await;
    let conns = connect_all(&rt, slots).await;

    let t = Instant::now();
    let starts = conns.iter().enumerate().map(|(i, c)| {
        let ev = start(c, &format!("async-{i}"), "hello", Some(1000));
        let rt = &rt;
        async move { rt.invoke(&ev, LIMIT).await }
    });
    for (out, took) in join_all(starts).await {
        assert_eq!(out.json()["statusCode"], 200);
        assert!(
            took < Duration::from_millis(900),
            "a start waited for its run: {took:?}"
        );
    }
    let deadline = Instant::now() + LIMIT;
    while rt.async_outcomes().len() < slots {
        assert!(
            Instant::now() < deadline,
            "{} workers ended",
            rt.async_outcomes().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = t.elapsed();
    assert_eq!(rt.async_invocations(), slots as u64);
    for (i, c) in conns.iter().enumerate() {
        assert_eq!(types(&own_run(&ep, c, &format!("async-{i}"))), FIVE_EVENTS);
    }
    for out in rt.async_outcomes() {
        assert_eq!(out.json()["outcome"], "drove", "{out:?}");
    }
    assert!(
        took < Duration::from_secs(4),
        "16 runs of 1 s took {took:?}"
    );
}

/// Managed Instances: a SIGTERM while an inline run is in flight (no worker could continue it)
/// ends it within the shutdown window through the runtime's graceful-shutdown hook: the run is
/// written `failed` with `instance_shutdown` (retryable) and its client is told, instead of
/// staying alive for the sweep (issue 21, item 15). With async dispatch the run is handed to
/// another environment instead: `tests/handoff_binary.rs`.
#[tokio::test]
async fn sigterm_ends_in_flight_runs_with_a_terminal_write() {
    let store = fresh_store("bin-term").await;
    let ep = support::connections::start().await;
    let mut rt = spawn(
        store.table(),
        &ep,
        4,
        &[("RUN_TIME_LIMIT_MS", "60000")],
        None,
    )
    .await;
    let conns = connect_all(&rt, 2).await;
    let runs = [("term-0", &conns[0]), ("term-1", &conns[1])];
    let started = join_all(
        runs.iter()
            .map(|(rid, c)| async { rt.invoke(&start(c, rid, "x", Some(30_000)), LIMIT).await }),
    );
    let stepping = async {
        for (_, c) in &runs {
            while !ep
                .delivered(c)
                .iter()
                .any(|f| f["type"] == "tool_executing")
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    tokio::select! {
        _ = started => panic!("the runs ended by themselves"),
        _ = tokio::time::timeout(LIMIT, stepping) => {}
    }
    let took = rt.sigterm(Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
    for (i, (rid, c)) in runs.iter().enumerate() {
        let last = ep.delivered(c).last().cloned().unwrap();
        assert_eq!(
            (last["type"].as_str(), last["payload"]["code"].as_str()),
            (Some("agent_error"), Some("instance_shutdown")),
            "{last}"
        );
        assert_eq!(last["payload"]["retryable"], true);
        let run_id = wsexec::run::derive_run_id(&user(i), rid);
        let run = store
            .get_run((&user(i)).into(), &run_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(run.state, wsexec::ExecutionState::Failed);
        assert_eq!(run.error.unwrap().code, "instance_shutdown");
    }
}

//! The `llm` agent through the release binary (the Lambda process under the loopback Runtime
//! API, DynamoDB Local, a loopback `@connections` endpoint) against a scripted Chat Completions
//! endpoint: the first token streams at once with tools offered and a tool round's text is
//! discarded, a spent quota and a `Retry-After` past the run's time end the run at once, split
//! surrogate pairs are joined, default time limits fit the agent, a plain-`http://` model
//! host is refused, and an MCP server's tool (the official Python SDK's server) is offered,
//! called and answered, with nothing MCP contacted before an `llm` run needs its tools.

#[path = "support/mcp.rs"]
mod mcp;
#[path = "support/mcp_agent.rs"]
mod mcp_agent;
#[path = "support/sse.rs"]
mod sse;
mod support;

// `sse.rs` reads requests with `crate::http`: the same reader the other loopback servers use.
use support::http;

use serde_json::{Value, json};
use sse::{ChatServer, Reply, Step, call, done, finish, text};
use std::time::{Duration, Instant};
use support::connections::ConnectionsEndpoint;
use support::durable::kept_text;
use support::dynamodb::*;
use support::runtime_api::Runtime;
use support::*;
use wsexec::store::Store;

const LIMIT: Duration = Duration::from_secs(30);

/// The user of the sample JWT in `events/connect-jwt-query.json`.
const USER: &str = "user-alice-01";

/// The binary under test: `WSEXEC_BIN` (the release build `tools/test` makes) or Cargo's build.
fn binary() -> String {
    std::env::var("WSEXEC_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_wsexec").to_owned())
}

/// One environment of the binary with the `llm` agent on `model` (tools offered unless
/// `extra` says otherwise), writing its log lines to `log` when given.
async fn spawn(
    table: &str,
    ep: &ConnectionsEndpoint,
    model: &str,
    extra: &[(&str, &str)],
    log: Option<std::fs::File>,
) -> Runtime {
    let mut rt = Runtime::start().await;
    let lambda = format!("http://{}", rt.addr);
    let mut all = vec![("LLM_MODEL", "scripted-model")];
    all.extend_from_slice(extra);
    let env = llm_binary_env(table, &ep.url, &lambda, model, &all);
    if let Some(f) = log {
        rt.stdout_to(f);
    }
    rt.spawn(&binary(), &[], &env, 128);
    rt.wait_init(LIMIT).await;
    rt
}

async fn call_json(rt: &Runtime, event: &Value) -> Value {
    rt.invoke(&event.to_string(), LIMIT).await.0.json()
}

/// Connects `USER` (the sample JWT) on a fresh connection id; returns it.
async fn connect(rt: &Runtime) -> String {
    let id = aws_id();
    let mut e = sample("connect-jwt-query.json");
    e["requestContext"]["connectionId"] = json!(id);
    assert_eq!(call_json(rt, &e).await["statusCode"], 200);
    id
}

/// Starts a run of `agent` (the default when `None`) on `conn`; returns the route's output.
async fn start(rt: &Runtime, conn: &str, request_id: &str, agent: Option<&str>) -> Value {
    let mut frame = json!({"type": "start_agent", "request_id": request_id,
                           "payload": {"user_request": "What time is it?"}});
    if let Some(a) = agent {
        frame["agent"] = json!(a);
    }
    call_json(rt, &message_event(conn, &frame.to_string())).await
}

/// The frames of the run `request_id` pushed to `conn`.
fn run_frames(ep: &ConnectionsEndpoint, conn: &str, request_id: &str) -> Vec<Value> {
    ep.delivered(conn)
        .into_iter()
        .filter(|f| f["request_id"] == request_id)
        .collect()
}

/// Waits (bounded) until the run `request_id` on `conn` ends; its frames.
async fn until_ended(ep: &ConnectionsEndpoint, conn: &str, request_id: &str) -> Vec<Value> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let frames = run_frames(ep, conn, request_id);
        if frames
            .iter()
            .any(|f| matches!(f["type"].as_str(), Some("agent_completed" | "agent_error")))
        {
            return frames;
        }
        assert!(Instant::now() < deadline, "{:?}", types(&frames));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With tools offered (the default) through the binary: the first `agent_delta` reaches the
/// client while the model is still writing the round, the round that turns into a tool call
/// is withdrawn with `agent_text_discarded {round: 1, reason: "tool_call"}` and shown as
/// thinking, and the deltas the client keeps equal `result.text`.
#[tokio::test]
async fn with_tools_offered_text_streams_at_once_and_a_tool_round_is_discarded() {
    let round1 = Reply::Stream(vec![
        Step::Send(text("Let me ")),
        Step::Sleep(Duration::from_millis(1500)),
        Step::Send(text("check the time.")),
        Step::Send(call(0, Some("t1"), Some("current_time"), "{}")),
        Step::Send(finish("tool_calls")),
        Step::Send(done()),
    ]);
    let round2 = Reply::Stream(vec![
        Step::Send(text("It is ")),
        Step::Sleep(Duration::from_millis(300)),
        Step::Send(text("noon.")),
        Step::Send(finish("stop")),
        Step::Send(done()),
    ]);
    let model = ChatServer::start(vec![round1, round2]).await;
    let store = fresh_store("bin-llm-discard").await;
    let ep = support::connections::start().await;
    let mut rt = spawn(store.table(), &ep, &model.url, &[], None).await;
    let conn = connect(&rt).await;

    let watch = async {
        let deadline = Instant::now() + LIMIT;
        loop {
            if ep
                .delivered(&conn)
                .iter()
                .any(|f| f["type"] == "agent_delta")
            {
                // What the model had written when the first delta reached the client.
                return model.sent().len();
            }
            assert!(Instant::now() < deadline, "no agent_delta");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (out, written) = tokio::join!(start(&rt, &conn, "r-time", None), watch);
    assert_eq!(out, json!({"statusCode": 200}));
    assert_eq!(written, 1, "the first delta waited for more of the round");

    let frames = run_frames(&ep, &conn, "r-time");
    let kinds = types(&frames);
    let at = kinds.iter().position(|k| k == "agent_text_discarded");
    let at = at.unwrap_or_else(|| panic!("no discard: {kinds:?}"));
    assert_eq!(
        frames[at]["payload"],
        json!({"round": 1, "reason": "tool_call"})
    );
    assert_eq!(frames[at - 1]["payload"]["round"], 1);
    assert_eq!(kinds[at + 1], "agent_thinking");
    assert_eq!(
        frames[at + 1]["payload"]["thought"],
        "Let me check the time."
    );
    assert_eq!(kinds[at + 2], "tool_executing");
    let seqs: Vec<u64> = frames.iter().filter_map(|f| f["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=frames.len() as u64).collect::<Vec<_>>());
    let last = frames.last().unwrap();
    assert_eq!(last["type"], "agent_completed", "{kinds:?}");
    let result = last["payload"]["result"]["text"].as_str().unwrap();
    assert_eq!(result, "It is noon.");
    assert_eq!(kept_text(&frames), result);
    assert!(
        frames
            .iter()
            .filter(|f| f["type"] == "agent_delta")
            .skip_while(|f| f["payload"]["round"] == 1)
            .all(|f| f["payload"]["round"] == 2)
    );
    assert!(rt.alive());
}

/// A spent quota (a 429 before the stream, or an error event in it) reaches the client as a
/// non-retryable `llm_throttled` that says the quota is spent; a `Retry-After` longer than the
/// run has left ends the run at once with a retryable `llm_throttled`, not `run_timeout`.
#[tokio::test]
async fn a_spent_quota_and_a_retry_after_past_the_limit_end_the_run_at_once() {
    let quota = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
    let in_stream = Reply::Stream(vec![
        Step::Send(text("part")),
        Step::Send(sse::event(serde_json::from_str(quota).unwrap())),
    ]);
    let later = Reply::Status {
        status: 429,
        headers: vec![("retry-after".into(), "20".into())],
        body: r#"{"error":{"code":"rate_limit_exceeded"}}"#.into(),
    };
    let model = ChatServer::start(vec![sse::status(429, quota), in_stream, later]).await;
    let store = fresh_store("bin-llm-quota").await;
    let ep = support::connections::start().await;
    let extra = [("RUN_TIME_LIMIT_MS", "6000"), ("LLM_TOOLS", "none")];
    let mut rt = spawn(store.table(), &ep, &model.url, &extra, None).await;
    let conn = connect(&rt).await;
    for request_id in ["r-quota", "r-quota-mid"] {
        start(&rt, &conn, request_id, None).await;
        let frames = until_ended(&ep, &conn, request_id).await;
        let error = &frames.last().unwrap()["payload"];
        assert_eq!(error["code"], "llm_throttled", "{error}");
        assert_eq!(error["retryable"], false, "{error}");
        assert!(
            error["message"].as_str().unwrap().contains("quota"),
            "{error}"
        );
    }
    let started = Instant::now();
    start(&rt, &conn, "r-later", None).await;
    let frames = until_ended(&ep, &conn, "r-later").await;
    let error = &frames.last().unwrap()["payload"];
    assert_eq!(error["code"], "llm_throttled", "{error}");
    assert_eq!(error["retryable"], true, "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(model.received().len(), 3, "nothing was retried");
    assert!(rt.alive());
}

/// `data:` line of a chunk whose text is `content`, written raw (it may hold an escape no JSON
/// library writes, such as an unpaired surrogate).
fn raw_text(content: &str) -> Vec<u8> {
    format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}}}}]}}\n\n")
        .into_bytes()
}

/// An emoji whose surrogate pair is split over two chunks arrives whole, and a lone surrogate
/// arrives as U+FFFD: the run completes instead of failing `llm_protocol`.
#[tokio::test]
async fn split_and_lone_surrogates_reach_the_client_as_text() {
    let model = ChatServer::start(vec![Reply::Stream(vec![
        Step::Send(raw_text(r"a \ud83d")),
        Step::Send(raw_text(r"\ude00 b \udc00")),
        Step::Send(finish("stop")),
        Step::Send(done()),
    ])])
    .await;
    let store = fresh_store("bin-llm-utf16").await;
    let ep = support::connections::start().await;
    let rt = spawn(store.table(), &ep, &model.url, &[], None).await;
    let conn = connect(&rt).await;
    start(&rt, &conn, "r-smile", None).await;
    let frames = run_frames(&ep, &conn, "r-smile");
    let last = frames.last().unwrap();
    assert_eq!(last["type"], "agent_completed", "{last}");
    assert_eq!(last["payload"]["result"]["text"], "a \u{1F600} b \u{FFFD}");
    assert_eq!(kept_text(&frames), "a \u{1F600} b \u{FFFD}");
}

/// With `RUN_TIME_LIMIT_MS` unset, an `llm` run's limit fits `LLM_MAX_TOKENS` at a slow
/// model's pace within the dispatch mode (28 s inline, 61.2 s async for 1024 tokens), an echo
/// run keeps 15 s, and a run that times out is told which setting to raise.
#[tokio::test]
async fn default_limits_fit_the_agent_and_a_timeout_names_the_setting() {
    let quick = || sse::answer(&["ok"]);
    let model = ChatServer::start(vec![quick(), quick()]).await;
    let store = fresh_store("bin-llm-limits").await;
    let ep = support::connections::start().await;
    let limit_of = |run: &wsexec::store::RunRecord| run.deadline_at - run.created_at;

    let rt = spawn(store.table(), &ep, &model.url, &[], None).await;
    let conn = connect(&rt).await;
    for (request_id, agent, expect) in [("l-llm", None, 28_000), ("l-echo", Some("echo"), 15_000)] {
        start(&rt, &conn, request_id, agent).await;
        let run_id = run_frames(&ep, &conn, request_id)[0]["run_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let run = store.get_run(USER.into(), &run_id).await.unwrap().unwrap();
        assert_eq!(limit_of(&run), expect, "{request_id}");
    }

    let extra = [("RUN_DISPATCH", "async")];
    let rt = spawn(store.table(), &ep, &model.url, &extra, None).await;
    let conn = connect(&rt).await;
    start(&rt, &conn, "l-async", None).await;
    let frames = until_ended(&ep, &conn, "l-async").await;
    assert_eq!(frames.last().unwrap()["type"], "agent_completed");
    let run_id = frames[0]["run_id"].as_str().unwrap();
    let run = store.get_run(USER.into(), run_id).await.unwrap().unwrap();
    assert_eq!(limit_of(&run), 61_200);

    let stalled = ChatServer::start(vec![Reply::Stream(vec![
        Step::Send(text("thinking")),
        Step::Stall,
    ])])
    .await;
    let extra = [("RUN_TIME_LIMIT_MS", "1500")];
    let rt = spawn(store.table(), &ep, &stalled.url, &extra, None).await;
    let conn = connect(&rt).await;
    start(&rt, &conn, "l-stall", None).await;
    let frames = until_ended(&ep, &conn, "l-stall").await;
    let error = &frames.last().unwrap()["payload"];
    assert_eq!(error["code"], "run_timeout", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("RUN_TIME_LIMIT_MS"),
        "{error}"
    );
}

/// `LLM_BASE_URL` with plain `http://` to a host other than this machine is refused when the
/// function initialises: every invocation is an error reply, and the log names the variable
/// (never the key).
#[tokio::test]
async fn plain_http_to_a_remote_model_host_is_refused() {
    const KEY: &str = "sk-live-cleartext-0123456789";
    let store = fresh_store("bin-llm-http").await;
    let ep = support::connections::start().await;
    let dir = tempdir("bin-llm-http");
    let log_path = dir.join("stdout.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let extra = [("LLM_API_KEY", KEY), ("RUST_LOG", "info")];
    let rt = spawn(
        store.table(),
        &ep,
        "http://model.example.com/v1",
        &extra,
        Some(log),
    )
    .await;
    let c = call_json(&rt, &sample("connect-jwt-query.json")).await;
    assert_eq!(c["statusCode"], 500, "{c}");
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let refused = logs
        .lines()
        .find(|l| l.contains("initialisation failed"))
        .unwrap_or_else(|| panic!("no initialisation error logged: {logs}"));
    assert!(refused.contains("LLM_BASE_URL"), "{refused}");
    assert!(refused.contains("https://"), "{refused}");
    assert!(!logs.contains(KEY));
    let _ = std::fs::remove_dir_all(dir);
}

/// A fresh directory under the target directory (ignored by git) for one test's files.
fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        aws_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The payloads of the run's frames of type `kind`, in order.
fn payloads(frames: &[Value], kind: &str) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| f["type"] == kind)
        .map(|f| f["payload"].clone())
        .collect()
}

/// Through the release binary on DynamoDB Local with `MCP_SERVERS` naming the official Python
/// SDK's server: `$connect`, `ping` and an echo run contact no MCP server; then an `llm` run
/// offers `orders__lookup_order` (the server's description and schema) next to the built-ins,
/// the server receives the model's arguments with the configured header, the model gets the
/// structured result back, the client sees `tool_executing`/`tool_completed` under the offered
/// name, and no log line (at `info`) carries the header value.
#[tokio::test]
async fn an_mcp_tool_is_offered_called_and_answered_through_the_binary() {
    let server = mcp::McpServer::start();
    let model = ChatServer::start(vec![
        mcp_agent::calls(&[("c1", "orders__lookup_order", json!({"order_id": "A-17"}))]),
        sse::answer(&["Order A-17 ", "has shipped."]),
    ])
    .await;
    let store = fresh_store("bin-llm-mcp").await;
    let ep = support::connections::start().await;
    let dir = tempdir("bin-llm-mcp");
    let log_path = dir.join("stdout.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let servers = mcp::servers(&[server.entry("orders", json!({}))]);
    let extra = [("MCP_SERVERS", servers.as_str()), ("RUST_LOG", "info")];
    let mut rt = spawn(store.table(), &ep, &model.url, &extra, Some(log)).await;

    // Nothing MCP is built or contacted until an llm run asks for its tools.
    let conn = connect(&rt).await;
    let pong = call_json(&rt, &message_event(&conn, r#"{"type":"ping"}"#)).await;
    assert!(pong["body"].as_str().unwrap().contains("pong"), "{pong}");
    start(&rt, &conn, "r-echo", Some("echo")).await;
    let echo = until_ended(&ep, &conn, "r-echo").await;
    assert_eq!(echo.last().unwrap()["type"], "agent_completed");
    assert_eq!(
        server.calls().await,
        Vec::<Value>::new(),
        "MCP contacted early"
    );

    start(&rt, &conn, "r-mcp", None).await;
    let frames = until_ended(&ep, &conn, "r-mcp").await;
    let last = frames.last().unwrap();
    assert_eq!(last["type"], "agent_completed", "{:?}", types(&frames));
    assert_eq!(last["payload"]["result"]["text"], "Order A-17 has shipped.");

    let requests = model.received();
    assert_eq!(requests.len(), 2);
    let offered = mcp_agent::offered(&requests[0].body, "orders__lookup_order");
    assert_eq!(
        offered["description"],
        "Looks up an order by its id and returns its status and total."
    );
    assert_eq!(offered["parameters"]["type"], "object");
    assert_eq!(
        offered["parameters"]["properties"]["order_id"]["type"],
        "string"
    );
    assert_eq!(offered["parameters"]["required"], json!(["order_id"]));
    mcp_agent::offered(&requests[0].body, "current_time");

    let received = server.tool_calls().await;
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["tool"], "lookup_order");
    assert_eq!(received[0]["arguments"], json!({"order_id": "A-17"}));
    let header = mcp::API_KEY_HEADER.to_ascii_lowercase();
    assert_eq!(received[0]["headers"][&header], mcp::API_KEY);

    let expected = json!({"order_id": "A-17", "status": "shipped", "total": 42.5});
    let results = mcp_agent::tool_results(&requests[1].body);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, "c1");
    assert_eq!(results[0].1["structured_content"], expected);

    let executing = payloads(&frames, "tool_executing");
    assert_eq!(
        executing,
        vec![
            json!({"tool_name": "orders__lookup_order", "parameters": {"order_id": "A-17"},
                   "call_id": "c1"})
        ]
    );
    let completed = payloads(&frames, "tool_completed");
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0]["tool_name"], "orders__lookup_order");
    assert_eq!(completed[0]["result"]["structured_content"], expected);
    assert!(rt.alive());

    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.contains("mcp tools discovered"), "{logs}");
    assert!(!logs.contains(mcp::API_KEY), "secret logged: {logs}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Wire faults through the release binary (an HTTP 500, a call slower than `timeout_ms`, an
/// expired session on a tool that may not be repeated, the server gone at call time, a second
/// server refused at discovery): every run completes with the model told the classified error
/// in its tool result, the process stays up, and no log line carries the header value or the
/// call's arguments.
#[tokio::test]
async fn mcp_wire_faults_are_tool_errors_through_the_binary() {
    let mut server = mcp::McpServer::start();
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gone = json!({"name": "gone", "url": format!("http://127.0.0.1:{refused}/mcp"),
                      "headers": {mcp::API_KEY_HEADER: mcp::API_KEY}});
    let servers = mcp::servers(&[server.entry("t", json!({"timeout_ms": 700})), gone]);
    let lookup = || mcp_agent::calls(&[("c", "t__lookup_order", json!({"order_id": "B-2"}))]);
    let model = ChatServer::start(vec![
        lookup(),
        sse::answer(&["sorry"]),
        mcp_agent::calls(&[("c", "t__sleep", json!({"seconds": 3.0}))]),
        sse::answer(&["too slow"]),
        mcp_agent::calls(&[("c", "t__place_order", json!({"item": "tea"}))]),
        sse::answer(&["not sure"]),
        lookup(),
        sse::answer(&["down"]),
    ])
    .await;
    let store = fresh_store("bin-llm-mcp-faults").await;
    let ep = support::connections::start().await;
    let dir = tempdir("bin-llm-mcp-faults");
    let log_path = dir.join("stdout.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let extra = [("MCP_SERVERS", servers.as_str()), ("RUST_LOG", "info")];
    let mut rt = spawn(store.table(), &ep, &model.url, &extra, Some(log)).await;
    let conn = connect(&rt).await;

    let mut errors = Vec::new();
    for (request_id, fault) in [
        ("f-500", Some("500")),
        ("f-slow", None),
        ("f-expire", Some("expire")),
        ("f-down", None),
    ] {
        if let Some(fault) = fault {
            server.fault(fault, 1).await;
        }
        if request_id == "f-down" {
            server.kill();
        }
        start(&rt, &conn, request_id, None).await;
        let frames = until_ended(&ep, &conn, request_id).await;
        assert_eq!(
            frames.last().unwrap()["type"],
            "agent_completed",
            "{request_id}"
        );
        let done = payloads(&frames, "tool_completed");
        errors.push(done[0]["result"]["error"].as_str().unwrap().to_owned());
    }
    let told = mcp_agent::tool_results(&model.received()[1].body);
    assert_eq!(told[0].1["error"], errors[0].as_str());
    assert!(errors[0].starts_with("mcp_http_5xx"), "{errors:?}");
    assert!(errors[1].starts_with("mcp_timeout"), "{errors:?}");
    assert!(errors[2].starts_with("mcp_session_expired"), "{errors:?}");
    assert!(
        errors[3].starts_with("mcp_refused") || errors[3].starts_with("mcp_connection"),
        "{errors:?}"
    );
    assert!(rt.alive());

    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logs.lines()
            .any(|l| l.contains("left out of this run") && l.contains("gone")),
        "{logs}"
    );
    assert!(
        logs.contains("mcp_http_5xx") && logs.contains("mcp_timeout"),
        "{logs}"
    );
    assert!(!logs.contains(mcp::API_KEY), "secret logged: {logs}");
    assert!(
        !logs.contains("B-2") && !logs.contains(r#""tea""#),
        "arguments logged: {logs}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

//! Daily token budgets through the release binary on DynamoDB Local, with a scripted loopback
//! Chat Completions endpoint that reports each round's usage: runs until the budget is spent,
//! then refusals that send the model nothing; a run that spends it mid-way stops after its
//! round; one tenant's spend never blocks another's; `get_usage` is the sum of the runs'
//! recorded usage. The next UTC day, with an injected clock, on the same store.

#[path = "support/sse.rs"]
mod sse;
mod support;

// `sse.rs` reads requests with `crate::http`: the same reader the other loopback servers use.
use support::http;

use serde_json::{Value, json};
use sse::{ChatServer, Reply, Step, call, done, finish, text, usage};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use support::dynamodb::*;
use support::runtime_api::Runtime;
use support::*;
use wsexec::ExecutionState;
use wsexec::llm::LlmAgent;
use wsexec::store::{Owner, Store};

const LIMIT: Duration = Duration::from_secs(30);

/// The binary under test: `WSEXEC_BIN` (the release build `tools/test` makes) or Cargo's build.
fn binary() -> String {
    std::env::var("WSEXEC_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_wsexec").to_owned())
}

/// An answer round reporting `input` and `output` tokens.
fn answer(input: u64, output: u64) -> Reply {
    Reply::Stream(vec![
        Step::Send(text("fine")),
        Step::Send(finish("stop")),
        Step::Send(usage(input, output)),
        Step::Send(done()),
    ])
}

/// A round that calls the calculator, reporting `input` and `output` tokens.
fn tool_round(input: u64, output: u64) -> Reply {
    Reply::Stream(vec![
        Step::Send(text("Let me add.")),
        Step::Send(call(
            0,
            Some("c1"),
            Some("calculator"),
            r#"{"expression":"1+1"}"#,
        )),
        Step::Send(finish("tool_calls")),
        Step::Send(usage(input, output)),
        Step::Send(done()),
    ])
}

/// The binary with the `llm` agent on `model`, inline runs, and `extra` settings.
async fn spawn(table: &str, connections: &str, model: &str, extra: &[(&str, &str)]) -> Runtime {
    let mut rt = Runtime::start().await;
    let lambda = format!("http://{}", rt.addr);
    let mut settings = vec![
        ("LLM_MODEL", "scripted-model"),
        ("LLM_TOOLS", "calculator"),
        ("DEFAULT_AGENT", "llm"),
    ];
    settings.extend_from_slice(extra);
    let env = llm_binary_env(table, connections, &lambda, model, &settings);
    rt.spawn(&binary(), &[], &env, 128);
    rt.wait_init(LIMIT).await;
    rt
}

/// Connects `user` (of `tenant`, when given) through an API Gateway authorizer.
async fn connect(rt: &Runtime, user: &str, tenant: Option<&str>) -> String {
    let conn = aws_id();
    let mut ev = authorizer_connect_event(&conn, user);
    if let Some(t) = tenant {
        ev["requestContext"]["authorizer"]["tenant_id"] = json!(t);
    }
    assert_eq!(
        rt.invoke(&ev.to_string(), LIMIT).await.0.json()["statusCode"],
        200
    );
    conn
}

/// Sends `frame` on `conn`; the direct reply, if any (none: the run's events were pushed).
async fn send(rt: &Runtime, conn: &str, frame: Value) -> Option<Value> {
    let ev = message_event(conn, &frame.to_string()).to_string();
    let out = rt.invoke(&ev, LIMIT).await.0.json();
    assert_eq!(out["statusCode"], 200, "{out}");
    out.get("body")
        .and_then(Value::as_str)
        .map(|b| serde_json::from_str(b).expect("the reply is JSON"))
}

/// Starts an `llm` run (driven inline to its end); the direct reply, if any.
async fn start(rt: &Runtime, conn: &str, request_id: &str) -> Option<Value> {
    let frame = json!({"type": "start_agent", "request_id": request_id,
                       "payload": {"user_request": "what is 1+1?"}});
    send(rt, conn, frame).await
}

/// Whether `reply` is a budget's refusal naming `limit`, retryable the next UTC day.
fn refused_by(reply: &Option<Value>, limit: &str) -> bool {
    reply.as_ref().is_some_and(|r| {
        let p = &r["payload"];
        let retry = p["retry_after_ms"].as_u64().unwrap_or(0);
        r["type"] == "agent_error"
            && p["code"] == "quota_exceeded"
            && p["limit"] == limit
            && p["retryable"] == true
            && retry > 0
            && retry <= 86_400_000
            && r.get("run_id").is_none()
    })
}

/// The tokens the owner's runs recorded, summed.
async fn recorded_tokens(store: &dyn Store, owner: Owner<'_>) -> (usize, u64, u64) {
    let runs = store.list_runs(owner, None, 50, None).await.unwrap().items;
    let input = runs.iter().map(|r| r.usage.input_tokens).sum();
    let output = runs.iter().map(|r| r.usage.output_tokens).sum();
    (runs.len(), input, output)
}

/// A budget of 500 tokens: runs of 200 tokens each start until the day's count reaches it (the
/// third crosses it and, being its last round, completes), then a start is refused
/// `quota_exceeded` naming `DAILY_TOKEN_BUDGET_PER_USER` with no run left and no request to
/// the model; another user is not affected; `get_usage` equals the runs' recorded usage.
#[tokio::test]
async fn a_500_token_budget_runs_until_spent_then_refuses_without_a_model_request() {
    let model = ChatServer::start(vec![
        answer(150, 50),
        answer(150, 50),
        answer(150, 50),
        answer(100, 20),
    ])
    .await;
    let store = fresh_store("bin-budget").await;
    let ep = support::connections::start().await;
    let extra = [("DAILY_TOKEN_BUDGET_PER_USER", "500")];
    let rt = spawn(store.table(), &ep.url, &model.url, &extra).await;
    let conn = connect(&rt, "budget-user-01", None).await;
    let owner = Owner::user("budget-user-01");

    for i in 0..3 {
        assert_eq!(start(&rt, &conn, &format!("b-{i}")).await, None);
    }
    assert_eq!(model.received().len(), 3);
    for i in 0..3 {
        let refusal = start(&rt, &conn, &format!("refused-{i}")).await;
        assert!(
            refused_by(&refusal, "DAILY_TOKEN_BUDGET_PER_USER"),
            "{refusal:?}"
        );
    }
    assert_eq!(
        model.received().len(),
        3,
        "a refused start asked the model nothing"
    );
    let (runs, input, output) = recorded_tokens(&store, owner).await;
    assert_eq!(
        (runs, input, output),
        (3, 450, 150),
        "no refused start left a run"
    );
    assert!(
        store
            .list_runs(owner, None, 50, None)
            .await
            .unwrap()
            .items
            .iter()
            .all(|r| r.state == ExecutionState::Completed)
    );

    let usage = send(&rt, &conn, json!({"type": "get_usage"}))
        .await
        .unwrap();
    assert_eq!(usage["type"], "usage", "{usage}");
    let p = &usage["payload"];
    assert_eq!(
        p["usage"],
        json!({"runs": 3, "input_tokens": input, "output_tokens": output, "tokens": 600})
    );
    assert_eq!(
        p["limits"],
        json!({"DAILY_TOKEN_BUDGET_PER_USER": {"limit": 500, "used": 600, "remaining": 0}})
    );
    assert_eq!(p["metered"], true);

    let other = connect(&rt, "budget-user-02", None).await;
    assert_eq!(start(&rt, &other, "other-0").await, None);
    assert_eq!(
        model.received().len(),
        4,
        "another user's budget is their own"
    );
}

/// A run whose first round (a tool call) spends the budget finishes that round and stops
/// before asking for the next: it ends `failed` with `quota_exceeded` naming the budget, its
/// round's tokens recorded and counted, the model asked once.
#[tokio::test]
async fn a_run_that_spends_the_budget_mid_way_stops_after_its_round() {
    let model = ChatServer::start(vec![tool_round(400, 200), answer(10, 10)]).await;
    let store = fresh_store("bin-budget-mid").await;
    let ep = support::connections::start().await;
    let extra = [("DAILY_TOKEN_BUDGET_PER_USER", "500")];
    let rt = spawn(store.table(), &ep.url, &model.url, &extra).await;
    let conn = connect(&rt, "budget-user-03", None).await;
    let owner = Owner::user("budget-user-03");

    assert_eq!(start(&rt, &conn, "mid-0").await, None);
    assert_eq!(
        model.received().len(),
        1,
        "no round after the one that spent it"
    );
    let frames = ep.delivered(&conn);
    let last = frames.last().unwrap();
    assert_eq!(last["type"], "agent_error", "{:?}", types(&frames));
    assert_eq!(last["payload"]["code"], "quota_exceeded");
    assert_eq!(last["payload"]["limit"], "DAILY_TOKEN_BUDGET_PER_USER");
    assert!(!types(&frames).contains(&"tool_executing".to_owned()));
    let runs = store.list_runs(owner, None, 50, None).await.unwrap().items;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, ExecutionState::Failed);
    assert_eq!(
        runs[0].error.as_ref().map(|e| e.code.as_str()),
        Some("quota_exceeded")
    );
    assert_eq!(
        (runs[0].usage.input_tokens, runs[0].usage.output_tokens),
        (400, 200)
    );
    let today = store
        .usage_on(owner, &runs[0].metering.as_ref().unwrap().day)
        .await
        .unwrap();
    assert_eq!((today.user.runs, today.user.tokens()), (1, 600));
}

/// Two tenants with a budget of 500 tokens each: once one tenant's users spent theirs, every
/// user of that tenant is refused naming `DAILY_TOKEN_BUDGET_PER_TENANT`, while the other
/// tenant's user (with the same user id) still runs; `get_usage` of a tenant's user shows the
/// tenant budget's use and their own counters only.
#[tokio::test]
async fn one_tenants_spend_never_blocks_another_tenant() {
    let model = ChatServer::start(vec![answer(200, 100), answer(200, 100), answer(10, 5)]).await;
    let store = fresh_store("bin-budget-tenants").await;
    let ep = support::connections::start().await;
    let extra = [("DAILY_TOKEN_BUDGET_PER_TENANT", "500")];
    let rt = spawn(store.table(), &ep.url, &model.url, &extra).await;
    let acme_a = connect(&rt, "dana-01", Some("acme")).await;
    let acme_b = connect(&rt, "erin-01", Some("acme")).await;
    let globex = connect(&rt, "dana-01", Some("globex")).await;

    assert_eq!(start(&rt, &acme_a, "t-0").await, None);
    assert_eq!(start(&rt, &acme_b, "t-1").await, None);
    let refusal = start(&rt, &acme_a, "t-2").await;
    assert!(
        refused_by(&refusal, "DAILY_TOKEN_BUDGET_PER_TENANT"),
        "{refusal:?}"
    );
    let refusal = start(&rt, &acme_b, "t-3").await;
    assert!(refused_by(&refusal, "DAILY_TOKEN_BUDGET_PER_TENANT"));
    assert_eq!(model.received().len(), 2);
    assert_eq!(start(&rt, &globex, "t-0").await, None, "globex is not acme");
    assert_eq!(model.received().len(), 3);

    let usage = send(&rt, &acme_b, json!({"type": "get_usage"}))
        .await
        .unwrap();
    let p = &usage["payload"];
    assert_eq!(p["usage"]["tokens"], 300, "erin's own: {p}");
    assert_eq!(
        p["limits"]["DAILY_TOKEN_BUDGET_PER_TENANT"],
        json!({"limit": 500, "used": 600, "remaining": 0})
    );
    let usage = send(&rt, &globex, json!({"type": "get_usage"}))
        .await
        .unwrap();
    assert_eq!(
        usage["payload"]["limits"]["DAILY_TOKEN_BUDGET_PER_TENANT"]["used"],
        15
    );
    let acme = recorded_tokens(&store, Owner::new("dana-01", Some("acme"))).await;
    assert_eq!(acme, (1, 200, 100));
}

/// A clock a test moves by whole days.
#[derive(Default)]
struct TestClock {
    days: AtomicU64,
}

impl wsexec::time::Clock for TestClock {
    fn now_ms(&self) -> u64 {
        wsexec::time::now_ms() + self.days.load(Ordering::SeqCst) * wsexec::time::DAY_MS
    }
}

/// The `llm` agent on the scripted model `server`, with no tools.
fn agent(server: &ChatServer) -> LlmAgent {
    let env: HashMap<&str, String> = [
        ("LLM_PROVIDER", "openai".to_owned()),
        ("LLM_MODEL", "test-model".to_owned()),
        ("LLM_BASE_URL", server.url.clone()),
        ("LLM_TOOLS", "none".to_owned()),
    ]
    .into_iter()
    .collect();
    LlmAgent::from_lookup(|k| env.get(k).cloned())
        .unwrap()
        .unwrap()
}

/// With the budget spent today, the next UTC day (an injected clock) starts fresh: the start
/// is counted on the new day's counters and runs, while today's still say spent.
#[tokio::test]
async fn the_next_utc_day_starts_fresh() {
    let server = ChatServer::start(vec![answer(300, 300), answer(20, 10)]).await;
    let agent = agent(&server);
    let store = Arc::new(fresh_store("budget-day").await);
    let mut config = test_config();
    config.daily_token_budget_per_user = Some(500);
    let h = Harness::on(config, store.clone()).with_agent("llm", Arc::new(agent));
    let clock = Arc::new(TestClock::default());
    let h = Harness {
        mgr: h.mgr.with_clock(clock.clone()),
        notifier: h.notifier,
    };
    let conn = h.connect("alice-01").await;
    let frame = |id: &str| {
        json!({"type": "start_agent", "agent": "llm", "request_id": id,
               "payload": {"user_request": "hi"}})
    };
    assert_eq!(h.send_json(&conn, frame("day-1")).await, None);
    let refusal = h.send_json(&conn, frame("day-1-again")).await;
    assert!(refused_by(&refusal, "DAILY_TOKEN_BUDGET_PER_USER"));
    assert_eq!(server.received().len(), 1);

    clock.days.store(1, Ordering::SeqCst);
    assert_eq!(h.send_json(&conn, frame("day-2")).await, None);
    assert_eq!(server.received().len(), 2);
    let owner = Owner::user("alice-01");
    let now = wsexec::time::now_ms();
    let today = store
        .usage_on(owner, &wsexec::time::utc_day(now))
        .await
        .unwrap();
    let tomorrow = store
        .usage_on(owner, &wsexec::time::utc_day(now + wsexec::time::DAY_MS))
        .await
        .unwrap();
    assert_eq!((today.user.runs, today.user.tokens()), (1, 600));
    assert_eq!((tomorrow.user.runs, tomorrow.user.tokens()), (1, 30));
    let usage = h
        .send_json(&conn, json!({"type": "get_usage"}))
        .await
        .unwrap();
    assert_eq!(usage["payload"]["usage"]["tokens"], 30);
    assert_eq!(
        usage["payload"]["day"],
        wsexec::time::utc_day(now + wsexec::time::DAY_MS)
    );
}

/// What one limit setting of the request count sets on the configuration.
type Setting = fn(&mut wsexec::Config);

/// DynamoDB requests of one `llm` run of one round, counted on DynamoDB Local for each limit
/// setting (the README's access-pattern table): with every limit unset a start is the one
/// `PutItem` it always was, and the run is 3 requests; with limits on, the first start of an
/// owner in an instance reads their overrides once, the start is one transaction, and the
/// round's tokens are one `UpdateItem`.
#[tokio::test]
async fn requests_per_run_with_limits_on_and_off_are_counted() {
    let server = ChatServer::start((0..8).map(|_| answer(20, 10)).collect()).await;
    let agent = Arc::new(agent(&server));
    let store = Arc::new(fresh_store("budget-count").await);
    let counter = store.requests();
    let settings: [(&str, Setting); 4] = [
        ("off", |_| {}),
        ("active", |c| c.max_active_runs = Some(4)),
        ("budget", |c| c.daily_token_budget_per_user = Some(10_000)),
        ("all", |c| {
            c.max_active_runs = Some(4);
            c.daily_token_budget_per_user = Some(10_000);
            c.daily_token_budget_per_tenant = Some(100_000);
        }),
    ];
    let mut counted = Vec::new();
    for (label, set) in settings {
        let mut config = test_config();
        set(&mut config);
        let h = Harness::on(config, store.clone()).with_agent("llm", agent.clone());
        let conn = h.connect(&format!("count-{label}")).await;
        let mut runs = Vec::new();
        for i in 0..2 {
            let frame = json!({"type": "start_agent", "agent": "llm",
                               "request_id": format!("{label}-{i}"),
                               "payload": {"user_request": "hi"}});
            let before = counter.get();
            assert_eq!(h.send_json(&conn, frame).await, None);
            runs.push(counter.get() - before);
        }
        counted.push((label, runs));
    }
    eprintln!("requests per run (first, warm): {counted:?}");
    assert_eq!(
        counted,
        vec![
            ("off", vec![3, 3]),
            ("active", vec![5, 4]),
            ("budget", vec![5, 4]),
            ("all", vec![5, 4]),
        ]
    );
}

/// An operator's `LIMITS` items, written with the SDK as the README's AWS CLI example writes
/// them, override the environment on DynamoDB Local: a user's own budget beats the default, a
/// tenant's `max_active_runs_per_user` and budget apply to its users, and `get_usage` shows the
/// limits that apply.
#[tokio::test]
async fn limit_overrides_in_the_table_beat_the_environment() {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    let server = ChatServer::start((0..4).map(|_| answer(20, 10)).collect()).await;
    let agent = agent(&server);
    let store = Arc::new(fresh_store("budget-override").await);
    store
        .client()
        .put_item()
        .table_name(store.table())
        .item("pk", S("USER#alice-01".into()))
        .item("sk", S("LIMITS".into()))
        .item("daily_token_budget", N("1000".into()))
        .item("max_active_runs", N("2".into()))
        .send()
        .await
        .unwrap();
    let mut config = test_config();
    config.daily_token_budget_per_user = Some(10);
    let h = Harness::on(config, store.clone()).with_agent("llm", Arc::new(agent));
    let conn = h.connect("alice-01").await;
    for id in ["o-1", "o-2"] {
        let frame = json!({"type": "start_agent", "agent": "llm", "request_id": id,
                           "payload": {"user_request": "hi"}});
        assert_eq!(
            h.send_json(&conn, frame).await,
            None,
            "the override lifts the default"
        );
    }
    let usage = h
        .send_json(&conn, json!({"type": "get_usage"}))
        .await
        .unwrap();
    assert_eq!(
        usage["payload"]["limits"],
        json!({
            "MAX_ACTIVE_RUNS_PER_USER": {"limit": 2, "used": 0},
            "DAILY_TOKEN_BUDGET_PER_USER": {"limit": 1000, "used": 60, "remaining": 940}
        })
    );
    let other = h.connect("bob-01").await;
    let frame = json!({"type": "start_agent", "agent": "llm", "request_id": "b-1",
                       "payload": {"user_request": "hi"}});
    assert_eq!(h.send_json(&other, frame).await, None);
    let refused = h
        .send_json(
            &other,
            json!({"type": "start_agent", "agent": "llm",
        "request_id": "b-2", "payload": {"user_request": "hi"}}),
        )
        .await;
    assert!(
        refused_by(&refused, "DAILY_TOKEN_BUDGET_PER_USER"),
        "{refused:?}"
    );
}

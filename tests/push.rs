//! Server push through a real `@connections` HTTP endpoint, gone clients, and the sweep, on
//! DynamoDB Local.

mod support;

use serde_json::{Value, json};
use std::sync::Arc;
use support::connections::ConnectionsEndpoint;
use support::dynamodb::*;
use support::*;
use wsexec::manager::Manager;
use wsexec::notify::apigw::{ApiGatewayNotifier, PUSH_ATTEMPTS};
use wsexec::notify::{Notifier, PushErrorKind, PushTarget};
use wsexec::state::ExecutionState;
use wsexec::store::Store;
use wsexec::store::dynamo::DynamoStore;
use wsexec::time::now_ms;

/// A manager on a fresh DynamoDB Local table pushing through a loopback `@connections` endpoint.
async fn setup() -> (Manager, Arc<DynamoStore>, ConnectionsEndpoint) {
    let endpoint = support::connections::start().await;
    let store = Arc::new(fresh_store("push").await);
    let mut cfg = test_config();
    cfg.connections_endpoint = Some(endpoint.url.clone());
    let notifier = Arc::new(ApiGatewayNotifier::new("us-east-1", credentials()));
    (Manager::new(cfg, store.clone(), notifier), store, endpoint)
}

async fn connect(mgr: &Manager, user: &str) -> String {
    let id = aws_id();
    let r = invoke_with(mgr, &connect_event(&id, &[("user_id", user)], &[])).await;
    assert_eq!(r["statusCode"], 200);
    id
}

/// Run events reach the client over HTTP, in order, each post signed as API Gateway checks.
#[tokio::test]
async fn events_arrive_in_order_over_http() {
    let (mgr, _store, ep) = setup().await;
    ep.verify_signatures(credentials());
    let conn = connect(&mgr, "alice-01").await;
    invoke_with(
        &mgr,
        &message_event(
            &conn,
            r#"{"type":"start_agent","request_id":"p1","payload":{"user_request":"hi"}}"#,
        ),
    )
    .await;
    assert_eq!(types(&ep.delivered(&conn)), FIVE_EVENTS);
    assert_eq!(ep.refused_signatures(), []);
    assert_eq!(ep.paths().len(), 5);
}

/// The notifier's posts are the SDK's `PostToConnection`: the same path for an id that needs
/// encoding (with a stage before it), and a SigV4 signature the check API Gateway makes
/// accepts, as it accepts the SDK's own (with and without a session token); a post signed with
/// another secret is refused by the same check.
#[tokio::test]
async fn posts_are_signed_and_addressed_as_the_sdk_does() {
    use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Region};
    use wsexec::local::signature::Refusal;
    let ep = support::connections::start().await;
    let endpoint = format!("{}/prod", ep.url);
    let id = "L0SM9cOFvHcCIhw=";
    let target = PushTarget {
        endpoint: &endpoint,
        connection_id: id,
    };
    let session =
        aws_credential_types::Credentials::new("AKIDS", "s3cret", Some("tok".into()), None, "t");
    for credentials in [credentials(), session] {
        ep.verify_signatures(credentials.clone());
        let sdk = aws_sdk_apigatewaymanagement::Client::from_conf(
            aws_sdk_apigatewaymanagement::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("eu-west-1"))
                .credentials_provider(credentials.clone())
                .endpoint_url(&endpoint)
                .http_client(wsexec::tls::https_client(false))
                .build(),
        );
        sdk.post_to_connection()
            .connection_id(id)
            .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(
                "{\"by\":\"sdk\"}",
            ))
            .send()
            .await
            .expect("the sdk's post");
        ApiGatewayNotifier::new("eu-west-1", credentials.clone())
            .push(target, r#"{"by":"wsexec"}"#)
            .await
            .expect("the notifier's post");
        assert_eq!(ep.refused_signatures(), [], "{credentials:?}");
    }
    let paths = ep.paths();
    assert_eq!(paths.len(), 4);
    assert!(
        paths
            .iter()
            .all(|p| p == "/prod/@connections/L0SM9cOFvHcCIhw%3D"),
        "{paths:?}"
    );
    assert_eq!(ep.delivered(id).len(), 4);

    let forged = aws_credential_types::Credentials::new("test", "not-the-secret", None, None, "t");
    ep.verify_signatures(credentials());
    ApiGatewayNotifier::new("eu-west-1", forged)
        .push(target, "{}")
        .await
        .expect("the loopback endpoint answers 200 and records the refusal");
    assert_eq!(
        ep.refused_signatures(),
        [(id.to_owned(), Refusal::BadSignature)]
    );
}

/// A 410 mid-run deletes the connection, stops pushing to it, and the run still completes.
#[tokio::test]
async fn gone_mid_run_removes_connection_and_run_completes() {
    let (mgr, store, ep) = setup().await;
    let conn = connect(&mgr, "alice-01").await;
    ep.script(&conn, &[200, 200, 410]);
    invoke_with(
        &mgr,
        &message_event(
            &conn,
            r#"{"type":"start_agent","request_id":"g1","payload":{"user_request":"hi"}}"#,
        ),
    )
    .await;
    assert_eq!(
        types(&ep.delivered(&conn)),
        ["agent_started", "agent_thinking"]
    );
    assert_eq!(ep.attempts(&conn), 3, "no push after the 410");
    assert_eq!(store.get_connection(&conn).await.unwrap(), None);
    let page = store
        .list_runs("alice-01".into(), None, 10, None)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].state, ExecutionState::Completed);
    assert_eq!(page.items[0].result.as_ref().unwrap()["reply"], "echo: hi");
    // A client that reconnects reads the result.
    let again = connect(&mgr, "alice-01").await;
    let reply = invoke_with(
        &mgr,
        &message_event(
            &again,
            &json!({"type":"get_execution","run_id":page.items[0].run_id}).to_string(),
        ),
    )
    .await;
    assert!(reply["body"].as_str().unwrap().contains("\"completed\""));
}

/// Every push failure AWS answers is classified, and none fails the run.
#[tokio::test]
async fn push_failures_are_classified_and_runs_still_finish() {
    let (mgr, store, ep) = setup().await;
    let notifier = ApiGatewayNotifier::new("us-east-1", credentials());
    for (status, kind, retryable) in [
        (410, PushErrorKind::Gone, false),
        (403, PushErrorKind::Forbidden, false),
        (429, PushErrorKind::Throttled, true),
        (413, PushErrorKind::PayloadTooLarge, false),
        (500, PushErrorKind::Unavailable, true),
    ] {
        let id = aws_id();
        // Throttling and 5xx are attempted again (bounded): every attempt fails here.
        ep.script(&id, &[status; PUSH_ATTEMPTS as usize]);
        let target = PushTarget {
            endpoint: &ep.url,
            connection_id: &id,
        };
        let e = notifier.push(target, "{}").await.unwrap_err();
        assert_eq!((e.kind(), e.is_retryable()), (kind, retryable), "{status}");
        let attempts = if retryable { PUSH_ATTEMPTS as usize } else { 1 };
        assert_eq!(ep.attempts(&id), attempts, "{status}: attempts");
        if status != 410 {
            let conn = connect(&mgr, "bob-02").await;
            let mut script = vec![200];
            script.extend([status; 20]);
            ep.script(&conn, &script);
            let body = json!({"type":"start_agent","request_id":format!("f{status}"),"payload":{"user_request":"x"}});
            invoke_with(&mgr, &message_event(&conn, &body.to_string())).await;
            assert_eq!(types(&ep.delivered(&conn)), ["agent_started"], "{status}");
            assert!(
                ep.attempts(&conn) >= 5,
                "{status}: every event was attempted"
            );
            assert!(
                store.get_connection(&conn).await.unwrap().is_some(),
                "{status}: only 410 removes"
            );
        }
    }
    let runs = store
        .list_runs("bob-02".into(), None, 10, None)
        .await
        .unwrap()
        .items;
    assert_eq!(runs.len(), 4);
    assert!(runs.iter().all(|r| r.state == ExecutionState::Completed));
    let refused = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let e = notifier
        .push(
            PushTarget {
                endpoint: &refused,
                connection_id: "C1=",
            },
            "{}",
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), PushErrorKind::Connection);
}

/// An agent whose tool returns 300 KB.
struct BigResult;

#[async_trait::async_trait]
impl wsexec::run::Executor for BigResult {
    async fn execute(
        &self,
        _input: wsexec::run::RunInput<'_>,
        sink: wsexec::run::RunSink,
    ) -> Result<Value, wsexec::run::AgentFailure> {
        sink.thinking("fetching a large document").await;
        sink.tool_executing("fetch", json!({})).await;
        let doc = json!({"document": "x".repeat(300_000)});
        sink.tool_completed("fetch", doc, 1).await;
        Ok(json!({"reply": "done"}))
    }
}

/// An event larger than 128 KiB is never sent whole: it arrives with its envelope and small
/// fields (`tool_name`, `execution_time_ms`), the oversized field replaced by a marker.
#[tokio::test]
async fn oversized_events_arrive_truncated() {
    let (mut mgr, _store, ep) = setup().await;
    mgr.agents_mut().insert("big", Arc::new(BigResult));
    let conn = connect(&mgr, "alice-01").await;
    let body = json!({"type":"start_agent","agent":"big","request_id":"big","payload":{"user_request":"get it"}});
    invoke_with(&mgr, &message_event(&conn, &body.to_string())).await;
    let got = ep.delivered(&conn);
    assert_eq!(types(&got), FIVE_EVENTS);
    let sizes: Vec<usize> = ep.book.lock().unwrap().delivered[&conn]
        .iter()
        .map(|m| m.len())
        .collect();
    assert!(
        sizes
            .iter()
            .all(|s| *s <= wsexec::limits::MAX_MESSAGE_BYTES),
        "{sizes:?}"
    );
    let completed = &got[3]["payload"];
    assert_eq!(completed["tool_name"], "fetch");
    assert_eq!(completed["execution_time_ms"], 1);
    assert_eq!(completed["result"]["truncated"], true);
    assert_eq!(got[3]["run_id"], got[0]["run_id"]);
    assert!(completed["result"]["original_bytes"].as_u64().unwrap() > 300_000);
    assert_eq!(got[4]["payload"]["result"]["reply"], "done");
}

/// A run whose process died is marked dead exactly once, by the sweep or by a read, and the
/// owner's other live connection hears `agent_death`.
#[tokio::test]
async fn killed_run_is_marked_dead_once_and_owner_told() {
    let (mgr, store, ep) = setup().await;
    let watcher = connect(&mgr, "alice-01").await;
    let old = now_ms() - 30_000;
    let mut stale = support::contract::run("alice-01", "run_killed", old);
    stale.deadline_at = now_ms() + 60_000;
    stale.endpoint = Some(ep.url.clone());
    store.create_run(&stale).await.unwrap();
    let mut other = stale.clone();
    other.run_id = "run_killed_2".into();
    store.create_run(&other).await.unwrap();

    let sweep = invoke_with(&mgr, &sample("scheduled-sweep.json")).await;
    assert_eq!(sweep["dead"], 2, "{sweep}");
    let again = invoke_with(&mgr, &sample("scheduled-sweep.json")).await;
    assert_eq!(again["examined"], 0);
    let got = invoke_with(
        &mgr,
        &message_event(
            &watcher,
            r#"{"type":"get_execution","run_id":"run_killed"}"#,
        ),
    )
    .await;
    assert!(got["body"].as_str().unwrap().contains(r#""state":"dead""#));
    let told = ep.delivered(&watcher);
    assert_eq!(types(&told), ["agent_death", "agent_death"]);
    let mut ids: Vec<_> = told
        .iter()
        .map(|m| m["run_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["run_killed", "run_killed_2"]);
    assert_eq!(told[0]["payload"]["cause"], "heartbeat_missed");
    let stored = store
        .get_run("alice-01".into(), "run_killed")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.state, stored.version), (ExecutionState::Dead, 2));
}

/// 1,000 stale runs are all ended across several sweeps, each within its bound, with no scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_ends_a_thousand_runs_in_bounded_invocations() {
    let (mgr, store, _ep) = setup().await;
    let old = now_ms() - 60_000;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut r =
                support::contract::run(&format!("user-{}", i % 25), &format!("run_{i:04}"), old);
            r.deadline_at = now_ms() + 600_000;
            store.create_run(&r).await.unwrap();
        });
        if tasks.len() >= 32 {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    let counter = store.requests();
    let bound = wsexec::limits::SWEEP_BATCH * wsexec::limits::ALIVE_SHARDS as usize;
    let (mut total, mut invocations) = (0, 0);
    loop {
        let before = counter.get();
        let report = invoke_with(&mgr, &sample("scheduled-sweep.json")).await;
        let examined = report["examined"].as_u64().unwrap() as usize;
        assert!(examined <= bound, "{report}");
        assert_eq!(report["errors"], 0);
        let sent = (counter.get() - before) as usize;
        assert!(
            !counter.operations().contains_key("Scan"),
            "a sweep never scans"
        );
        // Per invocation: one query per shard, one write per run, one connections query per owner.
        assert!(
            sent <= wsexec::limits::ALIVE_SHARDS as usize + examined + 25,
            "{sent} requests"
        );
        total += report["dead"].as_u64().unwrap() as usize;
        if examined == 0 {
            break;
        }
        invocations += 1;
        assert!(invocations < 10);
    }
    assert_eq!(total, 1000);
    assert!(invocations >= 3, "{invocations} invocations");
    let left = support::contract::all_due(store.as_ref(), now_ms() + 10_000_000).await;
    assert!(left.is_empty());
}

/// After a crash leaves connection records behind a refused and a silent endpoint, reads of the
/// owner's dead runs still answer within the notice budget, and the owner's reachable
/// connection hears each death exactly once.
#[tokio::test]
async fn reads_do_not_stall_behind_notices_to_unreachable_connections() {
    let (mgr, store, ep) = setup().await;
    let reachable = connect(&mgr, "alice-01").await;
    let (silent, _) = fault_endpoint(Fault::Silent).await;
    for (i, endpoint) in [
        refused_endpoint(),
        silent.clone(),
        refused_endpoint(),
        silent,
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = support::contract::conn(&format!("Cstale{i:08}="), "alice-01");
        c.endpoint = Some(endpoint);
        store.put_connection(&c).await.unwrap();
    }
    let old = now_ms() - 30_000;
    let mut run_ids = Vec::new();
    for i in 0..6 {
        let mut r = support::contract::run("alice-01", &format!("run_crashed_{i}"), old + i);
        r.deadline_at = now_ms() + 60_000;
        r.endpoint = Some(refused_endpoint());
        store.create_run(&r).await.unwrap();
        run_ids.push(r.run_id);
    }
    let started = std::time::Instant::now();
    let page = invoke_with(
        &mgr,
        &message_event(&reachable, r#"{"type":"list_executions"}"#),
    )
    .await;
    let took = started.elapsed();
    let page: Value = serde_json::from_str(page["body"].as_str().unwrap()).unwrap();
    let states: Vec<&str> = page["payload"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["dead"; 6]);
    // Without a budget the silent records alone held the reply for the SDK's whole timeout.
    assert!(
        took < std::time::Duration::from_secs(3),
        "list took {took:?}"
    );
    let started = std::time::Instant::now();
    let got = invoke_with(
        &mgr,
        &message_event(
            &reachable,
            &json!({"type": "get_execution", "run_id": run_ids[0]}).to_string(),
        ),
    )
    .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert!(got["body"].as_str().unwrap().contains(r#""state":"dead""#));
    let deaths: Vec<Value> = ep
        .delivered(&reachable)
        .into_iter()
        .filter(|e| e["type"] == "agent_death")
        .collect();
    let mut told: Vec<&str> = deaths
        .iter()
        .map(|e| e["run_id"].as_str().unwrap())
        .collect();
    told.sort_unstable();
    assert_eq!(told, run_ids, "each dead run is told once");
}

/// An agent that says when it begins, then answers at once.
struct Noted(Arc<tokio::sync::Notify>);

#[async_trait::async_trait]
impl wsexec::run::Executor for Noted {
    async fn execute(
        &self,
        _input: wsexec::run::RunInput<'_>,
        sink: wsexec::run::RunSink,
    ) -> Result<Value, wsexec::run::AgentFailure> {
        self.0.notify_one();
        sink.delta("first words").await;
        Ok(json!({"text": "first words"}))
    }
}

/// The agent begins (a model's request goes out) while `agent_started` is still on its way to
/// a slow `@connections`, not after it; what the agent reports still follows `agent_started`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_begins_while_agent_started_is_on_its_way() {
    let (mgr, _store, ep) = setup().await;
    let began = Arc::new(tokio::sync::Notify::new());
    let mgr = Arc::new(mgr.with_agent("noted", Arc::new(Noted(began.clone()))));
    let conn = connect(&mgr, "alice-01").await;
    ep.hold(&conn);
    let run = {
        let (mgr, conn) = (mgr.clone(), conn.clone());
        let start = r#"{"type":"start_agent","agent":"noted","request_id":"n1","payload":{"user_request":"hi"}}"#;
        tokio::spawn(async move { invoke_with(&mgr, &message_event(&conn, start)).await })
    };
    // Under the push's own 3 s limit: a driver waiting for the held push could begin its agent
    // only once the push gave up.
    let wait = std::time::Duration::from_secs(2);
    let begun = tokio::time::timeout(wait, began.notified()).await;
    assert!(begun.is_ok(), "the agent waited for agent_started's push");
    assert!(
        ep.delivered(&conn).is_empty(),
        "agent_started is still held"
    );
    ep.release();
    run.await.unwrap();
    let delivered = ep.delivered(&conn);
    let expected = ["agent_started", "agent_delta", "agent_completed"];
    assert_eq!(types(&delivered), expected);
    assert_eq!(delta_text(&delivered), "first words");
}

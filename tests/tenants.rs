//! Tenants kept apart through the release binary under the Runtime API harness, on DynamoDB
//! Local: two tenants' users who share an id (JWTs with a `tenant` / `tenant_id` claim) cannot
//! read, list, resume or cancel each other's runs, and a `request_id` one of them used is no
//! retry of the other's.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::dynamodb::*;
use support::jwt::token;
use support::runtime_api::Runtime;
use support::*;

const LIMIT: Duration = Duration::from_secs(20);

/// The binary under test: `WSEXEC_BIN` (the release build `tools/test` makes) or Cargo's build.
fn binary() -> String {
    std::env::var("WSEXEC_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_wsexec").to_owned())
}

async fn spawn(table: &str, connections: &str) -> Runtime {
    let env: Vec<(String, String)> = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint().as_str()),
        ("CONNECTIONS_ENDPOINT", connections),
        ("JWT_SECRET", SAMPLE_SECRET),
        ("TABLE_NAME", table),
        ("RUST_LOG", "warn"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut rt = Runtime::start().await;
    rt.spawn(&binary(), &[], &env, 128);
    rt.wait_init(LIMIT).await;
    rt
}

async fn call(rt: &Runtime, event: &Value) -> Value {
    rt.invoke(&event.to_string(), LIMIT).await.0.json()
}

/// Connects `carol` with a JWT whose claims add `tenant` (each claim name the README lists).
async fn connect(rt: &Runtime, tenant: Option<(&str, &str)>) -> String {
    let exp = wsexec::time::now_ms() / 1000 + 600;
    let mut claims = json!({"sub": "carol", "exp": exp});
    if let Some((claim, t)) = tenant {
        claims[claim] = json!(t);
    }
    let jwt = token(claims, SAMPLE_SECRET);
    let conn = aws_id();
    let r = call(rt, &connect_event(&conn, &[("token", jwt.as_str())], &[])).await;
    assert_eq!(r["statusCode"], 200, "{r}");
    conn
}

/// Sends `frame` on `conn`; the direct reply, if any.
async fn send(rt: &Runtime, conn: &str, frame: Value) -> Option<Value> {
    let r = call(rt, &message_event(conn, &frame.to_string())).await;
    r["body"]
        .as_str()
        .map(|b| serde_json::from_str(b).expect("a JSON reply"))
}

/// Waits (bounded) for `conn`'s first pushed event of type `kind`.
async fn pushed(ep: &connections::ConnectionsEndpoint, conn: &str, kind: &str) -> Value {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        if let Some(e) = ep.delivered(conn).into_iter().find(|e| e["type"] == kind) {
            return e;
        }
        assert!(std::time::Instant::now() < deadline, "no {kind} for {conn}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn code(reply: &Option<Value>) -> &str {
    reply
        .as_ref()
        .and_then(|r| r["payload"]["code"].as_str())
        .unwrap_or("")
}

/// `carol` of `acme`, `carol` of `globex` and `carol` of no tenant share nothing: neither of the
/// others reads, lists, resumes or cancels acme's run (each answer is `not_found`, exactly as
/// for a run that does not exist), the same `request_id` starts globex's own run instead of
/// replaying acme's, and acme's run ends `completed`, untouched.
#[tokio::test]
async fn two_tenants_whose_users_share_an_id_share_nothing() {
    let store = fresh_store("tenants").await;
    let ep = connections::start().await;
    let rt = spawn(store.table(), &ep.url).await;
    let acme = connect(&rt, Some(("tenant", "acme"))).await;
    let globex = connect(&rt, Some(("tenant_id", "globex"))).await;
    let bare = connect(&rt, None).await;

    let start = start_frame("same-request", "acme's secret", Some(5_000));
    assert_eq!(send(&rt, &acme, start.clone()).await, None);
    let run_id = pushed(&ep, &acme, "agent_started").await["run_id"]
        .as_str()
        .unwrap()
        .to_owned();

    for other in [&globex, &bare] {
        for frame in [
            json!({"type": "get_execution", "run_id": run_id}),
            json!({"type": "resume", "run_id": run_id}),
            json!({"type": "cancel_agent", "run_id": run_id}),
        ] {
            let reply = send(&rt, other, frame.clone()).await;
            assert_eq!(code(&reply), "not_found", "{frame} from {other}: {reply:?}");
        }
        let list = send(&rt, other, json!({"type": "list_executions"})).await;
        let items = list.as_ref().unwrap()["payload"]["items"].clone();
        assert_eq!(items, json!([]), "{other} lists nothing of acme's");
    }

    // The same request id in globex is globex's own run, not a retry of acme's.
    let start = start_frame("same-request", "globex's question", None);
    assert_eq!(
        send(&rt, &globex, start).await,
        None,
        "a new run, not a replay"
    );
    let done = pushed(&ep, &globex, "agent_completed").await;
    assert_ne!(done["run_id"], json!(run_id));
    assert!(!done.to_string().contains("acme's secret"));

    let finished = pushed(&ep, &acme, "agent_completed").await;
    assert_eq!(finished["run_id"], json!(run_id));
    let own = send(
        &rt,
        &acme,
        json!({"type": "get_execution", "run_id": run_id}),
    )
    .await;
    assert_eq!(own.as_ref().unwrap()["payload"]["state"], "completed");
    let list = send(&rt, &acme, json!({"type": "list_executions"})).await;
    let items = list.as_ref().unwrap()["payload"]["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(items, 1, "acme lists its own run only");
    for other in [&globex, &bare] {
        let pushed_to = ep.delivered(other);
        assert!(
            pushed_to.iter().all(|e| e["run_id"] != json!(run_id)),
            "nothing of acme's run reaches {other}"
        );
    }
}

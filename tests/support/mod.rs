//! Shared test support: a harness driving the real handler with AWS-shaped events.
#![allow(dead_code)]

pub mod connections;
pub mod contract;
pub mod durable;
pub mod dynamodb;
pub mod http;
pub mod jwt;
pub mod llm_server;
pub mod logs;
pub mod proxy;
pub mod runtime_api;
pub mod streamer;

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wsexec::config::Config;
use wsexec::context::Mode;
use wsexec::handler::handle;
use wsexec::manager::Manager;
use wsexec::notify::memory::MemoryNotifier;
use wsexec::store::{ConnectionRecord, RunRecord, Store};

/// The secret the sample JWTs in `events/` are signed with.
pub const SAMPLE_SECRET: &str = "wsexec-sample-secret";

/// A sample event from `events/`.
pub fn sample(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh id in API Gateway's connection-id shape.
pub fn aws_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("T{:014}=", n + std::process::id() as u64 * 1_000_000)
}

/// A CONNECT event for `connection_id` with the given query parameters and headers.
pub fn connect_event(
    connection_id: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Value {
    let mut e = sample("connect-no-credentials.json");
    e["requestContext"]["connectionId"] = json!(connection_id);
    if !query.is_empty() {
        let q: serde_json::Map<String, Value> = query
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let mq: serde_json::Map<String, Value> = query
            .iter()
            .map(|(k, v)| (k.to_string(), json!([v])))
            .collect();
        e["queryStringParameters"] = Value::Object(q);
        e["multiValueQueryStringParameters"] = Value::Object(mq);
    }
    for (k, v) in headers {
        e["headers"][*k] = json!(v);
        e["multiValueHeaders"][*k] = json!([v]);
    }
    e
}

/// A CONNECT event authorised by an API Gateway authorizer as `principal`.
pub fn authorizer_connect_event(connection_id: &str, principal: &str) -> Value {
    let mut e = connect_event(connection_id, &[], &[]);
    e["requestContext"]["authorizer"] =
        json!({ "principalId": principal, "integrationLatency": 3 });
    e
}

/// A MESSAGE event carrying `body` on `connection_id`, with a fresh `messageId`.
pub fn message_event(connection_id: &str, body: &str) -> Value {
    let mut e = sample("message-ping.json");
    e["requestContext"]["connectionId"] = json!(connection_id);
    e["requestContext"]["messageId"] = json!(aws_id());
    e["body"] = json!(body);
    e
}

/// A DISCONNECT event for `connection_id`.
pub fn disconnect_event(connection_id: &str) -> Value {
    let mut e = sample("disconnect.json");
    e["requestContext"]["connectionId"] = json!(connection_id);
    e
}

/// A `start_agent` frame; `delay_ms` is the `echo` agent's step delay.
pub fn start_frame(request_id: &str, text: &str, delay_ms: Option<u64>) -> Value {
    let mut payload = json!({ "user_request": text });
    if let Some(d) = delay_ms {
        payload["delay_ms"] = json!(d);
    }
    json!({ "type": "start_agent", "request_id": request_id, "payload": payload })
}

/// Runs one event through `mgr`'s handler with no Lambda deadline; the output as JSON.
pub async fn invoke_with(mgr: &Manager, event: &Value) -> Value {
    match handle(&event.to_string(), Ok(mgr), None).await {
        Ok(out) => serde_json::to_value(out).expect("output is JSON"),
        Err(e) => panic!("invocation failed: {e}"),
    }
}

/// Test configuration: dev auth on, test mode, the sample JWT secret.
pub fn test_config() -> Config {
    let mut c = Config::from_lookup(|k| match k {
        "JWT_SECRET" => Some(SAMPLE_SECRET.to_owned()),
        "WSEXEC_MODE" => Some("test".to_owned()),
        _ => None,
    })
    .expect("test config");
    c.dev_auth = true;
    c.mode = Mode::Test;
    c
}

/// A manager over `store` with an in-memory notifier, and the notifier.
pub struct Harness {
    pub mgr: Manager,
    pub notifier: Arc<MemoryNotifier>,
}

impl Harness {
    /// A harness on a fresh in-memory store.
    pub fn memory() -> Harness {
        Harness::with_config(test_config())
    }

    /// A harness on a fresh in-memory store with `config`.
    pub fn with_config(config: Config) -> Harness {
        Harness::on(config, Arc::new(wsexec::store::memory::MemoryStore::new()))
    }

    /// A harness on `store`.
    pub fn on(config: Config, store: Arc<dyn Store>) -> Harness {
        let notifier = Arc::new(MemoryNotifier::new());
        Harness {
            mgr: Manager::new(config, store, notifier.clone()),
            notifier,
        }
    }

    /// The same harness with `agent` registered as `name` (the public registration API).
    pub fn with_agent(self, name: &str, agent: Arc<dyn wsexec::run::Executor>) -> Harness {
        let Harness { mgr, notifier } = self;
        Harness {
            mgr: mgr.with_agent(name, agent),
            notifier,
        }
    }

    /// `alice-01`'s run `run_id` as stored (the user every run test connects as).
    pub async fn alice_run(&self, run_id: &str) -> RunRecord {
        let store = self.mgr.store().expect("store");
        store
            .get_run("alice-01".into(), run_id)
            .await
            .expect("get_run")
            .expect("the run is stored")
    }

    /// Runs one event through the handler; returns the WebSocket response as JSON.
    pub async fn invoke(&self, event: &Value) -> Value {
        invoke_with(&self.mgr, event).await
    }

    /// Connects `user` (dev auth) on a fresh connection id; returns it. Asserts 200.
    pub async fn connect(&self, user: &str) -> String {
        let id = aws_id();
        let resp = self
            .invoke(&connect_event(&id, &[("user_id", user)], &[]))
            .await;
        assert_eq!(resp["statusCode"], 200, "connect {user}: {resp}");
        id
    }

    /// Sends a message; returns the direct reply frame (parsed), if any.
    pub async fn send(&self, connection_id: &str, body: &str) -> Option<Value> {
        let resp = self.invoke(&message_event(connection_id, body)).await;
        assert_eq!(resp["statusCode"], 200, "{resp}");
        resp.get("body")
            .and_then(|b| b.as_str())
            .map(|b| serde_json::from_str(b).expect("reply is JSON"))
    }

    /// Sends a JSON value as a message.
    pub async fn send_json(&self, connection_id: &str, body: Value) -> Option<Value> {
        self.send(connection_id, &body.to_string()).await
    }

    /// Every message pushed to `connection_id` so far, parsed.
    pub fn pushed(&self, connection_id: &str) -> Vec<Value> {
        self.notifier
            .messages(connection_id)
            .iter()
            .map(|m| serde_json::from_str(m).expect("pushed JSON"))
            .collect()
    }
}

/// Every `agent_delta` text of `frames`, joined: what a client shows of the answer.
pub fn delta_text(frames: &[Value]) -> String {
    frames
        .iter()
        .filter(|f| f["type"] == "agent_delta")
        .map(|f| f["payload"]["text"].as_str().unwrap_or_default())
        .collect()
}

/// The `type` of each frame.
pub fn types(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// The five critical events of a successful run, in order.
pub const FIVE_EVENTS: [&str; 5] = [
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
];

/// What a store holds for some users and connections: every run of each user (all pages) and
/// each user's connections, and each named connection's record.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub runs: Vec<RunRecord>,
    pub user_connections: Vec<Vec<ConnectionRecord>>,
    pub connections: Vec<Option<ConnectionRecord>>,
}

/// Reads a [`Snapshot`] of `users` and `connections` from `store`.
pub async fn snapshot(store: &dyn Store, users: &[&str], connections: &[&str]) -> Snapshot {
    let mut runs = Vec::new();
    let mut user_connections = Vec::new();
    for user in users {
        let mut cursor = None;
        loop {
            let page = store
                .list_runs(
                    (*user).into(),
                    None,
                    wsexec::limits::MAX_PAGE_SIZE,
                    cursor.as_ref(),
                )
                .await
                .unwrap();
            runs.extend(page.items);
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        user_connections.push(store.user_connections((*user).into()).await.unwrap());
    }
    let mut conns = Vec::new();
    for c in connections {
        conns.push(store.get_connection(c).await.unwrap());
    }
    Snapshot {
        runs,
        user_connections,
        connections: conns,
    }
}

/// A reply with its `timestamp` removed, to compare two replies whole.
pub fn untimed(mut frame: Value) -> Value {
    if let Some(o) = frame.as_object_mut() {
        o.remove("timestamp");
    }
    frame
}

/// The environment of the `wsexec` binary under the Runtime API harness with the `llm` agent on
/// the OpenAI-compatible `model`: DynamoDB Local's `table`, the `@connections` endpoint
/// `connections`, the harness's own Lambda API `lambda` (for async dispatch), then `extra`.
pub fn llm_binary_env(
    table: &str,
    connections: &str,
    lambda: &str,
    model: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let dynamodb = dynamodb::endpoint();
    let base = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.as_str()),
        ("AWS_ENDPOINT_URL_LAMBDA", lambda),
        ("CONNECTIONS_ENDPOINT", connections),
        ("JWT_SECRET", SAMPLE_SECRET),
        ("TABLE_NAME", table),
        ("RUST_LOG", "warn"),
        ("LLM_PROVIDER", "openai"),
        ("LLM_BASE_URL", model),
    ];
    base.iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

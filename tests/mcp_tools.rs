//! MCP servers as the `llm` agent's tool source, against a real MCP server (the official Python
//! SDK) and a scripted Chat Completions endpoint: the tools the model is offered, the calls the
//! server receives, the results the model gets back, concurrency within a round, and every wire
//! fault ending as an error result for the model (`mcp_faults.rs`).

#[path = "support/http.rs"]
mod http;
#[path = "support/mcp.rs"]
mod mcp;
#[path = "support/mcp_agent.rs"]
mod mcp_agent;
#[path = "support/sse.rs"]
mod sse;

use mcp::{API_KEY, API_KEY_HEADER, McpServer, servers};
use mcp_agent::{agent, calls, offered, tool_results};
use serde_json::{Value, json};
use sse::{ChatServer, Event, Recorder, answer};
use std::time::{Duration, Instant};

/// The model is offered `{server}__{tool}` with the server's description and schema next to
/// the built-ins; the server receives the model's arguments with the configured header; the
/// model gets the text and structured content back; the client sees both events.
#[tokio::test(flavor = "current_thread")]
async fn a_tool_is_offered_called_and_answered() {
    let server = McpServer::start();
    let chat = ChatServer::start(vec![
        calls(&[("c1", "orders__lookup_order", json!({"order_id": "A-17"}))]),
        answer(&["Order A-17 ", "has shipped."]),
    ])
    .await;
    let agent = agent(&chat.url, &servers(&[server.entry("orders", json!({}))]));
    let rec = Recorder::default();
    let result = agent.run("where is A-17?", &[], &rec).await.unwrap();
    assert_eq!(result["text"], "Order A-17 has shipped.");

    let requests = chat.received();
    assert_eq!(requests.len(), 2);
    let f = offered(&requests[0].body, "orders__lookup_order");
    assert_eq!(
        f["description"],
        "Looks up an order by its id and returns its status and total."
    );
    assert_eq!(f["parameters"]["type"], "object");
    assert_eq!(f["parameters"]["properties"]["order_id"]["type"], "string");
    assert_eq!(f["parameters"]["required"], json!(["order_id"]));
    offered(&requests[0].body, "calculator");

    let received = server.tool_calls().await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["tool"], "lookup_order");
    assert_eq!(received[0]["arguments"], json!({"order_id": "A-17"}));
    assert_eq!(
        received[0]["headers"][API_KEY_HEADER.to_ascii_lowercase()],
        API_KEY
    );

    let results = tool_results(&requests[1].body);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, "c1");
    let expected = json!({"order_id": "A-17", "status": "shipped", "total": 42.5});
    assert_eq!(results[0].1["structured_content"], expected);
    assert!(results[0].1["text"].as_str().unwrap().contains("shipped"));

    let steps = rec.steps();
    assert_eq!(
        steps[0],
        Event::Executing("orders__lookup_order".into(), json!({"order_id": "A-17"}))
    );
    match &steps[1] {
        Event::Completed(name, v) => {
            assert_eq!(name, "orders__lookup_order");
            assert_eq!(v["structured_content"], expected);
        }
        other => panic!("{other:?}"),
    }
}

/// Three calls in one round run at the same time (three 1 s sleeps end well before 3 s), each
/// with its own events, and their results go back in the order the model asked for them.
#[tokio::test(flavor = "current_thread")]
async fn calls_of_one_round_run_concurrently_in_model_order() {
    let server = McpServer::start();
    let chat = ChatServer::start(vec![
        calls(&[
            ("a", "t__sleep", json!({"seconds": 1.0})),
            ("b", "t__sleep", json!({"seconds": 0.2})),
            ("c", "calculator", json!({"expression": "6*7"})),
            ("d", "t__sleep", json!({"seconds": 0.6})),
        ]),
        answer(&["done"]),
    ])
    .await;
    let agent = agent(&chat.url, &servers(&[server.entry("t", json!({}))]));
    let rec = Recorder::default();
    let started = Instant::now();
    agent.run("sleep three times", &[], &rec).await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(2500),
        "took {elapsed:?}: calls ran one after another"
    );
    let results = tool_results(&chat.received()[1].body);
    let ids: Vec<&str> = results.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    assert_eq!(results[0].1["text"], "slept 1.0");
    assert_eq!(results[1].1["text"], "slept 0.2");
    assert_eq!(results[2].1["result"], 42.0);
    let steps = rec.steps();
    let executing = steps
        .iter()
        .filter(|e| matches!(e, Event::Executing(..)))
        .count();
    let completed: Vec<&Value> = steps
        .iter()
        .filter_map(|e| match e {
            Event::Completed(_, v) => Some(v),
            _ => None,
        })
        .collect();
    assert_eq!((executing, completed.len()), (4, 4));
    // Completions arrive as calls finish: the 1 s sleep is the last one.
    assert_eq!(completed[3]["text"], "slept 1.0");
}

/// An `isError` result, an image part and an oversized text come back as an error result, a
/// note of what was left out, and a cut, marked text.
#[tokio::test(flavor = "current_thread")]
async fn error_binary_and_oversized_results() {
    let server = McpServer::start();
    let chat = ChatServer::start(vec![
        calls(&[
            ("e", "t__broken", json!({})),
            ("p", "t__picture", json!({})),
            ("h", "t__huge", json!({})),
        ]),
        answer(&["ok"]),
    ])
    .await;
    let agent = agent(&chat.url, &servers(&[server.entry("t", json!({}))]));
    agent.run("go", &[], &Recorder::default()).await.unwrap();
    let results = tool_results(&chat.received()[1].body);
    assert!(
        results[0].1["error"]
            .as_str()
            .unwrap()
            .contains("the warehouse database is offline"),
        "{:?}",
        results[0]
    );
    assert_eq!(results[1].1["text"], "a one-pixel picture");
    assert_eq!(results[1].1["omitted"], "not shown: image (image/png)");
    assert_eq!(results[2].1["truncated"], true);
    let cut = results[2].1["text"].as_str().unwrap();
    assert!(cut.len() < 16 * 1024 && cut.starts_with("0123456789"));
}

/// A server that stays down at discovery is left out of the run: the model gets the other
/// tools and the run completes; the next run asks it again.
#[tokio::test(flavor = "current_thread")]
async fn a_server_down_at_discovery_is_left_out_and_retried() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let chat = ChatServer::start(vec![answer(&["no tools"]), answer(&["tools now"])]).await;
    let entry = json!({"name": "late", "url": format!("http://127.0.0.1:{port}/mcp")});
    let agent = agent(&chat.url, &servers(&[entry]));
    agent.run("one", &[], &Recorder::default()).await.unwrap();
    let first: Vec<Value> = chat.received()[0].body["tools"].as_array().unwrap().clone();
    assert_eq!(first.len(), 1, "only the built-in: {first:?}");
    let _server = McpServer::start_on(port);
    agent.run("two", &[], &Recorder::default()).await.unwrap();
    offered(&chat.received()[1].body, "late__lookup_order");
}

/// A graceful shutdown ends the session it kept: the server receives `DELETE` with the
/// session's id.
#[tokio::test(flavor = "current_thread")]
async fn shutdown_deletes_the_session() {
    let server = McpServer::start();
    let chat = ChatServer::start(vec![answer(&["hi"])]).await;
    let agent = agent(&chat.url, &servers(&[server.entry("t", json!({}))]));
    agent.run("hello", &[], &Recorder::default()).await.unwrap();
    agent.shutdown().await;
    let calls = server.calls().await;
    let session = calls
        .iter()
        .find_map(|c| c["headers"]["mcp-session-id"].as_str())
        .expect("requests in a session");
    let delete = calls
        .iter()
        .find(|c| c["http"] == "DELETE")
        .expect("a DELETE");
    assert_eq!(delete["headers"]["mcp-session-id"], session);
    assert_eq!(
        delete["headers"][API_KEY_HEADER.to_ascii_lowercase()],
        API_KEY
    );
}

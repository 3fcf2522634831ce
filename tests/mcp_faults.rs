//! Wire faults of a real MCP server (the official Python SDK) as the `llm` agent meets them:
//! an HTTP 500, garbage, an expired session, a slow call, a server gone at call time and one
//! refused at discovery all end as error results the model answers from, and no log line
//! carries the configured header value or the call's arguments. One test per binary: it
//! captures logs through a thread-local subscriber.

#[path = "support/http.rs"]
mod http;
#[path = "support/logs.rs"]
mod logs;
#[path = "support/mcp.rs"]
mod mcp;
#[path = "support/mcp_agent.rs"]
mod mcp_agent;
#[path = "support/sse.rs"]
mod sse;

use mcp::{API_KEY, API_KEY_HEADER, McpServer, servers};
use mcp_agent::{agent, calls, tool_results};
use serde_json::json;
use sse::{ChatServer, Recorder, answer};
use wsexec::llm::LlmAgent;

/// The error the first tool result of request `round` carried.
async fn error_of(_agent: &LlmAgent, chat: &ChatServer, round: usize) -> String {
    let results = tool_results(&chat.received()[round].body);
    results[0].1["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Every fault on the wire (500, garbage, an expired session, a slow call, a server gone at
/// call time, one refused at discovery) ends as an error result the model answers from: the
/// run completes, an expired session is re-initialised and only a read-only call is repeated,
/// and no log line carries the header value.
#[tokio::test(flavor = "current_thread")]
async fn wire_faults_are_tool_errors_for_the_model() {
    let (logs, _guard) = logs::Logs::capture();
    let mut server = McpServer::start();
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let entries = [
        server.entry("t", json!({"timeout_ms": 700})),
        json!({"name": "gone", "url": format!("http://127.0.0.1:{refused}/mcp"),
               "headers": {API_KEY_HEADER: API_KEY}}),
    ];
    let lookup = || calls(&[("c", "t__lookup_order", json!({"order_id": "B-2"}))]);
    let place = || calls(&[("c", "t__place_order", json!({"item": "tea"}))]);
    let chat = ChatServer::start(vec![
        lookup(),
        answer(&["sorry"]),
        lookup(),
        answer(&["sorry"]),
        lookup(),
        answer(&["found it"]),
        place(),
        answer(&["not sure"]),
        calls(&[("c", "t__sleep", json!({"seconds": 3.0}))]),
        answer(&["too slow"]),
        lookup(),
        answer(&["down"]),
    ])
    .await;
    let agent = agent(&chat.url, &servers(&entries));
    let run = |text: &'static str| {
        let agent = &agent;
        async move {
            let rec = Recorder::default();
            let r = agent.run(text, &[], &rec).await.expect("the run completes");
            assert!(r["text"].is_string());
        }
    };

    server.fault("500", 1).await;
    run("500").await;
    assert!(error_of(&agent, &chat, 1).await.starts_with("mcp_http_5xx"));
    let names: Vec<String> = chat.received()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with("gone__")), "{names:?}");

    server.fault("garbage", 1).await;
    run("garbage").await;
    assert!(
        error_of(&agent, &chat, 3)
            .await
            .starts_with("mcp_malformed")
    );

    // Read-only: the session is re-initialised and the call sent again.
    server.fault("expire", 1).await;
    let inits_before = init_count(&server).await;
    run("expire").await;
    let results = tool_results(&chat.received()[5].body);
    assert_eq!(results[0].1["structured_content"]["status"], "shipped");
    assert_eq!(init_count(&server).await, inits_before + 1);

    // Not idempotent: a fresh session, but the call is not repeated.
    server.fault("expire", 1).await;
    let before = server.tool_calls().await.len();
    run("place").await;
    assert!(
        error_of(&agent, &chat, 7)
            .await
            .starts_with("mcp_session_expired")
    );
    assert_eq!(server.tool_calls().await.len(), before + 1);

    run("slow").await;
    assert!(error_of(&agent, &chat, 9).await.starts_with("mcp_timeout"));

    server.kill();
    run("down").await;
    let err = error_of(&agent, &chat, 11).await;
    assert!(
        err.starts_with("mcp_refused") || err.starts_with("mcp_connection"),
        "{err}"
    );

    let lines = logs.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r#""server":"gone""#) && l.contains("mcp_refused"))
    );
    for code in ["mcp_http_5xx", "mcp_malformed", "mcp_timeout"] {
        assert!(lines.iter().any(|l| l.contains(code)), "no {code} line");
    }
    for l in &lines {
        assert!(!l.contains(API_KEY), "secret logged: {l}");
        assert!(
            !l.contains("B-2") && !l.contains("tea"),
            "arguments logged: {l}"
        );
    }
}

async fn init_count(server: &McpServer) -> usize {
    server
        .calls()
        .await
        .iter()
        .filter(|c| c["method"] == "initialize")
        .count()
}

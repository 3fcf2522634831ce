//! The `llm` agent on Bedrock `ConverseStream` against a loopback endpoint that frames its
//! answers with AWS's event-stream encoding (the SDK's own encoder): text deltas, a tool-use
//! round, usage from the metadata event, throttling and other exceptions before and after
//! text, and an MCP server's tools (the official Python SDK's server) as `toolSpec`s.

#[path = "support/http.rs"]
mod http;
#[path = "support/mcp.rs"]
mod mcp;
#[path = "support/sse.rs"]
mod sse;

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use serde_json::{Value, json};
use sse::{ChatServer, Event, Recorder, Reply, Step};
use std::collections::HashMap;
use wsexec::llm::{LlmAgent, LlmErrorKind};

const MODEL: &str = "anthropic.claude-test-v1:0";
const EVENTSTREAM: &str = "application/vnd.amazon.eventstream";

/// One event frame of type `kind` carrying `payload`.
fn frame(kind: &str, payload: Value) -> Vec<u8> {
    let msg = Message::new(payload.to_string().into_bytes())
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ))
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(kind.to_owned().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ));
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&msg, &mut out).unwrap();
    out
}

/// One exception frame (`throttlingException`, `internalServerException`, ...).
fn exception(kind: &str) -> Vec<u8> {
    let msg = Message::new(json!({"message": "scripted"}).to_string().into_bytes())
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("exception".into()),
        ))
        .add_header(Header::new(
            ":exception-type",
            HeaderValue::String(kind.to_owned().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ));
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&msg, &mut out).unwrap();
    out
}

fn delta(index: i32, text: &str) -> Vec<u8> {
    frame(
        "contentBlockDelta",
        json!({"contentBlockIndex": index, "delta": {"text": text}}),
    )
}

fn metadata(input: i32, output: i32) -> Vec<u8> {
    frame(
        "metadata",
        json!({"usage": {"inputTokens": input, "outputTokens": output, "totalTokens": input + output},
               "metrics": {"latencyMs": 5}}),
    )
}

/// A streamed text answer with every framing event around it.
fn answer(pieces: &[&str]) -> Reply {
    let mut frames = vec![frame("messageStart", json!({"role": "assistant"}))];
    frames.extend(pieces.iter().map(|p| delta(0, p)));
    frames.push(frame("contentBlockStop", json!({"contentBlockIndex": 0})));
    frames.push(frame("messageStop", json!({"stopReason": "end_turn"})));
    frames.push(metadata(12, pieces.len() as i32));
    // Frames split across HTTP chunks, as a network would deliver them.
    let bytes = frames.concat();
    Reply::StreamAs(
        EVENTSTREAM,
        bytes.chunks(37).map(|c| Step::Send(c.to_vec())).collect(),
    )
}

fn frames(frames: Vec<Vec<u8>>) -> Reply {
    Reply::StreamAs(EVENTSTREAM, frames.into_iter().map(Step::Send).collect())
}

fn error(status: u16, code: &str) -> Reply {
    Reply::Status {
        status,
        headers: vec![(
            "x-amzn-errortype".into(),
            format!("{code}:http://internal.amazon.com/"),
        )],
        body: json!({"message": "scripted"}).to_string(),
    }
}

fn agent(server: &ChatServer) -> LlmAgent {
    agent_with(server, &[])
}

/// The Bedrock agent on `server`, with `extra` settings on top.
fn agent_with(server: &ChatServer, extra: &[(&'static str, String)]) -> LlmAgent {
    let endpoint = server.url.trim_end_matches("/v1").to_owned();
    let mut env: HashMap<&str, String> = [
        ("LLM_PROVIDER", "bedrock".to_owned()),
        ("LLM_MODEL", MODEL.to_owned()),
        ("LLM_SYSTEM_PROMPT", "Be brief.".to_owned()),
        ("LLM_MAX_TOKENS", "300".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret".to_owned()),
        ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", endpoint),
    ]
    .into_iter()
    .collect();
    env.extend(extra.iter().cloned());
    LlmAgent::from_lookup(|k| env.get(k).cloned())
        .unwrap()
        .unwrap()
}

/// Text deltas stream (long enough to pass the thinking hold), join to the result, and the
/// metadata event's usage is reported; the request is ConverseStream for the model.
#[tokio::test]
async fn streams_text_with_usage() {
    let pieces: Vec<String> = (0..60).map(|i| format!("token{i} ")).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let server = ChatServer::start(vec![answer(&refs)]).await;
    let rec = Recorder::default();
    let result = agent(&server).run("hello", &[], &rec).await.unwrap();
    assert!(rec.deltas() > 5);
    assert_eq!(rec.text(), pieces.concat());
    assert_eq!(
        result,
        json!({"text": pieces.concat(), "model": MODEL, "usage": {"input_tokens": 12, "output_tokens": 60}})
    );
    // Reported as the round ends, so the run records it whatever ends the run later.
    assert_eq!(*rec.usage.lock().unwrap(), vec![(12, 60)]);
    let req = &server.received()[0];
    assert_eq!(
        req.path,
        format!("/model/{}/converse-stream", MODEL.replace(':', "%3A"))
    );
    assert!(
        req.head
            .to_ascii_lowercase()
            .contains("authorization: aws4-hmac-sha256")
    );
    assert_eq!(
        req.body["messages"][0],
        json!({"role": "user", "content": [{"text": "hello"}]})
    );
    assert_eq!(req.body["system"], json!([{"text": "Be brief."}]));
    assert_eq!(req.body["inferenceConfig"]["maxTokens"], 300);
    assert_eq!(
        req.body["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "calculator"
    );
}

/// A toolUse block (input over several deltas) after some text: the text is thinking, the tool
/// runs with its events, and the next request carries the toolUse and its toolResult.
#[tokio::test]
async fn tool_use_round() {
    let round1 = frames(vec![
        frame("messageStart", json!({"role": "assistant"})),
        delta(0, "Let me check."),
        frame("contentBlockStop", json!({"contentBlockIndex": 0})),
        frame(
            "contentBlockStart",
            json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tu-1", "name": "calculator"}}}),
        ),
        frame(
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"expression\":"}}}),
        ),
        frame(
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": " \"6*7\"}"}}}),
        ),
        frame("contentBlockStop", json!({"contentBlockIndex": 1})),
        frame("messageStop", json!({"stopReason": "tool_use"})),
        metadata(20, 9),
    ]);
    let server = ChatServer::start(vec![round1, answer(&["42."])]).await;
    let rec = Recorder::default();
    let result = agent(&server).run("6*7?", &[], &rec).await.unwrap();
    assert_eq!(result["text"], "42.");
    assert_eq!(
        result["usage"],
        json!({"input_tokens": 32, "output_tokens": 10})
    );
    assert_eq!(
        rec.steps(),
        vec![
            Event::Thinking("Let me check.".into()),
            Event::Executing("calculator".into(), json!({"expression": "6*7"})),
            Event::Completed(
                "calculator".into(),
                json!({"expression": "6*7", "result": 42.0})
            ),
        ]
    );
    let m = &server.received()[1].body["messages"];
    assert_eq!(m[1]["role"], "assistant");
    assert_eq!(m[1]["content"][0], json!({"text": "Let me check."}));
    assert_eq!(
        m[1]["content"][1]["toolUse"],
        json!({"toolUseId": "tu-1", "name": "calculator", "input": {"expression": "6*7"}})
    );
    assert_eq!(m[2]["role"], "user");
    assert_eq!(m[2]["content"][0]["toolResult"]["toolUseId"], "tu-1");
}

/// On Bedrock, an MCP server's tool is a `toolSpec` (`{server}__{tool}`, the server's
/// description, its schema as `inputSchema.json`) next to the built-ins; a `toolUse` of it is
/// sent to the server with the configured header, and its structured result goes back as the
/// `toolResult` of that `toolUseId`.
#[tokio::test]
async fn mcp_tools_are_tool_specs() {
    let mcp_server = mcp::McpServer::start();
    let round1 = frames(vec![
        frame("messageStart", json!({"role": "assistant"})),
        frame(
            "contentBlockStart",
            json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tu-9", "name": "orders__lookup_order"}}}),
        ),
        frame(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"order_id\": \"A-17\"}"}}}),
        ),
        frame("contentBlockStop", json!({"contentBlockIndex": 0})),
        frame("messageStop", json!({"stopReason": "tool_use"})),
        metadata(20, 9),
    ]);
    let server = ChatServer::start(vec![round1, answer(&["Shipped."])]).await;
    let servers = mcp::servers(&[mcp_server.entry("orders", json!({}))]);
    let agent = agent_with(&server, &[("MCP_SERVERS", servers)]);
    let rec = Recorder::default();
    let result = agent.run("A-17?", &[], &rec).await.unwrap();
    assert_eq!(result["text"], "Shipped.");

    let requests = server.received();
    let tools = requests[0].body["toolConfig"]["tools"].as_array().unwrap();
    let spec = |name: &str| {
        tools
            .iter()
            .find(|t| t["toolSpec"]["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {tools:?}"))["toolSpec"]
            .clone()
    };
    spec("calculator");
    let lookup = spec("orders__lookup_order");
    assert_eq!(
        lookup["description"],
        "Looks up an order by its id and returns its status and total."
    );
    let schema = &lookup["inputSchema"]["json"];
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["properties"]["order_id"]["type"], "string");
    assert_eq!(schema["required"], json!(["order_id"]));

    let calls = mcp_server.tool_calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["tool"], "lookup_order");
    assert_eq!(calls[0]["arguments"], json!({"order_id": "A-17"}));
    let header = mcp::API_KEY_HEADER.to_ascii_lowercase();
    assert_eq!(calls[0]["headers"][&header], mcp::API_KEY);

    let expected = json!({"order_id": "A-17", "status": "shipped", "total": 42.5});
    let m = &requests[1].body["messages"];
    assert_eq!(
        m[1]["content"][0]["toolUse"],
        json!({"toolUseId": "tu-9", "name": "orders__lookup_order", "input": {"order_id": "A-17"}})
    );
    let returned = &m[2]["content"][0]["toolResult"];
    assert_eq!(returned["toolUseId"], "tu-9");
    assert!(returned.get("status").is_none(), "{returned}");
    let text = returned["content"][0]["text"].as_str().unwrap();
    let content: Value = serde_json::from_str(text).unwrap();
    assert_eq!(content["structured_content"], expected);
    let steps = rec.steps();
    assert_eq!(
        steps[0],
        Event::Executing("orders__lookup_order".into(), json!({"order_id": "A-17"}))
    );
    assert!(
        matches!(&steps[1], Event::Completed(name, v) if name == "orders__lookup_order" && v["structured_content"] == expected),
        "{steps:?}"
    );
}

/// Throttling before any text (an HTTP 429, then an exception event opening the stream) is
/// retried, and the third attempt answers.
#[tokio::test]
async fn throttling_before_text_is_retried() {
    let replies = vec![
        error(429, "ThrottlingException"),
        frames(vec![exception("throttlingException")]),
        answer(&["ok"]),
    ];
    let server = ChatServer::start(replies).await;
    let rec = Recorder::default();
    let result = agent(&server).run("hi", &[], &rec).await.unwrap();
    assert_eq!(result["text"], "ok");
    assert_eq!(server.received().len(), 3);
}

/// A throttling exception after text was streamed fails the run `llm_throttled`, unretried.
#[tokio::test]
async fn throttling_after_text_fails() {
    let long = "x".repeat(300); // past the thinking hold, so it streams before the exception
    let server = ChatServer::start(vec![
        frames(vec![
            frame("messageStart", json!({"role": "assistant"})),
            delta(0, &long),
            exception("throttlingException"),
        ]),
        answer(&["never"]),
    ])
    .await;
    let rec = Recorder::default();
    let err = agent(&server).run("hi", &[], &rec).await.unwrap_err();
    assert_eq!(err.kind, LlmErrorKind::Throttled);
    assert_eq!(rec.text(), long);
    assert_eq!(server.received().len(), 1);
}

/// Service errors and mid-stream exceptions classify by their code.
#[tokio::test]
async fn errors_classify() {
    let cases = [
        (error(400, "ValidationException"), LlmErrorKind::Invalid),
        (
            error(403, "AccessDeniedException"),
            LlmErrorKind::Permission,
        ),
        (
            error(503, "ServiceUnavailableException"),
            LlmErrorKind::Unavailable,
        ),
        (
            frames(vec![delta(0, "a"), exception("internalServerException")]),
            LlmErrorKind::Unavailable,
        ),
        (
            frames(vec![exception("modelStreamErrorException")]),
            LlmErrorKind::Unavailable,
        ),
        (
            frames(vec![exception("validationException")]),
            LlmErrorKind::Invalid,
        ),
        (
            frames(vec![b"\x00\x00\x00\x10garbage-frame!!".to_vec()]),
            LlmErrorKind::Protocol,
        ),
    ];
    for (reply, kind) in cases {
        let server = ChatServer::start(vec![reply]).await;
        let err = agent(&server)
            .run("hi", &[], &Recorder::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind, kind);
    }
}

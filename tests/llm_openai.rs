//! The `llm` agent against a scripted loopback Chat Completions endpoint: streamed answers,
//! the request it sends, and tool-call rounds up to the cap.

#[path = "support/http.rs"]
mod http;
#[path = "support/sse.rs"]
mod sse;

use serde_json::{Value, json};
use sse::{ChatServer, Event, Recorder, Reply, Step, answer, call, done, finish, text, tool_round};
use std::collections::HashMap;
use std::time::Duration;
use wsexec::llm::{LlmAgent, LlmErrorKind, MAX_TOOL_ROUNDS, PriorTurn};

/// An agent for the scripted server with extra settings.
fn agent(server: &ChatServer, extra: &[(&str, &str)]) -> LlmAgent {
    let mut env: HashMap<String, String> = [
        ("LLM_PROVIDER", "openai"),
        ("LLM_MODEL", "test-model"),
        ("LLM_API_KEY", "sk-test-key"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.insert("LLM_BASE_URL".into(), server.url.clone());
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    LlmAgent::from_lookup(|k| env.get(k).cloned())
        .unwrap()
        .unwrap()
}

/// Without tools, every chunk's text is its own delta, the deltas join to the result, and the
/// result carries the model and the usage of the final usage-only chunk.
#[tokio::test]
async fn streams_an_answer_without_tools() {
    let server = ChatServer::start(vec![answer(&["Hel", "lo, ", "wor", "ld"])]).await;
    let agent = agent(
        &server,
        &[("LLM_TOOLS", "none"), ("LLM_TEMPERATURE", "0.3")],
    );
    let rec = Recorder::default();
    let result = agent.run("Say hello", &[], &rec).await.unwrap();
    assert_eq!(rec.deltas(), 4);
    assert_eq!(rec.text(), "Hello, world");
    assert_eq!(
        result,
        json!({"text": "Hello, world", "model": "scripted-model",
               "usage": {"input_tokens": 10, "output_tokens": 4}})
    );
    let req = &server.received()[0];
    assert_eq!(req.path, "/v1/chat/completions");
    assert!(req.head.contains("authorization: Bearer sk-test-key"));
    assert_eq!(req.body["model"], "test-model");
    assert_eq!(req.body["stream"], true);
    assert_eq!(req.body["stream_options"]["include_usage"], true);
    assert_eq!(req.body["max_tokens"], 1024);
    assert!((req.body["temperature"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    assert!(req.body.get("tools").is_none());
}

/// The request carries the system prompt, then the earlier turns oldest first, then the text.
#[tokio::test]
async fn request_carries_system_prompt_and_history() {
    let server = ChatServer::start(vec![answer(&["ok"])]).await;
    let agent = agent(&server, &[("LLM_SYSTEM_PROMPT", "Be brief.")]);
    let history = [
        PriorTurn {
            user: "one".into(),
            assistant: "first answer".into(),
        },
        PriorTurn {
            user: "two".into(),
            assistant: "second answer".into(),
        },
    ];
    agent
        .run("three", &history, &Recorder::default())
        .await
        .unwrap();
    let roles: Vec<(String, String)> = server.received()[0].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().into(),
                m["content"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expect = [
        ("system", "Be brief."),
        ("user", "one"),
        ("assistant", "first answer"),
        ("user", "two"),
        ("assistant", "second answer"),
        ("user", "three"),
    ];
    assert_eq!(roles, expect.map(|(a, b)| (a.to_owned(), b.to_owned())));
    let body = &server.received()[0].body;
    let names: Vec<&str> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["calculator", "current_time"]);
    assert_eq!(body["tool_choice"], "auto");
}

/// With tools offered, a long answer still streams in several deltas (only its start is held
/// back while it could be a preamble to a tool call), and nothing is lost or duplicated.
#[tokio::test]
async fn long_answer_streams_with_tools_offered() {
    let pieces: Vec<String> = (0..100).map(|i| format!("word{i} ")).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let server = ChatServer::start(vec![answer(&refs)]).await;
    let rec = Recorder::default();
    let result = agent(&server, &[]).run("talk", &[], &rec).await.unwrap();
    assert!(rec.deltas() > 10, "{} deltas", rec.deltas());
    assert_eq!(rec.text(), pieces.concat());
    assert_eq!(result["text"], pieces.concat());
    assert!(rec.steps().is_empty());
}

/// Text before two calls in one turn (arguments over many chunks, fragments interleaved by
/// index) is thinking, each call runs in order with its events, and the results go back.
#[tokio::test]
async fn two_tool_calls_in_one_turn() {
    let round1 = Reply::Stream(vec![
        Step::Send(text("Let me compute that.")),
        Step::Send(call(0, Some("call_1"), Some("calculator"), "{\"expr")),
        Step::Send(call(1, Some("call_2"), Some("current_time"), "{")),
        Step::Send(call(0, None, None, "ession\": \"(2+3)")),
        Step::Send(call(0, None, None, "*4\"}")),
        Step::Send(call(1, None, None, "}")),
        Step::Send(finish("tool_calls")),
        Step::Send(done()),
    ]);
    let server = ChatServer::start(vec![round1, answer(&["It is ", "20."])]).await;
    let rec = Recorder::default();
    let result = agent(&server, &[])
        .run("What is (2+3)*4?", &[], &rec)
        .await
        .unwrap();
    let steps = rec.steps();
    assert_eq!(steps.len(), 5, "{steps:?}");
    assert_eq!(steps[0], Event::Thinking("Let me compute that.".into()));
    assert_eq!(
        steps[1],
        Event::Executing("calculator".into(), json!({"expression": "(2+3)*4"}))
    );
    assert_eq!(
        steps[2],
        Event::Completed(
            "calculator".into(),
            json!({"expression": "(2+3)*4", "result": 20.0})
        )
    );
    assert_eq!(steps[3], Event::Executing("current_time".into(), json!({})));
    let Event::Completed(name, value) = &steps[4] else {
        panic!("{:?}", steps[4])
    };
    assert_eq!(name, "current_time");
    assert!(value["utc"].as_str().unwrap().ends_with('Z'));
    assert_eq!(result["text"], "It is 20.");
    assert_eq!(rec.text(), "It is 20.");
    // The preamble streamed as round 1 and was withdrawn once the round called tools.
    assert_eq!(rec.all_text(), "Let me compute that.It is 20.");
    assert_eq!(rec.discarded(), [1]);
    assert_eq!(*rec.rounds.lock().unwrap(), [1, 2, 2]);
    let second = &server.received()[1].body["messages"];
    let m = second.as_array().unwrap();
    assert_eq!(m[1]["role"], "assistant");
    assert_eq!(m[1]["tool_calls"][0]["id"], "call_1");
    assert_eq!(
        m[1]["tool_calls"][0]["function"]["arguments"],
        "{\"expression\": \"(2+3)*4\"}"
    );
    assert_eq!(m[2]["tool_call_id"], "call_1");
    assert!(m[2]["content"].as_str().unwrap().contains("20"));
    assert_eq!(m[3]["tool_call_id"], "call_2");
}

/// An unknown tool, broken arguments and a failing tool become error results for the model;
/// the run goes on and answers.
#[tokio::test]
async fn tool_errors_go_back_to_the_model() {
    let round1 = Reply::Stream(vec![
        Step::Send(call(0, Some("a"), Some("shell"), "{\"cmd\":\"ls\"}")),
        Step::Send(call(1, Some("b"), Some("calculator"), "{not json")),
        Step::Send(call(
            2,
            Some("c"),
            Some("calculator"),
            "{\"expression\":\"1/0\"}",
        )),
        Step::Send(done()),
    ]);
    let server = ChatServer::start(vec![round1, answer(&["Sorry."])]).await;
    let rec = Recorder::default();
    let result = agent(&server, &[])
        .run("do things", &[], &rec)
        .await
        .unwrap();
    assert_eq!(result["text"], "Sorry.");
    let steps = rec.steps();
    assert_eq!(
        steps[0],
        Event::Executing("shell".into(), json!({"cmd": "ls"}))
    );
    assert_eq!(
        steps[2],
        Event::Executing("calculator".into(), Value::String("{not json".into()))
    );
    for (i, needle) in [
        (1, "unknown tool"),
        (3, "not valid JSON"),
        (5, "not a finite number"),
    ] {
        let Event::Completed(_, v) = &steps[i] else {
            panic!("{:?}", steps[i])
        };
        assert!(v["error"].as_str().unwrap().contains(needle), "{v}");
    }
    let m = server.received()[1].body["messages"].clone();
    for i in 2..5 {
        assert!(
            m[i]["content"].as_str().unwrap().contains("error"),
            "{}",
            m[i]
        );
    }
}

/// After MAX_TOOL_ROUNDS rounds of tools the model is asked once more with tools disabled; an
/// answer then completes the run.
#[tokio::test]
async fn round_cap_then_answer() {
    let mut replies: Vec<Reply> = (0..MAX_TOOL_ROUNDS)
        .map(|i| tool_round(&format!("c{i}"), "calculator", "{\"expression\": \"1+1\"}"))
        .collect();
    replies.push(answer(&["Two."]));
    let server = ChatServer::start(replies).await;
    let rec = Recorder::default();
    let result = agent(&server, &[]).run("loop", &[], &rec).await.unwrap();
    assert_eq!(result["text"], "Two.");
    let completed = rec
        .steps()
        .iter()
        .filter(|e| matches!(e, Event::Completed(..)))
        .count();
    assert_eq!(completed, MAX_TOOL_ROUNDS);
    let received = server.received();
    assert_eq!(received.len(), MAX_TOOL_ROUNDS + 1);
    assert_eq!(received[MAX_TOOL_ROUNDS - 1].body["tool_choice"], "auto");
    assert_eq!(received[MAX_TOOL_ROUNDS].body["tool_choice"], "none");
}

/// A model that still asks for tools past the cap fails the run `llm_invalid`, without running
/// a ninth round of tools.
#[tokio::test]
async fn round_cap_then_failure() {
    let replies: Vec<Reply> = (0..=MAX_TOOL_ROUNDS)
        .map(|i| tool_round(&format!("c{i}"), "current_time", "{}"))
        .collect();
    let server = ChatServer::start(replies).await;
    let rec = Recorder::default();
    let err = agent(&server, &[])
        .run("loop", &[], &rec)
        .await
        .unwrap_err();
    assert_eq!(err.kind, LlmErrorKind::Invalid);
    assert_eq!(err.code(), "llm_invalid");
    let completed = rec
        .steps()
        .iter()
        .filter(|e| matches!(e, Event::Completed(..)))
        .count();
    assert_eq!(completed, MAX_TOOL_ROUNDS);
    assert_eq!(server.received().len(), MAX_TOOL_ROUNDS + 1);
}

/// A stream that ends without `[DONE]` (or even a finish reason) is a complete answer.
#[tokio::test]
async fn stream_without_done() {
    let server = ChatServer::start(vec![Reply::Stream(vec![
        Step::Send(text("a")),
        Step::Send(text("b")),
    ])])
    .await;
    let rec = Recorder::default();
    let result = agent(&server, &[("LLM_TOOLS", "none")])
        .run("x", &[], &rec)
        .await
        .unwrap();
    assert_eq!(result, json!({"text": "ab", "model": "scripted-model"}));
}

/// A 1 MB answer in many chunks, some events split across chunk boundaries, streams whole;
/// the result keeps its first `MAX_KEPT_ANSWER_BYTES` (what a stored result can hold at most)
/// and says how long the answer was, so the agent never holds a megabyte of text.
#[tokio::test]
async fn one_megabyte_answer() {
    let piece = "0123456789abcdef".repeat(64); // 1 KiB
    let mut body = Vec::new();
    for _ in 0..1024 {
        body.extend_from_slice(&text(&piece));
    }
    body.extend_from_slice(&done());
    let steps = body.chunks(7919).map(|c| Step::Send(c.to_vec())).collect();
    let server = ChatServer::start(vec![Reply::Stream(steps)]).await;
    let rec = Recorder::default();
    let result = agent(&server, &[]).run("long", &[], &rec).await.unwrap();
    let streamed = rec.text();
    assert_eq!(streamed.len(), 1024 * 1024);
    assert!(streamed.chars().all(|c| c.is_ascii_hexdigit()));
    let kept = result["text"].as_str().unwrap();
    assert_eq!(kept.len(), wsexec::llm::agent::MAX_KEPT_ANSWER_BYTES);
    assert!(streamed.starts_with(kept));
    assert_eq!(
        (result["truncated"].as_bool(), result["text_bytes"].as_u64()),
        (Some(true), Some(1024 * 1024))
    );
}

/// With tools offered, the first token streams at once: the first delta arrives while the
/// round's text is still being written (nothing is held back to tell a preamble from an answer).
#[tokio::test]
async fn first_token_streams_at_once_with_tools_offered() {
    let server = ChatServer::start(vec![Reply::Stream(vec![
        Step::Send(text("Hel")),
        Step::Sleep(Duration::from_secs(2)),
        Step::Send(text("lo.")),
        Step::Send(finish("stop")),
        Step::Send(done()),
    ])])
    .await;
    let agent = agent(&server, &[]);
    assert!(!agent.settings().tools.is_empty(), "tools are offered");
    let rec = Recorder::default();
    let (tx, rx) = tokio::sync::oneshot::channel();
    *rec.first_delta.lock().unwrap() = Some(tx);
    let run = agent.run("hi", &[], &rec);
    let watch = async {
        tokio::time::timeout(Duration::from_secs(1), rx)
            .await
            .is_ok()
            && server.sent().len() == 1
    };
    let (result, first_before_rest) = tokio::join!(run, watch);
    assert!(
        first_before_rest,
        "no delta before the round's text was complete"
    );
    assert_eq!(result.unwrap()["text"], "Hello.");
    assert_eq!(rec.text(), "Hello.");
}

/// A round that streamed text and then calls a tool has that text discarded (once, for its
/// round) and shown as thinking; the next round's deltas are kept and equal the result.
#[tokio::test]
async fn a_tool_round_that_streamed_text_is_discarded() {
    let round1 = Reply::Stream(vec![
        Step::Send(text("Let me ")),
        Step::Send(text("check the time.")),
        Step::Send(call(0, Some("t1"), Some("current_time"), "{}")),
        Step::Send(finish("tool_calls")),
        Step::Send(done()),
    ]);
    let server = ChatServer::start(vec![round1, answer(&["It is ", "noon."])]).await;
    let rec = Recorder::default();
    let result = agent(&server, &[]).run("time?", &[], &rec).await.unwrap();
    assert_eq!(rec.all_text(), "Let me check the time.It is noon.");
    assert_eq!(*rec.rounds.lock().unwrap(), [1, 1, 2, 2]);
    assert_eq!(rec.discarded(), [1]);
    assert_eq!(rec.text(), "It is noon.");
    assert_eq!(result["text"], rec.text());
    assert_eq!(
        rec.steps()[0],
        Event::Thinking("Let me check the time.".into())
    );
    let events = rec.events();
    let discard = events
        .iter()
        .position(|e| *e == Event::Discarded(1))
        .unwrap();
    let thinking = events
        .iter()
        .position(|e| matches!(e, Event::Thinking(_)))
        .unwrap();
    assert!(discard < thinking, "{events:?}");
    // The model's own history keeps what it said before calling the tool.
    let m = &server.received()[1].body["messages"];
    assert_eq!(m[1]["content"], "Let me check the time.");
}

/// `data:` line of a Chat Completions chunk whose text is `content`, written as raw JSON (so it
/// may hold escapes no JSON library would write, such as an unpaired surrogate).
fn raw_text(content: &str) -> Vec<u8> {
    format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}}}}]}}\n\n")
        .into_bytes()
}

/// A surrogate pair split over two chunks is joined into its character; a lone surrogate
/// becomes U+FFFD; the run answers instead of failing `llm_protocol`, in text and in tool
/// arguments alike.
#[tokio::test]
async fn split_and_lone_surrogates_do_not_fail_the_run() {
    let args_a = r#"{\"x\":\"\ud83d"#;
    let args_b = r#"\ude00\"}"#;
    let fragment = |index: u64, id: Option<&str>, name: Option<&str>, raw: &str| {
        let mut head = format!("{{\"index\":{index},\"function\":{{\"arguments\":\"{raw}\"");
        if let Some(n) = name {
            head.push_str(&format!(",\"name\":\"{n}\""));
        }
        head.push('}');
        if let Some(id) = id {
            head.push_str(&format!(",\"id\":\"{id}\",\"type\":\"function\""));
        }
        head.push('}');
        format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"tool_calls\":[{head}]}}}}]}}\n\n")
            .into_bytes()
    };
    let round1 = Reply::Stream(vec![
        Step::Send(fragment(0, Some("c1"), Some("current_time"), args_a)),
        Step::Send(fragment(0, None, None, args_b)),
        Step::Send(done()),
    ]);
    let round2 = Reply::Stream(vec![
        Step::Send(raw_text(r"smile \ud83d")),
        Step::Send(raw_text(r"\ude00 lone \udc00 end \ud83d")),
        Step::Send(finish("stop")),
        Step::Send(done()),
    ]);
    let server = ChatServer::start(vec![round1, round2]).await;
    let rec = Recorder::default();
    let result = agent(&server, &[]).run("smile", &[], &rec).await.unwrap();
    let expected = "smile \u{1F600} lone \u{FFFD} end \u{FFFD}";
    assert_eq!(result["text"], expected);
    assert_eq!(rec.text(), expected);
    assert_eq!(
        rec.steps()[0],
        Event::Executing("current_time".into(), json!({"x": "\u{1F600}"}))
    );
}

//! The `llm` agent against a real OpenAI-compatible server: llama.cpp (llama-cpp-python)
//! serving SmolLM2-135M-Instruct, started through `tools/llm-server` unless `WSEXEC_LLM_URL`
//! names a running one (`http://127.0.0.1:PORT/v1`). Without the server these tests fail.

#[path = "support/http.rs"]
mod http;
#[path = "support/llm_server.rs"]
mod llm_server;
#[path = "support/sse.rs"]
mod sse;

use sse::Recorder;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use wsexec::llm::{LlmAgent, PriorTurn};

/// An agent on the server: no tools, deterministic, `tokens` output tokens at most.
fn agent(url: &str, tokens: u32) -> LlmAgent {
    let env: HashMap<&str, String> = [
        ("LLM_PROVIDER", "openai".to_owned()),
        ("LLM_MODEL", "smollm2".to_owned()),
        ("LLM_BASE_URL", url.to_owned()),
        ("LLM_TOOLS", "none".to_owned()),
        ("LLM_MAX_TOKENS", tokens.to_string()),
        ("LLM_TEMPERATURE", "0".to_owned()),
    ]
    .into_iter()
    .collect();
    LlmAgent::from_lookup(|k| env.get(k).cloned())
        .unwrap()
        .unwrap()
}

/// On the real model: an answer streams in several deltas that join to the result text; a
/// second message with the first turn as history sends that turn to the model; dropping a run
/// mid-stream closes its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_model_streams_keeps_history_and_cancels() {
    let server = llm_server::server();
    let mut proxy = llm_server::proxy(&server.url, None).await;
    let short = agent(&proxy.url, 48);

    let first_prompt = "Name three colors of the rainbow.";
    let rec = Recorder::default();
    let started = Instant::now();
    let first = short
        .run(first_prompt, &[], &rec)
        .await
        .expect("first answer");
    let first_text = first["text"].as_str().unwrap().to_owned();
    eprintln!(
        "first answer ({:?}, {} deltas): {first_text:?}",
        started.elapsed(),
        rec.deltas()
    );
    assert!(rec.deltas() >= 3, "only {} deltas", rec.deltas());
    assert_eq!(rec.text(), first_text);
    assert!(!first_text.trim().is_empty());
    assert_eq!(first["model"], "smollm2");

    let history = [PriorTurn {
        user: first_prompt.into(),
        assistant: first_text.clone(),
    }];
    let rec = Recorder::default();
    let started = Instant::now();
    let second = short
        .run("Now name one more.", &history, &rec)
        .await
        .expect("second answer");
    eprintln!(
        "second answer ({:?}): {:?}",
        started.elapsed(),
        second["text"]
    );
    assert_eq!(rec.text(), second["text"].as_str().unwrap());
    let pair = |role: &str, content: &str| (role.to_owned(), content.to_owned());
    assert_eq!(
        llm_server::turns(&proxy.bodies()[1]),
        [
            pair("user", first_prompt),
            pair("assistant", &first_text),
            pair("user", "Now name one more.")
        ]
    );

    // Both connections so far ended; drain their notices before the cancel.
    for _ in 0..2 {
        let closed = proxy.next_closed(Duration::from_secs(5)).await;
        assert_eq!(
            closed,
            Some(llm_server::Closed {
                answer_complete: true
            })
        );
    }
    let rec = Recorder::default();
    let (tx, rx) = tokio::sync::oneshot::channel();
    *rec.first_delta.lock().unwrap() = Some(tx);
    let long = agent(&proxy.url, 400);
    tokio::select! {
        r = long.run("Write a long story about a dragon.", &[], &rec) => panic!("finished before cancel: {r:?}"),
        _ = tokio::time::timeout(Duration::from_secs(60), rx) => {}
    }
    let dropped = Instant::now();
    let closed = proxy.next_closed(Duration::from_secs(2)).await;
    assert_eq!(
        closed,
        Some(llm_server::Closed {
            answer_complete: false
        }),
        "the cancelled stream stayed open"
    );
    eprintln!(
        "cancelled stream closed {:?} after the drop",
        dropped.elapsed()
    );
    assert!(rec.deltas() >= 1);
}

//! The `llm` agent against a real OpenAI-compatible server: llama.cpp (llama-cpp-python)
//! serving SmolLM2-135M-Instruct, started through `tools/llm-server` unless `WSEXEC_LLM_URL`
//! names a running one (`http://127.0.0.1:PORT/v1`). Without the server these tests fail.

#[path = "support/http.rs"]
mod http;
#[path = "support/sse.rs"]
mod sse;

use serde_json::Value;
use sse::Recorder;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use wsexec::llm::{LlmAgent, PriorTurn};

/// The server this test started, stopped on drop (also when an assertion fails).
struct Server {
    url: String,
    pid: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(pid) = &self.pid {
            let _ = std::process::Command::new(script())
                .args(["stop", pid])
                .status();
        }
    }
}

fn script() -> String {
    format!("{}/tools/llm-server", env!("CARGO_MANIFEST_DIR"))
}

fn server() -> Server {
    if let Ok(url) = std::env::var("WSEXEC_LLM_URL") {
        return Server { url, pid: None };
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = std::process::Command::new(script())
        .args(["start", &port.to_string()])
        .output()
        .expect("tools/llm-server could not be run");
    assert!(
        out.status.success(),
        "tools/llm-server start failed (install it with `tools/llm-server install`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Server {
        url: format!("http://127.0.0.1:{port}/v1"),
        pid: Some(pid),
    }
}

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

/// A loopback proxy in front of the model server that records each request body and reports
/// when the client side of a connection closed.
async fn proxy(
    upstream: &str,
) -> (
    String,
    Arc<Mutex<Vec<Value>>>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let upstream = upstream
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
    let recorded = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (recorded, closed_tx, upstream) =
                (recorded.clone(), closed_tx.clone(), upstream.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let Some(msg) = http::read_message(&mut client, &mut buf).await else {
                    return;
                };
                recorded
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice(msg.body()).unwrap_or(Value::Null));
                let mut server = TcpStream::connect(upstream).await.unwrap();
                tokio::io::AsyncWriteExt::write_all(&mut server, &msg.raw)
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                let _ = closed_tx.send(());
            });
        }
    });
    (url, bodies, closed)
}

/// On the real model: an answer streams in several deltas that join to the result text; a
/// second message with the first turn as history sends that turn to the model; dropping a run
/// mid-stream closes its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_model_streams_keeps_history_and_cancels() {
    let server = server();
    let (url, bodies, mut closed) = proxy(&server.url).await;
    let short = agent(&url, 48);

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
    let sent = bodies.lock().unwrap()[1]["messages"].clone();
    let roles: Vec<(&str, &str)> = sent
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        roles,
        vec![
            ("user", first_prompt),
            ("assistant", first_text.as_str()),
            ("user", "Now name one more.")
        ]
    );

    // Both connections so far ended; drain their notices before the cancel.
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(5), closed.recv())
            .await
            .expect("closed")
            .unwrap();
    }
    let rec = Recorder::default();
    let (tx, rx) = tokio::sync::oneshot::channel();
    *rec.first_delta.lock().unwrap() = Some(tx);
    let long = agent(&url, 400);
    tokio::select! {
        r = long.run("Write a long story about a dragon.", &[], &rec) => panic!("finished before cancel: {r:?}"),
        _ = tokio::time::timeout(Duration::from_secs(60), rx) => {}
    }
    let dropped = Instant::now();
    tokio::time::timeout(Duration::from_secs(2), closed.recv())
        .await
        .expect("the cancelled stream stayed open");
    eprintln!(
        "cancelled stream closed {:?} after the drop",
        dropped.elapsed()
    );
    assert!(rec.deltas() >= 1);
}

//! The `llm` agent's provider failures on a scripted loopback endpoint: every status and
//! transport fault classified, throttling retried within bounds, and cancel-safety (dropping a
//! run mid-stream closes the connection).

#[path = "support/http.rs"]
mod http;
#[path = "support/sse.rs"]
mod sse;

use sse::{ChatServer, Recorder, Reply, Step, answer, status, text};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wsexec::llm::{LlmAgent, LlmErrorKind, Timeouts};
use wsexec::tools::{Tool, ToolError};

/// Short limits so stalls are detected quickly.
const TEST_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(2),
    first_byte: Duration::from_millis(500),
    idle: Duration::from_millis(300),
};

fn agent_for(url: &str) -> LlmAgent {
    let env: HashMap<&str, String> = [
        ("LLM_PROVIDER", "openai".to_owned()),
        ("LLM_MODEL", "test-model".to_owned()),
        ("LLM_BASE_URL", url.to_owned()),
        ("LLM_TOOLS", "none".to_owned()),
    ]
    .into_iter()
    .collect();
    LlmAgent::from_lookup(|k| env.get(k).cloned())
        .unwrap()
        .unwrap()
        .with_timeouts(TEST_TIMEOUTS)
}

async fn fails_with(replies: Vec<Reply>) -> (LlmErrorKind, Recorder, ChatServer) {
    let server = ChatServer::start(replies).await;
    let rec = Recorder::default();
    let err = agent_for(&server.url)
        .run("hi", &[], &rec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), err.kind.code());
    (err.kind, rec, server)
}

/// 401 and 403 are `llm_permission`, tried once; the client message is generic.
#[tokio::test]
async fn refused_credentials() {
    for code in [401, 403] {
        let body = r#"{"error":{"message":"Incorrect API key provided: sk-live-123","code":"invalid_api_key"}}"#;
        let (kind, _, server) = fails_with(vec![status(code, body)]).await;
        assert_eq!(kind, LlmErrorKind::Permission);
        assert_eq!(server.received().len(), 1);
        assert!(!LlmErrorKind::Permission.client_message().contains("sk-"));
    }
}

/// 400 (a context that is too long) is `llm_invalid` and not retryable.
#[tokio::test]
async fn rejected_request() {
    let body = r#"{"error":{"message":"too long","code":"context_length_exceeded"}}"#;
    let (kind, _, server) = fails_with(vec![status(400, body)]).await;
    assert_eq!(kind, LlmErrorKind::Invalid);
    assert!(!kind.is_retryable());
    assert_eq!(server.received().len(), 1);
}

/// A 429 is retried after its `Retry-After`, and the retry's answer completes the run.
#[tokio::test]
async fn throttled_then_answered() {
    let throttled = Reply::Status {
        status: 429,
        headers: vec![("retry-after".into(), "0.3".into())],
        body: r#"{"error":{"code":"rate_limit_exceeded"}}"#.into(),
    };
    let server = ChatServer::start(vec![throttled, answer(&["fine"])]).await;
    let rec = Recorder::default();
    let started = Instant::now();
    let result = agent_for(&server.url).run("hi", &[], &rec).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "Retry-After not honoured"
    );
    assert_eq!(result["text"], "fine");
    assert_eq!(server.received().len(), 2);
}

/// Throttling that persists ends as `llm_throttled` after a bounded number of attempts.
#[tokio::test]
async fn throttled_until_giving_up() {
    let throttled = || Reply::Status {
        status: 429,
        headers: vec![("retry-after".into(), "0".into())],
        body: "{}".into(),
    };
    let (kind, _, server) = fails_with((0..10).map(|_| throttled()).collect()).await;
    assert_eq!(kind, LlmErrorKind::Throttled);
    assert!(kind.is_retryable());
    assert_eq!(server.received().len(), 3);
}

/// A spent quota (429 `insufficient_quota`) is not retried: waiting will not help.
#[tokio::test]
async fn spent_quota_is_not_retried() {
    let body = r#"{"error":{"code":"insufficient_quota","type":"insufficient_quota"}}"#;
    let (kind, _, server) = fails_with(vec![status(429, body), answer(&["no"])]).await;
    assert_eq!(kind, LlmErrorKind::Throttled);
    assert_eq!(server.received().len(), 1);
}

/// A spent quota reaches the client as a non-retryable failure that says so, whether the 429
/// comes before the stream or as an error event in it.
#[tokio::test]
async fn spent_quota_is_not_retryable_and_says_so() {
    let body = r#"{"error":{"message":"You exceeded your current quota","code":"insufficient_quota","type":"insufficient_quota"}}"#;
    let in_stream = Reply::Stream(vec![
        Step::Send(text("par")),
        Step::Send(sse::event(serde_json::json!({"error": {
            "message": "You exceeded your current quota", "type": "insufficient_quota",
            "code": "insufficient_quota"}}))),
    ]);
    for reply in [status(429, body), in_stream] {
        let server = ChatServer::start(vec![reply, answer(&["no"])]).await;
        let err = agent_for(&server.url)
            .run("hi", &[], &Recorder::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind, LlmErrorKind::Throttled);
        assert!(!err.is_retryable(), "a spent quota was called retryable");
        assert!(err.message.contains("quota"), "{}", err.message);
        assert_eq!(server.received().len(), 1);
    }
    // An ordinary rate limit stays retryable.
    assert!(wsexec::llm::LlmFailure::new(LlmErrorKind::Throttled).is_retryable());
}

/// A `Retry-After` that would outlast the run (or any sane wait) gives up at once with
/// `llm_throttled` instead of waiting into the deadline; one that fits is honoured.
#[tokio::test]
async fn retry_after_past_the_deadline_gives_up_at_once() {
    let throttled = |after: &str| Reply::Status {
        status: 429,
        headers: vec![("retry-after".into(), after.into())],
        body: r#"{"error":{"code":"rate_limit_exceeded"}}"#.into(),
    };
    let cases = [
        ("30", Some(Duration::from_secs(3))),
        ("3600", None),
        ("2", Some(Duration::from_millis(2500))),
    ];
    for (after, within) in cases {
        let server = ChatServer::start(vec![throttled(after), answer(&["late"])]).await;
        let deadline = within.map(|w| Instant::now() + w);
        let started = Instant::now();
        let err = agent_for(&server.url)
            .run_until("hi", &[], &Recorder::default(), deadline)
            .await
            .unwrap_err();
        assert_eq!(err.kind, LlmErrorKind::Throttled, "Retry-After {after}");
        assert!(err.is_retryable());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "Retry-After {after} waited {:?}",
            started.elapsed()
        );
        assert_eq!(server.received().len(), 1);
    }
    let server = ChatServer::start(vec![throttled("0.2"), answer(&["fine"])]).await;
    let deadline = Some(Instant::now() + Duration::from_secs(5));
    let result = agent_for(&server.url)
        .run_until("hi", &[], &Recorder::default(), deadline)
        .await
        .unwrap();
    assert_eq!(result["text"], "fine");
}

/// A 500 is `llm_unavailable`.
#[tokio::test]
async fn server_error() {
    let (kind, _, _) = fails_with(vec![status(500, "oops")]).await;
    assert_eq!(kind, LlmErrorKind::Unavailable);
}

/// A refused connection is `llm_unavailable`.
#[tokio::test]
async fn refused_connection() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = agent_for(&format!("http://127.0.0.1:{port}/v1"))
        .run("hi", &[], &Recorder::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, LlmErrorKind::Unavailable);
}

/// A stream that stops sending mid-answer is `llm_unavailable` once the idle limit passes,
/// after the text that did arrive was streamed.
#[tokio::test]
async fn stalled_stream() {
    let started = Instant::now();
    let (kind, rec, mut server) = fails_with(vec![Reply::Stream(vec![
        Step::Send(text("par")),
        Step::Stall,
    ])])
    .await;
    assert_eq!(kind, LlmErrorKind::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(rec.text(), "par");
    assert!(
        server.next_closed(Duration::from_secs(2)).await.is_some(),
        "stalled connection left open"
    );
}

/// A connection reset mid-stream is `llm_unavailable`.
#[tokio::test]
async fn reset_mid_stream() {
    let (kind, rec, _) = fails_with(vec![Reply::Stream(vec![
        Step::Send(text("a")),
        Step::Reset,
    ])])
    .await;
    assert_eq!(kind, LlmErrorKind::Unavailable);
    assert_eq!(rec.text(), "a");
}

/// A chunk that is not JSON is `llm_protocol`.
#[tokio::test]
async fn malformed_chunk() {
    let (kind, _, _) = fails_with(vec![Reply::Stream(vec![
        Step::Send(text("a")),
        Step::Send(b"data: {\"choices\": [{\"delta\": \n\n".to_vec()),
    ])])
    .await;
    assert_eq!(kind, LlmErrorKind::Protocol);
}

/// Dropping the run's future mid-stream (cancel, deadline) closes the provider connection
/// promptly: the endpoint sees end-of-file.
#[tokio::test]
async fn dropping_the_run_closes_the_stream() {
    let mut server = ChatServer::start(vec![Reply::Stream(vec![
        Step::Send(text("first")),
        Step::Stall,
    ])])
    .await;
    let agent = agent_for(&server.url).with_timeouts(Timeouts {
        idle: Duration::from_secs(60),
        ..TEST_TIMEOUTS
    });
    let rec = Recorder::default();
    let (tx, rx) = tokio::sync::oneshot::channel();
    *rec.first_delta.lock().unwrap() = Some(tx);
    tokio::select! {
        _ = agent.run("hi", &[], &rec) => panic!("the stalled run finished"),
        _ = rx => {}
    }
    // The run's future is dropped here, as the driver drops it.
    let started = Instant::now();
    assert!(
        server.next_closed(Duration::from_secs(2)).await.is_some(),
        "connection still open"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(rec.text(), "first");
}

/// A tool that overruns its time limit becomes an error result, and the run still answers.
#[tokio::test]
async fn slow_tool_times_out_into_an_error_result() {
    struct Slow;
    #[async_trait::async_trait]
    impl Tool for Slow {
        fn name(&self) -> &str {
            "slow"
        }
        fn description(&self) -> &str {
            "sleeps"
        }
        fn parameters(&self) -> serde_json::Value {
            serde_json::json!({"type": "object"})
        }
        fn time_limit(&self) -> Duration {
            Duration::from_millis(50)
        }
        async fn call(&self, _: serde_json::Value) -> Result<serde_json::Value, ToolError> {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(serde_json::Value::Null)
        }
    }
    let server =
        ChatServer::start(vec![sse::tool_round("s1", "slow", "{}"), answer(&["done"])]).await;
    let rec = Recorder::default();
    let agent = agent_for(&server.url).with_tool(Arc::new(Slow));
    let result = agent.run("go", &[], &rec).await.unwrap();
    assert_eq!(result["text"], "done");
    let steps = rec.steps();
    let sse::Event::Completed(name, v) = &steps[1] else {
        panic!("{steps:?}")
    };
    assert_eq!(name, "slow");
    assert!(
        v["error"].as_str().unwrap().contains("did not finish"),
        "{v}"
    );
}

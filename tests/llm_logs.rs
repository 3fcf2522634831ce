//! The `llm` agent's logs never carry the API key, the bearer header or prompt text, on
//! success, on tool rounds and on failures whose bodies echo them.

#[path = "support/http.rs"]
mod http;
#[path = "support/logs.rs"]
mod logs;
#[path = "support/sse.rs"]
mod sse;

use sse::{ChatServer, Recorder, Reply, answer, status, tool_round};
use std::collections::HashMap;
use wsexec::llm::LlmAgent;

const KEY: &str = "sk-live-9f8e7d6c5b4a39281706";
const PROMPT: &str = "my confidential question about project nightingale";
const SYSTEM: &str = "You are the secret assistant of codename heron";

/// Across a streamed answer, a tool round, a 401 that echoes the key and a 429 that echoes
/// the prompt, the logs classify each failure and contain none of the secrets.
#[tokio::test]
async fn logs_never_carry_key_bearer_or_prompt() {
    let (logs, _guard) = logs::Logs::capture();
    let replies = vec![
        answer(&["fine"]),
        tool_round("c1", "calculator", "{\"expression\": \"2*21\"}"),
        answer(&["42"]),
        status(
            401,
            &format!(
                r#"{{"error":{{"message":"Incorrect API key provided: {KEY}","code":"invalid_api_key"}}}}"#
            ),
        ),
        Reply::Status {
            status: 429,
            headers: vec![],
            body: format!(r#"{{"error":{{"message":"{PROMPT}","code":"insufficient_quota"}}}}"#),
        },
    ];
    let server = ChatServer::start(replies).await;
    let env: HashMap<&str, String> = [
        ("LLM_PROVIDER", "openai".to_owned()),
        ("LLM_MODEL", "m".to_owned()),
        ("LLM_BASE_URL", server.url.clone()),
        ("LLM_API_KEY", KEY.to_owned()),
        ("LLM_SYSTEM_PROMPT", SYSTEM.to_owned()),
    ]
    .into_iter()
    .collect();
    let agent = LlmAgent::from_lookup(|k| env.get(k).cloned())
        .unwrap()
        .unwrap();
    let history = [wsexec::llm::PriorTurn {
        user: PROMPT.into(),
        assistant: "fine".into(),
    }];
    let rec = Recorder::default();
    agent.run(PROMPT, &[], &rec).await.unwrap();
    agent.run(PROMPT, &history, &rec).await.unwrap();
    assert_eq!(
        agent.run(PROMPT, &history, &rec).await.unwrap_err().code(),
        "llm_permission"
    );
    assert_eq!(
        agent.run(PROMPT, &history, &rec).await.unwrap_err().code(),
        "llm_throttled"
    );
    assert!(
        server.received()[0].head.contains(&format!("Bearer {KEY}")),
        "the key was not sent"
    );

    let lines = logs.lines();
    let failed: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("llm request failed"))
        .collect();
    assert_eq!(failed.len(), 2, "{lines:#?}");
    assert!(
        failed[0].contains("llm_permission") && failed[0].contains("401"),
        "{}",
        failed[0]
    );
    assert!(failed[1].contains("insufficient_quota"), "{}", failed[1]);
    assert!(lines.iter().any(|l| l.contains("llm run answered")));
    let needles = [
        KEY,
        &KEY[3..19],
        "Bearer",
        "bearer",
        PROMPT,
        "nightingale",
        SYSTEM,
        "heron",
    ];
    for line in &lines {
        for n in needles {
            assert!(!line.contains(n), "{n:?} reached the logs: {line}");
        }
    }
}

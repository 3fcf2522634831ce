//! The built-in `echo` agent: one thought, one tool step, a result derived from the request.

use super::executor::{AgentFailure, Executor, RunInput, RunSink};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Echoes the request back through the full event lifecycle.
pub struct Echo;

/// The tool the echo agent "calls".
pub const ECHO_TOOL: &str = "echo";

/// How often a long echo step checks in: often enough that heartbeats (rate limited by the
/// sink) and cancellation are noticed promptly, rarely enough to cost nothing.
const ECHO_TICK: Duration = Duration::from_millis(250);

#[async_trait]
impl Executor for Echo {
    async fn execute(
        &self,
        input: &RunInput<'_>,
        sink: &mut dyn RunSink,
    ) -> Result<Value, AgentFailure> {
        sink.thinking("Reading the request and preparing an echo")
            .await;
        let params = json!({ "text": input.text });
        sink.tool_executing(ECHO_TOOL, &params).await;
        let started = Instant::now();
        let mut left = input.delay;
        while !left.is_zero() {
            let step = left.min(ECHO_TICK);
            tokio::time::sleep(step).await;
            left -= step;
            sink.heartbeat().await?;
        }
        let tool_result = json!({ "echo": input.text, "length": input.text.chars().count() });
        sink.tool_completed(
            ECHO_TOOL,
            &tool_result,
            started.elapsed().as_millis() as u64,
        )
        .await;
        Ok(json!({ "reply": format!("echo: {}", input.text) }))
    }
}

//! An agent that streams words at a pace, for tests that follow or resume a run mid-stream.

use serde_json::{Value, json};
use std::time::Duration;
use wsexec::run::{AgentFailure, Executor, RunInput, RunSink};

/// Streams `pieces` words `gap` apart, with one tool step halfway; answers their concatenation.
pub struct Streamer {
    pub pieces: usize,
    pub gap: Duration,
}

#[async_trait::async_trait]
impl Executor for Streamer {
    async fn execute(&self, _input: RunInput<'_>, sink: RunSink) -> Result<Value, AgentFailure> {
        sink.thinking("planning").await;
        let mut text = String::new();
        for i in 0..self.pieces {
            if i == self.pieces / 2 {
                sink.tool_executing("calculator", json!({"expression": "1+1"}))
                    .await;
                sink.tool_completed("calculator", json!(2), 1).await;
            }
            let word = format!("w{i} ");
            sink.delta(&word).await;
            text.push_str(&word);
            tokio::time::sleep(self.gap).await;
        }
        Ok(json!({ "text": text }))
    }
}

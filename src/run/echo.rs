//! The built-in `echo` agent: one thought, one tool step, a result derived from the request.

use super::executor::{AgentFailure, Executor, RunInput, RunSink};
use crate::limits::MAX_ECHO_DELAY;
use crate::protocol::{ClientError, ErrorCode};
use async_trait::async_trait;
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};

/// Echoes the request back through the full event lifecycle.
pub struct Echo;

/// The name `echo` is registered under.
pub const ECHO_AGENT: &str = "echo";

/// The tool the echo agent "calls".
pub const ECHO_TOOL: &str = "echo";

/// The option naming the tool step's artificial delay, for exercising long runs.
pub const DELAY_OPTION: &str = "delay_ms";

/// The tool step's delay: `delay_ms`, an integer from 0 to [`MAX_ECHO_DELAY`] in milliseconds.
fn delay(options: &Map<String, Value>) -> Result<Duration, ClientError> {
    let max = MAX_ECHO_DELAY.as_millis() as u64;
    match options.get(DELAY_OPTION) {
        None | Some(Value::Null) => Ok(Duration::ZERO),
        Some(v) => match v.as_u64() {
            Some(ms) if ms <= max => Ok(Duration::from_millis(ms)),
            _ => Err(ClientError::new(
                ErrorCode::InvalidField,
                format!("payload.delay_ms must be a whole number from 0 to {max}"),
            )),
        },
    }
}

#[async_trait]
impl Executor for Echo {
    fn check_options(&self, options: &Map<String, Value>) -> Result<(), ClientError> {
        delay(options).map(|_| ())
    }

    async fn execute(&self, input: RunInput<'_>, sink: RunSink) -> Result<Value, AgentFailure> {
        let pause = delay(input.options).map_err(|e| AgentFailure::failed(e.message))?;
        sink.thinking("Reading the request and preparing an echo")
            .await;
        sink.tool_executing(ECHO_TOOL, json!({ "text": input.text }))
            .await;
        let started = Instant::now();
        // The driver heartbeats, cancels and times out the run while this sleeps. A zero delay
        // takes no timer: a zero sleep still waits for the timer wheel's next 1 ms tick.
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let tool_result = json!({ "echo": input.text, "length": input.text.chars().count() });
        sink.tool_completed(ECHO_TOOL, tool_result, started.elapsed().as_millis() as u64)
            .await;
        Ok(json!({ "reply": format!("echo: {}", input.text) }))
    }
}

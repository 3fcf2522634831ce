//! The built-in `echo` agent: one thought, one tool step, a result derived from the request;
//! on request, a long answer streamed as deltas (for exercising message and memory limits).
//! It journals its tool step, so a continuation exercises the journal without a model: the
//! step is not done again, and an answer interrupted mid-stream is streamed again after its
//! text so far is withdrawn.

use super::executor::{AgentFailure, Executor, RunInput, RunSink, refuse_unknown_options};
use crate::limits::{MAX_ECHO_ANSWER_BYTES, MAX_ECHO_DELAY};
use crate::protocol::{ClientError, DiscardReason, ErrorCode};
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

/// The option asking for an answer of this many bytes: the request repeated, streamed.
pub const ANSWER_OPTION: &str = "answer_bytes";

/// Bytes per `delta` the echo agent reports when streaming a long answer: a model's chunks are
/// far smaller; this keeps a 16 MiB answer to a few thousand reports.
const ECHO_PIECE_BYTES: usize = 4 * 1024;

/// A whole-number option `name` from 0 to `max` (absent: 0).
fn whole(options: &Map<String, Value>, name: &str, max: u64) -> Result<u64, ClientError> {
    match options.get(name) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => match v.as_u64() {
            Some(n) if n <= max => Ok(n),
            _ => Err(ClientError::new(
                ErrorCode::InvalidField,
                format!("payload.{name} must be a whole number from 0 to {max}"),
            )),
        },
    }
}

/// The longest prefix of `text` of at most `bytes` bytes that ends on a character boundary.
fn prefix(text: &str, bytes: usize) -> &str {
    let mut cut = bytes.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// The answer of `answer_bytes`: `text` repeated, cut at a character boundary.
fn long_answer(text: &str, bytes: usize) -> String {
    let mut out = text.repeat(bytes / text.len().max(1) + 1);
    let keep = prefix(&out, bytes).len();
    out.truncate(keep);
    out
}

/// The tool step's delay: `delay_ms`, an integer from 0 to [`MAX_ECHO_DELAY`] in milliseconds.
fn delay(options: &Map<String, Value>) -> Result<Duration, ClientError> {
    let max = MAX_ECHO_DELAY.as_millis() as u64;
    whole(options, DELAY_OPTION, max).map(Duration::from_millis)
}

/// The long answer's length: `answer_bytes`, from 0 (none) to [`MAX_ECHO_ANSWER_BYTES`].
fn answer_bytes(options: &Map<String, Value>) -> Result<usize, ClientError> {
    whole(options, ANSWER_OPTION, MAX_ECHO_ANSWER_BYTES as u64).map(|n| n as usize)
}

/// The `kind` of the echo agent's one journaled step.
const TOOL_STEP: &str = "tool";

/// The thought and the tool step, with its events, journaled once done.
async fn tool_step(input: &RunInput<'_>, sink: &RunSink, pause: Duration) {
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
    let took = started.elapsed().as_millis() as u64;
    sink.tool_completed(ECHO_TOOL, tool_result.clone(), took)
        .await;
    sink.save_step(json!({ "kind": TOOL_STEP, "content": tool_result }))
        .await;
}

#[async_trait]
impl Executor for Echo {
    fn check_options(&self, options: &Map<String, Value>) -> Result<(), ClientError> {
        refuse_unknown_options(ECHO_AGENT, options, &[DELAY_OPTION, ANSWER_OPTION])?;
        delay(options)?;
        answer_bytes(options).map(|_| ())
    }

    async fn execute(&self, input: RunInput<'_>, sink: RunSink) -> Result<Value, AgentFailure> {
        let pause = delay(input.options).map_err(|e| AgentFailure::failed(e.message))?;
        let bytes = answer_bytes(input.options).map_err(|e| AgentFailure::failed(e.message))?;
        let journaled = input.journal.iter().any(|s| s["kind"] == TOOL_STEP);
        if !journaled {
            tool_step(&input, &sink, pause).await;
            // The answer may as well be streamed by a continuation (a hand-off).
            sink.safe_point().await;
        }
        let reply = format!("echo: {}", input.text);
        if bytes == 0 {
            return Ok(json!({ "reply": reply }));
        }
        if input.redo {
            // The answer may have been streaming when the last worker stopped.
            sink.discard_round(1, DiscardReason::Redo).await;
        }
        let text = long_answer(input.text, bytes);
        let mut rest = text.as_str();
        while !rest.is_empty() {
            // A piece ends on a character boundary, and always moves on by one at least.
            let piece = match prefix(rest, ECHO_PIECE_BYTES) {
                "" => rest.chars().next().map_or(rest, |c| &rest[..c.len_utf8()]),
                p => p,
            };
            sink.delta(piece).await;
            rest = &rest[piece.len()..];
        }
        Ok(json!({ "reply": reply, "text": text }))
    }
}

//! Decodes a Chat Completions event stream: text deltas, tool calls assembled from fragments by
//! `index` (so parallel calls interleave safely), usage from any chunk, mid-stream errors.

use super::wtf8::{SurrogateJoiner, Wtf8};
use crate::llm::chat::{RoundOutput, ToolCall, Usage};
use crate::llm::error::{LlmErrorKind, ProviderError, QUOTA_SPENT_CODES};
use crate::llm::sse::{SseEvent, SseParser};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The most tool calls one answer may carry: more is a runaway model, not a plan.
pub const MAX_TOOL_CALLS_PER_ROUND: usize = 16;
/// The largest arguments string of one tool call: the built-ins take a few dozen bytes.
pub const MAX_TOOL_ARGUMENT_BYTES: usize = 64 * 1024;

/// What the decoder found in a piece of the stream, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    ToolCallStarted,
}

#[derive(Debug, Default)]
struct PartialCall {
    id: Option<String>,
    name: String,
    arguments: String,
    /// Joins a surrogate pair split between two argument fragments.
    joiner: SurrogateJoiner,
}

/// The decoder's state over one response body.
#[derive(Debug, Default)]
pub struct Decoder {
    sse: SseParser,
    events: Vec<SseEvent>,
    calls: BTreeMap<u64, PartialCall>,
    /// Joins a surrogate pair split between two text chunks.
    text: SurrogateJoiner,
    usage: Option<Usage>,
    model: Option<String>,
    done: bool,
}

#[derive(Deserialize)]
struct Chunk {
    model: Option<Wtf8>,
    choices: Option<Vec<Choice>>,
    usage: Option<UsageJson>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    index: Option<u64>,
    delta: Option<Delta>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<Wtf8>,
    tool_calls: Option<Vec<CallDelta>>,
}

#[derive(Deserialize)]
struct CallDelta {
    index: Option<u64>,
    id: Option<Wtf8>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<Wtf8>,
    arguments: Option<Wtf8>,
}

#[derive(Deserialize)]
struct UsageJson {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

impl Decoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Decoder {
            sse: SseParser::new(),
            ..Decoder::default()
        }
    }

    /// Whether `[DONE]` was seen (nothing after it matters).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feeds body bytes; what they complete is appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Piece>) -> Result<(), ProviderError> {
        self.sse
            .push(bytes, &mut self.events)
            .map_err(|e| ProviderError::protocol(sse_cause(e)))?;
        self.drain(out)
    }

    /// Ends the body (with or without `[DONE]`) and returns the round's tool calls and usage.
    pub fn finish(mut self, out: &mut Vec<Piece>) -> Result<RoundOutput, ProviderError> {
        if !self.done {
            self.sse
                .finish(&mut self.events)
                .map_err(|e| ProviderError::protocol(sse_cause(e)))?;
            self.drain(out)?;
        }
        self.end_text(out);
        let tool_calls = std::mem::take(&mut self.calls)
            .into_iter()
            .map(|(index, mut c)| {
                c.joiner.finish(&mut c.arguments);
                ToolCall {
                    id: c.id.unwrap_or_else(|| format!("call_{index}")),
                    name: c.name,
                    arguments: c.arguments,
                }
            })
            .collect();
        Ok(RoundOutput {
            tool_calls,
            usage: self.usage,
            model: self.model,
        })
    }

    fn drain(&mut self, out: &mut Vec<Piece>) -> Result<(), ProviderError> {
        for event in std::mem::take(&mut self.events) {
            if self.done {
                break;
            }
            self.event(event, out)?;
        }
        Ok(())
    }

    fn event(&mut self, event: SseEvent, out: &mut Vec<Piece>) -> Result<(), ProviderError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|_| ProviderError::protocol("chunk is not the expected JSON"))?;
        if let Some(error) = &chunk.error {
            return Err(stream_error(error));
        }
        if event.event.as_deref() == Some("error") {
            return Err(ProviderError::unavailable("error event in stream"));
        }
        if let Some(model) = chunk.model.map(|m| m.lossy()).filter(|m| !m.is_empty()) {
            self.model.get_or_insert(model);
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(Usage {
                input_tokens: u.prompt_tokens.unwrap_or(0),
                output_tokens: u.completion_tokens.unwrap_or(0),
            });
        }
        // One choice is asked for (n = 1); other indexes would be other answers.
        for choice in chunk.choices.unwrap_or_default() {
            if choice.index.unwrap_or(0) != 0 {
                continue;
            }
            let Some(delta) = choice.delta else { continue };
            if let Some(text) = delta.content {
                let text = self.text.push(&text.0);
                if !text.is_empty() {
                    out.push(Piece::Text(text));
                }
            }
            for (position, call) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                self.call_fragment(position as u64, call, out)?;
            }
        }
        Ok(())
    }

    fn call_fragment(
        &mut self,
        position: u64,
        call: CallDelta,
        out: &mut Vec<Piece>,
    ) -> Result<(), ProviderError> {
        let index = call.index.unwrap_or(position);
        if !self.calls.contains_key(&index) {
            if self.calls.len() >= MAX_TOOL_CALLS_PER_ROUND {
                return Err(ProviderError::protocol("too many tool calls in one answer"));
            }
            if self.calls.is_empty() {
                self.end_text(out);
                out.push(Piece::ToolCallStarted);
            }
        }
        let partial = self.calls.entry(index).or_default();
        if let Some(id) = call.id.map(|id| id.lossy()).filter(|id| !id.is_empty()) {
            partial.id.get_or_insert(id);
        }
        if let Some(f) = call.function {
            // The name comes whole in the first fragment; some servers repeat it in later ones.
            if let Some(name) = f.name.filter(|_| partial.name.is_empty()) {
                partial.name = name.lossy();
            }
            if let Some(args) = f.arguments {
                if partial.arguments.len() + args.0.len() > MAX_TOOL_ARGUMENT_BYTES {
                    return Err(ProviderError::protocol("tool arguments too large"));
                }
                let args = partial.joiner.push(&args.0);
                partial.arguments.push_str(&args);
            }
        }
        Ok(())
    }

    /// Ends the text before a tool call or the body's end: a surrogate left waiting is U+FFFD.
    fn end_text(&mut self, out: &mut Vec<Piece>) {
        let mut rest = String::new();
        self.text.finish(&mut rest);
        if !rest.is_empty() {
            out.push(Piece::Text(rest));
        }
    }
}

fn sse_cause(e: crate::llm::sse::SseError) -> &'static str {
    match e {
        crate::llm::sse::SseError::TooLarge => "stream event too large",
        crate::llm::sse::SseError::NotUtf8 => "stream is not UTF-8",
    }
}

/// Classifies an `error` object (in a chunk or an error response body) by its code and type.
pub fn kind_for_error_object(error: &Value) -> Option<LlmErrorKind> {
    let field = |k: &str| error.get(k).and_then(Value::as_str).unwrap_or("");
    let (code, kind) = (field("code"), field("type"));
    let has = |needle: &str| code.contains(needle) || kind.contains(needle);
    Some(if has("rate_limit") || has("insufficient_quota") {
        LlmErrorKind::Throttled
    } else if has("context_length") || has("invalid_request") {
        LlmErrorKind::Invalid
    } else if has("authentication") || has("permission") || has("invalid_api_key") {
        LlmErrorKind::Permission
    } else if has("server_error") || has("overloaded") || has("unavailable") {
        LlmErrorKind::Unavailable
    } else {
        return None;
    })
}

/// The error code of an error object, if it is a short identifier (safe to log).
pub fn error_code(error: &Value) -> Option<&str> {
    ["code", "type"]
        .iter()
        .filter_map(|k| error.get(*k).and_then(Value::as_str))
        .find(|c| {
            c.len() <= 64
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        })
}

/// Whether an error object says the key's quota is spent (its code or type is one of
/// [`QUOTA_SPENT_CODES`]).
pub fn quota_spent(error: &Value) -> bool {
    ["code", "type"].iter().any(|k| {
        error
            .get(*k)
            .and_then(Value::as_str)
            .is_some_and(|c| QUOTA_SPENT_CODES.contains(&c))
    })
}

fn stream_error(error: &Value) -> ProviderError {
    let kind = kind_for_error_object(error).unwrap_or(LlmErrorKind::Unavailable);
    let detail = match error_code(error) {
        Some(code) => format!("error in stream: {code}"),
        None => "error in stream".to_owned(),
    };
    let err = ProviderError::new(kind, detail);
    if quota_spent(error) {
        err.never_clears()
    } else {
        err
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;

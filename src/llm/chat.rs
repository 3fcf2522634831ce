//! The provider-neutral conversation: messages, tool calls, one model request and what a
//! provider reports while it streams a round.

use crate::llm::error::ProviderError;
use async_trait::async_trait;
use serde_json::Value;

/// A tool call the model asked for, complete (all argument fragments joined).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    /// The provider's id for the call (generated when a server sends none).
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them (meant to be a JSON object; may be broken).
    pub arguments: String,
}

/// One message of the conversation sent to the model.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    User(String),
    Assistant {
        text: String,
        tool_calls: Vec<ToolCall>,
    },
    /// A tool's result (or error) for the call `call_id`.
    ToolResult {
        call_id: String,
        name: String,
        content: Value,
        is_error: bool,
    },
}

/// A tool as offered to the model.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// A JSON schema of the arguments object.
    pub parameters: Value,
}

/// One request to the model.
#[derive(Clone, Copy, Debug)]
pub struct ChatRequest<'a> {
    pub model: &'a str,
    pub system: Option<&'a str>,
    pub messages: &'a [Message],
    pub tools: &'a [ToolSpec],
    /// The tools stay listed (earlier rounds refer to them) but the model may not call them.
    pub tools_disabled: bool,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
}

/// Token counts a provider reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// What one streamed model request produced besides its text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoundOutput {
    pub tool_calls: Vec<ToolCall>,
    pub usage: Option<Usage>,
    /// The model that answered, as the provider named it.
    pub model: Option<String>,
}

/// Where a provider reports a round while it streams.
#[async_trait]
pub trait RoundSink: Send {
    /// A piece of text from the model; an error (the answer grew past its limit) ends the round.
    async fn text(&mut self, piece: &str) -> Result<(), ProviderError>;
    /// The model started a tool call: text from now on in this round is not the answer.
    fn tool_call_started(&mut self);
}

/// A model API: streams one request's answer into a sink.
#[async_trait]
pub trait ChatProvider: Send + Sync {
    async fn round(
        &self,
        request: &ChatRequest<'_>,
        sink: &mut dyn RoundSink,
    ) -> Result<RoundOutput, ProviderError>;

    /// Gets ready for a round while the caller does something else (opens a connection the
    /// next round can use); best effort, never an error.
    async fn prepare(&self) {}
}

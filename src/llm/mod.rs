//! The `llm` agent: a streaming chat model (OpenAI-compatible or Amazon Bedrock) with tool calls
//! and the thread's earlier turns, reporting progress through [`AgentEvents`].
//!
//! The provider client is built on the first run that needs it (once_cell), so `ping`,
//! `$connect` and echo runs pay nothing for it. Everything a run does happens inside its
//! future: dropping that future (cancel, deadline) drops the HTTP response and closes the
//! provider's stream.

pub mod agent;
pub mod bedrock;
pub mod chat;
pub mod config;
pub mod error;
pub mod executor;
pub mod http;
pub mod openai;
pub mod replay;
pub mod sse;

use crate::protocol::DiscardReason;
use async_trait::async_trait;

pub use agent::{LlmAgent, MAX_THROTTLE_WAIT, MAX_TOOL_ROUNDS, RETRY_MIN_TIME};
pub use config::{ENV_VARS, LlmConfigError, LlmSettings, Provider};
pub use error::{LlmErrorKind, LlmFailure};
pub use http::Timeouts;

/// Where the agent reports progress (the run core implements it for its `RunSink`).
#[async_trait]
pub trait AgentEvents: Send + Sync {
    /// `agent_thinking`: text the model wrote before asking for tools.
    async fn thinking(&self, thought: String);
    /// `tool_executing` of the model's call `call_id`.
    async fn tool_executing(&self, call_id: &str, tool_name: &str, parameters: serde_json::Value);
    /// `tool_completed` of the model's call `call_id`.
    async fn tool_completed(
        &self,
        call_id: &str,
        tool_name: &str,
        result: serde_json::Value,
        execution_time_ms: u64,
    );
    /// Streamed text of model round `round` (1-based); the deltas of a run that are not
    /// discarded concatenate to its result's `text`.
    async fn delta(&self, round: u32, text: &str);
    /// Every delta of `round` sent so far is withdrawn (`agent_text_discarded`).
    async fn discard_round(&self, round: u32, reason: DiscardReason);
    /// A round ended having used these tokens (recorded on the run as it goes, so a run that
    /// ends by cancel, timeout or failure still records them). `false`: a daily token budget
    /// is now spent, and the run asks for no further round.
    async fn usage(&self, _input_tokens: u64, _output_tokens: u64) -> bool {
        true
    }
    /// Journals a completed step (see [`replay`]) and returns once it is durable. Without a
    /// journal (an agent driven outside a run) there is nothing to keep.
    async fn save_step(&self, _step: serde_json::Value) {}
    /// Between rounds, with every step journaled and nothing in flight: the run may be handed
    /// to a continuation here, and then this never returns.
    async fn safe_point(&self) {}
    /// Calls of the last journaled round wait for the user's approval: a driven run is
    /// suspended here and this never returns. Without a run to suspend it returns, and the
    /// agent fails the run (nothing can answer).
    async fn await_approval(&self, _calls: Vec<crate::run::PendingApproval>) {}
}

/// One earlier turn of the thread: the user's text and the agent's final answer.
pub use crate::run::Turn as PriorTurn;

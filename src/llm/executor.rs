//! The `llm` agent as the run core sees it: an `Executor` that asks for the thread's history,
//! reporting through the run's `RunSink`, its failures mapped to client error codes.

use super::{AgentEvents, LlmAgent, LlmErrorKind};
use crate::protocol::{ClientError, DiscardReason, ErrorCode};
use crate::run::{AgentFailure, Executor, RunInput, RunSink, refuse_unknown_options};
use crate::time::now_ms;
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::time::{Duration, Instant};

/// The name the `llm` agent is registered under.
pub const LLM_AGENT: &str = "llm";

/// A slow model's pace, per output token: the README's own local model (SmolLM2-135M on
/// llama.cpp, two CPU cores) writes a 1024-token answer in about 50 s; hosted models are faster.
pub const SLOW_TOKEN_TIME: Duration = Duration::from_millis(50);
/// What a run needs besides its answer's tokens: reading the prompt and the thread's history,
/// and a few short tool rounds.
pub const PROMPT_AND_TOOLS_TIME: Duration = Duration::from_secs(10);

#[async_trait]
impl AgentEvents for RunSink {
    async fn thinking(&self, thought: String) {
        RunSink::thinking(self, thought).await;
    }

    async fn tool_executing(&self, call_id: &str, tool_name: &str, parameters: Value) {
        RunSink::tool_call_executing(self, Some(call_id), tool_name, parameters).await;
    }

    async fn tool_completed(
        &self,
        call_id: &str,
        tool_name: &str,
        result: Value,
        execution_time_ms: u64,
    ) {
        RunSink::tool_call_completed(self, Some(call_id), tool_name, result, execution_time_ms)
            .await;
    }

    async fn delta(&self, round: u32, text: &str) {
        RunSink::round_delta(self, round, text).await;
    }

    async fn discard_round(&self, round: u32, reason: DiscardReason) {
        RunSink::discard_round(self, round, reason).await;
    }

    async fn usage(&self, input_tokens: u64, output_tokens: u64) -> bool {
        RunSink::usage(self, input_tokens, output_tokens).await
    }

    async fn save_step(&self, step: Value) {
        RunSink::save_step(self, step).await;
    }

    async fn safe_point(&self) {
        RunSink::safe_point(self).await;
    }
    async fn await_approval(&self, calls: Vec<crate::run::PendingApproval>) {
        RunSink::await_approval(self, calls).await;
    }
}

/// The client's code for a provider failure.
pub fn error_code(kind: LlmErrorKind) -> ErrorCode {
    match kind {
        LlmErrorKind::Permission => ErrorCode::LlmPermission,
        LlmErrorKind::Throttled => ErrorCode::LlmThrottled,
        LlmErrorKind::Unavailable => ErrorCode::LlmUnavailable,
        LlmErrorKind::Invalid => ErrorCode::LlmInvalid,
        LlmErrorKind::Protocol => ErrorCode::LlmProtocol,
        LlmErrorKind::Budget => ErrorCode::QuotaExceeded,
    }
}

#[async_trait]
impl Executor for LlmAgent {
    /// The agent takes no per-request options yet: its settings are the function's `LLM_*`.
    fn check_options(&self, options: &Map<String, Value>) -> Result<(), ClientError> {
        refuse_unknown_options(LLM_AGENT, options, &[])
    }

    fn wants_history(&self) -> bool {
        true
    }
    fn may_suspend(&self) -> bool {
        LlmAgent::may_suspend(self)
    }
    async fn prepare(&self) {
        LlmAgent::prepare(self).await;
    }

    async fn shutdown(&self) {
        LlmAgent::shutdown(self).await;
    }

    /// `LLM_MAX_TOKENS` at a slow model's pace, plus the prompt and tool rounds: 61.2 s at the
    /// default 1024 tokens (so 28 s inline, the whole of it async).
    fn time_needed(&self) -> Option<Duration> {
        Some(SLOW_TOKEN_TIME * self.settings().max_tokens + PROMPT_AND_TOOLS_TIME)
    }

    async fn execute(&self, input: RunInput<'_>, sink: RunSink) -> Result<Value, AgentFailure> {
        let left = Duration::from_millis(input.deadline_at.saturating_sub(now_ms()));
        self.run_continued(
            input.text,
            input.history,
            &sink,
            Some(Instant::now() + left),
            super::agent::Continued {
                journal: input.journal,
                continuation: input.continuation,
                redo: input.redo,
            },
        )
        .await
        .map_err(|f| {
            let retryable = f.is_retryable();
            AgentFailure::new(error_code(f.kind), f.message, retryable)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every provider failure kind maps to the client code of the same name.
    #[test]
    fn every_kind_has_its_client_code() {
        for kind in LlmErrorKind::ALL {
            assert_eq!(error_code(kind).as_str(), kind.code());
        }
    }
}

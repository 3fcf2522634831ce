//! Client-facing errors: a stable `code`, a message safe to show, and whether retrying may help.

use crate::context::ContextError;
use crate::dispatch::DispatchErrorKind;
use crate::store::{BudgetScope, StorageError, StorageErrorKind};
use serde::{Serialize, Serializer};
use std::borrow::Cow;

/// Every error code an `error` or `agent_error` event can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not valid JSON (or not text).
    InvalidJson,
    /// The frame is JSON but not an object with a string `type`, or nests too deeply.
    InvalidFrame,
    /// `type` names no message this API knows.
    UnknownType,
    /// A required field is absent or empty.
    MissingField,
    /// A field has the wrong type or an invalid value.
    InvalidField,
    /// A field exceeds its size limit.
    FieldTooLarge,
    /// The whole message exceeds 128 KiB.
    MessageTooLarge,
    /// An id breaks the execution-context rules.
    InvalidId,
    /// No run with that id belongs to the caller.
    NotFound,
    /// The run is already in a terminal state.
    RunFinished,
    /// `agent` names no registered agent.
    UnknownAgent,
    /// The run already has as many followers as it may (`MAX_RUN_FOLLOWERS`).
    TooManyFollowers,
    /// The tool call named by `approve_tool` was already answered; nothing changed.
    AlreadyAnswered,
    /// The connection has no identity (unknown or expired connection).
    Unauthorized,
    /// The agent itself failed.
    AgentFailed,
    /// The run exceeded its time limit.
    RunTimeout,
    /// Nobody answered a tool approval within `APPROVAL_TIMEOUT_MS` (the run is `timeout`).
    ApprovalTimeout,
    /// The run streamed more answer text than one run may (`MAX_RUN_TEXT_BYTES`).
    AnswerTooLarge,
    /// The process's runs together hold all the answer text they may
    /// (`PROCESS_TEXT_BUDGET_BYTES`); retryable.
    TextBudgetExceeded,
    /// The instance shut down while the run was in flight; retryable.
    Shutdown,
    /// The run's process stopped sending heartbeats (the sweep declared it dead).
    RunDead,
    /// The model provider refused the credentials (401/403).
    LlmPermission,
    /// The model provider is rate limiting (429, Bedrock `ThrottlingException`).
    LlmThrottled,
    /// The model provider failed, could not be reached, or stalled.
    LlmUnavailable,
    /// The model provider rejected the request (400, context too long).
    LlmInvalid,
    /// The model provider's stream broke the protocol.
    LlmProtocol,
    /// A usage limit refused the request (`limit` names which); nothing was created or charged.
    QuotaExceeded,
    /// The function is misconfigured or failed internally.
    Internal,
    /// A classified storage failure: the kind's own code.
    Storage(StorageErrorKind),
    /// The hand-off of a run to its worker invocation failed: the kind's own code.
    Dispatch(DispatchErrorKind),
}

impl ErrorCode {
    /// The code as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidFrame => "invalid_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::FieldTooLarge => "field_too_large",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::InvalidId => "invalid_id",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RunFinished => "run_finished",
            ErrorCode::UnknownAgent => "unknown_agent",
            ErrorCode::TooManyFollowers => "too_many_followers",
            ErrorCode::AlreadyAnswered => "already_answered",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::AgentFailed => "agent_failed",
            ErrorCode::RunTimeout => "run_timeout",
            ErrorCode::ApprovalTimeout => "approval_timeout",
            ErrorCode::AnswerTooLarge => "answer_too_large",
            ErrorCode::TextBudgetExceeded => "text_budget_exceeded",
            ErrorCode::Shutdown => "instance_shutdown",
            ErrorCode::RunDead => "run_dead",
            ErrorCode::LlmPermission => "llm_permission",
            ErrorCode::LlmThrottled => "llm_throttled",
            ErrorCode::LlmUnavailable => "llm_unavailable",
            ErrorCode::LlmInvalid => "llm_invalid",
            ErrorCode::LlmProtocol => "llm_protocol",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::Internal => "internal",
            ErrorCode::Storage(kind) => kind.code(),
            ErrorCode::Dispatch(kind) => kind.code(),
        }
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as the client sees it: `{code, message, retryable}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    pub retryable: bool,
    /// The limit that refused the request (`quota_exceeded` only): its variable's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<&'static str>,
    /// When a retry can succeed, if known (`quota_exceeded` of a daily budget).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ClientError {
    /// A non-retryable protocol error.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        ClientError {
            code,
            message: message.into(),
            retryable: false,
            limit: None,
            retry_after_ms: None,
        }
    }

    /// `quota_exceeded` by a spent daily token budget (refusing a start, or ending a run after
    /// the round that spent it): retryable when the UTC day turns, `retry_after_ms` from now.
    pub fn budget_spent(scope: BudgetScope, retry_after_ms: u64) -> Self {
        let message = match scope {
            BudgetScope::User => {
                "your daily token budget is spent (DAILY_TOKEN_BUDGET_PER_USER); it renews at \
                 00:00 UTC"
            }
            BudgetScope::Tenant => {
                "your tenant's daily token budget is spent (DAILY_TOKEN_BUDGET_PER_TENANT); it \
                 renews at 00:00 UTC"
            }
        };
        ClientError::quota(scope.limit_name(), message, Some(retry_after_ms))
    }

    /// `quota_exceeded`: `limit` (its variable's name) refused the request, which may succeed
    /// later (when a run ends, or after `retry_after_ms`).
    pub fn quota(
        limit: &'static str,
        message: impl Into<Cow<'static, str>>,
        retry_after_ms: Option<u64>,
    ) -> Self {
        ClientError {
            limit: Some(limit),
            retry_after_ms,
            ..ClientError::new(ErrorCode::QuotaExceeded, message).retryable(true)
        }
    }

    /// Marks the error retryable.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// The run the caller asked for is not theirs or does not exist: the two are one answer.
    pub fn not_found() -> Self {
        ClientError::new(ErrorCode::NotFound, "no such run")
    }

    /// The run exceeded its time limit (retrying the request may succeed). The message names
    /// the setting, so whoever runs the function knows what to raise.
    pub fn run_timeout() -> Self {
        ClientError::new(
            ErrorCode::RunTimeout,
            "the run exceeded its time limit (RUN_TIME_LIMIT_MS; runs longer than 28 s need \
             RUN_DISPATCH=async)",
        )
        .retryable(true)
    }

    /// A storage failure as the client may see it: its kind's code and retryability, never the
    /// raw cause (which is logged).
    pub fn storage(err: &StorageError) -> Self {
        ClientError {
            code: ErrorCode::Storage(err.kind()),
            message: Cow::Borrowed(err.kind().client_message()),
            retryable: err.is_retryable(),
            limit: None,
            retry_after_ms: None,
        }
    }
}

impl From<ContextError> for ClientError {
    fn from(e: ContextError) -> Self {
        ClientError::new(ErrorCode::InvalidId, e.to_string())
    }
}

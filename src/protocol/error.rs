//! Client-facing errors: a stable `code`, a message safe to show, and whether retrying may help.

use crate::context::ContextError;
use crate::notify::PushError;
use crate::store::StorageError;
use serde::Serialize;
use std::borrow::Cow;

/// Stable error codes of the `error` and `agent_error` events that are not storage kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not valid JSON (or not text).
    InvalidJson,
    /// The frame is JSON but not an object with a string `type`.
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
    /// The connection has no identity (unknown or expired connection).
    Unauthorized,
    /// The agent itself failed.
    AgentFailed,
    /// The run exceeded its time limit.
    RunTimeout,
    /// The function is misconfigured or failed internally.
    Internal,
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
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::AgentFailed => "agent_failed",
            ErrorCode::RunTimeout => "run_timeout",
            ErrorCode::Internal => "internal",
        }
    }
}

/// An error as the client sees it: `{code, message, retryable}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientError {
    pub code: &'static str,
    pub message: Cow<'static, str>,
    pub retryable: bool,
}

impl ClientError {
    /// A non-retryable protocol error.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        ClientError {
            code: code.as_str(),
            message: message.into(),
            retryable: false,
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

    /// A storage failure as the client may see it: its kind's code and retryability, never the
    /// raw cause (which is logged).
    pub fn storage(err: &StorageError) -> Self {
        ClientError {
            code: err.code(),
            message: Cow::Borrowed(err.kind().client_message()),
            retryable: err.is_retryable(),
        }
    }

    /// A push failure as the client may see it.
    pub fn push(err: &PushError) -> Self {
        ClientError {
            code: err.code(),
            message: Cow::Borrowed("event delivery failed"),
            retryable: err.is_retryable(),
        }
    }
}

impl From<ContextError> for ClientError {
    fn from(e: ContextError) -> Self {
        ClientError::new(ErrorCode::InvalidId, e.to_string())
    }
}

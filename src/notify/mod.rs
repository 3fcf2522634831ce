//! Pushing events to connections: the `Notifier` trait and its classified failures.

pub mod apigw;
pub mod memory;

use crate::classified::{Classified, FailureKind};
use async_trait::async_trait;

/// Where a message goes: a connection behind an `@connections` endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushTarget<'a> {
    /// `https://{domainName}/{stage}` or the `CONNECTIONS_ENDPOINT` override.
    pub endpoint: &'a str,
    pub connection_id: &'a str,
}

/// What kind of push failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PushErrorKind {
    /// 410: the client is gone; its record is deleted and pushes to it stop.
    Gone,
    /// 403: the function may not post to this API (policy or endpoint mismatch).
    Forbidden,
    /// 413: the message is larger than API Gateway accepts.
    PayloadTooLarge,
    /// 429 / LimitExceeded.
    Throttled,
    /// The request could not be sent.
    Connection,
    /// The request timed out.
    Timeout,
    /// 5xx or an unrecognised failure.
    Unavailable,
}

impl PushErrorKind {
    /// The stable code used in logs, metrics and client errors.
    pub fn code(self) -> &'static str {
        match self {
            PushErrorKind::Gone => "push_gone",
            PushErrorKind::Forbidden => "push_forbidden",
            PushErrorKind::PayloadTooLarge => "push_payload_too_large",
            PushErrorKind::Throttled => "push_throttled",
            PushErrorKind::Connection => "push_connection",
            PushErrorKind::Timeout => "push_timeout",
            PushErrorKind::Unavailable => "push_unavailable",
        }
    }

    /// Whether a later push may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            PushErrorKind::Throttled
                | PushErrorKind::Connection
                | PushErrorKind::Timeout
                | PushErrorKind::Unavailable
        )
    }
}

impl FailureKind for PushErrorKind {
    fn code(self) -> &'static str {
        PushErrorKind::code(self)
    }
    fn is_retryable(self) -> bool {
        PushErrorKind::is_retryable(self)
    }
}

/// A classified push failure; `source()` keeps the raw cause.
pub type PushError = Classified<PushErrorKind>;

impl Classified<PushErrorKind> {
    /// A failure of `kind`.
    pub fn new(kind: PushErrorKind) -> Self {
        Classified::described(kind, "push", "")
    }
}

/// Sends one text message to one connection.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Posts `message` (a JSON text frame) to the target connection.
    async fn push(&self, target: PushTarget<'_>, message: &str) -> Result<(), PushError>;
}

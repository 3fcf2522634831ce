//! Classified LLM provider failures: a `Copy` kind with a stable code and retryability, the
//! client-safe failure an agent run ends with, and the detailed provider error that is logged.

use std::borrow::Cow;
use std::time::Duration;

/// What kind of provider failure happened; decides the client's code and whether a retry may help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LlmErrorKind {
    /// The provider refused the credentials (401/403, Bedrock `AccessDeniedException`).
    Permission,
    /// Rate limited (429, Bedrock `ThrottlingException`).
    Throttled,
    /// The provider failed or could not be reached: 5xx, refused or reset connections, stalls.
    Unavailable,
    /// The provider rejected the request (400, context too long, unknown model), or the model
    /// kept asking for tools past the round cap.
    Invalid,
    /// The stream broke the protocol (malformed chunk, invalid UTF-8, an oversized event).
    Protocol,
    /// Not the provider's: the run's daily token budget was spent by the round that just ended,
    /// and the model asked for another (`quota_exceeded`; the run stops before it).
    Budget,
}

impl LlmErrorKind {
    /// Every kind, for exhaustive tests.
    pub const ALL: [LlmErrorKind; 6] = [
        LlmErrorKind::Permission,
        LlmErrorKind::Throttled,
        LlmErrorKind::Unavailable,
        LlmErrorKind::Invalid,
        LlmErrorKind::Protocol,
        LlmErrorKind::Budget,
    ];

    /// The stable code sent to clients and used in logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            LlmErrorKind::Permission => "llm_permission",
            LlmErrorKind::Throttled => "llm_throttled",
            LlmErrorKind::Unavailable => "llm_unavailable",
            LlmErrorKind::Invalid => "llm_invalid",
            LlmErrorKind::Protocol => "llm_protocol",
            LlmErrorKind::Budget => "quota_exceeded",
        }
    }

    /// Whether sending the same message again later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            LlmErrorKind::Throttled | LlmErrorKind::Unavailable | LlmErrorKind::Budget
        )
    }

    /// What a client may be told: no status bodies, no keys, no prompt text.
    pub fn client_message(self) -> &'static str {
        match self {
            LlmErrorKind::Permission => "the model provider refused the agent's credentials",
            LlmErrorKind::Throttled => "the model provider is rate limiting, retry later",
            LlmErrorKind::Unavailable => "the model provider is temporarily unavailable, retry",
            LlmErrorKind::Invalid => "the model provider rejected the request",
            LlmErrorKind::Protocol => "the model provider sent an unreadable answer",
            LlmErrorKind::Budget => {
                "the daily token budget is spent; the run stopped after its round"
            }
        }
    }
}

/// What the client is told when the provider says the key's quota (credit) is spent: a 429
/// that waiting will not clear, so the run's error is not retryable.
pub const QUOTA_SPENT_MESSAGE: &str = "the model provider's quota for the agent's key is spent; retrying will not help until it is raised";

/// Why an `llm` run failed, as the client may see it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.code())]
pub struct LlmFailure {
    pub kind: LlmErrorKind,
    /// Generic and client-safe (the kind's message unless a more precise safe one applies).
    pub message: Cow<'static, str>,
    /// Whether sending the same message again may succeed: the kind's, unless the provider said
    /// that waiting cannot help (a spent quota).
    pub retryable: bool,
}

impl LlmFailure {
    /// The failure for `kind` with its generic message.
    pub fn new(kind: LlmErrorKind) -> Self {
        LlmFailure {
            kind,
            message: Cow::Borrowed(kind.client_message()),
            retryable: kind.is_retryable(),
        }
    }

    /// The client's view of a provider error: a throttle that retrying cannot clear (a spent
    /// quota) says so and is not retryable.
    pub fn of(e: &ProviderError) -> Self {
        if e.kind == LlmErrorKind::Throttled && !e.retry_allowed {
            return LlmFailure {
                kind: e.kind,
                message: Cow::Borrowed(QUOTA_SPENT_MESSAGE),
                retryable: false,
            };
        }
        LlmFailure::new(e.kind)
    }

    /// The stable code (the kind's).
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// Whether retrying may help.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

/// A classified provider error with what the log may carry: a status and a cause that never
/// contain the key, the `Authorization` header or prompt text.
#[derive(Debug, thiserror::Error)]
#[error("{}: {detail}", kind.code())]
pub struct ProviderError {
    pub kind: LlmErrorKind,
    /// The HTTP status, when there was one.
    pub status: Option<u16>,
    /// A short log-safe cause (`connect refused`, `chunk is not JSON`, an error code).
    pub detail: Cow<'static, str>,
    /// How long the provider asked us to wait before retrying (429 `Retry-After`).
    pub retry_after: Option<Duration>,
    /// Whether retrying can possibly help: `false` only for a spent quota (`insufficient_quota`,
    /// a 429 that never clears), which the client is then told (see [`LlmFailure::of`]).
    pub retry_allowed: bool,
}

impl ProviderError {
    /// An error of `kind` with a log-safe `detail`.
    pub fn new(kind: LlmErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        ProviderError {
            kind,
            status: None,
            detail: detail.into(),
            retry_after: None,
            retry_allowed: true,
        }
    }

    /// The same error with its HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// A protocol error (a stream that cannot be read).
    pub fn protocol(detail: impl Into<Cow<'static, str>>) -> Self {
        ProviderError::new(LlmErrorKind::Protocol, detail)
    }

    /// An unavailable provider (connection, stall, 5xx).
    pub fn unavailable(detail: impl Into<Cow<'static, str>>) -> Self {
        ProviderError::new(LlmErrorKind::Unavailable, detail)
    }

    /// The same error marked as one that retrying cannot clear (a spent quota).
    pub fn never_clears(mut self) -> Self {
        self.retry_allowed = false;
        self
    }
}

/// Provider error codes that mean the key's quota or credit is spent: a 429 that no wait clears.
pub const QUOTA_SPENT_CODES: &[&str] = &["insufficient_quota"];

/// The kind an HTTP error status stands for (`None` for success and informational statuses).
pub fn kind_for_status(status: u16) -> Option<LlmErrorKind> {
    Some(match status {
        401 | 403 => LlmErrorKind::Permission,
        429 => LlmErrorKind::Throttled,
        408 | 500..=599 => LlmErrorKind::Unavailable,
        400..=499 => LlmErrorKind::Invalid,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codes are unique and only throttling, unavailability and a spent budget (the next UTC
    /// day) are retryable.
    #[test]
    fn kinds_have_unique_codes_and_documented_retryability() {
        let mut codes: Vec<_> = LlmErrorKind::ALL.iter().map(|k| k.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), LlmErrorKind::ALL.len());
        let retryable: Vec<_> = LlmErrorKind::ALL
            .into_iter()
            .filter(|k| k.is_retryable())
            .collect();
        assert_eq!(
            retryable,
            vec![
                LlmErrorKind::Throttled,
                LlmErrorKind::Unavailable,
                LlmErrorKind::Budget
            ]
        );
    }

    /// HTTP statuses classify as the table says.
    #[test]
    fn statuses_classify() {
        use LlmErrorKind::*;
        let cases = [
            (200, None),
            (400, Some(Invalid)),
            (401, Some(Permission)),
            (403, Some(Permission)),
            (404, Some(Invalid)),
            (408, Some(Unavailable)),
            (413, Some(Invalid)),
            (429, Some(Throttled)),
            (500, Some(Unavailable)),
            (503, Some(Unavailable)),
        ];
        for (status, kind) in cases {
            assert_eq!(kind_for_status(status), kind, "{status}");
        }
    }
}

//! The one shape of a classified failure (storage, push, dispatch): a `Copy` kind that decides
//! the stable code and retryability, what failed, and the raw cause kept as `source()`.

use std::fmt;

/// A failure kind: the small `Copy` classification a caller branches on (as smithy's
/// `ErrorKind`), separate from the error that carries it.
pub trait FailureKind: Copy + fmt::Debug + PartialEq + Send + Sync + 'static {
    /// The stable code sent to clients and used in logs and metrics.
    fn code(self) -> &'static str;
    /// Whether the same request may succeed later.
    fn is_retryable(self) -> bool;
}

/// A classified failure of kind `K`. `Display` is short and lowercase (`{operation} failed:
/// {code}`, then the message when there is one); `source()` keeps the raw cause for logs.
pub struct Classified<K> {
    kind: K,
    operation: &'static str,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl<K: FailureKind> Classified<K> {
    /// A failure of `kind` in `operation`, described by `message` (safe to log, never shown to
    /// a client: clients get the kind's code and message).
    pub fn described(kind: K, operation: &'static str, message: impl Into<String>) -> Self {
        Classified {
            kind,
            operation,
            message: message.into(),
            source: None,
        }
    }

    /// Keeps the raw cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The failure's kind.
    pub fn kind(&self) -> K {
        self.kind
    }

    /// The stable code (the kind's).
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// Whether retrying may help (the kind's answer).
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// The operation that failed (`put_connection`, `push`, `invoke`, ...).
    pub fn operation(&self) -> &'static str {
        self.operation
    }
}

impl<K: FailureKind> fmt::Display for Classified<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.operation, self.kind.code())?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl<K: FailureKind> fmt::Debug for Classified<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classified")
            .field("kind", &self.kind)
            .field("operation", &self.operation)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl<K: FailureKind> std::error::Error for Classified<K> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

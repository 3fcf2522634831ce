//! Classified storage failures: one error type with a `Copy` kind, a stable code and retryability.

use crate::classified::{Classified, FailureKind};

/// What kind of storage failure happened; decides what the client is told and what is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageErrorKind {
    /// A conditional write's condition failed (another writer got there first).
    Conflict,
    /// A write met an item that another transaction holds (the original platform's
    /// `DeadlockError`): a plain `PutItem` while anyone's transaction holds the item, or one of
    /// wsexec's own transactions (the active-run counter moves with a run's create and end)
    /// cancelled for `TransactionConflict` past its bounded retries.
    Contention,
    /// A transaction DynamoDB cancelled for a reason that is neither a failed condition (the
    /// caller's answer), contention, throttling nor an invalid item: the reasons are logged.
    Transaction,
    /// Capacity or request-rate limits.
    Throttled,
    /// The request could not be sent or the connection broke.
    Connection,
    /// The operation or an attempt timed out.
    Timeout,
    /// The service failed (5xx).
    Unavailable,
    /// Credentials are missing, expired or not allowed.
    Permission,
    /// The table or an index does not exist or has another shape.
    Schema,
    /// The request itself is invalid (bad value, item too large).
    Invalid,
}

impl StorageErrorKind {
    /// Every kind, for exhaustive tests.
    pub const ALL: [StorageErrorKind; 10] = [
        StorageErrorKind::Conflict,
        StorageErrorKind::Contention,
        StorageErrorKind::Transaction,
        StorageErrorKind::Throttled,
        StorageErrorKind::Connection,
        StorageErrorKind::Timeout,
        StorageErrorKind::Unavailable,
        StorageErrorKind::Permission,
        StorageErrorKind::Schema,
        StorageErrorKind::Invalid,
    ];

    /// The stable code sent to clients and used in logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            StorageErrorKind::Conflict => "conflict",
            StorageErrorKind::Contention => "contention",
            StorageErrorKind::Transaction => "storage_transaction",
            StorageErrorKind::Throttled => "throttled",
            StorageErrorKind::Connection => "storage_connection",
            StorageErrorKind::Timeout => "storage_timeout",
            StorageErrorKind::Unavailable => "storage_unavailable",
            StorageErrorKind::Permission => "storage_permission",
            StorageErrorKind::Schema => "storage_schema",
            StorageErrorKind::Invalid => "storage_invalid",
        }
    }

    /// Whether retrying the same request may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            StorageErrorKind::Contention
                | StorageErrorKind::Throttled
                | StorageErrorKind::Connection
                | StorageErrorKind::Timeout
                | StorageErrorKind::Unavailable
        )
    }

    /// What a client may be told: no table names, no causes.
    pub fn client_message(self) -> &'static str {
        match self {
            StorageErrorKind::Conflict => "the run changed concurrently",
            StorageErrorKind::Contention => "storage is busy, retry",
            StorageErrorKind::Transaction => "internal storage error",
            StorageErrorKind::Throttled => "too many requests, retry",
            StorageErrorKind::Connection
            | StorageErrorKind::Timeout
            | StorageErrorKind::Unavailable => "storage is temporarily unavailable, retry",
            StorageErrorKind::Permission | StorageErrorKind::Schema | StorageErrorKind::Invalid => {
                "internal storage error"
            }
        }
    }
}

/// DynamoDB error codes per kind, checked after the transport variants.
pub const CONFLICT_ERRORS: &[&str] = &["ConditionalCheckFailedException"];
/// A single-item write meeting another transaction, or a transaction still in progress.
pub const CONTENTION_ERRORS: &[&str] = &[
    "TransactionConflictException",
    "TransactionInProgressException",
];
/// A cancelled transaction, when nothing read its per-item reasons (`dynamo::transact` does,
/// and classifies each).
pub const TRANSACTION_ERRORS: &[&str] = &["TransactionCanceledException"];
/// Throttling, as the SDK's own retry classifier lists it plus DynamoDB's capacity errors.
pub const THROTTLING_ERRORS: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "SlowDown",
];
/// Service-side failures.
pub const UNAVAILABLE_ERRORS: &[&str] = &[
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];
/// Credential and authorisation failures.
pub const PERMISSION_ERRORS: &[&str] = &[
    "AccessDeniedException",
    "UnrecognizedClientException",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
    "IncompleteSignatureException",
    "InvalidClientTokenId",
    "ExpiredToken",
];
/// Missing table or index.
pub const SCHEMA_ERRORS: &[&str] = &["ResourceNotFoundException"];
/// Invalid requests.
pub const INVALID_ERRORS: &[&str] = &[
    "ValidationException",
    "ItemCollectionSizeLimitExceededException",
    "SerializationException",
];

/// Classifies a DynamoDB service error code (and message, for `ValidationException`s that are
/// really schema mismatches). `None` for codes this table does not know.
pub fn kind_for_service_code(code: &str, message: &str) -> Option<StorageErrorKind> {
    let is = |table: &[&str]| table.contains(&code);
    Some(if is(CONFLICT_ERRORS) {
        StorageErrorKind::Conflict
    } else if is(CONTENTION_ERRORS) {
        StorageErrorKind::Contention
    } else if is(TRANSACTION_ERRORS) {
        StorageErrorKind::Transaction
    } else if is(THROTTLING_ERRORS) {
        StorageErrorKind::Throttled
    } else if is(UNAVAILABLE_ERRORS) {
        StorageErrorKind::Unavailable
    } else if is(PERMISSION_ERRORS) {
        StorageErrorKind::Permission
    } else if is(SCHEMA_ERRORS) {
        StorageErrorKind::Schema
    } else if is(INVALID_ERRORS) {
        if is_schema_validation(message) {
            StorageErrorKind::Schema
        } else {
            StorageErrorKind::Invalid
        }
    } else {
        return None;
    })
}

/// `ValidationException` messages that mean the table's shape differs from the code's.
fn is_schema_validation(message: &str) -> bool {
    const SCHEMA_HINTS: &[&str] = &[
        "does not have the specified index",
        "provided key element does not match the schema",
        "Query condition missed key schema element",
        "key schema",
    ];
    let m = message.to_ascii_lowercase();
    SCHEMA_HINTS
        .iter()
        .any(|h| m.contains(&h.to_ascii_lowercase()))
}

impl FailureKind for StorageErrorKind {
    fn code(self) -> &'static str {
        StorageErrorKind::code(self)
    }
    fn is_retryable(self) -> bool {
        StorageErrorKind::is_retryable(self)
    }
}

/// A classified storage failure. `Display` is short; `source()` keeps the raw cause for logs.
pub type StorageError = Classified<StorageErrorKind>;

impl Classified<StorageErrorKind> {
    /// A new error of `kind` from `operation` (`put_connection`, `update_run`, ...).
    pub fn new(
        kind: StorageErrorKind,
        operation: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Classified::described(kind, operation, message)
    }

    /// A conditional-write conflict.
    pub fn conflict(operation: &'static str) -> Self {
        StorageError::new(StorageErrorKind::Conflict, operation, "condition failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code in the const tables classifies to its table's kind.
    #[test]
    fn service_codes_classify_by_table() {
        let tables: [(&[&str], StorageErrorKind); 8] = [
            (CONFLICT_ERRORS, StorageErrorKind::Conflict),
            (CONTENTION_ERRORS, StorageErrorKind::Contention),
            (TRANSACTION_ERRORS, StorageErrorKind::Transaction),
            (THROTTLING_ERRORS, StorageErrorKind::Throttled),
            (UNAVAILABLE_ERRORS, StorageErrorKind::Unavailable),
            (PERMISSION_ERRORS, StorageErrorKind::Permission),
            (SCHEMA_ERRORS, StorageErrorKind::Schema),
            (INVALID_ERRORS, StorageErrorKind::Invalid),
        ];
        for (table, kind) in tables {
            for code in table {
                assert_eq!(kind_for_service_code(code, "x"), Some(kind), "{code}");
            }
        }
        assert_eq!(kind_for_service_code("SomethingNew", ""), None);
        assert_eq!(
            kind_for_service_code(
                "ValidationException",
                "The table does not have the specified index: alive"
            ),
            Some(StorageErrorKind::Schema)
        );
    }

    /// Codes are unique and retryability matches DESIGN.md's table.
    #[test]
    fn kinds_have_unique_codes_and_documented_retryability() {
        let mut codes: Vec<_> = StorageErrorKind::ALL.iter().map(|k| k.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), StorageErrorKind::ALL.len());
        let retryable: Vec<_> = StorageErrorKind::ALL
            .into_iter()
            .filter(|k| k.is_retryable())
            .collect();
        use StorageErrorKind::*;
        assert_eq!(
            retryable,
            vec![Contention, Throttled, Connection, Timeout, Unavailable]
        );
    }
}

//! Classifying the DynamoDB SDK's failures into [`StorageError`] kinds: transport first, then the
//! service error code against the const tables, then the HTTP status.

use crate::store::error::kind_for_service_code;
use crate::store::{StorageError, StorageErrorKind};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

/// Classifies an SDK error: transport variants first, then the service error code against the
/// const tables, then the HTTP status.
pub fn classify<E>(op: &'static str, table: &str, err: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, message) = match &err {
        SdkError::TimeoutError(_) => (StorageErrorKind::Timeout, "timed out".to_owned()),
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            (StorageErrorKind::Timeout, "attempt timed out".to_owned())
        }
        SdkError::DispatchFailure(d) if d.is_user() => (
            StorageErrorKind::Invalid,
            "request could not be built".to_owned(),
        ),
        SdkError::DispatchFailure(_) => (
            StorageErrorKind::Connection,
            "request could not be sent".to_owned(),
        ),
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            let kind = if status >= 500 || status == 200 {
                StorageErrorKind::Unavailable
            } else {
                StorageErrorKind::Invalid
            };
            (kind, format!("unreadable response (HTTP {status})"))
        }
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("");
            let msg = s.err().message().unwrap_or("");
            let status = s.raw().status().as_u16();
            let kind = kind_for_service_code(code, msg).unwrap_or(match status {
                500.. => StorageErrorKind::Unavailable,
                429 => StorageErrorKind::Throttled,
                401 | 403 => StorageErrorKind::Permission,
                _ => StorageErrorKind::Invalid,
            });
            let message = if kind == StorageErrorKind::Schema {
                format!("{code} on table {table}: {msg}")
            } else {
                format!("{code}: {msg}")
            };
            (kind, message)
        }
        SdkError::ConstructionFailure(_) => (
            StorageErrorKind::Invalid,
            "request could not be built".to_owned(),
        ),
        _ => (
            StorageErrorKind::Unavailable,
            "unrecognised failure".to_owned(),
        ),
    };
    StorageError::new(kind, op, message).with_source(err)
}

//! The one error path of every command: what went wrong, logged and turned into the client's
//! `error` reply in one place ([`CmdError::into_reply`]), as axum's `IntoResponse` does.

use crate::context::ContextError;
use crate::manager::InitError;
use crate::protocol::{ClientError, Reply};
use crate::store::StorageError;
use crate::telemetry::log_storage;

/// Why a command could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The client is told exactly this (`not_found`, `invalid_id`, `run_finished`, ...); a
    /// client's mistake or a run's state, nothing to log.
    #[error("refused: {}: {}", .0.code, .0.message)]
    Refused(ClientError),
    /// A classified storage failure: the client gets its code, the log its raw cause.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The configuration is unusable (the store's own build failures are `Storage`).
    #[error(transparent)]
    Init(InitError),
}

impl From<InitError> for CmdError {
    fn from(e: InitError) -> Self {
        match e {
            InitError::Store(s) => CmdError::Storage(s),
            other => CmdError::Init(other),
        }
    }
}

impl From<ClientError> for CmdError {
    fn from(e: ClientError) -> Self {
        CmdError::Refused(e)
    }
}

impl From<ContextError> for CmdError {
    fn from(e: ContextError) -> Self {
        CmdError::Refused(e.into())
    }
}

impl CmdError {
    /// What the client is told: never a raw cause.
    pub fn client_error(&self) -> ClientError {
        match self {
            CmdError::Refused(e) => e.clone(),
            CmdError::Storage(e) => ClientError::storage(e),
            CmdError::Init(e) => e.client_error(),
        }
    }

    /// Logs the failure (storage failures with their cause and counted, failed initialisation
    /// as an error) and returns the `error` reply to the client's `request_id`.
    pub fn into_reply(self, request_id: Option<&str>) -> Reply {
        match &self {
            CmdError::Refused(_) => {}
            CmdError::Storage(e) => log_storage(e),
            CmdError::Init(e) => tracing::error!(error = %e, "initialisation failed"),
        }
        Reply::error(request_id, &self.client_error())
    }
}

//! Pushing a run's events to connections, handling gone clients and classifying failures.

use crate::limits::MAX_MESSAGE_BYTES;
use crate::manager::Manager;
use crate::notify::{PushErrorKind, PushTarget};
use crate::protocol::outbound::fit_to_limit;
use crate::store::ConnectionRecord;
use crate::telemetry::metrics;

/// The push side of one run: one connection, silenced once the client is gone.
pub struct Channel<'m> {
    mgr: &'m Manager,
    endpoint: String,
    connection_id: String,
    gone: bool,
}

impl<'m> Channel<'m> {
    /// A channel to `connection_id` behind `endpoint`.
    pub fn new(mgr: &'m Manager, endpoint: &str, connection_id: &str) -> Self {
        Channel {
            mgr,
            endpoint: endpoint.to_owned(),
            connection_id: connection_id.to_owned(),
            gone: false,
        }
    }

    /// The connection this channel pushes to.
    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }

    /// Pushes one message; returns whether it was delivered. A 410 deletes the connection's
    /// record and silences the channel; other failures are logged and counted, and the run goes on.
    pub async fn send(&mut self, message: &str) -> bool {
        if self.gone {
            return false;
        }
        match push_one(self.mgr, &self.endpoint, &self.connection_id, message).await {
            Ok(()) => true,
            Err(kind) => {
                self.gone = kind == PushErrorKind::Gone;
                false
            }
        }
    }
}

/// Pushes one message to one connection. A 410 removes the connection's record and cached
/// identity; every failure is logged and counted, and its kind returned.
pub async fn push_one(
    mgr: &Manager,
    endpoint: &str,
    connection_id: &str,
    message: &str,
) -> Result<(), PushErrorKind> {
    let target = PushTarget {
        endpoint,
        connection_id,
    };
    // API Gateway refuses larger messages: never send one whole.
    let message = fit_to_limit(message, MAX_MESSAGE_BYTES);
    let Err(e) = mgr.notifier().push(target, &message).await else {
        return Ok(());
    };
    metrics::push_error(e.kind());
    if e.kind() == PushErrorKind::Gone {
        tracing::info!(connection_id, "connection gone; removing its record");
        mgr.forget(connection_id);
        match mgr.store() {
            Ok(store) => {
                if let Err(se) = store.delete_connection(connection_id).await {
                    metrics::storage_error(se.kind());
                    tracing::warn!(error = ?se, code = se.code(), "cannot remove gone connection");
                }
            }
            Err(ie) => tracing::warn!(error = %ie, "cannot remove gone connection"),
        }
    } else {
        tracing::warn!(
            connection_id,
            code = e.code(),
            retryable = e.is_retryable(),
            error = ?e,
            "push failed"
        );
    }
    Err(e.kind())
}

/// Pushes `message` to every live connection of the run's owner (sweep notices).
pub async fn push_to_connections(
    mgr: &Manager,
    conns: &[ConnectionRecord],
    fallback_endpoint: &str,
    message: &str,
) {
    for c in conns {
        let endpoint = c.endpoint.as_deref().unwrap_or(fallback_endpoint);
        let _ = push_one(mgr, endpoint, &c.connection_id, message).await;
    }
}

//! Pushing a run's events: to its connection (silenced once gone), and bounded notices to an
//! owner's connections about runs that ended elsewhere.

use super::RunDeps;
use crate::limits::{MAX_MESSAGE_BYTES, MAX_NOTICE_TARGETS, NOTICE_BUDGET};
use crate::notify::{PushErrorKind, PushTarget};
use crate::protocol::outbound::fit_to_limit;
use crate::store::ConnectionRecord;
use crate::telemetry::{log_storage, metrics};

/// The push side of one run: one connection, silenced once the client is gone.
pub struct Channel<'d> {
    deps: RunDeps<'d>,
    endpoint: &'d str,
    connection_id: &'d str,
    gone: bool,
}

impl<'d> Channel<'d> {
    /// A channel to `connection_id` behind `endpoint`.
    pub fn new(deps: RunDeps<'d>, endpoint: &'d str, connection_id: &'d str) -> Self {
        Channel {
            deps,
            endpoint,
            connection_id,
            gone: false,
        }
    }

    /// The connection this channel pushes to.
    pub fn connection_id(&self) -> &str {
        self.connection_id
    }

    /// Pushes one message; returns whether it was delivered. A gone client silences the
    /// channel; other failures are logged and counted, and the run goes on.
    pub async fn send(&mut self, message: &str) -> bool {
        if self.gone {
            return false;
        }
        match push_one(&self.deps, self.endpoint, self.connection_id, message).await {
            Ok(()) => true,
            Err(kind) => {
                self.gone = kind == PushErrorKind::Gone;
                false
            }
        }
    }
}

/// Whether a notice round gives up on a connection: gone (410), or its endpoint refuses
/// connections (a record left by a gateway that is no more). Only a 410 deletes the record: a
/// refused connect may be a passing fault, and deleting a live connection's record would log
/// its user out.
fn unreachable(kind: PushErrorKind) -> bool {
    matches!(kind, PushErrorKind::Gone | PushErrorKind::Connection)
}

/// Pushes one message to one connection. A gone connection (410) loses its record and cached
/// identity; every failure is logged and counted, and its kind returned.
pub async fn push_one(
    deps: &RunDeps<'_>,
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
    let Err(e) = deps.notifier.push(target, &message).await else {
        return Ok(());
    };
    metrics::push_error(e.kind());
    if e.kind() == PushErrorKind::Gone {
        tracing::info!(connection_id, "connection gone; removing its record");
        deps.identities.forget(connection_id);
        if let Err(se) = deps.store.delete_connection(connection_id).await {
            log_storage(&se);
        }
        return Err(PushErrorKind::Gone);
    }
    tracing::warn!(
        connection_id,
        code = e.code(),
        retryable = e.is_retryable(),
        error = ?e,
        "push failed"
    );
    Err(e.kind())
}

/// Pushes each `(connection, message)` notice at once, at most [`MAX_NOTICE_TARGETS`]
/// connections and [`NOTICE_BUDGET`] in all: notices are best effort and must never hold up the
/// reply or sweep that sends them. Returns how many were delivered.
pub async fn notify(
    deps: &RunDeps<'_>,
    conns: &[ConnectionRecord],
    fallback_endpoint: &str,
    messages: &[String],
) -> usize {
    let pushes = conns.iter().take(MAX_NOTICE_TARGETS).map(|c| async move {
        let endpoint = c.endpoint.as_deref().unwrap_or(fallback_endpoint);
        let mut delivered = 0;
        for m in messages {
            match push_one(deps, endpoint, &c.connection_id, m).await {
                Ok(()) => delivered += 1,
                Err(kind) if unreachable(kind) => break,
                Err(_) => {}
            }
        }
        delivered
    });
    match tokio::time::timeout(NOTICE_BUDGET, futures_util::future::join_all(pushes)).await {
        Ok(counts) => counts.into_iter().sum(),
        Err(_) => {
            tracing::warn!("owner notices cut off at their time budget");
            0
        }
    }
}

//! `$disconnect`: remove the connection's record; best effort, always 200.

use super::{Handled, Invocation};
use crate::event::WsResponse;
use crate::manager::Manager;

/// Handles `$disconnect`. AWS does not guarantee its delivery, so the record also has a TTL;
/// a failure here is logged, never returned (API Gateway ignores the response anyway).
/// The user is known only when this instance cached the connection's identity.
pub async fn handle(mgr: &Manager, inv: &Invocation<'_>) -> Handled {
    let identity = mgr.forget(inv.connection_id);
    match mgr.store() {
        Ok(store) => {
            if let Err(e) = store.delete_connection(inv.connection_id).await {
                crate::telemetry::log_storage(&e);
            }
        }
        Err(e) => tracing::error!(error = %e, "store unavailable"),
    }
    Handled {
        user_id: identity.map(|i| i.user_id),
        ..Handled::from(WsResponse::status(200))
    }
}

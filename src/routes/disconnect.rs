//! `$disconnect`: remove the connection's record; best effort, always 200.

use super::Invocation;
use crate::event::WsResponse;
use crate::manager::Manager;

/// Handles `$disconnect`. AWS does not guarantee its delivery, so the record also has a TTL;
/// a failure here is logged, never returned (API Gateway ignores the response anyway).
pub async fn handle(mgr: &Manager, inv: &Invocation<'_>) -> WsResponse {
    mgr.forget(inv.connection_id);
    match mgr.store() {
        Ok(store) => {
            if let Err(e) = store.delete_connection(inv.connection_id).await {
                crate::run::driver::log_storage(&e);
            }
        }
        Err(e) => tracing::error!(error = %e, "store unavailable"),
    }
    WsResponse::status(200)
}

//! `$disconnect`: remove the connection's record and the run attachments this instance made for
//! it; best effort, always 200.

use super::{Handled, Invocation};
use crate::event::WsResponse;
use crate::manager::Manager;
use crate::run::follow::leave;

/// Handles `$disconnect`. AWS does not guarantee its delivery, so the record also has a TTL;
/// a failure here is logged, never returned (API Gateway ignores the response anyway).
/// The user is known only when this instance cached the connection's identity.
pub async fn handle(mgr: &Manager, inv: &Invocation<'_>) -> Handled {
    let identity = mgr.forget(inv.connection_id);
    match mgr.run_deps() {
        Ok(deps) => {
            if let Err(e) = deps.store.delete_connection(inv.connection_id).await {
                crate::telemetry::log_storage(&e);
            }
            // Runs this instance attached the connection to by `resume`.
            let followed = deps.attached.take(inv.connection_id);
            if let Some(who) = &identity {
                for run_id in &followed {
                    let left = leave(deps.store, who.owner(), run_id, inv.connection_id).await;
                    if let Err(e) = left {
                        crate::telemetry::log_storage(&e);
                    }
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "store unavailable"),
    }
    Handled {
        user_id: identity.map(|i| i.user_id),
        ..Handled::from(WsResponse::status(200))
    }
}

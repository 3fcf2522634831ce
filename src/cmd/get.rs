//! `get_execution`: the caller's run, never reported alive once its process died.

use super::Caller;
use crate::manager::Manager;
use crate::protocol::{ClientError, Event, ExecutionView, Reply};
use crate::sweep::reap;
use crate::telemetry::log_storage;
use crate::time::now_ms;

/// The caller's run as an `execution`, or `not_found` (another user's run included).
pub async fn apply(mgr: &Manager, caller: &Caller<'_>, run_id: &str) -> Reply {
    let run_id = match caller.id(mgr, "run_id", run_id) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let deps = match mgr.run_deps() {
        Ok(d) => d,
        Err(e) => return caller.error(&e.client_error()),
    };
    match deps.store.get_run(&caller.who.user_id, run_id).await {
        Ok(Some(run)) => {
            let run = match reap(&deps, &run, now_ms()).await {
                Ok(reaped) => reaped.into_run(),
                Err(e) => {
                    log_storage(&e);
                    run
                }
            };
            Reply::about(&run, Event::Execution(ExecutionView::of(&run, false)))
        }
        Ok(None) => caller.error(&ClientError::not_found()),
        Err(e) => {
            log_storage(&e);
            caller.error(&ClientError::storage(&e))
        }
    }
}

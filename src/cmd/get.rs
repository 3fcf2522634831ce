//! `get_execution`: the caller's run, never reported alive once its process died.

use super::Caller;
use crate::manager::Manager;
use crate::protocol::{ClientError, Event, ExecutionView, Reply};
use crate::run::RunDeps;
use crate::store::RunRecord;
use crate::sweep::reap;
use crate::telemetry::log_storage;
use crate::time::now_ms;

/// The caller's run as an `execution`, or `not_found` (another user's run included).
pub async fn apply(mgr: &Manager, caller: &Caller<'_>, run_id: &str) -> Reply {
    match owned_run(mgr, caller, run_id).await {
        Ok((_, run)) => Reply::about(&run, Event::Execution(ExecutionView::of(&run, false))),
        Err(reply) => reply,
    }
}

/// The caller's run `run_id` by the one id rule, ended first if overdue, with the run layer's
/// dependencies; `not_found` for another user's run exactly as for none, or the storage
/// failure, as the reply.
pub async fn owned_run<'m>(
    mgr: &'m Manager,
    caller: &Caller<'_>,
    run_id: &str,
) -> Result<(RunDeps<'m>, RunRecord), Reply> {
    let run_id = caller.id(mgr, "run_id", run_id)?;
    let deps = mgr
        .run_deps()
        .map_err(|e| caller.error(&e.client_error()))?;
    match deps.store.get_run(&caller.who.user_id, run_id).await {
        Ok(Some(run)) => match reap(&deps, &run, now_ms()).await {
            Ok(reaped) => Ok((deps, reaped.into_run())),
            Err(e) => {
                log_storage(&e);
                Ok((deps, run))
            }
        },
        Ok(None) => Err(caller.error(&ClientError::not_found())),
        Err(e) => {
            log_storage(&e);
            Err(caller.error(&ClientError::storage(&e)))
        }
    }
}

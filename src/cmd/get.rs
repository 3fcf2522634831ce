//! `get_execution`: the caller's run, never reported alive once its process died.

use super::{Caller, CmdError};
use crate::limits::MAX_ID_FIELD_BYTES;
use crate::manager::Manager;
use crate::protocol::inbound::{Fields, required};
use crate::protocol::{ClientError, Event, ExecutionView, Reply};
use crate::run::RunDeps;
use crate::store::RunRecord;
use crate::sweep::reap;
use crate::telemetry::log_storage;
use crate::time::now_ms;
use std::borrow::Cow;

/// `get_execution {run_id}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Get<'a> {
    pub run_id: Cow<'a, str>,
}

impl<'a> Get<'a> {
    /// Reads `run_id` (required; the id rule judges it in `apply`).
    pub fn parse(f: Fields<'a>) -> Result<Self, ClientError> {
        Ok(Get {
            run_id: required("run_id", f.run_id, MAX_ID_FIELD_BYTES)?,
        })
    }

    /// The caller's run as an `execution`, or `not_found` (another user's run included).
    pub async fn apply(self, mgr: &Manager, caller: &Caller<'_>) -> Result<Reply, CmdError> {
        let (_, run) = owned_run(mgr, caller, &self.run_id).await?;
        Ok(Reply::about(
            &run,
            Event::Execution(ExecutionView::of(&run, false)),
        ))
    }
}

/// The caller's run `run_id` by the one id rule, ended first if overdue, with the run layer's
/// dependencies; `not_found` for another owner's run (another user's, or the same user id's
/// in another tenant) exactly as for none.
pub async fn owned_run<'m>(
    mgr: &'m Manager,
    caller: &Caller<'_>,
    run_id: &str,
) -> Result<(RunDeps<'m>, RunRecord), CmdError> {
    let run_id = caller.id(mgr, "run_id", run_id)?;
    let deps = mgr.run_deps()?;
    let Some(run) = deps.store.get_run(caller.who.owner(), run_id).await? else {
        return Err(ClientError::not_found().into());
    };
    // A run that cannot be ended now is shown as read; the sweep ends it later.
    let run = match reap(&deps, &run, now_ms()).await {
        Ok(reaped) => reaped.into_run(),
        Err(e) => {
            log_storage(&e);
            run
        }
    };
    Ok((deps, run))
}

//! `resume`: the caller's run as an `execution` snapshot (its latest `seq` and, while alive,
//! the text streamed so far), and for an alive run the caller's connection attached as a
//! follower, so the run's driver pushes it every event after `after_seq`.
//!
//! The attachment lives on the run item itself (in the owner's partition, so only the owner
//! can attach; no index): one conditional write that bumps the run's version, which makes the
//! driver's next heartbeat conflict and so learn of the follower without any per-event read.

use super::Caller;
use super::get::owned_run;
use crate::limits::RESUME_ATTEMPTS;
use crate::manager::Manager;
use crate::protocol::{ClientError, ErrorCode, Event, ExecutionView, Reply};
use crate::run::follow::{AttachError, attach};
use crate::run::{WriteOutcome, next_version, write_run};
use crate::state::RunEvent;
use crate::store::{Expected, RunRecord, StorageError};
use crate::telemetry::log_storage;
use crate::time::now_ms;

/// Replies the caller's run (`not_found` for another user's, exactly as for none); attaches
/// the caller's connection while the run is alive, nothing once it has finished.
pub async fn apply(
    mgr: &Manager,
    caller: &Caller<'_>,
    run_id: &str,
    after_seq: Option<u64>,
) -> Reply {
    let (deps, mut run) = match owned_run(mgr, caller, run_id).await {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    // A heartbeat may bump the version between the read and the write: attach on what the
    // primitive hands back.
    for _ in 0..RESUME_ATTEMPTS {
        if run.state.is_terminal() {
            return snapshot(&run);
        }
        let now = now_ms();
        let Some(mut next) = next_version(&run, &[RunEvent::Heartbeat], now) else {
            return snapshot(&run);
        };
        let origin = caller.origin;
        let has = after_seq.unwrap_or(run.seq);
        next.followers = match attach(&run, origin.connection_id, origin.endpoint, has, now / 1000)
        {
            Ok(f) => f,
            Err(AttachError::Full) => {
                let e = ClientError::new(
                    ErrorCode::TooManyFollowers,
                    "the run has too many followers",
                );
                return caller.error(&e);
            }
        };
        match write_run(deps.store, next, Expected::of(&run)).await {
            WriteOutcome::Written(r) | WriteOutcome::Landed(r) => {
                deps.identities.follows(origin.connection_id, &r.run_id);
                return snapshot(&r);
            }
            WriteOutcome::Conflict(current) => run = current,
            WriteOutcome::Failed(e) => {
                log_storage(&e);
                return caller.error(&ClientError::storage(&e));
            }
        }
    }
    caller.error(&ClientError::storage(&StorageError::conflict("resume_run")))
}

fn snapshot(run: &RunRecord) -> Reply {
    Reply::about(run, Event::Execution(ExecutionView::of(run, false)))
}

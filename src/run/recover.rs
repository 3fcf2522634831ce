//! Continuing a run whose worker died: instead of `dead`, the sweep (or a read that finds the
//! run stale) hands it to a new worker invocation, which replays the run's journal.

use super::{RunDeps, WriteOutcome, next_version, write_run};
use crate::state::{ExecutionState, RunEvent};
use crate::store::{Expected, RunRecord, StorageError};
use crate::telemetry::metrics;

/// Continuations after a worker's death per run: a run whose step kills its worker every time
/// (an out-of-memory tool result, a crash in a parser) must not loop; two retries of the step
/// that died cover a lost instance (a scale-in, a host failure) twice over, and the third
/// death ends the run `dead` as before.
pub const MAX_CONTINUATIONS: u64 = 3;

/// What became of a stale run offered for recovery.
#[derive(Debug)]
pub enum Recovery {
    /// The run may not be continued (not `running`, no worker can be invoked here, or its
    /// recoveries are spent): it dies as before.
    Refused,
    /// The run was handed to a new worker; as it is stored now.
    Continued(RunRecord),
    /// Another writer changed the run first; as it is stored now.
    Raced(RunRecord),
}

/// Hands the stale `run` to continuation `continuations + 1`: a conditional write releases the
/// claim (so exactly one worker can claim it next) and renews its heartbeat deadline (so the
/// sweep looks again only if that worker never comes), then the worker is invoked. An invoke
/// that fails is logged: the run stays unclaimed and the next sweep tries again, counted.
pub async fn recover(
    deps: &RunDeps<'_>,
    run: &RunRecord,
    now_ms: u64,
) -> Result<Recovery, StorageError> {
    let Some(relay) = deps.relay else {
        return Ok(Recovery::Refused);
    };
    if run.state != ExecutionState::Running || run.recoveries >= MAX_CONTINUATIONS {
        return Ok(Recovery::Refused);
    }
    let Some(mut next) = next_version(run, &[RunEvent::Heartbeat], now_ms) else {
        return Ok(Recovery::Refused);
    };
    next.claimed_by = None;
    next.continuations += 1;
    next.recoveries += 1;
    next.continued_at = now_ms;
    next.stale_at = now_ms + deps.limits.heartbeat_deadline.as_millis() as u64;
    let next = match write_run(deps.store, next, Expected::of(run)).await {
        WriteOutcome::Written(r) | WriteOutcome::Landed(r) => r,
        WriteOutcome::Conflict(current) => return Ok(Recovery::Raced(current)),
        WriteOutcome::Failed(e) => return Err(e),
    };
    metrics::run_continued("recovery");
    tracing::info!(
        run_id = %next.run_id,
        continuation = next.continuations,
        recoveries = next.recoveries,
        "run continued after its worker died"
    );
    let n = next.continuations;
    if let Err(e) = relay.continue_run(next.owner(), &next.run_id, n).await {
        tracing::warn!(code = e.kind().code(), error = ?e, "continuation dispatch failed");
    }
    Ok(Recovery::Continued(next))
}

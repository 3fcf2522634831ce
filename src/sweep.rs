//! The sweep: alive runs past their heartbeat deadline become `dead`, past their time limit
//! `timeout`; the owner's connections are told. Runs on a schedule and on every read of a run.

use crate::limits::{ALIVE_SHARDS, SWEEP_BATCH};
use crate::manager::Manager;
use crate::protocol::ClientError;
use crate::protocol::ErrorCode;
use crate::protocol::EventType;
use crate::protocol::outbound::AgentDeath;
use crate::run::channel::push_to_connections;
use crate::run::driver::{agent_error, log_storage, next_version, run_event};
use crate::state::ExecutionState;
use crate::store::{Expected, RunError, RunRecord, StorageError, StorageErrorKind};
use crate::telemetry::metrics;
use serde::Serialize;

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Due runs read from the `alive` index.
    pub examined: usize,
    /// Runs this sweep marked `dead`.
    pub dead: usize,
    /// Runs this sweep marked `timeout`.
    pub timed_out: usize,
    /// Runs that changed between the read and the write (left as the other writer left them).
    pub skipped: usize,
    /// Storage failures (the runs stay due and are retried by the next sweep).
    pub errors: usize,
}

/// One bounded sweep: at most `SWEEP_BATCH` due runs per shard, through the sparse index.
pub async fn sweep(mgr: &Manager, now_ms: u64) -> SweepReport {
    let mut report = SweepReport::default();
    let store = match mgr.store() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "sweep: store unavailable");
            report.errors += 1;
            return report;
        }
    };
    for shard in 0..ALIVE_SHARDS {
        let due = match store.due_runs(shard, now_ms, SWEEP_BATCH).await {
            Ok(d) => d,
            Err(e) => {
                log_storage(&e);
                report.errors += 1;
                continue;
            }
        };
        report.examined += due.len();
        for run in due {
            match reap(mgr, &run, now_ms).await {
                Ok(Reaped::Ended(r)) if r.state == ExecutionState::Dead => report.dead += 1,
                Ok(Reaped::Ended(_)) => report.timed_out += 1,
                Ok(_) => report.skipped += 1,
                Err(e) => {
                    log_storage(&e);
                    report.errors += 1;
                }
            }
        }
    }
    tracing::info!(?report, "sweep finished");
    report
}

/// What [`reap`] did to a run; each variant carries the run as it now stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Reaped {
    /// The run was not overdue (or not alive): unchanged.
    NotDue(RunRecord),
    /// This call ended the run (`dead` or `timeout`) and told the owner.
    Ended(RunRecord),
    /// Another writer changed the run first; this is what it persisted.
    Raced(RunRecord),
}

impl Reaped {
    /// The run as it now stands.
    pub fn into_run(self) -> RunRecord {
        match self {
            Reaped::NotDue(r) | Reaped::Ended(r) | Reaped::Raced(r) => r,
        }
    }
}

/// Ends `run` if it is overdue at `now_ms`, with a conditional write, and tells the owner's
/// live connections exactly once (only the writer that wins the condition pushes).
pub async fn reap(mgr: &Manager, run: &RunRecord, now_ms: u64) -> Result<Reaped, StorageError> {
    let Some(target) = run.overdue(now_ms) else {
        return Ok(Reaped::NotDue(run.clone()));
    };
    let Some(mut next) = next_version(run, target, now_ms) else {
        return Ok(Reaped::NotDue(run.clone()));
    };
    let (code, message) = match target {
        ExecutionState::Timeout => (
            ErrorCode::RunTimeout.as_str(),
            "the run exceeded its time limit",
        ),
        _ => ("run_dead", "the run's process stopped sending heartbeats"),
    };
    next.error = Some(RunError {
        code: code.to_owned(),
        message: message.to_owned(),
    });
    let store = mgr
        .store()
        .map_err(|e| StorageError::new(StorageErrorKind::Unavailable, "reap", e.to_string()))?;
    match store.update_run(&next, Expected::of(run)).await {
        Ok(()) => {
            metrics::run_finished(next.state, now_ms.saturating_sub(next.created_at));
            let frame = if target == ExecutionState::Dead {
                run_event(
                    EventType::AgentDeath,
                    &next,
                    AgentDeath {
                        cause: "heartbeat_missed",
                    },
                )
            } else {
                let e = ClientError::new(ErrorCode::RunTimeout, message).retryable(true);
                agent_error(&next, &e)
            };
            match store.user_connections(&next.user_id).await {
                Ok(conns) => {
                    let fallback = next.endpoint.clone().unwrap_or_default();
                    push_to_connections(mgr, &conns, &fallback, &frame).await;
                }
                Err(e) => log_storage(&e),
            }
            Ok(Reaped::Ended(next))
        }
        Err(e) if e.kind() == StorageErrorKind::Conflict => Ok(Reaped::Raced(
            store
                .get_run(&run.user_id, &run.run_id)
                .await?
                .unwrap_or_else(|| run.clone()),
        )),
        Err(e) => Err(e),
    }
}

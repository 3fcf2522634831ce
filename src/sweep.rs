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
use crate::store::{
    ConnectionRecord, Expected, RunError, RunRecord, StorageError, StorageErrorKind,
};
use crate::telemetry::metrics;
use serde::Serialize;
use std::collections::HashMap;

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
/// Owners are told once per ended run, with one connections query per owner per sweep.
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
    let mut ended: HashMap<String, Vec<RunRecord>> = HashMap::new();
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
            match end_if_overdue(mgr, &run, now_ms).await {
                Ok(Reaped::Ended(r)) => {
                    if r.state == ExecutionState::Dead {
                        report.dead += 1;
                    } else {
                        report.timed_out += 1;
                    }
                    ended.entry(r.user_id.clone()).or_default().push(r);
                }
                Ok(_) => report.skipped += 1,
                Err(e) => {
                    log_storage(&e);
                    report.errors += 1;
                }
            }
        }
    }
    for (user, runs) in ended {
        match store.user_connections(&user).await {
            Ok(conns) => {
                for run in &runs {
                    tell_owner(mgr, run, &conns).await;
                }
            }
            Err(e) => log_storage(&e),
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
    /// This call ended the run (`dead` or `timeout`).
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

/// Ends `run` if it is overdue at `now_ms`, and tells the owner's live connections exactly
/// once (only the writer that wins the condition tells them).
pub async fn reap(mgr: &Manager, run: &RunRecord, now_ms: u64) -> Result<Reaped, StorageError> {
    let reaped = end_if_overdue(mgr, run, now_ms).await?;
    if let Reaped::Ended(r) = &reaped {
        match mgr
            .store()
            .map_err(init_to_storage)?
            .user_connections(&r.user_id)
            .await
        {
            Ok(conns) => tell_owner(mgr, r, &conns).await,
            Err(e) => log_storage(&e),
        }
    }
    Ok(reaped)
}

fn init_to_storage(e: crate::manager::InitError) -> StorageError {
    StorageError::new(StorageErrorKind::Unavailable, "reap", e.to_string())
}

/// The conditional write that ends an overdue run (`timeout` past its time limit, `dead` past
/// its heartbeat deadline). A run changed meanwhile is left as the other writer left it.
async fn end_if_overdue(
    mgr: &Manager,
    run: &RunRecord,
    now_ms: u64,
) -> Result<Reaped, StorageError> {
    let Some(target) = run.overdue(now_ms) else {
        return Ok(Reaped::NotDue(run.clone()));
    };
    let Some(mut next) = next_version(run, target, now_ms) else {
        return Ok(Reaped::NotDue(run.clone()));
    };
    let (code, message) = match target {
        ExecutionState::Timeout => (ErrorCode::RunTimeout.as_str(), TIMEOUT_MESSAGE),
        _ => ("run_dead", "the run's process stopped sending heartbeats"),
    };
    next.error = Some(RunError {
        code: code.to_owned(),
        message: message.to_owned(),
    });
    let store = mgr.store().map_err(init_to_storage)?;
    match store.update_run(&next, Expected::of(run)).await {
        Ok(()) => {
            metrics::run_finished(next.state, now_ms.saturating_sub(next.created_at));
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

const TIMEOUT_MESSAGE: &str = "the run exceeded its time limit";

/// Tells the owner's live connections that `run` died (`agent_death`) or timed out
/// (`agent_error run_timeout`).
async fn tell_owner(mgr: &Manager, run: &RunRecord, conns: &[ConnectionRecord]) {
    let frame = if run.state == ExecutionState::Dead {
        run_event(
            EventType::AgentDeath,
            run,
            AgentDeath {
                cause: "heartbeat_missed",
            },
        )
    } else {
        agent_error(
            run,
            &ClientError::new(ErrorCode::RunTimeout, TIMEOUT_MESSAGE).retryable(true),
        )
    };
    let fallback = run.endpoint.clone().unwrap_or_default();
    push_to_connections(mgr, conns, &fallback, &frame).await;
}

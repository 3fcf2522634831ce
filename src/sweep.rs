//! The sweep: alive runs past their heartbeat deadline are continued by a new worker (see
//! `run::recover`) or, when that cannot be, become `dead`; past their time limit `timeout`; the
//! owner's connections are told of the ends, within a bounded notice budget. Runs on a
//! schedule and on every read of a run.

use crate::limits::{ALIVE_SHARDS, SWEEP_BATCH};
use crate::protocol::outbound::DEATH_HEARTBEAT_MISSED;
use crate::protocol::{ClientError, Envelope, ErrorCode, Event, RunRef};
use crate::run::channel::notify;
use crate::run::recover::{Recovery, recover};
use crate::run::{RunDeps, WriteOutcome, next_version, write_run};
use crate::state::{ExecutionState, RunEvent};
use crate::store::{Expected, RunError, RunRecord, StorageError};
use crate::telemetry::{log_storage, metrics};
use serde::Serialize;
use std::collections::HashMap;

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Due runs read from the `alive` index.
    pub examined: usize,
    /// Runs this sweep marked `dead`.
    pub dead: usize,
    /// Runs whose worker died that this sweep handed to a new worker instead.
    pub continued: usize,
    /// Runs this sweep marked `timeout`.
    pub timed_out: usize,
    /// Runs that changed between the read and the write (left as the other writer left them).
    pub skipped: usize,
    /// Storage failures (the runs stay due and are retried by the next sweep).
    pub errors: usize,
}

/// One bounded sweep: at most `SWEEP_BATCH` due runs per shard, through the sparse index.
/// Owners are told once per ended run, with one connections query per owner per sweep.
pub async fn sweep(deps: &RunDeps<'_>, now_ms: u64) -> SweepReport {
    let mut report = SweepReport::default();
    // By owner (user within tenant): one connections query each.
    let mut ended: HashMap<String, Vec<RunRecord>> = HashMap::new();
    for shard in 0..ALIVE_SHARDS {
        let due = match deps.store.due_runs(shard, now_ms, SWEEP_BATCH).await {
            Ok(d) => d,
            Err(e) => {
                log_storage(&e);
                report.errors += 1;
                continue;
            }
        };
        report.examined += due.len();
        for run in due {
            match end_if_overdue(deps, &run, now_ms).await {
                Ok(Reaped::Ended(r)) => {
                    if r.state == ExecutionState::Dead {
                        report.dead += 1;
                    } else {
                        report.timed_out += 1;
                    }
                    ended
                        .entry(r.owner().key().into_owned())
                        .or_default()
                        .push(r);
                }
                Ok(Reaped::Continued(_)) => report.continued += 1,
                Ok(_) => report.skipped += 1,
                Err(e) => {
                    log_storage(&e);
                    report.errors += 1;
                }
            }
        }
    }
    for runs in ended.values() {
        tell_owner(deps, runs).await;
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
    /// Its worker died and this call handed the run to a new one.
    Continued(RunRecord),
    /// Another writer changed the run first; this is what it persisted.
    Raced(RunRecord),
}

impl Reaped {
    /// The run as it now stands.
    pub fn into_run(self) -> RunRecord {
        match self {
            Reaped::NotDue(r) | Reaped::Ended(r) | Reaped::Continued(r) | Reaped::Raced(r) => r,
        }
    }
}

/// Ends `run` if it is overdue at `now_ms`, and tells the owner's live connections exactly
/// once (only the writer that wins the condition tells them).
pub async fn reap(
    deps: &RunDeps<'_>,
    run: &RunRecord,
    now_ms: u64,
) -> Result<Reaped, StorageError> {
    let reaped = end_if_overdue(deps, run, now_ms).await?;
    if let Reaped::Ended(r) = &reaped {
        tell_owner(deps, std::slice::from_ref(r)).await;
    }
    Ok(reaped)
}

/// [`reap`] for a page of one user's runs: each overdue run is ended, and the owner is told of
/// all of them with one connections query. Runs that cannot be written stay as read.
pub async fn reap_page(deps: &RunDeps<'_>, runs: Vec<RunRecord>, now_ms: u64) -> Vec<RunRecord> {
    let mut out = Vec::with_capacity(runs.len());
    let mut ended = Vec::new();
    for run in runs {
        out.push(match end_if_overdue(deps, &run, now_ms).await {
            Ok(Reaped::Ended(r)) => {
                ended.push(r.clone());
                r
            }
            Ok(reaped) => reaped.into_run(),
            Err(e) => {
                log_storage(&e);
                run
            }
        });
    }
    tell_owner(deps, &ended).await;
    out
}

/// The conditional write that ends an overdue run (`timeout` past its time limit, `dead` past
/// its heartbeat deadline). A run changed meanwhile is left as the other writer left it.
async fn end_if_overdue(
    deps: &RunDeps<'_>,
    run: &RunRecord,
    now_ms: u64,
) -> Result<Reaped, StorageError> {
    let Some(event) = run.overdue(now_ms) else {
        return Ok(Reaped::NotDue(run.clone()));
    };
    if event == RunEvent::Die {
        match recover(deps, run, now_ms).await? {
            Recovery::Continued(r) => return Ok(Reaped::Continued(r)),
            Recovery::Raced(r) => return Ok(Reaped::Raced(r)),
            Recovery::Refused => {}
        }
    }
    let Some(mut next) = next_version(run, &[event], now_ms) else {
        return Ok(Reaped::NotDue(run.clone()));
    };
    let error = ended_error(run, event);
    next.error = Some(RunError {
        code: error.code.as_str().to_owned(),
        message: error.message.into_owned(),
    });
    match write_run(deps.store, next, Expected::of(run)).await {
        WriteOutcome::Written(r) | WriteOutcome::Landed(r) => {
            metrics::run_finished(r.state, now_ms.saturating_sub(r.created_at));
            crate::run::log_usage(&r);
            Ok(Reaped::Ended(r))
        }
        WriteOutcome::Conflict(current) => Ok(Reaped::Raced(current)),
        WriteOutcome::Failed(e) => Err(e),
    }
}

/// What the owner is told, and the run records, when `event` ends `run`: a run that waited for
/// an approval nobody gave ends `approval_timeout`.
fn ended_error(run: &RunRecord, event: RunEvent) -> ClientError {
    match event {
        RunEvent::TimeOut if unanswered(run) => ClientError::new(
            ErrorCode::ApprovalTimeout,
            "nobody answered the tool approval in time (APPROVAL_TIMEOUT_MS, or the run's time limit)",
        ),
        RunEvent::TimeOut => ClientError::run_timeout(),
        _ => ClientError::new(
            ErrorCode::RunDead,
            "the run's process stopped sending heartbeats",
        ),
    }
}

/// Whether `run` still waited for the answer to one of its tool approvals.
fn unanswered(run: &RunRecord) -> bool {
    run.awaiting
        .as_ref()
        .is_some_and(crate::store::Awaiting::waiting)
}

/// Tells the live connections of the owner of `runs` (all one owner's) that they died
/// (`agent_death`) or timed out (`agent_error run_timeout`): one connections query, then
/// bounded, concurrent pushes.
async fn tell_owner(deps: &RunDeps<'_>, runs: &[RunRecord]) {
    let Some(first) = runs.first() else {
        return;
    };
    let conns = match deps.store.user_connections(first.owner()).await {
        Ok(c) => c,
        Err(e) => return log_storage(&e),
    };
    let frames: Vec<String> = runs
        .iter()
        .map(|run| {
            let timeout = ended_error(run, RunEvent::TimeOut);
            let event = if run.state == ExecutionState::Dead {
                Event::AgentDeath {
                    cause: DEATH_HEARTBEAT_MISSED,
                }
            } else {
                Event::AgentError(&timeout)
            };
            Envelope::new(event, RunRef::of(run), crate::time::now_ms()).to_json()
        })
        .collect();
    let fallback = runs
        .first()
        .and_then(|r| r.endpoint.clone())
        .unwrap_or_default();
    notify(deps, &conns, &fallback, &frames).await;
}

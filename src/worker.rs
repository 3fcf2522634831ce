//! The worker: an asynchronous invocation that drives one run (`RUN_DISPATCH=async`). It
//! claims the run with a conditional write before doing anything visible, so a second
//! delivery of the same event, or a delivery for a run that already ended, does nothing.

use crate::context::{ContextParts, UserExecutionContext, validate_id};
use crate::dispatch::WorkerRun;
use crate::limits::{CLAIM_ATTEMPTS, LAMBDA_DEADLINE_MARGIN};
use crate::manager::{InitError, Manager};
use crate::run::{Leave, Origin, Settled, journal, next_version, write_settled};
use crate::state::{ExecutionState, RunEvent};
use crate::store::{RunRecord, StorageError};
use crate::time::now_ms;
use serde::Serialize;

/// What a worker invocation did (its Lambda response, and its log line's outcome).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerOutcome {
    /// This invocation claimed the run and drove it to its end.
    Drove,
    /// The event names no run of that user (or ids that break the id rule): nothing done.
    NotFound,
    /// The run was already claimed or has ended: a duplicate or late delivery, nothing done.
    NotClaimable,
    /// Another worker won the claim: nothing done.
    LostClaim,
    /// The run's agent is not registered here, or the claimed run's stored ids break the id
    /// rule: nothing a retry could mend (storage failures before the claim are a
    /// [`WorkerError`] instead).
    Failed,
}

/// Why a worker could not get as far as its claim: storage failed, or the store could not be
/// built. The invocation fails (`Retryable.*` when another delivery may succeed), so Lambda's
/// asynchronous retry delivers the event again; the claim makes a second delivery safe.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Init(#[from] InitError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl WorkerOutcome {
    /// The outcome's name in the invocation's log line.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerOutcome::Drove => "drove",
            WorkerOutcome::NotFound => "not_found",
            WorkerOutcome::NotClaimable => "not_claimable",
            WorkerOutcome::LostClaim => "lost_claim",
            WorkerOutcome::Failed => "failed",
        }
    }
}

/// Whether `run` waits for the worker of `continuation`: a first invocation's run is
/// `starting`; a continuation's is `running`, unclaimed, and at exactly that continuation (an
/// older or a duplicate event finds it claimed, or moved on).
fn waiting(run: &RunRecord, continuation: Option<u64>) -> bool {
    run.claimed_by.is_none()
        && match continuation {
            None => run.state == ExecutionState::Starting,
            Some(n) => run.state == ExecutionState::Running && run.continuations == n,
        }
}

/// Claims and drives the run `ev` names. `claim` is unique to this invocation (Lambda's request
/// id), so a claim that landed although its answer was lost is recognised as this one's.
/// Fails only when storage (or the store's build) fails before the claim has landed.
pub async fn work(
    mgr: &Manager,
    ev: &WorkerRun,
    claim: &str,
    deadline_ms: Option<u64>,
) -> Result<WorkerOutcome, WorkerError> {
    let leave = deadline_ms.map(|by_ms| Leave {
        by_ms,
        without_progress: false,
    });
    claim_and_drive(mgr, ev, claim, deadline_ms, leave).await
}

/// [`work`] with the deadline the run is handed off by (`None`: none; an answer to an approval
/// driven in its route under `RUN_DISPATCH=auto` leaves by the route's end).
pub async fn claim_and_drive(
    mgr: &Manager,
    ev: &WorkerRun,
    claim: &str,
    deadline_ms: Option<u64>,
    leave: Option<Leave>,
) -> Result<WorkerOutcome, WorkerError> {
    let mode = mgr.config().mode;
    let tenant_ok = ev
        .tenant_id
        .as_deref()
        .is_none_or(|t| validate_id("tenant_id", t, mode).is_ok());
    if validate_id("user_id", &ev.user_id, mode).is_err()
        || validate_id("run_id", &ev.run_id, mode).is_err()
        || !tenant_ok
    {
        return Ok(WorkerOutcome::NotFound);
    }
    let deps = mgr.run_deps()?;
    let Some(run) = deps.store.get_run(ev.owner(), &ev.run_id).await? else {
        return Ok(WorkerOutcome::NotFound);
    };
    if !waiting(&run, ev.continuation) {
        return Ok(WorkerOutcome::NotClaimable);
    }
    let Some(agent) = deps.agents.get(&run.agent).cloned() else {
        tracing::error!(agent = %run.agent, "worker: the run's agent is not registered");
        return Ok(WorkerOutcome::Failed);
    };
    // A `resume` that attached a follower to the waiting run changes it: claim on top of that,
    // never on top of another worker's claim.
    let claim_it = |run: &RunRecord| {
        let now = now_ms();
        if !waiting(run, ev.continuation) {
            return Err(WorkerOutcome::NotClaimable);
        }
        // A first claim moves the run to `running`; a continuation's finds it there.
        let event = match ev.continuation {
            None => RunEvent::Advance,
            Some(_) => RunEvent::Heartbeat,
        };
        let mut claimed = next_version(run, &[event], now).ok_or(WorkerOutcome::NotClaimable)?;
        claimed.claimed_by = Some(claim.to_owned());
        // A continuation numbers its events after every `seq` its predecessors may have
        // pushed; a first claim follows nothing (the create reserved its first numbers).
        if ev.continuation.is_some() {
            claimed.seq = claimed.seq.max(claimed.seq_reserved);
        }
        let base = claimed.seq;
        journal::reserve(&mut claimed, base);
        claimed.stale_at = now + deps.limits.heartbeat_deadline.as_millis() as u64;
        // A run that can be continued hands off before this invocation's deadline instead.
        if let (Some(deadline), None) = (deadline_ms, deps.relay) {
            let last = deadline.saturating_sub(LAMBDA_DEADLINE_MARGIN.as_millis() as u64);
            claimed.deadline_at = claimed.deadline_at.min(last);
        }
        Ok(claimed)
    };
    let unclaimed = |current: &RunRecord| waiting(current, ev.continuation);
    let claimed = match write_settled(deps.store, run, CLAIM_ATTEMPTS, claim_it, unclaimed).await {
        Settled::Written(r) => r,
        Settled::Declined(outcome) => return Ok(outcome),
        Settled::Conflict(_) => return Ok(WorkerOutcome::LostClaim),
        Settled::Failed(e) => return Err(e.into()),
    };
    let ctx = UserExecutionContext::new(
        ContextParts {
            user_id: &claimed.user_id,
            thread_id: &claimed.thread_id,
            run_id: &claimed.run_id,
            request_id: &claimed.request_id,
            connection_id: &claimed.connection_id,
            tenant_id: claimed.tenant_id.as_deref(),
            metadata: None,
        },
        mode,
    );
    let Ok(ctx) = ctx else {
        tracing::error!("worker: the stored run's ids break the id rule");
        return Ok(WorkerOutcome::Failed);
    };
    let endpoint = claimed.endpoint.clone().unwrap_or_default();
    let connection_id = claimed.connection_id.clone();
    let origin = Origin {
        connection_id: &connection_id,
        endpoint: &endpoint,
        deadline_ms,
        leave,
    };
    crate::run::drive(deps, origin, &ctx, claimed, agent.as_ref()).await;
    Ok(WorkerOutcome::Drove)
}

//! `cancel_agent`: the caller's alive run becomes `cancelled` through the conditional-write
//! primitive; a driver in this process stops at once (`run::live`), one elsewhere at its next
//! heartbeat, and the reply waits for that (at most one heartbeat interval).

use super::Caller;
use crate::limits::{
    API_GATEWAY_ROUTE_LIMIT, CANCEL_ATTEMPTS, CANCEL_REPLY_MARGIN, CANCEL_SLACK, HEARTBEAT_DIVISOR,
};
use crate::manager::Manager;
use crate::protocol::{ClientError, ErrorCode, Event, Reply};
use crate::run::{WriteOutcome, next_version, write_run};
use crate::state::ExecutionState;
use crate::state::RunEvent;
use crate::store::{Expected, RunRecord, StorageError};
use crate::telemetry::{log_storage, metrics};
use crate::time::now_ms;
use std::time::Duration;

/// Cancels the caller's run; replies `agent_cancelled`, or an `error` (`not_found`,
/// `run_finished`, a storage code).
pub async fn apply(mgr: &Manager, caller: &Caller<'_>, run_id: &str) -> Reply {
    let run_id = match caller.id(mgr, "run_id", run_id) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let store = match mgr.store() {
        Ok(s) => s,
        Err(e) => return caller.error(&e.client_error()),
    };
    let mut run = match store.get_run(&caller.who.user_id, run_id).await {
        Ok(Some(r)) => r,
        Ok(None) => return caller.error(&ClientError::not_found()),
        Err(e) => {
            log_storage(&e);
            return caller.error(&ClientError::storage(&e));
        }
    };
    // A heartbeat may bump the version between the read and the write: the primitive hands
    // back the current run, and the cancel is tried again on it.
    for _ in 0..CANCEL_ATTEMPTS {
        let Some(mut next) = next_version(&run, &[RunEvent::Cancel], now_ms()) else {
            let e = ClientError::new(ErrorCode::RunFinished, format!("run already {}", run.state));
            return caller.error(&e);
        };
        next.cancelled_by = Some(caller.origin.connection_id.to_owned());
        match write_run(store, next, Expected::of(&run)).await {
            WriteOutcome::Written(r) | WriteOutcome::Landed(r) => {
                // A driver in this process stops now, before the reply goes out; one elsewhere
                // stops at its next heartbeat, and the reply waits for that moment, so no
                // `agent_delta` follows it.
                if !mgr.live_runs().cancel(run_id).await {
                    let wait = until_driver_stops(mgr, &run, caller.origin.deadline_ms);
                    tokio::time::sleep(wait).await;
                }
                return cancelled(&r);
            }
            WriteOutcome::Conflict(current) => run = current,
            WriteOutcome::Failed(e) => {
                log_storage(&e);
                return caller.error(&ClientError::storage(&e));
            }
        }
    }
    caller.error(&ClientError::storage(&StorageError::conflict("cancel_run")))
}

/// How long until a driver in another process has met the cancel: its next heartbeat is due
/// one interval after the last one stored (`updated_at`), and it pushes nothing while that
/// write is in flight. Zero for a run no driver holds yet (`starting`) or whose heartbeat is
/// already overdue (its driver is gone or stopping). Never so long that the reply would miss
/// this invocation's own deadline (less [`CANCEL_REPLY_MARGIN`]) or API Gateway's 29 s.
fn until_driver_stops(mgr: &Manager, before: &RunRecord, deadline_ms: Option<u64>) -> Duration {
    if before.state != ExecutionState::Running {
        return Duration::ZERO;
    }
    let now = now_ms();
    let interval = mgr.config().run_limits().heartbeat_deadline / HEARTBEAT_DIVISOR;
    let due = before.updated_at + (interval + CANCEL_SLACK).as_millis() as u64;
    let left = deadline_ms.map_or(u64::MAX, |d| d.saturating_sub(now));
    let cap = left
        .saturating_sub(CANCEL_REPLY_MARGIN.as_millis() as u64)
        .min(API_GATEWAY_ROUTE_LIMIT.as_millis() as u64);
    Duration::from_millis(due.saturating_sub(now).min(cap)).min(interval + CANCEL_SLACK)
}

fn cancelled(run: &RunRecord) -> Reply {
    metrics::run_finished(run.state, run.updated_at.saturating_sub(run.created_at));
    Reply::about(run, Event::cancelled())
}

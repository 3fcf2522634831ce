//! `cancel_agent`: the caller's alive run becomes `cancelled` through the conditional-write
//! primitive; a driver in this process stops at once (`run::live`), one elsewhere at its next
//! heartbeat, and the reply waits for that (at most one heartbeat interval).

use super::{Caller, CmdError};
use crate::limits::{
    API_GATEWAY_ROUTE_LIMIT, CANCEL_ATTEMPTS, CANCEL_REPLY_MARGIN, CANCEL_SLACK, HEARTBEAT_DIVISOR,
    MAX_ID_FIELD_BYTES,
};
use crate::manager::Manager;
use crate::protocol::inbound::{Fields, required};
use crate::protocol::{ClientError, ErrorCode, Event, Reply};
use crate::run::{Settled, next_version, write_settled};
use crate::state::{ExecutionState, RunEvent};
use crate::store::{RunRecord, RunUsage, StorageError};
use crate::telemetry::metrics;
use crate::time::now_ms;
use std::borrow::Cow;
use std::time::Duration;

/// `cancel_agent {run_id}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cancel<'a> {
    pub run_id: Cow<'a, str>,
}

impl<'a> Cancel<'a> {
    /// Reads `run_id` (required; the id rule judges it in `apply`).
    pub fn parse(f: Fields<'a>) -> Result<Self, ClientError> {
        Ok(Cancel {
            run_id: required("run_id", f.run_id, MAX_ID_FIELD_BYTES)?,
        })
    }

    /// Cancels the caller's run; replies `agent_cancelled`, or fails `not_found`,
    /// `run_finished` or with a storage code.
    pub async fn apply(self, mgr: &Manager, caller: &Caller<'_>) -> Result<Reply, CmdError> {
        let run_id = caller.id(mgr, "run_id", &self.run_id)?;
        let store = mgr.store()?;
        let Some(run) = store.get_run(caller.who.owner(), run_id).await? else {
            return Err(ClientError::not_found().into());
        };
        // The last heartbeat of the run the cancel landed on, while a driver held it.
        let mut last_beat = None;
        // A heartbeat may bump the version between the read and the write: cancel again on
        // what is stored then.
        let cancel = |run: &RunRecord| {
            // A run that waits for an approval has no driver to wait for.
            last_beat = (run.state == ExecutionState::Running && !run.waiting_approval())
                .then_some(run.updated_at);
            let mut next = next_version(run, &[RunEvent::Cancel], now_ms()).ok_or_else(|| {
                ClientError::new(ErrorCode::RunFinished, format!("run already {}", run.state))
            })?;
            next.cancelled_by = Some(caller.origin.connection_id.to_owned());
            // Driven here: what it consumed up to this moment, not its last checkpoint.
            if let Some(u) = mgr.live_runs().usage(run_id) {
                next.usage = RunUsage {
                    duration_ms: next.usage.duration_ms,
                    ..u
                };
            }
            Ok::<_, ClientError>(next)
        };
        match write_settled(store, run, CANCEL_ATTEMPTS, cancel, |_| true).await {
            Settled::Written(r) => {
                // A driver in this process stops now, before the reply goes out; one elsewhere
                // stops at its next heartbeat, and the reply waits for that moment, so no
                // `agent_delta` follows it.
                if !mgr.live_runs().cancel(run_id).await {
                    let wait = until_driver_stops(mgr, last_beat, caller.origin.deadline_ms);
                    tokio::time::sleep(wait).await;
                }
                Ok(cancelled(&r))
            }
            Settled::Declined(e) => Err(e.into()),
            Settled::Conflict(_) => Err(StorageError::conflict("cancel_run").into()),
            Settled::Failed(e) => Err(e.into()),
        }
    }
}

/// How long until a driver in another process has met the cancel: its next heartbeat is due
/// one interval after the last one stored (`last_beat`, the cancelled run's `updated_at` while
/// it was `running`), and it pushes nothing while that write is in flight. Zero for a run no
/// driver holds yet (`starting`) or whose heartbeat is already overdue (its driver is gone or
/// stopping). Never so long that the reply would miss this invocation's own deadline (less
/// [`CANCEL_REPLY_MARGIN`]) or API Gateway's 29 s.
fn until_driver_stops(mgr: &Manager, last_beat: Option<u64>, deadline_ms: Option<u64>) -> Duration {
    let Some(last_beat) = last_beat else {
        return Duration::ZERO;
    };
    let now = now_ms();
    let interval = mgr.config().run_limits().heartbeat_deadline / HEARTBEAT_DIVISOR;
    let due = last_beat + (interval + CANCEL_SLACK).as_millis() as u64;
    let left = deadline_ms.map_or(u64::MAX, |d| d.saturating_sub(now));
    let cap = left
        .saturating_sub(CANCEL_REPLY_MARGIN.as_millis() as u64)
        .min(API_GATEWAY_ROUTE_LIMIT.as_millis() as u64);
    Duration::from_millis(due.saturating_sub(now).min(cap)).min(interval + CANCEL_SLACK)
}

fn cancelled(run: &RunRecord) -> Reply {
    metrics::run_finished(run.state, run.updated_at.saturating_sub(run.created_at));
    crate::run::log_usage(run);
    Reply::about(run, Event::cancelled())
}

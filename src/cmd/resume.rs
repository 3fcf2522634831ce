//! `resume`: the caller's run as an `execution` snapshot (its latest `seq` and, while alive,
//! the text streamed so far), and for an alive run the caller's connection attached as a
//! follower, so the run's driver pushes it every event after `after_seq`.
//!
//! The attachment lives on the run item itself (in the owner's partition, so only the owner
//! can attach; no index): one conditional write that bumps the run's version, which makes the
//! driver's next heartbeat conflict and so learn of the follower without any per-event read.

use super::get::owned_run;
use super::{Caller, CmdError};
use crate::limits::{MAX_ID_FIELD_BYTES, RESUME_ATTEMPTS};
use crate::manager::Manager;
use crate::notify::PushTarget;
use crate::protocol::inbound::{Fields, required};
use crate::protocol::{ClientError, Envelope, ErrorCode, Event, ExecutionView, Reply, RunRef};
use crate::run::RunDeps;
use crate::run::follow::{AttachError, attach};
use crate::run::{Settled, next_version, write_settled};
use crate::state::RunEvent;
use crate::store::{RunRecord, StorageError};
use crate::time::{now_ms, rfc3339_ms};
use std::borrow::Cow;

/// `resume {run_id, after_seq?}`: follow a run again after a reconnect, every event after
/// `after_seq` (default: the snapshot's own `seq`).
#[derive(Clone, Debug, PartialEq)]
pub struct Resume<'a> {
    pub run_id: Cow<'a, str>,
    pub after_seq: Option<u64>,
}

impl<'a> Resume<'a> {
    /// Reads `run_id` (required; the id rule judges it in `apply`) and `after_seq`.
    pub fn parse(f: Fields<'a>) -> Result<Self, ClientError> {
        Ok(Resume {
            run_id: required("run_id", f.run_id, MAX_ID_FIELD_BYTES)?,
            after_seq: f.after_seq,
        })
    }

    /// Replies the caller's run (`not_found` for another user's, exactly as for none);
    /// attaches the caller's connection while the run is alive, nothing once it has finished.
    pub async fn apply(self, mgr: &Manager, caller: &Caller<'_>) -> Result<Reply, CmdError> {
        let (deps, run) = owned_run(mgr, caller, &self.run_id).await?;
        let origin = caller.origin;
        // What to answer instead of attaching: the snapshot of a finished run, or a refusal.
        let attached = |run: &RunRecord| {
            if run.state.is_terminal() {
                return Err(Ok(snapshot(run)));
            }
            let now = now_ms();
            let Some(mut next) = next_version(run, &[RunEvent::Attach], now) else {
                return Err(Ok(snapshot(run)));
            };
            // A snapshot that could not carry the text so far (too long) replays it instead.
            let shown = ExecutionView::of(run, false).streamed.is_some() || run.seq == 0;
            let has = self.after_seq.unwrap_or(if shown { run.seq } else { 0 });
            next.followers = attach(run, origin.connection_id, origin.endpoint, has, now / 1000)
                .map_err(|AttachError::Full| {
                    Err(ClientError::new(
                        ErrorCode::TooManyFollowers,
                        "the run has too many followers",
                    ))
                })?;
            Ok(next)
        };
        // A heartbeat may bump the version between the read and the write: attach on what is
        // stored then.
        match write_settled(deps.store, run, RESUME_ATTEMPTS, attached, |_| true).await {
            Settled::Written(r) => {
                deps.attached.add(origin.connection_id, &r.run_id);
                replay_approvals(&deps, caller, &r).await;
                Ok(snapshot(&r))
            }
            Settled::Declined(answer) => answer.map_err(CmdError::Refused),
            Settled::Conflict(_) => Err(StorageError::conflict("resume_run").into()),
            Settled::Failed(e) => Err(e.into()),
        }
    }
}

/// A suspended run has no driver to replay its events: its `tool_approval_required` events
/// still unanswered (with their own `seq`) are pushed to the caller here, those after the
/// `seq` its attachment starts from.
async fn replay_approvals(deps: &RunDeps<'_>, caller: &Caller<'_>, run: &RunRecord) {
    let Some(awaiting) = run.awaiting.as_ref().filter(|_| run.waiting_approval()) else {
        return;
    };
    let origin = caller.origin;
    let has = run
        .followers
        .iter()
        .find(|f| f.connection_id == origin.connection_id)
        .map_or(0, |f| f.after_seq);
    let expires_at = rfc3339_ms(awaiting.expires_at);
    for c in awaiting
        .calls
        .iter()
        .filter(|c| c.answer.is_none() && c.seq > has)
    {
        let event = Event::ToolApprovalRequired {
            call_id: &c.call_id,
            tool_name: &c.tool_name,
            parameters: &c.parameters,
            expires_at: &expires_at,
        };
        let frame = Envelope::new(event, RunRef::of(run), now_ms())
            .with_seq(c.seq)
            .to_json();
        let target = PushTarget {
            endpoint: origin.endpoint,
            connection_id: origin.connection_id,
        };
        if let Err(e) = deps.notifier.push(target, &frame).await {
            tracing::warn!(error = ?e, "approval replay not delivered");
        }
    }
}

fn snapshot(run: &RunRecord) -> Reply {
    Reply::about(run, Event::Execution(ExecutionView::of(run, false)))
}

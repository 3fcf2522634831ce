//! `approve_tool`: the owner's answer to one `tool_approval_required` of a suspended run.
//!
//! The answer is recorded on the run item with one conditional write (on the run's version),
//! so two answers to the same call (two tabs, a retried frame) cannot both land: the second
//! finds the call answered and gets `already_answered`, changing nothing. The write that
//! records the last answer the run waits on also claims its continuation: it numbers the next
//! continuation, releases nothing (no driver holds a waiting run) and renews the heartbeat
//! deadline, so exactly one continuation follows however many answers race; the caller's
//! connection is attached as a follower in the same write. The run then goes on as
//! `RUN_DISPATCH` says: a worker invocation (`async`) or this one (`inline`, `auto`).

use super::get::owned_run;
use super::{Caller, CmdError};
use crate::dispatch::{Dispatch, WorkerRun};
use crate::limits::{MAX_ID_FIELD_BYTES, RESUME_ATTEMPTS};
use crate::manager::Manager;
use crate::notify::PushTarget;
use crate::protocol::inbound::{Fields, required, text_field};
use crate::protocol::{ClientError, Envelope, ErrorCode, Event, Reply, RunRef};
use crate::run::follow::attach;
use crate::run::{Settled, next_version, write_settled};
use crate::state::RunEvent;
use crate::store::{ApprovalAnswer, RunRecord, StorageError};
use crate::telemetry::{log_storage, metrics};
use crate::time::now_ms;
use std::borrow::Cow;

/// The longest `reason` accepted (it goes to the model with the declined result).
pub const MAX_REASON_BYTES: usize = 2048;

/// `approve_tool {run_id, call_id, approved, reason?}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Approve<'a> {
    pub run_id: Cow<'a, str>,
    pub call_id: Cow<'a, str>,
    pub approved: bool,
    pub reason: Option<Cow<'a, str>>,
}

impl<'a> Approve<'a> {
    /// Reads `run_id` and `call_id` (required), `approved` (a required boolean) and `reason`.
    pub fn parse(f: Fields<'a>) -> Result<Self, ClientError> {
        let approved = f.approved.ok_or_else(|| {
            ClientError::new(
                ErrorCode::MissingField,
                "approved is required (true or false)",
            )
        })?;
        Ok(Approve {
            run_id: required("run_id", f.run_id, MAX_ID_FIELD_BYTES)?,
            call_id: required("call_id", f.call_id, MAX_ID_FIELD_BYTES)?,
            approved,
            reason: text_field("reason", f.reason, MAX_REASON_BYTES)?,
        })
    }

    /// Records the answer; replies `approval_accepted`, or fails `not_found` (no such run of
    /// the caller's, or no call of that id waits), `already_answered` or `run_finished`. When
    /// the answer was the last one, the run goes on: driven here (its events pushed, the
    /// reply pushed first) or by a worker.
    pub async fn apply(
        self,
        mgr: &Manager,
        caller: &Caller<'_>,
    ) -> Result<Option<Reply>, CmdError> {
        let (deps, run) = owned_run(mgr, caller, &self.run_id).await?;
        let call_id = self.call_id.as_ref();
        let heartbeat = mgr.config().heartbeat_deadline.as_millis() as u64;
        let origin = caller.origin;
        let answer = |run: &RunRecord| -> Result<RunRecord, ClientError> {
            if run.state.is_terminal() {
                return Err(ClientError::new(
                    ErrorCode::RunFinished,
                    format!("run already {}", run.state),
                ));
            }
            let calls = run.awaiting.as_ref().map(|a| &a.calls[..]).unwrap_or(&[]);
            let Some(call) = calls.iter().find(|c| c.call_id == call_id) else {
                return Err(ClientError::new(
                    ErrorCode::NotFound,
                    "no tool call of that call_id waits for approval in this run",
                ));
            };
            if call.answer.is_some() {
                return Err(ClientError::new(
                    ErrorCode::AlreadyAnswered,
                    "this tool call was already answered; nothing changed",
                ));
            }
            let now = now_ms();
            let mut next = next_version(run, &[RunEvent::Heartbeat], now).ok_or_else(|| {
                ClientError::new(ErrorCode::RunFinished, format!("run already {}", run.state))
            })?;
            if let Some(a) = next.awaiting.as_mut()
                && let Some(c) = a.calls.iter_mut().find(|c| c.call_id == call_id)
            {
                c.answer = Some(ApprovalAnswer {
                    approved: self.approved,
                    reason: self.reason.as_deref().map(str::to_owned),
                    at: now,
                });
            }
            // The caller hears the rest of the run (from the events it answered on).
            if origin.connection_id != run.connection_id
                && let Ok(followers) = attach(
                    run,
                    origin.connection_id,
                    origin.endpoint,
                    run.seq,
                    now / 1000,
                )
            {
                next.followers = followers;
            }
            if !next.awaiting.as_ref().is_some_and(|a| a.waiting()) {
                // The last answer: this write claims the one continuation that follows.
                let n = run.continuations + 1;
                next.continuations = n;
                next.clean_continuation = n;
                next.continued_at = now;
                next.claimed_by = None;
                next.stale_at = now + heartbeat;
            }
            Ok(next)
        };
        let written = match write_settled(deps.store, run, RESUME_ATTEMPTS, answer, |_| true).await
        {
            Settled::Written(r) => r,
            Settled::Declined(e) => return Err(e.into()),
            Settled::Conflict(_) => return Err(StorageError::conflict("approve_tool").into()),
            Settled::Failed(e) => return Err(e.into()),
        };
        let continued = !written.waiting_approval();
        tracing::info!(
            run_id = %written.run_id,
            approved = self.approved,
            continued,
            "tool approval answered"
        );
        // The reply echoes the answer's own `request_id` (as errors do), so a client matches it
        // to the frame it sent.
        let about = RunRef {
            request_id: caller.request_id.or(Some(&written.request_id)),
            ..RunRef::of(&written)
        };
        let event = Event::ApprovalAccepted {
            call_id,
            approved: self.approved,
            continued,
        };
        let reply = Envelope::new(event, about, now_ms()).reply();
        if !continued {
            return Ok(Some(reply));
        }
        metrics::run_continued("approval");
        let n = written.continuations;
        if mgr.config().dispatch == Dispatch::Async {
            if let Some(relay) = deps.relay
                && let Err(e) = relay
                    .continue_run(written.owner(), &written.run_id, n)
                    .await
            {
                // The run is unclaimed with a renewed heartbeat deadline: the sweep continues
                // it when that passes.
                tracing::warn!(code = e.kind().code(), error = ?e, "continuation dispatch failed");
            }
            return Ok(Some(reply));
        }
        // Driven here: the reply goes out first, then the run's events.
        let target = PushTarget {
            endpoint: origin.endpoint,
            connection_id: origin.connection_id,
        };
        if let Err(e) = deps.notifier.push(target, &reply.frame).await {
            tracing::warn!(error = ?e, "approval reply not delivered");
        }
        let ev = WorkerRun {
            user_id: written.user_id.clone(),
            tenant_id: written.tenant_id.clone(),
            run_id: written.run_id.clone(),
            continuation: Some(n),
        };
        let leave = match mgr.config().dispatch {
            Dispatch::Auto => Some(super::start::route_leave(mgr, origin.deadline_ms)),
            _ => None,
        };
        let claim = format!("approval:{}:{}", origin.connection_id, now_ms());
        if let Err(e) =
            crate::worker::claim_and_drive(mgr, &ev, &claim, origin.deadline_ms, leave).await
        {
            match e {
                crate::worker::WorkerError::Storage(e) => log_storage(&e),
                crate::worker::WorkerError::Init(e) => tracing::error!(error = %e, "init failed"),
            }
        }
        Ok(None)
    }
}

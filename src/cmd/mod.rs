//! One file per inbound command that acts for a user, dispatched by enum (as mini-redis's
//! `cmd/`): each takes the caller and its parsed message and returns the direct reply.
//!
//! # Layout
//! - [`start`]: starts a run (`start_agent`, `user_message`, `chat`): create, then drive.
//! - [`cancel`]: cancels a run (`cancel_agent`).
//! - [`get`]: reads one run (`get_execution`).
//! - [`list`]: reads a page of runs (`list_executions`).
//! - [`resume`]: a run's snapshot, and its events from then on to this connection (`resume`).

pub mod cancel;
pub mod get;
pub mod list;
pub mod resume;
pub mod start;

use crate::context::validate_id;
use crate::identity::Identity;
use crate::manager::Manager;
use crate::protocol::{ClientError, Inbound, Reply};
use crate::run::Origin;

/// Who sent a command, through which connection, and what the reply must echo.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    pub who: &'a Identity,
    pub origin: Origin<'a>,
    /// API Gateway's id of the MESSAGE (the idempotency key when the client sends none).
    pub message_id: Option<&'a str>,
    /// The client's `request_id`, echoed in replies.
    pub request_id: Option<&'a str>,
    /// The function ARN the invocation came through (a run's worker is invoked by it).
    pub function_arn: Option<&'a str>,
}

impl Caller<'_> {
    /// An `error` reply to this caller.
    pub fn error(&self, e: &ClientError) -> Reply {
        Reply::error(self.request_id, e)
    }

    /// `value` as the id `field`, by the one id rule.
    pub fn id<'v>(
        &self,
        mgr: &Manager,
        field: &'static str,
        value: &'v str,
    ) -> Result<&'v str, Reply> {
        validate_id(field, value, mgr.config().mode).map_err(|e| self.error(&e.into()))
    }
}

/// Applies a command that needs the caller's identity. `None`: nothing to reply (a run's
/// events were pushed instead). Messages that need no identity are answered by the route.
pub async fn apply(mgr: &Manager, caller: &Caller<'_>, message: Inbound<'_>) -> Option<Reply> {
    match message {
        Inbound::StartAgent(s) | Inbound::UserMessage(s) => start::apply(mgr, caller, s).await,
        Inbound::GetExecution { run_id } => Some(get::apply(mgr, caller, &run_id).await),
        Inbound::CancelAgent { run_id } => Some(cancel::apply(mgr, caller, &run_id).await),
        Inbound::ListExecutions(l) => Some(list::apply(mgr, caller, l).await),
        Inbound::Resume { run_id, after_seq } => {
            Some(resume::apply(mgr, caller, &run_id, after_seq).await)
        }
        Inbound::Ping | Inbound::Heartbeat | Inbound::Unknown(_) => None,
    }
}

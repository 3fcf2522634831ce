//! One file per inbound command, dispatched by enum (as mini-redis's `cmd/`): each parses its
//! own fields next to its `apply`, and every `apply` returns `Result<_, CmdError>`, turned into
//! the client's reply (and logged) once, here.
//!
//! # Layout
//! - [`start`]: starts a run (`start_agent`, `user_message`, `chat`): create, then drive.
//! - [`cancel`]: cancels a run (`cancel_agent`).
//! - [`get`]: reads one run (`get_execution`).
//! - [`list`]: reads a page of runs (`list_executions`).
//! - [`resume`]: a run's snapshot, and its events from then on to this connection (`resume`).
//! - [`approve`]: answers a run's tool approval (`approve_tool`), and continues the run once
//!   every call it waits on is answered.
//! - [`usage`]: the caller's usage today and the limits that apply (`get_usage`).
//! - [`error`]: [`CmdError`], the one error path.

pub mod approve;
pub mod cancel;
pub mod error;
pub mod get;
pub mod list;
pub mod resume;
pub mod start;
pub mod usage;

pub use error::CmdError;

use crate::context::validate_id;
use crate::identity::Identity;
use crate::manager::Manager;
use crate::protocol::inbound::{Fields, Frame, FrameError, parse_frame};
use crate::protocol::{ClientError, Reply};
use crate::run::Origin;
use std::borrow::Cow;

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
    /// `value` as the id `field`, by the one id rule.
    pub fn id<'v>(
        &self,
        mgr: &Manager,
        field: &'static str,
        value: &'v str,
    ) -> Result<&'v str, CmdError> {
        Ok(validate_id(field, value, mgr.config().mode)?)
    }
}

/// A parsed inbound message. Unknown types are a variant, not a parse failure.
#[derive(Debug)]
pub enum Command<'a> {
    Ping,
    Heartbeat,
    Start(start::Start<'a>),
    Get(get::Get<'a>),
    List(list::List<'a>),
    Cancel(cancel::Cancel<'a>),
    Resume(resume::Resume<'a>),
    Usage(usage::GetUsage),
    Approve(approve::Approve<'a>),
    Unknown(Cow<'a, str>),
}

/// A parsed frame: its command, and the client's `request_id` to echo in the reply.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub command: Command<'a>,
    pub request_id: Option<Cow<'a, str>>,
}

/// Parses one text frame into its command. Never panics; every failure is a typed
/// [`FrameError`] naming the field and the problem, with the `request_id` when it was readable.
pub fn parse(body: &str) -> Result<Parsed<'_>, FrameError> {
    let Frame {
        kind,
        request_id,
        fields,
    } = parse_frame(body)?;
    match Command::from_fields(kind, fields) {
        Ok(command) => Ok(Parsed {
            command,
            request_id,
        }),
        Err(e) => Err(FrameError::new(e, request_id.as_deref())),
    }
}

impl<'a> Command<'a> {
    /// The command `kind` names, parsed by its own `parse` from the frame's fields.
    pub fn from_fields(kind: Cow<'a, str>, fields: Fields<'a>) -> Result<Self, ClientError> {
        Ok(match kind.as_ref() {
            "ping" => Command::Ping,
            "heartbeat" => Command::Heartbeat,
            "start_agent" | "user_message" | "chat" => {
                Command::Start(start::Start::parse(&kind, fields)?)
            }
            "get_execution" => Command::Get(get::Get::parse(fields)?),
            "list_executions" => Command::List(list::List::parse(fields)?),
            "cancel_agent" => Command::Cancel(cancel::Cancel::parse(fields)?),
            "resume" => Command::Resume(resume::Resume::parse(fields)?),
            "get_usage" => Command::Usage(usage::GetUsage),
            "approve_tool" => Command::Approve(approve::Approve::parse(fields)?),
            _ => Command::Unknown(kind),
        })
    }
}

/// Applies a command that needs the caller's identity. `None`: nothing to reply (a run's
/// events were pushed instead). Messages that need no identity are answered by the route.
/// A failed command is logged and becomes its `error` reply here, and only here.
pub async fn apply(mgr: &Manager, caller: &Caller<'_>, command: Command<'_>) -> Option<Reply> {
    // The two commands whose state is large (a start drives its run to the end; an approval
    // may resume one) are boxed, so every other message's invocation stays a few KiB.
    let done = match command {
        Command::Start(c) => Box::pin(c.apply(mgr, caller)).await,
        Command::Get(c) => c.apply(mgr, caller).await.map(Some),
        Command::List(c) => c.apply(mgr, caller).await.map(Some),
        Command::Cancel(c) => c.apply(mgr, caller).await.map(Some),
        Command::Resume(c) => c.apply(mgr, caller).await.map(Some),
        Command::Usage(c) => c.apply(mgr, caller).await.map(Some),
        Command::Approve(c) => Box::pin(c.apply(mgr, caller)).await,
        Command::Ping | Command::Heartbeat | Command::Unknown(_) => return None,
    };
    done.unwrap_or_else(|e| Some(e.into_reply(caller.request_id)))
}

#[cfg(test)]
mod tests;

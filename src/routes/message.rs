//! `$default`: every client message; the direct reply is the two-way route's response body.

use super::{Handled, Invocation};
use crate::cmd::{self, Caller, CmdError, Command};
use crate::identity::Identity;
use crate::limits::MAX_ECHOED_TYPE_CHARS;
use crate::manager::Manager;
use crate::protocol::{ClientError, Envelope, ErrorCode, Event, Reply, RunRef};
use crate::time::now_ms;

/// Handles one message. Never fails the invocation for a client's mistake: every problem is an
/// `error` frame and the connection stays usable.
pub async fn handle(
    mgr: &Manager,
    body: Option<&str>,
    is_base64: bool,
    inv: &Invocation<'_>,
) -> Handled {
    let mut user_id = None;
    let reply = reply(mgr, body, is_base64, inv, &mut user_id).await;
    Handled {
        user_id,
        ..Handled::from(reply)
    }
}

/// The direct reply, if any; sets `user_id` once the connection's identity is resolved.
async fn reply(
    mgr: &Manager,
    body: Option<&str>,
    is_base64: bool,
    inv: &Invocation<'_>,
    user_id: &mut Option<String>,
) -> Option<Reply> {
    if is_base64 {
        let e = ClientError::new(ErrorCode::InvalidFrame, "binary frames are not supported");
        return Some(Reply::error(None, &e));
    }
    let parsed = match cmd::parse(body.unwrap_or("")) {
        Ok(p) => p,
        Err(fe) => return Some(Reply::error(fe.request_id.as_deref(), &fe.error)),
    };
    let rid = parsed.request_id.as_deref();
    let simple = |event| Some(Envelope::new(event, RunRef::request(rid), now_ms()).reply());
    let who = match &parsed.command {
        Command::Ping => return simple(Event::Pong {}),
        Command::Heartbeat => return simple(Event::HeartbeatAck {}),
        Command::Unknown(t) => {
            let shown: String = t.chars().take(MAX_ECHOED_TYPE_CHARS).collect();
            let e = ClientError::new(
                ErrorCode::UnknownType,
                format!("unknown message type {shown:?}"),
            );
            return Some(Reply::error(rid, &e));
        }
        _ => match identity(mgr, inv).await {
            Ok(w) => w,
            Err(e) => return Some(e.into_reply(rid)),
        },
    };
    *user_id = Some(who.user_id.clone());
    let caller = Caller {
        who: &who,
        origin: inv.origin(),
        message_id: inv.message_id.or(inv.aws_request_id),
        request_id: rid,
        function_arn: inv.function_arn,
    };
    cmd::apply(mgr, &caller, parsed.command).await
}

async fn identity(mgr: &Manager, inv: &Invocation<'_>) -> Result<Identity, CmdError> {
    mgr.identity(inv.connection_id).await?.ok_or_else(|| {
        ClientError::new(
            ErrorCode::Unauthorized,
            "connection has no identity; reconnect",
        )
        .into()
    })
}

//! `$default`: every client message; the direct reply is the two-way route's response body.

use super::{Handled, Invocation};
use crate::event::WsResponse;
use crate::limits::{DEFAULT_PAGE_SIZE, MAX_ECHOED_TYPE_CHARS};
use crate::manager::{Identity, Manager};
use crate::protocol::inbound::parse_frame;
use crate::protocol::outbound::{Empty, RunRef};
use crate::protocol::{ClientError, Envelope, ErrorCode, EventType, Inbound, ListRequest};
use crate::run::driver::{error_frame, log_storage, run_event};
use crate::run::view::{ExecutionView, ExecutionsView};
use crate::store::ListCursor;
use crate::sweep::reap;
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
    let response = match reply(mgr, body, is_base64, inv, &mut user_id).await {
        Some(frame) => WsResponse::status(200).with_body(frame),
        None => WsResponse::status(200),
    };
    Handled {
        response,
        user_id,
        error_code: None,
    }
}

/// The direct reply, if any; sets `user_id` once the connection's identity is resolved.
async fn reply(
    mgr: &Manager,
    body: Option<&str>,
    is_base64: bool,
    inv: &Invocation<'_>,
    user_id: &mut Option<String>,
) -> Option<String> {
    if is_base64 {
        let e = ClientError::new(ErrorCode::InvalidFrame, "binary frames are not supported");
        return Some(error_frame(None, &e));
    }
    let frame = match parse_frame(body.unwrap_or("")) {
        Ok(f) => f,
        Err(fe) => return Some(error_frame(fe.request_id.as_deref(), &fe.error)),
    };
    let rid = frame.request_id.as_deref();
    let simple = |kind| {
        let run = RunRef {
            request_id: rid,
            ..Default::default()
        };
        Some(Envelope::new(kind, run, now_ms(), Empty {}).to_json())
    };
    let who = match &frame.message {
        Inbound::Ping => return simple(EventType::Pong),
        Inbound::Heartbeat => return simple(EventType::HeartbeatAck),
        Inbound::Unknown(t) => {
            let shown: String = t.chars().take(MAX_ECHOED_TYPE_CHARS).collect();
            let e = ClientError::new(
                ErrorCode::UnknownType,
                format!("unknown message type {shown:?}"),
            );
            return Some(error_frame(rid, &e));
        }
        _ => match identity(mgr, inv).await {
            Ok(w) => w,
            Err(e) => return Some(error_frame(rid, &e)),
        },
    };
    *user_id = Some(who.user_id.clone());
    match frame.message {
        Inbound::StartAgent(s) | Inbound::UserMessage(s) => {
            crate::run::start_run(mgr, inv, &who, s).await
        }
        Inbound::GetExecution { run_id } => Some(get(mgr, &who, &run_id, rid).await),
        Inbound::CancelAgent { run_id } => Some(match check_run_id(mgr, &run_id) {
            Ok(()) => crate::run::cancel_run(mgr, inv, &who, &run_id, rid).await,
            Err(e) => error_frame(rid, &e),
        }),
        Inbound::ListExecutions(l) => Some(list(mgr, &who, l, rid).await),
        Inbound::Ping | Inbound::Heartbeat | Inbound::Unknown(_) => None,
    }
}

async fn identity(mgr: &Manager, inv: &Invocation<'_>) -> Result<Identity, ClientError> {
    match mgr.identity(inv.connection_id).await {
        Ok(Some(w)) => Ok(w),
        Ok(None) => Err(ClientError::new(
            ErrorCode::Unauthorized,
            "connection has no identity; reconnect",
        )),
        Err(e) => Err(e.client_error()),
    }
}

fn check_run_id(mgr: &Manager, run_id: &str) -> Result<(), ClientError> {
    crate::context::validate_id("run_id", run_id, mgr.config().mode)
        .map(|_| ())
        .map_err(ClientError::from)
}

async fn get(mgr: &Manager, who: &Identity, run_id: &str, rid: Option<&str>) -> String {
    if let Err(e) = check_run_id(mgr, run_id) {
        return error_frame(rid, &e);
    }
    let store = match mgr.store() {
        Ok(s) => s,
        Err(e) => return error_frame(rid, &e.client_error()),
    };
    match store.get_run(&who.user_id, run_id).await {
        Ok(Some(run)) => {
            // A run whose process died is never reported alive.
            let run = match reap(mgr, &run, now_ms()).await {
                Ok(reaped) => reaped.into_run(),
                Err(e) => {
                    log_storage(&e);
                    run
                }
            };
            run_event(EventType::Execution, &run, ExecutionView::of(&run, false))
        }
        Ok(None) => error_frame(rid, &ClientError::not_found()),
        Err(e) => {
            log_storage(&e);
            error_frame(rid, &ClientError::storage(&e))
        }
    }
}

async fn list(mgr: &Manager, who: &Identity, req: ListRequest<'_>, rid: Option<&str>) -> String {
    let cursor = match req.cursor.as_deref().map(ListCursor::parse) {
        Some(None) => {
            return error_frame(
                rid,
                &ClientError::new(ErrorCode::InvalidField, "cursor is invalid"),
            );
        }
        Some(Some(c)) => Some(c),
        None => None,
    };
    if let Some(t) = req.thread_id.as_deref()
        && let Err(e) = crate::context::validate_id("thread_id", t, mgr.config().mode)
    {
        return error_frame(rid, &e.into());
    }
    let store = match mgr.store() {
        Ok(s) => s,
        Err(e) => return error_frame(rid, &e.client_error()),
    };
    let limit = req.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    let page = match store
        .list_runs(
            &who.user_id,
            req.thread_id.as_deref(),
            limit,
            cursor.as_ref(),
        )
        .await
    {
        Ok(p) => p,
        Err(e) => {
            log_storage(&e);
            return error_frame(rid, &ClientError::storage(&e));
        }
    };
    let now = now_ms();
    let mut items = Vec::with_capacity(page.items.len());
    for run in page.items {
        items.push(match reap(mgr, &run, now).await {
            Ok(reaped) => reaped.into_run(),
            Err(e) => {
                log_storage(&e);
                run
            }
        });
    }
    let view = ExecutionsView {
        items: items.iter().map(|r| ExecutionView::of(r, false)).collect(),
        cursor: page.cursor.map(|c| c.to_string()),
    };
    let run = RunRef {
        request_id: rid,
        ..Default::default()
    };
    Envelope::new(EventType::Executions, run, now, view).to_json()
}

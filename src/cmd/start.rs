//! `start_agent` / `user_message` / `chat`: validate, create the run idempotently (one
//! conditional write), then drive it; a retried request gets the existing run.

use super::Caller;
use crate::context::{ContextParts, UserExecutionContext, request_id_from_message_id};
use crate::dispatch::{Dispatch, WorkerEvent};
use crate::limits::{LAMBDA_DEADLINE_MARGIN, RUN_RETENTION};
use crate::manager::Manager;
use crate::protocol::{ClientError, ErrorCode, Event, ExecutionView, Reply, StartRequest};
use crate::run::{WriteOutcome, next_version, write_run};
use crate::state::{ExecutionState, RunEvent, START};
use crate::store::{CreateOutcome, Expected, RunError, RunRecord};
use crate::telemetry::{log_storage, metrics};
use crate::time::now_ms;
use std::time::Duration;

/// Starts a run. `None` when the run's events were pushed; else the `execution` of a retried
/// request, or an `error`.
pub async fn apply(mgr: &Manager, caller: &Caller<'_>, req: StartRequest<'_>) -> Option<Reply> {
    match prepare(mgr, caller, &req) {
        Ok((record, ctx)) => create_and_drive(mgr, caller, record, &ctx).await,
        Err(reply) => Some(reply),
    }
}

/// The run a request asks for, validated, with its execution context.
fn prepare(
    mgr: &Manager,
    caller: &Caller<'_>,
    req: &StartRequest<'_>,
) -> Result<(RunRecord, UserExecutionContext), Reply> {
    let agent_name = req.agent.as_deref().unwrap_or(mgr.agents().default_name());
    let Some(agent) = mgr.agents().get(agent_name) else {
        return Err(caller.error(&ClientError::new(ErrorCode::UnknownAgent, "no such agent")));
    };
    agent
        .check_options(&req.options)
        .map_err(|e| caller.error(&e))?;
    let from_aws = caller.message_id.map(request_id_from_message_id);
    let Some(key) = caller.request_id.or(from_aws.as_deref()) else {
        let e = ClientError::new(ErrorCode::MissingField, "request_id is required");
        return Err(caller.error(&e));
    };
    // Validate the key before deriving an id from it.
    let request_id = caller.id(mgr, "request_id", key)?;
    let who = caller.who;
    let run_id = crate::run::derive_run_id(&who.user_id, request_id);
    let ctx = UserExecutionContext::new(
        ContextParts {
            user_id: &who.user_id,
            thread_id: req.thread_id.as_deref().unwrap_or(&run_id),
            run_id: &run_id,
            request_id,
            connection_id: caller.origin.connection_id,
            tenant_id: who.tenant_id.as_deref(),
            metadata: req.metadata.as_ref(),
        },
        mgr.config().mode,
    )
    .map_err(|e| caller.error(&e.into()))?;

    let now = now_ms();
    let mut limit = mgr.config().run_time_limit;
    // An inline run lives within this invocation; a worker caps the run by its own deadline.
    if let (Dispatch::Inline, Some(deadline)) = (mgr.config().dispatch, caller.origin.deadline_ms) {
        let left = Duration::from_millis(deadline.saturating_sub(now));
        limit = limit.min(left.saturating_sub(LAMBDA_DEADLINE_MARGIN));
    }
    let record = RunRecord {
        run_id: ctx.run_id.clone(),
        user_id: ctx.user_id.clone(),
        thread_id: ctx.thread_id.clone(),
        request_id: ctx.request_id.clone(),
        connection_id: ctx.connection_id.clone(),
        tenant_id: ctx.tenant_id.clone(),
        endpoint: Some(caller.origin.endpoint.to_owned()),
        agent: agent_name.to_owned(),
        // Nothing can observe the run before it exists: the machine walks to `running` here
        // and the create persists it there; a run for a worker waits in `starting` for the
        // worker's claim.
        state: match mgr.config().dispatch {
            Dispatch::Inline => ExecutionState::Pending.apply_all(&START),
            Dispatch::Async => ExecutionState::Pending.apply(RunEvent::Advance),
        }
        .unwrap_or(ExecutionState::Running),
        version: 1,
        created_at: now,
        updated_at: now,
        stale_at: now + mgr.config().heartbeat_deadline.as_millis() as u64,
        deadline_at: now + limit.as_millis() as u64,
        request: req.text.to_string(),
        options: req.options.clone(),
        expires_at: (now + RUN_RETENTION.as_millis() as u64) / 1000,
        ..Default::default()
    };
    Ok((record, ctx))
}

async fn create_and_drive(
    mgr: &Manager,
    caller: &Caller<'_>,
    record: RunRecord,
    ctx: &UserExecutionContext,
) -> Option<Reply> {
    let deps = match mgr.run_deps() {
        Ok(d) => d,
        Err(e) => return Some(caller.error(&e.client_error())),
    };
    match deps.store.create_run(&record).await {
        Ok(CreateOutcome::Created) => {}
        Ok(CreateOutcome::Existing(existing)) => {
            let view = ExecutionView::of(&existing, true);
            return Some(Reply::about(&existing, Event::Execution(view)));
        }
        Err(e) => {
            log_storage(&e);
            return Some(caller.error(&ClientError::storage(&e)));
        }
    }
    metrics::run_started();
    if mgr.config().dispatch == Dispatch::Async {
        return dispatch(mgr, caller, record).await;
    }
    let agent = mgr.agents().get(&record.agent)?.clone();
    crate::run::drive(deps, caller.origin, ctx, record, agent.as_ref()).await;
    None
}

/// The function name a worker is invoked by when Lambda gave no ARN (the local tool).
const LOCAL_FUNCTION: &str = "wsexec";

/// Hands the created run to a worker invocation of this function; the route returns at once
/// and the worker pushes the run's events. A refused hand-off ends the run `failed` with the
/// dispatch code (so a retry of the request creates it again) and is the client's reply.
async fn dispatch(mgr: &Manager, caller: &Caller<'_>, record: RunRecord) -> Option<Reply> {
    let env_name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok();
    let function = caller
        .function_arn
        .or(env_name.as_deref())
        .unwrap_or(LOCAL_FUNCTION);
    let event = WorkerEvent::new(&record.user_id, &record.run_id).to_json();
    let e = match mgr.invoker().invoke_async(function, &event).await {
        Ok(()) => return None,
        Err(e) => e,
    };
    let code = ErrorCode::Dispatch(e.kind());
    tracing::warn!(code = code.as_str(), error = ?e, "dispatch failed");
    let err = ClientError::new(code, "the run could not be started; retry")
        .retryable(e.kind().is_retryable());
    let Some(mut failed) = next_version(&record, &[RunEvent::Fail], now_ms()) else {
        return Some(Reply::about(&record, Event::AgentError(&err)));
    };
    failed.error = Some(RunError {
        code: code.as_str().to_owned(),
        message: err.message.to_string(),
    });
    let store = mgr.store().ok()?;
    let run = match write_run(store, failed, Expected::of(&record)).await {
        WriteOutcome::Written(r) | WriteOutcome::Landed(r) => {
            metrics::run_finished(r.state, 0);
            r
        }
        // Left `starting`: the sweep ends it after the heartbeat deadline.
        WriteOutcome::Conflict(r) => r,
        WriteOutcome::Failed(se) => {
            log_storage(&se);
            record
        }
    };
    Some(Reply::about(&run, Event::AgentError(&err)))
}

//! `start_agent` / `user_message` / `chat`: validate, create the run idempotently (one
//! conditional write; with usage limits on, one transaction that also takes a slot and counts
//! the run on its day, refused by a spent budget), then drive it; a retried request gets the
//! existing run.

use super::{Caller, CmdError};
use crate::context::{ContextParts, UserExecutionContext, request_id_from_message_id};
use crate::dispatch::{Dispatch, LOCAL_FUNCTION, WorkerEvent};
use crate::limits::{LAMBDA_DEADLINE_MARGIN, MAX_ID_FIELD_BYTES, MAX_TEXT_BYTES, RUN_RETENTION};
use crate::manager::Manager;
use crate::protocol::inbound::{Fields, sized, text_field};
use crate::protocol::{ClientError, Envelope, ErrorCode, Event, ExecutionView, Reply, RunRef};
use crate::run::{Executor, Leave, RunDeps, WriteOutcome, next_version, write_run};
use crate::state::{ExecutionState, RunEvent, START};
use crate::store::{CreateOutcome, Expected, Metering, RunError, RunRecord};
use crate::telemetry::{log_storage, metrics};
use crate::time::{next_utc_day, now_ms, utc_day};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

/// A request that starts a run (`start_agent`, `user_message`, `chat`).
#[derive(Clone, Debug, PartialEq)]
pub struct Start<'a> {
    /// The user's text: `user_request` or `message`/`content`/`text`.
    pub text: Cow<'a, str>,
    pub thread_id: Option<Cow<'a, str>>,
    pub agent: Option<Cow<'a, str>>,
    pub metadata: Option<Map<String, Value>>,
    /// Agent options: `payload.options`, plus `payload.delay_ms` (the `echo` agent's).
    pub options: Map<String, Value>,
}

impl<'a> Start<'a> {
    /// The request of a `kind` message (`start_agent` reads `payload.user_request`, the others
    /// `payload.message`, `content` or `text`).
    pub fn parse(kind: &str, f: Fields<'a>) -> Result<Self, ClientError> {
        let p = f.payload.unwrap_or_default();
        let (name, text) = if kind == "start_agent" {
            ("payload.user_request", p.user_request)
        } else {
            ("payload.message", p.message.or(p.content).or(p.text))
        };
        let mut options = p.options.unwrap_or_default();
        if let Some(d) = p.delay_ms {
            options.insert("delay_ms".into(), d);
        }
        let missing = || ClientError::new(ErrorCode::MissingField, format!("{name} is required"));
        Ok(Start {
            text: text_field(name, text, MAX_TEXT_BYTES)?.ok_or_else(missing)?,
            thread_id: sized("thread_id", f.thread_id, MAX_ID_FIELD_BYTES)?,
            agent: text_field("agent", f.agent, MAX_ID_FIELD_BYTES)?,
            metadata: p.metadata,
            options,
        })
    }

    /// Starts the run. `None` when the run's events were pushed; else the `execution` of a
    /// retried request, or the `agent_error` of a refused hand-off.
    pub async fn apply(
        self,
        mgr: &Manager,
        caller: &Caller<'_>,
    ) -> Result<Option<Reply>, CmdError> {
        let (mut record, ctx, agent) = prepare(mgr, caller, &self)?;
        let deps = mgr.run_deps()?;
        let mut max_active = None;
        if mgr.config().metered() {
            let applied = mgr.applied_limits(caller.who.owner()).await?;
            let now = mgr.clock().now_ms();
            record.metering = Some(Metering {
                day: utc_day(now),
                day_ends_at: next_utc_day(now),
                user_budget: applied.user_budget,
                tenant_budget: applied.tenant_budget,
            });
            record.holds_slot = applied.max_active_runs.is_some();
            max_active = Some(applied.max_active_runs);
        }
        let create = async {
            match max_active {
                Some(max) => deps.store.create_run_metered(&record, max).await,
                None => deps.store.create_run(&record).await,
            }
        };
        // A run driven here reads its thread's history alongside its create (the query cannot
        // see the run it is excluded from anyway): one round trip instead of two before the
        // model is asked.
        let drives_here = mgr.config().dispatch != Dispatch::Async;
        let history = async {
            match drives_here && agent.wants_history() {
                true => crate::run::history::thread_turns(deps.store, &record)
                    .await
                    .ok(),
                false => None,
            }
        };
        let (created, history) = tokio::join!(create, history);
        let created = created?;
        let refused = match created {
            CreateOutcome::Created => None,
            // The SDK retried a create whose answer was lost and met this very write: the run
            // is this request's, just created, and driven here as if the first answer had come.
            CreateOutcome::Existing(existing) if existing.is_own_create(&record) => {
                tracing::info!(run_id = %record.run_id, "create answer lost; its retry met it");
                None
            }
            CreateOutcome::Existing(existing) => {
                let view = ExecutionView::of(&existing, true);
                return Ok(Some(Reply::about(&existing, Event::Execution(view))));
            }
            CreateOutcome::AtLimit => Some(ClientError::quota(
                MAX_ACTIVE_RUNS,
                "you have as many runs going as you may (MAX_ACTIVE_RUNS_PER_USER); \
                 start again when one ends",
                None,
            )),
            CreateOutcome::OverBudget(scope) => {
                let ends = record.metering.as_ref().map_or(0, |m| m.day_ends_at);
                let retry = ends.saturating_sub(mgr.clock().now_ms());
                Some(ClientError::budget_spent(scope, retry))
            }
        };
        if let Some(err) = refused {
            metrics::quota_refused(err.limit.unwrap_or(MAX_ACTIVE_RUNS));
            let event = Envelope::new(
                Event::AgentError(&err),
                RunRef::request(Some(&record.request_id)),
                now_ms(),
            );
            return Ok(Some(event.reply()));
        }
        metrics::run_started();
        let mut origin = caller.origin;
        match mgr.config().dispatch {
            Dispatch::Async => return Ok(dispatch(mgr, &deps, caller, record).await),
            Dispatch::Inline => {}
            // Driven here until the route's end approaches, then handed to a worker.
            Dispatch::Auto => origin.leave = Some(route_leave(mgr, origin.deadline_ms)),
        }
        crate::run::drive_prefetched(deps, origin, &ctx, record, agent.as_ref(), history).await;
        Ok(None)
    }
}

/// The run a request asks for, validated, with its execution context.
fn prepare(
    mgr: &Manager,
    caller: &Caller<'_>,
    req: &Start<'_>,
) -> Result<(RunRecord, UserExecutionContext, Arc<dyn Executor>), CmdError> {
    let agent_name = req.agent.as_deref().unwrap_or(mgr.agents().default_name());
    let Some(agent) = mgr.agents().get(agent_name) else {
        return Err(ClientError::new(ErrorCode::UnknownAgent, "no such agent").into());
    };
    agent.check_options(&req.options)?;
    let from_aws = caller.message_id.map(request_id_from_message_id);
    let Some(key) = caller.request_id.or(from_aws.as_deref()) else {
        return Err(ClientError::new(ErrorCode::MissingField, "request_id is required").into());
    };
    // Validate the key before deriving an id from it.
    let request_id = caller.id(mgr, "request_id", key)?;
    let who = caller.who;
    let run_id = crate::run::derive_run_id(who.owner(), request_id);
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
    )?;

    let now = now_ms();
    let mut limit = mgr.config().run_time_limit_for(agent.time_needed());
    // An inline run lives within this invocation; one that can be continued (async, auto) is
    // handed on before any invocation's deadline instead.
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
            Dispatch::Inline | Dispatch::Auto => ExecutionState::Pending.apply_all(&START),
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
        created_by: Some(crate::run::ids::create_token()),
        expires_at: (now + RUN_RETENTION.as_millis() as u64) / 1000,
        // The first events' numbers, reserved by the create itself (no write of their own).
        seq_reserved: crate::run::journal::SEQ_RESERVATION,
        ..Default::default()
    };
    Ok((record, ctx, agent.clone()))
}

/// When an inline start under `RUN_DISPATCH=auto` must have left its route: the route's limit
/// from now (or Lambda's deadline, if sooner). It leaves whether or not it made progress: the
/// route's end is not its to move.
pub(crate) fn route_leave(mgr: &Manager, deadline_ms: Option<u64>) -> Leave {
    let by_route = now_ms() + mgr.config().route_limit.as_millis() as u64;
    Leave {
        by_ms: deadline_ms.map_or(by_route, |d| d.min(by_route)),
        without_progress: true,
    }
}

/// The limit a refused start names when its owner has too many alive runs.
const MAX_ACTIVE_RUNS: &str = "MAX_ACTIVE_RUNS_PER_USER";

/// Hands the created run to a worker invocation of this function; the route returns at once
/// and the worker pushes the run's events. A refused hand-off ends the run `failed` with the
/// dispatch code (so a retry of the request creates it again) and is the client's reply.
async fn dispatch(
    mgr: &Manager,
    deps: &RunDeps<'_>,
    caller: &Caller<'_>,
    record: RunRecord,
) -> Option<Reply> {
    let env_name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok();
    let function = caller
        .function_arn
        .or(env_name.as_deref())
        .unwrap_or(LOCAL_FUNCTION);
    let event = WorkerEvent::new(record.owner(), &record.run_id).to_json();
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
    let run = match write_run(deps.store, failed, Expected::of(&record)).await {
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

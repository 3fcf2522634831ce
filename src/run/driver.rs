//! The run driver: idempotent create, streamed events, heartbeats, time limit, terminal write.
//!
//! Writes per run: the create (persisted directly as `running`: `pending → starting → running`
//! is walked in memory, since nothing can observe the run before it exists) and the terminal
//! write (`running → completing → completed` in one conditional write), plus one heartbeat per
//! third of the heartbeat deadline during long steps. Every write is conditional on the
//! previously persisted (state, version), so a cancel or a sweep in between wins cleanly.

use super::channel::Channel;
use super::executor::{AgentFailure, DEFAULT_AGENT, RunInput, RunSink};
use super::view::ExecutionView;
use crate::context::{ContextParts, UserExecutionContext};
use crate::limits::{
    CANCEL_ATTEMPTS, HEARTBEAT_DIVISOR, LAMBDA_DEADLINE_MARGIN, MAX_ECHO_DELAY, RUN_RETENTION,
    TERMINAL_WRITE_ATTEMPTS,
};
use crate::manager::{Identity, Manager};
use crate::protocol::outbound::{
    AgentCancelled, AgentCompleted, AgentStarted, AgentThinking, RunRef, ToolCompleted,
    ToolExecuting,
};
use crate::protocol::{ClientError, Envelope, ErrorCode, EventType, StartRequest};
use crate::routes::Invocation;
use crate::state::{ExecutionState, RunEvent};
use crate::store::{CreateOutcome, Expected, RunError, RunRecord, StorageError, StorageErrorKind};
use crate::telemetry::metrics;
use crate::time::now_ms;
use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::time::Duration;

/// Bytes of the SHA-256 digest kept in a run id: 128 bits, so no two (user, key) pairs ever
/// share an id in practice, in a 36-character id well under `MAX_ID_LEN`.
const RUN_ID_DIGEST_BYTES: usize = 16;

/// A run's id: derived from (user, idempotency key), so a retried request maps to the same
/// item and the idempotent create is one conditional write with no separate idempotency item.
pub fn derive_run_id(user_id: &str, idempotency_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(user_id.as_bytes());
    h.update([0u8]);
    h.update(idempotency_key.as_bytes());
    let digest = h.finalize();
    let mut id = String::with_capacity(4 + 2 * RUN_ID_DIGEST_BYTES);
    id.push_str("run_");
    for b in &digest[..RUN_ID_DIGEST_BYTES] {
        // Writing into a String cannot fail.
        let _ = write!(id, "{b:02x}");
    }
    id
}

/// An event about `run` as a JSON frame.
pub fn run_event<P: Serialize>(kind: EventType, run: &RunRecord, payload: P) -> String {
    Envelope::new(kind, run_ref(run), now_ms(), payload).to_json()
}

fn run_ref(run: &RunRecord) -> RunRef<'_> {
    RunRef {
        run_id: Some(&run.run_id),
        thread_id: Some(&run.thread_id),
        request_id: Some(&run.request_id),
    }
}

/// An `error` frame.
pub fn error_frame(request_id: Option<&str>, err: &ClientError) -> String {
    let run = RunRef {
        request_id,
        ..Default::default()
    };
    Envelope::new(EventType::Error, run, now_ms(), err).to_json()
}

/// An `agent_error` frame about `run`.
pub fn agent_error(run: &RunRecord, err: &ClientError) -> String {
    run_event(EventType::AgentError, run, err)
}

/// The terminal state a run moves to, the events the machine walks to get there.
fn terminal_events(outcome: ExecutionState) -> &'static [RunEvent] {
    match outcome {
        ExecutionState::Completed => &[RunEvent::Advance, RunEvent::Advance],
        ExecutionState::Failed => &[RunEvent::Fail],
        ExecutionState::Timeout => &[RunEvent::TimeOut],
        ExecutionState::Dead => &[RunEvent::Die],
        _ => &[RunEvent::Cancel],
    }
}

/// `run` moved to `target` through the machine, as the next persisted version.
/// `None` when the machine does not allow it (the run is already terminal).
pub fn next_version(run: &RunRecord, target: ExecutionState, now: u64) -> Option<RunRecord> {
    let state = run.state.apply_all(terminal_events(target)).ok()?;
    let mut next = run.clone();
    next.state = state;
    next.version += 1;
    next.updated_at = now;
    Some(next)
}

/// Starts a run for a `start_agent` / `user_message` request. Returns the direct reply: `None`
/// when the run's events were pushed, or an `execution` (retried request) or `error` frame.
pub async fn start_run(
    mgr: &Manager,
    inv: &Invocation<'_>,
    who: &Identity,
    req: StartRequest<'_>,
) -> Option<String> {
    let client_request_id = req.request_id.as_deref();
    let fail = |e: ClientError| Some(error_frame(client_request_id, &e));
    let agent_name = req.agent.as_deref().unwrap_or(DEFAULT_AGENT);
    let Some(executor) = mgr.agents().get(agent_name).cloned() else {
        return fail(ClientError::new(ErrorCode::UnknownAgent, "no such agent"));
    };
    let from_aws = inv
        .message_id
        .or(inv.aws_request_id)
        .map(crate::context::request_id_from_message_id);
    let Some(idem) = client_request_id.or(from_aws.as_deref()) else {
        return fail(ClientError::new(
            ErrorCode::MissingField,
            "request_id is required",
        ));
    };
    // Validate the key before deriving an id from it.
    let request_id = match crate::context::validate_id("request_id", idem, mgr.config().mode) {
        Ok(r) => r,
        Err(e) => return fail(e.into()),
    };
    let run_id = derive_run_id(&who.user_id, request_id);
    let thread_id = req.thread_id.as_deref().unwrap_or(&run_id);
    let ctx = match UserExecutionContext::new(
        ContextParts {
            user_id: &who.user_id,
            thread_id,
            run_id: &run_id,
            request_id,
            connection_id: inv.connection_id,
            tenant_id: who.tenant_id.as_deref(),
            metadata: req.metadata.as_ref(),
        },
        mgr.config().mode,
    ) {
        Ok(c) => c,
        Err(e) => return fail(e.into()),
    };

    let now = now_ms();
    let mut limit = mgr.config().run_time_limit;
    if let Some(deadline) = inv.deadline_ms {
        let left = Duration::from_millis(deadline.saturating_sub(now));
        limit = limit.min(left.saturating_sub(LAMBDA_DEADLINE_MARGIN));
    }
    let running = ExecutionState::Pending.apply_all(&[RunEvent::Advance, RunEvent::Advance]);
    let record = RunRecord {
        run_id: ctx.run_id.clone(),
        user_id: ctx.user_id.clone(),
        thread_id: ctx.thread_id.clone(),
        request_id: ctx.request_id.clone(),
        connection_id: ctx.connection_id.clone(),
        tenant_id: ctx.tenant_id.clone(),
        endpoint: Some(inv.endpoint.clone()),
        agent: agent_name.to_owned(),
        state: running.unwrap_or(ExecutionState::Running),
        version: 1,
        created_at: now,
        updated_at: now,
        stale_at: now + mgr.config().heartbeat_deadline.as_millis() as u64,
        deadline_at: now + limit.as_millis() as u64,
        request: req.text.to_string(),
        result: None,
        error: None,
        cancelled_by: None,
        expires_at: (now + RUN_RETENTION.as_millis() as u64) / 1000,
    };
    let store = match mgr.store() {
        Ok(s) => s,
        Err(e) => return fail(e.client_error()),
    };
    match store.create_run(&record).await {
        Ok(CreateOutcome::Created) => {}
        Ok(CreateOutcome::Existing(existing)) => {
            let view = ExecutionView::of(&existing, true);
            return Some(run_event(EventType::Execution, &existing, view));
        }
        Err(e) => {
            log_storage(&e);
            return fail(ClientError::storage(&e));
        }
    }
    metrics::run_started();

    let mut sink = Driver {
        mgr,
        channel: Channel::new(mgr, &inv.endpoint, inv.connection_id),
        heartbeat_every: mgr.config().heartbeat_deadline / HEARTBEAT_DIVISOR,
        last_write: now,
        step: 0,
        run: record,
    };
    let started = run_event(
        EventType::AgentStarted,
        &sink.run,
        AgentStarted { agent_name },
    );
    sink.channel.send(&started).await;

    let input = RunInput {
        context: &ctx,
        text: &req.text,
        delay: Duration::from_millis(req.delay_ms.unwrap_or(0)).min(MAX_ECHO_DELAY),
    };
    let outcome = tokio::time::timeout(limit, executor.execute(&input, &mut sink)).await;
    let (target, result, error) = match outcome {
        Ok(Ok(result)) => (ExecutionState::Completed, Some(result), None),
        Ok(Err(AgentFailure::Failed(msg))) => (
            ExecutionState::Failed,
            None,
            Some(ClientError::new(ErrorCode::AgentFailed, msg)),
        ),
        Ok(Err(AgentFailure::Stopped)) => {
            sink.ended_elsewhere().await;
            return None;
        }
        Err(_elapsed) => (
            ExecutionState::Timeout,
            None,
            Some(
                ClientError::new(ErrorCode::RunTimeout, "the run exceeded its time limit")
                    .retryable(true),
            ),
        ),
    };
    sink.finish(target, result, error, now).await;
    None
}

/// The driver's side of a running run: the persisted record and the push channel.
struct Driver<'m> {
    mgr: &'m Manager,
    channel: Channel<'m>,
    run: RunRecord,
    heartbeat_every: Duration,
    last_write: u64,
    step: u32,
}

impl Driver<'_> {
    /// Persists the terminal state, then tells the client; a lost race defers to the winner.
    async fn finish(
        &mut self,
        target: ExecutionState,
        result: Option<Value>,
        error: Option<ClientError>,
        started_ms: u64,
    ) {
        let now = now_ms();
        let mut attempts = 0;
        let next = loop {
            attempts += 1;
            let Some(mut next) = next_version(&self.run, target, now) else {
                return;
            };
            next.result = result.clone();
            next.error = error.as_ref().map(|e| RunError {
                code: e.code.to_owned(),
                message: e.message.to_string(),
            });
            let store = match self.mgr.store() {
                Ok(store) => store,
                Err(e) => {
                    let e = StorageError::new(
                        StorageErrorKind::Unavailable,
                        "update_run",
                        e.to_string(),
                    );
                    return self.left_to_sweep(&e).await;
                }
            };
            let Err(e) = store.update_run(&next, Expected::of(&self.run)).await else {
                break next;
            };
            // A failed write may still have landed (its answer lost; the SDK's retry of such an
            // attempt reports Conflict), and a Conflict may come from this run's own heartbeat
            // whose answer was lost: the stored run says which.
            match store.get_run(&self.run.user_id, &self.run.run_id).await {
                Ok(Some(current)) if current == next => break next,
                Ok(Some(current)) if current.state.is_terminal() => {
                    return self.tell_ended(&current).await;
                }
                Ok(Some(current))
                    if e.kind() == StorageErrorKind::Conflict
                        && attempts < TERMINAL_WRITE_ATTEMPTS =>
                {
                    self.run = current;
                }
                _ => return self.left_to_sweep(&e).await,
            }
        };
        metrics::run_finished(next.state, now.saturating_sub(started_ms));
        self.run = next;
        let frame = match &error {
            None => run_event(
                EventType::AgentCompleted,
                &self.run,
                AgentCompleted {
                    agent_name: &self.run.agent,
                    result: self.run.result.as_ref().unwrap_or(&Value::Null),
                    execution_time_ms: now.saturating_sub(started_ms),
                },
            ),
            Some(e) => agent_error(&self.run, e),
        };
        self.channel.send(&frame).await;
    }

    /// The terminal write failed and the run stays alive in storage; the sweep will end it.
    /// The client hears now.
    async fn left_to_sweep(&mut self, e: &StorageError) {
        log_storage(e);
        let frame = agent_error(&self.run, &ClientError::storage(e));
        self.channel.send(&frame).await;
    }

    /// Another writer ended the run (cancel, sweep): read how, and tell this connection.
    async fn ended_elsewhere(&mut self) {
        let current = match self.mgr.store() {
            Ok(store) => store.get_run(&self.run.user_id, &self.run.run_id).await,
            Err(_) => return,
        };
        match current {
            Ok(Some(run)) => self.tell_ended(&run).await,
            Ok(None) => {}
            Err(e) => log_storage(&e),
        }
    }

    /// Tells this connection about a cancel it did not ask for; the sweep already told the
    /// owner about deaths and timeouts.
    async fn tell_ended(&mut self, run: &RunRecord) {
        if run.state == ExecutionState::Cancelled
            && run.cancelled_by.as_deref() != Some(self.channel.connection_id())
        {
            let frame = run_event(
                EventType::AgentCancelled,
                run,
                AgentCancelled { state: "cancelled" },
            );
            self.channel.send(&frame).await;
        }
    }
}

#[async_trait]
impl RunSink for Driver<'_> {
    async fn thinking(&mut self, thought: &str) {
        self.step += 1;
        let step_number = self.step;
        let frame = run_event(
            EventType::AgentThinking,
            &self.run,
            AgentThinking {
                thought,
                step_number,
            },
        );
        self.channel.send(&frame).await;
    }

    async fn tool_executing(&mut self, tool_name: &str, parameters: &Value) {
        let frame = run_event(
            EventType::ToolExecuting,
            &self.run,
            ToolExecuting {
                tool_name,
                parameters,
            },
        );
        self.channel.send(&frame).await;
    }

    async fn tool_completed(&mut self, tool_name: &str, result: &Value, execution_time_ms: u64) {
        let payload = ToolCompleted {
            tool_name,
            result,
            execution_time_ms,
        };
        let frame = run_event(EventType::ToolCompleted, &self.run, payload);
        self.channel.send(&frame).await;
    }

    async fn heartbeat(&mut self) -> Result<(), AgentFailure> {
        let now = now_ms();
        if now.saturating_sub(self.last_write) < self.heartbeat_every.as_millis() as u64 {
            return Ok(());
        }
        let store = match self.mgr.store() {
            Ok(s) => s,
            Err(_) => return Ok(()),
        };
        let mut next = self.run.clone();
        next.state = self
            .run
            .state
            .apply(RunEvent::Heartbeat)
            .map_err(|_| AgentFailure::Stopped)?;
        next.version += 1;
        next.updated_at = now;
        next.stale_at = now + self.mgr.config().heartbeat_deadline.as_millis() as u64;
        match store.update_run(&next, Expected::of(&self.run)).await {
            Ok(()) => {
                self.run = next;
                self.last_write = now;
                Ok(())
            }
            Err(e) if e.kind() == StorageErrorKind::Conflict => {
                match store.get_run(&self.run.user_id, &self.run.run_id).await {
                    Ok(Some(current)) if current.state.is_alive() => {
                        self.run = current;
                        Ok(())
                    }
                    Ok(_) => Err(AgentFailure::Stopped),
                    Err(e) => {
                        log_storage(&e);
                        Ok(())
                    }
                }
            }
            Err(e) => {
                // Best effort: a missed renewal only risks the sweep calling the run dead.
                log_storage(&e);
                Ok(())
            }
        }
    }
}

/// Logs a storage failure with its kind and raw cause, and counts it.
pub fn log_storage(e: &StorageError) {
    metrics::storage_error(e.kind());
    tracing::warn!(
        operation = e.operation(),
        code = e.code(),
        retryable = e.is_retryable(),
        error = ?e,
        "storage error"
    );
}

/// Cancels the caller's run. Returns the reply frame.
pub async fn cancel_run(
    mgr: &Manager,
    inv: &Invocation<'_>,
    who: &Identity,
    run_id: &str,
    request_id: Option<&str>,
) -> String {
    let fail = |e: ClientError| error_frame(request_id, &e);
    let store = match mgr.store() {
        Ok(s) => s,
        Err(e) => return fail(e.client_error()),
    };
    let cancelled = |run: &RunRecord| {
        metrics::run_finished(run.state, run.updated_at.saturating_sub(run.created_at));
        run_event(
            EventType::AgentCancelled,
            run,
            AgentCancelled { state: "cancelled" },
        )
    };
    // A heartbeat may bump the version between our read and write: re-read and retry. A
    // Conflict may also be our own write, landed by an attempt whose answer was lost and found
    // by the SDK's retry: the re-read shows it.
    let mut ours: Option<RunRecord> = None;
    for _ in 0..CANCEL_ATTEMPTS {
        let run = match store.get_run(&who.user_id, run_id).await {
            Ok(Some(r)) => r,
            Ok(None) => return fail(ClientError::not_found()),
            Err(e) => {
                log_storage(&e);
                return fail(ClientError::storage(&e));
            }
        };
        if ours.as_ref() == Some(&run) {
            return cancelled(&run);
        }
        let Some(mut next) = next_version(&run, ExecutionState::Cancelled, now_ms()) else {
            return fail(ClientError::new(
                ErrorCode::RunFinished,
                format!("run already {}", run.state),
            ));
        };
        next.cancelled_by = Some(inv.connection_id.to_owned());
        match store.update_run(&next, Expected::of(&run)).await {
            Ok(()) => return cancelled(&next),
            Err(e) if e.kind() == StorageErrorKind::Conflict => ours = Some(next),
            Err(e) => {
                // The write may have landed although its answer was lost.
                if let Ok(Some(current)) = store.get_run(&who.user_id, run_id).await
                    && current == next
                {
                    return cancelled(&current);
                }
                log_storage(&e);
                return fail(ClientError::storage(&e));
            }
        }
    }
    fail(ClientError::storage(&StorageError::conflict("cancel_run")))
}

//! The `Executor` trait agents implement, what they are given, and how they report progress.
//!
//! The driver owns a run's lifecycle (heartbeats, cancellation, deadline, terminal write): it
//! polls the agent's future and drops it to stop the agent. An agent only turns a request into
//! a result and reports progress through its [`RunSink`]; it never touches storage.

use crate::context::UserExecutionContext;
use crate::limits::MAX_ECHOED_TYPE_CHARS;
use crate::protocol::{ClientError, DiscardReason, ErrorCode, Event};
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::borrow::Cow;
use tokio::sync::{mpsc, oneshot};

/// One earlier turn of the run's thread: the user's text and the agent's final answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    pub user: String,
    pub assistant: String,
}

/// What an agent is asked to do.
#[derive(Clone, Copy, Debug)]
pub struct RunInput<'a> {
    pub context: &'a UserExecutionContext,
    /// The user's text.
    pub text: &'a str,
    /// The thread's earlier completed turns, oldest first (empty unless the agent asks for
    /// them with [`Executor::wants_history`]).
    pub history: &'a [Turn],
    /// Agent options from the request (already accepted by [`Executor::check_options`]).
    pub options: &'a Map<String, Value>,
    /// When the run times out, epoch milliseconds: an agent that would only wait past it (a
    /// provider's `Retry-After`) gives up at once instead.
    pub deadline_at: u64,
    /// The steps the run journaled before this invocation ([`RunSink::save_step`]), oldest
    /// first: empty unless the run is a continuation. A journaled step is never done again.
    pub journal: &'a [Value],
    /// How many times the run was continued (0: the run's first invocation).
    pub continuation: u64,
    /// Whether the last invocation may have stopped in the middle of a step (its worker died,
    /// or it handed off mid-step at its deadline): the step is done again, and text streamed
    /// for it withdrawn first (`agent_text_discarded`, `redo`). False for a first invocation
    /// and for a continuation that begins at a safe point ([`RunSink::safe_point`]).
    pub redo: bool,
}

/// Why an agent did not produce a result: a client-safe code, message and retryability. The
/// run becomes `failed` and the client hears `agent_error` with exactly these.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct AgentFailure {
    pub code: ErrorCode,
    /// Shown to the client: never a key, a prompt or a raw provider body.
    pub message: Cow<'static, str>,
    pub retryable: bool,
}

impl AgentFailure {
    /// The agent failed for its own reasons (`agent_failed`, not retryable).
    pub fn failed(message: impl Into<Cow<'static, str>>) -> Self {
        AgentFailure {
            code: ErrorCode::AgentFailed,
            message: message.into(),
            retryable: false,
        }
    }

    /// A failure with its own code.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>, retryable: bool) -> Self {
        AgentFailure {
            code,
            message: message.into(),
            retryable,
        }
    }

    /// The failure as the client sees it.
    pub fn client_error(&self) -> ClientError {
        ClientError::new(self.code, self.message.clone()).retryable(self.retryable)
    }
}

/// One report from an agent; the driver turns each into a pushed event.
///
/// The queue's slots are as large as its largest report, and a streaming run's queue holds
/// blocks of 32 of them: the rare, large reports (a tool call, a journaled step) are boxed so
/// a slot is the size of a text delta (32 bytes, against 88 unboxed).
#[derive(Debug)]
pub enum Progress {
    /// `agent_thinking`.
    Thinking(String),
    /// `tool_executing`.
    ToolExecuting(Box<ToolExecuting>),
    /// `tool_completed`.
    ToolCompleted(Box<ToolCompleted>),
    /// Streamed answer text of model round `round`; the driver coalesces deltas of one round
    /// into `agent_delta` pushes.
    Delta { round: u32, text: String },
    /// The text streamed for `round` so far is not answer (`agent_text_discarded`).
    Discard { round: u32, reason: DiscardReason },
    /// A model round ended having used these tokens (as its provider reported them); the
    /// driver adds them to the run's usage (and a metered run's day counters), pushes nothing,
    /// and answers `go_on`: `false` once a daily token budget is spent.
    Usage {
        input_tokens: u64,
        output_tokens: u64,
        go_on: oneshot::Sender<bool>,
    },
    /// A completed step to journal before the agent goes on; `saved` is answered once it is
    /// durable (or could not be made so).
    Step {
        body: Box<Value>,
        saved: oneshot::Sender<()>,
    },
    /// The agent is between steps with nothing in flight (every step so far journaled): the
    /// driver may hand the run to a continuation here, dropping the agent while it waits;
    /// `go_on` is answered when it goes on instead.
    SafePoint { go_on: oneshot::Sender<()> },
    /// Tool calls that wait for the user's approval; every step so far is journaled. The
    /// driver suspends the run (its invocation returns) and drops the agent.
    Awaiting(Vec<PendingApproval>),
}

/// A tool call that started ([`Progress::ToolExecuting`]).
#[derive(Debug)]
pub struct ToolExecuting {
    pub tool_name: String,
    pub parameters: Value,
    /// The model's id of the call, when the agent has one.
    pub call_id: Option<String>,
}

/// A tool call that ended ([`Progress::ToolCompleted`]).
#[derive(Debug)]
pub struct ToolCompleted {
    pub tool_name: String,
    pub result: Value,
    pub execution_time_ms: u64,
    /// The model's id of the call, when the agent has one.
    pub call_id: Option<String>,
}

/// One tool call that waits for the user's approval before it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingApproval {
    /// The model's id of the call (what `approve_tool` names).
    pub call_id: String,
    /// The tool's name as the events show it.
    pub tool_name: String,
    /// The call's arguments (a string when they are not JSON).
    pub parameters: Value,
}

impl Progress {
    /// The event a step report becomes, `step_number` numbering `agent_thinking`; `None` for
    /// text, which the driver coalesces.
    pub fn step_event(&self, step_number: u32) -> Option<Event<'_>> {
        Some(match self {
            Progress::Thinking(thought) => Event::AgentThinking {
                thought,
                step_number,
            },
            Progress::ToolExecuting(t) => Event::ToolExecuting {
                tool_name: &t.tool_name,
                parameters: &t.parameters,
                call_id: t.call_id.as_deref(),
            },
            Progress::ToolCompleted(t) => Event::ToolCompleted {
                tool_name: &t.tool_name,
                result: &t.result,
                execution_time_ms: t.execution_time_ms,
                call_id: t.call_id.as_deref(),
            },
            Progress::Discard { round, reason } => Event::AgentTextDiscarded {
                round: *round,
                reason: *reason,
            },
            Progress::Delta { .. }
            | Progress::Usage { .. }
            | Progress::Step { .. }
            | Progress::SafePoint { .. }
            | Progress::Awaiting(_) => return None,
        })
    }
}

/// Where an agent reports progress. Reports are delivered in order; a send waits while the
/// driver is behind (so a fast stream cannot buffer without bound) and is dropped silently once
/// the run has ended.
#[derive(Clone, Debug)]
pub struct RunSink {
    tx: mpsc::Sender<Progress>,
}

/// Reports an agent may have outstanding before its sends wait for the driver.
pub const PROGRESS_QUEUE: usize = 64;

impl RunSink {
    /// A sink and the receiving end the driver (or a test) reads reports from.
    pub fn channel() -> (RunSink, mpsc::Receiver<Progress>) {
        let (tx, rx) = mpsc::channel(PROGRESS_QUEUE);
        (RunSink { tx }, rx)
    }

    async fn send(&self, p: Progress) {
        // A closed channel means the run is over; the agent's future is about to be dropped.
        let _ = self.tx.send(p).await;
    }

    /// `agent_thinking`.
    pub async fn thinking(&self, thought: impl Into<String>) {
        self.send(Progress::Thinking(thought.into())).await;
    }

    /// `tool_executing`.
    pub async fn tool_executing(&self, tool_name: &str, parameters: Value) {
        self.tool_call_executing(None, tool_name, parameters).await;
    }

    /// `tool_completed`.
    pub async fn tool_completed(&self, tool_name: &str, result: Value, execution_time_ms: u64) {
        self.tool_call_completed(None, tool_name, result, execution_time_ms)
            .await;
    }

    /// `tool_executing` of the model's call `call_id`.
    pub async fn tool_call_executing(
        &self,
        call_id: Option<&str>,
        tool_name: &str,
        parameters: Value,
    ) {
        self.send(Progress::ToolExecuting(Box::new(ToolExecuting {
            tool_name: tool_name.to_owned(),
            parameters,
            call_id: call_id.map(str::to_owned),
        })))
        .await;
    }

    /// `tool_completed` of the model's call `call_id`.
    pub async fn tool_call_completed(
        &self,
        call_id: Option<&str>,
        tool_name: &str,
        result: Value,
        execution_time_ms: u64,
    ) {
        self.send(Progress::ToolCompleted(Box::new(ToolCompleted {
            tool_name: tool_name.to_owned(),
            result,
            execution_time_ms,
            call_id: call_id.map(str::to_owned),
        })))
        .await;
    }

    /// Streamed answer text (any size; empty text is ignored), for agents without model
    /// rounds (round 1).
    pub async fn delta(&self, text: &str) {
        self.round_delta(1, text).await;
    }

    /// Streamed answer text of model round `round` (1-based).
    pub async fn round_delta(&self, round: u32, text: &str) {
        if !text.is_empty() {
            let text = text.to_owned();
            self.send(Progress::Delta { round, text }).await;
        }
    }

    /// A model round's tokens, as its provider reported them (recorded on the run, counted
    /// against budgets; nothing is pushed). `false` once a daily token budget is spent: the
    /// agent then asks for no further round.
    pub async fn usage(&self, input_tokens: u64, output_tokens: u64) -> bool {
        let (go_on, answer) = oneshot::channel();
        self.send(Progress::Usage {
            input_tokens,
            output_tokens,
            go_on,
        })
        .await;
        // A dropped answer means the run ended; the agent is about to be stopped.
        answer.await.unwrap_or(true)
    }

    /// Withdraws every delta of `round` sent so far (the round called a tool, or is redone):
    /// the client drops that text, and it leaves the run's checkpointed text. Deltas of the
    /// same round sent afterwards are kept.
    pub async fn discard_round(&self, round: u32, reason: DiscardReason) {
        self.send(Progress::Discard { round, reason }).await;
    }

    /// Journals a completed step (any JSON the agent can replay from; an oversized one is cut
    /// with a marker, see [`crate::store::step::fit_step`]) and returns once it is durable, so
    /// the next step starts only after it. A continuation of the run gets every saved step back
    /// in [`RunInput::journal`]. A step that could not be stored is logged and the run goes on
    /// (a continuation then does that step again, within the rules of what is never redone).
    pub async fn save_step(&self, body: Value) {
        let (saved, done) = oneshot::channel();
        let body = Box::new(body);
        self.send(Progress::Step { body, saved }).await;
        // A dropped answer means the run ended; the agent is about to be stopped.
        let _ = done.await;
    }

    /// Marks a safe point: every step so far is journaled and nothing is in flight, so a
    /// continuation could go on from the journal without redoing anything. Returns when the
    /// run goes on here; when the driver hands the run off instead, it never returns (the
    /// agent's future is dropped while it waits).
    pub async fn safe_point(&self) {
        let (go_on, resume) = oneshot::channel();
        self.send(Progress::SafePoint { go_on }).await;
        if resume.await.is_err() {
            // The run left this invocation: wait to be dropped rather than start a step.
            std::future::pending::<()>().await;
        }
    }
}

impl RunSink {
    /// Suspends the run until the user answers `calls` (each pushed as
    /// `tool_approval_required`): every step so far must be journaled. Never returns while a
    /// driver reads the reports (the agent is dropped; a continuation goes on from the journal
    /// with the answers); returns at once when nothing does (the run is over).
    pub async fn await_approval(&self, calls: Vec<PendingApproval>) {
        if self.tx.send(Progress::Awaiting(calls)).await.is_ok() {
            std::future::pending::<()>().await;
        }
    }
}

/// Refuses the first option in `options` that `agent` does not take (`known`), naming it, so a
/// misspelt option is an `invalid_field` error rather than silently ignored.
pub fn refuse_unknown_options(
    agent: &str,
    options: &Map<String, Value>,
    known: &[&str],
) -> Result<(), ClientError> {
    let Some(unknown) = options.keys().find(|k| !known.contains(&k.as_str())) else {
        return Ok(());
    };
    // The name is the client's own text: echo a bounded prefix of it, as `unknown_type` does.
    let shown: String = unknown.chars().take(MAX_ECHOED_TYPE_CHARS).collect();
    let takes = if known.is_empty() {
        "none".to_owned()
    } else {
        known.join(", ")
    };
    Err(ClientError::new(
        ErrorCode::InvalidField,
        format!("payload.options.{shown} is not an option of the {agent} agent (it takes {takes})"),
    ))
}

/// An agent: turns a request into a result, reporting progress through the sink.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Checks a request's options before the run is created; an error is the client's reply
    /// and no run exists.
    fn check_options(&self, _options: &Map<String, Value>) -> Result<(), ClientError> {
        Ok(())
    }

    /// Whether the run's input should carry its thread's earlier turns (one extra query).
    fn wants_history(&self) -> bool {
        false
    }

    /// How long one run may need at a slow provider's pace. With `RUN_TIME_LIMIT_MS` unset it
    /// sets the run's time limit, within what the dispatch mode allows; `None`: the 15 s default.
    fn time_needed(&self) -> Option<std::time::Duration> {
        None
    }

    /// Runs the agent to completion. The returned value is the run's `result`; when it has a
    /// `text` string and the agent streamed deltas, the deltas it did not discard concatenate
    /// to that text.
    async fn execute(&self, input: RunInput<'_>, sink: RunSink) -> Result<Value, AgentFailure>;

    /// Whether a run of this agent may suspend for the user's approval of a tool call
    /// ([`RunSink::await_approval`]): then an inline run keeps its steps, to journal them if it
    /// does.
    fn may_suspend(&self) -> bool {
        false
    }
    /// Gets ready for a run while the driver reads its history (the `llm` agent opens its
    /// provider's connection), so the two overlap; best effort.
    async fn prepare(&self) {}
    /// Releases what the agent holds outside the process (the `llm` agent ends its MCP
    /// sessions), on a graceful shutdown.
    async fn shutdown(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A streaming run's queue is blocks of 32 reports: a report is no larger than a text
    /// delta, so a tool call or a step added unboxed would fail here (88 bytes before).
    #[test]
    fn a_progress_report_is_the_size_of_a_text_delta() {
        assert!(
            std::mem::size_of::<Progress>() <= 32,
            "{} bytes",
            std::mem::size_of::<Progress>()
        );
    }
}

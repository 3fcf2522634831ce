//! The agent loop: stream a round, run the tools the model asked for (each with its events),
//! hand the results back, and repeat until the model answers or the round cap is reached.

use crate::llm::chat::{
    ChatProvider, ChatRequest, Message, RoundOutput, RoundSink, ToolCall, ToolSpec, Usage,
};
use crate::llm::config::{LlmConfigError, LlmSettings, Provider};
use crate::llm::error::{LlmErrorKind, LlmFailure, ProviderError};
use crate::llm::http::Timeouts;
use crate::llm::{AgentEvents, PriorTurn, replay};
use crate::mcp::McpTools;
use crate::protocol::DiscardReason;
use crate::tools::{self, Tool};
use async_trait::async_trait;
use futures_util::StreamExt;
use once_cell::sync::OnceCell;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rounds of tool calls per run. After the last one the model is asked once more with tools
/// disabled (`tool_choice: none`) so it must answer from what it has; if it still asks for a
/// tool, the run fails `llm_invalid` (a model looping on tools will not converge).
pub const MAX_TOOL_ROUNDS: usize = 8;
/// Retries of a rate-limited request: a short burst limit clears in a few seconds, a
/// sustained one will not clear within a run.
pub const MAX_THROTTLE_RETRIES: u32 = 2;
/// The wait before a throttled retry when the provider gives no `Retry-After` (doubled each time).
pub const THROTTLE_BACKOFF: Duration = Duration::from_millis(500);
/// The longest `Retry-After` honoured at all: past a minute the provider means a quota window,
/// not a burst, and the user is better told at once than kept waiting.
pub const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(60);
/// What a retry needs after its wait, at the least, to be worth making: a wait that leaves the
/// run less than this before its deadline gives up at once (`llm_throttled`) instead.
pub const RETRY_MIN_TIME: Duration = Duration::from_secs(1);
/// The most text one run may stream: bounds memory against a server that never stops.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// The longest tool name echoed in events (a model may invent any string).
pub const MAX_TOOL_NAME_CHARS: usize = 64;
/// Tool calls of one round run at once, at most this many: models ask for a handful in
/// parallel, and each holds a connection to its server (or a task) until it answers.
pub const MAX_CONCURRENT_TOOL_CALLS: usize = 8;

/// Where a run continues from: the steps its earlier invocations journaled, and which
/// continuation this is (the default: a run's first invocation, nothing journaled).
#[derive(Clone, Copy, Debug, Default)]
pub struct Continued<'a> {
    pub journal: &'a [Value],
    pub continuation: u64,
    /// Whether the last invocation may have stopped mid-round (see `RunInput::redo`).
    pub redo: bool,
}

/// The `llm` agent: settings, the tools offered, and the provider client built on first use.
pub struct LlmAgent {
    settings: LlmSettings,
    tools: Vec<Arc<dyn Tool>>,
    specs: Vec<ToolSpec>,
    timeouts: Timeouts,
    provider: OnceCell<Box<dyn ChatProvider>>,
    /// The MCP servers' tools, discovered on the first run that needs them.
    mcp: Option<McpTools>,
}

impl LlmAgent {
    /// The agent the settings describe; `None` when `LLM_PROVIDER` is unset.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<LlmAgent>, LlmConfigError> {
        Ok(LlmSettings::from_lookup(get)?.map(LlmAgent::new))
    }

    /// The agent for validated settings, with the built-in tools they name.
    pub fn new(settings: LlmSettings) -> LlmAgent {
        let tools = settings
            .tools
            .iter()
            .filter_map(|n| tools::builtin(n))
            .collect();
        let mcp = (!settings.mcp.is_empty()).then(|| McpTools::new(settings.mcp.clone()));
        let mut agent = LlmAgent {
            settings,
            tools,
            specs: Vec::new(),
            timeouts: Timeouts::default(),
            provider: OnceCell::new(),
            mcp,
        };
        agent.refresh_specs();
        agent
    }

    /// The same agent with other client time limits (tests shorten them).
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self.provider = OnceCell::new();
        self
    }

    /// The same agent offering one more tool (replacing a tool of the same name).
    pub fn with_tool(mut self, tool: Arc<dyn Tool>) -> Self {
        self.tools.retain(|t| t.name() != tool.name());
        self.tools.push(tool);
        self.refresh_specs();
        self
    }

    /// The settings the agent runs with.
    pub fn settings(&self) -> &LlmSettings {
        &self.settings
    }

    fn refresh_specs(&mut self) {
        self.specs = self.tools.iter().map(|t| spec_of(t.as_ref())).collect();
    }

    /// The tools of one run: the built-ins, then every MCP server's (discovered now if the
    /// instance has no fresh list). Without `MCP_SERVERS` nothing is built or contacted.
    async fn run_tools(&self) -> (Vec<Arc<dyn Tool>>, Vec<ToolSpec>) {
        let Some(mcp) = &self.mcp else {
            return (self.tools.clone(), self.specs.clone());
        };
        let mut tools = self.tools.clone();
        let mut specs = self.specs.clone();
        for t in mcp.tools().await {
            if tools.iter().any(|b| b.name() == t.name()) {
                continue;
            }
            specs.push(spec_of(t.as_ref()));
            tools.push(t);
        }
        (tools, specs)
    }

    /// Whether a run may wait for an approval: `LLM_TOOLS_APPROVAL` names an offered built-in,
    /// an MCP server's entry does not say `never`, or an added tool asks for it.
    pub fn may_suspend(&self) -> bool {
        use crate::mcp::config::RequireApproval;
        self.tools
            .iter()
            .any(|t| t.hints().require_approval || self.settings.tools_approval.contains(&t.name()))
            || self
                .settings
                .mcp
                .iter()
                .any(|m| m.require_approval != RequireApproval::Never)
    }

    /// Whether a call to `name` (among a run's `tools`) waits for the user's approval: an MCP
    /// tool by its server entry's `require_approval` and its annotations, a built-in by
    /// `LLM_TOOLS_APPROVAL`. An unknown tool runs nothing, so it needs none.
    fn needs_approval(&self, tools: &[Arc<dyn Tool>], name: &str) -> bool {
        let Some(tool) = tools.iter().find(|t| t.name() == name) else {
            return false;
        };
        let builtin = self.tools.iter().any(|b| b.name() == name);
        tool.hints().require_approval || (builtin && self.settings.tools_approval.contains(&name))
    }

    /// Builds the provider client and opens its connection (see [`ChatProvider::prepare`]),
    /// for the driver to overlap with the run's history read.
    pub async fn prepare(&self) {
        if let Ok(p) = self.provider() {
            p.prepare().await;
        }
    }

    /// Ends the MCP servers' sessions (graceful shutdown).
    pub async fn shutdown(&self) {
        if let Some(mcp) = &self.mcp {
            mcp.shutdown().await;
        }
    }

    fn provider(&self) -> Result<&dyn ChatProvider, ProviderError> {
        self.provider
            .get_or_try_init(|| -> Result<Box<dyn ChatProvider>, ProviderError> {
                let s = &self.settings;
                Ok(match s.provider {
                    Provider::OpenAi => Box::new(crate::llm::openai::OpenAi::new(
                        &s.base_url,
                        s.api_key.clone(),
                        self.timeouts,
                    )?),
                    Provider::Bedrock => Box::new(crate::llm::bedrock::Bedrock::new(
                        s.aws.as_ref().ok_or_else(|| {
                            ProviderError::new(LlmErrorKind::Invalid, "no aws settings")
                        })?,
                        self.timeouts,
                    )),
                })
            })
            .map(|b| b.as_ref())
    }

    /// Answers `text` after the thread's `history`, streaming through `events`, with no
    /// deadline of its own (see [`LlmAgent::run_until`]).
    pub async fn run(
        &self,
        text: &str,
        history: &[PriorTurn],
        events: &dyn AgentEvents,
    ) -> Result<Value, LlmFailure> {
        self.run_until(text, history, events, None).await
    }

    /// Answers `text` after the thread's `history`, streaming through `events` from the first
    /// token. Returns `{"text", "model", "usage"?: {"input_tokens", "output_tokens"}}`; `text`
    /// is exactly the concatenation of the deltas sent and not discarded (for an answer longer
    /// than [`MAX_KEPT_ANSWER_BYTES`], its first that many bytes, with `truncated: true` and
    /// `text_bytes`) (a round that turns
    /// out to call a tool has its text discarded and shown as thinking). A throttle whose wait
    /// would not fit before `deadline` gives up at once.
    pub async fn run_until(
        &self,
        text: &str,
        history: &[PriorTurn],
        events: &dyn AgentEvents,
        deadline: Option<Instant>,
    ) -> Result<Value, LlmFailure> {
        self.run_continued(text, history, events, deadline, Continued::default())
            .await
    }

    /// [`LlmAgent::run_until`] for a continuation `from` a run's journal (see [`crate::llm::replay`]): journaled rounds are not requested again,
    /// journaled tool calls not called again, and a call in flight when the run's last worker
    /// stopped is made again only when its tool says that is safe ([`Tool::hints`]); otherwise
    /// the model is told its outcome is unknown. The round that was interrupted is requested
    /// again and its text streamed so far withdrawn (`agent_text_discarded`, `redo`).
    pub async fn run_continued(
        &self,
        text: &str,
        history: &[PriorTurn],
        events: &dyn AgentEvents,
        deadline: Option<Instant>,
        from: Continued<'_>,
    ) -> Result<Value, LlmFailure> {
        let provider_name = match self.settings.provider {
            Provider::OpenAi => "openai",
            Provider::Bedrock => "bedrock",
        };
        self.run_inner(text, history, events, deadline, from)
            .await
            .map_err(|e| {
                if e.kind == LlmErrorKind::Budget {
                    return LlmFailure::of(&e);
                }
                tracing::warn!(
                    provider = provider_name,
                    code = e.kind.code(),
                    status = e.status,
                    cause = %e.detail,
                    "llm request failed"
                );
                LlmFailure::of(&e)
            })
    }

    async fn run_inner(
        &self,
        text: &str,
        history: &[PriorTurn],
        events: &dyn AgentEvents,
        deadline: Option<Instant>,
        from: Continued<'_>,
    ) -> Result<Value, ProviderError> {
        let provider = self.provider()?;
        let (tools, specs) = self.run_tools().await;
        let mut messages = Vec::with_capacity(history.len() * 2 + 1);
        for turn in history {
            messages.push(Message::User(turn.user.clone()));
            messages.push(Message::Assistant {
                text: turn.assistant.clone(),
                tool_calls: Vec::new(),
            });
        }
        messages.push(Message::User(text.to_owned()));
        let resumed = replay::resume(from.journal);
        let first = resumed.rounds + 1;
        messages.extend(resumed.messages);
        // Every round's text counts against the limit, discarded or not.
        let mut said_bytes = resumed.said_bytes;
        let mut usage: Option<Usage> = resumed.usage;
        if let Some(u) = usage {
            // The journaled rounds' tokens, counted on the run once more by this invocation.
            events.usage(u.input_tokens, u.output_tokens).await;
        }
        let mut model: Option<String> = resumed.model;
        let mut answer = String::new();
        // The answer's full length when only its first `MAX_KEPT_ANSWER_BYTES` were kept.
        let mut answer_bytes: Option<usize> = None;
        if let Some(text) = resumed.answer {
            return Ok(self.result(text, model, usage));
        }
        let needs_approval = |name: &str| self.needs_approval(&tools, name);
        if !resumed.open.is_empty() {
            let how = RoundCalls {
                round: first - 1,
                tools: &tools,
                needs_approval: &needs_approval,
                answers: &resumed.answers,
                fresh: false,
                redo: from.redo,
            };
            messages.extend(answer_calls(resumed.open, &how, events).await?);
        }
        if from.redo {
            // The round the last worker may have been streaming is requested again: the text
            // it streamed is withdrawn first (nothing, if it had not begun).
            events.discard_round(first, DiscardReason::Redo).await;
        }
        for round in first..=(MAX_TOOL_ROUNDS as u32 + 1) {
            let tools_disabled = round == MAX_TOOL_ROUNDS as u32 + 1;
            let request = ChatRequest {
                model: &self.settings.model,
                system: self.settings.system_prompt.as_deref(),
                messages: &messages,
                tools: &specs,
                tools_disabled,
                max_tokens: self.settings.max_tokens,
                temperature: self.settings.temperature,
            };
            let budget = MAX_ANSWER_BYTES.saturating_sub(said_bytes);
            let (output, streamed, after_call) =
                round_with_retries(provider, &request, events, round, budget, deadline).await?;
            said_bytes += streamed.bytes + after_call.len();
            let (streamed_bytes, streamed) = (streamed.bytes, streamed.kept);
            let mut go_on = true;
            if let Some(u) = output.usage {
                go_on = events.usage(u.input_tokens, u.output_tokens).await;
                let total = usage.get_or_insert_with(Usage::default);
                total.input_tokens += u.input_tokens;
                total.output_tokens += u.output_tokens;
            }
            if model.is_none() {
                model.clone_from(&output.model);
            }
            if output.tool_calls.is_empty() {
                let mut step = replay::round_step(round, &streamed, &output);
                if streamed_bytes > streamed.len() {
                    // Cut: a continuation asks for the round again rather than take it.
                    step["truncated"] = json!(true);
                    answer_bytes = Some(streamed_bytes);
                }
                events.save_step(step).await;
                answer = streamed;
                break;
            }
            // The round that spent the budget is finished (its text streamed, its tokens
            // counted); the one it asks for is not requested.
            if !go_on {
                return Err(ProviderError::new(
                    LlmErrorKind::Budget,
                    "daily token budget spent",
                ));
            }
            if tools_disabled {
                return Err(ProviderError::new(
                    LlmErrorKind::Invalid,
                    "model kept calling tools past the round cap",
                ));
            }
            // What the model wrote before its tool calls was a preamble, not the answer: the
            // client drops the round's deltas and sees the text again as thinking.
            if !streamed.is_empty() {
                events.discard_round(round, DiscardReason::ToolCall).await;
            }
            let said = streamed + &after_call;
            if !said.is_empty() {
                events.thinking(said.clone()).await;
            }
            // Journaled before any of its calls starts: a continuation never asks for it again.
            events
                .save_step(replay::round_step(round, &said, &output))
                .await;
            messages.push(Message::Assistant {
                text: said,
                tool_calls: output.tool_calls.clone(),
            });
            // Concurrently, each with its own events; the results go back in the model's order.
            // Calls that need approval suspend the run once the others are done.
            let how = RoundCalls {
                round,
                tools: &tools,
                needs_approval: &needs_approval,
                answers: &resumed.answers,
                fresh: true,
                redo: false,
            };
            let open = output.tool_calls.into_iter().map(|c| (c, None)).collect();
            messages.extend(answer_calls(open, &how, events).await?);
            // The round and its calls are journaled: the next round may as well be another
            // invocation's (a hand-off before this one's deadline).
            events.safe_point().await;
        }
        let mut result = self.result(answer, model, usage);
        if let Some(bytes) = answer_bytes {
            result["truncated"] = json!(true);
            result["text_bytes"] = json!(bytes);
        }
        Ok(result)
    }

    /// The run's result: `{"text", "model", "usage"?}`.
    fn result(&self, answer: String, model: Option<String>, usage: Option<Usage>) -> Value {
        tracing::info!(
            input_tokens = usage.map(|u| u.input_tokens),
            output_tokens = usage.map(|u| u.output_tokens),
            answer_bytes = answer.len(),
            "llm run answered"
        );
        let mut result = json!({
            "text": answer,
            "model": model.unwrap_or_else(|| self.settings.model.clone()),
        });
        if let Some(u) = usage {
            result["usage"] =
                json!({"input_tokens": u.input_tokens, "output_tokens": u.output_tokens});
        }
        result
    }
}

/// How the calls of one round are answered: a fresh round's, or the last journaled round's
/// on a continuation.
struct RoundCalls<'a> {
    round: u32,
    tools: &'a [Arc<dyn Tool>],
    /// Whether a call waits for the user's approval before it runs.
    needs_approval: &'a (dyn Fn(&str) -> bool + Sync),
    /// The user's answers, by call id (from the run's last suspension).
    answers: &'a HashMap<String, replay::Answer>,
    /// The calls were just asked for: none of them can have begun.
    fresh: bool,
    /// The last invocation may have stopped in the middle of a call (see `RunInput::redo`).
    redo: bool,
}

/// The results of a round's calls, in the model's order. A journaled result is kept as it
/// was. A call that needs approval runs once approved, and its result says the user declined
/// when denied; calls still unanswered suspend the run (after the others ran and were
/// journaled). On a continuation a call that may have been in flight when the last worker
/// stopped is called again only when its tool says that is safe, else the model is told it
/// was interrupted. The calls that run, run concurrently (bounded).
async fn answer_calls(
    open: Vec<(ToolCall, Option<Message>)>,
    how: &RoundCalls<'_>,
    events: &dyn AgentEvents,
) -> Result<Vec<Message>, ProviderError> {
    let mut out: Vec<Option<Message>> = Vec::with_capacity(open.len());
    let mut run_now = Vec::new();
    let mut ask = Vec::new();
    for (call, kept) in open {
        if kept.is_some() {
            out.push(kept);
            continue;
        }
        let tool = how.tools.iter().find(|t| t.name() == call.name);
        // An unknown tool is an error result either way: nothing runs.
        let redo_safe = tool.is_none_or(|t| t.hints().redo_safe());
        let call_it = if (how.needs_approval)(&call.name) {
            match how.answers.get(&call.id) {
                None => {
                    ask.push(crate::run::PendingApproval {
                        call_id: call.id.clone(),
                        tool_name: call.name.chars().take(MAX_TOOL_NAME_CHARS).collect(),
                        parameters: shown_arguments(&call.arguments),
                    });
                    out.push(None);
                    continue;
                }
                Some(answer) if !answer.approved => {
                    let content = json!({ "error": replay::declined(answer.reason.as_deref()) });
                    out.push(Some(unrun(&call, how.round, content, events, false).await));
                    continue;
                }
                // Approved: it can have begun only in an invocation that stopped mid-step.
                Some(_) => !how.redo || redo_safe,
            }
        } else {
            how.fresh || redo_safe
        };
        if call_it {
            run_now.push((out.len(), call));
            out.push(None);
        } else {
            let content = json!({ "error": replay::INTERRUPTED });
            out.push(Some(unrun(&call, how.round, content, events, true).await));
        }
    }
    let mut calls = Vec::with_capacity(run_now.len());
    for (_, c) in &run_now {
        calls.push(call_tool(c, how.round, how.tools, events));
    }
    let results: Vec<Message> = futures_util::stream::iter(calls)
        .buffered(MAX_CONCURRENT_TOOL_CALLS)
        .collect()
        .await;
    for ((i, _), m) in run_now.iter().zip(results) {
        out[*i] = Some(m);
    }
    if !ask.is_empty() {
        // Every other call of the round is journaled: the run waits here for the answers,
        // and a continuation goes on from the journal once they are all in.
        events.await_approval(ask).await;
        return Err(ProviderError::new(
            LlmErrorKind::Invalid,
            "a tool call needs the user's approval, and this run cannot wait for it",
        ));
    }
    Ok(out.into_iter().flatten().collect())
}

/// The result of a call that does not run (declined, or interrupted), journaled; an
/// interrupted call's outcome is shown to the client as `tool_completed`.
async fn unrun(
    call: &ToolCall,
    round: u32,
    content: Value,
    events: &dyn AgentEvents,
    shown: bool,
) -> Message {
    if shown {
        let name: String = call.name.chars().take(MAX_TOOL_NAME_CHARS).collect();
        events
            .tool_completed(&call.id, &name, content.clone(), 0)
            .await;
    }
    events
        .save_step(replay::tool_step(
            round, &call.id, &call.name, &content, true,
        ))
        .await;
    Message::ToolResult {
        call_id: call.id.clone(),
        name: call.name.clone(),
        content,
        is_error: true,
    }
}

/// A call's arguments as events show them: the JSON, or the text when it is not JSON.
fn shown_arguments(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| Value::String(arguments.into()))
}

/// Runs one call with its two events; every failure becomes an error result for the model.
async fn call_tool(
    call: &ToolCall,
    round: u32,
    tools: &[Arc<dyn Tool>],
    events: &dyn AgentEvents,
) -> Message {
    let shown: String = call.name.chars().take(MAX_TOOL_NAME_CHARS).collect();
    let arguments = if call.arguments.trim().is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_str::<Value>(&call.arguments)
    };
    let parameters = shown_arguments(&call.arguments);
    events.tool_executing(&call.id, &shown, parameters).await;
    let started = Instant::now();
    let tool = tools.iter().find(|t| t.name() == call.name);
    let outcome = match (tool, arguments) {
        (None, _) => Err(format!(
            "unknown tool {shown:?}; available: {}",
            tool_names(tools)
        )),
        (_, Err(_)) => Err("the arguments are not valid JSON".to_owned()),
        (_, Ok(v)) if !v.is_object() => Err("the arguments must be a JSON object".to_owned()),
        (Some(tool), Ok(v)) => tools::call_with_limit(tool.as_ref(), v)
            .await
            .map_err(|e| e.to_string()),
    };
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (content, is_error) = match outcome {
        Ok(v) => (v, false),
        Err(message) => (json!({"error": message}), true),
    };
    events
        .tool_completed(&call.id, &shown, content.clone(), elapsed_ms)
        .await;
    // Journaled once it is known: a continuation never calls it again.
    let step = replay::tool_step(round, &call.id, &call.name, &content, is_error);
    events.save_step(step).await;
    Message::ToolResult {
        call_id: call.id.clone(),
        name: call.name.clone(),
        content,
        is_error,
    }
}

fn tool_names(tools: &[Arc<dyn Tool>]) -> String {
    let names: Vec<&str> = tools.iter().map(|t| t.name()).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// A tool as the providers offer it.
fn spec_of(t: &dyn Tool) -> ToolSpec {
    ToolSpec {
        name: t.name().to_owned(),
        description: t.description().to_owned(),
        parameters: t.parameters(),
    }
}

/// One round, retried while rate limited, nothing of it was streamed yet and the wait fits
/// before `deadline`. Returns the round's output, the text streamed as deltas, and the text
/// that came after a tool call began (never streamed).
async fn round_with_retries(
    provider: &dyn ChatProvider,
    request: &ChatRequest<'_>,
    events: &dyn AgentEvents,
    round: u32,
    budget: usize,
    deadline: Option<Instant>,
) -> Result<(RoundOutput, Streamed, String), ProviderError> {
    let mut attempt = 0;
    loop {
        let mut sink = Collector {
            events,
            round,
            after_call: String::new(),
            streamed: Streamed::default(),
            tool_started: false,
            budget,
        };
        let result = provider.round(request, &mut sink).await;
        match result {
            Ok(output) => return Ok((output, sink.streamed, sink.after_call)),
            Err(e)
                if e.kind == LlmErrorKind::Throttled
                    && e.retry_allowed
                    && sink.streamed.bytes == 0
                    && attempt < MAX_THROTTLE_RETRIES =>
            {
                let wait = e
                    .retry_after
                    .unwrap_or(THROTTLE_BACKOFF * 2u32.pow(attempt));
                let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                if !wait_fits(wait, deadline) {
                    tracing::info!(
                        status = e.status,
                        wait_ms,
                        "llm throttled past the run's time"
                    );
                    return Err(e);
                }
                tracing::info!(status = e.status, wait_ms, "llm throttled, retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether waiting `wait` before a retry is worth it: within [`MAX_THROTTLE_WAIT`], and
/// leaving the retry at least [`RETRY_MIN_TIME`] before the run's deadline.
fn wait_fits(wait: Duration, deadline: Option<Instant>) -> bool {
    wait <= MAX_THROTTLE_WAIT
        && deadline.is_none_or(|d| Instant::now() + wait + RETRY_MIN_TIME <= d)
}

/// The most of a round's streamed text the agent keeps: what a stored result can hold at most
/// (`MAX_STORED_RESULT_BYTES`), since every copy of the answer past the stream (the stored
/// result, the `agent_completed` event, the thread's history) is cut to that or less. A longer
/// answer is still streamed whole; the agent then holds a prefix and the length, not the text,
/// so a 1 MB answer does not cost a megabyte more of the process's memory.
pub const MAX_KEPT_ANSWER_BYTES: usize = crate::limits::MAX_STORED_RESULT_BYTES;

/// A round's streamed text as the agent keeps it: the first [`MAX_KEPT_ANSWER_BYTES`] (cut on a
/// character boundary), and how many bytes were streamed in all.
#[derive(Debug, Default)]
struct Streamed {
    kept: String,
    bytes: usize,
}

impl Streamed {
    fn push(&mut self, piece: &str) {
        let whole = self.kept.len() == self.bytes;
        self.bytes += piece.len();
        if !whole {
            return;
        }
        let room = MAX_KEPT_ANSWER_BYTES.saturating_sub(self.kept.len());
        let mut cut = room.min(piece.len());
        while !piece.is_char_boundary(cut) {
            cut -= 1;
        }
        // Once cut, nothing more is added: the kept text stays a prefix.
        self.kept.push_str(&piece[..cut]);
    }
}

/// Receives a round's text: streams it as deltas of its round from the first token, except
/// what comes after a tool call began.
struct Collector<'a> {
    events: &'a dyn AgentEvents,
    round: u32,
    /// Text after a tool call began: not answer, never streamed.
    after_call: String,
    streamed: Streamed,
    tool_started: bool,
    budget: usize,
}

#[async_trait]
impl RoundSink for Collector<'_> {
    async fn text(&mut self, piece: &str) -> Result<(), ProviderError> {
        if self.after_call.len() + self.streamed.bytes + piece.len() > self.budget {
            return Err(ProviderError::protocol("answer larger than the limit"));
        }
        if self.tool_started {
            self.after_call.push_str(piece);
            return Ok(());
        }
        self.events.delta(self.round, piece).await;
        self.streamed.push(piece);
        Ok(())
    }

    fn tool_call_started(&mut self) {
        self.tool_started = true;
    }
}

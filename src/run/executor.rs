//! The `Executor` trait agents implement, the sink they report progress to, and the registry.

use crate::context::UserExecutionContext;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What an agent is asked to do.
pub struct RunInput<'a> {
    pub context: &'a UserExecutionContext,
    pub text: &'a str,
    /// An artificial delay for the tool step (`payload.delay_ms`), bounded by `MAX_ECHO_DELAY`.
    pub delay: Duration,
}

/// Why an agent did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum AgentFailure {
    /// The agent failed; the run becomes `failed`.
    #[error("agent failed: {0}")]
    Failed(String),
    /// The run was ended elsewhere (cancelled, or declared dead); the agent must stop.
    #[error("run was ended elsewhere")]
    Stopped,
}

/// Where an agent reports progress; the driver turns each call into a pushed event.
#[async_trait]
pub trait RunSink: Send {
    /// `agent_thinking`.
    async fn thinking(&mut self, thought: &str);
    /// `tool_executing`.
    async fn tool_executing(&mut self, tool_name: &str, parameters: &Value);
    /// `tool_completed`.
    async fn tool_completed(&mut self, tool_name: &str, result: &Value, execution_time_ms: u64);
    /// Renews the run's heartbeat (rate limited); `Stopped` when the run was ended elsewhere.
    async fn heartbeat(&mut self) -> Result<(), AgentFailure>;
}

/// An agent: turns a request into a result, reporting progress through the sink.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Runs the agent to completion.
    async fn execute(
        &self,
        input: &RunInput<'_>,
        sink: &mut dyn RunSink,
    ) -> Result<Value, AgentFailure>;
}

/// The agent run when a request names none.
pub const DEFAULT_AGENT: &str = "echo";

/// Agents by name.
#[derive(Clone)]
pub struct Agents {
    by_name: HashMap<String, Arc<dyn Executor>>,
}

impl Default for Agents {
    /// The built-in agents (`echo`).
    fn default() -> Self {
        let mut a = Agents {
            by_name: HashMap::new(),
        };
        a.insert(DEFAULT_AGENT, Arc::new(super::echo::Echo));
        a
    }
}

impl Agents {
    /// Registers (or replaces) an agent.
    pub fn insert(&mut self, name: &str, agent: Arc<dyn Executor>) {
        self.by_name.insert(name.to_owned(), agent);
    }

    /// The agent called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Executor>> {
        self.by_name.get(name)
    }
}

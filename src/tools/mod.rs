//! Tools an agent may offer a model: the `Tool` trait, the built-ins, and running one call
//! within its time limit.

pub mod calculator;
pub mod clock;

use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// How long a tool may run when it does not say: the built-ins answer in microseconds, so a
/// second only ever catches a bug, and the model waits for every call in turn.
pub const DEFAULT_TOOL_TIME_LIMIT: Duration = Duration::from_secs(1);

/// The names of the built-in tools, in the order they are offered by default.
pub const BUILTIN_NAMES: &[&str] = &[calculator::NAME, clock::NAME];

/// Why a tool call produced no result; the message is handed back to the model.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The arguments do not fit the tool's schema.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The tool ran and failed.
    #[error("{0}")]
    Failed(String),
    /// The tool did not finish within its time limit.
    #[error("the tool did not finish within {0:?}")]
    TimedOut(Duration),
}

/// What a tool says about its effects: MCP's tool annotations, and the deployer's approval
/// setting. Tool approval gates calls on `destructive` / `require_approval`; durable runs redo an
/// interrupted call only when [`ToolHints::redo_safe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToolHints {
    /// The tool changes nothing (MCP `readOnlyHint`).
    pub read_only: bool,
    /// The tool may destroy or overwrite (MCP `destructiveHint`; MCP's default is true).
    pub destructive: bool,
    /// Calling it twice with the same arguments does no more than once (MCP `idempotentHint`).
    pub idempotent: bool,
    /// The tool reaches outside its own system (MCP `openWorldHint`).
    pub open_world: bool,
    /// Every call waits for the user's approval (the server entry's `require_approval`, or
    /// an explicit `destructiveHint: true` when the entry says nothing).
    pub require_approval: bool,
}

impl ToolHints {
    /// The built-ins: pure functions of their arguments (and the clock).
    pub const BUILTIN: ToolHints = ToolHints {
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: false,
        require_approval: false,
    };

    /// Whether a call may be sent again when it is not known whether it ran.
    pub fn redo_safe(&self) -> bool {
        self.read_only || self.idempotent
    }
}

/// A tool the model may call.
#[async_trait]
pub trait Tool: Send + Sync {
    /// The name the model calls it by (`[a-zA-Z0-9_-]{1,64}`).
    fn name(&self) -> &str;
    /// What it does, for the model.
    fn description(&self) -> &str;
    /// A JSON schema of its arguments object.
    fn parameters(&self) -> Value;
    /// How long one call may take.
    fn time_limit(&self) -> Duration {
        DEFAULT_TOOL_TIME_LIMIT
    }
    /// What the tool says about its effects.
    fn hints(&self) -> ToolHints {
        ToolHints::BUILTIN
    }
    /// Runs one call.
    async fn call(&self, arguments: Value) -> Result<Value, ToolError>;
}

/// Runs one call within the tool's time limit; a slow tool is abandoned (its future dropped).
pub async fn call_with_limit(tool: &dyn Tool, arguments: Value) -> Result<Value, ToolError> {
    let limit = tool.time_limit();
    tokio::time::timeout(limit, tool.call(arguments))
        .await
        .unwrap_or(Err(ToolError::TimedOut(limit)))
}

/// The built-in tool called `name`.
pub fn builtin(name: &str) -> Option<Arc<dyn Tool>> {
    match name {
        calculator::NAME => Some(Arc::new(calculator::Calculator)),
        clock::NAME => Some(Arc::new(clock::CurrentTime)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Slow;

    #[async_trait]
    impl Tool for Slow {
        fn name(&self) -> &str {
            "slow"
        }
        fn description(&self) -> &str {
            "never finishes in time"
        }
        fn parameters(&self) -> Value {
            serde_json::json!({"type": "object"})
        }
        fn time_limit(&self) -> Duration {
            Duration::from_millis(20)
        }
        async fn call(&self, _: Value) -> Result<Value, ToolError> {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Value::Null)
        }
    }

    /// A tool that overruns its limit yields `TimedOut` instead of blocking the run.
    #[tokio::test(start_paused = true)]
    async fn slow_tool_times_out() {
        assert_eq!(
            call_with_limit(&Slow, Value::Null).await,
            Err(ToolError::TimedOut(Duration::from_millis(20)))
        );
    }

    /// Every built-in name resolves to a tool of that name with an object schema.
    #[test]
    fn builtins_resolve() {
        for name in BUILTIN_NAMES {
            let tool = builtin(name).unwrap();
            assert_eq!(tool.name(), *name);
            assert_eq!(tool.parameters()["type"], "object");
            assert!(!tool.description().is_empty());
        }
        assert!(builtin("shell").is_none());
    }
}

//! Outbound events: `{"type", "run_id"?, "thread_id"?, "request_id"?, "timestamp", "payload"}`.

use crate::time::rfc3339_ms;
use serde::Serialize;

/// Every outbound event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Pong,
    HeartbeatAck,
    AgentStarted,
    AgentThinking,
    ToolExecuting,
    ToolCompleted,
    AgentCompleted,
    AgentError,
    AgentCancelled,
    AgentDeath,
    Execution,
    Executions,
    Error,
}

/// One outbound event; `P` is its type-specific payload.
#[derive(Debug, Serialize)]
pub struct Envelope<'a, P: Serialize> {
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
    pub timestamp: String,
    pub payload: P,
}

/// The run an event belongs to.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunRef<'a> {
    pub run_id: Option<&'a str>,
    pub thread_id: Option<&'a str>,
    pub request_id: Option<&'a str>,
}

impl<'a, P: Serialize> Envelope<'a, P> {
    /// An event stamped with the given epoch milliseconds.
    pub fn new(kind: EventType, run: RunRef<'a>, now_ms: u64, payload: P) -> Self {
        Envelope {
            kind,
            run_id: run.run_id,
            thread_id: run.thread_id,
            request_id: run.request_id,
            timestamp: rfc3339_ms(now_ms),
            payload,
        }
    }

    /// The event as a JSON text frame.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings, numbers and `Value`s cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// An empty payload (`{}`), for `pong` and `heartbeat_ack`.
#[derive(Debug, Serialize)]
pub struct Empty {}

/// `agent_started`.
#[derive(Debug, Serialize)]
pub struct AgentStarted<'a> {
    pub agent_name: &'a str,
}

/// `agent_thinking`.
#[derive(Debug, Serialize)]
pub struct AgentThinking<'a> {
    pub thought: &'a str,
    pub step_number: u32,
}

/// `tool_executing`.
#[derive(Debug, Serialize)]
pub struct ToolExecuting<'a> {
    pub tool_name: &'a str,
    pub parameters: &'a serde_json::Value,
}

/// `tool_completed`.
#[derive(Debug, Serialize)]
pub struct ToolCompleted<'a> {
    pub tool_name: &'a str,
    pub result: &'a serde_json::Value,
    pub execution_time_ms: u64,
}

/// `agent_completed`.
#[derive(Debug, Serialize)]
pub struct AgentCompleted<'a> {
    pub agent_name: &'a str,
    pub result: &'a serde_json::Value,
    pub execution_time_ms: u64,
}

/// `agent_cancelled`.
#[derive(Debug, Serialize)]
pub struct AgentCancelled<'a> {
    pub state: &'a str,
}

/// `agent_death`.
#[derive(Debug, Serialize)]
pub struct AgentDeath<'a> {
    pub cause: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The envelope has the documented keys and omits absent run fields.
    #[test]
    fn envelope_shape() {
        let run = RunRef {
            run_id: Some("r"),
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_str(
            &Envelope::new(
                EventType::AgentStarted,
                run,
                0,
                AgentStarted { agent_name: "echo" },
            )
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"agent_started","run_id":"r","timestamp":"1970-01-01T00:00:00.000Z","payload":{"agent_name":"echo"}})
        );
    }
}

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

/// A truncated event keeps this fraction of the limit as its payload preview: escaping can
/// grow the preview up to 6x (`\u00XX`), which still leaves room for the envelope.
const PREVIEW_DIVISOR: usize = 8;

/// A message that fits API Gateway's limit: `message` itself when it fits, else the same
/// envelope (type and run fields kept) whose payload is replaced by
/// `{"truncated": true, "original_bytes": N, "preview": "<start of the payload JSON>"}`.
pub fn fit_to_limit(message: &str, limit: usize) -> std::borrow::Cow<'_, str> {
    if message.len() <= limit {
        return std::borrow::Cow::Borrowed(message);
    }
    let v: serde_json::Value = serde_json::from_str(message).unwrap_or_default();
    let payload = v.get("payload").map(|p| p.to_string()).unwrap_or_default();
    let mut cut = (limit / PREVIEW_DIVISOR).min(payload.len());
    while !payload.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = serde_json::Map::new();
    for k in ["type", "run_id", "thread_id", "request_id", "timestamp"] {
        if let Some(x) = v.get(k) {
            out.insert(k.into(), x.clone());
        }
    }
    out.insert(
        "payload".into(),
        serde_json::json!({
            "truncated": true,
            "original_bytes": message.len(),
            "preview": &payload[..cut],
        }),
    );
    let s = serde_json::Value::Object(out).to_string();
    if s.len() <= limit {
        std::borrow::Cow::Owned(s)
    } else {
        std::borrow::Cow::Owned(format!(
            r#"{{"type":"error","payload":{{"code":"message_too_large","message":"event exceeded {limit} bytes","retryable":false}}}}"#
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Oversized events become a truncated envelope within the limit; small ones pass as is.
    #[test]
    fn oversized_events_are_truncated_with_a_marker() {
        let small = r#"{"type":"pong","payload":{}}"#;
        assert_eq!(fit_to_limit(small, 1000), small);
        let big = serde_json::json!({"type": "tool_executing", "run_id": "r1", "timestamp": "t",
            "payload": {"parameters": {"text": "\u{1}".repeat(200_000)}}})
        .to_string();
        let fitted = fit_to_limit(&big, crate::limits::MAX_MESSAGE_BYTES);
        assert!(fitted.len() <= crate::limits::MAX_MESSAGE_BYTES);
        let v: serde_json::Value = serde_json::from_str(&fitted).unwrap();
        assert_eq!(v["type"], "tool_executing");
        assert_eq!(v["run_id"], "r1");
        assert_eq!(v["payload"]["truncated"], true);
        assert_eq!(v["payload"]["original_bytes"], big.len());
    }

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

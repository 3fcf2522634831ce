//! Outbound events: one typed enum of every event and reply, serialized once at the edge as
//! `{"type", "run_id"?, "thread_id"?, "request_id"?, "seq"?, "timestamp", "payload"}`.

use super::error::{ClientError, ErrorCode};
use super::fit::fit_to_limit;
use super::view::{ExecutionView, ExecutionsView};
use crate::limits::MAX_MESSAGE_BYTES;
use crate::store::RunRecord;
use crate::time::rfc3339_ms;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;
use std::borrow::Cow;

/// Every outbound event type, with its wire name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Pong,
    HeartbeatAck,
    AgentStarted,
    AgentThinking,
    ToolExecuting,
    ToolCompleted,
    AgentDelta,
    AgentTextDiscarded,
    ToolApprovalRequired,
    ApprovalAccepted,
    AgentCompleted,
    AgentError,
    AgentCancelled,
    AgentDeath,
    Execution,
    Executions,
    Usage,
    Error,
}

impl EventType {
    /// The `type` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Pong => "pong",
            EventType::HeartbeatAck => "heartbeat_ack",
            EventType::AgentStarted => "agent_started",
            EventType::AgentThinking => "agent_thinking",
            EventType::ToolExecuting => "tool_executing",
            EventType::ToolCompleted => "tool_completed",
            EventType::AgentDelta => "agent_delta",
            EventType::AgentTextDiscarded => "agent_text_discarded",
            EventType::ToolApprovalRequired => "tool_approval_required",
            EventType::ApprovalAccepted => "approval_accepted",
            EventType::AgentCompleted => "agent_completed",
            EventType::AgentError => "agent_error",
            EventType::AgentCancelled => "agent_cancelled",
            EventType::AgentDeath => "agent_death",
            EventType::Execution => "execution",
            EventType::Executions => "executions",
            EventType::Usage => "usage",
            EventType::Error => "error",
        }
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Why the sweep declared a run dead (`agent_death.cause`).
pub const DEATH_HEARTBEAT_MISSED: &str = "heartbeat_missed";

/// Why the text streamed for a model round is withdrawn (`agent_text_discarded.reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DiscardReason {
    /// The round turned out to call a tool: its text was a preamble, not the answer.
    ToolCall,
    /// An interrupted round is done again after a continuation.
    Redo,
}

impl DiscardReason {
    /// The `reason` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            DiscardReason::ToolCall => "tool_call",
            DiscardReason::Redo => "redo",
        }
    }
}

impl Serialize for DiscardReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One event with its payload. Serialized as the payload alone (untagged); [`Envelope`] adds
/// the `type` from [`Event::kind`].
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Event<'a> {
    Pong {},
    HeartbeatAck {},
    AgentStarted {
        agent_name: &'a str,
    },
    AgentThinking {
        thought: &'a str,
        step_number: u32,
    },
    ToolExecuting {
        tool_name: &'a str,
        parameters: &'a Value,
        /// The model's id of the call (the `llm` agent's), as `tool_approval_required` names it.
        #[serde(skip_serializing_if = "Option::is_none")]
        call_id: Option<&'a str>,
    },
    ToolCompleted {
        tool_name: &'a str,
        result: &'a Value,
        execution_time_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        call_id: Option<&'a str>,
    },
    /// Streamed answer text of model round `round` (1-based; agents without rounds use 1).
    AgentDelta {
        text: &'a str,
        round: u32,
    },
    /// Every `agent_delta` text of `round` received so far is not answer: drop it.
    AgentTextDiscarded {
        round: u32,
        reason: DiscardReason,
    },
    /// The run waits for its owner's answer (`approve_tool`) before it calls this tool.
    ToolApprovalRequired {
        call_id: &'a str,
        tool_name: &'a str,
        parameters: &'a Value,
        /// RFC 3339: unanswered by then, the run ends `timeout`.
        expires_at: &'a str,
    },
    /// `approve_tool`'s reply: the answer is recorded; `continued` when it was the last one
    /// the run waited for and the run goes on.
    ApprovalAccepted {
        call_id: &'a str,
        approved: bool,
        continued: bool,
    },
    AgentCompleted {
        agent_name: &'a str,
        result: &'a Value,
        execution_time_ms: u64,
    },
    AgentError(&'a ClientError),
    AgentCancelled {
        state: &'static str,
    },
    AgentDeath {
        cause: &'static str,
    },
    Execution(ExecutionView<'a>),
    Executions(ExecutionsView<'a>),
    /// `get_usage`'s reply: the caller's usage today and the limits that apply.
    Usage(Value),
    Error(&'a ClientError),
}

impl Event<'_> {
    /// The event's `type`.
    pub fn kind(&self) -> EventType {
        match self {
            Event::Pong {} => EventType::Pong,
            Event::HeartbeatAck {} => EventType::HeartbeatAck,
            Event::AgentStarted { .. } => EventType::AgentStarted,
            Event::AgentThinking { .. } => EventType::AgentThinking,
            Event::ToolExecuting { .. } => EventType::ToolExecuting,
            Event::ToolCompleted { .. } => EventType::ToolCompleted,
            Event::AgentDelta { .. } => EventType::AgentDelta,
            Event::AgentTextDiscarded { .. } => EventType::AgentTextDiscarded,
            Event::ToolApprovalRequired { .. } => EventType::ToolApprovalRequired,
            Event::ApprovalAccepted { .. } => EventType::ApprovalAccepted,
            Event::AgentCompleted { .. } => EventType::AgentCompleted,
            Event::AgentError(_) => EventType::AgentError,
            Event::AgentCancelled { .. } => EventType::AgentCancelled,
            Event::AgentDeath { .. } => EventType::AgentDeath,
            Event::Execution(_) => EventType::Execution,
            Event::Executions(_) => EventType::Executions,
            Event::Usage(_) => EventType::Usage,
            Event::Error(_) => EventType::Error,
        }
    }

    /// The error code an `error` / `agent_error` carries.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Event::AgentError(e) | Event::Error(e) => Some(e.code),
            _ => None,
        }
    }

    /// `agent_cancelled`.
    pub fn cancelled() -> Event<'static> {
        Event::AgentCancelled { state: "cancelled" }
    }
}

/// The run an event belongs to.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunRef<'a> {
    pub run_id: Option<&'a str>,
    pub thread_id: Option<&'a str>,
    pub request_id: Option<&'a str>,
}

impl<'a> RunRef<'a> {
    /// The ids of `run`.
    pub fn of(run: &'a RunRecord) -> Self {
        RunRef {
            run_id: Some(&run.run_id),
            thread_id: Some(&run.thread_id),
            request_id: Some(&run.request_id),
        }
    }

    /// Only the client's `request_id` (replies that belong to no run).
    pub fn request(request_id: Option<&'a str>) -> Self {
        RunRef {
            request_id,
            ..Default::default()
        }
    }
}

/// One outbound event with its envelope.
#[derive(Debug)]
pub struct Envelope<'a> {
    pub event: Event<'a>,
    pub run: RunRef<'a>,
    /// The event's place in its run's stream (pushed run events only).
    pub seq: Option<u64>,
    /// Epoch milliseconds, written as RFC 3339 `timestamp`.
    pub at_ms: u64,
}

impl<'a> Envelope<'a> {
    /// An event stamped at `at_ms`.
    pub fn new(event: Event<'a>, run: RunRef<'a>, at_ms: u64) -> Self {
        Envelope {
            event,
            run,
            seq: None,
            at_ms,
        }
    }

    /// The same event, numbered in its run's stream.
    pub fn with_seq(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }

    /// The event as a JSON text frame within API Gateway's [`MAX_MESSAGE_BYTES`]: every
    /// frame wsexec sends is made here, so none can exceed it ([`fit_to_limit`]).
    pub fn to_json(&self) -> String {
        // Serializing strings, numbers and `Value`s into a String cannot fail.
        let frame = serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"));
        match fit_to_limit(&frame, MAX_MESSAGE_BYTES) {
            Cow::Borrowed(_) => frame,
            Cow::Owned(fitted) => fitted,
        }
    }

    /// The frame a client gets as a direct reply, with what the log needs to know of it.
    pub fn reply(&self) -> Reply {
        Reply {
            kind: self.event.kind(),
            code: self.event.code(),
            frame: self.to_json(),
        }
    }
}

impl Serialize for Envelope<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", &self.event.kind())?;
        if let Some(v) = self.run.run_id {
            m.serialize_entry("run_id", v)?;
        }
        if let Some(v) = self.run.thread_id {
            m.serialize_entry("thread_id", v)?;
        }
        if let Some(v) = self.run.request_id {
            m.serialize_entry("request_id", v)?;
        }
        if let Some(v) = self.seq {
            m.serialize_entry("seq", &v)?;
        }
        m.serialize_entry("timestamp", &rfc3339_ms(self.at_ms))?;
        m.serialize_entry("payload", &self.event)?;
        m.end()
    }
}

/// A serialized direct reply, and its `type` and error `code` for the invocation's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub kind: EventType,
    pub code: Option<ErrorCode>,
    pub frame: String,
}

impl Reply {
    /// An `error` reply to the client's request `request_id`.
    pub fn error(request_id: Option<&str>, e: &ClientError) -> Reply {
        Envelope::new(
            Event::Error(e),
            RunRef::request(request_id),
            crate::time::now_ms(),
        )
        .reply()
    }

    /// A reply of `event` about `run`.
    pub fn about(run: &RunRecord, event: Event<'_>) -> Reply {
        Envelope::new(event, RunRef::of(run), crate::time::now_ms()).reply()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The envelope has the documented keys, in order, and omits absent run fields.
    #[test]
    fn envelope_shape() {
        let run = RunRef {
            run_id: Some("r"),
            ..Default::default()
        };
        let e = Envelope::new(Event::AgentStarted { agent_name: "echo" }, run, 0).with_seq(1);
        assert_eq!(
            e.to_json(),
            r#"{"type":"agent_started","run_id":"r","seq":1,"timestamp":"1970-01-01T00:00:00.000Z","payload":{"agent_name":"echo"}}"#
        );
        let pong = Envelope::new(Event::Pong {}, RunRef::request(Some("q")), 0);
        assert_eq!(
            pong.to_json(),
            r#"{"type":"pong","request_id":"q","timestamp":"1970-01-01T00:00:00.000Z","payload":{}}"#
        );
    }

    /// A reply carries the type and error code of its event, read from the value.
    #[test]
    fn replies_carry_type_and_code() {
        let err = ClientError::new(ErrorCode::InvalidId, "bad");
        let r = Envelope::new(Event::Error(&err), RunRef::default(), 0).reply();
        assert_eq!(
            (r.kind, r.code),
            (EventType::Error, Some(ErrorCode::InvalidId))
        );
        let v: Value = serde_json::from_str(&r.frame).unwrap();
        assert_eq!(v["payload"]["code"], "invalid_id");
    }
}

//! What clients see of a run (`execution`, `executions`): never its connection or endpoint.

use crate::store::{RunError, RunRecord};
use crate::time::rfc3339_ms;
use serde::Serialize;
use serde_json::Value;

/// A run as shown to its owner.
#[derive(Debug, Serialize)]
pub struct ExecutionView<'a> {
    pub run_id: &'a str,
    pub thread_id: &'a str,
    pub request_id: &'a str,
    pub agent: &'a str,
    pub state: &'static str,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
    /// The latest `seq` of the run's events as last persisted (a checkpoint of an alive run,
    /// the terminal event's of a finished one).
    pub seq: u64,
    /// An alive run's streamed text up to `seq`, as of its last checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streamed: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a RunError>,
    /// True when this reply answers a retried request that found the existing run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deduplicated: bool,
}

impl<'a> ExecutionView<'a> {
    /// The view of `run`.
    pub fn of(run: &'a RunRecord, deduplicated: bool) -> Self {
        ExecutionView {
            run_id: &run.run_id,
            thread_id: &run.thread_id,
            request_id: &run.request_id,
            agent: &run.agent,
            state: run.state.as_str(),
            version: run.version,
            created_at: rfc3339_ms(run.created_at),
            updated_at: rfc3339_ms(run.updated_at),
            seq: run.seq,
            streamed: run.streamed.as_deref().filter(|_| run.state.is_alive()),
            result: run.result.as_ref(),
            error: run.error.as_ref(),
            deduplicated,
        }
    }
}

/// A page of runs.
#[derive(Debug, Serialize)]
pub struct ExecutionsView<'a> {
    pub items: Vec<ExecutionView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

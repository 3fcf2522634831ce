//! The records wsexec stores: connections and runs.

use super::Owner;
use crate::limits::ALIVE_SHARDS;
use crate::state::{ExecutionState, RunEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The prefix of the error code of a run whose hand-off to a worker failed: a retry of its
/// request may create it again (nothing ever ran).
pub const DISPATCH_FAILED_PREFIX: &str = "dispatch_";

/// A live WebSocket connection and who it belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    pub connection_id: String,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The `@connections` endpoint this connection is reached through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Epoch milliseconds.
    pub connected_at: u64,
    /// Epoch seconds (DynamoDB TTL).
    pub expires_at: u64,
}

impl ConnectionRecord {
    /// Who the connection belongs to.
    pub fn owner(&self) -> Owner<'_> {
        Owner::new(&self.user_id, self.tenant_id.as_deref())
    }
}

/// Why a run ended badly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    pub code: String,
    pub message: String,
}

/// One agent run: its identity, its state and version, and its outcome.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub user_id: String,
    pub thread_id: String,
    pub request_id: String,
    /// The connection that started the run.
    pub connection_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The `@connections` endpoint of the starting connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub agent: String,
    pub state: ExecutionState,
    /// Incremented by every persisted write; conditional writes check it.
    pub version: u64,
    /// Epoch milliseconds.
    pub created_at: u64,
    pub updated_at: u64,
    /// Epoch milliseconds after which an alive run with no heartbeat is dead.
    pub stale_at: u64,
    /// Epoch milliseconds after which an alive run has exceeded its time limit.
    pub deadline_at: u64,
    /// The user's request text.
    pub request: String,
    /// The agent options of the request (what a worker needs to run it again).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub options: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    /// The connection that cancelled the run, so the run's own connection is told only once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<String>,
    /// The worker invocation that claimed the run (`RUN_DISPATCH=async`), so a claim whose
    /// answer was lost is recognised as its own and no other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    /// The create attempt that wrote the run ([`crate::run::ids::create_token`]): a create the
    /// SDK retried after its answer was lost finds its own token and drives the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// The last `seq` the driver had given out when it last wrote the run (a checkpoint, or the
    /// terminal write: then the terminal event's own `seq`).
    #[serde(default)]
    pub seq: u64,
    /// The highest `seq` a driver of this run may give out before it writes the run again: a
    /// continuation numbers its events above it, so no `seq` is ever given out twice.
    #[serde(default)]
    pub seq_reserved: u64,
    /// Continuations of the run so far (hand-offs before a deadline, and recoveries).
    #[serde(default)]
    pub continuations: u64,
    /// Continuations after the run's worker died (at most `MAX_CONTINUATIONS`).
    #[serde(default)]
    pub recoveries: u64,
    /// When the last continuation was dispatched, epoch milliseconds (0: never).
    #[serde(default)]
    pub continued_at: u64,
    /// The continuation that begins at a safe point (its predecessor handed off between steps,
    /// with nothing in flight): it redoes nothing, so it withdraws no text. 0: none.
    #[serde(default)]
    pub clean_continuation: u64,
    /// The answer text streamed up to `seq`, as of the last checkpoint of an alive run; absent
    /// once the run has a result (which keeps the final text) or when it outgrew the checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streamed: Option<String>,
    /// Connections attached by `resume`, which the driver also pushes the run's events to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub followers: Vec<Follower>,
    /// What the run consumed so far: as of its last checkpoint while alive, final once
    /// terminal (whatever ended it).
    #[serde(default, skip_serializing_if = "RunUsage::is_zero")]
    pub usage: RunUsage,
    /// Whether the run holds one of its owner's `MAX_ACTIVE_RUNS_PER_USER` slots: taken by the
    /// create, given back by the store in the same write that makes the run terminal.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub holds_slot: bool,
    /// Set on a run started while usage limits are on: the day its tokens count on and the
    /// budgets that applied (the driver adds each model round's tokens to the day's counters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metering: Option<super::Metering>,
    /// The tool calls of the run's last suspension for approval and their answers: while one
    /// is unanswered the run waits (`running`, unclaimed, due at its `expires_at`); once all
    /// are answered the continuation reads them from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting: Option<Awaiting>,
    /// Epoch seconds (DynamoDB TTL).
    pub expires_at: u64,
}

/// Tool calls a suspended run waits on the user's answers to (see `RunRecord::awaiting`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Awaiting {
    pub calls: Vec<AwaitedCall>,
    /// Epoch milliseconds: a call still unanswered then ends the run `timeout`
    /// (`APPROVAL_TIMEOUT_MS` after the suspension, never past the run's deadline).
    pub expires_at: u64,
}

impl Awaiting {
    /// Whether a call still waits for its answer.
    pub fn waiting(&self) -> bool {
        self.calls.iter().any(|c| c.answer.is_none())
    }
}

/// One tool call that waits for approval, as its `tool_approval_required` event showed it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AwaitedCall {
    pub call_id: String,
    pub tool_name: String,
    pub parameters: Value,
    /// The `seq` of its `tool_approval_required` event (replayed by `resume` with it).
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<ApprovalAnswer>,
}

/// The user's answer to one approval.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalAnswer {
    pub approved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Epoch milliseconds.
    pub at: u64,
}

/// What a run consumed: model tokens (as the provider reported them), tool calls, and how long
/// it lasted (set by the write that ends it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub tool_calls: u64,
    /// Epoch milliseconds from the create to the terminal write; 0 while alive.
    #[serde(default)]
    pub duration_ms: u64,
}

impl RunUsage {
    /// Nothing consumed and not ended yet.
    pub fn is_zero(&self) -> bool {
        *self == RunUsage::default()
    }

    /// Input and output tokens together (what a daily token budget counts).
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// A connection that follows a run it did not start (attached by `resume`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Follower {
    pub connection_id: String,
    /// The `@connections` endpoint the connection is reached through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The last `seq` the connection already has: it is sent every event after it.
    pub after_seq: u64,
    /// Epoch seconds after which the attachment is ignored and pruned (a connection lives at
    /// most as long as its record).
    pub expires_at: u64,
}

impl RunRecord {
    /// Who the run belongs to: its keys are derived from this.
    pub fn owner(&self) -> Owner<'_> {
        Owner::new(&self.user_id, self.tenant_id.as_deref())
    }

    /// Whether this stored run is `created` itself, as its create wrote it: the same run,
    /// carrying the same create token ([`crate::run::ids::create_token`]). A create whose answer
    /// was lost (an attempt timeout under load) and that the SDK retried meets its own write this
    /// way; a client's retry of the request, even one delivered twice at once, is another
    /// attempt with another token and never does.
    pub fn is_own_create(&self, created: &RunRecord) -> bool {
        self.run_id == created.run_id
            && self.created_by.is_some()
            && self.created_by == created.created_by
    }

    /// Whether a create with the same key may replace this run: it expired, or its hand-off to
    /// a worker failed so that nothing ever ran.
    pub fn replaceable(&self, now_secs: u64) -> bool {
        self.expires_at <= now_secs
            || (self.state == ExecutionState::Failed
                && self
                    .error
                    .as_ref()
                    .is_some_and(|e| e.code.starts_with(DISPATCH_FAILED_PREFIX)))
    }

    /// When the sweep must look at this run: the earlier of its heartbeat and time limits.
    /// `None` once terminal (the run leaves the sparse `alive` index).
    pub fn due_at(&self) -> Option<u64> {
        self.state
            .is_alive()
            .then(|| self.stale_at.min(self.deadline_at))
    }

    /// The `alive` index shard, stable per run id (FNV-1a, so every backend agrees).
    pub fn shard(&self) -> u8 {
        let mut h: u32 = 0x811c_9dc5;
        for b in self.run_id.bytes() {
            h = (h ^ b as u32).wrapping_mul(0x0100_0193);
        }
        (h % ALIVE_SHARDS as u32) as u8
    }

    /// Whether the run is suspended until its owner answers a tool approval: no driver holds
    /// it, and no heartbeat is due.
    pub fn waiting_approval(&self) -> bool {
        self.state.is_alive() && self.awaiting.as_ref().is_some_and(Awaiting::waiting)
    }

    /// What ends an alive run at `now_ms`, if it is overdue: its time limit (or, while it
    /// waits for an approval, that wait's end), else its missed heartbeat deadline.
    pub fn overdue(&self, now_ms: u64) -> Option<RunEvent> {
        if !self.state.is_alive() {
            None
        } else if now_ms >= self.deadline_at || (self.waiting_approval() && now_ms >= self.stale_at)
        {
            Some(RunEvent::TimeOut)
        } else if now_ms >= self.stale_at {
            Some(RunEvent::Die)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run waiting for an approval is due at the wait's end and then times out, not dies;
    /// once answered it is an ordinary running run again (past its heartbeat deadline: dead).
    #[test]
    fn a_waiting_run_times_out_instead_of_dying() {
        let mut run = RunRecord {
            state: ExecutionState::Running,
            stale_at: 1_000,
            deadline_at: 5_000,
            awaiting: Some(Awaiting {
                calls: vec![AwaitedCall::default()],
                expires_at: 1_000,
            }),
            ..Default::default()
        };
        assert!(run.waiting_approval());
        assert_eq!(run.due_at(), Some(1_000));
        assert_eq!(run.overdue(999), None);
        assert_eq!(run.overdue(1_000), Some(RunEvent::TimeOut));
        if let Some(a) = run.awaiting.as_mut() {
            a.calls[0].answer = Some(ApprovalAnswer::default());
        }
        assert!(!run.waiting_approval());
        assert_eq!(run.overdue(1_000), Some(RunEvent::Die));
    }
}

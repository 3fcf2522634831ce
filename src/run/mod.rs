//! Agent runs: the driver that owns a run's lifecycle, the `Executor` trait and its agents.
//!
//! The run layer sees storage, pushes and agents only through [`RunDeps`] (borrowed trait
//! objects and limits) and the connection it serves through [`Origin`]; it knows nothing of
//! routes, invocations or the manager.
//!
//! # Layout
//! - [`executor`]: the `Executor` trait, its input, the `RunSink` agents report progress to.
//! - [`agents`]: the registry of agents by name.
//! - [`echo`]: the built-in `echo` agent.
//! - [`driver`]: drives one run: events, heartbeats, cancellation, deadline, terminal write.
//! - [`write`]: the one conditional-write primitive every run writer uses.
//! - [`channel`]: pushing a run's events to its connections, gone ones, bounded owner notices.
//! - [`follow`]: followers attached by `resume`, and the replay that brings them up to date.
//! - [`budget`]: the answer text runs hold, bounded per run and per process.
//! - [`attached`]: the runs this instance attached each connection to, for `$disconnect`.
//! - [`live`]: the runs this process drives, so a cancel landing here stops its driver at once.
//! - [`checkpoint`]: what a run's writes persist of its stream, within the item's budget.
//! - [`history`]: a thread's earlier turns for agents that want them.
//! - [`ids`]: run ids derived from (user, idempotency key).
//! - [`recover`]: continuing a run whose worker died, at most `MAX_CONTINUATIONS` times.
//! - [`journal`]: the step journal and `seq` reservations that let a run be continued.

pub mod agents;
pub mod attached;
pub mod budget;
pub mod channel;
pub mod checkpoint;
pub mod driver;
pub mod echo;
pub mod executor;
pub mod follow;
pub mod history;
pub mod ids;
pub mod journal;
pub mod live;
pub mod recover;
pub mod write;

pub use agents::{Agents, DEFAULT_AGENT};
pub use driver::{drive, drive_prefetched, log_usage};
pub use executor::{
    AgentFailure, Executor, PendingApproval, Progress, RunInput, RunSink, Turn,
    refuse_unknown_options,
};
pub use ids::derive_run_id;
pub use write::{Settled, WriteOutcome, next_version, write_run, write_settled};

use crate::identity::IdentityCache;
use crate::notify::Notifier;
use crate::store::Store;
use std::time::Duration;

/// The time limits a run lives by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunLimits {
    /// A run alive longer than this becomes `timeout` (`RUN_TIME_LIMIT_MS`).
    pub run_time_limit: Duration,
    /// An alive run with no heartbeat for this long is dead (`HEARTBEAT_DEADLINE_MS`).
    pub heartbeat_deadline: Duration,
    /// `agent_delta` pushes of one run are at least this far apart (`STREAM_FLUSH_MS`).
    pub stream_flush: Duration,
    /// Time kept back from an invocation's deadline to hand the run to a continuation
    /// (`HANDOFF_MARGIN_MS`).
    pub handoff_margin: Duration,
    /// How long a run waits for a tool approval before it ends `timeout`
    /// (`APPROVAL_TIMEOUT_MS`), never past its own deadline.
    pub approval_timeout: Duration,
}

/// What a run needs from its instance: storage, pushes, agents and limits.
#[derive(Clone, Copy)]
pub struct RunDeps<'a> {
    pub store: &'a dyn Store,
    pub notifier: &'a dyn Notifier,
    pub agents: &'a Agents,
    /// The warm identity cache, so a gone connection is forgotten as well as deleted.
    pub identities: &'a IdentityCache,
    /// The runs this process drives, so a cancel landing here stops its driver at once.
    pub live: &'a live::LiveRuns,
    /// The runs this instance attached each connection to (`resume`), for `$disconnect`.
    pub attached: &'a attached::Attachments,
    pub limits: RunLimits,
    /// How a run is handed to a new invocation (a continuation); `None` where runs are driven
    /// inline, which cannot be continued.
    pub relay: Option<crate::dispatch::Relay<'a>>,
}

/// The connection a run serves, and the invocation's own deadline.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    pub connection_id: &'a str,
    /// The `@connections` endpoint the connection is reached through.
    pub endpoint: &'a str,
    /// Lambda's deadline for the driving invocation, epoch milliseconds.
    pub deadline_ms: Option<u64>,
    /// When this invocation must have handed the run to a continuation, if it can (a worker,
    /// or an inline start under `RUN_DISPATCH=auto`): the driver stops at the last safe point
    /// before it, less `HANDOFF_MARGIN_MS` (see [`driver`]).
    pub leave: Option<Leave>,
}

/// The deadline an invocation hands its run off by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leave {
    /// Epoch milliseconds: Lambda's deadline for a worker, the route's for an inline start.
    pub by_ms: u64,
    /// Whether to hand off even when this invocation journaled nothing: an inline start must
    /// leave the route in time whatever happened; a worker that made no progress would only
    /// hand the same step on and on, so it keeps going (its run ends by its time limit, or by
    /// Lambda's, and then at most `MAX_CONTINUATIONS` recoveries).
    pub without_progress: bool,
}

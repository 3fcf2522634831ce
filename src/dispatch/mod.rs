//! Handing a run to an asynchronous invocation of the same function (`RUN_DISPATCH=async`), so
//! a run can outlive API Gateway's 29 s: the `Invoker` trait, its classified failures, and the
//! internal worker event.
//!
//! # Layout
//! - [`lambda`]: the `Invoker` on Lambda's `Invoke` API (`InvocationType=Event`).
//! - [`memory`]: an `Invoker` that records what it would dispatch (tests, `wsexec-local invoke`).

pub mod lambda;
pub mod memory;

use crate::classified::{Classified, FailureKind};
use crate::store::Owner;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Where a run is driven.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dispatch {
    /// Inside the `$default` invocation that starts it (runs end within API Gateway's 29 s).
    #[default]
    Inline,
    /// In an asynchronous invocation of the same function (runs of up to 14.5 minutes).
    Async,
    /// Inline first (a short answer costs no `Invoke`), handed to an asynchronous invocation
    /// before the route's 29 s end (`ROUTE_TIME_LIMIT_MS` less `HANDOFF_MARGIN_MS`).
    Auto,
}

impl Dispatch {
    /// Whether runs can be continued in a worker invocation (a hand-off, a recovery): wherever
    /// the function may invoke itself.
    pub fn continues(self) -> bool {
        matches!(self, Dispatch::Async | Dispatch::Auto)
    }
}

/// The internal event a worker invocation receives: which run to drive, and whose it is. It
/// grants nothing by itself: the run it names must exist under that owner and be unclaimed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerEvent {
    /// The marker that tells this event from API Gateway's and EventBridge's.
    pub wsexec_worker: WorkerRun,
}

/// The run a [`WorkerEvent`] names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRun {
    pub user_id: String,
    /// The owner's tenant, when it has one (absent otherwise: the event is as it always was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    pub run_id: String,
    /// Which continuation of the run this event drives (absent: the run's first invocation).
    /// The worker claims the run only while it waits for exactly this continuation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<u64>,
}

impl WorkerRun {
    /// Whose run it is.
    pub fn owner(&self) -> Owner<'_> {
        Owner::new(&self.user_id, self.tenant_id.as_deref())
    }
}

impl WorkerEvent {
    /// The event that drives `run_id` of `owner`.
    pub fn new(owner: Owner<'_>, run_id: &str) -> Self {
        WorkerEvent {
            wsexec_worker: WorkerRun {
                user_id: owner.user_id.to_owned(),
                tenant_id: owner.tenant_id.map(str::to_owned),
                run_id: run_id.to_owned(),
                continuation: None,
            },
        }
    }

    /// The event that drives continuation `n` of `run_id` of `owner`.
    pub fn continuation(owner: Owner<'_>, run_id: &str, n: u64) -> Self {
        let mut ev = WorkerEvent::new(owner, run_id);
        ev.wsexec_worker.continuation = Some(n);
        ev
    }

    /// The event as the JSON payload of an `Invoke`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What kind of dispatch failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DispatchErrorKind {
    /// 429 / `TooManyRequestsException`: the function's concurrency is exhausted.
    Throttled,
    /// The role may not invoke the function, or credentials are refused.
    Permission,
    /// 5xx, or Lambda's service-side failures.
    Unavailable,
    /// The request could not be sent.
    Connection,
    /// The request timed out.
    Timeout,
    /// The function or the request is wrong (no such function, payload too large).
    Invalid,
}

impl DispatchErrorKind {
    /// Every kind, for exhaustive tests.
    pub const ALL: [DispatchErrorKind; 6] = [
        DispatchErrorKind::Throttled,
        DispatchErrorKind::Permission,
        DispatchErrorKind::Unavailable,
        DispatchErrorKind::Connection,
        DispatchErrorKind::Timeout,
        DispatchErrorKind::Invalid,
    ];

    /// The stable code clients, logs and metrics see (each starts with
    /// [`DISPATCH_FAILED_PREFIX`], which lets a retry of the request create the run again).
    pub fn code(self) -> &'static str {
        match self {
            DispatchErrorKind::Throttled => "dispatch_throttled",
            DispatchErrorKind::Permission => "dispatch_permission",
            DispatchErrorKind::Unavailable => "dispatch_unavailable",
            DispatchErrorKind::Connection => "dispatch_connection",
            DispatchErrorKind::Timeout => "dispatch_timeout",
            DispatchErrorKind::Invalid => "dispatch_invalid",
        }
    }

    /// Whether the same request may succeed later.
    pub fn is_retryable(self) -> bool {
        !matches!(
            self,
            DispatchErrorKind::Permission | DispatchErrorKind::Invalid
        )
    }
}

pub use crate::store::record::DISPATCH_FAILED_PREFIX;

impl FailureKind for DispatchErrorKind {
    fn code(self) -> &'static str {
        DispatchErrorKind::code(self)
    }
    fn is_retryable(self) -> bool {
        DispatchErrorKind::is_retryable(self)
    }
}

/// A classified dispatch failure; `source()` keeps the raw cause.
pub type DispatchError = Classified<DispatchErrorKind>;

impl Classified<DispatchErrorKind> {
    /// A failure of `kind`.
    pub fn new(kind: DispatchErrorKind) -> Self {
        Classified::described(kind, "dispatch", "")
    }
}

/// The function name a worker is invoked by when Lambda gave no name (the local tool).
pub const LOCAL_FUNCTION: &str = "wsexec";

/// How a run is handed to a new invocation of this function: the invoker and the function's
/// name. Present only where runs are driven by workers (`RUN_DISPATCH=async`).
#[derive(Clone, Copy)]
pub struct Relay<'a> {
    pub invoker: &'a dyn Invoker,
    pub function: &'a str,
}

impl Relay<'_> {
    /// Invokes the worker that drives continuation `n` of `run_id` of `owner`.
    pub async fn continue_run(
        &self,
        owner: Owner<'_>,
        run_id: &str,
        n: u64,
    ) -> Result<(), DispatchError> {
        let event = WorkerEvent::continuation(owner, run_id, n).to_json();
        self.invoker.invoke_async(self.function, &event).await
    }
}

/// Starts an asynchronous invocation of the function with a payload.
#[async_trait]
pub trait Invoker: Send + Sync + 'static {
    /// Queues `payload` for an `Event` invocation of `function` (a name or ARN, possibly
    /// qualified); returns once Lambda accepted it.
    async fn invoke_async(&self, function: &str, payload: &str) -> Result<(), DispatchError>;
}

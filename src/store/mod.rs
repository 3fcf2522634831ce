//! The `Store` trait: durable connections and runs, with conditional writes and TTL on read.
//!
//! Every backend ([`dynamo`] in production, [`embedded`] for the local tool, [`memory`] for tests
//! and benchmarks) passes one shared contract suite (`tests/support/contract.rs`).

pub mod dynamo;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod error;
pub mod memory;
pub mod owner;
pub mod record;
pub mod step;
pub mod usage;

pub use error::{StorageError, StorageErrorKind};
pub use owner::Owner;
pub use record::{
    ApprovalAnswer, AwaitedCall, Awaiting, ConnectionRecord, Follower, RunError, RunRecord,
    RunUsage,
};
pub use step::StepRecord;
pub use usage::{BudgetScope, DayUsage, Metering, Overrides, UsageToday};

use crate::state::ExecutionState;
use async_trait::async_trait;

/// The result of an idempotent create.
#[derive(Clone, Debug, PartialEq)]
pub enum CreateOutcome {
    /// The run was created.
    Created,
    /// A live run already had this key (a retried request): it is returned unchanged.
    Existing(Box<RunRecord>),
    /// The owner already has as many alive runs as [`Store::create_run_limited`] allows:
    /// nothing was written.
    AtLimit,
    /// The day's token budget of this scope is spent ([`Store::create_run_metered`]): nothing
    /// was written.
    OverBudget(BudgetScope),
}

/// The persisted state a conditional update expects to replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub state: ExecutionState,
    pub version: u64,
}

impl Expected {
    /// What `run` currently is, as the condition for replacing it.
    pub fn of(run: &RunRecord) -> Expected {
        Expected {
            state: run.state,
            version: run.version,
        }
    }
}

/// One page of runs, newest first, and where the next page starts.
#[derive(Clone, Debug, PartialEq)]
pub struct RunPage {
    pub items: Vec<RunRecord>,
    pub cursor: Option<ListCursor>,
}

/// A position in a user's run list: the last run of the previous page.
///
/// On the wire it is `{created_at:013}.{run_id}`; both parts are re-validated when a client
/// sends it back, and the user partition always comes from the caller, never the cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListCursor {
    pub created_at: u64,
    pub run_id: String,
}

impl ListCursor {
    /// The cursor of the page ending at `run`.
    pub fn after(run: &RunRecord) -> ListCursor {
        ListCursor {
            created_at: run.created_at,
            run_id: run.run_id.clone(),
        }
    }

    /// The page size a store reads for `limit`: at least one run, as DynamoDB's `Limit` must
    /// be (a page of none could never move on).
    pub fn page_size(limit: usize) -> usize {
        limit.max(1)
    }

    /// The cursor of a page read as index rows `(created_at, run_id)`, newest first, with one
    /// row beyond the page fetched to tell whether another page exists: so the last page of a
    /// list never carries a cursor, whatever its length. `limit` is taken as
    /// [`ListCursor::page_size`].
    pub fn after_rows(rows: &[(u64, String)], limit: usize) -> Option<ListCursor> {
        let limit = ListCursor::page_size(limit);
        (rows.len() > limit).then(|| ListCursor {
            created_at: rows[limit - 1].0,
            run_id: rows[limit - 1].1.clone(),
        })
    }

    /// Parses a client's cursor; `None` when it is malformed.
    pub fn parse(s: &str) -> Option<ListCursor> {
        let (ts, id) = s.split_once('.')?;
        if ts.len() != keys::TIME_DIGITS || !ts.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        crate::context::validate_id("cursor", id, crate::context::Mode::Test).ok()?;
        Some(ListCursor {
            created_at: ts.parse().ok()?,
            run_id: id.to_owned(),
        })
    }
}

impl std::fmt::Display for ListCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let width = keys::TIME_DIGITS;
        write!(f, "{:0width$}.{}", self.created_at, self.run_id)
    }
}

/// Durable storage of connections and runs.
///
/// Semantics every backend keeps: records past `expires_at` are invisible to reads and may be
/// overwritten by creates; `update_run` replaces a run only if its persisted state and version
/// are the expected ones (else `Conflict`); alive runs are findable by due time per shard.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records a connection (overwrites a previous record with the same id).
    async fn put_connection(&self, conn: &ConnectionRecord) -> Result<(), StorageError>;

    /// The connection's record, if present and not expired.
    async fn get_connection(
        &self,
        connection_id: &str,
    ) -> Result<Option<ConnectionRecord>, StorageError>;

    /// Removes a connection's record; removing an absent one succeeds.
    async fn delete_connection(&self, connection_id: &str) -> Result<(), StorageError>;

    /// The owner's live connection records.
    async fn user_connections(
        &self,
        owner: Owner<'_>,
    ) -> Result<Vec<ConnectionRecord>, StorageError>;

    /// Creates a run unless a run with the same (owner, run id) exists that
    /// [`RunRecord::replaceable`] does not allow replacing (it expired, or its hand-off to a
    /// worker failed).
    async fn create_run(&self, run: &RunRecord) -> Result<CreateOutcome, StorageError>;

    /// [`Store::create_run`] that also takes one of the owner's `max_active` active-run slots,
    /// atomically: of N concurrent creates with `max_active` free slots, exactly that many
    /// succeed and the rest are [`CreateOutcome::AtLimit`] (a retried request still finds its
    /// run: `Existing`). `run.holds_slot` must be set; the store gives the slot back in the
    /// same write that makes the run terminal ([`Store::update_run`]), so exactly once.
    async fn create_run_limited(
        &self,
        run: &RunRecord,
        max_active: u32,
    ) -> Result<CreateOutcome, StorageError>;

    /// How many of the owner's active-run slots are taken (0 when the owner has no counter).
    async fn active_runs(&self, owner: Owner<'_>) -> Result<u64, StorageError>;

    /// The create of a metered run (`run.metering` set), in one atomic write: the run as
    /// [`Store::create_run`] writes it, one of the owner's `max_active` slots when set (as
    /// [`Store::create_run_limited`]; `run.holds_slot` must then be set), and one more run on
    /// the owner's and the tenant's counters of `run.metering.day`, each refused while its day's
    /// tokens have reached the budget the metering carries. A refusal writes nothing:
    /// [`CreateOutcome::AtLimit`] (slots) before [`CreateOutcome::OverBudget`] (the user's
    /// budget, then the tenant's). A run without metering is created as `create_run_limited`
    /// or `create_run` would.
    async fn create_run_metered(
        &self,
        run: &RunRecord,
        max_active: Option<u32>,
    ) -> Result<CreateOutcome, StorageError>;

    /// Adds a model round's tokens to the owner's and the tenant's counters of
    /// `metering.day` (atomic adds, whoever else adds at once); the counters' totals after it.
    async fn charge_usage(
        &self,
        owner: Owner<'_>,
        metering: &Metering,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<UsageToday, StorageError>;

    /// The owner's counters of UTC day `day`, and their tenant's when they have one (zero when
    /// nothing was counted).
    async fn usage_on(&self, owner: Owner<'_>, day: &str) -> Result<UsageToday, StorageError>;

    /// The limits an operator stored for the owner and their tenant (none: all `None`).
    async fn limit_overrides(&self, owner: Owner<'_>) -> Result<Overrides, StorageError>;

    /// The owner's run, if present and not expired. Another owner's run id (another user's, or
    /// the same user id's in another tenant) is simply absent.
    async fn get_run(
        &self,
        owner: Owner<'_>,
        run_id: &str,
    ) -> Result<Option<RunRecord>, StorageError>;

    /// Replaces the run if its persisted state and version are `expected`; `Conflict` otherwise.
    /// The write that takes a run holding a slot from alive to terminal also gives the slot
    /// back, atomically with it ([`releases_slot`]).
    async fn update_run(&self, run: &RunRecord, expected: Expected) -> Result<(), StorageError>;

    /// The owner's runs, newest first, optionally of one thread.
    async fn list_runs(
        &self,
        owner: Owner<'_>,
        thread_id: Option<&str>,
        limit: usize,
        cursor: Option<&ListCursor>,
    ) -> Result<RunPage, StorageError>;

    /// Alive runs in `shard` whose due time is at or before `now_ms`, most overdue first.
    async fn due_runs(
        &self,
        shard: u8,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StorageError>;

    /// Journals one completed step of a run (under the run's owner, with the run's TTL). A
    /// step already journaled with the same number is kept as it is and the write succeeds: a
    /// duplicate write is a no-op.
    async fn put_step(&self, step: &StepRecord) -> Result<(), StorageError>;

    /// The owner's run's journaled steps in order (at most [`step::MAX_JOURNAL_STEPS`]);
    /// expired ones are absent, as is every step of another owner's run.
    async fn steps(&self, owner: Owner<'_>, run_id: &str) -> Result<Vec<StepRecord>, StorageError>;

    /// Opens connections ahead of the first real request (init-time warm-up); a no-op for
    /// stores without connections.
    async fn warm_up(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// Whether writing `next` over a stored run in state `expected` gives the run's active-run slot
/// back: it held one and this write ends it. The state condition of the write makes this
/// happen once per run, whoever ends it (driver, cancel, sweep, failed hand-off).
pub fn releases_slot(next: &RunRecord, expected: Expected) -> bool {
    next.holds_slot && expected.state.is_alive() && next.state.is_terminal()
}

/// Key formats shared by every backend (and documented in the README's storage layout).
pub mod keys {
    /// Epoch milliseconds in sort keys and cursors are zero-padded to this width, so that text
    /// order is time order (13 digits last until the year 2286).
    pub const TIME_DIGITS: usize = 13;
    /// Partition key of a connection item.
    pub fn connection_pk(connection_id: &str) -> String {
        format!("CONN#{connection_id}")
    }
    /// Sort key of a connection item.
    pub const CONNECTION_SK: &str = "CONN";
    use super::Owner;

    /// Partition key of an owner's items (runs) and of the `by_owner` index: `USER#{user}`
    /// without a tenant (as it always was), `TENANT#{tenant}#USER#{user}` with one.
    pub fn owner_pk(owner: Owner<'_>) -> String {
        match owner.tenant_id {
            None => format!("USER#{}", owner.user_id),
            Some(_) => owner.key().into_owned(),
        }
    }
    /// Sort key of a run item.
    pub fn run_sk(run_id: &str) -> String {
        format!("RUN#{run_id}")
    }
    /// `by_owner` sort key of a run: creation time, then id, so pages run newest first.
    pub fn owner_run_sk(created_at: u64, run_id: &str) -> String {
        format!("RUN#{created_at:0w$}#{run_id}", w = TIME_DIGITS)
    }
    /// `by_owner` sort key of a connection.
    pub fn owner_conn_sk(connection_id: &str) -> String {
        format!("CONN#{connection_id}")
    }
    /// `by_thread` partition key: the owner's partition, then the thread.
    pub fn thread_pk(owner: Owner<'_>, thread_id: &str) -> String {
        format!("{}#THREAD#{thread_id}", owner_pk(owner))
    }
    /// Sort key of an owner's active-run counter item (`pk` is the owner's partition).
    pub const ACTIVE_SK: &str = "ACTIVE";
    /// Partition key of a tenant's own items (its day counters and overrides); never an
    /// owner's (`TENANT#{t}#USER#{u}`), since an id has no `#`.
    pub fn tenant_pk(tenant_id: &str) -> String {
        format!("TENANT#{tenant_id}")
    }
    /// Sort key of a day's usage counters (`pk`: the owner's partition, or the tenant's).
    pub fn usage_sk(day: &str) -> String {
        format!("USAGE#{day}")
    }
    /// Sort key of the limits an operator stored for an owner or a tenant.
    pub const LIMITS_SK: &str = "LIMITS";
    /// Digits of a step's number in its sort key, so text order is step order (a run journals
    /// far fewer than 100 000 steps: see `MAX_JOURNAL_STEPS`).
    pub const STEP_DIGITS: usize = 5;
    /// Sort-key prefix of a run's journaled steps: under the run's own sort key, in the
    /// owner's partition (`#` is never in a run id, so no other run's steps share it).
    pub fn steps_prefix(run_id: &str) -> String {
        format!("RUN#{run_id}#STEP#")
    }
    /// Sort key of step `n` of a run.
    pub fn step_sk(run_id: &str, n: u32) -> String {
        format!("{}{n:0w$}", steps_prefix(run_id), w = STEP_DIGITS)
    }
    /// `alive` index partition key of a shard.
    pub fn alive_shard(shard: u8) -> String {
        format!("ALIVE#{shard}")
    }
}

#[cfg(test)]
mod tests {
    use super::ListCursor;

    /// A page size of 0 is taken as 1, like every store's query, never an index underflow.
    #[test]
    fn after_rows_clamps_a_zero_limit() {
        let rows: Vec<(u64, String)> = (0..3).map(|i| (10 - i, format!("r{i}"))).collect();
        assert_eq!(
            ListCursor::after_rows(&rows, 0),
            ListCursor::after_rows(&rows, 1)
        );
        assert_eq!(
            ListCursor::after_rows(&rows, 0).map(|c| c.run_id),
            Some("r0".to_owned())
        );
        assert_eq!(ListCursor::after_rows(&rows[..1], 0), None);
        assert_eq!(ListCursor::after_rows(&rows, 3), None);
    }
}

//! Daily usage counters and limit overrides: what a metered run carries, what the counters
//! hold, and the per-user and per-tenant override items an operator writes.

use super::CreateOutcome;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a day's counters are kept after the day ends (their TTL): a month of days for an
/// operator to read back, then DynamoDB deletes them.
pub const USAGE_RETENTION: Duration = Duration::from_secs(35 * 86_400);

/// What a metered run carries from its start: the UTC day its tokens count on, and the budgets
/// that applied when it started (so a continuation in another invocation checks the same ones).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metering {
    /// The UTC day (`YYYY-MM-DD`) of the run's start: its tokens count on that day.
    pub day: String,
    /// When that day ends, epoch milliseconds (a refusal's `retry_after_ms` counts to it).
    pub day_ends_at: u64,
    /// The owner's daily token budget, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_budget: Option<u64>,
    /// The tenant's daily token budget, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_budget: Option<u64>,
}

impl Metering {
    /// The counters' TTL (epoch seconds): [`USAGE_RETENTION`] after the day ends.
    pub fn expires_at(&self) -> u64 {
        (self.day_ends_at + USAGE_RETENTION.as_millis() as u64) / 1000
    }
}

/// One day's counters of an owner or a tenant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayUsage {
    /// Runs started.
    pub runs: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl DayUsage {
    /// These counters with a round's tokens added.
    pub fn charged(mut self, input_tokens: u64, output_tokens: u64) -> DayUsage {
        self.input_tokens = self.input_tokens.saturating_add(input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(output_tokens);
        self
    }

    /// Input and output tokens together (what a budget counts).
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// An owner's day, and their tenant's when they have one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageToday {
    pub user: DayUsage,
    pub tenant: Option<DayUsage>,
}

/// Which budget a start or a run met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetScope {
    /// The owner's own (`DAILY_TOKEN_BUDGET_PER_USER` or its override).
    User,
    /// The owner's tenant's (`DAILY_TOKEN_BUDGET_PER_TENANT` or its override).
    Tenant,
}

impl BudgetScope {
    /// The limit's name, as a refusal names it.
    pub fn limit_name(self) -> &'static str {
        match self {
            BudgetScope::User => "DAILY_TOKEN_BUDGET_PER_USER",
            BudgetScope::Tenant => "DAILY_TOKEN_BUDGET_PER_TENANT",
        }
    }
}

/// Limits an operator stored for one user (`pk={owner}`, `sk=LIMITS`) and for one tenant
/// (`pk=TENANT#{tenant}`, `sk=LIMITS`). `Some(0)` lifts a limit for them; `None` leaves the
/// next level (the tenant's item, then the environment) in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    /// The user's item: `max_active_runs`.
    pub user_max_active_runs: Option<u64>,
    /// The user's item: `daily_token_budget`.
    pub user_daily_token_budget: Option<u64>,
    /// The tenant's item: `max_active_runs_per_user`.
    pub tenant_max_active_runs_per_user: Option<u64>,
    /// The tenant's item: `daily_token_budget_per_user`.
    pub tenant_daily_token_budget_per_user: Option<u64>,
    /// The tenant's item: `daily_token_budget` (all its users together).
    pub tenant_daily_token_budget: Option<u64>,
}

impl Overrides {
    /// `user`'s own fields (an owner's item) with `tenant`'s tenant fields (its tenant's item).
    pub fn merged(user: Overrides, tenant: Overrides) -> Overrides {
        Overrides {
            user_max_active_runs: user.user_max_active_runs,
            user_daily_token_budget: user.user_daily_token_budget,
            ..tenant
        }
    }
}

/// The refusal of a metered create by the counters as they stand (the embedded and memory
/// stores decide under their lock what DynamoDB's conditions decide): slots first, then the
/// owner's budget, then the tenant's. `None`: the run may start.
pub fn refusal(
    max_active: Option<u32>,
    taken: u64,
    metering: &Metering,
    user: &DayUsage,
    tenant: Option<&DayUsage>,
) -> Option<CreateOutcome> {
    if max_active.is_some_and(|max| taken >= u64::from(max)) {
        return Some(CreateOutcome::AtLimit);
    }
    if metering.user_budget.is_some_and(|b| user.tokens() >= b) {
        return Some(CreateOutcome::OverBudget(BudgetScope::User));
    }
    if let (Some(b), Some(t)) = (metering.tenant_budget, tenant)
        && t.tokens() >= b
    {
        return Some(CreateOutcome::OverBudget(BudgetScope::Tenant));
    }
    None
}

/// Attribute names of the override items (the README shows them, with an AWS CLI example).
pub mod attrs {
    /// On a user's `LIMITS` item: their `MAX_ACTIVE_RUNS_PER_USER`.
    pub const MAX_ACTIVE_RUNS: &str = "max_active_runs";
    /// On a user's `LIMITS` item: their `DAILY_TOKEN_BUDGET_PER_USER`.
    pub const DAILY_TOKEN_BUDGET: &str = "daily_token_budget";
    /// On a tenant's `LIMITS` item: `MAX_ACTIVE_RUNS_PER_USER` of its users.
    pub const MAX_ACTIVE_RUNS_PER_USER: &str = "max_active_runs_per_user";
    /// On a tenant's `LIMITS` item: `DAILY_TOKEN_BUDGET_PER_USER` of its users.
    pub const DAILY_TOKEN_BUDGET_PER_USER: &str = "daily_token_budget_per_user";
    /// Day counters: runs started.
    pub const RUNS: &str = "runs";
    /// Day counters: input tokens.
    pub const TOKENS_IN: &str = "tokens_in";
    /// Day counters: output tokens.
    pub const TOKENS_OUT: &str = "tokens_out";
    /// Day counters: input and output tokens together (what a budget's condition reads:
    /// DynamoDB conditions cannot add two attributes).
    pub const TOKENS: &str = "tokens";
}

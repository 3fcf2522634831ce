//! `get_usage`: the caller's usage today (UTC) and the limits that apply to them.
//!
//! A caller sees their own counters and limits only. Their tenant's total appears only as the
//! `used` of `DAILY_TOKEN_BUDGET_PER_TENANT` when that budget applies to them: it decides
//! whether their next start is refused, so they are told how much of it is left, and nothing
//! else of other users (no runs, no split by user).

use super::{Caller, CmdError};
use crate::manager::Manager;
use crate::protocol::{Envelope, Event, Reply, RunRef};
use crate::store::{BudgetScope, DayUsage};
use crate::time::{next_utc_day, now_ms, rfc3339_ms, utc_day};
use serde_json::{Map, Value, json};

/// `get_usage` (no fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetUsage;

/// A budget's figures: its limit, what was used today and what is left.
fn budget(limit: u64, used: u64) -> Value {
    json!({"limit": limit, "used": used, "remaining": limit.saturating_sub(used)})
}

/// The counters as the reply shows them.
fn day(u: &DayUsage) -> Value {
    json!({
        "runs": u.runs,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "tokens": u.tokens(),
    })
}

impl GetUsage {
    /// `usage {day, resets_at, metered, usage, limits}`. With no usage limit set nothing is
    /// counted (a start stays one write), and the reply says so with `metered: false`, no
    /// storage read made.
    pub async fn apply(self, mgr: &Manager, caller: &Caller<'_>) -> Result<Reply, CmdError> {
        let now = mgr.clock().now_ms();
        let today = utc_day(now);
        let owner = caller.who.owner();
        let metered = mgr.config().metered();
        let mut limits = Map::new();
        let mut used = DayUsage::default();
        if metered {
            let applied = mgr.applied_limits(owner).await?;
            let store = mgr.store()?;
            let counted = store.usage_on(owner, &today).await?;
            used = counted.user;
            if let Some(max) = applied.max_active_runs {
                let active = store.active_runs(owner).await?;
                limits.insert(
                    "MAX_ACTIVE_RUNS_PER_USER".into(),
                    json!({"limit": max, "used": active}),
                );
            }
            if let Some(b) = applied.user_budget {
                let name = BudgetScope::User.limit_name();
                limits.insert(name.into(), budget(b, used.tokens()));
            }
            if let (Some(b), Some(t)) = (applied.tenant_budget, counted.tenant) {
                let name = BudgetScope::Tenant.limit_name();
                limits.insert(name.into(), budget(b, t.tokens()));
            }
        }
        let payload = json!({
            "day": today,
            "resets_at": rfc3339_ms(next_utc_day(now)),
            "metered": metered,
            "usage": day(&used),
            "limits": limits,
        });
        let reply = Envelope::new(
            Event::Usage(payload),
            RunRef::request(caller.request_id),
            now_ms(),
        );
        Ok(reply.reply())
    }
}

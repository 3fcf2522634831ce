//! Which usage limits apply to an owner: the environment's defaults, overridden per tenant and
//! per user by the `LIMITS` items an operator stores, read at most once a minute per owner.

use crate::config::Config;
use crate::store::{Overrides, Owner, StorageError, Store};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a warm instance keeps an owner's overrides before reading them again: an operator's
/// change applies within a minute, and a user's burst of starts reads them once.
pub const OVERRIDES_TTL: Duration = Duration::from_secs(60);
/// Owners whose overrides one instance keeps; past it the cache is cleared (a miss costs one
/// read).
pub const OVERRIDES_CACHE_CAPACITY: usize = 10_000;

/// The limits that apply to one owner (`None`: no limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// `MAX_ACTIVE_RUNS_PER_USER`.
    pub max_active_runs: Option<u32>,
    /// `DAILY_TOKEN_BUDGET_PER_USER`.
    pub user_budget: Option<u64>,
    /// `DAILY_TOKEN_BUDGET_PER_TENANT` (only for an owner with a tenant).
    pub tenant_budget: Option<u64>,
}

/// `0` lifts a limit; anything else is the limit.
fn limit(v: Option<u64>) -> Option<u64> {
    v.filter(|n| *n > 0)
}

impl Applied {
    /// The user's override, else the tenant's, else the environment's (a stored 0 lifts it).
    pub fn resolve(config: &Config, o: &Overrides, has_tenant: bool) -> Applied {
        let max = o
            .user_max_active_runs
            .or(o.tenant_max_active_runs_per_user)
            .or(config.max_active_runs.map(u64::from));
        let user = o
            .user_daily_token_budget
            .or(o.tenant_daily_token_budget_per_user)
            .or(config.daily_token_budget_per_user);
        let tenant = o
            .tenant_daily_token_budget
            .or(config.daily_token_budget_per_tenant);
        Applied {
            max_active_runs: limit(max).map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            user_budget: limit(user),
            tenant_budget: if has_tenant { limit(tenant) } else { None },
        }
    }
}

/// A warm instance's owners' overrides, each kept for [`OVERRIDES_TTL`].
#[derive(Default)]
pub struct OverridesCache {
    entries: Mutex<HashMap<String, (Instant, Overrides)>>,
}

impl OverridesCache {
    /// The limits that apply to `owner`: their overrides from the cache, or read from `store`.
    pub async fn applied(
        &self,
        config: &Config,
        store: &dyn Store,
        owner: Owner<'_>,
    ) -> Result<Applied, StorageError> {
        let key = owner.key().into_owned();
        let cached = {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            entries
                .get(&key)
                .filter(|(at, _)| at.elapsed() < OVERRIDES_TTL)
                .map(|(_, o)| *o)
        };
        let overrides = match cached {
            Some(o) => o,
            None => {
                let o = store.limit_overrides(owner).await?;
                let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
                if entries.len() >= OVERRIDES_CACHE_CAPACITY {
                    entries.clear();
                }
                entries.insert(key, (Instant::now(), o));
                o
            }
        };
        Ok(Applied::resolve(
            config,
            &overrides,
            owner.tenant_id.is_some(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user's override beats their tenant's, which beats the environment; 0 lifts a limit;
    /// a tenant budget never applies to an owner without a tenant.
    #[test]
    fn overrides_resolve_user_then_tenant_then_environment() {
        let config = Config {
            max_active_runs: Some(4),
            daily_token_budget_per_user: Some(500),
            daily_token_budget_per_tenant: Some(5000),
            ..Config::default()
        };
        let none = Overrides::default();
        let env = Applied::resolve(&config, &none, true);
        assert_eq!(
            env,
            Applied {
                max_active_runs: Some(4),
                user_budget: Some(500),
                tenant_budget: Some(5000)
            }
        );
        assert_eq!(Applied::resolve(&config, &none, false).tenant_budget, None);
        let tenant = Overrides {
            tenant_max_active_runs_per_user: Some(8),
            tenant_daily_token_budget_per_user: Some(1000),
            tenant_daily_token_budget: Some(0),
            ..Overrides::default()
        };
        let t = Applied::resolve(&config, &tenant, true);
        assert_eq!(
            (t.max_active_runs, t.user_budget, t.tenant_budget),
            (Some(8), Some(1000), None)
        );
        let user = Overrides {
            user_max_active_runs: Some(0),
            user_daily_token_budget: Some(20_000),
            ..tenant
        };
        let u = Applied::resolve(&config, &user, true);
        assert_eq!((u.max_active_runs, u.user_budget), (None, Some(20_000)));
    }
}

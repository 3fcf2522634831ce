//! Day counters and limit overrides on DynamoDB: a round's tokens added with one atomic
//! `UpdateItem` per counter (the owner's and the tenant's, side by side), the counters read
//! back, and the `LIMITS` items an operator writes.

use super::codec::{Item, n, s};
use super::transact::{day_key, usage_key};
use super::{DynamoStore, PK, SK, TTL_ATTRIBUTE, classify};
use crate::store::usage::attrs;
use crate::store::{
    DayUsage, Metering, Overrides, Owner, StorageError, StorageErrorKind, UsageToday, keys,
};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

/// A number attribute of `item`, 0 when absent; `None` when it is not a whole number.
fn num(item: &Item, k: &str) -> Option<u64> {
    match item.get(k) {
        None => Some(0),
        Some(AttributeValue::N(v)) => v.parse().ok(),
        Some(_) => None,
    }
}

/// A number attribute that may be absent (`None`), as override items hold them.
fn opt_num(item: &Item, k: &str) -> Option<u64> {
    match item.get(k) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

/// The counters an item holds.
fn day_from(op: &'static str, item: &Item) -> Result<DayUsage, StorageError> {
    let get = |k| {
        num(item, k).ok_or_else(|| {
            StorageError::new(
                StorageErrorKind::Invalid,
                op,
                format!("stored item is malformed: {k}"),
            )
        })
    };
    Ok(DayUsage {
        runs: get(attrs::RUNS)?,
        input_tokens: get(attrs::TOKENS_IN)?,
        output_tokens: get(attrs::TOKENS_OUT)?,
    })
}

impl DynamoStore {
    /// `ADD` a round's tokens to one day item; its counters after.
    async fn charge_one(
        &self,
        key: Item,
        m: &Metering,
        input: u64,
        output: u64,
    ) -> Result<DayUsage, StorageError> {
        const OP: &str = "charge_usage";
        let out = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key))
            .update_expression("ADD #in :in, #out :out, #tokens :tokens SET #ttl = :ttl")
            .expression_attribute_names("#in", attrs::TOKENS_IN)
            .expression_attribute_names("#out", attrs::TOKENS_OUT)
            .expression_attribute_names("#tokens", attrs::TOKENS)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":in", n(input))
            .expression_attribute_values(":out", n(output))
            .expression_attribute_values(":tokens", n(input.saturating_add(output)))
            .expression_attribute_values(":ttl", n(m.expires_at()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| classify(OP, self.table(), e))?;
        day_from(OP, &out.attributes.unwrap_or_default())
    }

    /// A round's tokens on the owner's and the tenant's counters of `m.day`, side by side.
    pub(super) async fn charge(
        &self,
        owner: Owner<'_>,
        m: &Metering,
        input: u64,
        output: u64,
    ) -> Result<UsageToday, StorageError> {
        let user = self.charge_one(usage_key(owner, &m.day), m, input, output);
        let Some(t) = owner.tenant_id else {
            return Ok(UsageToday {
                user: user.await?,
                tenant: None,
            });
        };
        let tenant = self.charge_one(day_key(keys::tenant_pk(t), &m.day), m, input, output);
        let (user, tenant) = tokio::join!(user, tenant);
        Ok(UsageToday {
            user: user?,
            tenant: Some(tenant?),
        })
    }

    /// One item by key, read consistently (so a usage reply counts every round charged).
    async fn item(&self, op: &'static str, pk: String, sk: String) -> Result<Item, StorageError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(op, self.table(), e))?;
        Ok(out.item.unwrap_or_default())
    }

    /// The owner's and the tenant's counters of `day`.
    pub(super) async fn day_usage(
        &self,
        owner: Owner<'_>,
        day: &str,
    ) -> Result<UsageToday, StorageError> {
        const OP: &str = "usage_on";
        let user = self.item(OP, keys::owner_pk(owner), keys::usage_sk(day));
        let Some(t) = owner.tenant_id else {
            return Ok(UsageToday {
                user: day_from(OP, &user.await?)?,
                tenant: None,
            });
        };
        let tenant = self.item(OP, keys::tenant_pk(t), keys::usage_sk(day));
        let (user, tenant) = tokio::join!(user, tenant);
        Ok(UsageToday {
            user: day_from(OP, &user?)?,
            tenant: Some(day_from(OP, &tenant?)?),
        })
    }

    /// The `LIMITS` items of the owner and their tenant (absent ones: no override).
    pub(super) async fn overrides(&self, owner: Owner<'_>) -> Result<Overrides, StorageError> {
        const OP: &str = "limit_overrides";
        let user = self.item(OP, keys::owner_pk(owner), keys::LIMITS_SK.to_owned());
        let (user, tenant) = match owner.tenant_id {
            None => (user.await?, Item::new()),
            Some(t) => {
                let tenant = self.item(OP, keys::tenant_pk(t), keys::LIMITS_SK.to_owned());
                let (user, tenant) = tokio::join!(user, tenant);
                (user?, tenant?)
            }
        };
        Ok(Overrides {
            user_max_active_runs: opt_num(&user, attrs::MAX_ACTIVE_RUNS),
            user_daily_token_budget: opt_num(&user, attrs::DAILY_TOKEN_BUDGET),
            tenant_max_active_runs_per_user: opt_num(&tenant, attrs::MAX_ACTIVE_RUNS_PER_USER),
            tenant_daily_token_budget_per_user: opt_num(
                &tenant,
                attrs::DAILY_TOKEN_BUDGET_PER_USER,
            ),
            tenant_daily_token_budget: opt_num(&tenant, attrs::DAILY_TOKEN_BUDGET),
        })
    }
}

//! The writes that move an owner's counters with a run, in one `TransactWriteItems`: the
//! create that takes a slot and counts the run on its day (refused by a spent budget), and the
//! terminal write that gives the slot back; their cancellation reasons classified per item.

use super::codec::{Item, n, run_from, run_item, s};
use super::{DynamoStore, PK, SK, TTL_ATTRIBUTE, classify};
use crate::state::ExecutionState;
use crate::store::record::DISPATCH_FAILED_PREFIX;
use crate::store::usage::attrs;
use crate::store::{
    BudgetScope, CreateOutcome, Expected, Metering, Owner, RunRecord, StorageError,
    StorageErrorKind, keys,
};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    CancellationReason, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use std::time::Duration;

/// The counter attribute of an owner's `ACTIVE` item.
pub const ACTIVE: &str = "active";

/// Attempts of a transaction that DynamoDB cancelled only because another transaction held one
/// of its items (`TransactionConflict`): every start and end of one owner's runs writes the
/// same counter item, so a burst of them conflicts by design. DynamoDB's guidance is to retry
/// such a cancellation; four attempts with [`CONFLICT_BACKOFF`] outlast a burst of 20 starts.
pub const CONFLICT_ATTEMPTS: u32 = 6;
/// The base pause between those attempts (times the attempt, plus jitter of up to as much
/// again, so colliding writers spread out).
pub const CONFLICT_BACKOFF: Duration = Duration::from_millis(15);

/// What a cancelled transaction's reasons say, item by item.
#[derive(Debug)]
enum Cancelled {
    /// The item at this index failed its condition; its old image when one came back.
    Condition(usize, Option<Item>),
    /// Another transaction held one of the items: retry.
    Conflict,
    /// Anything else: the error, classified from the first reason that is not `None`.
    Other(StorageError),
}

/// The reasons of a `TransactionCanceledException`, most decisive first: a failed condition
/// (the caller's answer), then contention, then the first other reason by its code.
fn reasons(op: &'static str, reasons: &[CancellationReason]) -> Cancelled {
    let code = |r: &CancellationReason| r.code().unwrap_or("None").to_owned();
    if let Some((i, r)) = reasons
        .iter()
        .enumerate()
        .find(|(_, r)| code(r) == "ConditionalCheckFailed")
    {
        return Cancelled::Condition(i, r.item().cloned());
    }
    if reasons.iter().any(|r| code(r) == "TransactionConflict") {
        return Cancelled::Conflict;
    }
    let other = reasons.iter().map(code).find(|c| c != "None");
    let kind = match other.as_deref() {
        Some("ThrottlingError" | "ProvisionedThroughputExceeded") => StorageErrorKind::Throttled,
        Some("ValidationError" | "ItemCollectionSizeLimitExceeded") => StorageErrorKind::Invalid,
        _ => StorageErrorKind::Transaction,
    };
    let what = other.unwrap_or_else(|| "no reason given".to_owned());
    Cancelled::Other(StorageError::new(
        kind,
        op,
        format!("transaction cancelled: {what}"),
    ))
}

/// The key of an owner's active-run counter item.
fn counter_key(owner: Owner<'_>) -> Item {
    Item::from([
        (PK.to_owned(), s(keys::owner_pk(owner))),
        (SK.to_owned(), s(keys::ACTIVE_SK)),
    ])
}

/// The key of a day's counters item under partition `pk`.
pub fn day_key(pk: String, day: &str) -> Item {
    Item::from([
        (PK.to_owned(), s(pk)),
        (SK.to_owned(), s(keys::usage_sk(day))),
    ])
}

/// The key of an owner's counters of `day`.
pub fn usage_key(owner: Owner<'_>, day: &str) -> Item {
    day_key(keys::owner_pk(owner), day)
}

/// `ADD runs 1` on a day's counters (created if absent, with their TTL), refused while the day's
/// `tokens` have reached `budget`.
fn count_run(
    table: &str,
    key: Item,
    m: &Metering,
    budget: Option<u64>,
) -> Result<Update, aws_smithy_types::error::operation::BuildError> {
    let mut update = Update::builder()
        .table_name(table)
        .set_key(Some(key))
        .update_expression("ADD #runs :one SET #ttl = :ttl")
        .expression_attribute_names("#runs", attrs::RUNS)
        .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
        .expression_attribute_values(":one", n(1))
        .expression_attribute_values(":ttl", n(m.expires_at()));
    if let Some(b) = budget {
        update = update
            .condition_expression("attribute_not_exists(#tokens) OR #tokens < :budget")
            .expression_attribute_names("#tokens", attrs::TOKENS)
            .expression_attribute_values(":budget", n(b));
    }
    update.build()
}

/// A pause before attempt `attempt` (1-based) of a conflicted transaction.
fn backoff(attempt: u32) -> Duration {
    let jitter = crate::time::now_ms().wrapping_mul(2_654_435_761) % 1000;
    let base = CONFLICT_BACKOFF * attempt;
    base + base.mul_f64(jitter as f64 / 1000.0)
}

impl DynamoStore {
    /// Sends `items` as one transaction, again after a pure `TransactionConflict` (at most
    /// [`CONFLICT_ATTEMPTS`]); `Err(Ok(cancelled))` for any other cancellation.
    async fn transact(
        &self,
        op: &'static str,
        items: Vec<TransactWriteItem>,
    ) -> Result<(), Result<Cancelled, StorageError>> {
        let mut attempt = 1;
        loop {
            let sent = self
                .client()
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let e = match sent {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            let cancelled = match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    reasons(op, c.cancellation_reasons())
                }
                _ => return Err(Err(classify(op, self.table(), e))),
            };
            match cancelled {
                Cancelled::Conflict if attempt < CONFLICT_ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Cancelled::Conflict => {
                    let err = StorageError::new(
                        StorageErrorKind::Contention,
                        op,
                        "transaction cancelled: TransactionConflict",
                    );
                    return Err(Err(err.with_source(e)));
                }
                other => return Err(Ok(other)),
            }
        }
    }

    /// The create that takes a slot and counts the run on its day (any of them, as `run`
    /// asks): the run's conditional put (as `create_run`'s), the owner's counter `ADD active 1`
    /// while below `max_active`, and `ADD runs 1` on the owner's and the tenant's day items,
    /// each while its day's `tokens` are below the budget `run.metering` carries, in one
    /// transaction.
    pub(super) async fn create_limited(
        &self,
        run: &RunRecord,
        max_active: Option<u32>,
    ) -> Result<CreateOutcome, StorageError> {
        const OP: &str = "create_run";
        let now_secs = crate::time::now_ms() / 1000;
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(run_item(run)))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at <= :now \
                 OR (#state = :failed AND begins_with(error_code, :dispatch))",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":now", n(now_secs))
            .expression_attribute_values(":failed", s(ExecutionState::Failed.as_str()))
            .expression_attribute_values(":dispatch", s(DISPATCH_FAILED_PREFIX))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| built(OP, e))?;
        let mut items = vec![TransactWriteItem::builder().put(put).build()];
        // What a failed condition of each item after the put means.
        let mut refusals = Vec::new();
        if let Some(max) = max_active {
            let take = Update::builder()
                .table_name(self.table())
                .set_key(Some(counter_key(run.owner())))
                .update_expression("ADD #active :one")
                .condition_expression("attribute_not_exists(#active) OR #active < :max")
                .expression_attribute_names("#active", ACTIVE)
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":max", n(u64::from(max)))
                .build()
                .map_err(|e| built(OP, e))?;
            items.push(TransactWriteItem::builder().update(take).build());
            refusals.push(CreateOutcome::AtLimit);
        }
        if let Some(m) = &run.metering {
            let user = (
                usage_key(run.owner(), &m.day),
                m.user_budget,
                BudgetScope::User,
            );
            let tenant = run.tenant_id.as_deref().map(|t| {
                let key = day_key(keys::tenant_pk(t), &m.day);
                (key, m.tenant_budget, BudgetScope::Tenant)
            });
            for (key, budget, scope) in std::iter::once(user).chain(tenant) {
                let count = count_run(self.table(), key, m, budget).map_err(|e| built(OP, e))?;
                items.push(TransactWriteItem::builder().update(count).build());
                refusals.push(CreateOutcome::OverBudget(scope));
            }
        }
        match self.transact(OP, items).await {
            Ok(()) => Ok(CreateOutcome::Created),
            // The run exists (a retried request), whatever the counters say.
            Err(Ok(Cancelled::Condition(0, Some(item)))) => {
                Ok(CreateOutcome::Existing(Box::new(run_from(OP, &item)?)))
            }
            Err(Ok(Cancelled::Condition(0, None))) => {
                match crate::store::Store::get_run(self, run.owner(), &run.run_id).await? {
                    Some(existing) => Ok(CreateOutcome::Existing(Box::new(existing))),
                    None => Err(StorageError::conflict(OP)),
                }
            }
            Err(Ok(Cancelled::Condition(i, _))) => Ok(refusals
                .get(i - 1)
                .cloned()
                .unwrap_or(CreateOutcome::AtLimit)),
            Err(Ok(Cancelled::Other(e))) | Err(Err(e)) => Err(e),
            Err(Ok(Cancelled::Conflict)) => Err(StorageError::new(
                StorageErrorKind::Contention,
                OP,
                "transaction cancelled: TransactionConflict",
            )),
        }
    }

    /// The terminal write of a run that holds a slot: the run's put on its expected (state,
    /// version) and the owner's counter `ADD active -1`, in one transaction, so the slot comes
    /// back exactly when the run ends, once.
    pub(super) async fn end_releasing(
        &self,
        run: &RunRecord,
        expected: Expected,
    ) -> Result<(), StorageError> {
        const OP: &str = "update_run";
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(run_item(run)))
            .condition_expression("#state = :state AND version = :version")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(expected.state.as_str()))
            .expression_attribute_values(":version", n(expected.version))
            .build()
            .map_err(|e| built(OP, e))?;
        let give_back = Update::builder()
            .table_name(self.table())
            .set_key(Some(counter_key(run.owner())))
            .update_expression("ADD #active :minus_one")
            .expression_attribute_names("#active", ACTIVE)
            .expression_attribute_values(
                ":minus_one",
                aws_sdk_dynamodb::types::AttributeValue::N("-1".into()),
            )
            .build()
            .map_err(|e| built(OP, e))?;
        let items = vec![
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder().update(give_back).build(),
        ];
        match self.transact(OP, items).await {
            Ok(()) => Ok(()),
            Err(Ok(Cancelled::Condition(_, _))) => Err(StorageError::conflict(OP)),
            Err(Ok(Cancelled::Other(e))) | Err(Err(e)) => Err(e),
            Err(Ok(Cancelled::Conflict)) => Err(StorageError::new(
                StorageErrorKind::Contention,
                OP,
                "transaction cancelled: TransactionConflict",
            )),
        }
    }
}

/// A request the SDK's builder refused (a missing required field: a bug, never input).
fn built(op: &'static str, e: aws_smithy_types::error::operation::BuildError) -> StorageError {
    StorageError::new(StorageErrorKind::Invalid, op, "request could not be built").with_source(e)
}

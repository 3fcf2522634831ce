//! The DynamoDB store: one table, conditional writes, and classified failures.
//!
//! Item layout (see the README's storage section):
//! - connection: `pk=CONN#{id}`, `sk=CONN`, `gsi1pk=USER#{user}`, `gsi1sk=CONN#{id}`
//! - active-run counter: `pk=USER#{user}`, `sk=ACTIVE`, `active` (a number).
//! - run: `pk=USER#{user}`, `sk=RUN#{run_id}`, `gsi1pk=USER#{user}`,
//!   `gsi1sk=RUN#{created:013}#{run_id}`, `gsi2pk=USER#{user}#THREAD#{thread}`, `gsi2sk` as
//!   `gsi1sk`, and while alive `alive_shard=ALIVE#{n}`, `alive_due={ms}` (the sparse index).
//! - day counters: `pk={owner}` or `TENANT#{tenant}`, `sk=USAGE#{YYYY-MM-DD}`, `runs`,
//!   `tokens_in`, `tokens_out`, `tokens` (numbers), `expires_at`.
//! - limit overrides: `pk={owner}` or `TENANT#{tenant}`, `sk=LIMITS` (written by an operator).
//! - journaled step: `pk` as its run's, `sk=RUN#{run_id}#STEP#{n:05}` (no index attributes).
//!
//! # Layout
//! - [`schema`]: key attributes, indexes and actions (the template's).
//! - [`client`]: the SDK client's settings, timeouts, retries and request counter.
//! - [`classify`]: SDK failures → storage error kinds.
//! - [`codec`]: items ↔ records, driven by one attribute table per record.
//! - [`transact`]: the create and the end of a run that move its owner's active-run counter.
//! - [`steps`]: the step journal's conditional puts and reads.
//! - [`usage`]: day counters' charges and reads, and the operator's limit overrides.

pub mod classify;
pub mod client;
pub mod codec;
pub mod schema;
pub mod steps;
pub mod transact;
pub mod usage;

pub use classify::classify;
pub use client::{ClientSettings, DynamoSettings, RequestCounter};
pub use schema::*;

use super::{
    CreateOutcome, Expected, ListCursor, RunPage, StorageError, StorageErrorKind, Store, keys,
    releases_slot,
};
use crate::state::ExecutionState;
use crate::store::{
    ConnectionRecord, Metering, Overrides, Owner, RunRecord, StepRecord, UsageToday,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use codec::{
    connection_from, connection_item, cursor_from_sort_key, live, n, run_from, run_item, s,
};
use std::collections::HashMap;

/// A [`Store`] on one DynamoDB table.
pub struct DynamoStore {
    client: Client,
    table: String,
    requests: RequestCounter,
}

impl DynamoStore {
    /// A store built from the standard environment as Lambda provides it (see
    /// [`ClientSettings::from_env`]).
    pub fn from_env(table: &str, settings: DynamoSettings) -> Result<DynamoStore, StorageError> {
        Ok(DynamoStore::with_settings(
            table,
            &ClientSettings::from_env()?,
            &settings,
        ))
    }

    /// A store with explicit region, credentials and endpoint (tests, the local tool).
    pub fn with_client_config(
        table: &str,
        region: &str,
        credentials: Credentials,
        endpoint: Option<&str>,
        settings: DynamoSettings,
    ) -> DynamoStore {
        let at = ClientSettings {
            region: region.to_owned(),
            credentials,
            endpoint: endpoint.map(str::to_owned),
        };
        DynamoStore::with_settings(table, &at, &settings)
    }

    fn with_settings(table: &str, at: &ClientSettings, settings: &DynamoSettings) -> DynamoStore {
        let requests = RequestCounter::default();
        DynamoStore {
            client: client::build(at, settings, &requests),
            table: table.to_owned(),
            requests,
        }
    }

    /// The SDK client (tests read raw items with it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The request counter (every HTTP attempt to DynamoDB).
    pub fn requests(&self) -> RequestCounter {
        self.requests.clone()
    }
}

fn now_secs() -> u64 {
    crate::time::now_ms() / 1000
}

#[async_trait]
impl Store for DynamoStore {
    async fn put_connection(&self, conn: &ConnectionRecord) -> Result<(), StorageError> {
        const OP: &str = "put_connection";
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(connection_item(conn)))
            .send()
            .await
            .map_err(|e| classify(OP, &self.table, e))?;
        Ok(())
    }

    async fn get_connection(
        &self,
        connection_id: &str,
    ) -> Result<Option<ConnectionRecord>, StorageError> {
        const OP: &str = "get_connection";
        // Consistent: a message may follow `$connect` within milliseconds.
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(keys::connection_pk(connection_id)))
            .key(SK, s(keys::CONNECTION_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(OP, &self.table, e))?;
        out.item
            .filter(live)
            .map(|i| connection_from(OP, &i))
            .transpose()
    }

    async fn delete_connection(&self, connection_id: &str) -> Result<(), StorageError> {
        const OP: &str = "delete_connection";
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(keys::connection_pk(connection_id)))
            .key(SK, s(keys::CONNECTION_SK))
            .send()
            .await
            .map_err(|e| classify(OP, &self.table, e))?;
        Ok(())
    }

    async fn user_connections(
        &self,
        owner: Owner<'_>,
    ) -> Result<Vec<ConnectionRecord>, StorageError> {
        const OP: &str = "user_connections";
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(INDEX_BY_OWNER)
            .key_condition_expression("gsi1pk = :pk AND begins_with(gsi1sk, :prefix)")
            .expression_attribute_values(":pk", s(keys::owner_pk(owner)))
            .expression_attribute_values(":prefix", s("CONN#"))
            .send()
            .await
            .map_err(|e| classify(OP, &self.table, e))?;
        out.items
            .unwrap_or_default()
            .iter()
            .filter(|i| live(i))
            .map(|i| connection_from(OP, i))
            .collect()
    }

    async fn create_run(&self, run: &RunRecord) -> Result<CreateOutcome, StorageError> {
        const OP: &str = "create_run";
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(run_item(run)))
            // `RunRecord::replaceable`: absent, expired, or a failed hand-off to a worker.
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at <= :now \
                 OR (#state = :failed AND begins_with(error_code, :dispatch))",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":now", n(now_secs()))
            .expression_attribute_values(":failed", s(ExecutionState::Failed.as_str()))
            .expression_attribute_values(
                ":dispatch",
                s(crate::store::record::DISPATCH_FAILED_PREFIX),
            )
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match res {
            Ok(_) => Ok(CreateOutcome::Created),
            Err(e) => {
                // The existing item comes back with the failure: no second round trip.
                let old = e
                    .as_service_error()
                    .and_then(|se| match se {
                        aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                            c.item.clone()
                        }
                        _ => None,
                    });
                let err = classify(OP, &self.table, e);
                match (err.kind(), old) {
                    (StorageErrorKind::Conflict, Some(item)) => {
                        Ok(CreateOutcome::Existing(Box::new(run_from(OP, &item)?)))
                    }
                    (StorageErrorKind::Conflict, None) => {
                        match self.get_run(run.owner(), &run.run_id).await? {
                            Some(existing) => Ok(CreateOutcome::Existing(Box::new(existing))),
                            None => Err(err),
                        }
                    }
                    _ => Err(err),
                }
            }
        }
    }

    async fn get_run(
        &self,
        owner: Owner<'_>,
        run_id: &str,
    ) -> Result<Option<RunRecord>, StorageError> {
        const OP: &str = "get_run";
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(keys::owner_pk(owner)))
            .key(SK, s(keys::run_sk(run_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(OP, &self.table, e))?;
        out.item.filter(live).map(|i| run_from(OP, &i)).transpose()
    }

    async fn create_run_limited(
        &self,
        run: &RunRecord,
        max_active: u32,
    ) -> Result<CreateOutcome, StorageError> {
        self.create_limited(run, Some(max_active)).await
    }

    async fn create_run_metered(
        &self,
        run: &RunRecord,
        max_active: Option<u32>,
    ) -> Result<CreateOutcome, StorageError> {
        if run.metering.is_none() && max_active.is_none() {
            return self.create_run(run).await;
        }
        self.create_limited(run, max_active).await
    }

    async fn charge_usage(
        &self,
        owner: Owner<'_>,
        metering: &Metering,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<UsageToday, StorageError> {
        self.charge(owner, metering, input_tokens, output_tokens)
            .await
    }

    async fn usage_on(&self, owner: Owner<'_>, day: &str) -> Result<UsageToday, StorageError> {
        self.day_usage(owner, day).await
    }

    async fn limit_overrides(&self, owner: Owner<'_>) -> Result<Overrides, StorageError> {
        self.overrides(owner).await
    }

    async fn active_runs(&self, owner: Owner<'_>) -> Result<u64, StorageError> {
        const OP: &str = "active_runs";
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(keys::owner_pk(owner)))
            .key(SK, s(keys::ACTIVE_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(OP, &self.table, e))?;
        Ok(
            match out.item.as_ref().and_then(|i| i.get(transact::ACTIVE)) {
                Some(AttributeValue::N(v)) => v.parse::<i64>().unwrap_or(0).max(0) as u64,
                _ => 0,
            },
        )
    }

    async fn update_run(&self, run: &RunRecord, expected: Expected) -> Result<(), StorageError> {
        const OP: &str = "update_run";
        if releases_slot(run, expected) {
            return self.end_releasing(run, expected).await;
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(run_item(run)))
            .condition_expression("#state = :state AND version = :version")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(expected.state.as_str()))
            .expression_attribute_values(":version", n(expected.version))
            .send()
            .await
            .map_err(|e| classify(OP, &self.table, e))?;
        Ok(())
    }

    async fn list_runs(
        &self,
        owner: Owner<'_>,
        thread_id: Option<&str>,
        limit: usize,
        cursor: Option<&ListCursor>,
    ) -> Result<RunPage, StorageError> {
        const OP: &str = "list_runs";
        let limit = ListCursor::page_size(limit);
        let (index, pk_attr, sk_attr, pk) = match thread_id {
            None => (INDEX_BY_OWNER, GSI1_PK, GSI1_SK, keys::owner_pk(owner)),
            Some(t) => (INDEX_BY_THREAD, GSI2_PK, GSI2_SK, keys::thread_pk(owner, t)),
        };
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression(format!(
                "{pk_attr} = :pk AND begins_with({sk_attr}, :prefix)"
            ))
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":prefix", s("RUN#"))
            .scan_index_forward(false)
            // One beyond the page tells whether another page exists, as in every store.
            .limit((limit + 1) as i32);
        if let Some(c) = cursor {
            // The partition comes from the caller, never from the cursor.
            q = q
                .exclusive_start_key(PK, s(keys::owner_pk(owner)))
                .exclusive_start_key(SK, s(keys::run_sk(&c.run_id)))
                .exclusive_start_key(pk_attr, s(&pk))
                .exclusive_start_key(sk_attr, s(keys::owner_run_sk(c.created_at, &c.run_id)));
        }
        let out = q.send().await.map_err(|e| classify(OP, &self.table, e))?;
        let read = out.items.unwrap_or_default();
        let sort_key = |i: &HashMap<String, AttributeValue>| match i.get(sk_attr) {
            Some(AttributeValue::S(v)) => cursor_from_sort_key(v),
            _ => None,
        };
        let rows: Vec<(u64, String)> = read
            .iter()
            .filter_map(sort_key)
            .map(|c| (c.created_at, c.run_id))
            .collect();
        // A query cut short by DynamoDB's 1 MB page ends before the extra row: its last
        // evaluated key says where the next page starts.
        let cursor = ListCursor::after_rows(&rows, limit).or_else(|| {
            (read.len() <= limit)
                .then_some(out.last_evaluated_key.as_ref())
                .flatten()
                .and_then(sort_key)
        });
        let items = read
            .iter()
            .take(limit)
            .filter(|i| live(i))
            .map(|i| run_from(OP, i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RunPage { items, cursor })
    }

    async fn put_step(&self, step: &StepRecord) -> Result<(), StorageError> {
        steps::put(&self.client, &self.table, step).await
    }

    async fn steps(&self, owner: Owner<'_>, run_id: &str) -> Result<Vec<StepRecord>, StorageError> {
        steps::read(&self.client, &self.table, owner, run_id).await
    }

    /// Opens the connection pool (TCP + TLS) and the SDK's lazily built state ahead of the
    /// first real request: a `GetItem` of a key that never exists.
    async fn warm_up(&self) -> Result<(), StorageError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key(PK, s("WARMUP"))
            .key(SK, s("WARMUP"))
            .send()
            .await
            .map_err(|e| classify("warm_up", &self.table, e))?;
        Ok(())
    }

    async fn due_runs(
        &self,
        shard: u8,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StorageError> {
        const OP: &str = "due_runs";
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(INDEX_ALIVE)
            .key_condition_expression("alive_shard = :shard AND alive_due <= :now")
            .expression_attribute_values(":shard", s(keys::alive_shard(shard)))
            .expression_attribute_values(":now", n(now_ms))
            .limit(limit.max(1) as i32)
            .send()
            .await
            .map_err(|e| classify(OP, &self.table, e))?;
        out.items
            .unwrap_or_default()
            .iter()
            .map(|i| run_from(OP, i))
            .collect()
    }
}

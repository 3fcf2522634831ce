//! The DynamoDB store: one table, conditional writes, and classified failures.
//!
//! Item layout (see the README's storage section):
//! - connection: `pk=CONN#{id}`, `sk=CONN`, `gsi1pk=USER#{user}`, `gsi1sk=CONN#{id}`
//! - run: `pk=USER#{user}`, `sk=RUN#{run_id}`, `gsi1pk=USER#{user}`,
//!   `gsi1sk=RUN#{created:013}#{run_id}`, `gsi2pk=USER#{user}#THREAD#{thread}`, `gsi2sk` as
//!   `gsi1sk`, and while alive `alive_shard=ALIVE#{n}`, `alive_due={ms}` (the sparse index).

use super::error::kind_for_service_code;
use super::{
    CreateOutcome, Expected, ListCursor, RunPage, StorageError, StorageErrorKind, Store, keys,
    record::{ConnectionRecord, RunError, RunRecord},
};
use crate::limits::{
    DYNAMODB_ATTEMPT_TIMEOUT, DYNAMODB_CONNECT_TIMEOUT, DYNAMODB_MAX_ATTEMPTS,
    DYNAMODB_OPERATION_TIMEOUT,
};
use crate::state::ExecutionState;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{
    BehaviorVersion, Credentials, Intercept, Region, RuntimeComponents, retry::RetryConfig,
    timeout::TimeoutConfig,
};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::config_bag::ConfigBag;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// GSI names (the template's).
pub const INDEX_BY_OWNER: &str = "by_owner";
/// Runs by user and thread.
pub const INDEX_BY_THREAD: &str = "by_thread";
/// The sparse index of alive runs.
pub const INDEX_ALIVE: &str = "alive";
/// The table's partition key (the template's `KeySchema` HASH).
pub const PK: &str = "pk";
/// The table's sort key (RANGE).
pub const SK: &str = "sk";
/// `by_owner`'s partition key: the owning user.
pub const GSI1_PK: &str = "gsi1pk";
/// `by_owner`'s sort key: connections, then runs by creation time.
pub const GSI1_SK: &str = "gsi1sk";
/// `by_thread`'s partition key: the user and thread.
pub const GSI2_PK: &str = "gsi2pk";
/// `by_thread`'s sort key: runs by creation time.
pub const GSI2_SK: &str = "gsi2sk";
/// `alive`'s partition key; present only while a run is alive, which keeps the index sparse.
pub const ALIVE_SHARD: &str = "alive_shard";
/// `alive`'s sort key: when the run is next due (epoch ms, a number).
pub const ALIVE_DUE: &str = "alive_due";
/// The TTL attribute (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// Every key attribute with the scalar type the item builders write (the template's
/// `AttributeDefinitions`).
pub const KEY_ATTRIBUTES: [(&str, &str); 8] = [
    (PK, "S"),
    (SK, "S"),
    (GSI1_PK, "S"),
    (GSI1_SK, "S"),
    (GSI2_PK, "S"),
    (GSI2_SK, "S"),
    (ALIVE_SHARD, "S"),
    (ALIVE_DUE, "N"),
];
/// Every GSI with its partition and sort key.
pub const INDEXES: [(&str, &str, &str); 3] = [
    (INDEX_BY_OWNER, GSI1_PK, GSI1_SK),
    (INDEX_BY_THREAD, GSI2_PK, GSI2_SK),
    (INDEX_ALIVE, ALIVE_SHARD, ALIVE_DUE),
];
/// Every DynamoDB action the store calls (the template's IAM policy grants exactly these).
pub const ACTIONS: [&str; 4] = ["GetItem", "PutItem", "DeleteItem", "Query"];

type Item = HashMap<String, AttributeValue>;

/// Client settings; [`DynamoSettings::default`] is what Lambda uses.
#[derive(Clone, Debug)]
pub struct DynamoSettings {
    pub connect_timeout: Duration,
    pub attempt_timeout: Duration,
    pub operation_timeout: Duration,
    pub max_attempts: u32,
}

impl Default for DynamoSettings {
    fn default() -> Self {
        DynamoSettings {
            connect_timeout: DYNAMODB_CONNECT_TIMEOUT,
            attempt_timeout: DYNAMODB_ATTEMPT_TIMEOUT,
            operation_timeout: DYNAMODB_OPERATION_TIMEOUT,
            max_attempts: DYNAMODB_MAX_ATTEMPTS,
        }
    }
}

/// Counts HTTP requests (attempts) sent to DynamoDB, in total and per operation. Bounded: one
/// counter per operation name the store uses, however long the instance lives.
#[derive(Debug, Default, Clone)]
pub struct RequestCounter {
    count: Arc<AtomicU64>,
    operations: Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
}

impl RequestCounter {
    /// Requests sent so far.
    pub fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Requests sent so far per operation (`PutItem`, `Query`, ...).
    pub fn operations(&self) -> std::collections::BTreeMap<String, u64> {
        self.operations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "wsexec.RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>() {
            let mut ops = self.operations.lock().unwrap_or_else(|p| p.into_inner());
            match ops.get_mut(m.name()) {
                Some(n) => *n += 1,
                None => {
                    ops.insert(m.name().to_owned(), 1);
                }
            }
        }
        Ok(())
    }
}

/// A [`Store`] on one DynamoDB table.
pub struct DynamoStore {
    client: Client,
    table: String,
    requests: RequestCounter,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl DynamoStore {
    /// A store built from the standard environment as Lambda provides it: region, static
    /// credentials and an optional endpoint override. No profile files, SSO or IMDS lookups:
    /// Lambda never needs them and each costs cold-start time.
    pub fn from_env(table: &str, settings: DynamoSettings) -> Result<DynamoStore, StorageError> {
        let init_err = |m: &str| StorageError::new(StorageErrorKind::Permission, "init", m);
        let region = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .ok_or_else(|| {
                StorageError::new(StorageErrorKind::Invalid, "init", "AWS_REGION is not set")
            })?;
        let creds = Credentials::new(
            env("AWS_ACCESS_KEY_ID").ok_or_else(|| init_err("AWS_ACCESS_KEY_ID is not set"))?,
            env("AWS_SECRET_ACCESS_KEY")
                .ok_or_else(|| init_err("AWS_SECRET_ACCESS_KEY is not set"))?,
            env("AWS_SESSION_TOKEN"),
            None,
            "environment",
        );
        let endpoint = env("AWS_ENDPOINT_URL_DYNAMODB").or_else(|| env("AWS_ENDPOINT_URL"));
        Ok(DynamoStore::with_client_config(
            table,
            &region,
            creds,
            endpoint.as_deref(),
            settings,
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
        let requests = RequestCounter::default();
        let mut b = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .credentials_provider(credentials)
            .http_client(crate::tls::https_client(
                crate::tls::native_roots_requested(),
            ))
            .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(settings.connect_timeout)
                    .operation_attempt_timeout(settings.attempt_timeout)
                    .operation_timeout(settings.operation_timeout)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts))
            .interceptor(requests.clone());
        if let Some(e) = endpoint {
            b = b.endpoint_url(e);
        }
        DynamoStore {
            client: Client::from_conf(b.build()),
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

/// Classifies an SDK error: transport variants first, then the service error code against the
/// const tables, then the HTTP status.
pub fn classify<E>(op: &'static str, table: &str, err: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, message, reasons) = match &err {
        SdkError::TimeoutError(_) => (StorageErrorKind::Timeout, "timed out".to_owned(), vec![]),
        SdkError::DispatchFailure(d) if d.is_timeout() => (
            StorageErrorKind::Timeout,
            "attempt timed out".to_owned(),
            vec![],
        ),
        SdkError::DispatchFailure(d) if d.is_user() => (
            StorageErrorKind::Invalid,
            "request could not be built".to_owned(),
            vec![],
        ),
        SdkError::DispatchFailure(_) => (
            StorageErrorKind::Connection,
            "request could not be sent".to_owned(),
            vec![],
        ),
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            let kind = if status >= 500 || status == 200 {
                StorageErrorKind::Unavailable
            } else {
                StorageErrorKind::Invalid
            };
            (kind, format!("unreadable response (HTTP {status})"), vec![])
        }
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("");
            let msg = s.err().message().unwrap_or("");
            let status = s.raw().status().as_u16();
            let kind = kind_for_service_code(code, msg).unwrap_or(match status {
                500.. => StorageErrorKind::Unavailable,
                429 => StorageErrorKind::Throttled,
                401 | 403 => StorageErrorKind::Permission,
                _ => StorageErrorKind::Invalid,
            });
            let reasons = if kind == StorageErrorKind::Transaction {
                cancellation_reasons(s.raw().body().bytes().unwrap_or_default())
            } else {
                vec![]
            };
            let message = if kind == StorageErrorKind::Schema {
                format!("{code} on table {table}: {msg}")
            } else {
                format!("{code}: {msg}")
            };
            (kind, message, reasons)
        }
        SdkError::ConstructionFailure(_) => (
            StorageErrorKind::Invalid,
            "request could not be built".to_owned(),
            vec![],
        ),
        _ => (
            StorageErrorKind::Unavailable,
            "unrecognised failure".to_owned(),
            vec![],
        ),
    };
    StorageError::new(kind, op, message)
        .with_reasons(reasons)
        .with_source(err)
}

/// The per-item `CancellationReasons[].Code` of a `TransactionCanceledException` body.
fn cancellation_reasons(body: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(rename = "CancellationReasons", default)]
        reasons: Vec<Reason>,
    }
    #[derive(serde::Deserialize)]
    struct Reason {
        #[serde(rename = "Code")]
        code: Option<String>,
    }
    serde_json::from_slice::<Body>(body)
        .map(|b| {
            b.reasons
                .into_iter()
                .map(|r| r.code.unwrap_or_else(|| "None".into()))
                .collect()
        })
        .unwrap_or_default()
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn now_secs() -> u64 {
    crate::time::now_ms() / 1000
}

fn bad_item(op: &'static str, what: &str) -> StorageError {
    StorageError::new(
        StorageErrorKind::Invalid,
        op,
        format!("stored item is malformed: {what}"),
    )
}

fn get_s(op: &'static str, item: &Item, k: &str) -> Result<String, StorageError> {
    match item.get(k) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(bad_item(op, k)),
    }
}

fn opt_s(item: &Item, k: &str) -> Option<String> {
    match item.get(k) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn get_n(op: &'static str, item: &Item, k: &str) -> Result<u64, StorageError> {
    match item.get(k) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| bad_item(op, k)),
        _ => Err(bad_item(op, k)),
    }
}

fn connection_item(c: &ConnectionRecord) -> Item {
    let mut item = Item::new();
    item.insert(PK.into(), s(keys::connection_pk(&c.connection_id)));
    item.insert(SK.into(), s(keys::CONNECTION_SK));
    item.insert(GSI1_PK.into(), s(keys::user_pk(&c.user_id)));
    item.insert(GSI1_SK.into(), s(keys::owner_conn_sk(&c.connection_id)));
    item.insert("item_type".into(), s("connection"));
    item.insert("connection_id".into(), s(&c.connection_id));
    item.insert("user_id".into(), s(&c.user_id));
    if let Some(t) = &c.tenant_id {
        item.insert("tenant_id".into(), s(t));
    }
    if let Some(e) = &c.endpoint {
        item.insert("endpoint".into(), s(e));
    }
    item.insert("connected_at".into(), n(c.connected_at));
    item.insert(TTL_ATTRIBUTE.into(), n(c.expires_at));
    item
}

fn connection_from(op: &'static str, item: &Item) -> Result<ConnectionRecord, StorageError> {
    Ok(ConnectionRecord {
        connection_id: get_s(op, item, "connection_id")?,
        user_id: get_s(op, item, "user_id")?,
        tenant_id: opt_s(item, "tenant_id"),
        endpoint: opt_s(item, "endpoint"),
        connected_at: get_n(op, item, "connected_at")?,
        expires_at: get_n(op, item, TTL_ATTRIBUTE)?,
    })
}

fn run_item(r: &RunRecord) -> Item {
    let mut item = Item::new();
    let owner_sk = keys::owner_run_sk(r.created_at, &r.run_id);
    item.insert(PK.into(), s(keys::user_pk(&r.user_id)));
    item.insert(SK.into(), s(keys::run_sk(&r.run_id)));
    item.insert(GSI1_PK.into(), s(keys::user_pk(&r.user_id)));
    item.insert(GSI1_SK.into(), s(&owner_sk));
    item.insert(GSI2_PK.into(), s(keys::thread_pk(&r.user_id, &r.thread_id)));
    item.insert(GSI2_SK.into(), s(owner_sk));
    if let Some(due) = r.due_at() {
        item.insert(ALIVE_SHARD.into(), s(keys::alive_shard(r.shard())));
        item.insert(ALIVE_DUE.into(), n(due));
    }
    item.insert("item_type".into(), s("run"));
    for (k, v) in [
        ("run_id", &r.run_id),
        ("user_id", &r.user_id),
        ("thread_id", &r.thread_id),
        ("request_id", &r.request_id),
        ("connection_id", &r.connection_id),
        ("agent", &r.agent),
        ("request", &r.request),
    ] {
        item.insert(k.into(), s(v));
    }
    for (k, v) in [
        ("tenant_id", &r.tenant_id),
        ("endpoint", &r.endpoint),
        ("cancelled_by", &r.cancelled_by),
    ] {
        if let Some(v) = v {
            item.insert(k.into(), s(v));
        }
    }
    item.insert("state".into(), s(r.state.as_str()));
    for (k, v) in [
        ("version", r.version),
        ("created_at", r.created_at),
        ("updated_at", r.updated_at),
        ("stale_at", r.stale_at),
        ("deadline_at", r.deadline_at),
        (TTL_ATTRIBUTE, r.expires_at),
    ] {
        item.insert(k.into(), n(v));
    }
    if let Some(result) = &r.result {
        item.insert("result".into(), s(result.to_string()));
    }
    if let Some(e) = &r.error {
        item.insert("error_code".into(), s(&e.code));
        item.insert("error_message".into(), s(&e.message));
    }
    item
}

fn run_from(op: &'static str, item: &Item) -> Result<RunRecord, StorageError> {
    let state =
        ExecutionState::parse(&get_s(op, item, "state")?).ok_or_else(|| bad_item(op, "state"))?;
    let result = match opt_s(item, "result") {
        Some(j) => Some(serde_json::from_str(&j).map_err(|_| bad_item(op, "result"))?),
        None => None,
    };
    let error = match (opt_s(item, "error_code"), opt_s(item, "error_message")) {
        (Some(code), message) => Some(RunError {
            code,
            message: message.unwrap_or_default(),
        }),
        _ => None,
    };
    Ok(RunRecord {
        run_id: get_s(op, item, "run_id")?,
        user_id: get_s(op, item, "user_id")?,
        thread_id: get_s(op, item, "thread_id")?,
        request_id: get_s(op, item, "request_id")?,
        connection_id: get_s(op, item, "connection_id")?,
        tenant_id: opt_s(item, "tenant_id"),
        endpoint: opt_s(item, "endpoint"),
        agent: get_s(op, item, "agent")?,
        state,
        version: get_n(op, item, "version")?,
        created_at: get_n(op, item, "created_at")?,
        updated_at: get_n(op, item, "updated_at")?,
        stale_at: get_n(op, item, "stale_at")?,
        deadline_at: get_n(op, item, "deadline_at")?,
        request: get_s(op, item, "request")?,
        result,
        error,
        cancelled_by: opt_s(item, "cancelled_by"),
        expires_at: get_n(op, item, TTL_ATTRIBUTE)?,
    })
}

fn live(item: &Item) -> bool {
    matches!(item.get(TTL_ATTRIBUTE), Some(AttributeValue::N(v)) if v.parse::<u64>().map(|e| e > now_secs()).unwrap_or(false))
}

/// Parses a `gsi1sk`/`gsi2sk` of a run back into a cursor.
fn cursor_from_sort_key(sk: &str) -> Option<ListCursor> {
    let rest = sk.strip_prefix("RUN#")?;
    let (ts, id) = rest.split_once('#')?;
    Some(ListCursor {
        created_at: ts.parse().ok()?,
        run_id: id.to_owned(),
    })
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

    async fn user_connections(&self, user_id: &str) -> Result<Vec<ConnectionRecord>, StorageError> {
        const OP: &str = "user_connections";
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(INDEX_BY_OWNER)
            .key_condition_expression("gsi1pk = :pk AND begins_with(gsi1sk, :prefix)")
            .expression_attribute_values(":pk", s(keys::user_pk(user_id)))
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
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
            .expression_attribute_values(":now", n(now_secs()))
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
                        match self.get_run(&run.user_id, &run.run_id).await? {
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
        user_id: &str,
        run_id: &str,
    ) -> Result<Option<RunRecord>, StorageError> {
        const OP: &str = "get_run";
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(keys::user_pk(user_id)))
            .key(SK, s(keys::run_sk(run_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(OP, &self.table, e))?;
        out.item.filter(live).map(|i| run_from(OP, &i)).transpose()
    }

    async fn update_run(&self, run: &RunRecord, expected: Expected) -> Result<(), StorageError> {
        const OP: &str = "update_run";
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
        user_id: &str,
        thread_id: Option<&str>,
        limit: usize,
        cursor: Option<&ListCursor>,
    ) -> Result<RunPage, StorageError> {
        const OP: &str = "list_runs";
        let (index, pk_attr, sk_attr, pk) = match thread_id {
            None => (INDEX_BY_OWNER, GSI1_PK, GSI1_SK, keys::user_pk(user_id)),
            Some(t) => (
                INDEX_BY_THREAD,
                GSI2_PK,
                GSI2_SK,
                keys::thread_pk(user_id, t),
            ),
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
            .limit(limit.max(1) as i32);
        if let Some(c) = cursor {
            // The partition comes from the caller, never from the cursor.
            q = q
                .exclusive_start_key(PK, s(keys::user_pk(user_id)))
                .exclusive_start_key(SK, s(keys::run_sk(&c.run_id)))
                .exclusive_start_key(pk_attr, s(&pk))
                .exclusive_start_key(sk_attr, s(keys::owner_run_sk(c.created_at, &c.run_id)));
        }
        let out = q.send().await.map_err(|e| classify(OP, &self.table, e))?;
        let items = out
            .items
            .unwrap_or_default()
            .iter()
            .filter(|i| live(i))
            .map(|i| run_from(OP, i))
            .collect::<Result<Vec<_>, _>>()?;
        let cursor = out
            .last_evaluated_key
            .as_ref()
            .and_then(|k| match k.get(sk_attr) {
                Some(AttributeValue::S(v)) => cursor_from_sort_key(v),
                _ => None,
            });
        Ok(RunPage { items, cursor })
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

//! Items ↔ records. One attribute table per record drives both encoding and decoding, so every
//! attribute name is spelled once; keys and index attributes are derived from the record.
//! Structured attributes (`result`, `options`, `followers`) are JSON text.

use super::schema::{
    ALIVE_DUE, ALIVE_SHARD, GSI1_PK, GSI1_SK, GSI2_PK, GSI2_SK, PK, SK, TTL_ATTRIBUTE,
};
use crate::state::ExecutionState;
use crate::store::{
    ConnectionRecord, ListCursor, RunError, RunRecord, StepRecord, StorageError, keys,
};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// One attribute of a record: its name and how to reach its field.
enum Attr<T> {
    /// A required string.
    Str(&'static str, fn(&T) -> &String, fn(&mut T) -> &mut String),
    /// An optional string, absent from the item when `None`.
    OptStr(
        &'static str,
        fn(&T) -> &Option<String>,
        fn(&mut T) -> &mut Option<String>,
    ),
    /// A required number.
    Num(&'static str, fn(&T) -> u64, fn(&mut T) -> &mut u64),
    /// A number that items written before it existed lack: 0 when absent.
    Count(&'static str, fn(&T) -> u64, fn(&mut T) -> &mut u64),
}

impl<T> Attr<T> {
    fn encode(&self, rec: &T, item: &mut Item) {
        match self {
            Attr::Str(k, get, _) => {
                item.insert((*k).into(), s(get(rec)));
            }
            Attr::OptStr(k, get, _) => {
                if let Some(v) = get(rec) {
                    item.insert((*k).into(), s(v));
                }
            }
            Attr::Num(k, get, _) | Attr::Count(k, get, _) => {
                item.insert((*k).into(), n(get(rec)));
            }
        }
    }

    fn decode(&self, op: &'static str, item: &Item, rec: &mut T) -> Result<(), StorageError> {
        match self {
            Attr::Str(k, _, set) => *set(rec) = get_s(op, item, k)?,
            Attr::OptStr(k, _, set) => *set(rec) = opt_s(item, k),
            Attr::Num(k, _, set) => *set(rec) = get_n(op, item, k)?,
            Attr::Count(k, _, set) => {
                *set(rec) = if item.contains_key(*k) {
                    get_n(op, item, k)?
                } else {
                    0
                }
            }
        }
        Ok(())
    }
}

/// Every plain attribute of a connection item.
const CONNECTION_ATTRS: [Attr<ConnectionRecord>; 6] = [
    Attr::Str(
        "connection_id",
        |c| &c.connection_id,
        |c| &mut c.connection_id,
    ),
    Attr::Str("user_id", |c| &c.user_id, |c| &mut c.user_id),
    Attr::OptStr("tenant_id", |c| &c.tenant_id, |c| &mut c.tenant_id),
    Attr::OptStr("endpoint", |c| &c.endpoint, |c| &mut c.endpoint),
    Attr::Num("connected_at", |c| c.connected_at, |c| &mut c.connected_at),
    Attr::Num(TTL_ATTRIBUTE, |c| c.expires_at, |c| &mut c.expires_at),
];

/// Every plain attribute of a run item (`state`, `result`, `error_*` and `options` are encoded
/// by [`run_item`] itself).
const RUN_ATTRS: [Attr<RunRecord>; 29] = [
    Attr::Str("run_id", |r| &r.run_id, |r| &mut r.run_id),
    Attr::Str("user_id", |r| &r.user_id, |r| &mut r.user_id),
    Attr::Str("thread_id", |r| &r.thread_id, |r| &mut r.thread_id),
    Attr::Str("request_id", |r| &r.request_id, |r| &mut r.request_id),
    Attr::Str(
        "connection_id",
        |r| &r.connection_id,
        |r| &mut r.connection_id,
    ),
    Attr::Str("agent", |r| &r.agent, |r| &mut r.agent),
    Attr::Str("request", |r| &r.request, |r| &mut r.request),
    Attr::OptStr("tenant_id", |r| &r.tenant_id, |r| &mut r.tenant_id),
    Attr::OptStr("endpoint", |r| &r.endpoint, |r| &mut r.endpoint),
    Attr::OptStr("cancelled_by", |r| &r.cancelled_by, |r| &mut r.cancelled_by),
    Attr::OptStr("claimed_by", |r| &r.claimed_by, |r| &mut r.claimed_by),
    Attr::OptStr("created_by", |r| &r.created_by, |r| &mut r.created_by),
    Attr::OptStr("streamed", |r| &r.streamed, |r| &mut r.streamed),
    Attr::Count("seq", |r| r.seq, |r| &mut r.seq),
    Attr::Count("seq_reserved", |r| r.seq_reserved, |r| &mut r.seq_reserved),
    Attr::Count(
        "continuations",
        |r| r.continuations,
        |r| &mut r.continuations,
    ),
    Attr::Count("recoveries", |r| r.recoveries, |r| &mut r.recoveries),
    Attr::Count("continued_at", |r| r.continued_at, |r| &mut r.continued_at),
    Attr::Count(
        "clean_continuation",
        |r| r.clean_continuation,
        |r| &mut r.clean_continuation,
    ),
    Attr::Num("version", |r| r.version, |r| &mut r.version),
    Attr::Num("created_at", |r| r.created_at, |r| &mut r.created_at),
    Attr::Num("updated_at", |r| r.updated_at, |r| &mut r.updated_at),
    Attr::Num("stale_at", |r| r.stale_at, |r| &mut r.stale_at),
    Attr::Num("deadline_at", |r| r.deadline_at, |r| &mut r.deadline_at),
    Attr::Num(TTL_ATTRIBUTE, |r| r.expires_at, |r| &mut r.expires_at),
    Attr::Count(
        "input_tokens",
        |r| r.usage.input_tokens,
        |r| &mut r.usage.input_tokens,
    ),
    Attr::Count(
        "output_tokens",
        |r| r.usage.output_tokens,
        |r| &mut r.usage.output_tokens,
    ),
    Attr::Count(
        "tool_calls",
        |r| r.usage.tool_calls,
        |r| &mut r.usage.tool_calls,
    ),
    Attr::Count(
        "duration_ms",
        |r| r.usage.duration_ms,
        |r| &mut r.usage.duration_ms,
    ),
];

const ITEM_TYPE: &str = "item_type";
const STATE: &str = "state";
const RESULT: &str = "result";
const OPTIONS: &str = "options";
const FOLLOWERS: &str = "followers";
const ERROR_CODE: &str = "error_code";
const ERROR_MESSAGE: &str = "error_message";
/// A metered run's day and budgets (JSON text), absent on runs started without limits.
const METERING: &str = "metering";
/// The approvals a run waits for or was last given (JSON text), absent on runs never suspended.
const AWAITING: &str = "awaiting";
/// Present (`true`) only on a run that holds an active-run slot.
pub const HOLDS_SLOT: &str = "holds_slot";

/// A string attribute.
pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number attribute.
pub fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn bad_item(op: &'static str, what: &str) -> StorageError {
    StorageError::new(
        crate::store::StorageErrorKind::Invalid,
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

/// The item of a connection.
pub fn connection_item(c: &ConnectionRecord) -> Item {
    let mut item = Item::new();
    item.insert(PK.into(), s(keys::connection_pk(&c.connection_id)));
    item.insert(SK.into(), s(keys::CONNECTION_SK));
    item.insert(GSI1_PK.into(), s(keys::owner_pk(c.owner())));
    item.insert(GSI1_SK.into(), s(keys::owner_conn_sk(&c.connection_id)));
    item.insert(ITEM_TYPE.into(), s("connection"));
    for a in &CONNECTION_ATTRS {
        a.encode(c, &mut item);
    }
    item
}

/// The connection an item holds.
pub fn connection_from(op: &'static str, item: &Item) -> Result<ConnectionRecord, StorageError> {
    let mut c = ConnectionRecord::default();
    for a in &CONNECTION_ATTRS {
        a.decode(op, item, &mut c)?;
    }
    Ok(c)
}

/// The item of a run, with its keys and, while it is alive, its sparse `alive` index entry.
pub fn run_item(r: &RunRecord) -> Item {
    let mut item = Item::new();
    let owner_sk = keys::owner_run_sk(r.created_at, &r.run_id);
    item.insert(PK.into(), s(keys::owner_pk(r.owner())));
    item.insert(SK.into(), s(keys::run_sk(&r.run_id)));
    item.insert(GSI1_PK.into(), s(keys::owner_pk(r.owner())));
    item.insert(GSI1_SK.into(), s(&owner_sk));
    item.insert(GSI2_PK.into(), s(keys::thread_pk(r.owner(), &r.thread_id)));
    item.insert(GSI2_SK.into(), s(owner_sk));
    if let Some(due) = r.due_at() {
        item.insert(ALIVE_SHARD.into(), s(keys::alive_shard(r.shard())));
        item.insert(ALIVE_DUE.into(), n(due));
    }
    item.insert(ITEM_TYPE.into(), s("run"));
    for a in &RUN_ATTRS {
        a.encode(r, &mut item);
    }
    item.insert(STATE.into(), s(r.state.as_str()));
    if let Some(result) = &r.result {
        item.insert(RESULT.into(), s(result.to_string()));
    }
    if !r.options.is_empty() {
        item.insert(
            OPTIONS.into(),
            s(serde_json::Value::from(r.options.clone()).to_string()),
        );
    }
    if !r.followers.is_empty() {
        let json = serde_json::to_string(&r.followers).unwrap_or_default();
        item.insert(FOLLOWERS.into(), s(json));
    }
    if let Some(e) = &r.error {
        item.insert(ERROR_CODE.into(), s(&e.code));
        item.insert(ERROR_MESSAGE.into(), s(&e.message));
    }
    if r.holds_slot {
        item.insert(HOLDS_SLOT.into(), AttributeValue::Bool(true));
    }
    if let Some(m) = &r.metering {
        let json = serde_json::to_string(m).unwrap_or_default();
        item.insert(METERING.into(), s(json));
    }
    if let Some(a) = &r.awaiting {
        let json = serde_json::to_string(a).unwrap_or_default();
        item.insert(AWAITING.into(), s(json));
    }
    item
}

/// The run an item holds.
pub fn run_from(op: &'static str, item: &Item) -> Result<RunRecord, StorageError> {
    let mut r = RunRecord::default();
    for a in &RUN_ATTRS {
        a.decode(op, item, &mut r)?;
    }
    r.state = ExecutionState::parse(&get_s(op, item, STATE)?).ok_or_else(|| bad_item(op, STATE))?;
    r.result = match opt_s(item, RESULT) {
        Some(j) => Some(serde_json::from_str(&j).map_err(|_| bad_item(op, RESULT))?),
        None => None,
    };
    r.options = match opt_s(item, OPTIONS) {
        Some(j) => serde_json::from_str(&j).map_err(|_| bad_item(op, OPTIONS))?,
        None => Default::default(),
    };
    r.followers = match opt_s(item, FOLLOWERS) {
        Some(j) => serde_json::from_str(&j).map_err(|_| bad_item(op, FOLLOWERS))?,
        None => Vec::new(),
    };
    r.holds_slot = matches!(item.get(HOLDS_SLOT), Some(AttributeValue::Bool(true)));
    r.metering = match opt_s(item, METERING) {
        Some(j) => Some(serde_json::from_str(&j).map_err(|_| bad_item(op, METERING))?),
        None => None,
    };
    r.awaiting = match opt_s(item, AWAITING) {
        Some(j) => Some(serde_json::from_str(&j).map_err(|_| bad_item(op, AWAITING))?),
        None => None,
    };
    r.error = opt_s(item, ERROR_CODE).map(|code| RunError {
        code,
        message: opt_s(item, ERROR_MESSAGE).unwrap_or_default(),
    });
    Ok(r)
}

/// The attribute holding a step's body (JSON text).
const STEP: &str = "step";

/// The item of a journaled step: in its run's owner partition, under the run's sort key.
pub fn step_item(st: &StepRecord) -> Item {
    let mut item = Item::new();
    item.insert(PK.into(), s(keys::owner_pk(st.owner())));
    item.insert(SK.into(), s(keys::step_sk(&st.run_id, st.n)));
    item.insert(ITEM_TYPE.into(), s("step"));
    item.insert("run_id".into(), s(&st.run_id));
    item.insert("user_id".into(), s(&st.user_id));
    if let Some(t) = &st.tenant_id {
        item.insert("tenant_id".into(), s(t));
    }
    item.insert("n".into(), n(u64::from(st.n)));
    item.insert(STEP.into(), s(st.body.to_string()));
    item.insert(TTL_ATTRIBUTE.into(), n(st.expires_at));
    item
}

/// The step an item holds.
pub fn step_from(op: &'static str, item: &Item) -> Result<StepRecord, StorageError> {
    Ok(StepRecord {
        run_id: get_s(op, item, "run_id")?,
        user_id: get_s(op, item, "user_id")?,
        tenant_id: opt_s(item, "tenant_id"),
        n: u32::try_from(get_n(op, item, "n")?).map_err(|_| bad_item(op, "n"))?,
        body: serde_json::from_str(&get_s(op, item, STEP)?).map_err(|_| bad_item(op, STEP))?,
        expires_at: get_n(op, item, TTL_ATTRIBUTE)?,
    })
}

/// Whether an item is still alive by its TTL (DynamoDB deletes expired items only eventually).
pub fn live(item: &Item) -> bool {
    let now_secs = crate::time::now_ms() / 1000;
    matches!(item.get(TTL_ATTRIBUTE), Some(AttributeValue::N(v)) if v.parse::<u64>().map(|e| e > now_secs).unwrap_or(false))
}

/// Parses a `gsi1sk`/`gsi2sk` of a run back into a cursor.
pub fn cursor_from_sort_key(sk: &str) -> Option<ListCursor> {
    let rest = sk.strip_prefix("RUN#")?;
    let (ts, id) = rest.split_once('#')?;
    Some(ListCursor {
        created_at: ts.parse().ok()?,
        run_id: id.to_owned(),
    })
}

//! The table's schema as the code sees it: key attributes, indexes and the actions used.
//!
//! `template.yaml` is the single source of the table's definition; `tests/template_agreement.rs`
//! checks these constants against it.

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
/// (`TransactWriteItems` is authorised per item action: a run's `PutItem` and the active-run
/// counter's `UpdateItem`.)
pub const ACTIONS: [&str; 5] = ["GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"];

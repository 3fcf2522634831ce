//! The step journal on DynamoDB: one item per step in the run's owner partition
//! (`sk=RUN#{run_id}#STEP#{n:05}`), written with a conditional put so a duplicate is a no-op,
//! read back with one query (paged by DynamoDB's 1 MB pages).

use super::codec::{live, n, s, step_from, step_item};
use super::{PK, classify};
use crate::store::step::MAX_JOURNAL_STEPS;
use crate::store::{Owner, StepRecord, StorageError, StorageErrorKind, keys};
use aws_sdk_dynamodb::Client;

/// Puts `step` unless a live step of that number exists (then nothing changes, and the write
/// succeeds): an expired step left by an earlier run of the same id may be replaced.
pub async fn put(client: &Client, table: &str, step: &StepRecord) -> Result<(), StorageError> {
    const OP: &str = "put_step";
    let res = client
        .put_item()
        .table_name(table)
        .set_item(Some(step_item(step)))
        .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
        .expression_attribute_values(":now", n(crate::time::now_ms() / 1000))
        .send()
        .await;
    match res.map_err(|e| classify(OP, table, e)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == StorageErrorKind::Conflict => Ok(()),
        Err(e) => Err(e),
    }
}

/// The run's live steps in order, at most [`MAX_JOURNAL_STEPS`].
pub async fn read(
    client: &Client,
    table: &str,
    owner: Owner<'_>,
    run_id: &str,
) -> Result<Vec<StepRecord>, StorageError> {
    const OP: &str = "steps";
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .query()
            .table_name(table)
            .key_condition_expression(format!("{PK} = :pk AND begins_with(sk, :prefix)"))
            .expression_attribute_values(":pk", s(keys::owner_pk(owner)))
            .expression_attribute_values(":prefix", s(keys::steps_prefix(run_id)))
            // Steps are written once and read by a continuation after their writer is gone.
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| classify(OP, table, e))?;
        for item in page.items.unwrap_or_default().iter().filter(|i| live(i)) {
            out.push(step_from(OP, item)?);
        }
        start = page.last_evaluated_key;
        if start.is_none() || out.len() >= MAX_JOURNAL_STEPS {
            out.truncate(MAX_JOURNAL_STEPS);
            return Ok(out);
        }
    }
}

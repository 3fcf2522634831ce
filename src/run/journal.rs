//! The run's step journal as the driver keeps it: saving an agent's completed steps, reading
//! them back for a continuation, and the `seq` reservation that keeps a continuation's events
//! numbered after everything its predecessor may have pushed.

use crate::store::step::fit_step;
use crate::store::{RunRecord, StepRecord, StorageError, Store};
use crate::telemetry::log_storage;
use serde_json::Value;

/// How many `seq` numbers each write of a running run reserves beyond the last one given out:
/// a driver pushes past its reservation only after writing a new one, and a continuation
/// numbers its events above it, so no `seq` is given out twice even when a worker dies without
/// a word. A heartbeat (a third of the heartbeat deadline) rarely sees this many events (text is
/// pushed at most once per `STREAM_FLUSH_MS`), so the extra write is rare; the cost is that a
/// worker's death can leave up to this many numbers unused (a gap, never a repeat).
pub const SEQ_RESERVATION: u64 = 64;

/// The bodies of `run`'s journaled steps, oldest first: none for a run's first invocation
/// (no read), every saved step for a continuation.
pub async fn load(store: &dyn Store, run: &RunRecord) -> Result<Vec<Value>, StorageError> {
    if run.continuations == 0 {
        return Ok(Vec::new());
    }
    let steps = store.steps(run.owner(), &run.run_id).await?;
    Ok(steps.into_iter().map(|s| s.body).collect())
}

/// Journals step `n` of `run` (cut to the item budget); a failure is logged and the run goes
/// on: a continuation does that step again, within the rules of what is never redone.
pub async fn save(store: &dyn Store, run: &RunRecord, n: u32, body: Value) {
    let step = StepRecord {
        run_id: run.run_id.clone(),
        user_id: run.user_id.clone(),
        tenant_id: run.tenant_id.clone(),
        n,
        body: fit_step(body),
        expires_at: run.expires_at,
    };
    if let Err(e) = store.put_step(&step).await {
        log_storage(&e);
    }
}

/// The reservation a write of `run` made with its checkpoint `seq` stores: never lower than
/// one already stored, so a continuation's numbering only moves on.
pub fn reserve(run: &mut RunRecord, seq: u64) {
    run.seq_reserved = run.seq_reserved.max(seq + SEQ_RESERVATION);
}

//! The one conditional-write primitive: write a run's next version on its expected (state,
//! version), and when the answer is not a plain success, read back what is stored to tell a
//! write that landed (its answer lost) from a conflict with another writer.
//!
//! Heartbeats, terminal writes, cancels and the sweep all go through [`write_run`]; the
//! transitions themselves come only from the table in `state.rs` ([`next_version`]).

use crate::state::RunEvent;
use crate::store::{Expected, RunRecord, StorageError, Store};

/// What became of a conditional write.
#[derive(Debug)]
pub enum WriteOutcome {
    /// The write succeeded; the run as written.
    Written(RunRecord),
    /// The write failed on the wire but the stored run is exactly the one written: it landed
    /// and its answer was lost (or the SDK's retry of it found it).
    Landed(RunRecord),
    /// Another writer changed the run first; the run as it is stored now.
    Conflict(RunRecord),
    /// The write did not land and nothing else changed the run (or it could not be read back).
    Failed(StorageError),
}

/// `run` moved by `events` through the machine, as the next persisted version at `now`.
/// `None` when the table does not allow it (the run is terminal, or not where the events start).
pub fn next_version(run: &RunRecord, events: &[RunEvent], now: u64) -> Option<RunRecord> {
    let state = run.state.apply_all(events).ok()?;
    let mut next = run.clone();
    next.state = state;
    next.version += 1;
    next.updated_at = now;
    Some(next)
}

/// Writes `next` if the stored run is still `expected`; see [`WriteOutcome`].
pub async fn write_run(store: &dyn Store, next: RunRecord, expected: Expected) -> WriteOutcome {
    let e = match store.update_run(&next, expected).await {
        Ok(()) => return WriteOutcome::Written(next),
        Err(e) => e,
    };
    match store.get_run(&next.user_id, &next.run_id).await {
        Ok(Some(current)) if current == next => WriteOutcome::Landed(current),
        Ok(Some(current)) if Expected::of(&current) != expected => WriteOutcome::Conflict(current),
        Ok(_) => WriteOutcome::Failed(e),
        Err(read) => {
            crate::telemetry::log_storage(&read);
            WriteOutcome::Failed(e)
        }
    }
}

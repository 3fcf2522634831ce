//! The one conditional-write primitive: write a run's next version on its expected (state,
//! version), and when the answer is not a plain success, read back what is stored to tell a
//! write that landed (its answer lost) from a conflict with another writer.
//!
//! Heartbeats, terminal writes, cancels, claims, attachments and the sweep all go through
//! [`write_run`], and those that try again after a conflict through [`write_settled`]; the
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
    // Every ending writer (driver, cancel, sweep, failed hand-off) records how long it lasted.
    if state.is_terminal() {
        next.usage.duration_ms = now.saturating_sub(run.created_at);
    }
    Some(next)
}

/// Writes `next` if the stored run is still `expected`; see [`WriteOutcome`].
pub async fn write_run(store: &dyn Store, next: RunRecord, expected: Expected) -> WriteOutcome {
    let e = match store.update_run(&next, expected).await {
        Ok(()) => return WriteOutcome::Written(next),
        Err(e) => e,
    };
    match store.get_run(next.owner(), &next.run_id).await {
        Ok(Some(current)) if current == next => WriteOutcome::Landed(current),
        Ok(Some(current)) if Expected::of(&current) != expected => WriteOutcome::Conflict(current),
        Ok(_) => WriteOutcome::Failed(e),
        Err(read) => {
            crate::telemetry::log_storage(&read);
            WriteOutcome::Failed(e)
        }
    }
}

/// How a writer's read / next-version / write loop ([`write_settled`]) ended.
#[derive(Debug)]
pub enum Settled<T> {
    /// The write landed: the run as stored.
    Written(RunRecord),
    /// The writer declined the run as it stands, saying why.
    Declined(T),
    /// Another writer changed the run in a way this writer does not write on top of, or the
    /// attempts ran out: the run as stored now.
    Conflict(RunRecord),
    /// The write did not land.
    Failed(StorageError),
}

/// The one loop of every run writer: `next` makes the next version of the run as it stands
/// (or declines it), [`write_run`] writes it conditionally, and on a conflict the writer tries
/// again on top of what the other writer stored, while `again` accepts that record and at most
/// `attempts` writes in all.
pub async fn write_settled<T>(
    store: &dyn Store,
    mut run: RunRecord,
    attempts: usize,
    mut next: impl FnMut(&RunRecord) -> Result<RunRecord, T>,
    again: impl Fn(&RunRecord) -> bool,
) -> Settled<T> {
    let mut tries = 0;
    loop {
        tries += 1;
        let written = match next(&run) {
            Ok(n) => n,
            Err(why) => return Settled::Declined(why),
        };
        match write_run(store, written, Expected::of(&run)).await {
            WriteOutcome::Written(r) | WriteOutcome::Landed(r) => return Settled::Written(r),
            WriteOutcome::Conflict(current) if tries < attempts && again(&current) => {
                run = current;
            }
            WriteOutcome::Conflict(current) => return Settled::Conflict(current),
            WriteOutcome::Failed(e) => return Settled::Failed(e),
        }
    }
}

//! The runs this instance attached each connection to (`resume`), so a `$disconnect` landing
//! here can detach it; elsewhere, the attachment's expiry and the 410 of its next push cover it.

use crate::limits::{IDENTITY_CACHE_CAPACITY, MAX_FOLLOWED_RUNS};
use std::collections::HashMap;
use std::sync::Mutex;

/// Connection id → the runs `resume` attached it to on this instance, latest last. Bounded
/// like the identity cache: past [`IDENTITY_CACHE_CAPACITY`] connections it is cleared (a
/// forgotten attachment only waits for its expiry).
#[derive(Debug, Default)]
pub struct Attachments {
    by_connection: Mutex<HashMap<String, Vec<String>>>,
}

impl Attachments {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<String>>> {
        self.by_connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that `connection_id` follows `run_id` (at most [`MAX_FOLLOWED_RUNS`] per
    /// connection, the latest kept).
    pub fn add(&self, connection_id: &str, run_id: &str) {
        let mut all = self.lock();
        if all.len() >= IDENTITY_CACHE_CAPACITY {
            all.clear();
        }
        let runs = all.entry(connection_id.to_owned()).or_default();
        runs.retain(|r| r != run_id);
        if runs.len() >= MAX_FOLLOWED_RUNS {
            runs.remove(0);
        }
        runs.push(run_id.to_owned());
    }

    /// Drops and returns the runs `connection_id` was noted to follow.
    pub fn take(&self, connection_id: &str) -> Vec<String> {
        self.lock().remove(connection_id).unwrap_or_default()
    }
}

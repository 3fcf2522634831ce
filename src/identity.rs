//! Who is behind a connection, and the warm instance's bounded cache of it.

use crate::limits::{IDENTITY_CACHE_CAPACITY, MAX_FOLLOWED_RUNS};
use std::collections::HashMap;
use std::sync::Mutex;

/// The identity behind a connection (it never changes during the connection's life).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub tenant_id: Option<String>,
}

/// Connection id → identity, for the messages that follow a `$connect` on a warm instance.
/// Bounded: past [`IDENTITY_CACHE_CAPACITY`] entries it is cleared (a miss costs one read).
#[derive(Debug, Default)]
pub struct IdentityCache {
    by_connection: Mutex<HashMap<String, Identity>>,
    /// Connection id → the runs it was attached to by `resume` on this instance, so a
    /// `$disconnect` landing here can detach it (elsewhere, expiry and 410s cover it).
    followed: Mutex<HashMap<String, Vec<String>>>,
}

impl IdentityCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Identity>> {
        self.by_connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached identity of `connection_id`.
    pub fn get(&self, connection_id: &str) -> Option<Identity> {
        self.lock().get(connection_id).cloned()
    }

    /// Caches a connection's identity.
    pub fn remember(&self, connection_id: &str, identity: Identity) {
        let mut ids = self.lock();
        if ids.len() >= IDENTITY_CACHE_CAPACITY {
            ids.clear();
        }
        ids.insert(connection_id.to_owned(), identity);
    }

    /// Drops a connection's cached identity; returns it, if it was cached.
    pub fn forget(&self, connection_id: &str) -> Option<Identity> {
        self.lock().remove(connection_id)
    }

    fn lock_followed(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<String>>> {
        self.followed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that `connection_id` follows `run_id` (at most [`MAX_FOLLOWED_RUNS`] per
    /// connection, the latest kept).
    pub fn follows(&self, connection_id: &str, run_id: &str) {
        let mut all = self.lock_followed();
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
    pub fn take_followed(&self, connection_id: &str) -> Vec<String> {
        self.lock_followed()
            .remove(connection_id)
            .unwrap_or_default()
    }
}

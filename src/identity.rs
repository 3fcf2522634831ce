//! Who is behind a connection, and the warm instance's bounded cache of it.

use crate::limits::IDENTITY_CACHE_CAPACITY;
use crate::store::Owner;
use std::collections::HashMap;
use std::sync::Mutex;

/// The identity behind a connection (it never changes during the connection's life).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub tenant_id: Option<String>,
}

impl Identity {
    /// The owner whose runs and connections this identity may see.
    pub fn owner(&self) -> Owner<'_> {
        Owner::new(&self.user_id, self.tenant_id.as_deref())
    }
}

/// Connection id → identity, for the messages that follow a `$connect` on a warm instance.
/// Bounded: past [`IDENTITY_CACHE_CAPACITY`] entries it is cleared (a miss costs one read).
#[derive(Debug, Default)]
pub struct IdentityCache {
    by_connection: Mutex<HashMap<String, Identity>>,
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
}

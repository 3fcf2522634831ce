//! An in-memory notifier that records every push, for tests, benches and `wsexec-local invoke`.

use super::{Notifier, PushError, PushErrorKind, PushTarget};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Records pushes per connection; connections marked gone answer 410.
#[derive(Default)]
pub struct MemoryNotifier {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    log: Vec<(String, String)>,
    gone: HashSet<String>,
    fail: HashMap<String, PushErrorKind>,
}

impl MemoryNotifier {
    /// An empty notifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every message pushed to `connection_id`, in order.
    pub fn messages(&self, connection_id: &str) -> Vec<String> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .log
            .iter()
            .filter(|(c, _)| c == connection_id)
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Takes every (connection, message) pushed so far.
    pub fn drain(&self) -> Vec<(String, String)> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut inner.log)
    }

    /// Makes later pushes to `connection_id` fail with 410 Gone.
    pub fn mark_gone(&self, connection_id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.gone.insert(connection_id.to_owned());
    }

    /// Makes later pushes to `connection_id` fail with `kind`.
    pub fn fail_with(&self, connection_id: &str, kind: PushErrorKind) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.fail.insert(connection_id.to_owned(), kind);
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn push(&self, target: PushTarget<'_>, message: &str) -> Result<(), PushError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.gone.contains(target.connection_id) {
            return Err(PushError::new(PushErrorKind::Gone));
        }
        if let Some(kind) = inner.fail.get(target.connection_id) {
            return Err(PushError::new(*kind));
        }
        inner
            .log
            .push((target.connection_id.to_owned(), message.to_owned()));
        Ok(())
    }
}

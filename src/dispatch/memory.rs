//! An `Invoker` that records the events it would dispatch, for tests and `wsexec-local invoke`.

use super::{DispatchError, DispatchErrorKind, Invoker};
use async_trait::async_trait;
use std::sync::Mutex;

/// Records `(function, payload)` pairs; can be made to fail.
#[derive(Default)]
pub struct MemoryInvoker {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sent: Vec<(String, String)>,
    fail: Option<DispatchErrorKind>,
}

impl MemoryInvoker {
    /// An invoker that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes every `(function, payload)` dispatched so far.
    pub fn drain(&self) -> Vec<(String, String)> {
        std::mem::take(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()).sent)
    }

    /// Makes later dispatches fail with `kind` (`None`: succeed again).
    pub fn fail_with(&self, kind: Option<DispatchErrorKind>) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).fail = kind;
    }
}

#[async_trait]
impl Invoker for MemoryInvoker {
    async fn invoke_async(&self, function: &str, payload: &str) -> Result<(), DispatchError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(kind) = inner.fail {
            return Err(DispatchError::new(kind));
        }
        inner.sent.push((function.to_owned(), payload.to_owned()));
        Ok(())
    }
}

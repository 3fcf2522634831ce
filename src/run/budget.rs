//! The answer text runs hold, bounded twice: per run ([`MAX_RUN_TEXT_BYTES`]) and across every
//! run of the process ([`PROCESS_TEXT_BUDGET_BYTES`]) by one semaphore of bytes, so concurrent
//! invocations on Managed Instances cannot together exhaust the function's memory.

use crate::limits::{MAX_RUN_TEXT_BYTES, PROCESS_TEXT_BUDGET_BYTES};
use crate::protocol::{ClientError, ErrorCode};
use tokio::sync::{Semaphore, SemaphorePermit};

/// The process's budget of answer text, in bytes.
#[derive(Debug)]
pub struct TextBudget {
    bytes: Semaphore,
}

impl Default for TextBudget {
    fn default() -> Self {
        TextBudget::new(PROCESS_TEXT_BUDGET_BYTES)
    }
}

/// Which bound a run's text would have passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextLimit {
    /// The run's own [`MAX_RUN_TEXT_BYTES`].
    Run,
    /// The process's budget, held by other runs right now.
    Process,
}

impl TextLimit {
    /// The error the run fails with.
    pub fn client_error(self) -> ClientError {
        match self {
            TextLimit::Run => ClientError::new(
                ErrorCode::AnswerTooLarge,
                format!("the answer exceeded {MAX_RUN_TEXT_BYTES} bytes"),
            ),
            TextLimit::Process => ClientError::new(
                ErrorCode::TextBudgetExceeded,
                "too much answer text is in flight on this instance; try again",
            )
            .retryable(true),
        }
    }
}

impl TextBudget {
    /// A budget of `bytes` for all runs together.
    pub fn new(bytes: usize) -> TextBudget {
        TextBudget {
            bytes: Semaphore::new(bytes.min(Semaphore::MAX_PERMITS)),
        }
    }

    /// What one run holds of the budget: nothing yet, all of it back when dropped.
    pub fn hold(&self) -> TextHold<'_> {
        TextHold {
            budget: self,
            permit: None,
            bytes: 0,
        }
    }
}

/// The text one run holds; released when the run ends (dropped).
#[derive(Debug)]
pub struct TextHold<'a> {
    budget: &'a TextBudget,
    permit: Option<SemaphorePermit<'a>>,
    bytes: usize,
}

impl TextHold<'_> {
    /// Takes `n` more bytes for the run, never waiting: a run over either bound fails at once.
    pub fn take(&mut self, n: usize) -> Result<(), TextLimit> {
        if n == 0 {
            return Ok(());
        }
        if self.bytes.saturating_add(n) > MAX_RUN_TEXT_BYTES {
            return Err(TextLimit::Run);
        }
        let n32 = u32::try_from(n).map_err(|_| TextLimit::Run)?;
        let more = self
            .budget
            .bytes
            .try_acquire_many(n32)
            .map_err(|_| TextLimit::Process)?;
        match &mut self.permit {
            Some(held) => held.merge(more),
            None => self.permit = Some(more),
        }
        self.bytes += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run is refused past its own bound; runs together past the process's; a run that ends
    /// gives its text back.
    #[test]
    fn text_is_bounded_per_run_and_per_process() {
        let budget = TextBudget::new(10);
        let mut a = budget.hold();
        assert_eq!(a.take(6), Ok(()));
        let mut b = budget.hold();
        assert_eq!(b.take(5), Err(TextLimit::Process));
        drop(a);
        assert_eq!(b.take(5), Ok(()));
        let big = TextBudget::new(usize::MAX);
        let mut c = big.hold();
        assert_eq!(c.take(MAX_RUN_TEXT_BYTES), Ok(()));
        assert_eq!(c.take(1), Err(TextLimit::Run));
        assert_eq!(
            TextLimit::Process.client_error().code,
            "text_budget_exceeded"
        );
        assert!(TextLimit::Process.client_error().retryable);
    }
}

//! The runs this process is driving right now. A `cancel_agent` that lands in the same process
//! as the run's driver (the local gateway, Managed Instances' concurrent invocations, an async
//! worker's own environment) stops the driver at once instead of at its next heartbeat, and
//! answers only once the driver has stopped the agent: no `agent_delta` follows the
//! canceller's `agent_cancelled`. A cancel from another process is still learned at the
//! driver's next heartbeat (README, "Cancellation").
//!
//! It is also what the process's in-flight runs share: the budget of answer text they hold
//! ([`TextBudget`]), and the shutdown signal that ends them all when the instance stops.

use super::budget::TextBudget;
use crate::store::RunUsage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How long a cancel waits for the local driver to stop before answering anyway (the driver
/// stops at its next `select!`, microseconds away; this only bounds a stuck one).
pub const STOP_WAIT: Duration = Duration::from_secs(2);

/// The registry: run id → its driver's cancel signal; the text budget; the shutdown signal.
#[derive(Debug, Default)]
pub struct LiveRuns {
    runs: Mutex<HashMap<String, Arc<Live>>>,
    text: TextBudget,
    /// Set once the instance is shutting down: every driver ends its run.
    shutdown: watch::Sender<bool>,
    /// Notified whenever a driver unregisters.
    unregistered: Notify,
}

#[derive(Debug)]
struct Live {
    cancel: Notify,
    stopped: watch::Sender<bool>,
    /// What the run consumed so far, for a cancel in this process to record.
    usage: Mutex<RunUsage>,
}

impl LiveRuns {
    /// A registry whose runs share `text` (tests use a small budget).
    pub fn with_text_budget(text: TextBudget) -> LiveRuns {
        LiveRuns {
            text,
            ..Default::default()
        }
    }

    /// The answer text every run of this process holds, bounded.
    pub fn text(&self) -> &TextBudget {
        &self.text
    }

    /// Tells every driver of this process (and any registered later) that the instance is
    /// shutting down, and waits until all have ended their runs, for at most `budget`.
    /// Returns how many were still running when it gave up.
    pub async fn shut_down(&self, budget: Duration) -> usize {
        self.shutdown.send_replace(true);
        let all_ended = async {
            loop {
                let unregistered = self.unregistered.notified();
                tokio::pin!(unregistered);
                unregistered.as_mut().enable();
                if self.lock().is_empty() {
                    return;
                }
                unregistered.await;
            }
        };
        let _ = tokio::time::timeout(budget, all_ended).await;
        self.lock().len()
    }

    /// Registers a run this process drives; dropping the guard unregisters it.
    pub fn register(&self, run_id: &str) -> LiveGuard<'_> {
        let live = Arc::new(Live {
            cancel: Notify::new(),
            stopped: watch::Sender::new(false),
            usage: Mutex::new(RunUsage::default()),
        });
        self.lock().insert(run_id.to_owned(), live.clone());
        LiveGuard {
            runs: self,
            run_id: run_id.to_owned(),
            live,
            shutdown: self.shutdown.subscribe(),
        }
    }

    /// Tells the run's driver, if it is in this process, that the run was cancelled, and waits
    /// (at most [`STOP_WAIT`]) until it has stopped the agent. Returns whether it was here.
    pub async fn cancel(&self, run_id: &str) -> bool {
        let Some(live) = self.lock().get(run_id).cloned() else {
            return false;
        };
        let mut stopped = live.stopped.subscribe();
        live.cancel.notify_one();
        let _ = tokio::time::timeout(STOP_WAIT, stopped.wait_for(|s| *s)).await;
        true
    }

    /// Records what the run driven here consumed so far.
    pub fn record_usage(&self, run_id: &str, usage: RunUsage) {
        if let Some(live) = self.lock().get(run_id) {
            *live.usage.lock().unwrap_or_else(PoisonError::into_inner) = usage;
        }
    }

    /// What the run consumed so far, if this process drives it (a cancel here records it on
    /// the run; one elsewhere finds the driver's last checkpoint).
    pub fn usage(&self, run_id: &str) -> Option<RunUsage> {
        let live = self.lock().get(run_id).cloned()?;
        let usage = *live.usage.lock().unwrap_or_else(PoisonError::into_inner);
        Some(usage)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Live>>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A driver's registration.
pub struct LiveGuard<'a> {
    runs: &'a LiveRuns,
    run_id: String,
    live: Arc<Live>,
    shutdown: watch::Receiver<bool>,
}

impl LiveGuard<'_> {
    /// Resolves when a cancel in this process asked the driver to stop.
    pub async fn cancelled(&self) {
        self.live.cancel.notified().await
    }

    /// Resolves when the instance is shutting down (at once if it already is).
    pub async fn shutting_down(&self) {
        let mut shutdown = self.shutdown.clone();
        if shutdown.wait_for(|s| *s).await.is_err() {
            // The registry outlives its guards: the sender cannot be gone; never resolve.
            std::future::pending::<()>().await;
        }
    }

    /// The driver has stopped the agent: a waiting cancel may answer now.
    pub fn stopped(&self) {
        self.live.stopped.send_replace(true);
    }
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.stopped();
        let mut runs = self.runs.lock();
        if runs
            .get(&self.run_id)
            .is_some_and(|l| Arc::ptr_eq(l, &self.live))
        {
            runs.remove(&self.run_id);
        }
        drop(runs);
        self.runs.unregistered.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cancel reaches the registered driver and waits for its stop; an unknown run is not
    /// here; a dropped guard unregisters.
    #[tokio::test]
    async fn cancel_signals_the_driver_and_waits_for_its_stop() {
        let runs = LiveRuns::default();
        assert!(!runs.cancel("r1").await);
        let guard = runs.register("r1");
        let (cancelled, _) = tokio::join!(runs.cancel("r1"), async {
            guard.cancelled().await;
            guard.stopped();
        });
        assert!(cancelled);
        drop(guard);
        assert!(!runs.cancel("r1").await);
    }

    /// A shutdown reaches every registered driver (and one registered later) and waits for
    /// them to unregister, within its budget.
    #[tokio::test]
    async fn shutdown_ends_every_driver_and_waits_for_them() {
        let runs = LiveRuns::default();
        let a = runs.register("a");
        let (left, _) = tokio::join!(runs.shut_down(Duration::from_secs(5)), async {
            a.shutting_down().await;
            drop(a);
        });
        assert_eq!(left, 0);
        let late = runs.register("late");
        tokio::time::timeout(Duration::from_secs(1), late.shutting_down())
            .await
            .expect("a run registered after the shutdown ends at once");
        assert_eq!(runs.shut_down(Duration::from_millis(50)).await, 1);
    }
}

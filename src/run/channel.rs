//! Pushing a run's events: to its connection and its followers (each silenced once gone, none
//! sent a `seq` twice), and bounded notices to an owner's connections about runs that ended
//! elsewhere.

use super::RunDeps;
use super::follow::Replay;
use crate::limits::{CATCH_UP_BUDGET, MAX_MESSAGE_BYTES, MAX_NOTICE_TARGETS, NOTICE_BUDGET};
use crate::notify::{PushErrorKind, PushTarget};
use crate::protocol::fit::fit_to_limit;
use crate::store::{ConnectionRecord, Follower};
use crate::telemetry::{log_storage, metrics};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

/// One connection a run pushes to.
struct Target {
    endpoint: String,
    connection_id: String,
    /// The last `seq` this connection has (pushed to it, or already had when it attached).
    has: u64,
    /// It answered 410: silenced, and dropped from the run's followers at the next write.
    gone: bool,
}

/// A follower being sent the kept frames it missed, alongside the run; its target when done.
type CatchUp<'d> = Pin<Box<dyn Future<Output = Target> + Send + 'd>>;

/// The push side of one run: its starting connection, then its followers, each silenced once
/// gone and never sent a `seq` it already has, nor one out of order. A new follower first
/// catches up from the frames kept for replay, concurrently with the run (the driver polls
/// [`Channel::caught_up`]), then joins the live pushes.
pub struct Channel<'d> {
    deps: RunDeps<'d>,
    /// The starting connection first.
    targets: Vec<Target>,
    /// Every frame pushed so far (within its budget), shared with the catch-ups.
    replay: Arc<Mutex<Replay>>,
    catching_up: FuturesUnordered<CatchUp<'d>>,
    /// The connections catching up right now.
    joining: Vec<String>,
}

impl<'d> Channel<'d> {
    /// A channel to `connection_id` behind `endpoint` (the connection that started the run).
    pub fn new(deps: RunDeps<'d>, endpoint: &str, connection_id: &str) -> Self {
        Channel {
            deps,
            targets: vec![Target {
                endpoint: endpoint.to_owned(),
                connection_id: connection_id.to_owned(),
                has: 0,
                gone: false,
            }],
            replay: Arc::default(),
            catching_up: FuturesUnordered::new(),
            joining: Vec::new(),
        }
    }

    /// The connections that answered 410.
    pub fn gone(&self) -> impl Iterator<Item = &str> {
        self.targets
            .iter()
            .filter(|t| t.gone)
            .map(|t| t.connection_id.as_str())
    }

    /// Marks `connection_id` as already having every `seq` up to `has` (a canceller has its
    /// reply).
    pub fn mark_has(&mut self, connection_id: &str, has: u64) {
        for t in self
            .targets
            .iter_mut()
            .filter(|t| t.connection_id == connection_id)
        {
            t.has = t.has.max(has);
        }
    }

    /// Takes in a run's stored `followers`: each live one not pushed to yet starts catching up
    /// on every kept frame after its `after_seq` (taken as `last_seq` when beyond it: a client
    /// cannot have frames the run has not made), then follows live; one no longer listed
    /// (`$disconnect` removed it) is no longer pushed to. The starting connection always stays.
    pub fn adopt(
        &mut self,
        followers: &[Follower],
        fallback_endpoint: &str,
        last_seq: u64,
        now_secs: u64,
    ) {
        let mut first = true;
        self.targets.retain(|t| {
            let keep = first || followers.iter().any(|f| f.connection_id == t.connection_id);
            first = false;
            keep
        });
        for f in followers.iter().filter(|f| f.expires_at > now_secs) {
            let id = &f.connection_id;
            if self.targets.iter().any(|t| &t.connection_id == id) || self.joining.contains(id) {
                continue;
            }
            let t = Target {
                endpoint: f
                    .endpoint
                    .as_deref()
                    .unwrap_or(fallback_endpoint)
                    .to_owned(),
                connection_id: id.clone(),
                has: f.after_seq.min(last_seq),
                gone: false,
            };
            self.joining.push(id.clone());
            self.catching_up
                .push(Box::pin(catch_up(self.deps, t, self.replay.clone())));
        }
    }

    /// Resolves when a follower has caught up, and joins it to the live pushes; pending while
    /// none is catching up.
    pub async fn caught_up(&mut self) {
        match self.catching_up.next().await {
            Some(t) => self.join(t),
            None => std::future::pending().await,
        }
    }

    /// Lets followers still catching up finish (the run has ended: the replay holds its
    /// terminal event), each within its [`CATCH_UP_BUDGET`], and all by `until`.
    pub async fn settle(&mut self, until: tokio::time::Instant) {
        let all = async {
            while let Some(t) = self.catching_up.next().await {
                self.join(t);
            }
        };
        if tokio::time::timeout_at(until, all).await.is_err() {
            tracing::warn!("followers still catching up when the run ended were cut off");
        }
    }

    fn join(&mut self, t: Target) {
        self.joining.retain(|id| *id != t.connection_id);
        self.targets.push(t);
    }

    /// Keeps the frame numbered `seq` for replay and pushes it to every live connection that
    /// lacks it, all at once; returns whether any got it. A gone client is silenced; other
    /// failures are logged and counted, and the run goes on.
    pub async fn send(&mut self, seq: u64, message: &str) -> bool {
        lock(&self.replay).keep(seq, message);
        let deps = self.deps;
        let pushes = self
            .targets
            .iter_mut()
            .map(|t| deliver(&deps, t, seq, message));
        futures_util::future::join_all(pushes)
            .await
            .into_iter()
            .any(|delivered| delivered)
    }
}

fn lock(replay: &Mutex<Replay>) -> std::sync::MutexGuard<'_, Replay> {
    replay.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sends `t` every kept frame after the last it has, in order, until none is left, within
/// [`CATCH_UP_BUDGET`]; a follower that takes longer (or is gone) follows live from then on.
async fn catch_up<'d>(deps: RunDeps<'d>, mut t: Target, replay: Arc<Mutex<Replay>>) -> Target {
    let all = async {
        while !t.gone {
            let Some((seq, frame)) = lock(&replay).first_after(t.has) else {
                return;
            };
            deliver(&deps, &mut t, seq, &frame).await;
        }
    };
    if tokio::time::timeout(CATCH_UP_BUDGET, all).await.is_err() {
        tracing::warn!(
            connection_id = t.connection_id,
            "catch-up cut off at its time budget"
        );
    }
    t
}

/// Pushes frame `seq` to `t` unless it is gone or has it; whether it was delivered.
async fn deliver(deps: &RunDeps<'_>, t: &mut Target, seq: u64, message: &str) -> bool {
    if t.gone || seq <= t.has {
        return false;
    }
    // Sent once, whatever the answer: a retry could deliver it twice.
    t.has = seq;
    match push_one(deps, &t.endpoint, &t.connection_id, message).await {
        Ok(()) => true,
        Err(kind) => {
            t.gone = kind == PushErrorKind::Gone;
            false
        }
    }
}

/// Whether a notice round gives up on a connection: gone (410), or its endpoint refuses
/// connections (a record left by a gateway that is no more). Only a 410 deletes the record: a
/// refused connect may be a passing fault, and deleting a live connection's record would log
/// its user out.
fn unreachable(kind: PushErrorKind) -> bool {
    matches!(kind, PushErrorKind::Gone | PushErrorKind::Connection)
}

/// Pushes one message to one connection. A gone connection (410) loses its record and cached
/// identity; every failure is logged and counted, and its kind returned.
pub async fn push_one(
    deps: &RunDeps<'_>,
    endpoint: &str,
    connection_id: &str,
    message: &str,
) -> Result<(), PushErrorKind> {
    let target = PushTarget {
        endpoint,
        connection_id,
    };
    // API Gateway refuses larger messages: never send one whole.
    let message = fit_to_limit(message, MAX_MESSAGE_BYTES);
    let Err(e) = deps.notifier.push(target, &message).await else {
        return Ok(());
    };
    metrics::push_error(e.kind());
    if e.kind() == PushErrorKind::Gone {
        tracing::info!(connection_id, "connection gone; removing its record");
        deps.identities.forget(connection_id);
        if let Err(se) = deps.store.delete_connection(connection_id).await {
            log_storage(&se);
        }
        return Err(PushErrorKind::Gone);
    }
    tracing::warn!(
        connection_id,
        code = e.code(),
        retryable = e.is_retryable(),
        error = ?e,
        "push failed"
    );
    Err(e.kind())
}

/// Pushes each `(connection, message)` notice at once, at most [`MAX_NOTICE_TARGETS`]
/// connections and [`NOTICE_BUDGET`] in all: notices are best effort and must never hold up the
/// reply or sweep that sends them. Returns how many were delivered.
pub async fn notify(
    deps: &RunDeps<'_>,
    conns: &[ConnectionRecord],
    fallback_endpoint: &str,
    messages: &[String],
) -> usize {
    let pushes = conns.iter().take(MAX_NOTICE_TARGETS).map(|c| async move {
        let endpoint = c.endpoint.as_deref().unwrap_or(fallback_endpoint);
        let mut delivered = 0;
        for m in messages {
            match push_one(deps, endpoint, &c.connection_id, m).await {
                Ok(()) => delivered += 1,
                Err(kind) if unreachable(kind) => break,
                Err(_) => {}
            }
        }
        delivered
    });
    match tokio::time::timeout(NOTICE_BUDGET, futures_util::future::join_all(pushes)).await {
        Ok(counts) => counts.into_iter().sum(),
        Err(_) => {
            tracing::warn!("owner notices cut off at their time budget");
            0
        }
    }
}

//! Pushing a run's events: to its connection and its followers (each silenced once gone, none
//! sent a `seq` twice), and bounded notices to an owner's connections about runs that ended
//! elsewhere.

use super::RunDeps;
use super::follow::Replay;
use crate::limits::{MAX_MESSAGE_BYTES, MAX_NOTICE_TARGETS, NOTICE_BUDGET};
use crate::notify::{PushErrorKind, PushTarget};
use crate::protocol::outbound::fit_to_limit;
use crate::store::{ConnectionRecord, Follower};
use crate::telemetry::{log_storage, metrics};

/// One connection a run pushes to.
struct Target {
    endpoint: String,
    connection_id: String,
    /// The last `seq` this connection has (pushed to it, or already had when it attached).
    has: u64,
    /// It answered 410: silenced, and dropped from the run's followers at the next write.
    gone: bool,
}

/// The push side of one run: its starting connection, then its followers, each silenced once
/// gone and never sent a `seq` it already has.
pub struct Channel<'d> {
    deps: RunDeps<'d>,
    /// The starting connection first.
    targets: Vec<Target>,
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
        }
    }

    /// Whether `connection_id` answered 410.
    pub fn is_gone(&self, connection_id: &str) -> bool {
        self.targets
            .iter()
            .any(|t| t.gone && t.connection_id == connection_id)
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

    /// Takes in a run's stored `followers`: each live one not pushed to yet is first sent every
    /// kept frame after its `after_seq`, then follows live; one no longer listed (`$disconnect`
    /// removed it) is no longer pushed to. The starting connection always stays.
    pub async fn adopt(
        &mut self,
        followers: &[Follower],
        fallback_endpoint: &str,
        replay: &Replay,
        now_secs: u64,
    ) {
        let mut first = true;
        self.targets.retain(|t| {
            let keep = first || followers.iter().any(|f| f.connection_id == t.connection_id);
            first = false;
            keep
        });
        let deps = self.deps;
        for f in followers.iter().filter(|f| f.expires_at > now_secs) {
            if self
                .targets
                .iter()
                .any(|t| t.connection_id == f.connection_id)
            {
                continue;
            }
            let mut t = Target {
                endpoint: f
                    .endpoint
                    .as_deref()
                    .unwrap_or(fallback_endpoint)
                    .to_owned(),
                connection_id: f.connection_id.clone(),
                has: f.after_seq,
                gone: false,
            };
            for (seq, frame) in replay.after(f.after_seq) {
                deliver(&deps, &mut t, *seq, frame).await;
            }
            self.targets.push(t);
        }
    }

    /// Pushes the frame numbered `seq` to every connection that lacks it, all at once; returns
    /// whether any got it. A gone client is silenced; other failures are logged and counted,
    /// and the run goes on.
    pub async fn send(&mut self, seq: u64, message: &str) -> bool {
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

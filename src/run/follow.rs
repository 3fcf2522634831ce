//! Followers of a run: the attach rule `resume` writes by, and the driver's in-memory replay of
//! pushed frames that brings a newly attached connection up to date.

use super::write::{WriteOutcome, next_version, write_run};
use crate::limits::{CONNECTION_TTL, MAX_REPLAY_BYTES, MAX_RUN_FOLLOWERS};
use crate::state::RunEvent;
use crate::store::{Expected, Follower, Owner, RunRecord, StorageError, Store};
use std::collections::VecDeque;
use std::sync::Arc;

/// Why a connection could not be attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// The run already has [`MAX_RUN_FOLLOWERS`] live followers.
    Full,
}

/// `run`'s followers with `connection_id` attached (or re-attached, its position renewed) as
/// having every `seq` up to `after_seq`, expired attachments pruned, at `now_secs`.
pub fn attach(
    run: &RunRecord,
    connection_id: &str,
    endpoint: &str,
    after_seq: u64,
    now_secs: u64,
) -> Result<Vec<Follower>, AttachError> {
    let mut followers: Vec<Follower> = run
        .followers
        .iter()
        .filter(|f| f.expires_at > now_secs && f.connection_id != connection_id)
        .cloned()
        .collect();
    if followers.len() >= MAX_RUN_FOLLOWERS {
        return Err(AttachError::Full);
    }
    followers.push(Follower {
        connection_id: connection_id.to_owned(),
        endpoint: Some(endpoint.to_owned()),
        after_seq,
        expires_at: now_secs + CONNECTION_TTL.as_secs(),
    });
    Ok(followers)
}

/// `run`'s followers without `connection_id`.
pub fn detach(run: &RunRecord, connection_id: &str) -> Vec<Follower> {
    run.followers
        .iter()
        .filter(|f| f.connection_id != connection_id)
        .cloned()
        .collect()
}

/// Detaches `connection_id` from the owner's run `run_id`, best effort: one read, and one
/// conditional write when it is still attached to the alive run; a conflict (the driver wrote
/// meanwhile) is left to the attachment's expiry and the 410 its next push gets.
pub async fn leave(
    store: &dyn Store,
    owner: Owner<'_>,
    run_id: &str,
    connection_id: &str,
) -> Result<(), StorageError> {
    let Some(run) = store.get_run(owner, run_id).await? else {
        return Ok(());
    };
    if !run
        .followers
        .iter()
        .any(|f| f.connection_id == connection_id)
    {
        return Ok(());
    }
    let Some(mut next) = next_version(&run, &[RunEvent::Detach], crate::time::now_ms()) else {
        return Ok(());
    };
    next.followers = detach(&run, connection_id);
    match write_run(store, next, Expected::of(&run)).await {
        WriteOutcome::Failed(e) => Err(e),
        _ => Ok(()),
    }
}

/// The frames a driver has pushed, oldest first, within [`MAX_REPLAY_BYTES`].
#[derive(Debug, Default)]
pub struct Replay {
    frames: VecDeque<(u64, Arc<str>)>,
    bytes: usize,
}

impl Replay {
    /// Keeps frame `seq`, dropping the oldest beyond the budget.
    pub fn keep(&mut self, seq: u64, frame: Arc<str>) {
        self.bytes += frame.len();
        self.frames.push_back((seq, frame));
        while self.bytes > MAX_REPLAY_BYTES {
            match self.frames.pop_front() {
                Some((_, f)) => self.bytes -= f.len(),
                None => break,
            }
        }
    }

    /// The oldest kept frame after `seq`.
    pub fn first_after(&self, seq: u64) -> Option<(u64, Arc<str>)> {
        self.frames.iter().find(|(s, _)| *s > seq).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follower(id: &str, expires_at: u64) -> Follower {
        Follower {
            connection_id: id.into(),
            endpoint: None,
            after_seq: 0,
            expires_at,
        }
    }

    /// Attaching prunes expired followers, replaces the same connection, and stops at the limit.
    #[test]
    fn attach_prunes_replaces_and_is_bounded() {
        let mut run = RunRecord {
            followers: vec![follower("old", 5), follower("a", 100)],
            ..Default::default()
        };
        let f = attach(&run, "a", "https://e", 4, 10).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].connection_id.as_str(), f[0].after_seq), ("a", 4));
        run.followers = (0..MAX_RUN_FOLLOWERS)
            .map(|i| follower(&format!("c{i}"), 100))
            .collect();
        assert_eq!(attach(&run, "new", "e", 0, 10), Err(AttachError::Full));
        assert_eq!(detach(&run, "c0").len(), MAX_RUN_FOLLOWERS - 1);
    }

    /// The replay keeps frames in order within its budget, dropping the oldest.
    #[test]
    fn replay_is_ordered_and_bounded() {
        let mut r = Replay::default();
        let big: Arc<str> = "x".repeat(MAX_REPLAY_BYTES / 2).into();
        for seq in 1..=4 {
            r.keep(seq, big.clone());
        }
        assert_eq!(r.first_after(0).map(|(s, _)| s), Some(3));
        assert_eq!(r.first_after(3).map(|(s, _)| s), Some(4));
        assert_eq!(r.first_after(4), None);
    }
}

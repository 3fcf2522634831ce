//! Followers of a run: the attach rule `resume` writes by, and the driver's in-memory replay of
//! pushed frames that brings a newly attached connection up to date.

use super::write::{WriteOutcome, next_version, write_run};
use crate::limits::{CONNECTION_TTL, MAX_REPLAY_BYTES, MAX_RUN_FOLLOWERS};
use crate::state::RunEvent;
use crate::store::{Expected, Follower, Owner, RunRecord, StorageError, Store};
use std::collections::VecDeque;

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

/// The frames a driver has pushed, oldest first, within [`MAX_REPLAY_BYTES`] (counted as
/// pushed).
///
/// A run's frames repeat their head: the type and the run's ids, before `,"seq":` (~170 bytes
/// of a ~250-byte `agent_delta`). Each distinct head is kept once and each frame keeps only
/// the rest, so a replayed frame is the pushed one byte for byte, and a streaming run's replay
/// costs a third of the frames it pushed.
#[derive(Debug, Default)]
pub struct Replay {
    /// The distinct heads seen (one per event type of the run: a handful).
    heads: Vec<Box<str>>,
    frames: VecDeque<Kept>,
    bytes: usize,
}

/// One kept frame: its `seq`, the index of its head (none when it has no `seq` key), the rest.
#[derive(Debug)]
struct Kept {
    seq: u64,
    head: Option<usize>,
    tail: Box<str>,
}

/// Where the envelope's `seq` key begins: every key before it names the event and its run.
const SEQ_KEY: &str = ",\"seq\":";

impl Replay {
    /// Keeps frame `seq`, dropping the oldest beyond the budget.
    pub fn keep(&mut self, seq: u64, frame: &str) {
        self.bytes += frame.len();
        let (head, tail) = match frame.find(SEQ_KEY) {
            Some(at) => {
                let (head, tail) = frame.split_at(at);
                let known = self.heads.iter().position(|h| **h == *head);
                let index = known.unwrap_or_else(|| {
                    self.heads.push(head.into());
                    self.heads.len() - 1
                });
                (Some(index), tail)
            }
            None => (None, frame),
        };
        self.frames.push_back(Kept {
            seq,
            head,
            tail: tail.into(),
        });
        while self.bytes > MAX_REPLAY_BYTES {
            match self.frames.pop_front() {
                Some(k) => self.bytes -= self.len_of(&k),
                None => break,
            }
        }
    }

    /// The oldest kept frame after `seq`, as it was pushed.
    pub fn first_after(&self, seq: u64) -> Option<(u64, String)> {
        let k = self.frames.iter().find(|k| k.seq > seq)?;
        let head = k.head.and_then(|i| self.heads.get(i)).map_or("", |h| h);
        Some((k.seq, [head, &k.tail].concat()))
    }

    fn len_of(&self, k: &Kept) -> usize {
        k.head
            .and_then(|i| self.heads.get(i))
            .map_or(0, |h| h.len())
            + k.tail.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::outbound::{Envelope, Event, RunRef};

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
        let big = "x".repeat(MAX_REPLAY_BYTES / 2);
        for seq in 1..=4 {
            r.keep(seq, &big);
        }
        assert_eq!(r.first_after(0).map(|(s, _)| s), Some(3));
        assert_eq!(r.first_after(3).map(|(s, _)| s), Some(4));
        assert_eq!(r.first_after(4), None);
    }

    /// Frames come back from the replay byte for byte as pushed, their shared heads kept once;
    /// the budget counts frames as pushed, heads included.
    #[test]
    fn replayed_frames_are_the_pushed_ones_with_heads_kept_once() {
        let run = RunRecord {
            run_id: "run-1".into(),
            thread_id: "thread-1".into(),
            request_id: "request-1".into(),
            ..Default::default()
        };
        let frame = |seq: u64, event| {
            Envelope::new(event, RunRef::of(&run), 1_796_184_191_000 + seq)
                .with_seq(seq)
                .to_json()
        };
        let tricky = "a text with ,\"seq\":99 and \"quotes\"";
        let pushed: Vec<String> =
            std::iter::once(frame(1, Event::AgentStarted { agent_name: "llm" }))
                .chain((2..=40).map(|seq| {
                    let text = if seq == 7 { tricky } else { "word" };
                    frame(seq, Event::AgentDelta { text, round: 1 })
                }))
                .chain(std::iter::once("no seq here".to_owned()))
                .collect();
        let mut r = Replay::default();
        for (seq, f) in (1..).zip(&pushed) {
            r.keep(seq, f);
        }
        let mut seq = 0;
        for f in &pushed {
            let (next, replayed) = r.first_after(seq).unwrap();
            assert_eq!(&replayed, f);
            seq = next;
        }
        assert_eq!(r.heads.len(), 2, "one head per event type");
        let kept: usize = r.frames.iter().map(|k| r.len_of(k)).sum();
        assert_eq!(kept, pushed.iter().map(String::len).sum::<usize>());
        assert_eq!(r.bytes, kept);
        let held: usize = r.frames.iter().map(|k| k.tail.len()).sum();
        assert!(held * 2 < kept, "{held} of {kept} bytes held");
    }
}

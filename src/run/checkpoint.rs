//! What a run's writes persist of its stream: the checkpointed text of an alive run, and the
//! result a terminal write stores, each within the item's budget.

use crate::limits::{MAX_CHECKPOINT_TEXT_BYTES, MAX_STORED_RESULT_BYTES};
use crate::protocol::fit::{cut_text, json_len};
use serde_json::{Value, json};

/// The text a run has streamed and not discarded, as far as a checkpoint can use it: kept
/// while it fits [`MAX_CHECKPOINT_TEXT_BYTES`], only counted beyond (a cut text would not match
/// the checkpoint's `seq`, so a longer stream's checkpoint keeps `seq` only and holds no copy).
/// Each model round's stretches are known, so a round's text can be withdrawn.
#[derive(Debug, Default)]
pub struct Streamed {
    text: String,
    bytes: usize,
    /// `(round, start)` of each stretch of one round's text, in the stream's bytes.
    stretches: Vec<(u32, usize)>,
    /// The text outgrew the budget once, and its copy is gone for good.
    dropped: bool,
}

impl Streamed {
    /// Adds text that was pushed for `round`.
    pub fn push(&mut self, round: u32, piece: &str) {
        if self.stretches.last().map(|s| s.0) != Some(round) {
            self.stretches.push((round, self.bytes));
        }
        self.bytes += piece.len();
        if !self.dropped && self.bytes <= MAX_CHECKPOINT_TEXT_BYTES {
            self.text.push_str(piece);
        } else if !self.dropped {
            self.dropped = true;
            self.text = String::new();
        }
    }

    /// Withdraws every stretch of `round`'s text (`agent_text_discarded`).
    pub fn discard(&mut self, round: u32) {
        if !self.stretches.iter().any(|s| s.0 == round) {
            return;
        }
        let ends = self.stretches.iter().skip(1).map(|s| s.1);
        let ends: Vec<usize> = ends.chain([self.bytes]).collect();
        let mut kept = Streamed {
            dropped: self.dropped,
            ..Streamed::default()
        };
        for (&(r, start), &end) in self.stretches.iter().zip(&ends) {
            if r == round {
                continue;
            }
            if kept.dropped {
                kept.stretches.push((r, kept.bytes));
                kept.bytes += end - start;
            } else {
                kept.push(r, self.text.get(start..end).unwrap_or_default());
            }
        }
        *self = kept;
    }

    /// The streamed text a write checkpoints: all of it, or nothing once it outgrew
    /// [`MAX_CHECKPOINT_TEXT_BYTES`].
    pub fn checkpoint(&self) -> Option<String> {
        (!self.dropped).then(|| self.text.clone())
    }
}

/// `result` within [`MAX_STORED_RESULT_BYTES`]: an oversized `text` keeps as much as fits (by
/// its escaped length) and the result is marked `truncated` with the text's full length; a
/// result too large for other reasons is replaced by that mark alone.
pub fn storable(mut result: Value) -> Value {
    if cut_text(&mut result, MAX_STORED_RESULT_BYTES) {
        return result;
    }
    json!({ "truncated": true, "result_bytes": json_len(&result) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result over the item budget keeps as much text as fits and says how long it was.
    #[test]
    fn oversized_results_are_cut_to_fit_and_marked() {
        let small = json!({ "text": "hi", "model": "m" });
        assert_eq!(storable(small.clone()), small);
        let text = "é\u{1}".repeat(MAX_STORED_RESULT_BYTES);
        let cut = storable(json!({ "text": text, "model": "m" }));
        assert!(json_len(&cut) <= MAX_STORED_RESULT_BYTES);
        assert_eq!(cut["truncated"], true);
        assert_eq!(cut["text_bytes"], text.len());
        assert_eq!(cut["model"], "m");
        assert!(text.starts_with(cut["text"].as_str().unwrap()));
        let other = storable(json!({ "blob": "x".repeat(MAX_STORED_RESULT_BYTES) }));
        assert_eq!(other["truncated"], true);
    }

    /// An answer heavy in characters JSON escapes keeps as much as fits, not `""` (issue 21,
    /// item 10: the cut was once computed from the escaped length and saturated to nothing).
    #[test]
    fn escape_heavy_answers_keep_as_much_as_fits() {
        let text = "\u{1}".repeat(60_000);
        let cut = storable(json!({ "text": text, "model": "m" }));
        let kept = cut["text"].as_str().unwrap().len();
        let len = json_len(&cut);
        assert!(
            len <= MAX_STORED_RESULT_BYTES && len + 6 > MAX_STORED_RESULT_BYTES,
            "{len}"
        );
        assert!(kept > 40_000, "kept {kept} of 60000");
    }

    /// The checkpoint keeps the text while it fits, and nothing (no copy) beyond, even once a
    /// discard brings the count back under the budget.
    #[test]
    fn the_checkpoint_stops_holding_text_past_its_budget() {
        let mut s = Streamed::default();
        s.push(1, "ab");
        assert_eq!(s.checkpoint().as_deref(), Some("ab"));
        s.push(2, &"x".repeat(MAX_CHECKPOINT_TEXT_BYTES));
        assert_eq!(s.checkpoint(), None);
        assert!(s.text.capacity() == 0);
        s.discard(2);
        assert_eq!((s.checkpoint(), s.bytes), (None, 2));
    }

    /// Discarding a round drops its stretches wherever they are and keeps the others in order.
    #[test]
    fn a_discarded_round_leaves_the_rest() {
        let mut s = Streamed::default();
        s.push(1, "Let me ");
        s.push(1, "check. ");
        s.discard(1);
        assert_eq!(s.checkpoint().as_deref(), Some(""));
        s.push(2, "It is ");
        s.push(3, "noon");
        s.push(2, ", ");
        s.discard(2);
        assert_eq!(s.checkpoint().as_deref(), Some("noon"));
        s.discard(7);
        s.push(3, "!");
        assert_eq!(s.checkpoint().as_deref(), Some("noon!"));
        assert_eq!(s.bytes, 5);
    }
}

//! What a run's writes persist of its stream: the checkpointed text of an alive run, and the
//! result a terminal write stores, each within the item's budget.

use crate::limits::{MAX_CHECKPOINT_TEXT_BYTES, MAX_STORED_RESULT_BYTES};
use serde_json::Value;

/// The streamed text a heartbeat checkpoints: all of it, or nothing once it outgrew
/// [`MAX_CHECKPOINT_TEXT_BYTES`] (a cut text would not match the checkpoint's `seq`).
pub fn checkpoint_text(streamed: &str) -> Option<String> {
    (streamed.len() <= MAX_CHECKPOINT_TEXT_BYTES).then(|| streamed.to_owned())
}

/// `result` within [`MAX_STORED_RESULT_BYTES`]: an oversized `text` is cut at a character
/// boundary and the result marked `truncated` with the text's full length; a result too large
/// for other reasons is replaced by that mark alone.
pub fn storable(mut result: Value) -> Value {
    let size = |v: &Value| serde_json::to_string(v).map_or(0, |s| s.len());
    let total = size(&result);
    if total <= MAX_STORED_RESULT_BYTES {
        return result;
    }
    let mark = serde_json::json!({ "truncated": true, "result_bytes": total });
    let text = match result.get_mut("text") {
        Some(Value::String(t)) => std::mem::take(t),
        _ => return mark,
    };
    // Escaping makes the stored form larger than the text: shrink until it fits.
    let mut keep = text.len().saturating_sub(total - MAX_STORED_RESULT_BYTES);
    loop {
        while !text.is_char_boundary(keep) {
            keep -= 1;
        }
        result["text"] = Value::String(text[..keep].to_owned());
        result["truncated"] = Value::Bool(true);
        result["text_bytes"] = Value::from(text.len());
        if size(&result) <= MAX_STORED_RESULT_BYTES {
            return result;
        }
        if keep == 0 {
            return mark;
        }
        keep /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result over the item budget keeps as much text as fits and says how long it was.
    #[test]
    fn oversized_results_are_cut_to_fit_and_marked() {
        let small = serde_json::json!({ "text": "hi", "model": "m" });
        assert_eq!(storable(small.clone()), small);
        let text = "é\u{1}".repeat(MAX_STORED_RESULT_BYTES);
        let cut = storable(serde_json::json!({ "text": text, "model": "m" }));
        assert!(serde_json::to_string(&cut).unwrap().len() <= MAX_STORED_RESULT_BYTES);
        assert_eq!(cut["truncated"], true);
        assert_eq!(cut["text_bytes"], text.len());
        assert_eq!(cut["model"], "m");
        assert!(text.starts_with(cut["text"].as_str().unwrap()));
        let other = storable(serde_json::json!({ "blob": "x".repeat(MAX_STORED_RESULT_BYTES) }));
        assert_eq!(other["truncated"], true);
    }
}

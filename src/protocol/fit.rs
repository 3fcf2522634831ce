//! Making every frame fit API Gateway's message limit: a text cut to the longest prefix whose
//! JSON form fits (counted as serde_json escapes it), and an oversized frame shrunk field by
//! field, keeping its envelope and the shape of what it cuts.

use super::error::{ClientError, ErrorCode};
use serde_json::{Map, Value, json};
use std::borrow::Cow;

/// A field replaced by a marker keeps this fraction of the limit as its preview: escaping can
/// grow the preview up to 6x (`\u00XX`), which still leaves room for the envelope.
const PREVIEW_DIVISOR: usize = 8;

/// Bytes `c` takes inside a JSON string as serde_json writes it: `"` `\` and the short escapes
/// take 2, other control characters 6 (`\u00XX`), everything else its UTF-8 length.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// The longest prefix of `text` whose JSON-escaped form (without quotes) takes at most
/// `budget` bytes.
pub fn prefix_within(text: &str, budget: usize) -> &str {
    let mut used = 0;
    for (i, c) in text.char_indices() {
        used += escaped_len(c);
        if used > budget {
            return &text[..i];
        }
    }
    text
}

/// The compact JSON size of `v`, counted as it is written: nothing is allocated (measuring an
/// oversized frame once cost a copy of it per measure).
pub fn json_len<T: serde::Serialize + ?Sized>(v: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    serde_json::to_writer(&mut n, v).map_or(0, |()| n.0)
}

/// Cuts `value`'s `text` string so that `value` serializes to at most `limit` bytes, keeping as
/// much text as fits and every other field, and marks it `truncated: true` with `text_bytes`,
/// the full text's length (kept from an earlier cut). Returns `false`, leaving `value`
/// unchanged, when it has no `text` string or the rest alone exceeds `limit`.
pub fn cut_text(value: &mut Value, limit: usize) -> bool {
    if json_len(value) <= limit {
        return true;
    }
    let Some(Value::String(text)) = value.get_mut("text").map(std::mem::take) else {
        return false;
    };
    let full = value
        .get("text_bytes")
        .and_then(Value::as_u64)
        .map_or(text.len(), |n| (n as usize).max(text.len()));
    value["truncated"] = Value::Bool(true);
    value["text_bytes"] = Value::from(full);
    value["text"] = Value::String(String::new());
    let rest = json_len(value);
    if rest > limit {
        // Not ours to change after all: put the text back as it was.
        value["text"] = Value::String(text);
        return false;
    }
    value["text"] = Value::String(prefix_within(&text, limit - rest).to_owned());
    true
}

/// A payload field replaced because the frame was too large: its size and the start of its JSON.
fn marker(field: &Value, limit: usize) -> Value {
    let json = field.to_string();
    let preview = prefix_within(&json, limit / PREVIEW_DIVISOR / 6);
    json!({ "truncated": true, "original_bytes": json.len(), "preview": preview })
}

/// `payload` shrunk, largest field first, until `frame_len(payload)` fits `limit`: a field with
/// a `text` string keeps its shape with the text cut ([`cut_text`]); any other is replaced by
/// `{truncated, original_bytes, preview}`.
fn shrink(
    payload: &mut Map<String, Value>,
    limit: usize,
    frame_len: impl Fn(&Map<String, Value>) -> usize,
) {
    let mut keys: Vec<(usize, String)> = payload
        .iter()
        .map(|(k, v)| (json_len(v), k.clone()))
        .collect();
    keys.sort_by(|a, b| b.cmp(a));
    for (size, key) in keys {
        let total = frame_len(payload);
        if total <= limit {
            return;
        }
        let Some(field) = payload.get_mut(&key) else {
            continue;
        };
        let room = limit.saturating_sub(total - size);
        if !cut_text(field, room) {
            *field = marker(field, limit);
        }
    }
}

/// A message that fits `limit` bytes: `message` itself when it fits; else the same envelope
/// (type, run fields, seq and timestamp kept) with its payload shrunk field by field (see
/// [`shrink`]); else a `message_too_large` error.
pub fn fit_to_limit(message: &str, limit: usize) -> Cow<'_, str> {
    if message.len() <= limit {
        return Cow::Borrowed(message);
    }
    let mut frame: Value = serde_json::from_str(message).unwrap_or_default();
    if let Some(Value::Object(mut payload)) = frame.get_mut("payload").map(Value::take) {
        // The envelope without its payload (`null`, 4 bytes), measured once.
        let envelope_len = json_len(&frame).saturating_sub(4);
        let frame_len = |p: &Map<String, Value>| envelope_len + json_len(p);
        shrink(&mut payload, limit, frame_len);
        frame["payload"] = Value::Object(payload);
        let s = frame.to_string();
        if s.len() <= limit {
            return Cow::Owned(s);
        }
    }
    let e = ClientError::new(
        ErrorCode::MessageTooLarge,
        format!("event exceeded {limit} bytes"),
    );
    let mut out = json!({ "type": "error", "payload": e });
    for k in ["run_id", "thread_id", "request_id", "seq", "timestamp"] {
        if let Some(x) = frame.get(k) {
            out[k] = x.clone();
        }
    }
    Cow::Owned(out.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_MESSAGE_BYTES;

    /// The prefix is measured by escaped length: text heavy in escaped characters keeps as
    /// much as fits, never a cut character.
    #[test]
    fn prefixes_are_measured_escaped() {
        assert_eq!(prefix_within("\u{1}\u{1}a", 12), "\u{1}\u{1}");
        assert_eq!(prefix_within("\u{1}\u{1}a", 11), "\u{1}");
        assert_eq!(prefix_within("é\"x", 4), "é\"");
        assert_eq!(prefix_within("é", 1), "");
        assert_eq!(prefix_within("abc", 99), "abc");
    }

    /// A cut text is the longest fitting prefix, marked with its full length, its shape kept.
    #[test]
    fn cut_text_keeps_shape_and_as_much_as_fits() {
        let text = "\"".repeat(10_000);
        let mut v = json!({ "text": text, "model": "m", "usage": {"output_tokens": 3} });
        assert!(cut_text(&mut v, 1_000));
        let len = json_len(&v);
        assert!((998..=1_000).contains(&len), "{len}");
        assert_eq!(
            (v["truncated"].clone(), v["text_bytes"].clone()),
            (json!(true), json!(10_000))
        );
        assert_eq!(
            (v["model"].clone(), v["usage"]["output_tokens"].clone()),
            (json!("m"), json!(3))
        );
        // A second cut keeps the first full length.
        assert!(cut_text(&mut v, 500));
        assert_eq!(v["text_bytes"], 10_000);
        assert!(!cut_text(&mut json!({ "reply": "x".repeat(100) }), 10));
    }

    /// Oversized events keep their envelope and small fields: `tool_executing` its `tool_name`,
    /// `agent_completed` its result's shape with a cut text; small ones pass as is.
    #[test]
    fn oversized_events_keep_their_shape() {
        let small = r#"{"type":"pong","payload":{}}"#;
        assert_eq!(fit_to_limit(small, 1000), small);
        let big = json!({"type": "tool_executing", "run_id": "r1", "seq": 3, "timestamp": "t",
            "payload": {"tool_name": "echo", "parameters": {"text": "\u{1}".repeat(200_000)}}})
        .to_string();
        let fitted = fit_to_limit(&big, MAX_MESSAGE_BYTES);
        assert!(fitted.len() <= MAX_MESSAGE_BYTES);
        let v: Value = serde_json::from_str(&fitted).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["run_id"].as_str(), v["seq"].as_u64()),
            (Some("tool_executing"), Some("r1"), Some(3))
        );
        assert_eq!(v["payload"]["tool_name"], "echo");
        assert_eq!(v["payload"]["parameters"]["truncated"], true);
        let text = "ab\n".repeat(111_000);
        let done = json!({"type": "agent_completed", "seq": 9, "payload": {"agent_name": "llm",
            "result": {"text": text, "model": "m", "usage": {"input_tokens": 1}}, "execution_time_ms": 5}})
        .to_string();
        let fitted = fit_to_limit(&done, MAX_MESSAGE_BYTES);
        assert!(fitted.len() <= MAX_MESSAGE_BYTES && fitted.len() > MAX_MESSAGE_BYTES - 8);
        let v: Value = serde_json::from_str(&fitted).unwrap();
        let result = &v["payload"]["result"];
        assert_eq!(
            (result["model"].as_str(), result["truncated"].as_bool()),
            (Some("m"), Some(true))
        );
        assert_eq!(result["text_bytes"], text.len());
        assert!(text.starts_with(result["text"].as_str().unwrap()));
        assert_eq!(v["payload"]["execution_time_ms"], 5);
    }
}

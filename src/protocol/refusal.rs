//! Why a frame was refused, in the protocol's own words: the field and the kind of value it
//! must have, broken JSON told apart from JSON nested too deeply. Never a parser's internals.

use super::error::{ClientError, ErrorCode};
use crate::limits::MAX_ID_LEN;
use serde_json::{Map, Value};
use std::borrow::Cow;

fn err(code: ErrorCode, msg: impl Into<Cow<'static, str>>) -> ClientError {
    ClientError::new(code, msg)
}

/// The JSON kind each top-level field must have, for error messages in the protocol's words.
const FIELD_KINDS: [(&str, Kind); 9] = [
    ("type", Kind::String),
    ("run_id", Kind::String),
    ("request_id", Kind::String),
    ("thread_id", Kind::String),
    ("agent", Kind::String),
    ("cursor", Kind::String),
    ("limit", Kind::WholeNumber),
    ("after_seq", Kind::WholeNumber),
    ("payload", Kind::Object),
];

/// The same for the fields of `payload`.
const PAYLOAD_KINDS: [(&str, Kind); 6] = [
    ("user_request", Kind::String),
    ("message", Kind::String),
    ("content", Kind::String),
    ("text", Kind::String),
    ("metadata", Kind::Object),
    ("options", Kind::Object),
];

/// The JSON nesting serde_json accepts; deeper frames are refused as such.
const MAX_NESTING: usize = 128;

#[derive(Clone, Copy)]
enum Kind {
    String,
    WholeNumber,
    Object,
}

impl Kind {
    fn accepts(self, v: &Value) -> bool {
        match self {
            Kind::String => v.is_string() || v.is_null(),
            Kind::WholeNumber => v.is_u64() || v.is_null(),
            Kind::Object => v.is_object() || v.is_null(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::WholeNumber => "a whole number",
            Kind::Object => "an object",
        }
    }
}

/// Why a frame that does not start with `{` is refused: not JSON at all, or JSON of another kind.
pub fn not_an_object(body: &str) -> ClientError {
    match serde_json::from_str::<serde::de::IgnoredAny>(body) {
        Ok(_) => err(ErrorCode::InvalidFrame, "a frame must be a JSON object"),
        Err(e) => describe(body, &e),
    }
}

/// A parse failure in the protocol's words.
pub fn describe(body: &str, e: &serde_json::Error) -> ClientError {
    use serde_json::error::Category;
    match e.classify() {
        _ if e.to_string().starts_with("recursion limit exceeded") => {
            if balanced(body) {
                err(
                    ErrorCode::InvalidFrame,
                    format!("frame nests deeper than {MAX_NESTING} levels"),
                )
            } else {
                err(ErrorCode::InvalidJson, "frame is not valid JSON")
            }
        }
        Category::Data => wrong_field(body, e),
        _ => err(ErrorCode::InvalidJson, "frame is not valid JSON"),
    }
}

/// Which field of a JSON object frame has the wrong kind (error path only: parses again).
fn wrong_field(body: &str, e: &serde_json::Error) -> ClientError {
    let msg = e.to_string();
    if let Some(rest) = msg.strip_prefix("duplicate field `")
        && let Some((name, _)) = rest.split_once('`')
        && name.len() <= MAX_ID_LEN
    {
        return err(
            ErrorCode::InvalidField,
            format!("field {name} appears more than once"),
        );
    }
    let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(body) else {
        return err(
            ErrorCode::InvalidField,
            "a field has the wrong kind of value",
        );
    };
    let wrong = |obj: &Map<String, Value>, table: &[(&'static str, Kind)], prefix: &str| {
        table.iter().find_map(|(name, kind)| {
            obj.get(*name)
                .filter(|v| !kind.accepts(v))
                .map(|_| format!("{prefix}{name} must be {}", kind.name()))
        })
    };
    let found = wrong(&frame, &FIELD_KINDS, "").or_else(|| match frame.get("payload") {
        Some(Value::Object(p)) => wrong(p, &PAYLOAD_KINDS, "payload."),
        _ => None,
    });
    err(
        ErrorCode::InvalidField,
        found.unwrap_or_else(|| "a field has the wrong kind of value".into()),
    )
}

/// Whether brackets and braces outside strings balance: tells a deep but complete document
/// from a truncated one, without building it.
fn balanced(body: &str) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in body.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => {}
        }
    }
    depth == 0 && !in_string
}

//! Inbound frames: one flat, borrowing parse, then dispatch on `type` into [`Inbound`].
//!
//! Ids (`run_id`, `request_id`, `thread_id`, `cursor`) are passed on exactly as sent, bounded
//! only in size: the one id rule (`context::validate_id`) judges them where they are used.

use super::error::{ClientError, ErrorCode};
use super::refusal;
use crate::limits::{
    MAX_CURSOR_LEN, MAX_ID_FIELD_BYTES, MAX_ID_LEN, MAX_MESSAGE_BYTES, MAX_PAGE_SIZE,
    MAX_TEXT_BYTES,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Every field any message may carry. Parsing into one flat struct avoids buffering the frame
/// (as a tagged enum would) and lets each message report exactly which field is wrong.
#[derive(Deserialize, Default)]
struct RawFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    run_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    thread_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    cursor: Option<Cow<'a, str>>,
    limit: Option<u64>,
    after_seq: Option<u64>,
    #[serde(borrow)]
    payload: Option<RawPayload<'a>>,
}

#[derive(Deserialize, Default)]
struct RawPayload<'a> {
    #[serde(borrow)]
    user_request: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    metadata: Option<Map<String, Value>>,
    options: Option<Map<String, Value>>,
    /// The `echo` agent's step delay; an agent option, judged by the agent.
    delay_ms: Option<Value>,
}

/// A request that starts a run (`start_agent`, `user_message`, `chat`).
#[derive(Clone, Debug, PartialEq)]
pub struct StartRequest<'a> {
    /// The user's text: `user_request` or `message`/`content`/`text`.
    pub text: Cow<'a, str>,
    pub request_id: Option<Cow<'a, str>>,
    pub thread_id: Option<Cow<'a, str>>,
    pub agent: Option<Cow<'a, str>>,
    pub metadata: Option<Map<String, Value>>,
    /// Agent options: `payload.options`, plus `payload.delay_ms` (the `echo` agent's).
    pub options: Map<String, Value>,
}

/// A `list_executions` page request.
#[derive(Clone, Debug, PartialEq)]
pub struct ListRequest<'a> {
    pub thread_id: Option<Cow<'a, str>>,
    pub limit: Option<usize>,
    pub cursor: Option<Cow<'a, str>>,
}

/// A parsed inbound message. Unknown types are a variant, not a parse failure.
#[derive(Clone, Debug, PartialEq)]
pub enum Inbound<'a> {
    Ping,
    Heartbeat,
    StartAgent(StartRequest<'a>),
    UserMessage(StartRequest<'a>),
    GetExecution {
        run_id: Cow<'a, str>,
    },
    ListExecutions(ListRequest<'a>),
    CancelAgent {
        run_id: Cow<'a, str>,
    },
    /// Follow a run again after a reconnect: every event after `after_seq` (default: the
    /// snapshot's own `seq`).
    Resume {
        run_id: Cow<'a, str>,
        after_seq: Option<u64>,
    },
    Unknown(Cow<'a, str>),
}

/// A parsed frame: the message, and the client's `request_id` to echo in the reply.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame<'a> {
    pub message: Inbound<'a>,
    pub request_id: Option<Cow<'a, str>>,
}

/// A frame that could not be parsed, with the `request_id` when it could still be read.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameError {
    pub error: ClientError,
    pub request_id: Option<String>,
}

fn err(code: ErrorCode, msg: impl Into<Cow<'static, str>>) -> ClientError {
    ClientError::new(code, msg)
}

fn sized<'a>(
    name: &'static str,
    v: Option<Cow<'a, str>>,
    max: usize,
) -> Result<Option<Cow<'a, str>>, ClientError> {
    match v {
        Some(s) if s.len() > max => Err(err(
            ErrorCode::FieldTooLarge,
            format!("{name} exceeds {max} bytes"),
        )),
        other => Ok(other),
    }
}

fn text_field<'a>(
    name: &'static str,
    v: Option<Cow<'a, str>>,
    max: usize,
) -> Result<Option<Cow<'a, str>>, ClientError> {
    match sized(name, v, max)? {
        Some(s) if s.trim().is_empty() => Err(err(
            ErrorCode::MissingField,
            format!("{name} must not be empty"),
        )),
        other => Ok(other),
    }
}

fn required<'a>(
    name: &'static str,
    v: Option<Cow<'a, str>>,
    max: usize,
) -> Result<Cow<'a, str>, ClientError> {
    v.ok_or_else(|| err(ErrorCode::MissingField, format!("{name} is required")))
        .and_then(|s| sized(name, Some(s), max))
        .map(|s| s.unwrap_or_default())
}

/// Parses one text frame. Never panics; every failure is a typed [`FrameError`] whose message
/// names the field and the problem, never a parser's internals.
pub fn parse_frame(body: &str) -> Result<Frame<'_>, FrameError> {
    let fail = |error| FrameError {
        error,
        request_id: None,
    };
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(fail(err(
            ErrorCode::MessageTooLarge,
            format!("message exceeds {MAX_MESSAGE_BYTES} bytes"),
        )));
    }
    if !body
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return Err(fail(refusal::not_an_object(body)));
    }
    let raw: RawFrame<'_> =
        serde_json::from_str(body).map_err(|e| fail(refusal::describe(body, &e)))?;
    let request_id = raw.request_id.clone().filter(|r| r.len() <= MAX_ID_LEN);
    build(raw).map_err(|error| FrameError {
        error,
        request_id: request_id.as_deref().map(str::to_owned),
    })
}

fn build(raw: RawFrame<'_>) -> Result<Frame<'_>, ClientError> {
    let kind = raw
        .kind
        .ok_or_else(|| err(ErrorCode::MissingField, "type is required"))?;
    let request_id = sized("request_id", raw.request_id, MAX_ID_FIELD_BYTES)?;
    let message = match kind.as_ref() {
        "ping" => Inbound::Ping,
        "heartbeat" => Inbound::Heartbeat,
        "start_agent" | "user_message" | "chat" => {
            let p = raw.payload.unwrap_or_default();
            let (name, text) = if kind == "start_agent" {
                ("payload.user_request", p.user_request)
            } else {
                ("payload.message", p.message.or(p.content).or(p.text))
            };
            let mut options = p.options.unwrap_or_default();
            if let Some(d) = p.delay_ms {
                options.insert("delay_ms".into(), d);
            }
            let start = StartRequest {
                text: text_field(name, text, MAX_TEXT_BYTES)?
                    .ok_or_else(|| err(ErrorCode::MissingField, format!("{name} is required")))?,
                request_id: request_id.clone(),
                thread_id: sized("thread_id", raw.thread_id, MAX_ID_FIELD_BYTES)?,
                agent: text_field("agent", raw.agent, MAX_ID_FIELD_BYTES)?,
                metadata: p.metadata,
                options,
            };
            if kind == "start_agent" {
                Inbound::StartAgent(start)
            } else {
                Inbound::UserMessage(start)
            }
        }
        "get_execution" => Inbound::GetExecution {
            run_id: required("run_id", raw.run_id, MAX_ID_FIELD_BYTES)?,
        },
        "cancel_agent" => Inbound::CancelAgent {
            run_id: required("run_id", raw.run_id, MAX_ID_FIELD_BYTES)?,
        },
        "resume" => Inbound::Resume {
            run_id: required("run_id", raw.run_id, MAX_ID_FIELD_BYTES)?,
            after_seq: raw.after_seq,
        },
        "list_executions" => Inbound::ListExecutions(ListRequest {
            thread_id: sized("thread_id", raw.thread_id, MAX_ID_FIELD_BYTES)?,
            limit: match raw.limit {
                None => None,
                Some(n @ 1..) if n as usize <= MAX_PAGE_SIZE => Some(n as usize),
                Some(_) => {
                    return Err(err(
                        ErrorCode::InvalidField,
                        format!("limit must be between 1 and {MAX_PAGE_SIZE}"),
                    ));
                }
            },
            cursor: sized("cursor", raw.cursor, MAX_CURSOR_LEN)?,
        }),
        _ => Inbound::Unknown(kind),
    };
    Ok(Frame {
        message,
        request_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> ErrorCode {
        parse_frame(body).unwrap_err().error.code
    }

    fn message(body: &str) -> String {
        parse_frame(body).unwrap_err().error.message.into_owned()
    }

    /// Each message type parses into its variant with its fields.
    #[test]
    fn parses_every_message_type() {
        assert_eq!(
            parse_frame(r#"{"type":"ping"}"#).unwrap().message,
            Inbound::Ping
        );
        let f = parse_frame(
            r#"{"type":"start_agent","request_id":"r1","thread_id":"t1","payload":{"user_request":"hi","delay_ms":5}}"#,
        )
        .unwrap();
        match f.message {
            Inbound::StartAgent(s) => {
                assert_eq!(
                    (s.text.as_ref(), s.thread_id.as_deref()),
                    ("hi", Some("t1"))
                );
                assert_eq!(s.options.get("delay_ms"), Some(&Value::from(5)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(f.request_id.as_deref(), Some("r1"));
        for alias in ["message", "content", "text"] {
            let body = format!(r#"{{"type":"chat","payload":{{"{alias}":"yo"}}}}"#);
            assert!(
                matches!(parse_frame(&body).unwrap().message, Inbound::UserMessage(s) if s.text == "yo")
            );
        }
        assert!(matches!(
            parse_frame(r#"{"type":"list_executions","limit":5}"#)
                .unwrap()
                .message,
            Inbound::ListExecutions(ListRequest { limit: Some(5), .. })
        ));
        assert!(matches!(
            parse_frame(r#"{"type":"dance"}"#).unwrap().message,
            Inbound::Unknown(t) if t == "dance"
        ));
    }

    /// Ids reach the commands exactly as sent (the id rule judges them there), whitespace too.
    #[test]
    fn ids_are_not_trimmed() {
        let f = parse_frame(r#"{"type":"get_execution","run_id":"run_x "}"#).unwrap();
        assert_eq!(
            f.message,
            Inbound::GetExecution {
                run_id: "run_x ".into()
            }
        );
    }

    /// Each class of bad frame maps to its stable code.
    #[test]
    fn bad_frames_get_stable_codes() {
        assert_eq!(code("not json"), "invalid_json");
        assert_eq!(code(r#"{"type":"ping""#), "invalid_json");
        assert_eq!(code("[1,2]"), "invalid_frame");
        assert_eq!(code(r#"{"type":5}"#), "invalid_field");
        assert_eq!(code(r#"{"run_id":"x"}"#), "missing_field");
        assert_eq!(code(r#"{"type":"start_agent"}"#), "missing_field");
        assert_eq!(
            code(r#"{"type":"start_agent","payload":{"user_request":"  "}}"#),
            "missing_field"
        );
        assert_eq!(code(r#"{"type":"get_execution"}"#), "missing_field");
        assert_eq!(
            code(r#"{"type":"list_executions","limit":0}"#),
            "invalid_field"
        );
        assert_eq!(
            code(r#"{"type":"list_executions","limit":-1}"#),
            "invalid_field"
        );
        let big = format!(
            r#"{{"type":"start_agent","payload":{{"user_request":"{}"}}}}"#,
            "a".repeat(MAX_TEXT_BYTES + 1)
        );
        assert_eq!(code(&big), "field_too_large");
        let huge = format!(
            r#"{{"type":"ping","pad":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert_eq!(code(&huge), "message_too_large");
    }

    /// Messages name the field and the expected kind, never a parser's type names or positions.
    #[test]
    fn errors_speak_the_protocol() {
        assert_eq!(message(r#"{"type":5}"#), "type must be a string");
        assert_eq!(
            message(r#"{"type":"start_agent","payload":{"user_request":["x"]}}"#),
            "payload.user_request must be a string"
        );
        assert_eq!(
            message(r#"{"type":"list_executions","limit":1e2}"#),
            "limit must be a whole number"
        );
        assert_eq!(
            message(r#"{"type":"start_agent","payload":"x"}"#),
            "payload must be an object"
        );
        assert_eq!(
            message(r#"{"type":"a","type":"b"}"#),
            "field type appears more than once"
        );
        for body in [
            r#"{"type":"start_agent","payload":{"user_request":"x","metadata":[]}}"#,
            r#"{"type":5}"#,
            "[[[",
        ] {
            let m = message(body);
            assert!(
                !m.contains("line") && !m.contains("struct") && !m.contains("Raw"),
                "{m}"
            );
        }
    }

    /// Truncated deep nesting is not JSON; complete but too deep nesting is its own error.
    #[test]
    fn deep_nesting_is_told_apart_from_broken_json() {
        assert_eq!(code(&"[".repeat(100_000)), "invalid_json");
        let deep = format!(
            r#"{{"type":"start_agent","payload":{{"user_request":"x","metadata":{{"a":{}{}}}}}}}"#,
            "[".repeat(129),
            "]".repeat(129)
        );
        assert_eq!(code(&deep), "invalid_frame");
        assert!(message(&deep).contains("deeper than 128"));
    }

    /// A bad frame that still names a `request_id` echoes it in the error.
    #[test]
    fn frame_errors_keep_request_id() {
        let e = parse_frame(r#"{"type":"get_execution","request_id":"r9"}"#).unwrap_err();
        assert_eq!(e.request_id.as_deref(), Some("r9"));
    }
}

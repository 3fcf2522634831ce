//! Inbound frames: one flat, borrowing parse, then dispatch on `type` into [`Inbound`].

use super::error::{ClientError, ErrorCode};
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
    delay_ms: Option<u64>,
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
    /// The `echo` agent's artificial step delay, for exercising long runs.
    pub delay_ms: Option<u64>,
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
    GetExecution { run_id: Cow<'a, str> },
    ListExecutions(ListRequest<'a>),
    CancelAgent { run_id: Cow<'a, str> },
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

fn text_field<'a>(
    name: &'static str,
    v: Option<Cow<'a, str>>,
    max: usize,
) -> Result<Option<Cow<'a, str>>, ClientError> {
    match v {
        Some(s) if s.len() > max => Err(err(
            ErrorCode::FieldTooLarge,
            format!("{name} exceeds {max} bytes"),
        )),
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
    text_field(name, v, max)?
        .ok_or_else(|| err(ErrorCode::MissingField, format!("{name} is required")))
}

/// Parses one text frame. Never panics; every failure is a typed [`FrameError`].
pub fn parse_frame(body: &str) -> Result<Frame<'_>, FrameError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(FrameError {
            error: err(
                ErrorCode::MessageTooLarge,
                format!("message exceeds {MAX_MESSAGE_BYTES} bytes"),
            ),
            request_id: None,
        });
    }
    let raw: RawFrame<'_> = serde_json::from_str(body).map_err(|e| {
        use serde_json::error::Category;
        let error = match e.classify() {
            Category::Data if body.trim_start().starts_with('{') => {
                err(ErrorCode::InvalidField, e.to_string())
            }
            Category::Data => err(ErrorCode::InvalidFrame, "a frame must be a JSON object"),
            _ => err(ErrorCode::InvalidJson, "frame is not valid JSON"),
        };
        FrameError {
            error,
            request_id: None,
        }
    })?;
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
    let request_id = text_field("request_id", raw.request_id, MAX_ID_FIELD_BYTES)?;
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
            let start = StartRequest {
                text: required(name, text, MAX_TEXT_BYTES)?,
                request_id: request_id.clone(),
                thread_id: text_field("thread_id", raw.thread_id, MAX_ID_FIELD_BYTES)?,
                agent: text_field("agent", raw.agent, MAX_ID_FIELD_BYTES)?,
                metadata: p.metadata,
                delay_ms: p.delay_ms,
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
        "list_executions" => Inbound::ListExecutions(ListRequest {
            thread_id: text_field("thread_id", raw.thread_id, MAX_ID_FIELD_BYTES)?,
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
            cursor: text_field("cursor", raw.cursor, MAX_CURSOR_LEN)?,
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

    fn code(body: &str) -> &'static str {
        parse_frame(body).unwrap_err().error.code
    }

    /// Each message type parses into its variant with its fields.
    #[test]
    fn parses_every_message_type() {
        assert_eq!(
            parse_frame(r#"{"type":"ping"}"#).unwrap().message,
            Inbound::Ping
        );
        let f = parse_frame(
            r#"{"type":"start_agent","request_id":"r1","thread_id":"t1","payload":{"user_request":"hi"}}"#,
        )
        .unwrap();
        match f.message {
            Inbound::StartAgent(s) => {
                assert_eq!(
                    (s.text.as_ref(), s.thread_id.as_deref()),
                    ("hi", Some("t1"))
                )
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

    /// A bad frame that still names a `request_id` echoes it in the error.
    #[test]
    fn frame_errors_keep_request_id() {
        let e = parse_frame(r#"{"type":"get_execution","request_id":"r9"}"#).unwrap_err();
        assert_eq!(e.request_id.as_deref(), Some("r9"));
    }
}

//! Inbound frames: one flat, borrowing parse of every field any message may carry, and the
//! field checks each command's own `parse` (in `cmd/`) is built from.
//!
//! Ids (`run_id`, `request_id`, `thread_id`, `cursor`) are passed on exactly as sent, bounded
//! only in size: the one id rule (`context::validate_id`) judges them where they are used.

use super::error::{ClientError, ErrorCode};
use super::refusal;
use crate::limits::{MAX_ID_FIELD_BYTES, MAX_ID_LEN, MAX_MESSAGE_BYTES};
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
    call_id: Option<Cow<'a, str>>,
    approved: Option<bool>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payload: Option<Payload<'a>>,
}

/// The fields of a message besides its `type` and `request_id`, as sent (only their JSON kinds
/// checked); each command's `parse` takes the ones it reads.
#[derive(Debug, Default)]
pub struct Fields<'a> {
    pub run_id: Option<Cow<'a, str>>,
    pub thread_id: Option<Cow<'a, str>>,
    pub agent: Option<Cow<'a, str>>,
    pub cursor: Option<Cow<'a, str>>,
    pub limit: Option<u64>,
    pub after_seq: Option<u64>,
    pub call_id: Option<Cow<'a, str>>,
    pub approved: Option<bool>,
    pub reason: Option<Cow<'a, str>>,
    pub payload: Option<Payload<'a>>,
}

/// The `payload` object of a message.
#[derive(Debug, Deserialize, Default)]
pub struct Payload<'a> {
    #[serde(borrow)]
    pub user_request: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub text: Option<Cow<'a, str>>,
    pub metadata: Option<Map<String, Value>>,
    pub options: Option<Map<String, Value>>,
    /// The `echo` agent's step delay; an agent option, judged by the agent.
    pub delay_ms: Option<Value>,
}

/// A frame read as JSON: its `type`, the client's `request_id` to echo in the reply, and the
/// message's fields for its command to parse.
#[derive(Debug)]
pub struct Frame<'a> {
    pub kind: Cow<'a, str>,
    pub request_id: Option<Cow<'a, str>>,
    pub fields: Fields<'a>,
}

/// A frame that could not be parsed, with the `request_id` when it could still be read.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameError {
    pub error: ClientError,
    pub request_id: Option<String>,
}

impl FrameError {
    /// `error` about a frame whose `request_id` was read as `request_id` (kept only when it is
    /// short enough to echo).
    pub fn new(error: ClientError, request_id: Option<&str>) -> Self {
        FrameError {
            error,
            request_id: request_id
                .filter(|r| r.len() <= MAX_ID_LEN)
                .map(str::to_owned),
        }
    }
}

fn err(code: ErrorCode, msg: impl Into<Cow<'static, str>>) -> ClientError {
    ClientError::new(code, msg)
}

/// `v` unless it is longer than `max` bytes (`field_too_large`).
pub fn sized<'a>(
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

/// [`sized`], and not blank when present (`missing_field`).
pub fn text_field<'a>(
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

/// [`sized`], and present (`missing_field`).
pub fn required<'a>(
    name: &'static str,
    v: Option<Cow<'a, str>>,
    max: usize,
) -> Result<Cow<'a, str>, ClientError> {
    v.ok_or_else(|| err(ErrorCode::MissingField, format!("{name} is required")))
        .and_then(|s| sized(name, Some(s), max))
        .map(|s| s.unwrap_or_default())
}

/// Reads one text frame as JSON. Never panics; every failure is a typed [`FrameError`] whose
/// message names the field and the problem, never a parser's internals. The fields each
/// message needs are checked by its command's `parse`.
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
    let echo = raw.request_id.clone();
    let kind = raw
        .kind
        .ok_or_else(|| err(ErrorCode::MissingField, "type is required"));
    let request_id = sized("request_id", raw.request_id, MAX_ID_FIELD_BYTES);
    let (kind, request_id) = match (kind, request_id) {
        (Ok(k), Ok(r)) => (k, r),
        (Err(e), _) | (_, Err(e)) => return Err(FrameError::new(e, echo.as_deref())),
    };
    Ok(Frame {
        kind,
        request_id,
        fields: Fields {
            run_id: raw.run_id,
            thread_id: raw.thread_id,
            agent: raw.agent,
            cursor: raw.cursor,
            limit: raw.limit,
            after_seq: raw.after_seq,
            call_id: raw.call_id,
            approved: raw.approved,
            reason: raw.reason,
            payload: raw.payload,
        },
    })
}

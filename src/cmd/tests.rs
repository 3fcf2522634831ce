//! The parse of every command, from text frames: fields, typed refusals, echoed `request_id`.

use super::*;
use crate::limits::{MAX_MESSAGE_BYTES, MAX_TEXT_BYTES};
use crate::protocol::ErrorCode;
use serde_json::Value;

fn parse_frame(body: &str) -> Result<Parsed<'_>, FrameError> {
    parse(body)
}

fn code(body: &str) -> ErrorCode {
    parse_frame(body).unwrap_err().error.code
}

fn message(body: &str) -> String {
    parse_frame(body).unwrap_err().error.message.into_owned()
}

/// Each message type parses into its variant with its fields.
#[test]
fn parses_every_message_type() {
    assert!(matches!(
        parse_frame(r#"{"type":"ping"}"#).unwrap().command,
        Command::Ping
    ));
    let f = parse_frame(
        r#"{"type":"start_agent","request_id":"r1","thread_id":"t1","payload":{"user_request":"hi","delay_ms":5}}"#,
    )
    .unwrap();
    match f.command {
        Command::Start(s) => {
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
        assert!(matches!(parse_frame(&body).unwrap().command, Command::Start(s) if s.text == "yo"));
    }
    assert!(matches!(
        parse_frame(r#"{"type":"list_executions","limit":5}"#)
            .unwrap()
            .command,
        Command::List(list::List { limit: Some(5), .. })
    ));
    assert!(matches!(
        parse_frame(r#"{"type":"dance"}"#).unwrap().command,
        Command::Unknown(t) if t == "dance"
    ));
}

/// Ids reach the commands exactly as sent (the id rule judges them there), whitespace too.
#[test]
fn ids_are_not_trimmed() {
    let f = parse_frame(r#"{"type":"get_execution","run_id":"run_x "}"#).unwrap();
    assert!(matches!(
        f.command,
        Command::Get(get::Get { run_id }) if run_id == "run_x "
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

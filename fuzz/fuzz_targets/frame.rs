//! Fuzzes inbound frame parsing: any text is a frame or a typed error, within every limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsexec::limits::{
    MAX_ID_FIELD_BYTES, MAX_ID_LEN, MAX_MESSAGE_BYTES, MAX_PAGE_SIZE, MAX_TEXT_BYTES,
};
use wsexec::cmd::{Command, parse};

/// Every code `parse` may answer with.
const FRAME_CODES: [&str; 5] = [
    "invalid_json",
    "invalid_frame",
    "invalid_field",
    "missing_field",
    "field_too_large",
];

fn check(body: &str) {
    match parse(body) {
        Ok(frame) => {
            assert!(body.len() <= MAX_MESSAGE_BYTES);
            if let Some(r) = &frame.request_id {
                // Ids pass through untrimmed; the id rule judges them where they are used.
                assert!(r.len() <= MAX_ID_FIELD_BYTES);
            }
            match frame.command {
                Command::Start(s) => {
                    assert!(!s.text.trim().is_empty() && s.text.len() <= MAX_TEXT_BYTES);
                }
                Command::List(l) => {
                    assert!(l.limit.is_none_or(|n| (1..=MAX_PAGE_SIZE).contains(&n)));
                }
                Command::Get(c) => assert!(c.run_id.len() <= MAX_ID_FIELD_BYTES),
                Command::Cancel(c) => assert!(c.run_id.len() <= MAX_ID_FIELD_BYTES),
                Command::Resume(c) => assert!(c.run_id.len() <= MAX_ID_FIELD_BYTES),
                Command::Ping | Command::Heartbeat | Command::Unknown(_) => {}
            }
        }
        Err(e) => {
            let code = e.error.code.as_str();
            assert!(
                FRAME_CODES.contains(&code)
                    || (code == "message_too_large" && body.len() > MAX_MESSAGE_BYTES),
                "unexpected code {code}"
            );
            assert!(!e.error.retryable);
            assert!(e.request_id.as_ref().is_none_or(|r| r.len() <= MAX_ID_LEN));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        Ok(s) => check(s),
        // What a client cannot send as a text frame, but the parser must survive all the same.
        Err(_) => check(&String::from_utf8_lossy(data)),
    }
});

//! Unit tests of the Chat Completions stream decoder on recorded-style streams.

use super::*;
use proptest::prelude::*;

fn decode(chunks: &[&[u8]]) -> Result<(Vec<Piece>, RoundOutput), ProviderError> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    for c in chunks {
        d.push(c, &mut out)?;
    }
    let round = d.finish(&mut out)?;
    Ok((out, round))
}

/// Text joined from the pieces.
fn text(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Text(t) => Some(t.as_str()),
            Piece::ToolCallStarted => None,
        })
        .collect()
}

/// Text before two parallel tool calls whose fragments interleave by index, each argument
/// split over several chunks, a keep-alive, CRLF line ends, then a usage-only final chunk.
const RECORDED: &str = concat!(
    "data: {\"id\":\"1\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\r\n\r\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Let me cal\u{e7}ulate \u{1F9EE}\"}}]}\n\n",
    ": keep-alive\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"calculator\",\"arguments\":\"\"}}]}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"expre\"}}]}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"function\":{\"name\":\"current_time\",\"arguments\":\"{\"}}]}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"ssion\\\": \\\"2+2\\\"}\"}}]}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"}\"}}]}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":31,\"completion_tokens\":12,\"total_tokens\":43}}\n\n",
    "data: [DONE]\n\n",
);

fn expected_round() -> RoundOutput {
    RoundOutput {
        tool_calls: vec![
            ToolCall {
                id: "call_a".into(),
                name: "calculator".into(),
                arguments: "{\"expression\": \"2+2\"}".into(),
            },
            ToolCall {
                id: "call_b".into(),
                name: "current_time".into(),
                arguments: "{}".into(),
            },
        ],
        usage: Some(Usage {
            input_tokens: 31,
            output_tokens: 12,
        }),
        model: Some("gpt-x".into()),
    }
}

/// The recorded stream yields its text, then one tool-call start, then two complete calls.
#[test]
fn recorded_tool_round() {
    let (pieces, round) = decode(&[RECORDED.as_bytes()]).unwrap();
    assert_eq!(
        pieces,
        vec![
            Piece::Text("Let me cal\u{e7}ulate \u{1F9EE}".into()),
            Piece::ToolCallStarted
        ]
    );
    assert_eq!(round, expected_round());
}

/// Split at every byte boundary (inside JSON, CRLF and multi-byte characters), the decoded
/// round is the same.
#[test]
fn recorded_tool_round_split_at_every_byte() {
    let bytes = RECORDED.as_bytes();
    for i in 0..=bytes.len() {
        let (a, b) = bytes.split_at(i);
        let (pieces, round) = decode(&[a, b]).unwrap();
        assert_eq!(
            text(&pieces),
            "Let me cal\u{e7}ulate \u{1F9EE}",
            "split at {i}"
        );
        assert_eq!(round, expected_round(), "split at {i}");
    }
}

/// A plain answer without `[DONE]` at the end still decodes completely, with generated ids
/// absent and no usage.
#[test]
fn answer_without_done() {
    let s = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}";
    let (pieces, round) = decode(&[s.as_bytes()]).unwrap();
    assert_eq!(text(&pieces), "Hello");
    assert_eq!(round, RoundOutput::default());
}

/// Calls without ids or indexes get positional indexes and generated ids.
#[test]
fn calls_without_ids() {
    let s = "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"name\":\"a\",\"arguments\":\"{}\"}},{\"function\":{\"name\":\"b\",\"arguments\":\"{}\"}}]}}]}\n\n";
    let (_, round) = decode(&[s.as_bytes()]).unwrap();
    let ids: Vec<_> = round
        .tool_calls
        .iter()
        .map(|c| (c.id.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(ids, vec![("call_0", "a"), ("call_1", "b")]);
}

/// Nothing after `[DONE]` is read, not even a broken chunk.
#[test]
fn done_ends_the_stream() {
    let s = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\ndata: {broken\n\n";
    let (pieces, _) = decode(&[s.as_bytes()]).unwrap();
    assert_eq!(text(&pieces), "a");
}

/// A chunk that is not JSON, or data that is not UTF-8, is `llm_protocol`.
#[test]
fn malformed_chunks_are_protocol_errors() {
    for s in [&b"data: {\"choices\": [\n\n"[..], b"data: \xC3\x28\n\n"] {
        let err = decode(&[s]).unwrap_err();
        assert_eq!(err.kind, LlmErrorKind::Protocol);
    }
}

/// An error object mid-stream is classified by its code; unknown codes are `llm_unavailable`.
#[test]
fn errors_in_stream_are_classified() {
    let cases = [
        (
            "{\"error\":{\"code\":\"rate_limit_exceeded\",\"message\":\"x\"}}",
            LlmErrorKind::Throttled,
        ),
        (
            "{\"error\":{\"type\":\"server_error\"}}",
            LlmErrorKind::Unavailable,
        ),
        (
            "{\"error\":{\"code\":\"context_length_exceeded\"}}",
            LlmErrorKind::Invalid,
        ),
        (
            "{\"error\":{\"message\":\"boom\"}}",
            LlmErrorKind::Unavailable,
        ),
    ];
    for (chunk, kind) in cases {
        let err = decode(&[format!("data: {chunk}\n\n").as_bytes()]).unwrap_err();
        assert_eq!(err.kind, kind, "{chunk}");
        assert!(!err.detail.contains("boom"));
    }
}

/// Too many calls or oversized arguments are refused instead of buffered.
#[test]
fn call_limits() {
    let calls: Vec<String> = (0..=MAX_TOOL_CALLS_PER_ROUND)
        .map(|i| format!("{{\"index\":{i},\"function\":{{\"name\":\"a\"}}}}"))
        .collect();
    let s = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"tool_calls\":[{}]}}}}]}}\n\n",
        calls.join(",")
    );
    assert_eq!(
        decode(&[s.as_bytes()]).unwrap_err().kind,
        LlmErrorKind::Protocol
    );
    let big = "x".repeat(MAX_TOOL_ARGUMENT_BYTES + 1);
    let s = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"tool_calls\":[{{\"index\":0,\"function\":{{\"arguments\":\"{big}\"}}}}]}}}}]}}\n\n"
    );
    assert_eq!(
        decode(&[s.as_bytes()]).unwrap_err().kind,
        LlmErrorKind::Protocol
    );
}

proptest! {
    /// Cut into random pieces, the recorded stream decodes to the same text and round.
    #[test]
    fn recorded_tool_round_random_splits(mut cuts in proptest::collection::vec(0..RECORDED.len(), 0..24)) {
        let bytes = RECORDED.as_bytes();
        cuts.sort();
        let mut chunks = Vec::new();
        let mut at = 0;
        for c in cuts {
            chunks.push(&bytes[at..c]);
            at = c;
        }
        chunks.push(&bytes[at..]);
        let (pieces, round) = decode(&chunks).unwrap();
        prop_assert_eq!(text(&pieces), "Let me cal\u{e7}ulate \u{1F9EE}");
        prop_assert_eq!(round, expected_round());
    }
}

//! An incremental Server-Sent Events parser: bytes in (split anywhere, even inside a UTF-8
//! character or a CRLF), complete events out, as the WHATWG event-stream grammar defines them.

/// The largest event (all its `data:` lines) accepted: far above any chunk a model server sends
/// (one token, or one tool-call fragment), while a server that never ends a line cannot make
/// us buffer without bound.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when one was given.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Why a stream could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("event larger than {MAX_EVENT_BYTES} bytes")]
    TooLarge,
    #[error("event data is not UTF-8")]
    NotUtf8,
}

/// The parser's state between pushes.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// The previous push ended on `\r`: a `\n` starting the next push belongs to it.
    after_cr: bool,
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
    /// Bytes at the very start of the stream still to check for a UTF-8 byte-order mark.
    at_start: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        SseParser {
            at_start: true,
            ..SseParser::default()
        }
    }

    /// Feeds bytes; complete events are appended to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(end) = bytes.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.extend_line(&bytes[..end])?;
            let crlf_split = bytes[end] == b'\r' && end + 1 == bytes.len();
            let skip = if bytes[end] == b'\r' && bytes.get(end + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            bytes = &bytes[end + skip..];
            self.after_cr = crlf_split;
            self.end_line(out)?;
        }
        self.extend_line(bytes)
    }

    /// Ends the stream. A last event the server did not terminate with a blank line is still
    /// dispatched: a stream cut short after a complete `data:` line should not lose it.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if !self.line.is_empty() {
            self.end_line(out)?;
        }
        self.dispatch(out)
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > MAX_EVENT_BYTES {
            return Err(SseError::TooLarge);
        }
        self.line.extend_from_slice(bytes);
        if self.at_start && self.line.len() >= 3 {
            self.at_start = false;
            if self.line.starts_with(b"\xEF\xBB\xBF") {
                self.line.drain(..3);
            }
        }
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        self.at_start = false;
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            return self.dispatch(out);
        }
        if line[0] == b':' {
            return Ok(()); // a comment: keep-alives are sent this way
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (&line[..], &b""[..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > MAX_EVENT_BYTES {
                    return Err(SseError::TooLarge);
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event =
                    Some(String::from_utf8(value.to_vec()).map_err(|_| SseError::NotUtf8)?);
            }
            _ => {} // id, retry and unknown fields mean nothing to a one-shot stream
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return Ok(());
        }
        let data =
            String::from_utf8(std::mem::take(&mut self.data)).map_err(|_| SseError::NotUtf8)?;
        out.push(SseEvent { event, data });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, SseError> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.push(c, &mut out)?;
        }
        p.finish(&mut out)?;
        Ok(out)
    }

    fn data(d: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: d.to_owned(),
        }
    }

    /// A recorded-style stream with every feature the grammar has: comments, keep-alives, CRLF,
    /// lone CR, multi-line data, an `event:` field, ids, a BOM and multi-byte characters.
    const RECORDED: &[u8] =
        b"\xEF\xBB\xBF: keep-alive\r\n\r\ndata: {\"a\":\"h\xC3\xA9llo \xF0\x9F\x98\x80\"}\r\n\r\n\
id: 7\nretry: 100\ndata:first\ndata: second\n\n:ping\n\nevent: error\ndata: {\"e\":1}\r\r\
data\n\ndata: [DONE]\n\n";

    fn recorded_events() -> Vec<SseEvent> {
        vec![
            data("{\"a\":\"h\u{e9}llo \u{1F600}\"}"),
            data("first\nsecond"),
            SseEvent {
                event: Some("error".into()),
                data: "{\"e\":1}".into(),
            },
            data(""),
            data("[DONE]"),
        ]
    }

    /// The recorded stream parses into exactly its five events when fed whole.
    #[test]
    fn recorded_stream_whole() {
        assert_eq!(parse_all(&[RECORDED]).unwrap(), recorded_events());
    }

    /// Split at every single byte boundary into two pieces, the stream parses the same.
    #[test]
    fn recorded_stream_split_at_every_byte() {
        for i in 0..=RECORDED.len() {
            let (a, b) = RECORDED.split_at(i);
            assert_eq!(
                parse_all(&[a, b]).unwrap(),
                recorded_events(),
                "split at {i}"
            );
        }
    }

    /// Fed one byte at a time, the stream parses the same.
    #[test]
    fn recorded_stream_byte_by_byte() {
        let chunks: Vec<&[u8]> = RECORDED.chunks(1).collect();
        assert_eq!(parse_all(&chunks).unwrap(), recorded_events());
    }

    /// A stream that ends without a blank line still yields its last complete event.
    #[test]
    fn unterminated_last_event_is_dispatched() {
        assert_eq!(
            parse_all(&[b"data: a\n\ndata: b"]).unwrap(),
            vec![data("a"), data("b")]
        );
        assert_eq!(
            parse_all(&[b"data: a\n\ndata: b\n"]).unwrap(),
            vec![data("a"), data("b")]
        );
        assert_eq!(parse_all(&[b": only a comment"]).unwrap(), vec![]);
    }

    /// An event may not grow without bound, and data must be UTF-8.
    #[test]
    fn limits_and_utf8() {
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(parse_all(&[b"data: ", &big]), Err(SseError::TooLarge));
        assert_eq!(parse_all(&[b"data: \xFF\xFE\n\n"]), Err(SseError::NotUtf8));
    }

    proptest! {
        /// Split at any set of random boundaries (mid-line, mid-CRLF, mid-UTF-8), the recorded
        /// stream parses the same.
        #[test]
        fn recorded_stream_random_splits(mut cuts in proptest::collection::vec(0..RECORDED.len(), 0..12)) {
            cuts.sort();
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts {
                chunks.push(&RECORDED[at..c]);
                at = c;
            }
            chunks.push(&RECORDED[at..]);
            prop_assert_eq!(parse_all(&chunks).unwrap(), recorded_events());
        }
    }
}

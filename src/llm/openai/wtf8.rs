//! JSON strings that may carry unpaired UTF-16 surrogate escapes (`"\ud83d"`), as some servers
//! send when they cut an emoji's surrogate pair between two stream chunks: read leniently, pairs
//! split over chunks joined again, and a surrogate that stays alone replaced with U+FFFD.

use serde::de::{Deserialize, Deserializer, Error, Visitor};
use std::fmt;

/// A JSON string as WTF-8 bytes: serde_json reads a string as bytes without rejecting lone
/// surrogate escapes, encoding each as a three-byte sequence (`ED A0..BF ..`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wtf8(pub Vec<u8>);

impl Wtf8 {
    /// The string with every unpaired surrogate replaced by U+FFFD.
    pub fn lossy(&self) -> String {
        let mut joiner = SurrogateJoiner::default();
        let mut out = joiner.push(&self.0);
        joiner.finish(&mut out);
        out
    }
}

impl<'de> Deserialize<'de> for Wtf8 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl Visitor<'_> for Bytes {
            type Value = Wtf8;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Wtf8, E> {
                Ok(Wtf8(v.to_vec()))
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Wtf8, E> {
                Ok(Wtf8(v))
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Wtf8, E> {
                Ok(Wtf8(v.as_bytes().to_vec()))
            }
        }
        d.deserialize_bytes(Bytes)
    }
}

/// Turns a sequence of WTF-8 pieces (one stream's text, chunk by chunk) into UTF-8: a high
/// surrogate at the end of one piece waits for the low one that may start the next.
#[derive(Debug, Default)]
pub struct SurrogateJoiner {
    high: Option<u32>,
}

impl SurrogateJoiner {
    /// The UTF-8 text of `bytes`, less a trailing high surrogate kept for the next piece.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len());
        let mut rest = bytes;
        while !rest.is_empty() {
            let (valid, tail) = match std::str::from_utf8(rest) {
                Ok(all) => (all, &b""[..]),
                Err(e) => {
                    let (valid, tail) = rest.split_at(e.valid_up_to());
                    (std::str::from_utf8(valid).unwrap_or_default(), tail)
                }
            };
            if !valid.is_empty() {
                self.finish(&mut out);
                out.push_str(valid);
            }
            rest = match tail {
                [0xED, b1 @ 0xA0..=0xBF, b2, more @ ..] => {
                    self.unit(
                        0xD000 | (u32::from(b1 & 0x3F) << 6) | u32::from(b2 & 0x3F),
                        &mut out,
                    );
                    more
                }
                [] => tail,
                // Not WTF-8 either (serde_json never produces this): one replacement per byte.
                [_, more @ ..] => {
                    self.finish(&mut out);
                    out.push(char::REPLACEMENT_CHARACTER);
                    more
                }
            };
        }
        out
    }

    /// Ends the stream (or the text before a non-text event): a high surrogate still waiting
    /// becomes U+FFFD.
    pub fn finish(&mut self, out: &mut String) {
        if self.high.take().is_some() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }

    fn unit(&mut self, unit: u32, out: &mut String) {
        if unit < 0xDC00 {
            self.finish(out);
            self.high = Some(unit);
            return;
        }
        let joined = self
            .high
            .take()
            .and_then(|high| char::from_u32(0x1_0000 + ((high - 0xD800) << 10) + (unit - 0xDC00)));
        out.push(joined.unwrap_or(char::REPLACEMENT_CHARACTER));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(json: &str) -> Wtf8 {
        serde_json::from_str(json).unwrap()
    }

    /// A pair split over two strings is joined; a lone high or low surrogate becomes U+FFFD;
    /// ordinary text and pairs within one string pass unchanged.
    #[test]
    fn surrogates_join_or_are_replaced() {
        let mut j = SurrogateJoiner::default();
        assert_eq!(j.push(&content(r#""a\ud83d""#).0), "a");
        assert_eq!(j.push(&content(r#""\ude00b""#).0), "\u{1F600}b");
        assert_eq!(j.push(&content(r#""\ud83d""#).0), "");
        assert_eq!(j.push(&content(r#""x""#).0), "\u{FFFD}x");
        assert_eq!(
            j.push(&content(r#""\ude00\ud83d\ud83d\ude00""#).0),
            "\u{FFFD}\u{FFFD}\u{1F600}"
        );
        assert_eq!(j.push(&content(r#""\ud83d""#).0), "");
        let mut end = String::new();
        j.finish(&mut end);
        assert_eq!(end, "\u{FFFD}");
        assert_eq!(
            content(r#""h\u00e9 \ud83d\ude00 ok""#).lossy(),
            "h\u{e9} \u{1F600} ok"
        );
        assert_eq!(
            content("\"d\u{e9}j\u{e0} \u{1F600}\"").lossy(),
            "d\u{e9}j\u{e0} \u{1F600}"
        );
    }
}

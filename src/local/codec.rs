//! The encodings API Gateway applies: `%XX` escapes in paths and queries, base64 for binary
//! bodies and for the `Sec-WebSocket-Key` nonce.

/// Decodes `%XX` escapes; invalid escapes stay as they are (API Gateway is as lenient).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a query string into decoded (name, value) pairs, in order.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(pair), String::new()),
        })
        .collect()
}

/// Standard base64 with padding (binary message bodies).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// How many bytes `s` encodes as padded standard base64, or `None` when it is not that.
pub fn base64_decoded_len(s: &[u8]) -> Option<usize> {
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let pad = s.iter().rev().take_while(|c| **c == b'=').count();
    let digits = s.get(..s.len() - pad.min(2))?;
    let is_digit = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    digits.iter().all(is_digit).then(|| s.len() / 4 * 3 - pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queries decode, keep every value, and leave invalid escapes as they are.
    #[test]
    fn queries_decode() {
        assert_eq!(
            parse_query("user_id=alice-01&a=%3D%zz&a=2&flag"),
            vec![
                ("user_id".to_owned(), "alice-01".to_owned()),
                ("a".to_owned(), "=%zz".to_owned()),
                ("a".to_owned(), "2".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
    }

    /// Base64 matches RFC 4648's test vectors.
    #[test]
    fn base64_matches_rfc_4648() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    /// Only padded standard base64 has a decoded length, and it is the right one.
    #[test]
    fn base64_lengths_are_checked() {
        assert_eq!(base64_decoded_len(b"dGhlIHNhbXBsZSBub25jZQ=="), Some(16));
        assert_eq!(base64_decoded_len(b"Zm9v"), Some(3));
        assert_eq!(base64_decoded_len(b"Zm8="), Some(2));
        assert_eq!(base64_decoded_len(b""), Some(0));
        assert_eq!(base64_decoded_len(b"dGhlIHNhbXBsZSBub25j"), Some(15));
        for bad in [&b"x"[..], b"Zm9", b"Zm*v", b"Z===", b"====", b"Zm=v"] {
            assert_eq!(base64_decoded_len(bad), None, "{bad:?}");
        }
    }
}

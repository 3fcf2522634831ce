//! API Gateway style ids: `connectionId`, `requestId` and `messageId` (`L0SM9cOFvHcCIhw=`),
//! `apiId` (`a1b2c3d4e5`) and trace ids, unique per process and unpredictable.

pub use crate::run::ids::IdGen;

/// Characters of a 16-character API Gateway id before its `=` padding. API Gateway's ids are
/// base64; `+` and `/` are left out so an id is a valid `connection_id` and a clean URL path
/// segment.
const ID_CHARS: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Characters of an `apiId` (lowercase alphanumerics, 10 of them).
const API_ID_CHARS: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// The ids the local gateway makes up, from the shared generator (`crate::run::ids::IdGen`).
impl IdGen {
    fn chars(&self, alphabet: &[u8], n: usize) -> String {
        let mut out = String::with_capacity(n + 1);
        let mut bits = self.next_u64();
        let mut left = 64u32;
        let base = alphabet.len() as u64;
        for _ in 0..n {
            // Each draw uses ~6 bits; refill before the remaining entropy gets thin.
            if left < 12 {
                bits = self.next_u64();
                left = 64;
            }
            out.push(char::from(alphabet[(bits % base) as usize]));
            bits /= base;
            left -= 6;
        }
        out
    }

    /// An id shaped like API Gateway's `connectionId` / `requestId` / `messageId`: 15 base64
    /// characters and one `=`.
    pub fn aws_id(&self) -> String {
        let mut id = self.chars(ID_CHARS, 15);
        id.push('=');
        id
    }

    /// An `apiId`: 10 lowercase alphanumerics.
    pub fn api_id(&self) -> String {
        self.chars(API_ID_CHARS, 10)
    }

    /// `n` lowercase hex digits (trace ids).
    pub fn hex(&self, n: usize) -> String {
        self.chars(b"0123456789abcdef", n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids have API Gateway's shape, pass the function's id validation and do not repeat.
    #[test]
    fn ids_have_the_aws_shape_and_are_unique() {
        let g = IdGen::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = g.aws_id();
            assert_eq!(id.len(), 16);
            assert!(id.ends_with('=') && id[..15].bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(crate::context::validate_aws_id("connection_id", &id).is_ok());
            assert!(seen.insert(id));
        }
        let api = g.api_id();
        assert_eq!(api.len(), 10);
        assert!(
            api.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
    }
}

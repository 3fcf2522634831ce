//! Run ids: derived from (user, idempotency key), so a retried request maps to the same item.

use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// Bytes of the SHA-256 digest kept in a run id: 128 bits, so no two (user, key) pairs ever
/// share an id in practice, in a 36-character id well under `MAX_ID_LEN`.
const RUN_ID_DIGEST_BYTES: usize = 16;

/// A run's id: derived from (user, idempotency key), so the idempotent create is one
/// conditional write with no separate idempotency item.
pub fn derive_run_id(user_id: &str, idempotency_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(user_id.as_bytes());
    h.update([0u8]);
    h.update(idempotency_key.as_bytes());
    let digest = h.finalize();
    let mut id = String::with_capacity(4 + 2 * RUN_ID_DIGEST_BYTES);
    id.push_str("run_");
    for b in &digest[..RUN_ID_DIGEST_BYTES] {
        // Writing into a String cannot fail.
        let _ = write!(id, "{b:02x}");
    }
    id
}

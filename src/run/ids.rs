//! Run ids: derived from (owner, idempotency key), so a retried request maps to the same item;
//! and the create token that tells a create's own write from another request's.

use crate::store::Owner;
use sha2::{Digest, Sha256};
use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A generator of values unique per process and unpredictable: SipHash, with the process's
/// random keys, of a counter. Create tokens here; the local gateway's made-up API Gateway ids.
#[derive(Default)]
pub struct IdGen {
    keys: RandomState,
    counter: AtomicU64,
}

impl IdGen {
    /// A generator with fresh random keys.
    pub fn new() -> IdGen {
        IdGen::default()
    }

    /// The next value: never the same twice from one generator.
    pub fn next_u64(&self) -> u64 {
        let mut h = self.keys.build_hasher();
        h.write_u64(self.counter.fetch_add(1, Ordering::Relaxed));
        h.finish()
    }
}

/// A token unique to one create attempt, stored with the run it writes: a create whose answer
/// was lost and that the SDK retried meets an item carrying its own token, and knows it wrote
/// it; a second request for the same run never does.
pub fn create_token() -> String {
    static TOKENS: OnceLock<IdGen> = OnceLock::new();
    format!("{:016x}", TOKENS.get_or_init(IdGen::new).next_u64())
}

/// Bytes of the SHA-256 digest kept in a run id: 128 bits, so no two (owner, key) pairs ever
/// share an id in practice, in a 36-character id well under `MAX_ID_LEN`.
const RUN_ID_DIGEST_BYTES: usize = 16;

/// A run's id: derived from (owner, idempotency key), so the idempotent create is one
/// conditional write with no separate idempotency item. The owner enters as [`Owner::key`]:
/// the bare user id without a tenant (ids are what they always were), the tenant and user with
/// one (so two tenants' users who share an id and a `request_id` get different runs).
pub fn derive_run_id<'a>(owner: impl Into<Owner<'a>>, idempotency_key: &str) -> String {
    let owner = owner.into();
    let mut h = Sha256::new();
    h.update(owner.key().as_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every create attempt gets its own token, also many in one process at once.
    #[test]
    fn create_tokens_differ_each_time() {
        let tokens: std::collections::HashSet<String> = (0..1000).map(|_| create_token()).collect();
        assert_eq!(tokens.len(), 1000);
    }

    /// Without a tenant a run id is exactly what it was before tenants (no migration); with
    /// one, the same user and key give another id in each tenant.
    #[test]
    fn tenants_change_run_ids_and_single_tenants_keep_theirs() {
        assert_eq!(
            derive_run_id("alice-01", "seed"),
            "run_1bee607a0648a8638c1b7bfedda23d2b"
        );
        let acme = derive_run_id(Owner::new("alice-01", Some("acme")), "seed");
        assert_eq!(acme, "run_8b67994242e796d89c77776f5dc7d3f8");
        assert_ne!(
            acme,
            derive_run_id(Owner::new("alice-01", Some("globex")), "seed")
        );
    }
}

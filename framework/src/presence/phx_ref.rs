//! `phx_ref`: the unique reference the tracker puts on every meta.
//!
//! Phoenix: `Base.url_encode64(<<System.system_time(:nanosecond)::64, :erlang.phash2({node(), self()})::16, System.unique_integer()::16>>)`
//! — 12 bytes, so always 16 characters of base64url without padding. Here: wall-clock
//! nanoseconds, a 16-bit hash of (this node, the owning channel), and a 16-bit counter.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Encodes the three parts as Phoenix lays them out (big-endian) → 16 base64url characters.
pub fn encode(time_ns: u64, owner_hash: u16, counter: u16) -> String {
    let mut bytes = [0u8; 12];
    bytes[..8].copy_from_slice(&time_ns.to_be_bytes());
    bytes[8..10].copy_from_slice(&owner_hash.to_be_bytes());
    bytes[10..].copy_from_slice(&counter.to_be_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Makes refs for one tracker.
pub struct RefGen {
    /// Seeded per process (the `node()` part of Phoenix's hash).
    node: std::collections::hash_map::RandomState,
    /// `unique_integer` part: wraps, and only has to differ between refs of the same nanosecond.
    counter: AtomicU16,
}

impl Default for RefGen {
    fn default() -> Self {
        RefGen {
            node: std::collections::hash_map::RandomState::new(),
            counter: AtomicU16::new(rand::random()),
        }
    }
}

impl RefGen {
    /// A fresh ref for a meta owned by `owner`.
    pub fn next(&self, owner: u64) -> String {
        let ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let hash = self.node.hash_one(owner) as u16;
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        encode(ns, hash, counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_phoenix() {
        // A ref from the Phoenix 1.7.24 transcript decodes to these three parts.
        let phoenix = "GOthXEDFkYvA1wYh";
        let bytes = URL_SAFE_NO_PAD.decode(phoenix).expect("base64url");
        assert_eq!(bytes.len(), 12);
        let ns = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
        let hash = u16::from_be_bytes([bytes[8], bytes[9]]);
        let counter = u16::from_be_bytes([bytes[10], bytes[11]]);
        assert_eq!(encode(ns, hash, counter), phoenix);
    }

    #[test]
    fn refs_are_16_url_safe_chars_and_unique() {
        let g = RefGen::default();
        let refs: std::collections::HashSet<String> = (0..10_000).map(|i| g.next(i % 7)).collect();
        assert_eq!(refs.len(), 10_000);
        for r in &refs {
            assert_eq!(r.len(), 16, "{r}");
            assert!(r
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
    }
}

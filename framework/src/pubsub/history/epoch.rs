//! A topic history's epoch: which continuous run of offsets a position belongs to.

use std::sync::Arc;

/// A random id chosen when a topic's history starts on this node.
///
/// Why random rather than a counter or a timestamp: the epoch must change whenever continuity
/// is lost — a restart without persistence, a topic's history forgotten after it idled — and
/// a counter restarts with the process, a timestamp can repeat (same millisecond, clocks set
/// back). 64 random bits, written as 16 lowercase hex digits: a JSON string, because a
/// JavaScript number cannot hold 64 bits and the client only ever compares it for equality.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Epoch(Arc<str>);

impl Epoch {
    /// A fresh epoch.
    pub fn random() -> Epoch {
        let n: u64 = rand::random();
        Epoch(format!("{n:016x}").into())
    }

    /// The epoch as it goes on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

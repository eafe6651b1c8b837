//! How much of a topic's past a history route keeps.

use std::time::Duration;

/// The bounds of one topic's history on this node. Each bound trims the oldest broadcasts
/// first; whichever is reached first wins, so memory per topic is at most `max_bytes` (plus a
/// fixed cost per kept broadcast, counted in it) however fast the topic is written.
///
/// A client whose cursor points before the oldest kept broadcast gets `recovered: false` —
/// never a silent gap — and refetches, as a Rumbl client does with `last_seen_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryOptions {
    /// At most this many broadcasts per topic.
    pub max_messages: usize,
    /// None older than this (counted from when the broadcast was stamped on this node).
    pub max_age: Duration,
    /// At most this many bytes per topic, as estimated for each kept broadcast: its payload's
    /// memory (the JSON tree, or the binary's length), topic, event and
    /// [`ENTRY_OVERHEAD`](super::ENTRY_OVERHEAD).
    pub max_bytes: usize,
}

impl Default for HistoryOptions {
    /// 1,000 broadcasts, 300 s, 4 MiB: the conformance fixture's 1,000 and 300 s, with a byte
    /// bound that lets a topic keep its 1,000 broadcasts of small (≤ ~3 KiB) payloads.
    fn default() -> Self {
        HistoryOptions {
            max_messages: 1_000,
            max_age: Duration::from_secs(300),
            max_bytes: 4 * 1024 * 1024,
        }
    }
}

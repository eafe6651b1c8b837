//! One topic's history on this node: its epoch, its latest offset and the broadcasts it keeps.
//!
//! Pure state: no locks, no clock of its own (every method is given `now`), so the rules —
//! consecutive offsets, trimming, when a cursor is recoverable — are tested alone.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::time::Instant;

use super::recovery::{Outcome, Recovery};
use super::{Epoch, HistoryOptions, Since};
use crate::pubsub::BroadcastMsg;

/// One kept broadcast.
#[derive(Debug)]
struct Entry {
    /// Its offset in the topic's epoch.
    offset: u64,
    /// When it was stamped, for `max_age`.
    at: Instant,
    /// What it counts against `max_bytes`.
    bytes: usize,
    /// The broadcast itself: the same `Arc` the fan-out delivered, so keeping it copies nothing.
    msg: Arc<BroadcastMsg>,
}

/// The size of one entry in a topic's ring (part of [`super::ENTRY_OVERHEAD`]).
pub(super) const ENTRY_BYTES: usize = std::mem::size_of::<Entry>();

/// How much a change removed or added, for the memory gauges.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    /// Broadcasts kept, added minus trimmed.
    pub messages: i64,
    /// Bytes kept, added minus trimmed.
    pub bytes: i64,
}

/// A topic's history.
#[derive(Debug)]
pub struct TopicLog {
    /// Chosen when this log was created; offsets are consecutive within it.
    epoch: Epoch,
    /// The offset of the latest broadcast (0 before the first).
    latest: u64,
    /// The kept broadcasts, oldest first, offsets consecutive and ending at `latest`.
    entries: VecDeque<Entry>,
    /// Sum of the entries' `bytes`.
    bytes: usize,
    /// The last append or join: a log idle for `max_age` holds nothing a client could recover
    /// beyond its position, and can be forgotten (see [`TopicLog::idle_since`]).
    touched: Instant,
}

impl TopicLog {
    /// A new log with a fresh epoch and no broadcasts.
    pub fn new(now: Instant) -> TopicLog {
        TopicLog {
            epoch: Epoch::random(),
            latest: 0,
            entries: VecDeque::new(),
            bytes: 0,
            touched: now,
        }
    }

    /// The epoch.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// The latest offset.
    pub fn latest(&self) -> u64 {
        self.latest
    }

    /// How many broadcasts are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the log was last written or joined.
    pub fn idle_since(&self) -> Instant {
        self.touched
    }

    /// Stamps `msg` with the next offset and keeps it (`bytes` is what it weighs), trimming to
    /// `options`; returns the offset and the change in what is kept.
    pub fn append(
        &mut self,
        msg: Arc<BroadcastMsg>,
        bytes: usize,
        now: Instant,
        options: &HistoryOptions,
    ) -> (u64, Delta) {
        self.latest += 1;
        self.touched = now;
        self.entries.push_back(Entry {
            offset: self.latest,
            at: now,
            bytes,
            msg,
        });
        self.bytes += bytes;
        let trimmed = self.trim(now, options);
        (
            self.latest,
            Delta {
                messages: 1 + trimmed.messages,
                bytes: bytes as i64 + trimmed.bytes,
            },
        )
    }

    /// Drops the oldest broadcasts past any bound; returns the (negative) change.
    pub fn trim(&mut self, now: Instant, options: &HistoryOptions) -> Delta {
        let mut delta = Delta::default();
        while let Some(first) = self.entries.front() {
            let too_old = now.saturating_duration_since(first.at) > options.max_age;
            let too_many = self.entries.len() > options.max_messages;
            let too_big = self.bytes > options.max_bytes;
            if !(too_old || too_many || too_big) {
                break;
            }
            self.bytes -= first.bytes;
            delta.messages -= 1;
            delta.bytes -= first.bytes as i64;
            self.entries.pop_front();
        }
        delta
    }

    /// Where a joiner stands, and what it missed when it can have it: same epoch, cursor not
    /// past `latest`, and every offset after the cursor still kept. Trims by age first, so a
    /// cursor into broadcasts older than `max_age` is not recovered. Returns the change in what
    /// is kept, too.
    pub fn recover(
        &mut self,
        since: Option<&Since>,
        now: Instant,
        options: &HistoryOptions,
    ) -> (Recovery, Delta) {
        let delta = self.trim(now, options);
        self.touched = now;
        let outcome = match since {
            None => Outcome::NoCursor,
            Some(s) if s.epoch != self.epoch.as_str() => Outcome::EpochChanged,
            Some(s) if s.offset > self.latest => Outcome::Ahead,
            Some(s) => {
                // The oldest offset still kept; `latest + 1` when none is.
                let oldest = self.entries.front().map_or(self.latest + 1, |e| e.offset);
                if s.offset + 1 >= oldest {
                    Outcome::Recovered
                } else {
                    Outcome::Trimmed
                }
            }
        };
        let missed = match (outcome, since, self.entries.front()) {
            // Offsets are consecutive: the first missed one sits at a known index.
            (Outcome::Recovered, Some(s), Some(first)) => self
                .entries
                .iter()
                .skip((s.offset + 1 - first.offset) as usize)
                .map(|e| e.msg.clone())
                .collect(),
            _ => Vec::new(),
        };
        (
            Recovery {
                outcome,
                epoch: self.epoch.clone(),
                offset: self.latest,
                missed,
            },
            delta,
        )
    }
}

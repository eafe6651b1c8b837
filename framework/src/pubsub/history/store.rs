//! The histories of one history route's topics on this node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;
use phx_protocol::Payload;
use serde_json::Value;
use tokio::time::Instant;

use super::recovery::Recovery;
use super::topic::{Delta, TopicLog};
use super::{HistoryOptions, Since, ENTRY_OVERHEAD};
use crate::metrics::Metrics;
use crate::pubsub::BroadcastMsg;

/// Every how many appends (over the route's topics) the idle topics are swept: amortised into
/// the write path so that no timer task exists for a server that never uses history.
const SWEEP_EVERY: u64 = 4096;

/// One route's topic histories.
pub struct HistoryStore {
    /// The route's bounds.
    options: HistoryOptions,
    /// topic → its log. Each log has a lock of its own, held while a broadcast is stamped *and
    /// fanned out*: that is what makes every subscriber's delivery order the offset order (see
    /// the module docs); the map's shard lock is only held to find the log.
    topics: DashMap<Box<str>, Arc<Mutex<TopicLog>>>,
    /// Appends since the store was made, for [`SWEEP_EVERY`].
    appends: AtomicU64,
    /// The gauges and the recovery counter.
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for HistoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryStore")
            .field("options", &self.options)
            .field("topics", &self.topics.len())
            .finish_non_exhaustive()
    }
}

impl HistoryStore {
    /// An empty store with `options`, reporting into `metrics`.
    pub fn new(options: HistoryOptions, metrics: Arc<Metrics>) -> HistoryStore {
        HistoryStore {
            options,
            topics: DashMap::new(),
            appends: AtomicU64::new(0),
            metrics,
        }
    }

    /// The bounds.
    pub fn options(&self) -> &HistoryOptions {
        &self.options
    }

    fn log(&self, topic: &str, now: Instant) -> Arc<Mutex<TopicLog>> {
        if let Some(log) = self.topics.get(topic) {
            return log.clone();
        }
        self.topics
            .entry(topic.into())
            .or_insert_with(|| {
                self.metrics.history.topics.inc();
                Arc::new(Mutex::new(TopicLog::new(now)))
            })
            .clone()
    }

    fn account(&self, delta: Delta) {
        if delta.messages != 0 {
            self.metrics.history.messages.inc_by(delta.messages);
        }
        if delta.bytes != 0 {
            self.metrics.history.bytes.inc_by(delta.bytes);
        }
    }

    /// Stamps `msg` with its topic's next offset, keeps it, and runs `fan_out(offset)` — all
    /// under the topic's lock, so no other broadcast on the topic is stamped or delivered in
    /// between, and a join reading the topic (see [`HistoryStore::recover`]) sees either the
    /// broadcast kept and delivered, or neither. `fan_out` must not block, nor broadcast on
    /// the same topic itself (a `Callback` subscriber that re-broadcasts synchronously would
    /// wait on the lock it runs under).
    pub(crate) fn record<R>(&self, msg: &Arc<BroadcastMsg>, fan_out: impl FnOnce(u64) -> R) -> R {
        let now = Instant::now();
        let bytes = weight(msg);
        let result = self.with_log(&msg.topic, now, |log| {
            let (offset, delta) = log.append(msg.clone(), bytes, now, &self.options);
            (fan_out(offset), delta)
        });
        if self.appends.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now);
        }
        result
    }

    /// Runs `f` on `topic`'s log under its lock, and accounts the change it reports. If a
    /// sweep forgot the log between finding and locking it, starts over with a fresh one, so
    /// nothing is ever written to a log nobody can read.
    fn with_log<R>(
        &self,
        topic: &str,
        now: Instant,
        f: impl FnOnce(&mut TopicLog) -> (R, Delta),
    ) -> R {
        loop {
            let log = self.log(topic, now);
            let mut guard = log.lock();
            // Lock order: a topic's lock, then the map's shard (a sweep only try-locks topics).
            let current = self
                .topics
                .get(topic)
                .is_some_and(|entry| Arc::ptr_eq(entry.value(), &log));
            if !current {
                continue;
            }
            let (result, delta) = f(&mut guard);
            self.account(delta);
            return result;
        }
    }

    /// A joiner's position on `topic` and, when `since` is recoverable, what it missed. Call it
    /// after the channel subscribed: every broadcast stamped after this read reaches the channel
    /// live, every one before it is at most `offset`. Starts the topic's history (its epoch) if
    /// it has none yet, so the position given is one a later join can resume from.
    pub fn recover(&self, topic: &str, since: Option<&Since>) -> Recovery {
        let now = Instant::now();
        let recovery = self.with_log(topic, now, |log| log.recover(since, now, &self.options));
        self.metrics
            .history
            .recoveries
            .get_or_create(&crate::metrics::RecoveryLabels {
                outcome: recovery.outcome.label(),
            })
            .inc();
        recovery
    }

    /// Forgets the topics idle (no broadcast, no join) for longer than `max_age`, whose kept
    /// broadcasts have all aged out: their epoch goes with them, so a client still holding a
    /// position there gets `recovered: false` and refetches. Without this, every topic ever
    /// written would keep a log. A topic being written or joined right now is kept.
    pub fn sweep(&self, now: Instant) {
        let max_age = self.options.max_age;
        let mut forgotten = Delta::default();
        let mut removed = 0;
        self.topics.retain(|_, log| {
            let Some(mut log) = log.try_lock() else {
                return true;
            };
            if now.saturating_duration_since(log.idle_since()) <= max_age {
                return true;
            }
            let d = log.trim(now, &self.options);
            forgotten.messages += d.messages - log.len() as i64;
            forgotten.bytes += d.bytes - log.bytes() as i64;
            removed += 1;
            false
        });
        self.account(forgotten);
        if removed > 0 {
            self.metrics.history.topics.dec_by(removed);
        }
    }

    /// The position of `topic` (epoch, latest offset) if it has a history here.
    pub fn position(&self, topic: &str) -> Option<(super::Epoch, u64)> {
        let log = self.topics.get(topic)?.clone();
        let log = log.lock();
        Some((log.epoch().clone(), log.latest()))
    }
}

/// What one kept broadcast counts against `max_bytes`: an estimate of the memory it holds —
/// its payload as the in-memory JSON tree (or its binary length), its topic and event, and the
/// fixed cost of an entry ([`ENTRY_OVERHEAD`]). An estimate of memory rather than the JSON
/// text's length, because the tree is what is kept: a small JSON object costs a B-tree leaf of
/// ~630 bytes whatever its text (measured: ~1.1 kB of RSS per kept `{"seq","t","pad":200 B}`
/// broadcast, which this estimates at ~1 kB; docs/history.md).
pub(crate) fn weight(msg: &BroadcastMsg) -> usize {
    let payload = match &msg.payload {
        Payload::Binary(b) => b.len(),
        Payload::Json(v) => heap_size(v),
    };
    payload + msg.topic.len() + msg.event.capacity() + ENTRY_OVERHEAD
}

/// A `serde_json::Map` is a `BTreeMap<String, Value>`, whose leaf nodes hold 11 entries each,
/// allocated whole; plus a parent pointer and two lengths.
const BTREE_LEAF_BYTES: usize =
    11 * (std::mem::size_of::<String>() + std::mem::size_of::<Value>()) + 16;

/// The heap bytes below a JSON value (the value itself is counted by its parent). Walks the
/// tree once without allocating; only history topics pay for it.
pub(crate) fn heap_size(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.capacity(),
        Value::Array(a) => {
            a.capacity() * std::mem::size_of::<Value>() + a.iter().map(heap_size).sum::<usize>()
        }
        Value::Object(m) => {
            m.len().div_ceil(11) * BTREE_LEAF_BYTES
                + m.iter()
                    .map(|(k, v)| k.capacity() + heap_size(v))
                    .sum::<usize>()
        }
    }
}

//! Message history and recovery after reconnect (a phx-server extension; Phoenix has none).
//!
//! Turned on per channel route ([`crate::Router::channel_with_history`]). For every topic of
//! such a route this node keeps the latest broadcasts, bounded by count, age and bytes
//! ([`HistoryOptions`]), and a client that rejoins with `{"since": {"epoch": E, "offset": N}}`
//! in its join params gets what it missed — with the unmodified `phoenix` client, whose
//! channel re-evaluates a params *function* on every rejoin.
//!
//! ## The stamp: (epoch, offset), and how the client learns it
//!
//! Every broadcast on a history topic gets the topic's [`Epoch`] (random, chosen when the
//! topic's history starts on this node) and the next offset (1, 2, 3, … per topic and epoch).
//! **Nothing is added to the broadcast frames**: they stay byte for byte what the same
//! broadcast on a channel without history would be — so no payload contract changes (a
//! binary payload has nowhere to put a key anyway), the fastlane still encodes once per
//! serializer, and a client that does not care sees exactly today's frames. Only the join
//! reply carries the position: `recovered`, `epoch`, and `offset` (the latest offset, 0 when
//! none) are merged into the channel's reply. Because offsets are consecutive and every
//! subscriber receives the topic's broadcasts in offset order, the client knows each
//! broadcast's offset by counting: joined at `offset` M, having received k broadcasts, it is
//! at M + k (after a recovered join, at its `since` N plus what it received, the replayed
//! broadcasts included). `vendor-js/js/history.js` keeps that count.
//!
//! ## Ordering: why a recovering join gets everything exactly once, in order
//!
//! 1. Stamping and local fan-out of one broadcast happen together under the topic's lock
//!    ([`HistoryStore`]): no two broadcasts of a topic interleave, so every subscriber's
//!    queue, and the history, are in offset order.
//! 2. A channel subscribes to its topic before `join` runs, with its gate closed: a broadcast
//!    fanned out meanwhile is held in its inbox (see [`crate::channel::server`]).
//! 3. After `join` returns, the runtime reads the history under the topic's lock: latest
//!    offset L, and when recoverable the kept broadcasts N+1..=L. Every broadcast up to L was
//!    fanned out before this read; every one after L is fanned out after it, hence after the
//!    subscription — it is held, or delivered live once the gate opens.
//! 4. The socket gets: the join reply (position L), the missed N+1..=L, the pushes `join`
//!    made, then the held broadcasts with offsets above L (those at or below L are dropped: replayed already, or
//!    before the position the reply gave), then the gate opens under the inbox's lock.
//!
//! So however many broadcasts race the join, the client sees N+1, N+2, … with no gap and no
//! duplicate. Cases that cannot be recovered (another epoch, trimmed past N, N beyond the
//! latest, no `since`) answer `recovered: false` and replay nothing: never a silent gap.
//!
//! ## Cost for channels without history
//!
//! The fan-out checks whether an endpoint has any history route (one atomic load of a
//! [`std::sync::OnceLock`] that an endpoint without one never sets); with some, a topic
//! outside them costs a prefix comparison per history route. Their frames, locks and queues
//! are untouched.
//!
//! ## Limits of this increment
//!
//! History is per node, in memory: a restart, or a reconnect to another node of a cluster,
//! gives another epoch, hence `recovered: false`. A broadcast that arrives from another node
//! is stamped by each node on its own. Replayed broadcasts go out as fastlane frames, even for
//! an event the channel intercepts (its `handle_out` is not run again for them), and counting
//! assumes every broadcast of the topic reaches the client once: `broadcast_from` (the sender
//! skips its own) and a `handle_out` that drops or adds pushes break the count.

mod epoch;
mod options;
mod recovery;
mod since;
mod store;
#[cfg(test)]
mod tests;
mod topic;

use std::sync::Arc;

pub use epoch::Epoch;
pub use options::HistoryOptions;
pub use recovery::{Outcome, Recovery};
pub use since::Since;
pub use store::HistoryStore;
pub use topic::{Delta, TopicLog};

use crate::metrics::Metrics;
use crate::topic_pattern::TopicPattern;

/// What one kept broadcast costs besides its payload, topic and event, counted in `max_bytes`
/// and `phx_history_bytes`: the entry in the topic's ring, and the shared broadcast's
/// allocation (its fields and the `Arc`'s two counts).
pub const ENTRY_OVERHEAD: usize =
    topic::ENTRY_BYTES + std::mem::size_of::<crate::pubsub::BroadcastMsg>() + 16;

/// The endpoint's history routes: which topics are stamped and kept, and where.
#[derive(Debug)]
pub struct History {
    /// Each history route's pattern and store, in the order the routes were declared; the
    /// first match wins, as the router's does.
    routes: Vec<(TopicPattern, Arc<HistoryStore>)>,
    /// Where the stores report.
    metrics: Arc<Metrics>,
}

impl History {
    /// No history routes yet.
    pub fn new(metrics: Arc<Metrics>) -> History {
        History {
            routes: Vec::new(),
            metrics,
        }
    }

    /// Keeps history for the topics of `pattern` (as written in a route) within `options`.
    pub fn route(&mut self, pattern: &str, options: HistoryOptions) {
        self.routes.push((
            TopicPattern::parse(pattern),
            Arc::new(HistoryStore::new(options, self.metrics.clone())),
        ));
    }

    /// Whether there is no history route.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The store of `topic`'s route, if `topic` has history.
    #[inline]
    pub fn store_for(&self, topic: &str) -> Option<&Arc<HistoryStore>> {
        self.routes
            .iter()
            .find(|(p, _)| p.matches(topic))
            .map(|(_, s)| s)
    }
}

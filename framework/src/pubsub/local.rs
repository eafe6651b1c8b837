//! This node's subscriptions: a sharded map of topic → subscribers, and the fastlane.
//!
//! Fan-out holds one shard's read lock while it queues frames (no await, no I/O inside), so
//! publishers on different topics never contend and publishers on the same topic share the
//! read lock. A broadcast is encoded at most once per serializer, lazily on the first
//! subscriber that needs it, and every other subscriber gets a clone of the same bytes.

use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use phx_protocol::Serializer;

use super::history::{History, HistoryStore};
use super::{BroadcastMsg, Interceptor};
use crate::conn::{ConnHandle, OutFrame};
use crate::metrics::Metrics;

/// A listener called for every broadcast on a topic.
pub type BroadcastCallback = Arc<dyn Fn(&Arc<BroadcastMsg>) + Send + Sync>;

/// How a subscriber takes a broadcast.
pub enum SubscriberKind {
    /// A joined channel: fastlane to its socket, unless the event is intercepted, in which
    /// case the broadcast goes to the channel (`handle_out`).
    Channel {
        /// The socket the channel belongs to.
        conn: Arc<ConnHandle>,
        /// Events routed through `handle_out` instead of the fastlane.
        intercepts: &'static [&'static str],
        /// Where intercepted events go.
        interceptor: Arc<dyn Interceptor>,
    },
    /// A socket subscribed to its own id: a `"disconnect"` event closes it with 1001.
    SocketId {
        /// The socket.
        conn: Arc<ConnHandle>,
    },
    /// Any other listener (Presence, tests): called for every broadcast on the topic.
    Callback(BroadcastCallback),
}

/// One subscription.
pub struct Subscriber {
    /// Unique id, used by `unsubscribe` and to skip the sender of `broadcast_from`.
    pub id: u64,
    /// How it takes broadcasts.
    pub kind: SubscriberKind,
}

/// The local subscription table.
pub struct LocalPubSub {
    /// topic → subscribers. A `Vec` rather than a map: fan-out iterates it, and iteration over
    /// contiguous memory is what the hot path does most.
    topics: DashMap<Box<str>, Vec<Subscriber>>,
    /// Counters.
    metrics: Arc<Metrics>,
    /// The endpoint's history routes, set once when it is built; never set for an endpoint
    /// without any, so their fan-out pays one atomic load for the feature.
    history: OnceLock<History>,
}

impl Default for LocalPubSub {
    fn default() -> Self {
        LocalPubSub::new(Arc::new(Metrics::default()))
    }
}

impl LocalPubSub {
    /// An empty table reporting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        LocalPubSub {
            topics: DashMap::new(),
            metrics,
            history: OnceLock::new(),
        }
    }

    /// Turns history on for `history`'s routes. Once only, before the first broadcast (the
    /// endpoint does it when it is built); a second call gives the value back.
    pub fn install_history(&self, history: History) -> Result<(), History> {
        self.history.set(history)
    }

    /// The history store of `topic`, if its route keeps history.
    #[inline]
    pub fn history(&self, topic: &str) -> Option<&Arc<HistoryStore>> {
        self.history.get()?.store_for(topic)
    }

    /// Adds a subscriber.
    pub fn subscribe(&self, topic: &str, sub: Subscriber) {
        self.topics.entry(topic.into()).or_default().push(sub);
    }

    /// Removes subscriber `id` from `topic`; forgets the topic when it has no subscribers.
    pub fn unsubscribe(&self, topic: &str, id: u64) {
        let empty = match self.topics.get_mut(topic) {
            Some(mut subs) => {
                if let Some(i) = subs.iter().position(|s| s.id == id) {
                    subs.swap_remove(i);
                }
                subs.is_empty()
            }
            None => false,
        };
        if empty {
            self.topics.remove_if(topic, |_, subs| subs.is_empty());
        }
    }

    /// Number of subscribers of `topic`.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, |s| s.len())
    }

    /// Delivers `msg` to every subscriber of its topic; returns how many got it. On a history
    /// topic the broadcast is stamped and kept, and delivered under the topic's history lock.
    pub fn broadcast(&self, msg: Arc<BroadcastMsg>) -> usize {
        if let Some(store) = self.history(&msg.topic) {
            return store.record(&msg, |offset| self.fan_out(&msg, Some(offset)));
        }
        self.fan_out(&msg, None)
    }

    fn fan_out(&self, msg: &Arc<BroadcastMsg>, offset: Option<u64>) -> usize {
        self.metrics.broadcasts.inc();
        let Some(subs) = self.topics.get(&*msg.topic) else {
            return 0;
        };
        let mut cache = FrameCache::default();
        let mut delivered = 0usize;
        for sub in subs.iter() {
            if msg.from == Some(sub.id) {
                continue;
            }
            match &sub.kind {
                SubscriberKind::Channel {
                    conn,
                    intercepts,
                    interceptor,
                } => {
                    if intercepts.contains(&msg.event.as_str()) {
                        interceptor.intercept(msg, offset);
                        delivered += 1;
                    } else if interceptor.hold(msg, offset) {
                        delivered += 1;
                    } else if let Some(frame) = cache.get(conn.serializer(), msg) {
                        if conn.send_frame(frame) {
                            delivered += 1;
                        }
                    }
                }
                SubscriberKind::SocketId { conn } => {
                    if msg.event == "disconnect" {
                        conn.close(crate::conn::CloseCode::DISCONNECT);
                        delivered += 1;
                    }
                }
                SubscriberKind::Callback(f) => {
                    f(msg);
                    delivered += 1;
                }
            }
        }
        self.metrics.deliveries.inc_by(delivered as u64);
        delivered
    }
}

/// The broadcast encoded at most once per serializer.
#[derive(Default)]
struct FrameCache {
    v1: Option<Option<OutFrame>>,
    v2: Option<Option<OutFrame>>,
}

impl FrameCache {
    fn get(&mut self, serializer: Serializer, msg: &BroadcastMsg) -> Option<OutFrame> {
        let slot = match serializer {
            Serializer::V1 => &mut self.v1,
            Serializer::V2 => &mut self.v2,
        };
        slot.get_or_insert_with(|| {
            match serializer.encode_broadcast_parts(&msg.topic, &msg.event, &msg.payload) {
                Ok(frame) => OutFrame::from_frame(frame),
                Err(e) => {
                    tracing::error!(topic = %msg.topic, event = %msg.event, "cannot encode broadcast: {e}");
                    None
                }
            }
        })
        .clone()
    }
}

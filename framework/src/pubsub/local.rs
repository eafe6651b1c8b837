//! This node's subscriptions: a sharded map of topic → subscribers, and the fastlane.
//!
//! Fan-out holds one shard's read lock while it queues frames (no await, no I/O inside), so
//! publishers on different topics never contend and publishers on the same topic share the
//! read lock. A broadcast is encoded at most once per serializer, lazily on the first
//! subscriber that needs it, and every other subscriber gets a clone of the same bytes.
//!
//! ## What the fan-out measures
//!
//! * `phx_fanout_size`: once per broadcast, after the shard's lock is released, the number of
//!   subscribers it reached (0 for a topic nobody here follows), so the histogram's count is
//!   the number of local broadcasts and its sum the number of deliveries.
//! * `phx_broadcast_to_write_seconds`: one fastlane delivery in [`WRITE_SAMPLE_EVERY`] is
//!   sampled. A per-thread countdown (read once per broadcast and written back once, so no
//!   shared atomic) picks them across broadcasts: a 10k fan-out samples ~156 sockets spread
//!   over its whole subscriber list (first to last, so the tail shows), and a stream of
//!   one-subscriber broadcasts samples one in 64 rather than every one — the writer's
//!   observation takes the histogram's lock, which must stay off the path of most frames.
//!   The publication instant is read once per broadcast, at the start of the fan-out, and only
//!   when the countdown says a sample falls inside it; the sampled frame is queued with an
//!   [`Outgoing::Published`](crate::conn::Outgoing::Published) marker behind it, which the
//!   transport turns into an observation once it wrote (WebSocket: flushed; LongPoll: handed
//!   to the poll response) that frame. Intercepted events (`handle_out`) and broadcasts held
//!   during a join are not sampled: the channel's own work would be timed with them.

use std::cell::Cell;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use dashmap::DashMap;
use phx_protocol::Serializer;

use super::history::{History, HistoryStore};
use super::{BroadcastMsg, Interceptor};
use crate::conn::{ConnHandle, OutFrame};
use crate::metrics::Metrics;

/// One fastlane delivery in this many is timed from publication to write (see the module
/// docs): enough samples for a histogram at any broadcast rate that matters, few enough that
/// the observations' lock is paid by under 2 % of frames.
pub const WRITE_SAMPLE_EVERY: u32 = 64;

thread_local! {
    /// Fastlane deliveries queued by this thread before the next sampled one (0: the next
    /// one is). Per thread, so publishers on different cores share no counter.
    static UNTIL_SAMPLE: Cell<u32> = const { Cell::new(0) };
}

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
            return store.record(&msg, |offset| self.deliver(&msg, Some(offset)));
        }
        self.deliver(&msg, None)
    }

    /// Fans `msg` out (with its offset on a history topic) and counts it.
    fn deliver(&self, msg: &Arc<BroadcastMsg>, offset: Option<u64>) -> usize {
        self.metrics.broadcasts.inc();
        let delivered = self.fan_out(msg, offset);
        self.metrics.deliveries.inc_by(delivered as u64);
        self.metrics.fanout_size.observe(delivered as f64);
        delivered
    }

    /// Queues `msg` to its topic's subscribers under the shard's read lock; how many got it.
    fn fan_out(&self, msg: &Arc<BroadcastMsg>, offset: Option<u64>) -> usize {
        let Some(subs) = self.topics.get(&*msg.topic) else {
            return 0;
        };
        let mut until_sample = UNTIL_SAMPLE.with(Cell::get);
        // Read the clock only if a sample can fall inside this fan-out.
        let published = ((until_sample as usize) < subs.len()).then(Instant::now);
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
                        let sent = match published {
                            Some(at) if until_sample == 0 => {
                                until_sample = WRITE_SAMPLE_EVERY - 1;
                                conn.send_sampled(frame, at)
                            }
                            _ => {
                                until_sample = until_sample.saturating_sub(1);
                                conn.send_frame(frame)
                            }
                        };
                        if sent {
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
        UNTIL_SAMPLE.with(|c| c.set(until_sample));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Outgoing;
    use crate::mailbox::Bounds;
    use phx_protocol::Payload;

    struct Fastlane;

    impl Interceptor for Fastlane {
        fn intercept(&self, _msg: &Arc<BroadcastMsg>, _offset: Option<u64>) {}
        fn hold(&self, _msg: &Arc<BroadcastMsg>, _offset: Option<u64>) -> bool {
            false
        }
    }

    fn msg() -> Arc<BroadcastMsg> {
        Arc::new(BroadcastMsg {
            topic: "room:1".into(),
            event: "shout".into(),
            payload: Payload::Json(serde_json::json!({"a": 1})),
            from: None,
        })
    }

    /// Published markers queued per socket, in subscription order.
    fn markers(conns: &[Arc<ConnHandle>]) -> Vec<usize> {
        conns
            .iter()
            .map(|c| {
                c.outbox()
                    .take_all()
                    .filter(|o| matches!(o, Outgoing::Published(_)))
                    .count()
            })
            .collect()
    }

    #[test]
    fn one_delivery_in_64_is_sampled_across_broadcasts_and_every_broadcast_is_sized() {
        // A thread of its own: the countdown is per thread and starts at "sample the next".
        std::thread::spawn(|| {
            let metrics = Arc::new(Metrics::default());
            let pubsub = LocalPubSub::new(metrics.clone());
            let conns: Vec<Arc<ConnHandle>> = (0..100)
                .map(|i| {
                    let conn = Arc::new(ConnHandle::new(
                        Serializer::V2,
                        Bounds::new(10, 1 << 20),
                        metrics.clone(),
                    ));
                    pubsub.subscribe(
                        "room:1",
                        Subscriber {
                            id: i,
                            kind: SubscriberKind::Channel {
                                conn: conn.clone(),
                                intercepts: &[],
                                interceptor: Arc::new(Fastlane),
                            },
                        },
                    );
                    conn
                })
                .collect();
            assert_eq!(pubsub.broadcast(msg()), 100);
            let first = markers(&conns);
            let sampled: Vec<usize> = (0..100).filter(|&i| first[i] == 1).collect();
            assert_eq!(sampled, vec![0, 64], "{first:?}");
            // 100 more: the countdown carries over (36 left after socket 64).
            assert_eq!(pubsub.broadcast(msg()), 100);
            let second = markers(&conns);
            let sampled: Vec<usize> = (0..100).filter(|&i| second[i] == 1).collect();
            assert_eq!(sampled, vec![28, 92], "{second:?}");
            assert_eq!(pubsub.broadcast(msg_to("room:nobody")), 0);
            let mut text = String::new();
            text.push_str(&metrics.render());
            assert!(
                text.contains("phx_fanout_size_count 3")
                    && text.contains("phx_fanout_size_sum 200.0"),
                "{text}"
            );
        })
        .join()
        .expect("test thread");
    }

    fn msg_to(topic: &str) -> Arc<BroadcastMsg> {
        Arc::new(BroadcastMsg {
            topic: topic.into(),
            ..(*msg()).clone()
        })
    }
}

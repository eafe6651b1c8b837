//! PubSub: topic subscriptions and broadcast fan-out.
//!
//! [`local`] holds the subscribers of this node. A cross-node adapter (Redis) would publish a
//! broadcast once to the other nodes, each of which fans it out locally; the local fan-out is
//! the only place frames are encoded.

pub mod local;

use std::sync::Arc;

use phx_protocol::Payload;

pub use local::{LocalPubSub, Subscriber, SubscriberKind};

/// A broadcast in flight: Phoenix's `%Phoenix.Socket.Broadcast{}`.
#[derive(Debug, Clone)]
pub struct BroadcastMsg {
    /// The topic it was published on.
    pub topic: Arc<str>,
    /// The event name.
    pub event: String,
    /// The payload (a JSON map by convention, or binary).
    pub payload: Payload,
    /// For `broadcast_from`: the subscriber id of the sender, which is skipped.
    pub from: Option<u64>,
}

/// The channel side of a subscription (a channel's inbox): takes intercepted broadcasts (for
/// `handle_out`) and holds fastlane ones while the channel is still joining.
pub trait Interceptor: Send + Sync {
    /// Delivers an intercepted broadcast. Must not block.
    fn intercept(&self, msg: &Arc<BroadcastMsg>);

    /// While the channel's `join` runs, keeps `msg` to send after the join reply and returns
    /// true; once joined, returns false and the caller takes the fastlane. Must not block.
    fn hold(&self, msg: &Arc<BroadcastMsg>) -> bool;
}

/// The endpoint's PubSub.
#[derive(Default)]
pub struct PubSub {
    /// This node's subscribers.
    pub local: LocalPubSub,
}

impl PubSub {
    /// Publishes a broadcast to every subscriber of its topic.
    pub fn broadcast(&self, msg: BroadcastMsg) -> usize {
        self.local.broadcast(Arc::new(msg))
    }

    /// Adds a subscriber to `topic`.
    pub fn subscribe(&self, topic: &str, sub: Subscriber) {
        self.local.subscribe(topic, sub)
    }

    /// Removes the subscriber with `id` from `topic`.
    pub fn unsubscribe(&self, topic: &str, id: u64) {
        self.local.unsubscribe(topic, id)
    }
}

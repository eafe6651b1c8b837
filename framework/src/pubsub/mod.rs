//! PubSub: topic subscriptions and broadcast fan-out, on this node and across a cluster.
//!
//! [`local`] holds the subscribers of this node. An [`Adapter`] (the [`redis`] one) publishes a
//! broadcast once to the other nodes, each of which fans it out locally; the local fan-out is
//! the only place frames are encoded.
//!
//! Three ways to publish, as in `Phoenix.PubSub`:
//! - [`PubSub::broadcast`]: every subscriber on every node (`broadcast_from` is the same with
//!   the sender skipped — locally; other nodes have no such subscriber);
//! - [`PubSub::local_broadcast`]: this node only — for what every node computes for itself
//!   (Presence diffs), which would otherwise arrive once per node;
//! - [`PubSub::direct_broadcast`]: one named node only.
//!
//! On the topics of a history route every broadcast is also stamped and kept ([`history`]),
//! where the local fan-out happens — so what arrives from other nodes is stamped too.

pub mod adapter;
pub mod history;
pub mod local;
pub mod redis;

use std::sync::Arc;

use phx_protocol::Payload;

pub use adapter::{Adapter, AdapterStatus, SideChannel};
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
///
/// `offset` is the broadcast's offset on a history topic ([`history`]), `None` elsewhere: a
/// joining channel drops what its recovery already covered.
pub trait Interceptor: Send + Sync {
    /// Delivers an intercepted broadcast. Must not block.
    fn intercept(&self, msg: &Arc<BroadcastMsg>, offset: Option<u64>);

    /// While the channel's `join` runs, keeps `msg` to send after the join reply and returns
    /// true; once joined, returns false and the caller takes the fastlane. Must not block.
    fn hold(&self, msg: &Arc<BroadcastMsg>, offset: Option<u64>) -> bool;
}

/// The endpoint's PubSub.
#[derive(Default)]
pub struct PubSub {
    /// This node's subscribers (shared with the adapter, which delivers into it).
    pub local: Arc<LocalPubSub>,
    /// The other nodes, when the endpoint runs in a cluster.
    adapter: Option<Arc<dyn Adapter>>,
}

impl PubSub {
    /// A PubSub over `local`, single-node until [`PubSub::with_adapter`].
    pub fn new(local: Arc<LocalPubSub>) -> PubSub {
        PubSub {
            local,
            adapter: None,
        }
    }

    /// The same PubSub, carrying broadcasts to other nodes through `adapter`.
    pub fn with_adapter(mut self, adapter: Arc<dyn Adapter>) -> PubSub {
        self.adapter = Some(adapter);
        self
    }

    /// The cluster adapter, if any.
    pub fn adapter(&self) -> Option<&Arc<dyn Adapter>> {
        self.adapter.as_ref()
    }

    /// This node's name in the cluster, if it is in one.
    pub fn node_name(&self) -> Option<&str> {
        self.adapter.as_deref().map(Adapter::node_name)
    }

    /// Publishes a broadcast to every subscriber of its topic, on every node; returns how many
    /// local subscribers got it.
    pub fn broadcast(&self, msg: BroadcastMsg) -> usize {
        let msg = Arc::new(msg);
        if let Some(adapter) = &self.adapter {
            adapter.broadcast(&msg);
        }
        self.local.broadcast(msg)
    }

    /// Publishes to this node's subscribers only.
    pub fn local_broadcast(&self, msg: BroadcastMsg) -> usize {
        self.local.broadcast(Arc::new(msg))
    }

    /// Publishes to the subscribers on the node named `node` only. Without an adapter this
    /// node is the whole cluster: `node` must be its name (`None` here), or nothing happens.
    pub fn direct_broadcast(&self, node: &str, msg: BroadcastMsg) {
        match &self.adapter {
            Some(adapter) => adapter.direct_broadcast(node, &Arc::new(msg)),
            None => tracing::debug!(node, "direct broadcast without a cluster adapter: dropped"),
        }
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

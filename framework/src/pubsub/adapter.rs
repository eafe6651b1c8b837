//! The seam between this node's subscribers and the other nodes of a cluster (Phoenix.PubSub's
//! adapter behaviour: `broadcast`, `direct_broadcast`, `node_name`).
//!
//! An adapter only carries broadcasts to *other* nodes; this node's subscribers are always
//! served by the local fan-out, which is where frames are encoded. So a broadcast is one
//! publish per cluster, and every receiving node encodes it once per serializer.

use std::sync::Arc;

use super::BroadcastMsg;

/// How a cluster adapter is doing, for readiness and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterStatus {
    /// Publishing and subscribed: broadcasts cross nodes.
    Connected,
    /// Not (yet, or no longer) connected: local delivery continues, cross-node broadcasts are
    /// lost (and counted) until the adapter reconnects by itself.
    Disconnected,
}

/// A PubSub adapter: carries broadcasts between nodes.
pub trait Adapter: Send + Sync + 'static {
    /// This node's name in the cluster (`node_name`).
    fn node_name(&self) -> &str;

    /// Sends `msg` to every other node (`:except` this one). Must not block: a broadcast is
    /// published from channel callbacks.
    fn broadcast(&self, msg: &Arc<BroadcastMsg>);

    /// Sends `msg` to the node named `node` only (`direct_broadcast`); every other node drops
    /// it. As in Phoenix, a direct broadcast to this node itself also goes through the
    /// adapter and back.
    fn direct_broadcast(&self, node: &str, msg: &Arc<BroadcastMsg>);

    /// Whether cross-node delivery currently works.
    fn status(&self) -> AdapterStatus;

    /// A channel of its own between the phx-server nodes of this cluster, named `name` (Elixir
    /// nodes never see it): what Presence replicates its state over. `None` when the adapter
    /// cannot carry one. Calling it twice with one name is a programming error (the second
    /// receiver gets nothing).
    fn side_channel(&self, name: &str) -> Option<SideChannel> {
        let _ = name;
        None
    }

    /// Stops the adapter's tasks at shutdown (after the drain); the future completes once what
    /// was already queued (a Presence's `bye`) went out, or could not.
    fn shutdown(&self) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// A side channel between phx-server nodes: at-most-once, unordered between senders, in order
/// from one sender (Redis pub/sub), and this node does not receive what it sends itself.
pub struct SideChannel {
    /// Sends one message to every other node on the channel. Must not block; a message that
    /// cannot be sent (the adapter is disconnected, its queue is full) is dropped — the
    /// protocol over the channel must tolerate loss.
    pub send: Arc<dyn Fn(Vec<u8>) + Send + Sync>,
    /// What the other nodes send, in arrival order. Bounded: a receiver that falls behind
    /// loses messages (and must tolerate that too).
    pub receive: tokio::sync::mpsc::Receiver<Vec<u8>>,
}

impl std::fmt::Debug for SideChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SideChannel").finish_non_exhaustive()
    }
}

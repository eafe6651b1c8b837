//! BroadcastMsg ↔ phoenix_pubsub_redis envelope (placeholder until the protocol crate's codec
//! lands: encodes nothing, ignores everything).

use super::super::BroadcastMsg;
use crate::config::RedisConfig;

/// What a received envelope means for this node.
pub enum Inbound {
    /// A broadcast for this node's subscribers.
    Deliver(BroadcastMsg),
    /// Anything else.
    Ignore,
}

/// Encodes and decodes this node's envelopes.
pub struct Codec {
    node_name: String,
    channel: String,
}

impl Codec {
    /// The codec for `config`.
    pub fn new(config: &RedisConfig) -> Codec {
        Codec {
            node_name: config.node_name.clone(),
            channel: format!("phx:Elixir.{}.Adapter", config.pubsub_name),
        }
    }
    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }
    /// The Redis channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }
    /// `{3, :except, me, ...}`.
    pub fn encode_except(&self, _msg: &BroadcastMsg) -> Option<Vec<u8>> {
        None
    }
    /// `{3, :only, node, ...}`.
    pub fn encode_only(&self, _node: &str, _msg: &BroadcastMsg) -> Option<Vec<u8>> {
        None
    }
    /// Decodes a received envelope.
    pub fn decode(&self, _bytes: &[u8]) -> Inbound {
        Inbound::Ignore
    }
}

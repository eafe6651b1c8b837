//! A [`BroadcastMsg`] ↔ the phoenix_pubsub_redis envelope ([`phx_protocol::pubsub_redis`]),
//! and what this node makes of what it receives.
//!
//! Three things here are this node's own, not the wire format's:
//! - **Its name's type.** The name phx-server publishes is an atom (what phoenix_pubsub_redis
//!   3.1 and a default `node()` send). Elixir compares names with `==` on terms, so a direct
//!   broadcast to an Elixir node must carry *that node's* type: every name seen in another
//!   node's `:except` envelope is remembered with its type ([`Codec::peer`]).
//! - **Its echo.** Every node receives its own envelopes back from Redis and drops them (the
//!   `:except` check). One that carries this node's name but was not published by it comes
//!   from another node with the same `NODE_NAME`: both would silently drop each other's
//!   broadcasts, so that is warned about. The last [`RECENT`] envelopes published are
//!   remembered by hash to tell the two apart.
//! - **What is ignored.** Envelopes for other nodes, tracker traffic, plain terms, payloads
//!   Jason could not have rendered and bytes that are not an envelope are counted and dropped
//!   without a log line each (a burst of them is one rate-limited line).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use parking_lot::{Mutex, RwLock};
use phx_protocol::etf::DecodeLimits;
use phx_protocol::pubsub_redis::{
    self, Dispatcher, EncodeOptions, Envelope, EnvelopeError, Message, Mode, NodeName,
};
use phx_protocol::Broadcast;

use super::super::BroadcastMsg;
use crate::config::RedisConfig;

/// How many of this node's own envelopes are remembered to recognise their echo.
pub const RECENT: usize = 4096;

/// The most bytes one received envelope may decode to (binaries, compressed terms): what
/// `MAX_FRAME_SIZE` allows a client to send is far less; a larger broadcast would not fit a
/// socket's queue anyway.
const MAX_ENVELOPE: usize = 8 << 20;

/// What a received envelope means for this node.
#[derive(Debug)]
pub enum Inbound {
    /// A broadcast for this node's subscribers.
    Deliver(BroadcastMsg),
    /// Anything else (counted).
    Ignore,
}

/// Encodes this node's envelopes and judges received ones.
pub struct Codec {
    own: NodeName,
    channel: String,
    options: EncodeOptions,
    limits: DecodeLimits,
    /// Names of the other nodes seen on the channel, with the type they use.
    peers: RwLock<HashMap<String, NodeName>>,
    /// Hashes of the envelopes this node published and has not seen come back yet.
    recent: Mutex<VecDeque<u64>>,
}

impl Codec {
    /// The codec for `config`.
    pub fn new(config: &RedisConfig) -> Codec {
        Codec {
            own: NodeName::Atom(config.node_name.clone()),
            channel: pubsub_redis::channel_name(&config.pubsub_name),
            options: EncodeOptions {
                compression_level: config.compression_level,
                ..EncodeOptions::default()
            },
            limits: DecodeLimits {
                max_binary: MAX_ENVELOPE,
                max_uncompressed: MAX_ENVELOPE,
                ..DecodeLimits::default()
            },
            peers: RwLock::new(HashMap::new()),
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
        }
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        self.own.as_str()
    }

    /// The Redis channel of the PubSub.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The name of another node as it is written on the wire: its own type when it has been
    /// seen, an atom (what phoenix_pubsub_redis 3.1 requires) otherwise.
    pub fn peer(&self, name: &str) -> NodeName {
        self.peers
            .read()
            .get(name)
            .cloned()
            .unwrap_or_else(|| NodeName::Atom(name.to_string()))
    }

    /// `{3, :except, <this node>, topic, %Broadcast{}, Phoenix.Channel.Server}`: to every
    /// other node.
    pub fn encode_except(&self, msg: &BroadcastMsg) -> Option<Vec<u8>> {
        let bytes = self.encode(Mode::Except, self.own.clone(), msg);
        self.remember(&bytes);
        Some(bytes)
    }

    /// `{3, :only, node, ...}`: to the node named `node` only (which may be this one).
    pub fn encode_only(&self, node: &str, msg: &BroadcastMsg) -> Option<Vec<u8>> {
        Some(self.encode(Mode::Only, self.peer(node), msg))
    }

    fn encode(&self, mode: Mode, node: NodeName, msg: &BroadcastMsg) -> Vec<u8> {
        let envelope = Envelope {
            mode,
            node,
            topic: msg.topic.to_string(),
            message: Broadcast {
                topic: msg.topic.to_string(),
                event: msg.event.clone(),
                payload: msg.payload.clone(),
            },
            dispatcher: Dispatcher::ChannelServer,
        };
        pubsub_redis::encode(&envelope, &self.options)
    }

    fn remember(&self, bytes: &[u8]) {
        let mut recent = self.recent.lock();
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(digest(bytes));
    }

    /// Whether `bytes` is an envelope this node published (forgetting it: each comes back once).
    fn is_own_echo(&self, bytes: &[u8]) -> bool {
        let d = digest(bytes);
        let mut recent = self.recent.lock();
        match recent.iter().position(|&r| r == d) {
            Some(i) => {
                recent.remove(i);
                true
            }
            None => false,
        }
    }

    /// Judges one message received on the channel.
    pub fn decode(&self, bytes: &[u8]) -> Inbound {
        let envelope = match pubsub_redis::decode(bytes, &self.limits) {
            Ok(e) => e,
            Err(e) => {
                ignored(&e);
                return Inbound::Ignore;
            }
        };
        if envelope.mode == Mode::Except {
            if envelope.node == self.own {
                if !self.is_own_echo(bytes) {
                    crate::warn_limited!(
                        node = self.own.as_str(),
                        "PubSub: another node publishes with this node's NODE_NAME; nodes sharing a name drop each other's broadcasts"
                    );
                }
                return Inbound::Ignore;
            }
            self.learn(&envelope.node);
        }
        if !envelope.is_for(&self.own) {
            return Inbound::Ignore;
        }
        match envelope.message {
            Message::Broadcast(b) => Inbound::Deliver(BroadcastMsg {
                topic: b.topic.into(),
                event: b.event,
                payload: b.payload,
                from: None,
            }),
            Message::Other(_) => Inbound::Ignore,
        }
    }

    fn learn(&self, node: &NodeName) {
        if self.peers.read().get(node.as_str()) == Some(node) {
            return;
        }
        self.peers
            .write()
            .insert(node.as_str().to_string(), node.clone());
    }
}

fn digest(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Bytes that are not an envelope this node understands: counted by the caller; logged at
/// debug only, since any app on the Elixir side may publish anything on the channel.
fn ignored(e: &EnvelopeError) {
    tracing::debug!("PubSub: ignoring a message on the Redis channel: {e}");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use phx_protocol::Payload;
    use serde_json::json;

    use super::*;

    fn codec(name: &str) -> Codec {
        Codec::new(&RedisConfig {
            url: "redis://127.0.0.1:1".into(),
            node_name: name.into(),
            pubsub_name: "MyApp.PubSub".into(),
            compression_level: 0,
        })
    }

    fn shout() -> BroadcastMsg {
        BroadcastMsg {
            topic: Arc::from("room:lobby"),
            event: "shout".into(),
            payload: Payload::Json(json!({"body": "hi"})),
            from: None,
        }
    }

    #[test]
    fn another_nodes_broadcast_is_delivered_and_its_own_echo_is_not() {
        let (a, b) = (codec("node-a"), codec("node-b"));
        let bytes = a.encode_except(&shout()).expect("encodes");
        assert_eq!(a.channel(), "phx:Elixir.MyApp.PubSub.Adapter");
        match b.decode(&bytes) {
            Inbound::Deliver(m) => {
                assert_eq!(&*m.topic, "room:lobby");
                assert_eq!(m.event, "shout");
                assert_eq!(m.payload, Payload::Json(json!({"body": "hi"})));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(a.decode(&bytes), Inbound::Ignore));
    }

    #[test]
    fn a_direct_broadcast_reaches_its_target_only_with_the_targets_own_name_type() {
        let (a, b, c) = (codec("node-a"), codec("node-b"), codec("node-c"));
        // node-a has seen node-b publish, so it knows node-b's name is an atom.
        let from_b = b.encode_except(&shout()).expect("encodes");
        assert!(matches!(a.decode(&from_b), Inbound::Deliver(_)));
        assert_eq!(a.peer("node-b"), NodeName::Atom("node-b".into()));
        let direct = a.encode_only("node-b", &shout()).expect("encodes");
        assert!(matches!(b.decode(&direct), Inbound::Deliver(_)));
        assert!(matches!(c.decode(&direct), Inbound::Ignore));
        assert!(matches!(a.decode(&direct), Inbound::Ignore));
    }

    #[test]
    fn garbage_is_ignored() {
        let a = codec("node-a");
        for bytes in [&b""[..], b"hello", &[131, 104, 6, 97, 4][..]] {
            assert!(matches!(a.decode(bytes), Inbound::Ignore));
        }
    }
}

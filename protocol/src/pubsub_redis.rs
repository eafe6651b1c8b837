//! The phoenix_pubsub_redis envelope: what one Redis `PUBLISH` carries between PubSub nodes
//! (`shared/protocol/PUBSUB_REDIS.md`).
//!
//! phx-server nodes and Elixir Phoenix nodes can share one PubSub through Redis only if they
//! write and read the same bytes: every node subscribes to one channel per PubSub server
//! ([`channel_name`]) and every broadcast is one message on it, `term_to_binary` of
//!
//! ```text
//! {3, :except | :only, node_name, topic, message, dispatcher}
//! ```
//!
//! This module turns those bytes into an [`Envelope`] and back, and nothing more: which node
//! keeps which envelope ([`Envelope::is_for`] states the rule), the Redis connection and the
//! local dispatch belong to the adapter.
//!
//! Decoding is for whatever appears on the channel: Elixir apps may publish any term there
//! (`Phoenix.PubSub.broadcast/3` of a tuple, Phoenix.Tracker's presence replication), so a
//! well-formed envelope whose message is not a deliverable `%Phoenix.Socket.Broadcast{}` decodes
//! to [`Message::Other`] with the reason ([`Ignored`]), to be counted and skipped; only bytes
//! that are not an envelope at all are an [`EnvelopeError`]. The payload of a broadcast becomes
//! what a channel client would be sent: the JSON Jason would write ([`Term::to_json`]), or the
//! bytes of `{:binary, bytes}`.
//!
//! Encoding is for what phx-server publishes, and it is deliberately narrower: only a
//! [`Broadcast`] to one of the two dispatchers Phoenix has ([`Dispatcher`]). An Elixir node that
//! receives an envelope naming any other dispatcher, or bytes it cannot decode, crashes its
//! PubSub adapter (and after a few, its whole PubSub supervisor, leaving every subscriber deaf);
//! the types here leave no way to write such an envelope. The payload is written as the term
//! `Jason.decode!` would have given an Elixir channel (binary keys, lists, binaries), so the
//! Elixir side cannot tell phx-server's broadcast from its own; with the defaults the bytes are
//! exactly those an OTP 25 node writes for the same broadcast.

use bytes::Bytes;

use crate::etf::{self, AtomEncoding, DecodeLimits, EtfError, Term};
use crate::message::{Broadcast, Payload};

/// The envelope version phoenix_pubsub_redis 3.x writes and accepts (`@redis_msg_vsn`).
pub const VERSION: i64 = 3;

/// Topics of Phoenix.Tracker (Phoenix.Presence) replication traffic, which shares the channel.
pub const TRACKER_TOPIC_PREFIX: &str = "phx_presence:";

/// The module of a `%Phoenix.Socket.Broadcast{}` struct, as its `__struct__` atom.
const BROADCAST_STRUCT: &str = "Elixir.Phoenix.Socket.Broadcast";

/// The Redis channel a PubSub server named `pubsub_name` publishes and subscribes on:
/// `"phx:" <> to_string(Module.concat(pubsub_name, "Adapter"))`.
///
/// `pubsub_name` is the name as an Elixir alias (`MyApp.PubSub`) or as the text of a plain
/// atom (`my_pubsub`, without the colon); both get the `Elixir.` prefix, as `Module.concat`
/// gives them: `MyApp.PubSub` → `phx:Elixir.MyApp.PubSub.Adapter`, `my_pubsub` →
/// `phx:Elixir.my_pubsub.Adapter`. A name already written as an atom's full text
/// (`Elixir.MyApp.PubSub`) is not prefixed twice.
pub fn channel_name(pubsub_name: &str) -> String {
    if pubsub_name == "Elixir" || pubsub_name.starts_with("Elixir.") {
        format!("phx:{pubsub_name}.Adapter")
    } else {
        format!("phx:Elixir.{pubsub_name}.Adapter")
    }
}

/// A node's name in an envelope: the sender for [`Mode::Except`], the target for
/// [`Mode::Only`].
///
/// Its type is part of it: Elixir compares names with `==`, so a node named by the atom
/// `:"node-t"` ignores envelopes addressed to the binary `"node-t"`, and the other way round.
/// phoenix_pubsub_redis 3.1.0 takes only atoms (its default is `node()`); 3.0.x and later
/// versions also take strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeName {
    /// An atom (`node_name: :"node-a"`, or the default `node()`).
    Atom(String),
    /// A binary (`node_name: "node-s"`).
    Binary(String),
}

impl NodeName {
    /// The name's text, whatever its type.
    pub fn as_str(&self) -> &str {
        match self {
            NodeName::Atom(s) | NodeName::Binary(s) => s,
        }
    }

    fn to_term(&self) -> Term {
        match self {
            NodeName::Atom(s) => Term::Atom(s.clone()),
            NodeName::Binary(s) => Term::Binary(s.as_bytes().to_vec()),
        }
    }
}

/// Who an envelope is for, relative to its [`NodeName`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `:except`: every node but the named one, which is the sender (`broadcast`,
    /// `broadcast_from`).
    Except,
    /// `:only`: only the named node, the target (`direct_broadcast`).
    Only,
}

impl Mode {
    fn atom(self) -> &'static str {
        match self {
            Mode::Except => "except",
            Mode::Only => "only",
        }
    }
}

/// The module a receiving Elixir node calls to deliver the message locally. These two are the
/// only ones Phoenix has; any other would crash the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dispatcher {
    /// `Phoenix.Channel.Server`: Endpoint and Channel broadcasts, delivered through the
    /// channels' fastlane (serialized once per serializer).
    ChannelServer,
    /// `Phoenix.PubSub`: plain `Phoenix.PubSub.broadcast/3`, a `send/2` to each subscriber.
    PubSub,
}

impl Dispatcher {
    /// The module's atom as it is on the wire.
    pub fn atom(self) -> &'static str {
        match self {
            Dispatcher::ChannelServer => "Elixir.Phoenix.Channel.Server",
            Dispatcher::PubSub => "Elixir.Phoenix.PubSub",
        }
    }

    fn from_atom(atom: &str) -> Option<Dispatcher> {
        [Dispatcher::ChannelServer, Dispatcher::PubSub]
            .into_iter()
            .find(|d| d.atom() == atom)
    }
}

/// What a decoded envelope carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A `%Phoenix.Socket.Broadcast{topic, event, payload}` whose payload a channel client can
    /// be sent: JSON ([`Payload::Json`], as Jason renders the term) or `{:binary, bytes}`
    /// ([`Payload::Binary`]).
    Broadcast(Broadcast),
    /// Anything else: well-formed, for someone else, to be counted and ignored.
    Other(Ignored),
}

/// Why a well-formed envelope's message is not a [`Message::Broadcast`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ignored {
    /// Phoenix.Tracker (Presence) replication: any message on a topic starting with
    /// [`TRACKER_TOPIC_PREFIX`] that is not a broadcast. Presence does not interoperate across
    /// phx-server and Elixir nodes; phx-server replicates its own.
    Tracker,
    /// A `%Phoenix.Socket.Broadcast{}` that cannot be delivered: its payload is not JSON as
    /// Jason would write it (a tuple, pid, reference, non-UTF-8 binary, a struct other than the
    /// calendar ones, an integer beyond 64 bits), or its topic or event is not a string. Elixir
    /// channels would fail on it too.
    UnrenderableBroadcast,
    /// Any other term (`Phoenix.PubSub.broadcast/3` of an app's own message).
    Term,
}

/// One phoenix_pubsub_redis message: `{3, mode, node, topic, message, dispatcher}`.
///
/// [`decode`] gives an `Envelope<Message>`; [`encode`] takes an `Envelope<Broadcast>`, so only
/// a broadcast can be published.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<M = Message> {
    /// Except the named node, or only it.
    pub mode: Mode,
    /// The sender ([`Mode::Except`]) or the target ([`Mode::Only`]).
    pub node: NodeName,
    /// The PubSub topic the message is for (a channel topic, or a socket id).
    pub topic: String,
    /// The message.
    pub message: M,
    /// The module the receiver delivers with.
    pub dispatcher: Dispatcher,
}

impl<M> Envelope<M> {
    /// Whether the node named `own` keeps this envelope: `:only` the named node, `:except`
    /// everyone but it. Names compare with their type ([`NodeName`]), as in Elixir.
    pub fn is_for(&self, own: &NodeName) -> bool {
        match self.mode {
            Mode::Only => self.node == *own,
            Mode::Except => self.node != *own,
        }
    }
}

impl Envelope<Message> {
    /// The envelope with its broadcast, if it carries one.
    pub fn into_broadcast(self) -> Option<Envelope<Broadcast>> {
        let Message::Broadcast(b) = self.message else {
            return None;
        };
        Some(Envelope {
            mode: self.mode,
            node: self.node,
            topic: self.topic,
            message: b,
            dispatcher: self.dispatcher,
        })
    }
}

impl From<Envelope<Broadcast>> for Envelope<Message> {
    fn from(e: Envelope<Broadcast>) -> Self {
        Envelope {
            mode: e.mode,
            node: e.node,
            topic: e.topic,
            message: Message::Broadcast(e.message),
            dispatcher: e.dispatcher,
        }
    }
}

/// Why bytes on the channel are not an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not an external term this decoder reads (garbage, truncated, over the [`DecodeLimits`],
    /// or holding a fun, port or bit string).
    #[error("not an external term: {0}")]
    Etf(#[from] EtfError),
    /// A tuple whose first element is an integer other than [`VERSION`]; Elixir nodes drop
    /// these silently.
    #[error("envelope version {0}, expected {VERSION}")]
    Version(i64),
    /// A version-3 envelope naming a dispatcher other than the two of [`Dispatcher`].
    #[error("unknown dispatcher {0}")]
    UnknownDispatcher(String),
    /// A term that is not `{3, mode, node, topic, message, dispatcher}` with the right types.
    #[error("not a pubsub envelope: {0}")]
    Malformed(&'static str),
}

/// How [`encode`] writes an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// How atoms are written. The default, [`AtomEncoding::Latin1`], is what OTP ≤ 25 nodes
    /// write (the captures); every OTP since R16 reads either form.
    pub atoms: AtomEncoding,
    /// phoenix_pubsub_redis's `compression_level`: zlib level 1..=9, or 0 (the default) for
    /// none. Compressed only when it shrinks the envelope, as `term_to_binary` does.
    pub compression_level: u32,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            atoms: AtomEncoding::Latin1,
            compression_level: 0,
        }
    }
}

/// Decodes one message from the channel within `limits`. Never panics.
///
/// Checked in the order a receiver needs them: a term, a tuple with version [`VERSION`]
/// ([`EnvelopeError::Version`] otherwise), six elements of the right types, a known dispatcher
/// ([`EnvelopeError::UnknownDispatcher`]); then the message is classified ([`Message`]).
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Envelope, EnvelopeError> {
    let Term::Tuple(items) = etf::decode_with_limits(bytes, limits)? else {
        return Err(EnvelopeError::Malformed("not a tuple"));
    };
    match items.first() {
        Some(Term::Int(VERSION)) => {}
        Some(Term::Int(other)) => return Err(EnvelopeError::Version(*other)),
        _ => return Err(EnvelopeError::Malformed("no integer version first")),
    }
    let [_, mode, node, topic, message, dispatcher] =
        <[Term; 6]>::try_from(items).map_err(|_| EnvelopeError::Malformed("not a 6-tuple"))?;
    let mode = match mode.as_atom() {
        Some("except") => Mode::Except,
        Some("only") => Mode::Only,
        _ => {
            return Err(EnvelopeError::Malformed(
                "mode is neither :except nor :only",
            ))
        }
    };
    let node = match node {
        Term::Atom(a) => NodeName::Atom(a),
        Term::Binary(b) => NodeName::Binary(
            String::from_utf8(b).map_err(|_| EnvelopeError::Malformed("node name is not UTF-8"))?,
        ),
        _ => {
            return Err(EnvelopeError::Malformed(
                "node name is neither an atom nor a binary",
            ))
        }
    };
    let topic = utf8_binary(topic).ok_or(EnvelopeError::Malformed("topic is not a string"))?;
    let dispatcher = match dispatcher {
        Term::Atom(a) => Dispatcher::from_atom(&a).ok_or(EnvelopeError::UnknownDispatcher(a))?,
        _ => return Err(EnvelopeError::Malformed("dispatcher is not an atom")),
    };
    let message = classify(&topic, message);
    Ok(Envelope {
        mode,
        node,
        topic,
        message,
        dispatcher,
    })
}

/// Encodes a broadcast envelope as `term_to_binary/2` of an OTP node with `opts`.
///
/// The message is a `%Phoenix.Socket.Broadcast{}` map (atom keys `__struct__`, `event`,
/// `payload`, `topic`), every map with at most 32 keys written in term order as the VM does.
/// A JSON payload is the term Jason would decode it to: objects are maps with binary keys,
/// arrays lists, strings binaries, numbers integers or floats, `true`/`false`/`null` atoms. A
/// binary payload is `{:binary, bytes}`.
pub fn encode(envelope: &Envelope<Broadcast>, opts: &EncodeOptions) -> Vec<u8> {
    let b = &envelope.message;
    let payload = match &b.payload {
        Payload::Json(v) => Term::from_json(v),
        Payload::Binary(bytes) => Term::Tuple(vec![atom("binary"), Term::Binary(bytes.to_vec())]),
    };
    let message = Term::Map(vec![
        (atom("__struct__"), atom(BROADCAST_STRUCT)),
        (atom("event"), binary(&b.event)),
        (atom("payload"), payload),
        (atom("topic"), binary(&b.topic)),
    ]);
    let term = Term::Tuple(vec![
        Term::Int(VERSION),
        atom(envelope.mode.atom()),
        envelope.node.to_term(),
        binary(&envelope.topic),
        message,
        atom(envelope.dispatcher.atom()),
    ]);
    etf::encode_with(
        &term,
        &etf::EncodeOptions {
            atoms: opts.atoms,
            sort_small_maps: true,
            compression: opts.compression_level,
        },
    )
}

fn atom(s: &str) -> Term {
    Term::Atom(s.to_owned())
}

fn binary(s: &str) -> Term {
    Term::Binary(s.as_bytes().to_vec())
}

fn utf8_binary(t: Term) -> Option<String> {
    match t {
        Term::Binary(b) => String::from_utf8(b).ok(),
        _ => None,
    }
}

/// A broadcast if the message is a deliverable `%Phoenix.Socket.Broadcast{}`; otherwise why not.
fn classify(topic: &str, message: Term) -> Message {
    let tracker = topic.starts_with(TRACKER_TOPIC_PREFIX);
    let is_broadcast = match &message {
        Term::Map(pairs) => pairs.iter().any(|(k, v)| {
            k.as_atom() == Some("__struct__") && v.as_atom() == Some(BROADCAST_STRUCT)
        }),
        _ => false,
    };
    if !is_broadcast {
        return Message::Other(if tracker {
            Ignored::Tracker
        } else {
            Ignored::Term
        });
    }
    match broadcast(message) {
        Some(b) => Message::Broadcast(b),
        None if tracker => Message::Other(Ignored::Tracker),
        None => Message::Other(Ignored::UnrenderableBroadcast),
    }
}

/// The fields of a `%Phoenix.Socket.Broadcast{}` map, if a client could be sent them.
fn broadcast(message: Term) -> Option<Broadcast> {
    let Term::Map(pairs) = message else {
        return None;
    };
    let (mut topic, mut event, mut payload) = (None, None, None);
    for (k, v) in pairs {
        match k.as_atom() {
            Some("topic") => topic = Some(v),
            Some("event") => event = Some(v),
            Some("payload") => payload = Some(v),
            _ => {}
        }
    }
    Some(Broadcast {
        topic: utf8_binary(topic?)?,
        event: utf8_binary(event?)?,
        payload: payload_of(payload?)?,
    })
}

/// `{:binary, bytes}` is a binary payload (what a V2 binary frame carries); anything else must
/// be JSON as Jason would write it.
fn payload_of(t: Term) -> Option<Payload> {
    match t {
        // No other tuple is JSON.
        Term::Tuple(items) => match <[Term; 2]>::try_from(items) {
            Ok([Term::Atom(tag), Term::Binary(bytes)]) if tag == "binary" => {
                Some(Payload::Binary(Bytes::from(bytes)))
            }
            _ => None,
        },
        other => other.to_json().map(Payload::Json),
    }
}

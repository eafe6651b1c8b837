//! # phx-protocol
//!
//! The Phoenix Channels wire protocol as pure data transformations: no sockets, no tasks, no
//! clocks it is not handed. Everything a server needs to speak to the unmodified `phoenix` npm
//! client byte for byte lives here, so it can be fuzzed and property-tested in isolation.
//!
//! ## Layout
//! - [`message`]: the message model (`Message`, `Reply`, `Broadcast`, `Payload`).
//! - [`serializer`]: V1 JSON, V2 JSON and V2 binary codecs, and `vsn` negotiation.
//! - [`json`]: the Jason-compatible JSON writer the text codecs use (also handy for any other
//!   JSON the server must emit byte-exactly, such as LongPoll bodies).
//! - [`token`]: Phoenix.Token sign/verify (Plug.Crypto compatible).
//! - [`etf`]: the subset of Erlang's external term format tokens and PubSub envelopes carry.
//! - [`pubsub_redis`]: the phoenix_pubsub_redis envelope, to share a PubSub with Elixir nodes
//!   through Redis.
//! - [`params`]: connect params, decoded from the query string as Plug does, bounded.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod etf;
pub mod json;
pub mod limits;
pub mod message;
pub mod params;
pub mod pubsub_redis;
pub mod serializer;
pub mod token;

pub use etf::{EtfError, Term};
pub use json::EncodedObject;
pub use message::{Broadcast, Message, Payload, Reply};
pub use params::ParamsError;
pub use serializer::{
    DecodeError, EncodeError, Frame, FrameRef, Serializer, ServerMessage, VsnError,
};
pub use token::{MaxAge, TokenError, TokenKey};

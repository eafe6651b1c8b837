//! # phx-server
//!
//! A Phoenix Channels server in Rust that speaks Phoenix's wire protocol byte for byte, so the
//! unmodified `phoenix` npm client (and apps built on it) connect to it unchanged.
//!
//! ## Layout
//! - [`endpoint`]: the Endpoint — config, mounted sockets, PubSub, tokens, drain.
//! - [`socket`]: the Socket behaviour (`connect`, `id`).
//! - [`channel`]: the Channel behaviour and the `socket` a callback gets; [`channel::server`]
//!   runs one task per joined channel.
//! - [`router`]: topic patterns → channels.
//! - [`session`]: the per-connection dispatch rules (spec §3/§4), transport-agnostic.
//! - [`transport`]: WebSocket and LongPoll, sharing the handshake rules.
//! - [`pubsub`]: subscriptions and fan-out, encoding each broadcast once per serializer.
//! - [`presence`]: Presence — track/update/untrack/list, `presence_state` and coalesced
//!   `presence_diff`s; untracks when a channel ends.
//! - [`conn`]: a socket's bounded outbound queue; [`mailbox`]: the queue itself.
//! - [`http`]: axum routes and the serve loop; [`config`]: environment → settings.
//! - [`fixture`]: the conformance fixture channels; [`rumbl`]: the book's application.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod channel;
pub mod config;
pub mod conn;
pub mod endpoint;
pub mod fixture;
pub mod http;
pub mod listener;
pub mod log_limit;
pub mod mailbox;
pub mod metrics;
pub mod params;
pub mod presence;
pub mod pubsub;
pub mod rate;
pub mod router;
pub mod rumbl;
pub mod session;
pub mod socket;
pub mod transport;

pub use channel::{Channel, ChannelSocket, HandleResult, Info, JoinReply, Reply, StopReason};
pub use config::Config;
pub use endpoint::Endpoint;
pub use phx_protocol::Payload;
pub use router::Router;
pub use socket::{Assigns, ConnectError, ConnectInfo, Params, SocketHandler};

//! # phx-channels
//!
//! Phoenix Channels in Rust, speaking Phoenix's wire protocol byte for byte, so the unmodified
//! `phoenix` npm client (and apps built on it) connect unchanged. The framework part of
//! phx-server: Endpoint, Socket, Channel, Router, PubSub, Presence, Phoenix.Token and the
//! transports; your channels are the application.
//!
//! ## Layout
//! - [`endpoint`]: the Endpoint — mounted sockets, the live-socket registry, drain — around a
//!   [`context`]: what callbacks share (config, [`token`]s, PubSub, counters).
//! - [`socket`]: the Socket behaviour (`connect`, `id`).
//! - [`channel`]: the Channel behaviour and the `socket` a callback gets; [`channel::server`]
//!   runs one task per joined channel.
//! - [`router`]: topic patterns ([`topic_pattern`]) → channels, optionally with message
//!   history ([`Router::channel_with_history`]).
//! - [`session`]: the per-connection dispatch rules (spec §3/§4), transport-agnostic; it takes
//!   its own outbound queue ([`session::Session::take_outgoing`]).
//! - [`transport`]: WebSocket and LongPoll — one driver loop over a small transport trait,
//!   one typed handshake refusal ([`transport::handshake::Refusal`]), the shared handshake
//!   rules; [`frame`]: the frames a socket sends, in our own types.
//! - [`pubsub`]: subscriptions and fan-out, encoding each broadcast once per serializer;
//!   [`pubsub::history`]: per-topic message history (epoch + offset) and recovery on rejoin.
//! - [`presence`]: Presence — track/update/untrack/list, `presence_state` and coalesced
//!   `presence_diff`s; untracks when a channel ends; replicated between phx-server nodes.
//! - [`conn`]: a socket's bounded outbound queue; [`mailbox`]: the queue itself.
//! - [`dashboard`]: the live dashboard on the admin listener (`/dashboard`, `ADMIN_TOKEN`),
//!   fed over a Phoenix socket of its own.
//! - [`http`]: axum routes and the serve loop; [`settings`]: every setting declared once
//!   (variable, flag, default, range; a TOML file; the reference tables); [`config`]: what the
//!   server runs with, made from them;
//!   [`body_timeout`]: the error a slow request body fails with.
//!
//! Dependencies between modules point one way (`config` ← `context` ← `socket`/`channel` ←
//! `router` ← `endpoint` ← `session` ← `transport` ← `dashboard` ← `http`); `scripts/module_cycles.py`
//! checks there is no circle. The crate has no SQL driver: applications (the Rumbl crate in
//! this repository) bring their own storage.
//!
//! ## From Phoenix
//!
//! | Elixir | here |
//! |---|---|
//! | `socket "/socket", UserSocket` | [`Endpoint::builder`]`(config).socket("/socket", handler, router)` |
//! | `channel "room:*", RoomChannel` | [`Router::channel`]`("room:*", \|\| RoomChannel)` |
//! | `connect/3`, `id/1` | [`SocketHandler::connect`]`(&self, ctx: &Context, params, info)`, [`SocketHandler::id`] |
//! | `join/3`, `handle_in/3`, `handle_info/2`, `handle_out/3`, `terminate/2` | the [`Channel`] trait's methods |
//! | `push`, `broadcast!`, `broadcast_from!`, `socket_ref` + `reply` | [`ChannelSocket::push`], [`ChannelSocket::broadcast`], [`ChannelSocket::broadcast_from`], [`ChannelSocket::socket_ref`] |
//! | `send(self(), msg)`, `Process.send_after` | [`ChannelSocket::send_self`], [`ChannelSocket::send_after`] |
//! | `Phoenix.Presence` | [`presence::Presence`] |
//! | `Endpoint.broadcast/3` | [`Context::broadcast`] ([`ChannelSocket::context`] in a channel), [`Endpoint::broadcast`] |
//! | `Endpoint.local_broadcast/3`, `Phoenix.PubSub.direct_broadcast/5` | [`Context::local_broadcast`], [`Context::direct_broadcast`] |
//! | `{Phoenix.PubSub, adapter: Phoenix.PubSub.Redis, node_name: ...}` | `PUBSUB_ADAPTER=redis`, `NODE_NAME` ([`config::PubSubConfig`], [`pubsub::redis`]) |
//! | `Phoenix.Token.sign/verify(socket, ...)` | [`Context::sign_token`], [`Context::verify_token`] (the same on [`Endpoint`]) |
//! | `Endpoint.start_link` | [`http::listen_and_serve`] |
//! | (none: phoenix#576, Rumbl's hand-made `last_seen_id`) | [`Router::channel_with_history`]: per-topic history, `since` on rejoin ([`pubsub::history`], `docs/history.md`) |
//!
//! `docs/migrating-from-phoenix.md` in the repository ports a channel side by side, and
//! `examples/` holds runnable ones (chat room, presence list, token-authenticated socket).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod body_timeout;
pub mod channel;
pub mod config;
pub mod conn;
pub mod context;
pub mod dashboard;
pub mod endpoint;
pub mod frame;
pub mod http;
pub mod listener;
pub mod log_limit;
pub mod logger;
pub mod mailbox;
pub mod metrics;
pub mod params;
pub mod presence;
pub mod pubsub;
pub mod rate;
pub mod readiness;
pub mod router;
pub mod secret;
pub mod session;
pub mod settings;
pub mod socket;
pub mod token;
pub mod topic_pattern;
pub mod transport;

pub use channel::{Channel, ChannelSocket, HandleResult, Info, JoinReply, Reply, StopReason};
pub use config::Config;
pub use context::Context;
pub use endpoint::Endpoint;
pub use phx_protocol::Payload;
pub use router::Router;
pub use socket::{Assigns, ConnectError, ConnectInfo, Params, SocketHandler};

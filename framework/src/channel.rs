//! The Channel behaviour: what an application implements for a topic pattern.
//!
//! The callbacks and their results read like Phoenix's, so an Elixir module ports by name:
//!
//! | Phoenix | phx-server |
//! |---|---|
//! | `join(topic, payload, socket)` → `{:ok, socket}` / `{:ok, reply, socket}` / `{:error, reply}` | [`Channel::join`] → `Ok(JoinReply::Ok(reply))` / `Ok(JoinReply::Error(reply))` |
//! | `handle_in(event, payload, socket)` → `{:reply, {:ok, p}, socket}` / `{:noreply, socket}` / `{:stop, reason, reply, socket}` | [`Channel::handle_in`] → [`HandleResult`] |
//! | `handle_info(msg, socket)` | [`Channel::handle_info`] with an [`Info`] |
//! | `intercept [...]` + `handle_out(event, payload, socket)` | [`Channel::intercept`] + [`Channel::handle_out`] |
//! | `terminate(reason, socket)` | [`Channel::terminate`] |
//! | raising | returning `Err(_)` or panicking: the channel crashes (`phx_error`) |
//!
//! Each joined channel runs in its own task ([`server`]), like a BEAM process, so a slow or
//! crashing channel never blocks its siblings on the same socket.
//!
//! The seed's periodic `ping` (a `handle_info` timer), written against this API:
//!
//! ```
//! use std::time::Duration;
//! use phx_channels::channel::{async_trait, Channel, ChannelError, ChannelSocket, HandleResult, Info, JoinReply};
//! use phx_channels::Payload;
//! use serde_json::json;
//!
//! struct Ping;
//!
//! #[derive(Default)]
//! struct VideoChannel { count: u64 }
//!
//! #[async_trait]
//! impl Channel for VideoChannel {
//!     async fn join(&mut self, _topic: &str, _payload: Payload, socket: &mut ChannelSocket) -> Result<JoinReply, ChannelError> {
//!         socket.send_interval(Duration::from_secs(5), || Ping);
//!         Ok(JoinReply::ok())
//!     }
//!     async fn handle_info(&mut self, msg: Info, socket: &mut ChannelSocket) -> Result<HandleResult, ChannelError> {
//!         if msg.is::<Ping>() {
//!             self.count += 1;
//!             socket.push("ping", json!({ "count": self.count }))?;
//!         }
//!         Ok(HandleResult::NoReply)
//!     }
//! }
//! ```

pub mod server;
pub mod socket;

use std::any::Any;

pub use async_trait::async_trait;
use phx_protocol::Payload;
use serde_json::Value;

pub use socket::{ChannelSocket, PushError, SocketRef};

/// The error type channel callbacks return; any error crashes the channel, as a raise does in
/// Elixir (`phx_error` to the client, or `join crashed` during join).
pub type ChannelError = Box<dyn std::error::Error + Send + Sync>;

/// The result of [`Channel::join`].
#[derive(Debug, Clone, PartialEq)]
pub enum JoinReply {
    /// `{:ok, reply, socket}`: joined; the reply payload goes back to the client.
    Ok(Payload),
    /// `{:error, reply}`: refused; nothing is registered.
    Error(Payload),
}

impl JoinReply {
    /// `{:ok, socket}`: joined with an empty reply.
    pub fn ok() -> Self {
        JoinReply::Ok(Payload::empty())
    }
    /// `{:error, %{reason: reason}}`.
    pub fn error_reason(reason: &str) -> Self {
        JoinReply::Error(Payload::Json(serde_json::json!({ "reason": reason })))
    }
}

/// A reply to a client push: `{:ok, payload}`, `{:error, payload}`, or another status.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `{:ok, payload}`.
    Ok(Payload),
    /// `{:error, payload}`.
    Error(Payload),
    /// `{status, payload}` with any other status atom.
    Status(String, Payload),
}

impl Reply {
    /// `:ok` (response `{}`).
    pub fn ok() -> Self {
        Reply::Ok(Payload::empty())
    }
    /// Status string and payload.
    pub fn into_parts(self) -> (String, Payload) {
        match self {
            Reply::Ok(p) => ("ok".into(), p),
            Reply::Error(p) => ("error".into(), p),
            Reply::Status(s, p) => (s, p),
        }
    }
}

/// Why a channel stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// `:normal`: the client gets `phx_close`.
    Normal,
    /// `{:shutdown, reason}` (e.g. `left`, `closed`, `duplicate_join`, `disconnected`): the
    /// client gets `phx_close` when the channel chose it, nothing when the transport did.
    Shutdown(String),
    /// Anything else: a crash; the client gets `phx_error`.
    Error(String),
}

/// The result of `handle_in`, `handle_info` and `handle_out`.
#[derive(Debug, Clone, PartialEq)]
pub enum HandleResult {
    /// `{:noreply, socket}`.
    NoReply,
    /// `{:reply, reply, socket}` (only meaningful from `handle_in`).
    Reply(Reply),
    /// `{:stop, reason, socket}` / `{:stop, reason, reply, socket}`.
    Stop {
        /// Why.
        reason: StopReason,
        /// The reply to send first, if any.
        reply: Option<Reply>,
    },
}

/// A message for `handle_info`: any value the channel (or a timer) sent itself.
pub struct Info(Box<dyn Any + Send>);

impl Info {
    /// Wraps a value.
    pub fn new<T: Any + Send>(value: T) -> Self {
        Info(Box::new(value))
    }
    /// Whether the message is a `T`.
    pub fn is<T: Any>(&self) -> bool {
        self.0.is::<T>()
    }
    /// Borrows the message as a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
    /// Takes the message as a `T`, or gives it back.
    pub fn downcast<T: Any>(self) -> Result<T, Info> {
        self.0.downcast::<T>().map(|b| *b).map_err(Info)
    }
}

impl std::fmt::Debug for Info {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Info(..)")
    }
}

/// An error for a `handle_in` clause that does not match, as `FunctionClauseError` would be.
#[derive(Debug, thiserror::Error)]
#[error("no handle_in clause matches event {0:?}")]
pub struct UnmatchedEvent(pub String);

/// The Channel behaviour. One value is created per join (by the router's factory) and lives in
/// the channel's task until it stops.
#[async_trait]
pub trait Channel: Send + 'static {
    /// The channel module's name for log lines (`JOIN "videos:2" to Rumbl.VideoChannel`). The
    /// default is the Rust type's name, its last path segment.
    fn name() -> &'static str
    where
        Self: Sized,
    {
        crate::logger::short_type_name(std::any::type_name::<Self>())
    }

    /// `join/3`: decide whether the client may join `topic`. Runs before anything else; pushes
    /// made here are delivered after the join reply.
    async fn join(
        &mut self,
        topic: &str,
        payload: Payload,
        socket: &mut ChannelSocket,
    ) -> Result<JoinReply, ChannelError>;

    /// `handle_in/3`: a client push. The default matches nothing, which crashes the channel,
    /// as an Elixir channel without a matching clause does.
    async fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut ChannelSocket,
    ) -> Result<HandleResult, ChannelError> {
        let _ = (payload, socket);
        Err(Box::new(UnmatchedEvent(event.to_string())))
    }

    /// `handle_info/2`: a message the channel sent itself (`send`, `send_after`, timers).
    async fn handle_info(
        &mut self,
        msg: Info,
        socket: &mut ChannelSocket,
    ) -> Result<HandleResult, ChannelError> {
        let _ = (msg, socket);
        Ok(HandleResult::NoReply)
    }

    /// Events routed through [`Channel::handle_out`] instead of the fastlane.
    fn intercept(&self) -> &'static [&'static str] {
        &[]
    }

    /// `handle_out/3`: an intercepted broadcast. The default pushes it unchanged.
    async fn handle_out(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut ChannelSocket,
    ) -> Result<HandleResult, ChannelError> {
        socket.push(event, payload)?;
        Ok(HandleResult::NoReply)
    }

    /// `terminate/2`: the channel is stopping (not called after a crash).
    async fn terminate(&mut self, reason: &StopReason, socket: &mut ChannelSocket) {
        let _ = (reason, socket);
    }
}

/// Converts a payload-like value into a [`Payload`].
pub fn payload(v: impl Into<Value>) -> Payload {
    Payload::Json(v.into())
}

//! The chat room of Phoenix's channels guide, ported: `room:lobby` is open to everyone, every
//! other `room:*` topic refuses with `unauthorized`, and a `new_msg` push is broadcast to the
//! room as `new_msg`.
//!
//! ```text
//! cargo run --example chat_room            # PORT (default 4000), HOST (default 127.0.0.1)
//! ```
//!
//! The Elixir it ports (`lib/hello_web/channels/room_channel.ex` and `user_socket.ex`):
//!
//! ```elixir
//! channel "room:*", HelloWeb.RoomChannel
//! def connect(_params, socket, _connect_info), do: {:ok, socket}
//!
//! def join("room:lobby", _message, socket), do: {:ok, socket}
//! def join("room:" <> _private_room_id, _params, _socket), do: {:error, %{reason: "unauthorized"}}
//!
//! def handle_in("new_msg", %{"body" => body}, socket) do
//!   broadcast!(socket, "new_msg", %{body: body})
//!   {:noreply, socket}
//! end
//! ```
//!
//! The guide's JavaScript (`socket.channel("room:lobby", {})`, `channel.push("new_msg",
//! {body: ...})`, `channel.on("new_msg", ...)`) connects to it unchanged at
//! `ws://127.0.0.1:4000/socket`; `compat-tests/test/examples.test.js` drives it with the
//! phoenix client.
#![forbid(unsafe_code)]

use phx_channels::channel::{async_trait, ChannelError};
use phx_channels::{
    Assigns, Channel, ChannelSocket, Config, ConnectError, ConnectInfo, Context, Endpoint,
    HandleResult, JoinReply, Params, Payload, Router, SocketHandler,
};
use serde_json::{json, Value};

/// `UserSocket`: everyone may connect.
struct UserSocket;

#[async_trait]
impl SocketHandler for UserSocket {
    async fn connect(
        &self,
        _ctx: &Context,
        _params: &Params,
        _info: &ConnectInfo,
    ) -> Result<Assigns, ConnectError> {
        Ok(Assigns::new())
    }
}

/// `RoomChannel`.
struct RoomChannel;

#[async_trait]
impl Channel for RoomChannel {
    async fn join(
        &mut self,
        topic: &str,
        _payload: Payload,
        _socket: &mut ChannelSocket,
    ) -> Result<JoinReply, ChannelError> {
        Ok(if topic == "room:lobby" {
            JoinReply::ok()
        } else {
            JoinReply::error_reason("unauthorized")
        })
    }

    async fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut ChannelSocket,
    ) -> Result<HandleResult, ChannelError> {
        match (event, &payload) {
            ("new_msg", Payload::Json(Value::Object(msg))) => {
                // Like the guide's pattern match: a push without a body has no clause to match.
                let body = msg.get("body").ok_or("new_msg without a body")?;
                socket.broadcast("new_msg", json!({ "body": body }))?;
                Ok(HandleResult::NoReply)
            }
            _ => Err(format!("no handle_in clause for {event}").into()),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = Config::from_env()?;
    let endpoint = Endpoint::builder(config)
        .socket(
            "/socket",
            UserSocket,
            Router::new().channel("room:*", || RoomChannel),
        )
        .build();
    let app = phx_channels::http::router(&endpoint);
    phx_channels::http::listen_and_serve(endpoint, app).await?;
    Ok(())
}

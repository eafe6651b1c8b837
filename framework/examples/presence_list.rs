//! A presence list, as in Phoenix's Presence guide: each client joins `room:<name>` with a
//! `name` param, is tracked under it with `online_at`, and gets `presence_state` after the
//! join; joins and leaves reach everyone as `presence_diff`, which the phoenix client's
//! `Presence` class turns into the list.
//!
//! ```text
//! cargo run --example presence_list        # PORT (default 4000), HOST (default 127.0.0.1)
//! ```
//!
//! The Elixir it ports (`lib/hello_web/channels/room_channel.ex` with `HelloWeb.Presence`):
//!
//! ```elixir
//! def join("room:" <> _, %{"name" => name}, socket) do
//!   send(self(), :after_join)
//!   {:ok, assign(socket, :name, name)}
//! end
//!
//! def handle_info(:after_join, socket) do
//!   {:ok, _} = Presence.track(socket, socket.assigns.name, %{online_at: inspect(System.system_time(:second))})
//!   push(socket, "presence_state", Presence.list(socket))
//!   {:noreply, socket}
//! end
//! ```
//!
//! Differences a client cannot see: diffs are coalesced over a short window (one diff per
//! window, not per change), and the `presence_state` is encoded once for every joiner that
//! reads the same version. `compat-tests/test/examples.test.js` drives it with the phoenix
//! client's `Presence`.
#![forbid(unsafe_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use phx_channels::channel::{async_trait, ChannelError, Info};
use phx_channels::presence::Presence;
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

/// `send(self(), :after_join)`.
struct AfterJoin;

/// `RoomChannel` with a Presence handle (one Presence per endpoint, cloned per channel).
struct RoomChannel {
    presence: Presence,
}

#[async_trait]
impl Channel for RoomChannel {
    async fn join(
        &mut self,
        _topic: &str,
        payload: Payload,
        socket: &mut ChannelSocket,
    ) -> Result<JoinReply, ChannelError> {
        let name = match &payload {
            Payload::Json(p) => p.get("name").and_then(Value::as_str).unwrap_or(""),
            Payload::Binary(_) => "",
        };
        if name.is_empty() {
            return Ok(JoinReply::error_reason("a name is required"));
        }
        socket.assign("name", name);
        socket.send_self(AfterJoin);
        Ok(JoinReply::ok())
    }

    async fn handle_info(
        &mut self,
        msg: Info,
        socket: &mut ChannelSocket,
    ) -> Result<HandleResult, ChannelError> {
        if msg.is::<AfterJoin>() {
            let name = socket
                .get_assign("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let online_at = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.presence
                .track(socket, name, json!({ "online_at": online_at.to_string() }))?;
            let state = self.presence.list_shared(socket.topic()).await;
            socket.push_encoded("presence_state", state.encoded());
        }
        Ok(HandleResult::NoReply)
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
    let presence = Presence::default();
    let endpoint = Endpoint::builder(config)
        .socket(
            "/socket",
            UserSocket,
            Router::new().channel("room:*", move || RoomChannel {
                presence: presence.clone(),
            }),
        )
        .build();
    let app = phx_channels::http::router(&endpoint);
    phx_channels::http::listen_and_serve(endpoint, app).await?;
    Ok(())
}

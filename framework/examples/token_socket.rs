//! A socket that authenticates with a `Phoenix.Token` minted by an Elixir app: the Elixir
//! side signs the user's id (`Phoenix.Token.sign(conn, "user socket", user.id)`, typically
//! into the page as `window.userToken`), the browser connects with `params: {token: ...}`, and
//! this server verifies it with the same `SECRET_KEY_BASE`. Each user may join only its own
//! `user:<id>` topic; `whoami` replies with the id the token carried.
//!
//! ```text
//! SECRET_KEY_BASE=<the Elixir app's secret_key_base> cargo run --example token_socket
//! ```
//!
//! The Elixir it ports (`user_socket.ex` and a `UserChannel`):
//!
//! ```elixir
//! @max_age 2 * 7 * 24 * 60 * 60
//! def connect(%{"token" => token}, socket, _connect_info) do
//!   case Phoenix.Token.verify(socket, "user socket", token, max_age: @max_age) do
//!     {:ok, user_id} -> {:ok, assign(socket, :user_id, user_id)}
//!     {:error, _reason} -> :error
//!   end
//! end
//! def connect(_params, _socket, _connect_info), do: :error
//! def id(socket), do: "users_socket:#{socket.assigns.user_id}"
//!
//! def join("user:" <> id, _params, socket) do
//!   if id == to_string(socket.assigns.user_id), do: {:ok, socket}, else: {:error, %{reason: "unauthorized"}}
//! end
//! def handle_in("whoami", _payload, socket), do: {:reply, {:ok, %{user_id: socket.assigns.user_id}}, socket}
//! ```
//!
//! `SECRET_KEY_BASE` is required: without the Elixir app's secret no token it minted can
//! verify, so the example refuses to start rather than fall back to a development secret.
//! `compat-tests/test/examples.test.js` mints tokens byte-identical to Plug.Crypto's (checked
//! against the spec's Elixir-made vector) and drives this with the phoenix client.
#![forbid(unsafe_code)]

use phx_channels::channel::{async_trait, ChannelError};
use phx_channels::{
    Assigns, Channel, ChannelSocket, Config, ConnectError, ConnectInfo, Context, Endpoint,
    HandleResult, JoinReply, Params, Payload, Reply, Router, SocketHandler,
};
use phx_protocol::{MaxAge, Term};
use serde_json::{json, Value};

/// The salt both sides sign and verify with.
const SALT: &str = "user socket";
/// Two weeks, as the Programming Phoenix book's UserSocket.
const MAX_AGE_SECS: u64 = 2 * 7 * 24 * 60 * 60;

/// `UserSocket`.
struct UserSocket;

#[async_trait]
impl SocketHandler for UserSocket {
    async fn connect(
        &self,
        ctx: &Context,
        params: &Params,
        _info: &ConnectInfo,
    ) -> Result<Assigns, ConnectError> {
        let token = params
            .get("token")
            .and_then(Value::as_str)
            .ok_or(ConnectError::Refused)?;
        match ctx.verify_token(SALT, token, Some(MaxAge::Seconds(MAX_AGE_SECS))) {
            Ok(Term::Int(user_id)) => {
                let mut assigns = Assigns::new();
                assigns.insert("user_id".into(), json!(user_id));
                Ok(assigns)
            }
            // A token that verifies but does not carry an integer id is refused as well.
            Ok(_) | Err(_) => Err(ConnectError::Refused),
        }
    }

    fn id(&self, assigns: &Assigns) -> Option<String> {
        let id = assigns.get("user_id").and_then(Value::as_i64)?;
        Some(format!("users_socket:{id}"))
    }
}

/// `UserChannel`.
struct UserChannel;

#[async_trait]
impl Channel for UserChannel {
    async fn join(
        &mut self,
        topic: &str,
        _payload: Payload,
        socket: &mut ChannelSocket,
    ) -> Result<JoinReply, ChannelError> {
        let own = socket
            .get_assign("user_id")
            .and_then(Value::as_i64)
            .map(|id| format!("user:{id}"));
        Ok(if own.as_deref() == Some(topic) {
            JoinReply::ok()
        } else {
            JoinReply::error_reason("unauthorized")
        })
    }

    async fn handle_in(
        &mut self,
        event: &str,
        _payload: Payload,
        socket: &mut ChannelSocket,
    ) -> Result<HandleResult, ChannelError> {
        match event {
            "whoami" => {
                let user_id = socket.get_assign("user_id").cloned().unwrap_or(Value::Null);
                Ok(HandleResult::Reply(Reply::Ok(Payload::Json(
                    json!({ "user_id": user_id }),
                ))))
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
    if !config.secret_from_env {
        return Err("set SECRET_KEY_BASE to the Elixir app's secret_key_base".into());
    }
    let endpoint = Endpoint::builder(config)
        .socket(
            "/socket",
            UserSocket,
            Router::new().channel("user:*", || UserChannel),
        )
        .build();
    let app = phx_channels::http::router(&endpoint);
    phx_channels::http::listen_and_serve(endpoint, app).await?;
    Ok(())
}

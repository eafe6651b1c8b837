//! `Rumbl.UserSocket`: the book's socket, verifying the `token` connect param.
//!
//! ```elixir
//! @max_age 2 * 7 * 24 * 60 * 60
//! def connect(%{"token" => token}, socket) do
//!   case Phoenix.Token.verify(socket, "user socket", token, max_age: @max_age) do
//!     {:ok, user_id} -> {:ok, assign(socket, :user_id, user_id)}
//!     {:error, _reason} -> :error
//!   end
//! end
//! def connect(_params, _socket), do: :error
//! def id(socket), do: "users_socket:#{socket.assigns.user_id}"
//! ```
//!
//! One addition over the book (Phoenix 1.8's `auth_token: true`): when there is no `token`
//! param, the token the client sent in the `base64url.bearer.phx.` subprotocol
//! (`connect_info.auth_token`) is used, so a client configured with `authToken` works too.

use phx_protocol::token::MaxAge;
use serde_json::{json, Value};

use phx_channels::channel::async_trait;
use phx_channels::context::Context;
use phx_channels::socket::{Assigns, ConnectError, ConnectInfo, Params, SocketHandler};

/// The salt the pages sign `window.userToken` with, and the socket verifies it with.
pub const USER_SALT: &str = "user socket";

/// `@max_age 2 * 7 * 24 * 60 * 60`: a page left open for two weeks still reconnects.
pub const MAX_AGE: MaxAge = MaxAge::Seconds(1_209_600);

/// The book's UserSocket. Every connection is authenticated: no token, or a token that does
/// not verify (bad signature, expired, not an integer user id), is refused with 403.
#[derive(Debug, Default, Clone, Copy)]
pub struct UserSocket;

/// Verifies a `"user socket"` token with the endpoint's `SECRET_KEY_BASE` (`ctx`: what
/// `connect` gets, or [`phx_channels::Endpoint::context`]); the user id, or `None` for anything
/// that is not a valid, unexpired token carrying an integer.
pub fn verify_user_token(ctx: &Context, token: &str) -> Option<i64> {
    ctx.verify_token(USER_SALT, token, Some(MAX_AGE))
        .ok()
        .and_then(|term| term.as_i64())
}

#[async_trait]
impl SocketHandler for UserSocket {
    fn name(&self) -> &'static str {
        "Rumbl.UserSocket"
    }

    async fn connect(
        &self,
        ctx: &Context,
        params: &Params,
        info: &ConnectInfo,
    ) -> Result<Assigns, ConnectError> {
        let Some(token) = info.token(params)? else {
            tracing::debug!("UserSocket refused: no token");
            return Err(ConnectError::Refused);
        };
        let Some(user_id) = verify_user_token(ctx, token) else {
            tracing::debug!("UserSocket refused: invalid or expired token");
            return Err(ConnectError::Refused);
        };
        let mut assigns = Assigns::new();
        assigns.insert("user_id".into(), json!(user_id));
        Ok(assigns)
    }

    fn id(&self, assigns: &Assigns) -> Option<String> {
        assigns
            .get("user_id")
            .and_then(Value::as_i64)
            .map(|id| format!("users_socket:{id}"))
    }
}

//! The Socket behaviour (Phoenix's `use Phoenix.Socket`): `connect/3` and `id/1`.
//!
//! A handler decides, from the connect params and connect info, whether a transport may
//! connect and what its assigns are; `id` names the socket so that an endpoint broadcast of
//! `"disconnect"` on that id closes every socket of, say, one user.

use std::net::SocketAddr;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::context::Context;

/// Socket assigns (`socket.assigns`): set in `connect`, copied into every channel at join.
pub type Assigns = Map<String, Value>;

/// The connect params: the query string decoded the way Plug does (bracketed keys nest, the
/// last value of a repeated key wins), including `vsn`.
pub type Params = Map<String, Value>;

/// What the transport knows about the connection (Phoenix's `connect_info`).
#[derive(Debug, Clone, Default)]
pub struct ConnectInfo {
    /// `:auth_token`: the token from the `base64url.bearer.phx.` subprotocol (WebSocket) or
    /// the `x-phoenix-authtoken` header (LongPoll), when sent.
    pub auth_token: Option<String>,
    /// `:peer_data` address.
    pub peer: Option<SocketAddr>,
    /// `:uri` host header, if any.
    pub host: Option<String>,
    /// `:user_agent`.
    pub user_agent: Option<String>,
    /// `:x_headers`: every `x-*` request header, lowercased.
    pub x_headers: Vec<(String, String)>,
    /// `transport`: `websocket` or `longpoll`.
    pub transport: &'static str,
}

impl ConnectInfo {
    /// The token a client authenticates with: the `token` connect param (what
    /// `new Socket(url, {params: {token}})` sends), or else the Phoenix 1.8 `authToken`
    /// ([`ConnectInfo::auth_token`]). A `token` param that is not a plain string (`token[]=x`)
    /// is refused rather than guessed about. What `connect` then verifies is its own business.
    pub fn token<'a>(&'a self, params: &'a Params) -> Result<Option<&'a str>, ConnectError> {
        match params.get("token") {
            Some(Value::String(t)) => Ok(Some(t.as_str())),
            Some(_) => Err(ConnectError::Refused),
            None => Ok(self.auth_token.as_deref()),
        }
    }
}

/// Why `connect` refused a socket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// `:error`: answered with 403.
    #[error("connection refused")]
    Refused,
    /// `{:error, reason}` with an HTTP status chosen by the handler (Phoenix's error_handler).
    #[error("connection refused ({status}): {reason}")]
    WithStatus {
        /// HTTP status for WebSocket (LongPoll always answers `{"status":403}`).
        status: u16,
        /// Logged reason.
        reason: String,
    },
}

/// The Socket behaviour.
#[async_trait]
pub trait SocketHandler: Send + Sync + 'static {
    /// `connect/3`: accept (returning the socket's assigns) or refuse. `ctx` is what Phoenix's
    /// `socket` argument is used for here: token verification (`Phoenix.Token.verify(socket,
    /// ...)` is [`Context::verify_token`]), configuration, broadcasts.
    async fn connect(
        &self,
        ctx: &Context,
        params: &Params,
        info: &ConnectInfo,
    ) -> Result<Assigns, ConnectError>;

    /// `id/1`: the socket's id, e.g. `users_socket:42`, or `None` for anonymous sockets.
    fn id(&self, assigns: &Assigns) -> Option<String> {
        let _ = assigns;
        None
    }

    /// The socket module's name for log lines (`CONNECTED TO Rumbl.UserSocket in 42µs`). The
    /// default is the Rust type's name, its last path segment.
    fn name(&self) -> &'static str {
        crate::logger::short_type_name(std::any::type_name::<Self>())
    }
}

//! The conformance fixture (shared/protocol/CONFORMANCE_FIXTURE.md): ordinary channel code that
//! a black-box suite can test any Phoenix-protocol server against. Mounted only by
//! `phx-server serve --fixture`; nothing here is special-cased in the runtime.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use phx_protocol::etf::Term;
use phx_protocol::Payload;
use serde_json::{json, Value};

use crate::channel::{
    async_trait, Channel, ChannelError, ChannelSocket, HandleResult, Info, JoinReply, Reply,
    StopReason, UnmatchedEvent,
};
use crate::config::{CheckOrigin, Config};
use crate::endpoint::Endpoint;
use crate::presence::Presence;
use crate::router::Router;
use crate::rumbl::store::AnnotationStore;
use crate::rumbl::{user_socket, VideoChannel};
use crate::socket::{Assigns, ConnectError, ConnectInfo, Params, SocketHandler};

/// The fixture's secret key base (68 bytes), fixed by the fixture contract.
pub const SECRET_KEY_BASE: &str =
    "fixture-secret-key-base-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH";

/// The salt and max_age of user socket tokens: the fixture's are Rumbl's.
pub use crate::rumbl::user_socket::{MAX_AGE, USER_SALT};

/// Applies the fixture's fixed settings (secret, endpoint host for check_origin).
pub fn configure(mut config: Config) -> Config {
    config.secret_key_base = SECRET_KEY_BASE.into();
    config.secret_from_env = true;
    config.url_host = "localhost".into();
    config.check_origin = CheckOrigin::Host;
    config
}

/// The fixture's channel routes, with a Presence of their own (coalescing window from
/// `PRESENCE_BATCH_MS`, default [`crate::presence::DEFAULT_WINDOW`]).
pub fn router() -> Router {
    let presence = Presence::builder().window_from_env().build();
    Router::new()
        .channel("room:*", RoomChannel::default)
        .channel("presence:*", PresenceChannel::factory(presence))
}

/// The fixture's channel routes plus `videos:*` → the seed's VideoChannel in fixture mode
/// (missing videos and users are created on first use) over `store`.
pub fn router_with_videos(store: Arc<dyn AnnotationStore>) -> Router {
    router().channel("videos:*", VideoChannel::factory(store, true))
}

/// The fixture's UserSocket: `token` param or auth_token must verify when present.
pub struct FixtureSocket;

#[async_trait]
impl SocketHandler for FixtureSocket {
    async fn connect(
        &self,
        endpoint: &Endpoint,
        params: &Params,
        info: &ConnectInfo,
    ) -> Result<Assigns, ConnectError> {
        // Same token rules as the Rumbl UserSocket; only "no token" differs (anonymous here).
        let token = user_socket::user_token(params, info)?;
        let mut assigns = Assigns::new();
        match token {
            Some(token) => {
                let user_id =
                    user_socket::verify_user_token(endpoint, token).ok_or(ConnectError::Refused)?;
                assigns.insert("user_id".into(), json!(user_id));
            }
            None => {
                if params.get("reject").and_then(Value::as_str) == Some("1") {
                    return Err(ConnectError::Refused);
                }
            }
        }
        Ok(assigns)
    }

    fn id(&self, assigns: &Assigns) -> Option<String> {
        assigns
            .get("user_id")
            .and_then(Value::as_i64)
            .map(|id| format!("users_socket:{id}"))
    }
}

/// `room:*`.
#[derive(Default)]
pub struct RoomChannel;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Raised(&'static str);

#[async_trait]
impl Channel for RoomChannel {
    async fn join(
        &mut self,
        topic: &str,
        _payload: Payload,
        socket: &mut ChannelSocket,
    ) -> Result<JoinReply, ChannelError> {
        match topic {
            "room:private" => Ok(JoinReply::error_reason("unauthorized")),
            "room:greet" => Ok(JoinReply::Ok(json!({"hello": "world"}).into())),
            "room:crash" => Err(Box::new(Raised("crash in join"))),
            "room:tick" => {
                // Pushed during join: the runtime delivers it after the join reply.
                socket.push("tick", json!({"n": 1}))?;
                Ok(JoinReply::ok())
            }
            _ => Ok(JoinReply::ok()),
        }
    }

    fn intercept(&self) -> &'static [&'static str] {
        &["filtered"]
    }

    async fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut ChannelSocket,
    ) -> Result<HandleResult, ChannelError> {
        Ok(match event {
            "ping" => HandleResult::Reply(Reply::Ok(payload)),
            "noreply" => HandleResult::NoReply,
            "error_reply" => HandleResult::Reply(Reply::Error(json!({"reason": "nope"}).into())),
            "boom" => return Err(Box::new(Raised("boom"))),
            "stop" => HandleResult::Stop {
                reason: StopReason::Normal,
                reply: Some(Reply::ok()),
            },
            "shout" => {
                socket.broadcast("shout", payload)?;
                HandleResult::Reply(Reply::ok())
            }
            "shout_from" => {
                socket.broadcast_from("shout", payload)?;
                HandleResult::Reply(Reply::ok())
            }
            "push" => {
                socket.push("pushed", payload)?;
                HandleResult::NoReply
            }
            "filter" => {
                socket.broadcast("filtered", payload)?;
                HandleResult::NoReply
            }
            "whoami" => {
                let user_id = socket.get_assign("user_id").cloned().unwrap_or(Value::Null);
                HandleResult::Reply(Reply::Ok(json!({"user_id": user_id}).into()))
            }
            "disconnect_me" => {
                if let Some(id) = socket.socket_id() {
                    socket.endpoint().broadcast(id, "disconnect", json!({}));
                }
                HandleResult::NoReply
            }
            other => return Err(Box::new(UnmatchedEvent(other.to_string()))),
        })
    }

    async fn handle_out(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut ChannelSocket,
    ) -> Result<HandleResult, ChannelError> {
        let payload = match payload {
            Payload::Json(Value::Object(mut map)) => {
                map.insert("seen".into(), Value::Bool(true));
                Payload::Json(Value::Object(map))
            }
            other => other,
        };
        socket.push(event, payload)?;
        Ok(HandleResult::NoReply)
    }
}

/// `presence:*`: tracks the socket after join and pushes `presence_state`, as Phoenix apps do
/// from an `:after_join` message.
///
/// Key: `to_string(user_id)`, or `"anon-" <> params["name"]` on an anonymous socket; meta
/// `{"name": params["name"]}`. `handle_in("update", meta)` updates the meta, no reply.
pub struct PresenceChannel {
    /// The fixture's Presence (shared by every join).
    presence: Presence,
    /// This socket's presence key, set at join.
    key: String,
}

/// `send(self(), :after_join)`.
struct AfterJoin {
    /// The join params' `name`.
    name: Value,
}

impl PresenceChannel {
    /// The router factory over `presence`.
    pub fn factory(presence: Presence) -> impl Fn() -> PresenceChannel + Send + Sync + 'static {
        move || PresenceChannel {
            presence: presence.clone(),
            key: String::new(),
        }
    }
}

#[async_trait]
impl Channel for PresenceChannel {
    async fn join(
        &mut self,
        _topic: &str,
        payload: Payload,
        socket: &mut ChannelSocket,
    ) -> Result<JoinReply, ChannelError> {
        let name = match &payload {
            Payload::Json(Value::Object(params)) => params.get("name").cloned(),
            _ => None,
        }
        .unwrap_or(Value::Null);
        self.key = match socket.get_assign("user_id") {
            Some(Value::Number(id)) => id.to_string(),
            Some(Value::String(id)) => id.clone(),
            _ => match &name {
                Value::String(n) => format!("anon-{n}"),
                Value::Null => "anon-".to_string(),
                other => format!("anon-{other}"),
            },
        };
        socket.send_self(AfterJoin { name });
        Ok(JoinReply::ok())
    }

    async fn handle_info(
        &mut self,
        msg: Info,
        socket: &mut ChannelSocket,
    ) -> Result<HandleResult, ChannelError> {
        if let Ok(AfterJoin { name }) = msg.downcast::<AfterJoin>() {
            self.presence
                .track(socket, &self.key, json!({ "name": name }))?;
            // One encode per read of the topic, shared by every joiner it serves.
            let state = self.presence.list_shared(socket.topic()).await;
            socket.push_encoded("presence_state", state.encoded());
        }
        Ok(HandleResult::NoReply)
    }

    async fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut ChannelSocket,
    ) -> Result<HandleResult, ChannelError> {
        match (event, payload) {
            ("update", Payload::Json(meta)) => {
                self.presence.update(socket, &self.key, meta)?;
                Ok(HandleResult::NoReply)
            }
            (other, _) => Err(Box::new(UnmatchedEvent(other.to_string()))),
        }
    }
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    user_id: i64,
}

#[derive(serde::Deserialize)]
struct BroadcastBody {
    topic: String,
    event: String,
    payload: Value,
}

/// The fixture's HTTP helpers: `GET /fixture/token`, `POST /fixture/broadcast`.
pub fn routes(endpoint: &Endpoint) -> axum::Router {
    let ep1 = endpoint.clone();
    let ep2 = endpoint.clone();
    axum::Router::new()
        .route(
            "/fixture/token",
            get(move |q: Result<Query<TokenQuery>, _>| {
                let ep = ep1.clone();
                async move {
                    match q {
                        Ok(Query(q)) => (
                            StatusCode::OK,
                            [("content-type", "text/plain; charset=utf-8")],
                            ep.sign_token(USER_SALT, &Term::Int(q.user_id)),
                        )
                            .into_response(),
                        Err(_) => {
                            (StatusCode::BAD_REQUEST, "user_id must be an integer").into_response()
                        }
                    }
                }
            }),
        )
        .route(
            "/fixture/broadcast",
            post(move |body: Bytes| {
                let ep = ep2.clone();
                async move {
                    match serde_json::from_slice::<BroadcastBody>(&body) {
                        Ok(b) => {
                            ep.broadcast(&b.topic, &b.event, b.payload);
                            StatusCode::NO_CONTENT.into_response()
                        }
                        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
                    }
                }
            }),
        )
}

//! `ChannelSocket`: what a channel callback gets as `socket` — Phoenix's `%Phoenix.Socket{}`
//! inside a channel: topic, join_ref, assigns, and the verbs push/reply/broadcast.

use std::sync::{Arc, Weak};
use std::time::Duration;

use phx_protocol::{EncodeError, EncodedObject, Message, Payload};
use serde_json::Value;

use super::server::ChannelInbox;
use super::{Info, Reply};
use crate::conn::{ConnHandle, OutFrame};
use crate::context::Context;
use crate::pubsub::BroadcastMsg;
use crate::socket::Assigns;

/// Why a push or broadcast was refused.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The payload cannot be encoded for this socket (binary on V1, a field over 255 bytes in
    /// a binary frame, a ref that is not a string).
    #[error("cannot encode: {0}")]
    Encode(#[from] EncodeError),
    /// Broadcast and push payloads must be JSON objects or binary, as in Phoenix.
    #[error("payload must be a JSON object or binary")]
    NotAMap,
}

/// A channel's view of its socket.
pub struct ChannelSocket {
    /// The joined topic.
    pub(crate) topic: Arc<str>,
    /// The join_ref of the join that created this channel (`join_ref || ref`), put on pushes.
    pub(crate) join_ref: Value,
    /// The join message's own join_ref (null on V1 joins without one): the socket puts this
    /// one on phx_close/phx_error, as Phoenix's socket process does from its channel table.
    pub(crate) close_ref: Value,
    /// Assigns: copied from the socket's connect assigns at join, then the channel's own.
    pub(crate) assigns: Arc<Assigns>,
    /// The socket's outbound side.
    pub(crate) conn: Arc<ConnHandle>,
    /// The endpoint's shared services (PubSub, config, tokens).
    pub(crate) context: Context,
    /// This channel's unique id; also its PubSub subscriber id.
    pub(crate) id: u64,
    /// This channel's inbox, for `send`/`send_after` to itself. Weak so timers do not keep a
    /// stopped channel's memory alive.
    pub(crate) inbox: Weak<ChannelInbox>,
    /// False until the join reply is queued; pushes made before are deferred behind it.
    pub(crate) joined: bool,
    /// Pushes made during `join`, sent right after the join reply.
    pub(crate) deferred: Vec<OutFrame>,
    /// The ref of the client message being handled (for `socket_ref`).
    pub(crate) current_ref: Value,
    /// When the message being handled reached this channel (the join's start, during join).
    pub(crate) received_at: tokio::time::Instant,
    /// The socket's id (`Socket.id/1`), if any.
    pub(crate) socket_id: Option<Arc<str>>,
    /// Dropped with this value when the channel's task ends, however it ends (stop, crash,
    /// transport close, abort): Presence's untrack-on-exit guards live here.
    pub(crate) exit_guards: Vec<Box<dyn Send>>,
    /// Set by `join` through [`ChannelSocket::skip_held_broadcasts`]; used once, when the
    /// broadcasts held during the join are released.
    pub(crate) skip_held: Option<SkipHeld>,
}

/// A predicate over `(event, payload)` of a held broadcast: true to drop it.
pub(crate) type SkipHeld = Box<dyn FnMut(&str, &Payload) -> bool + Send>;

/// A reference to one client message, for replying later (Phoenix's `socket_ref/1` and
/// `reply/2`): the reply may come from another task, after `handle_in` returned `NoReply`.
#[derive(Clone)]
pub struct SocketRef {
    conn: Arc<ConnHandle>,
    topic: Arc<str>,
    join_ref: Value,
    ref_: Value,
}

impl SocketRef {
    /// Sends the reply `[join_ref, ref, topic, "phx_reply", {"response", "status"}]`.
    pub fn reply(&self, reply: Reply) -> Result<(), PushError> {
        let (status, response) = reply.into_parts();
        self.conn.reply(&phx_protocol::Reply {
            join_ref: self.join_ref.clone(),
            ref_: self.ref_.clone(),
            topic: self.topic.to_string(),
            status,
            response,
        })?;
        Ok(())
    }
}

/// A timer started with `send_after`/`send_interval`; dropping it does not cancel it.
pub struct TimerRef(tokio::task::AbortHandle);

impl TimerRef {
    /// Cancels the timer (Process.cancel_timer).
    pub fn cancel(&self) {
        self.0.abort();
    }
}

fn check_map(payload: &Payload) -> Result<(), PushError> {
    match payload {
        Payload::Json(Value::Object(_)) | Payload::Binary(_) => Ok(()),
        Payload::Json(_) => Err(PushError::NotAMap),
    }
}

impl ChannelSocket {
    /// The topic this channel joined.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The join_ref of the current join.
    pub fn join_ref(&self) -> &Value {
        &self.join_ref
    }

    /// The socket's id (`users_socket:42`), if its handler gave one.
    pub fn socket_id(&self) -> Option<&str> {
        self.socket_id.as_deref()
    }

    /// The assigns (connect assigns plus this channel's).
    pub fn assigns(&self) -> &Assigns {
        &self.assigns
    }

    /// An assign by key.
    pub fn get_assign(&self, key: &str) -> Option<&Value> {
        self.assigns.get(key)
    }

    /// `assign(socket, key, value)`.
    pub fn assign(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        Arc::make_mut(&mut self.assigns).insert(key.into(), value.into());
    }

    /// The endpoint's shared services: `Endpoint.broadcast/3` to other topics
    /// ([`Context::broadcast`]), `Phoenix.Token`, config. Clone it to use it from another task.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// This channel's PubSub subscriber id.
    pub fn channel_id(&self) -> u64 {
        self.id
    }

    /// `push(socket, event, payload)`: `[join_ref, null, topic, event, payload]` to this client.
    pub fn push(&mut self, event: &str, payload: impl Into<Payload>) -> Result<(), PushError> {
        let payload = payload.into();
        check_map(&payload)?;
        let msg = Message {
            join_ref: self.join_ref.clone(),
            ref_: Value::Null,
            topic: self.topic.to_string(),
            event: event.to_string(),
            payload,
        };
        let frame = self.conn.serializer().encode_push(&msg)?;
        self.queue_push(frame);
        Ok(())
    }

    /// [`ChannelSocket::push`] of a payload encoded already (one that many sockets are pushed
    /// alike, such as a topic's [`crate::presence::PresenceState`]): the frame is byte for byte
    /// the one `push` would make, for one copy of the bytes instead of an encode.
    pub fn push_encoded(&mut self, event: &str, payload: &EncodedObject) {
        let frame = self.conn.serializer().encode_push_encoded(
            &self.join_ref,
            &Value::Null,
            &self.topic,
            event,
            payload,
        );
        self.queue_push(frame);
    }

    fn queue_push(&mut self, frame: phx_protocol::Frame) {
        if let Some(frame) = OutFrame::from_frame(frame) {
            if self.joined {
                self.conn.send_frame(frame);
            } else {
                self.deferred.push(frame);
            }
        }
    }

    /// `broadcast(socket, event, payload)`: to every subscriber of this topic, this socket
    /// included.
    pub fn broadcast(&self, event: &str, payload: impl Into<Payload>) -> Result<(), PushError> {
        self.publish(event, payload.into(), None)
    }

    /// `broadcast_from(socket, event, payload)`: to every subscriber but this channel.
    pub fn broadcast_from(
        &self,
        event: &str,
        payload: impl Into<Payload>,
    ) -> Result<(), PushError> {
        self.publish(event, payload.into(), Some(self.id))
    }

    fn publish(&self, event: &str, payload: Payload, from: Option<u64>) -> Result<(), PushError> {
        check_map(&payload)?;
        self.context.pubsub().broadcast(BroadcastMsg {
            topic: self.topic.clone(),
            event: event.to_string(),
            payload,
            from,
        });
        Ok(())
    }

    /// When the client message being handled reached this channel — not when `handle_in`
    /// started: messages queued behind a slow one have waited already. A deadline that must
    /// hold for the client (phoenix.js times a push out after 10 s) counts from here.
    pub fn received_at(&self) -> tokio::time::Instant {
        self.received_at
    }

    /// `socket_ref(socket)`: a handle to reply to the message being handled, later.
    pub fn socket_ref(&self) -> SocketRef {
        SocketRef {
            conn: self.conn.clone(),
            topic: self.topic.clone(),
            join_ref: self.join_ref.clone(),
            ref_: self.current_ref.clone(),
        }
    }

    /// For `join` only: which of the broadcasts that arrive while `join` runs are already
    /// covered by the join reply, so the client does not get them twice.
    ///
    /// A channel is subscribed to its topic before `join` runs, so nothing published after
    /// `join` started reading is lost; broadcasts that arrive meanwhile are held and sent right
    /// after the join reply. A join that reads state and returns it (Rumbl's annotations) may
    /// see some of those broadcasts' effects already; `covered(event, payload)` returning true
    /// drops such a held broadcast. Called once per held broadcast, after `join` returned;
    /// later broadcasts are never filtered. Calling it again replaces the predicate.
    pub fn skip_held_broadcasts(
        &mut self,
        covered: impl FnMut(&str, &Payload) -> bool + Send + 'static,
    ) {
        self.skip_held = Some(Box::new(covered));
    }

    /// `send(self(), msg)`: delivered to `handle_info` after the current callback.
    pub fn send_self<T: std::any::Any + Send>(&self, msg: T) {
        if let Some(inbox) = self.inbox.upgrade() {
            inbox.send_info(Info::new(msg));
        }
    }

    /// `Process.send_after(self(), msg, ms)`.
    pub fn send_after<T: std::any::Any + Send>(&self, after: Duration, msg: T) -> TimerRef {
        let inbox = self.inbox.clone();
        let handle = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(inbox) = inbox.upgrade() {
                inbox.send_info(Info::new(msg));
            }
        });
        TimerRef(handle.abort_handle())
    }

    /// `:timer.send_interval(ms, msg)`: `make()` is sent every `every` until the channel stops.
    pub fn send_interval<T, F>(&self, every: Duration, make: F) -> TimerRef
    where
        T: std::any::Any + Send,
        F: Fn() -> T + Send + 'static,
    {
        let inbox = self.inbox.clone();
        let handle = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inbox) = inbox.upgrade() else { return };
                if !inbox.send_info(Info::new(make())) {
                    return;
                }
            }
        });
        TimerRef(handle.abort_handle())
    }

    /// Keeps `guard` until the channel's task ends, then drops it — as a tracker monitors a
    /// channel process in Phoenix, so a presence goes when its channel does.
    pub(crate) fn on_exit(&mut self, guard: impl Send + 'static) {
        self.exit_guards.push(Box::new(guard));
    }

    /// Queues the deferred pushes behind the join reply.
    pub(crate) fn mark_joined(&mut self) {
        self.joined = true;
        for frame in self.deferred.drain(..) {
            self.conn.send_frame(frame);
        }
        self.deferred = Vec::new();
    }

    /// Queues a push with explicit refs (phx_close / phx_error use ref = join_ref).
    pub(crate) fn push_control(&self, event: &str, payload: Payload) {
        let msg = Message {
            join_ref: self.close_ref.clone(),
            ref_: self.close_ref.clone(),
            topic: self.topic.to_string(),
            event: event.to_string(),
            payload,
        };
        if let Err(e) = self.conn.push(&msg) {
            tracing::error!(topic = %self.topic, "cannot encode {event}: {e}");
        }
    }

    /// Sends a reply to the message with `ref_`.
    pub(crate) fn reply_to(&self, ref_: Value, reply: Reply) -> Result<(), PushError> {
        let (status, response) = reply.into_parts();
        self.conn.reply(&phx_protocol::Reply {
            join_ref: self.join_ref.clone(),
            ref_,
            topic: self.topic.to_string(),
            status,
            response,
        })?;
        Ok(())
    }
}

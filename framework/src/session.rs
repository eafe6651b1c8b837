//! The per-connection state machine: spec §3's dispatch rules and §4's lifecycle, knowing
//! nothing about the transport that carries the frames.
//!
//! A transport feeds the frames it receives to [`Session::handle_frame`], which decodes them
//! with the socket's serializer, checks the documented limits (field sizes, rate limits) and
//! applies the dispatch rules; a frame that cannot be decoded or breaks a limit comes back as a
//! [`FrameError`] that the transport turns into its close code. Most rules complete at once; a
//! join (which Phoenix runs synchronously in the socket process) and forwarding to a channel
//! whose inbox is full return a [`Wait`]: the transport must stop feeding frames until the
//! wait completes and is handed to [`Session::resume`], while it keeps writing frames out.
//! Channel exits and drain requests reach the session through the socket's outbound queue
//! ([`Outgoing`]), in order with the frames; the transport takes that queue through
//! [`Session::take_outgoing`], which applies them and hands over only what is written.
//!
//! Limits a client meets here (README, "Limits and failure behaviour"): every message takes a
//! token from the socket's message bucket (`MAX_MESSAGES_PER_SEC`) and every join one from its
//! join bucket (`MAX_JOINS_PER_SEC`, burst 2 × `MAX_CHANNELS`); an empty bucket gets an error reply
//! `{"reason":"rate limited"}` and the message is not processed. Client messages count against
//! their channel's inbox bounds by their size on the wire — `phx_leave` included — so a flood
//! stops the socket being read (TCP backpressure) instead of growing memory.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use phx_protocol::{DecodeError, FrameRef, Message, Payload, Reply};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::channel::server::{self, ChannelInbox, ChannelMsg, JoinRequest};
use crate::channel::StopReason;
use crate::conn::{CloseCode, ConnHandle, OutFrame, Outgoing};
use crate::endpoint::{Endpoint, SocketMount};
use crate::mailbox::Drain;
use crate::metrics::ChannelLabels;
use crate::pubsub::{Subscriber, SubscriberKind};
use crate::rate::{Rate, TokenBucket};
use crate::socket::Assigns;

/// Why a received frame ends the connection (the transport's close code).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Not a Phoenix message for this serializer (WebSocket close 1011).
    #[error("malformed frame: {0}")]
    Malformed(#[from] DecodeError),
    /// A decoded message breaks a documented limit (WebSocket close 1008).
    #[error("policy violation: {0}")]
    Policy(#[from] phx_protocol::limits::LimitError),
}

impl FrameError {
    /// The WebSocket close code documented for this error.
    pub fn close_code(&self) -> CloseCode {
        match self {
            FrameError::Malformed(_) => CloseCode::MALFORMED,
            FrameError::Policy(_) => CloseCode::POLICY,
        }
    }
}

/// A joined (or leaving) channel, as the session knows it.
struct Entry {
    /// The channel's unique id (PubSub subscriber id).
    id: u64,
    /// The join_ref of the join message, compared with strict equality (may be null on V1).
    join_ref: Value,
    /// Where client messages for this topic go.
    inbox: Arc<ChannelInbox>,
    /// A `phx_leave` was forwarded; the channel will close itself.
    leaving: bool,
}

/// topic → channel, as a small vector: a socket joins a handful of topics (at most
/// `max_channels`), a linear scan over them is as fast as hashing, and one entry costs its own
/// size instead of a hash table's minimum of four buckets — on every idle socket.
#[derive(Default)]
struct Channels(Vec<(Arc<str>, Entry)>);

impl Channels {
    fn position(&self, topic: &str) -> Option<usize> {
        self.0.iter().position(|(t, _)| &**t == topic)
    }
    fn get(&self, topic: &str) -> Option<&Entry> {
        self.position(topic).map(|i| &self.0[i].1)
    }
    fn get_mut(&mut self, topic: &str) -> Option<&mut Entry> {
        self.position(topic).map(move |i| &mut self.0[i].1)
    }
    fn remove(&mut self, topic: &str) -> Option<Entry> {
        self.position(topic).map(|i| self.0.swap_remove(i).1)
    }
    fn insert(&mut self, topic: Arc<str>, entry: Entry) {
        if let Some(i) = self.position(&topic) {
            self.0[i].1 = entry;
            return;
        }
        if self.0.capacity() == 0 {
            self.0.reserve_exact(1);
        }
        self.0.push((topic, entry));
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    /// A channel stopped (leave, stop, crash): forget its topic if it is still the current
    /// channel there (a later join of the same topic has another id).
    fn exited(&mut self, topic: &str, channel_id: u64) {
        if self.get(topic).is_some_and(|e| e.id == channel_id) {
            self.remove(topic);
        }
    }
}

/// Something the session is waiting for before it takes the next message.
pub struct Wait(Pin<Box<dyn Future<Output = Resume> + Send>>);

impl Future for Wait {
    type Output = Resume;
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Resume> {
        self.0.as_mut().poll(cx)
    }
}

/// The outcome of a [`Wait`], for [`Session::resume`].
pub struct Resume(ResumeKind);

enum ResumeKind {
    Joined {
        topic: Arc<str>,
        join_ref: Value,
        id: u64,
        inbox: Arc<ChannelInbox>,
        ok: bool,
        close_old: Option<Value>,
    },
    Room {
        msg: Message,
        weight: usize,
    },
    Drained,
}

/// One connected socket's channels.
pub struct Session {
    /// The endpoint.
    endpoint: Endpoint,
    /// The socket this session belongs to (routes, handler).
    mount: Arc<SocketMount>,
    /// Outbound side.
    conn: Arc<ConnHandle>,
    /// Assigns from `connect`, copied (by reference) into each channel.
    assigns: Arc<Assigns>,
    /// `id/1`, if any.
    socket_id: Option<Arc<str>>,
    /// Subscription to the socket id topic, for "disconnect".
    id_subscription: Option<u64>,
    /// topic → channel.
    channels: Channels,
    /// `MAX_MESSAGES_PER_SEC`: every message takes a token.
    messages: TokenBucket,
    /// `MAX_JOINS_PER_SEC`: every join takes a token too.
    joins: TokenBucket,
    /// The endpoint asked this socket to drain ([`Outgoing::Drain`] was taken from the queue);
    /// the transport starts the drain once nothing else is pending.
    drain_requested: bool,
}

/// What a transport writes for its client, as [`Session::take_outgoing`] hands it over.
#[derive(Debug)]
pub enum Out {
    /// A frame to write.
    Frame(OutFrame),
    /// Close the connection with this code, after the frames before it; nothing follows it.
    Close(CloseCode),
    /// The frame before this one is a sampled broadcast published at this instant (see
    /// [`Outgoing::Published`]): the transport observes the time once it wrote that frame.
    Published(std::time::Instant),
}

/// The socket's queued items, taken at once: channel exits and drain requests are applied to
/// the session as the iterator reaches them, in order with the frames around them, so only
/// frames and a close come out.
pub struct Outbound<'a> {
    channels: &'a mut Channels,
    drain_requested: &'a mut bool,
    items: Drain<Outgoing>,
}

impl Iterator for Outbound<'_> {
    type Item = Out;
    fn next(&mut self) -> Option<Out> {
        loop {
            match self.items.next()? {
                Outgoing::Frame(f) => return Some(Out::Frame(f)),
                Outgoing::Close(code) => return Some(Out::Close(code)),
                Outgoing::Published(at) => return Some(Out::Published(at)),
                Outgoing::ChannelExited { topic, channel_id } => {
                    self.channels.exited(&topic, channel_id)
                }
                Outgoing::Drain => *self.drain_requested = true,
            }
        }
    }
}

impl Session {
    /// A session for a socket that `connect` accepted with `assigns` and `socket_id`.
    pub fn new(
        endpoint: Endpoint,
        mount: Arc<SocketMount>,
        conn: Arc<ConnHandle>,
        assigns: Assigns,
        socket_id: Option<String>,
    ) -> Session {
        let socket_id: Option<Arc<str>> = socket_id.map(Into::into);
        let id_subscription = socket_id.as_ref().map(|sid| {
            let id = endpoint.next_id();
            endpoint.pubsub().subscribe(
                sid,
                Subscriber {
                    id,
                    kind: SubscriberKind::SocketId { conn: conn.clone() },
                },
            );
            id
        });
        let (messages, joins) = {
            let cfg = endpoint.config();
            (
                TokenBucket::full(message_rate(cfg)),
                TokenBucket::full(join_rate(cfg)),
            )
        };
        Session {
            endpoint,
            mount,
            conn,
            assigns: Arc::new(assigns),
            socket_id,
            id_subscription,
            channels: Channels::default(),
            messages,
            joins,
            drain_requested: false,
        }
    }

    /// The socket's outbound side.
    pub fn conn(&self) -> &Arc<ConnHandle> {
        &self.conn
    }

    /// Number of joined channels.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    fn reply(&self, join_ref: Value, ref_: Value, topic: &str, status: &str, response: Value) {
        let r = Reply {
            join_ref,
            ref_,
            topic: topic.to_string(),
            status: status.to_string(),
            response: Payload::Json(response),
        };
        if let Err(e) = self.conn.reply(&r) {
            tracing::error!(topic, "cannot encode reply: {e}");
        }
    }

    fn unmatched(&self, msg: &Message) {
        self.reply(
            Value::Null,
            msg.ref_.clone(),
            &msg.topic,
            "error",
            json!({"reason": "unmatched topic"}),
        );
    }

    /// Decodes a received frame with the socket's serializer, checks the documented field
    /// limits and dispatches it. `Err` means the connection must close (the transport sends
    /// [`FrameError::close_code`]).
    pub fn handle_frame(&mut self, frame: FrameRef<'_>) -> Result<Option<Wait>, FrameError> {
        let weight = match frame {
            FrameRef::Text(t) => t.len(),
            FrameRef::Binary(b) => b.len(),
        };
        let msg = self.conn.serializer().decode(frame)?;
        phx_protocol::limits::check_client_message(&msg)?;
        Ok(self.dispatch(msg, weight))
    }

    /// Applies the dispatch rules of spec §3 to one decoded client message of `weight` bytes on
    /// the wire, after the socket's message rate limit.
    pub fn dispatch(&mut self, msg: Message, weight: usize) -> Option<Wait> {
        let rate = message_rate(self.endpoint.config());
        if !self.messages.take(rate) {
            crate::warn_limited!(
                per_sec = rate.per_sec,
                "rate limited a socket's message (MAX_MESSAGES_PER_SEC)"
            );
            self.rate_limited(&msg);
            return None;
        }
        self.route(msg, weight)
    }

    /// The dispatch rules, once the message was admitted.
    fn route(&mut self, msg: Message, weight: usize) -> Option<Wait> {
        // Rule 1: heartbeat, whatever its join_ref and whatever is joined.
        if msg.topic == "phoenix" && msg.event == "heartbeat" {
            self.reply(Value::Null, msg.ref_, "phoenix", "ok", json!({}));
            return None;
        }
        match msg.event.as_str() {
            "phx_join" => self.join(msg),
            "phx_leave" => self.leave(msg, weight),
            _ => self.forward(msg, weight),
        }
    }

    /// The error reply for a message refused by a rate limit. A heartbeat's keeps the
    /// heartbeat reply's shape (join_ref null); the JS client only matches its ref.
    fn rate_limited(&self, msg: &Message) {
        let join_ref = if msg.topic == "phoenix" && msg.event == "heartbeat" {
            Value::Null
        } else {
            msg.join_ref.clone()
        };
        self.reply(
            join_ref,
            msg.ref_.clone(),
            &msg.topic,
            "error",
            json!({"reason": "rate limited"}),
        );
    }

    fn join(&mut self, msg: Message) -> Option<Wait> {
        let Some((factory, name, pattern)) = self.mount.router.matching(&msg.topic) else {
            // Rule 2: no route; join_ref null.
            self.unmatched(&msg);
            return None;
        };
        // Rule 2b: channel cap (a duplicate join replaces a channel, it adds none). Checked
        // before the join rate limit, so a refused join costs no token.
        let duplicate = self.channels.get(&msg.topic).is_some();
        if !duplicate && self.channels.len() >= self.endpoint.config().max_channels {
            self.reply(
                msg.join_ref.clone(),
                msg.ref_.clone(),
                &msg.topic,
                "error",
                json!({"reason": "too many channels joined"}),
            );
            return None;
        }
        // Before anything is stopped or started: a rate-limited duplicate join leaves the
        // current channel alone.
        let rate = join_rate(self.endpoint.config());
        if !self.joins.take(rate) {
            crate::warn_limited!(
                per_sec = rate.per_sec,
                "rate limited a socket's join (MAX_JOINS_PER_SEC)"
            );
            self.rate_limited(&msg);
            return None;
        }
        let topic: Arc<str> = msg.topic.as_str().into();
        // Rule 3: duplicate join. Stop the old channel (no frames from it), and after the new
        // join reply send phx_close for the old join_ref — unless the old one was leaving and
        // so already sends its own phx_close.
        let mut close_old = None;
        if let Some(old) = self.channels.remove(&topic) {
            self.endpoint.pubsub().unsubscribe(&topic, old.id);
            let _ = old
                .inbox
                .mailbox
                .send_control(ChannelMsg::Shutdown(StopReason::Shutdown(
                    "duplicate_join".into(),
                )));
            if !old.leaving {
                close_old = Some(old.join_ref);
            }
        }
        let id = self.endpoint.next_id();
        // The channel's own join_ref is `join_ref || ref`; the session stores the message's.
        let channel_join_ref = if msg.join_ref.is_null() {
            msg.ref_.clone()
        } else {
            msg.join_ref.clone()
        };
        let (inbox, rx) = server::start(
            self.endpoint.context().clone(),
            self.conn.clone(),
            factory(),
            JoinRequest {
                topic: topic.clone(),
                join_ref: channel_join_ref,
                close_ref: msg.join_ref.clone(),
                ref_: msg.ref_,
                payload: msg.payload,
                assigns: self.assigns.clone(),
                socket_id: self.socket_id.clone(),
                id,
                channel_name: name,
                labels: ChannelLabels {
                    socket: self.mount.path.as_str().into(),
                    pattern: pattern.clone(),
                },
            },
        );
        let join_ref = msg.join_ref;
        Some(Wait(Box::pin(async move {
            let ok = rx.await.unwrap_or(false);
            Resume(ResumeKind::Joined {
                topic,
                join_ref,
                id,
                inbox,
                ok,
                close_old,
            })
        })))
    }

    fn leave(&mut self, msg: Message, weight: usize) -> Option<Wait> {
        match self.channels.get_mut(msg.topic.as_str()) {
            // Rule 4: forward; the channel replies ok and sends phx_close. A leave is a client
            // message like any other: it waits for room in the channel's inbox (a flood of
            // leaves to a busy channel must not grow it).
            Some(entry) if msg.join_ref.is_null() || msg.join_ref == entry.join_ref => {
                if let Some(wait) = Self::wait_for_room(&entry.inbox, weight) {
                    return Some(wait_room(wait, msg, weight));
                }
                match entry.inbox.mailbox.send_counted(
                    ChannelMsg::Leave {
                        ref_: msg.ref_.clone(),
                    },
                    weight,
                ) {
                    Ok(()) => entry.leaving = true,
                    Err(_) => {
                        // The channel already stopped: as if it were not joined (rule 6).
                        self.channels.remove(msg.topic.as_str());
                        self.reply(msg.join_ref, msg.ref_, &msg.topic, "ok", json!({}));
                    }
                }
                None
            }
            // Rule 4b: stale join_ref, ignored.
            Some(_) => None,
            // Rule 6: not joined: ok reply, join_ref echoed, no phx_close.
            None => {
                self.reply(msg.join_ref, msg.ref_, &msg.topic, "ok", json!({}));
                None
            }
        }
    }

    /// The inbox to wait on if `inbox` has no room for a message of `weight` bytes (and is
    /// still open: a closed one refuses at once, and the caller answers as for a dead channel).
    fn wait_for_room(inbox: &Arc<ChannelInbox>, weight: usize) -> Option<Arc<ChannelInbox>> {
        (!inbox.mailbox.has_room(weight) && !inbox.mailbox.is_closed()).then(|| inbox.clone())
    }

    fn forward(&mut self, msg: Message, weight: usize) -> Option<Wait> {
        let Some(entry) = self.channels.get(msg.topic.as_str()) else {
            // Rule 7.
            self.unmatched(&msg);
            return None;
        };
        // Rule 5b: stale join_ref, dropped without a reply.
        if !(msg.join_ref.is_null() || msg.join_ref == entry.join_ref) {
            return None;
        }
        if let Some(inbox) = Self::wait_for_room(&entry.inbox, weight) {
            // Backpressure: stop reading this socket until the channel catches up, then
            // dispatch the same message again.
            return Some(wait_room(inbox, msg, weight));
        }
        let item = ChannelMsg::In {
            event: msg.event,
            ref_: msg.ref_.clone(),
            payload: msg.payload,
            received_at: tokio::time::Instant::now(),
        };
        // Room was checked above; `send_counted` still counts the message against the bound
        // but never drops it if another producer raced us into the last slot.
        if entry.inbox.mailbox.send_counted(item, weight).is_err() {
            // The channel died and its exit notice is still queued: unmatched, as Phoenix
            // answers once the channel is gone.
            self.channels.remove(msg.topic.as_str());
            self.reply(
                Value::Null,
                msg.ref_,
                &msg.topic,
                "error",
                json!({"reason": "unmatched topic"}),
            );
        }
        None
    }

    /// Continues after a [`Wait`] completed; may return another.
    pub fn resume(&mut self, resume: Resume) -> Option<Wait> {
        match resume.0 {
            ResumeKind::Joined {
                topic,
                join_ref,
                id,
                inbox,
                ok,
                close_old,
            } => {
                if ok {
                    self.channels.insert(
                        topic.clone(),
                        Entry {
                            id,
                            join_ref,
                            inbox,
                            leaving: false,
                        },
                    );
                }
                if let Some(old) = close_old {
                    let m = Message {
                        join_ref: old.clone(),
                        ref_: old,
                        topic: topic.to_string(),
                        event: "phx_close".into(),
                        payload: Payload::empty(),
                    };
                    if let Err(e) = self.conn.push(&m) {
                        tracing::error!(%topic, "cannot encode phx_close: {e}");
                    }
                }
                None
            }
            // Admitted by the rate limit the first time round.
            ResumeKind::Room { msg, weight } => self.route(msg, weight),
            ResumeKind::Drained => {
                self.conn.close(CloseCode::DRAIN);
                None
            }
        }
    }

    /// Phoenix's drain for this socket: every joined channel handles what it already received
    /// (so the replies are queued), then the socket closes with 1012. The transport must stop
    /// feeding frames from now on; the returned wait completes when every channel got there,
    /// or at `deadline`, and its resume queues the close.
    pub fn drain(&mut self, deadline: tokio::time::Instant) -> Wait {
        let acks: Vec<oneshot::Receiver<()>> = self
            .channels
            .0
            .iter()
            .filter_map(|(_, entry)| {
                let (tx, rx) = oneshot::channel();
                // A control item: after every message already queued, never refused for room.
                entry
                    .inbox
                    .mailbox
                    .send_control(ChannelMsg::Drain(tx))
                    .ok()
                    .map(|()| rx)
            })
            .collect();
        Wait(Box::pin(async move {
            let all = async {
                for rx in acks {
                    // A channel that stopped meanwhile drops its sender: nothing to wait for.
                    let _ = rx.await;
                }
            };
            let _ = tokio::time::timeout_at(deadline, all).await;
            Resume(ResumeKind::Drained)
        }))
    }

    /// Takes everything queued for the client (see [`Outbound`]).
    pub fn take_outgoing(&mut self) -> Outbound<'_> {
        Outbound {
            items: self.conn.outbox().take_all(),
            channels: &mut self.channels,
            drain_requested: &mut self.drain_requested,
        }
    }

    /// Whether the endpoint asked this socket to drain (seen in [`Session::take_outgoing`]).
    pub fn drain_requested(&self) -> bool {
        self.drain_requested
    }
}

/// A wait for room in `inbox`, after which `msg` is routed again.
fn wait_room(inbox: Arc<ChannelInbox>, msg: Message, weight: usize) -> Wait {
    Wait(Box::pin(async move {
        inbox.mailbox.room(weight).await;
        Resume(ResumeKind::Room { msg, weight })
    }))
}

/// `MAX_MESSAGES_PER_SEC`, with a burst of one second's worth.
fn message_rate(cfg: &crate::config::Config) -> Rate {
    Rate::new(cfg.max_messages_per_sec, cfg.max_messages_per_sec)
}

/// `MAX_JOINS_PER_SEC`, with a burst of twice `MAX_CHANNELS`: a page may join every channel it
/// is allowed at once, and then still leave and rejoin as many before the rate applies.
fn join_rate(cfg: &crate::config::Config) -> Rate {
    let burst = u32::try_from(cfg.max_channels.saturating_mul(2)).unwrap_or(u32::MAX);
    Rate::new(cfg.max_joins_per_sec, burst)
}

impl Drop for Session {
    fn drop(&mut self) {
        // The transport is gone: every channel stops with {:shutdown, :closed}, no frames.
        for (_, entry) in self.channels.0.drain(..) {
            let _ = entry
                .inbox
                .mailbox
                .send_control(ChannelMsg::Shutdown(StopReason::Shutdown("closed".into())));
        }
        if let (Some(sid), Some(id)) = (&self.socket_id, self.id_subscription) {
            self.endpoint.pubsub().unsubscribe(sid, id);
        }
    }
}

//! One task per joined channel (Phoenix's `Phoenix.Channel.Server` process).
//!
//! The channel subscribes to its topic *before* `join` runs, with its gate closed: broadcasts
//! that arrive while `join` runs are held in its inbox instead of going out. The task runs
//! `join`, writes the join reply itself, releases pushes made during join, and only then
//! releases the held broadcasts (minus those the join said it already covered, see
//! [`ChannelSocket::skip_held_broadcasts`]) and opens the gate — so the join reply is always the
//! first frame of a channel, and a broadcast published after `join` started to read is never
//! lost: subscribing after the join would leave a hole between what `join` read and what the
//! subscription sees (a Rumbl annotation committed in between would reach nobody who joined
//! then). It then serves its inbox one message at a time. A callback that returns `Err` or
//! panics crashes only this channel: the session is told to forget the topic and the client
//! gets `phx_error`.
//!
//! On a history topic ([`crate::pubsub::history`]) the task also reads the topic's position
//! after `join` returns, merges it into the reply, pushes what a `since` cursor missed, and
//! drops held broadcasts at or below that position.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::FutureExt;
use phx_protocol::Payload;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Channel, ChannelSocket, HandleResult, Info, JoinReply, Reply, StopReason};
use crate::conn::{CloseCode, ConnHandle, OutFrame, Outgoing};
use crate::context::Context;
use crate::logger;
use crate::mailbox::{Bounds, Mailbox, SendError};
use crate::metrics::ChannelLabels;
use crate::pubsub::history::{Recovery, Since};
use crate::pubsub::{BroadcastMsg, Interceptor, Subscriber, SubscriberKind};
use crate::socket::Assigns;
use prometheus_client::metrics::histogram::Histogram;

/// What a channel task receives.
pub(crate) enum ChannelMsg {
    /// A client push for `handle_in`.
    In {
        event: String,
        ref_: Value,
        payload: Payload,
        /// When the session handed it to the channel (for deadlines: see
        /// [`ChannelSocket::received_at`]).
        received_at: tokio::time::Instant,
    },
    /// An intercepted broadcast for `handle_out`, with its offset on a history topic.
    Out(Arc<BroadcastMsg>, Option<u64>),
    /// A fastlane broadcast that arrived while `join` ran, with its offset on a history topic;
    /// sent after the join reply (unless the join's recovery covered it).
    Held(Arc<BroadcastMsg>, Option<u64>),
    /// The socket is draining: answer once every message queued before this one is handled
    /// (its replies are then in the socket's queue, ahead of the close).
    Drain(oneshot::Sender<()>),
    /// A message for `handle_info`.
    Info(Info),
    /// The client left (`phx_leave` with this ref).
    Leave { ref_: Value },
    /// The session is going away or replaced this channel: stop without frames.
    Shutdown(StopReason),
}

/// What a broadcast queued in an inbox (intercepted or held) weighs against the inbox's byte
/// bound: the payload is shared by every subscriber through one `Arc`, so each inbox only holds
/// a pointer and the queue slot — counting the payload per inbox would count it N times.
const SHARED_BROADCAST_WEIGHT: usize = 64;

/// A channel's inbox, shared by the session (client messages), PubSub (intercepted and held
/// broadcasts) and timers.
pub(crate) struct ChannelInbox {
    /// Queued messages.
    pub(crate) mailbox: Mailbox<ChannelMsg>,
    /// The channel's socket, closed for overflow when the inbox cannot take broadcasts.
    conn: Arc<ConnHandle>,
    /// True while `join` runs: fastlane broadcasts are held (see the module docs). Cleared under
    /// the inbox's lock once the held ones are out.
    joining: AtomicBool,
}

impl ChannelInbox {
    pub(crate) fn new(bounds: Bounds, conn: Arc<ConnHandle>) -> Self {
        ChannelInbox {
            mailbox: Mailbox::new(bounds),
            conn,
            joining: AtomicBool::new(true),
        }
    }

    /// A broadcast that did not fit: the socket cannot keep up with its topic.
    fn overflow(&self, msg: &BroadcastMsg) {
        crate::warn_limited!(topic = %msg.topic, "channel inbox full; closing its socket");
        self.conn.close(CloseCode::OVERFLOW);
    }

    /// Queues a `handle_info` message; false once the channel has stopped.
    pub(crate) fn send_info(&self, info: Info) -> bool {
        self.mailbox.send_control(ChannelMsg::Info(info)).is_ok()
    }
}

impl Interceptor for ChannelInbox {
    fn intercept(&self, msg: &Arc<BroadcastMsg>, offset: Option<u64>) {
        if let Err(SendError::Full) = self.mailbox.send(
            ChannelMsg::Out(msg.clone(), offset),
            SHARED_BROADCAST_WEIGHT,
        ) {
            self.overflow(msg);
        }
    }

    fn hold(&self, msg: &Arc<BroadcastMsg>, offset: Option<u64>) -> bool {
        if !self.joining.load(Ordering::Acquire) {
            return false;
        }
        // Decided again under the inbox's lock: the release clears `joining` under it.
        match self.mailbox.send_if(
            || self.joining.load(Ordering::Acquire),
            || ChannelMsg::Held(msg.clone(), offset),
            SHARED_BROADCAST_WEIGHT,
        ) {
            Ok(held) => held,
            Err(SendError::Full) => {
                self.overflow(msg);
                true
            }
            // The channel is gone: nobody to deliver to.
            Err(SendError::Closed) => true,
        }
    }
}

/// What the session needs to start a channel.
pub(crate) struct JoinRequest {
    pub topic: Arc<str>,
    pub join_ref: Value,
    pub close_ref: Value,
    pub ref_: Value,
    pub payload: Payload,
    pub assigns: Arc<Assigns>,
    pub socket_id: Option<Arc<str>>,
    pub id: u64,
    /// The channel module's name, for log lines.
    pub channel_name: &'static str,
    /// The metrics' labels: socket mount and topic pattern.
    pub labels: ChannelLabels,
}

/// Starts a channel task that runs `join`; the receiver yields `true` once the channel is
/// joined (reply queued, subscribed) and `false` when it refused or crashed.
pub(crate) fn start(
    context: Context,
    conn: Arc<ConnHandle>,
    channel: Box<dyn Channel>,
    req: JoinRequest,
) -> (Arc<ChannelInbox>, oneshot::Receiver<bool>) {
    let cfg = context.config();
    let inbox = Arc::new(ChannelInbox::new(
        Bounds::new(cfg.channel_inbox_capacity, cfg.channel_inbox_max_bytes),
        conn.clone(),
    ));
    // Subscribed before `join` runs, gate closed (see the module docs).
    context.pubsub().subscribe(
        &req.topic,
        Subscriber {
            id: req.id,
            kind: SubscriberKind::Channel {
                conn: conn.clone(),
                intercepts: channel.intercept(),
                interceptor: inbox.clone(),
            },
        },
    );
    let (tx, rx) = oneshot::channel();
    let socket = ChannelSocket {
        topic: req.topic.clone(),
        join_ref: req.join_ref.clone(),
        close_ref: req.close_ref.clone(),
        assigns: req.assigns.clone(),
        conn,
        context,
        id: req.id,
        inbox: Arc::downgrade(&inbox),
        joined: false,
        deferred: Vec::new(),
        current_ref: req.ref_.clone(),
        received_at: tokio::time::Instant::now(),
        socket_id: req.socket_id.clone(),
        exit_guards: Vec::new(),
        skip_held: None,
    };
    tokio::spawn(run(
        channel,
        req.channel_name,
        socket,
        req.ref_,
        req.payload,
        inbox.clone(),
        tx,
        req.labels,
    ));
    (inbox, rx)
}

/// A join payload for the `JOIN` line: filtered params, or a binary's size.
fn inspect_payload(payload: &Payload) -> String {
    match payload {
        Payload::Json(v) => logger::inspect_value(v),
        Payload::Binary(b) => format!("<<{} bytes>>", b.len()),
    }
}

/// How the serve loop ended.
enum Exit {
    /// Tell the client (`phx_close` or `phx_error`), then terminate.
    Notify(StopReason),
    /// Stop silently (transport closed, duplicate join, disconnect).
    Silent(StopReason),
    /// Crashed: `phx_error`, no `terminate`.
    Crash(String),
}

// The join's parts, the channel's name for the log lines and its metric labels: bundling them
// would only move the list into a struct used once.
#[allow(clippy::too_many_arguments)]
async fn run(
    mut channel: Box<dyn Channel>,
    name: &'static str,
    mut socket: ChannelSocket,
    join_ref_msg: Value,
    payload: Payload,
    inbox: Arc<ChannelInbox>,
    done: oneshot::Sender<bool>,
    labels: ChannelLabels,
) {
    let topic = socket.topic.clone();
    let log_join = socket.context.config().log_join;
    // Arguments are only evaluated when the level is enabled.
    crate::log_at!(
        log_join,
        "JOIN {:?} to {name}\n  Parameters: {}",
        &*topic,
        inspect_payload(&payload)
    );
    // A history topic's cursor, read before `join` takes the payload (see `pubsub::history`).
    let history = socket.context.pubsub().local.history(&topic).cloned();
    let since = history.as_ref().and_then(|_| Since::from_params(&payload));
    let started = Instant::now();
    let joined = AssertUnwindSafe(channel.join(&topic, payload, &mut socket))
        .catch_unwind()
        .await;
    let outcome = match &joined {
        Ok(Ok(JoinReply::Ok(_))) => "ok",
        Ok(Ok(JoinReply::Error(_))) => "error",
        _ => "crash",
    };
    socket
        .context
        .metrics()
        .join(&labels, outcome, started.elapsed());
    let reply = match joined {
        Ok(Ok(JoinReply::Ok(resp))) => Ok(resp),
        Ok(Ok(JoinReply::Error(resp))) => Err(("error", resp)),
        Ok(Err(e)) => {
            crate::error_limited!(%topic, "join crashed: {e}");
            socket.context.metrics().channel_crashes.inc();
            Err(("error", Payload::Json(json!({"reason": "join crashed"}))))
        }
        Err(_) => {
            crate::error_limited!(%topic, "join panicked");
            socket.context.metrics().channel_crashes.inc();
            Err(("error", Payload::Json(json!({"reason": "join crashed"}))))
        }
    };
    let context = socket.context.clone();
    let status = if reply.is_ok() { "ok" } else { "error" };
    crate::log_at!(log_join, "Replied {topic} :{status}");
    let resp = match reply {
        Ok(resp) => resp,
        Err((status, resp)) => {
            context.pubsub().unsubscribe(&topic, socket.id);
            inbox.mailbox.close();
            if let Err(e) = socket.reply_to(join_ref_msg, Reply::Status(status.into(), resp)) {
                tracing::error!(%topic, "cannot encode join reply: {e}");
            }
            let _ = done.send(false);
            return;
        }
    };
    // Read after the subscription, before the reply: the position the reply gives is one past
    // which every broadcast reaches this channel live (the module docs of `pubsub::history`).
    let recovery = history.map(|h| h.recover(&topic, since.as_ref()));
    let resp = match &recovery {
        Some(r) => r.merge_into(resp),
        None => resp,
    };
    if let Err(e) = socket.reply_to(join_ref_msg, Reply::Ok(resp)) {
        // A reply that cannot be encoded is a crash of join, as Phoenix raises there.
        tracing::error!(%topic, "cannot encode join reply: {e}");
        context.pubsub().unsubscribe(&topic, socket.id);
        inbox.mailbox.close();
        let _ = socket.reply_to(
            socket.join_ref.clone(),
            Reply::Error(Payload::Json(json!({"reason": "join crashed"}))),
        );
        let _ = done.send(false);
        return;
    }
    context.metrics().channels.get_or_create(&labels).inc();
    if let Some(r) = &recovery {
        push_missed(&socket, r);
    }
    socket.mark_joined();
    release_held(&mut socket, &inbox, recovery.map(|r| r.offset));
    tracing::debug!(%topic, "JOINED");
    if done.send(true).is_err() {
        // The socket went away while we were joining.
        finish(
            &mut channel,
            &mut socket,
            &inbox,
            Exit::Silent(StopReason::Shutdown("closed".into())),
            &labels,
        )
        .await;
        return;
    }
    // The channel's latency histogram, looked up once: the family's lookup (a lock and a hash
    // of the labels) would otherwise run on every message.
    let handle_in = socket
        .context
        .metrics()
        .handle_in_duration
        .get_or_create(&labels)
        .clone();
    let exit = serve(&mut channel, name, &mut socket, &inbox, &handle_in).await;
    finish(&mut channel, &mut socket, &inbox, exit, &labels).await;
}

/// Pushes a recovering join's missed broadcasts, in offset order, as the fastlane frames they
/// went out as: the client cannot tell a replayed broadcast from a live one.
fn push_missed(socket: &ChannelSocket, recovery: &Recovery) {
    for b in &recovery.missed {
        send_broadcast(&socket.conn, b);
    }
}

/// Encodes a broadcast for this socket's serializer and queues it.
fn send_broadcast(conn: &ConnHandle, b: &BroadcastMsg) {
    match conn
        .serializer()
        .encode_broadcast_parts(&b.topic, &b.event, &b.payload)
    {
        Ok(frame) => {
            if let Some(frame) = OutFrame::from_frame(frame) {
                conn.send_frame(frame);
            }
        }
        Err(e) => {
            tracing::error!(topic = %b.topic, event = %b.event, "cannot encode broadcast: {e}")
        }
    }
}

/// Sends the broadcasts held while `join` ran (those the join did not say it covered), in
/// arrival order, then opens the gate — all under the inbox's lock, so a broadcast published
/// meanwhile waits and goes out after them.
///
/// On a history topic, `position` is the offset the join reply gave: held and intercepted
/// broadcasts at or below it are dropped — the recovery replayed them, or they precede the
/// position the client was told it has.
fn release_held(socket: &mut ChannelSocket, inbox: &ChannelInbox, position: Option<u64>) {
    let mut skip = socket.skip_held.take();
    let conn = &socket.conn;
    let covered =
        |offset: &Option<u64>| matches!((offset, position), (Some(o), Some(p)) if *o <= p);
    inbox.mailbox.take_matching(
        |m| match m {
            ChannelMsg::Held(..) => true,
            ChannelMsg::Out(_, offset) => covered(offset),
            _ => false,
        },
        |m| {
            let ChannelMsg::Held(b, offset) = m else {
                return;
            };
            if covered(&offset) {
                return;
            }
            if skip
                .as_mut()
                .is_some_and(|covered| covered(&b.event, &b.payload))
            {
                return;
            }
            send_broadcast(conn, &b);
        },
        || inbox.joining.store(false, Ordering::Release),
    );
}

async fn serve(
    channel: &mut Box<dyn Channel>,
    name: &'static str,
    socket: &mut ChannelSocket,
    inbox: &Arc<ChannelInbox>,
    handle_in: &Histogram,
) -> Exit {
    loop {
        let Some(msg) = inbox.mailbox.recv().await else {
            return Exit::Silent(StopReason::Shutdown("closed".into()));
        };
        let (result, ref_) = match msg {
            ChannelMsg::In {
                event,
                ref_,
                payload,
                received_at,
            } => {
                socket.current_ref = ref_.clone();
                socket.received_at = received_at;
                let started = Instant::now();
                let r = AssertUnwindSafe(channel.handle_in(&event, payload, socket))
                    .catch_unwind()
                    .await;
                let took = started.elapsed();
                tracing::debug!(
                    "HANDLED {event} INCOMING ON {} ({name}) in {}",
                    socket.topic,
                    logger::duration(took)
                );
                handle_in.observe(took.as_secs_f64());
                (r, Some(ref_))
            }
            ChannelMsg::Out(b, _) => {
                let r = AssertUnwindSafe(channel.handle_out(&b.event, b.payload.clone(), socket))
                    .catch_unwind()
                    .await;
                (r, None)
            }
            ChannelMsg::Info(info) => {
                let r = AssertUnwindSafe(channel.handle_info(info, socket))
                    .catch_unwind()
                    .await;
                (r, None)
            }
            ChannelMsg::Leave { ref_ } => {
                if let Err(e) = socket.reply_to(ref_, Reply::ok()) {
                    tracing::error!("cannot encode leave reply: {e}");
                }
                return Exit::Notify(StopReason::Shutdown("left".into()));
            }
            ChannelMsg::Shutdown(reason) => return Exit::Silent(reason),
            ChannelMsg::Drain(ack) => {
                let _ = ack.send(());
                continue;
            }
            // Released right after the join reply; none can be queued later.
            ChannelMsg::Held(..) => continue,
        };
        let result = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Exit::Crash(e.to_string()),
            Err(_) => return Exit::Crash("panic".into()),
        };
        match result {
            HandleResult::NoReply => {}
            HandleResult::Reply(reply) => {
                if let Some(ref_) = ref_ {
                    if let Err(e) = socket.reply_to(ref_, reply) {
                        return Exit::Crash(format!("cannot encode reply: {e}"));
                    }
                }
            }
            HandleResult::Stop { reason, reply } => {
                if let (Some(reply), Some(ref_)) = (reply, ref_) {
                    if let Err(e) = socket.reply_to(ref_, reply) {
                        return Exit::Crash(format!("cannot encode reply: {e}"));
                    }
                }
                return Exit::Notify(reason);
            }
        }
    }
}

async fn finish(
    channel: &mut Box<dyn Channel>,
    socket: &mut ChannelSocket,
    inbox: &Arc<ChannelInbox>,
    exit: Exit,
    labels: &ChannelLabels,
) {
    // Order matters: refuse new messages, tell the session to forget the topic, stop taking
    // broadcasts, and only then tell the client — so a client reacting to phx_close/phx_error
    // already finds the topic unjoined.
    inbox.mailbox.close();
    let context = socket.context.clone();
    let notify = !matches!(exit, Exit::Silent(_));
    if notify {
        socket.conn.send_control(Outgoing::ChannelExited {
            topic: socket.topic.clone(),
            channel_id: socket.id,
        });
    }
    context.pubsub().unsubscribe(&socket.topic, socket.id);
    context.metrics().channels.get_or_create(labels).dec();
    match exit {
        Exit::Notify(reason) => {
            let event = match reason {
                StopReason::Normal | StopReason::Shutdown(_) => "phx_close",
                StopReason::Error(_) => "phx_error",
            };
            let terminate = AssertUnwindSafe(channel.terminate(&reason, socket))
                .catch_unwind()
                .await;
            if terminate.is_err() {
                tracing::error!(topic = %socket.topic, "terminate panicked");
            }
            if event == "phx_close" {
                socket.push_control("phx_close", Payload::empty());
            } else {
                context.metrics().channel_crashes.inc();
                socket.push_control("phx_error", crash_payload());
            }
        }
        Exit::Silent(reason) => {
            let _ = AssertUnwindSafe(channel.terminate(&reason, socket))
                .catch_unwind()
                .await;
        }
        Exit::Crash(why) => {
            crate::error_limited!(topic = %socket.topic, "channel crashed: {why}");
            context.metrics().channel_crashes.inc();
            socket.push_control("phx_error", crash_payload());
        }
    }
}

/// The phx_error payload of Phoenix 1.8.10+.
fn crash_payload() -> Payload {
    Payload::Json(json!({"reason": "channel_crash"}))
}

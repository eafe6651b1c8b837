//! One task per joined channel (Phoenix's `Phoenix.Channel.Server` process).
//!
//! The task runs `join`, writes the join reply itself and only then subscribes to the topic and
//! releases pushes made during join — so the join reply is always the first frame of a channel,
//! ahead of its pushes and of any broadcast on the topic. It then serves its inbox one message
//! at a time. A callback that returns `Err` or panics crashes only this channel: the session is
//! told to forget the topic and the client gets `phx_error`.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use phx_protocol::Payload;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::{Channel, ChannelSocket, HandleResult, Info, JoinReply, Reply, StopReason};
use crate::conn::{CloseCode, ConnHandle, Outgoing};
use crate::endpoint::Endpoint;
use crate::mailbox::{Mailbox, SendError};
use crate::pubsub::{BroadcastMsg, Interceptor, Subscriber, SubscriberKind};
use crate::socket::Assigns;

/// What a channel task receives.
pub(crate) enum ChannelMsg {
    /// A client push for `handle_in`.
    In {
        event: String,
        ref_: Value,
        payload: Payload,
    },
    /// An intercepted broadcast for `handle_out`.
    Out(Arc<BroadcastMsg>),
    /// A message for `handle_info`.
    Info(Info),
    /// The client left (`phx_leave` with this ref).
    Leave { ref_: Value },
    /// The session is going away or replaced this channel: stop without frames.
    Shutdown(StopReason),
}

/// A channel's inbox, shared by the session (client messages), PubSub (intercepted events) and
/// timers.
pub(crate) struct ChannelInbox {
    /// Queued messages.
    pub(crate) mailbox: Mailbox<ChannelMsg>,
    /// The channel's socket, closed for overflow when the inbox cannot take intercepted events.
    conn: Arc<ConnHandle>,
}

impl ChannelInbox {
    pub(crate) fn new(capacity: usize, conn: Arc<ConnHandle>) -> Self {
        ChannelInbox {
            mailbox: Mailbox::new(capacity),
            conn,
        }
    }

    /// Queues a `handle_info` message; false once the channel has stopped.
    pub(crate) fn send_info(&self, info: Info) -> bool {
        self.mailbox.send_control(ChannelMsg::Info(info)).is_ok()
    }
}

impl Interceptor for ChannelInbox {
    fn intercept(&self, msg: &Arc<BroadcastMsg>) {
        if let Err(SendError::Full) = self.mailbox.send(ChannelMsg::Out(msg.clone())) {
            tracing::warn!(topic = %msg.topic, "channel inbox full; closing its socket");
            self.conn.close(CloseCode::OVERFLOW);
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
}

/// Starts a channel task that runs `join`; the receiver yields `true` once the channel is
/// joined (reply queued, subscribed) and `false` when it refused or crashed.
pub(crate) fn start(
    endpoint: Endpoint,
    conn: Arc<ConnHandle>,
    channel: Box<dyn Channel>,
    req: JoinRequest,
) -> (Arc<ChannelInbox>, oneshot::Receiver<bool>) {
    let inbox = Arc::new(ChannelInbox::new(
        endpoint.config().channel_inbox_capacity,
        conn.clone(),
    ));
    let (tx, rx) = oneshot::channel();
    let socket = ChannelSocket {
        topic: req.topic.clone(),
        join_ref: req.join_ref.clone(),
        close_ref: req.close_ref.clone(),
        assigns: req.assigns.clone(),
        conn,
        endpoint,
        id: req.id,
        inbox: Arc::downgrade(&inbox),
        joined: false,
        deferred: Vec::new(),
        current_ref: req.ref_.clone(),
        socket_id: req.socket_id.clone(),
        exit_guards: Vec::new(),
    };
    tokio::spawn(run(
        channel,
        socket,
        req.ref_,
        req.payload,
        inbox.clone(),
        tx,
    ));
    (inbox, rx)
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

async fn run(
    mut channel: Box<dyn Channel>,
    mut socket: ChannelSocket,
    join_ref_msg: Value,
    payload: Payload,
    inbox: Arc<ChannelInbox>,
    done: oneshot::Sender<bool>,
) {
    let topic = socket.topic.clone();
    let joined = AssertUnwindSafe(channel.join(&topic, payload, &mut socket))
        .catch_unwind()
        .await;
    let reply = match joined {
        Ok(Ok(JoinReply::Ok(resp))) => Ok(resp),
        Ok(Ok(JoinReply::Error(resp))) => Err(("error", resp)),
        Ok(Err(e)) => {
            tracing::error!(%topic, "join crashed: {e}");
            socket.endpoint.metrics().channel_crashes.inc();
            Err(("error", Payload::Json(json!({"reason": "join crashed"}))))
        }
        Err(_) => {
            tracing::error!(%topic, "join panicked");
            socket.endpoint.metrics().channel_crashes.inc();
            Err(("error", Payload::Json(json!({"reason": "join crashed"}))))
        }
    };
    let resp = match reply {
        Ok(resp) => resp,
        Err((status, resp)) => {
            inbox.mailbox.close();
            if let Err(e) = socket.reply_to(join_ref_msg, Reply::Status(status.into(), resp)) {
                tracing::error!(%topic, "cannot encode join reply: {e}");
            }
            let _ = done.send(false);
            return;
        }
    };
    if let Err(e) = socket.reply_to(join_ref_msg, Reply::Ok(resp)) {
        // A reply that cannot be encoded is a crash of join, as Phoenix raises there.
        tracing::error!(%topic, "cannot encode join reply: {e}");
        inbox.mailbox.close();
        let _ = socket.reply_to(
            socket.join_ref.clone(),
            Reply::Error(Payload::Json(json!({"reason": "join crashed"}))),
        );
        let _ = done.send(false);
        return;
    }
    let endpoint = socket.endpoint.clone();
    endpoint.pubsub().subscribe(
        &topic,
        Subscriber {
            id: socket.id,
            kind: SubscriberKind::Channel {
                conn: socket.conn.clone(),
                intercepts: channel.intercept(),
                interceptor: inbox.clone(),
            },
        },
    );
    endpoint.metrics().channels.inc();
    socket.mark_joined();
    tracing::debug!(%topic, "JOINED");
    if done.send(true).is_err() {
        // The socket went away while we were joining.
        finish(
            &mut channel,
            &mut socket,
            &inbox,
            Exit::Silent(StopReason::Shutdown("closed".into())),
        )
        .await;
        return;
    }
    let exit = serve(&mut channel, &mut socket, &inbox).await;
    finish(&mut channel, &mut socket, &inbox, exit).await;
}

async fn serve(
    channel: &mut Box<dyn Channel>,
    socket: &mut ChannelSocket,
    inbox: &Arc<ChannelInbox>,
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
            } => {
                socket.current_ref = ref_.clone();
                let r = AssertUnwindSafe(channel.handle_in(&event, payload, socket))
                    .catch_unwind()
                    .await;
                (r, Some(ref_))
            }
            ChannelMsg::Out(b) => {
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
) {
    // Order matters: refuse new messages, tell the session to forget the topic, stop taking
    // broadcasts, and only then tell the client — so a client reacting to phx_close/phx_error
    // already finds the topic unjoined.
    inbox.mailbox.close();
    let endpoint = socket.endpoint.clone();
    let notify = !matches!(exit, Exit::Silent(_));
    if notify {
        socket.conn.send_control(Outgoing::ChannelExited {
            topic: socket.topic.clone(),
            channel_id: socket.id,
        });
    }
    endpoint.pubsub().unsubscribe(&socket.topic, socket.id);
    endpoint.metrics().channels.dec();
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
                endpoint.metrics().channel_crashes.inc();
                socket.push_control("phx_error", crash_payload());
            }
        }
        Exit::Silent(reason) => {
            let _ = AssertUnwindSafe(channel.terminate(&reason, socket))
                .catch_unwind()
                .await;
        }
        Exit::Crash(why) => {
            tracing::error!(topic = %socket.topic, "channel crashed: {why}");
            endpoint.metrics().channel_crashes.inc();
            socket.push_control("phx_error", crash_payload());
        }
    }
}

/// The phx_error payload of Phoenix 1.8.10+.
fn crash_payload() -> Payload {
    Payload::Json(json!({"reason": "channel_crash"}))
}

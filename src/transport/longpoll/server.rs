//! One task per LongPoll session (Phoenix's `LongPoll.Server`): the mirror of the WebSocket
//! socket task, with HTTP requests in place of a socket.
//!
//! The task owns the [`Session`]. It takes three kinds of input:
//! * POSTed batches ([`Request::Publish`]): each frame is decoded and dispatched in order, and
//!   the batch is acknowledged only after every frame was processed (a join's [`Wait`] is
//!   awaited like on a WebSocket), so the client's next batch cannot overtake this one;
//! * polls ([`Request::Poll`]): answered at once with everything buffered, or held until a
//!   frame arrives (the HTTP side gives up after `window` and answers 204);
//! * the socket's outbound queue: frames go into a bounded buffer for the next poll, channel
//!   exits reach the session, a close (disconnect, drain, overflow) ends the session.
//!
//! The session ends when more than 1.5 × `window` passed since the start of the last poll
//! (Phoenix checks periodically; we check at the exact deadline), when its buffer overflows,
//! when a frame cannot be decoded (Phoenix's session process crashes there), or when the
//! socket is closed from outside.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use phx_protocol::{DecodeError, FrameRef, Message};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::conn::{CloseCode, ConnHandle, OutFrame, Outgoing};
use crate::mailbox::Mailbox;
use crate::session::{Resume, Session, Wait};

/// A client frame from a POST body, not decoded yet (the session decodes in order, so that
/// frames before a malformed one are still processed, as in Phoenix).
#[derive(Debug)]
pub enum InFrame {
    /// A text frame (an ndjson line starting with `[`, or a whole non-ndjson body).
    Text(Bytes),
    /// A binary frame (a base64 ndjson line, already decoded).
    Binary(Bytes),
}

/// How a POSTed batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Every frame was processed: `{"status":200}`.
    Ok,
    /// A frame was not processed within `window`; the rest of the batch was skipped:
    /// `{"status":408}`.
    Timeout,
    /// A frame could not be decoded and the session was closed. Phoenix's session process
    /// crashes there and the POST times out with 408; we answer 408 at once.
    Malformed,
}

/// What the HTTP side asks of a session.
pub enum Request {
    /// A poll: answered with the buffered frames (an empty list means "nothing yet": 204).
    Poll(oneshot::Sender<Vec<Utf8Bytes>>),
    /// A POSTed batch, acknowledged once processed.
    Publish {
        /// The frames, in body order.
        frames: Vec<InFrame>,
        /// Where the outcome goes.
        ack: oneshot::Sender<Ack>,
    },
}

/// The shared side of a session, kept in the LongPoll registry.
pub struct SessionHandle {
    /// Requests for the session task, processed in arrival order. Small and bounded: the JS
    /// client has at most one poll and one POST in flight; a client with more than
    /// [`REQUEST_QUEUE`] outstanding is misbehaving and its extra requests are refused.
    pub requests: Mailbox<Request>,
}

/// Requests a session may have queued before further ones are refused.
pub const REQUEST_QUEUE: usize = 8;

impl SessionHandle {
    /// A handle for a new session.
    pub fn new() -> SessionHandle {
        SessionHandle {
            requests: Mailbox::new(REQUEST_QUEUE),
        }
    }
}

impl Default for SessionHandle {
    fn default() -> Self {
        SessionHandle::new()
    }
}

/// The limits a session task applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Phoenix's `window_ms`.
    pub window: Duration,
    /// Frames held for the client between polls before the session is closed.
    pub max_buffered: usize,
}

/// Why a session ended (logged; the client sees 410 either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// No poll started for more than 1.5 × window.
    Expired,
    /// Closed from outside: disconnect (1001), drain (1012), outbound overflow (1013).
    Closed(CloseCode),
    /// The client did not poll its frames and the buffer reached its bound.
    Overflow,
    /// A POSTed frame could not be decoded.
    Malformed,
}

/// A batch being processed.
struct Batch {
    /// Frames not dispatched yet.
    frames: VecDeque<InFrame>,
    /// Where the outcome goes.
    ack: oneshot::Sender<Ack>,
}

/// What woke the task.
enum Event {
    Outgoing,
    Resumed(Resume),
    FrameTimeout,
    Request(Option<Request>),
    Expiry,
}

/// Hands the buffer to a waiting poll; if that poll already gave up, keeps the frames.
fn deliver(waiter: oneshot::Sender<Vec<Utf8Bytes>>, buffer: &mut Vec<Utf8Bytes>) {
    let frames = std::mem::take(buffer);
    if let Err(frames) = waiter.send(frames) {
        *buffer = frames;
    }
}

fn decode(conn: &ConnHandle, frame: &InFrame) -> Result<Message, DecodeError> {
    let serializer = conn.serializer();
    match frame {
        InFrame::Text(b) => match std::str::from_utf8(b) {
            Ok(text) => serializer.decode(FrameRef::Text(text)),
            Err(_) => Err(DecodeError::Json("text frame is not UTF-8".into())),
        },
        InFrame::Binary(b) => serializer.decode(FrameRef::Binary(b)),
    }
}

/// Runs a session until it ends; the caller unregisters it.
pub async fn run(
    mut session: Session,
    conn: Arc<ConnHandle>,
    handle: Arc<SessionHandle>,
    limits: Limits,
) -> Ended {
    let window = limits.window;
    // Phoenix: `trunc(window_ms * 1.5)`.
    let expiry = Duration::from_millis((window.as_millis() as u64).saturating_mul(3) / 2);
    let mut last_poll = Instant::now();
    let expiry_sleep = tokio::time::sleep_until(last_poll + expiry);
    tokio::pin!(expiry_sleep);
    let frame_sleep = tokio::time::sleep(window);
    tokio::pin!(frame_sleep);
    let mut frame_armed = false;
    let mut pending: Option<Wait> = None;
    // Batches in arrival order; the front one is being processed. Normally at most one (the
    // client waits for each ack), but a client that aborted a POST may have sent the next.
    let mut batches: VecDeque<Batch> = VecDeque::new();
    let mut waiter: Option<oneshot::Sender<Vec<Utf8Bytes>>> = None;
    let mut buffer: Vec<Utf8Bytes> = Vec::new();
    let mut out: Vec<Outgoing> = Vec::new();
    let mut warned_binary = false;

    let ended = 'run: loop {
        let event = tokio::select! {
            biased;
            _ = conn.outbox().ready() => Event::Outgoing,
            r = async { match pending.as_mut() { Some(w) => w.await, None => std::future::pending().await } }, if pending.is_some() => Event::Resumed(r),
            _ = &mut frame_sleep, if frame_armed => Event::FrameTimeout,
            r = handle.requests.recv() => Event::Request(r),
            _ = &mut expiry_sleep => Event::Expiry,
        };
        match event {
            Event::Outgoing => {
                conn.outbox().try_recv_many(&mut out);
                for item in out.drain(..) {
                    match item {
                        Outgoing::Frame(OutFrame::Text(t)) => buffer.push(t),
                        Outgoing::Frame(OutFrame::Binary(_)) => {
                            // A binary frame cannot travel inside the JSON poll response.
                            if !warned_binary {
                                warned_binary = true;
                                tracing::warn!(
                                    "dropping binary frame: binary messages are not supported \
                                     over LongPoll"
                                );
                            }
                        }
                        Outgoing::ChannelExited { topic, channel_id } => {
                            session.channel_exited(&topic, channel_id)
                        }
                        Outgoing::Close(code) => break 'run Ended::Closed(code),
                    }
                }
                if out.capacity() > 256 {
                    out = Vec::new();
                }
                if buffer.len() > limits.max_buffered {
                    break 'run Ended::Overflow;
                }
                if !buffer.is_empty() {
                    if let Some(w) = waiter.take() {
                        deliver(w, &mut buffer);
                    }
                }
            }
            Event::Resumed(r) => {
                pending = session.resume(r);
                if pending.is_none() {
                    frame_armed = false;
                }
            }
            Event::FrameTimeout => {
                frame_armed = false;
                if let Some(b) = batches.pop_front() {
                    tracing::warn!(
                        skipped = b.frames.len(),
                        "LongPoll frame not processed within the window: 408"
                    );
                    let _ = b.ack.send(Ack::Timeout);
                }
                if pending.is_some() && !batches.is_empty() {
                    // The next batch waits behind the same frame, with a window of its own.
                    frame_sleep.as_mut().reset(Instant::now() + window);
                    frame_armed = true;
                }
            }
            Event::Request(None) => break 'run Ended::Closed(CloseCode::NORMAL),
            Event::Request(Some(Request::Poll(tx))) => {
                last_poll = Instant::now();
                if !buffer.is_empty() {
                    deliver(tx, &mut buffer);
                } else if let Some(old) = waiter.replace(tx) {
                    // A newer poll replaces an older one, which is told "nothing yet".
                    let _ = old.send(Vec::new());
                }
            }
            Event::Request(Some(Request::Publish { frames, ack })) => {
                batches.push_back(Batch {
                    frames: frames.into(),
                    ack,
                });
                if pending.is_some() && !frame_armed {
                    // Still waiting for a frame of an earlier, timed-out batch.
                    frame_sleep.as_mut().reset(Instant::now() + window);
                    frame_armed = true;
                }
            }
            Event::Expiry => {
                let deadline = last_poll + expiry;
                if Instant::now() >= deadline {
                    break 'run Ended::Expired;
                }
                expiry_sleep.as_mut().reset(deadline);
            }
        }
        // Feed the current batch to the session until it must wait or the batch is done.
        while pending.is_none() {
            let Some(b) = batches.front_mut() else { break };
            let Some(frame) = b.frames.pop_front() else {
                if let Some(b) = batches.pop_front() {
                    let _ = b.ack.send(Ack::Ok);
                }
                continue;
            };
            match decode(&conn, &frame) {
                Ok(msg) => {
                    pending = session.dispatch(msg);
                    if pending.is_some() {
                        frame_sleep.as_mut().reset(Instant::now() + window);
                        frame_armed = true;
                    }
                }
                Err(e) => {
                    tracing::warn!("closing LongPoll session on malformed frame: {e}");
                    if let Some(b) = batches.pop_front() {
                        let _ = b.ack.send(Ack::Malformed);
                    }
                    break 'run Ended::Malformed;
                }
            }
        }
    };
    // Later requests fail at once; queued ones are dropped, so their callers see the session
    // gone instead of waiting out their window.
    handle.requests.close();
    let mut queued = Vec::new();
    handle.requests.try_recv_many(&mut queued);
    drop(queued);
    conn.outbox().close();
    // Dropping the session stops its channels ({:shutdown, :closed}), as when a socket closes.
    drop(session);
    drop(waiter);
    drop(batches);
    ended
}

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

use bytes::Bytes;
use phx_protocol::FrameRef;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::conn::{CloseCode, ConnHandle, OutFrame, Outgoing};
use crate::mailbox::{Bounds, Mailbox};
use crate::session::{FrameError, Resume, Session, Wait};

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
            requests: Mailbox::new(Bounds::new(REQUEST_QUEUE, usize::MAX)),
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
    /// Bytes of frames held for the client between polls before the session is closed.
    pub max_buffered_bytes: usize,
    /// How long a drain may take (`DRAIN_MAX_MS`).
    pub drain_max: Duration,
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

/// Frames waiting for the next poll, and their size.
#[derive(Default)]
struct Buffer {
    frames: Vec<Utf8Bytes>,
    bytes: usize,
}

impl Buffer {
    fn push(&mut self, frame: Utf8Bytes) {
        self.bytes += frame.len();
        self.frames.push(frame);
    }

    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn over(&self, limits: &Limits) -> bool {
        self.frames.len() > limits.max_buffered || self.bytes > limits.max_buffered_bytes
    }

    /// Hands the buffer to a waiting poll; if that poll already gave up, keeps the frames.
    fn deliver(&mut self, waiter: oneshot::Sender<Vec<Utf8Bytes>>) {
        let frames = std::mem::take(&mut self.frames);
        let bytes = std::mem::take(&mut self.bytes);
        if let Err(frames) = waiter.send(frames) {
            self.frames = frames;
            self.bytes = bytes;
        }
    }
}

/// Decodes and dispatches one POSTed frame (the session applies the same checks as for a
/// WebSocket frame).
fn handle_frame(session: &mut Session, frame: &InFrame) -> Result<Option<Wait>, FrameError> {
    match frame {
        InFrame::Text(b) => match std::str::from_utf8(b) {
            Ok(text) => session.handle_frame(FrameRef::Text(text)),
            Err(_) => Err(FrameError::Malformed(phx_protocol::DecodeError::Json(
                "text frame is not UTF-8".into(),
            ))),
        },
        InFrame::Binary(b) => session.handle_frame(FrameRef::Binary(b)),
    }
}

/// On a drain: gives the frames still buffered to the poll held now, or to the next poll that
/// arrives within `window` (other requests meanwhile are refused as for a closed session).
async fn hand_over(
    buffer: &mut Buffer,
    waiter: Option<oneshot::Sender<Vec<Utf8Bytes>>>,
    handle: &SessionHandle,
    window: Duration,
) {
    if let Some(w) = waiter {
        buffer.deliver(w);
        if buffer.is_empty() {
            return;
        }
    }
    let deadline = Instant::now() + window;
    while let Ok(Some(req)) = tokio::time::timeout_at(deadline, handle.requests.recv()).await {
        match req {
            Request::Poll(tx) => {
                buffer.deliver(tx);
                if buffer.is_empty() {
                    return;
                }
            }
            Request::Publish { ack, .. } => {
                let _ = ack.send(Ack::Timeout);
            }
        }
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
    let mut buffer = Buffer::default();
    let mut out: Vec<Outgoing> = Vec::new();
    let mut warned_binary = false;
    // A drain was asked for; it starts once nothing else is pending.
    let mut drain_wanted = false;
    let mut draining = false;

    let ended = 'run: loop {
        if drain_wanted && pending.is_none() && !draining {
            draining = true;
            // Frames of a batch not dispatched yet are not processed: their POST gets 408, so
            // the client knows they were not taken (nothing acknowledged is lost).
            for b in batches.drain(..) {
                let _ = b.ack.send(Ack::Timeout);
            }
            frame_armed = false;
            pending = Some(session.drain(Instant::now() + limits.drain_max));
        }
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
                        Outgoing::Drain => drain_wanted = true,
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
                        Outgoing::Close(code) => {
                            if code == CloseCode::DRAIN && !buffer.is_empty() {
                                // Replies to what the client sent before the drain: hand them
                                // to its next poll before the session goes.
                                hand_over(&mut buffer, waiter.take(), &handle, limits.window).await;
                            }
                            break 'run Ended::Closed(code);
                        }
                    }
                }
                if out.capacity() > 256 {
                    out = Vec::new();
                }
                if buffer.over(&limits) {
                    break 'run Ended::Overflow;
                }
                if !buffer.is_empty() {
                    if let Some(w) = waiter.take() {
                        buffer.deliver(w);
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
                    buffer.deliver(tx);
                } else if let Some(old) = waiter.replace(tx) {
                    // A newer poll replaces an older one, which is told "nothing yet".
                    let _ = old.send(Vec::new());
                }
            }
            Event::Request(Some(Request::Publish { frames, ack })) => {
                if draining {
                    let _ = ack.send(Ack::Timeout);
                    continue;
                }
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
        while pending.is_none() && !draining {
            let Some(b) = batches.front_mut() else { break };
            let Some(frame) = b.frames.pop_front() else {
                if let Some(b) = batches.pop_front() {
                    let _ = b.ack.send(Ack::Ok);
                }
                continue;
            };
            match handle_frame(&mut session, &frame) {
                Ok(wait) => {
                    pending = wait;
                    if pending.is_some() {
                        frame_sleep.as_mut().reset(Instant::now() + window);
                        frame_armed = true;
                    }
                }
                Err(e) => {
                    crate::warn_limited!("closing LongPoll session: {e}");
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

//! One task per LongPoll session (Phoenix's `LongPoll.Server`): the mirror of the WebSocket
//! socket task, with HTTP requests in place of a socket.
//!
//! The task owns the [`Session`]. It takes three kinds of input:
//! * POSTed batches ([`Request::Publish`]): each frame is decoded and dispatched in order, and
//!   the batch is acknowledged only after every frame was processed (a join's [`Wait`](crate::session::Wait) is
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
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use phx_protocol::FrameRef;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use super::super::driver::{drive, ClientFrame, Inbound, Phase, Transport};
use crate::conn::{CloseCode, ConnHandle, OutFrame, Text};
use crate::mailbox::{Bounds, Mailbox};
use crate::metrics::TransportLabels;
use crate::session::{FrameError, Out, Outbound, Session};

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
    Poll(oneshot::Sender<Vec<Text>>),
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

/// Frames waiting for the next poll, and their size.
struct Buffer {
    frames: Vec<Text>,
    bytes: usize,
    /// Publication instants of the sampled broadcasts among `frames` (see
    /// [`crate::pubsub::local`]): observed when the frames are handed to a poll's response.
    published: Vec<std::time::Instant>,
    /// The socket: its `held_bytes` mirrors `bytes` (`phx_outbox_bytes` counts what waits
    /// here), and its metrics take the observations.
    conn: Arc<ConnHandle>,
}

impl Buffer {
    fn new(conn: Arc<ConnHandle>) -> Buffer {
        Buffer {
            frames: Vec::new(),
            bytes: 0,
            published: Vec::new(),
            conn,
        }
    }

    fn push(&mut self, frame: Text) {
        self.bytes += frame.len();
        self.frames.push(frame);
    }

    /// The frame pushed last is a sampled broadcast published `at`.
    fn published(&mut self, at: std::time::Instant) {
        self.published.push(at);
    }

    /// Tells the socket how much is held here (after a batch, and after a delivery).
    fn held(&self) {
        self.conn.set_held_bytes(self.bytes);
    }

    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn over(&self, limits: &Limits) -> bool {
        self.frames.len() > limits.max_buffered || self.bytes > limits.max_buffered_bytes
    }

    /// Hands the buffer to a waiting poll; if that poll already gave up, keeps the frames.
    /// Handed over, the frames are the poll's response body: the sampled ones are timed here.
    fn deliver(&mut self, waiter: oneshot::Sender<Vec<Text>>) {
        let frames = std::mem::take(&mut self.frames);
        let bytes = std::mem::take(&mut self.bytes);
        match waiter.send(frames) {
            Ok(()) => {
                let timing = &self.conn.metrics().broadcast_to_write;
                for at in self.published.drain(..) {
                    timing.observe(at.elapsed().as_secs_f64());
                }
            }
            Err(frames) => {
                self.frames = frames;
                self.bytes = bytes;
            }
        }
        self.held();
    }
}

impl ClientFrame for InFrame {
    /// The session applies the same checks as for a WebSocket frame; a text line that is not
    /// UTF-8 is malformed (a WebSocket would have closed with 1007).
    fn as_frame(&self) -> Result<FrameRef<'_>, FrameError> {
        match self {
            InFrame::Text(b) => std::str::from_utf8(b).map(FrameRef::Text).map_err(|_| {
                FrameError::Malformed(phx_protocol::DecodeError::Json(
                    "text frame is not UTF-8".into(),
                ))
            }),
            InFrame::Binary(b) => Ok(FrameRef::Binary(b)),
        }
    }
}

/// On a drain: gives the frames still buffered to the poll held now, or to the next poll that
/// arrives within `window` (other requests meanwhile are refused as for a closed session).
async fn hand_over(
    buffer: &mut Buffer,
    waiter: Option<oneshot::Sender<Vec<Text>>>,
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

/// One LongPoll session as a [`Transport`]: the HTTP side's requests, the POSTed batches
/// being fed to the session, the frames buffered for the next poll, and the two timers.
struct LongPollTransport {
    handle: Arc<SessionHandle>,
    limits: Limits,
    /// Phoenix: `trunc(window_ms * 1.5)` without a poll ends the session.
    expiry: Duration,
    last_poll: Instant,
    expiry_sleep: Pin<Box<Sleep>>,
    /// Armed while the session waits on a frame of the front batch: 408 after `window`.
    frame_sleep: Pin<Box<Sleep>>,
    frame_armed: bool,
    /// Batches in arrival order; the front one is being processed. Normally at most one (the
    /// client waits for each ack), but a client that aborted a POST may have sent the next.
    batches: VecDeque<Batch>,
    /// The poll being held, if any.
    waiter: Option<oneshot::Sender<Vec<Text>>>,
    buffer: Buffer,
    warned_binary: bool,
}

impl LongPollTransport {
    fn new(handle: Arc<SessionHandle>, limits: Limits, conn: Arc<ConnHandle>) -> LongPollTransport {
        let expiry =
            Duration::from_millis((limits.window.as_millis() as u64).saturating_mul(3) / 2);
        let now = Instant::now();
        LongPollTransport {
            handle,
            limits,
            expiry,
            last_poll: now,
            expiry_sleep: Box::pin(tokio::time::sleep_until(now + expiry)),
            frame_sleep: Box::pin(tokio::time::sleep(limits.window)),
            frame_armed: false,
            batches: VecDeque::new(),
            waiter: None,
            buffer: Buffer::new(conn),
            warned_binary: false,
        }
    }

    fn arm_frame_timer(&mut self) {
        self.frame_sleep
            .as_mut()
            .reset(Instant::now() + self.limits.window);
        self.frame_armed = true;
    }

    fn request(&mut self, req: Option<Request>, phase: Phase) -> Inbound<InFrame, Ended> {
        match req {
            None => Inbound::End(Ended::Closed(CloseCode::NORMAL)),
            Some(Request::Poll(tx)) => {
                self.last_poll = Instant::now();
                if !self.buffer.is_empty() {
                    self.buffer.deliver(tx);
                } else if let Some(old) = self.waiter.replace(tx) {
                    // A newer poll replaces an older one, which is told "nothing yet".
                    let _ = old.send(Vec::new());
                }
                Inbound::Handled
            }
            Some(Request::Publish { frames, ack }) => {
                if phase == Phase::Draining {
                    let _ = ack.send(Ack::Timeout);
                    return Inbound::Handled;
                }
                self.batches.push_back(Batch {
                    frames: frames.into(),
                    ack,
                });
                if phase == Phase::Waiting && !self.frame_armed {
                    // Still waiting for a frame of an earlier, timed-out batch.
                    self.arm_frame_timer();
                }
                Inbound::Handled
            }
        }
    }

    fn frame_timeout(&mut self, phase: Phase) {
        self.frame_armed = false;
        if let Some(b) = self.batches.pop_front() {
            tracing::warn!(
                skipped = b.frames.len(),
                "LongPoll frame not processed within the window: 408"
            );
            let _ = b.ack.send(Ack::Timeout);
        }
        if phase == Phase::Waiting && !self.batches.is_empty() {
            // The next batch waits behind the same frame, with a window of its own.
            self.arm_frame_timer();
        }
    }
}

impl Transport for LongPollTransport {
    type Frame = InFrame;
    type End = Ended;
    const NAME: &'static str = "longpoll";

    async fn recv(&mut self, phase: Phase) -> Inbound<InFrame, Ended> {
        if phase == Phase::Open {
            // Feed the current batch to the session, one frame per call, acknowledging each
            // batch once all its frames were processed.
            while let Some(b) = self.batches.front_mut() {
                if let Some(frame) = b.frames.pop_front() {
                    return Inbound::Frame(frame);
                }
                if let Some(b) = self.batches.pop_front() {
                    let _ = b.ack.send(Ack::Ok);
                }
            }
        }
        tokio::select! {
            _ = self.frame_sleep.as_mut(), if self.frame_armed => {
                self.frame_timeout(phase);
                Inbound::Handled
            }
            r = self.handle.requests.recv() => self.request(r, phase),
            _ = self.expiry_sleep.as_mut() => {
                let deadline = self.last_poll + self.expiry;
                if Instant::now() >= deadline {
                    return Inbound::End(Ended::Expired);
                }
                self.expiry_sleep.as_mut().reset(deadline);
                Inbound::Handled
            }
        }
    }

    async fn send(&mut self, out: Outbound<'_>, conn: &ConnHandle) -> Option<Ended> {
        let mut buffered = 0u64;
        let counted = |n: u64| {
            if n > 0 {
                conn.metrics()
                    .messages_out
                    .get_or_create(&TransportLabels {
                        transport: "longpoll",
                    })
                    .inc_by(n);
            }
        };
        // Whether the frame just before a `Published` marker went into the buffer.
        let mut last_buffered = false;
        for item in out {
            match item {
                Out::Frame(OutFrame::Text(t)) => {
                    buffered += 1;
                    last_buffered = true;
                    self.buffer.push(t)
                }
                Out::Published(at) => {
                    if last_buffered {
                        self.buffer.published(at);
                    }
                }
                Out::Frame(OutFrame::Binary(_)) => {
                    last_buffered = false;
                    // A binary frame cannot travel inside the JSON poll response.
                    if !self.warned_binary {
                        self.warned_binary = true;
                        tracing::warn!(
                            "dropping binary frame: binary messages are not supported over \
                             LongPoll"
                        );
                    }
                }
                Out::Close(code) => {
                    if code == CloseCode::DRAIN && !self.buffer.is_empty() {
                        // Replies to what the client sent before the drain: hand them to its
                        // next poll before the session goes.
                        hand_over(
                            &mut self.buffer,
                            self.waiter.take(),
                            &self.handle,
                            self.limits.window,
                        )
                        .await;
                    }
                    counted(buffered);
                    return Some(Ended::Closed(code));
                }
            }
        }
        counted(buffered);
        self.buffer.held();
        if self.buffer.over(&self.limits) {
            return Some(Ended::Overflow);
        }
        if !self.buffer.is_empty() {
            if let Some(w) = self.waiter.take() {
                self.buffer.deliver(w);
            }
        }
        None
    }

    fn waiting(&mut self, waiting: bool) {
        if waiting {
            self.arm_frame_timer();
        } else {
            self.frame_armed = false;
        }
    }

    fn drain_started(&mut self) {
        // Frames of a batch not dispatched yet are not processed: their POST gets 408, so the
        // client knows they were not taken (nothing acknowledged is lost).
        for b in self.batches.drain(..) {
            let _ = b.ack.send(Ack::Timeout);
        }
        self.frame_armed = false;
    }

    fn refuse(&mut self, error: FrameError) -> Ended {
        crate::warn_limited!("closing LongPoll session: {error}");
        if let Some(b) = self.batches.pop_front() {
            let _ = b.ack.send(Ack::Malformed);
        }
        Ended::Malformed
    }

    async fn finish(self, _end: &Ended) {
        // Later requests fail at once; queued ones are dropped, so their callers see the
        // session gone instead of waiting out their window. A held poll sees its sender
        // dropped (410), as do the acks of batches still queued.
        self.handle.requests.close();
        let mut queued = Vec::new();
        self.handle.requests.try_recv_many(&mut queued);
    }
}

/// Runs a session until it ends; the caller unregisters it.
pub async fn run(session: Session, handle: Arc<SessionHandle>, limits: Limits) -> Ended {
    let conn = session.conn().clone();
    drive(
        LongPollTransport::new(handle, limits, conn),
        session,
        limits.drain_max,
    )
    .await
}

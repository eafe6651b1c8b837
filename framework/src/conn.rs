//! The handle through which everything reaches one connected socket (Phoenix's transport pid):
//! its outbound queue, its serializer, and the means to close it.
//!
//! Channels, PubSub and async replies hold an `Arc<ConnHandle>` and push already-encoded
//! frames into it; the transport's writer drains the queue in batches. The queue is bounded:
//! a socket whose client cannot keep up is closed with [`CloseCode::OVERFLOW`] instead of
//! slowing down the publishers that feed it.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use phx_protocol::{Broadcast, EncodeError, Message, Reply, Serializer};
use tokio::sync::Notify;

pub use crate::frame::{CloseCode, OutFrame, Text};
use crate::mailbox::{Bounds, Mailbox, SendError};
use crate::metrics::Metrics;

/// What the transport's writer finds in the outbound queue.
#[derive(Debug)]
pub enum Outgoing {
    /// A frame to write.
    Frame(OutFrame),
    /// A channel stopped (leave, stop, crash): the session forgets its topic entry. Queued
    /// *before* that channel's phx_close/phx_error frame, so by the time the client can react
    /// to the frame the session no longer routes to the dead channel.
    ChannelExited {
        /// The channel's topic.
        topic: Arc<str>,
        /// The channel's unique id (a later join of the same topic has another id).
        channel_id: u64,
    },
    /// Close the connection with this code after writing what precedes it.
    Close(CloseCode),
    /// The frame just before this one is a sampled broadcast published at this instant: the
    /// transport observes `phx_broadcast_to_write_seconds` once it has written that frame.
    /// Queued only by [`ConnHandle::send_sampled`], right behind its frame (see
    /// [`crate::pubsub::local`] for which deliveries are sampled).
    Published(Instant),
    /// The endpoint is draining: stop reading, let every channel finish what it already
    /// received (its replies are queued), then close with 1012.
    Drain,
}

/// One connected socket, as seen from outside its transport task.
pub struct ConnHandle {
    /// The outbound queue, drained by the transport writer.
    outbox: Mailbox<Outgoing>,
    /// The serializer negotiated with `vsn`; every frame for this socket is encoded with it.
    serializer: Serializer,
    /// Set once the socket is being closed (overflow, disconnect, drain), so that a flood of
    /// pushes after overflow does not queue a close per push.
    closing: AtomicBool,
    /// Set once a drain was asked for, so it is queued once.
    draining: AtomicBool,
    /// Wakes a writer blocked on a client that does not read, so a close can take effect.
    kill: Notify,
    /// Bytes of frames the transport took from the queue and holds for the client (LongPoll's
    /// buffer between polls), so `phx_outbox_bytes` sees them. Written by this socket's own
    /// task only, read at scrape time: no cache line shared with other sockets, and it fits in
    /// the padding after the flags, so an idle socket weighs no more.
    held_bytes: AtomicU32,
    /// Counters shared by the endpoint.
    metrics: Arc<Metrics>,
}

impl ConnHandle {
    /// A handle for a new socket whose outbound queue holds at most `bounds` (frames, bytes).
    pub fn new(serializer: Serializer, bounds: Bounds, metrics: Arc<Metrics>) -> Self {
        ConnHandle {
            outbox: Mailbox::new(bounds),
            serializer,
            closing: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            kill: Notify::new(),
            held_bytes: AtomicU32::new(0),
            metrics,
        }
    }

    /// The endpoint's metrics (for the transport writing this socket's frames).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The socket's serializer.
    pub fn serializer(&self) -> Serializer {
        self.serializer
    }

    /// The outbound queue (for the transport writer).
    pub fn outbox(&self) -> &Mailbox<Outgoing> {
        &self.outbox
    }

    /// Completes when the socket must be torn down even though its writer is blocked.
    pub async fn killed(&self) {
        self.kill.notified().await
    }

    /// Whether the socket is closing or closed.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Queues an encoded frame. Returns false if the socket is gone or was just closed for
    /// overflow; callers treat that like a message to a dead process: dropped.
    pub fn send_frame(&self, frame: OutFrame) -> bool {
        let weight = frame.len();
        let sent = self.outbox.send(Outgoing::Frame(frame), weight);
        self.sent(sent)
    }

    /// [`send_frame`](Self::send_frame) for a broadcast frame whose delivery is sampled: an
    /// [`Outgoing::Published`] follows the frame in the queue (under the same lock), so the
    /// transport can time the frame from `published` to its write.
    pub fn send_sampled(&self, frame: OutFrame, published: Instant) -> bool {
        let weight = frame.len();
        let sent = self.outbox.send_then(
            Outgoing::Frame(frame),
            weight,
            Outgoing::Published(published),
        );
        self.sent(sent)
    }

    /// Bytes of frames waiting for the client: in the outbound queue, and held by the
    /// transport (LongPoll's buffer). Takes the queue's lock: for scrapes, not hot paths.
    pub fn queued_bytes(&self) -> usize {
        self.outbox.queued_bytes() + self.held_bytes.load(Ordering::Relaxed) as usize
    }

    /// The transport now holds `bytes` of frames for the client outside the queue.
    pub(crate) fn set_held_bytes(&self, bytes: usize) {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.held_bytes.store(bytes, Ordering::Relaxed);
    }

    /// A send's outcome: true if queued; on overflow, closes the socket (once).
    fn sent(&self, sent: Result<(), SendError>) -> bool {
        match sent {
            Ok(()) => true,
            Err(SendError::Closed) => false,
            Err(SendError::Full) => {
                if !self.closing.swap(true, Ordering::Relaxed) {
                    self.metrics.overflow_closes.inc();
                    crate::warn_limited!(
                        "closing a socket whose outbound queue is full (slow client)"
                    );
                    let _ = self
                        .outbox
                        .send_control(Outgoing::Close(CloseCode::OVERFLOW));
                    self.kill.notify_one();
                }
                false
            }
        }
    }

    /// Asks the transport to close the socket with `code` (after frames already queued).
    pub fn close(&self, code: CloseCode) {
        if !self.closing.swap(true, Ordering::Relaxed) {
            let _ = self.outbox.send_control(Outgoing::Close(code));
        }
    }

    /// Asks the transport to drain the socket (Phoenix's drainer): no more client frames are
    /// read, channels finish what they already received, then the socket closes with 1012.
    pub fn drain(&self) {
        if !self.closing.load(Ordering::Relaxed) && !self.draining.swap(true, Ordering::Relaxed) {
            let _ = self.outbox.send_control(Outgoing::Drain);
        }
    }

    /// Queues a control notice for the session (channel exit).
    pub fn send_control(&self, item: Outgoing) {
        let _ = self.outbox.send_control(item);
    }

    /// Encodes and queues a push (or any message with explicit refs, e.g. phx_close).
    pub fn push(&self, msg: &Message) -> Result<bool, EncodeError> {
        let frame = self.serializer.encode_push(msg)?;
        Ok(OutFrame::from_frame(frame).is_some_and(|f| self.send_frame(f)))
    }

    /// Encodes and queues a reply.
    pub fn reply(&self, reply: &Reply) -> Result<bool, EncodeError> {
        let frame = self.serializer.encode_reply(reply)?;
        Ok(OutFrame::from_frame(frame).is_some_and(|f| self.send_frame(f)))
    }

    /// Encodes and queues a broadcast-shaped frame (used when one socket gets a broadcast
    /// outside the shared fan-out path).
    pub fn broadcast(&self, b: &Broadcast) -> Result<bool, EncodeError> {
        let frame = self.serializer.encode_broadcast(b)?;
        Ok(OutFrame::from_frame(frame).is_some_and(|f| self.send_frame(f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> OutFrame {
        OutFrame::Text(Text::from("x".repeat(n)))
    }

    #[test]
    fn a_sampled_frame_is_followed_by_its_publication_instant_and_counts_its_bytes() {
        let metrics = Arc::new(Metrics::default());
        let conn = ConnHandle::new(Serializer::V2, Bounds::new(10, 1000), metrics);
        let at = Instant::now();
        assert!(conn.send_sampled(text(7), at));
        assert!(conn.send_frame(text(5)));
        conn.set_held_bytes(30);
        assert_eq!(conn.queued_bytes(), 42, "7 + 5 queued, 30 held");
        let items: Vec<Outgoing> = conn.outbox().take_all().collect();
        assert!(matches!(items[0], Outgoing::Frame(_)), "{items:?}");
        assert!(
            matches!(items[1], Outgoing::Published(t) if t == at),
            "{items:?}"
        );
        assert!(matches!(items[2], Outgoing::Frame(_)), "{items:?}");
        assert_eq!(conn.queued_bytes(), 30);
    }

    #[test]
    fn the_outbound_queue_is_bounded_in_bytes_and_overflow_queues_one_close() {
        let metrics = Arc::new(Metrics::default());
        let conn = ConnHandle::new(Serializer::V2, Bounds::new(1024, 1000), metrics.clone());
        // One frame larger than the byte bound still goes into an empty queue.
        assert!(conn.send_frame(text(5000)));
        assert!(!conn.send_frame(text(10)), "over the byte bound");
        assert!(!conn.send_frame(text(10)));
        assert_eq!(metrics.overflow_closes.get(), 1, "counted once");
        let items: Vec<Outgoing> = conn.outbox().take_all().collect();
        assert_eq!(items.len(), 2, "{items:?}");
        assert!(matches!(items[1], Outgoing::Close(CloseCode::OVERFLOW)));
        assert!(conn.is_closing());
    }
}

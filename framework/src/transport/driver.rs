//! The one loop that runs a connected socket, whatever carries its frames: a WebSocket
//! ([`super::websocket`]) or a LongPoll session ([`super::longpoll`]).
//!
//! The loop owns the [`Session`] and waits on three things, in this order of priority:
//! 1. the socket's outbound queue — taken whole through [`Session::take_outgoing`] (which
//!    applies channel exits and drain requests itself) and handed to the transport to write;
//! 2. the session's pending [`Wait`] (a join, room in a full channel inbox, a drain) — while
//!    one is pending no client frame is taken, as Phoenix's socket process is blocked the same
//!    way, but the transport keeps serving its own input (a LongPoll poll, an idle deadline);
//! 3. the transport's next input, in the [`Phase`] the session is in.
//!
//! A transport says only how to read, write and close ([`Transport`]); the dispatch rules,
//! the waits and the drain are the same code for both, so the transports cannot drift apart.

use std::time::Duration;

use phx_protocol::FrameRef;
use tokio::time::Instant;

use crate::conn::ConnHandle;
use crate::metrics::TransportLabels;
use crate::session::{FrameError, Outbound, Session, Wait};

/// What the session is doing, which decides what a transport may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Ready for the next client frame.
    Open,
    /// A wait is pending: no client frame is taken until it completes.
    Waiting,
    /// The drain started: no client frame is taken any more.
    Draining,
}

/// A client frame as a transport received it, read by the session in place.
pub(crate) trait ClientFrame {
    /// The frame as the session decodes it; a text frame that is not UTF-8 is malformed.
    fn as_frame(&self) -> Result<FrameRef<'_>, FrameError>;
}

/// What a transport got from its client.
pub(crate) enum Inbound<F, E> {
    /// A frame for the session.
    Frame(F),
    /// Something the transport handled itself (a ping, a poll, a timer): nothing for the
    /// session.
    Handled,
    /// The connection ends.
    End(E),
}

/// How frames reach and leave one socket. Implemented by the WebSocket and LongPoll
/// transports; [`drive`] is the loop over it.
pub(crate) trait Transport {
    /// A client frame as this transport holds it.
    type Frame: ClientFrame;
    /// How the connection ended.
    type End;
    /// The transport's name in metric labels (`websocket`, `longpoll`).
    const NAME: &'static str;

    /// Waits for the client's next input. In [`Phase::Open`] that may be a frame; in the
    /// other phases only what the transport handles itself (or the end).
    async fn recv(&mut self, phase: Phase) -> Inbound<Self::Frame, Self::End>;

    /// Writes what the session queued for the client; `Some` ends the connection (a close
    /// was queued, or the client cannot be written to).
    async fn send(&mut self, out: Outbound<'_>, conn: &ConnHandle) -> Option<Self::End>;

    /// The session started (`true`) or stopped (`false`) waiting.
    fn waiting(&mut self, waiting: bool) {
        let _ = waiting;
    }

    /// The drain starts: client frames not taken yet will not be.
    fn drain_started(&mut self) {}

    /// The session refused a frame (malformed, or over a limit): how the connection ends.
    fn refuse(&mut self, error: FrameError) -> Self::End;

    /// The connection ended with `end`; the session is gone. Closes the transport's side.
    async fn finish(self, end: &Self::End);
}

/// Runs one socket until it ends: the session, its waits and its drain over `transport`.
/// `drain_max` bounds how long a drain waits for the channels (`DRAIN_MAX_MS`).
///
/// Not an `async fn`: its future lives as long as the socket, so its size is paid by every
/// idle socket, and an `async fn` keeps its arguments twice (as captured arguments and as the
/// locals they are moved into). The `async move` block below uses the captured values in place.
#[allow(clippy::manual_async_fn)] // deliberately not an `async fn`: see above
pub(crate) fn drive<T: Transport>(
    mut transport: T,
    mut session: Session,
    drain_max: Duration,
) -> impl std::future::Future<Output = T::End> {
    async move {
        let conn = session.conn().clone();
        let labels = TransportLabels { transport: T::NAME };
        let frames_in = conn.metrics().messages_in.get_or_create(&labels).clone();
        let mut pending: Option<Wait> = None;
        let mut draining = false;
        let end = loop {
            if session.drain_requested() && pending.is_none() && !draining {
                draining = true;
                transport.drain_started();
                pending = Some(session.drain(Instant::now() + drain_max));
            }
            let phase = if draining {
                Phase::Draining
            } else if pending.is_some() {
                Phase::Waiting
            } else {
                Phase::Open
            };
            tokio::select! {
                biased;
                _ = conn.outbox().ready() => {
                    // Boxed: the write path's state (a batch in flight, its timer) is large and
                    // only alive while writing; inline it would sit in every idle socket's task.
                    if let Some(end) = Box::pin(transport.send(session.take_outgoing(), &conn)).await {
                        break end;
                    }
                }
                r = async { match pending.as_mut() { Some(w) => w.await, None => std::future::pending().await } }, if pending.is_some() => {
                    pending = session.resume(r);
                    transport.waiting(pending.is_some());
                }
                input = transport.recv(phase) => match input {
                    Inbound::Handled => {}
                    Inbound::End(end) => break end,
                    Inbound::Frame(frame) => {
                        frames_in.inc();
                        let handled = frame.as_frame().and_then(|f| session.handle_frame(f));
                        match handled {
                            Ok(wait) => {
                                pending = wait;
                                if pending.is_some() {
                                    transport.waiting(true);
                                }
                            }
                            Err(e) => break transport.refuse(e),
                        }
                    }
                },
            }
        };
        conn.outbox().close();
        // Dropping the session stops its channels ({:shutdown, :closed}), as when a socket closes.
        drop(session);
        drop(pending);
        // Boxed: closing (a Close frame, the linger) needs the transport's whole state and timers
        // once, at the end; inline it would be part of every open socket's task too.
        Box::pin(transport.finish(&end)).await;
        end
    }
}

//! The connection cap (`MAX_CONNECTIONS`): a slot per open TCP connection, and the answer a
//! connection over the cap gets.
//!
//! The point of the cap is that the server refuses politely before the kernel refuses rudely:
//! past the fd limit `accept` fails with `EMFILE`, the connection stays in the backlog and the
//! client waits for nothing. Under the cap there is room (the fd reserve) to accept one more,
//! write it a `503` and close it.
//!
//! A slot is held by the stream itself ([`Counted`]), not by the task serving it: hyper hands
//! the stream to an upgraded WebSocket and the HTTP task ends, but the socket — and its
//! descriptor — lives on for as long as the WebSocket does.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// A counted set of slots: at most `max` taken at once.
#[derive(Debug)]
pub struct Slots {
    live: AtomicUsize,
    max: usize,
    /// Woken when the last slot is given back (the shutdown waits on it).
    empty: Notify,
}

/// One taken slot; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
}

impl Slots {
    /// `max` slots, none taken.
    pub fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            live: AtomicUsize::new(0),
            max,
            empty: Notify::new(),
        })
    }

    /// A slot, or `None` when all `max` are taken.
    pub fn try_take(self: &Arc<Self>) -> Option<Slot> {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        Some(Slot {
            slots: Arc::clone(self),
        })
    }

    /// Slots taken now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Completes once no slot is taken.
    pub async fn all_free(&self) {
        loop {
            let notified = self.empty.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release in between is not missed.
            notified.as_mut().enable();
            if self.live() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.slots.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.slots.empty.notify_waiters();
        }
    }
}

/// A TCP stream that holds its connection slot for as long as it exists.
#[derive(Debug)]
pub struct Counted {
    stream: TcpStream,
    _slot: Slot,
}

impl Counted {
    /// `stream`, counted against `slot` until it is dropped.
    pub fn new(stream: TcpStream, slot: Slot) -> Counted {
        Counted {
            stream,
            _slot: slot,
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// What a connection over the cap reads: one complete response that tells the client not to
/// reuse the connection, then EOF.
pub const REFUSAL: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Refused connections that may linger at once (each holds a descriptor beyond the cap, out of
/// the fd reserve).
pub const REFUSALS_LINGERING: usize = 64;

/// How long a refused connection is read (and discarded) after its 503, at most.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Bytes read and discarded from a refused connection, at most.
const REFUSAL_LINGER_BYTES: usize = 64 * 1024;

/// Answers a connection over the cap with [`REFUSAL`] without reading its request, and closes
/// it.
///
/// The write goes into a fresh socket's empty send buffer, so it is done at once, in the accept
/// loop. Closing a socket whose client already sent its request (unread) makes the kernel send
/// RST, and a client that gets RST may lose the 503 it had not read yet; so, while fewer than
/// [`REFUSALS_LINGERING`] do, the refused connection is half-closed (FIN after the 503) and what
/// the client still sends is read and dropped for a moment before the socket is closed.
pub fn refuse(stream: TcpStream, lingering: &Arc<Slots>) {
    match stream.try_write(REFUSAL) {
        Ok(n) if n == REFUSAL.len() => {}
        // A socket that cannot take 80 bytes is not worth a task: close it.
        _ => return,
    }
    let Some(slot) = lingering.try_take() else {
        return;
    };
    tokio::spawn(async move {
        let _slot = slot;
        let mut stream = stream;
        if stream.shutdown().await.is_err() {
            return;
        }
        let mut scratch = [0u8; 4096];
        let mut read = 0;
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            while read < REFUSAL_LINGER_BYTES {
                match stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
            }
        })
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_given_back() {
        let slots = Slots::new(2);
        let a = slots.try_take().expect("first");
        let b = slots.try_take().expect("second");
        assert!(slots.try_take().is_none(), "a third slot over max 2");
        drop(a);
        let c = slots.try_take().expect("a freed slot is taken again");
        assert_eq!(slots.live(), 2);
        drop((b, c));
        assert_eq!(slots.live(), 0);
    }

    #[tokio::test]
    async fn all_free_waits_for_the_last_slot() {
        let slots = Slots::new(1);
        let slot = slots.try_take().expect("slot");
        let waiter = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.all_free().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "all_free returned with a slot taken");
        drop(slot);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("all_free completes once the slot is free")
            .expect("task");
    }

    #[test]
    fn the_refusal_is_one_complete_response() {
        let text = std::str::from_utf8(REFUSAL).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(text.contains("\r\nconnection: close\r\n"));
        assert!(text.ends_with("content-length: 0\r\nconnection: close\r\n\r\n"));
    }
}

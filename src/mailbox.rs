//! A small single-consumer async queue: the "process mailbox" of a socket or a channel task.
//!
//! Why not `tokio::sync::mpsc`? Its channels allocate a block of 32 slots up front, which for our
//! message types is one to three kilobytes per queue — and every connected socket and every
//! joined channel owns one. Idle sockets are the common case (the target is ≤ 6 kB of RSS per
//! idle joined socket), so this queue allocates nothing until something is queued, gives its
//! memory back when it drains, and lets the consumer take everything queued in one lock, which
//! is how the writer batches many frames into one syscall.

use std::collections::VecDeque;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The consumer is gone (the socket closed, the channel stopped).
    #[error("mailbox closed")]
    Closed,
    /// The queue holds `capacity` bounded items already: the consumer cannot keep up.
    #[error("mailbox full")]
    Full,
}

struct State<T> {
    /// Queued items in arrival order, each with whether it counts against `capacity`.
    queue: VecDeque<(T, bool)>,
    /// How many of the queued items count against `capacity`.
    bounded: usize,
    /// Set once the consumer has gone; later sends fail with `Closed`.
    closed: bool,
}

/// A multi-producer, single-consumer queue with an async `recv`.
pub struct Mailbox<T> {
    state: Mutex<State<T>>,
    /// Wakes the single consumer; `notify_one` stores a permit, so no wake-up is lost.
    notify: Notify,
    /// Upper bound on bounded items; control items bypass it.
    capacity: usize,
}

impl<T> Mailbox<T> {
    /// A new, empty mailbox holding at most `capacity` bounded items.
    pub fn new(capacity: usize) -> Self {
        Mailbox {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bounded: 0,
                closed: false,
            }),
            notify: Notify::new(),
            capacity,
        }
    }

    /// Queues a bounded item (a frame, a client message): fails with `Full` at capacity.
    pub fn send(&self, item: T) -> Result<(), SendError> {
        {
            let mut st = self.state.lock();
            if st.closed {
                return Err(SendError::Closed);
            }
            if st.bounded >= self.capacity {
                return Err(SendError::Full);
            }
            st.bounded += 1;
            st.queue.push_back((item, true));
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Queues a control item that must not be refused for lack of room (close, exit notices).
    pub fn send_control(&self, item: T) -> Result<(), SendError> {
        {
            let mut st = self.state.lock();
            if st.closed {
                return Err(SendError::Closed);
            }
            st.queue.push_back((item, false));
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Takes every queued item (in order) without waiting; an empty queue if there is none.
    ///
    /// The queue itself is handed over, so a socket that goes idle after a burst keeps no
    /// capacity: the next item queued allocates afresh. One allocation per batch is cheaper
    /// than a few hundred idle bytes on each of a hundred thousand sockets.
    pub fn take_all(&self) -> Drain<T> {
        let mut st = self.state.lock();
        st.bounded = 0;
        Drain(std::mem::take(&mut st.queue))
    }

    /// Takes every queued item into `out` without waiting; true if anything was taken.
    pub fn try_recv_many(&self, out: &mut Vec<T>) -> bool {
        let taken = self.take_all();
        if taken.is_empty() {
            return false;
        }
        out.extend(taken);
        true
    }

    /// Waits for and takes the next item; `None` once closed and empty.
    pub async fn recv(&self) -> Option<T> {
        loop {
            {
                let mut st = self.state.lock();
                if let Some((item, bounded)) = st.queue.pop_front() {
                    if bounded {
                        st.bounded -= 1;
                    }
                    if st.queue.is_empty() {
                        // An idle channel keeps no capacity (see `take_all`).
                        st.queue = VecDeque::new();
                    }
                    return Some(item);
                }
                if st.closed {
                    return None;
                }
            }
            self.notify.notified().await;
        }
    }

    /// Completes when something is queued (or the mailbox closes); takes nothing.
    pub async fn ready(&self) {
        loop {
            {
                let st = self.state.lock();
                if !st.queue.is_empty() || st.closed {
                    return;
                }
            }
            self.notify.notified().await;
        }
    }

    /// Whether bounded room is left (used for backpressure before forwarding client messages).
    pub fn has_room(&self) -> bool {
        let st = self.state.lock();
        st.bounded < self.capacity
    }

    /// Closes the mailbox: later sends fail; items already queued can still be received.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.notify.notify_one();
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Number of queued items.
    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The items taken by [`Mailbox::take_all`], in order.
pub struct Drain<T>(VecDeque<(T, bool)>);

impl<T> Iterator for Drain<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.0.pop_front().map(|(item, _)| item)
    }
}

impl<T> Drain<T> {
    /// Whether nothing was taken.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

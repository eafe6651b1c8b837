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
    /// Wakes a producer waiting in [`Mailbox::room`] once a full queue gives up an item.
    room: Notify,
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
            room: Notify::new(),
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

    /// Queues a bounded item without refusing it: for a producer that waited for
    /// [`Mailbox::room`] and must not drop what it sends if another producer raced it into the
    /// last slot. It still counts against `capacity`, so the next producer waits.
    pub fn send_counted(&self, item: T) -> Result<(), SendError> {
        {
            let mut st = self.state.lock();
            if st.closed {
                return Err(SendError::Closed);
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
        let was_full = st.bounded >= self.capacity;
        st.bounded = 0;
        if was_full {
            self.room.notify_waiters();
        }
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
                        if st.bounded >= self.capacity {
                            self.room.notify_waiters();
                        }
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

    /// Completes when bounded room is left (or the mailbox is closed): the backpressure wait
    /// of a producer that must not drop what it sends.
    pub async fn room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Register before checking, so a slot freed between the check and the await is
            // not missed (`notify_waiters` stores no permit).
            notified.as_mut().enable();
            {
                let st = self.state.lock();
                if st.bounded < self.capacity || st.closed {
                    return;
                }
            }
            notified.await;
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
        self.room.notify_waiters();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_full_mailbox_refuses_then_wakes_the_waiting_producer_when_drained() {
        let mb = Arc::new(Mailbox::new(2));
        mb.send(1).expect("room");
        mb.send(2).expect("room");
        assert_eq!(mb.send(3), Err(SendError::Full));
        // Control items are never refused for room.
        mb.send_control(99).expect("control");
        let waiter = {
            let mb = mb.clone();
            tokio::spawn(async move { mb.room().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "no room yet");
        assert_eq!(mb.recv().await, Some(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken once a slot is free")
            .expect("task");
        mb.send(3).expect("room again");
        let taken: Vec<i32> = mb.take_all().collect();
        assert_eq!(taken, vec![2, 99, 3]);
        assert!(mb.is_empty());
    }

    #[tokio::test]
    async fn closing_releases_a_waiting_producer_and_refuses_sends() {
        let mb = Arc::new(Mailbox::new(1));
        mb.send(1).expect("room");
        let waiter = {
            let mb = mb.clone();
            tokio::spawn(async move { mb.room().await })
        };
        tokio::task::yield_now().await;
        mb.close();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("released by close")
            .expect("task");
        assert_eq!(mb.send(2), Err(SendError::Closed));
        assert_eq!(mb.recv().await, Some(1));
        assert_eq!(mb.recv().await, None);
    }
}

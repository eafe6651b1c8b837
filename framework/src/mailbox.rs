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
    /// The queue is at its bound (items or bytes): the consumer cannot keep up.
    #[error("mailbox full")]
    Full,
}

/// The two bounds of a mailbox: how many bounded items, and how many bytes of them.
///
/// Both matter: a count alone lets one client park a gigabyte in 1,024 one-megabyte frames,
/// bytes alone let it park millions of empty ones. An item heavier than `max_bytes` still fits
/// an otherwise empty queue, so one large frame (a big join reply, a presence state) always gets
/// through — the bound is on what piles up, not on what a single message may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Most bounded items queued at once.
    pub items: u32,
    /// Most bytes (as weighed by the producer) of bounded items queued at once.
    pub bytes: u32,
}

impl Bounds {
    /// Bounds of `items` items and `bytes` bytes (each clamped to `u32::MAX`, at least 1).
    pub fn new(items: usize, bytes: usize) -> Bounds {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).max(1);
        Bounds {
            items: clamp(items),
            bytes: clamp(bytes),
        }
    }
}

/// One queued item. `weight` is 0 for control items, which do not count against the bounds.
struct Slot<T> {
    item: T,
    /// Bytes this item counts for; meaningful only when `bounded`.
    weight: u32,
    /// Whether it counts against the bounds.
    bounded: bool,
}

struct State<T> {
    /// Queued items in arrival order.
    queue: VecDeque<Slot<T>>,
    /// How many of the queued items count against the bounds.
    bounded: u32,
    /// Sum of the weights of the bounded items queued.
    bytes: u32,
    /// A producer is waiting in [`Mailbox::room`]; the consumer wakes it when it takes an item.
    want_room: bool,
    /// Set once the consumer has gone; later sends fail with `Closed`.
    closed: bool,
}

impl<T> State<T> {
    /// Whether a bounded item of `weight` bytes would exceed the bounds.
    fn full_for(&self, bounds: Bounds, weight: u32) -> bool {
        self.bounded >= bounds.items
            || (self.bounded > 0 && self.bytes.saturating_add(weight) > bounds.bytes)
    }

    /// Forgets a bounded item that left the queue.
    fn release(&mut self, weight: u32) {
        self.bounded -= 1;
        self.bytes = self.bytes.saturating_sub(weight);
    }
}

/// A multi-producer, single-consumer queue with an async `recv`.
pub struct Mailbox<T> {
    state: Mutex<State<T>>,
    /// Wakes the single consumer; `notify_one` stores a permit, so no wake-up is lost.
    notify: Notify,
    /// Wakes a producer waiting in [`Mailbox::room`] once the consumer took something.
    room: Notify,
    /// The bounds on bounded items; control items bypass them.
    bounds: Bounds,
}

impl<T> Mailbox<T> {
    /// A new, empty mailbox with `bounds`.
    pub fn new(bounds: Bounds) -> Self {
        Mailbox {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bounded: 0,
                bytes: 0,
                want_room: false,
                closed: false,
            }),
            notify: Notify::new(),
            room: Notify::new(),
            bounds,
        }
    }

    /// The mailbox's bounds.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// Queues a bounded item weighing `weight` bytes (a frame, a client message): fails with
    /// `Full` when it would exceed the bounds.
    pub fn send(&self, item: T, weight: usize) -> Result<(), SendError> {
        self.push_bounded(item, weight, None)
    }

    /// [`Mailbox::send`], and if `item` was queued, `then` right behind it as a control item
    /// (outside the bounds), under the same lock and with one wake-up: nothing can be queued
    /// between the two, and the consumer never takes `item` without `then`.
    pub fn send_then(&self, item: T, weight: usize, then: T) -> Result<(), SendError> {
        self.push_bounded(item, weight, Some(then))
    }

    /// The one bounded enqueue behind [`Mailbox::send`] and [`Mailbox::send_then`].
    fn push_bounded(&self, item: T, weight: usize, then: Option<T>) -> Result<(), SendError> {
        let weight = u32::try_from(weight).unwrap_or(u32::MAX);
        {
            let mut st = self.state.lock();
            if st.closed {
                return Err(SendError::Closed);
            }
            if st.full_for(self.bounds, weight) {
                return Err(SendError::Full);
            }
            st.bounded += 1;
            st.bytes = st.bytes.saturating_add(weight);
            st.queue.push_back(Slot {
                item,
                weight,
                bounded: true,
            });
            if let Some(then) = then {
                st.queue.push_back(Slot {
                    item: then,
                    weight: 0,
                    bounded: false,
                });
            }
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Queues a bounded item without refusing it: for a producer that waited for
    /// [`Mailbox::room`] and must not drop what it sends if another producer raced it into the
    /// last slot. It still counts against the bounds, so the next producer waits.
    pub fn send_counted(&self, item: T, weight: usize) -> Result<(), SendError> {
        let weight = u32::try_from(weight).unwrap_or(u32::MAX);
        {
            let mut st = self.state.lock();
            if st.closed {
                return Err(SendError::Closed);
            }
            st.bounded = st.bounded.saturating_add(1);
            st.bytes = st.bytes.saturating_add(weight);
            st.queue.push_back(Slot {
                item,
                weight,
                bounded: true,
            });
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Queues a control item that must not be refused for lack of room (close, exit notices).
    /// Callers make sure control items are themselves bounded (one per channel exit, one
    /// close per socket): nothing a client sends may become a control item.
    pub fn send_control(&self, item: T) -> Result<(), SendError> {
        {
            let mut st = self.state.lock();
            if st.closed {
                return Err(SendError::Closed);
            }
            st.queue.push_back(Slot {
                item,
                weight: 0,
                bounded: false,
            });
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
        st.bytes = 0;
        if std::mem::take(&mut st.want_room) {
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

    /// Queues the bounded item `make()` only if `cond()` holds, both evaluated under the queue's
    /// lock; `Ok(false)` when `cond()` was false (nothing queued). Paired with
    /// [`Mailbox::take_matching`], this lets a producer decide "queue it here, or deliver it
    /// elsewhere" atomically with respect to a consumer that flips `cond` under the same lock
    /// (the join gate: broadcasts held while a channel joins must not be overtaken by later ones).
    pub fn send_if(
        &self,
        cond: impl FnOnce() -> bool,
        make: impl FnOnce() -> T,
        weight: usize,
    ) -> Result<bool, SendError> {
        let weight = u32::try_from(weight).unwrap_or(u32::MAX);
        {
            let mut st = self.state.lock();
            if st.closed {
                return Err(SendError::Closed);
            }
            if !cond() {
                return Ok(false);
            }
            if st.full_for(self.bounds, weight) {
                return Err(SendError::Full);
            }
            st.bounded += 1;
            st.bytes = st.bytes.saturating_add(weight);
            st.queue.push_back(Slot {
                item: make(),
                weight,
                bounded: true,
            });
        }
        self.notify.notify_one();
        Ok(true)
    }

    /// Under the queue's lock: removes every item for which `pick` is true (others keep their
    /// order), hands each to `each` in order, then runs `finally`. `each` and `finally` must be
    /// quick and must not touch this mailbox.
    pub fn take_matching(
        &self,
        mut pick: impl FnMut(&T) -> bool,
        mut each: impl FnMut(T),
        finally: impl FnOnce(),
    ) {
        let mut st = self.state.lock();
        let queue = std::mem::take(&mut st.queue);
        let mut kept = VecDeque::new();
        let mut released = false;
        for slot in queue {
            if pick(&slot.item) {
                if slot.bounded {
                    st.release(slot.weight);
                    released = true;
                }
                each(slot.item);
            } else {
                kept.push_back(slot);
            }
        }
        st.queue = kept;
        finally();
        if released && std::mem::take(&mut st.want_room) {
            self.room.notify_waiters();
        }
    }

    /// Waits for and takes the next item; `None` once closed and empty.
    pub async fn recv(&self) -> Option<T> {
        loop {
            {
                let mut st = self.state.lock();
                if let Some(slot) = st.queue.pop_front() {
                    if slot.bounded {
                        st.release(slot.weight);
                        if std::mem::take(&mut st.want_room) {
                            self.room.notify_waiters();
                        }
                    }
                    if st.queue.is_empty() {
                        // An idle channel keeps no capacity (see `take_all`).
                        st.queue = VecDeque::new();
                    }
                    return Some(slot.item);
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

    /// Completes when a bounded item of `weight` bytes would fit (or the mailbox is closed):
    /// the backpressure wait of a producer that must not drop what it sends.
    pub async fn room(&self, weight: usize) {
        let weight = u32::try_from(weight).unwrap_or(u32::MAX);
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Register before checking, so a slot freed between the check and the await is
            // not missed (`notify_waiters` stores no permit).
            notified.as_mut().enable();
            {
                let mut st = self.state.lock();
                if !st.full_for(self.bounds, weight) || st.closed {
                    return;
                }
                st.want_room = true;
            }
            notified.await;
        }
    }

    /// Whether a bounded item of `weight` bytes would fit now.
    pub fn has_room(&self, weight: usize) -> bool {
        let weight = u32::try_from(weight).unwrap_or(u32::MAX);
        !self.state.lock().full_for(self.bounds, weight)
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

    /// Bytes of bounded items queued.
    pub fn queued_bytes(&self) -> usize {
        self.state.lock().bytes as usize
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The items taken by [`Mailbox::take_all`], in order.
pub struct Drain<T>(VecDeque<Slot<T>>);

impl<T> Iterator for Drain<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.0.pop_front().map(|slot| slot.item)
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
        let mb = Arc::new(Mailbox::new(Bounds::new(2, 1 << 20)));
        mb.send(1, 1).expect("room");
        mb.send(2, 1).expect("room");
        assert_eq!(mb.send(3, 1), Err(SendError::Full));
        // Control items are never refused for room.
        mb.send_control(99).expect("control");
        let waiter = {
            let mb = mb.clone();
            tokio::spawn(async move { mb.room(1).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "no room yet");
        assert_eq!(mb.recv().await, Some(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken once a slot is free")
            .expect("task");
        mb.send(3, 1).expect("room again");
        let taken: Vec<i32> = mb.take_all().collect();
        assert_eq!(taken, vec![2, 99, 3]);
        assert!(mb.is_empty());
    }

    #[tokio::test]
    async fn closing_releases_a_waiting_producer_and_refuses_sends() {
        let mb = Arc::new(Mailbox::new(Bounds::new(1, 1 << 20)));
        mb.send(1, 1).expect("room");
        let waiter = {
            let mb = mb.clone();
            tokio::spawn(async move { mb.room(1).await })
        };
        tokio::task::yield_now().await;
        mb.close();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("released by close")
            .expect("task");
        assert_eq!(mb.send(2, 1), Err(SendError::Closed));
        assert_eq!(mb.recv().await, Some(1));
        assert_eq!(mb.recv().await, None);
    }

    #[test]
    fn bytes_bound_the_queue_but_one_heavy_item_fits_an_empty_one() {
        let mb = Mailbox::new(Bounds::new(100, 10));
        // Heavier than the whole byte bound, but the queue is empty: accepted.
        mb.send(1, 50).expect("a lone heavy item fits");
        assert_eq!(mb.send(2, 1), Err(SendError::Full), "over the byte bound");
        assert_eq!(mb.queued_bytes(), 50);
        let _ = mb.take_all();
        mb.send(3, 6).expect("room");
        mb.send(4, 4).expect("exactly at the bound");
        assert_eq!(mb.send(5, 1), Err(SendError::Full));
        // Control items never count.
        mb.send_control(6).expect("control");
        assert_eq!(mb.queued_bytes(), 10);
        assert!(!mb.has_room(1));
        let taken: Vec<i32> = mb.take_all().collect();
        assert_eq!(taken, vec![3, 4, 6]);
        assert!(mb.has_room(10));
    }

    #[tokio::test]
    async fn a_byte_full_mailbox_wakes_the_waiting_producer_when_an_item_leaves() {
        let mb = Arc::new(Mailbox::new(Bounds::new(100, 10)));
        mb.send(1, 8).expect("room");
        let waiter = {
            let mb = mb.clone();
            tokio::spawn(async move { mb.room(5).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "8 + 5 > 10");
        assert_eq!(mb.recv().await, Some(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken when bytes were freed")
            .expect("task");
    }

    #[test]
    fn send_then_queues_the_follower_outside_the_bounds_or_not_at_all() {
        let mb = Mailbox::new(Bounds::new(1, 100));
        mb.send_then(1, 10, 100).expect("room");
        assert_eq!(mb.queued_bytes(), 10, "the follower weighs nothing");
        assert_eq!(mb.send_then(2, 1, 200), Err(SendError::Full));
        let taken: Vec<i32> = mb.take_all().collect();
        assert_eq!(taken, vec![1, 100], "refused item: no follower either");
        mb.close();
        assert_eq!(mb.send_then(3, 1, 300), Err(SendError::Closed));
    }

    #[test]
    fn send_if_and_take_matching_are_atomic_with_the_gate() {
        let mb = Mailbox::new(Bounds::new(10, 1 << 20));
        let gate = std::sync::atomic::AtomicBool::new(true);
        let open = || gate.load(std::sync::atomic::Ordering::Acquire);
        assert_eq!(mb.send_if(open, || 1, 1), Ok(true));
        mb.send_control(100).expect("control");
        assert_eq!(mb.send_if(open, || 2, 1), Ok(true));
        let mut released = Vec::new();
        mb.take_matching(
            |x| *x < 100,
            |x| released.push(x),
            || gate.store(false, std::sync::atomic::Ordering::Release),
        );
        assert_eq!(released, vec![1, 2]);
        assert_eq!(
            mb.send_if(open, || 3, 1),
            Ok(false),
            "gate closed: not queued"
        );
        let rest: Vec<i32> = mb.take_all().collect();
        assert_eq!(rest, vec![100]);
    }
}

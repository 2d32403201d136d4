//! A connection's outbound queue and its cut-off switch: the hub and the connection queue
//! messages; whoever holds the connection's socket takes them out and writes them (see
//! [`crate::outlet`]), and the connection's own task is the one woken to.
//!
//! Written by hand, on std's `Mutex` and futures' `AtomicWaker`: what a channel crate gives
//! (many receivers, waiters on both sides, a buffer kept for reuse) cost each idle connection
//! about half a kilobyte with flume, which held its buffer and a waiter's hook for good. Here an
//! empty queue holds no buffer, and the one task that waits on it is the only one ever woken.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// What the reader gets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<T> {
    Item(T),
    /// Stop now.
    Cut,
}

/// A bounded queue with one waiting reader (the connection's task; others may take items out
/// too, without waiting), which can also be told to stop at once.
#[derive(Debug)]
pub(crate) struct Mailbox<T> {
    queue: Mutex<VecDeque<T>>,
    capacity: usize,
    cut: AtomicBool,
    /// The reading task, woken by a push or the cut.
    waker: AtomicWaker,
}

impl<T> Mailbox<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Mailbox {
            queue: Mutex::new(VecDeque::new()),
            capacity,
            cut: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
        // A push or pop cannot leave the queue half changed: a poisoned lock is still sound.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item`. False when the queue is full: the reader does not keep up. Once cut, the
    /// item is dropped (the reader is gone or going) and this is true.
    pub(crate) fn push(&self, item: T) -> bool {
        let queued = self.enqueue(item);
        if queued {
            self.waker.wake();
        }
        queued
    }

    /// Queues `item` without waking the reader: for a caller that takes the item out and
    /// handles it itself when it can, and calls [`Mailbox::wake`] when it cannot.
    fn enqueue(&self, item: T) -> bool {
        if self.is_cut() {
            return true;
        }
        let mut queue = self.lock();
        if queue.len() >= self.capacity {
            return false;
        }
        queue.push_back(item);
        true
    }

    /// Queues `item`, or cuts the reader off when the queue is full (it does not keep up).
    /// False when it was cut off here.
    pub(crate) fn push_or_cut(&self, item: T) -> bool {
        let queued = self.push(item);
        if !queued {
            self.cut();
        }
        queued
    }

    /// [`Mailbox::push_or_cut`] without waking the reader (unless it is cut off): the caller
    /// then calls [`Mailbox::wake`] unless it took the item out itself.
    pub(crate) fn push_or_cut_quietly(&self, item: T) -> bool {
        let queued = self.enqueue(item);
        if !queued {
            self.cut();
        }
        queued
    }

    /// Wakes the reader.
    pub(crate) fn wake(&self) {
        self.waker.wake();
    }

    /// Puts `item` in the place of the last queued item that `same` picks, or else queues it
    /// like [`Mailbox::push_or_cut`]: for answers only the latest of which matters (a pong, of
    /// which RFC 6455 lets a server send only the one for the latest ping), so that a client
    /// that floods them without reading fills nothing.
    pub(crate) fn replace_or_push(&self, item: T, same: impl Fn(&T) -> bool) -> bool {
        if self.is_cut() {
            return true;
        }
        {
            let mut queue = self.lock();
            if let Some(slot) = queue.iter_mut().rev().find(|queued| same(queued)) {
                *slot = item;
                return true;
            }
        }
        self.push_or_cut(item)
    }

    /// Queues `item` even past the capacity: for a burst bounded elsewhere (a resume's replay,
    /// bounded by the replay buffer).
    pub(crate) fn push_beyond(&self, item: T) {
        if self.is_cut() {
            return;
        }
        self.lock().push_back(item);
        self.waker.wake();
    }

    /// The next item, if one is queued. A queue left empty gives its buffer back.
    pub(crate) fn pop(&self) -> Option<T> {
        let mut queue = self.lock();
        let item = queue.pop_front();
        if queue.is_empty() && queue.capacity() > 0 {
            *queue = VecDeque::new();
        }
        item
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The cut, or else (when `take`) whether an item is queued, for the reader to pop; when
    /// neither, the task is woken when one comes (by a push that wakes it, or by
    /// [`Mailbox::wake`]). One call, one registration of the task's waker.
    pub(crate) fn poll_ready(&self, take: bool, cx: &mut Context<'_>) -> Poll<Next<()>> {
        let ready = || {
            if self.is_cut() {
                Some(Next::Cut)
            } else if take && !self.is_empty() {
                Some(Next::Item(()))
            } else {
                None
            }
        };
        if let Some(next) = ready() {
            return Poll::Ready(next);
        }
        self.waker.register(cx.waker());
        // Pushed or cut between the look and the registration: its wake may have found no
        // waker.
        ready().map_or(Poll::Pending, Poll::Ready)
    }

    /// Tells the reader to stop at once, without writing what is queued.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub(crate) fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    #[test]
    fn items_come_out_in_order_up_to_the_capacity_and_an_empty_queue_holds_no_buffer() {
        let m = Mailbox::new(3);
        assert!(m.push(1) && m.push(2) && m.push(3));
        assert!(!m.push(4), "full");
        m.push_beyond(6);
        assert_eq!((m.pop(), m.pop()), (Some(1), Some(2)));
        assert!(m.push(5));
        assert_eq!(
            (m.pop(), m.pop(), m.pop(), m.pop()),
            (Some(3), Some(6), Some(5), None)
        );
        assert_eq!(m.lock().capacity(), 0);
    }

    #[test]
    fn an_answer_only_the_latest_of_which_matters_takes_the_queued_ones_place() {
        let m = Mailbox::new(3);
        let pong = |n: &i32| *n < 0;
        assert!(m.push(1) && m.replace_or_push(-1, pong) && m.push(2));
        // Full, but a pong is queued: the newest takes its place, as often as it comes.
        for n in 2..100 {
            assert!(m.replace_or_push(-n, pong));
        }
        assert!(!m.is_cut());
        assert_eq!(
            (m.pop(), m.pop(), m.pop(), m.pop()),
            (Some(1), Some(-99), Some(2), None)
        );
        // With no pong queued it is pushed, and a full queue cuts the reader off.
        assert!(m.push(1) && m.push(2) && m.push(3));
        assert!(!m.replace_or_push(-1, pong));
        assert!(m.is_cut());
    }

    #[test]
    fn once_cut_the_reader_is_told_and_pushes_are_dropped() {
        let m = Mailbox::new(3);
        assert!(m.push(1));
        m.cut();
        assert!(m.is_cut());
        assert!(m.push(2), "not a full queue: the connection is going");
        assert_eq!((m.pop(), m.pop()), (Some(1), None));
    }

    #[test]
    fn a_push_to_a_full_queue_can_cut_the_reader_off() {
        let m = Mailbox::new(1);
        assert!(m.push_or_cut(1));
        assert!(!m.is_cut());
        assert!(!m.push_or_cut(2), "full");
        assert!(m.is_cut());
    }

    #[test]
    fn a_quiet_push_wakes_the_reader_only_when_told_or_when_it_cuts_it_off() {
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let woken = || count.0.load(Ordering::SeqCst);
        let waker = std::task::Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let m = Mailbox::new(2);
        assert_eq!(m.poll_ready(true, &mut cx), Poll::Pending);
        assert!(m.push_or_cut_quietly(1));
        assert_eq!(woken(), 0);
        m.wake();
        assert_eq!(woken(), 1);
        assert_eq!(m.poll_ready(true, &mut cx), Poll::Ready(Next::Item(())));
        assert_eq!(m.pop(), Some(1));
        // Registered again, then filled up quietly: the one that does not fit cuts, and wakes.
        assert_eq!(m.poll_ready(true, &mut cx), Poll::Pending);
        assert!(m.push_or_cut_quietly(2) && m.push_or_cut_quietly(3));
        assert_eq!(woken(), 1);
        assert!(!m.push_or_cut_quietly(4));
        assert_eq!(woken(), 2);
        assert_eq!(m.poll_ready(true, &mut cx), Poll::Ready(Next::Cut));
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken_by_a_push_from_another_thread_and_by_the_cut() {
        let m = Arc::new(Mailbox::new(8));
        let pusher = m.clone();
        let push = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            pusher.push(7)
        });
        let got =
            tokio::time::timeout(Duration::from_secs(5), poll_fn(|cx| m.poll_ready(true, cx)))
                .await
                .unwrap();
        assert_eq!((got, m.pop()), (Next::Item(()), Some(7)));
        assert!(push.join().unwrap());
        let cutter = m.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            cutter.cut();
        });
        assert!(m.push(8));
        // Not taking items (the reader's socket is backed up), it still hears the cut.
        let got = tokio::time::timeout(
            Duration::from_secs(5),
            poll_fn(|cx| m.poll_ready(false, cx)),
        )
        .await
        .unwrap();
        assert_eq!(got, Next::Cut);
    }
}

//! A connection's way out: what is queued for it, and its socket (the TCP stream and the frame
//! being written), shared by the connection's own task and the hub.
//!
//! Whoever holds the wire writes: the connection's task (which also reads the stream while it
//! holds it), for what it queues itself and whenever it is woken, or, on the one-process
//! backplane, the task that relayed a message to it, which writes it straight away when the
//! wire is free. That saves the receiving connection's task a wake and a poll for each message
//! relayed to it (about a tenth of the server's time per message under load). Items are only
//! ever taken from the queue by the wire's holder, so they go out in the order they were
//! queued, whoever writes them.

use std::future::poll_fn;
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::time::{Duration, timeout};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::debug;

use crate::frames::{CLOSE_NORMAL, Incoming, Outgoing, Receiving, Sending};
use crate::mailbox::Mailbox;
use crate::metrics::Metrics;

/// What a connection's writer sends.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A JSON message, with its `seq` when it is part of a session's stream (written as its
    /// first field: the text itself is the one shared with the replay buffer); `relayed_at` is
    /// when the `signal` it carries was read, for the latency histogram.
    Text {
        text: Utf8Bytes,
        seq: Option<u64>,
        relayed_at: Option<Instant>,
    },
    /// A heartbeat ping; `ack` asks the client to confirm its session's messages up to that
    /// `seq` (the ping carries it, and the client's pong echoes it).
    Ping { ack: Option<u64> },
    /// The answer to a client's ping, echoing what it carried.
    Pong(Bytes),
    /// A close frame, after which the writer stops.
    Close { code: u16, reason: &'static str },
}

impl Outbound {
    /// Message `seq` of a session's stream; `relayed_at` for a relayed `signal`.
    pub(crate) fn in_stream(text: Utf8Bytes, seq: u64, relayed_at: Option<Instant>) -> Outbound {
        Outbound::Text {
            text,
            seq: Some(seq),
            relayed_at,
        }
    }

    /// A message outside any session's stream.
    pub(crate) fn message(text: Utf8Bytes) -> Outbound {
        Outbound::Text {
            text,
            seq: None,
            relayed_at: None,
        }
    }
}

/// What [`Outlet::poll_socket`] found.
pub(crate) enum FromSocket {
    /// A message, or the end of the connection (`None`: the client hung up, or reading or
    /// writing failed).
    Read(Option<Incoming>),
    /// The backlog was written out: the client reads.
    Written,
    /// A backlog the caller did not know of: a relaying task began it.
    Backlog,
}

/// What [`Outlet::write_queued`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wrote {
    /// Everything queued: the queue is empty and the socket took all of it.
    All,
    /// As much as it could: a backlog is left, or more than a batch was queued.
    Some,
    /// The connection is over: a close frame was handed over, or the socket failed.
    Over,
}

/// Queued items written in one go by whoever holds the wire.
const WRITE_BATCH: usize = 64;

/// A connection's queue and wire.
#[derive(Debug)]
pub(crate) struct Outlet {
    /// The connection's number (also named in what is logged about its socket, which may be
    /// logged by another connection's task, in that one's span).
    id: u64,
    /// What is to be written, and the connection's cut-off switch.
    pub mailbox: Mailbox<Outbound>,
    wire: Mutex<Wire>,
}

/// The socket's stream (read by the connection's task, which holds the wire meanwhile) and
/// what is being written to it.
#[derive(Debug)]
pub(crate) struct Wire {
    io: TcpStream,
    sending: Sending,
    /// Since when a message is only partly written: nothing more is taken from the queue until
    /// it is (or the write timeout cuts the client off).
    pub backlog_since: Option<Instant>,
    /// A close frame was handed to the socket: nothing more is.
    pub closed: bool,
    /// Writing failed: the client is gone (its socket was reset or shut), and nothing more is
    /// written. What it sent before is still read: a `leave` sent just before a client closed
    /// its socket with unread messages in it (which makes its kernel reset the connection)
    /// must not be lost.
    pub broken: bool,
}

impl Outlet {
    /// The outlet of connection `id` over `io`, queueing up to `capacity` items.
    pub(crate) fn new(id: u64, io: TcpStream, capacity: usize) -> Outlet {
        Outlet {
            id,
            mailbox: Mailbox::new(capacity),
            wire: Mutex::new(Wire {
                io,
                sending: Sending::default(),
                backlog_since: None,
                closed: false,
                broken: false,
            }),
        }
    }

    /// The connection's number.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The wire, for the connection's own task (waiting, if another task is writing).
    pub(crate) fn wire(&self) -> MutexGuard<'_, Wire> {
        // Writing a frame either finishes or leaves it in `sending` to finish later: a
        // poisoned lock is still sound.
        self.wire.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item` to be written by the caller, who then calls [`Outlet::deliver`] (outside
    /// any lock of its own); false when the queue was full and the connection is cut off.
    pub(crate) fn queue(&self, item: Outbound) -> bool {
        self.mailbox.push_or_cut_quietly(item)
    }

    /// Writes what is queued when the wire is free and the socket takes all of it now;
    /// otherwise wakes the connection's task to write it (which it then does with its waker).
    pub(crate) fn deliver(&self, metrics: &Metrics) {
        let mut wire = match self.wire.try_lock() {
            Ok(wire) => wire,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            // Its holder (the connection's task, or another relaying one) may have looked at
            // the queue before this item was in it.
            Err(TryLockError::WouldBlock) => return self.mailbox.wake(),
        };
        let written = !self.mailbox.is_cut()
            && !wire.closed
            && self.write_queued(&mut wire, metrics) == Wrote::All;
        drop(wire);
        // What is left (more than a batch, a backlog, a close frame that ends the connection, a
        // cut) is the task's; an item queued while the wire was held here woke the task itself.
        if !written {
            self.mailbox.wake();
        }
    }

    /// Hands what is queued, up to a batch, to the socket as far as it takes it now. It stops
    /// at a backlog, and when the batch is used up.
    pub(crate) fn write_queued(&self, wire: &mut Wire, metrics: &Metrics) -> Wrote {
        for _ in 0..WRITE_BATCH {
            if wire.backlog_since.is_some() {
                return Wrote::Some;
            }
            let Some(item) = self.mailbox.pop() else {
                return Wrote::All;
            };
            if !self.put(wire, item, metrics) {
                return Wrote::Over;
            }
        }
        Wrote::Some
    }

    /// Writing failed: logged, and the connection is cut off; its socket is only read from now.
    fn failed(&self, wire: &mut Wire, e: &std::io::Error) {
        debug!(conn = self.id, error = %e, "socket write failed");
        wire.broken = true;
        wire.backlog_since = None;
        self.mailbox.cut();
    }

    /// Hands one item to the socket, which writes it at once as far as the client reads; the
    /// rest is its backlog. False when the connection is over: a close frame was handed over,
    /// or the socket failed.
    fn put(&self, wire: &mut Wire, item: Outbound, metrics: &Metrics) -> bool {
        let (message, relayed_at, last) = match item {
            Outbound::Text {
                text,
                seq,
                relayed_at,
            } => (Outgoing::Text { text, seq }, relayed_at, false),
            Outbound::Ping { ack } => {
                let payload = ack
                    .map(|seq| Bytes::copy_from_slice(&seq.to_be_bytes()))
                    .unwrap_or_default();
                (Outgoing::Ping(payload), None, false)
            }
            Outbound::Pong(echo) => (Outgoing::Pong(echo), None, false),
            Outbound::Close { code, reason } => (Outgoing::Close { code, reason }, None, true),
        };
        if let Err(e) = wire.sending.start(message) {
            self.failed(wire, &e);
            return false;
        }
        metrics.messages_out.increment(1);
        if let Some(t) = relayed_at {
            metrics.relay_latency.record(t.elapsed().as_secs_f64());
        }
        // Whether all of it went: without waiting, so nothing to wake. A backlog is then
        // polled for by the connection's task with its waker.
        let Wire { io, sending, .. } = wire;
        match sending.poll_flush(io, &mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => {
                self.failed(wire, &e);
                return false;
            }
            Poll::Pending => {
                wire.backlog_since.get_or_insert_with(Instant::now);
            }
        }
        if last {
            wire.closed = true;
            return false;
        }
        true
    }

    /// Polls for the backlog to be written: true once it is, false when writing failed (the
    /// connection is cut).
    pub(crate) fn poll_backlog(&self, wire: &mut Wire, cx: &mut Context<'_>) -> Poll<bool> {
        let Wire { io, sending, .. } = wire;
        sending.poll_flush(io, cx).map(|written| match written {
            Ok(()) => {
                wire.backlog_since = None;
                true
            }
            Err(e) => {
                self.failed(wire, &e);
                false
            }
        })
    }

    /// Polls for the backlog to be written, when there is one, then for the next message read
    /// into `receiving`. `knew` is the backlog the caller knows of: a relaying task may have
    /// begun another since, which the caller then hears of first (to time it). When writing
    /// the backlog fails, what the client sent before it went is still read.
    pub(crate) fn poll_socket(
        &self,
        receiving: &mut Receiving,
        knew: Option<Instant>,
        cx: &mut Context<'_>,
    ) -> Poll<FromSocket> {
        let mut wire = self.wire();
        if wire.backlog_since != knew {
            return Poll::Ready(FromSocket::Backlog);
        }
        if wire.backlog_since.is_some()
            && let Poll::Ready(true) = self.poll_backlog(&mut wire, cx)
        {
            return Poll::Ready(FromSocket::Written);
        }
        receiving.poll_next(&mut wire.io, cx).map(FromSocket::Read)
    }

    /// The end: the backlog and what is still queued are written (unless the client was cut
    /// off or a close frame went already), then the socket is closed.
    pub(crate) async fn finish(&self, metrics: &Metrics) {
        while !self.mailbox.is_cut() {
            if !poll_fn(|cx| self.poll_backlog(&mut self.wire(), cx)).await {
                break;
            }
            let mut wire = self.wire();
            if wire.closed {
                break;
            }
            if wire.backlog_since.is_some() {
                // A relaying task still under way began one meanwhile.
                continue;
            }
            let Some(item) = self.mailbox.pop() else {
                break;
            };
            if !self.put(&mut wire, item, metrics) && !wire.closed {
                break;
            }
        }
        {
            let mut wire = self.wire();
            if !wire.closed && !self.mailbox.is_cut() && !wire.sending.is_writing() {
                // A connection that ends without a close frame gets one (the socket may be gone
                // already: then writing it fails, which changes nothing).
                wire.closed = true;
                let _ = wire.sending.start(Outgoing::Close {
                    code: CLOSE_NORMAL,
                    reason: "",
                });
            }
        }
        let close = poll_fn(|cx| {
            let Wire { io, sending, .. } = &mut *self.wire();
            sending.poll_close(io, cx)
        });
        let _ = timeout(Duration::from_secs(1), close).await;
    }
}

//! One client's WebSocket: the `hello` handshake (a new session or a resumed one), then reading,
//! rate limiting and turning its messages into events of its room's log, heartbeats and idle
//! detection, and writing what is queued for it. One task does all of it (a second task for
//! writing cost each idle connection 0.8 KiB and every message a hand-over between the two),
//! except that a message relayed to it is written by the relaying task when the socket is free
//! (see [`crate::outlet`]).

use std::future::poll_fn;
use std::num::{NonZeroU32, NonZeroU64};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::Either;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hearth_proto::care::CheckReport;
use hearth_proto::{ClientMessage, ErrorCode, Resume, ServerMessage, parse_client, seq_of};
use tokio::time::{Duration, MissedTickBehavior, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::{Instrument, debug, debug_span, field, info};

use crate::frames::{CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_POLICY, Incoming, Receiving};
use crate::hub::{Hub, RoomName, unix_ms};
use crate::mailbox::{Mailbox, Next};
use crate::outlet::{FromSocket, Outbound, Outlet, Wrote};
use crate::replica::{Event, Part, encode};
use crate::token::Claims;

/// Bytes that count as one message for the rate limit.
const RATE_UNIT_BYTES: usize = 4 * 1024;

/// Serves one upgraded socket until it closes.
///
/// Not an `async fn`: the connection's parts are made here, so the future holds each once.
/// Every idle connection keeps its task's whole future, which is as large as the largest state
/// it can be in: the rare steps (the handshake, the end) are boxed for that reason.
pub(crate) fn run(
    io: tokio::net::TcpStream,
    receiving: Receiving,
    hub: Arc<Hub>,
) -> impl Future<Output = ()> + Send {
    let id = hub.next_conn_id();
    // At debug level: at the default level a span per connection would cost each idle
    // connection its formatted fields (about 0.4 KiB). What is logged at info names the
    // connection itself.
    let span = debug_span!("conn", conn = id, room = field::Empty);
    hub.metrics.connections.increment(1.0);
    let outlet = Arc::new(Outlet::new(id, io, hub.options.limits.outbound_queue));
    let conn = Conn { hub, outlet };
    let mut rx = receiving;
    // An async block, not an `async fn` taking them: that would keep a copy of each.
    async move { conn.run(&mut rx).await }.instrument(span)
}

struct Session {
    /// Its room's name as the hub keeps it, and its place there (see [`Hub::publish_in`]).
    room: RoomName,
    slot: usize,
}

/// What the connection's steps share (apart from what is read of the socket, which is not
/// `Sync`). Writing never waits in line with reading: a message is handed to the socket when it
/// takes it; when the client does not read and the socket's buffer is full, nothing more is
/// taken from the queue until the backlog is written (or the write timeout cuts the client
/// off), while reading goes on.
struct Conn {
    hub: Arc<Hub>,
    /// Its number, queue and socket, shared with the hub.
    outlet: Arc<Outlet>,
}

impl Drop for Conn {
    /// A task that ended took its connection out of the hub already; one that panicked or was
    /// dropped did not, and the hub's entry would keep the socket open (see [`Hub::forget`]).
    fn drop(&mut self) {
        self.hub.forget(self.outlet.id());
    }
}

/// A message read, or the end of the socket (`None`): a failed read is logged where it happens
/// and ends it too, so that what the task keeps between messages has no room for an error
/// (which would make every connection's task larger).
type Read = Option<Incoming>;

/// A message read, as the connection takes it.
enum Received {
    Text(Utf8Bytes),
    /// A pong, with what it echoes of the ping it answers.
    Pong(Bytes),
    Skip,
    /// A frame that gets this error.
    Refused(ErrorCode, String),
    End,
}

impl Conn {
    /// Not an `async fn`, for the reason given at [`Conn::serve`].
    #[allow(clippy::manual_async_fn, reason = "the task's size: see `Conn::serve`")]
    fn run<'a>(&'a self, rx: &'a mut Receiving) -> impl Future<Output = ()> + 'a {
        async move {
            // Borrowed, not moved out of the `Option`: the task would keep both.
            let session = Box::pin(self.handshake(rx)).await;
            if let Some(session) = &session {
                if self.serve(rx, session).await {
                    debug!("the client left");
                }
                Box::pin(self.hub.ended(self.outlet.id(), &session.room)).await;
            }
            // What is still queued (a close frame, say) is written, bounded by the write timeout.
            let grace = self.hub.options.limits.write_timeout + Duration::from_secs(1);
            let finish = self.outlet.finish(&self.hub.metrics);
            let _ = Box::pin(timeout(grace, finish)).await;
            self.hub.metrics.connections.decrement(1.0);
            debug!("connection closed");
        }
    }

    fn limits(&self) -> &crate::Limits {
        &self.hub.options.limits
    }

    fn mailbox(&self) -> &Mailbox<Outbound> {
        &self.outlet.mailbox
    }

    /// Writes what is queued, as far as the socket takes it now; false when the connection is
    /// over.
    fn write_queued(&self) -> bool {
        let outlet = &self.outlet;
        outlet.write_queued(&mut outlet.wire(), &self.hub.metrics) != Wrote::Over
    }

    fn send(&self, msg: &ServerMessage) {
        if let ServerMessage::Error { code, .. } = msg {
            self.hub.metrics.error(*code);
        }
        if let Some(text) = encode(msg) {
            self.mailbox().push_or_cut(Outbound::message(text));
        }
    }

    /// An error about a frame this connection sent that was not taken as a request (over the
    /// rate, too large, not a message): about the connection, not the session, so it is sent
    /// directly and unnumbered. Numbered in the session's stream, each would be written to the
    /// room's shared log first, and a client sending junk would cost a log write per frame.
    fn refuse(&self, code: ErrorCode, message: impl Into<String>) {
        self.send(&ServerMessage::Error {
            code,
            message: message.into(),
            peer: None,
        });
    }

    fn close(&self, code: u16, reason: &'static str) {
        self.mailbox().push_or_cut(Outbound::Close { code, reason });
    }

    fn shutting_down(&self) {
        let retry_after_ms = rand::random_range(250..2_500);
        self.send(&ServerMessage::Shutdown { retry_after_ms });
        self.close(CLOSE_GOING_AWAY, ErrorCode::ShuttingDown.as_str());
    }

    /// Charges a frame to the rate limit, then classifies it. Every data frame counts,
    /// oversized and binary ones too, and by size: each started 4 KiB is one message, so large
    /// signals cannot flood a slow receiver either.
    fn admit(&self, limiter: &DefaultDirectRateLimiter, frame: Read) -> Received {
        let max = self.hub.options.limits.max_frame_bytes;
        let data_len = match &frame {
            Some(Incoming::Text(t)) => Some(t.len()),
            Some(Incoming::Binary(len) | Incoming::TooLarge(len)) => Some(*len),
            _ => None,
        };
        if let Some(len) = data_len {
            // Oversized frames cost what the largest allowed frame costs, then get too_large.
            let cost = u32::try_from(1 + len.min(max) / RATE_UNIT_BYTES).unwrap_or(u32::MAX);
            let allowed =
                NonZeroU32::new(cost).is_some_and(|n| matches!(limiter.check_n(n), Ok(Ok(()))));
            if !allowed {
                self.hub.metrics.messages_in.increment(1);
                return Received::Refused(
                    ErrorCode::RateLimited,
                    ErrorCode::RateLimited.default_message().to_owned(),
                );
            }
        }
        self.classify(frame)
    }

    /// Reads one message, turning size and kind problems into errors for the client. A ping is
    /// answered and a close frame too (the connection then ends).
    fn classify(&self, frame: Read) -> Received {
        match frame {
            Some(Incoming::Text(text)) => {
                self.hub.metrics.messages_in.increment(1);
                Received::Text(text)
            }
            Some(Incoming::TooLarge(len)) => {
                self.hub.metrics.messages_in.increment(1);
                Received::Refused(
                    ErrorCode::TooLarge,
                    format!(
                        "The message has {len} bytes; the limit is {} bytes. It was not delivered.",
                        self.hub.options.limits.max_frame_bytes
                    ),
                )
            }
            Some(Incoming::Binary(_)) => {
                self.hub.metrics.messages_in.increment(1);
                Received::Refused(
                    ErrorCode::BadMessage,
                    "Messages must be JSON text frames, not binary.".to_owned(),
                )
            }
            Some(Incoming::Pong(echo)) => Received::Pong(echo),
            Some(Incoming::Ping(echo)) => {
                self.mailbox()
                    .replace_or_push(Outbound::Pong(echo), |o| matches!(o, Outbound::Pong(_)));
                Received::Skip
            }
            Some(Incoming::Close { code, reason }) => {
                self.close(code, reason);
                Received::End
            }
            None => Received::End,
        }
    }

    /// Waits for a valid `hello` within the hello timeout and joins the room.
    async fn handshake(&self, rx: &mut Receiving) -> Option<Session> {
        let deadline = tokio::time::Instant::now() + self.hub.options.limits.hello_timeout;
        loop {
            let backlog_since = self.outlet.wire().backlog_since;
            let take = backlog_since.is_none();
            let frame = tokio::select! {
                () = sleep_until(deadline) => {
                    self.refuse(ErrorCode::HelloTimeout, ErrorCode::HelloTimeout.default_message());
                    self.close(CLOSE_POLICY, ErrorCode::HelloTimeout.as_str());
                    return None;
                }
                () = self.hub.shutdown.cancelled() => {
                    self.shutting_down();
                    return None;
                }
                next = poll_fn(|cx| self.mailbox().poll_ready(take, cx)) => {
                    let Next::Item(()) = next else { return None };
                    if self.write_queued() {
                        continue;
                    }
                    return None;
                }
                read = poll_fn(|cx| {
                    self.outlet.poll_socket(rx, backlog_since, cx)
                }) => match read {
                    FromSocket::Read(frame) => frame,
                    FromSocket::Written | FromSocket::Backlog => continue,
                },
            };
            let text = match self.classify(frame) {
                Received::Text(text) => text,
                Received::Skip | Received::Pong(_) => continue,
                Received::Refused(code, message) => {
                    self.refuse(code, message);
                    continue;
                }
                Received::End => return None,
            };
            match parse_client(&text) {
                Ok(ClientMessage::Hello {
                    token,
                    room,
                    resume,
                }) => return self.hello(&token, room, resume).await,
                Ok(_) => self.refuse(ErrorCode::BadMessage, "Send hello with a token first."),
                Err(e) => self.refuse(ErrorCode::BadMessage, e.sentence()),
            }
        }
    }

    async fn hello(
        &self,
        token: &str,
        room: Option<String>,
        resume: Option<Resume>,
    ) -> Option<Session> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let fail = |code: ErrorCode, message: &str| {
            info!(conn = self.outlet.id(), code = %code, "hello refused");
            self.refuse(code, message);
            self.close(CLOSE_POLICY, code.as_str());
            None
        };
        let claims: Claims = match self.hub.keys.verify(token, now) {
            Ok(c) => c,
            Err(e) => return fail(e.code(), e.code().default_message()),
        };
        if room.is_some_and(|r| r != claims.room) {
            return fail(ErrorCode::Forbidden, "This invitation is for another room.");
        }
        let resuming = resume.is_some();
        match self.hub.join(&claims, self.outlet.clone(), resume).await {
            Ok((room, slot)) => {
                tracing::Span::current().record("room", field::display(&room));
                debug!(role = %claims.role, resuming, "hello accepted");
                Some(Session { room, slot })
            }
            Err(code) => fail(code, code.default_message()),
        }
    }

    /// Serves a joined connection. Returns true when the client left on purpose.
    ///
    /// Not an `async fn`: rustc keeps an `async fn`'s arguments apart from its locals (copies
    /// of them, and room for both in every state), where an `async` block keeps what it
    /// borrows once. For the same reason the limits are read where they are used rather than
    /// kept in locals: every idle connection's task holds this future.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async block keeps its borrows once, an async fn twice"
    )]
    fn serve<'a>(
        &'a self,
        rx: &'a mut Receiving,
        session: &'a Session,
    ) -> impl Future<Output = bool> + 'a {
        async move {
            let limits = &self.hub.options.limits;
            let limiter: DefaultDirectRateLimiter = RateLimiter::direct_with_clock(
                Quota::per_second(
                    NonZeroU32::new(limits.rate_per_second).unwrap_or(NonZeroU32::MIN),
                )
                .allow_burst(NonZeroU32::new(limits.rate_burst).unwrap_or(NonZeroU32::MIN)),
                self.hub.clock.clone(),
            );
            // The first tick falls anywhere in the first interval: clients that connected together
            // (a storm after a node went away, say) are not all pinged in the same moment ever
            // after.
            let first = limits.ping_interval.mul_f64(rand::random_range(0.05..1.0));
            let mut ping =
                tokio::time::interval_at(tokio::time::Instant::now() + first, limits.ping_interval);
            ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut last_seen = Instant::now();
            // A client heard from since the last tick is alive: it is not pinged (unless for the
            // messages kept for it, below).
            let mut heard = false;
            // The backlog the ping timer was last brought forward for.
            let mut timed_backlog = None;
            // The `seq` the last ping asked the client to confirm, until its pong does.
            let mut asked: Option<NonZeroU64> = None;
            // The socket failed on writing: only what the client sent before is still read.
            let mut gone = false;
            // Idleness is checked on the ping tick rather than with a timer reset per message. When
            // draining is over, the hub queues each connection's close (see
            // [`Hub::stop_connections`]) and marks itself stopped for the ones still joining.
            if self.hub.is_stopped() {
                self.close(CLOSE_GOING_AWAY, ErrorCode::ShuttingDown.as_str());
                return false;
            }
            loop {
                // Read in a block of its own: what is read here is not kept across the wait.
                {
                    let (closed, backlog_since) = {
                        let wire = self.outlet.wire();
                        (wire.closed, wire.backlog_since)
                    };
                    if closed {
                        return false;
                    }
                    // A new backlog (begun anywhere, the handshake included) brings the ping timer
                    // forward to its write deadline, where the tick checks it: no timer of its own
                    // is kept for each connection.
                    if backlog_since != timed_backlog {
                        if let Some(since) = backlog_since {
                            let deadline = since + self.limits().write_timeout;
                            ping.reset_at(tokio::time::Instant::from_std(deadline));
                        }
                        timed_backlog = backlog_since;
                    }
                }
                // While a message is only partly written, nothing more is taken from the mailbox.
                let take = timed_backlog.is_none();
                // In this order: the mailbox (a cut first), the timer, which the write timeout
                // relies on even when the client floods, then the socket.
                let frame = tokio::select! {
                    biased;
                    next = poll_fn(|cx| self.mailbox().poll_ready(take, cx)), if !gone => {
                        // Writing failed (here or in a relaying task): the client is gone, but
                        // what it sent before (a `leave`, say) is read to the end first.
                        if !matches!(next, Next::Item(())) || !self.write_queued() {
                            if self.outlet.wire().broken {
                                gone = true;
                                // What it sent is in the socket already: a bound, in case the
                                // socket still reads on.
                                ping.reset_after(self.limits().write_timeout);
                                continue;
                            }
                            return false;
                        }
                        // A mailbox always refilled must not keep the timer and the socket waiting:
                        // this yields once the task has used its turn.
                        tokio::task::consume_budget().await;
                        continue;
                    }
                    _ = ping.tick() => {
                        if gone {
                            return false;
                        }
                        // Read again: a relaying task may have begun one since.
                        let backlog_since = self.outlet.wire().backlog_since;
                        if let Some(since) = backlog_since {
                            if since.elapsed() >= self.limits().write_timeout {
                                info!(
                                    conn = self.outlet.id(),
                                    "a write took longer than the write timeout; disconnecting"
                                );
                                self.mailbox().cut();
                                return false;
                            }
                            continue;
                        }
                        if last_seen.elapsed() >= self.limits().idle_timeout {
                            info!(
                                conn = self.outlet.id(),
                                "no traffic within the idle timeout; closing"
                            );
                            self.close(CLOSE_GOING_AWAY, "idle");
                            return false;
                        }
                        // Messages kept for this session's replay: the ping carries the last one's
                        // `seq`, and the client's pong (a WebSocket echoes what a ping carries)
                        // confirms it read that far, so they need not be kept any longer. A silent
                        // client is pinged anyway; one that talks only once a quarter of what may
                        // be kept for it is.
                        let talked = std::mem::take(&mut heard);
                        let ack = self
                            .hub
                            .unacked(&session.room, self.outlet.id())
                            .filter(|&(_, kept)| {
                                !talked || kept >= (self.limits().replay_buffer / 4).max(1)
                            })
                            .map(|(seq, _)| seq);
                        if talked && ack.is_none() {
                            continue;
                        }
                        asked = ack.and_then(NonZeroU64::new);
                        // Through the mailbox: behind every message queued before the number
                        // was read.
                        self.mailbox().push_beyond(Outbound::Ping { ack });
                        continue;
                    }
                    read = poll_fn(|cx| {
                        self.outlet.poll_socket(rx, timed_backlog, cx)
                    }) => match read {
                        FromSocket::Read(frame) => frame,
                        // The client read what was waiting for it: it is alive.
                        FromSocket::Written => {
                            last_seen = Instant::now();
                            heard = true;
                            continue;
                        }
                        // A relaying task began a backlog: the loop times it.
                        FromSocket::Backlog => continue,
                    },
                };
                let read_at = Instant::now();
                last_seen = read_at;
                heard = true;
                // One await for every kind of message, after the match: what the match reads (the
                // frame, its text) is gone by then and not kept in the task between messages. A
                // `signal`, the hot path, is made into its event in place; the rest is boxed (it is
                // rare, and its paths hold much more).
                let step = match self.admit(&limiter, frame) {
                    // The signal's data stays in the message's bytes, as a part of them.
                    Received::Text(text) => match Part::find(text, |t| {
                        fast_signal(t).map(|s| (s.data.get(), (s.to, s.seq)))
                    }) {
                        Ok((data, (to, seq))) => {
                            let event = self.signal(to, data, seq, read_at);
                            Either::Left(self.submit(session, event).map(|()| false))
                        }
                        Err(text) => {
                            Either::Right(rare(self.dispatch_text(session, text, read_at)))
                        }
                    },
                    Received::Pong(echo) => {
                        let Some(seq) = asked.filter(|s| echo.as_ref() == s.get().to_be_bytes())
                        else {
                            continue;
                        };
                        asked = None;
                        let event = Event::Ack {
                            conn: self.hub.conn_ref(self.outlet.id()),
                            seq: seq.get(),
                        };
                        // Not confirmed in the log: the messages stay kept, nothing else.
                        let acked = self.hub.publish(&session.room, event);
                        Either::Right(rare(acked.map(|_| false)))
                    }
                    Received::Skip => continue,
                    Received::Refused(code, message) => {
                        self.refuse(code, message);
                        continue;
                    }
                    Received::End => return false,
                };
                if self.writing_while(std::pin::pin!(step)).await {
                    return true;
                }
            }
        }
    }

    /// Handles a message other than a `signal` the fast path read; true when the client left.
    async fn dispatch_text(&self, session: &Session, text: Utf8Bytes, read_at: Instant) -> bool {
        match parse_client(&text) {
            Ok(msg) => self.dispatch(session, msg, seq_of(&text), read_at).await,
            Err(e) => {
                self.refuse(ErrorCode::BadMessage, e.sentence());
                false
            }
        }
    }

    /// Awaits `step`, which publishes to the room's log, while still writing what the mailbox
    /// gets: on NATS a publish waits for the log's acknowledgement (seconds, when it is slow),
    /// and what others send this client must not wait with it. The socket is not read
    /// meanwhile. Once the connection is over (cut, closed, or its socket failed) only `step`
    /// is awaited, and the serve loop then ends.
    ///
    /// A plain poll function over the pinned step rather than an `async fn` with `select!`:
    /// every idle connection's task is as large as its largest state, and that one held the
    /// step twice (rustc keeps an `async fn`'s arguments apart from its locals) besides the
    /// macro's own state.
    fn writing_while<'a, F: Future + ?Sized>(
        &'a self,
        mut step: Pin<&'a mut F>,
    ) -> impl Future<Output = F::Output> + 'a {
        poll_fn(move |cx| {
            loop {
                if let Poll::Ready(out) = step.as_mut().poll(cx) {
                    return Poll::Ready(out);
                }
                let outlet = &self.outlet;
                let mut wire = outlet.wire();
                if wire.closed || outlet.mailbox.is_cut() {
                    return Poll::Pending;
                }
                let take = wire.backlog_since.is_none();
                match outlet.mailbox.poll_ready(take, cx) {
                    Poll::Ready(Next::Item(())) => {
                        outlet.write_queued(&mut wire, &self.hub.metrics);
                        continue;
                    }
                    Poll::Ready(Next::Cut) => continue,
                    Poll::Pending => {}
                }
                if !take && outlet.poll_backlog(&mut wire, cx).is_ready() {
                    continue;
                }
                return Poll::Pending;
            }
        })
    }

    /// Turns one message into its event; true when the client left.
    async fn dispatch(
        &self,
        session: &Session,
        msg: ClientMessage,
        cseq: Option<u64>,
        read_at: Instant,
    ) -> bool {
        let conn = self.hub.conn_ref(self.outlet.id());
        let event = match msg {
            ClientMessage::Signal { to, data } => match serde_json::to_string(&data) {
                Ok(data) => self.signal(to, Part::from(data), cseq, read_at),
                Err(_) => {
                    self.refuse(ErrorCode::Internal, ErrorCode::Internal.default_message());
                    return false;
                }
            },
            ClientMessage::Admit { peer } => Event::Decide {
                conn,
                peer,
                deny: None,
                at: unix_ms(),
                cseq,
            },
            ClientMessage::Deny { peer, reason } => Event::Decide {
                conn,
                peer,
                deny: Some(reason),
                at: unix_ms(),
                cseq,
            },
            ClientMessage::Check { result, request } => Event::Check {
                conn,
                report: CheckReport {
                    result,
                    at: unix_ms(),
                },
                request,
                cseq,
            },
            ClientMessage::Leave => {
                let left = Event::Leave {
                    conn,
                    at: unix_ms(),
                    cseq,
                };
                if self.hub.publish(&session.room, left).await.is_err() {
                    // Not in the log: the session is held instead, as if the connection dropped.
                    return false;
                }
                self.close(CLOSE_NORMAL, "left");
                return true;
            }
            ClientMessage::Hello { .. } => {
                self.refuse(
                    ErrorCode::BadMessage,
                    "Already joined; hello is sent only once.",
                );
                return false;
            }
            _ => {
                self.refuse(
                    ErrorCode::BadMessage,
                    "This server does not handle that message type.",
                );
                return false;
            }
        };
        self.submit(session, event).await;
        false
    }

    /// The event for a `signal` this connection sent, its `data` as JSON text.
    fn signal(
        &self,
        to: hearth_proto::PeerId,
        data: Part,
        cseq: Option<u64>,
        read_at: Instant,
    ) -> Event {
        Event::Signal {
            conn: self.hub.conn_ref(self.outlet.id()),
            to,
            data,
            cseq,
            read_at: Some(read_at),
        }
    }

    /// Puts the event in the room's log; the connection is refused when the log is out of reach.
    /// Not an `async fn`, so what awaits it does not hold the event (see [`Hub::publish`]).
    fn submit<'a>(&'a self, session: &'a Session, event: Event) -> impl Future<Output = ()> + 'a {
        let published = self
            .hub
            .publish_in(&session.room, Some(session.slot), event);
        published.map(|published| {
            if published.is_err() {
                self.refuse(
                    ErrorCode::Unavailable,
                    ErrorCode::Unavailable.default_message(),
                );
            }
        })
    }
}

/// A rare step of [`Conn::serve`], boxed: true when the client left.
fn rare<'a>(
    step: impl Future<Output = bool> + Send + 'a,
) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
    Box::pin(step)
}

/// A `signal` as the relay needs it: its `data` stays the client's own JSON text.
#[derive(serde::Deserialize)]
struct FastSignal<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    to: hearth_proto::PeerId,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
    #[serde(default)]
    seq: Option<u64>,
}

/// The relay's hot path: a `signal` is read in one pass, its `data` checked as JSON but not
/// built into a tree and written out again. Anything else, or a `signal` this cannot read, goes
/// through the full parser (which gives the client its error).
fn fast_signal(text: &str) -> Option<FastSignal<'_>> {
    serde_json::from_str::<FastSignal<'_>>(text)
        .ok()
        .filter(|s| s.kind == "signal")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_is_read_in_one_pass_and_everything_else_is_left_to_the_full_parser() {
        let s = fast_signal(
            r#"{"seq":7,"type":"signal","to":"p1","data":{"sdp":"v=0\r\n","n":[1, 2]}}"#,
        )
        .unwrap();
        assert_eq!(
            (s.to.as_str(), s.data.get(), s.seq),
            ("p1", r#"{"sdp":"v=0\r\n","n":[1, 2]}"#, Some(7))
        );
        assert!(fast_signal(r#"{"type":"admit","peer":"p1"}"#).is_none());
        // Missing data, a seq that is not a number, broken JSON inside data: the full parser
        // decides (and tells the client what is wrong).
        assert!(fast_signal(r#"{"type":"signal","to":"p1"}"#).is_none());
        assert!(fast_signal(r#"{"type":"signal","to":"p1","data":1,"seq":"x"}"#).is_none());
        assert!(fast_signal(r#"{"type":"signal","to":"p1","data":{"a":}}"#).is_none());
    }
}

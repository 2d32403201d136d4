//! One client's WebSocket: the `hello` handshake (a new session or a resumed one), then reading,
//! rate limiting and turning its messages into events of its room's log, heartbeats and idle
//! detection; a writer task drains its bounded outbound queue.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hearth_proto::care::CheckReport;
use hearth_proto::{ClientMessage, ErrorCode, Resume, ServerMessage, parse_client, seq_of};
use tokio::time::{Duration, MissedTickBehavior, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, field, info, info_span};

use crate::hub::{CLOSE_GOING_AWAY, CLOSE_POLICY, ConnHandle, Hub, Outbound, unix_ms};
use crate::replica::{Event, Text, encode};
use crate::token::Claims;

/// Bytes that count as one message for the rate limit.
const RATE_UNIT_BYTES: usize = 4 * 1024;

/// Serves one upgraded socket until it closes.
pub(crate) async fn run(socket: WebSocket, hub: Arc<Hub>) {
    let id = hub.next_conn_id();
    let span = info_span!("conn", conn = id, peer = field::Empty, room = field::Empty);
    async move {
        hub.metrics.connections.increment(1.0);
        let (sink, stream) = socket.split();
        // flume's queue is allocated when something waits in it, tokio's first block of slots at
        // once: an idle connection holds none.
        let (tx, rx) = flume::bounded(hub.options.limits.outbound_queue);
        let done = CancellationToken::new();
        let writer =
            tokio::spawn(write_loop(sink, rx, done.clone(), hub.clone()).in_current_span());
        let mut conn = Conn {
            hub: hub.clone(),
            handle: ConnHandle {
                id,
                tx,
                done: done.clone(),
            },
            stream,
        };
        if let Some(session) = conn.handshake().await {
            let on_purpose = conn.serve(&session).await;
            hub.ended(id, &session.room, on_purpose).await;
        }
        drop(conn);
        // The writer drains what is queued (a close frame, say), bounded by the write timeout.
        let grace = hub.options.limits.write_timeout + Duration::from_secs(1);
        if timeout(grace, writer).await.is_err() {
            done.cancel();
        }
        hub.metrics.connections.decrement(1.0);
        debug!("connection closed");
    }
    .instrument(span)
    .await;
}

struct Session {
    room: String,
}

struct Conn {
    hub: Arc<Hub>,
    handle: ConnHandle,
    stream: SplitStream<WebSocket>,
}

enum Frame {
    Text(Utf8Bytes),
    Skip,
    /// A frame that gets this error.
    Refused(ErrorCode, String),
    End,
}

impl Conn {
    fn send(&self, msg: &ServerMessage) {
        if let ServerMessage::Error { code, .. } = msg {
            self.hub.metrics.error(*code);
        }
        if let Some(text) = encode(msg)
            && self.handle.tx.try_send(Outbound::message(text)).is_err()
        {
            // Full: the client does not read what it is sent.
            self.handle.done.cancel();
        }
    }

    fn refuse(&self, code: ErrorCode, message: impl Into<String>) {
        self.send(&ServerMessage::Error {
            code,
            message: message.into(),
        });
    }

    fn close(&self, code: u16, reason: &'static str) {
        if self
            .handle
            .tx
            .try_send(Outbound::Close { code, reason })
            .is_err()
        {
            self.handle.done.cancel();
        }
    }

    fn shutting_down(&self) {
        let retry_after_ms = rand::random_range(250..2_500);
        self.send(&ServerMessage::Shutdown { retry_after_ms });
        self.close(CLOSE_GOING_AWAY, ErrorCode::ShuttingDown.as_str());
    }

    /// Reads one frame, turning size and kind problems into errors for the client.
    fn classify(&self, frame: Option<Result<Message, axum::Error>>) -> Frame {
        match frame {
            Some(Ok(Message::Text(text))) => {
                self.hub.metrics.messages_in.increment(1);
                if text.len() > self.hub.options.limits.max_frame_bytes {
                    Frame::Refused(
                        ErrorCode::TooLarge,
                        format!(
                            "The message has {} bytes; the limit is {} bytes. It was not delivered.",
                            text.len(),
                            self.hub.options.limits.max_frame_bytes
                        ),
                    )
                } else {
                    Frame::Text(text)
                }
            }
            Some(Ok(Message::Binary(_))) => {
                self.hub.metrics.messages_in.increment(1);
                Frame::Refused(
                    ErrorCode::BadMessage,
                    "Messages must be JSON text frames, not binary.".to_owned(),
                )
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Frame::Skip,
            Some(Ok(Message::Close(_))) | None => Frame::End,
            Some(Err(e)) => {
                // Protocol errors, frames beyond the hard cap, resets: nothing to answer on.
                debug!(error = %e, "socket read failed");
                Frame::End
            }
        }
    }

    /// Waits for a valid `hello` within the hello timeout and joins the room.
    async fn handshake(&mut self) -> Option<Session> {
        let deadline = tokio::time::Instant::now() + self.hub.options.limits.hello_timeout;
        loop {
            let frame = tokio::select! {
                () = sleep_until(deadline) => {
                    self.refuse(ErrorCode::HelloTimeout, ErrorCode::HelloTimeout.default_message());
                    self.close(CLOSE_POLICY, ErrorCode::HelloTimeout.as_str());
                    return None;
                }
                () = self.handle.done.cancelled() => return None,
                () = self.hub.shutdown.cancelled() => {
                    self.shutting_down();
                    return None;
                }
                frame = self.stream.next() => frame,
            };
            let text = match self.classify(frame) {
                Frame::Text(text) => text,
                Frame::Skip => continue,
                Frame::Refused(code, message) => {
                    self.refuse(code, message);
                    continue;
                }
                Frame::End => return None,
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
            info!(code = %code, "hello refused");
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
        match self.hub.join(&claims, self.handle.clone(), resume).await {
            Ok(()) => {
                tracing::Span::current().record("room", field::display(&claims.room));
                debug!(role = %claims.role, resuming, "hello accepted");
                Some(Session { room: claims.room })
            }
            Err(code) => fail(code, code.default_message()),
        }
    }

    /// An error for this connection's session, numbered in its stream like everything else it
    /// is sent; directly, unnumbered, when the room's log cannot be reached.
    async fn tell(&self, session: &Session, code: ErrorCode, message: impl Into<String>) {
        let msg = ServerMessage::Error {
            code,
            message: message.into(),
        };
        self.hub.metrics.error(code);
        let event = Event::Tell {
            conn: self.hub.conn_ref(self.handle.id),
            msg: msg.clone(),
        };
        if self.hub.publish(&session.room, event).await.is_err() {
            self.send(&msg);
        }
    }

    /// Serves a joined connection. Returns true when the client left on purpose.
    async fn serve(&mut self, session: &Session) -> bool {
        let limits = &self.hub.options.limits;
        let limiter: DefaultDirectRateLimiter = RateLimiter::direct_with_clock(
            Quota::per_second(NonZeroU32::new(limits.rate_per_second).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(limits.rate_burst).unwrap_or(NonZeroU32::MIN)),
            self.hub.clock.clone(),
        );
        // The first tick falls anywhere in the first interval: clients that connected together
        // (a storm after a node went away, say) are not all pinged in the same moment ever after.
        let first = limits.ping_interval.mul_f64(rand::random_range(0.05..1.0));
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + first, limits.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let idle_timeout = limits.idle_timeout;
        let mut last_seen = Instant::now();
        // A client heard from since the last tick is alive: it is not pinged.
        let mut heard = false;
        // Made once, not per message: each `cancelled()` registers a waiter when first polled,
        // and idleness is checked on the ping tick rather than with a timer reset per message.
        let (done_token, stopping_token) = (self.handle.done.clone(), self.hub.stopping.clone());
        let done = done_token.cancelled();
        let stopping = stopping_token.cancelled();
        tokio::pin!(done, stopping);
        loop {
            let frame = tokio::select! {
                () = &mut done => return false,
                // Draining is over and this client has not moved on: its session stays
                // resumable on another node.
                () = &mut stopping => {
                    self.close(CLOSE_GOING_AWAY, ErrorCode::ShuttingDown.as_str());
                    return false;
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() >= idle_timeout {
                        info!("no traffic within the idle timeout; closing");
                        self.close(CLOSE_GOING_AWAY, "idle");
                        return false;
                    }
                    if std::mem::take(&mut heard) {
                        continue;
                    }
                    if self.handle.tx.try_send(Outbound::Ping).is_err() {
                        self.handle.done.cancel();
                    }
                    continue;
                }
                frame = self.stream.next() => frame,
            };
            let read_at = Instant::now();
            last_seen = read_at;
            heard = true;
            // Every data frame counts, oversized and binary ones too, and by size: each started
            // 4 KiB is one message, so large signals cannot flood a slow receiver either.
            let data_len = match &frame {
                Some(Ok(Message::Text(t))) => Some(t.len()),
                Some(Ok(Message::Binary(b))) => Some(b.len()),
                _ => None,
            };
            if let Some(len) = data_len {
                // Oversized frames cost what the largest allowed frame costs, then get too_large.
                let len = len.min(limits.max_frame_bytes);
                let cost = u32::try_from(1 + len / RATE_UNIT_BYTES).unwrap_or(u32::MAX);
                let allowed =
                    NonZeroU32::new(cost).is_some_and(|n| matches!(limiter.check_n(n), Ok(Ok(()))));
                if !allowed {
                    self.hub.metrics.messages_in.increment(1);
                    self.tell(
                        session,
                        ErrorCode::RateLimited,
                        ErrorCode::RateLimited.default_message(),
                    )
                    .await;
                    continue;
                }
            }
            let text = match self.classify(frame) {
                Frame::Text(text) => text,
                Frame::Skip => continue,
                Frame::Refused(code, message) => {
                    self.tell(session, code, message).await;
                    continue;
                }
                Frame::End => return false,
            };
            if let Some(signal) = fast_signal(&text) {
                let event =
                    self.signal(signal.to, signal.data.get().to_owned(), signal.seq, read_at);
                self.submit(session, event).await;
                continue;
            }
            let msg = match parse_client(&text) {
                Ok(msg) => msg,
                Err(e) => {
                    self.tell(session, ErrorCode::BadMessage, e.sentence())
                        .await;
                    continue;
                }
            };
            if self.dispatch(session, msg, seq_of(&text), read_at).await {
                return true;
            }
        }
    }

    /// Turns one message into its event; true when the client left.
    async fn dispatch(
        &self,
        session: &Session,
        msg: ClientMessage,
        cseq: Option<u64>,
        read_at: Instant,
    ) -> bool {
        let conn = self.hub.conn_ref(self.handle.id);
        let event = match msg {
            ClientMessage::Signal { to, data } => match serde_json::to_string(&data) {
                Ok(data) => self.signal(to, data, cseq, read_at),
                Err(_) => {
                    self.tell(
                        session,
                        ErrorCode::Internal,
                        ErrorCode::Internal.default_message(),
                    )
                    .await;
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
                self.close(1000, "left");
                return true;
            }
            ClientMessage::Hello { .. } => {
                self.tell(
                    session,
                    ErrorCode::BadMessage,
                    "Already joined; hello is sent only once.",
                )
                .await;
                return false;
            }
            _ => {
                self.tell(
                    session,
                    ErrorCode::BadMessage,
                    "This server does not handle that message type.",
                )
                .await;
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
        data: String,
        cseq: Option<u64>,
        read_at: Instant,
    ) -> Event {
        Event::Signal {
            conn: self.hub.conn_ref(self.handle.id),
            to,
            data: Text(Utf8Bytes::from(data)),
            cseq,
            read_at: Some(read_at),
        }
    }

    /// Puts the event in the room's log; the connection is refused when the log is out of reach.
    async fn submit(&self, session: &Session, event: Event) {
        if self.hub.publish(&session.room, event).await.is_err() {
            self.refuse(
                ErrorCode::Unavailable,
                ErrorCode::Unavailable.default_message(),
            );
        }
    }
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

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    rx: flume::Receiver<Outbound>,
    done: CancellationToken,
    hub: Arc<Hub>,
) {
    let write_timeout = hub.options.limits.write_timeout;
    let cancelled = done.cancelled();
    tokio::pin!(cancelled);
    loop {
        let item = tokio::select! {
            biased;
            () = &mut cancelled => break,
            item = rx.recv_async() => item.ok(),
        };
        let Some(item) = item else { break };
        let (message, relayed_at, last) = match item {
            Outbound::Text { text, relayed_at } => (Message::Text(text), relayed_at, false),
            Outbound::Ping => (Message::Ping(Default::default()), None, false),
            Outbound::Close { code, reason } => (
                Message::Close(Some(CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                })),
                None,
                true,
            ),
        };
        match timeout(write_timeout, sink.send(message)).await {
            Ok(Ok(())) => {
                hub.metrics.messages_out.increment(1);
                if let Some(t) = relayed_at {
                    hub.metrics.relay_latency.record(t.elapsed().as_secs_f64());
                }
            }
            Ok(Err(e)) => {
                debug!(error = %e, "socket write failed");
                break;
            }
            Err(_) => {
                info!("a write took longer than the write timeout; disconnecting");
                break;
            }
        }
        if last {
            break;
        }
    }
    done.cancel();
    let _ = timeout(Duration::from_secs(1), sink.close()).await;
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

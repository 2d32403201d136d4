//! One client's WebSocket: the `hello` handshake, then reading, rate limiting and dispatching its
//! messages, heartbeats and idle detection; a writer task drains its bounded outbound queue.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hearth_proto::{ClientMessage, ErrorCode, PeerId, ServerMessage, parse_client};
use tokio::sync::mpsc;
use tokio::time::{Duration, MissedTickBehavior, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, field, info, info_span};

use crate::hub::{CLOSE_GOING_AWAY, CLOSE_POLICY, ConnHandle, Hub, Outbound, encode};
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
        let (tx, rx) = mpsc::channel(hub.options.limits.outbound_queue);
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
            hub.depart(&session.peer, id, on_purpose);
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
    peer: PeerId,
}

struct Conn {
    hub: Arc<Hub>,
    handle: ConnHandle,
    stream: SplitStream<WebSocket>,
}

enum Frame {
    Text(Utf8Bytes),
    Skip,
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
                    self.refuse(ErrorCode::TooLarge, format!(
                        "The message has {} bytes; the limit is {} bytes. It was not delivered.",
                        text.len(),
                        self.hub.options.limits.max_frame_bytes
                    ));
                    Frame::Skip
                } else {
                    Frame::Text(text)
                }
            }
            Some(Ok(Message::Binary(_))) => {
                self.hub.metrics.messages_in.increment(1);
                self.refuse(
                    ErrorCode::BadMessage,
                    "Messages must be JSON text frames, not binary.",
                );
                Frame::Skip
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
                Frame::End => return None,
            };
            match parse_client(&text) {
                Ok(ClientMessage::Hello { token, room }) => return self.hello(&token, room),
                Ok(_) => self.refuse(ErrorCode::BadMessage, "Send hello with a token first."),
                Err(e) => self.refuse(ErrorCode::BadMessage, e.sentence()),
            }
        }
    }

    fn hello(&self, token: &str, room: Option<String>) -> Option<Session> {
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
        match self.hub.join(&claims, self.handle.clone()) {
            Ok((peer, waiting)) => {
                let span = tracing::Span::current();
                span.record("peer", field::display(&peer));
                span.record("room", field::display(&claims.room));
                info!(role = %claims.role, waiting, "joined");
                Some(Session { peer })
            }
            Err(code) => fail(code, code.default_message()),
        }
    }

    /// Serves a joined connection. Returns true when the client left on purpose.
    async fn serve(&mut self, session: &Session) -> bool {
        let limits = &self.hub.options.limits;
        let limiter: DefaultDirectRateLimiter = RateLimiter::direct(
            Quota::per_second(NonZeroU32::new(limits.rate_per_second).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(limits.rate_burst).unwrap_or(NonZeroU32::MIN)),
        );
        let mut ping = tokio::time::interval(limits.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ping.reset();
        let idle_timeout = limits.idle_timeout;
        let mut last_seen = Instant::now();
        // Made once, not per message: each `cancelled()` registers a waiter when first polled,
        // and idleness is checked on the ping tick rather than with a timer reset per message.
        let (done_token, shutdown_token) = (self.handle.done.clone(), self.hub.shutdown.clone());
        let done = done_token.cancelled();
        let shutdown = shutdown_token.cancelled();
        tokio::pin!(done, shutdown);
        loop {
            let frame = tokio::select! {
                () = &mut done => return false,
                () = &mut shutdown => {
                    self.shutting_down();
                    return false;
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() >= idle_timeout {
                        info!("no traffic within the idle timeout; closing");
                        self.close(CLOSE_GOING_AWAY, "idle");
                        return false;
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
                    self.refuse(
                        ErrorCode::RateLimited,
                        ErrorCode::RateLimited.default_message(),
                    );
                    continue;
                }
            }
            let text = match self.classify(frame) {
                Frame::Text(text) => text,
                Frame::Skip => continue,
                Frame::End => return false,
            };
            let msg = match parse_client(&text) {
                Ok(msg) => msg,
                Err(e) => {
                    self.refuse(ErrorCode::BadMessage, e.sentence());
                    continue;
                }
            };
            if self.dispatch(session, msg, read_at) {
                return true;
            }
        }
    }

    /// Handles one message; true when the client left.
    fn dispatch(&self, session: &Session, msg: ClientMessage, read_at: Instant) -> bool {
        let peer = &session.peer;
        let id = self.handle.id;
        // Each arm names the sentence for a refusal that is specific to it.
        let (result, forbidden) = match msg {
            ClientMessage::Signal { to, data } => {
                let relayed = ServerMessage::Signal {
                    from: peer.clone(),
                    data,
                };
                let result = match encode(&relayed) {
                    Some(text) => self.hub.signal(peer, id, &to, text, read_at),
                    None => Err(ErrorCode::Internal),
                };
                (
                    result,
                    "You are in the waiting room; the clinician will let you in.",
                )
            }
            ClientMessage::Admit { peer: who } => (
                self.hub.decide(peer, id, &who, None),
                "Only a clinician in the call can let people in.",
            ),
            ClientMessage::Deny { peer: who, reason } => (
                self.hub.decide(peer, id, &who, Some(reason)),
                "Only a clinician in the call can turn people away.",
            ),
            ClientMessage::Check { result, request } => {
                self.hub.check(peer, id, result, request);
                return false;
            }
            ClientMessage::Leave => {
                self.hub.depart(peer, id, true);
                self.close(1000, "left");
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
        if let Err(code) = result {
            let message = match code {
                ErrorCode::Forbidden => forbidden,
                other => other.default_message(),
            };
            self.refuse(code, message);
        }
        false
    }
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outbound>,
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
            item = rx.recv() => item,
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

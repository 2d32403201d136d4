//! The WebSocket connection to the signaling server (wire contract v1, `docs/protocol.md`):
//! hello (new or resumed session), numbered messages both ways.

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hearth_proto::{ClientMessage, ErrorCode, Resume, ServerMessage, seq_of, with_seq};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::EngineError;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub(crate) type SignalSink = SplitSink<Ws, Message>;
pub(crate) type SignalStream = SplitStream<Ws>;

/// A message from the server with its `seq`, when it is numbered.
pub(crate) type Numbered = (Option<u64>, ServerMessage);

/// Connects and says hello (resuming `resume` when given); returns the server's first
/// answer: `welcome` or `waiting` (a new session), or `resumed`.
pub(crate) async fn connect(
    url: &str,
    token: &str,
    resume: Option<Resume>,
) -> Result<(SignalSink, SignalStream, Numbered), EngineError> {
    // Without Nagle's algorithm: signaling messages are small and each one is wanted now (a
    // decline, a leave), not held back until the one before is acknowledged.
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map_err(|e| EngineError::Unreachable {
            url: url.to_owned(),
            detail: e.to_string(),
        })?;
    let (mut sink, mut stream) = ws.split();
    let hello = ClientMessage::Hello {
        token: token.to_owned(),
        room: None,
        resume,
    };
    let text = serde_json::to_string(&hello).map_err(|e| EngineError::Protocol(e.to_string()))?;
    send_text(&mut sink, text).await?;
    loop {
        match recv(&mut stream).await? {
            Some(
                first @ (
                    _,
                    ServerMessage::Welcome { .. }
                    | ServerMessage::Waiting { .. }
                    | ServerMessage::Resumed { .. },
                ),
            ) => {
                return Ok((sink, stream, first));
            }
            Some((_, ServerMessage::Error { code, message, .. })) => {
                return Err(EngineError::Rejected { code, message });
            }
            Some((_, other)) => {
                tracing::debug!(?other, "ignoring a message before welcome");
            }
            None => {
                return Err(EngineError::Rejected {
                    code: ErrorCode::Internal,
                    message: "The call server closed the connection before letting us in."
                        .to_owned(),
                });
            }
        }
    }
}

/// Sends one message, numbered `seq` so that after a resume the server can say whether it
/// applied it. Returns the text sent, to send again if it was not.
pub(crate) async fn send(
    sink: &mut SignalSink,
    msg: &ClientMessage,
    seq: u64,
) -> Result<String, EngineError> {
    let text = serde_json::to_string(msg).map_err(|e| EngineError::Protocol(e.to_string()))?;
    let text = with_seq(&text, seq);
    send_text(sink, text.clone()).await?;
    Ok(text)
}

/// Sends text as it is (a message sent again after a resume).
pub(crate) async fn send_text(sink: &mut SignalSink, text: String) -> Result<(), EngineError> {
    sink.send(Message::text(text))
        .await
        .map_err(|_| EngineError::Closed)
}

/// Closes the connection on our side (going away), as a client leaving a draining server
/// does; the session stays resumable. Waits at most a second: a server that does not take the
/// close frame is left to drop the connection itself.
pub(crate) async fn close(sink: &mut SignalSink) {
    let frame = CloseFrame {
        code: CloseCode::Away,
        reason: "reconnecting elsewhere".into(),
    };
    let closed = tokio::time::timeout(Duration::from_secs(1), async {
        sink.send(Message::Close(Some(frame))).await?;
        sink.close().await
    });
    if !matches!(closed.await, Ok(Ok(()))) {
        tracing::debug!("the old signaling connection did not close cleanly");
    }
}

/// Ends the connection after a `leave`: a close frame, then what the server still sends is
/// read until it closes too. A socket closed with unread data in it is reset by the kernel,
/// which throws away what it had not sent yet (the `leave` itself, say). Waits at most a
/// second.
pub(crate) async fn close_after_leave(sink: &mut SignalSink, stream: &mut SignalStream) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "left".into(),
    };
    let closed = tokio::time::timeout(Duration::from_secs(1), async {
        if sink.send(Message::Close(Some(frame))).await.is_ok() {
            while let Some(Ok(_)) = stream.next().await {}
        }
    });
    if closed.await.is_err() {
        tracing::debug!("the server did not close the connection after we left");
    }
}

/// Receives the next server message and its `seq`; `None` when the connection closed.
pub(crate) async fn recv(stream: &mut SignalStream) -> Result<Option<Numbered>, EngineError> {
    while let Some(frame) = stream.next().await {
        match frame {
            Ok(Message::Text(text)) => match serde_json::from_str::<ServerMessage>(&text) {
                Ok(msg) => return Ok(Some((seq_of(&text), msg))),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable message from the server, skipped");
                }
            },
            Ok(Message::Close(_)) => return Ok(None),
            Ok(_) => {}
            Err(_) => return Ok(None),
        }
    }
    Ok(None)
}

//! The WebSocket connection to the signaling server (wire contract v1, `docs/protocol.md`).

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hearth_proto::{ClientMessage, ErrorCode, ServerMessage};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::EngineError;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub(crate) type SignalSink = SplitSink<Ws, Message>;
pub(crate) type SignalStream = SplitStream<Ws>;

/// Connects, says hello and returns the server's first answer (`welcome` or `waiting`).
pub(crate) async fn connect(
    url: &str,
    token: &str,
) -> Result<(SignalSink, SignalStream, ServerMessage), EngineError> {
    let (ws, _) =
        tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| EngineError::Unreachable {
                url: url.to_owned(),
                detail: e.to_string(),
            })?;
    let (mut sink, mut stream) = ws.split();
    send(
        &mut sink,
        &ClientMessage::Hello {
            token: token.to_owned(),
            room: None,
            resume: None,
        },
    )
    .await?;
    loop {
        match recv(&mut stream).await? {
            Some(first @ (ServerMessage::Welcome { .. } | ServerMessage::Waiting { .. })) => {
                return Ok((sink, stream, first));
            }
            Some(ServerMessage::Error { code, message }) => {
                return Err(EngineError::Rejected { code, message });
            }
            Some(other) => {
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

/// Sends one message.
pub(crate) async fn send(sink: &mut SignalSink, msg: &ClientMessage) -> Result<(), EngineError> {
    let text = serde_json::to_string(msg).map_err(|e| EngineError::Protocol(e.to_string()))?;
    sink.send(Message::text(text))
        .await
        .map_err(|_| EngineError::Closed)
}

/// Receives the next server message; `None` when the connection closed.
pub(crate) async fn recv(stream: &mut SignalStream) -> Result<Option<ServerMessage>, EngineError> {
    while let Some(frame) = stream.next().await {
        match frame {
            Ok(Message::Text(text)) => match serde_json::from_str::<ServerMessage>(&text) {
                Ok(msg) => return Ok(Some(msg)),
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

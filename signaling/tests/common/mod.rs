//! Test helpers: a server on port 0 and a real WebSocket client for it.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

pub mod process;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hearth_proto::Role;
use serde_json::{Value, json};
use signaling::{Limits, Server, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub const WAIT: Duration = Duration::from_secs(5);

pub async fn start() -> Server {
    start_with(Limits::default()).await
}

pub async fn start_with(limits: Limits) -> Server {
    Server::start(ServerOptions {
        limits,
        ..ServerOptions::default()
    })
    .await
    .expect("server starts")
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token whose `sub` is derived from the name, so the same name reconnects as the same person.
pub fn token(server: &Server, room: &str, role: Role, name: &str) -> String {
    let sub = format!("sub-{}", name.to_lowercase());
    server
        .tokens()
        .mint(
            room,
            role,
            name,
            Some(&sub),
            Duration::from_secs(3600),
            now(),
        )
        .unwrap()
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// `rules` messages (residents' tablets get them unprompted), kept aside by `recv`.
    rules: std::collections::VecDeque<Value>,
}

impl Client {
    pub async fn connect(server: &Server) -> Client {
        let (ws, _) = connect_async(server.ws_url())
            .await
            .expect("websocket connects");
        Client {
            ws,
            rules: Default::default(),
        }
    }

    /// Connects and says hello with a fresh token; returns the first reply too.
    pub async fn join(server: &Server, room: &str, role: Role, name: &str) -> (Client, Value) {
        Client::join_with(server, &token(server, room, role, name)).await
    }

    pub async fn join_with(server: &Server, token: &str) -> (Client, Value) {
        let mut c = Client::connect(server).await;
        c.send(json!({"type":"hello","token":token})).await;
        let first = c.recv().await;
        (c, first)
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(v.to_string()).await;
    }

    pub async fn send_text(&mut self, s: String) {
        self.ws.send(Message::text(s)).await.expect("send");
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }

    /// The next JSON message, skipping pings and keeping `rules` aside; panics on close or
    /// after 5 s.
    pub async fn recv(&mut self) -> Value {
        loop {
            let v = self.recv_any().await;
            if v["type"] == "rules" {
                self.rules.push_back(v);
            } else {
                return v;
            }
        }
    }

    /// The next `rules` message's rules.
    pub async fn next_rules(&mut self) -> Value {
        if let Some(v) = self.rules.pop_front() {
            return v["rules"].clone();
        }
        let v = self.recv_any().await;
        assert_eq!(v["type"], "rules", "expected rules, got {v}");
        v["rules"].clone()
    }

    async fn recv_any(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message within 5 s")
                .expect("socket open")
                .expect("socket ok");
            match m {
                Message::Text(t) => return serde_json::from_str(&t).expect("server sends JSON"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected text, got {other:?}"),
            }
        }
    }

    /// The next message, which must have this `type`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(v["type"], kind, "unexpected message: {v}");
        v
    }

    /// The next message must be an error with this code.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let v = self.expect("error").await;
        assert_eq!(v["code"], code, "unexpected error: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        v
    }

    /// Reads until the server closes; returns the close code (None if the stream just ended).
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("closed within 5 s")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Splits into a sender and a background reader that forwards every JSON message, so a
    /// test can flood without its own replies backing up.
    pub fn into_split(
        self,
    ) -> (
        futures_util::stream::SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>,
        tokio::sync::mpsc::UnboundedReceiver<Value>,
    ) {
        let (sink, mut stream) = self.ws.split();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                if let Message::Text(t) = m
                    && tx.send(serde_json::from_str(&t).unwrap()).is_err()
                {
                    break;
                }
            }
        });
        (sink, rx)
    }

    /// Asserts that no message (other than pings) arrives for `d`.
    pub async fn quiet_for(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }
}

/// A plain HTTP/1.1 GET; returns (status, body).
pub async fn http_get(server: &Server, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf.split(' ').nth(1).unwrap().parse().unwrap();
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

pub fn peer(v: &Value) -> String {
    v["peer"].as_str().expect("has a peer id").to_owned()
}

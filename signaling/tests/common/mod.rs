//! Test helpers: a server on port 0 and a real WebSocket client for it.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;
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
    mint(server.tokens(), room, role, name)
}

/// [`token`] with any server's keys.
pub fn mint(keys: &signaling::token::TokenKeys, room: &str, role: Role, name: &str) -> String {
    let sub = format!("sub-{}", name.to_lowercase());
    keys.mint(
        room,
        role,
        name,
        Some(&sub),
        Duration::from_secs(3600),
        now(),
    )
    .unwrap()
}

/// What a client whose connection dropped keeps: its session and the last seq it got.
#[derive(Debug, Clone)]
pub struct Gone {
    pub session: (String, String),
    pub last_seq: u64,
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// `rules` messages (residents' tablets get them unprompted), kept aside by `recv`.
    rules: std::collections::VecDeque<Value>,
    /// The session's id and resume secret, from its `welcome` or `waiting`.
    pub session: Option<(String, String)>,
    /// The last `seq` received; every numbered message must follow it by one.
    pub last_seq: u64,
}

impl Client {
    pub async fn connect(server: &Server) -> Client {
        Client::connect_url(&server.ws_url()).await
    }

    /// Connects to any node (or the load balancer) by URL.
    pub async fn connect_url(url: &str) -> Client {
        let (ws, _) = connect_async(url).await.expect("websocket connects");
        Client::from_stream(ws)
    }

    /// A client over a WebSocket opened some other way.
    pub fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        Client {
            ws,
            rules: Default::default(),
            session: None,
            last_seq: 0,
        }
    }

    /// Sends each message at once (no Nagle delay), as the engine does.
    #[allow(dead_code)]
    pub fn no_delay(&self) {
        if let MaybeTlsStream::Plain(tcp) = self.ws.get_ref() {
            tcp.set_nodelay(true).expect("TCP_NODELAY");
        }
    }

    /// The connection drops (no close frame, no `leave`); what the client keeps to resume.
    pub fn hang_up(self) -> Gone {
        Gone {
            session: self.session.clone().expect("a session"),
            last_seq: self.last_seq,
        }
    }

    /// Connects and takes up a session again with the same token; returns the `resumed` (or,
    /// when the session is gone, the fresh `welcome` or `waiting`).
    pub async fn resume(server: &Server, token: &str, from: &Gone) -> (Client, Value) {
        Client::resume_at(&server.ws_url(), token, from).await
    }

    /// [`Client::resume`] at any node's URL.
    pub async fn resume_at(url: &str, token: &str, from: &Gone) -> (Client, Value) {
        let (peer, secret) = from.session.clone();
        let (ws, _) = connect_async(url).await.expect("websocket connects");
        let mut c = Client {
            ws,
            rules: Default::default(),
            session: Some(from.session.clone()),
            last_seq: from.last_seq,
        };
        c.send(json!({"type":"hello","token":token,
            "resume":{"peer":peer,"secret":secret,"last_seq":from.last_seq}}))
            .await;
        let first = c.recv().await;
        (c, first)
    }

    /// Connects and says hello with a fresh token; returns the first reply too.
    pub async fn join(server: &Server, room: &str, role: Role, name: &str) -> (Client, Value) {
        Client::join_with(server, &token(server, room, role, name)).await
    }

    pub async fn join_with(server: &Server, token: &str) -> (Client, Value) {
        Client::join_at(&server.ws_url(), token).await
    }

    /// Connects to `url` and says hello with `token`; returns the first reply too.
    pub async fn join_at(url: &str, token: &str) -> (Client, Value) {
        let mut c = Client::connect_url(url).await;
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
        self.recv_within(WAIT).await
    }

    /// [`Client::recv`], waiting up to `wait` (not 5 s).
    async fn recv_within(&mut self, wait: Duration) -> Value {
        loop {
            let v = self.recv_any_within(wait).await;
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
        self.recv_any_within(WAIT).await
    }

    async fn recv_any_within(&mut self, wait: Duration) -> Value {
        loop {
            let m = tokio::time::timeout(wait, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("a message within {wait:?}"))
                .expect("socket open")
                .expect("socket ok");
            match m {
                Message::Text(t) => {
                    let mut v: Value = serde_json::from_str(&t).expect("server sends JSON");
                    self.numbered(&mut v);
                    return v;
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected text, got {other:?}"),
            }
        }
    }

    /// Checks and takes off what every message of a session carries: its `seq` (one more than
    /// the last), and the resume secret of a `welcome` or `waiting`.
    fn numbered(&mut self, v: &mut Value) {
        let Some(obj) = v.as_object_mut() else { return };
        if let Some(secret) = obj.remove("resume_secret") {
            let peer = obj["peer"].as_str().expect("has a peer").to_owned();
            if self.session.as_ref().is_some_and(|(p, _)| *p != peer) {
                // A new session (the old one could not be resumed): a new stream.
                self.last_seq = 0;
            }
            self.session = Some((peer, secret.as_str().expect("a string").to_owned()));
        }
        if obj.get("type").is_some_and(|t| t == "resumed") && obj["snapshot"] == true {
            // Too much was missed: the stream goes on from where the server is.
            self.last_seq = 0;
        }
        if let Some(seq) = obj.remove("seq") {
            let seq = seq.as_u64().expect("seq is a number");
            if self.last_seq > 0 {
                assert_eq!(seq, self.last_seq + 1, "messages numbered without gaps");
            }
            self.last_seq = seq;
        }
    }

    /// [`Client::expect`], waiting up to `wait` (not 5 s).
    #[allow(dead_code)]
    pub async fn expect_within(&mut self, kind: &str, wait: Duration) -> Value {
        let v = self.recv_within(wait).await;
        assert_eq!(v["type"], kind, "unexpected message: {v}");
        v
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
        self.closed_within(WAIT).await
    }

    /// [`Client::closed`], waiting up to `wait`.
    pub async fn closed_within(&mut self, wait: Duration) -> Option<u16> {
        loop {
            match tokio::time::timeout(wait, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("closed within {wait:?}"))
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

    /// When the next ping from the server comes (other messages are read and dropped); `None`
    /// when none comes within `within`.
    #[allow(dead_code)]
    pub async fn next_ping(&mut self, within: Duration) -> Option<tokio::time::Instant> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(Message::Ping(_)))) => return Some(tokio::time::Instant::now()),
                Ok(Some(Ok(_))) => continue,
                Ok(other) => panic!("the connection ended: {other:?}"),
            }
        }
    }

    /// What the next pong echoes (other messages are read and dropped); panics after 5 s.
    #[allow(dead_code)]
    pub async fn next_pong(&mut self) -> Vec<u8> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Message::Pong(echo)))) => return echo.to_vec(),
                Ok(Some(Ok(_))) => continue,
                other => panic!("no pong: {other:?}"),
            }
        }
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

/// One HTTP call with an optional bearer token and JSON body; returns the status and the body
/// as JSON (or as a JSON string when it is not JSON).
#[allow(dead_code)]
pub async fn http_call(
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("the server answers");
    let status = res.status().as_u16();
    let text = res.text().await.expect("a body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
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

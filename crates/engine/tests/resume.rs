//! The engine's link to the signaling server breaks (here: a proxy on loopback cuts it) while
//! a call is on: the engine reconnects by itself after a jittered delay, resumes its session,
//! gets what it missed (someone who joined meanwhile), and the call never notices.
//!
//! And a draining server (`shutdown`), played by a server the test scripts so that the timing
//! is exact: the engine leaves at the time it was given, closing the connection itself, and
//! resumes without telling the screen anything; a closing error that comes before that time
//! (the session taken over elsewhere) calls the move off.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use hearth_engine::{Role, Room, RoomEvent};
use hearth_proto::{
    ClientMessage, ErrorCode, Resume, ServerMessage, parse_client, seq_of, with_seq,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A TCP proxy in front of the server whose open connections can be cut at once; new ones
/// are let through.
struct Proxy {
    url: String,
    open: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn to(server: &signaling::Server) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = server.local_addr();
        let open: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let conns = open.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns.lock().unwrap().push(task);
            }
        });
        Proxy {
            url: format!("ws://{addr}/v1/ws"),
            open,
        }
    }

    /// Drops every connection through the proxy, as a network outage would.
    fn cut(&self) {
        for task in self.open.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_signaling_link_resumes_and_the_call_goes_on() {
    let server = server().await;
    let proxy = Proxy::to(&server).await;
    let token = common::token(&server, "kim", Role::Family, "Ann");
    let (room, events) = Room::connect(&proxy.url, &token, loopback_options())
        .await
        .unwrap();
    let mut ann = Peer {
        room,
        events,
        name: "Ann".into(),
    };
    let mut kim = join(&server, "kim", "Kim", loopback_options()).await;
    ring(&mut kim, &mut ann).await;
    ann.room.answer(kim.room.me()).await.unwrap();
    for p in [&mut ann, &mut kim] {
        expect_event(p, "the call connecting", |e| {
            matches!(e, RoomEvent::CallConnected { .. })
        })
        .await;
    }

    proxy.cut();
    let reconnecting = expect_event(&mut ann, "reconnecting", |e| {
        matches!(e, RoomEvent::Reconnecting { .. })
    })
    .await;
    let RoomEvent::Reconnecting { retry_in_ms, .. } = reconnecting else {
        unreachable!()
    };
    assert!(
        (125..=250).contains(&retry_in_ms),
        "jittered: {retry_in_ms} ms"
    );
    // While Ann is away, Lee arrives; Ann learns of it from the replay.
    let lee = join(&server, "kim", "Lee", loopback_options()).await;
    let lee_id = lee.room.me().clone();
    let mut ended = false;
    let mut saw_lee = false;
    let mut resumed = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while resumed.is_none() || !saw_lee {
        let e = tokio::time::timeout_at(deadline, ann.events.recv())
            .await
            .expect("resumed and told of Lee within 10 s")
            .unwrap();
        match e {
            RoomEvent::Reconnected { resumed: r } => resumed = Some(r),
            RoomEvent::PeerJoined(p) if p.peer == lee_id => saw_lee = true,
            RoomEvent::CallEnded { .. } => ended = true,
            _ => {}
        }
    }
    assert_eq!(resumed, Some(true), "the same session");
    assert!(!ended, "the call went on through the outage");
    // Ann's id is unchanged: Kim still reaches her, and the server links them as before.
    let stats = ann.room.stats().await.unwrap();
    assert_eq!(stats.peers.len(), 1);
    let got = collect(&mut kim, Duration::from_secs(1)).await;
    assert!(
        got.frames.get(ann.room.me()).is_some_and(|f| f.len() >= 10),
        "Kim still gets Ann's video"
    );
    drop(lee);
}

/// A signaling server scripted by the test, to put the engine's side of a drain to the proof
/// with exact timing: each accepted connection is handed to the test in turn.
struct Scripted {
    url: String,
    conns: tokio::sync::mpsc::UnboundedReceiver<(Ws, Instant)>,
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

impl Scripted {
    async fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/v1/ws", listener.local_addr().unwrap());
        let (tx, conns) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let at = Instant::now();
                let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                if tx.send((ws, at)).is_err() {
                    return;
                }
            }
        });
        Scripted { url, conns }
    }

    /// The next connection, within `within`; `None` when none came.
    async fn next(&mut self, within: Duration) -> Option<(Ws, Instant)> {
        tokio::time::timeout(within, self.conns.recv())
            .await
            .ok()
            .flatten()
    }
}

/// Reads the client's `hello`.
async fn hello(ws: &mut Ws) -> Option<Resume> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
        match next.expect("a hello within 5 s").expect("a hello").unwrap() {
            Message::Text(text) => match parse_client(&text).unwrap() {
                ClientMessage::Hello { resume, .. } => return resume,
                other => panic!("hello first, not {other:?}"),
            },
            _ => continue,
        }
    }
}

async fn say(ws: &mut Ws, seq: u64, msg: &ServerMessage) {
    say_together(ws, &[(seq, msg)]).await;
}

/// Sends the messages in one write, so that the engine reads them together.
async fn say_together(ws: &mut Ws, msgs: &[(u64, &ServerMessage)]) {
    for (seq, msg) in msgs {
        let text = with_seq(&serde_json::to_string(msg).unwrap(), *seq);
        ws.feed(Message::text(text)).await.unwrap();
    }
    ws.flush().await.unwrap();
}

fn welcome() -> ServerMessage {
    ServerMessage::Welcome {
        peer: "ann".into(),
        room: "kim".into(),
        role: Role::Family,
        peers: Vec::new(),
        ice_servers: Vec::new(),
        resume_secret: Some("the-secret".into()),
    }
}

/// Reads what the client sends until it closes: the highest `seq` it numbered, and its close
/// frame's code and when it came (`None` when the connection ended without one).
async fn until_closed(ws: &mut Ws) -> (u64, Option<(CloseCode, Instant)>) {
    let mut sent = 0;
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Text(text) => sent = sent.max(seq_of(&text).unwrap_or(0)),
            Message::Close(frame) => {
                return (sent, frame.map(|f| (f.code, Instant::now())));
            }
            _ => {}
        }
    }
    (sent, None)
}

/// An engine connected to a scripted server, welcomed into a new session (`seq` 1).
async fn joined() -> (Scripted, Ws, Room, tokio::sync::mpsc::Receiver<RoomEvent>) {
    let mut server = Scripted::start().await;
    let url = server.url.clone();
    let engine = tokio::spawn(async move {
        Room::connect(&url, "a-token", loopback_options())
            .await
            .unwrap()
    });
    let (mut first, _) = server
        .next(Duration::from_secs(10))
        .await
        .expect("a connection");
    assert_eq!(hello(&mut first).await, None, "a new session");
    say(&mut first, 1, &welcome()).await;
    let (room, events) = engine.await.unwrap();
    (server, first, room, events)
}

/// The server drains (`seq` 2): the engine is to move in 400 ms.
async fn shutdown(ws: &mut Ws) {
    say(ws, 2, &shutdown_in(400)).await;
}

fn shutdown_in(retry_after_ms: u64) -> ServerMessage {
    ServerMessage::Shutdown { retry_after_ms }
}

fn replaced() -> ServerMessage {
    ServerMessage::Error {
        code: ErrorCode::Replaced,
        message: "Opened somewhere else.".into(),
        peer: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_shutdown_the_engine_leaves_at_the_time_given_and_resumes_without_a_word() {
    let (mut server, mut first, room, mut events) = joined().await;
    shutdown(&mut first).await;
    let told = Instant::now();
    // The server keeps the connection open (until its drain deadline): the engine closes it
    // itself, going away, at the time it was given.
    let (sent, close) = tokio::time::timeout(Duration::from_secs(5), until_closed(&mut first))
        .await
        .expect("the engine left within 5 s of a shutdown that said 400 ms");
    let (code, closed_at) = close.expect("the engine closes the connection");
    assert_eq!(code, CloseCode::Away);
    let waited = closed_at - told;
    assert!(
        (Duration::from_millis(380)..Duration::from_millis(1_400)).contains(&waited),
        "closed {waited:?} after the shutdown, which said 400 ms"
    );
    // ... and resumes its session (through the load balancer, on another node: here, the
    // same script), saying how far it read.
    let (mut second, reconnected_at) = server
        .next(Duration::from_secs(5))
        .await
        .expect("a reconnect");
    assert!(
        reconnected_at - closed_at < Duration::from_millis(500),
        "reconnected at once: {:?}",
        reconnected_at - closed_at
    );
    let resume = hello(&mut second).await.expect("a resume");
    assert_eq!(
        (
            resume.peer.as_str(),
            resume.secret.as_str(),
            resume.last_seq
        ),
        ("ann", "the-secret", 2)
    );
    let resumed = ServerMessage::Resumed {
        peer: "ann".into(),
        acked: sent,
        replayed: 0,
        snapshot: false,
    };
    say(&mut second, 3, &resumed).await;
    let e = expect_event_of(&mut events, "reconnected", |e| {
        matches!(e, RoomEvent::Reconnected { .. })
    })
    .await;
    assert!(
        matches!(e.last(), Some(RoomEvent::Reconnected { resumed: true })),
        "{e:?}"
    );
    // A move that worked is not news for the screen: the server could be reached all along.
    assert!(
        !e.iter().any(|e| matches!(
            e,
            RoomEvent::Reconnecting { .. } | RoomEvent::Disconnected { .. }
        )),
        "{e:?}"
    );
    drop(room);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_error_after_a_shutdown_cancels_the_move() {
    let (server, mut first, room, events) = joined().await;
    shutdown(&mut first).await;
    // Before the move, the session is taken over elsewhere (the same invitation opened on
    // another device): the server says so and closes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    say(&mut first, 3, &replaced()).await;
    the_move_is_off(server, first, room, events, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_error_read_with_a_shutdown_due_at_once_cancels_the_move() {
    // The move is due at once, and the error comes in the same write. (This does not time the
    // race the engine's biased loop closes, a due move and an unread error ready in the same
    // poll: tokio's timer rounds a deadline of now up to its next millisecond, so the message
    // is read first here with or without it.)
    for _ in 0..5 {
        let (server, mut first, room, events) = joined().await;
        let (move_now, replaced) = (shutdown_in(0), replaced());
        say_together(&mut first, &[(2, &move_now), (3, &replaced)]).await;
        the_move_is_off(server, first, room, events, Duration::from_millis(500)).await;
    }
}

/// After a `replaced`, the server closes; the engine says it was replaced and does not come
/// back, at the move's time or after (watched for `quiet_for`).
async fn the_move_is_off(
    mut server: Scripted,
    mut first: Ws,
    room: Room,
    mut events: tokio::sync::mpsc::Receiver<RoomEvent>,
    quiet_for: Duration,
) {
    first
        .close(Some(CloseFrame {
            code: CloseCode::Policy,
            reason: "replaced".into(),
        }))
        .await
        .unwrap();
    let e = expect_event_of(&mut events, "disconnected", |e| {
        matches!(e, RoomEvent::Disconnected { .. })
    })
    .await;
    assert!(
        matches!(
            e.last(),
            Some(RoomEvent::Disconnected {
                code: Some(ErrorCode::Replaced),
                ..
            })
        ),
        "{e:?}"
    );
    assert!(
        server.next(quiet_for).await.is_none(),
        "the engine took up a session that was replaced"
    );
    drop(room);
}

/// The events up to and including the first that `want` matches, within 10 s.
async fn expect_event_of(
    events: &mut tokio::sync::mpsc::Receiver<RoomEvent>,
    what: &str,
    want: impl Fn(&RoomEvent) -> bool,
) -> Vec<RoomEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let e = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("{what} within 10 s; saw {seen:?}"))
            .expect("the engine is running");
        let done = want(&e);
        seen.push(e);
        if done {
            return seen;
        }
    }
}

//! The engine's link to the signaling server breaks (here: a proxy on loopback cuts it) while
//! a call is on: the engine reconnects by itself after a jittered delay, resumes its session,
//! gets what it missed (someone who joined meanwhile), and the call never notices.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hearth_engine::{Role, Room, RoomEvent};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

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

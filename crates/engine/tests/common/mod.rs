//! Shared by the engine's call tests: a real signaling server on loopback, engines joined to
//! it, and helpers that wait for events.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_engine::media::pattern;
use hearth_engine::{
    AudioOutput, CallEndReason, PeerId, Role, Room, RoomEvent, RoomOptions, VideoInput,
};
use signaling::{Server, ServerOptions};
use tokio::sync::mpsc;

pub async fn server() -> Server {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Server::start(ServerOptions::default())
        .await
        .expect("server starts")
}

pub fn token(server: &Server, room: &str, role: Role, name: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    server
        .tokens()
        .mint(room, role, name, None, Duration::from_secs(600), now)
        .unwrap()
}

/// Options for an engine on loopback with the synthetic camera and microphone.
pub fn loopback_options() -> RoomOptions {
    RoomOptions {
        video: VideoInput::Synthetic {
            width: 320,
            height: 240,
            fps: 30,
        },
        bind_addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        // This machine has no sound card: decode and measure, don't play.
        audio_output: AudioOutput::None,
        ..RoomOptions::default()
    }
}

pub struct Peer {
    pub room: Room,
    pub events: mpsc::Receiver<RoomEvent>,
    pub name: String,
}

pub async fn join(server: &Server, room: &str, name: &str, options: RoomOptions) -> Peer {
    let token = token(server, room, Role::Family, name);
    join_at(&server.ws_url(), &token, name, options).await
}

/// Connects to the server (or load balancer) at `url` with `token` and waits to be let in.
pub async fn join_at(url: &str, token: &str, name: &str, options: RoomOptions) -> Peer {
    let mut peer = connect_at(url, token, name, options).await;
    match next_event(&mut peer.events, Duration::from_secs(5), |e| {
        matches!(e, RoomEvent::Joined { .. })
    })
    .await
    {
        Some(_) => {}
        None => panic!("{name} was not let in"),
    }
    peer
}

/// Connects as `role` without waiting to be let in (patients wait).
pub async fn connect_as(
    server: &Server,
    room: &str,
    role: Role,
    name: &str,
    options: RoomOptions,
) -> Peer {
    let token = token(server, room, role, name);
    connect_at(&server.ws_url(), &token, name, options).await
}

/// Connects to the server (or load balancer) at `url` with `token`, without waiting.
pub async fn connect_at(url: &str, token: &str, name: &str, options: RoomOptions) -> Peer {
    let (room, events) = Room::connect(url, token, options)
        .await
        .unwrap_or_else(|e| panic!("{name} connects: {e}"));
    Peer {
        room,
        events,
        name: name.to_owned(),
    }
}

/// Waits for the first event `want` accepts, skipping others (video frames included).
pub async fn next_event(
    events: &mut mpsc::Receiver<RoomEvent>,
    timeout: Duration,
    want: impl Fn(&RoomEvent) -> bool,
) -> Option<RoomEvent> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if want(&e) => return Some(e),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

pub async fn expect_event(
    peer: &mut Peer,
    what: &str,
    want: impl Fn(&RoomEvent) -> bool,
) -> RoomEvent {
    expect_event_within(peer, what, Duration::from_secs(15), want).await
}

/// Waits for `peer` to see a call end for `reason`.
pub async fn expect_end(peer: &mut Peer, reason: CallEndReason) {
    let what = format!("a call ending ({reason:?})");
    expect_event(
        peer,
        &what,
        |e| matches!(e, RoomEvent::CallEnded { reason: r, .. } if *r == reason),
    )
    .await;
}

pub async fn expect_event_within(
    peer: &mut Peer,
    what: &str,
    timeout: Duration,
    want: impl Fn(&RoomEvent) -> bool,
) -> RoomEvent {
    match next_event(&mut peer.events, timeout, want).await {
        Some(e) => e,
        None => panic!("{} never saw {what} within {timeout:?}", peer.name),
    }
}

/// What one peer decoded from each other peer in a window of time: the stamped frame
/// numbers in arrival order, and how many pictures had no readable stamp.
#[derive(Debug, Default)]
pub struct Received {
    pub frames: HashMap<PeerId, Vec<u32>>,
    pub unreadable: HashMap<PeerId, usize>,
    pub audio_levels: HashMap<PeerId, Vec<f32>>,
    /// How long each picture is held after decoding to match the sound, milliseconds.
    pub lip_sync_hold_ms: HashMap<PeerId, Vec<f64>>,
}

pub async fn collect(peer: &mut Peer, window: Duration) -> Received {
    let mut got = Received::default();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, peer.events.recv()).await {
        match e {
            RoomEvent::RemoteVideo(f) => {
                let hold = f.present_at.duration_since(f.decoded_at).as_secs_f64() * 1000.0;
                got.lip_sync_hold_ms
                    .entry(f.peer.clone())
                    .or_default()
                    .push(hold);
                match pattern::read(&f.frame) {
                    Some(stamp) => got.frames.entry(f.peer).or_default().push(stamp.frame),
                    None => *got.unreadable.entry(f.peer).or_default() += 1,
                }
            }
            RoomEvent::RemoteAudioLevel { peer, level } => {
                got.audio_levels.entry(peer).or_default().push(level)
            }
            _ => {}
        }
    }
    got
}

/// Asserts the picture numbers a peer was shown rise every time (in order, none twice), and
/// that every number missing between them is one the sender skipped: `skipped` is the
/// sender's own count (`frames_skipped` in its statistics) from just before the window to
/// its end, so with a sender that kept up, nothing may be missing at all.
pub fn assert_in_order(who: &str, frames: &[u32], at_least: usize, skipped: u64) {
    assert!(
        frames.len() >= at_least,
        "{who}: only {} frames decoded, wanted at least {at_least}",
        frames.len()
    );
    let mut missing = 0u64;
    for pair in frames.windows(2) {
        assert!(
            pair[1] > pair[0],
            "{who}: frame {} followed {} (all: {frames:?})",
            pair[1],
            pair[0]
        );
        missing += u64::from(pair[1] - pair[0] - 1);
    }
    assert!(
        missing <= skipped,
        "{who}: {missing} frames missing, the sender skipped only {skipped} (all: {frames:?})"
    );
}

/// How many captured pictures `sender` skipped in its video to `to`, so far.
pub async fn skipped_by(sender: &Peer, to: &PeerId) -> u64 {
    let stats = sender.room.stats().await.unwrap();
    stats
        .peers
        .iter()
        .find(|p| p.peer == *to)
        .map_or(0, |p| p.frames_skipped)
}

/// Ann and Kim in room "kim", Ann having seen Kim arrive.
pub async fn pair(server: &Server, ann: RoomOptions, kim: RoomOptions) -> (Peer, Peer) {
    let mut a = join(server, "kim", "Ann", ann).await;
    let k = join(server, "kim", "Kim", kim).await;
    let kim_id = k.room.me().clone();
    expect_event(
        &mut a,
        "Kim joining",
        |e| matches!(e, RoomEvent::PeerJoined(p) if p.peer == kim_id),
    )
    .await;
    (a, k)
}

/// `caller` calls `callee`, and `callee` sees it ring.
pub async fn ring(caller: &mut Peer, callee: &mut Peer) {
    caller.room.call(callee.room.me()).await.unwrap();
    let incoming = expect_event(callee, "the incoming call", |e| {
        matches!(e, RoomEvent::IncomingCall { .. })
    })
    .await;
    let RoomEvent::IncomingCall { peer, name } = incoming else {
        unreachable!()
    };
    assert_eq!(
        (&peer, name.as_str()),
        (caller.room.me(), caller.name.as_str())
    );
}

/// Ann calls Kim in room "kim" on `server`, Kim answers, and both see the call connected.
pub async fn call_between(server: &Server, ann: RoomOptions, kim: RoomOptions) -> (Peer, Peer) {
    let (mut ann, mut kim) = pair(server, ann, kim).await;
    connect_call(&mut ann, &mut kim).await;
    (ann, kim)
}

/// `caller` calls `callee`, `callee` answers, and both see the call connected.
pub async fn connect_call(caller: &mut Peer, callee: &mut Peer) {
    ring(caller, callee).await;
    callee.room.answer(caller.room.me()).await.unwrap();
    for p in [caller, callee] {
        expect_event(p, "the call connecting", |e| {
            matches!(e, RoomEvent::CallConnected { .. })
        })
        .await;
    }
}

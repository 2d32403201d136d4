//! The room: the signaling connection, the people in the room, and a call leg (one peer
//! connection) per person we are in a call with. One task owns all of it and takes commands
//! from [`Room`] handles, messages from the server and events from the peer connections.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hearth_proto::{ClientMessage, IceServer, PeerId, PeerInfo, ServerMessage};
use tokio::sync::{mpsc, oneshot};
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::EngineError;
use crate::backoff::Backoff;
use crate::events::{CallEndReason, ConnectionQuality, RoomEvent};
use crate::media::playout::{AudioOut, Sink};
use crate::media::source::Sources;
use crate::options::{AudioOutput, RoomOptions};
use crate::peer::{LinkContext, LinkEvent, PeerLink, RelayCheck};
use crate::protocol::{CallMessage, Candidate, DeclineReason, HangupReason, Sdp, SdpKind};
use crate::signal::{self, SignalSink, SignalStream};
use crate::stats::{CallStats, RateSampler};

/// Most people in one call, ourselves included (a mesh of peer connections).
pub const MAX_CALL_SIZE: usize = 4;
/// Queue between the engine and its user.
const EVENT_CAPACITY: usize = 512;

enum Command {
    Call(PeerId, oneshot::Sender<Result<(), EngineError>>),
    Answer(PeerId, oneshot::Sender<Result<(), EngineError>>),
    Decline(
        PeerId,
        DeclineReason,
        oneshot::Sender<Result<(), EngineError>>,
    ),
    /// A message for the server itself (admit, deny, check).
    Server(ClientMessage, oneshot::Sender<Result<(), EngineError>>),
    HangUp(Option<PeerId>, oneshot::Sender<Result<(), EngineError>>),
    Stats(oneshot::Sender<CallStats>),
    SetMuted(bool, oneshot::Sender<()>),
    SetCameraOff(bool, oneshot::Sender<()>),
    SetSelfViewWidth(u32, oneshot::Sender<()>),
    CheckRelay(oneshot::Sender<Result<RelayCheck, EngineError>>),
    RequestKeyframe(PeerId, oneshot::Sender<()>),
    SetForwarding(bool, oneshot::Sender<()>),
    Leave(oneshot::Sender<()>),
}

/// A handle on a joined room. Cheap to clone; the room is left when [`Room::leave`] is
/// called or the last handle is dropped.
#[derive(Clone)]
pub struct Room {
    commands: mpsc::UnboundedSender<Command>,
    me: PeerId,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room").field("me", &self.me).finish()
    }
}

impl Room {
    /// Joins the room the token names on the server at `url` (`ws://host:port/v1/ws`).
    /// Returns once the server has let us in or put us in its waiting room; the first event
    /// says which.
    pub async fn connect(
        url: &str,
        token: &str,
        options: RoomOptions,
    ) -> Result<(Room, mpsc::Receiver<RoomEvent>), EngineError> {
        let (sink, stream, (first_seq, first)) = signal::connect(url, token, None).await?;
        let (app_tx, app_rx) = mpsc::channel(EVENT_CAPACITY);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (link_tx, link_rx) = mpsc::unbounded_channel();
        let me = match &first {
            ServerMessage::Welcome { peer, .. } | ServerMessage::Waiting { peer, .. } => {
                peer.clone()
            }
            _ => return Err(EngineError::Protocol("expected welcome".into())),
        };
        let processing = if options.audio_processing {
            crate::media::apm::new_processor()
        } else {
            None
        };
        let sources = Sources::new(
            options.video.clone(),
            options.audio.clone(),
            processing.clone(),
            options.self_view.then(|| app_tx.clone()),
        );
        let output = match &options.audio_output {
            AudioOutput::None => Sink::None,
            AudioOutput::Speaker { id } => Sink::Speaker(id.clone()),
        };
        let (audio_out, speaker_error) = AudioOut::start(output, processing, app_tx.clone());
        let forwarding = Arc::new(AtomicBool::new(!options.forward_encoded.is_empty()));
        let mut actor = Actor {
            options: Arc::new(options),
            sink,
            link: Link {
                url: url.to_owned(),
                token: token.to_owned(),
                session: None,
                last_seq: first_seq.unwrap_or(0),
                sent: 0,
                unacked: VecDeque::new(),
                backoff: Backoff::new(Duration::from_millis(250), Duration::from_secs(10)),
                retry_at: None,
            },
            me: me.clone(),
            ice_servers: Vec::new(),
            peers: HashMap::new(),
            legs: HashMap::new(),
            call_id: None,
            sources,
            audio_out: Arc::new(audio_out),
            app: app_tx,
            link_tx,
            next_link: 1,
            ticks: 0,
            device_nodes: Vec::new(),
            devices_seen: false,
            addresses: Vec::new(),
            announced_in_call: false,
            closed_by_server: None,
            forwarding,
        };
        actor.note_session(&first);
        actor.on_server(first).await;
        if let Some(e) = speaker_error {
            actor
                .emit(RoomEvent::DeviceError {
                    device: e.kind,
                    message: e.message,
                })
                .await;
        }
        tokio::spawn(actor.run(stream, cmd_rx, link_rx));
        Ok((
            Room {
                commands: cmd_tx,
                me,
            },
            app_rx,
        ))
    }

    /// Our id in the room.
    pub fn me(&self) -> &PeerId {
        &self.me
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| EngineError::Closed)?;
        rx.await.map_err(|_| EngineError::Closed)
    }

    /// Calls `peer`. If we are already in a call, they are invited into it (up to four people).
    pub async fn call(&self, peer: &PeerId) -> Result<(), EngineError> {
        self.ask(|tx| Command::Call(peer.clone(), tx)).await?
    }

    /// Answers `peer`'s ringing call.
    pub async fn answer(&self, peer: &PeerId) -> Result<(), EngineError> {
        self.ask(|tx| Command::Answer(peer.clone(), tx)).await?
    }

    /// Declines `peer`'s ringing call.
    pub async fn decline(&self, peer: &PeerId) -> Result<(), EngineError> {
        self.ask(|tx| Command::Decline(peer.clone(), DeclineReason::Declined, tx))
            .await?
    }

    /// Declines `peer`'s ringing call because this device does not take calls now (a
    /// resident's quiet hours); the caller learns [`CallEndReason::Unavailable`].
    pub async fn decline_unavailable(&self, peer: &PeerId) -> Result<(), EngineError> {
        self.ask(|tx| Command::Decline(peer.clone(), DeclineReason::Unavailable, tx))
            .await?
    }

    /// Clinicians: lets `peer` in from the waiting room. A refusal (the call is full, they
    /// left) comes back as [`RoomEvent::Refused`].
    pub async fn admit(&self, peer: &PeerId) -> Result<(), EngineError> {
        let msg = ClientMessage::Admit { peer: peer.clone() };
        self.ask(|tx| Command::Server(msg, tx)).await?
    }

    /// Clinicians: turns `peer` away from the waiting room with a sentence they see.
    pub async fn deny(&self, peer: &PeerId, reason: Option<String>) -> Result<(), EngineError> {
        let msg = ClientMessage::Deny {
            peer: peer.clone(),
            reason,
        };
        self.ask(|tx| Command::Server(msg, tx)).await?
    }

    /// Reports this device's pre-call check to the server: a waiting patient's clinician sees
    /// it, a resident's tablet keeps it for staff; `request` answers a
    /// [`RoomEvent::CheckRequested`].
    pub async fn report_check(
        &self,
        result: hearth_proto::care::CheckResult,
        request: Option<String>,
    ) -> Result<(), EngineError> {
        let msg = ClientMessage::Check { result, request };
        self.ask(|tx| Command::Server(msg, tx)).await?
    }

    /// Ends the call with `peer` (or stops calling them).
    pub async fn hang_up(&self, peer: &PeerId) -> Result<(), EngineError> {
        self.ask(|tx| Command::HangUp(Some(peer.clone()), tx))
            .await?
    }

    /// Ends every call.
    pub async fn hang_up_all(&self) -> Result<(), EngineError> {
        self.ask(|tx| Command::HangUp(None, tx)).await?
    }

    /// Mutes or unmutes our microphone in every call (now and later, until changed).
    pub async fn set_muted(&self, muted: bool) -> Result<(), EngineError> {
        self.ask(|tx| Command::SetMuted(muted, tx)).await
    }

    /// Turns our camera's picture off or on in every call; the others are told it was our
    /// choice, so they can say so instead of showing a weak connection.
    pub async fn set_camera_off(&self, off: bool) -> Result<(), EngineError> {
        self.ask(|tx| Command::SetCameraOff(off, tx)).await
    }

    /// How wide, in pixels, the front end shows our self-view: its pictures are made that
    /// wide (between 64 and 320 pixels), so no pixel is made and carried that nobody sees.
    pub async fn set_self_view_width(&self, width: u32) -> Result<(), EngineError> {
        self.ask(|tx| Command::SetSelfViewWidth(width, tx)).await
    }

    /// Checks that the TURN relay the server handed out works: gathers a relay address
    /// (within 5 s) without calling anyone. Part of the pre-call check.
    pub async fn check_relay(&self) -> Result<RelayCheck, EngineError> {
        self.ask(Command::CheckRelay).await?
    }

    /// Asks `peer` for a keyframe, for a front end whose decoder of forwarded frames lost
    /// its place (it started late, a frame went missing, or it failed). The request goes out
    /// at most once a second; the frames handed over skip ahead to the keyframe.
    pub async fn request_keyframe(&self, peer: &PeerId) -> Result<(), EngineError> {
        self.ask(|tx| Command::RequestKeyframe(peer.clone(), tx))
            .await
    }

    /// Forwards pictures in the `RoomOptions::forward_encoded` codecs encoded (on, the
    /// default when that list is not empty) or decodes them here (off), from the next
    /// keyframe on, which is asked for at once.
    pub async fn set_forward_encoded(&self, on: bool) -> Result<(), EngineError> {
        self.ask(|tx| Command::SetForwarding(on, tx)).await
    }

    /// Statistics of the current call, now.
    pub async fn stats(&self) -> Result<CallStats, EngineError> {
        self.ask(Command::Stats).await
    }

    /// Ends every call and leaves the room.
    pub async fn leave(&self) {
        let _ = self.ask(Command::Leave).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// We called; waiting for an answer.
    Outgoing,
    /// They called; ringing here.
    Incoming,
    /// Answered; the connection is being made.
    Connecting,
    /// Media flows.
    Connected,
}

struct Leg {
    id: String,
    phase: Phase,
    link: Option<PeerLink>,
    /// Their offer, kept until we answer.
    offer: Option<Sdp>,
    /// Others in the call the inviter told us about, to call once we answer.
    members: Vec<PeerId>,
    /// Candidates that came before the connection existed.
    early: Vec<Option<Candidate>>,
    /// Whether we made the offer (and so make ICE-restart offers).
    offerer: bool,
    since: Instant,
    trouble_since: Option<Instant>,
    restarted_at: Option<Instant>,
    quality: ConnectionQuality,
    sampler: RateSampler,
}

impl Leg {
    fn new(id: String, phase: Phase, offerer: bool) -> Self {
        Self {
            id,
            phase,
            link: None,
            offer: None,
            members: Vec::new(),
            early: Vec::new(),
            offerer,
            since: Instant::now(),
            trouble_since: None,
            restarted_at: None,
            quality: ConnectionQuality::Good,
            sampler: RateSampler::default(),
        }
    }
}

/// How many messages we sent are kept until a resume says whether the server applied them.
const UNACKED: usize = 256;

/// The signaling connection's session: what it takes to resume it after the connection breaks.
struct Link {
    url: String,
    token: String,
    /// The session's id and resume secret, from its `welcome` or `waiting`.
    session: Option<(PeerId, String)>,
    /// The last `seq` received.
    last_seq: u64,
    /// The last `seq` we gave a message.
    sent: u64,
    /// What we sent lately, by its `seq`, until a resume says what the server applied.
    unacked: VecDeque<(u64, String)>,
    backoff: Backoff,
    /// When to connect again: while the connection is down, or after a draining server's
    /// `shutdown`, the time it gave for moving.
    retry_at: Option<tokio::time::Instant>,
}

struct Actor {
    options: Arc<RoomOptions>,
    sink: SignalSink,
    link: Link,
    me: PeerId,
    ice_servers: Vec<IceServer>,
    peers: HashMap<PeerId, PeerInfo>,
    legs: HashMap<PeerId, Leg>,
    call_id: Option<String>,
    sources: Sources,
    audio_out: Arc<AudioOut>,
    app: mpsc::Sender<RoomEvent>,
    link_tx: mpsc::UnboundedSender<(PeerId, u64, LinkEvent)>,
    next_link: u64,
    ticks: u32,
    /// Camera and sound device nodes last seen, to notice hot plugging.
    device_nodes: Vec<String>,
    devices_seen: bool,
    /// Local addresses last seen, to notice a network change.
    addresses: Vec<std::net::IpAddr>,
    /// Whether the room was last told we are in a call.
    announced_in_call: bool,
    /// The error the server sent before closing the connection on purpose.
    closed_by_server: Option<(hearth_proto::ErrorCode, String)>,
    /// Forward encoded pictures to the user (see `RoomOptions::forward_encoded`).
    forwarding: Arc<AtomicBool>,
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_or_never(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Actor {
    async fn run(
        mut self,
        mut stream: SignalStream,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut links: mpsc::UnboundedReceiver<(PeerId, u64, LinkEvent)>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
        let mut signaling_up = true;
        loop {
            let retry_at = self.link.retry_at;
            // Biased, the server's messages first: what it sent before a scheduled move comes
            // due is read before the move is made (a closing error there cancels it; left
            // unread, the engine would resume a replaced or revoked session).
            tokio::select! {
                biased;
                msg = signal::recv(&mut stream), if signaling_up => match msg {
                    Ok(Some((seq, msg))) => {
                        if let Some(seq) = seq {
                            self.link.last_seq = seq;
                        }
                        self.note_session(&msg);
                        self.on_server(msg).await;
                    }
                    _ => {
                        signaling_up = false;
                        // Calls are peer to peer: they go on without the server.
                        match self.closed_by_server.take() {
                            Some((code, message)) => {
                                self.emit(RoomEvent::Disconnected { reason: message, code: Some(code) }).await;
                            }
                            // A draining server closed first: the reconnect its `shutdown`
                            // scheduled stands.
                            None if self.link.retry_at.is_some() => {}
                            None => self.schedule_reconnect().await,
                        }
                    }
                },
                // Also while still connected, after a `shutdown`: the draining server keeps
                // the connection open until its deadline, and its clients leave at the times it
                // spread them over.
                () = sleep_until_or_never(retry_at), if !signaling_up || retry_at.is_some() => {
                    self.link.retry_at = None;
                    if signaling_up {
                        // The move a `shutdown` scheduled (a closing error would have
                        // cancelled it).
                        signaling_up = false;
                        signal::close(&mut self.sink).await;
                    }
                    match self.reconnect().await {
                        Ok(new_stream) => {
                            stream = new_stream;
                            signaling_up = true;
                        }
                        Err(EngineError::Rejected { code, message }) if code.closes_connection() => {
                            self.emit(RoomEvent::Disconnected { reason: message, code: Some(code) }).await;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "reconnecting failed; trying again");
                            self.schedule_reconnect().await;
                        }
                    }
                }
                cmd = commands.recv() => match cmd {
                    Some(Command::Leave(done)) => {
                        self.leave(signaling_up.then_some(&mut stream)).await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.leave(signaling_up.then_some(&mut stream)).await;
                        return;
                    }
                    Some(cmd) => {
                        self.on_command(cmd).await;
                        self.announce_presence().await;
                    }
                },
                Some((peer, link_id, event)) = links.recv() => self.on_link(peer, link_id, event).await,
                _ = tick.tick() => self.on_tick().await,
                _ = stats_tick.tick() => self.emit_stats().await,
            }
        }
    }

    /// Ends every call and leaves the room; the connection (`stream`, when it is up) is then
    /// closed cleanly, so that nothing sent is lost to a reset.
    async fn leave(&mut self, stream: Option<&mut signal::SignalStream>) {
        self.end_all(CallEndReason::HungUp, HangupReason::Ended)
            .await;
        if self.send_server(&ClientMessage::Leave).await.is_ok()
            && let Some(stream) = stream
        {
            signal::close_after_leave(&mut self.sink, stream).await;
        }
    }

    /// Keeps what resumes the session: the id and secret from `welcome` or `waiting`.
    fn note_session(&mut self, msg: &ServerMessage) {
        match msg {
            ServerMessage::Welcome {
                peer,
                resume_secret: Some(secret),
                ..
            }
            | ServerMessage::Waiting {
                peer,
                resume_secret: Some(secret),
                ..
            } => {
                if self.link.session.as_ref().is_some_and(|(p, _)| p != peer) {
                    // A new session: what the old one had not acknowledged is gone with it.
                    self.link.unacked.clear();
                }
                self.link.session = Some((peer.clone(), secret.clone()));
            }
            _ => {}
        }
    }

    /// Sends a message to the server, numbered and kept until a resume acknowledges it.
    async fn send_server(&mut self, msg: &ClientMessage) -> Result<(), EngineError> {
        self.link.sent += 1;
        let seq = self.link.sent;
        let sent = signal::send(&mut self.sink, msg, seq).await;
        // Kept even when sending failed: the connection is down and a resume sends it again.
        let text = match &sent {
            Ok(text) => text.clone(),
            Err(_) => match serde_json::to_string(msg) {
                Ok(t) => hearth_proto::with_seq(&t, seq),
                Err(_) => return sent.map(|_| ()),
            },
        };
        self.link.unacked.push_back((seq, text));
        while self.link.unacked.len() > UNACKED {
            self.link.unacked.pop_front();
        }
        sent.map(|_| ())
    }

    /// Picks when to reconnect, after a jittered backoff, and says so.
    async fn schedule_reconnect(&mut self) {
        let delay = self.link.backoff.next(rand::random::<f64>());
        self.link.retry_at = Some(tokio::time::Instant::now() + delay);
        let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.emit(RoomEvent::Reconnecting {
            attempt: self.link.backoff.attempt(),
            retry_in_ms,
        })
        .await;
    }

    /// Connects again, resuming the session: what the server had not applied is sent again.
    /// When the session could not be resumed, the server's fresh `welcome` (or `waiting`)
    /// comes as for a first join.
    async fn reconnect(&mut self) -> Result<SignalStream, EngineError> {
        let resume = self
            .link
            .session
            .as_ref()
            .map(|(peer, secret)| hearth_proto::Resume {
                peer: peer.clone(),
                secret: secret.clone(),
                last_seq: self.link.last_seq,
            });
        let (sink, stream, (seq, first)) =
            signal::connect(&self.link.url, &self.link.token, resume).await?;
        self.sink = sink;
        self.link.backoff.reset();
        if let Some(seq) = seq {
            self.link.last_seq = seq;
        }
        let resumed = match &first {
            ServerMessage::Resumed {
                acked, snapshot, ..
            } => {
                let acked = *acked;
                self.link.unacked.retain(|(s, _)| *s > acked);
                let again: Vec<String> = self.link.unacked.iter().map(|(_, t)| t.clone()).collect();
                for text in again {
                    signal::send_text(&mut self.sink, text).await?;
                }
                tracing::info!(snapshot, "signaling session resumed");
                true
            }
            _ => {
                tracing::info!("signaling session could not be resumed; joined afresh");
                false
            }
        };
        self.note_session(&first);
        if !resumed {
            if let ServerMessage::Welcome { peer, .. } | ServerMessage::Waiting { peer, .. } =
                &first
            {
                self.me = peer.clone();
            }
            self.on_server(first).await;
        }
        self.emit(RoomEvent::Reconnected { resumed }).await;
        Ok(stream)
    }

    async fn emit(&self, event: RoomEvent) {
        if self.app.send(event).await.is_err() {
            tracing::debug!("nobody is reading room events");
        }
    }

    async fn send_call(&mut self, to: &PeerId, msg: &CallMessage) {
        let data = match serde_json::to_value(msg) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "unserialisable call message");
                return;
            }
        };
        let out = ClientMessage::Signal {
            to: to.clone(),
            data,
        };
        if let Err(e) = self.send_server(&out).await {
            tracing::warn!(error = %e, peer = %to, "could not send a call message");
        }
    }

    async fn on_server(&mut self, msg: ServerMessage) {
        match msg {
            ServerMessage::Welcome {
                peer,
                room,
                role,
                peers,
                ice_servers,
                ..
            } => {
                self.ice_servers = ice_servers;
                self.peers = peers.iter().map(|p| (p.peer.clone(), p.clone())).collect();
                self.emit(RoomEvent::Joined {
                    me: peer,
                    room,
                    role,
                    peers,
                })
                .await;
            }
            ServerMessage::Waiting { position, .. } => {
                self.emit(RoomEvent::Waiting { position }).await;
            }
            ServerMessage::PeerJoined {
                peer,
                name,
                role,
                sub,
            } => {
                let info = PeerInfo {
                    peer,
                    name,
                    role,
                    sub,
                };
                self.peers.insert(info.peer.clone(), info.clone());
                self.emit(RoomEvent::PeerJoined(info.clone())).await;
                if self.announced_in_call {
                    self.send_call(&info.peer, &CallMessage::Presence { in_call: true })
                        .await;
                }
            }
            ServerMessage::PeerLeft { peer } => {
                self.peers.remove(&peer);
                self.end_leg(&peer, CallEndReason::PeerLeft, None).await;
                self.emit(RoomEvent::PeerLeft(peer)).await;
            }
            ServerMessage::Signal { from, data } => {
                match serde_json::from_value::<CallMessage>(data) {
                    Ok(msg) => self.on_call_message(from, msg).await,
                    Err(e) => {
                        tracing::debug!(error = %e, peer = %from, "ignoring a signal that is not a call message")
                    }
                }
            }
            ServerMessage::Error {
                code,
                message,
                peer,
            } => {
                // The code only: the sentence may be a clinician's own words to a patient.
                tracing::warn!(code = code.as_str(), "server error");
                if code.closes_connection() {
                    self.closed_by_server = Some((code, message));
                    // Not to be taken up again, a move a `shutdown` asked for included.
                    self.link.retry_at = None;
                } else {
                    self.emit(RoomEvent::Refused {
                        code,
                        message,
                        peer,
                    })
                    .await;
                }
            }
            ServerMessage::Shutdown { retry_after_ms } => {
                if self.closed_by_server.is_some() {
                    // Closed for good already: no move.
                    return;
                }
                // Reconnect (to another server, through the load balancer) after the delay the
                // server gave. Nothing is said meanwhile: the server is still there, and a
                // move that works is not news for the screen (a failed one is, through
                // `schedule_reconnect`). A second notice (replayed after a resume, say) moves
                // again, which costs a resume and loses nothing.
                tracing::info!(retry_after_ms, "the signaling server is draining; moving");
                self.link.retry_at =
                    Some(tokio::time::Instant::now() + Duration::from_millis(retry_after_ms));
            }
            ServerMessage::Lobby { waiting } => self.emit(RoomEvent::Lobby(waiting)).await,
            ServerMessage::Rules { rules } => self.emit(RoomEvent::Rules(rules)).await,
            ServerMessage::RunCheck { request } => {
                self.emit(RoomEvent::CheckRequested { request }).await;
            }
            other => tracing::debug!(?other, "unhandled server message"),
        }
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Call(peer, done) => {
                // If they are calling us already (both pressed at once), calling them back
                // is answering.
                let ringing_here = self
                    .legs
                    .get(&peer)
                    .is_some_and(|l| l.phase == Phase::Incoming);
                let r = if ringing_here {
                    self.answer(&peer).await
                } else {
                    self.place_call(peer).await
                };
                let _ = done.send(r);
            }
            Command::Answer(peer, done) => {
                let r = self.answer(&peer).await;
                let _ = done.send(r);
            }
            Command::Server(msg, done) => {
                let r = self.send_server(&msg).await;
                let _ = done.send(r);
            }
            Command::Decline(peer, reason, done) => {
                let r = match self.legs.get(&peer) {
                    Some(leg) if leg.phase == Phase::Incoming => {
                        let id = leg.id.clone();
                        self.legs.remove(&peer);
                        self.send_call(&peer, &CallMessage::Decline { id, reason })
                            .await;
                        self.emit(RoomEvent::CallEnded {
                            peer,
                            reason: CallEndReason::Declined,
                        })
                        .await;
                        Ok(())
                    }
                    _ => Err(EngineError::NoCall(peer.to_string())),
                };
                let _ = done.send(r);
            }
            Command::HangUp(Some(peer), done) => {
                let r = if self.legs.contains_key(&peer) {
                    self.end_leg(&peer, CallEndReason::HungUp, Some(HangupReason::Ended))
                        .await;
                    Ok(())
                } else {
                    Err(EngineError::NoCall(peer.to_string()))
                };
                let _ = done.send(r);
            }
            Command::HangUp(None, done) => {
                self.end_all(CallEndReason::HungUp, HangupReason::Ended)
                    .await;
                let _ = done.send(Ok(()));
            }
            Command::Stats(done) => {
                let _ = done.send(self.collect_stats().await);
            }
            Command::CheckRelay(done) => {
                // Runs beside the room: gathering may take seconds.
                let servers = self.ice_servers.clone();
                let addrs = self.options.bind_addrs.clone();
                tokio::spawn(async move {
                    let r = crate::peer::relay_check(&servers, addrs, Duration::from_secs(5)).await;
                    let _ = done.send(r);
                });
            }
            Command::SetMuted(muted, done) => {
                self.sources.controls().set_muted(muted);
                let _ = done.send(());
            }
            Command::SetSelfViewWidth(width, done) => {
                self.sources.controls().set_preview_width(width);
                let _ = done.send(());
            }
            Command::RequestKeyframe(peer, done) => {
                if let Some(link) = self.legs.get(&peer).and_then(|l| l.link.as_ref()) {
                    link.shared.keyframe_needed.store(true, Ordering::Relaxed);
                }
                let _ = done.send(());
            }
            Command::SetForwarding(on, done) => {
                let on = on && !self.options.forward_encoded.is_empty();
                if self.forwarding.swap(on, Ordering::Relaxed) != on {
                    for link in self.legs.values().filter_map(|l| l.link.as_ref()) {
                        link.shared.keyframe_needed.store(true, Ordering::Relaxed);
                    }
                }
                let _ = done.send(());
            }
            Command::SetCameraOff(off, done) => {
                self.sources.controls().set_camera_off(off);
                let legs: Vec<(PeerId, String)> = self
                    .legs
                    .iter()
                    .filter(|(_, l)| l.phase != Phase::Incoming)
                    .map(|(p, l)| (p.clone(), l.id.clone()))
                    .collect();
                for (peer, id) in legs {
                    self.send_call(
                        &peer,
                        &CallMessage::Media {
                            id,
                            video_paused: off,
                            camera_off: off,
                        },
                    )
                    .await;
                }
                let _ = done.send(());
            }
            Command::Leave(_) => {}
        }
    }

    async fn new_link(&mut self, peer: &PeerId) -> Result<PeerLink, EngineError> {
        let id = self.next_link;
        self.next_link += 1;
        let context = LinkContext {
            options: self.options.clone(),
            ice_servers: &self.ice_servers,
            sources: &self.sources,
            audio_out: self.audio_out.clone(),
            app: self.app.clone(),
            to_room: self.link_tx.clone(),
            forwarding: self.forwarding.clone(),
        };
        PeerLink::new(peer.clone(), id, &context).await
    }

    async fn place_call(&mut self, peer: PeerId) -> Result<(), EngineError> {
        if !self.peers.contains_key(&peer) {
            return Err(EngineError::UnknownPeer(peer.to_string()));
        }
        if self.legs.contains_key(&peer) {
            return Err(EngineError::NoCall(peer.to_string()));
        }
        if self.legs.len() + 1 >= MAX_CALL_SIZE {
            return Err(EngineError::CallFull);
        }
        let id = self
            .call_id
            .get_or_insert_with(|| uuid::Uuid::new_v4().to_string())
            .clone();
        let link = self.new_link(&peer).await?;
        let offer = link.create_offer(false).await?;
        let members: Vec<String> = self
            .legs
            .iter()
            .filter(|(_, l)| l.id == id && matches!(l.phase, Phase::Connecting | Phase::Connected))
            .map(|(p, _)| p.to_string())
            .collect();
        let mut leg = Leg::new(id.clone(), Phase::Outgoing, true);
        leg.link = Some(link);
        self.legs.insert(peer.clone(), leg);
        self.send_call(
            &peer,
            &CallMessage::Invite {
                id,
                sdp: offer,
                members,
            },
        )
        .await;
        Ok(())
    }

    async fn answer(&mut self, peer: &PeerId) -> Result<(), EngineError> {
        let Some(leg) = self.legs.get(peer) else {
            return Err(EngineError::NoCall(peer.to_string()));
        };
        if leg.phase != Phase::Incoming {
            return Err(EngineError::NoCall(peer.to_string()));
        }
        let Some(offer) = leg.offer.clone() else {
            return Err(EngineError::NoCall(peer.to_string()));
        };
        let id = leg.id.clone();
        let link = self.new_link(peer).await?;
        let answer = match link.accept_offer(&offer).await {
            Ok(a) => a,
            Err(e) => {
                link.close().await;
                self.legs.remove(peer);
                self.send_call(
                    peer,
                    &CallMessage::Hangup {
                        id,
                        reason: HangupReason::Failed,
                    },
                )
                .await;
                return Err(e);
            }
        };
        let Some(leg) = self.legs.get_mut(peer) else {
            link.close().await;
            return Err(EngineError::NoCall(peer.to_string()));
        };
        for c in leg.early.drain(..) {
            if let Err(e) = link.add_candidate(c).await {
                tracing::debug!(error = %e, "early candidate rejected");
            }
        }
        leg.link = Some(link);
        leg.phase = Phase::Connecting;
        leg.offer = None;
        leg.since = Instant::now();
        let members = std::mem::take(&mut leg.members);
        self.call_id = Some(id.clone());
        self.send_call(peer, &CallMessage::Answer { id, sdp: answer })
            .await;
        // A mesh call: connect to everyone else already in it.
        for member in members {
            if member != self.me
                && !self.legs.contains_key(&member)
                && let Err(e) = self.place_call(member.clone()).await
            {
                tracing::warn!(error = %e, peer = %member, "could not join a call member");
            }
        }
        Ok(())
    }

    async fn on_call_message(&mut self, from: PeerId, msg: CallMessage) {
        let same_leg = self
            .legs
            .get(&from)
            .is_some_and(|l| Some(l.id.as_str()) == msg.id());
        match msg {
            CallMessage::Invite { id, sdp, members } => {
                if sdp.kind != SdpKind::Offer {
                    return;
                }
                let mut glare = false;
                if let Some(existing) = self.legs.get(&from) {
                    // Both called each other at once: the call from the lower id wins, and
                    // the other side takes it as answered, since it wanted the call too.
                    if existing.phase == Phase::Outgoing && self.me.as_str() > from.as_str() {
                        if let Some(leg) = self.legs.remove(&from)
                            && let Some(link) = leg.link
                        {
                            link.close().await;
                        }
                        if !self.legs.values().any(|l| l.phase != Phase::Incoming) {
                            self.call_id = None;
                        }
                        glare = true;
                    } else {
                        return;
                    }
                }
                let in_other_call = self.call_id.as_ref().is_some_and(|c| *c != id)
                    && self.legs.values().any(|l| l.phase != Phase::Incoming);
                // Someone else's call is ringing here already: one call rings at a time, and
                // the second caller hears "busy" at once rather than ringing until no answer.
                let ringing_other = self
                    .legs
                    .iter()
                    .any(|(p, l)| *p != from && l.phase == Phase::Incoming && l.id != id);
                if in_other_call || ringing_other || self.legs.len() + 1 >= MAX_CALL_SIZE {
                    self.send_call(
                        &from,
                        &CallMessage::Decline {
                            id,
                            reason: DeclineReason::Busy,
                        },
                    )
                    .await;
                    return;
                }
                let mut leg = Leg::new(id.clone(), Phase::Incoming, false);
                leg.offer = Some(sdp);
                leg.members = members.into_iter().map(PeerId::from).collect();
                let joining_our_call = glare
                    || (self.call_id.as_deref() == Some(id.as_str())
                        && self
                            .legs
                            .values()
                            .any(|l| l.id == id && l.phase != Phase::Incoming));
                self.legs.insert(from.clone(), leg);
                if joining_our_call {
                    if let Err(e) = self.answer(&from).await {
                        tracing::warn!(error = %e, peer = %from, "could not join a mesh member");
                    }
                    return;
                }
                self.send_call(&from, &CallMessage::Ringing { id }).await;
                let name = self
                    .peers
                    .get(&from)
                    .map(|p| p.name.clone())
                    .unwrap_or_default();
                self.emit(RoomEvent::IncomingCall { peer: from, name })
                    .await;
            }
            CallMessage::Ringing { .. } if same_leg => {
                self.emit(RoomEvent::Ringing { peer: from }).await;
            }
            CallMessage::Answer { sdp, .. } if same_leg => {
                let Some(leg) = self.legs.get_mut(&from) else {
                    return;
                };
                if leg.phase != Phase::Outgoing {
                    return;
                }
                leg.phase = Phase::Connecting;
                leg.since = Instant::now();
                let result = match &leg.link {
                    Some(link) => link.accept_answer(&sdp).await,
                    None => Ok(()),
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, peer = %from, "the answer could not be applied");
                    self.end_leg(
                        &from,
                        CallEndReason::Failed(e.to_string()),
                        Some(HangupReason::Failed),
                    )
                    .await;
                }
            }
            CallMessage::Decline { reason, .. } if same_leg => {
                let reason = match reason {
                    DeclineReason::Busy => CallEndReason::Busy,
                    DeclineReason::Declined => CallEndReason::Declined,
                    DeclineReason::Unavailable => CallEndReason::Unavailable,
                };
                self.end_leg(&from, reason, None).await;
            }
            CallMessage::Candidate { candidate, .. } if same_leg => {
                let Some(leg) = self.legs.get_mut(&from) else {
                    return;
                };
                match &leg.link {
                    Some(link) => {
                        if let Err(e) = link.add_candidate(candidate).await {
                            tracing::debug!(error = %e, "remote candidate rejected");
                        }
                    }
                    None => leg.early.push(candidate),
                }
            }
            CallMessage::Renegotiate { id, sdp } if same_leg => {
                let Some(link) = self.legs.get(&from).and_then(|l| l.link.as_ref()) else {
                    return;
                };
                match sdp.kind {
                    SdpKind::Offer => match link.accept_offer(&sdp).await {
                        Ok(answer) => {
                            self.send_call(&from, &CallMessage::Renegotiate { id, sdp: answer })
                                .await
                        }
                        Err(e) => tracing::warn!(error = %e, "renegotiation offer rejected"),
                    },
                    SdpKind::Answer => {
                        if let Err(e) = link.accept_answer(&sdp).await {
                            tracing::warn!(error = %e, "renegotiation answer rejected");
                        }
                    }
                }
            }
            CallMessage::Media {
                video_paused,
                camera_off,
                ..
            } if same_leg => {
                self.emit(RoomEvent::RemoteVideoPaused {
                    peer: from,
                    paused: video_paused || camera_off,
                    camera_off,
                })
                .await;
            }
            CallMessage::Presence { in_call } => {
                if self.peers.contains_key(&from) {
                    self.emit(RoomEvent::PeerPresence {
                        peer: from,
                        in_call,
                    })
                    .await;
                }
            }
            CallMessage::Hangup { reason, .. } if same_leg => {
                let incoming = self
                    .legs
                    .get(&from)
                    .is_some_and(|l| l.phase == Phase::Incoming);
                let reason = match reason {
                    _ if incoming => CallEndReason::Cancelled,
                    HangupReason::Failed => CallEndReason::ConnectionLost,
                    HangupReason::Timeout => CallEndReason::NoAnswer,
                    HangupReason::Ended | HangupReason::Cancelled => CallEndReason::RemoteHungUp,
                };
                self.end_leg(&from, reason, None).await;
            }
            other => {
                tracing::debug!(peer = %from, call = other.id(), "call message for no current call")
            }
        }
    }

    async fn on_link(&mut self, peer: PeerId, link_id: u64, event: LinkEvent) {
        let Some(leg) = self.legs.get_mut(&peer) else {
            return;
        };
        if leg.link.as_ref().is_none_or(|l| l.id != link_id) {
            return;
        }
        match event {
            LinkEvent::Candidate(candidate) => {
                let id = leg.id.clone();
                self.send_call(&peer, &CallMessage::Candidate { id, candidate })
                    .await;
            }
            LinkEvent::VideoPaused(paused) => {
                let id = leg.id.clone();
                let quality = if paused {
                    ConnectionQuality::Weak
                } else {
                    ConnectionQuality::Good
                };
                leg.quality = quality;
                let camera_off = self.sources.controls().camera_off();
                self.send_call(
                    &peer,
                    &CallMessage::Media {
                        id,
                        video_paused: paused || camera_off,
                        camera_off,
                    },
                )
                .await;
                self.emit(RoomEvent::VideoPaused {
                    peer: peer.clone(),
                    paused,
                })
                .await;
                self.emit(RoomEvent::Quality { peer, quality }).await;
            }
            LinkEvent::State(state) => {
                tracing::debug!(peer = %peer, ?state, "connection state");
                match state {
                    RTCPeerConnectionState::Connected => {
                        let first = leg.phase != Phase::Connected;
                        leg.phase = Phase::Connected;
                        leg.trouble_since = None;
                        leg.restarted_at = None;
                        if let Some(link) = leg.link.as_mut() {
                            link.start_sending(&self.sources).await;
                        }
                        let quality_changed = leg.quality != ConnectionQuality::Good;
                        leg.quality = ConnectionQuality::Good;
                        if first {
                            self.emit(RoomEvent::CallConnected { peer: peer.clone() })
                                .await;
                        }
                        if quality_changed {
                            self.emit(RoomEvent::Quality {
                                peer,
                                quality: ConnectionQuality::Good,
                            })
                            .await;
                        }
                    }
                    RTCPeerConnectionState::Disconnected | RTCPeerConnectionState::Failed => {
                        leg.trouble_since.get_or_insert_with(Instant::now);
                        if leg.quality != ConnectionQuality::Reconnecting {
                            leg.quality = ConnectionQuality::Reconnecting;
                            self.emit(RoomEvent::Quality {
                                peer: peer.clone(),
                                quality: ConnectionQuality::Reconnecting,
                            })
                            .await;
                        }
                        if state == RTCPeerConnectionState::Failed {
                            self.restart_ice(&peer).await;
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The offerer restarts ICE; the other side answers the new offer.
    async fn restart_ice(&mut self, peer: &PeerId) {
        let Some(leg) = self.legs.get_mut(peer) else {
            return;
        };
        if !leg.offerer
            || leg
                .restarted_at
                .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
        {
            return;
        }
        leg.restarted_at = Some(Instant::now());
        let id = leg.id.clone();
        let Some(link) = leg.link.as_ref() else {
            return;
        };
        match link.create_offer(true).await {
            Ok(sdp) => {
                tracing::info!(peer = %peer, "restarting ICE");
                if let Some(link) = self.legs.get(peer).and_then(|l| l.link.as_ref()) {
                    link.shared
                        .counters
                        .ice_restarts
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                self.send_call(peer, &CallMessage::Renegotiate { id, sdp })
                    .await;
            }
            Err(e) => tracing::warn!(error = %e, "ICE restart failed"),
        }
    }

    /// A network change (Wi-Fi to cable, a new address after a router reboot) makes the
    /// current ICE pairs stale: the offerer of each connected call restarts ICE at once,
    /// rather than waiting for the old path to time out.
    async fn watch_network(&mut self) {
        let mut addrs: Vec<std::net::IpAddr> = match if_addrs::get_if_addrs() {
            Ok(list) => list.into_iter().map(|i| i.ip()).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "no interface list");
                return;
            }
        };
        addrs.sort();
        if addrs == self.addresses {
            return;
        }
        let first = self.addresses.is_empty();
        self.addresses = addrs;
        if first {
            return;
        }
        tracing::info!("network changed; restarting ICE");
        let peers: Vec<PeerId> = self
            .legs
            .iter()
            .filter(|(_, l)| l.phase == Phase::Connected && l.offerer)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in peers {
            if let Some(leg) = self.legs.get_mut(&peer) {
                leg.restarted_at = None;
            }
            self.restart_ice(&peer).await;
        }
    }

    async fn watch_devices(&mut self) {
        let nodes = crate::media::devices::device_nodes(std::path::Path::new("/dev"));
        if nodes == self.device_nodes {
            return;
        }
        let first = self.device_nodes.is_empty() && !self.devices_seen;
        self.device_nodes = nodes;
        self.devices_seen = true;
        if first {
            return;
        }
        match tokio::task::spawn_blocking(crate::media::devices::list).await {
            Ok(list) => self.emit(RoomEvent::DevicesChanged(list)).await,
            Err(e) => tracing::warn!(error = %e, "device listing failed"),
        }
    }

    /// Tells everyone in the room when we went into a call or came out of one.
    async fn announce_presence(&mut self) {
        let in_call = self.legs.values().any(|l| l.phase != Phase::Incoming);
        if in_call == self.announced_in_call {
            return;
        }
        self.announced_in_call = in_call;
        let peers: Vec<PeerId> = self.peers.keys().cloned().collect();
        for peer in peers {
            self.send_call(&peer, &CallMessage::Presence { in_call })
                .await;
        }
    }

    async fn on_tick(&mut self) {
        self.ticks = self.ticks.wrapping_add(1);
        self.announce_presence().await;
        if self.ticks.is_multiple_of(8) {
            self.watch_devices().await;
            self.watch_network().await;
        }
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut restart = Vec::new();
        for (peer, leg) in &self.legs {
            match leg.phase {
                Phase::Outgoing if now.duration_since(leg.since) > self.options.ring_timeout => {
                    expired.push((
                        peer.clone(),
                        CallEndReason::NoAnswer,
                        Some(HangupReason::Timeout),
                    ));
                }
                Phase::Incoming
                    if now.duration_since(leg.since)
                        > self.options.ring_timeout + Duration::from_secs(5) =>
                {
                    expired.push((peer.clone(), CallEndReason::Cancelled, None));
                }
                Phase::Connecting
                    if now.duration_since(leg.since) > self.options.reconnect_timeout =>
                {
                    expired.push((
                        peer.clone(),
                        CallEndReason::Failed("the connection could not be made".into()),
                        Some(HangupReason::Failed),
                    ));
                }
                Phase::Connected => {
                    if let Some(t) = leg.trouble_since {
                        let down = now.duration_since(t);
                        if down > self.options.reconnect_timeout {
                            expired.push((
                                peer.clone(),
                                CallEndReason::ConnectionLost,
                                Some(HangupReason::Failed),
                            ));
                        } else if down > Duration::from_secs(3) {
                            restart.push(peer.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        for peer in restart {
            self.restart_ice(&peer).await;
        }
        for (peer, reason, tell) in expired {
            self.end_leg(&peer, reason, tell).await;
        }
    }

    async fn end_leg(&mut self, peer: &PeerId, reason: CallEndReason, tell: Option<HangupReason>) {
        let Some(leg) = self.legs.remove(peer) else {
            return;
        };
        if let Some(mut why) = tell {
            if leg.phase == Phase::Outgoing && why == HangupReason::Ended {
                why = HangupReason::Cancelled;
            }
            if leg.phase == Phase::Incoming {
                self.send_call(
                    peer,
                    &CallMessage::Decline {
                        id: leg.id.clone(),
                        reason: DeclineReason::Declined,
                    },
                )
                .await;
            } else {
                self.send_call(
                    peer,
                    &CallMessage::Hangup {
                        id: leg.id.clone(),
                        reason: why,
                    },
                )
                .await;
            }
        }
        if let Some(link) = &leg.link {
            link.close().await;
        }
        self.audio_out.remove(peer);
        if !self.legs.values().any(|l| l.phase != Phase::Incoming) {
            self.call_id = None;
        }
        self.emit(RoomEvent::CallEnded {
            peer: peer.clone(),
            reason,
        })
        .await;
    }

    async fn end_all(&mut self, reason: CallEndReason, tell: HangupReason) {
        let peers: Vec<PeerId> = self.legs.keys().cloned().collect();
        for peer in peers {
            self.end_leg(&peer, reason.clone(), Some(tell)).await;
        }
    }

    async fn collect_stats(&mut self) -> CallStats {
        let mut peers = Vec::new();
        for leg in self.legs.values_mut() {
            if let (Phase::Connected, Some(link)) = (leg.phase, &leg.link) {
                peers.push(
                    crate::stats::peer_stats(
                        self.audio_out.stats(&link.shared.peer),
                        &link.shared,
                        &link.pc,
                        &mut leg.sampler,
                        leg.quality,
                    )
                    .await,
                );
            }
        }
        peers.sort_by(|a, b| a.peer.as_str().cmp(b.peer.as_str()));
        CallStats { peers }
    }

    async fn emit_stats(&mut self) {
        if !self.legs.values().any(|l| l.phase == Phase::Connected) {
            return;
        }
        let stats = self.collect_stats().await;
        let _ = self.app.try_send(RoomEvent::Stats(stats));
    }
}

//! A signed-in device: its settings, its room on the server, its calls, and the [`AppState`]
//! every screen is drawn from. One actor task owns all of it; front ends send it commands
//! through a [`Session`] handle and watch the state. Pictures go to a [`VideoSink`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hearth_engine::{
    AudioInput, AudioOutput, CallStats, EncodedVideoFrame, I420Frame, PeerId, RemoteVideoFrame,
    Room, RoomEvent, RoomOptions, VideoInput,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::api::Api;
use crate::contacts::{RoomPeer, contacts};
use crate::error::{ClientError, ErrorCode};
use crate::invitation::{Identity, Invitation, Pasted};
use crate::precheck::PrecheckReport;
use crate::settings::{
    DeviceChoice, KnownContact, Language, ResidentOptions, SeenResident, Settings, SettingsStore,
};
use crate::state::{
    AppState, CallPeer, CallView, Connection, Device, DeviceKind, EndReason, Me, Notice, Quality,
    VideoState, WaitingPatient,
};
use hearth_engine::Backoff;
use hearth_proto::Role;
use hearth_proto::care::{CheckResult, Rules};

/// Where pictures go (the desktop app sends them to its page).
pub trait VideoSink: Send + Sync + 'static {
    /// A decoded picture from `peer`, at the moment it should be shown (lip sync done).
    fn remote(&self, peer: &str, frame: &I420Frame);
    /// A still-encoded picture from `peer` (when `RoomOptions::forward_encoded` names its
    /// codec), at the moment it should be decoded and shown. Frames come in order with
    /// consecutive `seq`; a sink that loses one should ask for a keyframe
    /// ([`Session::request_keyframe`]).
    fn remote_encoded(&self, frame: &EncodedVideoFrame);
    /// Our own picture, small (the self-view).
    fn local(&self, frame: &I420Frame);
}

/// How a session runs.
pub struct SessionOptions {
    /// Where the settings file lives.
    pub data_dir: PathBuf,
    /// The engine's options; the devices in them are replaced by the settings' choice.
    pub room: RoomOptions,
    /// Camera capture size and rate.
    pub camera: (u32, u32, u32),
    /// Where pictures go.
    pub video: Arc<dyn VideoSink>,
    /// Started as a kiosk (`hearth --kiosk`): kiosk mode whatever the settings say, until
    /// staff's rules say otherwise.
    pub kiosk: bool,
}

impl std::fmt::Debug for SessionOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionOptions")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// How long the "call ended" screen stays.
const ENDED_SHOWN: Duration = Duration::from_secs(4);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Photos larger than this are not shown (a tile does not need more).
const MAX_PHOTO_BYTES: u64 = 8 * 1024 * 1024;
/// Device notices kept.
const MAX_NOTICES: usize = 3;

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

enum Command {
    AcceptInvitation(String, Option<String>, Reply<Identity>),
    ForgetInvitation(Reply<()>),
    Call(String, Reply<()>),
    Answer(String, Reply<()>),
    Decline(String, Reply<()>),
    HangUp(Reply<()>),
    SetMuted(bool, Reply<()>),
    SetCameraOff(bool, Reply<()>),
    SetLanguage(Language, Reply<()>),
    SetDevices(DeviceChoice, Reply<()>),
    SetResidentOptions(ResidentOptions, Reply<()>),
    Settings(oneshot::Sender<Settings>),
    Stats(oneshot::Sender<Option<CallStats>>),
    Precheck(Reply<PrecheckReport>),
    RequestKeyframe(String),
    DecodeVideoHere,
    SelfViewWidth(u32),
    Admit(String, Reply<()>),
    Deny(String, Option<String>, Reply<()>),
    AdmitNext(Reply<Option<String>>),
    Invitation(Reply<Option<Invitation>>),
    DismissNotice(u32),
    Leave(oneshot::Sender<()>),
}

/// A handle on the running session. Cheap to clone.
#[derive(Clone)]
pub struct Session {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<AppState>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

fn closed() -> ClientError {
    ClientError::new(ErrorCode::Internal, "Hearth is shutting down.")
}

impl Session {
    /// Clinicians: lets `peer` in from the waiting room and calls them into the consult (into
    /// the current call, when there is one).
    pub async fn admit(&self, peer: String) -> Result<(), ClientError> {
        self.ask(|tx| Command::Admit(peer, tx)).await
    }

    /// Clinicians: turns `peer` away from the waiting room; `reason` is what they read.
    pub async fn deny(&self, peer: String, reason: Option<String>) -> Result<(), ClientError> {
        self.ask(|tx| Command::Deny(peer, reason, tx)).await
    }

    /// Clinicians: ends the current consult and admits the next connected patient in one
    /// action. Returns the admitted peer, or `None` when nobody is waiting.
    pub async fn admit_next(&self) -> Result<Option<String>, ClientError> {
        self.ask(Command::AdmitNext).await
    }

    /// The HTTP API of this device's server, signed with its invitation (staff and clinician
    /// screens).
    pub async fn api(&self) -> Result<Api, ClientError> {
        let invitation = self.ask(Command::Invitation).await?.ok_or_else(|| {
            ClientError::new(ErrorCode::NotSetUp, "This device has no invitation yet.")
        })?;
        Api::new(&invitation)
    }

    /// Loads the settings and starts: connects at once when the device has an invitation.
    /// Must be called inside a Tokio runtime.
    pub fn start(options: SessionOptions) -> Self {
        let store = SettingsStore::in_dir(&options.data_dir);
        let loaded = store.load();
        let mut state = AppState {
            language: loaded.settings.language,
            kiosk: options.kiosk || loaded.settings.resident.kiosk,
            ..AppState::default()
        };
        if loaded.set_aside.is_some() {
            state.connection = Connection::SetupNeeded {
                error: Some(ClientError::new(
                    ErrorCode::SettingsUnreadable,
                    "This device's settings could not be read, so they were set aside. Enter the invitation again.",
                )),
            };
        }
        let (state_tx, state_rx) = watch::channel(state.clone());
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (connected_tx, connected_rx) = mpsc::unbounded_channel();
        let (video_tx, video_rx) = mpsc::channel(PICTURES_HELD);
        let (checks_tx, checks_rx) = mpsc::unbounded_channel();
        tokio::spawn(present_video(video_rx, options.video.clone()));
        let actor = Actor {
            store,
            settings: loaded.settings,
            room_options: options.room,
            camera: options.camera,
            video: options.video,
            video_tx,
            state,
            state_tx,
            room: None,
            events: None,
            generation: 0,
            connected_tx,
            retry_at: None,
            backoff: Backoff::default(),
            last_error: None,
            peers: Vec::new(),
            reconnect_after_call: false,
            self_view_width: None,
            ended_at: None,
            next_notice: 1,
            stats: None,
            rules: None,
            admitted: Vec::new(),
            checks_tx,
            checking: false,
            check_requests: Vec::new(),
            before_reconnect: None,
            awaiting_consult: false,
            let_in: false,
        };
        tokio::spawn(actor.run(cmd_rx, connected_rx, checks_rx));
        Self {
            commands: cmd_tx,
            state: state_rx,
        }
    }

    /// The state now.
    pub fn state(&self) -> AppState {
        self.state.borrow().clone()
    }

    /// Every change of state, as it happens.
    pub fn watch(&self) -> watch::Receiver<AppState> {
        self.state.clone()
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Takes an invitation link or code (with its server address when it is a bare code),
    /// keeps it and signs in with it.
    pub async fn accept_invitation(
        &self,
        input: String,
        server: Option<String>,
    ) -> Result<Identity, ClientError> {
        self.ask(|tx| Command::AcceptInvitation(input, server, tx))
            .await
    }

    /// Signs out and forgets the invitation (setup starts again).
    pub async fn forget_invitation(&self) -> Result<(), ClientError> {
        self.ask(Command::ForgetInvitation).await
    }

    /// Calls the contact with this key.
    pub async fn call(&self, contact: String) -> Result<(), ClientError> {
        self.ask(|tx| Command::Call(contact, tx)).await
    }

    /// Answers the call from `peer`.
    pub async fn answer(&self, peer: String) -> Result<(), ClientError> {
        self.ask(|tx| Command::Answer(peer, tx)).await
    }

    /// Declines the call from `peer`.
    pub async fn decline(&self, peer: String) -> Result<(), ClientError> {
        self.ask(|tx| Command::Decline(peer, tx)).await
    }

    /// Ends the call (or stops calling).
    pub async fn hang_up(&self) -> Result<(), ClientError> {
        self.ask(Command::HangUp).await
    }

    /// Mutes or unmutes the microphone.
    pub async fn set_muted(&self, muted: bool) -> Result<(), ClientError> {
        self.ask(|tx| Command::SetMuted(muted, tx)).await
    }

    /// Asks `peer` for a keyframe: the sink's decoder of encoded pictures lost its place
    /// (it started late, a frame went missing, or it failed). At most one request a second
    /// goes out.
    pub fn request_keyframe(&self, peer: String) {
        let _ = self.commands.send(Command::RequestKeyframe(peer));
    }

    /// The sink cannot decode encoded pictures (no decoder for the codec, or it keeps
    /// failing): decode them in the engine and send decoded ones, from now on and for every
    /// later connection of this session.
    pub fn decode_video_here(&self) {
        let _ = self.commands.send(Command::DecodeVideoHere);
    }

    /// How wide, in pixels, the page shows the self-view: its pictures are made that wide
    /// (within bounds), now and in later calls.
    pub fn set_self_view_width(&self, width: u32) {
        let _ = self.commands.send(Command::SelfViewWidth(width));
    }

    /// Turns the camera's picture off or on.
    pub async fn set_camera_off(&self, off: bool) -> Result<(), ClientError> {
        self.ask(|tx| Command::SetCameraOff(off, tx)).await
    }

    /// Chooses the screens' language and keeps it.
    pub async fn set_language(&self, language: Language) -> Result<(), ClientError> {
        self.ask(|tx| Command::SetLanguage(language, tx)).await
    }

    /// Chooses the devices and keeps the choice; used from the next call on.
    pub async fn set_devices(&self, devices: DeviceChoice) -> Result<(), ClientError> {
        self.ask(|tx| Command::SetDevices(devices, tx)).await
    }

    /// Sets a resident tablet's options and keeps them.
    pub async fn set_resident_options(&self, options: ResidentOptions) -> Result<(), ClientError> {
        self.ask(|tx| Command::SetResidentOptions(options, tx))
            .await
    }

    /// The settings as kept (the token is included: for the shell, never for logs).
    pub async fn settings(&self) -> Result<Settings, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Settings(tx))
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())
    }

    /// The latest call statistics, while in a call.
    pub async fn stats(&self) -> Option<CallStats> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Stats(tx)).ok()?;
        rx.await.ok().flatten()
    }

    /// Runs the pre-call check (not during a call: the devices are in use).
    pub async fn precheck(&self) -> Result<PrecheckReport, ClientError> {
        self.ask(Command::Precheck).await
    }

    /// Removes a notice.
    pub fn dismiss_notice(&self, id: u32) {
        let _ = self.commands.send(Command::DismissNotice(id));
    }

    /// Leaves the room and stops.
    pub async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Leave(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// The contact's photo as a `data:` URL, if the tablet has a readable one.
    pub async fn contact_photo(&self, key: &str) -> Option<String> {
        let settings = self.settings().await.ok()?;
        let path = settings
            .resident
            .contacts
            .into_iter()
            .find(|c| c.name == key)?
            .photo?;
        read_photo(&path).await
    }
}

/// The cameras, microphones and speakers on this machine, plus the synthetic test sources.
pub fn devices() -> Vec<Device> {
    let mut list: Vec<Device> = hearth_engine::media::devices::list()
        .into_iter()
        .map(|d| Device {
            id: d.id,
            name: d.name,
            kind: d.kind.into(),
        })
        .collect();
    list.push(Device {
        id: SYNTHETIC.into(),
        name: "Test pattern".into(),
        kind: DeviceKind::Camera,
    });
    list.push(Device {
        id: SYNTHETIC.into(),
        name: "Test tone".into(),
        kind: DeviceKind::Microphone,
    });
    list
}

/// The device id of the synthetic test sources (a moving pattern, a beep).
pub const SYNTHETIC: &str = "synthetic";
/// The speaker id that plays nothing.
pub const NO_SPEAKER: &str = "none";

async fn read_photo(path: &str) -> Option<String> {
    let mime = match std::path::Path::new(path)
        .extension()?
        .to_str()?
        .to_ascii_lowercase()
        .as_str()
    {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        _ => return None,
    };
    let meta = tokio::fs::metadata(path).await.ok()?;
    if meta.len() > MAX_PHOTO_BYTES {
        tracing::warn!(path, "contact photo too large, not shown");
        return None;
    }
    let bytes = tokio::fs::read(path).await.ok()?;
    Some(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// A remote picture on its way to the sink.
enum Picture {
    Decoded(RemoteVideoFrame),
    Encoded(EncodedVideoFrame),
}

impl Picture {
    fn present_at(&self) -> std::time::Instant {
        match self {
            Self::Decoded(f) => f.present_at,
            Self::Encoded(f) => f.present_at,
        }
    }
}

/// Holds each remote picture (or encoded frame) until its presentation time (lip sync), then
/// hands it on.
async fn present_video(mut rx: mpsc::Receiver<Picture>, sink: Arc<dyn VideoSink>) {
    while let Some(p) = rx.recv().await {
        tokio::time::sleep_until(p.present_at().into()).await;
        match p {
            Picture::Decoded(f) => sink.remote(f.peer.as_str(), &f.frame),
            Picture::Encoded(f) => sink.remote_encoded(&f),
        }
    }
}

/// Pictures held for their lip-sync moment: a second of video, more than any audio delay.
const PICTURES_HELD: usize = 32;

pub(crate) fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

type Connected = (
    u64,
    Result<(Room, mpsc::Receiver<RoomEvent>), hearth_engine::EngineError>,
);

struct Actor {
    store: SettingsStore,
    settings: Settings,
    room_options: RoomOptions,
    camera: (u32, u32, u32),
    video: Arc<dyn VideoSink>,
    video_tx: mpsc::Sender<Picture>,
    state: AppState,
    state_tx: watch::Sender<AppState>,
    room: Option<Room>,
    events: Option<mpsc::Receiver<RoomEvent>>,
    /// Counts sign-ins, so a late answer to an abandoned attempt is recognised.
    generation: u64,
    connected_tx: mpsc::UnboundedSender<Connected>,
    retry_at: Option<tokio::time::Instant>,
    backoff: Backoff,
    last_error: Option<ClientError>,
    peers: Vec<RoomPeer>,
    /// Sign in again when the call ends: the server connection broke during it, or the
    /// devices changed.
    reconnect_after_call: bool,
    /// How wide the page shows the self-view, once it said.
    self_view_width: Option<u32>,
    ended_at: Option<tokio::time::Instant>,
    next_notice: u32,
    stats: Option<CallStats>,
    /// A resident's rules from staff, once the server sent them.
    rules: Option<Rules>,
    /// Peers a clinician admitted, to call as soon as they are in the room.
    admitted: Vec<String>,
    /// Pre-call checks running in the background report here.
    checks_tx: mpsc::UnboundedSender<CheckDone>,
    /// A check is running for this connection.
    checking: bool,
    /// Staff's check requests to answer when the running check (or the call) is over.
    check_requests: Vec<String>,
    /// What the screen showed before the engine started reconnecting to the server.
    before_reconnect: Option<Connection>,
    /// A patient or guest just let in from the waiting room: the clinician's first call is
    /// answered by itself (later calls ring).
    awaiting_consult: bool,
    /// Let in from the waiting room since signing in: a consult that is hung up ends this
    /// device's stay in the room.
    let_in: bool,
}

/// A background pre-call check finished: for sign-in `generation`, answering `request`.
struct CheckDone {
    generation: u64,
    request: Option<String>,
    report: PrecheckReport,
}

async fn next_event(events: &mut Option<mpsc::Receiver<RoomEvent>>) -> Option<RoomEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Actor {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut connected: mpsc::UnboundedReceiver<Connected>,
        mut checks: mpsc::UnboundedReceiver<CheckDone>,
    ) {
        self.connect();
        self.publish();
        loop {
            let clear_ended = self.ended_at.map(|t| t + ENDED_SHOWN);
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    // Stopping: the leave is waited for, so that it is sent before the app ends.
                    Some(Command::Leave(done)) => {
                        self.leave_room().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd) => self.on_command(cmd).await,
                    None => {
                        self.leave_room().await;
                        return;
                    }
                },
                Some((generation, result)) = connected.recv() => {
                    self.on_connected(generation, result).await;
                }
                Some(done) = checks.recv() => self.check_done(done).await,
                event = next_event(&mut self.events) => match event {
                    // Pictures change no state: hand them on without rebuilding and comparing
                    // the state 45 times a second.
                    Some(RoomEvent::RemoteVideo(frame)) => {
                        // Dropped, not queued, when the page cannot keep up.
                        let _ = self.video_tx.try_send(Picture::Decoded(frame));
                        continue;
                    }
                    Some(RoomEvent::RemoteEncodedVideo(frame)) => {
                        // Also dropped when behind: the sink sees the gap in `seq` and
                        // asks for a keyframe.
                        let _ = self.video_tx.try_send(Picture::Encoded(frame));
                        continue;
                    }
                    Some(RoomEvent::LocalVideo(frame)) => {
                        self.video.local(&frame);
                        continue;
                    }
                    Some(e) => self.on_event(e).await,
                    None => {
                        // The room's actor is gone: sign in again.
                        self.events = None;
                        self.room = None;
                        self.retry_later(None);
                    }
                },
                () = until(self.retry_at) => {
                    self.retry_at = None;
                    self.connect();
                }
                () = until(clear_ended) => {
                    self.ended_at = None;
                    if matches!(self.state.call, CallView::Ended { .. }) {
                        self.state.call = CallView::Idle;
                    }
                }
            }
            self.publish();
        }
    }

    fn publish(&mut self) {
        self.state.contacts = self.contact_list();
        let next = self.state.clone();
        self.state_tx.send_if_modified(|current| {
            let mut candidate = next;
            candidate.version = current.version;
            if *current == candidate {
                false
            } else {
                candidate.version = current.version.wrapping_add(1);
                *current = candidate;
                true
            }
        });
        self.state.version = self.state_tx.borrow().version;
    }

    fn contact_list(&self) -> Vec<crate::state::Contact> {
        let Some(me) = &self.state.me else {
            return Vec::new();
        };
        if me.role != Role::Resident {
            // The residents seen here before stay listed while their tablet is off.
            let known: Vec<KnownContact> = self
                .settings
                .residents
                .iter()
                .map(|r| KnownContact {
                    name: r.name.clone(),
                    photo: None,
                    trusted: false,
                    sub: Some(r.sub.clone()),
                })
                .collect();
            return contacts(me.role, &self.peers, &known, None, |_| false);
        }
        match self.rules.as_ref().and_then(|r| r.callers.as_ref()) {
            // Staff decided who may call: those people, with the photos this tablet has.
            Some(callers) => {
                let known: Vec<KnownContact> = callers
                    .iter()
                    .map(|c| KnownContact {
                        name: c.name.clone(),
                        photo: self.photo_of(&c.name),
                        trusted: c.auto_answer,
                        sub: Some(c.sub.clone()),
                    })
                    .collect();
                let subs: Vec<String> = callers.iter().map(|c| c.sub.clone()).collect();
                contacts(me.role, &self.peers, &known, Some(&subs), |k| {
                    k.photo.is_some()
                })
            }
            None => contacts(
                me.role,
                &self.peers,
                &self.settings.resident.contacts,
                None,
                |k| k.photo.is_some(),
            ),
        }
    }

    fn photo_of(&self, name: &str) -> Option<String> {
        self.settings
            .resident
            .contacts
            .iter()
            .find(|k| k.name == name)
            .and_then(|k| k.photo.clone())
    }

    /// Keeps the residents in the room in the settings (not on a tablet), so that their tablet
    /// being off later does not take them off the list.
    fn remember_residents(&mut self) {
        if self.my_role() == Some(Role::Resident) {
            return;
        }
        let mut changed = false;
        for p in self.peers.iter().filter(|p| p.role == Role::Resident) {
            let seen = &mut self.settings.residents;
            match seen.iter_mut().find(|r| r.sub == p.sub) {
                Some(r) if r.name == p.name => {}
                Some(r) => {
                    r.name.clone_from(&p.name);
                    changed = true;
                }
                None => {
                    seen.push(SeenResident {
                        name: p.name.clone(),
                        sub: p.sub.clone(),
                    });
                    changed = true;
                }
            }
        }
        if changed && let Err(e) = self.save() {
            tracing::warn!(code = ?e.code, "could not keep the residents seen");
        }
    }

    fn save(&self) -> Result<(), ClientError> {
        self.store.save(&self.settings)
    }

    fn options(&self) -> RoomOptions {
        let (width, height, fps) = self.camera;
        let d = &self.settings.devices;
        let mut o = self.room_options.clone();
        o.video = match d.camera.as_deref() {
            Some(SYNTHETIC) => VideoInput::Synthetic { width, height, fps },
            id => VideoInput::Camera {
                id: id.map(str::to_owned),
                width,
                height,
                fps,
            },
        };
        o.audio = match d.microphone.as_deref() {
            Some(SYNTHETIC) => AudioInput::Tone,
            id => AudioInput::Microphone {
                id: id.map(str::to_owned),
            },
        };
        o.audio_output = match d.speaker.as_deref() {
            Some(NO_SPEAKER) => AudioOutput::None,
            id => AudioOutput::Speaker {
                id: id.map(str::to_owned),
            },
        };
        o.self_view = true;
        o
    }

    /// Starts signing in with the kept invitation (or shows setup without one).
    fn connect(&mut self) {
        self.generation += 1;
        // Admissions and check requests belonged to the last connection.
        self.admitted.clear();
        self.check_requests.clear();
        self.checking = false;
        let Some(invitation) = self.settings.invitation.clone() else {
            self.state.me = None;
            if !matches!(self.state.connection, Connection::SetupNeeded { .. }) {
                self.state.connection = Connection::SetupNeeded { error: None };
            }
            return;
        };
        let identity = invitation.identity().ok();
        self.state.me = identity.map(|i| Me {
            name: i.name,
            role: i.role,
            room: i.room,
            expires_at_ms: i.expires_at_ms,
        });
        if invitation.expired(now_ms()) {
            self.state.connection = Connection::Refused {
                error: ClientError::new(
                    ErrorCode::ExpiredToken,
                    "This device's invitation has expired. Ask the care home for a new one.",
                ),
            };
            return;
        }
        self.state.connection = Connection::Connecting {
            attempt: self.backoff.attempt(),
            error: self.last_error.clone(),
            retry_at_ms: None,
        };
        let options = self.options();
        let generation = self.generation;
        let tx = self.connected_tx.clone();
        tokio::spawn(async move {
            let result = match tokio::time::timeout(
                CONNECT_TIMEOUT,
                Room::connect(&invitation.server, &invitation.token, options),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(hearth_engine::EngineError::Unreachable {
                    url: invitation.server.clone(),
                    detail: "timed out".into(),
                }),
            };
            let _ = tx.send((generation, result));
        });
    }

    async fn on_connected(
        &mut self,
        generation: u64,
        result: Result<(Room, mpsc::Receiver<RoomEvent>), hearth_engine::EngineError>,
    ) {
        if generation != self.generation {
            if let Ok((room, _)) = result {
                // Not waited for: leaving closes the connection cleanly, which may take a
                // moment the screens should not wait.
                tokio::spawn(async move { room.leave().await });
            }
            return;
        }
        match result {
            Ok((room, events)) => {
                tracing::info!(me = %room.me(), "signed in");
                if self.state.muted {
                    let _ = room.set_muted(true).await;
                }
                if self.state.camera_off {
                    let _ = room.set_camera_off(true).await;
                }
                if let Some(width) = self.self_view_width {
                    let _ = room.set_self_view_width(width).await;
                }
                self.room = Some(room);
                self.events = Some(events);
                self.backoff.reset();
                self.last_error = None;
                self.reconnect_after_call = false;
            }
            Err(e) => {
                let error = ClientError::from_engine(&e);
                tracing::info!(code = ?error.code, "sign-in failed");
                if error.needs_new_invitation() || error.code == ErrorCode::Replaced {
                    self.state.connection = Connection::Refused { error };
                } else {
                    self.retry_later(Some(error));
                }
            }
        }
    }

    fn retry_later(&mut self, error: Option<ClientError>) {
        if let Some(e) = error {
            self.last_error = Some(e);
        }
        let delay = self.backoff.next(rand::random::<f64>());
        self.retry_at = Some(tokio::time::Instant::now() + delay);
        self.state.connection = Connection::Connecting {
            attempt: self.backoff.attempt(),
            error: self.last_error.clone(),
            retry_at_ms: Some(now_ms() + delay.as_secs_f64() * 1000.0),
        };
    }

    /// Leaves the room without waiting: leaving closes the connection cleanly, which may take
    /// a moment the screens should not wait.
    fn drop_room(&mut self) {
        if let Some(room) = self.take_room() {
            tokio::spawn(async move { room.leave().await });
        }
    }

    /// Leaves the room and waits until it is done (when stopping, so that the `leave` is sent
    /// before the app ends).
    async fn leave_room(&mut self) {
        if let Some(room) = self.take_room() {
            room.leave().await;
        }
    }

    fn take_room(&mut self) -> Option<Room> {
        self.events = None;
        self.peers.clear();
        self.room.take()
    }

    fn room(&self) -> Result<&Room, ClientError> {
        self.room.as_ref().ok_or_else(|| {
            ClientError::new(
                ErrorCode::ServerUnreachable,
                "Hearth is not connected to its server yet. Please wait a moment.",
            )
        })
    }

    fn peer_name(&self, peer: &str) -> String {
        self.peers
            .iter()
            .find(|p| p.peer == peer)
            .map_or_else(String::new, |p| p.name.clone())
    }

    fn in_call(&self) -> bool {
        !matches!(self.state.call, CallView::Idle | CallView::Ended { .. })
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::AcceptInvitation(input, server, done) => {
                let r = self.accept(&input, server.as_deref()).await;
                let _ = done.send(r);
            }
            Command::ForgetInvitation(done) => {
                self.settings.invitation = None;
                self.settings.residents.clear();
                let r = self.save();
                self.drop_room();
                self.state.call = CallView::Idle;
                self.connect();
                let _ = done.send(r);
            }
            Command::Call(key, done) => {
                let r = self.place_call(&key).await;
                let _ = done.send(r);
            }
            Command::Answer(peer, done) => {
                let r = match self.room() {
                    Ok(room) => room
                        .answer(&PeerId::from(peer.as_str()))
                        .await
                        .map_err(|e| ClientError::from_engine(&e)),
                    Err(e) => Err(e),
                };
                if r.is_ok() {
                    let name = self.peer_name(&peer);
                    self.state.call = CallView::Active {
                        since_ms: now_ms(),
                        peers: vec![call_peer(peer, name, false)],
                    };
                }
                let _ = done.send(r);
            }
            Command::Decline(peer, done) => {
                let r = match self.room() {
                    Ok(room) => room
                        .decline(&PeerId::from(peer))
                        .await
                        .map_err(|e| ClientError::from_engine(&e)),
                    Err(e) => Err(e),
                };
                let _ = done.send(r);
            }
            Command::HangUp(done) => {
                let r = match self.room() {
                    Ok(room) => room
                        .hang_up_all()
                        .await
                        .map_err(|e| ClientError::from_engine(&e)),
                    Err(e) => Err(e),
                };
                let _ = done.send(r);
            }
            Command::SetMuted(muted, done) => {
                self.state.muted = muted;
                if let Some(room) = &self.room {
                    let _ = room.set_muted(muted).await;
                }
                let _ = done.send(Ok(()));
            }
            Command::RequestKeyframe(peer) => {
                if let Some(room) = &self.room {
                    let _ = room.request_keyframe(&PeerId::from(peer)).await;
                }
            }
            Command::SelfViewWidth(width) => {
                self.self_view_width = Some(width);
                if let Some(room) = &self.room {
                    let _ = room.set_self_view_width(width).await;
                }
            }
            Command::DecodeVideoHere => {
                // From now on, for every later connection too: nothing is forwarded.
                if !self.room_options.forward_encoded.is_empty() {
                    tracing::info!("the page cannot decode video; decoding it here");
                    self.room_options.forward_encoded.clear();
                }
                if let Some(room) = &self.room {
                    let _ = room.set_forward_encoded(false).await;
                }
            }
            Command::SetCameraOff(off, done) => {
                self.state.camera_off = off;
                if let Some(room) = &self.room {
                    let _ = room.set_camera_off(off).await;
                }
                let _ = done.send(Ok(()));
            }
            Command::SetLanguage(language, done) => {
                self.settings.language = language;
                self.state.language = language;
                let _ = done.send(self.save());
            }
            Command::SetDevices(devices, done) => {
                let changed = self.settings.devices != devices;
                self.settings.devices = devices;
                let r = self.save();
                // Devices are opened by the room: sign in again with them, unless a call is
                // up (then they are used from the next call).
                if changed && !self.in_call() && self.room.is_some() {
                    self.drop_room();
                    self.connect();
                } else if changed {
                    self.reconnect_after_call |= self.in_call();
                }
                let _ = done.send(r);
            }
            Command::SetResidentOptions(options, done) => {
                self.state.kiosk = options.kiosk;
                self.settings.resident = options;
                let _ = done.send(self.save());
            }
            Command::Settings(done) => {
                let _ = done.send(self.settings.clone());
            }
            Command::Stats(done) => {
                let _ = done.send(self.stats.clone());
            }
            Command::Precheck(done) => {
                if self.in_call() {
                    let _ = done.send(Err(ClientError::new(
                        ErrorCode::Device,
                        "The check can run when the call has ended.",
                    )));
                } else {
                    let options = self.options();
                    let room = match self.state.connection {
                        Connection::Online => self.room.clone(),
                        _ => None,
                    };
                    tokio::spawn(async move {
                        let _ = done.send(Ok(crate::precheck::run(options, room).await));
                    });
                }
            }
            Command::Admit(peer, done) => {
                let r = self.admit(peer).await;
                let _ = done.send(r);
            }
            Command::Deny(peer, reason, done) => {
                let r = match self.room() {
                    Ok(room) => room
                        .deny(&PeerId::from(peer), reason.filter(|r| !r.trim().is_empty()))
                        .await
                        .map_err(|e| ClientError::from_engine(&e)),
                    Err(e) => Err(e),
                };
                let _ = done.send(r);
            }
            Command::AdmitNext(done) => {
                let r = self.admit_next().await;
                let _ = done.send(r);
            }
            Command::Invitation(done) => {
                let _ = done.send(Ok(self.settings.invitation.clone()));
            }
            Command::DismissNotice(id) => self.state.notices.retain(|n| n.id != id),
            Command::Leave(_) => {}
        }
    }

    async fn accept(&mut self, input: &str, server: Option<&str>) -> Result<Identity, ClientError> {
        let invitation = match Pasted::read(input, server)? {
            Pasted::Ready(invitation) => invitation,
            Pasted::Code { server, code } => crate::api::redeem(&server, &code).await?,
        };
        let identity = invitation.identity()?;
        if invitation.expired(now_ms()) {
            return Err(ClientError::new(
                ErrorCode::ExpiredToken,
                "This invitation has expired. Ask the care home for a new one.",
            ));
        }
        self.settings.invitation = Some(invitation);
        self.settings.residents.clear();
        self.save()?;
        self.drop_room();
        self.backoff.reset();
        self.last_error = None;
        self.retry_at = None;
        self.state.call = CallView::Idle;
        self.connect();
        Ok(identity)
    }

    async fn place_call(&mut self, key: &str) -> Result<(), ClientError> {
        let contact = self
            .contact_list()
            .into_iter()
            .find(|c| c.key == key)
            .ok_or_else(|| ClientError::new(ErrorCode::Unavailable, "That person is not here."))?;
        let peer = contact.peer.ok_or_else(|| {
            ClientError::new(
                ErrorCode::Unavailable,
                "That person is not connected right now. Try again later.",
            )
        })?;
        self.room()?
            .call(&PeerId::from(peer.as_str()))
            .await
            .map_err(|e| ClientError::from_engine(&e))?;
        if !matches!(self.state.call, CallView::Active { .. }) {
            self.state.call = CallView::Calling {
                peer,
                name: contact.name,
                ringing: false,
            };
        }
        Ok(())
    }

    /// Staff's rules turn kiosk mode on or off: the window follows `state.kiosk`, and the
    /// choice is kept for the next start.
    fn set_kiosk(&mut self, kiosk: bool) {
        if self.my_role() != Some(Role::Resident) {
            return;
        }
        if self.state.kiosk != kiosk {
            tracing::info!(kiosk, "staff changed kiosk mode");
        }
        self.state.kiosk = kiosk;
        if self.settings.resident.kiosk != kiosk {
            self.settings.resident.kiosk = kiosk;
            if let Err(e) = self.save() {
                tracing::warn!(error = %e.message, "could not keep the kiosk setting");
            }
        }
    }

    fn my_role(&self) -> Option<Role> {
        self.state.me.as_ref().map(|m| m.role)
    }

    /// A resident's tablet answers a trusted caller by itself after a countdown: trusted by
    /// staff's rules when they name callers (by subject), else by the tablet's own list. There
    /// a contact with a subject trusts that invitation only. One given by name alone trusts
    /// the name while nobody else connected carries it, and the first invitation it counts
    /// down for is remembered (trust on first use): from then on only that subject is, so a
    /// stranger invited later under the same name rings as usual.
    fn auto_answer_seconds(&mut self, peer: &str, name: &str) -> Option<u32> {
        if self.my_role() != Some(Role::Resident) {
            return None;
        }
        // An empty subject (a token minted without one) names nobody.
        let sub = self
            .peers
            .iter()
            .find(|p| p.peer == peer)
            .map(|p| p.sub.clone())
            .filter(|s| !s.is_empty());
        let trusted = match self.rules.as_ref().and_then(|r| r.callers.as_ref()) {
            Some(callers) => callers
                .iter()
                .any(|c| c.auto_answer && Some(&c.sub) == sub.as_ref()),
            None => self.settings.resident.auto_answer && self.trusted_on_this_tablet(name, sub),
        };
        trusted.then_some(self.settings.resident.auto_answer_seconds)
    }

    /// Whether the tablet's own list trusts the caller `name` with subject `sub`; a name
    /// trusted for the first time is tied to `sub` and saved.
    fn trusted_on_this_tablet(&mut self, name: &str, sub: Option<String>) -> bool {
        let Some(sub) = sub else {
            return false;
        };
        // Devices of one invitation share its subject; people invited under one name do not.
        let alone = self
            .peers
            .iter()
            .filter(|p| p.name == name)
            .all(|p| p.sub == sub);
        let Some(contact) = self.settings.resident.contacts.iter_mut().find(|c| {
            c.trusted
                && match &c.sub {
                    Some(trusted) => *trusted == sub,
                    None => c.name == name && alone,
                }
        }) else {
            return false;
        };
        if contact.sub.is_none() {
            tracing::info!("a trusted contact is now tied to the invitation first answered");
            contact.sub = Some(sub);
            if let Err(e) = self.save() {
                tracing::warn!(error = %e.message, "could not keep the trusted contact's invitation");
            }
        }
        true
    }

    /// True while a resident's quiet hours last, in this device's local time.
    fn in_quiet_hours(&self) -> bool {
        use chrono::Timelike;
        let Some(quiet) = self.rules.as_ref().and_then(|r| r.quiet_hours.as_ref()) else {
            return false;
        };
        let now = chrono::Local::now();
        let minute = u16::try_from(now.hour() * 60 + now.minute()).unwrap_or(0);
        quiet.contains(minute)
    }

    /// Lets `peer` in and remembers to call them once they are in the room.
    async fn admit(&mut self, peer: String) -> Result<(), ClientError> {
        self.room()?
            .admit(&PeerId::from(peer.as_str()))
            .await
            .map_err(|e| ClientError::from_engine(&e))?;
        self.admitted.retain(|p| *p != peer);
        self.admitted.push(peer);
        Ok(())
    }

    /// Ends the call and admits the first connected waiting patient.
    async fn admit_next(&mut self) -> Result<Option<String>, ClientError> {
        if self.in_call() {
            self.room()?
                .hang_up_all()
                .await
                .map_err(|e| ClientError::from_engine(&e))?;
        }
        let next = self
            .state
            .lobby
            .iter()
            .find(|w| w.connected)
            .map(|w| w.peer.clone());
        if let Some(peer) = &next {
            self.admit(peer.clone()).await?;
        }
        Ok(next)
    }

    /// Runs the pre-call check in the background and reports it to the server when done
    /// (`request` answers staff's remote check). One at a time.
    fn start_check(&mut self, request: Option<String>) {
        if self.in_call() {
            // The devices are in use by the call: report what the last check found, or check
            // when the call is over.
            match (self.state.my_check, self.room.clone(), request) {
                (Some(result), Some(room), request) => {
                    tokio::spawn(async move {
                        let _ = room.report_check(result, request).await;
                    });
                }
                (None, _, Some(request)) => self.check_requests.push(request),
                _ => {}
            }
            return;
        }
        if self.checking {
            // One check at a time; its result answers this request too.
            self.check_requests.extend(request);
            return;
        }
        self.checking = true;
        let options = self.options();
        let room = self.room.clone();
        let generation = self.generation;
        let tx = self.checks_tx.clone();
        tokio::spawn(async move {
            let report = crate::precheck::run(options, room).await;
            let _ = tx.send(CheckDone {
                generation,
                request,
                report,
            });
        });
    }

    async fn check_done(&mut self, done: CheckDone) {
        self.checking = false;
        if done.generation != self.generation {
            return;
        }
        let result: CheckResult = done.report.summary();
        self.state.my_check = Some(result);
        let requests: Vec<Option<String>> = std::iter::once(done.request)
            .chain(self.check_requests.drain(..).map(Some))
            .collect();
        if let Some(room) = &self.room {
            for request in requests {
                if let Err(e) = room.report_check(result, request).await {
                    tracing::warn!(error = %e, "could not report the check");
                }
            }
        }
    }

    fn call_peer_mut(&mut self, peer: &str) -> Option<&mut CallPeer> {
        match &mut self.state.call {
            CallView::Active { peers, .. } => peers.iter_mut().find(|p| p.peer == peer),
            _ => None,
        }
    }

    async fn on_event(&mut self, event: RoomEvent) {
        match event {
            RoomEvent::Joined { room, peers, .. } => {
                // Let in from the waiting room: the clinician's call comes next.
                self.awaiting_consult = matches!(self.state.connection, Connection::Waiting { .. });
                self.let_in |= self.awaiting_consult;
                // A resident's tablet tells staff whether its camera and microphone work.
                if self.my_role() == Some(Role::Resident)
                    && !matches!(self.state.connection, Connection::Online)
                {
                    self.start_check(None);
                }
                self.state.connection = Connection::Online;
                if let Some(me) = &mut self.state.me {
                    me.room = room;
                }
                self.peers = peers
                    .into_iter()
                    .map(|p| RoomPeer {
                        peer: p.peer.into_string(),
                        name: p.name,
                        role: p.role,
                        in_call: false,
                        sub: p.sub,
                    })
                    .collect();
                self.remember_residents();
            }
            RoomEvent::Waiting { position } => {
                // While they wait, patients run their check; the clinician sees the result.
                if !matches!(self.state.connection, Connection::Waiting { .. }) {
                    self.start_check(None);
                }
                self.state.connection = Connection::Waiting {
                    position: u32::try_from(position).unwrap_or(u32::MAX),
                };
            }
            RoomEvent::PeerJoined(p) => {
                self.peers.retain(|q| q.peer != p.peer.as_str());
                let id = p.peer.as_str().to_owned();
                self.peers.push(RoomPeer {
                    peer: p.peer.into_string(),
                    name: p.name,
                    role: p.role,
                    in_call: false,
                    sub: p.sub,
                });
                self.remember_residents();
                // Someone a clinician just admitted: into the consult at once.
                if let Some(i) = self.admitted.iter().position(|a| *a == id) {
                    self.admitted.remove(i);
                    let called = match &self.room {
                        Some(room) => room.call(&PeerId::from(id.as_str())).await,
                        None => Err(hearth_engine::EngineError::Closed),
                    };
                    match called {
                        Ok(()) if !self.in_call() => {
                            self.state.call = CallView::Calling {
                                name: self.peer_name(&id),
                                peer: id,
                                ringing: false,
                            };
                        }
                        Ok(()) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, peer = %id, "could not call an admitted patient");
                            self.notice(ClientError::from_engine(&e));
                        }
                    }
                }
            }
            RoomEvent::PeerLeft(p) => self.peers.retain(|q| q.peer != p.as_str()),
            RoomEvent::PeerPresence { peer, in_call } => {
                if let Some(p) = self.peers.iter_mut().find(|q| q.peer == peer.as_str()) {
                    p.in_call = in_call;
                }
            }
            RoomEvent::IncomingCall { peer, name } if !self.in_call() => {
                let caller = self
                    .peers
                    .iter()
                    .find(|p| p.peer == peer.as_str())
                    .map(|p| p.role);
                if self.my_role() == Some(Role::Resident) && self.in_quiet_hours() {
                    tracing::info!("quiet hours: a call declined without ringing");
                    if let Some(room) = &self.room {
                        let _ = room.decline_unavailable(&peer).await;
                    }
                    return;
                }
                // Someone admitted to a consult is called by the clinician at once: it
                // connects without anyone pressing Answer.
                let admitted_patient = self.awaiting_consult
                    && matches!(self.my_role(), Some(Role::Patient | Role::Guest))
                    && caller == Some(Role::Clinician);
                if admitted_patient && let Some(room) = &self.room {
                    self.awaiting_consult = false;
                    match room.answer(&peer).await {
                        Ok(()) => {
                            self.state.call = CallView::Active {
                                since_ms: now_ms(),
                                peers: vec![call_peer(peer.into_string(), name, false)],
                            };
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "could not join the consult"),
                    }
                }
                self.state.call = CallView::Incoming {
                    auto_answer_seconds: self.auto_answer_seconds(peer.as_str(), &name),
                    peer: peer.into_string(),
                    name,
                };
            }
            RoomEvent::Lobby(waiting) => {
                self.state.lobby = waiting
                    .into_iter()
                    .map(|w| WaitingPatient {
                        peer: w.peer.into_string(),
                        name: w.name,
                        role: w.role,
                        since_ms: w.since as f64,
                        connected: w.connected,
                        check: w.check.map(|c| c.result),
                    })
                    .collect();
            }
            RoomEvent::Rules(rules) => {
                tracing::info!("rules from staff received");
                if let Some(kiosk) = rules.kiosk {
                    self.set_kiosk(kiosk);
                }
                self.rules = Some(rules);
                self.state.quiet = self.in_quiet_hours();
            }
            RoomEvent::CheckRequested { request } => self.start_check(Some(request)),
            RoomEvent::Refused {
                code: hearth_proto::ErrorCode::Forbidden,
                ..
            } if matches!(self.state.call, CallView::Calling { .. }) => {
                // The server refuses this call's signals: the resident's rules do not list us.
                if let CallView::Calling { peer, .. } = &self.state.call {
                    let peer = peer.clone();
                    if let Some(room) = &self.room {
                        let _ = room.hang_up(&PeerId::from(peer.as_str())).await;
                    }
                    self.call_ended(&peer, EndReason::NotAllowed).await;
                }
            }
            RoomEvent::Refused {
                code,
                message,
                peer,
            } => {
                tracing::info!(code = code.as_str(), "the server refused a request");
                use hearth_proto::ErrorCode as S;
                // A refused admission is not to be called when they join. The server names the
                // peer a refusal is about; one that does not answers admissions in order (the
                // oldest still pending: each one let in was taken off the list as they joined).
                let admission = match &peer {
                    Some(p) => {
                        let pending = self.admitted.len();
                        self.admitted.retain(|a| *a != p.as_str());
                        self.admitted.len() < pending
                    }
                    None if matches!(code, S::RoomFull | S::UnknownPeer)
                        && !self.admitted.is_empty() =>
                    {
                        self.admitted.remove(0);
                        true
                    }
                    None => false,
                };
                // Someone gone who was not being let in: the engine's own signals to a peer who
                // has just left (it tells everyone in the room when a call starts or ends), or
                // turning away someone already gone. Nothing for the screen.
                if code == S::UnknownPeer && peer.is_some() && !admission {
                    tracing::debug!("a request about someone who has left the room was refused");
                } else {
                    self.notice(ClientError::new(ErrorCode::from_server(code), message));
                }
            }
            RoomEvent::Ringing { peer } => {
                if let CallView::Calling {
                    peer: p, ringing, ..
                } = &mut self.state.call
                    && *p == peer.as_str()
                {
                    *ringing = true;
                }
            }
            RoomEvent::CallConnected { peer } => {
                let name = self.peer_name(peer.as_str());
                match &mut self.state.call {
                    CallView::Active { peers, .. } => {
                        match peers.iter_mut().find(|p| p.peer == peer.as_str()) {
                            Some(p) => p.connected = true,
                            None => peers.push(call_peer(peer.into_string(), name, true)),
                        }
                    }
                    _ => {
                        self.state.call = CallView::Active {
                            since_ms: now_ms(),
                            peers: vec![call_peer(peer.into_string(), name, true)],
                        };
                    }
                }
            }
            RoomEvent::CallEnded { peer, reason } => {
                self.call_ended(peer.as_str(), (&reason).into()).await
            }
            RoomEvent::Quality { peer, quality } => {
                if let Some(p) = self.call_peer_mut(peer.as_str()) {
                    p.quality = quality.into();
                }
            }
            RoomEvent::VideoPaused { peer, paused } => {
                if let Some(p) = self.call_peer_mut(peer.as_str()) {
                    p.our_video_paused = paused;
                }
            }
            RoomEvent::RemoteVideoPaused {
                peer,
                paused,
                camera_off,
            } => {
                if let Some(p) = self.call_peer_mut(peer.as_str()) {
                    p.their_video = match (paused, camera_off) {
                        (_, true) => VideoState::CameraOff,
                        (true, false) => VideoState::PausedWeak,
                        (false, false) => VideoState::On,
                    };
                }
            }
            RoomEvent::Stats(stats) => {
                for s in &stats.peers {
                    if let Some(p) = self.call_peer_mut(s.peer.as_str()) {
                        p.rtt_ms = s.rtt_ms.map(|r| (r * 10.0).round() / 10.0);
                        p.loss_percent = (s.loss * 1000.0).round() / 10.0;
                        p.receive_kbps = (s.recv_bitrate_bps as f64 / 1000.0).round();
                    }
                }
                self.stats = Some(stats);
            }
            RoomEvent::DeviceError { device, message } => {
                self.push_notice(Some(device.into()), None, message);
            }
            RoomEvent::Disconnected { code, reason } => self.signaling_down(code, reason).await,
            RoomEvent::Reconnecting {
                attempt,
                retry_in_ms,
            } => {
                // The engine resumes the session by itself; a call goes on meanwhile, so only
                // outside a call does the screen say the server is being reached again.
                if !matches!(self.state.connection, Connection::Connecting { .. }) {
                    self.before_reconnect = Some(self.state.connection.clone());
                }
                self.last_error = Some(ClientError::new(
                    ErrorCode::ServerUnreachable,
                    "The connection to the Hearth server was lost. Hearth is reconnecting.",
                ));
                if !self.in_call() {
                    self.state.connection = Connection::Connecting {
                        attempt,
                        error: self.last_error.clone(),
                        retry_at_ms: Some(now_ms() + retry_in_ms as f64),
                    };
                }
            }
            RoomEvent::Reconnected { resumed } => {
                self.last_error = None;
                let before = self.before_reconnect.take();
                // A fresh join set the screen already (Joined or Waiting came first).
                if resumed
                    && matches!(self.state.connection, Connection::Connecting { .. })
                    && let Some(before) = before
                {
                    self.state.connection = before;
                }
            }
            _ => {}
        }
    }

    /// Tells the person of an error (no device concerned).
    fn notice(&mut self, error: ClientError) {
        self.push_notice(None, Some(error.code), error.message);
    }

    /// Adds a notice, dropping the oldest beyond the most kept.
    fn push_notice(
        &mut self,
        device: Option<DeviceKind>,
        code: Option<ErrorCode>,
        message: String,
    ) {
        let id = self.next_notice;
        self.next_notice += 1;
        self.state.notices.push(Notice {
            id,
            device,
            code,
            message,
        });
        let excess = self.state.notices.len().saturating_sub(MAX_NOTICES);
        self.state.notices.drain(..excess);
    }

    async fn call_ended(&mut self, peer: &str, reason: EndReason) {
        let name = self.peer_name(peer);
        let ended = match &mut self.state.call {
            CallView::Incoming { peer: p, name, .. } | CallView::Calling { peer: p, name, .. }
                if p == peer =>
            {
                Some(name.clone())
            }
            CallView::Active { peers, .. } => {
                let gone = peers
                    .iter()
                    .position(|p| p.peer == peer)
                    .map(|i| peers.remove(i));
                match gone {
                    Some(p) if peers.is_empty() => Some(p.name),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(n) = ended {
            // Let in from the waiting room, and the consult hung up rather than broken: leave,
            // or each finished patient would keep a place in the room (it holds four) and the
            // clinician could not let in the next ones.
            let consult_over =
                self.let_in && matches!(reason, EndReason::HungUp | EndReason::RemoteHungUp);
            self.state.call = CallView::Ended {
                name: if n.is_empty() { name } else { n },
                reason,
            };
            self.ended_at = Some(tokio::time::Instant::now());
            self.stats = None;
            // Staff asked for a check during the call: the devices are free now.
            if !self.check_requests.is_empty() && !self.checking {
                let first = self.check_requests.remove(0);
                self.start_check(Some(first));
            }
            if consult_over {
                tracing::info!("the consult is over: leaving the room");
                self.let_in = false;
                self.reconnect_after_call = false;
                self.drop_room();
                self.state.connection = Connection::ConsultOver;
            } else if self.reconnect_after_call {
                self.reconnect_after_call = false;
                self.drop_room();
                self.connect();
            }
        }
    }

    async fn signaling_down(&mut self, code: Option<hearth_proto::ErrorCode>, reason: String) {
        use hearth_proto::ErrorCode as S;
        let error = match code {
            Some(S::Revoked) => Some(ClientError::new(
                ErrorCode::Revoked,
                "The care home withdrew this device's invitation. Ask them for a new one.",
            )),
            // The clinician's own words.
            Some(S::Denied) => Some(ClientError::new(ErrorCode::Denied, reason)),
            Some(S::Replaced) => Some(ClientError::new(
                ErrorCode::Replaced,
                "This invitation is now in use on another device, so this one was signed out.",
            )),
            Some(S::ExpiredToken) => Some(ClientError::new(
                ErrorCode::ExpiredToken,
                "This device's invitation has expired. Ask the care home for a new one.",
            )),
            // Not an expiry: the server no longer accepts it (its secret changed, say).
            Some(S::BadToken) => Some(ClientError::new(
                ErrorCode::BadToken,
                "The server does not accept this device's invitation. Ask the care home for a new one.",
            )),
            _ => None,
        };
        if let Some(error) = error {
            self.drop_room();
            self.state.call = CallView::Idle;
            self.state.connection = Connection::Refused { error };
            return;
        }
        let lost = ClientError::new(
            ErrorCode::ServerUnreachable,
            "The connection to the Hearth server was lost. Hearth is reconnecting.",
        );
        if self.in_call() {
            // The call is peer to peer and goes on; sign in again when it ends.
            self.reconnect_after_call = true;
            self.last_error = Some(lost);
        } else {
            self.drop_room();
            self.retry_later(Some(lost));
        }
    }
}

fn call_peer(peer: String, name: String, connected: bool) -> CallPeer {
    CallPeer {
        peer,
        name,
        connected,
        quality: Quality::Good,
        their_video: VideoState::On,
        our_video_paused: false,
        rtt_ms: None,
        loss_percent: 0.0,
        receive_kbps: 0.0,
    }
}

//! What the screens show: one snapshot of the device's state, sent whole to the page on every
//! change (it is small; pictures and sound go other ways).

use serde::Serialize;
use specta::Type;

use crate::error::{ClientError, ErrorCode};
use crate::settings::Language;
use hearth_proto::Role;
use hearth_proto::care::CheckResult;

/// Everything a screen needs.
#[derive(Debug, Clone, PartialEq, Serialize, Type)]
pub struct AppState {
    /// Goes up by one on every change.
    pub version: u32,
    /// The language chosen for this device.
    pub language: Language,
    /// Whether the device is signed in to its server.
    pub connection: Connection,
    /// Who this device is, once it has an invitation.
    pub me: Option<Me>,
    /// The people this device may call, with presence.
    pub contacts: Vec<Contact>,
    /// The call, if any.
    pub call: CallView,
    /// Our microphone is muted.
    pub muted: bool,
    /// Our camera's picture is off.
    pub camera_off: bool,
    /// Things to tell the person (a device that failed), newest last.
    pub notices: Vec<Notice>,
    /// A resident's tablet in kiosk mode.
    pub kiosk: bool,
    /// Clinicians: who waits in the consult's waiting room, first arrived first.
    pub lobby: Vec<WaitingPatient>,
    /// This device's last pre-call check as reported to the server (a waiting patient sees
    /// it; the clinician does too).
    pub my_check: Option<CheckResult>,
    /// A resident's tablet is in its quiet hours: it does not ring.
    pub quiet: bool,
}

/// Someone in the waiting room, as a clinician sees them.
#[derive(Debug, Clone, PartialEq, Serialize, Type)]
pub struct WaitingPatient {
    /// Their id, to admit or deny.
    pub peer: String,
    /// Their name.
    pub name: String,
    /// `patient` or `guest`.
    pub role: Role,
    /// When they checked in, ms since the Unix epoch (kept across their reconnects).
    pub since_ms: f64,
    /// False while their connection has dropped and their place is held.
    pub connected: bool,
    /// Their pre-call check, once reported.
    pub check: Option<CheckResult>,
}

/// The device's link to its server.
#[derive(Debug, Clone, PartialEq, Serialize, Type)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Connection {
    /// No invitation yet: show setup. `error` says why an earlier one was set aside.
    SetupNeeded {
        /// Why setup is shown again, if it was shown before.
        error: Option<ClientError>,
    },
    /// Connecting, or trying again after a failure.
    Connecting {
        /// Attempts so far since the last success.
        attempt: u32,
        /// What went wrong last time.
        error: Option<ClientError>,
        /// When the next attempt starts, ms since the Unix epoch.
        retry_at_ms: Option<f64>,
    },
    /// Signed in.
    Online,
    /// In a consult's waiting room.
    Waiting {
        /// Place in the queue, 1 for next.
        position: u32,
    },
    /// A patient's (or a guest's) consult is over: the clinician or they hung up, and this device
    /// left the room, so that it does not take a place in the clinician's next consults.
    /// Opening the invitation again waits again.
    ConsultOver,
    /// The server refuses this invitation: a new one is needed (or the device was replaced).
    Refused {
        /// Why.
        error: ClientError,
    },
}

/// This device's identity.
#[derive(Debug, Clone, PartialEq, Serialize, Type)]
pub struct Me {
    /// Our name.
    pub name: String,
    /// Our screens.
    pub role: Role,
    /// Our room.
    pub room: String,
    /// When the invitation expires, ms since the Unix epoch.
    pub expires_at_ms: Option<f64>,
}

/// Available, busy or away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Connected and free.
    Available,
    /// Connected and in a call.
    InCall,
    /// Not connected.
    Offline,
}

/// Someone to call.
#[derive(Debug, Clone, PartialEq, Serialize, Type)]
pub struct Contact {
    /// Stable key (their name): the page keys tiles and photos by it.
    pub key: String,
    /// Their name.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// Whether they can be called now.
    pub presence: Presence,
    /// Their connection in the room, when they are online.
    pub peer: Option<String>,
    /// The tablet has a photo of them.
    pub has_photo: bool,
    /// Their calls are answered automatically (resident tablets).
    pub trusted: bool,
}

/// Good, weak or reconnecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// Fine.
    Good,
    /// Poor: video may be smaller or paused.
    Weak,
    /// The connection dropped and is coming back.
    Reconnecting,
}

impl From<hearth_engine::ConnectionQuality> for Quality {
    fn from(q: hearth_engine::ConnectionQuality) -> Self {
        match q {
            hearth_engine::ConnectionQuality::Good => Self::Good,
            hearth_engine::ConnectionQuality::Weak => Self::Weak,
            hearth_engine::ConnectionQuality::Reconnecting => Self::Reconnecting,
        }
    }
}

/// One other person in the call.
#[derive(Debug, Clone, PartialEq, Serialize, Type)]
pub struct CallPeer {
    /// Their connection id (the video frames carry it).
    pub peer: String,
    /// Their name.
    pub name: String,
    /// Media is flowing.
    pub connected: bool,
    /// How the connection is.
    pub quality: Quality,
    /// Their picture is not coming: their connection is too weak, or they turned it off.
    pub their_video: VideoState,
    /// Our picture to them is paused because the connection cannot carry it (audio goes on).
    pub our_video_paused: bool,
    /// Round trip, milliseconds.
    pub rtt_ms: Option<f64>,
    /// Packets lost on the way to us, percent.
    pub loss_percent: f64,
    /// What we receive, kbit/s.
    pub receive_kbps: f64,
}

/// Whether a peer's picture is coming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum VideoState {
    /// Pictures are coming.
    On,
    /// Their connection cannot carry video now; we hear them.
    PausedWeak,
    /// They turned their camera off.
    CameraOff,
}

/// The call, as the screens show it.
#[derive(Debug, Clone, PartialEq, Serialize, Type)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CallView {
    /// No call.
    Idle,
    /// Someone is calling us.
    Incoming {
        /// Their connection id.
        peer: String,
        /// Their name.
        name: String,
        /// Answer by itself after this many seconds (a trusted contact on a resident's tablet
        /// with auto-answer on).
        auto_answer_seconds: Option<u32>,
    },
    /// We are calling someone.
    Calling {
        /// Their connection id.
        peer: String,
        /// Their name.
        name: String,
        /// Their device is ringing.
        ringing: bool,
    },
    /// In a call.
    Active {
        /// When the call connected, ms since the Unix epoch.
        since_ms: f64,
        /// The others.
        peers: Vec<CallPeer>,
    },
    /// A call just ended (shown for a few seconds).
    Ended {
        /// With whom.
        name: String,
        /// Why.
        reason: EndReason,
    },
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// We ended it.
    HungUp,
    /// They ended it.
    RemoteHungUp,
    /// They said no.
    Declined,
    /// They were in another call.
    Busy,
    /// Their device does not take calls now (quiet hours).
    Unavailable,
    /// The care home has not set up calls between the two.
    NotAllowed,
    /// Nobody answered.
    NoAnswer,
    /// They stopped calling before we answered.
    Cancelled,
    /// They went offline.
    PeerLeft,
    /// The connection broke and did not come back.
    ConnectionLost,
    /// The call could not be set up.
    Failed,
}

impl From<&hearth_engine::CallEndReason> for EndReason {
    fn from(r: &hearth_engine::CallEndReason) -> Self {
        use hearth_engine::CallEndReason as R;
        match r {
            R::HungUp => Self::HungUp,
            R::RemoteHungUp => Self::RemoteHungUp,
            R::Declined => Self::Declined,
            R::Busy => Self::Busy,
            R::Unavailable => Self::Unavailable,
            R::NoAnswer => Self::NoAnswer,
            R::Cancelled => Self::Cancelled,
            R::PeerLeft => Self::PeerLeft,
            R::ConnectionLost => Self::ConnectionLost,
            _ => Self::Failed,
        }
    }
}

/// Camera, microphone or speaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// A camera.
    Camera,
    /// A microphone.
    Microphone,
    /// A speaker.
    Speaker,
}

impl From<hearth_engine::DeviceKind> for DeviceKind {
    fn from(k: hearth_engine::DeviceKind) -> Self {
        match k {
            hearth_engine::DeviceKind::Camera => Self::Camera,
            hearth_engine::DeviceKind::Microphone => Self::Microphone,
            hearth_engine::DeviceKind::Speaker => Self::Speaker,
        }
    }
}

/// Something to tell the person.
#[derive(Debug, Clone, PartialEq, Serialize, Type)]
pub struct Notice {
    /// To dismiss it by.
    pub id: u32,
    /// The device it is about, if any.
    pub device: Option<DeviceKind>,
    /// The error it reports, if it is one.
    pub code: Option<ErrorCode>,
    /// A sentence in English (the page says it in its own words, by `device` or `code`).
    pub message: String,
}

/// A camera, microphone or speaker on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Type)]
pub struct Device {
    /// Stable id.
    pub id: String,
    /// Name to show.
    pub name: String,
    /// What it is.
    pub kind: DeviceKind,
}

impl Default for AppState {
    fn default() -> Self {
        Self {
            version: 0,
            language: Language::default(),
            connection: Connection::SetupNeeded { error: None },
            me: None,
            contacts: Vec::new(),
            call: CallView::Idle,
            muted: false,
            camera_off: false,
            notices: Vec::new(),
            kiosk: false,
            lobby: Vec::new(),
            my_check: None,
            quiet: false,
        }
    }
}

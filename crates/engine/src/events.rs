//! What the engine tells its user.

use std::sync::Arc;
use std::time::Instant;

use hearth_codec::{I420Frame, VideoCodec};
use hearth_proto::{PeerId, PeerInfo, Role};

use crate::stats::CallStats;

/// Something that happened in the room or in a call.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RoomEvent {
    /// We are in the room (at once, or after a clinician admitted us from the waiting room).
    Joined {
        /// Our id in the room.
        me: PeerId,
        /// The room's name.
        room: String,
        /// Our role.
        role: Role,
        /// Who else is there.
        peers: Vec<PeerInfo>,
    },
    /// We are in the room's waiting room.
    Waiting {
        /// Our place in the queue, 1 for next.
        position: usize,
    },
    /// Someone came into the room.
    PeerJoined(PeerInfo),
    /// Someone left the room.
    PeerLeft(PeerId),
    /// Someone is calling us: answer or decline.
    IncomingCall {
        /// Who.
        peer: PeerId,
        /// Their display name.
        name: String,
    },
    /// Our call is ringing at the other end.
    Ringing {
        /// Who we are calling.
        peer: PeerId,
    },
    /// Media is flowing with this peer.
    CallConnected {
        /// Who.
        peer: PeerId,
    },
    /// A call with this peer ended.
    CallEnded {
        /// Who.
        peer: PeerId,
        /// Why.
        reason: CallEndReason,
    },
    /// A decoded picture from a peer.
    RemoteVideo(RemoteVideoFrame),
    /// A still-encoded picture from a peer, when `RoomOptions::forward_encoded` names its
    /// codec: the front end decodes it.
    RemoteEncodedVideo(EncodedVideoFrame),
    /// A small copy of our own picture (the self-view), when `RoomOptions::self_view` is on;
    /// at most 320 pixels wide and 15 a second, only while a call uses the camera.
    LocalVideo(Arc<I420Frame>),
    /// Whether a peer in the room is in a call now (their presence: available or busy).
    PeerPresence {
        /// Who.
        peer: PeerId,
        /// True while they are in a call.
        in_call: bool,
    },
    /// How loud a peer is, 0.0 (silence) to 1.0 (full scale), a few times a second.
    RemoteAudioLevel {
        /// Who.
        peer: PeerId,
        /// RMS level of the last interval.
        level: f32,
    },
    /// The connection to a peer changed quality.
    Quality {
        /// Who.
        peer: PeerId,
        /// How good it is now.
        quality: ConnectionQuality,
    },
    /// Our video to a peer stopped or resumed because of the bandwidth estimate.
    VideoPaused {
        /// Who.
        peer: PeerId,
        /// True when only audio is being sent.
        paused: bool,
    },
    /// A peer's video to us paused because their connection cannot carry it (or came back).
    RemoteVideoPaused {
        /// Who.
        peer: PeerId,
        /// True while they send only audio.
        paused: bool,
        /// True when they turned their camera off (rather than their connection being weak).
        camera_off: bool,
    },
    /// Statistics for the call, once a second while a call is up.
    Stats(CallStats),
    /// A camera or microphone failed; the call goes on without it.
    DeviceError {
        /// Which kind of device.
        device: DeviceKind,
        /// A plain sentence for the user.
        message: String,
    },
    /// A camera, microphone or speaker was plugged in or out; here is the new list.
    DevicesChanged(Vec<crate::media::devices::DeviceInfo>),
    /// Clinicians: who waits in the consult's waiting room, in arrival order (at joining and on
    /// every change).
    Lobby(Vec<hearth_proto::WaitingPeer>),
    /// Residents' tablets: the rules staff set (at joining and on every change).
    Rules(hearth_proto::care::Rules),
    /// Staff asked this device to run its pre-call check; answer with
    /// [`crate::Room::report_check`] and this request.
    CheckRequested {
        /// Echo it in the report.
        request: String,
    },
    /// The server refused one of our messages (an admit into a full call, say); the
    /// connection goes on.
    Refused {
        /// What to branch on.
        code: hearth_proto::ErrorCode,
        /// A plain sentence.
        message: String,
        /// The peer the refused request named (who could not be admitted or signalled), when
        /// the server says.
        peer: Option<PeerId>,
    },
    /// The connection to the signaling server broke; the engine reconnects by itself (the
    /// session resumes, calls go on) and tries again after `retry_in_ms`. (A server that is
    /// stopping asks its clients to move: the engine does so at the time it gave, and says
    /// this only if the move fails.)
    Reconnecting {
        /// Attempts so far.
        attempt: u32,
        /// When the next attempt starts, from now.
        retry_in_ms: u64,
    },
    /// Connected to the signaling server again. `resumed`: the same session, nothing missed;
    /// otherwise the session had ended and this is a fresh join (a `Joined` or `Waiting` event
    /// came first, with a new id).
    Reconnected {
        /// Whether the session was taken up again.
        resumed: bool,
    },
    /// The connection to the signaling server was lost for good: the server closed it on
    /// purpose (replaced, revoked, denied, an expired token).
    Disconnected {
        /// A plain sentence saying why.
        reason: String,
        /// The server's error code when it closed the connection on purpose (`replaced`,
        /// `expired_token`, `shutting_down`, ...); `None` when the connection just broke.
        code: Option<hearth_proto::ErrorCode>,
    },
}

/// Camera, microphone or speaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A camera.
    Camera,
    /// A microphone.
    Microphone,
    /// A speaker or headphones.
    Speaker,
}

/// One decoded remote picture.
#[derive(Debug, Clone)]
pub struct RemoteVideoFrame {
    /// Who sent it.
    pub peer: PeerId,
    /// The picture.
    pub frame: Arc<I420Frame>,
    /// The codec it came in.
    pub codec: VideoCodec,
    /// Its RTP timestamp (90 kHz).
    pub rtp_timestamp: u32,
    /// When its decoding finished.
    pub decoded_at: Instant,
    /// When to show it so it matches the sound (lip sync); never before `decoded_at`.
    pub present_at: Instant,
}

/// One remote picture as it came over the network, whole, for a front end that decodes it
/// itself. Frames from one peer come in decoding order with no gaps: the first is a keyframe,
/// and after a loss the engine skips ahead to the next keyframe. `seq` counts the frames
/// handed over, so a front end that drops one downstream can tell, and ask for a keyframe
/// ([`Room::request_keyframe`](crate::Room::request_keyframe)).
#[derive(Debug, Clone)]
pub struct EncodedVideoFrame {
    /// Who sent it.
    pub peer: PeerId,
    /// Its codec.
    pub codec: VideoCodec,
    /// The codec's bitstream for one frame (VP8: one frame; H.264: Annex B).
    pub data: bytes::Bytes,
    /// Whether it decodes on its own.
    pub keyframe: bool,
    /// Frames handed over from this peer so far, counting from 0; one more each time.
    pub seq: u64,
    /// Its RTP timestamp (90 kHz).
    pub rtp_timestamp: u32,
    /// When to show it so it matches the sound (lip sync); decoding should be quick.
    pub present_at: Instant,
}

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallEndReason {
    /// We hung up.
    HungUp,
    /// They hung up.
    RemoteHungUp,
    /// They declined.
    Declined,
    /// They were in another call.
    Busy,
    /// Their device does not take calls now (a resident's quiet hours).
    Unavailable,
    /// Nobody answered in time.
    NoAnswer,
    /// The caller gave up before we answered.
    Cancelled,
    /// They left the room.
    PeerLeft,
    /// The connection broke and could not be restored.
    ConnectionLost,
    /// The call could not be set up.
    Failed(String),
}

impl CallEndReason {
    /// A stable code for the reason.
    pub fn code(&self) -> &'static str {
        match self {
            Self::HungUp => "hung_up",
            Self::RemoteHungUp => "remote_hung_up",
            Self::Declined => "declined",
            Self::Busy => "busy",
            Self::Unavailable => "unavailable",
            Self::NoAnswer => "no_answer",
            Self::Cancelled => "cancelled",
            Self::PeerLeft => "peer_left",
            Self::ConnectionLost => "connection_lost",
            Self::Failed(_) => "failed",
        }
    }
}

/// Connection quality in the three words a person needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionQuality {
    /// Audio and video are fine.
    Good,
    /// Loss, delay or low bandwidth: video may be reduced or paused.
    Weak,
    /// The connection dropped and is being restored.
    Reconnecting,
}

//! How a room is joined: which media to send and how to connect.

use std::net::SocketAddr;
use std::time::Duration;

use hearth_codec::VideoCodec;

/// Where outgoing video comes from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum VideoInput {
    /// Send no video (receive only).
    None,
    /// The moving test pattern, which carries its frame number and capture time in its pixels.
    Synthetic {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Frames per second.
        fps: u32,
    },
    /// A camera: the one with this id (see [`devices::list`](crate::media::devices::list)),
    /// or the first one.
    Camera {
        /// Stable device id, or `None` for the first camera.
        id: Option<String>,
        /// Width asked for (the camera may give the nearest it has).
        width: u32,
        /// Height asked for.
        height: u32,
        /// Frames per second asked for.
        fps: u32,
    },
}

/// Where outgoing audio comes from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AudioInput {
    /// Send no audio.
    None,
    /// A 440 Hz tone that beeps once a second.
    Tone,
    /// A microphone: the one with this id, or the system default.
    Microphone {
        /// Stable device id, or `None` for the default microphone.
        id: Option<String>,
    },
}

/// Where received audio is played.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AudioOutput {
    /// Nowhere: audio is received, decoded and measured, not played.
    None,
    /// A speaker: the one with this id, or the system default.
    Speaker {
        /// Stable device id, or `None` for the default speaker.
        id: Option<String>,
    },
}

/// Options for [`Room::connect`](crate::Room::connect).
#[derive(Debug, Clone)]
pub struct RoomOptions {
    /// Outgoing video.
    pub video: VideoInput,
    /// Outgoing audio.
    pub audio: AudioInput,
    /// Where received audio is played.
    pub audio_output: AudioOutput,
    /// Echo cancellation, noise suppression and automatic gain on outgoing audio.
    pub audio_processing: bool,
    /// Video codecs we send, most preferred first. Both are always offered for receiving,
    /// unless `forward_encoded` narrows them.
    pub video_codecs: Vec<VideoCodec>,
    /// Codecs whose pictures are handed over still encoded
    /// ([`RoomEvent::RemoteEncodedVideo`](crate::RoomEvent::RemoteEncodedVideo)) instead of
    /// being decoded here, for a front end that decodes them itself (the desktop app's page,
    /// with WebCodecs). When not empty, only these codecs are offered for video in either
    /// direction, so peers send one of them. [`Room::set_forward_encoded`](crate::Room::set_forward_encoded)
    /// switches back to decoding here at any time (the front end's decoder failed); the
    /// engine can decode every codec it offers.
    pub forward_encoded: Vec<VideoCodec>,
    /// Local UDP addresses to gather candidates on. `0.0.0.0:0` means every interface but
    /// loopback; tests pass `127.0.0.1:0`.
    pub bind_addrs: Vec<SocketAddr>,
    /// Accept other peers' mDNS (`.local`) candidates. Off by default: resolving them needs
    /// multicast, which many networks (and test namespaces) don't route.
    pub mdns: bool,
    /// Connect only through the TURN relay (never directly), for networks that require it
    /// or to keep one's address from the other side.
    pub relay_only: bool,
    /// The bitrate video starts at.
    pub start_bitrate_bps: u32,
    /// The most video may use.
    pub max_bitrate_bps: u32,
    /// How long an unanswered call rings.
    pub ring_timeout: Duration,
    /// How long a broken connection may try to recover before the call ends.
    pub reconnect_timeout: Duration,
    /// Send `RoomEvent::LocalVideo` self-view pictures during calls.
    pub self_view: bool,
}

impl Default for RoomOptions {
    fn default() -> Self {
        Self {
            video: VideoInput::Synthetic {
                width: 640,
                height: 480,
                fps: 30,
            },
            audio: AudioInput::Tone,
            audio_output: AudioOutput::Speaker { id: None },
            audio_processing: true,
            video_codecs: vec![VideoCodec::H264, VideoCodec::Vp8],
            forward_encoded: Vec::new(),
            bind_addrs: vec![SocketAddr::from(([0, 0, 0, 0], 0))],
            mdns: false,
            relay_only: false,
            start_bitrate_bps: 800_000,
            max_bitrate_bps: 2_500_000,
            ring_timeout: Duration::from_secs(45),
            reconnect_timeout: Duration::from_secs(30),
            self_view: false,
        }
    }
}

//! Hearth's call engine. It runs without a window: the desktop app, `hearth-cli`, the tests and
//! the benchmarks all drive this same code.
//!
//! The shape is a call SDK's: [`Room::connect`] joins a room on the signaling server with a
//! token and returns a [`Room`] handle plus a stream of [`RoomEvent`]s. Calls to the other
//! people in the room are placed, rung, answered, declined and ended with the handle; every
//! call is a WebRTC peer connection (DTLS-SRTP) to one other person, and a call of three or
//! four people is a mesh of them. The call sub-protocol carried in the server's `signal`
//! messages is documented in `docs/protocol.md`.

mod adapt;
mod backoff;
mod error;
mod events;
pub mod media;
mod options;
mod pacer;
mod peer;
pub mod protocol;
mod room;
mod rtp;
mod signal;
mod stats;

pub use backoff::Backoff;
pub use error::EngineError;
pub use events::{
    CallEndReason, ConnectionQuality, DeviceKind, EncodedVideoFrame, RemoteVideoFrame, RoomEvent,
};
pub use hearth_codec::{I420Frame, VideoCodec};
pub use hearth_proto::{PeerId, PeerInfo, Role};
pub use options::{AudioInput, AudioOutput, RoomOptions, VideoInput};
pub use peer::RelayCheck;
pub use room::Room;
pub use stats::{CallStats, PeerStats};

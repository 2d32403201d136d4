//! Hearth's wire types: every message of the signaling protocol v1 (`docs/protocol.md`), with no IO.
//!
//! The signaling server, the call engine and the UI bindings all speak through these types, so a
//! field renamed here is a protocol change: update `docs/protocol.md` in the same commit.

pub mod care;
mod error;
mod message;

pub use error::ErrorCode;
pub use message::{
    ClientMessage, IceServer, ParseError, PeerId, PeerInfo, Resume, Role, SEQ_HEAD_MAX, SeqHead,
    ServerMessage, WaitingPeer, parse_client, seq_of, seq_parts, with_seq,
};

/// Path of the WebSocket endpoint for protocol v1.
pub const WS_PATH: &str = "/v1/ws";

/// The largest text frame a client may send, in bytes; larger frames get [`ErrorCode::TooLarge`].
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

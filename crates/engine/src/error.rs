//! The engine's error type: every error a user can meet has a code and a plain sentence.

use hearth_proto::ErrorCode;

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The signaling server could not be reached.
    #[error("could not reach the call server at {url}: {detail}")]
    Unreachable {
        /// The server URL tried.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The server refused us (a bad or expired token, a full room, ...).
    #[error("{message}")]
    Rejected {
        /// The server's error code.
        code: ErrorCode,
        /// The server's sentence.
        message: String,
    },
    /// The server broke the protocol.
    #[error("the call server sent something unexpected: {0}")]
    Protocol(String),
    /// The room handle was used after leaving, or the connection is gone for good.
    #[error("not connected to the room any more")]
    Closed,
    /// The peer named is not in the room.
    #[error("{0} is not in this room")]
    UnknownPeer(String),
    /// There is no call with that peer in the state the operation needs.
    #[error("there is no call with {0} to do that to")]
    NoCall(String),
    /// The call is already full.
    #[error("the call already has the most people it can hold")]
    CallFull,
    /// The WebRTC stack failed.
    #[error("the connection could not be set up: {0}")]
    WebRtc(String),
}

impl EngineError {
    /// A stable code a user interface can branch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "server_unreachable",
            Self::Rejected { code, .. } => code.as_str(),
            Self::Protocol(_) => "protocol",
            Self::Closed => "closed",
            Self::UnknownPeer(_) => "unknown_peer",
            Self::NoCall(_) => "no_call",
            Self::CallFull => "call_full",
            Self::WebRtc(_) => "webrtc",
        }
    }
}

impl From<webrtc::error::Error> for EngineError {
    fn from(e: webrtc::error::Error) -> Self {
        Self::WebRtc(e.to_string())
    }
}

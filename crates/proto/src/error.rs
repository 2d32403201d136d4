//! Error codes a server sends in `{"type":"error"}` messages.

use serde::{Deserialize, Serialize};

/// Why the server refused a message or a connection.
///
/// Clients branch on the code; the accompanying `message` is a plain sentence for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The token is malformed or its signature does not verify.
    BadToken,
    /// The token was valid once but its `exp` has passed.
    ExpiredToken,
    /// The token does not allow this: another room, or a role that may not do it.
    Forbidden,
    /// Not JSON, not an object with a known `type`, missing fields, or out of order.
    BadMessage,
    /// A frame larger than [`crate::MAX_FRAME_BYTES`].
    TooLarge,
    /// More messages than the per-connection rate allows; the message was dropped.
    RateLimited,
    /// The peer named in the message is not in the room (or not waiting, for admit/deny).
    UnknownPeer,
    /// The call already has the maximum number of participants.
    RoomFull,
    /// A clinician denied entry from the waiting room.
    Denied,
    /// The same identity connected again; this older connection is closed.
    Replaced,
    /// No `hello` arrived in time after the socket opened.
    HelloTimeout,
    /// The server is shutting down; reconnect later.
    ShuttingDown,
    /// Something went wrong on the server; nothing the client did.
    Internal,
    /// The invitation behind the token was withdrawn by staff.
    Revoked,
    /// HTTP API: no such invitation, resident or code.
    NotFound,
    /// HTTP API: the resident's tablet is not connected.
    Offline,
    /// HTTP API: the tablet did not answer in time.
    Timeout,
    /// The servers' shared state cannot be reached for a moment; the message was not applied.
    /// Send it again shortly.
    Unavailable,
}

impl ErrorCode {
    /// Every code, for registering metrics and for documentation tests.
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::BadToken,
        ErrorCode::ExpiredToken,
        ErrorCode::Forbidden,
        ErrorCode::BadMessage,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::UnknownPeer,
        ErrorCode::RoomFull,
        ErrorCode::Denied,
        ErrorCode::Replaced,
        ErrorCode::HelloTimeout,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
        ErrorCode::Revoked,
        ErrorCode::NotFound,
        ErrorCode::Offline,
        ErrorCode::Timeout,
        ErrorCode::Unavailable,
    ];

    /// True for the codes a server sends just before closing an established connection on
    /// purpose (the protocol's connection errors after `welcome`).
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            ErrorCode::BadToken
                | ErrorCode::ExpiredToken
                | ErrorCode::Denied
                | ErrorCode::Replaced
                | ErrorCode::HelloTimeout
                | ErrorCode::Revoked
        )
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadToken => "bad_token",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UnknownPeer => "unknown_peer",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::Denied => "denied",
            ErrorCode::Replaced => "replaced",
            ErrorCode::HelloTimeout => "hello_timeout",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::Revoked => "revoked",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Offline => "offline",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// A plain sentence for people, used when the server has nothing more specific to say.
    pub fn default_message(self) -> &'static str {
        match self {
            ErrorCode::BadToken => "This invitation is not valid. Ask the care home for a new one.",
            ErrorCode::ExpiredToken => {
                "This invitation has expired. Ask the care home for a new one."
            }
            ErrorCode::Forbidden => "This invitation does not allow that.",
            ErrorCode::BadMessage => "The message was not understood.",
            ErrorCode::TooLarge => "The message was too large and was not delivered.",
            ErrorCode::RateLimited => {
                "Too many messages too quickly; the message was not delivered."
            }
            ErrorCode::UnknownPeer => "That person is not in this room.",
            ErrorCode::RoomFull => "There is no room for anyone else here right now.",
            ErrorCode::Denied => "The clinician could not let you in this time.",
            ErrorCode::Replaced => "This account connected from another place.",
            ErrorCode::HelloTimeout => {
                "The connection was closed because it did not identify itself in time."
            }
            ErrorCode::ShuttingDown => "The server is restarting. Reconnecting shortly.",
            ErrorCode::Internal => "Something went wrong on the server.",
            ErrorCode::Revoked => "The care home withdrew this invitation. Ask them for a new one.",
            ErrorCode::NotFound => "There is nothing by that name or code.",
            ErrorCode::Offline => "That tablet is not connected right now.",
            ErrorCode::Timeout => "The tablet did not answer in time.",
            ErrorCode::Unavailable => {
                "The service is busy for a moment; what you sent was not applied. Try again."
            }
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_without_a_reason_reads_as_the_page_expects() {
        // ui/src/screens/status.tsx (`NO_REASON`) knows this sentence: it does not quote it
        // as a clinician's own words.
        assert_eq!(
            ErrorCode::Denied.default_message(),
            "The clinician could not let you in this time."
        );
        let page = include_str!("../../../ui/src/screens/status.tsx");
        assert!(page.contains(&format!(
            "const NO_REASON = {:?};",
            ErrorCode::Denied.default_message()
        )));
    }

    #[test]
    fn wire_names_match_serde() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}

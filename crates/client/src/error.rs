//! Errors a person can meet in the app: each has a code the page branches on (and translates)
//! and an English sentence that says what to do.

use serde::Serialize;
use specta::Type;

/// What went wrong, as the page sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The device has no invitation yet.
    NotSetUp,
    /// The text given is not an invitation link or code.
    BadInvitation,
    /// A bare invitation code was given without the server address that came with it.
    NeedsServer,
    /// The server address given is not one (it looks like https://calls.example.org).
    BadServerAddress,
    /// The server does not accept the device's invitation (forged, for another server, malformed).
    BadToken,
    /// The invitation has expired.
    ExpiredToken,
    /// The server cannot be reached.
    ServerUnreachable,
    /// The server turned the device away (wrong room, not allowed).
    Forbidden,
    /// The call or room is full.
    RoomFull,
    /// A clinician turned us away from the waiting room.
    Denied,
    /// The same invitation is in use on another device.
    Replaced,
    /// The person to call is not reachable now.
    Unavailable,
    /// There is no call to do that to.
    NoCall,
    /// The saved settings could not be read; they were set aside and setup starts again.
    SettingsUnreadable,
    /// The settings could not be saved.
    SettingsUnwritable,
    /// A camera, microphone or speaker does not work.
    Device,
    /// Something inside the app failed; not the person's doing.
    Internal,
    /// The care home withdrew the invitation.
    Revoked,
    /// No such invitation, code or tablet.
    NotFound,
    /// The tablet is not connected.
    Offline,
    /// The tablet did not answer in time.
    Timeout,
    /// What was entered does not fit (the sentence says what).
    BadRequest,
    /// Too many requests in a short time: wait a moment and try again.
    RateLimited,
}

impl ErrorCode {
    /// The page's code for a server's error code.
    pub fn from_server(code: hearth_proto::ErrorCode) -> Self {
        use hearth_proto::ErrorCode as S;
        match code {
            S::BadToken => ErrorCode::BadToken,
            S::ExpiredToken => ErrorCode::ExpiredToken,
            S::Forbidden => ErrorCode::Forbidden,
            S::RoomFull => ErrorCode::RoomFull,
            S::Denied => ErrorCode::Denied,
            S::Replaced => ErrorCode::Replaced,
            S::UnknownPeer => ErrorCode::Unavailable,
            S::Revoked => ErrorCode::Revoked,
            S::NotFound => ErrorCode::NotFound,
            S::Offline => ErrorCode::Offline,
            S::Timeout => ErrorCode::Timeout,
            S::BadMessage | S::TooLarge => ErrorCode::BadRequest,
            S::RateLimited => ErrorCode::RateLimited,
            S::ShuttingDown | S::Unavailable => ErrorCode::ServerUnreachable,
            _ => ErrorCode::Internal,
        }
    }
}

/// An error for the page: a code and a plain sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Type, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    /// What to branch on.
    pub code: ErrorCode,
    /// A sentence for a person, in English (the page shows its own translation of `code`).
    pub message: String,
}

impl ClientError {
    /// An error with this code and sentence.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The error for an engine failure.
    pub fn from_engine(e: &hearth_engine::EngineError) -> Self {
        use hearth_engine::EngineError as E;
        match e {
            E::Unreachable { .. } => Self::new(
                ErrorCode::ServerUnreachable,
                "The Hearth server cannot be reached. Check the internet connection; Hearth keeps trying.",
            ),
            E::Rejected { code, message } => {
                Self::new(ErrorCode::from_server(*code), message.clone())
            }
            E::UnknownPeer(_) => Self::new(
                ErrorCode::Unavailable,
                "That person is not connected right now.",
            ),
            E::NoCall(_) => Self::new(ErrorCode::NoCall, "There is no call to do that to."),
            E::CallFull => Self::new(
                ErrorCode::RoomFull,
                "The call already has the most people it can hold.",
            ),
            other => {
                tracing::warn!(error = %other, "engine failure");
                Self::new(
                    ErrorCode::Internal,
                    "Something went wrong inside Hearth. Please try again.",
                )
            }
        }
    }

    /// True when retrying with the same invitation cannot help.
    pub fn needs_new_invitation(&self) -> bool {
        matches!(
            self.code,
            ErrorCode::BadToken
                | ErrorCode::ExpiredToken
                | ErrorCode::Forbidden
                | ErrorCode::Revoked
        )
    }
}
